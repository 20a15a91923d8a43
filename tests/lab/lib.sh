# shellcheck shell=bash
# tests/lab/lib.sh: what the lab tests (tests/lab/*.sh) share. Sourced, after
# `set -euo pipefail`, with
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Exit codes of a lab test: 0 pass, 1 fail, 77 skip.
#
# Variables it sets (each script may add its own after sourcing):
#   QD_SOURCE, QD_BUILD  the source and build trees (QD_BUILD exported; both
#                        may come from the environment)
#   LAB                  scripts/lab;  LAB_DIR  its state directory
#   TMP                  the test's scratch directory once the script sets it
#                        (mktemp -d); the cleanup removes it
#
# Functions:
#   skip MSG...          print "SKIP: MSG" and exit 77
#   fail MSG...          print "FAIL: MSG" on stderr and exit 1
#   step MSG...          print "== MSG", the heading of a step
#   require_lab          skip unless root and `ip netns` works
#   require_tools T...   fail unless every tool T is installed
#   lab_cleanup_traps    install the EXIT trap (lab_cleanup) and exit 130 on
#                        INT, 143 on TERM
#   lab_cleanup          the EXIT trap: calls cleanup_hook if the script
#                        defines one (to stop its background processes); on
#                        failure (exit not 0 or 77) prints `lab status` and
#                        the tail of every log of the lab and of $TMP; unless
#                        passing, takes the lab down; removes $TMP
#   kill_wait PID        kill PID and reap it, ignoring errors
#   retry SECONDS CMD... run CMD every 0.5 s until it succeeds or time runs out
#   lab_exec CMD...      run CMD in the lab's client namespace (`lab exec`)
#   lab_down_checked     step "lab down": take the lab down, fail if that
#                        fails or a lab process printed a sanitizer report
#   snapshot NAME        qdctl --json of peer 1 into $TMP/NAME.json and STATUS
#   delta FROM TO PATH   how much the number at jq PATH grew between two
#                        snapshots
#   dispatcher_drained   succeeds when qdispatchd holds no TCP connection:
#                        the jq expression $TCP_OPEN_JQ (default
#                        .totals.tcp.connections) of a snapshot "now" is 0;
#                        OPEN_NOW is what it was
#   pool_back            succeeds when the mbuf pool's .pool.in_use (POOL_NOW)
#                        of a snapshot "now" is at most POOL_IDLE
#   pool_at_rest         step "qdispatchd at rest": waits up to 10 s for no
#                        connection, then sets POOL_IDLE to .pool.in_use of
#                        the snapshot "now" (fails the test otherwise)
#   echo_target          the echo service under test, HOST:PORT, in TARGET
#                        (needs PEER, KERNEL_ECHO_PORT, COORD_NS, QDTCPLOAD;
#                        sets SERVER_PID for the kernel peer)
#   kernel_echo_listening  succeeds when the kernel echo server (SERVER_PID)
#                        listens; fails the test when it exited
#   proxy_quiet          succeeds when the query proxy holds no client connection
#                        and every backend connection is idle in its pool
#                        (QUIET_NOW: the numbers); the idle backends stay open
#                        by design, so this replaces dispatcher_drained there
#   check_echo_drained   the checks after an echo run: no client connection
#                        to TARGET left, and qdispatchd up and drained (or,
#                        with PEER=kernel, the kernel echo server alive)

QD_SOURCE=${QD_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
QD_BUILD=${QD_BUILD:-$QD_SOURCE/build}
export QD_BUILD
LAB=$QD_SOURCE/scripts/lab
LAB_DIR=/run/qdispatch/lab
TMP=""

skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
step() { echo "== $*"; }

require_lab() {
	[[ $(id -u) -eq 0 ]] || skip "needs root"
	if ! { command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1; }; then
		skip "ip netns unavailable"
	fi
}

require_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || fail "$tool not installed (run scripts/deps)"
	done
}

kill_wait() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

