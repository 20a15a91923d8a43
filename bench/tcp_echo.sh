#!/usr/bin/env bash
# bench/tcp_echo.sh: qdispatchd's user-space TCP against the Linux kernel's, on the
# same lab, with the same client (qdtcpload in the client namespace), in the same run,
# alternating A B A B. Two workloads:
#   rr    echo request/response: CONNS connections, 64-byte messages, one in flight per
#         connection, for DURATION seconds: messages per second
#   cps   connection rate: batches of short connections (connect, one 64-byte echo,
#         close): connections per second
# Server A is qdispatchd's echo service (QD_ECHO, one worker, busy polling); server B is
# `qdtcpload --serve` in the coordinator namespace (a kernel socket server on the
# other side of the same bridge). Printed: each round, the medians and the ratio A/B,
# plus qdispatchd's busy cycles per message or connection (its CPU cost; the kernel's
# cost is spread over softirq and is not attributed here).
#
# usage: bench/tcp_echo.sh [--rounds N] [--duration S] [--connections N] [--json FILE]
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
qdctl=$build/control/qdctl
load=$build/tests/tcp/qdtcpload
rounds=3
duration=5
conns=100
cps_batch=2000
json_out=""
server_pid=""

while (($# > 0)); do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--connections) conns=$2; shift 2 ;;
	--json) json_out=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "tcp_echo: unknown option $1" >&2; exit 2 ;;
	esac
done
[[ $(id -u) -eq 0 ]] || { echo "tcp_echo: needs root (the lab)" >&2; exit 2; }
[[ -x $load && -x $qdctl ]] || ninja -C "$build" >&2

cleanup() {
	[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
	"$lab" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$lab" up --busy-poll --set tcp.time_wait_ms=1000 >/dev/null
export QD_CTL_SOCKET=/run/qdispatch/qdispatchd.sock
ip netns exec qd-coord "$load" --serve 10.213.0.201:7007 >/dev/null 2>&1 &
server_pid=$!
sleep 0.5
A=10.213.0.101:7007
B=10.213.0.201:7007
hz=$(awk '/^cpu MHz/ {print $4 * 1000000; exit}' /proc/cpuinfo)

busy() { "$qdctl" --json stats | jq '.totals.busy_cycles'; }

rr() { # target -> messages/s
	scripts_out=$("$lab" exec -- "$load" --target "$1" --connections "$conns" --duration "$duration" \
		--min-size 64 --max-size 64 --json 2>/dev/null)
	jq -r '.messages / .duration_s' <<<"$scripts_out"
}

cps() { # target -> connections/s
	out=$("$lab" exec -- "$load" --target "$1" --connections "$cps_batch" --messages 1 \
		--min-size 64 --max-size 64 --connect-rate 0 --json 2>/dev/null)
	jq -r '.connections_ok / .duration_s' <<<"$out"
}

declare -a rr_a rr_b cps_a cps_b cyc_rr cyc_cps
for ((r = 1; r <= rounds; r++)); do
	b0=$(busy); a=$(rr "$A"); b1=$(busy)
	msgs=$(awk -v a="$a" -v d="$duration" 'BEGIN {print a * d}')
	cyc_rr+=("$(awk -v c=$((b1 - b0)) -v m="$msgs" 'BEGIN {printf "%.0f", c / m}')")
	rr_a+=("$a"); rr_b+=("$(rr "$B")")
	sleep 1.5 # TIME_WAIT of the previous batch
	b0=$(busy); a=$(cps "$A"); b1=$(busy)
	cyc_cps+=("$(awk -v c=$((b1 - b0)) -v n=$cps_batch 'BEGIN {printf "%.0f", c / n}')")
	cps_a+=("$a"); cps_b+=("$(cps "$B")")
	printf 'round %d: rr %.0f vs %.0f msg/s, cps %.0f vs %.0f conn/s\n' "$r" \
		"${rr_a[-1]}" "${rr_b[-1]}" "${cps_a[-1]}" "${cps_b[-1]}"
	sleep 1.5
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
m_rr_a=$(median "${rr_a[@]}"); m_rr_b=$(median "${rr_b[@]}")
m_cps_a=$(median "${cps_a[@]}"); m_cps_b=$(median "${cps_b[@]}")
m_cyc_rr=$(median "${cyc_rr[@]}"); m_cyc_cps=$(median "${cyc_cps[@]}")
printf 'median of %d rounds:\n' "$rounds"
printf '  echo rr  qdispatchd %.0f msg/s, kernel %.0f msg/s, ratio %.2f; qdispatchd %s busy cycles/msg\n' \
	"$m_rr_a" "$m_rr_b" "$(awk -v a="$m_rr_a" -v b="$m_rr_b" 'BEGIN {print a / b}')" "$m_cyc_rr"
printf '  conn/s   qdispatchd %.0f, kernel %.0f, ratio %.2f; qdispatchd %s busy cycles/conn\n' \
	"$m_cps_a" "$m_cps_b" "$(awk -v a="$m_cps_a" -v b="$m_cps_b" 'BEGIN {print a / b}')" "$m_cyc_cps"
printf '  (cpu %s Hz)\n' "$hz"
if [[ -n $json_out ]]; then
	jq -n --argjson rra "$m_rr_a" --argjson rrb "$m_rr_b" --argjson ca "$m_cps_a" \
		--argjson cb "$m_cps_b" --argjson cr "$m_cyc_rr" --argjson cc "$m_cyc_cps" \
		'{rr: {qdispatchd: $rra, kernel: $rrb, ratio: ($rra / $rrb), busy_cycles_per_msg: $cr},
		  cps: {qdispatchd: $ca, kernel: $cb, ratio: ($ca / $cb), busy_cycles_per_conn: $cc}}' \
		>"$json_out"
fi
