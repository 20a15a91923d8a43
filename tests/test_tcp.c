/* The TCP stack against itself in a deterministic simulation: two stacks joined by a
 * simulated wire that can lose, delay, reorder and duplicate frames, driven by a fake
 * clock. Every transfer is checked byte for byte; a failing seed replays exactly. */
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
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "ipv4.h"
#include "tcp.h"

#define POOL_SIZE 16383
#define WIRE_MAX 8192
#define ECHO_PORT 7

static struct rte_mempool *pool;

/* ---- the wire ---------------------------------------------------------------- */

struct frame {
	struct rte_mbuf *m;
	uint64_t at_us;
	int to; /* 0 = client stack, 1 = server stack */
};

struct wire {
	struct frame q[WIRE_MAX];
	unsigned int n;
	uint64_t rng;
	uint32_t loss_ppm, dup_ppm, reorder_ppm, delay_us;
	bool blackhole;      /* drop everything */
	uint64_t sent, lost;
};

struct node {
	struct qd_tcp_stack *s;
	int id;
	struct rte_ether_addr mac;
	uint32_t ip;
};

struct sim {
	struct wire wire;
	struct node nodes[2];
	uint64_t now_us;
};

static uint64_t
rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static bool
chance(struct wire *w, uint32_t ppm)
{
	return ppm > 0 && rnd(&w->rng) % 1000000 < ppm;
}

static struct sim *current;

/* The last frames put on the wire, printed when a transfer fails. */
#define TRACE_MAX 40
struct trace_ent {
	uint64_t t;
	int from;
	uint32_t seq, ack, len, win;
	uint8_t flags;
	bool lost;
};
static struct trace_ent trace[TRACE_MAX];
static unsigned int trace_n;

static void
trace_frame(int from, struct rte_mbuf *m, bool lost)
{
	uint8_t buf[80];
	const uint8_t *p = rte_pktmbuf_read(m, 0, 54, buf);
	const struct rte_tcp_hdr *th = (const struct rte_tcp_hdr *)(p + 34);
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(p + 14);
	struct trace_ent *e = &trace[trace_n++ % TRACE_MAX];
	e->t = current->now_us;
	e->from = from;
	e->seq = rte_be_to_cpu_32(th->sent_seq);
	e->ack = rte_be_to_cpu_32(th->recv_ack);
	e->len = rte_be_to_cpu_16(ip->total_length) - 20 - (th->data_off >> 4) * 4;
	e->win = rte_be_to_cpu_16(th->rx_win);
	e->flags = th->tcp_flags;
	e->lost = lost;
}

static void
trace_dump(void)
{
	for (unsigned int i = 0; i < TRACE_MAX && i < trace_n; i++) {
		struct trace_ent *e = &trace[(trace_n - TRACE_MAX + i) % TRACE_MAX];
		if (trace_n < TRACE_MAX)
			e = &trace[i];
		print_message("  %10llu %s seq %u ack %u len %u win %u flags %02x%s\n",
			      (unsigned long long)e->t, e->from == 0 ? "C>S" : "S>C", e->seq, e->ack,
			      e->len, e->win, e->flags, e->lost ? " LOST" : "");
	}
}

static void
wire_put(struct sim *sm, struct rte_mbuf *m, int to, uint64_t delay)
{
	struct wire *w = &sm->wire;
	if (w->n == WIRE_MAX) {
		rte_pktmbuf_free(m);
		w->lost++;
		return;
	}
	/* Linearise now: the stack keeps the payload for retransmission. */
	struct rte_mbuf *copy = rte_pktmbuf_copy(m, pool, 0, UINT32_MAX);
	rte_pktmbuf_free(m);
	assert_non_null(copy);
	struct rte_mbuf *flat = rte_pktmbuf_alloc(pool);
	assert_non_null(flat);
	char *p = rte_pktmbuf_append(flat, (uint16_t)copy->pkt_len);
	rte_pktmbuf_read(copy, 0, copy->pkt_len, p);
	const void *src = rte_pktmbuf_read(copy, 0, copy->pkt_len, p);
	if (src != p)
		memcpy(p, src, copy->pkt_len);
	rte_pktmbuf_free(copy);
	w->q[w->n++] = (struct frame){.m = flat, .at_us = sm->now_us + delay, .to = to};
}

