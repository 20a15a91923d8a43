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

#include <rte_lcore.h>
#include <rte_malloc.h>

struct echo_state {
	struct rte_mbuf *pending; /* chain not yet accepted by qd_tcp_send */
	struct qd_tcp_services *svc;
	uint32_t next_free;
	bool peer_fin;
};

struct qd_tcp_services {
	struct qd_tcp_stack *stack;
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
