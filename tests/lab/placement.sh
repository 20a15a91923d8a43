#!/usr/bin/env bash
# placement: where qdispatchd sends new queries, counted by the simulator (the
# POSTs each coordinator address received). 3 coordinators, 2 workers.
#   round_robin with weights 1,2,3: 120 queries split 20/40/60 (within 10%:
#               each worker runs its own smooth weighted round robin)
#   least_loaded (the default, power of two choices) with weights 1,1,1: every
#               coordinator gets at least a sixth of 120 queries
#   client_ip:  all of one client's queries go to one coordinator (Maglev on
#               the client address); drained, its clients move to one other
#               coordinator; undrained, they come back to the first
# Follow-up requests always go where the query runs (the clients check every
# row). Lab down finds no sanitizer report. Root only (exit 77 otherwise).
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN_QUERIES=$QD_SOURCE/tests/clients/run_queries.mjs
QDCTL=$QD_BUILD/control/qdctl

require_lab
require_tools jq curl node
lab_cleanup_traps
TMP=$(mktemp -d)

lab_up() {
	step "lab up $*"
	"$LAB" down >/dev/null
	"$LAB" up --coordinators 3 --workers 2 "$@" >/dev/null
	IFS=, read -r -a URLS <<<"$(lab_exec sh -c 'echo "$QD_COORDINATORS"')"
	SIM=${URLS[0]}
	SOCK=$(lab_exec sh -c 'echo "$QD_CTL_SOCKET"')
	# wait for the health checks: placement skips coordinators not yet up
	retry 10 all_up || fail "coordinators not up: $("$QDCTL" -s "$SOCK" coordinators)"
}
all_up() {
	[[ $("$QDCTL" -s "$SOCK" --json coordinators | jq '[.coordinators[] | select(.health == "up")] | length') -eq 3 ]]
}
sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }
# queries N: run N queries through the dispatcher; POSTS holds the posts per address
queries() {
	sim POST /v1/simulator/reset >/dev/null
	lab_exec node "$RUN_QUERIES" --json --queries "$1" --concurrency 6 --rows 3 --page-rows 2 \
		>"$TMP/run.json" || fail "run_queries: $(jq -c '.errors[:3]' "$TMP/run.json")"
	local stats
	stats=$(sim GET /v1/simulator/stats)
	POSTS=()
	local u
	for u in "${URLS[@]}"; do
		POSTS+=("$(jq --arg a "${u#http://}" '.coordinators[$a].posts' <<<"$stats")")
	done
	echo "posts per coordinator: ${POSTS[*]}"
}
within() { # within GOT WANT PERCENT
	local d=$(($1 - $2))
	((d < 0)) && d=$((-d))
	((d * 100 <= $2 * $3))
}

lab_up --set placement.policy=round_robin --coordinator-weights 1,2,3
queries 120
for i in 0 1 2; do
	want=$((20 * (i + 1)))
	within "${POSTS[$i]}" "$want" 10 || fail "round_robin 1,2,3: coordinator $((i + 1)) got ${POSTS[$i]}, want about $want"
done

lab_up
queries 120
for i in 0 1 2; do
	[[ ${POSTS[$i]} -ge 20 ]] || fail "least_loaded: coordinator $((i + 1)) got only ${POSTS[$i]} of 120"
done

lab_up --set placement.policy=client_ip
queries 60
first=-1
for i in 0 1 2; do
	if [[ ${POSTS[$i]} -eq 60 ]]; then first=$i; elif [[ ${POSTS[$i]} -ne 0 ]]; then
		fail "client_ip: one client's queries went to several coordinators: ${POSTS[*]}"
	fi
done
[[ $first -ge 0 ]] || fail "client_ip: 60 queries not all on one coordinator: ${POSTS[*]}"
addr=${URLS[$first]#http://}
step "drain $addr: the client moves to one other coordinator"
"$QDCTL" -s "$SOCK" drain "$addr" >/dev/null
queries 30
second=-1
for i in 0 1 2; do
	if [[ ${POSTS[$i]} -eq 30 ]]; then second=$i; elif [[ ${POSTS[$i]} -ne 0 ]]; then
		fail "client_ip after drain: spread over several: ${POSTS[*]}"
	fi
done
[[ $second -ge 0 && $second -ne $first ]] || fail "client_ip after drain: ${POSTS[*]}"
"$QDCTL" -s "$SOCK" undrain "$addr" >/dev/null
queries 30
[[ ${POSTS[$first]} -eq 30 ]] || fail "client_ip after undrain: not back on coordinator $((first + 1)): ${POSTS[*]}"

lab_down_checked
echo "PASS"
