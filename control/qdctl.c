/*
 * qdctl: the command-line client of qdispatchd's control socket.
 *
 * It sends one request (see lib/ctl_proto.h), waits for the reply and prints
 * it either as tables for people or, with --json, as the reply's data object
 * for scripts. The exit status says whether the daemon answered "ok".
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_proto.h"
#include "qd_build.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAILED = 1,     /* the daemon answered with an error */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* no daemon, no permission, timeout, bad reply */
};

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: qdctl [-s SOCKET] [--json] [-t MS] [COMMAND [ARGS]]\n"
		"\n"
		"Query a running qdispatchd through its control socket.\n"
		"\n"
		"Commands:\n"
		"  status     version, port, addresses, per-lcore and total counters (default)\n"
		"  stats      port, per-lcore and total counters\n"
		"  neigh      the neighbour (ARP) table\n"
		"  tcp-probe TARGET [CONNECTIONS [BYTES]]\n"
		"             open CONNECTIONS (default 1) TCP connections from the dispatcher's\n"
		"             own stack to the echo server TARGET (a.b.c.d:port), send BYTES\n"
		"             (default 65536) on each, check every echoed byte, and wait for\n"
		"             the result (exit 0 only when every connection passed)\n"
		"  coordinators\n"
		"             the coordinator table: address, weight, health (unknown until the\n"
		"             first check, then up or down; \"removed\" for one taken out), whether\n"
		"             it is drained, whether new queries may go there now (USABLE: not\n"
		"             down, not drained, not removed, and no recent failed connection\n"
		"             from the proxy), the running and queued queries its last\n"
		"             /v1/cluster reported, the queries this dispatcher has in flight\n"
		"             there, health checks passed/failed and the reason of the last\n"
		"             failed one\n"
		"  coordinators add ADDR:PORT [--weight N]\n"
		"             add coordinator ADDR:PORT (e.g. 10.213.0.203:8080) while running,\n"
		"             with placement weight N (1..1000, default 1): it is health\n"
		"             checked at once and takes new queries once it is up. It comes\n"
		"             after the configured ones and keeps its place across restarts.\n"
		"             Adding a removed coordinator back undoes the removal (same\n"
		"             weight). Refused for a coordinator already in the table and\n"
		"             when the table holds 64 (removed ones count)\n"
		"  coordinators remove ADDR:PORT\n"
		"             take coordinator ADDR:PORT out while running: no new queries go\n"
		"             there and it is no longer checked; queries already running there\n"
		"             go on to their end (as with drain). It stays in the table as\n"
		"             removed, so that it can be added back\n"
		"  drain ADDR:PORT\n"
		"             send no new query to coordinator ADDR:PORT (as written in the\n"
		"             configuration, e.g. 10.213.0.201:8080); queries already running\n"
		"             there go on to their end. For maintenance: drain, wait until\n"
		"             INFLIGHT is 0, then stop the coordinator\n"
		"  peers      active-active peers: this dispatcher's peer id and address,\n"
		"             whether it is still in its start-up quarantine (it admits only\n"
		"             what its state log restored until it has heard from every\n"
		"             peer), then every peer: STATE (unknown until first heard,\n"
		"             alive, dead after peer.dead_after_ms of silence, left when it\n"
		"             said it stops), for how long, ms since its last message, round\n"
		"             trip, messages in/out, deaths and rejoins; then every resource\n"
		"             group: the cluster-wide LIMIT, our BASE share, our CAP now\n"
		"             (base - granted to others + usable grants of others), our\n"
		"             RUNNING and QUEUED, the cluster's (ours + alive peers'), and\n"
		"             per peer what we grant it (OUT) and it grants us (IN); and the\n"
		"             rejected messages by reason (bad_mac, replayed, stale ...); every\n"
		"             coordinator with its queries routed here and by the whole\n"
		"             cluster (ours + alive peers') and how many peers see it up; and\n"
		"             every virtual IP: its HOME peer, its OWNER now (the home while\n"
		"             alive, else a survivor), and how this dispatcher holds it\n"
		"  groups     admission control: every resource group (dotted name) with its\n"
		"             hardConcurrencyLimit, RUNNING, QUEUED (in this group; below it\n"
		"             in parentheses), slots in the workers' reserves and in the\n"
		"             shared pool (RUNNING + RESERVED + POOL = LIMIT + DEBT at rest), and\n"
		"             what happened to its queries: admitted at once, admitted\n"
		"             after queueing, adopted from another dispatcher (DEBT: slots\n"
		"             beyond the limit, paid back as queries end), refused\n"
		"             (maxQueued), cancelled, timed out and abandoned while queued\n"
		"  reload-groups [FILE]\n"
		"             read the resource groups file again (or FILE, which then\n"
		"             becomes the configured one) and apply it as a whole: limits\n"
		"             change in place (running queries go on; a lower limit admits\n"
		"             no more until the group is under it), new groups start,\n"
		"             groups gone from the file take no new queries. A file with\n"
		"             any error is refused and nothing changes (exit 1)\n"
		"  undrain ADDR:PORT\n"
		"             send new queries to ADDR:PORT again (once its health is up)\n"
		"  vips       the virtual IP table: every address this dispatcher holds or\n"
		"             held, its STATE (active: ARP answered, new connections\n"
		"             accepted; draining: still answered and accepted, but every\n"
		"             HTTP response says Connection: close and idle keep-alive\n"
		"             connections are closed, until no connection is left or the\n"
		"             drain time is over; absent: not ours, no ARP answers, TCP\n"
		"             segments to it dropped without RST), the live client\n"
		"             CONNECTIONS on it, and SINCE when it is in that state\n"
		"  vip take ADDR\n"
		"             hold virtual IP ADDR (e.g. 10.213.0.102) from now: active at\n"
		"             once, announced by gratuitous ARP now and twice more within\n"
		"             about a second (in case one is lost). ADDR may be one this\n"
		"             dispatcher never had (another peer's, for a takeover): it must\n"
		"             be in port.ip's subnet and be neither port.ip nor the subnet's\n"
		"             network or broadcast address. Taking a draining VIP stops the\n"
		"             drain; taking an active one announces it again. At most 32\n"
		"             distinct addresses per run (released ones keep their slot)\n"
		"  vip release ADDR [--drain-ms N]\n"
		"             give virtual IP ADDR up. Without --drain-ms (or with 0) it is\n"
		"             absent at once: connections on it are cut off. With N > 0 it\n"
		"             drains first and is absent once it has no connection left, or\n"
		"             after N ms at the latest; connections still open then are left\n"
		"             to time out. Release, wait for absent (qdctl vips), then take\n"
		"             it on the other peer. Not kept across restarts: a restart\n"
		"             starts from the configuration (vip, vip.claim_at_start)\n"
		"  help       the commands this daemon serves\n"
		"\n"
		"Durability: with state.dir set, qdispatchd writes every change made by\n"
		"coordinators add/remove, drain, undrain and reload-groups to its seed log\n"
		"and fsyncs it before it applies the change and answers; a change that\n"
		"cannot be made durable is not applied (exit 1). Without state.dir changes\n"
		"apply at once but are lost at a restart (--json: \"durable\": false).\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH   control socket (default: $QD_CTL_SOCKET, else\n"
		"                      " QD_CTL_SOCKET_DEFAULT ")\n"
		"  -j, --json          print the reply's data as JSON instead of tables\n"
		"  -t, --timeout MS    give up after MS milliseconds (default 5000; 120000 for\n"
		"                      tcp-probe; 15000 for changes, which wait for an fsync)\n"
		"  -w, --weight N      coordinators add: the new coordinator's weight\n"
		"  -d, --drain-ms N    vip release: drain for at most N ms (0..86400000, default\n"
		"                      0: absent at once)\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n"
		"\n"
		"Exit status: 0 ok, 1 the daemon refused the request (e.g. drain of an address\n"
		"that is not a configured coordinator), 2 bad usage, 3 the daemon could not be\n"
		"reached or sent a malformed reply.\n"
		"\n"
		"Examples:\n"
		"  qdctl coordinators\n"
		"  qdctl --json coordinators | jq '.coordinators[] | select(.health != \"up\")'\n"
		"  qdctl drain 10.213.0.201:8080 && qdctl coordinators\n"
		"  qdctl coordinators add 10.213.0.203:8080 --weight 2\n"
		"  qdctl coordinators remove 10.213.0.203:8080\n"
		"  qdctl vip release 10.213.0.102 --drain-ms 30000   # on the peer giving it up\n"
		"  qdctl --json vips | jq '.vips[] | select(.address == \"10.213.0.102\") | .state'\n"
		"  qdctl vip take 10.213.0.102                       # on the peer taking it\n");
}

