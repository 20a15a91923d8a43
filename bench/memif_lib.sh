# shellcheck shell=bash
# bench/memif_lib.sh: what bench/memif.sh and bench/memif_proxy.sh share: qdispatchd as
# the net_memif server, started from $work/server.conf and stopped again. Sourced after
# the caller has set qdispatchd, qdctl, work and sock.
#   memif_server_start LABEL PREFIX   start it (EAL --file-prefix PREFIX), wait until
#                                     qdctl answers on $sock; exit 1 (LABEL: why) if not
#   stop_server                       SIGTERM, then its exit status (0 for a clean stop;
#                                     a sanitizer's report makes it non-zero)
server_pid=""

stop_server() {
	[[ -n $server_pid ]] || return 0
	local pid=$server_pid rc=0
	server_pid=""
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || rc=$?
	return $rc
}

memif_server_start() {
	local label=$1 prefix=$2 i
	"$qdispatchd" -c "$work/server.conf" -- --file-prefix="$prefix" >"$work/server.log" 2>&1 &
	server_pid=$!
	for ((i = 0; i < 100; i++)); do
		"$qdctl" -s "$sock" status >/dev/null 2>&1 && return 0
		kill -0 "$server_pid" 2>/dev/null ||
			{ cat "$work/server.log" >&2; echo "$label: qdispatchd exited" >&2; exit 1; }
		sleep 0.1
	done
	"$qdctl" -s "$sock" status >/dev/null 2>&1 ||
		{ cat "$work/server.log" >&2; echo "$label: qdispatchd did not come up" >&2; exit 1; }
}
