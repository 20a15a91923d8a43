#!/usr/bin/env bash
# test_coordsim.sh: qdcoordsim against its protocol contract (docs/coordsim.md),
# with curl and jq on loopback, no root. Starts one simulator with two
# coordinator addresses (and a second, short-lived one for the timeouts), and
# checks: the query lifecycle with every row verified, multi-page results,
# re-GET of a token, 404/410 on bad URIs, DELETE on nextUri and /v1/query/ID,
# fail and status directives, the per-user/per-source maxima with concurrent
# queries, reset, kill/revive, a 128 MB page streamed with small RSS,
# pipelined requests, the Host header in nextUri, Presto headers, 406 on
# X-Forwarded-*, long polls, abandonment and the history bound.
#
# usage: test_coordsim.sh [PATH/TO/qdcoordsim]   (default $QD_BUILD/tests/coordsim/qdcoordsim)
# exit: 0 pass, 1 a check failed, 77 skipped (curl or jq missing)
set -u

SIM_BIN=${1:-${QD_BUILD:-}/tests/coordsim/qdcoordsim}
# sha256 of the value of row 0 when row_bytes=134217728 (docs/coordsim.md)
BIG_SHA256=c1525bedcc30fe85bcb183e4f63145c2221659e0600aaf8f1dea5799fb8ae9df
BIG_BYTES=134217728
RSS_LIMIT_KB=$((64 * 1024))

for t in curl jq sha256sum; do
	command -v "$t" >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }
done
[[ -x $SIM_BIN ]] || { echo "FAIL: $SIM_BIN is not an executable"; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

FAILS=0
CHECKS=0
ok() { CHECKS=$((CHECKS + 1)); echo "ok   $*"; }
bad() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL $*"; }
# check DESCRIPTION COMMAND...: one check, passed when COMMAND succeeds
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
# eq DESCRIPTION GOT WANT
eq() {
	if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi
}

# start_sim NAME ARGS...: start a simulator on two free loopback ports;
# sets <NAME>_PID, <NAME>_A and <NAME>_B (base URLs).
start_sim() {
	local name=$1 try port_a port_b pid
	shift
	for try in 1 2 3 4 5 6 7 8; do
		port_a=$((20000 + RANDOM % 30000))
		port_b=$((port_a + 1))
		"$SIM_BIN" --listen "127.0.0.1:$port_a" --listen "127.0.0.1:$port_b" "$@" \
			2>"$TMP/$name.log" &
		pid=$!
		local i
		for i in $(seq 50); do
			curl -s -o /dev/null "http://127.0.0.1:$port_b/v1/info" && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null && curl -s -o /dev/null "http://127.0.0.1:$port_b/v1/info"; then
			PIDS+=("$pid")
			printf -v "${name}_PID" %s "$pid"
			printf -v "${name}_A" %s "http://127.0.0.1:$port_a"
			printf -v "${name}_B" %s "http://127.0.0.1:$port_b"
			return 0
		fi
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	echo "FAIL: qdcoordsim did not start: $(tail -5 "$TMP/$name.log")"
	exit 1
}

# post BASE SQL [CURL ARGS...]: POST /v1/statement, the answer on stdout;
# without CURL ARGS as user "tester"
post() {
	local base=$1 sql=$2
	shift 2
	[[ $# -gt 0 ]] || set -- -H 'X-Trino-User: tester'
	curl -sS "$@" --data-binary "$sql" "$base/v1/statement"
}
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
stats() { curl -sS "$S_A/v1/simulator/stats"; }

# expected_value I N: the value of row I with N bytes (docs/coordsim.md)
ALPHA=0123456789abcdefghijklmnopqrstuvwxyz
expected_value() {
	local i=$1 n=$2 k turn s
	k=$((i % 36))
	turn=${ALPHA:k}${ALPHA:0:k}
	s="$i:"
	while ((${#s} < n)); do s+=$turn; done
	printf '%s' "${s:0:n}"
}

# follow BASE SQL: run a query to its end; every page (compact JSON) in
# $TMP/pages, one per line; the last page in $TMP/last
follow() {
	local page next n=0
	page=$(post "$@") || return 1
	printf '%s\n' "$page" | jq -c . >"$TMP/pages" || return 1
	next=$(jq -r '.nextUri // empty' <<<"$page")
	while [[ -n $next && $n -lt 10000 ]]; do
		page=$(curl -sS "$next") || return 1
		printf '%s\n' "$page" | jq -c . >>"$TMP/pages" || return 1
		next=$(jq -r '.nextUri // empty' <<<"$page")
		n=$((n + 1))
	done
	tail -n 1 "$TMP/pages" >"$TMP/last"
}

start_sim S --long-poll-ms 200

echo "== lifecycle, rows verified, several pages"
follow "$S_A" 'SELECT c0 FROM t /* sim: rows=25 page_rows=10 row_bytes=12 queue_ms=500 run_ms=50 */'
ID=$(head -n 1 "$TMP/pages" | jq -r .id)
check "query id has the form YYYYMMdd_HHmmss_NNNNN_xxxxx" \
	grep -Eq '^[0-9]{8}_[0-9]{6}_[0-9]{5}_[a-km-np-z2-9]{5}$' <<<"$ID"
eq "id date is today (UTC)" "${ID:0:8}" "$(date -u +%Y%m%d)"
eq "POST answers QUEUED" "$(head -n 1 "$TMP/pages" | jq -r .stats.state)" QUEUED
eq "first nextUri is a queued URI with token 1" \
	"$(head -n 1 "$TMP/pages" | jq -r .nextUri | sed -E 's#.*/v1/statement/(queued)/[^/]+/[^/]+/([0-9]+)$#\1 \2#')" "queued 1"
check "QUEUED pages are repeated while queue_ms runs" \
	test "$(jq -r .stats.state "$TMP/pages" | grep -c QUEUED)" -ge 2
check "states go QUEUED.. RUNNING.. FINISHED" \
	bash -c "jq -r .stats.state '$TMP/pages' | uniq | tr '\n' ' ' | grep -qx 'QUEUED RUNNING FINISHED '"
eq "last page FINISHED without nextUri" "$(jq -r '[.stats.state, .nextUri // "none"] | join(" ")' "$TMP/last")" "FINISHED none"
eq "3 data pages (25 rows of 10)" "$(jq -c 'select(.data) | .data | length' "$TMP/pages" | tr '\n' ' ')" "10 10 5 "
check "every page with data has columns c0 varchar" \
	bash -c "jq -e 'select(.data) | .columns == [{\"name\":\"c0\",\"type\":\"varchar\",\"typeSignature\":{\"rawType\":\"varchar\",\"arguments\":[{\"kind\":\"LONG\",\"value\":2147483647}]}}]' '$TMP/pages' | grep -vqx true; test \$? -eq 1"
check "executing pages have columns from the first on" \
	jq -se '. as $p | [range(1; $p | length) | select($p[. - 1].nextUri // "" | test("/executing/"))
		| $p[.] | has("columns")] | length > 0 and all' "$TMP/pages"
jq -r 'select(.data) | .data[][0]' "$TMP/pages" >"$TMP/rows"
for ((i = 0; i < 25; i++)); do expected_value "$i" 12; echo; done >"$TMP/rows.want"
check "the 25 rows have their documented values, in order" cmp -s "$TMP/rows" "$TMP/rows.want"
check "stats fields of a Trino QueryResults" \
	jq -e '.stats | has("state") and has("queued") and has("scheduled") and has("nodes") and
		has("totalSplits") and has("queuedSplits") and has("runningSplits") and
		has("completedSplits") and has("cpuTimeMillis") and has("wallTimeMillis") and
		has("queuedTimeMillis") and has("elapsedTimeMillis") and has("processedRows") and
		has("processedBytes") and has("peakMemoryBytes") and has("spilledBytes")' "$TMP/last"
eq "final processedRows" "$(jq .stats.processedRows "$TMP/last")" 25
check "queuedTimeMillis covers queue_ms" test "$(jq .stats.queuedTimeMillis "$TMP/last")" -ge 490
eq "warnings is []" "$(jq -c .warnings "$TMP/last")" "[]"
eq "infoUri" "$(jq -r .infoUri "$TMP/last")" "$S_A/ui/query.html?$ID"
check "GET /v1/query/ID: FINISHED, user, source, text" \
	jq -e --arg id "$ID" '.queryId == $id and .state == "FINISHED" and .session.user == "tester"
		and .session.source == "" and (.query | test("rows=25"))' \
	<<<"$(curl -sS "$S_A/v1/query/$ID")"

check "/v1/info: a coordinator, not starting" \
	jq -e '.coordinator == true and .starting == false and (.nodeVersion.version | length > 0)' \
	<<<"$(curl -sS "$S_B/v1/info")"

echo "== default query: one row of 8 bytes, user anonymous"
follow "$S_A" 'SELECT 1' -H 'X-Trino-User;'
eq "one row 0:012345" "$(jq -c 'select(.data) | .data' "$TMP/pages")" '[["0:012345"]]'
ID=$(head -n 1 "$TMP/pages" | jq -r .id)
eq "an empty user header: anonymous" "$(curl -sS "$S_A/v1/query/$ID" | jq -r .session.user)" anonymous
r=$(curl -sS -X POST --data-binary 'SELECT 2' "$S_A/v1/statement")
eq "no user header: anonymous" "$(curl -sS "$S_A/v1/query/$(jq -r .id <<<"$r")" | jq -r .session.user)" anonymous
eq "no client tags: []" "$(curl -sS "$S_A/v1/query/$(jq -r .id <<<"$r")" | jq -c .session.clientTags)" "[]"
curl -s -X DELETE "$(jq -r .nextUri <<<"$r")" >/dev/null
r=$(curl -sS -X POST -H 'X-Trino-Client-Tags: hipri, nightly ,' --data-binary 'SELECT 3' "$S_A/v1/statement")
eq "client tags in the session, as Trino lists them" \
	"$(curl -sS "$S_A/v1/query/$(jq -r .id <<<"$r")" | jq -c .session.clientTags)" '["hipri","nightly"]'
curl -s -X DELETE "$(jq -r .nextUri <<<"$r")" >/dev/null

echo "== re-GET of the same token, bad tokens, slugs and ids"
r=$(post "$S_A" 'SELECT 1 /* sim: rows=5 page_rows=2 */')
n=$(jq -r .nextUri <<<"$r")
p1=$(curl -sS "$n") # queued -> executing/0
e0=$(jq -r .nextUri <<<"$p1")
d1=$(curl -sS "$e0" | jq -c '{data, nextUri}')
d2=$(curl -sS "$e0" | jq -c '{data, nextUri}')
eq "re-GET returns the same page" "$d2" "$d1"
eq "that page has rows 0 and 1" "$(jq -c .data <<<"$d1")" '[["0:012345"],["1:123456"]]'
e1=$(jq -r .nextUri <<<"$d1")
eq "an older token is gone: 410" "$(status_of "$n")" 410
eq "a token two ahead: 410" "$(status_of "${e1%/*}/7")" 410
id=$(jq -r .id <<<"$r")
eq "wrong slug: 404" "$(status_of "${e1/\/y/\/yx}")" 404
eq "unknown id: 404" "$(status_of "${e1/$id/20200101_000000_00000_aaaaa}")" 404
eq "the other coordinator address does not know it: 404" "$(status_of "${e1/$S_A/$S_B}")" 404
eq "HEAD /v1/query/ID: 200" "$(status_of -I "$S_A/v1/query/$id")" 200
eq "HEAD /v1/query/unknown: 404" "$(status_of -I "$S_A/v1/query/20200101_000000_00000_aaaaa")" 404
check "404 has a Trino error body" jq -e '.error.errorName and .error.message' \
	<<<"$(curl -s "$S_A/v1/query/20200101_000000_00000_aaaaa")"
curl -s -X DELETE "$e1" >/dev/null

echo "== DELETE on nextUri and on /v1/query/ID"
curl -s -X POST "$S_A/v1/simulator/reset" >/dev/null
r=$(post "$S_A" 'SELECT 1 /* sim: queue_ms=20000 */')
n=$(jq -r .nextUri <<<"$r")
eq "DELETE queued nextUri: 204" "$(status_of -X DELETE "$n")" 204
p=$(curl -sS "$n")
eq "then the next GET: FAILED USER_CANCELED, no nextUri" \
	"$(jq -r '[.stats.state, .error.errorName, .error.errorType, (.nextUri // "none")] | join(" ")' <<<"$p")" \
	"FAILED USER_CANCELED USER_ERROR none"
r=$(post "$S_A" 'SELECT 1 /* sim: rows=30 page_rows=10 */')
id=$(jq -r .id <<<"$r")
e0=$(curl -sS "$(jq -r .nextUri <<<"$r")" | jq -r .nextUri)
curl -sS "$e0" >/dev/null
eq "DELETE /v1/query/ID of an executing query: 204" "$(status_of -X DELETE "$S_A/v1/query/$id")" 204
eq "GET /v1/query/ID: FAILED USER_CANCELED" \
	"$(curl -sS "$S_A/v1/query/$id" | jq -r '[.state, .errorCode.name] | join(" ")')" "FAILED USER_CANCELED"
r=$(post "$S_A" 'SELECT 1 /* sim: rows=30 page_rows=10 */')
e0=$(curl -sS "$(jq -r .nextUri <<<"$r")" | jq -r .nextUri)
eq "DELETE executing nextUri: 204" "$(status_of -X DELETE "$e0")" 204
eq "DELETE of a canceled query again: 204" "$(status_of -X DELETE "$e0")" 204
eq "DELETE with a wrong slug: 404" "$(status_of -X DELETE "${e0/\/y/\/yx}")" 404
eq "stats: 3 canceled, 4 deletes" "$(stats | jq -c '[.total.canceled, .total.deletes]')" "[3,4]"
eq "per address too" "$(stats | jq -c --arg a "${S_A#http://}" '[.coordinators[$a].canceled, .coordinators[$a].deletes]')" "[3,4]"

echo "== fail directives"
curl -s -X POST "$S_A/v1/simulator/reset" >/dev/null
r=$(post "$S_A" 'SELECT 1 /* sim: fail=submit */')
eq "fail=submit: POST answers FAILED, no nextUri" \
	"$(jq -r '[.stats.state, .error.errorName, (.nextUri // "none")] | join(" ")' <<<"$r")" "FAILED SYNTAX_ERROR none"
follow "$S_A" 'SELECT 1 /* sim: fail=queued queue_ms=50 */'
eq "fail=queued" "$(jq -r '[.stats.state, .error.errorName] | join(" ")' "$TMP/last")" "FAILED QUERY_QUEUE_FULL"
follow "$S_A" 'SELECT 1 /* sim: fail=running run_ms=50 error=EXCEEDED_TIME_LIMIT */'
eq "fail=running error=EXCEEDED_TIME_LIMIT" \
	"$(jq -r '[.stats.state, .error.errorName, .error.errorCode, .error.errorType] | join(" ")' "$TMP/last")" \
	"FAILED EXCEEDED_TIME_LIMIT 131075 INSUFFICIENT_RESOURCES"
check "the error has a message and failureInfo" jq -e '.error.message and .error.failureInfo.type' "$TMP/last"
follow "$S_A" 'SELECT 1 /* sim: rows=x */'
eq "a bad directive fails the query" "$(jq -r '[.stats.state, .error.errorName] | join(" ")' "$TMP/last")" "FAILED SYNTAX_ERROR"
eq "stats: 4 failed, 4 submitted, running 0" \
	"$(stats | jq -c '[.total.failed, .total.submitted, .total.running_now]')" "[4,4,0]"

echo "== status directive"
eq "status=503 answers the POST with 503" \
	"$(status_of --data-binary 'SELECT 1 /* sim: status=503 */' "$S_A/v1/statement")" 503
codes=""
for i in 1 2 3; do
	codes+="$(curl -s -o "$TMP/st" -w '%{http_code}' --data-binary 'SELECT 7 -- sim: status=502 status_count=2' \
		"$S_A/v1/statement") "
done
eq "status=502 status_count=2: two 502 then 200" "$codes" "502 502 200 "
curl -s -X DELETE "$(jq -r .nextUri "$TMP/st")" >/dev/null
eq "status_count is per address" \
	"$(status_of --data-binary 'SELECT 7 -- sim: status=502 status_count=2' "$S_B/v1/statement")" 502
curl -s -X POST "$S_A/v1/simulator/reset" >/dev/null

echo "== maxima per user and source, several queries at once, reset"
ids=()
for u in alice alice alice bob; do
	r=$(post "$S_A" 'SELECT 1 /* sim: queue_ms=20000 */' -H "X-Trino-User: $u" -H "X-Trino-Source: src-$u")
	ids+=("$(jq -r .nextUri <<<"$r")")
done
for u in bob carol; do
	r=$(post "$S_B" 'SELECT 1 /* sim: queue_ms=20000 */' -H "X-Trino-User: $u" -H "X-Trino-Source: src-$u")
	ids+=("$(jq -r .nextUri <<<"$r")")
done
st=$(stats)
eq "total running_now and max_running" "$(jq -c '[.total.running_now, .total.max_running, .total.queued_now]' <<<"$st")" "[6,6,6]"
eq "total max_running_by_user" "$(jq -c '.total.max_running_by_user' <<<"$st" | jq -cS .)" '{"alice":3,"bob":2,"carol":1}'
eq "total max_running_by_source" "$(jq -c '.total.max_running_by_source' <<<"$st" | jq -cS .)" \
	'{"src-alice":3,"src-bob":2,"src-carol":1}'
eq "address A by user" "$(jq -cS --arg a "${S_A#http://}" '.coordinators[$a].max_running_by_user' <<<"$st")" '{"alice":3,"bob":1}'
eq "address B by user" "$(jq -cS --arg a "${S_B#http://}" '.coordinators[$a].max_running_by_user' <<<"$st")" '{"bob":1,"carol":1}'
eq "/v1/cluster of A: 4 queued" "$(curl -sS "$S_A/v1/cluster" | jq -c '[.queuedQueries, .runningQueries]')" "[4,0]"
for n in "${ids[@]:0:3}"; do curl -s -X DELETE "$n" >/dev/null; done
st=$(stats)
eq "after 3 cancels: running 3, maxima kept" \
	"$(jq -c '[.total.running_now, .total.max_running, .total.max_running_by_user.alice]' <<<"$st")" "[3,6,3]"
curl -s -X POST "$S_B/v1/simulator/reset" >/dev/null
st=$(stats)
eq "reset: counters zero, maxima = current" \
	"$(jq -c '[.total.submitted, .total.canceled, .total.max_running, .total.running_now]' <<<"$st")" "[0,0,3,3]"
eq "reset: by user = current" "$(jq -cS '.total.max_running_by_user' <<<"$st")" '{"bob":2,"carol":1}'
for n in "${ids[@]:3}"; do curl -s -X DELETE "$n" >/dev/null; done
curl -s -X POST "$S_A/v1/simulator/reset" >/dev/null
eq "all ended, reset: empty maxima" "$(stats | jq -c '[.total.max_running, .total.max_running_by_user]')" '[0,{}]'

echo "== kill and revive"
r=$(post "$S_B" 'SELECT 1 /* sim: queue_ms=20000 */')
old_suffix=$(jq -r '.id[-5:]' <<<"$r")
exec 5<>"/dev/tcp/127.0.0.1/${S_B##*:}"
printf 'GET /v1/info HTTP/1.1\r\nHost: b\r\n\r\n' >&5
sleep 0.2
eq "kill B through A: 200" "$(status_of -X POST "$S_A/v1/simulator/kill?coordinator=${S_B#http://}")" 200
check "B refuses connections" bash -c "! curl -s -m 2 -o /dev/null '$S_B/v1/info'"
check "B's open connection was reset or closed" bash -c 'timeout 2 cat <&5 >/dev/null 2>&1; true'
exec 5<&-
st=$(stats)
eq "stats: B dead, its query lost, nothing running" \
	"$(jq -c --arg b "${S_B#http://}" '[.coordinators[$b].alive, .coordinators[$b].lost, .total.running_now]' <<<"$st")" \
	"[false,1,0]"
eq "A still serves" "$(status_of "$S_A/v1/info")" 200
eq "revive B through A" "$(status_of -X POST "$S_A/v1/simulator/revive?coordinator=127.0.0.1%3A${S_B##*:}")" 200
eq "B serves again" "$(status_of "$S_B/v1/info")" 200
eq "B forgot its queries" "$(status_of "$S_B/v1/query/$(jq -r .id <<<"$r")")" 404
r=$(post "$S_B" 'SELECT 1')
check "B has a new id suffix after the revive" test "$(jq -r '.id[-5:]' <<<"$r")" != "$old_suffix"
check "the two addresses have distinct suffixes" \
	test "$(jq -r '.id[-5:]' <<<"$r")" != "$(post "$S_A" 'SELECT 1' | jq -r '.id[-5:]')"
eq "kill a killed address again: 200" "$(status_of -X POST "$S_A/v1/simulator/kill?coordinator=${S_A#http://}")" 200
check "A is dead now" bash -c "! curl -s -m 2 -o /dev/null '$S_A/v1/info'"
eq "revive A through B" "$(status_of -X POST "$S_B/v1/simulator/revive?coordinator=${S_A#http://}")" 200
eq "kill of an unknown address: 400" "$(status_of -X POST "$S_A/v1/simulator/kill?coordinator=127.0.0.2:1")" 400

echo "== a 128 MB page, streamed"
r=$(post "$S_A" "SELECT 1 /* sim: rows=1 row_bytes=$BIG_BYTES */")
e0=$(curl -sS "$(jq -r .nextUri <<<"$r")" | jq -r .nextUri)
peak=0
(
	while sleep 0.05; do
		awk '/^VmRSS/ {print $2}' "/proc/$S_PID/status" 2>/dev/null
	done
) >"$TMP/rss" &
rss_pid=$!
# read slowly at first: a slow reader must not make the simulator buffer
curl -sS --limit-rate 20M -m 60 -o "$TMP/big" -D "$TMP/big.hdr" "$e0" &
curl_pid=$!
sleep 1.5
kill -0 "$curl_pid" 2>/dev/null && ok "the page is still being sent to a slow reader after 1.5 s" ||
	bad "the slow read ended too early"
wait "$curl_pid"
kill "$rss_pid" 2>/dev/null
wait "$rss_pid" 2>/dev/null
peak=$(sort -n "$TMP/rss" | tail -n 1)
size=$(stat -c %s "$TMP/big")
eq "Content-Length is the size received" "$(tr -d '\r' <"$TMP/big.hdr" | awk -F': ' 'tolower($1)=="content-length" {print $2}')" "$size"
check "the page is larger than 128 MiB" test "$size" -gt "$BIG_BYTES"
off=$(grep -abo '"data":\[\["' "$TMP/big" | head -n 1 | cut -d: -f1)
check "the data array is where it should be" test -n "$off"
sum=$(tail -c +$((off + 11)) "$TMP/big" | head -c "$BIG_BYTES" | sha256sum | cut -d' ' -f1)
eq "sha256 of the value (documented)" "$sum" "$BIG_SHA256"
want=$({ printf '0:'; yes "$ALPHA" | tr -d '\n'; } | head -c "$BIG_BYTES" | sha256sum | cut -d' ' -f1)
eq "sha256 of the value (computed from the definition)" "$sum" "$want"
eq "the value ends the row" "$(tail -c +$((off + 11 + BIG_BYTES)) "$TMP/big" | head -c 4)" '"]],'
check "the simulator's RSS stayed below 64 MiB (peak ${peak:-?} kB)" test "${peak:-999999999}" -lt "$RSS_LIMIT_KB"
rm -f "$TMP/big"

echo "== a client that stops reading a big page, then leaves"
r=$(post "$S_A" "SELECT 1 /* sim: rows=1 row_bytes=$BIG_BYTES */")
e0=$(curl -sS "$(jq -r .nextUri <<<"$r")" | jq -r .nextUri)
exec 6<>"/dev/tcp/127.0.0.1/${S_A##*:}"
printf 'GET %s HTTP/1.1\r\nHost: x\r\n\r\n' "${e0#"$S_A"}" >&6
sleep 1
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$S_PID/status")
check "RSS with a stalled reader stays small ($rss kB)" test "$rss" -lt "$RSS_LIMIT_KB"
exec 6<&-
eq "the simulator still answers" "$(status_of "$S_A/v1/info")" 200

echo "== pipelined requests on one connection"
exec 7<>"/dev/tcp/127.0.0.1/${S_A##*:}"
printf 'GET /v1/info HTTP/1.1\r\nHost: a\r\n\r\nPOST /v1/statement HTTP/1.1\r\nHost: pipe.example:81\r\nX-Trino-User: pipe\r\nContent-Length: 8\r\n\r\nSELECT 1GET /v1/cluster HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' >&7
timeout 5 cat <&7 >"$TMP/pipe"
exec 7<&-
eq "three answers, in order" "$(grep -ao 'HTTP/1.1 200' "$TMP/pipe" | wc -l)" 3
curl -s -X DELETE "$(tr -d '\r' <"$TMP/pipe" | grep -o '"nextUri":"[^"]*' | cut -d'"' -f4 | sed "s#http://pipe.example:81#$S_A#")" >/dev/null
check "order: info, statement, cluster" \
	bash -c "tr -d '\r' <'$TMP/pipe' | grep -o 'nodeVersion\|\"nextUri\":\"http://pipe.example:81/\|runningQueries' | tr '\n' ' ' | grep -qx 'nodeVersion \"nextUri\":\"http://pipe.example:81/ runningQueries '"

echo "== Host header and URIs"
r=$(post "$S_A" 'SELECT 1' -H 'Host: dispatcher.example:8080')
check "nextUri uses the Host header" grep -q '^http://dispatcher.example:8080/v1/statement/queued/' <<<"$(jq -r .nextUri <<<"$r")"
check "infoUri too" grep -q '^http://dispatcher.example:8080/ui/query.html?' <<<"$(jq -r .infoUri <<<"$r")"
n=$(jq -r .nextUri <<<"$r")
p=$(curl -sS -H 'Host: other.example' "${n/http:\/\/dispatcher.example:8080/$S_A}")
check "the next page follows that request's Host" grep -q '^http://other.example/' <<<"$(jq -r .nextUri <<<"$p")"
curl -s -X DELETE "${n/http:\/\/dispatcher.example:8080/$S_A}" >/dev/null
eq "X-Forwarded-For: 406 like a stock Trino" "$(status_of -H 'X-Forwarded-For: 1.2.3.4' "$S_A/v1/info")" 406

echo "== Presto headers"
follow "$S_A" 'USE hive.web' -H 'X-Presto-User: p'
n=$(jq -r .nextUri "$TMP/pages" | grep executing | tail -n 1)
curl -sS -D "$TMP/h" -o /dev/null "$n"
check "USE with X-Presto-*: X-Presto-Set-Catalog on the final page" grep -qi '^X-Presto-Set-Catalog: hive' "$TMP/h"
eq "updateType USE" "$(jq -r .updateType "$TMP/last")" USE
follow "$S_A" "SET SESSION query_max_run_time = '10m'"
n=$(jq -r .nextUri "$TMP/pages" | grep executing | tail -n 1)
curl -sS -D "$TMP/h" -o /dev/null "$n"
check "SET SESSION with X-Trino-*: X-Trino-Set-Session" grep -qi '^X-Trino-Set-Session: query_max_run_time=10m' "$TMP/h"

echo "== long polls"
r=$(post "$S_A" 'SELECT 1 /* sim: queue_ms=5000 */')
t=$(curl -sS -o /dev/null -w '%{time_total}' "$(jq -r .nextUri <<<"$r")")
check "a GET while queued waits about --long-poll-ms (200 ms): ${t}s" \
	awk -v t="$t" 'BEGIN { exit !(t >= 0.15 && t < 1.0) }'
r2=$(post "$S_A" 'SELECT 1 /* sim: run_ms=120 */')
n=$(curl -sS "$(jq -r .nextUri <<<"$r2")" | jq -r .nextUri)
t=$(curl -sS -o "$TMP/p" -w '%{time_total}' "$n")
check "a GET waits for run_ms to end and brings the data: ${t}s" \
	bash -c "awk -v t='$t' 'BEGIN { exit !(t >= 0.05 && t < 1.0) }' && jq -e .data '$TMP/p' >/dev/null"
curl -s -X DELETE "$S_A/v1/query/$(jq -r .id <<<"$r")" >/dev/null
curl -s -X DELETE "$S_A/v1/query/$(jq -r .id <<<"$r2")" >/dev/null

echo "== abandoned queries and the history bound"
start_sim T --client-timeout 1 --history 2 --long-poll-ms 50
curl -s -X POST "$T_A/v1/simulator/reset" >/dev/null
r=$(post "$T_A" 'SELECT 1 /* sim: queue_ms=100000 */')
sleep 1.6
eq "a query not polled for --client-timeout is abandoned" \
	"$(curl -sS "$T_A/v1/simulator/stats" | jq -c '[.total.abandoned, .total.running_now]')" "[1,0]"
eq "its next page: FAILED ABANDONED_QUERY" \
	"$(curl -sS "$(jq -r .nextUri <<<"$r")" | jq -r '[.stats.state, .error.errorName] | join(" ")')" "FAILED ABANDONED_QUERY"
old=$(jq -r .id <<<"$r")
for i in 1 2 3; do follow "$T_A" 'SELECT 1'; done
eq "after 3 more finished queries (--history 2) the oldest is forgotten" \
	"$(status_of "$T_A/v1/query/$old")" 404
eq "the newest is kept" "$(status_of "$T_A/v1/query/$(jq -r .id "$TMP/last")")" 200

echo "== admission store (--admission-store: the openLooKeng re-creation)"
STORE_PY=${QD_OLK_STORE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bench/olk_store.py}
if ! command -v python3 >/dev/null || [[ ! -r $STORE_PY ]]; then
	bad "python3 and $STORE_PY are needed for the admission store checks"
else
	# store_cmd LINE...: send lines to the store, print its answers
	store_cmd() {
		python3 - "$STORE_PORT" "$@" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
for line in sys.argv[2:]:
    s.sendall(line.encode() + b"\n")
    print(f.readline().decode().strip())
PY
	}
	for try in 1 2 3 4 5; do
		STORE_PORT=$((20000 + RANDOM % 30000))
		python3 "$STORE_PY" --listen "127.0.0.1:$STORE_PORT" --record-bytes 300 2>"$TMP/store.log" &
		STORE_PID=$!
		for i in $(seq 40); do store_cmd STATS >/dev/null 2>&1 && break; sleep 0.05; done
		store_cmd STATS >/dev/null 2>&1 && break
		kill "$STORE_PID" 2>/dev/null; wait "$STORE_PID" 2>/dev/null
	done
	PIDS+=("$STORE_PID")
	start_sim A --admission-store "127.0.0.1:$STORE_PORT" --admission-limit 2 \
		--admission-retry-ms 2 --admission-lock-wait-ms 300
	astats() { curl -sS "$A_A/v1/simulator/stats"; }
	for i in 1 2 3; do
		post "$A_A" 'SELECT 1 /* sim: run_ms=300 */' -H 'X-Trino-Source: etl' >"$TMP/aq$i"
	done
	eq "3 POSTs, limit 2: 2 run, 1 waits (queued, not running)" \
		"$(astats | jq -c '.total | [.running_now, .waiting_now, .queued_now, .max_running_by_source.etl]')" "[2,1,1,2]"
	# 3 submissions, then a retry every 2 ms while one waits
	eq "the store holds the 2 records" "$(store_cmd STATS | jq -c '[.records_now, .locks >= 3, .puts]')" "[2,true,2]"
	eq "a waiting query's page: QUEUED" \
		"$(curl -sS "$(jq -r .nextUri "$TMP/aq3")" | jq -r .stats.state)" QUEUED
	eq "/v1/cluster: 2 running, 1 queued" \
		"$(curl -sS "$A_A/v1/cluster" | jq -c '[.runningQueries, .queuedQueries]')" "[2,1]"
	post "$A_A" 'SELECT 1 /* sim: run_ms=300 */' -H 'X-Trino-Source: adhoc' >"$TMP/aq4"
	eq "another source (group) is admitted while etl is full" \
		"$(astats | jq -c '[.total.running_now, .total.waiting_now, .total.max_running_by_source.adhoc]')" "[3,1,1]"
	r=$(post "$A_A" 'SELECT 1' -H 'X-Trino-Source: etl')
	curl -s -X DELETE "$(jq -r .nextUri <<<"$r")" >/dev/null
	eq "a waiting query canceled: no longer waiting, counted canceled" \
		"$(astats | jq -c '[.total.waiting_now, .total.canceled]')" "[1,1]"
	# q1 ends: its record goes, and the waiting q3 is admitted at the next pass
	next=$(jq -r .nextUri "$TMP/aq1")
	while [[ -n $next ]]; do next=$(curl -sS "$next" | jq -r '.nextUri // empty'); done
	next=$(jq -r .nextUri "$TMP/aq3") state=QUEUED n=0
	while [[ $state == QUEUED && $n -lt 50 ]]; do
		page=$(curl -sS "$next")
		state=$(jq -r .stats.state <<<"$page")
		next=$(jq -r '.nextUri // empty' <<<"$page")
		n=$((n + 1))
	done
	eq "after a query of etl ends the waiting one runs" "$state" RUNNING
	eq "etl never ran more than its limit; nothing waits" \
		"$(astats | jq -c '[.total.max_running_by_source.etl, .total.waiting_now]')" "[2,0]"
	eq "the finished query's record left the store" \
		"$(store_cmd STATS | jq -c '[.records_now, .removes]')" "[3,1]"
	check "submitted = finished + failed + canceled + abandoned + lost + running + waiting" \
		bash -c "curl -sS '$A_A/v1/simulator/stats' | jq -e '.total | .submitted == .finished + .failed + .canceled + .abandoned + .lost + .running_now + .waiting_now' >/dev/null"
	check "the simulator read every running record under the lock" \
		bash -c "curl -sS '$A_A/v1/simulator/stats' | jq -e '.store | .passes >= 5 and .records_read >= 4 and .bytes_read == .records_read * 300 and .errors == 0' >/dev/null"
	# someone else holds the lock: the submission's tryLock (300 ms) fails, the
	# query waits; once the lock is free a later pass admits it
	python3 - "$STORE_PORT" "$TMP/locked" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"LOCK 1000\n")
s.recv(16)
open(sys.argv[2], "w").close()
time.sleep(0.8)
s.sendall(b"UNLOCK\n")
s.recv(16)
PY
	holder=$!
	for i in $(seq 40); do [[ -e $TMP/locked ]] && break; sleep 0.05; done
	t=$(curl -sS -o "$TMP/aq5" -w '%{time_total}' -H 'X-Trino-Source: bi' \
		--data-binary 'SELECT 1' "$A_A/v1/statement")
	check "a POST while the lock is held waits the tryLock time (${t}s)" \
		awk -v t="$t" 'BEGIN { exit !(t >= 0.25 && t < 0.8) }'
	# (the retry passes that follow block the simulator too until the lock is free)
	eq "the lock timed out" "$(astats | jq -c '.store.lock_timeouts >= 1')" true
	wait "$holder"
	next=$(jq -r .nextUri "$TMP/aq5") state=QUEUED n=0
	while [[ $state == QUEUED && $n -lt 50 ]]; do
		page=$(curl -sS "$next")
		state=$(jq -r .stats.state <<<"$page")
		next=$(jq -r '.nextUri // empty' <<<"$page")
		n=$((n + 1))
	done
	check "once the lock is free it is admitted (state $state)" test "$state" = RUNNING -o "$state" = FINISHED
	eq "the store saw the lock wait" "$(store_cmd STATS | jq '.lock_waits >= 1')" true
	kill -TERM "$A_PID"
	wait "$A_PID"
	eq "simulator A exits 0 on SIGTERM" "$?" 0
	check "simulator A logged no sanitizer report or store error" \
		bash -c "! grep -Eq 'Sanitizer|runtime error|admission store' '$TMP/A.log'"
	kill "$STORE_PID" 2>/dev/null
	wait "$STORE_PID" 2>/dev/null
fi

echo "== options"
check "--help" bash -c "'$SIM_BIN' --help | grep -q -- --client-timeout"
check "a bad option exits 2" bash -c "'$SIM_BIN' --listen 127.0.0.1:1 --long-poll-ms x 2>/dev/null; test \$? -eq 2"

echo "== clean stop"
for name in S T; do
	pid_var=${name}_PID
	pid=${!pid_var}
	kill -TERM "$pid"
	wait "$pid"
	eq "simulator $name exits 0 on SIGTERM" "$?" 0
	check "simulator $name logged no sanitizer report" \
		bash -c "! grep -Eq 'Sanitizer|runtime error' '$TMP/$name.log'"
done
PIDS=()

echo
if ((FAILS > 0)); then
	echo "FAIL: $FAILS of $CHECKS checks failed"
	echo "--- simulator log (tail)"
	tail -n 20 "$TMP/S.log"
	exit 1
fi
echo "PASS: $CHECKS checks"
exit 0