static void
tx(void *ctx, struct rte_mbuf *m)
{
	struct node *from = ctx;
	struct sim *sm = current;
	struct wire *w = &sm->wire;
	w->sent++;
	bool lose = w->blackhole || chance(w, w->loss_ppm);
	trace_frame(from->id, m, lose);
	if (lose) {
		w->lost++;
		rte_pktmbuf_free(m);
		return;
	}
	int to = 1 - from->id;
	uint64_t delay = w->delay_us;
	if (chance(w, w->reorder_ppm))
		delay += 1000 + rnd(&w->rng) % 3000;
	if (chance(w, w->dup_ppm)) {
		struct rte_mbuf *d = rte_pktmbuf_copy(m, pool, 0, UINT32_MAX);
		if (d != NULL)
			wire_put(sm, d, to, delay + 100);
	}
	wire_put(sm, m, to, delay);
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
sim_deliver(struct sim *sm)
{
	struct wire *w = &sm->wire;
	/* Deliver in due order; stable for equal times. Bounded by WIRE_MAX per call. */
	for (unsigned int pass = 0; pass < WIRE_MAX; pass++) {
		unsigned int best = UINT32_MAX;
		for (unsigned int i = 0; i < w->n; i++) {
			if (w->q[i].at_us <= sm->now_us &&
			    (best == UINT32_MAX || w->q[i].at_us < w->q[best].at_us))
				best = i;
		}
		if (best == UINT32_MAX)
			return;
		struct frame f = w->q[best];
		memmove(&w->q[best], &w->q[best + 1], (w->n - best - 1) * sizeof(w->q[0]));
		w->n--;
		struct rte_ipv4_hdr *ip;
		enum qd_drop_reason reason;
		assert_int_equal(qd_ipv4_check(f.m, &ip, &reason), 0);
		assert_int_equal(ip->next_proto_id, IPPROTO_TCP);
		qd_tcp_input(sm->nodes[f.to].s, f.m, ip, sm->now_us);
	}
}

static void
sim_step(struct sim *sm, uint64_t dt_us)
{
	sm->now_us += dt_us;
	sim_deliver(sm);
	qd_tcp_timers(sm->nodes[0].s, sm->now_us);
	qd_tcp_timers(sm->nodes[1].s, sm->now_us);
}

static struct qd_tcp_conf
default_conf(void)
{
	return (struct qd_tcp_conf){
		.max_connections = 256, .syn_backlog = 64, .time_wait_max = 64,
		.time_wait_ms = 2000, .fin_wait2_ms = 5000, .sndbuf_bytes = 64 * 1024,
		.rcvbuf_bytes = 64 * 1024, .mss = 1460, .challenge_ack_per_s = 1000,
		.syn_cookies = true, .local_port_min = 40000, .local_port_max = 40999,
		.steer_index = 0, .steer_count = 1,
	};
}

static void
sim_init(struct sim *sm, const struct qd_tcp_conf *client, const struct qd_tcp_conf *server,
	 uint64_t seed)
{
	memset(sm, 0, sizeof(*sm));
	current = sm;
	sm->now_us = 1000000;
	sm->wire.rng = seed * 2654435761u + 1;
	struct qd_siphash_key key = {seed, ~seed};
	const struct qd_tcp_conf *confs[2] = {client, server};
	for (int i = 0; i < 2; i++) {
		struct node *n = &sm->nodes[i];
		n->id = i;
		n->mac = (struct rte_ether_addr){{2, 0, 0, 0, 0, (uint8_t)(i + 1)}};
		n->ip = htonl(0x0a000001 + (uint32_t)i);
		n->s = qd_tcp_stack_create(confs[i], 0, pool, &n->mac, n->ip, &key, tx, resolve, n);
		assert_non_null(n->s);
	}
}

static void
sim_fini(struct sim *sm)
{
	for (unsigned int i = 0; i < sm->wire.n; i++)
		rte_pktmbuf_free(sm->wire.q[i].m);
	sm->wire.n = 0;
	qd_tcp_stack_destroy(sm->nodes[0].s);
	qd_tcp_stack_destroy(sm->nodes[1].s);
	assert_int_equal(rte_mempool_avail_count(pool), POOL_SIZE);
}

/* ---- the applications: an echo server and a verifying client ----------------- */

struct echo_conn {
	struct qd_tcp_conn *conn;
	struct rte_mbuf *pending[256];
	unsigned int head, count;
	bool peer_fin;
	bool consume; /* false: hold data (receive window closes) */
};

struct server_app {
	struct echo_conn conns[64];
	unsigned int accepted;
	unsigned int closed;
	enum qd_tcp_close_reason last_reason;
};

static struct server_app server;

static void
echo_flush(struct qd_tcp_conn *c)
{
	struct echo_conn *e = qd_tcp_conn_app(c);
	if (!e->consume)
		return;
	/* Bounded by the pending ring. */
	while (e->count > 0) {
		struct rte_mbuf *m = e->pending[e->head];
		uint32_t len = rte_pktmbuf_pkt_len(m);
		if (qd_tcp_send(c, m, current->now_us) != 0)
			return;
		qd_tcp_recv_consumed(c, len, current->now_us);
		e->head = (e->head + 1) % 256;
		e->count--;
	}
	if (e->peer_fin)
		qd_tcp_shutdown(c, current->now_us);
}

static void
echo_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct echo_conn *e = qd_tcp_conn_app(c);
	assert_true(e->count < 256);
	e->pending[(e->head + e->count) % 256] = m;
	e->count++;
	echo_flush(c);
}

