#!/usr/bin/env bash
# bench/scaling.sh: qdispatchd with 1 and 2 worker lcores, the same qdbench load
# through its proxy, same run, alternating: `bench/run scaling`.
#
# Arms: W=1 and W=2 (`scripts/lab up --coordinators 3 --workers W`; with W > 1
# the port gets W queue pairs and the kernel spreads the connections over
# them). The arms alternate (1 2 1 2 ...), each with a fresh lab. In each run:
# a closed loop (--clients query lifecycles in flight: the queries/s the arm
# sustains and query p50/p99 at saturation) and an open loop at --rate
# queries/s (the same load for both arms: query and request p50/p99). Reported
# per arm (medians over the rounds, min-max): queries/s, latencies, and the
# fair measure of work (docs/benchmarks.md "Measuring fairly"): the workers'
# busy cycles (qdctl --json stats: the sum of .lcores[].busy_cycles deltas, TSC
# cycles of loop iterations that found work) per query, each worker's share of
# them, and qdispatchd's process CPU per query; then the per-round ratios
# W=2 / W=1.
#
# The CPUs: `nproc` decides what shares what. With 2 vCPUs, W=1 is the main
# lcore on cpu 0 and the worker on cpu 1; W=2 puts the second worker on cpu 0
# with the main lcore, and qdbench, qdcoordsim, the kernel's softirq work and
# everything else on the machine share the same two CPUs in both arms.
# --busy-poll polls without sleeping only where the lcores fit on their own
# CPUs (W + 1 <= nproc, the lab refuses otherwise): on 2 vCPUs that is W=1
# only, and the table says which arm polled.
#
# usage: bench/scaling.sh [--rounds N] [--duration S] [--warmup S] [--clients N]
#                         [--rate R] [--workers "1 2"] [--busy-poll] [--json FILE]
#                         [--smoke] [--no-lock]
#   --rounds N      rounds of all arms (default 3)
#   --duration S    seconds measured per run (default 5)
#   --warmup S      seconds before measuring (default 1)
#   --clients N     closed-loop lifecycles in flight (default 32)
#   --rate R        open-loop queries/s (default 1000)
#   --workers LIST  the worker counts to compare (default "1 2"; the first is
#                   the base of the ratios)
#   --busy-poll     lcore.idle = off for the arms whose lcores fit on the CPUs
#   --json FILE     results as JSON (default $QD_BUILD/bench/scaling.json)
#   --smoke         CI: 1 round of 1 s, 8 clients, 100 q/s; checks every arm
#                   ran without errors and its workers reported busy cycles;
#                   exit 77 when not root
#   --no-lock       do not take /tmp/qd-lab-session.lock (the caller holds it)
# Root (the lab). QD_BUILD (default build/) holds qdispatchd, qdctl, qdcoordsim
# and bench/qdbench. Exit 0 on success, 1 on a failed run, 2 on a usage error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
rounds=3 duration=5 warmup=1 clients=32 rate=1000 workers_list="1 2" busy=0
json_out="" smoke=0 lock=1
LOCK=/tmp/qd-lab-session.lock

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "scaling: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--$1 '$2': expected a number"; }
while (($# > 0)); do
	case $1 in
	--rounds) rounds=${2:?}; [[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive count"; shift 2 ;;
	--duration) duration=${2:?}; num duration "$duration"; shift 2 ;;
	--warmup) warmup=${2:?}; num warmup "$warmup"; shift 2 ;;
	--clients) clients=${2:?}; [[ $clients =~ ^[1-9][0-9]*$ ]] || die "--clients: a positive count"; shift 2 ;;
	--rate) rate=${2:?}; num rate "$rate"; shift 2 ;;
	--workers) workers_list=${2:?}; [[ $workers_list =~ ^[1-9]( [1-9])*$ ]] || die "--workers: e.g. \"1 2\" or \"1\""; shift 2 ;;
	--busy-poll) busy=1; shift ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--smoke) smoke=1 rounds=1 duration=1 warmup=0.2 clients=8 rate=100; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run scaling --help)" ;;
	esac
