#!/usr/bin/env bash
# bench/memif_proxy.sh: qdispatchd's own query-proxy ceiling with kernel bypass
# at both ends: `bench/run memif-proxy`.
#
# qdispatchd (one busy-polling worker, the proxy on) on a net_memif port, and on
# the other end of the same link qdbench-dpdk --mode query (bench/qdbench_dpdk.c,
# qdbench_dpdk_trino.c), which plays both sides of the proxy on qdispatchd's own
# data plane and TCP stack: CLIENTS keep-alive Trino clients towards the VIP
# (POST /v1/statement, then a GET of each nextUri until none, one request in
# flight per client) and the COORDS coordinators of qdispatchd's configuration
# (it holds their addresses on the link and answers as a minimal Trino
# coordinator: QUEUED, PAGES pages, the last FINISHED with one row; /v1/info and
# /v1/cluster for the health checks). No kernel and no network namespace on the
# path. Pinning on 2 CPUs as bench/memif.sh: qdispatchd's worker on CPU 1,
# qdbench-dpdk's worker on CPU 0, both main lcores sleeping between passes.
#
# Per round: queries/s, requests/s, query latency p50/p99 (qdbench-dpdk's
# histogram, POST to final page), qdispatchd's busy cycles per query (qdctl
# --json stats, .totals.busy_cycles over the run, divided by the queries
# completed; the health checks and the connections' set-up at the run's edges
# are in it) and qdbench-dpdk's own (clients and coordinators together). The
# figures are medians over the rounds.
#
# usage: bench/memif_proxy.sh [--rounds N] [--duration S] [--clients N] [--pages N]
#                             [--coordinators N] [--kernel] [--json FILE] [--smoke]
#                             [--no-lock]
#   --rounds N        rounds (default 3); the figures are medians
#   --duration S      seconds measured per round (default 5)
#   --clients N       concurrent query lifecycles (default 32, as bench/run scaling)
#   --pages N         GETs per query after the POST (default 3: four requests per
#                     query, as qdcoordsim's one-row queries take in the kernel arm)
#   --coordinators N  coordinators behind qdispatchd, 1..8 (default 3, as the lab)
#   --kernel          then the same closed loop through the kernel path in the
#                     same invocation: bench/run scaling --workers 1 --busy-poll
#                     (the lab: qdispatchd over af_packet, qdbench and qdcoordsim on
#                     kernel sockets; root), with the same rounds, duration and
#                     clients, and the ratios. Without it only absolute numbers
#                     are printed: ratios are only made within one invocation.
#   --json FILE       write the medians (and the kernel arm's) there
#   --smoke           CI mode: one 2 s round, 8 clients; fails unless queries
#                     completed, nothing failed and the coordinators were health
#                     checked; 77 on < 2 CPUs
#   --no-lock         do not take /tmp/qd-lab-session.lock (the caller holds it)
# Each round also prints the CPU time other processes took on the machine while
# it ran (and the hypervisor's steal): on a shared VM, read a round's figures
# with it.
# QD_BUILD (default build/) holds qdispatchd, qdctl and bench/qdbench-dpdk
# (meson -Dbench=enabled). Exit 0 on success, 1 on a failed run, 2 on a usage
# error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
rounds=3 duration=5 clients=32 pages=3 ncoords=3 kernel=0 json_out="" smoke=0 lock=1
LOCK=/tmp/qd-lab-session.lock
SERVER_IP=10.214.0.1 CLIENT_IP=10.214.0.2 VIP=10.214.0.100 PORT=8080

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "memif-proxy: $*" >&2; exit 2; }
int() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "--$1 '$2': expected a positive integer"; }
while (($# > 0)); do
	case $1 in
	--rounds) rounds=${2:?}; int rounds "$rounds"; shift 2 ;;
	--duration) duration=${2:?}; int duration "$duration"; shift 2 ;;
	--clients) clients=${2:?}; int clients "$clients"; shift 2 ;;
	--pages) pages=${2:?}; int pages "$pages"; shift 2 ;;
	--coordinators) ncoords=${2:?}; int coordinators "$ncoords"; shift 2 ;;
	--kernel) kernel=1; shift ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--smoke) smoke=1 rounds=1 duration=2 clients=8; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run memif-proxy --help)" ;;
	esac
done
((ncoords <= 8)) || die "--coordinators: at most 8"
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
	echo "memif-proxy: waiting for the lab session lock $LOCK" >&2
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-memif-proxy.XXXXXX)
# shellcheck source-path=SCRIPTDIR source=memif_lib.sh
. "$src/bench/memif_lib.sh"
trap 'stop_server || true; rm -rf "$work"' EXIT

coord_args=() coord_lines=""
for ((i = 1; i <= ncoords; i++)); do
	coord_args+=(--coordinator "10.214.0.$((10 + i))")
	coord_lines+="coordinator = 10.214.0.$((10 + i)):$PORT"$'\n'
