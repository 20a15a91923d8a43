#!/usr/bin/env bash
# tcp_active_open: qdispatchd's own stack opens connections (the path coordinator
# connections take) to a Linux echo server in the coordinator namespace:
# `qdctl tcp-probe` makes the workers resolve the server's MAC, connect from
# ports they own, send a deterministic stream, check every echoed byte,
# half-close and wait for the server's FIN. Many connections at once, then one
# bulk connection of 100 MB. Afterwards the dispatcher holds no connection and
# its mbuf pool is back to its idle level. Root only (exit 77 otherwise).
#
# Environment (all optional): QD_BUILD, QD_SOURCE; QD_TCP_CONNECTIONS (default 1000);
# QD_TCP_BULK_BYTES (default 104857600).
# shellcheck disable=SC2015
set -euo pipefail

QD_SOURCE=${QD_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
QD_BUILD=${QD_BUILD:-$QD_SOURCE/build}
export QD_BUILD
LAB=$QD_SOURCE/scripts/lab
QDCTL=$QD_BUILD/control/qdctl
QDTCPLOAD=$QD_BUILD/tests/tcp/qdtcpload
CONNECTIONS=${QD_TCP_CONNECTIONS:-1000}
BULK=${QD_TCP_BULK_BYTES:-104857600}
SERVER=10.213.0.201:7007
SERVER_PID=""

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[[ $(id -u) -eq 0 ]] || skip "needs root"
command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1 || skip "ip netns unavailable"
command -v jq >/dev/null 2>&1 || fail "jq not installed (run scripts/deps)"
[[ -x $QDTCPLOAD && -x $QDCTL ]] || fail "build first: $QDTCPLOAD or $QDCTL missing"

cleanup() {
	local rc=$?
	trap - EXIT
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
	if [[ $rc -ne 0 && $rc -ne 77 ]]; then
		"$LAB" status >&2 || true
		tail -n 30 /run/qdispatch/lab/peer1.log >&2 2>/dev/null || true
		"$LAB" down --timeout 10 >&2 || true
	fi
	exit "$rc"
}
trap cleanup EXIT

step "lab up (TIME_WAIT 2 s, so the end state is reached quickly)"
"$LAB" up --set tcp.time_wait_ms=2000 >/dev/null
export QD_CTL_SOCKET=/run/qdispatch/qdispatchd.sock

step "Linux echo server on $SERVER (coordinator namespace)"
ip netns exec qd-coord "$QDTCPLOAD" --serve "$SERVER" >/dev/null 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
	ip netns exec qd-coord ss -Hltn "sport = :7007" | grep -q . && break
	sleep 0.1
done

idle_in_use=$("$QDCTL" --json stats | jq '.pool.in_use')

step "$CONNECTIONS connections at once, 64 KiB each, byte-exact"
out=$("$QDCTL" --json -t 120000 tcp-probe "$SERVER" "$CONNECTIONS" 65536) ||
	fail "tcp-probe failed: $out"
echo "$out" | jq -c .
[[ $(jq '.ok' <<<"$out") -eq $CONNECTIONS ]] || fail "not every connection passed"

step "one connection, $BULK bytes each way, byte-exact"
out=$("$QDCTL" --json -t 300000 tcp-probe "$SERVER" 1 "$BULK") || fail "bulk probe failed: $out"
echo "$out" | jq -c .
[[ $(jq '.bytes_verified' <<<"$out") -eq $BULK ]] || fail "bulk: not every byte came back"

step "connections back to 0 and the pool back to its idle level ($idle_in_use in use)"
for _ in $(seq 100); do
	st=$("$QDCTL" --json stats)
	conns=$(jq '.totals.tcp.connections' <<<"$st")
	in_use=$(jq '.pool.in_use' <<<"$st")
	[[ $conns -eq 0 && $in_use -le $((idle_in_use + 64)) ]] && break
	sleep 0.1
done
[[ $conns -eq 0 ]] || fail "$conns connections still open"
# Slack of 64: mbufs a worker may hold in its TX batch or the pool's per-lcore cache
# accounting at the moment of reading.
[[ $in_use -le $((idle_in_use + 64)) ]] || fail "$in_use mbufs in use, idle was $idle_in_use"
jq -c '.totals.tcp | {active_opens, retransmits, timeouts, resets_in, resets_out}' <<<"$st"

step "lab down"
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
"$LAB" down >/dev/null
echo PASS
