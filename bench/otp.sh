#!/usr/bin/env bash
# Benchmark: POST /v1/otp (start a verification: a code, its HMAC, the SMS
# committed) and POST /v1/otp/{id}/verify (a wrong code: one attempt counted
# atomically; checks are decided in groups, each group one UPDATE, from the
# verifications this server process already holds), per second and latency at
# 1, 16 and 64 connections, on
# PostgreSQL and SQLite. Each verification allows 10 attempts and the verify
# runs spread over all that the start runs created, so answers are 200s until
# attempts run out (then 409s, counted as non-2xx).
#
#   bash bench/otp.sh                 # 10 s per run
source "$(dirname "$0")/lib.sh"
# The per-number and per-tenant limits would stop a benchmark within seconds.
export LINE_LIMITS__OTP_SENDS_PER_NUMBER=100000000 LINE_LIMITS__OTP_STARTS_PER_MINUTE=100000000

otp() {
  start_server "$2"
  for c in 1 16 64; do
    # A tenant per run: the limiter counts in whole milliseconds, so even a
    # limit of 10^8 a minute lets one tenant start at most 1,000 a second
    # once its minute's burst (60,000) is spent, and the runs would add up.
    KEY=$(LINE_DATABASE_URL=$2 "$bin" tenant create --name "otp-$c" 2>/dev/null | grep -o 'line_test_[A-Za-z0-9]*')
    rm -f "$work"/ids-*
    run_wrk "$1 POST /v1/otp" "$c" bench/post_otp.lua /v1/otp
  done
  # The verifications of the last run, with its tenant's key.
  cat "$work"/ids-* >"$work/ids"
  echo "$1: $(wc -l <"$work/ids") verifications to check"
  for c in 1 16 64; do run_wrk "$1 POST /v1/otp/{id}/verify" "$c" bench/verify_otp.lua /v1/otp; done
  rm -f "$work"/ids*
  stop_server
}
with_backends otp