static void
echo_writable(struct qd_tcp_conn *c)
{
	echo_flush(c);
}

static void
echo_peer_fin(struct qd_tcp_conn *c)
{
	struct echo_conn *e = qd_tcp_conn_app(c);
	e->peer_fin = true;
	echo_flush(c);
}

static void
echo_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct echo_conn *e = qd_tcp_conn_app(c);
	while (e != NULL && e->count > 0) {
		rte_pktmbuf_free(e->pending[e->head]);
		e->head = (e->head + 1) % 256;
		e->count--;
	}
	server.closed++;
	server.last_reason = why;
}

static const struct qd_tcp_ops echo_ops = {
	.on_data = echo_data, .on_writable = echo_writable,
	.on_peer_fin = echo_peer_fin, .on_closed = echo_closed,
};

static bool server_consumes = true;

static void
echo_accept(void *app, struct qd_tcp_conn *c)
{
	(void)app;
	assert_true(server.accepted < 64);
	struct echo_conn *e = &server.conns[server.accepted++];
	memset(e, 0, sizeof(*e));
	e->consume = server_consumes;
	e->conn = c;
	qd_tcp_conn_set_app(c, &echo_ops, e);
}

static const struct qd_tcp_ops listen_ops = {
	.on_accept = echo_accept, .on_data = echo_data, .on_writable = echo_writable,
	.on_peer_fin = echo_peer_fin, .on_closed = echo_closed,
};

struct client {
	uint64_t total;      /* bytes to send */
	uint64_t sent;
	uint64_t received;
	uint64_t seed;
	bool connected, peer_fin, closed, shut;
	enum qd_tcp_close_reason reason;
	uint64_t mismatches;
};

static uint8_t
stream_byte(uint64_t seed, uint64_t off)
{
	uint64_t x = (off / 8) * 0x9E3779B97F4A7C15ull ^ seed;
	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 29;
	return (uint8_t)(x >> ((off % 8) * 8));
}

static void
client_pump(struct qd_tcp_conn *c)
{
	struct client *cl = qd_tcp_conn_app(c);
	/* Bounded by the send buffer. */
	while (cl->sent < cl->total) {
		uint32_t n = (uint32_t)(cl->total - cl->sent);
		if (n > 1400)
			n = 1400;
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		assert_non_null(m);
		uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)n);
		for (uint32_t i = 0; i < n; i++)
			p[i] = stream_byte(cl->seed, cl->sent + i);
		int rc = qd_tcp_send(c, m, current->now_us);
		if (rc == -EAGAIN) {
			rte_pktmbuf_free(m);
			return;
		}
		assert_int_equal(rc, 0);
		cl->sent += n;
	}
	if (!cl->shut) {
		cl->shut = true;
		qd_tcp_shutdown(c, current->now_us);
	}
}

static void
client_connected(struct qd_tcp_conn *c)
{
	((struct client *)qd_tcp_conn_app(c))->connected = true;
	client_pump(c);
}

