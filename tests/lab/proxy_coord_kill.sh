#!/usr/bin/env bash
# proxy_coord_kill: a coordinator dies under running queries. The lab runs 3
# simulated coordinators; 36 trino-client queries, all at once, are held
# RUNNING for 8 s (sim run_ms) through QD_URL; once the simulator counts all 36
# running, spread over the 3 coordinators, coordinator 2 is killed (the
# simulator's kill endpoint: its listener closes, its connections reset, its
# queries are forgotten). Checks: exactly the queries that coordinator was
# running fail, all with one id suffix (that coordinator's), each with an error
# that names the coordinator (its address) in a FAILED QueryResults; every other
# query returns all its rows. Then 60 new queries with trino-client and 60 with
# presto-client all succeed, none of them on the dead coordinator. Then it is
# revived and within 30 s new queries reach it again. Afterwards qdispatchd
# holds no client connection and its backends are idle; lab down finds no
# sanitizer report. Root only (exit 77 otherwise).
#
# Environment (all optional):
#   QD_BUILD, QD_SOURCE   as for every lab test
#   QD_PROXY_TARGET       dispatcher (default), or coordinators: each client
#                         process talks to one coordinator directly (no
#                         dispatcher); the dead coordinator's clients then see
#                         connection errors and new queries go to the live ones
#                         only -- proves the simulator's kill/revive and this
#                         script on their own
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN_QUERIES=$QD_SOURCE/tests/clients/run_queries.mjs
TARGET_MODE=${QD_PROXY_TARGET:-dispatcher}
COORDS=3
VICTIM=2 # 1-based
HELD=36
RUN_MS=8000
AFTER=60
# GET /v1/simulator/stats (docs/coordsim.md): totals; one coordinator's
# counters given its "IP:PORT" as $c. Keep in step with proxy_clients.sh.
SIM_TOTAL_JQ='.total'
SIM_COORD_JQ='.coordinators[$c]'
RUN_PID=""

require_lab
require_tools jq node curl
[[ -f $QD_SOURCE/tests/clients/node_modules/trino-client/package.json ]] ||
	fail "tests/clients/node_modules is not installed (run scripts/deps)"
[[ $TARGET_MODE == dispatcher || $TARGET_MODE == coordinators ]] ||
	fail "QD_PROXY_TARGET must be dispatcher or coordinators"

cleanup_hook() { [[ -z $RUN_PID ]] || kill_wait "$RUN_PID"; }
lab_cleanup_traps
TMP=$(mktemp -d)

