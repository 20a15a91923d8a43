#!/usr/bin/env bash
# peers: two active-active dispatchers share every resource group's limit.
# The lab runs 2 peers (each its own VIP and state log), 2 simulated coordinators and
# tests/lab/admission_groups.json (global 8 > etl 4, adhoc 6 > alice 3, others 4).
# 1. Membership: both peers see each other alive, the health endpoint of each VIP
#    says ok with its peer alive; the sync message has the same size idle and loaded.
# 2. 10x oversubscription spread over both VIPs: the simulator's recorded maxima never
#    exceed a limit and reach them (the whole limit, not half of it, is usable from
#    either side: shares flow); every group settles on both peers.
# 3. The same load with peer 2 paused (SIGSTOP) for 1.5 s (its VIP moves: its clients'
#    queries may fail), then with the peers' control traffic cut for 2 s: the maxima
#    hold, and since each port still answers ARP for its VIP, no VIP moves and every
#    query succeeds.
# 4. Peer 2 killed (SIGKILL) under load: peer 1 declares it dead (the detection time is
#    printed, and must be under 1.5 s) and serves peer 2's VIP (timed from the kill,
#    under 2 s); a keep-alive connection opened to peer 2 before the kill carries its
#    next request to peer 1 (adopted); the maxima hold; peer 2 restarts from its state
#    log, rejoins, leaves its quarantine and gets its VIP back once peer 1 has drained
#    it; no slot leaks. Then 3
#    queries in flight through peer 2 when it is killed all finish with every row: their
#    client retries, peer 1 (holding the VIP) finds their routes at the coordinators
#    (discovery), peer 2 comes back with them from its state log.
# 5. Forged, replayed and garbage datagrams on the control channel are rejected and
#    counted; the peers stay alive.
# Lab down finds no sanitizer report. Root only (exit 77 otherwise).
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GROUPS_FILE=$QD_SOURCE/tests/lab/admission_groups.json
CLIENTS=$QD_SOURCE/tests/clients
RUN_QUERIES=$CLIENTS/run_queries.mjs
CASES=$CLIENTS/admission_cases.py
FORGE=$CLIENTS/peer_forge.py

require_lab
require_tools jq curl node python3 nft
[[ -d $CLIENTS/node_modules/trino-client ]] || fail "tests/clients/node_modules missing: run scripts/deps"

lab_cleanup_traps
TMP=$(mktemp -d)
BG_PIDS=()
cleanup_hook() {
	local p
	for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do kill_wait "$p"; done
	"$LAB" heal >/dev/null 2>&1 || true
}

step "lab up: 2 peers, 2 coordinators, state logs, resource groups"
"$LAB" down >/dev/null
# Clients that fail (a killed peer) stop polling: the simulator abandons their queries
# (its query.client.timeout, 6 s) before the dispatchers' routes of them go idle (8 s),
# as production must be set up; 6 s also leaves a retrying client time to fail over
# (a SYN lost to the dead peer is sent again after 1 s, then 3 s).
export QD_COORDSIM_ARGS="--client-timeout 6"
"$LAB" up --peers 2 --coordinators 2 --state --resource-groups "$GROUPS_FILE" \
	--set route.idle_timeout_s=8 --set admission.client_timeout_ms=4000 \
	--set peer.orphan_hold_ms=10000 --set route.verify_after_s=2 >/dev/null
SIM=$(lab_exec sh -c 'echo "${QD_COORDINATORS%%,*}"')
SOCK1=$(lab_exec sh -c 'echo "${QD_CTL_SOCKETS%%,*}"')
SOCK2=$(lab_exec sh -c 'echo "${QD_CTL_SOCKETS#*,}"')
VIP1=$(lab_exec sh -c 'echo "${QD_VIPS%%,*}"')
VIP2=$(lab_exec sh -c 'echo "${QD_VIPS#*,}"')
sim() { lab_exec curl -sS --fail-with-body --max-time 10 -X "$1" "$SIM$2"; }
peers() { "$QD_BUILD/control/qdctl" -s "$1" --json peers; }
peer_state() { peers "$1" | jq -r ".peers[] | select(.id == $2) | .state"; }

