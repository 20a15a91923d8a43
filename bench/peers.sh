#!/usr/bin/env bash
# bench/peers.sh: active-active peers: `bench/run peers`. For each cluster size in
# --sizes (default 1 2 3) one lab (2 simulated coordinators, each peer 1 worker, a
# resource groups file written here, peers sharing it), qdbench in the client
# namespace, one qdbench per VIP at once with the clients split evenly:
#   admissions  queries/s through the whole cluster (sum over the VIPs), p50/p99,
#               for a group whose limit (--limit, default 64) is shared by the peers
#               and never reached by the load (--clients, default 24): what the
#               peers' escrow costs on the admission path, per cluster size; the
#               simulator's maximum running of the group is checked <= the limit
# With 2 or more peers also:
#   share flow  from idle, --flow-clients (default 10 x the flow limit) clients on
#               VIP 1 only, a group limited to --flow-limit (default 8): the time
#               until peer 1's cap reaches the whole limit (polled with qdctl every
#               10 ms: the resolution)
#   detection   peer 2 SIGKILLed --kills times (default 3): the time until peer 1
#               declares it dead, and until VIP 2 answers from a survivor (HTTP
#               health through VIP 2 polled every 20 ms from the client namespace,
#               so the gratuitous ARP is included); peer 2 is restarted in between
# Numbers are medians over the rounds. The machine's 2 vCPUs are shared by every
# peer, the coordinators' simulator and qdbench: more peers do not add CPU here, so
# the admissions figure shows the escrow's overhead, not scaling.
#
# usage: bench/peers.sh [--sizes "1 2 3"] [--rounds N] [--duration S] [--clients C]
#                       [--limit L] [--kills K] [--json FILE] [--smoke] [--no-lock]
#   --sizes LIST    cluster sizes to run (default "1 2 3")
#   --rounds N      admissions runs per size (default 3)
#   --duration S    seconds measured per run (default 5)
#   --clients C     closed-loop clients in all (default 24), split over the VIPs
#   --limit L       the shared group's hardConcurrencyLimit (default 64)
#   --kills K       kill/restart rounds for the detection figures (default 3)
#   --json FILE     results as JSON (default $QD_BUILD/bench/peers.json)
#   --smoke         CI mode: sizes "2", 1 round of 1 s, 1 kill; checks that the limit
#                   held, nothing failed, the share flowed and the VIP moved in < 2 s;
#                   exit 77 when not root
#   --no-lock       do not take /tmp/qd-lab-session.lock (the caller holds it)
# Root (the lab). QD_BUILD (default build/) holds qdispatchd, qdctl, qdcoordsim and
# bench/qdbench. Exit 0 on success, 1 on a failed run, 2 on a usage error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
sizes="1 2 3" rounds=3 duration=5 clients=24 limit=64 kills=3 json_out="" smoke=0 lock=1
flow_limit=8
LOCK=/tmp/qd-lab-session.lock

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "peers: $*" >&2; exit 2; }
count() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "--$1 '$2': expected a positive count"; }
while (($# > 0)); do
	case $1 in
	--sizes) sizes=${2:?}; [[ $sizes =~ ^[1-3]( [1-3])*$ ]] || die "--sizes: peers counts 1..3"; shift 2 ;;
	--rounds) rounds=${2:?}; count rounds "$rounds"; shift 2 ;;
	--duration) duration=${2:?}; [[ $duration =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--duration: seconds"; shift 2 ;;
	--clients) clients=${2:?}; count clients "$clients"; shift 2 ;;
	--limit) limit=${2:?}; count limit "$limit"; shift 2 ;;
	--kills) kills=${2:?}; count kills "$kills"; shift 2 ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--smoke) smoke=1 sizes=2 rounds=1 duration=1 kills=1; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run peers --help)" ;;
	esac
done
if [[ $(id -u) -ne 0 ]]; then
	[[ $smoke -eq 1 ]] && { echo "SKIP: needs root (the lab)"; exit 77; }
	die "needs root (the lab)"
