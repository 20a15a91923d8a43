#!/usr/bin/env bash
# tcp_bulk: 100 MB each way through qdispatchd's echo service (QD_ECHO) on one
# connection from the client namespace (the Linux kernel is the peer): the
# SHA-256 of what was sent equals that of what came back, every byte was
# compared at its offset, and the echo's FIN followed the last byte. With
# --impaired (tests/lab/tcp_bulk_impaired.sh) the same transfer runs through
# 2% loss in both directions (nftables in the lab, see impair_loss) and
# qdispatchd's own fault layer: 5% reordering, 1% duplication and 10 ms of
# delay in both directions. Afterwards qdispatchd holds no connection, is still
# up, and lab down finds no sanitizer report. Root only (exit 77 otherwise).
#
# usage: tcp_bulk.sh [--impaired]
#
# Environment (all optional):
#   QD_BUILD, QD_SOURCE   as for every lab test
#   QD_TCP_TOOLS          directory of qdtcpbulk and qdtcpload
#                         (default $QD_BUILD/tests/tcp)
#   QD_TCP_SEED           seed of the stream and of the fault layer (default: the
#                         clock; printed, so a failing run can be repeated)
#   QD_TCP_BULK_BYTES     bytes each way (default 100M; K, M, G suffixes)
#   QD_TCP_PEER=kernel    test a Linux echo server instead of qdispatchd
#                         (qdtcpload --serve in the lab's coordinator namespace):
#                         checks the test itself and gives the kernel's figures;
#                         only the loss applies there, not the fault layer
#   QD_TCP_LOSS_TOOL      nft or iptables: how packets are lost (default nft
#                         when installed; see the comment above LOSS_TOOL)
#   QD_TCP_OPEN_JQ        jq expression over `qdctl --json` giving the number of
#                         TCP connections qdispatchd holds (see TCP_OPEN_JQ)
# shellcheck disable=SC2015,SC2016 # "A && B || die" is meant; '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOOLS=${QD_TCP_TOOLS:-$QD_BUILD/tests/tcp}
QDTCPBULK=$TOOLS/qdtcpbulk
QDTCPLOAD=$TOOLS/qdtcpload
PEER=${QD_TCP_PEER:-qdispatchd}
SEED=${QD_TCP_SEED:-$(date +%s)}
BYTES=${QD_TCP_BULK_BYTES:-100M}
# Connections held by qdispatchd, in every state but LISTEN. The qdctl schema
# of the TCP stack is not final: keep this in step with it.
TCP_OPEN_JQ=${QD_TCP_OPEN_JQ:-.totals.tcp.connections}
KERNEL_ECHO_PORT=7007
CLIENT_NS=qd-client
CLIENT_IF=qd-c0
NET_NS=qd-net
CLIENT_BRIDGE_PORT=qd-b-client # the client veth's far end, in qd-net
COORD_NS=qd-coord
# The impairment (issue 3): loss 2%, reordering 5%, duplication 1%, delay 10 ms,
# in both directions.
LOSS_PPM=20000
REORDER_PPM=50000
DUP_PPM=10000
DELAY_US=10000
IMPAIR_TABLE=qd_impair
SERVER_PID=""
IMPAIRED=0

case ${1:-} in
--impaired) IMPAIRED=1 ;;
"") ;;
-h | --help)
	sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) fail "unknown argument '$1' (usage: $0 [--impaired])" ;;
esac

require_lab
require_tools jq ss
[[ -x $QDTCPBULK ]] || fail "$QDTCPBULK not built (is tests/tcp in the meson build, libssl-dev installed?)"
[[ $PEER == qdispatchd || $PEER == kernel ]] || fail "QD_TCP_PEER must be qdispatchd or kernel"
[[ $PEER == qdispatchd || -x $QDTCPLOAD ]] || fail "$QDTCPLOAD not built"
[[ $SEED =~ ^[0-9]+$ ]] || fail "QD_TCP_SEED must be a number"
[[ $BYTES =~ ^[0-9]+[KMG]?$ ]] || fail "QD_TCP_BULK_BYTES must be a number of bytes (K, M, G)"

