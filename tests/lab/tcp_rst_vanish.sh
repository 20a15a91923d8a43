#!/usr/bin/env bash
# tcp_rst_vanish: connections that end without a FIN are freed (issue 3). The
# Linux kernel in the client namespace is the peer of qdispatchd's echo service
# (QD_ECHO); qdispatchd runs with keepalive after 2 s idle, every 1 s, 3 probes.
#  (a) peer RST: N connections, all open at once, each echoes 2 messages byte
#      for byte, idles 5 s, then the client aborts it (SO_LINGER 0: a RST).
#      resets_in grows by exactly N, qdispatchd holds no connection, and its
#      mbuf pool is back to its idle level.
#  (b) peer vanishes: N connections echo and then sit idle while every frame to
#      and from the client is dropped (nftables on both veth ends that face the
#      client, or iptables in the client), so the client's kernel never sees
#      the keepalive probes. Within idle + interval x probes + a margin every
#      connection is freed: no connection left, timeouts grew by exactly N,
#      every connection was probed 3 times, the mbuf pool is back to its idle
#      level. The client saw nothing (its hold ends without a RST), and once
#      the drop is lifted its FINs get RSTs from qdispatchd.
#  (c) half-close is covered by tcp_echo_many.sh (--half-close: every
#      connection half-closes after its last message and expects the echo's
#      remaining bytes, then its FIN).
# Afterwards qdispatchd is still up and lab down finds no sanitizer report.
# Root only (exit 77 otherwise).
#
# Environment (all optional):
#   QD_BUILD, QD_SOURCE   as for every lab test
#   QD_TCP_TOOLS          directory of qdtcpload (default $QD_BUILD/tests/tcp)
#   QD_TCP_SEED           seed of the streams and sizes (default: the clock;
#                         printed, and the same seed sends the same bytes again)
#   QD_TCP_CONNECTIONS    connections of each part (default 1000)
#   QD_TCP_DROP_TOOL      nft or iptables: how the client vanishes (default nft
#                         when installed)
# shellcheck disable=SC2015,SC2016 # "A && B || die" is meant; '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOOLS=${QD_TCP_TOOLS:-$QD_BUILD/tests/tcp}
QDTCPLOAD=$TOOLS/qdtcpload
SEED=${QD_TCP_SEED:-$(date +%s)}
CONNECTIONS=${QD_TCP_CONNECTIONS:-1000}
CLIENT_NS=qd-client
CLIENT_IF=qd-c0
NET_NS=qd-net
CLIENT_BRIDGE_PORT=qd-b-client # the client veth's far end, in qd-net
DROP_TABLE=qd_vanish
# Keepalive of qdispatchd (tcp.keepalive_*): a connection that received
# nothing for KA_IDLE_S is probed every KA_INTVL_S; after KA_PROBES unanswered
# probes it is reset and freed. From the last frame the peer sent, that takes
# KA_IDLE_S + KA_PROBES x KA_INTVL_S = 5 s.
KA_IDLE_S=2
KA_INTVL_S=1
KA_PROBES=3
# Slack on top of those 5 s: the 1 ms timer wheel, the 0.5 s polling of qdctl
# and a loaded machine. Less than one more keepalive period would be too tight
# to be reliable, an order of magnitude more would hide a lost timer.
KA_MARGIN_S=3
# (a): idle time between the last echo and the RST; long enough to see all N
# connections established at once through qdctl.
ABORT_HOLD_S=5
# (b): the client keeps its connections this long after the last echo: past
# the drop (about 1-2 s after connecting), qdispatchd's keepalive budget and
# the margin, so the client closes only after qdispatchd has given up.
VANISH_HOLD_S=$((2 + KA_IDLE_S + KA_PROBES * KA_INTVL_S + KA_MARGIN_S + 5))
LOAD_PID=""
DROP_TOOL=""

require_lab
require_tools jq ss
[[ -x $QDTCPLOAD ]] || fail "$QDTCPLOAD not built (is tests/tcp in the meson build?)"
[[ $SEED =~ ^[0-9]+$ ]] || fail "QD_TCP_SEED must be a number"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || fail "QD_TCP_CONNECTIONS must be a positive number"
DROP_TOOL=${QD_TCP_DROP_TOOL:-}
if [[ -z $DROP_TOOL ]]; then
	if command -v nft >/dev/null 2>&1; then
		DROP_TOOL=nft
	elif command -v iptables >/dev/null 2>&1; then
		DROP_TOOL=iptables
	else
		fail "neither nft nor iptables is installed (run scripts/deps)"
	fi
