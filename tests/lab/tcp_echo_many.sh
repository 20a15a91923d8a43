#!/usr/bin/env bash
# tcp_echo_many: 5000 concurrent TCP connections from the client namespace (the
# Linux kernel is the peer) to qdispatchd's echo service (QD_ECHO), all open at
# once, each sending messages of random size (1..6000 bytes, so from one byte to
# several segments) and verifying every echoed byte, then half-closing and
# expecting the echo's FIN after the last byte. Afterwards qdispatchd holds no
# connection, is still up, and lab down finds no sanitizer report. Root only
# (exit 77 otherwise).
#
# Environment (all optional):
#   QD_BUILD, QD_SOURCE   as for every lab test
#   QD_TCP_TOOLS          directory of qdtcpload (default $QD_BUILD/tests/tcp)
#   QD_TCP_SEED           seed of the streams and sizes (default: the clock; it is
#                         printed, and the same seed sends the same bytes again)
#   QD_TCP_CONNECTIONS    concurrent connections (default 5000)
#   QD_TCP_PEER=kernel    test a Linux echo server instead of qdispatchd
#                         (qdtcpload --serve in the lab's coordinator namespace):
#                         checks the test itself and gives the kernel's figures
#   QD_TCP_OPEN_JQ        jq expression over `qdctl --json` giving the number of
#                         TCP connections qdispatchd holds (see TCP_OPEN_JQ)
# shellcheck disable=SC2015,SC2016 # "A && B || die" is meant; '$QD_*' expand in the lab
set -euo pipefail

