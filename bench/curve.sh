#!/usr/bin/env bash
# bench/curve.sh: query latency against offered load, through qdispatchd and
# straight to a coordinator, same lab, same run: `bench/run curve`.
#
# For each rate of --rates (queries/s, open loop: qdbench starts queries on a
# fixed schedule and measures each from its scheduled start, so a target that
# falls behind shows it instead of hiding it), each arm runs --duration seconds
# in turn: direct (the first coordinator itself) and qdispatchd (its VIP, 3
# coordinators behind it). Reported per rate and arm: achieved queries/s and
# query latency p50/p99/p99.9; written as a table, as JSON and as a gnuplot PNG
# (p50 and p99 against the rate, log scale), so the knee of each curve shows.
# The rates are a sweep, not a ratio: the ratio of interest is qdispatchd's
# latency over direct's at the same rate, printed per row.
#
# usage: bench/curve.sh [--rates R1,R2,...] [--duration S] [--warmup S] [--rows R]
#                       [--out DIR] [--smoke] [--no-lock]
#   --rates LIST    queries/s to offer (default 100,200,400,800,1600,3200)
#   --duration S    seconds measured per point (default 3)
#   --warmup S      seconds before measuring each point (default 0.5)
#   --rows R        rows per query (default 1)
#   --out DIR       where curve.json, curve.dat, curve.txt and curve.png go
#                   (default $QD_BUILD/bench)
#   --smoke         CI mode: rates 50,100 for 0.5 s; checks both arms answered
#                   every point without errors; exit 77 when not root
#   --no-lock       do not take /tmp/qd-lab-session.lock (the caller holds it)
# Root (the lab). QD_BUILD (default build/) holds qdispatchd, qdctl, qdcoordsim
# and bench/qdbench; gnuplot (gnuplot-nox) draws the PNG, skipped with a message
# when it is missing. Exit 0 on success, 1 on a failed run, 2 on a usage error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
rates=100,200,400,800,1600,3200 duration=3 warmup=0.5 rows=1 out="" smoke=0 lock=1
LOCK=/tmp/qd-lab-session.lock

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "curve: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--$1 '$2': expected a number"; }
while (($# > 0)); do
	case $1 in
	--rates) rates=${2:?}; [[ $rates =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--rates: R1,R2,..."; shift 2 ;;
	--duration) duration=${2:?}; num duration "$duration"; shift 2 ;;
	--warmup) warmup=${2:?}; num warmup "$warmup"; shift 2 ;;
	--rows) rows=${2:?}; [[ $rows =~ ^[0-9]+$ ]] || die "--rows: a count"; shift 2 ;;
	--out) out=${2:?--out needs a directory}; shift 2 ;;
	--smoke) smoke=1 rates=50,100 duration=0.5 warmup=0.2; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run curve --help)" ;;
	esac
done
if [[ $(id -u) -ne 0 ]]; then
	[[ $smoke -eq 1 ]] && { echo "SKIP: needs root (the lab)"; exit 77; }
	die "needs root (the lab)"
