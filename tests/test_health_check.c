/* The coordinator health checker (dataplane/health_check.c) against fake coordinators on a
 * second TCP stack, over a simulated wire with a fake clock: UNKNOWN -> UP, fall and rise,
 * refused connections, timeouts, bad answers, loads stored, one check in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "health_check.h"
#include "ipv4.h"
#include "mbuf_queue.h"
#include "tcp.h"

#define POOL_SIZE 8191
#define WIRE_MAX 4096
#define WIRE_DELAY_US 100
#define SRV_PORTS 8
#define SRV_CONNS 64
#define SRV_BUF 2048
#define BASE_PORT 8080

static struct rte_mempool *pool;

/* ---- the fake coordinators ---------------------------------------------------- */

enum srv_mode {
	M_OK = 0,
	M_HANG,        /* accept, never answer */
	M_503,         /* /v1/info answers 503 */
	M_STARTING,    /* /v1/info says "starting": true */
	M_NO_RUNNING,  /* /v1/cluster without runningQueries */
	M_BIG,         /* /v1/info body of 9000 bytes */
	M_CLOSE_INFO,  /* /v1/info answered with Connection: close */
};

struct srv_port {
	uint16_t port;
	int mode;
	uint32_t running, queued;
	uint32_t accepted, live, live_max, requests;
	uint64_t first_accept_us;
	char last_head[512];
};

