#!/usr/bin/env bash
# crash: qdispatchd killed -9 under load and started again from its state log
# (state.dir). 12 queries run through the dispatcher with slow data pages
# (tests/clients/crash_client.py polls like the Trino CLI: a poll that fails on
# the connection is retried with the same nextUri). In their middle the
# dispatcher gets SIGKILL and is started again (scripts/lab restart --kill).
# Checks: the restarted dispatcher replayed its log and routes all 12 queries
# again, holding their admission slots (the resource group's running count
# equals what the coordinators report running) and counting them in flight on
# their coordinators; every query then finishes through it with all its rows;
# afterwards nothing is running anywhere and the slots are back. Then a clean
# restart (SIGTERM): the log is closed cleanly and nothing is restored twice.
# Lab down finds no sanitizer report. Root only (exit 77 otherwise).
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GROUPS_FILE=$QD_SOURCE/scripts/demo-resource-groups.json
CLIENT=$QD_SOURCE/tests/clients/crash_client.py
STATE=/run/qdispatch/crash-test-state
QUERIES=12

require_lab
require_tools jq curl python3
lab_cleanup_traps
TMP=$(mktemp -d)
CLIENT_PID=""
cleanup_hook() {
	[[ -z $CLIENT_PID ]] || kill_wait "$CLIENT_PID"
	rm -rf "$STATE"
}

step "lab up with state.dir=$STATE"
"$LAB" down >/dev/null
rm -rf "$STATE"
"$LAB" up --coordinators 3 --workers 2 --resource-groups "$GROUPS_FILE" \
	--set "state.dir=$STATE" >/dev/null
SIM=$(lab_exec sh -c 'echo "${QD_COORDINATORS%%,*}"')
sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }
sim POST /v1/simulator/reset >/dev/null

step "$QUERIES queries with slow pages"
lab_exec python3 "$CLIENT" --queries "$QUERIES" --rows 8 --page-ms 700 >"$TMP/client.out" 2>&1 &
CLIENT_PID=$!
retry 30 grep -q "^running $QUERIES\$" "$TMP/client.out" ||
	fail "the queries did not start: $(cat "$TMP/client.out")"
snapshot before
echo "before the crash: routes live $(jq .routes.live "$TMP/before.json"), global running" \
	"$(jq '.admission.groups[] | select(.name == "global") | .running' "$TMP/before.json")"

step "kill -9 qdispatchd and start it again"
"$LAB" restart --kill
snapshot after
jq -c '.state_log' "$TMP/after.json"
restored=$(jq .state_log.restored_routes "$TMP/after.json")
slots=$(jq .state_log.restored_slots "$TMP/after.json")
running=$(jq '.admission.groups[] | select(.name == "global") | .running' "$TMP/after.json")
inflight=$(jq '[.coordinator_table[].inflight] | add' "$TMP/after.json")
coord_running=$(sim GET /v1/simulator/stats | jq .total.running_now)
echo "restored routes $restored (slots $slots); global running $running; in flight $inflight;" \
	"the coordinators run $coord_running"
[[ $restored -ge 1 && $restored -eq $coord_running ]] ||
	fail "restored $restored routes, but the coordinators run $coord_running queries"
[[ $slots -eq $restored && $running -eq $restored && $inflight -eq $restored ]] ||
	fail "admission/in-flight counts after the restart do not match the restored queries"

step "every query finishes through the restarted dispatcher"
rc=0
wait "$CLIENT_PID" || rc=$?
CLIENT_PID=""
tail -1 "$TMP/client.out"
[[ $rc -eq 0 ]] || fail "queries did not all finish: $(tail -1 "$TMP/client.out")"
[[ $(tail -1 "$TMP/client.out" | jq .retried_polls) -ge 1 ]] ||
	fail "no poll was retried: the crash did not happen in the queries' middle"

step "nothing left running, slots back"
at_rest() {
	snapshot rest || return 1
	[[ $(jq '[.admission.groups[].running] | add' <<<"$STATUS") -eq 0 &&
		$(jq .routes.live <<<"$STATUS") -eq 0 &&
		$(jq '[.coordinator_table[].inflight] | add' <<<"$STATUS") -eq 0 ]]
}
retry 15 at_rest || fail "not at rest: $(jq -c '{routes, admission: [.admission.groups[] | {name, running}]}' <<<"$STATUS")"
[[ $(sim GET /v1/simulator/stats | jq .total.running_now) -eq 0 ]] || fail "the coordinators still run queries"
jq -c .routes "$TMP/rest.json"
[[ $(jq '.routes.ended.finished' "$TMP/rest.json") -eq $restored ]] ||
	fail "the restarted dispatcher saw $(jq '.routes.ended.finished' "$TMP/rest.json") queries finish, not $restored: $(jq -c .routes "$TMP/rest.json")"

step "clean restart: the log closes cleanly, nothing comes back"
"$LAB" restart
snapshot clean
grep -q "closed cleanly" "$LAB_DIR/peer1.log" || fail "the state log was not closed cleanly: $(grep 'state log' "$LAB_DIR/peer1.log")"
[[ $(jq .state_log.restored_routes "$TMP/clean.json") -eq 0 ]] ||
	fail "queries that ended came back: $(jq -c .state_log "$TMP/clean.json")"

lab_down_checked
echo "PASS"
