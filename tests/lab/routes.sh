#!/usr/bin/env bash
# routes: routes everywhere. Two dispatcher peers that share no state (--no-peer-sync:
# no shared limits either, so each peer's group limits are the file's; 2 workers each,
# 2 simulated coordinators, admission with tests/lab/admission_groups.json). Queries are
# submitted through VIP 1 (peer 1) and followed through VIP 2 (peer 2), as after a VIP
# failover (tests/clients/routes_client.py, step by step):
#   - peer 2 discovers every query id on the coordinators (found = N), adopts the routes
#     and counts the queries in their group (global.etl) while they run;
#   - the latency of a discovered request against a known route is printed;
#   - every query returns all its rows through VIP 2; peer 2's group drains to 0;
#   - DELETE of a nextUri through VIP 2 cancels the query on its coordinator;
#   - an id no coordinator knows is 404 after asking; placeholder ids are never asked;
#   - peer 1, which saw no request after the submissions, verifies its quiet routes
#     (route.verify_after_s=2) and frees their slots when the queries end, long before
#     route.idle_timeout_s.
# Then the same with discovery off on peer 2 (route.discovery_max=0): the nextUri of a
# query peer 2 never saw is 404 at once. Then one dispatcher with route.max 256 and
# route.linger_s 60 runs 600 queries: ended routes make room under pressure, none is
# refused. Lab down finds no sanitizer report.
# Root only (exit 77 otherwise).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GROUPS_FILE=$QD_SOURCE/tests/lab/admission_groups.json
CLIENT=$QD_SOURCE/tests/clients/routes_client.py

require_lab
require_tools jq curl python3

lab_cleanup_traps
TMP=$(mktemp -d)

step "lab up: 2 peers, 2 coordinators, 2 workers each, resource groups"
"$LAB" down >/dev/null
"$LAB" up --peers 2 --no-peer-sync --coordinators 2 --workers 2 \
	--resource-groups "$GROUPS_FILE" --set route.verify_after_s=2 >/dev/null

step "submit through VIP 1, follow through VIP 2"
lab_exec python3 "$CLIENT" --queries 4 || fail "routes everywhere"
# shellcheck disable=SC2016 # expands in the lab
lab_exec sh -c 'qdctl --socket "${QD_CTL_SOCKETS#*,}" status' |
	grep -E '^(routes|        adopted|discovery|verify)' || fail "qdctl status shows no discovery"

step "discovery off on the peers: a nextUri peer 2 never saw is 404 at once"
"$LAB" down >/dev/null
"$LAB" up --peers 2 --no-peer-sync --coordinators 2 --set route.discovery_max=0 >/dev/null
# shellcheck disable=SC2016 # expands in the lab
out=$(lab_exec sh -c '
	v1=${QD_VIPS%%,*} v2=${QD_VIPS#*,} port=${QD_URL##*:}
	next=$(curl -sS --data-binary "SELECT 1 /* sim: run_ms=3000 */" -H "X-Trino-User: u" \
		"http://$v1:$port/v1/statement" | jq -r .nextUri)
	curl -s -o /dev/null -w "%{http_code}" "http://$v2:$port/${next#http://*/}" | sed "s/^/code /"
	curl -s -o /dev/null -X DELETE "$next"')
[[ $out == "code 404" ]] || fail "without discovery: $out"
echo "ok   discovery off: 404"

step "a full route table sheds lingering routes: route.max 256, linger 60 s, 600 queries"
"$LAB" up --coordinators 1 --set route.max=256 --set route.linger_s=60 >/dev/null
lab_exec node "$QD_SOURCE/tests/clients/run_queries.mjs" --json --queries 600 --concurrency 4 \
	--rows 1 --page-rows 1 >"$TMP/pressure.json" 2>"$TMP/pressure.err" ||
	{ tail -5 "$TMP/pressure.err" >&2; fail "queries failed with a small route table: $(jq -c '{ok, failed, errors: .errors[:2]}' "$TMP/pressure.json")"; }
pressure=$("$QD_BUILD/control/qdctl" --json status | jq '.totals.proxy | {route_pressure_sweeps, routes_full, routes_created}')
echo "ok   600 queries through 256 route slots: $pressure"
[[ $(jq .route_pressure_sweeps <<<"$pressure") -gt 0 ]] || fail "no sweep under pressure"
[[ $(jq .routes_full <<<"$pressure") -eq 0 ]] || fail "routes refused: $pressure"

lab_down_checked
echo "PASS"
