/*
 * Byte queues over mbufs (see mbuf_queue.h). Every loop is bounded by the
 * number of segments queued, which the TCP windows bound in turn.
 */
#include "mbuf_queue.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
qd_inq_append(struct qd_inq *q, struct rte_mbuf *m)
{
	while (m != NULL) {
		struct rte_mbuf *next = m->next;
		m->next = NULL;
		m->nb_segs = 1;
		m->pkt_len = m->data_len;
		if (m->data_len == 0) {
			rte_pktmbuf_free_seg(m);
		} else {
			if (q->tail == NULL)
				q->head = m;
			else
				q->tail->next = m;
			q->tail = m;
			q->bytes += m->data_len;
		}
		m = next;
	}
}

size_t
qd_inq_peek(const struct qd_inq *q, const char **p)
{
	if (q->head == NULL)
		return 0;
	*p = rte_pktmbuf_mtod_offset(q->head, const char *, q->off);
	return q->head->data_len - q->off;
}

void
qd_inq_consume(struct qd_inq *q, uint32_t n)
{
	RTE_ASSERT(n <= q->bytes);
	q->bytes -= n;
	while (n > 0 && q->head != NULL) {
		uint32_t left = q->head->data_len - q->off;
		if (n < left) {
			q->off += n;
			return;
		}
		n -= left;
		struct rte_mbuf *m = q->head;
		q->head = m->next;
		m->next = NULL;
		rte_pktmbuf_free_seg(m);
		q->off = 0;
	}
	if (q->head == NULL)
		q->tail = NULL;
}

void
qd_inq_clear(struct qd_inq *q)
{
	while (q->head != NULL) {
		struct rte_mbuf *m = q->head;
		q->head = m->next;
		m->next = NULL;
		rte_pktmbuf_free_seg(m);
	}
	*q = (struct qd_inq){0};
}

int
qd_outq_write(struct qd_outq *q, struct rte_mempool *pool, const void *p, size_t len)
{
	const char *src = p;
	while (len > 0) {
		struct rte_mbuf *t = q->tail;
		uint16_t room = 0;
		if (t != NULL && t->data_len < QD_OUTQ_SEG_BYTES)
			room = (uint16_t)RTE_MIN((uint32_t)rte_pktmbuf_tailroom(t),
						 (uint32_t)(QD_OUTQ_SEG_BYTES - t->data_len));
		if (room == 0) {
			t = rte_pktmbuf_alloc(pool);
			if (t == NULL)
				return -ENOMEM;
			if (q->tail == NULL)
				q->head = t;
			else
				q->tail->next = t;
			q->tail = t;
			room = (uint16_t)RTE_MIN((uint32_t)rte_pktmbuf_tailroom(t),
						 (uint32_t)QD_OUTQ_SEG_BYTES);
		}
		uint16_t n = (uint16_t)RTE_MIN((size_t)room, len);
		memcpy(rte_pktmbuf_mtod_offset(t, char *, t->data_len), src, n);
		t->data_len = (uint16_t)(t->data_len + n);
		t->pkt_len = t->data_len;
		q->bytes += n;
		src += n;
		len -= n;
	}
	return 0;
}

int
qd_outq_printf(struct qd_outq *q, struct rte_mempool *pool, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -EINVAL;
	return qd_outq_write(q, pool, buf, (size_t)n);
}

void
qd_outq_splice(struct qd_outq *to, struct qd_outq *from)
{
	if (from->head == NULL)
		return;
	if (to->tail == NULL)
		to->head = from->head;
	else
		to->tail->next = from->head;
	to->tail = from->tail;
	to->bytes += from->bytes;
	*from = (struct qd_outq){0};
}

void
qd_outq_clear(struct qd_outq *q)
{
	while (q->head != NULL) {
		struct rte_mbuf *m = q->head;
		q->head = m->next;
		m->next = NULL;
		rte_pktmbuf_free_seg(m);
	}
	*q = (struct qd_outq){0};
}

int
qd_outq_flush(struct qd_outq *q, struct qd_tcp_conn *c, uint64_t now_us)
{
	while (q->head != NULL) {
		struct rte_mbuf *m = q->head;
		struct rte_mbuf *next = m->next;
		m->next = NULL;
		uint32_t len = m->data_len;
		int rc = qd_tcp_send(c, m, now_us);
		if (rc == -EAGAIN) {
			m->next = next;
			return 0;
		}
		q->head = next;
		if (next == NULL)
			q->tail = NULL;
		q->bytes -= len;
		if (rc != 0) {
			if (rc != -ENOMEM)
				rte_pktmbuf_free_seg(m);
			return rc;
		}
	}
	return 0;
}
