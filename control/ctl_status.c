/*
 * Control commands that report the daemon's state: status, stats, neigh; and the
 * table of every command qdispatchd serves (qd_daemon_commands).
 *
 * They run on the main lcore and only read: worker counters through relaxed
 * loads (each worker is the single writer of its block), the port's counters
 * through ethdev, and the master neighbour table the main lcore itself owns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include <rte_ethdev.h>

#include "ctl_groups.h"
#include "peer_sync.h"
#include "state_log.h"
#include "ctl_coords.h"
#include "ctl_tcp.h"
#include "ctl_vips.h"
#include "daemon.h"
#include "qd_build.h"

static json_t *
ip_json(uint32_t ip_be)
{
	char buf[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = ip_be};
	inet_ntop(AF_INET, &a, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *
mac_json(const uint8_t *mac)
{
	char buf[18];
	snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
	return json_string(buf);
}

static json_t *
counters_json(const struct qd_lcore_stats *s)
{
	json_t *o = json_object();
#define QD_X(name) json_object_set_new(o, #name, json_integer((json_int_t)s->name));
	QD_LCORE_COUNTERS(QD_X)
#undef QD_X
	json_t *drops = json_object();
	uint64_t total = 0;
	for (unsigned int i = 0; i < QD_DROP_MAX; i++) {
		json_object_set_new(drops, qd_drop_reason_name(i), json_integer((json_int_t)s->drops[i]));
		total += s->drops[i];
	}
	json_object_set_new(o, "drops_total", json_integer((json_int_t)total));
	json_object_set_new(o, "drops", drops);
	return o;
}

static json_t *
port_json(const struct qd_daemon *d)
{
	char addr[INET_ADDRSTRLEN], ip[INET_ADDRSTRLEN + 8];
	struct in_addr a = {.s_addr = d->iface.ip_be};
	inet_ntop(AF_INET, &a, addr, sizeof(addr));
	snprintf(ip, sizeof(ip), "%s/%u", addr, (unsigned int)d->iface.prefix_len);
	json_t *o = json_pack("{s:s, s:s, s:i, s:o, s:s, s:i, s:i, s:b}", "name", d->port.name,
			      "driver", d->port.driver, "port_id", d->port.port_id, "mac",
			      mac_json(d->port.mac.addr_bytes), "ip", ip, "mtu", d->port.mtu,
			      "queues", d->port.queues, "rss", d->port.rss);
	struct rte_eth_stats st;
	if (rte_eth_stats_get(d->port.port_id, &st) == 0) {
		json_object_set_new(o, "rx_packets", json_integer((json_int_t)st.ipackets));
		json_object_set_new(o, "tx_packets", json_integer((json_int_t)st.opackets));
		json_object_set_new(o, "rx_bytes", json_integer((json_int_t)st.ibytes));
		json_object_set_new(o, "tx_bytes", json_integer((json_int_t)st.obytes));
		json_object_set_new(o, "rx_missed", json_integer((json_int_t)st.imissed));
		json_object_set_new(o, "rx_errors", json_integer((json_int_t)st.ierrors));
		json_object_set_new(o, "tx_errors", json_integer((json_int_t)st.oerrors));
		json_object_set_new(o, "rx_nombuf", json_integer((json_int_t)st.rx_nombuf));
	}
	return o;
}

static json_t *
tcp_json(const struct qd_tcp_counters *k, const uint32_t *states)
{
	json_t *o = json_object();
#define QD_X(name) json_object_set_new(o, #name, json_integer((json_int_t)k->name));
	QD_TCP_COUNTERS(QD_X)
#undef QD_X
	json_t *st = json_object();
	uint64_t conns = 0;
	for (unsigned int i = QD_TCP_LISTEN; i < QD_TCP_STATE_MAX; i++) {
		json_object_set_new(st, qd_tcp_state_name(i), json_integer(states[i]));
		conns += states[i];
	}
	json_object_set_new(o, "connections", json_integer((json_int_t)conns));
	json_object_set_new(o, "states", st);
	return o;
}

static json_t *
proxy_json(const struct qd_proxy_counters *k, const struct qd_proxy_gauges *g)
{
	json_t *o = json_object();
#define QD_X(name) json_object_set_new(o, #name, json_integer((json_int_t)k->name));
	QD_PROXY_COUNTERS(QD_X)
#undef QD_X
	json_object_set_new(o, "clients", json_integer(g->clients));
	json_object_set_new(o, "backends", json_integer(g->backends));
	json_object_set_new(o, "backends_idle", json_integer(g->backends_idle));
	json_object_set_new(o, "head_buffers_free", json_integer(g->head_buffers_free));
	return o;
}

/* The route table as a whole: what every worker created and ended, and what is live. */
static json_t *
routes_json(const struct qd_daemon *d, const struct qd_proxy_counters *k)
{
	uint64_t ended = k->routes_ended_finished + k->routes_ended_failed +
			 k->routes_ended_canceled + k->routes_ended_gone + k->routes_ended_lost +
			 k->routes_ended_idle + k->routes_ended_dead;
	uint32_t all = d->routes ? qd_route_count(d->routes) : 0;
	uint32_t lingering = d->routes ? qd_route_ended_count(d->routes) : 0;
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:I}",
			 "capacity", (json_int_t)(d->routes ? d->routes->capacity : 0),
			 "live", (json_int_t)(all > lingering ? all - lingering : 0),
			 "lingering", (json_int_t)lingering,
			 "created", (json_int_t)k->routes_created,
			 "ended_total", (json_int_t)ended,
			 "ended",
			 "finished", (json_int_t)k->routes_ended_finished,
			 "failed", (json_int_t)k->routes_ended_failed,
			 "canceled", (json_int_t)k->routes_ended_canceled,
			 "gone", (json_int_t)k->routes_ended_gone,
			 "lost", (json_int_t)k->routes_ended_lost,
			 "idle", (json_int_t)k->routes_ended_idle,
			 "dead", (json_int_t)k->routes_ended_dead,
			 "total", (json_int_t)ended,
			 "misses", (json_int_t)k->route_misses,
			 "exists", (json_int_t)k->routes_exists,
			 "full", (json_int_t)k->routes_full);
	if (o == NULL)
		return NULL;
	/* routes of queries another dispatcher admitted, found by discovery */
	json_object_set_new(o, "adopted",
			    json_pack("{s:I, s:I, s:I}", "now",
				      (json_int_t)(d->routes ? qd_route_adopted_count(d->routes) : 0),
				      "total", (json_int_t)k->routes_adopted, "with_slot",
				      (json_int_t)k->adm_adopted));
	json_object_set_new(o, "reconciled", json_integer((json_int_t)k->routes_reconciled));
	return o;
}

