#!/usr/bin/env bash
# proxy_clients: the real npm clients through qdispatchd's query proxy. The lab
# runs 3 simulated coordinators; trino-client, then presto-client, each run
# QD_PROXY_QUERIES queries (default 240, 24 at a time, spread over 4 users)
# through QD_URL, every 10th canceled after its first data page with the
# client's own cancel (trino-client: DELETE /v1/query/<id>; presto-client:
# DELETE <absolute nextUri>). Checks: every row of every query is the
# simulator's value (tests/clients/run_queries.mjs); the simulator counted
# exactly the queries sent (no POST lost or repeated), the cancellations as
# deletes and USER_CANCELED, nothing failed or abandoned, nothing left running,
# at most as many queries running at once as the clients had in flight; each
# of the 3 coordinators got at least a sixth of the queries; the users and the
# source reached the coordinators; qdctl counts the routes created and ended;
# afterwards qdispatchd holds no client connection, its backends are idle, its
# mbuf pool is back at its idle level; lab down finds no sanitizer report. Root only (exit 77 otherwise).
#
# Environment (all optional):
#   QD_BUILD, QD_SOURCE   as for every lab test
#   QD_PROXY_TARGET       dispatcher (default): the clients talk to QD_URL;
#                         coordinators: no dispatcher in the path, one client
#                         process per coordinator URL (a third of the queries
#                         each, all at once) -- proves the clients, the
#                         simulator and this script on their own
#   QD_PROXY_QUERIES      queries per client library (default 480)
#   QD_PROXY_CONCURRENCY  queries in flight per client library (default 240: the
#                         issue asks for at least 200 at once)
#   QD_PROXY_WORKERS      worker lcores of the dispatcher (default 2, so that
#                         follow-ups land on another lcore than their POST; the
#                         lab shares CPUs when there are fewer)
#   QD_PROXY_CLIENTS      the client libraries to run (default "trino presto")
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CLIENTS_DIR=$QD_SOURCE/tests/clients
RUN_QUERIES=$CLIENTS_DIR/run_queries.mjs
TARGET_MODE=${QD_PROXY_TARGET:-dispatcher}
QUERIES=${QD_PROXY_QUERIES:-480}
CONCURRENCY=${QD_PROXY_CONCURRENCY:-240}
WORKERS=${QD_PROXY_WORKERS:-2}
CLIENT_LIBS=${QD_PROXY_CLIENTS:-trino presto}
COORDS=3
USERS=4
ROWS=45
PAGE_ROWS=10
CANCEL_EVERY=10
SOURCE=qd-proxy-clients

# Where the numbers live; adjust here when a schema changes.
# qdctl --json of peer 1: the proxy's route table (query id -> coordinator).
ROUTES_CREATED_JQ='.routes.created'
ROUTES_ENDED_JQ='.routes.ended_total'
ROUTES_FINISHED_JQ='.routes.ended.finished'
ROUTES_CANCELED_JQ='.routes.ended.canceled'
ROUTES_ACTIVE_JQ='.routes.live'
# GET /v1/simulator/stats (docs/coordsim.md): the totals, and one coordinator
# address's counters given its "IP:PORT" as $c.
SIM_TOTAL_JQ='.total'
SIM_COORD_JQ='.coordinators[$c]'

require_lab
require_tools jq node curl
[[ -f $CLIENTS_DIR/node_modules/trino-client/package.json &&
	-f $CLIENTS_DIR/node_modules/presto-client/package.json ]] ||
	fail "$CLIENTS_DIR/node_modules is not installed (run scripts/deps)"
[[ $TARGET_MODE == dispatcher || $TARGET_MODE == coordinators ]] ||
	fail "QD_PROXY_TARGET must be dispatcher or coordinators"
[[ $QUERIES =~ ^[0-9]+$ && $QUERIES -ge $((COORDS * CANCEL_EVERY)) ]] ||
	fail "QD_PROXY_QUERIES must be a number >= $((COORDS * CANCEL_EVERY))"
