/* The reconciliation of restored routes (dataplane/reconcile.c) against fake coordinators
 * on a second TCP stack, over a simulated wire with a fake clock, with a real route table:
 * every answer of GET /v1/query/ID (404, 410, FINISHED, FAILED, CANCELED, live states, a
 * 40 KB QueryInfo with nested "state" fields before the top-level one, close-delimited),
 * failures and retries up to giving up, checks in flight bounded, stripes of two workers,
 * dead coordinators skipped, routes that end or vanish during a check, and the stop once
 * nothing is flagged. The end callback stands in for qd_proxy_end_route(). Then the
 * verification of quiet routes (checked once quiet for a period, again a period after a
 * "running", ended when gone, never while used) and route discovery (every coordinator
 * asked, the one that has the id wins with its QueryInfo, all-404 and timeouts, one
 * discovery per id, the bound, the outcome never reported from inside the call). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "ipv4.h"
#include "mbuf_queue.h"
#include "query_info.h"
#include "reconcile.h"
#include "route_table.h"
#include "tcp.h"

#define POOL_SIZE 8191
#define WIRE_MAX 4096
#define WIRE_DELAY_US 100
#define SRV_PORTS 4
#define SRV_CONNS 96
#define SRV_BUF 2048
#define BASE_PORT 8080
#define SLOW_US 200000 /* ids starting "slow" are answered this late */
#define IDS_MAX 128
#define ENDS_MAX 128

static struct rte_mempool *pool;

/* ---- the fake coordinators ---------------------------------------------------- */

struct srv_port {
	uint16_t port;
	bool refuse;          /* not listening: connections refused */
	uint32_t accepted, live, live_max, requests;
	char last_head[512];
};

struct srv_conn {
	struct srv_port *sp;
	struct qd_tcp_conn *c;
	struct qd_outq out;
	uint32_t len;
	bool used;
	bool closing;         /* FIN once the output is out */
	bool fin_sent;
	uint64_t due_us;      /* a delayed answer to pending[] */
	char pending[256];
	char buf[SRV_BUF];
};

/* requests per id (every port) */
struct id_count {
	char id[48];
	uint32_t n;
};

/* ---- the wire ---------------------------------------------------------------- */

struct frame {
	struct rte_mbuf *m;
	uint64_t at_us;
	int to;
};

struct node {
	struct qd_tcp_stack *s;
	int id;
	struct rte_ether_addr mac;
	uint32_t ip;
};

struct end_call {
	char id[48];
	enum qd_proxy_end why;
	int rc;
};

struct sim {
	struct frame q[WIRE_MAX];
	unsigned int n;
	struct node nodes[2]; /* 0: the dispatcher, 1: the coordinators */
	uint64_t now_us;
	struct srv_port ports[SRV_PORTS];
	unsigned int ports_count;
	struct srv_conn conns[SRV_CONNS];
	struct id_count ids[IDS_MAX];
	unsigned int ids_count;
	uint32_t flaky_hits;
	struct qd_coord_table *table;
	struct qd_route_table *routes;
	struct qd_reconcile *r[2];
	struct end_call ends[ENDS_MAX];
	unsigned int ends_count;
	uint64_t in_flight_max;
};

static struct sim *current;

static void
tx(void *ctx, struct rte_mbuf *m)
{
	struct node *from = ctx;
	struct sim *sm = current;
	if (sm->n == WIRE_MAX) {
		rte_pktmbuf_free(m);
		return;
	}
	/* One flat segment, as a NIC would deliver it. */
	struct rte_mbuf *flat = rte_pktmbuf_alloc(pool);
	assert_non_null(flat);
	char *p = rte_pktmbuf_append(flat, (uint16_t)m->pkt_len);
	assert_non_null(p);
	const void *src = rte_pktmbuf_read(m, 0, m->pkt_len, p);
	if (src != p)
		memcpy(p, src, m->pkt_len);
	rte_pktmbuf_free(m);
	sm->q[sm->n++] = (struct frame){.m = flat, .at_us = sm->now_us + WIRE_DELAY_US,
					.to = 1 - from->id};
}

static bool
resolve(void *ctx, uint32_t ip, struct rte_ether_addr *mac)
{
	struct node *from = ctx;
	struct node *other = &current->nodes[1 - from->id];
	if (ip != other->ip)
		return false;
	*mac = other->mac;
	return true;
}

static void
deliver(struct sim *sm)
{
	for (unsigned int pass = 0; pass < WIRE_MAX; pass++) {
		unsigned int best = UINT32_MAX;
		for (unsigned int i = 0; i < sm->n; i++)
			if (sm->q[i].at_us <= sm->now_us &&
			    (best == UINT32_MAX || sm->q[i].at_us < sm->q[best].at_us))
				best = i;
		if (best == UINT32_MAX)
			return;
		struct frame f = sm->q[best];
		memmove(&sm->q[best], &sm->q[best + 1], (sm->n - best - 1) * sizeof(sm->q[0]));
		sm->n--;
		struct rte_ipv4_hdr *ip;
		enum qd_drop_reason reason;
		assert_int_equal(qd_ipv4_check(f.m, &ip, &reason), 0);
		qd_tcp_input(sm->nodes[f.to].s, f.m, ip, sm->now_us);
	}
}

static struct qd_tcp_conf
tcp_conf(void)
{
	return (struct qd_tcp_conf){
		.max_connections = 128, .syn_backlog = 64, .time_wait_max = 64,
		.time_wait_ms = 1000, .fin_wait2_ms = 2000, .sndbuf_bytes = 64 * 1024,
		.rcvbuf_bytes = 64 * 1024, .mss = 1460, .challenge_ack_per_s = 1000,
		.syn_cookies = false, .local_port_min = 40000, .local_port_max = 40999,
		.steer_index = 0, .steer_count = 1,
	};
}

