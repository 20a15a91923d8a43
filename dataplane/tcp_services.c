/*
 * Echo and discard services (see tcp_services.h).
 *
 * Echo holds what it could not send yet as one mbuf chain per connection and
 * reports bytes as consumed only once the stack took them, so a slow reader
 * closes the sender's window instead of growing our memory: the bound per
 * connection is the receive buffer. Echo states come from a free list sized
 * at start-up; when it is empty a new connection is reset and counted.
 */
#include "tcp_services.h"

#include <errno.h>
#include <string.h>

#include <rte_lcore.h>
#include <rte_malloc.h>

struct echo_state {
	struct rte_mbuf *pending; /* chain not yet accepted by qd_tcp_send */
	struct qd_tcp_services *svc;
	uint32_t next_free;
	bool peer_fin;
};

struct probe_conn {
	struct qd_tcp_services *svc;
	struct qd_tcp_conn *conn;
	uint64_t sent;
	uint64_t received;
	uint64_t mismatches;
	uint32_t index;
	bool shut;
	bool peer_fin;
};

struct probe {
	struct qd_tcp_probe_stats st; /* written with relaxed stores: the main lcore reads */
	uint32_t ip_be;
	uint16_t port;
	uint64_t bytes;
	uint32_t next;                /* next connection to open */
	uint32_t live;
	struct probe_conn conns[QD_TCP_PROBE_CONNS_MAX];
};

struct qd_tcp_services {
	struct qd_tcp_stack *stack;
	struct probe probe;
	uint64_t now_us;
	uint32_t max_conns;
	uint32_t free_head; /* UINT32_MAX = empty */
	uint64_t refused;
	struct echo_state states[];
};

static void
echo_release(struct echo_state *e)
{
	struct qd_tcp_services *svc = e->svc;
	rte_pktmbuf_free(e->pending);
	e->pending = NULL;
	e->peer_fin = false;
	e->next_free = svc->free_head;
	svc->free_head = (uint32_t)(e - svc->states);
}

/* Detach the first segment of a chain; returns the rest. */
static struct rte_mbuf *
pop_segment(struct rte_mbuf *m)
{
	struct rte_mbuf *rest = m->next;
	if (rest != NULL) {
		rest->nb_segs = (uint16_t)(m->nb_segs - 1);
		rest->pkt_len = m->pkt_len - m->data_len;
	}
	m->next = NULL;
	m->nb_segs = 1;
	m->pkt_len = m->data_len;
	return rest;
}

static void
echo_flush(struct qd_tcp_conn *c)
{
	struct echo_state *e = qd_tcp_conn_app(c);
	uint64_t now = e->svc->now_us;
	/* Bounded by the segments pending (at most the receive buffer's worth). */
	while (e->pending != NULL) {
		struct rte_mbuf *head = e->pending;
		struct rte_mbuf *rest = pop_segment(head);
		uint32_t len = head->data_len;
		int rc = qd_tcp_send(c, head, now);
		if (rc == -EAGAIN) {
			/* Put it back in front; on_writable will call again. */
			if (rest != NULL && rte_pktmbuf_chain(head, rest) != 0) {
				rte_pktmbuf_free(rest);
				e->pending = head;
				qd_tcp_abort(c, now);
				return;
			}
			e->pending = head;
			return;
		}
		e->pending = rest;
		if (rc != 0) {
			/* -ENOMEM consumed <head>; the others left it to us. */
			if (rc != -ENOMEM)
				rte_pktmbuf_free(head);
			qd_tcp_abort(c, now);
			return;
		}
		qd_tcp_recv_consumed(c, len, now);
	}
	if (e->peer_fin)
		qd_tcp_shutdown(c, now);
}

static void
echo_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct echo_state *e = qd_tcp_conn_app(c);
	if (e->pending == NULL) {
		e->pending = m;
	} else if (rte_pktmbuf_chain(e->pending, m) != 0) {
		/* More than 65535 segments held: the peer sends tiny segments into a
		 * window we cannot drain; give up on it rather than grow. */
		rte_pktmbuf_free(m);
		qd_tcp_abort(c, e->svc->now_us);
		return;
	}
	echo_flush(c);
}

static void
echo_peer_fin(struct qd_tcp_conn *c)
{
	struct echo_state *e = qd_tcp_conn_app(c);
	e->peer_fin = true;
	echo_flush(c);
}

static void
echo_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)why;
	echo_release(qd_tcp_conn_app(c));
}

static const struct qd_tcp_ops echo_ops = {
	.on_data = echo_data,
	.on_writable = echo_flush,
	.on_peer_fin = echo_peer_fin,
	.on_closed = echo_closed,
};

static void
echo_accept(void *app, struct qd_tcp_conn *c)
{
	struct qd_tcp_services *svc = app;
	if (svc->free_head == UINT32_MAX) {
		svc->refused++;
		qd_tcp_conn_set_app(c, NULL, NULL);
		qd_tcp_abort(c, svc->now_us);
		return;
	}
	struct echo_state *e = &svc->states[svc->free_head];
	svc->free_head = e->next_free;
	e->pending = NULL;
	e->peer_fin = false;
	qd_tcp_conn_set_app(c, &echo_ops, e);
}