[[ $CONCURRENCY =~ ^[0-9]+$ && $CONCURRENCY -ge $COORDS ]] ||
	fail "QD_PROXY_CONCURRENCY must be a number >= $COORDS"

lab_cleanup_traps
TMP=$(mktemp -d)

step "lab up --coordinators $COORDS --workers $WORKERS"
"$LAB" up --coordinators "$COORDS" --workers "$WORKERS"
QD_URL=$(lab_exec sh -c 'echo "$QD_URL"')
IFS=, read -r -a COORD_URLS <<<"$(lab_exec sh -c 'echo "$QD_COORDINATORS"')"
[[ ${#COORD_URLS[@]} -eq $COORDS ]] || fail "QD_COORDINATORS has ${#COORD_URLS[@]} URLs, expected $COORDS"
SIM=${COORD_URLS[0]}
echo "dispatcher $QD_URL, coordinators ${COORD_URLS[*]}, clients -> $TARGET_MODE"

# sim GET|POST PATH: a simulator control request from the client namespace.
sim() {
	lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"
}

# sim_check NAME Q JQ: succeed when the simulator stats (SIM_STATS) satisfy JQ,
# which sees the totals as $t, the counters of coordinator K as $k[K-1] and
# the JSON value Q as $q.
sim_check() {
	local coords_json
	coords_json=$(printf '%s\n' "${COORD_URLS[@]#http://}" | jq -R . | jq -s .)
	jq -e --argjson coords "$coords_json" --argjson q "$2" \
		"($SIM_TOTAL_JQ) as \$t | [\$coords[] as \$c | $SIM_COORD_JQ] as \$k | $3" \
		<<<"$SIM_STATS" >/dev/null
}

sim_stats_now() { SIM_STATS=$(sim GET /v1/simulator/stats); }

sim_idle() {
	sim_stats_now && sim_check idle 0 '$t.running_now == 0'
}

step "the simulator's stats answer, per coordinator"
sim_stats_now || fail "GET $SIM/v1/simulator/stats failed"
sim_check shape 0 '($t | type) == "object" and ($k | length) == 3 and all($k[]; type == "object")' || {
	echo "$SIM_STATS" >&2
	fail "simulator stats lack totals ($SIM_TOTAL_JQ) or per-coordinator counters" \
		"($SIM_COORD_JQ with \$c = IP:PORT): adjust SIM_*_JQ in $0"
}

if [[ $TARGET_MODE == dispatcher ]]; then
	pool_at_rest
	snapshot before || fail "qdctl --json failed"
	for jq_path in "$ROUTES_CREATED_JQ" "$ROUTES_ENDED_JQ" "$ROUTES_FINISHED_JQ" \
		"$ROUTES_CANCELED_JQ" "$ROUTES_ACTIVE_JQ"; do
		[[ $(jq -r "$jq_path | numbers" "$TMP/before.json") =~ ^[0-9]+$ ]] || {
			jq -c '.routes' "$TMP/before.json" >&2
			fail "qdctl --json has no number at $jq_path (the proxy's route counters):" \
				"adjust ROUTES_*_JQ in $0"
		}
	done
fi

# run_client LIB: run the queries of one client library, summary in
# $TMP/LIB.json (several processes' summaries merged in coordinators mode).
run_client() {
	local lib=$1 args i pids=() rc=0 per
	args=(--client "$lib" --rows "$ROWS" --page-rows "$PAGE_ROWS" --cancel-every "$CANCEL_EVERY"
		--user qd-user --users "$USERS" --source "$SOURCE" --sim "queue_ms=20 run_ms=20"
		--check-info --timeout-s 120 --json)
	if [[ $TARGET_MODE == dispatcher ]]; then
		lab_exec timeout 600 node "$RUN_QUERIES" "${args[@]}" --server "$QD_URL" \
			--queries "$QUERIES" --concurrency "$CONCURRENCY" \
			>"$TMP/$lib.json" 2>"$TMP/$lib.log" || rc=$?
	else
		per=$((QUERIES / COORDS))
		for i in "${!COORD_URLS[@]}"; do
			lab_exec timeout 600 node "$RUN_QUERIES" "${args[@]}" --server "${COORD_URLS[$i]}" \
				--queries "$per" --concurrency $((CONCURRENCY / COORDS)) \
				>"$TMP/$lib.$i.json" 2>"$TMP/$lib.$i.log" &
			pids+=($!)
		done
		for i in "${!pids[@]}"; do
			wait "${pids[$i]}" || rc=$?
			cat "$TMP/$lib.$i.log" >>"$TMP/$lib.log"
		done
		jq -s '{client: .[0].client, queries: (map(.queries) | add),
			ok: (map(.ok) | add), canceled: (map(.canceled) | add),
			cancel_expected: (map(.cancel_expected) | add), failed: (map(.failed) | add),
			mismatches: (map(.mismatches) | add), rows: (map(.rows) | add),
			pages: (map(.pages) | add), retries: (map(.retries) | add),
			latency_ms: (map(.latency_ms) | {p50: (map(.p50) | max), p99: (map(.p99) | max)}),
			errors: (map(.errors) | add), pass: (map(.pass) | all)}' \
			"$TMP/$lib".[0-9].json >"$TMP/$lib.json" 2>>"$TMP/$lib.log" || true
	fi
	[[ -s $TMP/$lib.json ]] || fail "$lib: run_queries exited $rc without a summary: $(tail -n 20 "$TMP/$lib.log")"
	jq -c 'del(.errors)' "$TMP/$lib.json"
	if [[ $rc -ne 0 ]] || ! jq -e '.pass' "$TMP/$lib.json" >/dev/null; then
		jq -c '.errors[:20][]' "$TMP/$lib.json" >&2
		fail "$lib-client: not every query returned the simulator's rows or ended as it should (exit $rc)"
	fi
}

# check_sim LIB: the simulator saw exactly what the client summary says.
check_sim() {
	local lib=$1 ok canceled sent
	ok=$(jq '.ok' "$TMP/$lib.json")
	canceled=$(jq '.canceled' "$TMP/$lib.json")
	sent=$(jq '.queries' "$TMP/$lib.json")
	step "$lib-client: the coordinators saw $sent queries, $ok finished, $canceled canceled"
	retry 10 sim_idle || fail "$lib-client: queries still running on the simulator 10 s after the run:" \
		"$(jq -c "$SIM_TOTAL_JQ" <<<"$SIM_STATS")"
	jq -c "$SIM_TOTAL_JQ" <<<"$SIM_STATS"
	sim_check counts "$(jq -n --argjson s "$sent" --argjson o "$ok" --argjson c "$canceled" \
		'{s: $s, o: $o, c: $c}')" '$t.submitted == $q.s and $t.finished == $q.o and
		$t.canceled == $q.c and $t.deletes == $q.c and $t.failed == 0 and $t.abandoned == 0' ||
		fail "$lib-client: the simulator counted $(jq -c "$SIM_TOTAL_JQ | {submitted, finished,
			canceled, deletes, failed, abandoned}" <<<"$SIM_STATS"), expected submitted $sent," \
			"finished $ok, canceled and deletes $canceled, no failed or abandoned query"
	# One client in flight is one query at most: more would be a repeated POST.
	sim_check concurrency "$CONCURRENCY" '$t.max_running <= $q and $t.max_running >= 2' ||
		fail "$lib-client: the simulator's max_running is $(jq "$SIM_TOTAL_JQ.max_running" \
			<<<"$SIM_STATS"), expected 2..$CONCURRENCY (queries in flight)"
	step "$lib-client: queries spread over all $COORDS coordinators, users and source passed"
	jq -c "[\$coords[] as \$c | $SIM_COORD_JQ.submitted]" \
		--argjson coords "$(printf '%s\n' "${COORD_URLS[@]#http://}" | jq -R . | jq -s .)" \
		<<<"$SIM_STATS" | sed 's/^/submitted per coordinator: /'
	sim_check spread "$((sent / (2 * COORDS)))" 'all($k[]; .submitted >= $q)' ||
		fail "$lib-client: a coordinator got fewer than $((sent / (2 * COORDS))) of $sent queries"
	sim_check users "$USERS" '[$t.max_running_by_user | keys[] | select(startswith("qd-user-"))]
		| length == $q' ||
		fail "$lib-client: the simulator saw users $(jq -c "$SIM_TOTAL_JQ.max_running_by_user" \
			<<<"$SIM_STATS"), expected qd-user-0..$((USERS - 1))"
	sim_check source "\"$SOURCE\"" '$t.max_running_by_source | has($q)' ||
		fail "$lib-client: the simulator saw sources $(jq -c "$SIM_TOTAL_JQ.max_running_by_source" \
			<<<"$SIM_STATS"), expected $SOURCE"
}

for lib in $CLIENT_LIBS; do
	[[ $lib == trino || $lib == presto ]] || fail "QD_PROXY_CLIENTS: unknown client '$lib'"
	step "reset the simulator's counters"
	sim POST /v1/simulator/reset >/dev/null || fail "POST $SIM/v1/simulator/reset failed"
	[[ $TARGET_MODE == dispatcher ]] && { snapshot "$lib-before" || fail "qdctl --json failed"; }
	step "$lib-client: $QUERIES queries, $CONCURRENCY at a time, every $CANCEL_EVERY. canceled"
	run_client "$lib"
	check_sim "$lib"
	if [[ $TARGET_MODE == dispatcher ]]; then
		step "$lib-client: qdctl counts a route per query, all ended"
		routes_ended() {
			snapshot "$lib-after" || return 1
			[[ $(delta "$lib-before" "$lib-after" "$ROUTES_ENDED_JQ") -ge $QUERIES &&
				$(jq -r "$ROUTES_ACTIVE_JQ // 0" "$TMP/$lib-after.json") -eq 0 ]]
		}
		retry 10 routes_ended || true
		created=$(delta "$lib-before" "$lib-after" "$ROUTES_CREATED_JQ")
		ended=$(delta "$lib-before" "$lib-after" "$ROUTES_ENDED_JQ")
		finished=$(delta "$lib-before" "$lib-after" "$ROUTES_FINISHED_JQ")
		canceled=$(delta "$lib-before" "$lib-after" "$ROUTES_CANCELED_JQ")
		active=$(jq -r "$ROUTES_ACTIVE_JQ // \"missing\"" "$TMP/$lib-after.json")
		echo "routes created $created, ended $ended (finished $finished, canceled $canceled), live now $active"
		want_ok=$(jq '.ok' "$TMP/$lib.json")
		want_canceled=$(jq '.canceled' "$TMP/$lib.json")
		[[ $created -eq $QUERIES ]] || fail "$lib-client: $created routes created ($ROUTES_CREATED_JQ) for $QUERIES queries"
		[[ $ended -eq $QUERIES ]] || fail "$lib-client: $ended routes ended ($ROUTES_ENDED_JQ) of $QUERIES"
		[[ $finished -eq $want_ok && $canceled -eq $want_canceled ]] ||
			fail "$lib-client: routes ended finished $finished ($ROUTES_FINISHED_JQ), canceled" \
				"$canceled ($ROUTES_CANCELED_JQ); the queries finished $want_ok, canceled $want_canceled"
		[[ $active == 0 ]] || fail "$lib-client: $active routes still live ($ROUTES_ACTIVE_JQ)"
	fi
done

if [[ $TARGET_MODE == dispatcher ]]; then
	step "qdispatchd: no client connection, backends idle, the pool back at its idle level"
	"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
	QUIET_NOW=""
	retry 30 proxy_quiet || fail "qdispatchd's proxy is not quiet 30 s after the clients exited: $QUIET_NOW"
	retry 10 pool_back || fail "mbuf pool in_use is $POOL_NOW after the run, $POOL_IDLE before"
fi

lab_down_checked
echo "PASS"