fi
[[ $DROP_TOOL == nft || $DROP_TOOL == iptables ]] || fail "QD_TCP_DROP_TOOL must be nft or iptables"
command -v "$DROP_TOOL" >/dev/null 2>&1 || fail "QD_TCP_DROP_TOOL=$DROP_TOOL: not installed"

# Stops qdtcpload, if it runs.
cleanup_hook() { [[ -z $LOAD_PID ]] || kill_wait "$LOAD_PID"; }
lab_cleanup_traps

# Succeeds when qdispatchd holds exactly CONNECTIONS established connections;
# fails the test when the client (LOAD_PID) exited before.
all_established() {
	kill -0 "$LOAD_PID" 2>/dev/null ||
		fail "qdtcpload exited before all $CONNECTIONS connections were seen" \
			"established: $(cat "$TMP/load.log")"
	snapshot now || return 1
	ESTABLISHED_NOW=$(jq -r '.totals.tcp.states.established // "missing"' <<<"$STATUS")
	[[ $ESTABLISHED_NOW == "$CONNECTIONS" ]]
}

# The mbuf pool's level at rest. af_packet copies every frame in and out (no
# mbuf waits in an RX ring) and rte_mempool_avail_count() counts the per-lcore
# caches as available, so at rest .pool.in_use is what the daemon holds for
# good; it is read once the lab is up and before any connection (POOL_IDLE).
# Mbufs held by connections (send, out-of-order and receive queues) must all
# come back when the connections are freed, so the bound afterwards is
# in_use <= POOL_IDLE, exactly, with no slack: a frame in flight (a TX buffer
# waiting for its drain, an ARP or gratuitous ARP being sent) is back within
# microseconds, and pool_back (lib.sh) retries for 10 s to step over such moments.

# Where the drain of qdispatchd stands, for failure messages.
dispatcher_summary() {
	jq -c '{connections: .totals.tcp.connections, states: .totals.tcp.states,
		pool: .pool}' "$TMP/now.json"
}

# qdtcpload in the background: LOAD_PID, output in $TMP/load.{json,log}.
load_start() {
	lab_exec timeout 300 "$QDTCPLOAD" --target "$TARGET" --connections "$CONNECTIONS" \
		--barrier --connect-rate 2000 --messages 2 --min-size 1 --max-size 3000 \
		--seed "$SEED" --connect-timeout 30 --idle-timeout 30 --json "$@" \
		>"$TMP/load.json" 2>"$TMP/load.log" &
	LOAD_PID=$!
}

# load_wait: waits for qdtcpload; fails unless every connection passed.
load_wait() {
	local rc=0
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=""
	[[ -s $TMP/load.json ]] || fail "qdtcpload exited $rc without a result: $(cat "$TMP/load.log")"
	jq -c '{connections_ok, connections_failed, connections_open_max, messages,
		bytes_received, mismatches, resets, aborted, failed_by_reason, duration_s}' \
		"$TMP/load.json"
	if [[ $rc -ne 0 ]]; then
		jq -c '.failures[]' "$TMP/load.json" >&2
		fail "qdtcpload exited $rc: not every connection passed (seed $SEED)"
	fi
	jq -e --argjson n "$CONNECTIONS" '.ok and .connections_ok == $n and
		.connections_open_max == $n and .mismatches == 0 and
		.bytes_received == .bytes_sent and .bytes_sent > 0' "$TMP/load.json" >/dev/null ||
		fail "qdtcpload passed but its numbers do not add up"
}