fi
for t in jq curl; do command -v "$t" >/dev/null || die "$t is not installed (scripts/deps)"; done
qdbench=$QD_BUILD/bench/qdbench
qdctl=$QD_BUILD/control/qdctl
if [[ ! -x $qdbench ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" >&2
fi
[[ -x $qdbench ]] || die "$qdbench was not built (meson -Dbench=enabled needs libbenchmark-dev)"
json_out=${json_out:-$QD_BUILD/bench/peers.json}
mkdir -p "$(dirname "$json_out")"

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-peers.XXXXXX)
trap '"$lab" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cat >"$work/groups.json" <<EOF
{"rootGroups": [{"name": "bench", "hardConcurrencyLimit": 100000, "maxQueued": 100000,
  "softMemoryLimit": "100%", "subGroups": [
   {"name": "shared", "hardConcurrencyLimit": $limit, "maxQueued": 100000, "softMemoryLimit": "100%"},
   {"name": "flow", "hardConcurrencyLimit": $flow_limit, "maxQueued": 100000, "softMemoryLimit": "100%"}]}],
 "selectors": [{"source": "shared", "group": "bench.shared"}, {"source": "flow", "group": "bench.flow"}]}
EOF
now_ms() { echo $(($(date +%s%N) / 1000000)); }
med() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "null"}'; }

results='[]'
for n in $sizes; do
	"$lab" down >/dev/null 2>&1 || true
	"$lab" up --peers "$n" --coordinators 2 --state --resource-groups "$work/groups.json" \
		--set route.idle_timeout_s=30 >/dev/null
	sim_url=$("$lab" exec -- sh -c 'echo "${QD_COORDINATORS%%,*}"')
	IFS=, read -r -a vips <<<"$("$lab" exec -- sh -c 'echo "$QD_VIPS"')"
	IFS=, read -r -a socks <<<"$("$lab" exec -- sh -c 'echo "$QD_CTL_SOCKETS"')"
	sim() { "$lab" exec -- curl -sS --max-time 10 -X "$1" "$sim_url$2"; }
	sleep 1 # the peers hear each other (quarantine ends)
	per=$(((clients + n - 1) / n))
	qps_all="" p50_all="" p99_all="" errors=0 maxrun=0
	for ((r = 1; r <= rounds; r++)); do
		sim POST /v1/simulator/reset >/dev/null
		pids=()
		for ((k = 0; k < n; k++)); do
			"$lab" exec -- "$qdbench" -q --clients "$per" --duration "$duration" --warmup 0.5 \
				--source shared --rows 1 --sim "run_ms=5" --timeout 60 \
				--json "$work/adm-$n-$r-$k.json" --label "peer$((k + 1))" \
				"http://${vips[$k]}:8080" 2>>"$work/qdbench.log" &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p" || { cat "$work/qdbench.log" >&2; echo "peers: qdbench failed" >&2; exit 1; }; done
		qps=$(jq -s 'map(.queries.per_s) | add' "$work"/adm-"$n"-"$r"-*.json)
		p50=$(jq -s 'map(.latency_us.query.p50) | max / 1000' "$work"/adm-"$n"-"$r"-*.json)
		p99=$(jq -s 'map(.latency_us.query.p99) | max / 1000' "$work"/adm-"$n"-"$r"-*.json)
		errors=$((errors + $(jq -s 'map(.errors.total) | add' "$work"/adm-"$n"-"$r"-*.json)))
		m=$(sim GET /v1/simulator/stats | jq '.total.max_running_by_source.shared // 0')
		((m > maxrun)) && maxrun=$m
		qps_all+=" $qps" p50_all+=" $p50" p99_all+=" $p99"
	done
	((maxrun <= limit)) || { echo "peers: $maxrun queries ran at once, limit $limit" >&2; exit 1; }
	row=$(jq -nc --argjson n "$n" --argjson qps "$(med <<<"$qps_all")" --argjson p50 "$(med <<<"$p50_all")" \
		--argjson p99 "$(med <<<"$p99_all")" --argjson e "$errors" --argjson m "$maxrun" \
		'{peers: $n, qps: $qps, p50_ms: $p50, p99_ms: $p99, errors: $e, max_running: $m}')
	if ((n >= 2)); then
		# share flow: all load on VIP 1 from idle
		sim POST /v1/simulator/reset >/dev/null
		"$lab" exec -- "$qdbench" -q --clients $((10 * flow_limit)) --duration 3 --warmup 0 \
			--source flow --rows 1 --sim "run_ms=50" --timeout 60 --json "$work/flow-$n.json" \
			"http://${vips[0]}:8080" 2>>"$work/qdbench.log" &
		fpid=$!
		t0=$(now_ms) flow_ms=null
		while (($(now_ms) - t0 < 3000)); do
			cap=$("$qdctl" -s "${socks[0]}" --json peers | jq '.groups[] | select(.group == "bench.flow") | .cap')
			if [[ $cap -ge $flow_limit ]]; then flow_ms=$(($(now_ms) - t0)); break; fi
			sleep 0.01
		done
		wait "$fpid" || true
		flow_max=$(sim GET /v1/simulator/stats | jq '.total.max_running_by_source.flow // 0')
		((flow_max <= flow_limit)) || { echo "peers: flow group ran $flow_max > $flow_limit" >&2; exit 1; }
		# detection and takeover
		detect_all="" takeover_all=""
		for ((k = 1; k <= kills; k++)); do
			pid2=$(cat /run/qdispatch/lab/peer2.pid)
			t0=$(now_ms)
			kill -KILL "$pid2"
			dead=null served=null
			while (($(now_ms) - t0 < 5000)); do
				if [[ $dead == null && $("$qdctl" -s "${socks[0]}" --json peers | jq -r '.peers[] | select(.id == 2) | .state') == dead ]]; then
					dead=$(($(now_ms) - t0))
				fi
				if [[ $served == null ]] && "$lab" exec -- curl -s -m 0.2 "http://${vips[1]}:8080/v1/dispatcher/health" 2>/dev/null | grep -q '"self":[^2]'; then
					served=$(($(now_ms) - t0))
				fi
				[[ $dead != null && $served != null ]] && break
				sleep 0.02
			done
			detect_all+=" $dead" takeover_all+=" $served"
			"$lab" restart --peer 2 >/dev/null 2>&1
			for ((w = 0; w < 200; w++)); do # VIP 2 back home before the next round
				"$lab" exec -- curl -s -m 0.2 "http://${vips[1]}:8080/v1/dispatcher/health" 2>/dev/null | grep -q '"self":2' && break
				sleep 0.05
			done
		done
		row=$(jq -c --argjson f "$flow_ms" --argjson fm "$flow_max" --argjson d "$(med <<<"$detect_all")" \
			--argjson t "$(med <<<"$takeover_all")" --arg dl "$detect_all" --arg tl "$takeover_all" \
			'. + {share_flow_ms: $f, flow_max_running: $fm, detect_ms: $d, takeover_ms: $t,
			      detect_all: $dl, takeover_all: $tl}' <<<"$row")
	fi
	echo "peers: $row"
	results=$(jq -c --argjson row "$row" '. + [$row]' <<<"$results")
