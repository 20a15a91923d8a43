#!/usr/bin/env bash
# bench/qdbench_test.sh: tests of qdbench against servers on loopback (no
# root). Exit 0 pass, 1 fail, 77 skip.
#
#   qdbench_test.sh delay QDBENCH QDBENCH_DELAYD
#       Latency recording against qdbench-delayd, which answers every request
#       after exactly D ms: request p50 in [D, 1.2 D + 0.5 ms] for D = 20 and D = 5 ms
#       (bands that do not overlap: a wrong clock or unit cannot pass both),
#       query p50 = (1 + pages) x D, counts equal to the server's, and the
#       coordinated-omission test: one response held 1 s shows in the open
#       loop's p90 (every query scheduled during the stall waited) but not in
#       the closed loop's.
#   qdbench_test.sh coordsim QDBENCH QDCOORDSIM
#       Counts against the simulator: qdbench's submitted/finished/canceled and
#       DELETEs equal qdcoordsim's /v1/simulator/stats, rows equal rows x
#       finished; skipped while qdcoordsim has no POST /v1/statement.
set -uo pipefail

mode=${1:?usage: qdbench_test.sh delay|coordsim QDBENCH SERVER}
qdbench=${2:?missing the qdbench binary}
server=${3:?missing the server binary}
command -v jq >/dev/null || { echo "SKIP: jq needed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 needed"; exit 77; }
tmp=$(mktemp -d)
server_pid=""
cleanup() {
	[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

# in_band VALUE LOW HIGH NAME: LOW <= VALUE <= HIGH.
in_band() {
	awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN {exit !(v >= lo && v <= hi)}' ||
		fail "$4 = $1, expected within [$2, $3]"
	echo "ok: $4 = $1 in [$2, $3]"
}

# start_delayd ARGS...: sets addr and server_pid.
start_delayd() {
	[[ -n $server_pid ]] && { kill "$server_pid"; wait "$server_pid" 2>/dev/null; }
	"$server" "$@" >"$tmp/addr" 2>"$tmp/server.log" &
	server_pid=$!
	for _ in $(seq 50); do
		[[ -s $tmp/addr ]] && break
		sleep 0.1
	done
	addr=$(head -n1 "$tmp/addr")
	[[ -n $addr ]] || fail "qdbench-delayd did not start: $(cat "$tmp/server.log")"
}

http_get() { # URL -> body
	python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

jget() { jq -r "$1" "$tmp/out.json"; }

run_delay() {
	local d
	for d in 20 5; do
		echo "== closed loop, D = $d ms, 2 GET pages per query"
		start_delayd --delay-ms "$d" --pages 2 --rows 3
		"$qdbench" --clients 4 --duration 2 --warmup 0.3 --json "$tmp/out.json" -q "http://$addr" ||
			fail "qdbench exited $?"
		local lo=$((d * 1000)) hi=$((d * 1200 + 500))
		in_band "$(jget .latency_us.request.p50)" "$lo" "$hi" "request p50 (us)"
		in_band "$(jget .latency_us.post.p50)" "$lo" "$hi" "POST p50 (us)"
		in_band "$(jget .latency_us.get.p50)" "$lo" "$hi" "GET p50 (us)"
		in_band "$(jget .latency_us.query.p50)" $((3 * lo)) $((3 * hi)) "query p50 (us)"
		in_band "$(jget .latency_us.request.min)" "$lo" "$hi" "request min (us)"
		# Closed loop with 4 clients and 3 requests of D per query: 4 / (3 D) queries/s.
		local qps=$((4000 / (3 * d) + 1))
		in_band "$(jget .queries.per_s)" $((qps * 85 / 100)) "$qps" "queries/s"
		local stats
		stats=$(http_get "http://$addr/stats") || fail "GET /stats failed"
		[[ $(jget .errors.total) == 0 ]] || fail "errors: $(jget .errors)"
		[[ $(jq .posts <<<"$stats") == "$(jget .queries.submitted)" ]] ||
			fail "server saw $(jq .posts <<<"$stats") POSTs, qdbench $(jget .queries.submitted) submitted"
		[[ $(jq .gets <<<"$stats") == "$(jget '.queries.finished * 2')" ]] ||
			fail "server saw $(jq .gets <<<"$stats") GETs for $(jget .queries.finished) queries"
		[[ $(jget .rows) == "$(jget '.queries.finished * 6')" ]] || fail "rows $(jget .rows)"
		# The server's count includes the GET /stats that read it.
		[[ $(jget .requests.total) == "$(jq '.requests - 1' <<<"$stats")" ]] ||
			fail "requests $(jget .requests.total) vs the server's $(jq .requests <<<"$stats") - 1"
		[[ $(jget .connections) == 4 ]] || fail "connections $(jget .connections), expected 4 kept alive"
		[[ $(jget .queries.started) == "$(jget .queries.finished)" ]] || fail "started != finished"
		echo "ok: counts match the server's ($(jq -c . <<<"$stats"))"
	done

	echo "== cancel ratio 0.5: DELETE after the first page"
	start_delayd --delay-ms 1 --pages 2
	"$qdbench" --clients 2 --queries 200 --cancel-ratio 0.5 --json "$tmp/out.json" -q "http://$addr" ||
		fail "qdbench exited $?"
	[[ $(jget '.queries.canceled + .queries.finished') == 200 ]] || fail "canceled + finished != 200"
	[[ $(jget .queries.deletes) == "$(jget .queries.canceled)" ]] || fail "deletes != canceled"
	in_band "$(jget .queries.canceled)" 70 130 "canceled of 200"

	echo "== coordinated omission: one response held 1 s"
	start_delayd --delay-ms 2 --pages 1 --stall-after 60 --stall-ms 1000
	"$qdbench" --rate 100 --clients 1 --duration 3 --json "$tmp/out.json" -q "http://$addr" ||
		fail "qdbench exited $?"
	local open_p90 open_max
	open_p90=$(jget .latency_us.query.p90)
	open_max=$(jget .latency_us.query.max)
	in_band "$open_p90" 250000 2000000 "open loop query p90 (us)"
	in_band "$open_max" 900000 2000000 "open loop query max (us)"
	in_band "$(jget .late_starts)" 50 300 "open loop late starts"
	start_delayd --delay-ms 2 --pages 1 --stall-after 60 --stall-ms 1000
	"$qdbench" --clients 1 --duration 3 --json "$tmp/out.json" -q "http://$addr" ||
		fail "qdbench exited $?"
	in_band "$(jget .latency_us.query.p90)" 4000 20000 "closed loop query p90 (us)"
	in_band "$(jget .latency_us.query.max)" 1000000 1100000 "closed loop query max (us)"

	echo "== errors are counted by kind"
	kill "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=""
	"$qdbench" --clients 2 --queries 4 --json "$tmp/out.json" -q "http://$addr"
	[[ $? == 1 ]] || fail "qdbench against a closed port did not exit 1"
	[[ $(jget .errors.connect) == 4 ]] || fail "connect errors: $(jget .errors)"
	"$qdbench" --clients 0 "http://$addr" 2>/dev/null
	[[ $? == 2 ]] || fail "--clients 0 is not a usage error"
	"$qdbench" "https://$addr" 2>/dev/null
	[[ $? == 2 ]] || fail "https is not a usage error"
	echo "PASS"
}

run_coordsim() {
	"$server" --help 2>&1 | grep -qi 'statement' ||
		{ echo "SKIP: this qdcoordsim has no POST /v1/statement yet"; exit 77; }
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	"$server" --listen "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
	server_pid=$!
	local base=http://127.0.0.1:$port
	for _ in $(seq 50); do
		http_get "$base/v1/info" >/dev/null 2>&1 && break
		sleep 0.1
	done
	http_get "$base/v1/info" >/dev/null || fail "qdcoordsim did not start: $(cat "$tmp/server.log")"

	echo "== 300 queries, 8 clients, a quarter canceled, 5 rows in pages of 2"
	"$qdbench" --clients 8 --queries 300 --cancel-ratio 0.25 --rows 5 --page-rows 2 \
		--json "$tmp/out.json" -q "$base" || fail "qdbench exited $? ($(jget .errors))"
	local stats
	stats=$(http_get "$base/v1/simulator/stats") || fail "GET /v1/simulator/stats failed"
	echo "simulator: $(jq -c '.total // .' <<<"$stats")"
	local t='(.total // .)'
	for f in submitted finished canceled deletes; do
		local sim ours
		sim=$(jq "$t.$f" <<<"$stats")
		ours=$(jget ".queries.$f")
		[[ $sim == "$ours" ]] || fail "$f: simulator $sim, qdbench $ours"
		echo "ok: $f = $ours on both sides"
	done
	[[ $(jget .queries.submitted) == 300 ]] || fail "submitted $(jget .queries.submitted), expected 300"
	[[ $(jq "$t.failed" <<<"$stats") == 0 ]] || fail "the simulator counted failures"
	[[ $(jq "$t.running_now" <<<"$stats") == 0 ]] || fail "queries still running in the simulator"
	[[ $(jget .rows) == "$(jget '.queries.finished * 5')" ]] ||
		fail "rows $(jget .rows) for $(jget .queries.finished) finished queries of 5 rows"
	echo "ok: rows = 5 x finished"

	echo "== --presto, 50 queries, open loop"
	"$qdbench" --presto --rate 200 --queries 50 --json "$tmp/out.json" -q "$base" ||
		fail "qdbench --presto exited $?"
	[[ $(jget .queries.finished) == 50 ]] || fail "finished $(jget .queries.finished) of 50"
	echo "PASS"
}

case $mode in
delay) run_delay ;;
coordsim) run_coordsim ;;
*) fail "unknown mode $mode" ;;
esac