static const struct qd_tcp_ops echo_listen_ops = {
	.on_accept = echo_accept,
};

static void
discard_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct qd_tcp_services *svc = qd_tcp_conn_app(c);
	uint32_t len = rte_pktmbuf_pkt_len(m);
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, len, svc->now_us);
}

static void
discard_peer_fin(struct qd_tcp_conn *c)
{
	struct qd_tcp_services *svc = qd_tcp_conn_app(c);
	qd_tcp_shutdown(c, svc->now_us);
}

static const struct qd_tcp_ops discard_ops = {
	.on_data = discard_data,
	.on_peer_fin = discard_peer_fin,
};

static void
discard_accept(void *app, struct qd_tcp_conn *c)
{
	qd_tcp_conn_set_app(c, &discard_ops, app);
}

static const struct qd_tcp_ops discard_listen_ops = {
	.on_accept = discard_accept,
};

struct qd_tcp_services *
qd_tcp_services_create(struct qd_tcp_stack *s, uint32_t max_conns, unsigned int lcore_id)
{
	struct qd_tcp_services *svc = rte_zmalloc_socket(
		"qd_tcp_services", sizeof(*svc) + sizeof(svc->states[0]) * (size_t)max_conns,
		RTE_CACHE_LINE_SIZE, (int)rte_lcore_to_socket_id(lcore_id));
	if (svc == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	svc->stack = s;
	svc->max_conns = max_conns;
	svc->free_head = UINT32_MAX;
	for (uint32_t i = max_conns; i-- > 0;) {
		svc->states[i].svc = svc;
		svc->states[i].next_free = svc->free_head;
		svc->free_head = i;
	}
	return svc;
}

void
qd_tcp_services_destroy(struct qd_tcp_services *svc)
{
	if (svc == NULL)
		return;
	for (uint32_t i = 0; i < svc->max_conns; i++)
		rte_pktmbuf_free(svc->states[i].pending);
	rte_free(svc);
}

int
qd_tcp_services_listen(struct qd_tcp_services *svc, uint16_t echo_port, uint16_t discard_port)
{
	int rc = 0;
	if (echo_port != 0)
		rc = qd_tcp_listen(svc->stack, echo_port, &echo_listen_ops, svc);
	if (rc == 0 && discard_port != 0)
		rc = qd_tcp_listen(svc->stack, discard_port, &discard_listen_ops, svc);
	return rc;
}

void
qd_tcp_services_set_now(struct qd_tcp_services *svc, uint64_t now_us)
{
	svc->now_us = now_us;
}

/* ---- TCP probe (active open) --------------------------------------------------- */

#define PUB(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)
#define GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

static uint8_t
probe_byte(uint32_t id, uint32_t index, uint64_t off)
{
	uint64_t x = (off / 8) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)id << 32 | index);
	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 29;
	return (uint8_t)(x >> ((off % 8) * 8));
}

static void
probe_pump(struct qd_tcp_conn *c)
{
	struct probe_conn *pc = qd_tcp_conn_app(c);
	struct qd_tcp_services *svc = pc->svc;
	struct probe *p = &svc->probe;
	struct rte_mempool *pool = qd_tcp_stack_pool(svc->stack);
	/* Bounded by the send buffer: stops at the first refusal. */
	while (pc->sent < p->bytes) {
		uint32_t n = (uint32_t)RTE_MIN(p->bytes - pc->sent, (uint64_t)1400);
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		if (m == NULL)
			return; /* retried on the next writable event */
		uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)n);
		for (uint32_t i = 0; i < n; i++)
			d[i] = probe_byte(p->st.id, pc->index, pc->sent + i);
		int rc = qd_tcp_send(c, m, svc->now_us);
		if (rc == -EAGAIN) {
			rte_pktmbuf_free(m);
			return;
		}
		if (rc != 0) {
			if (rc != -ENOMEM)
				rte_pktmbuf_free(m);
			qd_tcp_abort(c, svc->now_us);
			return;
		}
		pc->sent += n;
	}
	if (!pc->shut) {
		pc->shut = true;
		qd_tcp_shutdown(c, svc->now_us);
	}
}

static void
probe_connected(struct qd_tcp_conn *c)
{
	struct probe_conn *pc = qd_tcp_conn_app(c);
	struct probe *p = &pc->svc->probe;
	PUB(p->st.connected, p->st.connected + 1);
	probe_pump(c);
}