/* ---- the fake coordinators' HTTP ---------------------------------------------- */

static void srv_on_accept(void *listener_app, struct qd_tcp_conn *c);
static void srv_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void srv_on_writable(struct qd_tcp_conn *c);
static void srv_on_peer_fin(struct qd_tcp_conn *c);
static void srv_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

static const struct qd_tcp_ops srv_ops = {
	.on_accept = srv_on_accept,
	.on_data = srv_on_data,
	.on_writable = srv_on_writable,
	.on_peer_fin = srv_on_peer_fin,
	.on_closed = srv_on_closed,
};

/* The listener's: a half-open connection reset before it is accepted reports to the
 * listener's ops with the listener's app (a srv_port), so those ops have no on_closed. */
static const struct qd_tcp_ops srv_listen_ops = {.on_accept = srv_on_accept};

static void
srv_on_accept(void *listener_app, struct qd_tcp_conn *c)
{
	struct srv_port *sp = listener_app;
	struct sim *sm = current;
	struct srv_conn *sc = NULL;
	for (unsigned int i = 0; i < SRV_CONNS && sc == NULL; i++)
		if (!sm->conns[i].used)
			sc = &sm->conns[i];
	assert_non_null(sc);
	memset(sc, 0, sizeof(*sc));
	sc->used = true;
	sc->sp = sp;
	sc->c = c;
	qd_tcp_conn_set_app(c, &srv_ops, sc);
	sp->accepted++;
	sp->live++;
	if (sp->live > sp->live_max)
		sp->live_max = sp->live;
}

static void
srv_flush(struct srv_conn *sc)
{
	if (sc->c == NULL)
		return;
	qd_outq_flush(&sc->out, sc->c, current->now_us);
	if (sc->closing && !sc->fin_sent && qd_outq_empty(&sc->out)) {
		sc->fin_sent = true;
		qd_tcp_shutdown(sc->c, current->now_us);
	}
}

static void
count_id(struct sim *sm, const char *id)
{
	for (unsigned int i = 0; i < sm->ids_count; i++) {
		if (strcmp(sm->ids[i].id, id) == 0) {
			sm->ids[i].n++;
			return;
		}
	}
	assert_true(sm->ids_count < IDS_MAX);
	snprintf(sm->ids[sm->ids_count].id, sizeof(sm->ids[0].id), "%s", id);
	sm->ids[sm->ids_count++].n = 1;
}

static uint32_t
requests_for(const struct sim *sm, const char *id)
{
	for (unsigned int i = 0; i < sm->ids_count; i++)
		if (strcmp(sm->ids[i].id, id) == 0)
			return sm->ids[i].n;
	return 0;
}

static bool
starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A QueryInfo the way Trino orders it, <pad> bytes of other fields before "state". */
static size_t
query_info(char *body, size_t cap, const char *id, const char *state, size_t pad)
{
	int n = snprintf(body, cap,
			 "{\"queryId\":\"%s\",\"session\":{\"queryId\":\"%s\",\"user\":\"u\","
			 "\"state\":\"RUNNING\",\"systemProperties\":{\"x\":\"\\\"state\\\":\\\"RUNNING\\\"\"}},",
			 id, id);
	assert_true(n > 0 && (size_t)n < cap);
	size_t len = (size_t)n;
	if (pad > 0) {
		/* nested stages with their own states, then a long string */
		n = snprintf(body + len, cap - len,
			     "\"outputStage\":{\"state\":\"RUNNING\",\"subStages\":[{\"state\":"
			     "\"FAILED\"},[\"state\",\"FINISHED\"]]},\"padding\":\"");
		len += (size_t)n;
		assert_true(len + pad + 256 < cap);
		for (size_t i = 0; i < pad; i++)
			body[len++] = (char)('a' + i % 26);
		body[len++] = '"';
		body[len++] = ',';
	}
	n = snprintf(body + len, cap - len,
		     "\"state\" : \"%s\",\"memoryPool\":\"general\",\"scheduled\":true,"
		     "\"queryStats\":{\"elapsedTime\":\"1s\"},\"finalQueryInfo\":false}",
		     state);
	len += (size_t)n;
	if (pad > 0) {
		/* and more after it: the reconciler does not need to read this */
		len--;
		n = snprintf(body + len, cap - len, ",\"tail\":\"");
		len += (size_t)n;
		for (size_t i = 0; i < pad / 2; i++)
			body[len++] = 'z';
		body[len++] = '"';
		body[len++] = '}';
	}
	body[len] = '\0';
	return len;
}