static int
remaining_ms(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : (int)ms;
}

/* Send <req> and read one reply line into a new buffer. NULL with <err> set on failure. */
static char *
call(const char *path, const char *req, int timeout_ms, char *err, size_t err_len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "socket path too long: %s", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(err, err_len, "cannot connect to %s: %s%s", path, strerror(errno),
			 errno == ENOENT || errno == ECONNREFUSED ? " (is qdispatchd running?)"
			 : errno == EACCES			  ? " (root only by default)"
								  : "");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	size_t len = strlen(req);
	if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		snprintf(err, err_len, "send to %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	size_t cap = 65536, used = 0;
	char *buf = malloc(cap);
	while (buf != NULL) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, remaining_ms(&deadline));
		if (pr <= 0) {
			snprintf(err, err_len, "no reply from %s within %d ms", path, timeout_ms);
			break;
		}
		if (used + 1 == cap) {
			if (cap >= QD_CTL_REPLY_MAX) {
				snprintf(err, err_len, "reply larger than %u bytes", QD_CTL_REPLY_MAX);
				break;
			}
			char *bigger = realloc(buf, cap * 2);
			if (bigger == NULL)
				break;
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + used, cap - used - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			buf[used] = '\0';
			if (used > 0 && memchr(buf, '\n', used) != NULL) {
				close(fd);
				return buf;
			}
			snprintf(err, err_len, "%s closed the connection without a reply (not "
				 "allowed to use it?)", path);
			break;
		}
		used += (size_t)n;
		if (memchr(buf + used - (size_t)n, '\n', (size_t)n) != NULL) {
			buf[used] = '\0';
			close(fd);
			return buf;
		}
	}
	free(buf);
	close(fd);
	return NULL;
}

static long long
num(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static const char *
str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "-";
}

static void
print_counters_row(const char *label, const json_t *c)
{
	long long loops = num(c, "loops"), busy = num(c, "busy_loops");
	printf("%-6s %12lld %12lld %9lld %9lld %9lld %9lld %9lld %6.1f%% %10lld\n", label,
	       num(c, "rx_packets"), num(c, "tx_packets"),
	       num(c, "arp_requests_in") + num(c, "arp_replies_in"),
	       num(c, "arp_replies_out") + num(c, "arp_requests_out") + num(c, "garp_out"),
	       num(c, "icmp_echo_in"), num(c, "icmp_echo_out"), num(c, "drops_total"),
	       loops > 0 ? 100.0 * (double)busy / (double)loops : 0.0, num(c, "idle_sleeps"));
}