static json_t *
fault_json(const struct qd_fault *f)
{
	json_t *o = json_object();
	for (unsigned int dir = 0; dir < QD_FAULT_DIRS; dir++) {
		struct qd_fault_stats fs;
		qd_fault_stats_read(&fs, f, dir);
		json_t *d = json_object();
#define QD_X(name, help) json_object_set_new(d, #name, json_integer((json_int_t)fs.name));
		QD_FAULT_COUNTERS(QD_X)
#undef QD_X
		json_object_set_new(d, "held", json_integer(qd_fault_held(f, dir)));
		json_object_set_new(o, qd_fault_dir_name(dir), d);
	}
	return o;
}

static json_t *
reconcile_json(const struct qd_reconcile_counters *k)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "checked",
			 (json_int_t)k->checked, "still_running", (json_int_t)k->still_running,
			 "ended_gone", (json_int_t)k->ended_gone, "ended_finished",
			 (json_int_t)k->ended_finished, "ended_failed", (json_int_t)k->ended_failed,
			 "errors", (json_int_t)k->errors, "given_up", (json_int_t)k->given_up,
			 "in_flight", (json_int_t)k->in_flight, "done", k->done != 0);
	if (o == NULL)
		return NULL;
	json_object_set_new(o, "verify",
			    json_pack("{s:I, s:I, s:I, s:I}", "checked",
				      (json_int_t)k->verify_checked, "running",
				      (json_int_t)k->verify_running, "ended",
				      (json_int_t)k->verify_ended, "errors",
				      (json_int_t)k->verify_errors));
	json_object_set_new(o, "discovery",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "started",
				      (json_int_t)k->disc_started, "found", (json_int_t)k->disc_found,
				      "not_found", (json_int_t)k->disc_not_found, "timed_out",
				      (json_int_t)k->disc_timed_out, "full", (json_int_t)k->disc_full,
				      "joined", (json_int_t)k->disc_joined, "latency_us_sum",
				      (json_int_t)k->disc_latency_us_sum, "in_flight",
				      (json_int_t)k->disc_in_flight));
	return o;
}

