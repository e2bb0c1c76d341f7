#!/usr/bin/env bash
# Benchmark: POST /v1/sms accepted per second and latency at 1, 16 and 64
# connections, on PostgreSQL and SQLite, with wrk on the same machine.
# Each 202 is a message committed to the database before the answer.
#
#   bash bench/sms.sh                 # 10 s per run
#   DURATION=30s ROLE=all bash bench/sms.sh
#   BIN=/tmp/line-old bash bench/sms.sh  # another build, for before/after pairs
#
# Then live keys (charged to the ledger) with the spend cap off and on.
# ROLE=api (default) measures the API alone, as in a split deployment;
# ROLE=all also runs the worker in the same process, sending what arrives.
source "$(dirname "$0")/lib.sh"

sms() {
  start_server "$2"
  for c in 1 16 64; do run_wrk "$1 $ROLE POST /v1/sms" "$c" bench/post_sms.lua /v1/sms; done
  stop_server
}
with_backends sms

# Live keys: each accepted send is charged to the ledger in its own commit,
# with the spend cap off and then on (a cap it never reaches), each on a fresh
# database: the cap must cost little (issue 13: within 15%).
live() {
  local label="cap off"
  [ "$LINE_LIMITS__MONTHLY_SPEND_CAP_PENCE" = 0 ] || label="cap on"
  start_server "$2"
  KEY=$(LINE_DATABASE_URL=$2 "$bin" tenant create --name live | grep -o 'line_live_[A-Za-z0-9]*')
  export KEY
  for c in 16 64; do run_wrk "$1 live $label" "$c" bench/post_sms_live.lua /v1/sms; done
  stop_server
  rm -f "$work"/bench.db*
}
rm -f "$work"/bench.db*
for cap in 0 1000000000; do
  export LINE_LIMITS__MONTHLY_SPEND_CAP_PENCE=$cap
  with_backends live
done
unset LINE_LIMITS__MONTHLY_SPEND_CAP_PENCE
