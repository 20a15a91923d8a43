#!/usr/bin/env bash
# bench/proxy.sh: qdispatchd against the proxies people put in front of several
# Trino coordinators today, on the same lab, with the same load, in the same
# run: `bench/run proxy`.
#
# Arms (each a base URL that qdbench drives from the client namespace):
#   direct      the first coordinator itself (no proxy): the baseline
#   nginx       nginx, upstream ip_hash over the coordinators, keepalive 64,
#               HTTP/1.1 upstream, Host passed through (nextUri points back at
#               nginx); one worker process; 10.213.0.2:18081 in qd-client
#   haproxy     HAProxy, balance source, option http-keep-alive, http-reuse
#               always; one thread; 10.213.0.2:18082 in qd-client
#   qdispatchd  the dispatcher's VIP (QD_URL); skipped with a message while no
#               proxy answers there
# In each round every arm runs twice, in the order direct nginx haproxy
# qdispatchd: a closed loop (--clients concurrent query lifecycles: queries/s,
# the most each arm sustains) and an open loop (--rate queries/s: latency at the
# same load for all). Reported per arm: the medians over the rounds of
# queries/s and requests/s (closed loop), request and query p50/p99 (open
# loop), the per-round ratio to direct and added latency over direct (median
# and range), the per-round ratios of each proxy to nginx and to HAProxy, and
# the CPU cost per request, closed and open loop: nginx and HAProxy from the
# CPU time of their processes (/proc/PID/stat utime+stime over the run, warm-up
# included, divided by qdbench's requests.total), qdispatchd from its busy
# cycles (qdctl --json stats: .totals.busy_cycles delta / .totals.proxy.requests
# delta, with busy_loops/loops) and its process CPU time; qdcoordsim's CPU per
# request is shown too (the same work behind every arm). Errors are reported by
# kind (qdbench's error counters, non-2xx statuses, and for qdispatchd every
# proxy error counter that moved: local_5xx, backend_lost, route_misses...).
#
# usage: bench/proxy.sh [--rounds N] [--duration S] [--warmup S] [--clients N]
#                       [--rate R] [--threads T] [--rows R] [--page-rows P]
#                       [--busy-poll] [--json FILE] [--table FILE] [--smoke]
#                       [--no-lock] [--keep-lab]
#   --rounds N      rounds of all arms (default 5)
#   --duration S    seconds measured per run (default 5)
#   --warmup S      seconds of warm-up before each run (default 1)
#   --clients N     closed-loop lifecycles in flight (default 32)
#   --rate R        open-loop queries/s (default 300)
#   --threads T     qdbench threads (default 1)
#   --rows, --page-rows   the simulated query (default 1 row; pages of 1000)
#   --busy-poll     qdispatchd's worker polls without sleeping (lab --busy-poll);
#                   it then takes a core from everything else, in every arm's
#                   run. Default: lcore.idle = on (sleeps after 200 us quiet, up
#                   to 1 ms: the first request after a lull waits for it)
#   --json FILE     results as JSON (default $QD_BUILD/bench/proxy.json)
#   --table FILE    the human table too (default $QD_BUILD/bench/proxy.txt)
#   --smoke         CI mode: 1 round of 1 s, 8 clients, 50 queries/s; checks
#                   every arm ran (qdispatchd too, in the lab) without errors;
#                   exit 77 when it cannot run (not root, nginx/HAProxy missing)
#   --no-lock       do not take /tmp/qd-lab-session.lock (the caller holds it)
#   --keep-lab      leave the lab up at the end
#   --loopback      no lab: qdcoordsim on three 127.0.0.1 ports, nginx and
#                   HAProxy on 127.0.0.1, qdbench in the same namespace; no root
#                   and no lock needed; the qdispatchd arm is skipped (it needs
#                   the lab). For a quick look, or when the lab is busy
# Root (the lab). QD_BUILD (default build/) holds qdispatchd, qdctl,
# qdcoordsim and bench/qdbench. Exit 0 on success, 1 on a failed run, 2 on a
# usage error, 77 (--smoke) when root, nginx or haproxy is missing.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export QD_BUILD=${QD_BUILD:-$src/build}
lab=$src/scripts/lab
rounds=5 duration=5 warmup=1 clients=32 rate=300 threads=1 rows=1 page_rows=1000
busy=0 json_out="" table_out="" smoke=0 lock=1 keep_lab=0 loopback=0
NGINX_ADDR=10.213.0.2:18081
HAPROXY_ADDR=10.213.0.2:18082
LOCK=/tmp/qd-lab-session.lock

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "proxy: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--$1 '$2': expected a number"; }