static void
client_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct client *cl = qd_tcp_conn_app(c);
	uint32_t len = rte_pktmbuf_pkt_len(m);
	uint8_t buf[2048];
	const uint8_t *p = rte_pktmbuf_read(m, 0, len, buf);
	for (uint32_t i = 0; i < len; i++) {
		if (p[i] != stream_byte(cl->seed, cl->received + i))
			cl->mismatches++;
	}
	cl->received += len;
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, len, current->now_us);
}

static void
client_peer_fin(struct qd_tcp_conn *c)
{
	((struct client *)qd_tcp_conn_app(c))->peer_fin = true;
}

static void
client_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct client *cl = qd_tcp_conn_app(c);
	cl->closed = true;
	cl->reason = why;
}

static const struct qd_tcp_ops client_ops = {
	.on_connected = client_connected, .on_data = client_data, .on_writable = client_pump,
	.on_peer_fin = client_peer_fin, .on_closed = client_closed,
};

static void
run_until(struct sim *sm, bool (*done)(void *), void *arg, uint64_t limit_us, uint64_t dt)
{
	uint64_t end = sm->now_us + limit_us;
	while (!done(arg) && sm->now_us < end)
		sim_step(sm, dt);
}

static bool
client_closed_p(void *arg)
{
	return ((struct client *)arg)->closed;
}

static void
echo_transfer_delay(uint64_t bytes, uint32_t loss, uint32_t reorder, uint32_t dup, uint64_t seed,
		    uint32_t delay_us)
{
	struct sim sm;
	struct qd_tcp_conf cc = default_conf(), sc = default_conf();
	sim_init(&sm, &cc, &sc, seed);
	memset(&server, 0, sizeof(server));
	server_consumes = true;
	sm.wire.loss_ppm = loss;
	sm.wire.reorder_ppm = reorder;
	sm.wire.dup_ppm = dup;
	sm.wire.delay_us = delay_us;
	assert_int_equal(qd_tcp_listen(sm.nodes[1].s, ECHO_PORT, &listen_ops, NULL), 0);
	struct client cl = {.total = bytes, .seed = seed};
	struct qd_tcp_conn *c = qd_tcp_connect(sm.nodes[0].s, sm.nodes[1].ip, ECHO_PORT,
					       &client_ops, &cl, sm.now_us);
	assert_non_null(c);
	run_until(&sm, client_closed_p, &cl, 600ull * 1000000, 200);
	if (cl.received != bytes || cl.mismatches != 0 || !cl.peer_fin || !cl.closed)
		trace_dump();
	if (cl.received != bytes || cl.mismatches != 0 || !cl.peer_fin || !cl.closed)
		fail_msg("seed %llu: received %llu of %llu, %llu mismatches, fin %d closed %d "
			 "(reason %d), server closed %u (reason %d)",
			 (unsigned long long)seed, (unsigned long long)cl.received,
			 (unsigned long long)bytes, (unsigned long long)cl.mismatches, cl.peer_fin,
			 cl.closed, cl.reason, server.closed, server.last_reason);
	assert_int_equal(cl.reason, QD_TCP_CLOSE_NORMAL);
	/* Let TIME_WAIT and the server side finish. */
	for (int i = 0; i < 100 && server.closed < 1; i++)
		sim_step(&sm, 100000);
	assert_int_equal(server.closed, 1);
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(sm.nodes[0].s, &k, states);
	if (loss > 0)
		assert_true(k.retransmits > 0);
	print_message("seed %llu: %llu bytes, wire sent %llu lost %llu, client retransmits %llu "
		      "(fast %llu, rto %llu), ooo %llu, %.1f s simulated\n",
		      (unsigned long long)seed, (unsigned long long)bytes,
		      (unsigned long long)sm.wire.sent, (unsigned long long)sm.wire.lost,
		      (unsigned long long)k.retransmits, (unsigned long long)k.fast_retransmits,
		      (unsigned long long)k.rto_expired, (unsigned long long)k.ooo_queued,
		      (double)(sm.now_us - 1000000) / 1e6);
	/* Everything ends in TIME_WAIT at most, and then nothing. */
	for (int i = 0; i < 100; i++)
		sim_step(&sm, 100000);
	qd_tcp_stack_read(sm.nodes[0].s, &k, states);
	for (int st = 0; st < QD_TCP_STATE_MAX; st++)
		assert_int_equal(states[st], 0);
	sim_fini(&sm);
}