static void
reconcile_sum(struct qd_reconcile_counters *t, const struct qd_reconcile_counters *k)
{
	t->checked += k->checked;
	t->still_running += k->still_running;
	t->ended_gone += k->ended_gone;
	t->ended_finished += k->ended_finished;
	t->ended_failed += k->ended_failed;
	t->errors += k->errors;
	t->given_up += k->given_up;
	t->in_flight += k->in_flight;
	t->done = t->done && k->done;
	t->verify_checked += k->verify_checked;
	t->verify_running += k->verify_running;
	t->verify_ended += k->verify_ended;
	t->verify_errors += k->verify_errors;
	t->disc_started += k->disc_started;
	t->disc_found += k->disc_found;
	t->disc_not_found += k->disc_not_found;
	t->disc_timed_out += k->disc_timed_out;
	t->disc_full += k->disc_full;
	t->disc_joined += k->disc_joined;
	t->disc_latency_us_sum += k->disc_latency_us_sum;
	t->disc_in_flight += k->disc_in_flight;
}

static void
add_lcores(json_t *o, const struct qd_daemon *d)
{
	json_t *arr = json_array();
	struct qd_lcore_stats total;
	memset(&total, 0, sizeof(total));
	struct qd_tcp_counters tcp_total;
	uint32_t states_total[QD_TCP_STATE_MAX] = {0};
	memset(&tcp_total, 0, sizeof(tcp_total));
	struct qd_proxy_counters px_total;
	struct qd_proxy_gauges pg_total;
	memset(&px_total, 0, sizeof(px_total));
	memset(&pg_total, 0, sizeof(pg_total));
	/* done in the totals: every worker's reconciliation is over */
	struct qd_reconcile_counters rc_total = {.done = 1};
	for (unsigned int i = 0; i < d->workers_count; i++) {
		const struct qd_worker *w = d->workers[i];
		struct qd_lcore_stats s;
		qd_lcore_stats_read(&s, &w->stats);
		qd_lcore_stats_sum(&total, &s);
		json_t *l = counters_json(&s);
		json_object_set_new(l, "lcore", json_integer(w->conf.lcore_id));
		json_object_set_new(l, "queue", json_integer(w->conf.queue_id));
		json_object_set_new(l, "neigh_entries", json_integer(w->neigh.count));
		struct qd_tcp_counters k;
		uint32_t states[QD_TCP_STATE_MAX];
		qd_tcp_stack_read(w->tcp, &k, states);
#define QD_X(name) tcp_total.name += k.name;
		QD_TCP_COUNTERS(QD_X)
#undef QD_X
		for (unsigned int st = 0; st < QD_TCP_STATE_MAX; st++)
			states_total[st] += states[st];
		json_object_set_new(l, "tcp", tcp_json(&k, states));
		if (w->proxy != NULL) {
			struct qd_proxy_counters pk;
			struct qd_proxy_gauges pg;
			qd_proxy_read(w->proxy, &pk, &pg);
#define QD_X(name) px_total.name += pk.name;
			QD_PROXY_COUNTERS(QD_X)
#undef QD_X
			pg_total.clients += pg.clients;
			pg_total.backends += pg.backends;
			pg_total.backends_idle += pg.backends_idle;
			pg_total.head_buffers_free += pg.head_buffers_free;
			json_object_set_new(l, "proxy", proxy_json(&pk, &pg));
		}
		if (w->reconcile != NULL) {
			struct qd_reconcile_counters rk;
			qd_reconcile_read(w->reconcile, &rk);
			reconcile_sum(&rc_total, &rk);
			json_object_set_new(l, "reconcile", reconcile_json(&rk));
		}
		if (qd_fault_active(&w->fault))
			json_object_set_new(l, "fault", fault_json(&w->fault));
		json_array_append_new(arr, l);
	}
	json_object_set_new(o, "lcores", arr);
	json_t *totals = counters_json(&total);
	json_object_set_new(totals, "tcp", tcp_json(&tcp_total, states_total));
	json_object_set_new(totals, "proxy", proxy_json(&px_total, &pg_total));
	json_object_set_new(totals, "reconcile", reconcile_json(&rc_total));
	json_object_set_new(o, "totals", totals);
	json_object_set_new(o, "routes", routes_json(d, &px_total));
	json_object_set_new(o, "admission", qd_ctl_groups_json(d));
	json_object_set_new(o, "peers", qd_peer_sync_json(d));
	json_object_set_new(o, "state_log", qd_slog_json(d));
	json_object_set_new(o, "main",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "events_handled",
				      (json_int_t)d->stats.events_handled, "neigh_learned",
				      (json_int_t)d->stats.neigh_learned, "neigh_full",
				      (json_int_t)d->stats.neigh_full, "mailbox_full",
				      (json_int_t)d->stats.mailbox_full, "garp_rounds",
				      (json_int_t)d->stats.garp_rounds, "vip_garps",
				      (json_int_t)d->stats.vip_garps));
	const struct qd_ctl_counters *c = &d->ctl.counters;
	json_object_set_new(o, "control",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "accepted",
				      (json_int_t)c->accepted, "requests", (json_int_t)c->requests,
				      "errors", (json_int_t)c->errors, "refused_credentials",
				      (json_int_t)c->refused_credentials, "refused_busy",
				      (json_int_t)c->refused_busy, "too_large",
				      (json_int_t)c->too_large, "timeouts", (json_int_t)c->timeouts));
}

