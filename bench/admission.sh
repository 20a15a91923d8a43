#!/usr/bin/env bash
# bench/admission.sh: admission control at 10x oversubscription: `bench/run
# admission`. One lab (3 simulated coordinators, qdispatchd with 2 workers and a
# resource groups file written here), qdbench in the client namespace, two arms in
# each round, same load, same run:
#   limited  source "limited": a group with hardConcurrencyLimit L, driven by 10 x L
#            closed-loop clients; 9 in 10 of them wait in the dispatcher's queue
#   free     source "free": a group with a limit far above the load, the same
#            clients; every query goes straight to a coordinator
# Every query runs --service-ms on the coordinator (the simulator's run_ms).
# Reported per arm (medians over the rounds): queries/s, query latency p50/p99,
# and the simulator's recorded maximum of that source's queries running at once;
# for the limited arm the slot efficiency: queries/s x the free arm's mean query
# latency / L (Little's law: 1.0 means a freed slot was reused at once, the
# dispatcher adding no idle time between a query's end and the next one's start),
# and the queueing it did (qdctl: admitted at once / after queueing). The limit
# must hold: the limited arm's maximum is checked <= L in every round.
#
# usage: bench/admission.sh [--rounds N] [--duration S] [--warmup S] [--limit L]
#                           [--service-ms M] [--json FILE] [--smoke] [--no-lock]
#   --rounds N      rounds of both arms (default 3)
#   --duration S    seconds measured per run (default 5)
#   --warmup S      seconds before measuring (default 1)
#   --limit L       hardConcurrencyLimit of the limited group (default 8); the
#                   clients are 10 x L
#   --service-ms M  run_ms of every query on the coordinator (default 50)
#   --json FILE     results as JSON (default $QD_BUILD/bench/admission.json)
#   --smoke         CI mode: 1 round of 1 s, limit 4; checks the limit held, the
#                   queue was used and nothing failed; exit 77 when not root
#   --no-lock       do not take /tmp/qd-lab-session.lock (the caller holds it)
# Root (the lab). QD_BUILD (default build/) holds qdispatchd, qdctl, qdcoordsim
# and bench/qdbench. Exit 0 on success, 1 on a failed run, 2 on a usage error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
rounds=3 duration=5 warmup=1 limit=8 service_ms=50 json_out="" smoke=0 lock=1
LOCK=/tmp/qd-lab-session.lock

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "admission: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--$1 '$2': expected a number"; }
while (($# > 0)); do
	case $1 in
	--rounds) rounds=${2:?}; [[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive count"; shift 2 ;;
	--duration) duration=${2:?}; num duration "$duration"; shift 2 ;;
	--warmup) warmup=${2:?}; num warmup "$warmup"; shift 2 ;;
	--limit) limit=${2:?}; [[ $limit =~ ^[1-9][0-9]*$ ]] || die "--limit: a positive count"; shift 2 ;;
	--service-ms) service_ms=${2:?}; [[ $service_ms =~ ^[0-9]+$ ]] || die "--service-ms: milliseconds"; shift 2 ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--smoke) smoke=1 rounds=1 duration=1 warmup=0.2 limit=4; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run admission --help)" ;;
	esac
done
if [[ $(id -u) -ne 0 ]]; then
	[[ $smoke -eq 1 ]] && { echo "SKIP: needs root (the lab)"; exit 77; }
	die "needs root (the lab)"
