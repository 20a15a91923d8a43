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

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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
SERVER_PID=""

require_lab
require_tools jq ss
[[ -x $QDTCPLOAD ]] || fail "$QDTCPLOAD not built (is tests/tcp in the meson build?)"
[[ $PEER == qdispatchd || $PEER == kernel ]] || fail "QD_TCP_PEER must be qdispatchd or kernel"
[[ $SEED =~ ^[0-9]+$ ]] || fail "QD_TCP_SEED must be a number"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || fail "QD_TCP_CONNECTIONS must be a number"

# Stops the kernel echo server, if any.
cleanup_hook() { [[ -z $SERVER_PID ]] || kill_wait "$SERVER_PID"; }
lab_cleanup_traps

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

check_echo_drained

lab_down_checked
SERVER_PID=""

echo "PASS"