static void
echo_transfer(uint64_t bytes, uint32_t loss, uint32_t reorder, uint32_t dup, uint64_t seed)
{
	echo_transfer_delay(bytes, loss, reorder, dup, seed, 500);
}

/* The lab's impaired profile: 2% loss, 5% reordering, 1% duplication, 10 ms each way. */
static void
test_echo_lab_profile(void **state)
{
	(void)state;
	for (uint64_t seed = 30; seed < 34; seed++)
		echo_transfer_delay(2 << 20, 20000, 50000, 10000, seed, 10000);
}

static void
test_echo_small(void **state)
{
	(void)state;
	echo_transfer(1000, 0, 0, 0, 1);
}

static void
test_echo_bulk_clean(void **state)
{
	(void)state;
	echo_transfer(4 << 20, 0, 0, 0, 2);
}

static void
test_echo_bulk_impaired(void **state)
{
	(void)state;
	for (uint64_t seed = 10; seed < 16; seed++)
		echo_transfer(512 << 10, 20000, 50000, 10000, seed);
}

static void
test_echo_heavy_loss(void **state)
{
	(void)state;
	echo_transfer(128 << 10, 100000, 0, 0, 21);
}

static void
test_refused(void **state)
{
	(void)state;
	struct sim sm;
	struct qd_tcp_conf cc = default_conf(), sc = default_conf();
	sim_init(&sm, &cc, &sc, 3);
	struct client cl = {.total = 10, .seed = 3};
	assert_non_null(qd_tcp_connect(sm.nodes[0].s, sm.nodes[1].ip, 9, &client_ops, &cl,
				       sm.now_us));
	run_until(&sm, client_closed_p, &cl, 5000000, 1000);
	assert_true(cl.closed);
	assert_int_equal(cl.reason, QD_TCP_CLOSE_REFUSED);
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(sm.nodes[1].s, &k, states);
	assert_int_equal(k.no_listener, 1);
	assert_int_equal(k.resets_out, 1);
	sim_fini(&sm);
}

static void
test_syn_cookies(void **state)
{
	(void)state;
	struct sim sm;
	struct qd_tcp_conf cc = default_conf(), sc = default_conf();
	sc.syn_backlog = 0; /* every SYN is answered with a cookie */
	sim_init(&sm, &cc, &sc, 4);
	memset(&server, 0, sizeof(server));
	server_consumes = true;
	assert_int_equal(qd_tcp_listen(sm.nodes[1].s, ECHO_PORT, &listen_ops, NULL), 0);
	struct client cl = {.total = 100000, .seed = 4};
	assert_non_null(qd_tcp_connect(sm.nodes[0].s, sm.nodes[1].ip, ECHO_PORT, &client_ops,
				       &cl, sm.now_us));
	run_until(&sm, client_closed_p, &cl, 60000000, 500);
	assert_int_equal(cl.received, 100000);
	assert_int_equal(cl.mismatches, 0);
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(sm.nodes[1].s, &k, states);
	assert_int_equal(k.cookies_sent, 1);
	assert_int_equal(k.cookies_valid, 1);
	assert_int_equal(k.syn_backlog_full, 1);
	for (int i = 0; i < 50; i++)
		sim_step(&sm, 100000);
	sim_fini(&sm);
}