static void
srv_answer(struct srv_conn *sc, const char *id)
{
	struct sim *sm = current;
	static char body[96 * 1024];
	unsigned int status = 200;
	bool close_delimited = false;
	size_t blen;
	/* "onK_...": only coordinator K (port BASE_PORT + K) knows the query */
	bool elsewhere = starts(id, "on") && id[2] >= '0' && id[2] <= '9' && id[3] == '_' &&
			 sc->sp->port != BASE_PORT + (id[2] - '0');
	if (starts(id, "gone404") || elsewhere) {
		status = 404;
		blen = (size_t)snprintf(body, sizeof(body), "Query not found");
	} else if (starts(id, "gone410")) {
		status = 410;
		blen = 0;
		body[0] = '\0';
	} else if (starts(id, "e500")) {
		status = 500;
		blen = (size_t)snprintf(body, sizeof(body), "{}");
	} else if (starts(id, "flaky") && sm->flaky_hits++ == 0) {
		status = 503;
		blen = (size_t)snprintf(body, sizeof(body), "{}");
	} else if (starts(id, "nostate")) {
		blen = (size_t)snprintf(body, sizeof(body), "{\"queryId\":\"%s\",\"states\":\"FINISHED\"}",
					id);
	} else if (starts(id, "bigclose")) {
		close_delimited = true;
		blen = query_info(body, sizeof(body), id, "FAILED", 40 * 1024);
	} else if (starts(id, "big")) {
		blen = query_info(body, sizeof(body), id, "FINISHED", 40 * 1024);
	} else {
		const char *state = starts(id, "fin")	   ? "FINISHED"
				    : starts(id, "fail")   ? "FAILED"
				    : starts(id, "cancel") ? "CANCELED"
				    : starts(id, "queued") ? "QUEUED"
				    : starts(id, "weird")  ? "SOMETHING"
							   : "RUNNING";
		blen = query_info(body, sizeof(body), id, state, 0);
	}
	if (close_delimited)
		assert_int_equal(qd_outq_printf(&sc->out, pool,
						"HTTP/1.1 %u X\r\nContent-Type: application/json\r\n"
						"Connection: close\r\n\r\n",
						status),
				 0);
	else
		assert_int_equal(qd_outq_printf(&sc->out, pool,
						"HTTP/1.1 %u X\r\nContent-Type: application/json\r\n"
						"Content-Length: %zu\r\nConnection: close\r\n\r\n",
						status, blen),
				 0);
	assert_int_equal(qd_outq_write(&sc->out, pool, body, blen), 0);
	sc->closing = true;
	srv_flush(sc);
}

static void
srv_request(struct srv_conn *sc, const char *head)
{
	struct srv_port *sp = sc->sp;
	struct sim *sm = current;
	sp->requests++;
	size_t hlen = strnlen(head, sizeof(sp->last_head) - 1);
	memcpy(sp->last_head, head, hlen);
	sp->last_head[hlen] = '\0';
	char id[64] = "";
	if (sscanf(head, "GET /v1/query/%63[^ ] HTTP/1.1", id) != 1) {
		assert_int_equal(qd_outq_printf(&sc->out, pool,
						"HTTP/1.1 400 X\r\nContent-Length: 0\r\n\r\n"),
				 0);
		srv_flush(sc);
		return;
	}
	count_id(sm, id);
	if (starts(id, "hang"))
		return;
	if (starts(id, "slow")) {
		snprintf(sc->pending, sizeof(sc->pending), "%s", id + 4);
		sc->due_us = sm->now_us + SLOW_US;
		return;
	}
	srv_answer(sc, id);
}

static void
srv_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct srv_conn *sc = qd_tcp_conn_app(c);
	uint32_t n = rte_pktmbuf_pkt_len(m);
	assert_true(sc->len + n < SRV_BUF);
	const void *src = rte_pktmbuf_read(m, 0, n, sc->buf + sc->len);
	if (src != sc->buf + sc->len)
		memcpy(sc->buf + sc->len, src, n);
	sc->len += n;
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, n, current->now_us);
	sc->buf[sc->len] = '\0';
	char *end = strstr(sc->buf, "\r\n\r\n");
	if (end == NULL || sc->closing || sc->due_us != 0)
		return;
	*end = '\0';
	srv_request(sc, sc->buf);
	sc->len = 0;
}

static void
srv_on_writable(struct qd_tcp_conn *c)
{
	srv_flush(qd_tcp_conn_app(c));
}

static void
srv_on_peer_fin(struct qd_tcp_conn *c)
{
	struct srv_conn *sc = qd_tcp_conn_app(c);
	if (!sc->closing) {
		sc->closing = true;
		srv_flush(sc);
	}
}

static void
srv_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)why;
	struct srv_conn *sc = qd_tcp_conn_app(c);
	qd_outq_clear(&sc->out);
	sc->sp->live--;
	sc->used = false;
	sc->c = NULL;
}

static void
srv_start(struct sim *sm)
{
	struct qd_tcp_conf conf = tcp_conf();
	struct qd_siphash_key key = {7, 8};
	struct node *n = &sm->nodes[1];
	n->s = qd_tcp_stack_create(&conf, 0, pool, &n->mac, n->ip, &key, tx, resolve, n);
	assert_non_null(n->s);
	for (unsigned int i = 0; i < sm->ports_count; i++)
		if (!sm->ports[i].refuse)
			assert_int_equal(qd_tcp_listen(n->s, sm->ports[i].port, &srv_listen_ops,
						       &sm->ports[i]),
					 0);
}

/* ---- the simulation ------------------------------------------------------------ */

static int
end_cb(void *ctx, const char *id, size_t len, enum qd_proxy_end why)
{
	struct sim *sm = ctx;
	/* what qd_proxy_end_route does to the table: the route ends, exactly once */
	int rc = qd_route_end(sm->routes, id, len, sm->now_us);
	assert_true(sm->ends_count < ENDS_MAX);
	struct end_call *e = &sm->ends[sm->ends_count++];
	snprintf(e->id, sizeof(e->id), "%.*s", (int)len, id);
	e->why = why;
	e->rc = rc;
	return rc;
}

static const struct end_call *
end_of(const struct sim *sm, const char *id)
{
	const struct end_call *found = NULL;
	for (unsigned int i = 0; i < sm->ends_count; i++) {
		if (strcmp(sm->ends[i].id, id) == 0) {
			assert_null(found); /* once */
			found = &sm->ends[i];
		}
	}
	return found;
}

