#!/usr/bin/env bash
# bench/memif.sh: kernel bypass at both ends: `bench/run memif`.
#
# qdispatchd's echo service (service.echo_port, one busy-polling worker) on a
# net_memif port, against qdbench-dpdk (bench/qdbench_dpdk.c), a DPDK client
# built on the same data plane and TCP stack, attached to the same memif
# socket. No kernel on the path and no network namespace: memif is shared
# memory with a unix control socket. The client resolves the server with ARP
# over the link, as any peer would. Pinning on a 2-CPU machine: the server's
# worker on CPU 1 and its main lcore on CPU 0, the client's worker on CPU 0
# and its main lcore on CPU 1; both main lcores sleep between passes.
#
# Each round runs, in turn:
#   echo     CONNS connections, SIZE-byte messages, one in flight per
#            connection, DURATION seconds: messages/s
#   connect  CPS_CONNS connections at a time, each connect, one SIZE-byte echo,
#            close: connections/s
# Printed per round and as medians: the rate, the client's busy cycles per
# message or connection (qdbench-dpdk's own count) and the server's (qdispatchd's
# busy_cycles from qdctl over the run, divided by the exchanges counted; it
# includes the connections' set-up and tear-down at the run's edges).
#
# usage: bench/memif.sh [--rounds N] [--duration S] [--connections N]
#                       [--cps-connections N] [--size BYTES] [--kernel]
#                       [--json FILE] [--smoke] [--no-lock]
#   --rounds N           rounds (default 3); the figures are medians
#   --duration S         seconds per run (default 5)
#   --connections N      echo connections (default 100, as bench/run tcp-echo)
#   --cps-connections N  concurrent connections of the connect runs (default 64)
#   --size BYTES         message size (default 64)
#   --kernel             then run bench/run tcp-echo (the lab, root) with the same
#                        rounds and duration, and print the ratios to the kernel's
#                        figures and to qdispatchd over af_packet. Without it only
#                        absolute numbers are printed: ratios are only made
#                        between figures of the same invocation.
#   --json FILE          write the medians there
#   --smoke              CI mode: one 2 s round of each, 16 connections; fails
#                        unless both echoed and nothing failed; 77 on < 2 CPUs
#   --no-lock            do not take /tmp/qd-lab-session.lock (the caller holds it;
#                        taken by default because two busy-polling processes
#                        would disturb, and be disturbed by, a lab run)
# QD_BUILD (default build/) holds qdispatchd, qdctl and bench/qdbench-dpdk
# (meson -Dbench=enabled). Exit 0 on success, 1 on a failed run, 2 on a usage
# error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
rounds=3 duration=5 conns=100 cps_conns=64 size=64 kernel=0 json_out="" smoke=0 lock=1
LOCK=/tmp/qd-lab-session.lock
SERVER_IP=10.214.0.1 CLIENT_IP=10.214.0.2 ECHO_PORT=7

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "memif: $*" >&2; exit 2; }
int() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "--$1 '$2': expected a positive integer"; }
while (($# > 0)); do
	case $1 in
	--rounds) rounds=${2:?}; int rounds "$rounds"; shift 2 ;;
	--duration) duration=${2:?}; int duration "$duration"; shift 2 ;;
	--connections) conns=${2:?}; int connections "$conns"; shift 2 ;;
	--cps-connections) cps_conns=${2:?}; int cps-connections "$cps_conns"; shift 2 ;;
	--size) size=${2:?}; int size "$size"; shift 2 ;;
	--kernel) kernel=1; shift ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--smoke) smoke=1 rounds=1 duration=2 conns=16 cps_conns=16; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run memif --help)" ;;
	esac
done
if (($(nproc) < 2)); then
	[[ $smoke -eq 1 ]] && { echo "SKIP: two CPUs needed (one busy-polling worker each)"; exit 77; }
	die "two CPUs needed (one busy-polling worker each); this machine has $(nproc)"
