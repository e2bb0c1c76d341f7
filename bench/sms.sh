#!/usr/bin/env bash
# Benchmark: POST /v1/sms accepted per second and latency at 1, 16 and 64
# connections, on PostgreSQL and SQLite, with wrk on the same machine.
# Each 202 is a message committed to the database before the answer.
#
#   bash bench/sms.sh                 # 10 s per run
#   DURATION=30s ROLE=all bash bench/sms.sh
#   BIN=/tmp/line-old bash bench/sms.sh  # another build, for before/after pairs
#
# ROLE=api (default) measures the API alone, as in a split deployment;
# ROLE=all also runs the worker in the same process, sending what arrives.
source "$(dirname "$0")/lib.sh"

sms() {
  start_server "$2"
  for c in 1 16 64; do run_wrk "$1 $ROLE POST /v1/sms" "$c" bench/post_sms.lua /v1/sms; done
  stop_server
}
with_backends sms