static void
sim_init(struct sim *sm, unsigned int coords)
{
	memset(sm, 0, sizeof(*sm));
	current = sm;
	sm->now_us = 5000000;
	for (int i = 0; i < 2; i++) {
		struct node *n = &sm->nodes[i];
		n->id = i;
		n->mac = (struct rte_ether_addr){{2, 0, 0, 0, 0, (uint8_t)(i + 1)}};
		n->ip = htonl(0x0a000001 + (uint32_t)i);
	}
	struct qd_tcp_conf conf = tcp_conf();
	struct qd_siphash_key key = {1, 2};
	struct node *d = &sm->nodes[0];
	d->s = qd_tcp_stack_create(&conf, 0, pool, &d->mac, d->ip, &key, tx, resolve, d);
	assert_non_null(d->s);
	sm->table = rte_zmalloc("coords", sizeof(*sm->table), RTE_CACHE_LINE_SIZE);
	assert_non_null(sm->table);
	sm->table->count = coords;
	sm->ports_count = coords;
	for (unsigned int i = 0; i < coords; i++) {
		sm->ports[i] = (struct srv_port){.port = (uint16_t)(BASE_PORT + i)};
		sm->table->c[i].ip_be = sm->nodes[1].ip;
		sm->table->c[i].port = (uint16_t)(BASE_PORT + i);
		sm->table->c[i].weight = 1;
	}
	static unsigned int tables;
	char name[32];
	snprintf(name, sizeof(name), "rec%u", tables++);
	sm->routes = qd_route_table_create(name, 1024, 1, SOCKET_ID_ANY);
	assert_non_null(sm->routes);
	assert_int_equal(qd_route_thread_register(sm->routes, 0), 0);
}

static struct qd_reconcile_conf
rec_conf(struct sim *sm)
{
	return (struct qd_reconcile_conf){.worker_index = 0, .worker_count = 1,
					  .max_in_flight = 16, .timeout_ms = 2000,
					  .retry_ms = 1000, .max_attempts = 5, .end = end_cb,
					  .end_ctx = sm};
}

static void
sim_reconcile(struct sim *sm, unsigned int k, const struct qd_reconcile_conf *conf)
{
	sm->r[k] = qd_reconcile_create(conf, sm->nodes[0].s, sm->routes, sm->table, NULL, 0);
	assert_non_null(sm->r[k]);
}

static int32_t
position(struct sim *sm, const char *id)
{
	char key[QD_ROUTE_KEY_LEN] = {0};
	memcpy(key, id, strlen(id));
	return rte_hash_lookup(sm->routes->hash, key);
}

static struct qd_route_entry *
entry(struct sim *sm, const char *id)
{
	int32_t pos = position(sm, id);
	assert_true(pos >= 0);
	return &sm->routes->entries[pos];
}

/* A route as the replay leaves it: inserted with an admission slot, then flagged. */
static void
restore(struct sim *sm, const char *id, uint16_t coord)
{
	assert_int_equal(qd_route_insert_adm(sm->routes, id, strlen(id), coord, 0, sm->now_us, 0,
					     0),
			 0);
	__atomic_store_n(&entry(sm, id)->restored, 1, __ATOMIC_RELEASE);
}

static uint8_t
flag_of(struct sim *sm, const char *id)
{
	return __atomic_load_n(&entry(sm, id)->restored, __ATOMIC_ACQUIRE);
}

static bool
ended(struct sim *sm, const char *id)
{
	return __atomic_load_n(&entry(sm, id)->ended, __ATOMIC_ACQUIRE) != 0;
}

static void
sim_step(struct sim *sm)
{
	sm->now_us += 1000;
	/* a worker's loop: nothing of the last iteration holds an entry */
	qd_route_quiescent(sm->routes, 0);
	for (unsigned int k = 0; k < 2; k++)
		if (sm->r[k] != NULL)
			qd_reconcile_set_now(sm->r[k], sm->now_us);
	deliver(sm);
	for (unsigned int i = 0; i < SRV_CONNS; i++) {
		struct srv_conn *sc = &sm->conns[i];
		if (sc->used && sc->due_us != 0 && sm->now_us >= sc->due_us) {
			sc->due_us = 0;
			srv_answer(sc, sc->pending);
		}
	}
	qd_tcp_timers(sm->nodes[0].s, sm->now_us);
	qd_tcp_timers(sm->nodes[1].s, sm->now_us);
	for (unsigned int k = 0; k < 2; k++) {
		if (sm->r[k] == NULL)
			continue;
		qd_reconcile_poll(sm->r[k], sm->now_us);
		struct qd_reconcile_counters c;
		qd_reconcile_read(sm->r[k], &c);
		if (c.in_flight > sm->in_flight_max)
			sm->in_flight_max = c.in_flight;
	}
}

static void
run_ms(struct sim *sm, unsigned int ms)
{
	for (unsigned int i = 0; i < ms; i++)
		sim_step(sm);
}

static struct qd_reconcile_counters
counters(struct sim *sm, unsigned int k)
{
	struct qd_reconcile_counters c;
	qd_reconcile_read(sm->r[k], &c);
	return c;
}

/* Milliseconds until reconciler <k> is done, at most <max_ms> (then fail). */
static unsigned int
run_until_done(struct sim *sm, unsigned int k, unsigned int max_ms)
{
	for (unsigned int ms = 0; ms <= max_ms; ms++) {
		if (counters(sm, k).done)
			return ms;
		sim_step(sm);
	}
	struct qd_reconcile_counters c = counters(sm, k);
	fail_msg("reconciler %u not done after %u ms: checked %lu errors %lu in flight %lu", k,
		 max_ms, (unsigned long)c.checked, (unsigned long)c.errors,
		 (unsigned long)c.in_flight);
	return 0;
}

static uint32_t
client_connections(const struct sim *sm)
{
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(sm->nodes[0].s, &k, states);
	uint32_t n = 0;
	for (unsigned int i = QD_TCP_LISTEN; i < QD_TCP_STATE_MAX; i++)
		n += states[i];
	return n;
}