static void
print_stats(const json_t *d)
{
	const json_t *p = json_object_get(d, "port");
	printf("port   %s (%s)  mac %s  ip %s  mtu %lld  queues %lld  rss %s\n", str(p, "name"),
	       str(p, "driver"), str(p, "mac"), str(p, "ip"), num(p, "mtu"), num(p, "queues"),
	       json_is_true(json_object_get(p, "rss")) ? "on" : "off");
	printf("       rx %lld pkts %lld B  tx %lld pkts %lld B  missed %lld  errors rx %lld tx "
	       "%lld  nombuf %lld\n\n",
	       num(p, "rx_packets"), num(p, "rx_bytes"), num(p, "tx_packets"), num(p, "tx_bytes"),
	       num(p, "rx_missed"), num(p, "rx_errors"), num(p, "tx_errors"), num(p, "rx_nombuf"));
	const json_t *pool = json_object_get(d, "pool");
	if (pool != NULL)
		printf("mbufs  %lld in use of %lld\n\n", num(pool, "in_use"), num(pool, "size"));
	printf("%-6s %12s %12s %9s %9s %9s %9s %9s %7s %10s\n", "lcore", "rx_pkts", "tx_pkts",
	       "arp_in", "arp_out", "echo_in", "echo_out", "drops", "busy", "sleeps");
	size_t i;
	const json_t *l;
	json_array_foreach(json_object_get(d, "lcores"), i, l) {
		char label[16];
		snprintf(label, sizeof(label), "%lld", num(l, "lcore"));
		print_counters_row(label, l);
	}
	const json_t *t = json_object_get(d, "totals");
	print_counters_row("total", t);
	const char *key;
	const json_t *v;
	bool any = false;
	json_object_foreach((json_t *)json_object_get(t, "drops"), key, v) {
		if (json_integer_value(v) == 0)
			continue;
		printf("%s %s %lld", any ? "," : "\ndrops:", key, (long long)json_integer_value(v));
		any = true;
	}
	if (any)
		printf("\n");
	const json_t *tcp = json_object_get(t, "tcp");
	if (tcp != NULL) {
		printf("\ntcp: %lld connections", num(tcp, "connections"));
		json_object_foreach((json_t *)json_object_get(tcp, "states"), key, v) {
			if (json_integer_value(v) != 0)
				printf(", %s %lld", key, (long long)json_integer_value(v));
		}
		printf("\n     segs in %lld out %lld, retransmits %lld (fast %lld, rto %lld), resets "
		       "in %lld out %lld, cookies %lld/%lld, timeouts %lld\n",
		       num(tcp, "segs_in"), num(tcp, "segs_out"), num(tcp, "retransmits"),
		       num(tcp, "fast_retransmits"), num(tcp, "rto_expired"), num(tcp, "resets_in"),
		       num(tcp, "resets_out"), num(tcp, "cookies_valid"), num(tcp, "cookies_sent"),
		       num(tcp, "timeouts"));
	}
	const json_t *px = json_object_get(t, "proxy");
	if (px != NULL) {
		printf("\nproxy: %lld clients, %lld backends (%lld idle), %lld requests "
		       "(%lld submits, %lld follow-ups), %lld responses forwarded\n",
		       num(px, "clients"), num(px, "backends"), num(px, "backends_idle"),
		       num(px, "requests"), num(px, "requests_submit"), num(px, "requests_followup"),
		       num(px, "responses_forwarded"));
		printf("       answered here: 200 %lld, 400 %lld, 404 %lld, 408 %lld, 413 %lld, "
		       "431 %lld, 502 %lld, 503 %lld, 504 %lld, failed results %lld\n",
		       num(px, "local_200"), num(px, "local_400"), num(px, "local_404"),
		       num(px, "local_408"), num(px, "local_413"), num(px, "local_431"),
		       num(px, "local_502"), num(px, "local_503"), num(px, "local_504"),
		       num(px, "failed_results"));
		printf("       backends: %lld connects, %lld failed, %lld timed out, %lld reused, "
		       "%lld lost, %lld retries\n",
		       num(px, "backend_connects"), num(px, "backend_connect_failed"),
		       num(px, "backend_connect_timeouts"), num(px, "backend_reused"),
		       num(px, "backend_lost"), num(px, "retries"));
	}
	const json_t *r = json_object_get(d, "routes");
	if (r != NULL && num(r, "capacity") > 0) {
		const json_t *e = json_object_get(r, "ended");
		printf("routes: %lld live of %lld, %lld created, ended %lld (finished %lld, failed "
		       "%lld, canceled %lld, gone %lld, lost %lld, idle %lld), misses %lld\n",
		       num(r, "live"), num(r, "capacity"), num(r, "created"), num(e, "total"),
		       num(e, "finished"), num(e, "failed"), num(e, "canceled"), num(e, "gone"),
		       num(e, "lost"), num(e, "idle"), num(r, "misses"));
		const json_t *a = json_object_get(r, "adopted");
		if (a != NULL)
			printf("        adopted %lld now, %lld in all (%lld holding a slot)\n",
			       num(a, "now"), num(a, "total"), num(a, "with_slot"));
	}
	const json_t *rc = t != NULL ? json_object_get(t, "reconcile") : NULL;
	const json_t *ds = rc != NULL ? json_object_get(rc, "discovery") : NULL;
	const json_t *vf = rc != NULL ? json_object_get(rc, "verify") : NULL;
	if (ds != NULL && vf != NULL) {
		long long done = num(ds, "found") + num(ds, "not_found") + num(ds, "timed_out");
		printf("discovery: %lld started, %lld found, %lld not found, %lld timed out, "
		       "%lld full, %lld joined, mean %lld us, %lld in flight\n",
		       num(ds, "started"), num(ds, "found"), num(ds, "not_found"),
		       num(ds, "timed_out"), num(ds, "full"), num(ds, "joined"),
		       done > 0 ? num(ds, "latency_us_sum") / done : 0, num(ds, "in_flight"));
		printf("verify: %lld quiet routes checked, %lld running, %lld ended, %lld errors\n",
		       num(vf, "checked"), num(vf, "running"), num(vf, "ended"), num(vf, "errors"));
	}
}

