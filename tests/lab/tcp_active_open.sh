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

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
QDCTL=$QD_BUILD/control/qdctl
QDTCPLOAD=$QD_BUILD/tests/tcp/qdtcpload
CONNECTIONS=${QD_TCP_CONNECTIONS:-1000}
BULK=${QD_TCP_BULK_BYTES:-104857600}
SERVER=10.213.0.201:7007
SERVER_PID=""

require_lab
require_tools jq
[[ -x $QDTCPLOAD && -x $QDCTL ]] || fail "build first: $QDTCPLOAD or $QDCTL missing"

# Stops the Linux echo server, if any.
cleanup_hook() { [[ -z $SERVER_PID ]] || kill_wait "$SERVER_PID"; }
lab_cleanup_traps

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
