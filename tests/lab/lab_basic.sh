#!/usr/bin/env bash
# lab_basic: lab up -> the VIP answers ARP and ping from the client namespace
# -> qdctl counts the packets and resolved the coordinators -> --check refuses
# bad configs with file:line -> lab down leaves no namespace, interface,
# process or state behind. Root only (exit 77 otherwise).
# shellcheck disable=SC2016 # '$QD_*' expand in the lab
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
QDISPATCHD=$QD_BUILD/dataplane/qdispatchd

require_lab
require_tools jq arping ping ethtool ss

lab_cleanup_traps

step "lab up"
"$LAB" up
VIP=10.213.0.101
PORT_IP=10.213.0.11
url=$(lab_exec sh -c 'echo "$QD_URL"')
[[ $url == "http://$VIP:8080" ]] || fail "QD_URL is '$url', expected http://$VIP:8080"
client_if=$(lab_exec sh -c 'echo "$QD_CLIENT_IF"')
coordinators=$(lab_exec sh -c 'echo "$QD_COORDINATORS"')
[[ -n $coordinators ]] || fail "QD_COORDINATORS is empty"
"$LAB" status >/dev/null || fail "lab status does not report the lab up"

step "lab up again is a no-op"
pid_before=$(cat "$LAB_DIR/peer1.pid")
"$LAB" up >/dev/null
[[ $(cat "$LAB_DIR/peer1.pid") == "$pid_before" ]] || fail "a second 'lab up' restarted peer 1"

step "the coordinator placeholder answers from the client namespace"
coord_hostport=${coordinators%%,*}
coord_hostport=${coord_hostport#http://}
# shellcheck disable=SC2016
info=$(lab_exec timeout 10 bash -c '
	exec 3<>"/dev/tcp/${1%:*}/${1#*:}"
	printf "GET /v1/info HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$1" >&3
	cat <&3' _ "$coord_hostport")
grep -q '"coordinator":true' <<<"$info" || fail "GET /v1/info from $coord_hostport: $info"

step "arping $VIP from the client"
if arping -V 2>&1 | grep -qi iputils; then
	arping_if=-I
else
	arping_if=-i # Thomas Habets' arping
fi
lab_exec timeout 20 arping -c 2 -w 10 "$arping_if" "$client_if" "$VIP" ||
	fail "no ARP reply from $VIP"

step "ping the VIP and the port address"
lab_exec ping -c 3 -i 0.2 -W 2 "$VIP" || fail "ping $VIP"
lab_exec ping -c 3 -i 0.2 -W 2 "$PORT_IP" || fail "ping $PORT_IP"

step "the client's neighbour table holds the VIP's MAC"
status=$(lab_exec qdctl --json) || fail "qdctl --json failed"
mac=$(jq -r '.port.mac // empty' <<<"$status" | tr 'A-F' 'a-f')
[[ $mac =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || fail "qdctl --json .port.mac is '$mac'"
neigh=$(lab_exec ip neigh show "$VIP" dev "$client_if")
echo "$neigh"
grep -qi "lladdr $mac" <<<"$neigh" || fail "ip neigh has no $VIP lladdr $mac: '$neigh'"

step "qdctl --json counts the packets"
counters_ok() {
	status=$(lab_exec qdctl --json) || return 1
	jq -e '.totals.arp_replies_out >= 1 and .totals.icmp_echo_out >= 3 and
		.totals.icmp_echo_in >= 3 and .totals.rx_packets >= 6 and
		.totals.tx_packets >= 4 and .port.rx_packets >= 6 and
		any(.vips[]; .address == "10.213.0.101" and .state == "active")' <<<"$status" >/dev/null
}
if ! retry 10 counters_ok; then
	echo "$status" >&2
	fail "qdctl --json counters do not show the ARP and ICMP exchange"
fi
jq -c '.totals' <<<"$status"

step "qdctl --json neigh resolved every coordinator"
neigh_ok() {
	local entries ip
	entries=$(lab_exec qdctl --json neigh) || return 1
	for ip in $(tr ',' '\n' <<<"$coordinators" | sed -e 's|^http://||' -e 's|:.*||'); do
		jq -e --arg ip "$ip" \
			'any(.entries[]; .ip == $ip and .state == "reachable")' <<<"$entries" \
			>/dev/null || return 1
	done
}
if ! retry 15 neigh_ok; then
	lab_exec qdctl --json neigh >&2 || true
	fail "not every coordinator ($coordinators) is reachable in qdctl neigh"
fi

step "qdctl human output"
lab_exec qdctl >/dev/null || fail "qdctl (human) failed"

step "qdispatchd --check refuses bad configs with file:line"
TMP=$(mktemp -d)
"$QDISPATCHD" -c "$LAB_DIR/peer1.conf" --check || fail "--check refuses the lab's own config"
check_refuses() {
	local name=$1 line=$2 file=$TMP/$1.conf out rc=0
	cp "$LAB_DIR/peer1.conf" "$file"
	echo "$line" >>"$file"
	local lineno
	lineno=$(wc -l <"$file")
	out=$("$QDISPATCHD" -c "$file" --check 2>&1) || rc=$?
	echo "$name: exit $rc: $out"
	[[ $rc -eq 1 ]] || fail "$name: --check exited $rc, expected 1"
	grep -q "$file:$lineno:" <<<"$out" || fail "$name: no '$file:$lineno:' in '$out'"
}
check_refuses unknown_key "no.such.key = 1"
check_refuses bad_value "port.mtu = 100000"

lab_down_checked
left=$(ip netns list | awk '{print $1}' | grep -E '^qd-' || true)
[[ -z $left ]] || fail "namespaces left: $left"
left=$(ip -o link show | awk -F': ' '{print $2}' | grep -E '^qd-' || true)
[[ -z $left ]] || fail "interfaces left in the root namespace: $left"
# Zombies waiting for init to reap them do not count.
left=$(ps -eo stat=,pid=,comm= | awk '$1 !~ /^Z/ && ($3 == "qdispatchd" || $3 == "qdcoordsim")')
[[ -z $left ]] || fail "processes left: $left"
[[ ! -e $LAB_DIR ]] || fail "$LAB_DIR left"
[[ ! -e /run/qdispatch/qdispatchd.sock ]] || fail "control socket left"
rc=0
"$LAB" status >/dev/null 2>&1 || rc=$?
[[ $rc -eq 3 ]] || fail "lab status after down exited $rc, expected 3"
"$LAB" down || fail "a second lab down failed"

echo "PASS"