static void
probe_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct probe_conn *pc = qd_tcp_conn_app(c);
	struct probe *p = &pc->svc->probe;
	uint32_t len = rte_pktmbuf_pkt_len(m);
	uint32_t off = 0;
	/* Walk the segments: the payload may be chained. */
	for (struct rte_mbuf *seg = m; seg != NULL; seg = seg->next) {
		const uint8_t *d = rte_pktmbuf_mtod(seg, const uint8_t *);
		for (uint32_t i = 0; i < seg->data_len; i++, off++) {
			if (d[i] != probe_byte(p->st.id, pc->index, pc->received + off))
				pc->mismatches++;
		}
	}
	pc->received += len;
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, len, pc->svc->now_us);
}

static void
probe_peer_fin(struct qd_tcp_conn *c)
{
	struct probe_conn *pc = qd_tcp_conn_app(c);
	pc->peer_fin = true;
}

static void
probe_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct probe_conn *pc = qd_tcp_conn_app(c);
	struct probe *p = &pc->svc->probe;
	/* Every byte back and checked, then the server's FIN; a server that resets after
	 * echoing everything (its kernel answering a late duplicate of ours after it
	 * closed) also completed the exchange. */
	bool complete = pc->received == p->bytes && pc->mismatches == 0 && pc->sent == p->bytes;
	bool ok = complete && ((why == QD_TCP_CLOSE_NORMAL && pc->peer_fin) ||
			       (why == QD_TCP_CLOSE_RESET && pc->shut));
	if (ok) {
		PUB(p->st.ok, p->st.ok + 1);
	} else {
		PUB(p->st.failed, p->st.failed + 1);
		if ((unsigned int)why < RTE_DIM(p->st.closed_by))
			PUB(p->st.closed_by[why], p->st.closed_by[why] + 1);
	}
	PUB(p->st.bytes_verified, p->st.bytes_verified + pc->received);
	PUB(p->st.mismatches, p->st.mismatches + pc->mismatches);
	pc->conn = NULL;
	p->live--;
	if (p->live == 0 && p->next == p->st.wanted)
		PUB(p->st.done, true);
}

static const struct qd_tcp_ops probe_ops = {
	.on_connected = probe_connected,
	.on_data = probe_data,
	.on_writable = probe_pump,
	.on_peer_fin = probe_peer_fin,
	.on_closed = probe_closed,
};

int
qd_tcp_probe_start(struct qd_tcp_services *svc, uint32_t id, uint32_t ip_be, uint16_t port,
		   uint32_t conns, uint64_t bytes)
{
	struct probe *p = &svc->probe;
	if (conns > QD_TCP_PROBE_CONNS_MAX || port == 0 || ip_be == 0)
		return -EINVAL;
	/* Abandon a probe still running: its connections end as failures of its id. */
	for (uint32_t i = 0; i < QD_TCP_PROBE_CONNS_MAX && p->live > 0; i++) {
		if (p->conns[i].conn != NULL)
			qd_tcp_abort(p->conns[i].conn, svc->now_us);
	}
	memset(&p->st, 0, sizeof(p->st));
	p->ip_be = ip_be;
	p->port = port;
	p->bytes = bytes;
	p->next = 0;
	p->live = 0;
	PUB(p->st.id, id);
	PUB(p->st.wanted, conns);
	PUB(p->st.done, conns == 0);
	return 0;
}

void
qd_tcp_probe_poll(struct qd_tcp_services *svc)
{
	struct probe *p = &svc->probe;
	/* At most 64 opens per loop iteration: a probe never starves packet input. */
	for (unsigned int n = 0; n < 64 && p->next < p->st.wanted; n++) {
		struct probe_conn *pc = &p->conns[p->next];
		memset(pc, 0, sizeof(*pc));
		pc->svc = svc;
		pc->index = p->next;
		struct qd_tcp_conn *c = qd_tcp_connect(svc->stack, p->ip_be, p->port, &probe_ops, pc,
						       svc->now_us);
		if (c == NULL && errno == EAGAIN) {
			PUB(p->st.resolve_waits, p->st.resolve_waits + 1);
			return; /* next hop not resolved yet (or no free port): next loop */
		}
		p->next++;
		if (c == NULL) {
			PUB(p->st.failed, p->st.failed + 1);
			if (p->live == 0 && p->next == p->st.wanted)
				PUB(p->st.done, true);
			continue;
		}
		pc->conn = c;
		p->live++;
		PUB(p->st.started, p->st.started + 1);
	}
}

void
qd_tcp_probe_read(const struct qd_tcp_services *svc, struct qd_tcp_probe_stats *out)
{
	const struct qd_tcp_probe_stats *st = &svc->probe.st;
	out->id = GET(st->id);
	out->wanted = GET(st->wanted);
	out->started = GET(st->started);
	out->connected = GET(st->connected);
	out->ok = GET(st->ok);
	out->failed = GET(st->failed);
	out->bytes_verified = GET(st->bytes_verified);
	out->mismatches = GET(st->mismatches);
	out->resolve_waits = GET(st->resolve_waits);
	out->done = GET(st->done);
	for (unsigned int i = 0; i < RTE_DIM(st->closed_by); i++)
		out->closed_by[i] = GET(st->closed_by[i]);
}
