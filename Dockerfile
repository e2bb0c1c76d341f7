# Build: docker build -t line .
# Run:   docker run -p 8080:8080 -v line-data:/data line
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
COPY templates ./templates
COPY assets ./assets
RUN cargo build --release --locked && cp target/release/line /usr/local/bin/line

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data line \
    && mkdir -p /data && chown line /data
COPY --from=build /usr/local/bin/line /usr/local/bin/line
USER line
WORKDIR /data
# The embedded SQLite file lives in /data unless LINE_DATABASE_URL points elsewhere.
ENV LINE_LISTEN=0.0.0.0:8080 \
    LINE_DATABASE_URL=sqlite:///data/line.db \
    LINE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["line"]
CMD ["serve"]
