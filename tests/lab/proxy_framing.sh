#!/usr/bin/env bash
# proxy_framing: every response framing a coordinator may use, through
# qdispatchd (issue 4). The simulator always answers with Content-Length, so
# this test frees the lab's only coordinator address with the simulator's kill
# endpoint and serves it with tests/clients/framing_server.py instead, which
# answers chunked (with chunk extensions and a trailer), close-delimited,
# 103-then-200, HEAD with Content-Length, and 204. tests/clients/framing_check.py
# then checks from the client namespace, over one keep-alive connection, that
# every body arrives byte for byte, that close-delimited bodies reach HTTP/1.1
# clients chunked without closing their connection, that interim responses are
# dropped, and that HTTP/1.0 clients get no chunked encoding. Afterwards the
# dispatcher holds no client connection and lab down finds no sanitizer report.
# Root only (exit 77 otherwise).
# shellcheck disable=SC2016 # '$QD_URL' expands in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVER_PY=$QD_SOURCE/tests/clients/framing_server.py
CHECK_PY=$QD_SOURCE/tests/clients/framing_check.py
COORD=10.213.0.201:8080
SERVER_PID=""

require_lab
require_tools jq curl python3
TMP=$(mktemp -d)
cleanup_hook() {
	[[ -z $SERVER_PID ]] || kill_wait "$SERVER_PID"
}
lab_cleanup_traps

step "lab up --coordinators 1"
"$LAB" up --coordinators 1

step "coordinator $COORD handed from the simulator to the framing server"
lab_exec curl -sS -m 5 -X POST "http://$COORD/v1/simulator/kill?coordinator=$COORD" >/dev/null ||
	fail "the simulator's kill endpoint did not answer"
ip netns exec qd-coord python3 "$SERVER_PY" --listen "$COORD" >"$TMP/framing_server.log" 2>&1 &
SERVER_PID=$!
retry 10 lab_exec curl -sf -m 2 -o /dev/null "http://$COORD/frame/nocontent" ||
	fail "the framing server does not answer on $COORD"

step "responses in every framing through the dispatcher"
QD_URL=$(lab_exec sh -c 'echo "$QD_URL"')
lab_exec python3 "$CHECK_PY" --server "$QD_URL" | tee "$TMP/check.out" ||
	fail "a framing case failed (the FAIL line above says which)"
[[ $(grep -c '^ok ' "$TMP/check.out") -eq 7 ]] || fail "not every case ran"

step "the dispatcher counted the exchanges and holds no client"
snapshot after
fwd=$(jq '.totals.proxy.responses_forwarded' "$TMP/after.json")
[[ $fwd -ge 8 ]] || fail "responses_forwarded is $fwd, expected at least 8"
QUIET_NOW=""
retry 30 proxy_quiet || fail "the proxy is not quiet: $QUIET_NOW"

kill_wait "$SERVER_PID"
SERVER_PID=""
lab_down_checked
echo "PASS"
