#!/usr/bin/env bash
# proxy_http: the HTTP/1.1 edges of qdispatchd's query proxy, with raw sockets
# from the client namespace (tests/clients/http_cases.py writes the bytes and
# parses the answers itself). Against QD_URL with 2 simulated coordinators:
#   health            GET /v1/dispatcher/health -> 200 JSON
#   keepalive         a whole query (12 pages), its info and a HEAD on one
#                     connection
#   pipeline          5 GETs of /v1/query/<id> of 4 queries (different
#                     coordinators) in one write, answered in order; then a
#                     POST and a GET in one write
#   chunked-request   POST /v1/statement with a chunked body split inside the
#                     sim directive (one write, then several), the query returns
#                     exactly the rows the directive asked for
#   chunked-response  a 3 MB page arrives whole, every row checked, its framing
#                     printed (qdcoordsim answers with Content-Length, so a
#                     chunked answer from a coordinator is not exercised yet)
#   absolute-delete   DELETE http://VIP:8080/v1/statement/queued/... -> 204,
#                     the query ends USER_CANCELED
#   header-too-large  a 17 KiB head and a head of 101 fields -> 431; 99
#                     fields in 15 KiB -> 200
#   body-too-large    Content-Length over http.max_body_bytes -> 413 before
#                     the body; a chunked body over it -> 413; at it -> served
#   unknown-id        ids no coordinator has -> 404 with a JSON error object
#   slow-header       half a head, then silence -> 408 after
#                     http.header_timeout_ms (2 s here), then close
#   disconnect        clients that RST or FIN in the middle of a 64 MB page;
#                     then a query runs, qdispatchd holds no client connection,
#                     every backend is idle in its keep-alive pool, and its
#                     mbuf pool is back at the idle level
#   big-page          a 128 MiB page read at 32 MiB/s through the proxy is
#                     byte-exact (sha256 equal to the same page re-fetched from
#                     its coordinator, the value equal to the simulator's)
#                     while the pool's in_use grows by at most
#                     QD_PROXY_POOL_GROWTH_MAX mbufs (default 8192)
# and lab down finds no sanitizer report. Root only (exit 77 otherwise).
#
# Environment (all optional):
#   QD_BUILD, QD_SOURCE   as for every lab test
#   QD_PROXY_TARGET       dispatcher (default), or coordinators: the same cases
#                         that apply to any Trino endpoint (not health, the
#                         limits, nor the dispatcher's JSON 404) against the
#                         first coordinator directly, which proves this test and
#                         the simulator on their own
#   QD_PROXY_CASES        the cases to run (default: all that apply)
#   QD_PROXY_POOL_GROWTH_MAX  see big-page
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HTTP_CASES=$QD_SOURCE/tests/clients/http_cases.py
TARGET_MODE=${QD_PROXY_TARGET:-dispatcher}
POOL_GROWTH_MAX=${QD_PROXY_POOL_GROWTH_MAX:-8192}
HEADER_TIMEOUT_MS=2000
MAX_BODY_BYTES=32768 # below qdcoordsim's --request-max (64 KiB): a body at the limit reaches it
SAMPLER_PID=""

require_lab
require_tools jq python3 curl
[[ $TARGET_MODE == dispatcher || $TARGET_MODE == coordinators ]] ||
	fail "QD_PROXY_TARGET must be dispatcher or coordinators"
[[ $POOL_GROWTH_MAX =~ ^[0-9]+$ ]] || fail "QD_PROXY_POOL_GROWTH_MAX must be a number"

if [[ $TARGET_MODE == dispatcher ]]; then
	GENERAL_CASES="health keepalive pipeline chunked-request chunked-response absolute-delete
		header-too-large body-too-large unknown-id slow-header"
else
	GENERAL_CASES="keepalive pipeline chunked-request chunked-response absolute-delete unknown-id"
fi
CASES=$(tr -s '[:space:]' ' ' <<<"${QD_PROXY_CASES:-$GENERAL_CASES disconnect big-page}")

# The proxy's limits, set short so the test is quick; the keys must exist.
lab_args=(--coordinators 2)
if [[ $TARGET_MODE == dispatcher ]]; then
	for key in http.header_timeout_ms http.max_body_bytes; do
		grep -qF "\"$key\"" "$QD_SOURCE/lib/config.c" ||
			fail "qdispatchd has no config key $key (lib/config.c), the proxy limit this test sets"
	done
	lab_args+=(--set "http.header_timeout_ms=$HEADER_TIMEOUT_MS" --set "http.max_body_bytes=$MAX_BODY_BYTES")
fi

cleanup_hook() { [[ -z $SAMPLER_PID ]] || kill_wait "$SAMPLER_PID"; }
lab_cleanup_traps
TMP=$(mktemp -d)

