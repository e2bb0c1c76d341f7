# Shared by the bench scripts: build, start a server on a fresh database, run wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
ROLE=${ROLE:-api}
PORT=${PORT:-18181}
PG_ADMIN=${LINE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }

# BIN=path runs another build (e.g. an older commit's) instead of this tree's.
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release --locked --quiet
  bin=target/release/line
fi
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# start_server URL: serves on $PORT with $ROLE; sets $pid and $KEY (the first test key).
start_server() {
  LINE_DATABASE_URL=$1 LINE_LISTEN=127.0.0.1:$PORT RUST_LOG=${RUST_LOG:-info} \
    "$bin" serve --role "$ROLE" >"$work/out" 2>"$work/log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  # On a database that has tenants already, none is printed.
  KEY=$(grep -o 'line_test_[A-Za-z0-9]*' "$work/out" | head -n1 || true)
  export KEY
}

stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

# run_wrk LABEL CONNS SCRIPT PATH: one wrk run, one printed line.
run_wrk() {
  local label=$1 c=$2 script=$3 path=$4
  local t=$(( c < 2 ? 1 : 2 ))
  WORK=$work wrk -t"$t" -c"$c" -d"$DURATION" --latency -s "$script" "http://127.0.0.1:$PORT$path" >"$work/wrk"
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk")
  bad=$(awk '/Non-2xx/ {print $5}' "$work/wrk")
  printf '%-28s conns=%-3s per_s=%-9s p50=%-9s p99=%-9s non-2xx=%s\n' "$label" "$c" "$rps" "$p50" "$p99" "${bad:-0}"
}

# with_backends FN: calls FN NAME URL for PostgreSQL (fresh database) and SQLite.
with_backends() {
  local db="line_bench_$$"
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  "$1" postgres "${PG_ADMIN%/*}/$db"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)"
  "$1" sqlite "sqlite://$work/bench.db"
}
