#!/usr/bin/env bash
# bench/openlookeng.sh: qdispatchd's admission control against a re-creation of
# openLooKeng's HA path before 1.3, same lab, same load, same run: `bench/run
# openlookeng-baseline`.
#
# A re-creation, not openLooKeng: its parts are ours. openLooKeng before 1.3
# ran nginx with ip_hash in front of its coordinators, and every submission took
# one global distributed lock in Hazelcast ("submit-query-lock", 10 s tryLock)
# and pulled the state of every running query to decide admission against the
# resource group, so concurrent submissions queue on the lock. Here:
#   olk         nginx (ip_hash, one worker, as bench/proxy.sh runs it) in the
#               client namespace, in front of a second qdcoordsim in the
#               coordinator namespace (the lab's three coordinator addresses,
#               port 8090) started with --admission-store: each POST takes the
#               lock of bench/olk_store.py (a state store on the first
#               coordinator's address, port 5701), reads every running query's
#               record (--record-bytes each), admits the query if its group
#               (the source) runs fewer than L, writes its record and unlocks;
#               the others wait QUEUED and are tried again every --retry-ms and
#               after each query's end; an ended query's record is removed
#   qdispatchd  the lab's dispatcher (one worker) with a resource group limited
#               to L (admission control at the dispatcher, queueing there) in
#               front of the lab's own qdcoordsim (no store)
# Two loads, both arms each, alternating in every round: "over", 10 x L
# closed-loop qdbench clients (10x oversubscription), and "under", L / 2
# clients (below the limit: what the admission path costs when nothing
# queues). Every query spends --service-ms on its coordinator.
# Reported per load and arm (medians over the rounds, min-max): queries/s, the
# submission latency (the POST's answer time) p50/p99, query latency p50/p99,
# the most queries of the limited group the simulator saw running at once
# (must stay <= L for both: checked every run), errors; per round the ratios
# olk / qdispatchd; the store's lock passes and their mean time.
#
# usage: bench/openlookeng.sh [--rounds N] [--duration S] [--warmup S] [--limit L]
#                             [--service-ms M] [--record-bytes B] [--retry-ms R]
#                             [--json FILE] [--smoke] [--no-lock]
#   --rounds N        rounds (default 3)
#   --duration S      seconds measured per run (default 5)
#   --warmup S        seconds before measuring (default 1)
#   --limit L         the group's running limit in both arms (default 8)
#   --service-ms M    run_ms of every query (default 50)
#   --record-bytes B  bytes of one running query's record in the store (default
#                     1024: an assumption, Hazelcast's serialised query state)
#   --retry-ms R      how often the re-creation looks at waiting queries (default 2)
#   --preload N       N more running queries of another group in the store in
#                     every olk run (default 0): a cluster busy elsewhere, so
#                     every admission reads N more records
#   --json FILE       results as JSON (default $QD_BUILD/bench/openlookeng.json)
#   --smoke           CI: 1 round of 1 s, limit 4; checks both arms ran at both
#                     loads without errors and kept the limit, and that the store
#                     and the dispatcher's queue were used; exit 77 when it cannot
#                     run (not root, nginx or python3 missing)
#   --no-lock         do not take /tmp/qd-lab-session.lock (the caller holds it)
# Root (the lab). QD_BUILD (default build/) holds qdispatchd, qdctl, qdcoordsim
# and bench/qdbench. Exit 0 on success, 1 on a failed run or a broken limit,
# 2 on a usage error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
rounds=3 duration=5 warmup=1 limit=8 service_ms=50 record_bytes=1024 retry_ms=2 preload=0
json_out="" smoke=0 lock=1
LOCK=/tmp/qd-lab-session.lock
NGINX_ADDR=10.213.0.2:18083
OLK_PORT=8090
STORE_PORT=5701

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "openlookeng: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--$1 '$2': expected a number"; }
while (($# > 0)); do
	case $1 in
	--rounds) rounds=${2:?}; [[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive count"; shift 2 ;;
	--duration) duration=${2:?}; num duration "$duration"; shift 2 ;;
	--warmup) warmup=${2:?}; num warmup "$warmup"; shift 2 ;;
	--limit) limit=${2:?}; [[ $limit =~ ^[1-9][0-9]*$ ]] || die "--limit: a positive count"; shift 2 ;;
	--service-ms) service_ms=${2:?}; [[ $service_ms =~ ^[0-9]+$ ]] || die "--service-ms: milliseconds"; shift 2 ;;
	--record-bytes) record_bytes=${2:?}; [[ $record_bytes =~ ^[0-9]+$ ]] || die "--record-bytes: a count"; shift 2 ;;
	--retry-ms) retry_ms=${2:?}; [[ $retry_ms =~ ^[1-9][0-9]*$ ]] || die "--retry-ms: milliseconds"; shift 2 ;;
	--preload) preload=${2:?}; [[ $preload =~ ^[0-9]+$ ]] || die "--preload: a count"; shift 2 ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--smoke) smoke=1 rounds=1 duration=1 warmup=0.2 limit=4; shift ;;
	--no-lock) lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run openlookeng-baseline --help)" ;;
	esac