# How packets are lost. nft drops them on the ingress of both veth ends that
# face the client: qd-c0 in qd-client (qdispatchd -> client) and qd-b-client
# in qd-net (client -> qdispatchd), i.e. after the sender's stack, one wire
# segment at a time. Dropping in the client's OUTPUT chain would not do: there
# the client's own TCP is told of the drop (-EPERM) and sends the segment later
# as if nothing was lost, and the chain sees GSO super-packets of up to 64 KB,
# not segments. With iptables only, INPUT of qd-client drops qdispatchd ->
# client, and the other direction is lost at the receiver: qdispatchd's
# fault.rx_loss_ppm, or INPUT of qd-coord for the kernel peer.
LOSS_TOOL=${QD_TCP_LOSS_TOOL:-}
[[ -z $LOSS_TOOL || $LOSS_TOOL == nft || $LOSS_TOOL == iptables ]] ||
	fail "QD_TCP_LOSS_TOOL must be nft or iptables"
if [[ $IMPAIRED -eq 1 && -n $LOSS_TOOL ]]; then
	command -v "$LOSS_TOOL" >/dev/null 2>&1 || fail "QD_TCP_LOSS_TOOL=$LOSS_TOOL: not installed"
elif [[ $IMPAIRED -eq 1 ]]; then
	if command -v nft >/dev/null 2>&1; then
		LOSS_TOOL=nft
	elif command -v iptables >/dev/null 2>&1; then
		LOSS_TOOL=iptables
	else
		fail "neither nft nor iptables is installed (run scripts/deps)"
	fi
fi

# Stops the kernel echo server, if any.
cleanup_hook() { [[ -z $SERVER_PID ]] || kill_wait "$SERVER_PID"; }
lab_cleanup_traps

# The options of `lab up`: the fault layer of qdispatchd when impaired.
lab_up_args() {
	LAB_ARGS=()
	[[ $IMPAIRED -eq 1 && $PEER == qdispatchd ]] || return 0
	local d
	LAB_ARGS+=(--set "fault.seed=$SEED")
	for d in rx tx; do
		LAB_ARGS+=(--set "fault.${d}_reorder_ppm=$REORDER_PPM")
		LAB_ARGS+=(--set "fault.${d}_dup_ppm=$DUP_PPM")
		LAB_ARGS+=(--set "fault.${d}_delay_us=$DELAY_US")
	done
	if [[ $LOSS_TOOL == iptables ]]; then
		LAB_ARGS+=(--set "fault.rx_loss_ppm=$LOSS_PPM")
	fi
}

# nft_drop NS DEVICE MATCH: drop LOSS_PPM of the frames entering DEVICE in NS
# that match MATCH (an nft expression), counted.
nft_drop() {
	ip netns exec "$1" nft -f - <<EOF || fail "nft refused the loss rule in $1"
table netdev $IMPAIR_TABLE {
	chain loss {
		type filter hook ingress device "$2" priority 0; policy accept;
		$3 numgen random mod 1000000 < $LOSS_PPM counter drop
	}
}
EOF
}

# iptables_drop NS RULE...: drop LOSS_PPM of the INPUT packets matching RULE.
iptables_drop() {
	local ns=$1
	shift
	ip netns exec "$ns" iptables -A INPUT "$@" -m statistic --mode random \
		--probability "0.$(printf '%06d' "$LOSS_PPM")" -j DROP ||
		fail "iptables refused the loss rule in $ns"
}

