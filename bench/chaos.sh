#!/usr/bin/env bash
# Chaos: two nodes on one PostgreSQL (a cluster of this script's own, so that
# it can be restarted), sending through the SMPP simulator, N messages
# (10,000) paced at RATE a second over both nodes. During the load:
#   t=2 s   node A is killed (-9), and started again a second later;
#   t=5 s   PostgreSQL stops at once (-m immediate) and starts again;
#   t=7 s   the SMSC is killed, and a new one listens on its port 10 s later.
# Then it waits until nothing is queued, and prints what was accepted and
# delivered, what is lost (accepted but not stored, or never sent: must be
# 0), the submissions the SMSC saw twice (bounded by what was in flight at
# each crash) and the longest any message waited to be sent.
#
#   bash bench/chaos.sh
#   N=5000 RATE=500 bash bench/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
RATE=${RATE:-1000}
WINDOW=${WINDOW:-10}
command -v node >/dev/null || { echo "node (20) is needed for the SMPP simulator"; exit 1; }
[ -f tests/smsc/node_modules/smpp/package.json ] ||
  (cd tests/smsc && npm ci --no-audit --no-fund --loglevel=error)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release --locked --quiet
  bin=target/release/line
fi
pgbin=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres: "$work"

# PostgreSQL of our own, fsync on (the durability being tested).
pgport=$(free_port)
as_pg "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
pg_start() {
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-p $pgport -k $work -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
}
pg_start
url="postgres://postgres@127.0.0.1:$pgport/postgres"
psql() { command psql "$url" "$@"; }

# The SMSC, logging every accepted part (its text tells the message).
smsc_port=$(free_port)
smsc_start() {
  SMSC_PORT=$smsc_port SMSC_LOG=$work/smsc.log SMSC_RECEIPT_DELAY_MS=${RECEIPT_DELAY_MS:-1000} \
    node tests/smsc/smsc.js >>"$work/smsc.out" 2>&1 &
  smsc=$!
  pids+=("$smsc")
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$smsc_port") 2>/dev/null && break; sleep 0.1; done
}
smsc_start
cat >"$work/line.toml" <<TOML
database_max_connections = 16
[limits]
monthly_spend_cap_pence = 0
[[carriers]]
name = "primary"
kind = "smpp"
host = "127.0.0.1"
port = $smsc_port
system_id = "line"
password = "secret"
window = $WINDOW
max_per_second = 100000
[routing]
default = "primary"
TOML
export LINE_CONFIG=$work/line.toml LINE_DATABASE_URL=$url
"$bin" migrate >/dev/null 2>&1
KEY=$("$bin" tenant create --name chaos 2>/dev/null | grep -o 'line_live_[A-Za-z0-9]*')
port_a=$(free_port); port_b=$(free_port)
node_start() { # NAME PORT
  LINE_LISTEN=127.0.0.1:$2 RUST_LOG=warn "$bin" serve >>"$work/$1.log" 2>&1 &
  eval "node_$1=$!"
  pids+=("$!")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && break; sleep 0.1; done
}
node_start a "$port_a"
node_start b "$port_b"
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:$port_a/metrics" | grep -q '^line_carrier_up{carrier="primary".*} 1' && break; sleep 0.1
done

echo "chaos: N=$N RATE=$RATE/s window=$WINDOW, nodes :$port_a :$port_b, PostgreSQL :$pgport, SMSC :$smsc_port"
KEY=$KEY NODES=127.0.0.1:$port_a,127.0.0.1:$port_b OUT=$work/accepted N=$N RATE=$RATE \
  python3 bench/chaos_load.py &
load=$!
t0=$(date +%s.%N)
at() { sleep "$(echo "$1 - ($(date +%s.%N) - $t0)" | bc)"; }
at 2; kill -9 "$node_a"; echo "t=2s   node A killed (-9)"
at 3; node_start a "$port_a"; echo "t=3s   node A started again"
at 5; as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null; echo "t=5s   PostgreSQL stopped (immediate)"
pg_start; echo "t=$(printf %.0f "$(echo "$(date +%s.%N) - $t0" | bc)")s   PostgreSQL started again"
at 7; kill -9 "$smsc"; echo "t=7s   SMSC killed"
at 17; smsc_start; echo "t=17s  SMSC listening again"
wait "$load" || echo "(the load gave up on some messages)"

# Until nothing is queued (or two minutes pass).
for _ in $(seq 120); do
  [ "$(psql -tAc "SELECT count(*) FROM messages WHERE status = 'queued'")" = 0 ] && break; sleep 1
done
sleep 3 # the receipts of the last submissions
accepted=$(wc -l <"$work/accepted")
psql -qc "CREATE TEMP TABLE acc (id TEXT)" -c "\\copy acc FROM '$work/accepted'" -tA -F' ' -c "
  SELECT
    (SELECT count(*) FROM acc) AS accepted,
    (SELECT count(*) FROM acc WHERE id NOT IN (SELECT id FROM messages)) AS not_stored,
    (SELECT count(*) FROM messages WHERE status = 'queued') AS queued,
    (SELECT count(*) FROM messages WHERE status = 'delivered') AS delivered,
    (SELECT count(*) FROM messages WHERE status = 'sent') AS awaiting_receipt,
    (SELECT count(*) FROM messages WHERE status NOT IN ('queued', 'sent', 'delivered')) AS other,
    (SELECT max(substring(history from 'sent:([0-9]+)')::bigint - created_at) FROM messages) AS longest_wait_ms,
    (SELECT count(*) FROM messages) AS stored" >"$work/figures"
read -r acc not_stored queued delivered awaiting other longest stored <"$work/figures"
parts=$(wc -l <"$work/smsc.log")
distinct=$(python3 -c "import json,sys; print(len({json.loads(l)['text'] for l in open(sys.argv[1])}))" "$work/smsc.log")
lost=$((not_stored + queued))
printf 'accepted=%s stored=%s delivered=%s awaiting_receipt=%s other=%s lost=%s\n' \
  "$acc" "$stored" "$delivered" "$awaiting" "$other" "$lost"
printf 'smsc: submissions=%s distinct=%s duplicates=%s (window %s, 1 node crash)\n' \
  "$parts" "$distinct" "$((parts - distinct))" "$WINDOW"
printf 'longest wait from accepted to sent: %s ms\n' "$longest"
echo "(awaiting_receipt: sent to the SMSC that was killed, whose receipts died with it; they end expired/no_receipt after worker.receipt_timeout_hours)"
[ "$lost" = 0 ]