# The client vanishes: every frame between it and the bridge is dropped. nft:
# on the ingress of both veth ends that face the client (qd-c0 in qd-client:
# towards the client; qd-b-client in qd-net: from the client). iptables: in
# the client's INPUT and OUTPUT (its kernel then neither sees nor answers).
vanish() {
	if [[ $DROP_TOOL == nft ]]; then
		local ns dev ns_dev
		for ns_dev in "$CLIENT_NS:$CLIENT_IF" "$NET_NS:$CLIENT_BRIDGE_PORT"; do
			ns=${ns_dev%%:*} dev=${ns_dev#*:}
			ip netns exec "$ns" nft -f - <<EOF || fail "nft refused the drop rule in $ns"
table netdev $DROP_TABLE {
	chain vanish {
		type filter hook ingress device "$dev" priority 0; policy accept;
		counter drop
	}
}
EOF
		done
		return 0
	fi
	ip netns exec "$CLIENT_NS" iptables -I INPUT -i "$CLIENT_IF" -j DROP &&
		ip netns exec "$CLIENT_NS" iptables -I OUTPUT -o "$CLIENT_IF" -j DROP ||
		fail "iptables refused the drop rules"
}

# Frames the vanish rules dropped: "<towards the client> <from the client>".
dropped() {
	if [[ $DROP_TOOL == nft ]]; then
		echo "$(nft_dropped "$CLIENT_NS") $(nft_dropped "$NET_NS")"
		return 0
	fi
	local counts
	counts=$(ip netns exec "$CLIENT_NS" iptables -nvxL | awk '
		/^Chain INPUT/ { chain = "in" } /^Chain OUTPUT/ { chain = "out" }
		/^Chain FORWARD/ { chain = "" }
		$3 == "DROP" && chain == "in" { i += $1 } $3 == "DROP" && chain == "out" { o += $1 }
		END { print i + 0, o + 0 }')
	echo "$counts"
}

nft_dropped() {
	ip netns exec "$1" nft list table netdev "$DROP_TABLE" |
		sed -n 's/.*counter packets \([0-9]*\) .*/\1/p'
}

reappear() {
	if [[ $DROP_TOOL == nft ]]; then
		ip netns exec "$CLIENT_NS" nft delete table netdev "$DROP_TABLE" &&
			ip netns exec "$NET_NS" nft delete table netdev "$DROP_TABLE" ||
			fail "nft could not delete the drop rules"
		return 0
	fi
	ip netns exec "$CLIENT_NS" iptables -D INPUT -i "$CLIENT_IF" -j DROP &&
		ip netns exec "$CLIENT_NS" iptables -D OUTPUT -o "$CLIENT_IF" -j DROP ||
		fail "iptables could not delete the drop rules"
}

client_left() {
	CLIENT_LEFT=$(lab_exec ss -Htn dst "${TARGET%:*}" | wc -l)
	[[ $CLIENT_LEFT -eq 0 ]]
}

TMP=$(mktemp -d)
echo "seed $SEED (QD_TCP_SEED=$SEED repeats this run), $CONNECTIONS connections," \
	"vanish by $DROP_TOOL"

step "lab up (keepalive: idle ${KA_IDLE_S}s, interval ${KA_INTVL_S}s, $KA_PROBES probes)"
"$LAB" up --set "tcp.keepalive_idle_s=$KA_IDLE_S" --set "tcp.keepalive_intvl_s=$KA_INTVL_S" \
	--set "tcp.keepalive_probes=$KA_PROBES"
TARGET=$(lab_exec sh -c 'echo "${QD_ECHO:-}"')
[[ -n $TARGET ]] || fail "scripts/lab exec does not export QD_ECHO"
echo "echo service: $TARGET"
peer_pid=$(cat "$LAB_DIR/peer1.pid")

pool_at_rest
echo "pool: $(jq -c .pool "$TMP/now.json")"

# ---- (a) peer RST ----
step "(a) $CONNECTIONS connections echo, idle ${ABORT_HOLD_S}s, then the client sends RST"
snapshot a0 || fail "qdctl --json failed"
load_start --hold "$ABORT_HOLD_S" --abort
ESTABLISHED_NOW=""
retry 60 all_established ||
	fail "qdispatchd never held all $CONNECTIONS connections established (last: $ESTABLISHED_NOW)"
echo "qdispatchd: $ESTABLISHED_NOW established"
load_wait
jq -e --argjson n "$CONNECTIONS" '.aborted == $n' "$TMP/load.json" >/dev/null ||
	fail "qdtcpload aborted $(jq .aborted "$TMP/load.json") connections, expected $CONNECTIONS"

step "(a) qdispatchd freed every connection on the RST"
OPEN_NOW=""
retry 10 dispatcher_drained ||
	fail "qdispatchd holds $OPEN_NOW connections 10 s after the RSTs: $(dispatcher_summary)"
snapshot a1 || fail "qdctl --json failed"
resets=$(delta a0 a1 .totals.tcp.resets_in)
echo "resets_in +$resets, challenge_acks +$(delta a0 a1 .totals.tcp.challenge_acks)," \
	"timeouts +$(delta a0 a1 .totals.tcp.timeouts)"
[[ $resets -eq $CONNECTIONS ]] || fail "resets_in grew by $resets, expected $CONNECTIONS"
POOL_NOW=""
retry 10 pool_back || fail "pool in_use is $POOL_NOW after (a), idle level $POOL_IDLE"
echo "pool: $(jq -c .pool "$TMP/now.json")"
retry 10 client_left || fail "$CLIENT_LEFT client sockets to $TARGET left after (a)"

# ---- (b) peer vanishes ----
step "(b) $CONNECTIONS connections echo and hold ${VANISH_HOLD_S}s idle"
snapshot b0 || fail "qdctl --json failed"
load_start --hold "$VANISH_HOLD_S"
ESTABLISHED_NOW=""
retry 60 all_established ||
	fail "qdispatchd never held all $CONNECTIONS connections established (last: $ESTABLISHED_NOW)"
echo "qdispatchd: $ESTABLISHED_NOW established"

budget_s=$((KA_IDLE_S + KA_PROBES * KA_INTVL_S + KA_MARGIN_S))
step "(b) the client vanishes ($DROP_TOOL drops everything); freed within ${budget_s}s?"
vanish
t0=$EPOCHREALTIME
OPEN_NOW=""
if ! retry "$budget_s" dispatcher_drained; then
	fail "qdispatchd still holds $OPEN_NOW connections ${budget_s}s after the client" \
		"vanished (keepalive ${KA_IDLE_S}+${KA_PROBES}x${KA_INTVL_S}s): $(dispatcher_summary)"
fi
t1=$EPOCHREALTIME
echo "every connection freed $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s" \
	"after the drop"
snapshot b1 || fail "qdctl --json failed"
kill -0 "$LOAD_PID" 2>/dev/null || fail "qdtcpload ended before qdispatchd gave up: hold too short"
timeouts=$(delta b0 b1 .totals.tcp.timeouts)
probes=$(delta b0 b1 .totals.tcp.keepalive_probes)
resets_out=$(delta b0 b1 .totals.tcp.resets_out)
echo "timeouts +$timeouts, keepalive_probes +$probes, resets_out +$resets_out," \
	"resets_in +$(delta b0 b1 .totals.tcp.resets_in)"
[[ $timeouts -eq $CONNECTIONS ]] || fail "timeouts grew by $timeouts, expected $CONNECTIONS"
# Probes answered before the drop count too: at least KA_PROBES per connection.
[[ $probes -ge $((KA_PROBES * CONNECTIONS)) ]] ||
	fail "keepalive_probes grew by $probes, expected at least $((KA_PROBES * CONNECTIONS))"
[[ $resets_out -ge $CONNECTIONS ]] ||
	fail "resets_out grew by $resets_out: qdispatchd did not reset every connection it gave up"
POOL_NOW=""
retry 10 pool_back || fail "pool in_use is $POOL_NOW after (b), idle level $POOL_IDLE"
echo "pool: $(jq -c .pool "$TMP/now.json")"
read -r to_client from_client <<<"$(dropped)"
echo "frames dropped towards the client: $to_client, from the client: $from_client"
[[ $to_client -ge $((KA_PROBES * CONNECTIONS)) ]] ||
	fail "the drop rule towards the client dropped $to_client frames: not the probes"

step "(b) the client reappears; its hold ends without having seen a thing"
reappear
load_wait
# The client's FINs reach a qdispatchd that forgot the connections: RSTs.
CLIENT_LEFT=""
retry 20 client_left || fail "$CLIENT_LEFT client sockets to $TARGET left after (b)"
retry 10 dispatcher_drained || fail "the client's FINs opened $OPEN_NOW connections"

step "qdispatchd is up and was never restarted"
"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
[[ $(cat "$LAB_DIR/peer1.pid") == "$peer_pid" ]] || fail "qdispatchd was restarted"

lab_down_checked

echo "PASS"