fi
for t in jq python3; do command -v "$t" >/dev/null || die "$t is not installed (scripts/deps)"; done
qdbench=$QD_BUILD/bench/qdbench
if [[ ! -x $qdbench ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" >&2
fi
[[ -x $qdbench ]] || die "$qdbench was not built (meson -Dbench=enabled needs libbenchmark-dev)"
json_out=${json_out:-$QD_BUILD/bench/admission.json}
mkdir -p "$(dirname "$json_out")"
clients=$((10 * limit))

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-admission.XXXXXX)
trap '"$lab" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cat >"$work/groups.json" <<EOF
{"rootGroups": [{"name": "bench", "hardConcurrencyLimit": 100000, "maxQueued": 100000,
  "softMemoryLimit": "100%", "subGroups": [
   {"name": "limited", "hardConcurrencyLimit": $limit, "maxQueued": 100000, "softMemoryLimit": "100%"},
   {"name": "free", "hardConcurrencyLimit": 100000, "maxQueued": 100000, "softMemoryLimit": "100%"}]}],
 "selectors": [{"source": "limited", "group": "bench.limited"}, {"source": "free", "group": "bench.free"}]}
EOF
"$lab" down >/dev/null 2>&1 || true
"$lab" up --coordinators 3 --workers 2 --resource-groups "$work/groups.json" >/dev/null
sim_url=$("$lab" exec -- sh -c 'echo "${QD_COORDINATORS%%,*}"')
qd_url=$("$lab" exec -- sh -c 'echo "$QD_URL"')
sim() { "$lab" exec -- curl -sS --max-time 10 -X "$1" "$sim_url$2"; }
group_counters() { "$lab" exec -- qdctl --json groups | jq -c --arg g "$1" '.groups[] | select(.name == $g) | .counters'; }

echo "admission: limit $limit, $clients clients (10x), queries of ${service_ms} ms, $rounds round(s) of ${duration} s"
results='[]'
for ((r = 1; r <= rounds; r++)); do
	for arm in free limited; do
		sim POST /v1/simulator/reset >/dev/null
		before=$(group_counters "bench.$arm")
		"$lab" exec -- "$qdbench" -q --clients "$clients" --duration "$duration" --warmup "$warmup" \
			--source "$arm" --rows 1 --sim "run_ms=$service_ms" --timeout 60 \
			--json "$work/$arm-$r.json" --label "$arm" "$qd_url" 2>>"$work/qdbench.log" ||
			{ cat "$work/qdbench.log" >&2; echo "admission: qdbench failed ($arm, round $r)" >&2; exit 1; }
		after=$(group_counters "bench.$arm")
		maxrun=$(sim GET /v1/simulator/stats | jq --arg s "$arm" '.total.max_running_by_source[$s] // 0')
		results=$(jq -c --arg arm "$arm" --argjson r "$r" --argjson max "$maxrun" \
			--argjson b "$before" --argjson a "$after" --slurpfile q "$work/$arm-$r.json" \
			'. + [{arm: $arm, round: $r, max_running: $max, qps: $q[0].queries.per_s,
			  p50_ms: ($q[0].latency_us.query.p50 / 1000), p99_ms: ($q[0].latency_us.query.p99 / 1000),
			  mean_ms: ($q[0].latency_us.query.mean / 1000), errors: $q[0].errors.total,
			  admitted_at_once: ($a.admitted - $b.admitted),
			  admitted_after_queue: ($a.admitted_after_queue - $b.admitted_after_queue)}]' <<<"$results")
		if [[ $arm == limited && $maxrun -gt $limit ]]; then
			echo "admission: the limit did not hold: $maxrun queries ran at once, limit $limit" >&2
			exit 1
		fi
	done
done

summary=$(jq -c --argjson limit "$limit" --argjson clients "$clients" --argjson ms "$service_ms" '
	def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
	def arm($a): map(select(.arm == $a));
	($rows_all | arm("free") | map(.mean_ms) | med) as $free_mean |
	{limit: $limit, clients: $clients, service_ms: $ms,
	 arms: ([ "free", "limited" ] | map(. as $a | {arm: $a,
		qps: ($rows_all | arm($a) | map(.qps) | med),
		p50_ms: ($rows_all | arm($a) | map(.p50_ms) | med),
		p99_ms: ($rows_all | arm($a) | map(.p99_ms) | med),
		max_running: ($rows_all | arm($a) | map(.max_running) | max),
		errors: ($rows_all | arm($a) | map(.errors) | add),
		admitted_at_once: ($rows_all | arm($a) | map(.admitted_at_once) | add),
		admitted_after_queue: ($rows_all | arm($a) | map(.admitted_after_queue) | add)})),
	 slot_efficiency: (($rows_all | arm("limited") | map(.qps) | med) * $free_mean / 1000 / $limit),
	 rounds: $rows_all}' --argjson rows_all "$results" <<<'null')
echo "$summary" | jq . >"$json_out"
jq -r '
	"arm       queries/s   p50 ms   p99 ms   max running   errors   at once   after queue",
	(.arms[] | "\(.arm | . + "          " | .[0:9]) \(.qps | floor | tostring | (" " * (9 - length)) + .)   \(.p50_ms * 10 | round / 10 | tostring | (" " * (6 - length)) + .)   \(.p99_ms * 10 | round / 10 | tostring | (" " * (6 - length)) + .)   \(.max_running | tostring | (" " * (11 - length)) + .)   \(.errors | tostring | (" " * (6 - length)) + .)   \(.admitted_at_once | tostring | (" " * (7 - length)) + .)   \(.admitted_after_queue | tostring | (" " * (11 - length)) + .)"),
	"slot efficiency of the limited group: \(.slot_efficiency * 1000 | round / 1000) (1.0: a freed slot is reused at once)",
	"limited/free queries/s: \((.arms[1].qps / .arms[0].qps) * 1000 | round / 1000) (the limit allows \(.limit) of \(.clients) at once)"' "$json_out"
echo "admission: JSON in $json_out"

if [[ $smoke -eq 1 ]]; then
	jq -e '.arms[1].max_running <= .limit and .arms[1].max_running >= 1 and
		.arms[1].admitted_after_queue > 0 and ([.arms[].errors] | add) == 0' "$json_out" >/dev/null ||
		{ echo "admission: smoke checks failed: $(jq -c '.arms' "$json_out")" >&2; exit 1; }
	echo "admission: smoke checks passed"
fi