static void
print_status(const json_t *d)
{
	printf("qdispatchd %s  pid %lld  up %llds  workers %lld  idle %s  hugepages %s  log %s\n",
	       str(d, "version"), num(d, "pid"), num(d, "uptime_s"), num(d, "workers"),
	       json_is_true(json_object_get(d, "idle")) ? "on" : "off",
	       json_is_true(json_object_get(d, "hugepages")) ? "yes" : "no", str(d, "log_level"));
	printf("config %s\n", str(d, "config"));
	printf("vips  ");
	size_t i;
	const json_t *v;
	json_array_foreach(json_object_get(d, "vips"), i, v)
		printf(" %s (%s)", str(v, "address"), str(v, "state"));
	printf("  (port %lld)\ncoordinators", num(d, "listen_port"));
	const json_t *table = json_object_get(d, "coordinator_table");
	if (json_array_size(table) > 0) {
		json_array_foreach(table, i, v)
			printf(" %s (%s%s)", str(v, "coordinator"), str(v, "health"),
			       json_is_true(json_object_get(v, "drained")) ? ", drained" : "");
	} else {
		json_array_foreach(json_object_get(d, "coordinators"), i, v)
			printf(" %s", json_string_value(v));
	}
	printf("\nneighbours %lld\n\n", num(d, "neigh_entries"));
	print_stats(d);
}

static void
print_neigh(const json_t *d)
{
	printf("%-16s %-18s %-11s %-7s %7s %10s\n", "address", "mac", "state", "pinned",
	       "probes", "age_ms");
	size_t i;
	const json_t *e;
	json_array_foreach(json_object_get(d, "entries"), i, e) {
		printf("%-16s %-18s %-11s %-7s %7lld %10lld\n", str(e, "ip"), str(e, "mac"),
		       str(e, "state"), json_is_true(json_object_get(e, "pinned")) ? "yes" : "no",
		       num(e, "probes"), num(e, "age_ms"));
	}
	printf("%lld of %lld entries\n", num(d, "count"), num(d, "capacity"));
}

static void
print_coordinators(const json_t *d)
{
	printf("%-21s %6s %-7s %-7s %-6s %7s %7s %8s %-16s %s\n", "ADDRESS", "WEIGHT", "HEALTH",
	       "DRAINED", "USABLE", "RUNNING", "QUEUED", "INFLIGHT", "CHECKS(ok/failed)",
	       "LAST-ERROR");
	size_t i;
	const json_t *c;
	const json_t *arr = json_object_get(d, "coordinators");
	json_array_foreach(arr, i, c) {
		char checks[48];
		snprintf(checks, sizeof(checks), "%lld/%lld", num(c, "checks_ok"),
			 num(c, "checks_failed"));
		const char *last = str(c, "last_error");
		bool removed = json_is_true(json_object_get(c, "removed"));
		printf("%-21s %6lld %-7s %-7s %-6s %7lld %7lld %8lld %-16s %s\n",
		       str(c, "coordinator"), num(c, "weight"), removed ? "removed" : str(c, "health"),
		       json_is_true(json_object_get(c, "drained")) ? "yes" : "no",
		       json_is_true(json_object_get(c, "usable")) ? "yes" : "no",
		       num(c, "cluster_running"), num(c, "cluster_queued"), num(c, "inflight"),
		       checks, last[0] != '\0' ? last : "-");
	}
	if (json_array_size(arr) == 0) {
		printf("(no coordinators configured)\n");
		return;
	}
	if (!json_is_true(json_object_get(d, "durable")))
		printf("changes are not durable (no state.dir): add, remove and drain are lost at a "
		       "restart\n");
	const json_t *h = json_object_get(d, "health");
	if (num(h, "interval_ms") == 0)
		printf("health checks off (health.interval_ms = 0): passive detection only\n");
	else
		printf("health checks every %lld ms, timeout %lld ms; down after %lld failed, up "
		       "after %lld passed\n",
		       num(h, "interval_ms"), num(h, "timeout_ms"), num(h, "fall"), num(h, "rise"));
}

static void
print_help(const json_t *d)
{
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(d, "commands"), i, c)
		printf("  %-17s %s\n", str(c, "name"), str(c, "help"));
}

/* One request/reply exchange; returns the reply object (caller decrefs) or NULL after
 * printing why. <args> may be NULL; it is not consumed. */