done
if [[ $(id -u) -ne 0 ]]; then
	[[ $smoke -eq 1 ]] && { echo "SKIP: needs root (the lab)"; exit 77; }
	die "needs root (the lab)"
fi
command -v jq >/dev/null || die "jq is not installed (scripts/deps)"
qdbench=$QD_BUILD/bench/qdbench
qdctl=$QD_BUILD/control/qdctl
if [[ ! -x $qdbench || ! -x $qdctl ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" >&2
fi
[[ -x $qdbench ]] || die "$qdbench was not built (meson -Dbench=enabled needs libbenchmark-dev)"
json_out=${json_out:-$QD_BUILD/bench/scaling.json}
mkdir -p "$(dirname "$json_out")"
read -r -a workers_arr <<<"$workers_list"
cpus=$(nproc)
hz=$(awk '/^cpu MHz/ {printf "%.0f", $4 * 1000000; exit}' /proc/cpuinfo)
tck=$(getconf CLK_TCK)

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	echo "scaling: waiting for the lab session lock $LOCK" >&2
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-scaling.XXXXXX)
trap '"$lab" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# ticks PID: utime + stime of the process (all its threads), in clock ticks
ticks() {
	local s f
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	s=${s##*) }
	read -r -a f <<<"$s"
	echo $((f[11] + f[12]))
}
# snap FILE: the workers' counters now
snap() {
	"$qdctl" --json stats >"$1.raw" 2>>"$work/qdctl.log" || { echo "scaling: qdctl stats failed" >&2; exit 1; }
	jq -c '{lcores: [.lcores[] | {lcore, busy_cycles, loops, busy_loops}],
		requests: (.totals.proxy.requests // 0)}' "$1.raw" >"$1"
}
# delta BEFORE AFTER QDBENCH_JSON TICKS: the work of one run, per query
delta() {
	jq -c -n --slurpfile a "$1" --slurpfile b "$2" --slurpfile q "$3" --argjson ticks "$4" \
		--argjson tck "$tck" --argjson hz "$hz" '
		($a[0]) as $x | ($b[0]) as $y | ($q[0].queries.finished) as $n
		| [range(0; $y.lcores | length) as $i
		   | {lcore: $y.lcores[$i].lcore,
		      busy_cycles: ($y.lcores[$i].busy_cycles - $x.lcores[$i].busy_cycles),
		      busy_loop_share: (($y.lcores[$i].busy_loops - $x.lcores[$i].busy_loops)
			/ ([($y.lcores[$i].loops - $x.lcores[$i].loops), 1] | max))}] as $l
		| ($l | map(.busy_cycles) | add) as $busy
		| {queries: $n, requests: ($y.requests - $x.requests),
		   busy_cycles_per_query: (if $n > 0 then $busy / $n else null end),
		   busy_share: ($l | map(.busy_cycles / ([$busy, 1] | max))),
		   busy_loop_share: ($l | map(.busy_loop_share)),
		   process_cpu_us_per_query: (if $n > 0 then $ticks / $tck * 1e6 / $n else null end),
		   process_cycles_per_query: (if $n > 0 then $ticks / $tck * $hz / $n else null end)}'
}

echo "scaling: workers ${workers_list}, $rounds round(s): closed loop $clients clients and open loop" \
	"$rate q/s, ${duration} s each after ${warmup} s warm-up; $cpus CPUs" >&2
: >"$work/runs.jsonl"
for ((r = 1; r <= rounds; r++)); do
	for w in "${workers_arr[@]}"; do
		args=(--coordinators 3 --workers "$w")
		mode=idle
		if [[ $busy -eq 1 ]] && ((w + 1 <= cpus)); then
			args+=(--busy-poll)
			mode=busy-poll
		fi
		"$lab" up "${args[@]}" >"$work/lab-up.log" 2>&1 || { cat "$work/lab-up.log" >&2; exit 1; }
		eval "$("$lab" env)"
		qd_pid=$(cat /run/qdispatch/lab/peer1.pid)
		lcores=$(awk -F' = ' '$1 == "lcore.list" {print $2}' /run/qdispatch/lab/peer1.conf)
		# a probe: the proxy answers before anything is measured
		"$lab" exec -- "$qdbench" -q --queries 3 --clients 1 --timeout 5 --json "$work/probe.json" "$QD_URL" \
			2>>"$work/qdbench.log" || { echo "scaling: the proxy does not answer with $w worker(s)" >&2; exit 1; }
		for loop in closed open; do
			f=$work/$loop.json
			load=(--clients "$clients")
			[[ $loop == open ]] && load=(--rate "$rate" --clients $((clients * 8)))
			snap "$work/s0.json"
			t0=$(ticks "$qd_pid")
			rc=0
			"$lab" exec -- "$qdbench" -q "${load[@]}" --duration "$duration" --warmup "$warmup" \
				--rows 1 --json "$f" --label "w$w-$loop" "$QD_URL" 2>>"$work/qdbench.log" || rc=$?
			t1=$(ticks "$qd_pid")
			snap "$work/s1.json"
			[[ $rc -le 1 && -s $f ]] || { echo "scaling: qdbench failed (W=$w, $loop, round $r, exit $rc)" >&2; exit 1; }
			delta "$work/s0.json" "$work/s1.json" "$f" $((t1 - t0)) >"$work/$loop-work.json"
		done
		jq -c -n --argjson w "$w" --argjson r "$r" --arg mode "$mode" --arg lcores "$lcores" \
			--slurpfile c "$work/closed.json" --slurpfile o "$work/open.json" \
			--slurpfile cw "$work/closed-work.json" --slurpfile ow "$work/open-work.json" '
			{workers: $w, round: $r, mode: $mode, lcore_list: $lcores,
			 qps: $c[0].queries.per_s, requests_per_s: $c[0].requests.per_s,
			 closed_query_p50_us: $c[0].latency_us.query.p50, closed_query_p99_us: $c[0].latency_us.query.p99,
			 open_qps: $o[0].queries.per_s,
			 open_query_p50_us: $o[0].latency_us.query.p50, open_query_p99_us: $o[0].latency_us.query.p99,
			 open_request_p50_us: $o[0].latency_us.request.p50, open_request_p99_us: $o[0].latency_us.request.p99,
			 errors: ($c[0].errors.total + $o[0].errors.total),
			 error_kinds: ([$c[0].errors, $o[0].errors] | map(with_entries(select(.value != 0 and .key != "total")))),
			 closed_work: $cw[0], open_work: $ow[0]}' >>"$work/runs.jsonl"
		tail -n1 "$work/runs.jsonl" | jq -r '"round \(.round) W=\(.workers) (\(.mode), lcores \(.lcore_list)): \(.qps | floor) q/s closed, \(.closed_work.busy_cycles_per_query | floor) busy cycles/query (shares \(.closed_work.busy_share | map(. * 100 | round))%), open \(.open_qps | floor) q/s p50 \(.open_query_p50_us) us p99 \(.open_query_p99_us) us, errors \(.errors)"' >&2
	done
done

jq -s --argjson cpus "$cpus" --argjson hz "$hz" --arg base "${workers_arr[0]}" \
	--argjson cfg "$(jq -n --argjson rounds "$rounds" --argjson duration "$duration" --argjson warmup "$warmup" \
		--argjson clients "$clients" --argjson rate "$rate" --argjson busy "$busy" \
		'{rounds: $rounds, duration_s: $duration, warmup_s: $warmup, clients: $clients, rate: $rate, busy_poll: ($busy == 1)}')" '
	def median: sort | if length == 0 then null
		else (if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) end;
	def spread: {median: median, min: min, max: max};
	. as $runs | ($base | tonumber) as $b
	| {config: $cfg, cpus: $cpus, cpu_hz: $hz, runs: $runs,
	   summary: ([$runs | map(.workers) | unique | .[] as $w | ($runs | map(select(.workers == $w))) as $m
		| {key: ($w | tostring), value: {
			mode: ($m | map(.mode) | unique | join(",")), lcore_list: $m[0].lcore_list,
			qps: ($m | map(.qps) | spread),
			closed_query_p50_us: ($m | map(.closed_query_p50_us) | spread),
			closed_query_p99_us: ($m | map(.closed_query_p99_us) | spread),
			open_query_p50_us: ($m | map(.open_query_p50_us) | spread),
			open_query_p99_us: ($m | map(.open_query_p99_us) | spread),
			busy_cycles_per_query: ($m | map(.closed_work.busy_cycles_per_query) | spread),
			open_busy_cycles_per_query: ($m | map(.open_work.busy_cycles_per_query) | spread),
			process_cpu_us_per_query: ($m | map(.closed_work.process_cpu_us_per_query) | spread),
			busy_share: ($m | map(.closed_work.busy_share) | transpose | map(median)),
			errors: ($m | map(.errors) | add),
			vs_base: (if $w == $b then null else
				[$m[] as $x | ($runs[] | select(.workers == $b and .round == $x.round)) as $y
				 | {qps: ($x.qps / $y.qps),
				    busy_cycles_per_query: ($x.closed_work.busy_cycles_per_query / $y.closed_work.busy_cycles_per_query),
				    open_query_p50: ($x.open_query_p50_us / $y.open_query_p50_us),
				    open_query_p99: ($x.open_query_p99_us / $y.open_query_p99_us),
				    closed_query_p99: ($x.closed_query_p99_us / $y.closed_query_p99_us)}]
				| {qps: (map(.qps) | spread), busy_cycles_per_query: (map(.busy_cycles_per_query) | spread),
				   open_query_p50: (map(.open_query_p50) | spread), open_query_p99: (map(.open_query_p99) | spread),
				   closed_query_p99: (map(.closed_query_p99) | spread)} end)}}]
		| from_entries)}' "$work/runs.jsonl" >"$json_out"

jq -r '
	def f0: if . == null then "-" else (. | round | tostring) end;
	def f2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
	def s0: "\(.median | f0) [\(.min | f0)..\(.max | f0)]";
	def s2: "\(.median | f2) [\(.min | f2)..\(.max | f2)]";
	"workers | mode | lcores | queries/s (closed) | query p50 / p99 us (closed) | query p50 / p99 us (open \(.config.rate) q/s) | busy cycles/query | busy share per worker | process CPU us/query | errors",
	(.summary | to_entries[] | .key as $w | .value
	 | "\($w) | \(.mode) | \(.lcore_list) | \(.qps | s0) | \(.closed_query_p50_us.median | f0) / \(.closed_query_p99_us.median | f0) | \(.open_query_p50_us.median | f0) / \(.open_query_p99_us.median | f0) | \(.busy_cycles_per_query | s0) | \(.busy_share | map(. * 100 | round | tostring + "%") | join(" ")) | \(.process_cpu_us_per_query.median | f2) | \(.errors)"),
	(.summary | to_entries[] | select(.value.vs_base != null)
	 | "W=\(.key) / W=\($ARGS.named.base // "first"): queries/s \(.value.vs_base.qps | s2), busy cycles/query \(.value.vs_base.busy_cycles_per_query | s2), open query p50 \(.value.vs_base.open_query_p50 | s2), p99 \(.value.vs_base.open_query_p99 | s2), closed query p99 \(.value.vs_base.closed_query_p99 | s2)")' \
	--arg base "${workers_arr[0]}" "$json_out"
echo "scaling: JSON in $json_out" >&2

if [[ $smoke -eq 1 ]]; then
	jq -e --argjson n "${#workers_arr[@]}" '(.runs | length) == $n and ([.runs[] | .errors] | add) == 0 and
		all(.runs[]; .qps > 0 and .open_qps > 0 and (.closed_work.busy_cycles_per_query // 0) > 0 and
			(.closed_work.busy_share | length) == .workers)' "$json_out" >/dev/null ||
		{ echo "scaling: smoke checks failed: $(jq -c '[.runs[] | {workers, qps, errors, closed_work}]' "$json_out")" >&2; exit 1; }
	echo "scaling: smoke checks passed"
fi
