#!/usr/bin/env bash
# crash: qdispatchd killed -9 under load and started again from its state log
# (state.dir, a snapshot every 10 records). 12 queries run through the
# dispatcher with slow data pages
# (tests/clients/crash_client.py polls like the Trino CLI: a poll that fails on
# the connection is retried with the same nextUri). In their middle the
# dispatcher gets SIGKILL and is started again (scripts/lab restart --kill).
# Checks: the restarted dispatcher replayed its log and routes all 12 queries
# again, holding their admission slots (the resource group's running count
# equals what the coordinators report running) and counting them in flight on
# their coordinators; every query then finishes through it with all its rows;
# afterwards nothing is running anywhere and the slots are back. Second round:
# the clients hold their polls, the dispatcher is killed and stays down 5 s while
# 4 queries are cancelled directly on their coordinators; after the restart the
# reconciler (GET /v1/query/{id}) ends exactly those 4 routes and releases their
# slots with no client poll, the 8 others finish normally. Then a clean restart
# (SIGTERM): the log is closed cleanly and nothing is restored twice.
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
# a snapshot every 10 records: the restart replays a snapshot and the records after it
"$LAB" up --coordinators 3 --workers 2 --resource-groups "$GROUPS_FILE" \
	--set "state.dir=$STATE" --set state.snapshot_every=10 >/dev/null
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
[[ $(jq .state_log.snapshots "$TMP/before.json") -ge 1 ]] ||
	fail "no snapshot was written before the crash: $(jq -c .state_log "$TMP/before.json")"
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

# The reconciler checked the restored queries with their coordinators: all still ran.
jq -c .totals.reconcile "$TMP/rest.json"
[[ $(jq '.totals.reconcile | .ended_gone + .ended_finished + .ended_failed + .given_up' \
	"$TMP/rest.json") -eq 0 && $(jq .totals.reconcile.done "$TMP/rest.json") == true ]] ||
	fail "the reconciliation ended queries that ran on: $(jq -c .totals.reconcile "$TMP/rest.json")"

step "a crash while queries are cancelled on the coordinators: the reconciler ends them"
# The same queries again. The clients stop polling (--hold-file), the dispatcher is killed
# and kept down (restart --down-s), and meanwhile $CANCEL of the queries are cancelled
# directly on their coordinators. After the restart only the reconciler can learn that:
# it must end exactly those routes (ended_failed: the simulator answers FAILED for a
# cancelled query) and give their slots back, before any client polls again.
CANCEL=4
HOLD=$TMP/hold
: >"$TMP/canceled"
lab_exec python3 "$CLIENT" --queries "$QUERIES" --rows 8 --page-ms 700 --ids-file "$TMP/ids" \
	--hold-file "$HOLD" --expect-canceled-file "$TMP/canceled" >"$TMP/client2.out" 2>&1 &
CLIENT_PID=$!
retry 30 grep -q "^running $QUERIES\$" "$TMP/client2.out" ||
	fail "the queries did not start: $(cat "$TMP/client2.out")"
