#!/usr/bin/env bash
# seed: the seed log (state.dir) through dispatcher restarts. The lab runs 3
# simulated coordinators but the dispatcher's config lists only the first 2
# (--configured-coordinators 2). Checks: `qdctl coordinators add` of the third
# is durable ("durable": true), refused a second time, the new coordinator is
# health checked, comes up and takes its share of 30 queries; coordinator 1 is
# drained; after a crash (SIGKILL, `scripts/lab restart --kill`) the added
# coordinator is still there at the same index, up and taking queries, and
# coordinator 1 still drained (and takes none); `qdctl coordinators remove`
# of the third takes it out (no queries, "removed"); after a clean restart
# (SIGTERM) it is still removed and unchecked; adding it back gives it its old
# index and it takes queries again. The dispatcher's log says what it
# replayed. Lab down finds no sanitizer report. Root only (exit 77 otherwise).
#
# The state directory is kept outside the lab's directory (which `lab down`
# removes) and deleted at the end: STATE_DIR (default
# /run/qdispatch/seed-test-state). Environment as for every lab test
# (QD_BUILD, QD_SOURCE).
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
COORDS=3
CONFIGURED=2
STATE_DIR=${STATE_DIR:-/run/qdispatch/seed-test-state}
QDCTL=$QD_BUILD/control/qdctl
RUN_QUERIES=$QD_SOURCE/tests/clients/run_queries.mjs