done
sock=$work/qd.sock
# health.fall: qdbench-dpdk (and with it the coordinators) is restarted between
# rounds; a coordinator taken down in that gap would need health.rise passes
# before the next round may use it. The checks still run every 500 ms and are
# answered (and paid for) during the rounds.
# route.linger_s: an ended query's route stays 60 s by default; at ~40,000
# queries/s that is 2.4 million routes, beyond route.max's default (262,144)
# and this run's memory, and every follow-up after the table filled would get
# 404 (routes_full). 2 s keeps them well inside it; the routes are still
# created, ended and swept for every query.
cat >"$work/server.conf" <<EOF
# bench/memif_proxy.sh: qdispatchd as the memif server, the proxy on, one worker.
port.device = net_memif0,role=server,socket=$work/memif.sock
port.ip = $SERVER_IP/24
vip = $VIP
listen.port = $PORT
${coord_lines}health.fall = 100
route.linger_s = 2
lcore.workers = 1
lcore.list = 0@0,1@1
lcore.idle = off
eal.hugepages = off
eal.memory_mb = 256
eal.mbufs = 8191
control.socket = $sock
log.level = notice
EOF
memif_server_start memif-proxy "qd-memifp-srv-$$"

qd_stat() { "$qdctl" -s "$sock" --json stats | jq "$1"; }

# run_client -> the client's JSON in $work/last.json; fails the script on an error
run_client() {
	local TIMEFORMAT='%3U %3S'
	if ! { time "$client" --socket "$work/memif.sock" --server "$VIP:$PORT" --ip "$CLIENT_IP" \
		--mode query "${coord_args[@]}" --coordinator-port "$PORT" --pages "$pages" \
		--connections "$clients" --duration "$duration" \
		--lcores 0@1,1@0 --file-prefix "qd-memifp-cli-$$" --json "$work/last.json" \
		2>>"$work/client.log"; } 2>"$work/client.time"; then
		echo "memif-proxy: qdbench-dpdk --mode query failed:" >&2
		cat "$work/last.json" "$work/client.log" >&2 2>/dev/null || true
		"$qdctl" -s "$sock" coordinators >&2 2>/dev/null || true
		exit 1
	fi
}

# The VM is shared: whatever else ran during a round took its CPU from the two
# busy-polling workers. other_cpu_s = the machine's busy time (user, nice,
# system, irq, softirq) minus both ends' own CPU time; steal_s = the hypervisor's.
tck=$(getconf CLK_TCK)
cpu_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }
ticks() { local f; read -r -a f <<<"$(sed 's/.*) //' "/proc/$1/stat")"; echo $((f[11] + f[12])); }

hz=$(awk '/^cpu MHz/ {printf "%.0f", $4 * 1000000; exit}' /proc/cpuinfo)
echo "memif-proxy: $rounds round(s) of ${duration} s: $clients clients, $ncoords coordinators," \
	"$((pages + 1)) requests per query"
: >"$work/rounds.jsonl"
for ((r = 1; r <= rounds; r++)); do
	b0=$(qd_stat .totals.busy_cycles); q0=$(qd_stat '.totals.proxy.requests // 0')
	read -r j0 st0 <<<"$(cpu_jiffies)"; t0=$(ticks "$server_pid")
	run_client
	read -r j1 st1 <<<"$(cpu_jiffies)"; t1=$(ticks "$server_pid")
	b1=$(qd_stat .totals.busy_cycles); q1=$(qd_stat '.totals.proxy.requests // 0')
	read -r cu cs <"$work/client.time"
	other=$(awk -v j=$((j1 - j0 - (t1 - t0))) -v t="$tck" -v u="$cu" -v s="$cs" \
		'BEGIN {o = j / t - u - s; printf "%.2f", o < 0 ? 0 : o}')
	steal=$(awk -v j=$((st1 - st0)) -v t="$tck" 'BEGIN {printf "%.2f", j / t}')
	jq -c --argjson r "$r" --argjson c $((b1 - b0)) --argjson q $((q1 - q0)) \
		--argjson other "$other" --argjson steal "$steal" '
		{round: $r, queries_per_s, requests_per_s, query_p50_us: .latency_us.query.p50,
		 query_p99_us: .latency_us.query.p99, queries, errors,
		 server_cycles_per_query: ($c / .queries | round),
		 client_cycles_per_query: (.busy_cycles_per_query | round),
		 server_requests: $q, coordinator_requests, other_cpu_s: $other, steal_s: $steal}' \
		"$work/last.json" >>"$work/rounds.jsonl"
	tail -n1 "$work/rounds.jsonl" | jq -r '"round \(.round): \(.queries_per_s | round) queries/s, \(.requests_per_s | round) requests/s, query p50 \(.query_p50_us) us p99 \(.query_p99_us) us; busy cycles/query qdispatchd \(.server_cycles_per_query), qdbench-dpdk \(.client_cycles_per_query); health checks answered \(.coordinator_requests.cluster); other work on the VM \(.other_cpu_s) CPU-s, steal \(.steal_s) s"'