static int
cmd_stats(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(void)args, (void)err, (void)err_len;
	const struct qd_daemon *d = ctx;
	json_t *o = json_object();
	json_object_set_new(o, "port", port_json(d));
	unsigned int avail = rte_mempool_avail_count(d->pool);
	unsigned int size = d->pool->size;
	/* in_use counts mbufs outside the pool and its per-lcore caches: held in RX/TX
	 * rings, TCP queues and the fault layer. */
	json_object_set_new(o, "pool", json_pack("{s:I, s:I, s:I}", "size", (json_int_t)size,
						 "available", (json_int_t)avail, "in_use",
						 (json_int_t)(size - avail)));
	add_lcores(o, d);
	*data = o;
	return 0;
}

static int
cmd_status(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	const struct qd_daemon *d = ctx;
	json_t *vips = qd_ctl_vips_json(d);
	json_t *coords = json_array();
	for (unsigned int i = 0; i < d->cfg.coordinators_count; i++) {
		char addr[INET_ADDRSTRLEN], buf[INET_ADDRSTRLEN + 8];
		struct in_addr a = {.s_addr = d->cfg.coordinators[i].addr_be};
		inet_ntop(AF_INET, &a, addr, sizeof(addr));
		snprintf(buf, sizeof(buf), "%s:%u", addr, (unsigned int)d->cfg.coordinators[i].port);
		json_array_append_new(coords, json_string(buf));
	}
	json_t *services = json_pack("{s:i, s:i}", "echo_port", d->cfg.service_echo_port,
				     "discard_port", d->cfg.service_discard_port);
	int rc = cmd_stats(ctx, args, data, err, err_len);
	if (rc == 0)
		json_object_set_new(*data, "services", services);
	else
		json_decref(services);
	if (rc != 0)
		return rc;
	json_t *head = json_pack("{s:s, s:I, s:I, s:s, s:o, s:i, s:o, s:i, s:b, s:b, "
					    "s:i, s:s}",
					    "version", QD_VERSION, "pid", (json_int_t)getpid(),
					    "uptime_s",
					    (json_int_t)((qd_daemon_now_ms() - d->start_ms) / 1000),
					    "config", d->config_path, "vips", vips, "listen_port",
					    d->cfg.listen_port, "coordinators", coords, "workers",
					    d->workers_count, "idle", d->cfg.idle, "hugepages",
					    !d->no_huge, "neigh_entries", d->neigh.count,
					    "log_level", qd_config_log_level_name(d->cfg.log_level));
	if (head == NULL) {
		json_decref(*data);
		snprintf(err, err_len, "status: cannot build reply");
		return -ENOMEM;
	}
	json_object_update(*data, head);
	json_decref(head);
	/* "coordinators" above stays the configured addresses (a contract of its own); the
	 * live table is beside it. */
	json_object_set_new(*data, "coordinator_table", qd_ctl_coords_json(d));
	return 0;
}

