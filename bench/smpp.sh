#!/usr/bin/env bash
# Benchmark: messages per second end to end, on PostgreSQL: POST /v1/sms with a
# live key, through the durable queue and the SMPP carrier into the node-smpp
# simulator (tests/smsc), its delivery receipts back, every message's final
# status recorded. Window 10 and 50. Prints our counts beside the simulator's own.
#
#   bash bench/smpp.sh                      # 30 s of load, 32 connections
#   DURATION=10s CONNS=64 bash bench/smpp.sh
#
# e2e_per_s = delivered / (last status recorded - first message accepted), with
# the API, the worker, PostgreSQL, the simulator and wrk sharing the machine.
# The span includes the simulator's receipt delay (RECEIPT_DELAY_MS, 1 s) once:
# 30 s of load keep that fixed latency to 3% of it (10 s: 9%), so the figure is
# close to the sustained rate.
# Then the pipeline alone: messages queued first (API only), then a worker
# process started: drain_per_s = delivered / (last status recorded - its start).
DURATION=${DURATION:-30s}
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-32}
command -v node >/dev/null || { echo "node (20) is needed for the SMPP simulator"; exit 1; }
[ -f tests/smsc/node_modules/smpp/package.json ] ||
  (cd tests/smsc && npm ci --no-audit --no-fund --loglevel=error)

# start_smsc: a fresh simulator; sets $smsc and writes $work/line.toml for WINDOW $1.
start_smsc() {
  SMSC_RECEIPT_DELAY_MS=${RECEIPT_DELAY_MS:-1000} node tests/smsc/smsc.js >"$work/smsc.out" 2>&1 &
  smsc=$!
  for _ in $(seq 100); do grep -q '^listening' "$work/smsc.out" 2>/dev/null && break; sleep 0.1; done
  local port
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
window = $1
max_per_second = 100000

[routing]
default = "primary"
TOML
}

stop_smsc() {
  kill -TERM "$smsc"; wait "$smsc" 2>/dev/null || true
  stats=$(grep '^stats' "$work/smsc.out" | tail -n1)
}

# wait_done URL: until no message is queued or sent (at most two minutes). The
# count scans the table: once a second and on one core, so that watching takes
# little from what is watched (the rates come from the rows' own timestamps).
wait_done() {
  for _ in $(seq 120); do
    [ "$(psql "$1" -qtAc "SET max_parallel_workers_per_gather = 0; SELECT count(*) FROM messages WHERE status IN ('queued', 'sent')")" = 0 ] && return
    sleep 1
  done
}

run_window() {
  local window=$1 db="line_bench_$$_$1" url
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  url="${PG_ADMIN%/*}/$db"
  start_smsc "$window"
  ROLE=all
  export LINE_CONFIG=$work/line.toml
  start_server "$url"
  KEY=$(LINE_DATABASE_URL=$url "$bin" tenant create --name bench | grep -o 'line_live_[A-Za-z0-9]*')
  export KEY
  run_wrk "window=$window POST /v1/sms" "$CONNS" bench/post_sms_live.lua /v1/sms
  wait_done "$url"
  read -r delivered total rate < <(psql "$url" -tA -F' ' -c "
    SELECT count(*) FILTER (WHERE status = 'delivered'), count(*),
      round(count(*) FILTER (WHERE status = 'delivered') * 1000.0 / NULLIF(max(updated_at) - min(created_at), 0))
    FROM messages")
  stop_server
  stop_smsc
  printf '%-28s delivered=%s/%s e2e_per_s=%s simulator: %s\n' "window=$window end to end" \
    "$delivered" "$total" "$rate" "${stats#stats }"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)"

  # The pipeline alone: queue first, then a worker process drains.
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  start_smsc "$window"
  ROLE=api
  start_server "$url"
  KEY=$(LINE_DATABASE_URL=$url "$bin" tenant create --name bench | grep -o 'line_live_[A-Za-z0-9]*')
  run_wrk "window=$window queue (API only)" "$CONNS" bench/post_sms_live.lua /v1/sms >/dev/null
  stop_server
  local started
  started=$(date +%s%3N)
  LINE_DATABASE_URL=$url LINE_LISTEN=127.0.0.1:$PORT "$bin" serve --role worker >"$work/worker.out" 2>&1 &
  pid=$!
  wait_done "$url"
  read -r delivered total rate < <(psql "$url" -tA -F' ' -c "
    SELECT count(*) FILTER (WHERE status = 'delivered'), count(*),
      round(count(*) FILTER (WHERE status = 'delivered') * 1000.0 / NULLIF(max(updated_at) - $started, 0))
    FROM messages")
  stop_server
  stop_smsc
  printf '%-28s delivered=%s/%s drain_per_s=%s simulator: %s\n' "window=$window worker alone" \
    "$delivered" "$total" "$rate" "${stats#stats }"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)"
}

run_window 10
run_window 50