fi
command -v jq >/dev/null || die "jq is not installed (scripts/deps)"
qdbench=$QD_BUILD/bench/qdbench
if [[ ! -x $qdbench ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" >&2
fi
[[ -x $qdbench ]] || die "$qdbench was not built (meson -Dbench=enabled needs libbenchmark-dev)"
out=${out:-$QD_BUILD/bench}
mkdir -p "$out"

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-curve.XXXXXX)
trap '"$lab" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$lab" down >/dev/null 2>&1 || true
"$lab" up --coordinators 3 >/dev/null
qd_url=$("$lab" exec -- sh -c 'echo "$QD_URL"')
direct_url=$("$lab" exec -- sh -c 'echo "${QD_COORDINATORS%%,*}"')

IFS=, read -r -a rate_list <<<"$rates"
points='[]'
echo "curve: rates ${rates} queries/s, ${duration} s each, arms direct and qdispatchd"
for rate in "${rate_list[@]}"; do
	for arm in direct qdispatchd; do
		url=$direct_url
		[[ $arm == qdispatchd ]] && url=$qd_url
		f=$work/$arm-$rate.json
		"$lab" exec -- "$qdbench" -q --rate "$rate" --clients 1024 --duration "$duration" \
			--warmup "$warmup" --rows "$rows" --timeout 10 --json "$f" --label "$arm" "$url" \
			2>>"$work/qdbench.log" ||
			{ cat "$work/qdbench.log" >&2; echo "curve: qdbench failed ($arm at $rate/s)" >&2; exit 1; }
		points=$(jq -c --arg arm "$arm" --argjson rate "$rate" --slurpfile q "$f" \
			'. + [{arm: $arm, rate: $rate, qps: $q[0].queries.per_s,
			  p50_ms: ($q[0].latency_us.query.p50 / 1000), p99_ms: ($q[0].latency_us.query.p99 / 1000),
			  p999_ms: ($q[0].latency_us.query.p999 / 1000), errors: $q[0].errors.total,
			  late: $q[0].errors.not_started}]' <<<"$points")
	done
done
echo "$points" | jq '{rates: ([.[].rate] | unique), points: .}' >"$out/curve.json"
jq -r '
	(.points | group_by(.rate)[] | (map(select(.arm == "direct"))[0]) as $d | (map(select(.arm == "qdispatchd"))[0]) as $q |
	 "\($d.rate)\t\($d.qps)\t\($d.p50_ms)\t\($d.p99_ms)\t\($q.qps)\t\($q.p50_ms)\t\($q.p99_ms)")' \
	"$out/curve.json" >"$out/curve.dat"
{
	echo "rate/s  | direct q/s  p50 ms  p99 ms  | qdispatchd q/s  p50 ms  p99 ms | p50 ratio  p99 ratio | errors d/q"
	jq -r '
		def f2: . * 100 | round / 100 | tostring;
		.points | group_by(.rate)[] | (map(select(.arm == "direct"))[0]) as $d | (map(select(.arm == "qdispatchd"))[0]) as $q |
		"\($d.rate)  | \($d.qps | floor)  \($d.p50_ms | f2)  \($d.p99_ms | f2)  | \($q.qps | floor)  \($q.p50_ms | f2)  \($q.p99_ms | f2) | \(($q.p50_ms / $d.p50_ms) | f2)  \(($q.p99_ms / $d.p99_ms) | f2) | \($d.errors)/\($q.errors)"' \
		"$out/curve.json"
} | tee "$out/curve.txt"
if command -v gnuplot >/dev/null; then
	gnuplot <<EOF
set terminal pngcairo size 900,540 noenhanced
set output "$out/curve.png"
set title "Query latency against offered load (open loop, 3 simulated coordinators)"
set xlabel "offered queries/s"
set ylabel "query latency, ms"
set logscale x 2
set logscale y 10
set key top left
set grid
plot "$out/curve.dat" using 1:3 with linespoints title "direct p50", \
     "$out/curve.dat" using 1:4 with linespoints title "direct p99", \
     "$out/curve.dat" using 1:6 with linespoints title "qdispatchd p50", \
     "$out/curve.dat" using 1:7 with linespoints title "qdispatchd p99"
EOF
	echo "curve: plot in $out/curve.png"
else
	echo "curve: gnuplot is not installed (scripts/deps): no plot"
fi
if [[ $smoke -eq 1 ]]; then
	jq -e '(.points | length) == (2 * (.rates | length)) and ([.points[].errors] | add) == 0 and
		all(.points[]; .qps > 0)' "$out/curve.json" >/dev/null ||
		{ echo "curve: smoke checks failed: $(jq -c .points "$out/curve.json")" >&2; exit 1; }
	echo "curve: smoke checks passed"
fi