# Loses LOSS_PPM of the echo connection's packets in each direction.
impair_loss() {
	local host=${TARGET%:*} port=${TARGET##*:}
	if [[ $LOSS_TOOL == nft ]]; then
		nft_drop "$CLIENT_NS" "$CLIENT_IF" "ip saddr $host tcp sport $port"
		nft_drop "$NET_NS" "$CLIENT_BRIDGE_PORT" "ip daddr $host tcp dport $port"
		return 0
	fi
	iptables_drop "$CLIENT_NS" -p tcp -s "$host" --sport "$port"
	if [[ $PEER == kernel ]]; then
		iptables_drop "$COORD_NS" -p tcp -d "$host" --dport "$port"
	fi
}

# Frames the loss rules dropped: "<towards client> <towards peer>". Towards
# the peer is "fault" when qdispatchd's fault layer loses them.
loss_counts() {
	local to_client to_peer="fault"
	if [[ $LOSS_TOOL == nft ]]; then
		to_client=$(nft_dropped "$CLIENT_NS")
		to_peer=$(nft_dropped "$NET_NS")
	else
		to_client=$(iptables_dropped "$CLIENT_NS")
		[[ $PEER == qdispatchd ]] || to_peer=$(iptables_dropped "$COORD_NS")
	fi
	echo "$to_client $to_peer"
}

nft_dropped() {
	ip netns exec "$1" nft list table netdev "$IMPAIR_TABLE" |
		sed -n 's/.*counter packets \([0-9]*\) .*/\1/p'
}

iptables_dropped() {
	ip netns exec "$1" iptables -nvxL INPUT | awk '/statistic/ { n += $1 } END { print n + 0 }'
}

TMP=$(mktemp -d)
name=tcp_bulk
[[ $IMPAIRED -eq 1 ]] && name=tcp_bulk_impaired
echo "$name: seed $SEED (QD_TCP_SEED=$SEED repeats this run), peer $PEER, $BYTES bytes each way"

step "lab up"
lab_up_args
"$LAB" up "${LAB_ARGS[@]+"${LAB_ARGS[@]}"}"
echo_target
echo "echo service: $TARGET"

# A clean 100 MB echo takes seconds; the impaired one runs at a few hundred
# KB/s (2% loss and a 20 ms round trip, and every reordering is a loss signal
# to a sender without SACK), so its limits are wide. No progress for two
# minutes is a failure in either case.
limit_s=300
if [[ $IMPAIRED -eq 1 ]]; then
	step "impair: loss ${LOSS_PPM} ppm each way ($LOSS_TOOL)$(
		[[ $PEER == qdispatchd ]] && echo ", fault layer: reorder $REORDER_PPM ppm," \
			"dup $DUP_PPM ppm, delay $DELAY_US us each way")"
	impair_loss
	limit_s=1500
fi

step "$BYTES bytes each way through $TARGET, SHA-256 compared"
rc=0
lab_exec timeout $((limit_s + 60)) "$QDTCPBULK" --target "$TARGET" --bytes "$BYTES" \
	--seed "$SEED" --connect-timeout 30 --idle-timeout 120 --timeout "$limit_s" \
	--json >"$TMP/bulk.json" 2>"$TMP/bulk.log" || rc=$?
[[ -s $TMP/bulk.json ]] || fail "qdtcpbulk exited $rc without a result: $(cat "$TMP/bulk.log")"
jq -r '"sha256 sent:     \(.sha256_sent)\nsha256 received: \(.sha256_received)"' "$TMP/bulk.json"
jq -c 'del(.sha256_sent, .sha256_received, .tool)' "$TMP/bulk.json"
[[ $rc -eq 0 ]] || fail "qdtcpbulk exited $rc: $(jq -r .outcome "$TMP/bulk.json") (seed $SEED)"
jq -e '.ok and .outcome == "pass" and .eof and .bytes_received == .bytes
	and .bytes_sent == .bytes and .sha256_sent == .sha256_received' "$TMP/bulk.json" \
	>/dev/null || fail "qdtcpbulk passed but its numbers do not add up"

if [[ $IMPAIRED -eq 1 ]]; then
	step "the impairment happened"
	read -r to_client to_peer <<<"$(loss_counts)"
	retransmits=$(jq -r '.retransmits // 0' "$TMP/bulk.json")
	echo "frames dropped towards the client: $to_client, towards the peer: $to_peer;" \
		"client retransmits: $retransmits"
	[[ $to_client -gt 0 ]] || fail "the loss rule towards the client dropped nothing"
	[[ $to_peer == fault || $to_peer -gt 0 ]] || fail "the loss rule towards the peer dropped nothing"
	[[ $retransmits -gt 0 ]] || fail "the client never retransmitted: the loss did not reach it"
fi

check_echo_drained

lab_down_checked
SERVER_PID=""

echo "PASS"