static json_t *
request(const char *path, const char *cmd, json_t *args, int timeout_ms, int *status)
{
	json_t *req = json_pack("{s:i, s:s}", "v", QD_CTL_PROTO_VERSION, "cmd", cmd);
	if (args != NULL)
		json_object_set(req, "args", args);
	char *req_s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	char line[QD_CTL_REQUEST_MAX];
	int n = snprintf(line, sizeof(line), "%s\n", req_s);
	free(req_s);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		fprintf(stderr, "qdctl: request too large\n");
		*status = EXIT_USAGE;
		return NULL;
	}
	char err[512];
	char *reply_s = call(path, line, timeout_ms, err, sizeof(err));
	if (reply_s == NULL) {
		fprintf(stderr, "qdctl: %s\n", err);
		*status = EXIT_UNREACHABLE;
		return NULL;
	}
	json_error_t jerr;
	json_t *reply = json_loads(reply_s, JSON_DISABLE_EOF_CHECK, &jerr);
	free(reply_s);
	if (!json_is_object(reply)) {
		fprintf(stderr, "qdctl: malformed reply: %s\n", jerr.text);
		json_decref(reply);
		*status = EXIT_UNREACHABLE;
		return NULL;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		fprintf(stderr, "qdctl: %s: %s\n", cmd, str(reply, "error"));
		json_decref(reply);
		*status = EXIT_FAILED;
		return NULL;
	}
	return reply;
}

