#!/usr/bin/env bash
# health: the active health checks of the coordinators and drain/undrain,
# seen through qdctl. The lab runs 3 simulated coordinators with the default
# health settings (every 500 ms, timeout 1000 ms, rise 2, fall 2). Checks: all
# 3 come up in `qdctl --json` (.coordinator_table) with their load; coordinator
# 2 is killed through the simulator (its port refuses, its connections reset)
# and is down in less than DOWN_MAX_MS (the measured time is printed); drain and
# undrain through qdctl (table and --json), with clear errors for an address
# that is not a coordinator and for a malformed one; the victim is revived and
# comes back up (still drained until undrained); the others never changed
# state. While the victim is down, 30 queries all succeed and the proxy does not
# even try to connect to it; once back, it takes its share of 60 queries.
# Lab down finds no sanitizer report. Root only (exit 77 otherwise).
#
# Environment (all optional): QD_BUILD, QD_SOURCE as for every lab test;
#   DOWN_MAX_MS  the bound of kill -> down (default 2000)
#   QD_LAB_WORKERS  worker lcores of the dispatcher (default: the lab's); with
#                several, each checks its share of the coordinators
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
COORDS=3
VICTIM=2   # 1-based; the simulator is asked through coordinator 1
OTHER=3    # drained and undrained while up
DOWN_MAX_MS=${DOWN_MAX_MS:-2000}
QDCTL=$QD_BUILD/control/qdctl

require_lab
require_tools jq curl node
[[ -x $QDCTL ]] || fail "$QDCTL is not built"

lab_cleanup_traps
TMP=$(mktemp -d)