static void
sim_fini(struct sim *sm)
{
	/* The stacks first: the reconciler's connections go with its stack. */
	for (unsigned int i = 0; i < sm->n; i++)
		rte_pktmbuf_free(sm->q[i].m);
	sm->n = 0;
	qd_tcp_stack_destroy(sm->nodes[0].s);
	qd_tcp_stack_destroy(sm->nodes[1].s);
	for (unsigned int i = 0; i < SRV_CONNS; i++)
		qd_outq_clear(&sm->conns[i].out);
	for (unsigned int k = 0; k < 2; k++)
		qd_reconcile_destroy(sm->r[k]);
	qd_route_thread_unregister(sm->routes, 0);
	qd_route_table_destroy(sm->routes);
	rte_free(sm->table);
	assert_int_equal(rte_mempool_avail_count(pool), POOL_SIZE);
	current = NULL;
}

static struct sim sim_mem; /* too big for the stack of a cmocka test */

/* What the found callback heard (it stands in for qd_proxy_discovered). */
struct found_call {
	char id[48];
	int coord;
	char state[QD_QINFO_STATE_MAX];
	char user[QD_QINFO_NAME_MAX];
};
static struct found_call founds[16];
static unsigned int founds_count;
static bool in_discover;

static void
found_cb(void *ctx, const char *id, size_t len, int coord, const struct qd_qinfo *qi)
{
	(void)ctx;
	assert_false(in_discover); /* never from inside qd_reconcile_discover() */
	assert_true(founds_count < 16);
	struct found_call *f = &founds[founds_count++];
	snprintf(f->id, sizeof(f->id), "%.*s", (int)len, id);
	f->coord = coord;
	assert_true((coord >= 0) == (qi != NULL));
	snprintf(f->state, sizeof(f->state), "%s", qi != NULL ? qi->state : "");
	snprintf(f->user, sizeof(f->user), "%s", qi != NULL ? qi->user : "");
}

static int
discover(struct sim *sm, const char *id)
{
	in_discover = true;
	int rc = qd_reconcile_discover(sm->r[0], id, strlen(id));
	in_discover = false;
	return rc;
}

static const struct found_call *
found_of(const char *id)
{
	const struct found_call *f = NULL;
	for (unsigned int i = 0; i < founds_count; i++) {
		if (strcmp(founds[i].id, id) == 0) {
			assert_null(f); /* once */
			f = &founds[i];
		}
	}
	return f;
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_outcomes(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 1);
	srv_start(sm);
	static const struct {
		const char *id;
		int why; /* -1: still running */
	} cases[] = {
		{"gone404_20261125_000001_aaaaa", QD_PROXY_END_GONE},
		{"gone410_20261125_000002_aaaaa", QD_PROXY_END_GONE},
		{"fin_20261125_000003_aaaaa", QD_PROXY_END_FINISHED},
		{"fail_20261125_000004_aaaaa", QD_PROXY_END_FAILED},
		{"cancel_20261125_000005_aaaaa", QD_PROXY_END_FAILED},
		{"run_20261125_000006_aaaaa", -1},
		{"queued_20261125_000007_aaaaa", -1},
		{"big_20261125_000008_aaaaa", QD_PROXY_END_FINISHED},
		{"bigclose_20261125_000009_aaaaa", QD_PROXY_END_FAILED},
	};
	const size_t ncases = sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < ncases; i++)
		restore(sm, cases[i].id, 0);
	/* Not for the reconciliation: a route that was not restored, one that ended, and an
	 * alias (its query is checked under its own id). */
	const char *plain = "fin_plain_not_restored";
	assert_int_equal(qd_route_insert(sm->routes, plain, strlen(plain), 0, 0, sm->now_us), 0);
	const char *over = "fin_ended_before";
	restore(sm, over, 0);
	assert_int_equal(qd_route_end(sm->routes, over, strlen(over), sm->now_us), 0);
	const char *alias = "qdq_1_alias";
	assert_int_equal(qd_route_insert_alias(sm->routes, alias, strlen(alias), cases[5].id,
					       strlen(cases[5].id), sm->now_us),
			 0);
	__atomic_store_n(&entry(sm, alias)->restored, 1, __ATOMIC_RELEASE);

	struct qd_reconcile_conf conf = rec_conf(sm);
	sim_reconcile(sm, 0, &conf);
	unsigned int ms = run_until_done(sm, 0, 500);
	print_message("done after %u ms\n", ms);

	for (size_t i = 0; i < ncases; i++) {
		const struct end_call *e = end_of(sm, cases[i].id);
		assert_int_equal(requests_for(sm, cases[i].id), 1);
		if (cases[i].why < 0) {
			assert_null(e);
			assert_int_equal(flag_of(sm, cases[i].id), 0);
			assert_false(ended(sm, cases[i].id));
		} else {
			if (e == NULL)
				fail_msg("%s was not ended", cases[i].id);
			assert_int_equal(e->why, cases[i].why);
			assert_int_equal(e->rc, 0);
			assert_true(ended(sm, cases[i].id));
		}
	}
	assert_int_equal(sm->ends_count, 7);
	assert_int_equal(requests_for(sm, plain), 0);
	assert_int_equal(requests_for(sm, over), 0);
	assert_int_equal(requests_for(sm, alias), 0);
	assert_int_equal(sm->ports[0].requests, ncases);
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(c.checked, ncases);
	assert_int_equal(c.still_running, 2);
	assert_int_equal(c.ended_gone, 2);
	assert_int_equal(c.ended_finished, 2);
	assert_int_equal(c.ended_failed, 3);
	assert_int_equal(c.errors, 0);
	assert_int_equal(c.given_up, 0);
	assert_int_equal(c.in_flight, 0);
	assert_int_equal(c.done, 1);
	/* the request, as a coordinator sees it */
	const char *h = sm->ports[0].last_head;
	assert_non_null(strstr(h, "GET /v1/query/"));
	assert_non_null(strstr(h, " HTTP/1.1\r\n"));
	assert_non_null(strstr(h, "Host: 10.0.0.2:8080\r\n"));
	assert_non_null(strstr(h, "User-Agent: qdispatch-reconcile\r\n"));
	assert_non_null(strstr(h, "Connection: close"));
	/* Done for good: nothing more is asked, even of a route flagged now. */
	__atomic_store_n(&entry(sm, cases[5].id)->restored, 1, __ATOMIC_RELEASE);
	run_ms(sm, 3000);
	assert_int_equal(sm->ports[0].requests, ncases);
	assert_int_equal(client_connections(sm), 0);
	assert_int_equal(sm->ports[0].live, 0);
	sim_fini(sm);
}