static int
parse_count(const char *what, const char *s, long long max, long long *out)
{
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > max) {
		fprintf(stderr, "qdctl: %s: '%s' is not a number in 0..%lld\n", what, s, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* What a change reply says about surviving a restart. */
static const char *
durability(const json_t *d)
{
	if (!json_is_true(json_object_get(d, "changed")))
		return "";
	return json_is_true(json_object_get(d, "durable"))
		       ? "; kept across restarts"
		       : "; NOT kept across restarts (no state.dir)";
}

/* ADDR:PORT as the daemon takes it; prints the usage error. */
static bool
addr_ok(const char *cmd, const char *a)
{
	const char *colon = strrchr(a, ':');
	if (colon == NULL || colon == a || colon[1] == '\0') {
		fprintf(stderr, "qdctl: %s: '%s' is not ADDR:PORT (e.g. 10.213.0.201:8080)\n", cmd,
			a);
		return false;
	}
	return true;
}

/* coordinators add ADDR:PORT [--weight N] / coordinators remove ADDR:PORT */
static int
coordinators_change(const char *path, int argc, char **argv, long weight, bool json_out,
		    int timeout_ms)
{
	bool add = strcmp(argv[0], "add") == 0;
	if ((!add && strcmp(argv[0], "remove") != 0) || argc != 2) {
		fprintf(stderr, "qdctl: usage: coordinators add ADDR:PORT [--weight N] | "
			"coordinators remove ADDR:PORT\n");
		return EXIT_USAGE;
	}
	const char *what = add ? "coordinators add" : "coordinators remove";
	if (!addr_ok(what, argv[1]))
		return EXIT_USAGE;
	if (!add && weight > 0) {
		fprintf(stderr, "qdctl: coordinators remove takes no --weight\n");
		return EXIT_USAGE;
	}
	json_t *args = json_pack("{s:s}", "coordinator", argv[1]);
	if (weight > 0)
		json_object_set_new(args, "weight", json_integer(weight));
	int status = EXIT_OK;
	json_t *reply = request(path, add ? "coordinator_add" : "coordinator_remove", args,
				timeout_ms, &status);
	json_decref(args);
	if (reply == NULL)
		return status;
	const json_t *d = json_object_get(reply, "data");
	if (json_out) {
		json_dumpf(d, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("\n");
	} else if (add) {
		printf("coordinator %s %s at index %lld (weight %lld): health checks start now, new "
		       "queries go there once it is up%s\n",
		       str(d, "coordinator"),
		       json_is_true(json_object_get(d, "added_back")) ? "added back" : "added",
		       num(d, "index"), num(d, "weight"), durability(d));
		if (!json_is_true(json_object_get(d, "proxy")))
			printf("note: this dispatcher started without coordinators, so it runs no "
			       "query proxy: restart it for queries to go there\n");
	} else {
		printf("coordinator %s %s: no new queries go there and it is no longer checked; "
		       "%lld in flight there go on%s\n",
		       str(d, "coordinator"),
		       json_is_true(json_object_get(d, "changed")) ? "removed" : "was removed already",
		       num(d, "inflight"), durability(d));
	}
	json_decref(reply);
	return EXIT_OK;
}

/* drain / undrain ADDR:PORT */
static int
drain(const char *path, const char *cmd, int argc, char **argv, bool json_out, int timeout_ms)
{
	if (argc != 1) {
		fprintf(stderr, "qdctl: usage: %s ADDR:PORT (a coordinator as configured, e.g. "
			"10.213.0.201:8080)\n", cmd);
		return EXIT_USAGE;
	}
	if (!addr_ok(cmd, argv[0]))
		return EXIT_USAGE;
	json_t *args = json_pack("{s:s}", "coordinator", argv[0]);
	int status = EXIT_OK;
	json_t *reply = request(path, cmd, args, timeout_ms, &status);
	json_decref(args);
	if (reply == NULL)
		return status;
	const json_t *d = json_object_get(reply, "data");
	if (json_out) {
		json_dumpf(d, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("\n");
	} else if (strcmp(cmd, "drain") == 0) {
		printf("coordinator %s %s: no new queries go there; %lld in flight there go on "
		       "(health %s)%s\n",
		       str(d, "coordinator"),
		       json_is_true(json_object_get(d, "changed")) ? "drained" : "was drained already",
		       num(d, "inflight"), str(d, "health"), durability(d));
	} else {
		printf("coordinator %s %s: new queries go there %s (health %s)%s\n",
		       str(d, "coordinator"),
		       json_is_true(json_object_get(d, "changed")) ? "undrained" : "was not drained",
		       json_is_true(json_object_get(d, "usable")) ? "again" : "once it is usable",
		       str(d, "health"), durability(d));
	}
	json_decref(reply);
	return EXIT_OK;
}

static void
print_peers(const json_t *d)
{
	printf("peer %lld on %s:%lld, boot %s%s; %lld of %lld other peer(s) alive\n",
	       num(d, "self"), str(d, "address"), num(d, "port"), str(d, "boot"),
	       json_is_true(json_object_get(d, "quarantine")) ? ", IN QUARANTINE" : "",
	       num(d, "alive"), num(d, "configured"));
	printf("%-4s %-21s %-8s %10s %10s %9s %9s %9s %6s %7s\n", "ID", "ADDRESS", "STATE",
	       "FOR-MS", "HEARD-MS", "RTT-US", "MSGS-IN", "MSGS-OUT", "DEATHS", "REJOINS");
	size_t i, j;
	const json_t *p, *g;
	json_array_foreach(json_object_get(d, "peers"), i, p) {
		char addr[40], heard[24];
		snprintf(addr, sizeof(addr), "%s:%lld", str(p, "address"), num(p, "port"));
		const json_t *h = json_object_get(p, "last_heard_ms_ago");
		if (json_is_integer(h))
			snprintf(heard, sizeof(heard), "%lld", (long long)json_integer_value(h));
		else
			snprintf(heard, sizeof(heard), "never");
		printf("%-4lld %-21s %-8s %10lld %10s %9lld %9lld %9lld %6lld %7lld\n", num(p, "id"),
		       addr, str(p, "state"), num(p, "state_for_ms"), heard, num(p, "rtt_us"),
		       num(p, "messages_in"), num(p, "messages_out"), num(p, "deaths"),
		       num(p, "rejoins"));
	}
	printf("\n%-28s %6s %5s %5s %7s %6s %11s %10s  %s\n", "GROUP", "LIMIT", "BASE", "CAP",
	       "RUNNING", "QUEUED", "CL-RUNNING", "CL-QUEUED", "PEER:OUT/IN");
	json_array_foreach(json_object_get(d, "groups"), i, g) {
		printf("%-28s %6lld %5lld %5lld %7lld %6lld %11lld %10lld ", str(g, "group"),
		       num(g, "limit"), num(g, "base"), num(g, "cap"), num(g, "running"),
		       num(g, "queued"), num(g, "cluster_running"), num(g, "cluster_queued"));
		json_array_foreach(json_object_get(d, "peers"), j, p) {
			const json_t *l = json_array_get(json_object_get(p, "groups"), i);
			printf(" %lld:%lld/%lld", num(p, "id"), num(l, "granted_to_it"),
			       num(l, "usable"));
		}
		printf("\n");
	}
	printf("\n%-22s %8s %8s %11s %10s\n", "COORDINATOR", "UP-HERE", "RUNNING", "CL-RUNNING",
	       "UP-VOTES");
	json_array_foreach(json_object_get(d, "coordinators"), i, g) {
		char addr[40], votes[24];
		snprintf(addr, sizeof(addr), "%s:%lld", str(g, "address"), num(g, "port"));
		snprintf(votes, sizeof(votes), "%lld/%lld", num(g, "peers_seeing_it_up"),
			 num(g, "peers_reporting"));
		printf("%-22s %8s %8lld %11lld %10s\n", addr,
		       json_is_true(json_object_get(g, "up_here")) ? "yes" : "no",
		       num(g, "running_here"), num(g, "cluster_running"), votes);
	}
	printf("\n%-16s %5s %6s %9s\n", "VIP", "HOME", "OWNER", "HERE");
	json_array_foreach(json_object_get(d, "vips"), i, g)
		printf("%-16s %5lld %6lld %9s\n", str(g, "address"), num(g, "home"), num(g, "owner"),
		       str(g, "held_here"));
	const json_t *r = json_object_get(d, "rejected");
	const char *k;
	const json_t *v;
	printf("\nrejected:");
	json_object_foreach((json_t *)r, k, v)
		printf(" %s %lld", k, (long long)json_integer_value(v));
	const json_t *c = json_object_get(d, "counters");
	printf("\nmessages: sent %lld (send errors %lld), received %lld, %lld bytes each; "
	       "grants changed %lld, caps set %lld\n",
	       num(c, "sent"), num(c, "send_errors"), num(c, "received"), num(c, "message_bytes"),
	       num(c, "grants_changed"), num(c, "caps_set"));
}

static void
print_groups(const json_t *d)
{
	printf("resource groups from %s (%lld reloads), %lld waiting, %lld of %lld queue "
	       "entries in use\n",
	       str(d, "file"), num(d, "reloads"), num(d, "waiting"), num(d, "entries_used"),
	       num(d, "queued_max"));
	printf("%-28s %6s %7s %13s %8s %6s %5s %9s %9s %7s %6s %8s %7s %9s\n", "GROUP", "LIMIT",
	       "RUNNING", "QUEUED", "RESERVED", "POOL", "DEBT", "ADMITTED", "AFTER-Q", "ADOPTED",
	       "FULL", "CANCELED", "TIMEOUT", "ABANDONED");
	size_t i;
	const json_t *g;
	json_array_foreach(json_object_get(d, "groups"), i, g) {
		const json_t *c = json_object_get(g, "counters");
		char queued[32];
		snprintf(queued, sizeof(queued), "%lld (%lld)", num(g, "queued"),
			 num(g, "queued_subtree"));
		char name[40];
		snprintf(name, sizeof(name), "%s%s", str(g, "name"),
			 json_is_true(json_object_get(g, "retired")) ? " (retired)" : "");
		printf("%-28s %6lld %7lld %13s %8lld %6lld %5lld %9lld %9lld %7lld %6lld %8lld %7lld "
		       "%9lld\n",
		       name, num(g, "hard_concurrency_limit"), num(g, "running"), queued,
		       num(g, "reserved"), num(g, "pool"), num(g, "debt"), num(c, "admitted"),
		       num(c, "admitted_after_queue"), num(g, "adopted"), num(c, "queue_full"),
		       num(c, "canceled_queued"), num(c, "timed_out"), num(c, "abandoned"));
	}
}

/* reload-groups [FILE] */
static int
reload_groups(const char *path, int argc, char **argv, bool json_out, int timeout_ms)
{
	if (argc > 1) {
		fprintf(stderr, "qdctl: usage: reload-groups [FILE]\n");
		return EXIT_USAGE;
	}
	json_t *args = NULL;
	if (argc == 1) {
		/* the daemon reads the file: give it an absolute name */
		char *abs = realpath(argv[0], NULL);
		if (abs == NULL) {
			fprintf(stderr, "qdctl: reload-groups: %s: %s\n", argv[0], strerror(errno));
			return EXIT_USAGE;
		}
		args = json_pack("{s:s}", "path", abs);
		free(abs);
	}
	int status = EXIT_OK;
	json_t *reply = request(path, "reload_groups", args, timeout_ms, &status);
	json_decref(args);
	if (reply == NULL)
		return status;
	const json_t *d = json_object_get(reply, "data");
	if (json_out) {
		json_dumpf(d, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("\n");
	} else {
		printf("resource groups reloaded from %s: %lld groups (reload %lld)%s\n",
		       str(d, "file"), num(d, "groups"), num(d, "reloads"),
		       json_is_true(json_object_get(d, "durable"))
			       ? "; the file is recorded for the next start"
			       : "");
	}
	json_decref(reply);
	return EXIT_OK;
}

static void
print_vips(const json_t *d)
{
	printf("%-16s %-9s %11s  %-20s %s\n", "ADDRESS", "STATE", "CONNECTIONS", "SINCE",
	       "DRAIN-LEFT");
	size_t i;
	const json_t *v;
	json_array_foreach(json_object_get(d, "vips"), i, v) {
		char left[32] = "-";
		if (json_is_integer(json_object_get(v, "drain_left_ms")))
			snprintf(left, sizeof(left), "%lld ms", num(v, "drain_left_ms"));
		printf("%-16s %-9s %11lld  %-20s %s\n", str(v, "address"), str(v, "state"),
		       num(v, "connections"), str(v, "since"), left);
	}
}

/* vip take ADDR / vip release ADDR [--drain-ms N] */
static int
vip_change(const char *path, int argc, char **argv, long long drain_ms, bool json_out,
	   int timeout_ms)
{
	bool take = argc == 2 && strcmp(argv[0], "take") == 0;
	bool release = argc == 2 && strcmp(argv[0], "release") == 0;
	if (!take && !release) {
		fprintf(stderr, "qdctl: usage: vip take ADDR | vip release ADDR [--drain-ms N]\n");
		return EXIT_USAGE;
	}
	if (take && drain_ms >= 0) {
		fprintf(stderr, "qdctl: vip take takes no --drain-ms\n");
		return EXIT_USAGE;
	}
	json_t *args = json_pack("{s:s}", "address", argv[1]);
	if (release)
		json_object_set_new(args, "drain_ms", json_integer(drain_ms > 0 ? drain_ms : 0));
	int status = EXIT_OK;
	json_t *reply = request(path, take ? "vip_take" : "vip_release", args, timeout_ms,
				&status);
	json_decref(args);
	if (reply == NULL)
		return status;
	const json_t *d = json_object_get(reply, "data");
	bool changed = json_is_true(json_object_get(d, "changed"));
	if (json_out) {
		json_dumpf(d, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("\n");
	} else if (take) {
		printf("vip %s %s: answering ARP and accepting connections; gratuitous ARP sent\n",
		       str(d, "address"), changed ? "taken" : "was held already");
	} else if (strcmp(str(d, "state"), "draining") == 0) {
		printf("vip %s draining: %lld connection(s) on it; absent when none is left or in "
		       "%lld ms\n", str(d, "address"), num(d, "connections"),
		       num(d, "drain_left_ms"));
	} else {
		printf("vip %s %s\n", str(d, "address"),
		       changed ? "released: absent now" : "was absent already");
	}
	json_decref(reply);
	return EXIT_OK;
}

/* tcp-probe: start, then poll the status until done or the deadline. */
static int
tcp_probe(const char *path, int argc, char **argv, bool json_out, int timeout_ms)
{
	if (argc < 1 || argc > 3) {
		fprintf(stderr, "qdctl: usage: tcp-probe TARGET [CONNECTIONS [BYTES]]\n");
		return EXIT_USAGE;
	}
	long long conns = 1, bytes = 65536;
	if ((argc > 1 && parse_count("connections", argv[1], 1 << 20, &conns) != 0) ||
	    (argc > 2 && parse_count("bytes", argv[2], 1ll << 40, &bytes) != 0))
		return EXIT_USAGE;
	json_t *args = json_pack("{s:s, s:I, s:I}", "target", argv[0], "connections",
				 (json_int_t)conns, "bytes", (json_int_t)bytes);
	int status = EXIT_OK;
	json_t *started = NULL;
	/* The target's MAC may still be unknown: the daemon starts resolving it and the
	 * workers wait; nothing to retry here. */
	started = request(path, "tcp_probe", args, timeout_ms, &status);
	json_decref(args);
	if (started == NULL)
		return status;
	json_decref(started);
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	json_t *reply = NULL;
	for (;;) {
		reply = request(path, "tcp_probe_status", NULL, timeout_ms, &status);
		if (reply == NULL)
			return status;
		const json_t *d = json_object_get(reply, "data");
		if (json_is_true(json_object_get(d, "done")) || remaining_ms(&deadline) == 0)
			break;
		json_decref(reply);
		struct timespec nap = {.tv_sec = 0, .tv_nsec = 100 * 1000000};
		nanosleep(&nap, NULL);
	}
	const json_t *d = json_object_get(reply, "data");
	bool done = json_is_true(json_object_get(d, "done"));
	bool passed = done && num(d, "failed") == 0 && num(d, "ok") == num(d, "wanted");
	if (json_out) {
		json_dumpf(d, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("\n");
	} else {
		printf("tcp probe %lld to %s: %lld of %lld connections ok, %lld failed, %lld bytes "
		       "verified, %lld mismatches%s\n",
		       num(d, "id"), argv[0], num(d, "ok"), num(d, "wanted"), num(d, "failed"),
		       num(d, "bytes_verified"), num(d, "mismatches"),
		       done ? "" : " (not finished: timed out)");
		if (num(d, "failed") > 0) {
			const char *key;
			const json_t *v;
			printf("failed by:");
			json_object_foreach((json_t *)json_object_get(d, "failed_by"), key, v)
				printf(" %s %lld", key, (long long)json_integer_value(v));
			printf("\n");
		}
	}
	json_decref(reply);
	return passed ? EXIT_OK : EXIT_FAILED;
}

int
main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 't'},
		{"weight", required_argument, NULL, 'w'},
		{"drain-ms", required_argument, NULL, 'd'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = getenv("QD_CTL_SOCKET");
	if (path == NULL || path[0] == '\0')
		path = QD_CTL_SOCKET_DEFAULT;
	bool json_out = false;
	int timeout_ms = 5000;
	bool timeout_set = false;
	long weight = 0;
	long long drain_ms = -1; /* -1: not given */
	int c;
	while ((c = getopt_long(argc, argv, "s:jt:w:d:Vh", longs, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json_out = true;
			break;
		case 't': {
			char *end = NULL;
			long v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 1 || v > 600000) {
				fprintf(stderr, "qdctl: --timeout: '%s' is not 1..600000 ms\n", optarg);
				return EXIT_USAGE;
			}
			timeout_ms = (int)v;
			timeout_set = true;
			break;
		}
		case 'w': {
			char *end = NULL;
			weight = strtol(optarg, &end, 10);
			if (*end != '\0' || weight < 1 || weight > 1000) {
				fprintf(stderr, "qdctl: --weight: '%s' is not 1..1000\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'd':
			if (parse_count("--drain-ms", optarg, 86400000, &drain_ms) != 0)
				return EXIT_USAGE;
			break;
		case 'V':
			printf("qdctl %s\n", QD_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	const char *cmd = optind < argc ? argv[optind] : "status";
	bool coord_change = strcmp(cmd, "coordinators") == 0 && optind + 1 < argc;
	if (weight > 0 && !coord_change) {
		fprintf(stderr, "qdctl: --weight goes with 'coordinators add' only\n");
		return EXIT_USAGE;
	}
	bool vip_cmd = strcmp(cmd, "vip") == 0;
	if (drain_ms >= 0 && !vip_cmd) {
		fprintf(stderr, "qdctl: --drain-ms goes with 'vip release' only\n");
		return EXIT_USAGE;
	}
	if (vip_cmd)
		return vip_change(path, argc - optind - 1, argv + optind + 1, drain_ms, json_out,
				  timeout_ms);
	/* A change waits for the daemon's fsync (bounded there at 5 s). */
	int change_ms = timeout_set ? timeout_ms : 15000;
	if (coord_change)
		return coordinators_change(path, argc - optind - 1, argv + optind + 1, weight,
					   json_out, change_ms);
	if (strcmp(cmd, "tcp-probe") == 0)
		return tcp_probe(path, argc - optind - 1, argv + optind + 1, json_out,
				 timeout_set ? timeout_ms : 120000);
	if (strcmp(cmd, "drain") == 0 || strcmp(cmd, "undrain") == 0)
		return drain(path, cmd, argc - optind - 1, argv + optind + 1, json_out, change_ms);
	if (strcmp(cmd, "reload-groups") == 0)
		return reload_groups(path, argc - optind - 1, argv + optind + 1, json_out, change_ms);
	if (optind + 1 < argc) {
		fprintf(stderr, "qdctl: unexpected argument '%s'\n", argv[optind + 1]);
		return EXIT_USAGE;
	}
	static const char *const known[] = {"status", "stats", "neigh", "coordinators", "groups",
					    "peers", "vips", "help"};
	bool ok = false;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		ok = ok || strcmp(cmd, known[i]) == 0;
	if (!ok) {
		fprintf(stderr, "qdctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}

	int status = EXIT_OK;
	json_t *reply = request(path, cmd, NULL, timeout_ms, &status);
	if (reply == NULL)
		return status;
	const json_t *data = json_object_get(reply, "data");
	if (json_out) {
		json_dumpf(data, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("\n");
	} else if (strcmp(cmd, "status") == 0) {
		print_status(data);
	} else if (strcmp(cmd, "stats") == 0) {
		print_stats(data);
	} else if (strcmp(cmd, "neigh") == 0) {
		print_neigh(data);
	} else if (strcmp(cmd, "coordinators") == 0) {
		print_coordinators(data);
	} else if (strcmp(cmd, "groups") == 0) {
		print_groups(data);
	} else if (strcmp(cmd, "peers") == 0) {
		print_peers(data);
	} else if (strcmp(cmd, "vips") == 0) {
		print_vips(data);
	} else {
		print_help(data);
	}
	json_decref(reply);
	return EXIT_OK;
}