step "lab up --coordinators $COORDS"
"$LAB" up --coordinators "$COORDS"
QD_URL=$(lab_exec sh -c 'echo "$QD_URL"')
IFS=, read -r -a COORD_URLS <<<"$(lab_exec sh -c 'echo "$QD_COORDINATORS"')"
[[ ${#COORD_URLS[@]} -eq $COORDS ]] || fail "QD_COORDINATORS has ${#COORD_URLS[@]} URLs, expected $COORDS"
SIM=${COORD_URLS[0]}
VICTIM_ADDR=${COORD_URLS[$((VICTIM - 1))]#http://}
COORDS_JSON=$(printf '%s\n' "${COORD_URLS[@]#http://}" | jq -R . | jq -s -c .)
echo "dispatcher $QD_URL, coordinators ${COORD_URLS[*]}, victim $VICTIM_ADDR, clients -> $TARGET_MODE"

sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }
sim_stats_now() { SIM_STATS=$(sim GET /v1/simulator/stats); }
# sim_jq EXPR: EXPR over the stats with $t the totals, $k[K-1] coordinator K.
sim_jq() {
	jq -c --argjson coords "$COORDS_JSON" \
		"($SIM_TOTAL_JQ) as \$t | [\$coords[] as \$c | $SIM_COORD_JQ] as \$k | $1" <<<"$SIM_STATS"
}

# run_queries OUT ARGS...: the clients, against QD_URL or (coordinators mode)
# one process per coordinator in COORD_SET, merged into OUT (.json).
COORD_SET=(1 2 3)
run_queries() {
	local out=$1 i pids=() parts=() rc=0
	shift
	if [[ $TARGET_MODE == dispatcher ]]; then
		lab_exec timeout 300 node "$RUN_QUERIES" --server "$QD_URL" --json --details "$@" \
			>"$out" 2>"$out.log" || rc=$?
	else
		for i in "${COORD_SET[@]}"; do
			lab_exec timeout 300 node "$RUN_QUERIES" --server "${COORD_URLS[$((i - 1))]}" \
				--json --details "$@" >"$out.$i" 2>>"$out.log" &
			pids+=($!)
			parts+=("$out.$i")
		done
		for i in "${pids[@]}"; do wait "$i" || rc=$?; done
		jq -s '{queries: (map(.queries) | add), ok: (map(.ok) | add),
			failed: (map(.failed) | add), mismatches: (map(.mismatches) | add),
			rows: (map(.rows) | add), errors: (map(.errors) | add),
			details: (map(.details) | add), pass: (map(.pass) | all)}' \
			"${parts[@]}" >"$out" || true
	fi
	[[ -s $out ]] || fail "run_queries exited $rc without a summary: $(tail -n 20 "$out.log")"
	jq -c '{queries, ok, failed, mismatches, rows, pass}' "$out"
	return "$rc"
}

# per-process query counts in coordinators mode: N spread over COORD_SET
per_process() { echo $(($1 / ${#COORD_SET[@]})); }

step "reset the simulator; $HELD queries held RUNNING ${RUN_MS} ms, all at once"
sim POST /v1/simulator/reset >/dev/null || fail "POST /v1/simulator/reset failed"
if [[ $TARGET_MODE == dispatcher ]]; then
	n=$HELD
	conc=$HELD
else
	n=$(per_process "$HELD")
	conc=$n
fi
run_queries "$TMP/held.json" --client trino --queries "$n" --concurrency "$conc" --rows 5 \
	--page-rows 5 --sim "run_ms=$RUN_MS" --allow-failures --timeout-s 120 &
RUN_PID=$!

all_running() {
	sim_stats_now || return 1
	[[ $(sim_jq "\$t.running_now == $HELD and all(\$k[]; .running_now > 0)") == true ]]
}
retry $((RUN_MS / 1000 - 2)) all_running ||
	fail "the simulator does not count $HELD queries running on all 3 coordinators:" \
		"$(sim_jq '{total: $t.running_now, per: [$k[].running_now]}')"
victim_running=$(sim_jq "\$k[$((VICTIM - 1))].running_now")
victim_suffix=$(sim_jq "\$k[$((VICTIM - 1))].suffix" | tr -d '"')
echo "running per coordinator: $(sim_jq '[$k[].running_now]'); killing $VICTIM_ADDR ($victim_running running)"
sim POST "/v1/simulator/kill?coordinator=$VICTIM_ADDR" >/dev/null || fail "the simulator's kill endpoint failed"

step "the victim's $victim_running queries fail naming it, the others finish"
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=""
held=$TMP/held.json
jq -e '.mismatches == 0' "$held" >/dev/null || {
	jq -c '.errors[]' "$held" >&2
	fail "queries returned wrong rows or states around the kill"
}
failed=$(jq '.failed' "$held")
ok=$(jq '.ok' "$held")
jq -c '.details[] | select(.outcome != "ok") | {id, outcome, error}' "$held" | head -n 5
[[ $failed -eq $victim_running && $ok -eq $((HELD - victim_running)) ]] ||
	fail "$failed queries failed and $ok finished; the victim was running $victim_running of $HELD"
# The query ids end in a suffix per coordinator: the failures share one that
# no finished query has.
suffixes=$(jq -r '[.details[] | select(.outcome == "failed") | .id // "none" | .[-5:]] | unique | join(",")' "$held")
[[ $suffixes == "$victim_suffix" ]] ||
	fail "the failed queries have id suffixes '$suffixes', expected the victim's $victim_suffix only"
sim_stats_now || fail "GET /v1/simulator/stats failed"
[[ $(sim_jq "\$k[$((VICTIM - 1))].lost") == "$victim_running" ]] ||
	fail "the simulator counts $(sim_jq "\$k[$((VICTIM - 1))].lost") queries lost by the kill, expected $victim_running"
[[ $(sim_jq '[$k[].running_now] | add') == 0 ]] ||
	fail "queries still running on the live coordinators: $(sim_jq '[$k[].running_now]')"
jq -e --arg s "$suffixes" 'all(.details[] | select(.outcome == "ok"); .id[-5:] != $s)' "$held" >/dev/null ||
	fail "a finished query has the dead coordinator's id suffix $suffixes"
if [[ $TARGET_MODE == dispatcher ]]; then
	jq -e --arg ip "${VICTIM_ADDR%:*}" \
		'all(.details[] | select(.outcome == "failed"); (.error | contains($ip)) and (.error | contains("FAILED")))' \
		"$held" >/dev/null || {
		jq -c '.details[] | select(.outcome == "failed") | .error' "$held" | sort | uniq -c >&2
		fail "not every failed query got a FAILED QueryResults whose error names ${VICTIM_ADDR%:*}"
	}
fi

step "$AFTER trino-client and $AFTER presto-client queries, all on the live coordinators"
sim POST /v1/simulator/reset >/dev/null || fail "POST /v1/simulator/reset failed"
COORD_SET=(1 3)
for lib in trino presto; do
	n=$AFTER
	[[ $TARGET_MODE == dispatcher ]] || n=$(per_process "$AFTER")
	run_queries "$TMP/after-$lib.json" --client "$lib" --queries "$n" --concurrency 12 \
		--rows 25 --page-rows 10 --check-info ||
		{ jq -c '.errors[:10][]' "$TMP/after-$lib.json" >&2; fail "$lib-client: queries failed with coordinator $VICTIM dead"; }
done
sim_stats_now || fail "GET /v1/simulator/stats failed"
echo "submitted per coordinator: $(sim_jq '[$k[].submitted]')"
[[ $(sim_jq "\$k[$((VICTIM - 1))].submitted") == 0 ]] ||
	fail "the dead coordinator counts $(sim_jq "\$k[$((VICTIM - 1))].submitted") queries submitted"
sent=$(jq -s 'map(.queries) | add' "$TMP/after-trino.json" "$TMP/after-presto.json")
[[ $(sim_jq '[$k[] | .submitted] | add') == "$sent" ]] ||
	fail "the live coordinators count $(sim_jq '[$k[].submitted] | add') queries, $sent were sent"

step "revive $VICTIM_ADDR: new queries reach it again within 30 s"
sim POST "/v1/simulator/revive?coordinator=$VICTIM_ADDR" >/dev/null || fail "the simulator's revive endpoint failed"
sim POST /v1/simulator/reset >/dev/null || fail "POST /v1/simulator/reset failed"
COORD_SET=(1 2 3)
victim_used() {
	run_queries "$TMP/revived.json" --client trino --queries 9 --concurrency 3 --rows 3 \
		--page-rows 3 >/dev/null || fail "queries failed after the revive: $(jq -c '.errors[:5]' "$TMP/revived.json")"
	sim_stats_now || return 1
	[[ $(sim_jq "\$k[$((VICTIM - 1))].submitted > 0") == true ]]
}
retry 30 victim_used || fail "30 s after the revive no query reached $VICTIM_ADDR: $(sim_jq '[$k[].submitted]')"
echo "submitted per coordinator: $(sim_jq '[$k[].submitted]')"

if [[ $TARGET_MODE == dispatcher ]]; then
	step "qdispatchd is up: no client connection, backends idle"
	"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
	QUIET_NOW=""
	retry 30 proxy_quiet || fail "qdispatchd's proxy is not quiet 30 s after the run: $QUIET_NOW"
fi

lab_down_checked
echo "PASS"