lab_args=(--coordinators "$COORDS")
[[ -z ${QD_LAB_WORKERS:-} ]] || lab_args+=(--workers "$QD_LAB_WORKERS")
step "lab up ${lab_args[*]}"
"$LAB" up "${lab_args[@]}"
IFS=, read -r -a COORD_URLS <<<"$(lab_exec sh -c 'echo "$QD_COORDINATORS"')"
[[ ${#COORD_URLS[@]} -eq $COORDS ]] || fail "QD_COORDINATORS has ${#COORD_URLS[@]} URLs, expected $COORDS"
ADDRS=("${COORD_URLS[@]#http://}")
SIM=${COORD_URLS[0]}
VICTIM_ADDR=${ADDRS[$((VICTIM - 1))]}
OTHER_ADDR=${ADDRS[$((OTHER - 1))]}
# The control socket is a file on the host: qdctl straight from here answers in
# a few ms, which the down-time measurement needs (lab exec costs more).
SOCK=$(lab_exec sh -c 'echo "$QD_CTL_SOCKET"')
[[ -S $SOCK ]] || fail "the control socket '$SOCK' of peer 1 is not a socket"
qdctl() { "$QDCTL" -s "$SOCK" "$@"; }
echo "coordinators ${ADDRS[*]}, victim $VICTIM_ADDR"

sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }
# TABLE: .coordinators of `qdctl --json coordinators`; coord ADDR JQ: JQ on one entry.
table_now() { TABLE=$(qdctl --json coordinators) || return 1; }
coord() { jq -r --arg a "$1" ".coordinators[] | select(.coordinator == \$a) | $2" <<<"$TABLE"; }
health_is() { table_now && [[ $(coord "$1" .health) == "$2" ]]; }

step "all $COORDS coordinators up in qdctl --json (.coordinator_table)"
all_up() {
	snapshot now || return 1
	[[ $(jq '[.coordinator_table[]? | select(.health == "up")] | length' <<<"$STATUS") == "$COORDS" ]]
}
retry 15 all_up || fail "not every coordinator is up 15 s after lab up:" \
	"$(jq -c '.coordinator_table' <<<"$STATUS")"
jq -e --argjson n "$COORDS" '(.coordinators | length == $n) and all(.coordinators[]; type == "string")' \
	<<<"$STATUS" >/dev/null || fail "status .coordinators is no longer the list of addresses: $(jq -c .coordinators <<<"$STATUS")"
jq -e 'all(.coordinator_table[]; .drained == false and .usable == true and .weight >= 1
	and .checks_ok >= 1 and (.cluster_running | type) == "number"
	and (.cluster_queued | type) == "number" and .transitions >= 1
	and (.since_change_ms | type) == "number")' <<<"$STATUS" >/dev/null ||
	fail "unexpected coordinator entries: $(jq -c .coordinator_table <<<"$STATUS")"
qdctl coordinators | tee "$TMP/table.txt"
grep -q '^ADDRESS .*WEIGHT .*HEALTH .*DRAINED .*USABLE .*RUNNING .*QUEUED .*INFLIGHT .*CHECKS(ok/failed) .*LAST-ERROR' \
	"$TMP/table.txt" || fail "qdctl coordinators has no header line"
[[ $(grep -cE '^[0-9.]+:[0-9]+ +[0-9]+ up ' "$TMP/table.txt") -eq $COORDS ]] || fail "qdctl coordinators does not show $COORDS coordinators up"

step "checks go on every interval"
table_now || fail "qdctl --json coordinators failed"
BASE=$TABLE # transitions and failures from here on are the test's
base() { jq -r --arg a "$1" ".coordinators[] | select(.coordinator == \$a) | $2" <<<"$BASE"; }
ok_before=$(coord "$VICTIM_ADDR" .checks_ok)
sleep 2
table_now || fail "qdctl --json coordinators failed"
ok_after=$(coord "$VICTIM_ADDR" .checks_ok)
echo "checks of $VICTIM_ADDR in 2 s: $((ok_after - ok_before))"
[[ $((ok_after - ok_before)) -ge 3 && $((ok_after - ok_before)) -le 6 ]] ||
	fail "$((ok_after - ok_before)) checks of $VICTIM_ADDR passed in 2 s, expected about 4"

step "kill $VICTIM_ADDR: down within $DOWN_MAX_MS ms"
t0=$(date +%s%N)
sim POST "/v1/simulator/kill?coordinator=$VICTIM_ADDR" >/dev/null || fail "the simulator's kill endpoint failed"
t_killed=$(date +%s%N)
down=""
while (($(date +%s%N) - t0 < 5000000000)); do
	if health_is "$VICTIM_ADDR" down; then
		down=$(date +%s%N)
		break
	fi
	sleep 0.02
done
[[ -n $down ]] || fail "$VICTIM_ADDR is not down 5 s after the kill: $(coord "$VICTIM_ADDR" '.')"
down_ms=$(((down - t0) / 1000000))
echo "down after ${down_ms} ms (the kill request itself took $(((t_killed - t0) / 1000000)) ms);" \
	"last error: $(coord "$VICTIM_ADDR" .last_error)"
[[ $down_ms -lt $DOWN_MAX_MS ]] || fail "$VICTIM_ADDR went down after $down_ms ms, expected < $DOWN_MAX_MS ms"
coord "$VICTIM_ADDR" '.' >"$TMP/victim-down.json"
jq -e --argjson t "$(base "$VICTIM_ADDR" .transitions)" --argjson f "$(base "$VICTIM_ADDR" .checks_failed)" \
	'.usable == false and .checks_failed >= $f + 2 and .transitions == $t + 1 and .last_error != ""' \
	"$TMP/victim-down.json" >/dev/null || fail "unexpected entry of the dead coordinator: $(jq -c . "$TMP/victim-down.json")"
qdctl coordinators

step "while $VICTIM_ADDR is down, queries avoid it (not even a connection attempt)"
RUN_QUERIES=$QD_SOURCE/tests/clients/run_queries.mjs
# queries N: N queries through the dispatcher; POSTS: what each coordinator received
queries() {
	sim POST /v1/simulator/reset >/dev/null
	lab_exec node "$RUN_QUERIES" --json --queries "$1" --concurrency 6 --rows 3 --page-rows 2 \
		>"$TMP/run.json" || fail "run_queries: $(jq -c '.errors[:3]' "$TMP/run.json")"
	local stats a
	stats=$(sim GET /v1/simulator/stats)
	POSTS=()
	for a in "${ADDRS[@]}"; do POSTS+=("$(jq --arg a "$a" '.coordinators[$a].posts // 0' <<<"$stats")"); done
	echo "posts per coordinator: ${POSTS[*]}"
}
snapshot before_down_run
queries 30
snapshot after_down_run
[[ ${POSTS[$((VICTIM - 1))]} -eq 0 ]] || fail "the dead coordinator got ${POSTS[$((VICTIM - 1))]} queries"
failed=$(delta before_down_run after_down_run .totals.proxy.backend_connect_failed)
[[ $failed -eq 0 ]] || fail "the proxy still tried the dead coordinator: $failed connections failed"

step "drain and undrain through qdctl"
out=$(qdctl drain "$VICTIM_ADDR") || fail "qdctl drain $VICTIM_ADDR failed: $out"
echo "$out"
grep -q "drained" <<<"$out" || fail "qdctl drain printed '$out'"
js=$(qdctl --json drain "$OTHER_ADDR") || fail "qdctl --json drain $OTHER_ADDR failed"
jq -e --arg a "$OTHER_ADDR" '.coordinator == $a and .drained == true and .usable == false and
	.health == "up" and .changed == true' <<<"$js" >/dev/null ||
	fail "qdctl --json drain $OTHER_ADDR answered $js"
js=$(qdctl --json drain "$OTHER_ADDR") || fail "a second drain of $OTHER_ADDR failed"
jq -e '.changed == false and .drained == true' <<<"$js" >/dev/null || fail "a second drain answered $js"
table_now || fail "qdctl --json coordinators failed"
[[ $(coord "$VICTIM_ADDR" .drained) == true && $(coord "$OTHER_ADDR" .drained) == true &&
	$(coord "${ADDRS[0]}" .drained) == false ]] || fail "drained flags wrong: $TABLE"
qdctl coordinators | tee "$TMP/table.txt"
grep -E "^$OTHER_ADDR +[0-9]+ up +yes +no " "$TMP/table.txt" >/dev/null ||
	fail "qdctl coordinators does not show $OTHER_ADDR up, drained, not usable"
js=$(qdctl --json undrain "$OTHER_ADDR") || fail "qdctl --json undrain $OTHER_ADDR failed"
jq -e '.drained == false and .usable == true and .changed == true' <<<"$js" >/dev/null ||
	fail "qdctl --json undrain $OTHER_ADDR answered $js"

step "clear errors: an address that is not a coordinator, a malformed one"
rc=0
err=$(qdctl drain 10.213.0.250:8080 2>&1) || rc=$?
echo "$err"
[[ $rc -eq 1 ]] || fail "qdctl drain of an unknown address exited $rc, expected 1"
if ! grep -q "not a configured coordinator" <<<"$err" || ! grep -q "$VICTIM_ADDR" <<<"$err"; then
	fail "the error does not say it is not a coordinator and list the configured ones: $err"
fi
rc=0
err=$(qdctl undrain not-an-address 2>&1) || rc=$?
echo "$err"
[[ $rc -eq 2 ]] || fail "qdctl undrain not-an-address exited $rc, expected 2 (usage)"
rc=0
err=$(qdctl drain 2>&1) || rc=$?
[[ $rc -eq 2 ]] || fail "qdctl drain without an address exited $rc, expected 2"

step "revive $VICTIM_ADDR: up again (rise 2), still drained until undrained"
t0=$(date +%s%N)
sim POST "/v1/simulator/revive?coordinator=$VICTIM_ADDR" >/dev/null || fail "the simulator's revive endpoint failed"
retry 10 health_is "$VICTIM_ADDR" up || fail "$VICTIM_ADDR is not up 10 s after the revive: $(coord "$VICTIM_ADDR" '.')"
echo "up after $((($(date +%s%N) - t0) / 1000000)) ms"
table_now || fail "qdctl --json coordinators failed"
[[ $(coord "$VICTIM_ADDR" .usable) == false &&
	$(coord "$VICTIM_ADDR" .transitions) == $(($(base "$VICTIM_ADDR" .transitions) + 2)) ]] ||
	fail "the revived, drained coordinator: $(coord "$VICTIM_ADDR" '.')"
qdctl undrain "$VICTIM_ADDR" || fail "qdctl undrain $VICTIM_ADDR failed"
table_now || fail "qdctl --json coordinators failed"
jq -e 'all(.coordinators[]; .health == "up" and .drained == false and .usable == true)' \
	<<<"$TABLE" >/dev/null || fail "not every coordinator usable at the end: $TABLE"
step "the revived coordinator takes queries again"
queries 60
[[ ${POSTS[$((VICTIM - 1))]} -ge 5 ]] || fail "the revived coordinator got only ${POSTS[$((VICTIM - 1))]} of 60 queries"
for a in "${ADDRS[0]}" "$OTHER_ADDR"; do
	[[ $(coord "$a" .transitions) == $(base "$a" .transitions) &&
		$(coord "$a" .checks_failed) == $(base "$a" .checks_failed) ]] ||
		fail "$a changed state or failed checks although it stayed alive: $(coord "$a" '.')"
done
qdctl coordinators

"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
lab_down_checked
echo "PASS"