static void
test_errors_and_give_up(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 2);
	sm->ports[1].refuse = true;
	srv_start(sm);
	const char *hang = "hang_1", *e500 = "e500_1", *nostate = "nostate_1",
		   *refused = "refused_1", *flaky = "flaky_1", *weird = "weird_1";
	restore(sm, hang, 0);
	restore(sm, e500, 0);
	restore(sm, nostate, 0);
	restore(sm, refused, 1);
	restore(sm, flaky, 0);
	restore(sm, weird, 0);
	struct qd_reconcile_conf conf = rec_conf(sm);
	conf.timeout_ms = 500;
	conf.retry_ms = 300;
	conf.max_attempts = 3;
	sim_reconcile(sm, 0, &conf);
	/* The flaky one answers 503 once, then RUNNING after the back-off. */
	run_ms(sm, 200);
	assert_int_equal(requests_for(sm, flaky), 1);
	assert_int_equal(flag_of(sm, flaky), 1);
	run_ms(sm, 200);
	assert_int_equal(requests_for(sm, flaky), 2);
	assert_int_equal(flag_of(sm, flaky), 0);
	/* The others fail three times each, then are given up: 3 x 500 ms + 2 x 300 ms of
	 * back-off for the hung one. */
	unsigned int ms = run_until_done(sm, 0, 4000);
	print_message("done after %u more ms\n", ms);
	assert_in_range(ms, 1500, 1900);
	assert_int_equal(requests_for(sm, hang), 3);
	assert_int_equal(requests_for(sm, e500), 3);
	assert_int_equal(requests_for(sm, nostate), 3);
	assert_int_equal(requests_for(sm, weird), 3);
	assert_int_equal(sm->ports[1].accepted, 0);
	const char *gave_up[] = {hang, e500, nostate, refused, weird};
	for (unsigned int i = 0; i < 5; i++) {
		assert_int_equal(flag_of(sm, gave_up[i]), 0);
		assert_false(ended(sm, gave_up[i]));
	}
	assert_int_equal(sm->ends_count, 0);
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(c.checked, 1);
	assert_int_equal(c.still_running, 1);
	assert_int_equal(c.errors, 5 * 3 + 1);
	assert_int_equal(c.given_up, 5);
	assert_int_equal(c.in_flight, 0);
	run_ms(sm, 3000);
	assert_int_equal(client_connections(sm), 0);
	assert_int_equal(sm->ports[0].live, 0);
	sim_fini(sm);
}

static void
test_in_flight_bounded(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 1);
	srv_start(sm);
	char id[48];
	for (unsigned int i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "slow%s_%02u", i % 2 ? "run" : "fin", i);
		restore(sm, id, 0);
	}
	struct qd_reconcile_conf conf = rec_conf(sm);
	conf.max_in_flight = 4;
	sim_reconcile(sm, 0, &conf);
	/* 40 answers of 200 ms, 4 at a time: ten rounds. */
	unsigned int ms = run_until_done(sm, 0, 5000);
	print_message("done after %u ms\n", ms);
	assert_in_range(ms, 2000, 2300);
	assert_int_equal(sm->in_flight_max, 4);
	assert_true(sm->ports[0].live_max <= 4);
	for (unsigned int i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "slow%s_%02u", i % 2 ? "run" : "fin", i);
		assert_int_equal(requests_for(sm, id), 1);
		if (i % 2)
			assert_int_equal(flag_of(sm, id), 0);
		else
			assert_true(ended(sm, id));
	}
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(c.checked, 40);
	assert_int_equal(c.still_running, 20);
	assert_int_equal(c.ended_finished, 20);
	sim_fini(sm);
}

static void
test_stripes_and_dead(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 2);
	srv_start(sm);
	/* Coordinator 1 is dead: its routes wait (the sweep ends them). */
	sm->table->c[1].health = QD_COORD_DOWN;
	char id[48];
	unsigned int mine[2] = {0, 0};
	for (unsigned int i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "run_%02u", i);
		restore(sm, id, 0);
		mine[position(sm, id) % 2]++;
	}
	for (unsigned int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "fin_dead_%02u", i);
		restore(sm, id, 1);
	}
	assert_true(mine[0] > 0 && mine[1] > 0);
	/* Two workers, each its own stripe. */
	struct qd_reconcile_conf conf = rec_conf(sm);
	conf.worker_count = 2;
	sim_reconcile(sm, 0, &conf);
	conf.worker_index = 1;
	sim_reconcile(sm, 1, &conf);
	run_ms(sm, 1000);
	for (unsigned int i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "run_%02u", i);
		assert_int_equal(requests_for(sm, id), 1);
		assert_int_equal(flag_of(sm, id), 0);
	}
	for (unsigned int k = 0; k < 2; k++) {
		struct qd_reconcile_counters c = counters(sm, k);
		assert_int_equal(c.checked, mine[k]);
		assert_int_equal(c.still_running, mine[k]);
		assert_int_equal(c.done, 0); /* the dead coordinator's routes are still flagged */
	}
	assert_int_equal(sm->ports[1].accepted, 0);
	/* The sweep ends half of them; the coordinator comes back for the rest. */
	for (unsigned int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "fin_dead_%02u", i);
		assert_int_equal(qd_route_end(sm->routes, id, strlen(id), sm->now_us), 0);
	}
	sm->table->c[1].health = QD_COORD_UP;
	run_until_done(sm, 0, 1000);
	run_until_done(sm, 1, 1000);
	for (unsigned int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "fin_dead_%02u", i);
		assert_int_equal(requests_for(sm, id), i < 5 ? 0 : 1);
		assert_true(ended(sm, id));
	}
	assert_int_equal(sm->ends_count, 5);
	struct qd_reconcile_counters c0 = counters(sm, 0), c1 = counters(sm, 1);
	assert_int_equal(c0.ended_finished + c1.ended_finished, 5);
	assert_int_equal(c0.checked + c1.checked, 35);
	sim_fini(sm);
}