# ---- 1. membership ------------------------------------------------------------------
step "membership: each peer sees the other alive; health endpoints"
retry 5 sh -c "[ \"\$($QD_BUILD/control/qdctl -s $SOCK1 --json peers | jq -r '.peers[0].state')\" = alive ]" ||
	fail "peer 1 does not see peer 2 alive: $(peers "$SOCK1" | jq -c '.peers[0]')"
retry 5 sh -c "[ \"\$($QD_BUILD/control/qdctl -s $SOCK2 --json peers | jq -r '.peers[0].state')\" = alive ]" ||
	fail "peer 2 does not see peer 1 alive"
for vip in "$VIP1" "$VIP2"; do
	retry 5 lab_exec sh -c "curl -sf http://$vip:8080/v1/dispatcher/health >/dev/null" ||
		fail "health of $vip is not 200"
	h=$(lab_exec curl -s "http://$vip:8080/v1/dispatcher/health")
	[[ $(jq -r '.status + " " + (.peers.alive|tostring)' <<<"$h") == "ok 1" ]] ||
		fail "health of $vip: $h"
done
echo "health: $h"
idle_bytes=$(peers "$SOCK1" | jq .counters.message_bytes)
[[ $idle_bytes -gt 0 ]] || fail "no message sent"

# ---- helpers for the load -----------------------------------------------------------
# load NAME VIP ARGS...: run_queries against VIP in the background
load() {
	local name=$1 vip=$2
	shift 2
	lab_exec node "$RUN_QUERIES" --server "http://$vip:8080" --json --rows 6 --page-rows 2 \
		--sim "run_ms=150" "$@" >"$TMP/$name.json" 2>"$TMP/$name.err" &
	BG_PIDS+=($!)
	eval "PID_$name=$!"
}
wait_load() {
	local pid_var="PID_$1" rc=0
	wait "${!pid_var}" || rc=$?
	[[ $rc -eq 0 ]] || { tail -5 "$TMP/$1.err" >&2; fail "$1: run_queries exit $rc: $(jq -c '.errors[:3]' "$TMP/$1.json" 2>/dev/null)"; }
	echo "$1: $(jq -c '{ok, canceled, failed, mismatches}' "$TMP/$1.json")"
}
# check_maxima MIN_REACHED: the simulator's maxima over both coordinators, both peers
check_maxima() {
	local stats
	stats=$(sim GET /v1/simulator/stats)
	jq -c '.total | {max_running, max_running_by_user, max_running_by_source}' <<<"$stats"
	local checks=(".total.max_running 8" ".total.max_running_by_user.adhoc 6"
		".total.max_running_by_source.etl 4" ".total.max_running_by_source.others 4") c path limit got
	for c in "${checks[@]}"; do
		path=${c% *} limit=${c#* }
		got=$(jq -r "$path // 0" <<<"$stats")
		[[ $got -le $limit ]] || fail "$path = $got: over the cluster-wide limit $limit"
		# adhoc's 6 cannot be reached: only its subgroup others (4) gets load
		[[ $1 -eq 0 || $path == *adhoc || $got -eq $limit ]] ||
			fail "$path = $got: the limit $limit was never reached"
	done
}
settle_both() {
	step "every group back to 0 running, 0 queued, slots conserved, on both peers"
	lab_exec env QD_CTL_SOCKET="$SOCK1" python3 "$CASES" --settle-only || fail "peer 1 did not settle"
	lab_exec env QD_CTL_SOCKET="$SOCK2" python3 "$CASES" --settle-only || fail "peer 2 did not settle"
}
# spread ARGS...: the 10x load, half through each VIP (etl and others, limits 4 and 4
# under the root's 8)
spread() {
	load etl1 "$VIP1" --client trino --user etl-u --source etl --queries 30 --concurrency 20 "$@"
	load etl2 "$VIP2" --client presto --engine trino --user etl-u --source etl --queries 30 \
		--concurrency 20 "$@"
	load oth1 "$VIP1" --client trino --user adhoc --source others --queries 30 --concurrency 20 "$@"
	load oth2 "$VIP2" --client trino --user adhoc --source others --queries 30 --concurrency 20 "$@"
}
wait_spread() { wait_load etl1; wait_load etl2; wait_load oth1; wait_load oth2; }

# ---- 2. shared limits ---------------------------------------------------------------
step "10x oversubscription over both VIPs"
sim POST /v1/simulator/reset >/dev/null
spread
sleep 1
loaded_bytes=$(peers "$SOCK1" | jq .counters.message_bytes)
wait_spread
check_maxima 1
[[ $loaded_bytes -eq $idle_bytes ]] ||
	fail "the sync message grew with load: $idle_bytes bytes idle, $loaded_bytes loaded"
echo "sync message: $idle_bytes bytes idle and under load"
peers "$SOCK1" | jq -c '{grants_changed: .counters.grants_changed, caps_set: .counters.caps_set}'
[[ $(peers "$SOCK1" | jq .counters.grants_changed) -gt 0 ]] || fail "no share ever moved"
settle_both

# ---- 3. pause and partition ---------------------------------------------------------
step "the same load; peer 2 paused for 1.5 s"
sim POST /v1/simulator/reset >/dev/null
spread --allow-failures
sleep 1
"$LAB" pause --peer 2
sleep 1.5
"$LAB" resume --peer 2
wait_spread
check_maxima 0
settle_both

step "the same load; the peers partitioned from each other for 2 s (control traffic only)"
sim POST /v1/simulator/reset >/dev/null
spread
sleep 1
"$LAB" partition 1 2
sleep 2
[[ $(peer_state "$SOCK1" 2) == dead ]] || fail "peer 1 still sees peer 2 through the partition"
# each side still answers ARP for its VIP on the data plane: nobody takes the other's
for s in "$SOCK1" "$SOCK2"; do
	[[ $(peers "$s" | jq '.counters.vip_still_answered') -gt 0 ]] ||
		fail "$s: took over a VIP whose home still answers ARP"
	[[ $(peers "$s" | jq '[.vips[] | select(.held_here != "absent")] | length') -eq 1 ]] ||
		fail "$s holds another peer's VIP during a control-plane partition"
done
"$LAB" heal
wait_spread
check_maxima 0
retry 5 sh -c "[ \"\$($QD_BUILD/control/qdctl -s $SOCK1 --json peers | jq -r '.peers[0].state')\" = alive ]" ||
	fail "peer 2 did not come back after the partition"
settle_both

# ---- 4. kill ------------------------------------------------------------------------
step "peer 2 killed under load: detection, limits, restart from its logs, rejoin"
sim POST /v1/simulator/reset >/dev/null
rm -f "$TMP/go"
lab_exec python3 "$CLIENTS/keepalive_failover.py" "$VIP2" "$TMP/go" >"$TMP/ka.out" 2>&1 &
ka=$!
BG_PIDS+=($ka)
spread --allow-failures
sleep 1
pid2=$(cat "$LAB_DIR/peer2.pid")
t0=$(date +%s%N)
kill -KILL "$pid2"
while [[ $(peer_state "$SOCK1" 2) != dead ]]; do
	(($(date +%s%N) - t0 < 5000000000)) || fail "peer 2 not declared dead within 5 s"
	sleep 0.02
done
detect_ms=$((($(date +%s%N) - t0) / 1000000))
echo "peer 2 declared dead $detect_ms ms after SIGKILL (peer 1 says: silent $(peers "$SOCK1" | jq .counters.detect_ms_last) ms)"
((detect_ms < 1500)) || fail "detection took $detect_ms ms"
# its virtual IP answers from peer 1 (gratuitous ARP), timed from the kill
served_by() { lab_exec curl -s -m 0.3 "http://$VIP2:8080/v1/dispatcher/health" | jq -r '.peers.self // empty' 2>/dev/null || true; }
while [[ $(served_by) != 1 ]]; do
	(($(date +%s%N) - t0 < 5000000000)) || fail "VIP $VIP2 not served by peer 1 within 5 s"
	sleep 0.02
done
takeover_ms=$((($(date +%s%N) - t0) / 1000000))
echo "VIP $VIP2 served by peer 1 $takeover_ms ms after the kill"
((takeover_ms < 2000)) || fail "takeover took $takeover_ms ms"
# a keep-alive connection opened to peer 2 before the kill goes on with peer 1
touch "$TMP/go"
rc=0
wait "$ka" || rc=$?
cat "$TMP/ka.out"
[[ $rc -eq 0 ]] || fail "the keep-alive connection did not survive the failover"
echo "adopted connections on peer 1: $("$QD_BUILD/control/qdctl" -s "$SOCK1" --json status | jq .totals.tcp.adopted)"
sleep 1
"$LAB" restart --peer 2 >/dev/null
t1=$(date +%s%N)
while [[ $(served_by) != 2 ]]; do
	(($(date +%s%N) - t1 < 20000000000)) || fail "VIP $VIP2 did not go back to peer 2"
	sleep 0.05
done
echo "VIP $VIP2 back on peer 2 $((($(date +%s%N) - t1) / 1000000)) ms after its restart (peer 1 drained it first)"
[[ $(peers "$SOCK1" | jq '.counters.vip_releases') -ge 1 ]] || fail "peer 1 never released the VIP"
retry 5 sh -c "[ \"\$($QD_BUILD/control/qdctl -s $SOCK1 --json peers | jq -r '.peers[0].state')\" = alive ]" ||
	fail "peer 2 did not rejoin"
[[ $(peers "$SOCK1" | jq '.peers[0].rejoins') -ge 1 ]] || fail "peer 1 counted no rejoin"
retry 5 sh -c "[ \"\$($QD_BUILD/control/qdctl -s $SOCK2 --json peers | jq -r .quarantine)\" = false ]" ||
	fail "peer 2 stays in quarantine"
wait_spread
check_maxima 0
settle_both

step "queries in flight through peer 2 survive its crash: clients retry, the survivor finds their routes"
sim POST /v1/simulator/reset >/dev/null
lab_exec env QD_URL="http://$VIP2:8080" python3 "$CLIENTS/crash_client.py" --queries 3 --rows 8 \
	--page-ms 500 --user etl-u --source etl --retry-s 60 --request-timeout 2 \
	>"$TMP/inflight.out" 2>"$TMP/inflight.err" &
inflight=$!
BG_PIDS+=($inflight)
retry 20 grep -q '^running' "$TMP/inflight.out" || fail "the in-flight queries did not start"
kill -KILL "$(cat "$LAB_DIR/peer2.pid")"
sleep 2
"$LAB" restart --peer 2 >/dev/null
rc=0
wait "$inflight" || rc=$?
tail -1 "$TMP/inflight.out"
[[ $rc -eq 0 ]] || { cat "$TMP/inflight.err" >&2; fail "in-flight queries did not all finish"; }
disc=$("$QD_BUILD/control/qdctl" -s "$SOCK1" --json status | jq .totals.reconcile.discovery.found)
echo "peer 1 found $disc route(s) by discovery"
[[ $disc -ge 3 ]] || fail "peer 1 discovered $disc routes, not the 3 in flight"
check_maxima 0
settle_both

# ---- 5. forged, replayed, garbage ---------------------------------------------------
step "forged, replayed and garbage peer messages"
before=$(peers "$SOCK2" | jq -c .rejected)
ip netns exec qd-peer2 python3 "$FORGE" capture qd-pc2 "$TMP/msg.bin" || fail "no message captured"
P2=$(lab_exec sh -c 'echo "${QD_PEER_ADDRS#*,}"')
ip netns exec qd-peer1 python3 "$FORGE" send "$P2" "$TMP/msg.bin"
ip netns exec qd-peer1 python3 "$FORGE" send "$P2" "$TMP/msg.bin" --flip 100
ip netns exec qd-peer1 python3 "$FORGE" send "$P2" "$TMP/msg.bin" --junk 20
sleep 0.5
after=$(peers "$SOCK2" | jq -c .rejected)
echo "rejected before $before, after $after"
for r in replayed bad_mac; do
	[[ $(jq ".$r" <<<"$after") -gt $(jq ".$r" <<<"$before") ]] || fail "no $r message counted"
done
[[ $(($(jq '.malformed + .bad_mac' <<<"$after") - $(jq '.malformed + .bad_mac' <<<"$before"))) -ge 21 ]] ||
	fail "garbage not all rejected"
[[ $(peer_state "$SOCK2" 1) == alive ]] || fail "peer 2 lost peer 1"

lab_down_checked
echo "PASS: peers"
