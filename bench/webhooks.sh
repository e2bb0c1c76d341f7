#!/usr/bin/env bash
# Benchmark, end to end on PostgreSQL: messages per second from POST /v1/sms
# (sandbox carrier, 1 s receipts) until their signed message.delivered webhook
# has been received and verified (Python standardwebhooks) by a receiver on
# loopback. wrk sends for DURATION at 16 connections; the clock stops when the
# receiver has every delivery.
#
#   bash bench/webhooks.sh            # DURATION=5s
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5s}
RECEIVER_PORT=${RECEIVER_PORT:-18282}
python3 -m pip install --quiet --disable-pip-version-check standardwebhooks 2>/dev/null
export ROLE=all LINE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true

db="line_bench_$$"
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
start_server "${PG_ADMIN%/*}/$db"
secret=$(curl -sf "http://127.0.0.1:$PORT/v1/webhooks" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d "{\"url\": \"http://127.0.0.1:$RECEIVER_PORT/hook\", \"events\": [\"message.delivered\"]}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')
SECRET=$secret RECEIVER_PORT=$RECEIVER_PORT python3 bench/receiver.py &
receiver=$!
trap 'kill $receiver 2>/dev/null; cleanup' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$RECEIVER_PORT/count" >/dev/null && break; sleep 0.1; done

started=$(date +%s.%N)
wrk -t2 -c16 -d"$DURATION" -s bench/post_sms.lua "http://127.0.0.1:$PORT/v1/sms" >"$work/wrk"
sent=$(awk '/requests in/ {print $1}' "$work/wrk")
bad=$(awk '/Non-2xx/ {print $5}' "$work/wrk")
sent=$((sent - ${bad:-0}))
while :; do
  got=$(curl -sf "http://127.0.0.1:$RECEIVER_PORT/count" | python3 -c 'import json, sys; print(json.load(sys.stdin)["delivered"])')
  [ "$got" -ge "$sent" ] && break
  now=$(date +%s.%N)
  if awk -v s="$started" -v n="$now" 'BEGIN {exit !(n - s > 600)}'; then echo "gave up: $got of $sent"; break; fi
  sleep 0.2
done
finished=$(date +%s.%N)
awk -v n="$sent" -v g="$got" -v s="$started" -v f="$finished" \
  'BEGIN {printf "postgres end-to-end: %d accepted, %d signed message.delivered received in %.1f s: %.0f messages/s\n", n, g, f - s, g / (f - s)}'
stop_server
psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)"