struct srv_conn {
	struct srv_port *sp;
	struct qd_tcp_conn *c;
	struct qd_outq out;
	uint32_t len;
	bool used;
	bool closing;
	char buf[SRV_BUF];
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

struct sim {
	struct frame q[WIRE_MAX];
	unsigned int n;
	struct node nodes[2]; /* 0: the dispatcher, 1: the coordinators */
	uint64_t now_us;
	struct srv_port ports[SRV_PORTS];
	unsigned int ports_count;
	struct srv_conn conns[SRV_CONNS];
	struct qd_coord_table *table;
	struct qd_health *h;
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
		.max_connections = 128, .syn_backlog = 32, .time_wait_max = 32,
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
	if (sp->accepted++ == 0)
		sp->first_accept_us = sm->now_us;
	sp->live++;
	if (sp->live > sp->live_max)
		sp->live_max = sp->live;
}

static void
srv_respond(struct srv_conn *sc, const char *head_in)
{
	struct srv_port *sp = sc->sp;
	struct sim *sm = current;
	sp->requests++;
	size_t hlen = strnlen(head_in, sizeof(sp->last_head) - 1);
	memcpy(sp->last_head, head_in, hlen);
	sp->last_head[hlen] = '\0';
	if (sp->mode == M_HANG)
		return;
	bool info = strncmp(head_in, "GET /v1/info ", 13) == 0;
	bool cluster = strncmp(head_in, "GET /v1/cluster ", 16) == 0;
	bool close = strstr(head_in, "Connection: close") != NULL;
	static char body[9100];
	unsigned int status = 200;
	if (info && sp->mode == M_503) {
		status = 503;
		snprintf(body, sizeof(body), "{\"error\":\"busy\"}");
	} else if (info && sp->mode == M_BIG) {
		memset(body, ' ', 9000);
		body[0] = '{';
		body[8999] = '}';
		body[9000] = '\0';
	} else if (info) {
		snprintf(body, sizeof(body),
			 "{\"nodeVersion\":{\"version\":\"fake\"},\"environment\":\"test\","
			 "\"coordinator\":true,\"starting\" : %s,\"uptime\":\"1.00m\"}",
			 sp->mode == M_STARTING ? "true" : "false");
		if (sp->mode == M_CLOSE_INFO)
			close = true;
	} else if (cluster && sp->mode == M_NO_RUNNING) {
		snprintf(body, sizeof(body), "{\"queuedQueries\":1,\"blockedQueries\":0}");
	} else if (cluster) {
		snprintf(body, sizeof(body),
			 "{\"runningQueries\":%u,\"blockedQueries\":0,\"queuedQueries\":%u,"
			 "\"activeCoordinators\":1,\"activeWorkers\":1,\"runningDrivers\":0,"
			 "\"totalAvailableProcessors\":1,\"reservedMemory\":0.0,\"totalMemory\":0}",
			 sp->running, sp->queued);
	} else {
		status = 404;
		snprintf(body, sizeof(body), "{}");
	}
	size_t blen = strlen(body);
	assert_int_equal(qd_outq_printf(&sc->out, pool,
					"HTTP/1.1 %u X\r\nContent-Type: application/json\r\n"
					"Content-Length: %zu\r\n%s\r\n",
					status, blen, close ? "Connection: close\r\n" : ""),
			 0);
	assert_int_equal(qd_outq_write(&sc->out, pool, body, blen), 0);
	assert_int_equal(qd_outq_flush(&sc->out, sc->c, sm->now_us), 0);
	if (close) {
		sc->closing = true;
		qd_tcp_shutdown(sc->c, sm->now_us);
	}
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
	for (unsigned int r = 0; r < 8 && !sc->closing; r++) {
		sc->buf[sc->len] = '\0';
		char *end = strstr(sc->buf, "\r\n\r\n");
		if (end == NULL)
			return;
		*end = '\0';
		uint32_t used = (uint32_t)(end + 4 - sc->buf);
		char head[SRV_BUF];
		memcpy(head, sc->buf, used);
		memmove(sc->buf, sc->buf + used, sc->len - used);
		sc->len -= used;
		srv_respond(sc, head);
	}
}

static void
srv_on_writable(struct qd_tcp_conn *c)
{
	struct srv_conn *sc = qd_tcp_conn_app(c);
	qd_outq_flush(&sc->out, c, current->now_us);
}

static void
srv_on_peer_fin(struct qd_tcp_conn *c)
{
	struct srv_conn *sc = qd_tcp_conn_app(c);
	if (!sc->closing) {
		sc->closing = true;
		qd_tcp_shutdown(c, current->now_us);
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
}

/* The coordinators' host: a stack listening on every fake port (or on none: refused). */
static void
srv_start(struct sim *sm, bool listening)
{
	struct qd_tcp_conf conf = tcp_conf();
	struct qd_siphash_key key = {7, 8};
	struct node *n = &sm->nodes[1];
	n->s = qd_tcp_stack_create(&conf, 0, pool, &n->mac, n->ip, &key, tx, resolve, n);
	assert_non_null(n->s);
	for (unsigned int i = 0; listening && i < sm->ports_count; i++)
		assert_int_equal(qd_tcp_listen(n->s, sm->ports[i].port, &srv_ops, &sm->ports[i]), 0);
}

/* A host that dies: its connections vanish without a word (the next segment to it is
 * answered with RST), its ports refuse until srv_start(sm, true). */
static void
srv_restart(struct sim *sm, bool listening)
{
	qd_tcp_stack_destroy(sm->nodes[1].s);
	for (unsigned int i = 0; i < SRV_CONNS; i++) {
		struct srv_conn *sc = &sm->conns[i];
		if (!sc->used)
			continue;
		qd_outq_clear(&sc->out);
		sc->sp->live--;
		sc->used = false;
	}
	srv_start(sm, listening);
}

/* ---- the simulation ------------------------------------------------------------ */

static void
sim_init(struct sim *sm, const int *modes, unsigned int count)
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
	sm->table->count = count;
	sm->ports_count = count;
	for (unsigned int i = 0; i < count; i++) {
		sm->ports[i] = (struct srv_port){.port = (uint16_t)(BASE_PORT + i), .mode = modes[i],
						 .running = 7 + i, .queued = 3};
		sm->table->c[i].ip_be = sm->nodes[1].ip;
		sm->table->c[i].port = (uint16_t)(BASE_PORT + i);
		sm->table->c[i].weight = 1;
	}
	srv_start(sm, true);
}

static struct qd_health_conf
health_conf(void)
{
	return (struct qd_health_conf){.interval_ms = 500, .timeout_ms = 1000, .rise = 2,
				       .fall = 2, .worker_index = 0, .worker_count = 1};
}

static void
sim_health(struct sim *sm, const struct qd_health_conf *conf)
{
	sm->h = qd_health_create(conf, sm->nodes[0].s, sm->table, 0);
	assert_non_null(sm->h);
}

static void
sim_step(struct sim *sm)
{
	sm->now_us += 1000;
	if (sm->h != NULL)
		qd_health_set_now(sm->h, sm->now_us);
	deliver(sm);
	qd_tcp_timers(sm->nodes[0].s, sm->now_us);
	qd_tcp_timers(sm->nodes[1].s, sm->now_us);
	if (sm->h != NULL)
		qd_health_poll(sm->h, sm->now_us);
}

static void
run_ms(struct sim *sm, unsigned int ms)
{
	for (unsigned int i = 0; i < ms; i++)
		sim_step(sm);
}

static uint32_t
health_of(const struct sim *sm, unsigned int i)
{
	return qd_coord_load32(&sm->table->c[i].health);
}

/* Milliseconds until coordinator <i> has health <want>, at most <max_ms> (then fail). */
static unsigned int
run_until_health(struct sim *sm, unsigned int i, uint32_t want, unsigned int max_ms)
{
	for (unsigned int ms = 0; ms <= max_ms; ms++) {
		if (health_of(sm, i) == want)
			return ms;
		sim_step(sm);
	}
	fail_msg("coordinator %u is %s after %u ms, expected %s (last error '%s')", i,
		 qd_coord_health_name(health_of(sm, i)), max_ms, qd_coord_health_name(want),
		 sm->table->c[i].last_error);
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
	/* The stacks first: the checker's connections go with its stack. */
	for (unsigned int i = 0; i < sm->n; i++)
		rte_pktmbuf_free(sm->q[i].m);
	sm->n = 0;
	qd_tcp_stack_destroy(sm->nodes[0].s);
	qd_tcp_stack_destroy(sm->nodes[1].s);
	for (unsigned int i = 0; i < SRV_CONNS; i++)
		qd_outq_clear(&sm->conns[i].out);
	qd_health_destroy(sm->h);
	rte_free(sm->table);
	assert_int_equal(rte_mempool_avail_count(pool), POOL_SIZE);
	current = NULL;
}

static struct sim sim_mem; /* too big for the stack of a cmocka test */

/* ---- tests -------------------------------------------------------------------- */

static void
test_up_and_load(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	const int modes[] = {M_OK};
	sim_init(sm, modes, 1);
	struct qd_coord *co = &sm->table->c[0];
	co->since_report = 5;
	struct qd_health_conf conf = health_conf();
	sim_health(sm, &conf);
	assert_int_equal(health_of(sm, 0), QD_COORD_UNKNOWN);
	unsigned int ms = run_until_health(sm, 0, QD_COORD_UP, 100);
	assert_true(ms < 20); /* the first check of coordinator 0 starts at once */
	assert_int_equal(co->checks_ok, 1);
	assert_int_equal(co->checks_failed, 0);
	assert_int_equal(co->cluster_running, 7);
	assert_int_equal(co->cluster_queued, 3);
	assert_int_equal(co->since_report, 0);
	assert_int_equal(co->transitions, 1);
	assert_int_equal(co->changed_us, sm->now_us);
	assert_int_equal(co->checked_us, sm->now_us);
	assert_true(qd_coord_usable(co, sm->now_us));
	/* Both requests on one connection, the way the brief says. */
	struct srv_port *sp = &sm->ports[0];
	assert_int_equal(sp->accepted, 1);
	assert_int_equal(sp->requests, 2);
	assert_non_null(strstr(sp->last_head, "GET /v1/cluster HTTP/1.1\r\n"));
	assert_non_null(strstr(sp->last_head, "Host: 10.0.0.2:8080\r\n"));
	assert_non_null(strstr(sp->last_head, "User-Agent: qdispatch-health\r\n"));
	assert_non_null(strstr(sp->last_head, "Connection: close"));
	/* The coordinator closed first: nothing lingers on our side, not even TIME_WAIT. */
	run_ms(sm, 50);
	assert_int_equal(client_connections(sm), 0);
	/* Load changes show up at the next check; what we sent since is reset again. */
	sp->running = 40;
	sp->queued = 2;
	co->since_report = 9;
	run_ms(sm, 500);
	assert_int_equal(co->checks_ok, 2);
	assert_int_equal(co->cluster_running, 40);
	assert_int_equal(co->cluster_queued, 2);
	assert_int_equal(co->since_report, 0);
	assert_int_equal(qd_coord_load(co), 42);
	/* One check per interval: 10 s more is 20 more checks. */
	run_ms(sm, 10000);
	assert_in_range(co->checks_ok, 21, 23);
	assert_int_equal(co->transitions, 1);
	struct qd_health_counters k;
	qd_health_read(sm->h, &k);
	assert_int_equal(k.checks, co->checks_ok);
	assert_int_equal(k.passed, co->checks_ok);
	assert_int_equal(k.failed, 0);
	assert_int_equal(k.transitions, 1);
	sim_fini(sm);
}

static void
test_fall_and_rise(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	const int modes[] = {M_OK};
	sim_init(sm, modes, 1);
	struct qd_coord *co = &sm->table->c[0];
	struct qd_health_conf conf = health_conf();
	sim_health(sm, &conf);
	run_until_health(sm, 0, QD_COORD_UP, 100);
	run_ms(sm, 1234); /* anywhere between two checks */
	/* Killed: its port refuses. Down after two refused checks, within about 1 s. */
	srv_restart(sm, false);
	unsigned int ms = run_until_health(sm, 0, QD_COORD_DOWN, 2000);
	print_message("down %u ms after the kill\n", ms);
	assert_true(ms <= 1010);
	assert_int_equal(co->checks_failed, 2);
	assert_string_equal(co->last_error, "connect refused");
	assert_int_equal(co->transitions, 2);
	assert_int_equal(co->changed_us, sm->now_us);
	assert_false(qd_coord_usable(co, sm->now_us));
	assert_true(qd_coord_dead(co));
	/* More failures while down change nothing. */
	run_ms(sm, 2000);
	assert_int_equal(health_of(sm, 0), QD_COORD_DOWN);
	assert_int_equal(co->transitions, 2);
	assert_true(co->checks_failed >= 5);
	/* Revived: one pass is not enough (rise 2), the second brings it up. */
	srv_restart(sm, true);
	uint64_t ok = co->checks_ok;
	for (unsigned int i = 0; i < 600 && co->checks_ok == ok; i++)
		sim_step(sm);
	assert_int_equal(co->checks_ok, ok + 1);
	assert_int_equal(health_of(sm, 0), QD_COORD_DOWN);
	assert_int_equal(co->consecutive, 1);
	ms = run_until_health(sm, 0, QD_COORD_UP, 600);
	assert_int_equal(co->checks_ok, ok + 2);
	assert_int_equal(co->consecutive, 0);
	assert_int_equal(co->transitions, 3);
	/* A single failure while up does not take it down (fall 2), and the count starts
	 * again after a pass. */
	sm->ports[0].mode = M_503;
	uint64_t failed = co->checks_failed;
	for (unsigned int i = 0; i < 600 && co->checks_failed == failed; i++)
		sim_step(sm);
	assert_int_equal(health_of(sm, 0), QD_COORD_UP);
	assert_int_equal(co->consecutive, 1);
	assert_string_equal(co->last_error, "/v1/info: 503");
	sm->ports[0].mode = M_OK;
	run_ms(sm, 600);
	assert_int_equal(co->consecutive, 0);
	sm->ports[0].mode = M_503;
	run_ms(sm, 600);
	assert_int_equal(health_of(sm, 0), QD_COORD_UP);
	run_until_health(sm, 0, QD_COORD_DOWN, 600);
	assert_int_equal(co->transitions, 4);
	sim_fini(sm);
}

static void
test_timeout_one_in_flight(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	const int modes[] = {M_HANG};
	sim_init(sm, modes, 1);
	struct qd_coord *co = &sm->table->c[0];
	struct qd_health_conf conf = health_conf();
	sim_health(sm, &conf);
	/* Each check hangs for the whole timeout (1 s, longer than the interval). */
	unsigned int ms = run_until_health(sm, 0, QD_COORD_DOWN, 3000);
	assert_in_range(ms, 1990, 2100);
	assert_int_equal(co->checks_failed, 2);
	assert_string_equal(co->last_error, "/v1/info: timeout");
	run_ms(sm, 5000);
	struct qd_health_counters k;
	qd_health_read(sm->h, &k);
	assert_int_equal(k.timeouts, k.failed);
	assert_in_range(k.failed, 6, 8);
	/* Never two checks of one coordinator at once, and the hung ones were reset. */
	assert_int_equal(sm->ports[0].live_max, 1);
	assert_in_range(sm->ports[0].accepted, 7, 8);
	assert_true(client_connections(sm) <= 1);
	sim_fini(sm);
}

static void
test_bad_answers(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	const int modes[] = {M_503, M_STARTING, M_NO_RUNNING, M_BIG};
	static const char *const want[] = {
		"/v1/info: 503", "/v1/info: starting", "/v1/cluster: no runningQueries",
		"/v1/info: body over 8192 bytes",
	};
	sim_init(sm, modes, 4);
	struct qd_health_conf conf = health_conf();
	sim_health(sm, &conf);
	uint64_t start = sm->now_us;
	run_ms(sm, 1600);
	for (unsigned int i = 0; i < 4; i++) {
		const struct qd_coord *co = &sm->table->c[i];
		assert_int_equal(health_of(sm, i), QD_COORD_DOWN);
		assert_string_equal(co->last_error, want[i]);
		assert_int_equal(co->checks_ok, 0);
		assert_int_equal(co->cluster_running, 0);
		/* First checks spread over the interval: coordinator i at i/4 of it. */
		uint64_t first = sm->ports[i].first_accept_us - start;
		assert_in_range(first, i * 125000u, i * 125000u + 5000u);
	}
	sim_fini(sm);
}

static void
test_reconnect_and_workers(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	/* Coordinator 1 closes after /v1/info: /v1/cluster goes on a new connection. This
	 * checker is worker 1 of 2: coordinators 0 and 2 are the other worker's. */
	const int modes[] = {M_OK, M_CLOSE_INFO, M_OK};
	sim_init(sm, modes, 3);
	struct qd_health_conf conf = health_conf();
	conf.worker_index = 1;
	conf.worker_count = 2;
	sim_health(sm, &conf);
	run_until_health(sm, 1, QD_COORD_UP, 400);
	assert_int_equal(sm->ports[1].accepted, 2);
	assert_int_equal(sm->table->c[1].cluster_running, 8);
	run_ms(sm, 2000);
	assert_int_equal(health_of(sm, 0), QD_COORD_UNKNOWN);
	assert_int_equal(health_of(sm, 2), QD_COORD_UNKNOWN);
	assert_int_equal(sm->ports[0].accepted, 0);
	assert_int_equal(sm->ports[2].accepted, 0);
	assert_int_equal(sm->table->c[1].checks_failed, 0);
	sim_fini(sm);
}

static void
test_off_and_bad_conf(void **state)
{
	(void)state;
	struct sim *sm = &sim_mem;
	const int modes[] = {M_OK};
	sim_init(sm, modes, 1);
	struct qd_health_conf conf = health_conf();
	conf.worker_index = 1;
	assert_null(qd_health_create(&conf, sm->nodes[0].s, sm->table, 0));
	conf = health_conf();
	conf.fall = 0;
	assert_null(qd_health_create(&conf, sm->nodes[0].s, sm->table, 0));
	conf = health_conf();
	conf.interval_ms = 0; /* off */
	sim_health(sm, &conf);
	run_ms(sm, 2000);
	assert_int_equal(sm->ports[0].accepted, 0);
	assert_int_equal(health_of(sm, 0), QD_COORD_UNKNOWN);
	qd_health_destroy(sm->h);
	/* No coordinators at all. */
	conf = health_conf();
	sm->h = qd_health_create(&conf, sm->nodes[0].s, NULL, 0);
	assert_non_null(sm->h);
	run_ms(sm, 100);
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
		cmocka_unit_test(test_up_and_load),
		cmocka_unit_test(test_fall_and_rise),
		cmocka_unit_test(test_timeout_one_in_flight),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_reconnect_and_workers),
		cmocka_unit_test(test_off_and_bad_conf),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return rc;
}