while (($# > 0)); do
	case $1 in
	--rounds) rounds=${2:?}; [[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive count"; shift 2 ;;
	--duration) duration=${2:?}; num duration "$duration"; shift 2 ;;
	--warmup) warmup=${2:?}; num warmup "$warmup"; shift 2 ;;
	--clients) clients=${2:?}; [[ $clients =~ ^[1-9][0-9]*$ ]] || die "--clients: a positive count"; shift 2 ;;
	--rate) rate=${2:?}; num rate "$rate"; shift 2 ;;
	--threads) threads=${2:?}; [[ $threads =~ ^[1-9][0-9]*$ ]] || die "--threads: a positive count"; shift 2 ;;
	--rows) rows=${2:?}; [[ $rows =~ ^[0-9]+$ ]] || die "--rows: a count"; shift 2 ;;
	--page-rows) page_rows=${2:?}; [[ $page_rows =~ ^[1-9][0-9]*$ ]] || die "--page-rows: a positive count"; shift 2 ;;
	--busy-poll) busy=1; shift ;;
	--json) json_out=${2:?--json needs a file}; shift 2 ;;
	--table) table_out=${2:?--table needs a file}; shift 2 ;;
	--smoke) smoke=1; rounds=1 duration=1 warmup=0.2 clients=8 rate=50; shift ;;
	--no-lock) lock=0; shift ;;
	--keep-lab) keep_lab=1; shift ;;
	--loopback) loopback=1; lock=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option '$1' (see bench/run proxy --help)" ;;
	esac
done

# In --smoke (a registered test) a missing prerequisite is a skip, not a failure.
cannot() {
	if [[ $smoke -eq 1 ]]; then
		echo "SKIP: $*"
		exit 77
	fi
	echo "proxy: $*" >&2
	exit 2
}
[[ $loopback -eq 1 || $(id -u) -eq 0 ]] || cannot "needs root (the lab; or use --loopback)"
for t in nginx haproxy jq ip python3; do
	command -v "$t" >/dev/null || cannot "$t is not installed (scripts/deps)"
done

qdbench=$QD_BUILD/bench/qdbench
qdctl=$QD_BUILD/control/qdctl
if [[ ! -x $qdbench || ! -x $qdctl ]]; then
	[[ -f $QD_BUILD/build.ninja ]] || meson setup "$QD_BUILD" "$src" -Dbench=enabled >&2
	ninja -C "$QD_BUILD" >&2
fi
[[ -x $qdbench ]] || cannot "$qdbench was not built (meson -Dbench=enabled needs libbenchmark-dev)"
json_out=${json_out:-$QD_BUILD/bench/proxy.json}
table_out=${table_out:-$QD_BUILD/bench/proxy.txt}
mkdir -p "$(dirname "$json_out")" "$(dirname "$table_out")"

if [[ $lock -eq 1 ]]; then
	exec 8>"$LOCK"
	echo "proxy: waiting for the lab session lock $LOCK" >&2
	flock 8
fi