lab_cleanup() {
	local rc=$? f
	trap - EXIT
	if declare -F cleanup_hook >/dev/null; then
		cleanup_hook || true
	fi
	if [[ $rc -ne 0 && $rc -ne 77 && -d $LAB_DIR ]]; then
		echo "--- lab state at failure ---" >&2
		"$LAB" status >&2 || true
		for f in "$LAB_DIR"/*.log ${TMP:+"$TMP"/*.log}; do
			[[ -s $f ]] || continue
			echo "--- tail of $f ---" >&2
			tail -n 40 "$f" >&2
		done
	fi
	# A passing run took the lab down itself; the namespaces take any
	# firewall rules with them.
	[[ $rc -eq 0 ]] || "$LAB" down --timeout 10 >&2 || true
	[[ -z $TMP ]] || rm -rf -- "$TMP"
	exit "$rc"
}

lab_cleanup_traps() {
	trap lab_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

retry() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[[ $SECONDS -lt $deadline ]] || return 1
		sleep 0.5
	done
}

lab_exec() { "$LAB" exec -- "$@"; }

lab_down_checked() {
	local down_out
	step "lab down"
	down_out=$("$LAB" down 2>&1) || {
		echo "$down_out"
		fail "lab down failed"
	}
	echo "$down_out"
	if grep -q "sanitizer report" <<<"$down_out"; then
		fail "a lab process printed a sanitizer report"
	fi
}

snapshot() {
	STATUS=$(lab_exec qdctl --json) || return 1
	printf '%s\n' "$STATUS" >"$TMP/$1.json"
}

delta() {
	jq -n --slurpfile a "$TMP/$1.json" --slurpfile b "$TMP/$2.json" \
		"(\$b[0] | $3) - (\$a[0] | $3)"
}

dispatcher_drained() {
	snapshot now || return 1
	OPEN_NOW=$(jq -r "${TCP_OPEN_JQ:-.totals.tcp.connections} // \"missing\"" <<<"$STATUS")
	[[ $OPEN_NOW == 0 ]]
}

pool_back() {
	snapshot now || return 1
	POOL_NOW=$(jq -r '.pool.in_use // "missing"' <<<"$STATUS")
	[[ $POOL_NOW != missing && $POOL_NOW -le $POOL_IDLE ]]
}

pool_at_rest() {
	step "qdispatchd at rest: no connection, the pool's idle level"
	OPEN_NOW=""
	retry 10 dispatcher_drained || fail "qdispatchd holds $OPEN_NOW connections before the test"
	POOL_IDLE=$(jq -r '.pool.in_use // "missing"' "$TMP/now.json")
	[[ $POOL_IDLE =~ ^[0-9]+$ ]] || fail "qdctl --json has no .pool.in_use (got '$POOL_IDLE')"
}

# For qdispatchd the lab exports the echo service; for the kernel, start
# qdtcpload --serve on the first coordinator address (the lab takes the server
# down with its namespace).
echo_target() {
	if [[ $PEER == qdispatchd ]]; then
		# shellcheck disable=SC2016 # $QD_ECHO expands in the lab
		TARGET=$(lab_exec sh -c 'echo "${QD_ECHO:-}"')
		[[ -n $TARGET ]] || fail "scripts/lab exec does not export QD_ECHO: the lab must set" \
			"service.echo_port = $KERNEL_ECHO_PORT in the peers' configs and export" \
			"QD_ECHO=<first VIP>:$KERNEL_ECHO_PORT"
		return 0
	fi
	local coord
	# shellcheck disable=SC2016 # $QD_COORDINATORS expands in the lab
	coord=$(lab_exec sh -c 'echo "${QD_COORDINATORS%%,*}"')
	coord=${coord#http://}
	TARGET=${coord%:*}:$KERNEL_ECHO_PORT
	ip netns exec "$COORD_NS" "$QDTCPLOAD" --serve "$TARGET" >"$TMP/kernel-echo.log" 2>&1 &
	SERVER_PID=$!
	retry 10 kernel_echo_listening || fail "the kernel echo server does not listen on $TARGET"
}

kernel_echo_listening() {
	kill -0 "$SERVER_PID" 2>/dev/null || fail "the kernel echo server exited: $(cat "$TMP/kernel-echo.log")"
	[[ -n $(ip netns exec "$COORD_NS" ss -Hltn "sport = :$KERNEL_ECHO_PORT") ]]
}

check_echo_drained() {
	local left
	step "no connection left open on the client side"
	left=$(lab_exec ss -Htn state established dst "${TARGET%:*}" | wc -l)
	[[ $left -eq 0 ]] || fail "$left client connections to $TARGET still established"

	if [[ $PEER == qdispatchd ]]; then
		step "qdispatchd is up and holds no connection any more"
		"$LAB" status >/dev/null || fail "the lab is degraded after the run (did qdispatchd exit?)"
		OPEN_NOW=""
		retry 30 dispatcher_drained ||
			fail "qdctl --json $TCP_OPEN_JQ is '$OPEN_NOW' 30 s after the run, expected 0" \
				"(adjust TCP_OPEN_JQ in $0 if the schema differs)"
	else
		kernel_echo_listening || fail "the kernel echo server died"
	fi
}

# qdctl --json of peer 1: the proxy's connection gauges (tests may override the paths).
PROXY_CLIENTS_JQ=${PROXY_CLIENTS_JQ:-'.totals.proxy.clients'}
PROXY_BACKENDS_JQ=${PROXY_BACKENDS_JQ:-'.totals.proxy.backends'}
PROXY_BACKENDS_IDLE_JQ=${PROXY_BACKENDS_IDLE_JQ:-'.totals.proxy.backends_idle'}
# proxy_quiet: no client connection left and every backend connection idle in
# its coordinator's keep-alive pool (QUIET_NOW: the numbers). Not "no TCP
# connection": the idle backends stay open by design.
proxy_quiet() {
	snapshot now || return 1
	QUIET_NOW=$(jq -c "{clients: ($PROXY_CLIENTS_JQ), backends: ($PROXY_BACKENDS_JQ),
		backends_idle: ($PROXY_BACKENDS_IDLE_JQ), tcp: (.totals.tcp.connections)}" <<<"$STATUS")
	jq -e '.clients == 0 and .backends == .backends_idle' <<<"$QUIET_NOW" >/dev/null
}