step "lab up ${lab_args[*]}"
"$LAB" up "${lab_args[@]}"
QD_URL=$(lab_exec sh -c 'echo "$QD_URL"')
COORDINATORS=$(lab_exec sh -c 'echo "$QD_COORDINATORS"')
if [[ $TARGET_MODE == dispatcher ]]; then
	SERVER=$QD_URL
else
	SERVER=${COORDINATORS%%,*}
fi
echo "server under test $SERVER, coordinators $COORDINATORS"

# http_cases CASE...: run cases from the client namespace; their lines on stdout.
http_cases() {
	local extra=()
	[[ $TARGET_MODE == dispatcher ]] || extra+=(--no-json-errors)
	lab_exec timeout 900 python3 "$HTTP_CASES" --server "$SERVER" --coordinators "$COORDINATORS" \
		--header-timeout-ms "$HEADER_TIMEOUT_MS" --max-body-bytes "$MAX_BODY_BYTES" \
		"${extra[@]}" "$@"
}

wants() { [[ " $CASES " == *" $1 "* ]]; }

if [[ $TARGET_MODE == dispatcher ]]; then
	pool_at_rest
fi

failed=()
general=()
for c in $GENERAL_CASES; do
	wants "$c" && general+=("$c")
done
if [[ ${#general[@]} -gt 0 ]]; then
	step "HTTP cases: ${general[*]}"
	http_cases "${general[@]}" | tee "$TMP/general.out" || true
	mapfile -t more < <(sed -n 's/^FAIL \([a-z-]*\):.*/\1/p' "$TMP/general.out")
	failed+=("${more[@]}")
	[[ $(grep -c '^ok ' "$TMP/general.out") -eq $((${#general[@]} - ${#more[@]})) ]] ||
		fail "http_cases.py did not report every case: $(cat "$TMP/general.out")"
fi

# after_drop WHAT: qdispatchd alive, no connection, pool back at rest.
after_drop() {
	[[ $TARGET_MODE == dispatcher ]] || return 0
	step "after $1: qdispatchd up, no client connection, backends idle, the pool back at its idle level"
	"$LAB" status >/dev/null || fail "the lab is degraded after $1 (did qdispatchd exit?)"
	QUIET_NOW=""
	retry 30 proxy_quiet || fail "qdispatchd's proxy is not quiet 30 s after $1: $QUIET_NOW"
	retry 10 pool_back || fail "mbuf pool in_use is $POOL_NOW 10 s after $1, $POOL_IDLE before"
}

if wants disconnect; then
	step "HTTP case: disconnect"
	if http_cases disconnect | tee "$TMP/disconnect.out" && grep -q '^ok disconnect' "$TMP/disconnect.out"; then
		[[ $TARGET_MODE != dispatcher ]] || { http_cases health >/dev/null || fail "health fails after the disconnects"; }
		after_drop "the clients that dropped a large page"
	else
		failed+=(disconnect)
	fi
fi

# sample_pool: .pool.in_use of peer 1 every 0.2 s into $TMP/pool.samples.
sample_pool() {
	while :; do
		lab_exec qdctl --json 2>/dev/null | jq -r '.pool.in_use // empty' >>"$TMP/pool.samples" || true
		sleep 0.2
	done
}

if wants big-page; then
	step "HTTP case: big-page (128 MiB read at 32 MiB/s)"
	if [[ $TARGET_MODE == dispatcher ]]; then
		: >"$TMP/pool.samples"
		sample_pool &
		SAMPLER_PID=$!
	fi
	rc=0
	http_cases big-page | tee "$TMP/big.out" || rc=$?
	grep -q '^ok big-page' "$TMP/big.out" || failed+=(big-page)
	if [[ $TARGET_MODE == dispatcher ]]; then
		kill_wait "$SAMPLER_PID"
		SAMPLER_PID=""
		peak=$(sort -n "$TMP/pool.samples" | tail -n 1)
		samples=$(wc -l <"$TMP/pool.samples")
		echo "mbuf pool in_use: idle $POOL_IDLE, peak ${peak:-none} over $samples samples"
		[[ $samples -ge 5 && -n $peak ]] || fail "too few pool samples ($samples) during the big page"
		[[ $((peak - POOL_IDLE)) -le $POOL_GROWTH_MAX ]] ||
			fail "the mbuf pool grew by $((peak - POOL_IDLE)) (peak $peak, idle $POOL_IDLE) during" \
				"the 128 MiB page, more than $POOL_GROWTH_MAX: the proxy buffers instead of" \
				"pushing back"
		[[ $rc -eq 0 ]] && after_drop "the big page"
	fi
fi

if [[ ${#failed[@]} -gt 0 ]]; then
	fail "HTTP cases failed: ${failed[*]} (the lines starting FAIL above say why)"
fi

lab_down_checked
echo "PASS"