done
cannot() {
	[[ $smoke -eq 1 ]] && { echo "SKIP: $*"; exit 77; }
	die "$*"
}
[[ $(id -u) -eq 0 ]] || cannot "needs root (the lab)"
for t in nginx jq python3 ip; do command -v "$t" >/dev/null || cannot "$t is not installed (scripts/deps)"; done
qdbench=$QD_BUILD/bench/qdbench
qdcoordsim=$QD_BUILD/tests/coordsim/qdcoordsim
if [[ ! -x $qdbench || ! -x $qdcoordsim ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" >&2
fi
[[ -x $qdbench ]] || cannot "$qdbench was not built (meson -Dbench=enabled needs libbenchmark-dev)"
json_out=${json_out:-$QD_BUILD/bench/openlookeng.json}
mkdir -p "$(dirname "$json_out")"
over=$((10 * limit))
under=$((limit / 2))
((under >= 1)) || under=1

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	echo "openlookeng: waiting for the lab session lock $LOCK" >&2
	flock 8
fi
work=$(mktemp -d /tmp/qd-bench-olk.XXXXXX)
chmod 755 "$work" # nginx workers (user nobody) reach their temp directories through it
store_pid="" olk_pid="" nginx_pid=""
cleanup() {
	local rc=$? p
	for p in $nginx_pid $olk_pid $store_pid; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $nginx_pid $olk_pid $store_pid; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	if [[ $rc -ne 0 && $rc -ne 77 ]]; then
		for f in "$work"/*.log; do [[ -s $f ]] && { echo "--- $f"; tail -n 15 "$f"; } >&2; done
	fi
	"$lab" down >/dev/null 2>&1 || true
	rm -rf -- "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$work/groups.json" <<EOF
{"rootGroups": [{"name": "bench", "hardConcurrencyLimit": 100000, "maxQueued": 100000,
  "softMemoryLimit": "100%", "subGroups": [
   {"name": "limited", "hardConcurrencyLimit": $limit, "maxQueued": 100000, "softMemoryLimit": "100%"}]}],
 "selectors": [{"source": "limited", "group": "bench.limited"}]}
EOF
"$lab" down >/dev/null 2>&1 || true
"$lab" up --coordinators 3 --resource-groups "$work/groups.json" >"$work/lab-up.log" 2>&1 ||
	{ cat "$work/lab-up.log" >&2; exit 1; }
eval "$("$lab" env)"
IFS=, read -r -a coords <<<"$QD_COORDINATORS"
ips=()
for u in "${coords[@]}"; do u=${u#http://}; ips+=("${u%%:*}"); done
store_addr=${ips[0]}:$STORE_PORT

# ---- the re-creation: the state store, its coordinators, nginx --------------------
# The lock's descriptor (8) is not passed on: a process left behind must not hold it.
ip netns exec qd-coord python3 "$src/bench/olk_store.py" --listen "$store_addr" \
	--record-bytes "$record_bytes" </dev/null >"$work/store.log" 2>&1 8>&- &
store_pid=$!
for _ in $(seq 50); do
	grep -q listening "$work/store.log" && break
	kill -0 "$store_pid" 2>/dev/null || { cat "$work/store.log" >&2; exit 1; }
	sleep 0.1
done
sim_args=(--max-conns 900 --admission-store "$store_addr" --admission-limit "$limit"
	--admission-retry-ms "$retry_ms")
upstreams=""
for ip in "${ips[@]}"; do
	sim_args+=(--listen "$ip:$OLK_PORT")
	upstreams+="        server $ip:$OLK_PORT max_fails=0;"$'\n'
done
ip netns exec qd-coord "$qdcoordsim" "${sim_args[@]}" </dev/null >"$work/olk-sim.log" 2>&1 8>&- &
olk_pid=$!
mkdir -p "$work/nginx-tmp"
chmod 777 "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
# Generated by bench/openlookeng.sh: nginx with ip_hash in front of the
# coordinators, as openLooKeng's HA documentation set it up before 1.3.
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream coordinators {
        ip_hash;
$upstreams        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen $NGINX_ADDR backlog=4096;
        location / {
            proxy_pass http://coordinators;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_read_timeout 60s;
        }
    }
}
EOF
ip netns exec qd-client nginx -t -c "$work/nginx.conf" -p "$work" >"$work/nginx-check.log" 2>&1 8>&- ||
	{ cat "$work/nginx-check.log" >&2; exit 1; }
ip netns exec qd-client nginx -c "$work/nginx.conf" -p "$work" </dev/null >>"$work/nginx.log" 2>&1 8>&- &
nginx_pid=$!
for _ in $(seq 50); do
	a=$(ip netns exec qd-client ss -Hltn "sport = :${NGINX_ADDR##*:}" | wc -l)
	b=$(ip netns exec qd-coord ss -Hltn "sport = :$OLK_PORT" | wc -l)
	[[ $a -ge 1 && $b -ge ${#ips[@]} ]] && break
	sleep 0.1
done
[[ $a -ge 1 && $b -ge ${#ips[@]} ]] || { echo "openlookeng: nginx or the re-creation's coordinators are not listening" >&2; exit 1; }

olk_url=http://$NGINX_ADDR
olk_sim=http://${ips[0]}:$OLK_PORT
lab_sim=${coords[0]}
sim() { "$lab" exec -- curl -sS --max-time 10 -X "$1" "$2$3"; }
store() { # LINE: one request to the store, its answer's first line
	ip netns exec qd-coord python3 -c 'import socket,sys
h,p=sys.argv[1].rsplit(":",1); s=socket.create_connection((h,int(p)))
s.sendall(sys.argv[2].encode()+b"\n"); print(s.makefile().readline().strip())' "$store_addr" "$1" 8>&-
}
group_counters() { "$lab" exec -- qdctl --json groups | jq -c '.groups[] | select(.name == "bench.limited") | .counters'; }

echo "openlookeng: limit $limit; loads over ($over clients, 10x) and under ($under); queries of" \
	"${service_ms} ms; $rounds round(s) of ${duration} s; store records of $record_bytes bytes;" \
	"$preload other running" >&2
: >"$work/runs.jsonl"
for ((r = 1; r <= rounds; r++)); do
	for load in over under; do
		clients=$over
		[[ $load == under ]] && clients=$under
		for arm in qdispatchd olk; do
			url=$QD_URL simurl=$lab_sim
			[[ $arm == olk ]] && url=$olk_url simurl=$olk_sim
			sim POST "$simurl" /v1/simulator/reset >/dev/null
			if [[ $arm == olk ]]; then
				store RESET >/dev/null
				((preload == 0)) || store "PRELOAD $preload other" >/dev/null
			fi
			before=$(group_counters)
			f=$work/$arm-$load-$r.json
			rc=0
			"$lab" exec -- "$qdbench" -q --clients "$clients" --duration "$duration" --warmup "$warmup" \
				--source limited --rows 1 --sim "run_ms=$service_ms" --timeout 60 \
				--json "$f" --label "$arm-$load" "$url" 2>>"$work/qdbench.log" || rc=$?
			[[ $rc -le 1 && -s $f ]] || { echo "openlookeng: qdbench failed ($arm, $load, round $r, exit $rc)" >&2; exit 1; }
			after=$(group_counters)
			stats=$(sim GET "$simurl" /v1/simulator/stats)
			st='null'
			[[ $arm == olk ]] && st=$(store STATS)
			jq -c -n --arg arm "$arm" --arg load "$load" --argjson r "$r" --argjson clients "$clients" \
				--slurpfile q "$f" --argjson s "$stats" --argjson st "$st" \
				--argjson b "$before" --argjson a "$after" '
				{arm: $arm, load: $load, round: $r, clients: $clients,
				 qps: $q[0].queries.per_s, queries_submitted: $q[0].queries.submitted,
				 post_p50_us: $q[0].latency_us.post.p50, post_p99_us: $q[0].latency_us.post.p99,
				 query_p50_ms: ($q[0].latency_us.query.p50 / 1000), query_p99_ms: ($q[0].latency_us.query.p99 / 1000),
				 errors: $q[0].errors.total, error_kinds: ($q[0].errors | with_entries(select(.value != 0))),
				 max_running: ($s.total.max_running_by_source.limited // 0),
				 coordinators_used: ([$s.coordinators[] | select(.submitted > 0)] | length),
				 store: (if $arm == "olk" then {passes: $s.store.passes, pass_us_mean: $s.store.pass_us_mean,
					pass_us_max: $s.store.pass_us_max, lock_timeouts: $s.store.lock_timeouts,
					records_read: $s.store.records_read, bytes_read: $s.store.bytes_read,
					errors: $s.store.errors, lock_waits: $st.lock_waits} else null end),
				 dispatcher: (if $arm == "qdispatchd" then {admitted_at_once: ($a.admitted - $b.admitted),
					admitted_after_queue: ($a.admitted_after_queue - $b.admitted_after_queue)} else null end)}' \
				>>"$work/runs.jsonl"
			tail -n1 "$work/runs.jsonl" | jq -r '"round \(.round) \(.load) \(.arm): \(.qps | floor) q/s, POST p50 \(.post_p50_us) us p99 \(.post_p99_us) us, max running \(.max_running), errors \(.errors)"' >&2
			m=$(tail -n1 "$work/runs.jsonl" | jq .max_running)
			if ((m > limit)); then
				echo "openlookeng: the limit did not hold in $arm ($load, round $r): $m ran at once, limit $limit" >&2
				exit 1
			fi
		done
	done
done

jq -s --argjson limit "$limit" --argjson ms "$service_ms" --argjson rb "$record_bytes" \
	--argjson retry "$retry_ms" --argjson preload "$preload" --argjson over "$over" --argjson under "$under" '
	def median: sort | if length == 0 then null
		else (if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) end;
	def spread: {median: median, min: min, max: max};
	. as $runs
	| {config: {limit: $limit, service_ms: $ms, record_bytes: $rb, retry_ms: $retry, preload: $preload,
		clients: {over: $over, under: $under}},
	   runs: $runs,
	   summary: ([("over", "under") as $l | {key: $l, value: (
		([("qdispatchd", "olk") as $a | {key: $a, value: ($runs | map(select(.load == $l and .arm == $a)) | {
			qps: (map(.qps) | spread), post_p50_us: (map(.post_p50_us) | spread),
			post_p99_us: (map(.post_p99_us) | spread), query_p50_ms: (map(.query_p50_ms) | spread),
			query_p99_ms: (map(.query_p99_ms) | spread), max_running: (map(.max_running) | max),
			errors: (map(.errors) | add), coordinators_used: (map(.coordinators_used) | max),
			store_pass_us_mean: (map(.store.pass_us_mean // empty) | median),
			store_passes_per_query: (map(select(.store != null) | .store.passes / ([.queries_submitted, 1] | max)) | median),
			lock_timeouts: (map(.store.lock_timeouts // 0) | add),
			admitted_after_queue: (map(.dispatcher.admitted_after_queue // 0) | add)})}] | from_entries)
		+ {ratio_olk_over_qdispatchd: (
			[$runs[] | select(.load == $l and .arm == "olk") as $o
			 | ($runs[] | select(.load == $l and .arm == "qdispatchd" and .round == $o.round)) as $q
			 | {qps: ($o.qps / $q.qps), post_p50: ($o.post_p50_us / $q.post_p50_us),
			    post_p99: ($o.post_p99_us / $q.post_p99_us), query_p50: ($o.query_p50_ms / $q.query_p50_ms)}]
			| {qps: (map(.qps) | spread), post_p50: (map(.post_p50) | spread),
			   post_p99: (map(.post_p99) | spread), query_p50: (map(.query_p50) | spread)})})}]
		| from_entries)}' "$work/runs.jsonl" >"$json_out"

jq -r '
	def f0: if . == null then "-" else (. | round | tostring) end;
	def f2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
	def s0: "\(.median | f0) [\(.min | f0)..\(.max | f0)]";
	def s2: "\(.median | f2) [\(.min | f2)..\(.max | f2)]";
	"load (clients)   | arm        | queries/s          | POST p50 us        | POST p99 us          | query p50 ms      | max running | errors",
	(.summary | to_entries[] | .key as $l | .value as $v | ("qdispatchd", "olk") as $a | $v[$a]
	 | "\($l) | \($a) | \(.qps | s0) | \(.post_p50_us | s0) | \(.post_p99_us | s0) | \(.query_p50_ms | s2) | \(.max_running) | \(.errors)"),
	"ratios olk / qdispatchd per round, median [min..max]:",
	(.summary | to_entries[] | "  \(.key): queries/s \(.value.ratio_olk_over_qdispatchd.qps | s2), POST p50 \(.value.ratio_olk_over_qdispatchd.post_p50 | s2), POST p99 \(.value.ratio_olk_over_qdispatchd.post_p99 | s2), query p50 \(.value.ratio_olk_over_qdispatchd.query_p50 | s2)"),
	(.summary | to_entries[] | "  \(.key): olk store passes (lock round trips) per query \(.value.olk.store_passes_per_query | f2), mean pass \(.value.olk.store_pass_us_mean | f0) us, lock timeouts \(.value.olk.lock_timeouts), coordinators used \(.value.olk.coordinators_used) of 3 (ip_hash, one client address); qdispatchd admitted after queueing \(.value.qdispatchd.admitted_after_queue)")' "$json_out"
echo "openlookeng: JSON in $json_out" >&2

if [[ $smoke -eq 1 ]]; then
	jq -e --argjson limit "$limit" '
		([.runs[] | .errors] | add) == 0 and
		([.runs[] | .max_running] | (max <= $limit) and (min >= 1)) and
		(.runs | length) == 4 and
		([.runs[] | select(.arm == "olk") | .store.passes] | min > 0) and
		([.runs[] | select(.arm == "olk") | .store.errors] | add == 0) and
		([.runs[] | select(.arm == "qdispatchd" and .load == "over") | .dispatcher.admitted_after_queue] | min > 0)' \
		"$json_out" >/dev/null ||
		{ echo "openlookeng: smoke checks failed: $(jq -c '[.runs[] | {arm, load, qps, errors, max_running, store, dispatcher}]' "$json_out")" >&2; exit 1; }
	echo "openlookeng: smoke checks passed"
fi