require_lab
require_tools jq curl node
[[ -x $QDCTL ]] || fail "$QDCTL is not built"
[[ $STATE_DIR == /* && $STATE_DIR != "$LAB_DIR"* ]] ||
	fail "STATE_DIR must be an absolute path outside $LAB_DIR (lab down removes that)"

cleanup_hook() { rm -rf -- "$STATE_DIR"; }
lab_cleanup_traps
TMP=$(mktemp -d)
rm -rf -- "$STATE_DIR"

step "lab up --coordinators $COORDS --configured-coordinators $CONFIGURED, state.dir $STATE_DIR"
"$LAB" up --coordinators "$COORDS" --configured-coordinators "$CONFIGURED" \
	--set "state.dir=$STATE_DIR"
IFS=, read -r -a COORD_URLS <<<"$(lab_exec sh -c 'echo "$QD_COORDINATORS"')"
[[ ${#COORD_URLS[@]} -eq $COORDS ]] || fail "QD_COORDINATORS has ${#COORD_URLS[@]} URLs, expected $COORDS"
ADDRS=("${COORD_URLS[@]#http://}")
SIM=${COORD_URLS[0]}
FIRST=${ADDRS[0]}
NEW=${ADDRS[2]}
SOCK=$(lab_exec sh -c 'echo "$QD_CTL_SOCKET"')
PEER_LOG=$LAB_DIR/peer1.log
qdctl() { "$QDCTL" -s "$SOCK" "$@"; }
sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }
table_now() { TABLE=$(qdctl --json coordinators) || return 1; }
coord() { jq -r --arg a "$1" ".coordinators[] | select(.coordinator == \$a) | $2" <<<"$TABLE"; }
health_is() { table_now && [[ $(coord "$1" .health) == "$2" ]]; }
# queries N: N queries through the dispatcher; POSTS: what each coordinator received
queries() {
	sim POST /v1/simulator/reset >/dev/null
	lab_exec node "$RUN_QUERIES" --json --queries "$1" --concurrency 6 --rows 3 --page-rows 2 \
		>"$TMP/run.json" || fail "run_queries: $(jq -c '.errors[:3]' "$TMP/run.json")"
	local stats a
	stats=$(sim GET /v1/simulator/stats)
	POSTS=()
	for a in "${ADDRS[@]}"; do POSTS+=("$(jq --arg a "$a" '.coordinators[$a].posts // 0' <<<"$stats")"); done
	echo "posts per coordinator (${ADDRS[*]}): ${POSTS[*]}"
}
all_up() {
	table_now && [[ $(jq "[.coordinators[] | select(.health == \"up\")] | length" <<<"$TABLE") == "$1" ]]
}

step "the dispatcher knows $CONFIGURED coordinators; changes are durable"
retry 15 all_up "$CONFIGURED" || fail "not $CONFIGURED coordinators up: $TABLE"
jq -e --argjson n "$CONFIGURED" '(.coordinators | length) == $n and .durable == true and
	all(.coordinators[]; .removed == false)' <<<"$TABLE" >/dev/null ||
	fail "unexpected table: $TABLE"
[[ -d $STATE_DIR/seed ]] || fail "no seed log directory $STATE_DIR/seed"

step "qdctl coordinators add $NEW"
out=$(qdctl coordinators add "$NEW") || fail "qdctl coordinators add $NEW failed: $out"
echo "$out"
grep -q "added at index $CONFIGURED" <<<"$out" || fail "qdctl coordinators add printed '$out'"
grep -q "kept across restarts" <<<"$out" || fail "the add is not reported durable: '$out'"
rc=0
err=$(qdctl coordinators add "$NEW" 2>&1) || rc=$?
echo "$err"
if [[ $rc -ne 1 ]] || ! grep -q "already a coordinator" <<<"$err"; then
	fail "a second add exited $rc: $err"
fi
rc=0
err=$(qdctl coordinators add 10.213.0.250 2>&1) || rc=$?
[[ $rc -eq 2 ]] || fail "qdctl coordinators add without a port exited $rc, expected 2: $err"
retry 10 health_is "$NEW" up || fail "$NEW is not up 10 s after the add: $(coord "$NEW" '.')"
qdctl coordinators

step "$NEW takes queries"
queries 30
[[ ${POSTS[2]} -ge 3 ]] || fail "the added coordinator got ${POSTS[2]} of 30 queries"

step "drain $FIRST (durable)"
js=$(qdctl --json drain "$FIRST") || fail "qdctl drain $FIRST failed"
jq -e '.drained == true and .changed == true and .durable == true' <<<"$js" >/dev/null ||
	fail "qdctl --json drain answered $js"

step "crash and restart the dispatcher (SIGKILL)"
"$LAB" restart --kill
grep "seed log" "$PEER_LOG" | tail -n 3
grep -q "seed log .*2 record(s) replayed: 1 coordinator(s) added.* 1 drained" "$PEER_LOG" ||
	fail "the dispatcher's log does not say it replayed the add and the drain"

step "after the crash: $NEW still there (index $CONFIGURED, up), $FIRST still drained"
retry 15 all_up "$COORDS" || fail "not $COORDS coordinators up after the restart: $TABLE"
[[ $(jq -r ".coordinators[$CONFIGURED].coordinator" <<<"$TABLE") == "$NEW" ]] ||
	fail "$NEW is not at index $CONFIGURED after the restart: $TABLE"
[[ $(coord "$FIRST" .drained) == true && $(coord "$FIRST" .usable) == false ]] ||
	fail "$FIRST is not drained after the restart: $(coord "$FIRST" '.')"
queries 30
[[ ${POSTS[0]} -eq 0 ]] || fail "the drained coordinator got ${POSTS[0]} queries"
[[ ${POSTS[2]} -ge 5 ]] || fail "the added coordinator got only ${POSTS[2]} of 30 queries after the restart"

step "qdctl coordinators remove $NEW"
out=$(qdctl coordinators remove "$NEW") || fail "qdctl coordinators remove $NEW failed: $out"
echo "$out"
grep -q "removed" <<<"$out" || fail "qdctl coordinators remove printed '$out'"
table_now || fail "qdctl --json coordinators failed"
[[ $(coord "$NEW" .removed) == true && $(coord "$NEW" .usable) == false ]] ||
	fail "$NEW is not removed: $(coord "$NEW" '.')"
qdctl coordinators | tee "$TMP/table.txt"
grep -qE "^$NEW +[0-9]+ removed " "$TMP/table.txt" || fail "qdctl coordinators does not show $NEW removed"
# Only the undrained configured coordinator is left for new queries.
queries 30
[[ ${POSTS[2]} -eq 0 ]] || fail "the removed coordinator got ${POSTS[2]} queries"

step "clean restart (SIGTERM): $NEW still removed and no longer checked"
"$LAB" restart
retry 15 health_is "${ADDRS[1]}" up || fail "${ADDRS[1]} is not up after the restart: $TABLE"
[[ $(jq '.coordinators | length' <<<"$TABLE") -eq $COORDS &&
	$(coord "$NEW" .removed) == true && $(coord "$FIRST" .drained) == true ]] ||
	fail "state after the second restart: $TABLE"
sleep 1.5
table_now || fail "qdctl --json coordinators failed"
jq -e --arg a "$NEW" '.coordinators[] | select(.coordinator == $a) |
	.health == "unknown" and .checks_ok == 0 and .checks_failed == 0' <<<"$TABLE" >/dev/null ||
	fail "the removed coordinator is checked: $(coord "$NEW" '.')"

step "add $NEW back: same index, takes queries; undrain $FIRST"
js=$(qdctl --json coordinators add "$NEW") || fail "adding $NEW back failed"
jq -e --argjson i "$CONFIGURED" '.added_back == true and .index == $i and .removed == false and
	.durable == true' <<<"$js" >/dev/null || fail "qdctl --json coordinators add answered $js"
qdctl undrain "$FIRST" || fail "qdctl undrain $FIRST failed"
retry 10 health_is "$NEW" up || fail "$NEW is not up 10 s after adding it back: $(coord "$NEW" '.')"
queries 30
[[ ${POSTS[0]} -ge 3 && ${POSTS[2]} -ge 3 ]] ||
	fail "after undrain and add-back: posts ${POSTS[*]}"

"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
lab_down_checked
rm -rf -- "$STATE_DIR"
echo "PASS"
