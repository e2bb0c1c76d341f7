#!/usr/bin/env bash
# The contract test: schemathesis --checks all against the OpenAPI document a
# running `line serve` serves. Run by the test suite (tests/it/contract.rs);
# by hand: LINE_BIN=target/debug/line bash .ci/schemathesis/run.sh
#
# Hermetic where it can be: the server and schemathesis run in a network
# namespace with only loopback (as root, or with user namespaces), so no
# webhook delivery or DNS lookup for a generated host leaves the machine.
#
#   LINE_BIN   the built binary (default target/debug/line)
#   PORT       where the server listens (default 18081)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LINE_BIN=${LINE_BIN:-$HERE/../../target/debug/line}
PORT=${PORT:-18081}
ST_VERSION=4.32.5
VENV=${ST_VENV:-$HERE/../../target/schemathesis-$ST_VERSION}
if [ ! -x "$VENV/bin/schemathesis" ]; then # from PyPI, before leaving the network
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
sed -e "s#@WORK@#$WORK#" -e "s#@PORT@#$PORT#" "$HERE/line.toml" > "$WORK/line.toml"
export LINE_BIN VENV WORK PORT SCHEMATHESIS_HOOKS=$HERE/hooks.py CONFIG=$HERE/schemathesis.toml

if unshare --net true 2>/dev/null; then
  isolate=(unshare --net)
elif unshare --user --map-root-user --net true 2>/dev/null; then
  isolate=(unshare --user --map-root-user --net)
else
  echo "note: no network namespace here; generated hosts are mapped to loopback by hooks.py"
  isolate=()
fi

"${isolate[@]}" bash -euo pipefail -c '
cd "$WORK" # schemathesis keeps its cache in the working folder
ip link set lo up 2>/dev/null || true # a fresh namespace starts with loopback down
"$LINE_BIN" --config "$WORK/line.toml" serve > "$WORK/server.log" 2>&1 &
SERVER=$!
trap "kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true" EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
TEST_KEY=$(grep -o "line_test_[A-Za-z0-9]*" "$WORK/server.log" | head -1)
LIVE_KEY=$("$LINE_BIN" --config "$WORK/line.toml" tenant create --name schemathesis-live 2>/dev/null \
  | grep -o "line_live_[A-Za-z0-9]*")
ST() {
  "$VENV/bin/schemathesis" --config-file "$CONFIG" run "http://127.0.0.1:$PORT/v1/openapi.json" --url "http://127.0.0.1:$PORT" \
    --checks all --max-response-time 5 --seed 1 --workers 1 --continue-on-failure \
    --no-color "$@"
}
rc=0
# Every operation with the sandbox (test) key: examples, coverage, fuzzing, stateful.
ST -H "Authorization: Bearer $TEST_KEY" --max-examples 50 || rc=$?
# The account operations with a live key of a tenant of their own (test keys get 403 there).
ST -H "Authorization: Bearer $LIVE_KEY" --include-tag account --max-examples 100 || rc=$?
if [ $rc -ne 0 ]; then echo "--- server log (errors) ---"; grep -E "ERROR|WARN" "$WORK/server.log" | tail -40; fi
exit $rc
'