done
"$lab" down >/dev/null 2>&1 || true

jq -n --argjson rows "$results" --argjson limit "$limit" --argjson clients "$clients" \
	'{limit: $limit, clients: $clients, sizes: $rows}' >"$json_out"
base=$(jq '.sizes[] | select(.peers == 1) | .qps' "$json_out")
jq -r --argjson base "${base:-null}" '
	"peers   queries/s   vs 1 peer   p50 ms   p99 ms   max running   share flow ms   dead after ms   VIP moved ms",
	(.sizes[] | "\(.peers)       \(.qps | floor | tostring | (" " * (9 - length)) + .)   \(if $base then (.qps / $base * 100 | round / 100 | tostring) else "-" end | (" " * (9 - length)) + .)   \(.p50_ms * 10 | round / 10 | tostring | (" " * (6 - length)) + .)   \(.p99_ms * 10 | round / 10 | tostring | (" " * (6 - length)) + .)   \(.max_running | tostring | (" " * (11 - length)) + .)   \(.share_flow_ms // "-" | tostring | (" " * (13 - length)) + .)   \(.detect_ms // "-" | tostring | (" " * (13 - length)) + .)   \(.takeover_ms // "-" | tostring | (" " * (12 - length)) + .)")' "$json_out"
echo "peers: JSON in $json_out"

if [[ $smoke -eq 1 ]]; then
	jq -e --argjson fl "$flow_limit" '.sizes[0] | .errors == 0 and .max_running <= 64 and
		.share_flow_ms != null and .flow_max_running == $fl and
		.takeover_ms != null and .takeover_ms < 2000 and .detect_ms != null' "$json_out" >/dev/null ||
		{ echo "peers: smoke checks failed: $(jq -c '.sizes' "$json_out")" >&2; exit 1; }
	echo "peers: smoke checks passed"
fi