QD_SOURCE=${QD_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
QD_BUILD=${QD_BUILD:-$QD_SOURCE/build}
export QD_BUILD
LAB=$QD_SOURCE/scripts/lab
LAB_DIR=/run/qdispatch/lab
TOOLS=${QD_TCP_TOOLS:-$QD_BUILD/tests/tcp}
QDTCPLOAD=$TOOLS/qdtcpload
PEER=${QD_TCP_PEER:-qdispatchd}
SEED=${QD_TCP_SEED:-$(date +%s)}
CONNECTIONS=${QD_TCP_CONNECTIONS:-5000}
# Connections held by qdispatchd, in every state but LISTEN. The qdctl schema
# of the TCP stack is not final: keep this in step with it.
TCP_OPEN_JQ=${QD_TCP_OPEN_JQ:-.totals.tcp.connections}
KERNEL_ECHO_PORT=7007
COORD_NS=qd-coord
TMP=""
SERVER_PID=""

skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
step() { echo "== $*"; }

[[ $(id -u) -eq 0 ]] || skip "needs root"
command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1 || skip "ip netns unavailable"
for tool in jq ss; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool not installed (run scripts/deps)"
done
[[ -x $QDTCPLOAD ]] || fail "$QDTCPLOAD not built (is tests/tcp in the meson build?)"
[[ $PEER == qdispatchd || $PEER == kernel ]] || fail "QD_TCP_PEER must be qdispatchd or kernel"
[[ $SEED =~ ^[0-9]+$ ]] || fail "QD_TCP_SEED must be a number"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || fail "QD_TCP_CONNECTIONS must be a number"

cleanup() {
	local rc=$?
	trap - EXIT
	if [[ -n $SERVER_PID ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [[ $rc -ne 0 && $rc -ne 77 && -d $LAB_DIR ]]; then
		echo "--- lab state at failure ---" >&2
		"$LAB" status >&2 || true
		for f in "$LAB_DIR"/*.log ${TMP:+"$TMP"/*.log}; do
			[[ -s $f ]] || continue
			echo "--- tail of $f ---" >&2
			tail -n 40 "$f" >&2
		done
	fi
	# A passing run took the lab down itself.
	[[ $rc -eq 0 ]] || "$LAB" down --timeout 10 >&2 || true
	[[ -n $TMP ]] && rm -rf -- "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# retry SECONDS CMD...: run CMD every 0.5 s until it succeeds or time runs out.
retry() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[[ $SECONDS -lt $deadline ]] || return 1
		sleep 0.5
	done
}

lab_exec() { "$LAB" exec -- "$@"; }

# The echo service under test, as HOST:PORT, in TARGET. For qdispatchd the lab
# exports it; for the kernel, start qdtcpload --serve on the first coordinator
# address (the lab takes the server down with its namespace).
echo_target() {
	if [[ $PEER == qdispatchd ]]; then
		TARGET=$(lab_exec sh -c 'echo "${QD_ECHO:-}"')
		[[ -n $TARGET ]] || fail "scripts/lab exec does not export QD_ECHO: the lab must set" \
			"service.echo_port = $KERNEL_ECHO_PORT in the peers' configs and export" \
			"QD_ECHO=<first VIP>:$KERNEL_ECHO_PORT"
		return 0
	fi
	local coord
	coord=$(lab_exec sh -c 'echo "${QD_COORDINATORS%%,*}"')
	coord=${coord#http://}
	TARGET=${coord%:*}:$KERNEL_ECHO_PORT
	ip netns exec "$COORD_NS" "$QDTCPLOAD" --serve "$TARGET" >"$TMP/kernel-echo.log" 2>&1 &
	SERVER_PID=$!
	retry 10 kernel_echo_listening || fail "the kernel echo server does not listen on $TARGET"
}

kernel_echo_listening() {
	kill -0 "$SERVER_PID" 2>/dev/null || fail "the kernel echo server exited: $(cat "$TMP/kernel-echo.log")"
	[[ -n $(ip netns exec "$COORD_NS" ss -Hltn "sport = :$KERNEL_ECHO_PORT") ]]
}

# Succeeds when qdispatchd holds no TCP connection (TCP_OPEN_JQ is 0).
dispatcher_drained() {
	local status
	status=$(lab_exec qdctl --json) || return 1
	OPEN_NOW=$(jq -r "$TCP_OPEN_JQ // \"missing\"" <<<"$status")
	[[ $OPEN_NOW == 0 ]]
}

TMP=$(mktemp -d)
echo "seed $SEED (QD_TCP_SEED=$SEED repeats this run), peer $PEER, $CONNECTIONS connections"

step "lab up"
"$LAB" up
echo_target
echo "echo service: $TARGET"

# 1000 SYNs per second: the handshakes overlap heavily (the SYN backlog and the
# cookies are exercised) without every SYN of 5000 landing in one burst on
# af_packet's ring. Every connection then waits at the barrier, so all are
# open at once; the timeouts cover SYN retransmission (1 s, 3 s, 7 s, ...).
step "$CONNECTIONS concurrent connections, random sizes, byte-exact, half-closed"
rc=0
lab_exec timeout 600 "$QDTCPLOAD" --target "$TARGET" --connections "$CONNECTIONS" \
	--barrier --connect-rate 1000 --messages 6 --min-size 1 --max-size 6000 \
	--half-close --seed "$SEED" --connect-timeout 30 --idle-timeout 30 --timeout 420 \
	--json >"$TMP/load.json" 2>"$TMP/load.log" || rc=$?
[[ -s $TMP/load.json ]] || fail "qdtcpload exited $rc without a result: $(cat "$TMP/load.log")"
jq -c '{connections_ok, connections_failed, connections_open_max, messages, bytes_received,
	mismatches, resets, failed_by_reason, connect_errors, latency_us, duration_s}' "$TMP/load.json"
if [[ $rc -ne 0 ]]; then
	jq -c '.failures[]' "$TMP/load.json" >&2
	fail "qdtcpload exited $rc: not every connection was echoed byte for byte (seed $SEED)"
fi
jq -e --argjson n "$CONNECTIONS" '.ok and .connections_ok == $n and .connections_open_max == $n
	and .mismatches == 0 and .bytes_received == .bytes_sent and .bytes_sent > 0' \
	"$TMP/load.json" >/dev/null || fail "qdtcpload passed but its numbers do not add up"

step "no connection left open on the client side"
left=$(lab_exec ss -Htn state established dst "${TARGET%:*}" | wc -l)
[[ $left -eq 0 ]] || fail "$left client connections to $TARGET still established"

if [[ $PEER == qdispatchd ]]; then
	step "qdispatchd is up and holds no connection any more"
	"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
	OPEN_NOW=""
	retry 30 dispatcher_drained ||
		fail "qdctl --json $TCP_OPEN_JQ is '$OPEN_NOW' 30 s after the run, expected 0" \
			"(adjust TCP_OPEN_JQ in $0 if the schema differs)"
else
	kernel_echo_listening || fail "the kernel echo server died"
fi

step "lab down"
down_out=$("$LAB" down 2>&1) || { echo "$down_out"; fail "lab down failed"; }
echo "$down_out"
if grep -q "sanitizer report" <<<"$down_out"; then
	fail "a lab process printed a sanitizer report"
fi
SERVER_PID=""

echo "PASS"