static void
test_route_changes_during_check(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 1);
	srv_start(sm);
	const char *vanish = "hang_vanish", *raced = "slowfin_raced", *big = "big_1";
	restore(sm, vanish, 0);
	restore(sm, raced, 0);
	restore(sm, big, 0);
	struct qd_reconcile_conf conf = rec_conf(sm);
	conf.timeout_ms = 300;
	conf.retry_ms = 200;
	sim_reconcile(sm, 0, &conf);
	run_ms(sm, 50);
	assert_int_equal(requests_for(sm, vanish), 1);
	assert_int_equal(requests_for(sm, raced), 1);
	/* While asked: one route is removed, the other ends through a client's last page. */
	assert_int_equal(qd_route_remove(sm->routes, vanish, strlen(vanish)), 0);
	assert_int_equal(qd_route_end(sm->routes, raced, strlen(raced), sm->now_us), 0);
	run_until_done(sm, 0, 2000);
	/* The vanished one timed out once and was not asked again, nor given up (the flag
	 * went with the route); the raced one's end lost the race and counted nothing. */
	assert_int_equal(requests_for(sm, vanish), 1);
	const struct end_call *e = end_of(sm, raced);
	assert_non_null(e);
	assert_int_equal(e->rc, -EALREADY);
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(c.errors, 1);
	assert_int_equal(c.given_up, 0);
	assert_int_equal(c.checked, 2);
	assert_int_equal(c.ended_finished, 1); /* big_1 only */
	assert_true(ended(sm, big));
	run_ms(sm, 3000);
	assert_int_equal(client_connections(sm), 0);
	sim_fini(sm);
}

static void
test_nothing_and_bad_conf(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 1);
	srv_start(sm);
	const char *plain = "run_plain";
	assert_int_equal(qd_route_insert(sm->routes, plain, strlen(plain), 0, 0, sm->now_us), 0);
	struct qd_reconcile_conf conf = rec_conf(sm);
	conf.worker_index = 1;
	assert_null(qd_reconcile_create(&conf, sm->nodes[0].s, sm->routes, sm->table, NULL, 0));
	conf = rec_conf(sm);
	conf.end = NULL; /* neither a callback nor a proxy */
	assert_null(qd_reconcile_create(&conf, sm->nodes[0].s, sm->routes, sm->table, NULL, 0));
	conf = rec_conf(sm);
	conf.max_in_flight = QD_RECONCILE_IN_FLIGHT_MAX + 1;
	assert_null(qd_reconcile_create(&conf, sm->nodes[0].s, sm->routes, sm->table, NULL, 0));
	/* Defaults for the zeros. */
	conf = (struct qd_reconcile_conf){.worker_count = 1, .end = end_cb, .end_ctx = sm};
	sim_reconcile(sm, 0, &conf);
	/* Nothing flagged: one pass over the stripe and it stops. */
	unsigned int ms = run_until_done(sm, 0, 200);
	print_message("an empty table of %u positions: done after %u ms\n",
		      sm->routes->positions, ms);
	assert_int_equal(sm->ports[0].accepted, 0);
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(c.checked + c.errors + c.given_up + c.in_flight, 0);
	qd_reconcile_destroy(sm->r[0]);
	/* No coordinators: done from the start. */
	sm->r[0] = qd_reconcile_create(&conf, sm->nodes[0].s, sm->routes, NULL, NULL, 0);
	assert_non_null(sm->r[0]);
	assert_int_equal(counters(sm, 0).done, 1);
	/* A restored route of a coordinator that is not in the table: given up at once. */
	qd_reconcile_destroy(sm->r[0]);
	const char *stray = "fin_stray";
	restore(sm, stray, 7);
	sim_reconcile(sm, 0, &conf);
	run_until_done(sm, 0, 200);
	assert_int_equal(counters(sm, 0).given_up, 1);
	assert_int_equal(flag_of(sm, stray), 0);
	assert_int_equal(sm->ports[0].accepted, 0);
	sim_fini(sm);
}

static void
test_verify_quiet(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 1);
	srv_start(sm);
	const char *run = "run_v1", *fin = "fin_v1", *busy = "fin_busy";
	assert_int_equal(qd_route_insert(sm->routes, run, strlen(run), 0, 0, sm->now_us), 0);
	assert_int_equal(qd_route_insert(sm->routes, fin, strlen(fin), 0, 0, sm->now_us), 0);
	assert_int_equal(qd_route_insert(sm->routes, busy, strlen(busy), 0, 0, sm->now_us), 0);
	struct qd_reconcile_conf conf = rec_conf(sm);
	/* more than the second by which a route's last use is kept (route_table.c) */
	conf.verify_after_us = 1500000;
	sim_reconcile(sm, 0, &conf);
	/* before a period nothing is asked; the busy route is used every 50 ms throughout */
	for (unsigned int ms = 0; ms < 3800; ms++) {
		if (ms % 50 == 0)
			assert_true(qd_route_lookup(sm->routes, busy, strlen(busy), sm->now_us) >= 0);
		if (ms == 1450)
			assert_int_equal(sm->ports[0].requests, 0);
		sim_step(sm);
	}
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(requests_for(sm, busy), 0);
	assert_int_equal(requests_for(sm, fin), 1);
	assert_true(ended(sm, fin));
	assert_int_equal(end_of(sm, fin)->why, QD_PROXY_END_FINISHED);
	assert_false(ended(sm, run));
	/* running: asked once per period (at ~1.5 s and ~3.0 s, plus up to a walk's pass) */
	assert_int_equal(requests_for(sm, run), 2);
	assert_int_equal(c.verify_ended, 1);
	assert_int_equal(c.verify_running, 2);
	assert_int_equal(c.verify_checked, 3);
	assert_int_equal(c.checked, 0); /* not the restored routes' counters */
	assert_int_equal(c.done, 1);    /* nothing restored: that part is over */
	run_ms(sm, 2000);
	assert_int_equal(requests_for(sm, run), 3);
	/* an ended route is not verified: everything closes */
	assert_int_equal(qd_route_end(sm->routes, run, strlen(run), sm->now_us), 0);
	run_ms(sm, 3000);
	assert_int_equal(requests_for(sm, run), 3);
	assert_int_equal(client_connections(sm), 0);
	sim_fini(sm);
}