fi
[[ $kernel -eq 0 || $(id -u) -eq 0 ]] || die "--kernel needs root (the lab)"
command -v jq >/dev/null || die "jq is not installed (scripts/deps)"
qdispatchd=$QD_BUILD/dataplane/qdispatchd
qdctl=$QD_BUILD/control/qdctl
client=$QD_BUILD/bench/qdbench-dpdk
if [[ ! -x $client || ! -x $qdispatchd || ! -x $qdctl ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" dataplane/qdispatchd control/qdctl bench/qdbench-dpdk >&2 ||
		die "build failed"
fi

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-memif.XXXXXX)
# shellcheck source-path=SCRIPTDIR source=memif_lib.sh
. "$src/bench/memif_lib.sh"
trap 'stop_server || true; rm -rf "$work"' EXIT

sock=$work/qd.sock
cat >"$work/server.conf" <<EOF
# bench/memif.sh: qdispatchd as the memif server, echo service on, one worker.
port.device = net_memif0,role=server,socket=$work/memif.sock
port.ip = $SERVER_IP/24
vip = 10.214.0.100
lcore.workers = 1
lcore.list = 0@0,1@1
lcore.idle = off
eal.hugepages = off
eal.memory_mb = 256
eal.mbufs = 8191
service.echo_port = $ECHO_PORT
control.socket = $sock
log.level = notice
EOF
memif_server_start memif "qd-memif-srv-$$"

qd_stat() { "$qdctl" -s "$sock" --json stats | jq ".totals.$1"; }

# run_client MODE CONNS -> the client's JSON in $work/last.json; fails the script on an error
run_client() {
	if ! "$client" --socket "$work/memif.sock" --server "$SERVER_IP:$ECHO_PORT" --ip "$CLIENT_IP" \
		--mode "$1" --connections "$2" --size "$size" --duration "$duration" \
		--lcores 0@1,1@0 --file-prefix "qd-memif-cli-$$" --json "$work/last.json" \
		2>>"$work/client.log"; then
		echo "memif: qdbench-dpdk --mode $1 failed:" >&2
		cat "$work/last.json" "$work/client.log" >&2 2>/dev/null || true
		exit 1
	fi
}

declare -a rr rr_cc rr_sc cps cps_cc cps_sc
hz=$(awk '/^cpu MHz/ {print $4 * 1000000; exit}' /proc/cpuinfo)
echo "memif: $rounds round(s) of ${duration} s: echo ($conns conns, $size B) and connect ($cps_conns at a time)"
for ((r = 1; r <= rounds; r++)); do
	b0=$(qd_stat busy_cycles); x0=$(qd_stat rx_packets)
	run_client echo "$conns"
	b1=$(qd_stat busy_cycles); x1=$(qd_stat rx_packets)
	((x1 > x0)) || { echo "memif: the server received nothing" >&2; exit 1; }
	rr+=("$(jq '.msgs_per_s' "$work/last.json")")
	rr_cc+=("$(jq '.busy_cycles_per_msg' "$work/last.json")")
	rr_sc+=("$(jq --argjson c $((b1 - b0)) '$c / .messages | round' "$work/last.json")")
	b0=$b1
	run_client connect "$cps_conns"
	b1=$(qd_stat busy_cycles)
	cps+=("$(jq '.conns_per_s' "$work/last.json")")
	cps_cc+=("$(jq '.busy_cycles_per_conn' "$work/last.json")")
	cps_sc+=("$(jq --argjson c $((b1 - b0)) '$c / .connections_ok | round' "$work/last.json")")
	printf 'round %d: echo %.0f msg/s (cycles/msg client %s, server %s); connect %.0f conn/s (cycles/conn client %s, server %s)\n' \
		"$r" "${rr[-1]}" "${rr_cc[-1]}" "${rr_sc[-1]}" "${cps[-1]}" "${cps_cc[-1]}" "${cps_sc[-1]}"
done
# Its worker's CPU is needed by what follows.
stop_server || { cat "$work/server.log" >&2; echo "memif: qdispatchd did not stop cleanly" >&2; exit 1; }

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'; }
m_rr=$(median "${rr[@]}"); m_rr_cc=$(median "${rr_cc[@]}"); m_rr_sc=$(median "${rr_sc[@]}")
m_cps=$(median "${cps[@]}"); m_cps_cc=$(median "${cps_cc[@]}"); m_cps_sc=$(median "${cps_sc[@]}")
printf 'median of %d round(s) (cpu %s Hz):\n' "$rounds" "$hz"
printf '  echo     %.0f msg/s  (range %s); busy cycles/msg: qdispatchd %s, client %s\n' \
	"$m_rr" "$(spread "${rr[@]}")" "$m_rr_sc" "$m_rr_cc"
printf '  connect  %.0f conn/s (range %s); busy cycles/conn: qdispatchd %s, client %s\n' \
	"$m_cps" "$(spread "${cps[@]}")" "$m_cps_sc" "$m_cps_cc"

result=$(jq -n --argjson rr "$m_rr" --argjson rrs "$m_rr_sc" --argjson rrc "$m_rr_cc" \
	--argjson c "$m_cps" --argjson cs "$m_cps_sc" --argjson cc "$m_cps_cc" \
	--argjson rounds "$rounds" --argjson d "$duration" --argjson n "$conns" \
	--argjson cn "$cps_conns" --argjson size "$size" \
	'{rounds: $rounds, duration_s: $d, msg_bytes: $size,
	  echo: {connections: $n, msgs_per_s: $rr, server_cycles_per_msg: $rrs, client_cycles_per_msg: $rrc},
	  connect: {connections: $cn, conns_per_s: $c, server_cycles_per_conn: $cs, client_cycles_per_conn: $cc}}')
if [[ $kernel -eq 1 ]]; then
	echo "memif: now bench/run tcp-echo (lab, kernel client) with the same rounds and duration"
	QD_BUILD=$QD_BUILD "$src/bench/tcp_echo.sh" --rounds "$rounds" --duration "$duration" \
		--connections "$conns" --json "$work/kernel.json" | sed 's/^/  tcp-echo: /'
	result=$(jq --slurpfile k "$work/kernel.json" \
		'. + {tcp_echo: $k[0], ratio: {
		   echo_vs_kernel: (.echo.msgs_per_s / $k[0].rr.kernel),
		   echo_vs_af_packet: (.echo.msgs_per_s / $k[0].rr.qdispatchd),
		   connect_vs_kernel: (.connect.conns_per_s / $k[0].cps.kernel),
		   connect_vs_af_packet: (.connect.conns_per_s / $k[0].cps.qdispatchd)}}' <<<"$result")
	jq -r '.ratio | "ratios (same invocation): echo \(.echo_vs_kernel * 100 | round / 100)x the kernel, \(.echo_vs_af_packet * 100 | round / 100)x qdispatchd over af_packet; connect \(.connect_vs_kernel * 100 | round / 100)x the kernel, \(.connect_vs_af_packet * 100 | round / 100)x qdispatchd over af_packet"' <<<"$result"
fi
[[ -z $json_out ]] || echo "$result" >"$json_out"
if [[ $smoke -eq 1 ]]; then
	jq -e '.echo.msgs_per_s > 0 and .connect.conns_per_s > 0' <<<"$result" >/dev/null ||
		{ echo "memif: smoke checks failed: $result" >&2; exit 1; }
	echo "memif: smoke checks passed"
fi