static int
cmd_neigh(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(void)args, (void)err, (void)err_len;
	const struct qd_daemon *d = ctx;
	uint64_t now = qd_daemon_now_ms();
	json_t *arr = json_array();
	for (uint32_t i = 0; i < d->neigh.capacity; i++) {
		const struct qd_neigh_entry *e = &d->neigh.entries[i];
		if (e->state == QD_NEIGH_FREE)
			continue;
		json_array_append_new(
			arr, json_pack("{s:o, s:o, s:s, s:b, s:i, s:I}", "ip", ip_json(e->ip_be),
				       "mac", mac_json(e->mac), "state",
				       qd_neigh_state_name((enum qd_neigh_state)e->state), "pinned",
				       e->pinned, "probes", e->probes, "age_ms",
				       (json_int_t)(now - e->updated_ms)));
	}
	*data = json_pack("{s:o, s:i, s:i}", "entries", arr, "count", d->neigh.count, "capacity",
			  d->neigh.capacity);
	return 0;
}

const struct qd_ctl_command qd_daemon_commands[] = {
	{"status", cmd_status, "version, port, addresses, per-lcore and total counters"},
	{"stats", cmd_stats, "port, per-lcore and total counters only"},
	{"neigh", cmd_neigh, "the neighbour (ARP) table of the main lcore"},
	{"tcp_probe", qd_ctl_tcp_probe,
	 "start an echo-client probe: args target \"a.b.c.d:port\", connections, bytes"},
	{"tcp_probe_status", qd_ctl_tcp_probe_status, "how the last tcp_probe went"},
	{"coordinators", qd_ctl_coordinators,
	 "the coordinator table: health, drain flag, load and check counters of each"},
	{"drain", qd_ctl_drain,
	 "stop sending new queries to a coordinator: args coordinator \"a.b.c.d:port\""},
	{"undrain", qd_ctl_undrain,
	 "send new queries to a drained coordinator again: args coordinator \"a.b.c.d:port\""},
	{"coordinator_add", qd_ctl_coordinator_add,
	 "add a coordinator at run time (durable): args coordinator \"a.b.c.d:port\", weight"},
	{"coordinator_remove", qd_ctl_coordinator_remove,
	 "take a coordinator out at run time (durable): args coordinator \"a.b.c.d:port\""},
	{"vips", qd_ctl_vips,
	 "the VIP table: every address with its state, live client connections and since when"},
	{"vip_take", qd_ctl_vip_take,
	 "hold a VIP now (active, gratuitous ARP): args address \"a.b.c.d\""},
	{"vip_release", qd_ctl_vip_release,
	 "give a VIP up: args address \"a.b.c.d\", drain_ms (0 = at once)"},
	{"groups", qd_ctl_groups,
	 "admission control: every resource group's limit, running, queued and counters"},
	{"peers", qd_ctl_peers,
	 "active-active peers: membership, lag, messages, and each group's shares (escrow)"},
	{"reload_groups", qd_ctl_reload_groups,
	 "read resource-groups.json again (args path to name another file); all or nothing"},
};

const unsigned int qd_daemon_commands_count =
	sizeof(qd_daemon_commands) / sizeof(qd_daemon_commands[0]);