static void
test_discovery(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	sim_init(sm, 3);
	srv_start(sm);
	founds_count = 0;
	struct qd_reconcile_conf conf = rec_conf(sm);
	conf.discovery_max = 3;
	conf.discovery_timeout_ms = 300;
	conf.found = found_cb;
	conf.found_ctx = sm;
	sim_reconcile(sm, 0, &conf);
	run_ms(sm, 1); /* the clock the reconciler sees (a worker sets it every loop) */
	/* found on coordinator 1 of 3 (the others say 404), with its QueryInfo */
	const char *q1 = "on1_20261125_000001_aaaaa";
	assert_int_equal(discover(sm, q1), 0);
	assert_int_equal(discover(sm, q1), -EALREADY); /* one discovery per id */
	assert_int_equal(founds_count, 0);
	run_ms(sm, 20);
	const struct found_call *f = found_of(q1);
	assert_non_null(f);
	assert_int_equal(f->coord, 1);
	assert_string_equal(f->state, "RUNNING");
	assert_string_equal(f->user, "u");
	assert_int_equal(requests_for(sm, q1), 3); /* every coordinator was asked */
	/* nobody has it: all 404 */
	const char *nowhere = "gone404_nowhere";
	assert_int_equal(discover(sm, nowhere), 0);
	run_ms(sm, 20);
	assert_non_null(found_of(nowhere));
	assert_int_equal(found_of(nowhere)->coord, -1);
	/* the answer from the one that has it arrives late: still found */
	const char *late = "slowon2_late";
	assert_int_equal(discover(sm, late), 0);
	run_ms(sm, 100);
	assert_null(found_of(late));
	run_ms(sm, 150);
	assert_non_null(found_of(late));
	assert_int_equal(found_of(late)->coord, 2);
	/* the bound: three that hang fill it, a fourth is refused; they time out */
	assert_int_equal(discover(sm, "hang_a"), 0);
	assert_int_equal(discover(sm, "hang_b"), 0);
	assert_int_equal(discover(sm, "hang_c"), 0);
	assert_int_equal(discover(sm, "on0_d"), -ENOSPC);
	run_ms(sm, 250);
	assert_null(found_of("hang_a"));
	run_ms(sm, 100);
	assert_int_equal(found_of("hang_a")->coord, -1);
	assert_int_equal(found_of("hang_c")->coord, -1);
	/* a dead coordinator is not asked; none alive: nothing to ask */
	__atomic_store_n(&sm->table->c[0].health, QD_COORD_DOWN, __ATOMIC_RELAXED);
	assert_int_equal(discover(sm, "on0_dead"), 0);
	run_ms(sm, 20);
	assert_int_equal(requests_for(sm, "on0_dead"), 2);
	assert_int_equal(found_of("on0_dead")->coord, -1);
	__atomic_store_n(&sm->table->c[1].health, QD_COORD_DOWN, __ATOMIC_RELAXED);
	__atomic_store_n(&sm->table->c[2].health, QD_COORD_DOWN, __ATOMIC_RELAXED);
	assert_int_equal(discover(sm, "on1_none"), -ENOENT);
	assert_int_equal(discover(sm, ""), -EINVAL);
	struct qd_reconcile_counters c = counters(sm, 0);
	assert_int_equal(c.disc_started, 7);
	assert_int_equal(c.disc_found, 2);
	assert_int_equal(c.disc_not_found, 2);
	assert_int_equal(c.disc_timed_out, 3);
	assert_int_equal(c.disc_joined, 1);
	assert_int_equal(c.disc_full, 1);
	assert_int_equal(c.disc_in_flight, 0);
	assert_true(c.disc_latency_us_sum >= 3 * 300000u);
	assert_int_equal(founds_count, 7);
	run_ms(sm, 3000);
	assert_int_equal(client_connections(sm), 0);
	sim_fini(sm);
	/* discovery off */
	sim_init(sm, 1);
	srv_start(sm);
	conf = rec_conf(sm);
	sim_reconcile(sm, 0, &conf);
	assert_int_equal(discover(sm, "on0_x"), -ENOTSUP);
	sim_fini(sm);
}

int
main(int argc, char **argv)
{
	(void)argc;
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
			    "--no-telemetry", "-l", "0", "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0)
		return 1;
	pool = rte_pktmbuf_pool_create("test", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (pool == NULL)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_errors_and_give_up),
		cmocka_unit_test(test_in_flight_bounded),
		cmocka_unit_test(test_stripes_and_dead),
		cmocka_unit_test(test_route_changes_during_check),
		cmocka_unit_test(test_nothing_and_bad_conf),
		cmocka_unit_test(test_verify_quiet),
		cmocka_unit_test(test_discovery),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return rc;
}
