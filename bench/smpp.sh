#!/usr/bin/env bash
# Benchmark: messages per second end to end, on PostgreSQL: POST /v1/sms with a
# live key, through the durable queue and the SMPP carrier into the node-smpp
# simulator (tests/smsc), its delivery receipts back, every message's final
# status recorded. Window 10 and 50. Prints our counts beside the simulator's own.
#
#   bash bench/smpp.sh                      # 10 s of load, 32 connections
#   DURATION=20s CONNS=64 bash bench/smpp.sh
#
# e2e_per_s = delivered / (last status recorded - first message accepted).
source "$(dirname "$0")/lib.sh"
ROLE=all
CONNS=${CONNS:-32}
command -v node >/dev/null || { echo "node (20) is needed for the SMPP simulator"; exit 1; }
[ -f tests/smsc/node_modules/smpp/package.json ] ||
  (cd tests/smsc && npm ci --no-audit --no-fund --loglevel=error)

run_window() {
  local window=$1 db="line_bench_$$_$1" smsc port url
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  url="${PG_ADMIN%/*}/$db"
  node tests/smsc/smsc.js >"$work/smsc.out" 2>&1 &
  smsc=$!
  for _ in $(seq 100); do grep -q '^listening' "$work/smsc.out" 2>/dev/null && break; sleep 0.1; done
  port=$(awk '/^listening/ {print $2}' "$work/smsc.out")
  cat >"$work/line.toml" <<TOML
[limits]
monthly_spend_cap_pence = 0

[[carriers]]
name = "primary"
kind = "smpp"
host = "127.0.0.1"
port = $port
system_id = "line"
password = "secret"
window = $window
max_per_second = 100000

[routing]
default = "primary"
TOML
  export LINE_CONFIG=$work/line.toml
  start_server "$url"
  KEY=$(LINE_DATABASE_URL=$url "$bin" tenant create --name bench | grep -o 'line_live_[A-Za-z0-9]*')
  export KEY
  run_wrk "window=$window POST /v1/sms" "$CONNS" bench/post_sms_live.lua /v1/sms
  for _ in $(seq 600); do
    left=$(psql "$url" -tAc "SELECT count(*) FROM messages WHERE status IN ('queued', 'sent')")
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  read -r delivered total rate < <(psql "$url" -tA -F' ' -c "
    SELECT count(*) FILTER (WHERE status = 'delivered'), count(*),
      round(count(*) FILTER (WHERE status = 'delivered') * 1000.0 / NULLIF(max(updated_at) - min(created_at), 0))
    FROM messages")
  stop_server
  kill -TERM "$smsc"; wait "$smsc" 2>/dev/null || true
  stats=$(grep '^stats' "$work/smsc.out" | tail -n1)
  printf '%-28s delivered=%s/%s e2e_per_s=%s simulator: %s\n' "window=$window end to end" \
    "$delivered" "$total" "$rate" "${stats#stats }"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)"
}

run_window 10
run_window 50