static void
test_rst_hardening(void **state)
{
	(void)state;
	struct sim sm;
	struct qd_tcp_conf cc = default_conf(), sc = default_conf();
	sim_init(&sm, &cc, &sc, 5);
	memset(&server, 0, sizeof(server));
	server_consumes = false; /* hold the connection open */
	assert_int_equal(qd_tcp_listen(sm.nodes[1].s, ECHO_PORT, &listen_ops, NULL), 0);
	struct client cl = {.total = 0, .seed = 5, .shut = true};
	struct qd_tcp_conn *c = qd_tcp_connect(sm.nodes[0].s, sm.nodes[1].ip, ECHO_PORT,
					       &client_ops, &cl, sm.now_us);
	for (int i = 0; i < 20; i++)
		sim_step(&sm, 1000);
	assert_true(cl.connected);
	assert_int_equal(qd_tcp_conn_state(c), QD_TCP_ESTABLISHED);

	/* Forge RSTs towards the client: in window but not exact -> challenge ACK only. */
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	for (int variant = 0; variant < 3; variant++) {
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		char *p = rte_pktmbuf_append(m, 14 + 20 + 20);
		memset(p, 0, 54);
		struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
		eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
		ip->version_ihl = 0x45;
		ip->total_length = RTE_BE16(40);
		ip->time_to_live = 64;
		ip->next_proto_id = IPPROTO_TCP;
		ip->src_addr = sm.nodes[1].ip;
		ip->dst_addr = sm.nodes[0].ip;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
		th->src_port = RTE_BE16(ECHO_PORT);
		struct qd_tcp_info info;
		qd_tcp_conn_info(c, &info);
		th->dst_port = rte_cpu_to_be_16(info.local_port);
		uint32_t rcv_nxt = info.rcv_nxt;
		uint32_t seq = variant == 0 ? rcv_nxt + 100 : variant == 1 ? rcv_nxt + 1 : rcv_nxt;
		th->sent_seq = rte_cpu_to_be_32(seq);
		th->data_off = 0x50;
		th->tcp_flags = RTE_TCP_RST_FLAG;
		th->rx_win = 0;
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
		qd_ipv4_check(m, &ip, &(enum qd_drop_reason){0});
		qd_tcp_input(sm.nodes[0].s, m, ip, sm.now_us);
		qd_tcp_stack_read(sm.nodes[0].s, &k, states);
		if (variant < 2) {
			assert_int_equal(k.challenge_acks, (uint64_t)variant + 1);
			assert_false(cl.closed);
		} else {
			assert_true(cl.closed);
			assert_int_equal(cl.reason, QD_TCP_CLOSE_RESET);
		}
	}
	/* The server side learns nothing of the forged RSTs; abort it. */
	assert_int_equal(server.accepted, 1);
	qd_tcp_abort(server.conns[0].conn, sm.now_us);
	assert_int_equal(server.last_reason, QD_TCP_CLOSE_ABORT);
	for (int i = 0; i < 50; i++)
		sim_step(&sm, 100000);
	sim_fini(&sm);
}

static void
test_zero_window(void **state)
{
	(void)state;
	struct sim sm;
	struct qd_tcp_conf cc = default_conf(), sc = default_conf();
	sc.rcvbuf_bytes = 16 * 1024;
	sim_init(&sm, &cc, &sc, 6);
	memset(&server, 0, sizeof(server));
	server_consumes = false;
	assert_int_equal(qd_tcp_listen(sm.nodes[1].s, ECHO_PORT, &listen_ops, NULL), 0);
	struct client cl = {.total = 200000, .seed = 6};
	assert_non_null(qd_tcp_connect(sm.nodes[0].s, sm.nodes[1].ip, ECHO_PORT, &client_ops,
				       &cl, sm.now_us));
	for (int i = 0; i < 3000; i++)
		sim_step(&sm, 10000); /* 30 s with the server not reading */
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(sm.nodes[0].s, &k, states);
	assert_true(k.zero_window_probes > 0);
	assert_false(cl.closed);
	/* Now read: everything flows and completes. */
	server.conns[0].consume = true;
	echo_flush(server.conns[0].conn);
	run_until(&sm, client_closed_p, &cl, 120000000, 1000);
	assert_int_equal(cl.received, 200000);
	assert_int_equal(cl.mismatches, 0);
	for (int i = 0; i < 50; i++)
		sim_step(&sm, 100000);
	sim_fini(&sm);
}

int
main(int argc, char **argv)
{
	(void)argc;
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "512", "--no-shconf", "--no-pci",
			    "--no-telemetry", "-l", "0", "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0)
		return 1;
	pool = rte_pktmbuf_pool_create("test", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (pool == NULL)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_small),
		cmocka_unit_test(test_echo_bulk_clean),
		cmocka_unit_test(test_echo_bulk_impaired),
		cmocka_unit_test(test_echo_heavy_loss),
		cmocka_unit_test(test_echo_lab_profile),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_syn_cookies),
		cmocka_unit_test(test_rst_hardening),
		cmocka_unit_test(test_zero_window),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return rc;
}