[[ $(wc -l <"$TMP/ids") -eq $QUERIES ]] || fail "the client wrote no ids: $(cat "$TMP/ids")"
touch "$HOLD"
sleep 1 # the polls in flight (long polls of 200 ms) come back
canceled_before=$(sim GET /v1/simulator/stats | jq .total.canceled)
"$LAB" restart --kill --down-s 5 &
RESTART_PID=$!
sleep 1.5
COORDS=$(lab_exec sh -c 'echo "$QD_COORDINATORS"')
mapfile -t ids < <(head -n "$CANCEL" "$TMP/ids")
for id in "${ids[@]}"; do
	found=""
	for c in ${COORDS//,/ }; do
		code=$(lab_exec curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -I "$c/v1/query/$id")
		[[ $code == 200 ]] || continue
		lab_exec curl -sS --fail --max-time 5 -X DELETE "$c/v1/query/$id" >/dev/null ||
			fail "DELETE $c/v1/query/$id failed"
		found=$c
		break
	done
	[[ -n $found ]] || fail "no coordinator knows query $id"
	echo "$id" >>"$TMP/canceled"
done
kill -0 "$RESTART_PID" 2>/dev/null ||
	fail "the dispatcher was back before the cancellations were done (raise --down-s)"
wait "$RESTART_PID" || fail "scripts/lab restart --kill --down-s failed"
[[ $(($(sim GET /v1/simulator/stats | jq .total.canceled) - canceled_before)) -eq $CANCEL ]] ||
	fail "the coordinators did not cancel $CANCEL queries"
reconciled() {
	snapshot reconciled || return 1
	[[ $(jq .totals.reconcile.done <<<"$STATUS") == true ]]
}
retry 15 reconciled || fail "the reconciliation did not end: $(jq -c .totals.reconcile <<<"$STATUS")"
jq -c .totals.reconcile "$TMP/reconciled.json"
restored=$(jq .state_log.restored_routes "$TMP/reconciled.json")
left=$((QUERIES - CANCEL))
running=$(jq '.admission.groups[] | select(.name == "global") | .running' "$TMP/reconciled.json")
inflight=$(jq '[.coordinator_table[].inflight] | add' "$TMP/reconciled.json")
coord_running=$(sim GET /v1/simulator/stats | jq .total.running_now)
echo "restored $restored; reconciled: global running $running, in flight $inflight;" \
	"the coordinators run $coord_running"
[[ $restored -eq $QUERIES ]] || fail "restored $restored routes, not $QUERIES"
[[ $(jq '.totals.reconcile | [.ended_failed, .ended_finished, .ended_gone, .still_running, .given_up, .in_flight] | map(tostring) | join(" ")' -r \
	"$TMP/reconciled.json") == "$CANCEL 0 0 $left 0 0" ]] ||
	fail "the reconciler did not end exactly the $CANCEL cancelled queries: $(jq -c .totals.reconcile "$TMP/reconciled.json")"
[[ $(jq .routes.ended.failed "$TMP/reconciled.json") -eq $CANCEL ]] ||
	fail "routes ended failed: $(jq -c .routes "$TMP/reconciled.json")"
[[ $running -eq $left && $inflight -eq $left && $coord_running -eq $left ]] ||
	fail "the cancelled queries' slots did not come back: running $running, in flight $inflight"
[[ $(jq .totals.proxy.requests "$TMP/reconciled.json") -eq 0 ]] ||
	fail "a client polled during the reconciliation: $(jq .totals.proxy.requests "$TMP/reconciled.json") requests"

step "the clients poll again: the cancelled queries fail USER_CANCELED, the others finish"
rm -f "$HOLD"
rc=0
wait "$CLIENT_PID" || rc=$?
CLIENT_PID=""
tail -1 "$TMP/client2.out"
[[ $rc -eq 0 ]] || fail "queries did not end as expected: $(tail -1 "$TMP/client2.out")"
[[ $(tail -1 "$TMP/client2.out" | jq .canceled) -eq $CANCEL &&
	$(tail -1 "$TMP/client2.out" | jq .finished) -eq $left ]] ||
	fail "expected $CANCEL cancelled and $left finished: $(tail -1 "$TMP/client2.out")"
retry 15 at_rest || fail "not at rest: $(jq -c '{routes, admission: [.admission.groups[] | {name, running}]}' <<<"$STATUS")"
[[ $(sim GET /v1/simulator/stats | jq .total.running_now) -eq 0 ]] || fail "the coordinators still run queries"
[[ $(jq .routes.ended.finished "$TMP/rest.json") -eq $left &&
	$(jq .routes.ended.failed "$TMP/rest.json") -eq $CANCEL ]] ||
	fail "routes after the second crash: $(jq -c .routes "$TMP/rest.json")"

step "clean restart: the log closes cleanly, nothing comes back"
"$LAB" restart
snapshot clean
grep -q "closed cleanly" "$LAB_DIR/peer1.log" || fail "the state log was not closed cleanly: $(grep 'state log' "$LAB_DIR/peer1.log")"
[[ $(jq .state_log.restored_routes "$TMP/clean.json") -eq 0 ]] ||
	fail "queries that ended came back: $(jq -c .state_log "$TMP/clean.json")"

lab_down_checked
echo "PASS"
