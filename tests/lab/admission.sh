#!/usr/bin/env bash
# admission: resource groups at the dispatcher, with the real npm clients and the
# simulator's own concurrency records as the judge. The lab runs 3 simulated
# coordinators and 2 workers with tests/lab/admission_groups.json:
#   global (8) > etl (4), adhoc (6, weighted_fair) > alice (3), others (4),
#   and tiny (1, maxQueued 2)
# Selectors make every level visible to the simulator: source etl|alice|others
# is the leaf, user "adhoc" the middle group, the total the root.
#
# 1. Oversubscription, about 14x: trino-client 80 etl queries 40 at a time,
#    presto-client 60 alice queries 30 at a time (every 7th cancelled), trino-
#    client 80 others queries 40 at a time, all at once. Every query returns
#    its rows or its cancellation; the simulator's recorded maxima never exceed
#    a limit (root 8, etl 4, adhoc 6, alice 3, others 4) and reach them (so the
#    limits were tested, not just unused); the dispatcher queued queries and
#    every group returns to 0 running, 0 queued with its slots conserved.
# 2. Faults under the same oversubscription: random cancels, clients that
#    vanish (12 submissions never polled again: the coordinators abandon the
#    admitted ones after 2 s and their routes end idle after 4 s, queued ones are
#    dropped as abandoned), and coordinator 3 killed in the
#    middle (its queries fail COORDINATOR_UNREACHABLE, the rest go on). The
#    maxima still hold and no slot leaks: every group settles at 0/0 with
#    running + reserved + pool == limit.
# 3. The queue case by case (tests/clients/admission_cases.py): FIFO, maxQueued,
#    cancel while queued, cancel by the placeholder id after dispatch, no
#    selector, reload through qdctl; then, with short timeouts, the queue
#    timeout, an abandoned entry and an oversize statement.
# Lab down finds no sanitizer report. Root only (exit 77 otherwise).
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GROUPS_FILE=$QD_SOURCE/tests/lab/admission_groups.json
CLIENTS=$QD_SOURCE/tests/clients
RUN_QUERIES=$CLIENTS/run_queries.mjs
CASES=$CLIENTS/admission_cases.py

require_lab
require_tools jq curl node python3
[[ -d $CLIENTS/node_modules/trino-client ]] || fail "tests/clients/node_modules missing: run scripts/deps"

lab_cleanup_traps
TMP=$(mktemp -d)
BG_PIDS=()
cleanup_hook() {
	local p
	for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do kill_wait "$p"; done
}

lab_up() {
	step "lab up $*"
	"$LAB" down >/dev/null
	"$LAB" up --coordinators 3 --workers 2 --resource-groups "$GROUPS_FILE" "$@" >/dev/null
	SIM=$(lab_exec sh -c 'echo "${QD_COORDINATORS%%,*}"')
}
sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }

# load NAME ARGS...: run_queries in the background, summary in $TMP/NAME.json
load() {
	local name=$1
	shift
	lab_exec node "$RUN_QUERIES" --json --rows 6 --page-rows 2 --sim "run_ms=150" "$@" \
		>"$TMP/$name.json" 2>"$TMP/$name.err" &
	BG_PIDS+=($!)
	eval "PID_$name=$!"
}
# wait_load NAME: its exit code must be 0 (each query did what it should)
wait_load() {
	local pid_var="PID_$1" rc=0
	wait "${!pid_var}" || rc=$?
	[[ $rc -eq 0 ]] || { tail -5 "$TMP/$1.err" >&2; fail "$1: run_queries exit $rc: $(jq -c '.errors[:3]' "$TMP/$1.json" 2>/dev/null)"; }
	echo "$1: $(jq -c '{ok, canceled, failed, mismatches}' "$TMP/$1.json")"
}

