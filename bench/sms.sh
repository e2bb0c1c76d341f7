#!/usr/bin/env bash
# Benchmark: POST /v1/sms accepted per second and latency at 1, 16 and 64
# connections, on PostgreSQL and SQLite, with wrk on the same machine.
# Each 202 is a message committed to the database before the answer.
#
#   bash bench/sms.sh                 # 10 s per run
#   DURATION=30s ROLE=all bash bench/sms.sh
#
# ROLE=api (default) measures the API alone, as in a split deployment;
# ROLE=all also runs the worker in the same process, sending what arrives.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
ROLE=${ROLE:-api}
PORT=${PORT:-18181}
PG_ADMIN=${LINE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }

cargo build --release --locked --quiet
bin=target/release/line
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

bench_backend() {
  local name=$1 url=$2
  LINE_DATABASE_URL=$url LINE_LISTEN=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-info} \
    "$bin" serve --role "$ROLE" >"$work/out" 2>"$work/log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  local key
  key=$(grep -o 'line_test_[A-Za-z0-9]*' "$work/out" | head -n1)
  for c in 1 16 64; do
    local t=$(( c < 2 ? 1 : 2 ))
    KEY=$key wrk -t"$t" -c"$c" -d"$DURATION" --latency -s bench/post_sms.lua \
      "http://127.0.0.1:$PORT/v1/sms" >"$work/wrk"
    local rps p50 p99 bad
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk")
    p50=$(awk '$1=="50%" {print $2}' "$work/wrk")
    p99=$(awk '$1=="99%" {print $2}' "$work/wrk")
    bad=$(awk '/Non-2xx/ {print $5}' "$work/wrk")
    printf '%-10s %-4s conns=%-3s accepted/s=%-9s p50=%-9s p99=%-9s non-2xx=%s\n' \
      "$name" "$ROLE" "$c" "$rps" "$p50" "$p99" "${bad:-0}"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

db="line_bench_$$"
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
bench_backend postgres "${PG_ADMIN%/*}/$db"
psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)"
bench_backend sqlite "sqlite://$work/bench.db"