done
# Its worker's CPU is needed by what follows.
stop_server || { cat "$work/server.log" >&2; echo "memif-proxy: qdispatchd did not stop cleanly" >&2; exit 1; }

result=$(jq -s --argjson hz "$hz" --argjson rounds "$rounds" --argjson d "$duration" \
	--argjson n "$clients" --argjson pages "$pages" --argjson coords "$ncoords" '
	def median: sort | .[(length - 1) / 2 | floor];
	def spread: {median: median, min: min, max: max};
	{rounds: $rounds, duration_s: $d, clients: $n, pages: $pages, coordinators: $coords,
	 requests_per_query: ($pages + 1), cpu_hz: $hz,
	 queries_per_s: (map(.queries_per_s) | spread), requests_per_s: (map(.requests_per_s) | spread),
	 query_p50_us: (map(.query_p50_us) | spread), query_p99_us: (map(.query_p99_us) | spread),
	 server_cycles_per_query: (map(.server_cycles_per_query) | spread),
	 client_cycles_per_query: (map(.client_cycles_per_query) | spread),
	 server_ceiling_queries_per_s_est: ($hz / (map(.server_cycles_per_query) | median) | round),
	 errors: (map(.errors) | add), health_checks: (map(.coordinator_requests.cluster) | add),
	 runs: .}' "$work/rounds.jsonl")
jq -r '"median of \(.rounds) round(s) (cpu \(.cpu_hz) Hz): \(.queries_per_s.median | round) queries/s (range \(.queries_per_s.min | round)-\(.queries_per_s.max | round)), \(.requests_per_s.median | round) requests/s, query p50 \(.query_p50_us.median) us p99 \(.query_p99_us.median) us; busy cycles/query: qdispatchd \(.server_cycles_per_query.median), qdbench-dpdk \(.client_cycles_per_query.median); errors \(.errors)\n  one qdispatchd worker busy all the time at that cost: ~\(.server_ceiling_queries_per_s_est) queries/s (cpu Hz / its cycles per query)"' <<<"$result"

if [[ $kernel -eq 1 ]]; then
	echo "memif-proxy: now bench/run scaling --workers 1 --busy-poll (lab, kernel sockets) with the same rounds, duration and clients"
	QD_BUILD=$QD_BUILD "$src/bench/scaling.sh" --workers 1 --busy-poll --rounds "$rounds" \
		--duration "$duration" --clients "$clients" --no-lock --json "$work/kernel.json" |
		sed 's/^/  scaling: /'
	result=$(jq --slurpfile k "$work/kernel.json" '
		($k[0].summary["1"]) as $s
		| . + {kernel: {mode: $s.mode, queries_per_s: $s.qps, query_p50_us: $s.closed_query_p50_us,
			 query_p99_us: $s.closed_query_p99_us, busy_cycles_per_query: $s.busy_cycles_per_query,
			 requests_per_query: ([$k[0].runs[] | .closed_work.requests / .closed_work.queries] | sort | .[(length - 1) / 2 | floor]),
			 errors: $s.errors},
		       ratio: {queries_per_s: (.queries_per_s.median / $s.qps.median),
			       server_cycles_per_query: (.server_cycles_per_query.median / $s.busy_cycles_per_query.median),
			       query_p50: (.query_p50_us.median / $s.closed_query_p50_us.median)}}' <<<"$result")
	jq -r '"kernel path (same invocation): \(.kernel.queries_per_s.median | round) queries/s, \(.kernel.requests_per_query * 100 | round / 100) requests/query, query p50 \(.kernel.query_p50_us.median | round) us, qdispatchd busy cycles/query \(.kernel.busy_cycles_per_query.median | round)\nrequests per query: \(.requests_per_query) here, \(.kernel.requests_per_query * 100 | round / 100) there\(if (.kernel.requests_per_query - .requests_per_query | fabs) > 0.05 then " (NOT the same load: set --pages)" else "" end)\nratios memif / kernel path: queries/s \(.ratio.queries_per_s * 100 | round / 100)x, qdispatchd cycles/query \(.ratio.server_cycles_per_query * 100 | round / 100)x, query p50 \(.ratio.query_p50 * 100 | round / 100)x"' <<<"$result"
fi
[[ -z $json_out ]] || echo "$result" >"$json_out"
if [[ $smoke -eq 1 ]]; then
	jq -e '.queries_per_s.median > 0 and .errors == 0 and .health_checks > 0' <<<"$result" >/dev/null ||
		{ echo "memif-proxy: smoke checks failed: $(jq -c 'del(.runs)' <<<"$result")" >&2; exit 1; }
	echo "memif-proxy: smoke checks passed"
fi