# check_maxima MIN_REACHED: the simulator's maxima never over a limit; with
# MIN_REACHED=1 every limit was also reached.
check_maxima() {
	local stats
	stats=$(sim GET /v1/simulator/stats)
	jq -c '.total | {max_running, max_running_by_user, max_running_by_source}' <<<"$stats"
	local checks=(".total.max_running 8" ".total.max_running_by_user.adhoc 6"
		".total.max_running_by_source.etl 4" ".total.max_running_by_source.alice 3"
		".total.max_running_by_source.others 4") c path limit got
	for c in "${checks[@]}"; do
		path=${c% *} limit=${c#* }
		got=$(jq -r "$path // 0" <<<"$stats")
		[[ $got -le $limit ]] || fail "$path = $got: over the limit $limit"
		[[ $1 -eq 0 || $got -eq $limit ]] || fail "$path = $got: the limit $limit was never reached"
	done
}

settle() {
	step "every group back to 0 running, 0 queued, slots conserved"
	lab_exec python3 "$CASES" --settle-only || fail "admission did not settle"
}

# ---- 1. oversubscription --------------------------------------------------------
# Vanished clients: the coordinators abandon their queries (the simulator's client
# timeout, 2 s; Trino's query.client.timeout) before the dispatcher's routes go idle
# (4 s) and give their slots back, as route.idle_timeout_s must be set in production;
# the other way round, the slots would be reused while the coordinators still run them.
export QD_COORDSIM_ARGS="--client-timeout 2"
lab_up --set route.idle_timeout_s=4 --set admission.client_timeout_ms=4000
sim POST /v1/simulator/reset >/dev/null
step "about 14x oversubscription by trino-client and presto-client"
load etl --client trino --user etl-u --source etl --queries 80 --concurrency 40
load alice --client presto --engine trino --user adhoc --source alice --queries 60 \
	--concurrency 30 --cancel-every 7
load others --client trino --user adhoc --source others --queries 80 --concurrency 40
wait_load etl
wait_load alice
wait_load others
check_maxima 1
stats=$(sim GET /v1/simulator/stats)
[[ $(jq .total.submitted <<<"$stats") -eq 220 ]] || fail "the simulator saw $(jq .total.submitted <<<"$stats") queries, not 220"
[[ $(jq .total.running_now <<<"$stats") -eq 0 ]] || fail "queries left running: $(jq .total.running_now <<<"$stats")"
snapshot after1
queued=$(jq '.totals.proxy.adm_queued' "$TMP/after1.json")
[[ $queued -gt 100 ]] || fail "only $queued queries were queued at the dispatcher"
echo "queued at the dispatcher: $queued; dispatched from the queue: $(jq .totals.proxy.adm_dispatched "$TMP/after1.json")"
settle

# ---- 2. faults --------------------------------------------------------------------
step "faults: cancels, vanished clients, coordinator 3 killed mid-load"
sim POST /v1/simulator/reset >/dev/null
load fetl --client trino --user etl-u --source etl --queries 60 --concurrency 40 \
	--cancel-every 4 --allow-failures
load fothers --client presto --engine trino --user adhoc --source others --queries 60 \
	--concurrency 40 --allow-failures
lab_exec python3 "$CASES" --vanish 12 || fail "could not submit the vanishing queries"
sleep 1
victim=$(lab_exec sh -c 'echo "$QD_COORDINATORS"' | cut -d, -f3)
sim POST "/v1/simulator/kill?coordinator=${victim#http://}" >/dev/null
wait_load fetl
wait_load fothers
sim POST "/v1/simulator/revive?coordinator=${victim#http://}" >/dev/null
check_maxima 0
settle

# ---- 3. case by case --------------------------------------------------------------
unset QD_COORDSIM_ARGS
lab_up
step "queue cases: FIFO, maxQueued, cancel, alias, no selector, reload"
lab_exec python3 "$CASES" --groups "$GROUPS_FILE" || fail "admission cases"
lab_up --set admission.queue_timeout_ms=2500 --set admission.client_timeout_ms=1000 \
	--set admission.poll_wait_ms=300 --set admission.max_statement_bytes=2048
step "queue cases with short timeouts: queue timeout, abandoned, oversize statement"
lab_exec python3 "$CASES" --timeouts || fail "admission timeout cases"

lab_down_checked
echo "PASS"