work=$(mktemp -d /tmp/qd-bench-proxy.XXXXXX)
chmod 755 "$work" # nginx workers (user nobody) reach their temp directories through it
nginx_pid="" haproxy_pid="" sim_pid=""
cleanup() {
	local rc=$?
	for p in $nginx_pid $haproxy_pid $sim_pid; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $nginx_pid $haproxy_pid $sim_pid; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	if [[ $rc -ne 0 && $rc -ne 77 ]]; then
		for f in "$work"/*.log; do
			[[ -s $f ]] && { echo "--- $f"; tail -n 20 "$f"; } >&2
		done
	fi
	[[ $keep_lab -eq 1 || $loopback -eq 1 ]] || "$lab" down >/dev/null 2>&1 || true
	rm -rf -- "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in_ns CMD...: CMD where the clients are (the lab's client namespace, or here).
in_ns() {
	if [[ $loopback -eq 1 ]]; then "$@"; else ip netns exec qd-client "$@"; fi
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
if [[ $loopback -eq 1 ]]; then
	NGINX_ADDR=127.0.0.1:$(free_port)
	HAPROXY_ADDR=127.0.0.1:$(free_port)
	sim_args=() QD_COORDINATORS="" QD_URL="(none: --loopback)"
	for _ in 1 2 3; do
		p=$(free_port)
		sim_args+=(--listen "127.0.0.1:$p")
		QD_COORDINATORS+="${QD_COORDINATORS:+,}http://127.0.0.1:$p"
	done
	"$QD_BUILD/tests/coordsim/qdcoordsim" "${sim_args[@]}" </dev/null >"$work/coordsim.log" 2>&1 8>&- &
	sim_pid=$!
else
	lab_args=(--coordinators 3)
	[[ $busy -eq 1 ]] && lab_args+=(--busy-poll)
	echo "proxy: scripts/lab up ${lab_args[*]}" >&2
	"$lab" up "${lab_args[@]}" >"$work/lab-up.log" 2>&1 || { cat "$work/lab-up.log" >&2; exit 1; }
	eval "$("$lab" env)"
fi
IFS=, read -r -a coords <<<"$QD_COORDINATORS"
direct_url=${coords[0]}

# ---- nginx and HAProxy in the client namespace ---------------------------------------

upstreams="" backends="" i=0
for u in "${coords[@]}"; do
	i=$((i + 1))
	upstreams+="        server ${u#http://} max_fails=0;"$'\n'
	backends+="    server c$i ${u#http://}"$'\n'
done
mkdir -p "$work/nginx-tmp"
chmod 777 "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
# Generated by bench/proxy.sh: nginx as Trino users run it in front of several
# coordinators (ip_hash keeps a client on one coordinator, so nextUri works).
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
        }
    }
}
EOF
cat >"$work/haproxy.cfg" <<EOF
# Generated by bench/proxy.sh: HAProxy in front of several coordinators,
# source-address affinity; Host passes unchanged, so nextUri points back here.
global
    nbthread 1
    maxconn 4096
    log stderr format raw local0 warning
defaults
    mode http
    log global
    option http-keep-alive
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s
frontend fe
    bind $HAPROXY_ADDR
    default_backend coordinators
backend coordinators
    balance source
    http-reuse always
$backends
EOF
# The checks run where the proxies will (nginx -t binds the listen address,
# which exists only in the client namespace).
in_ns nginx -t -c "$work/nginx.conf" -p "$work" >"$work/nginx-check.log" 2>&1 8>&- ||
	{ cat "$work/nginx-check.log" >&2; exit 1; }
in_ns haproxy -c -f "$work/haproxy.cfg" >"$work/haproxy-check.log" 2>&1 8>&- ||
	{ cat "$work/haproxy-check.log" >&2; exit 1; }
# `ip netns exec` execs the command, so $! is the proxy's own pid (a shell
# function would put a subshell in between). The lock's
# descriptor is not passed on: a proxy left behind must not hold it.
ns=()
[[ $loopback -eq 1 ]] || ns=(ip netns exec qd-client)
"${ns[@]}" nginx -c "$work/nginx.conf" -p "$work" </dev/null >>"$work/nginx.log" 2>&1 8>&- &
nginx_pid=$!
"${ns[@]}" haproxy -db -f "$work/haproxy.cfg" </dev/null >"$work/haproxy.log" 2>&1 8>&- &
haproxy_pid=$!
for _ in $(seq 50); do
	n=$(in_ns ss -Hltn "( sport = :${NGINX_ADDR##*:} or sport = :${HAPROXY_ADDR##*:} )" | wc -l)
	m=3
	if [[ $loopback -eq 1 ]]; then
		m=0
		for u in ${QD_COORDINATORS//,/ }; do
			[[ -n $(ss -Hltn "sport = :${u##*:}") ]] && m=$((m + 1))
		done
	fi
	[[ $n -ge 2 && $m -ge 3 ]] && break
	sleep 0.1
done
[[ ${n:-0} -ge 2 ]] || { echo "proxy: nginx or haproxy is not listening" >&2; exit 1; }

# ---- measuring -----------------------------------------------------------------------

hz=$(awk '/^cpu MHz/ {printf "%.0f", $4 * 1000000; exit}' /proc/cpuinfo)
tck=$(getconf CLK_TCK)

# ticks PID...: utime + stime of the processes (all their threads).
ticks() {
	local p s t=0 f
	for p in "$@"; do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		read -r -a f <<<"$s"
		t=$((t + f[11] + f[12])) # fields 14 and 15 of stat(5), after the comm
	done
	echo "$t"
}
# nginx_pids: the master and its workers, one a line.
nginx_pids() { echo "$nginx_pid"; pgrep -P "$nginx_pid" || true; }
if [[ $loopback -eq 1 ]]; then
	qd_pid="" coordsim_pid=$sim_pid
else
	qd_pid=$(cat /run/qdispatch/lab/peer1.pid)
	coordsim_pid=$(cat /run/qdispatch/lab/coordsim.pid)
fi
# qd_snap FILE: qdispatchd's counters now (qdctl --json stats, over its control
# socket; QD_CTL_SOCKET from the lab's environment): busy cycles and loops,
# loops, idle sleeps and the proxy's counters. `{}` outside the lab.
qd_snap() {
	if [[ $loopback -eq 1 ]] || ! "$qdctl" --json stats >"$1.raw" 2>>"$work/qdctl.log"; then
		echo '{}' >"$1"
		return 0
	fi
	jq -c '{busy_cycles: (.totals.busy_cycles // 0), busy_loops: (.totals.busy_loops // 0),
		loops: (.totals.loops // 0), idle_sleeps: (.totals.idle_sleeps // 0),
		proxy: (.totals.proxy // {}), routes: (.routes // {})}' "$1.raw" >"$1"
}
# qd_delta BEFORE AFTER: what qdispatchd did between two snapshots (JSON): busy
# cycles per request it proxied (.totals.proxy.requests), the share of its
# loops that found work, and every proxy error counter that moved.
qd_delta() {
	jq -c -n --slurpfile a "$1" --slurpfile b "$2" '
		($a[0]) as $x | ($b[0]) as $y
		| def d(f): (($y | f) // 0) - (($x | f) // 0);
		{busy_cycles: d(.busy_cycles), busy_loops: d(.busy_loops), loops: d(.loops),
		 idle_sleeps: d(.idle_sleeps), requests: d(.proxy.requests),
		 busy_cycles_per_request: (if d(.proxy.requests) > 0
			then d(.busy_cycles) / d(.proxy.requests) else null end),
		 busy_loop_share: (if d(.loops) > 0 then d(.busy_loops) / d(.loops) else null end),
		 proxy_errors: ([($y.proxy // {}) | to_entries[]
			| select(.key | test("^(local_(4|5)|clients_refused|backend_(connect_failed|connect_timeouts|lost|limit)|response_timeouts|retries|client_aborted|client_stalls|head_buffers_empty|no_mbuf|failed_results|routes_(full|ended_(lost|gone))|route_misses)"))
			| {key: .key, value: (.value - (($x.proxy // {})[.key] // 0))}
			| select(.value != 0)] | from_entries)}'
}

arm_url() {
	case $1 in
	direct) echo "$direct_url" ;;
	nginx) echo "http://$NGINX_ADDR" ;;
	haproxy) echo "http://$HAPROXY_ADDR" ;;
	qdispatchd) echo "$QD_URL" ;;
	esac
}
arm_ticks() {
	case $1 in
	nginx) mapfile -t np < <(nginx_pids); ticks "${np[@]}" ;;
	haproxy) ticks "$haproxy_pid" ;;
	qdispatchd) ticks "$qd_pid" ;;
	*) echo 0 ;;
	esac
}

qdb() { # ARM OUT ARGS...: qdbench in the client namespace against ARM
	local arm=$1 out=$2
	shift 2
	local run=("$lab" exec --)
	[[ $loopback -eq 1 ]] && run=()
	"${run[@]}" "$qdbench" --threads "$threads" --rows "$rows" --page-rows "$page_rows" \
		--json "$out" --label "$arm" -q "$@" "$(arm_url "$arm")" 2>>"$work/qdbench.log"
}

arms=(direct nginx haproxy qdispatchd)
skipped='{}'
for arm in "${arms[@]}"; do
	if [[ $arm == qdispatchd && $loopback -eq 1 ]]; then
		skipped='{"qdispatchd": "--loopback: qdispatchd runs only in the lab"}'
		continue
	fi
	if ! qdb "$arm" "$work/probe-$arm.json" --queries 3 --clients 1 --timeout 2 --drain 3; then
		if [[ $arm == qdispatchd ]]; then
			echo "qdispatchd: no proxy answering on QD_URL ($QD_URL), skipped"
			skipped=$(jq -c --arg u "$QD_URL" '. + {qdispatchd: "no proxy answering on QD_URL \($u)"}' <<<"$skipped")
			continue
		fi
		echo "proxy: $arm ($(arm_url "$arm")) does not serve queries:" \
			"$(jq -c .errors "$work/probe-$arm.json" 2>/dev/null)" >&2
		exit 1
	fi
done
active=()
for arm in "${arms[@]}"; do
	jq -e --arg a "$arm" 'has($a)' <<<"$skipped" >/dev/null || active+=("$arm")
done

echo "proxy: ${#active[@]} arms (${active[*]}), $rounds round(s): closed loop $clients clients and" \
	"open loop $rate q/s, ${duration} s each after ${warmup} s warm-up" >&2
: >"$work/runs.jsonl"
for ((r = 1; r <= rounds; r++)); do
	for arm in "${active[@]}"; do
		# CPU time of the proxy and the simulator, and qdispatchd's own counters,
		# around each run (warm-up included: divided by qdbench's requests.total,
		# which counts the warm-up's requests too).
		c0=$(arm_ticks "$arm"); s0=$(ticks "$coordsim_pid"); qd_snap "$work/qd0.json"
		rc=0
		qdb "$arm" "$work/closed.json" --clients "$clients" --duration "$duration" --warmup "$warmup" || rc=$?
		c1=$(arm_ticks "$arm"); s1=$(ticks "$coordsim_pid"); qd_snap "$work/qd1.json"
		[[ $rc -le 1 && -s $work/closed.json ]] || { echo "proxy: qdbench failed on $arm (exit $rc)" >&2; exit 1; }
		rc=0
		qdb "$arm" "$work/open.json" --rate "$rate" --clients $((clients * 8)) --duration "$duration" \
			--warmup "$warmup" || rc=$?
		c2=$(arm_ticks "$arm"); qd_snap "$work/qd2.json"
		[[ $rc -le 1 && -s $work/open.json ]] || { echo "proxy: qdbench failed on $arm (exit $rc)" >&2; exit 1; }
		qdc='null' qdo='null'
		if [[ $arm == qdispatchd ]]; then
			qdc=$(qd_delta "$work/qd0.json" "$work/qd1.json")
			qdo=$(qd_delta "$work/qd1.json" "$work/qd2.json")
		fi
		jq -c -n --arg arm "$arm" --argjson round "$r" --slurpfile c "$work/closed.json" \
			--slurpfile o "$work/open.json" --argjson cpu_ticks $((c1 - c0)) \
			--argjson open_ticks $((c2 - c1)) --argjson sim_ticks $((s1 - s0)) \
			--argjson qdc "$qdc" --argjson qdo "$qdo" --argjson tck "$tck" --argjson hz "$hz" '
			def req: .requests.total;
			def errs: .errors | with_entries(select(.value != 0));
			def nonok: .http_status | with_entries(select(.key | test("^2") | not));
			{arm: $arm, round: $round,
			 closed: {queries_per_s: $c[0].queries.per_s, requests_per_s: $c[0].requests.per_s,
				  requests: ($c[0] | req), errors: $c[0].errors.total,
				  error_kinds: ($c[0] | errs), http_not_2xx: ($c[0] | nonok),
				  request_p50_us: $c[0].latency_us.request.p50,
				  request_p99_us: $c[0].latency_us.request.p99},
			 open: {queries_per_s: $o[0].queries.per_s, requests: ($o[0] | req),
				errors: $o[0].errors.total, error_kinds: ($o[0] | errs),
				http_not_2xx: ($o[0] | nonok), late_starts: $o[0].late_starts,
				request_p50_us: $o[0].latency_us.request.p50,
				request_p99_us: $o[0].latency_us.request.p99,
				query_p50_us: $o[0].latency_us.query.p50,
				query_p99_us: $o[0].latency_us.query.p99,
				post_p50_us: $o[0].latency_us.post.p50, post_p99_us: $o[0].latency_us.post.p99,
				get_p50_us: $o[0].latency_us.get.p50, get_p99_us: $o[0].latency_us.get.p99,
				connections: $o[0].connections},
			 cpu: {proxy_cpu_s: ($cpu_ticks / $tck),
			       proxy_cpu_us_per_request: (if $arm == "direct" then null
					else $cpu_ticks / $tck * 1e6 / ($c[0] | req) end),
			       proxy_cycles_per_request: (if $arm == "direct" then null
					else $cpu_ticks / $tck * $hz / ($c[0] | req) end),
			       open_proxy_cpu_us_per_request: (if $arm == "direct" then null
					else $open_ticks / $tck * 1e6 / ($o[0] | req) end),
			       busy_cycles_per_request: (if $qdc == null then null else $qdc.busy_cycles_per_request end),
			       open_busy_cycles_per_request: (if $qdo == null then null else $qdo.busy_cycles_per_request end),
			       coordsim_cpu_us_per_request: ($sim_ticks / $tck * 1e6 / ($c[0] | req))},
			 qdispatchd: (if $qdc == null then null else {closed: $qdc, open: $qdo} end)}' \
			>>"$work/runs.jsonl"
		tail -n1 "$work/runs.jsonl" | jq -r '"round \(.round) \(.arm): \(.closed.queries_per_s | floor) q/s closed, " +
			"request p50 \(.open.request_p50_us) us p99 \(.open.request_p99_us) us at \(.open.queries_per_s | floor) q/s, " +
			"errors \(.closed.errors)+\(.open.errors)" +
			(if .closed.errors + .open.errors > 0 then
				"\n  closed: \(.closed.error_kinds) HTTP \(.closed.http_not_2xx); open: \(.open.error_kinds) HTTP \(.open.http_not_2xx)"
			 else "" end) +
			(if .qdispatchd != null and ((.qdispatchd.closed.proxy_errors | length) + (.qdispatchd.open.proxy_errors | length)) > 0 then
				"\n  qdispatchd counters: closed \(.qdispatchd.closed.proxy_errors), open \(.qdispatchd.open.proxy_errors)"
			 else "" end)'
	done
done

# ---- summary -------------------------------------------------------------------------------

jq -s --argjson skipped "$skipped" --arg direct "$direct_url" --arg nginx "http://$NGINX_ADDR" \
	--arg haproxy "http://$HAPROXY_ADDR" --arg qd "$QD_URL" --argjson hz "$hz" \
	--argjson cfg "$(jq -n --argjson rounds "$rounds" --argjson duration "$duration" \
		--argjson warmup "$warmup" --argjson clients "$clients" --argjson rate "$rate" \
		--argjson threads "$threads" --argjson rows "$rows" --argjson page_rows "$page_rows" \
		--argjson busy "$busy" '{rounds: $rounds, duration_s: $duration, warmup_s: $warmup,
		clients: $clients, rate: $rate, qdbench_threads: $threads, rows: $rows,
		page_rows: $page_rows, qdispatchd_busy_poll: ($busy == 1)}')" '
	def median: sort | if length == 0 then null
		else (if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) end;
	def spread: {median: median, min: min, max: max};
	. as $runs
	| ($runs | map(.arm) | unique) as $arms
	| {config: $cfg, cpu_hz: $hz,
	   urls: {direct: $direct, nginx: $nginx, haproxy: $haproxy, qdispatchd: $qd},
	   skipped: $skipped,
	   runs: $runs,
	   summary: ([$arms[] as $a
		| ($runs | map(select(.arm == $a))) as $mine
		| ($runs | map(select(.arm == "direct"))) as $base
		| def paired(f; op): [$mine[] as $m | ($base[] | select(.round == $m.round)) as $b
			| if op == "ratio" then ($m | f) / ($b | f) else ($m | f) - ($b | f) end];
		# ratio of this arm to arm $o, round by round (the runs next to each other)
		def vs($o; f): [$mine[] as $m | ($runs[] | select(.arm == $o and .round == $m.round)) as $b
			| select(($m | f) != null and ($b | f) != null and ($b | f) != 0)
			| ($m | f) / ($b | f)] | if length == 0 then null else spread end;
		def kinds(f): reduce ($mine[] | f | to_entries[]) as $e ({}; .[$e.key] += $e.value);
		{key: $a, value: {
		  queries_per_s: ($mine | map(.closed.queries_per_s) | median),
		  requests_per_s: ($mine | map(.closed.requests_per_s) | median),
		  queries_per_s_ratio_vs_direct: (paired(.closed.queries_per_s; "ratio") | spread),
		  open_queries_per_s: ($mine | map(.open.queries_per_s) | median),
		  request_p50_us: ($mine | map(.open.request_p50_us) | median),
		  request_p99_us: ($mine | map(.open.request_p99_us) | median),
		  query_p50_us: ($mine | map(.open.query_p50_us) | median),
		  query_p99_us: ($mine | map(.open.query_p99_us) | median),
		  post_p50_us: ($mine | map(.open.post_p50_us) | median),
		  post_p99_us: ($mine | map(.open.post_p99_us) | median),
		  get_p50_us: ($mine | map(.open.get_p50_us) | median),
		  get_p99_us: ($mine | map(.open.get_p99_us) | median),
		  added_request_p50_us: (paired(.open.request_p50_us; "diff") | spread),
		  added_request_p99_us: (paired(.open.request_p99_us; "diff") | spread),
		  added_query_p50_us: (paired(.open.query_p50_us; "diff") | spread),
		  closed_request_p50_us: ($mine | map(.closed.request_p50_us) | median),
		  proxy_cpu_us_per_request: ($mine | map(.cpu.proxy_cpu_us_per_request) | map(select(. != null)) | median),
		  proxy_cycles_per_request: ($mine | map(.cpu.proxy_cycles_per_request) | map(select(. != null)) | median),
		  open_proxy_cpu_us_per_request: ($mine | map(.cpu.open_proxy_cpu_us_per_request) | map(select(. != null)) | median),
		  busy_cycles_per_request: ($mine | map(.cpu.busy_cycles_per_request) | map(select(. != null)) | median),
		  open_busy_cycles_per_request: ($mine | map(.cpu.open_busy_cycles_per_request) | map(select(. != null)) | median),
		  busy_loop_share: ($mine | map(.qdispatchd.closed.busy_loop_share // empty) | median),
		  coordsim_cpu_us_per_request: ($mine | map(.cpu.coordsim_cpu_us_per_request) | median),
		  errors: ($mine | map(.closed.errors + .open.errors) | add),
		  error_kinds: kinds((.closed.error_kinds // {}), (.open.error_kinds // {})),
		  http_not_2xx: kinds((.closed.http_not_2xx // {}), (.open.http_not_2xx // {})),
		  qdispatchd_proxy_errors: (if $a == "qdispatchd"
			then kinds(.qdispatchd.closed.proxy_errors, .qdispatchd.open.proxy_errors) else null end),
		  vs: ({} | if $a != "direct" then
			reduce ("nginx", "haproxy") as $o (.; if $o == $a then . else .[$o] = {
			  queries_per_s: vs($o; .closed.queries_per_s),
			  proxy_cpu_us_per_request: vs($o; .cpu.proxy_cpu_us_per_request)}
			end) else . end)}}] | from_entries)}' \
	"$work/runs.jsonl" >"$json_out"

{
	printf 'proxy comparison: %s round(s); closed loop %s clients, open loop %s q/s; %s s (+%s s warm-up) per run\n' \
		"$rounds" "$clients" "$rate" "$duration" "$warmup"
	jq -r '
	def f0: if . == null then "-" else (. | round | tostring) end;
	def f2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
	def rng: if .median == null then "-" else "\(.median | f2) [\(.min | f2)..\(.max | f2)]" end;
	def rngi: if .median == null then "-" else "\(.median | f0) [\(.min | f0)..\(.max | f0)]" end;
	(["arm", "queries/s", "ratio vs direct", "req/s", "req p50 us", "req p99 us",
	  "added p50 us", "added p99 us", "query p50 us", "proxy CPU us/req", "cycles/req", "busy cycles/req", "errors"] | join(" | ")),
	(["direct", "nginx", "haproxy", "qdispatchd"][] as $a
	 | if .summary[$a] then .summary[$a] |
		([$a, (.queries_per_s | f0), (.queries_per_s_ratio_vs_direct | rng), (.requests_per_s | f0),
		  (.request_p50_us | f0), (.request_p99_us | f0),
		  (.added_request_p50_us | rngi), (.added_request_p99_us | rngi), (.query_p50_us | f0),
		  (.proxy_cpu_us_per_request | f2), (.proxy_cycles_per_request | f0),
		  (.busy_cycles_per_request | f0), (.errors | tostring)] | join(" | "))
	   elif .skipped[$a] then "\($a) | skipped: \(.skipped[$a])" else empty end)' "$json_out"
	jq -r '
	def f0: if . == null then "-" else (. | round | tostring) end;
	def f2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
	def rng: if . == null or .median == null then "-" else "\(.median | f2) [\(.min | f2)..\(.max | f2)]" end;
	if [.summary[] | .vs // {} | keys[]] | length > 0 then
	  "per-round ratios, median [min..max]: queries/s (closed) and proxy CPU per request",
	  (.summary | to_entries[] | select(.value.vs != null and (.value.vs | length) > 0) | .key as $a
	   | .value.vs | to_entries[]
	   | "  \($a) / \(.key): queries/s \(.value.queries_per_s | rng), CPU us/req \(.value.proxy_cpu_us_per_request | rng)")
	else empty end,
	"open loop by request kind, p50 / p99 us (a POST is the first request after the query'"'"'s idle gap):",
	(["direct", "nginx", "haproxy", "qdispatchd"][] as $a | .summary[$a] // empty
	 | "  \($a): POST \(.post_p50_us | f0) / \(.post_p99_us | f0), GET \(.get_p50_us | f0) / \(.get_p99_us | f0);" +
	   " query p99 \(.query_p99_us | f0); proxy CPU us/req at the open-loop rate \(.open_proxy_cpu_us_per_request | f2)"),
	(.summary.qdispatchd // empty
	 | "qdispatchd: busy cycles/request \(.busy_cycles_per_request | f0) closed, \(.open_busy_cycles_per_request | f0) open;" +
	   " loops that found work \(if .busy_loop_share == null then "-" else (.busy_loop_share * 100 | f2) end) %;" +
	   " process CPU us/request \(.proxy_cpu_us_per_request | f2) closed, \(.open_proxy_cpu_us_per_request | f2) open"),
	(.summary | to_entries[] | select(.value.errors > 0)
	 | "ERRORS \(.key): \(.value.errors): \(.value.error_kinds) HTTP \(.value.http_not_2xx)" +
	   (if .value.qdispatchd_proxy_errors then " qdispatchd counters \(.value.qdispatchd_proxy_errors)" else "" end))
	' "$json_out"
} | tee "$table_out"
echo "proxy: JSON in $json_out, table in $table_out" >&2

if [[ $smoke -eq 1 ]]; then
	bad=$(jq '[.summary[] | .errors] | add' "$json_out")
	[[ $bad == 0 ]] || { echo "FAIL: $bad errors (see $json_out)"; exit 1; }
	# In the lab qdispatchd's proxy must answer too (its arm is not skipped).
	want=4
	[[ $loopback -eq 1 ]] && want=3
	n=$(jq '.summary | length' "$json_out")
	[[ $n -ge $want ]] || { echo "FAIL: only $n of $want arms ran: $(jq -c .skipped "$json_out")"; exit 1; }
	echo "PASS"
fi
