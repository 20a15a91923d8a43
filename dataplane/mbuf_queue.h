/*
 * Byte queues over mbufs for the layers above TCP.
 *
 * qd_inq holds payload the stack delivered and the application has not parsed
 * yet: segments stay where they arrived (no copy); the reader peeks at the
 * first contiguous run, consumes bytes, and every consumed segment is freed at
 * once. qd_outq builds bytes to send into single-segment mbufs of at most
 * QD_OUTQ_SEG_BYTES (one TCP segment with timestamps, so the stack never has to
 * split them) and hands them to qd_tcp_send() one segment at a time, so a
 * refused send keeps the rest queued instead of failing the whole chain.
 */
#ifndef QD_MBUF_QUEUE_H
#define QD_MBUF_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_mbuf.h>

#include "tcp.h"

#define QD_OUTQ_SEG_BYTES 1448

struct qd_inq {
	struct rte_mbuf *head; /* single segments linked by ->next */
	struct rte_mbuf *tail;
	uint32_t off;          /* bytes of head already consumed */
	uint32_t bytes;        /* unconsumed bytes in the queue */
};

struct qd_outq {
	struct rte_mbuf *head;
	struct rte_mbuf *tail;
	uint32_t bytes;
};

static inline bool
qd_inq_empty(const struct qd_inq *q)
{
	return q->bytes == 0;
}

/* Append every segment of <m> (a chain from the stack); empty segments are freed. */
void qd_inq_append(struct qd_inq *q, struct rte_mbuf *m);
/* The first contiguous run of unconsumed bytes; 0 when empty. */
size_t qd_inq_peek(const struct qd_inq *q, const char **p);
/* Drop <n> bytes from the front (n <= bytes), freeing emptied segments. */
void qd_inq_consume(struct qd_inq *q, uint32_t n);
void qd_inq_clear(struct qd_inq *q);

static inline bool
qd_outq_empty(const struct qd_outq *q)
{
	return q->head == NULL;
}

/* Append <len> bytes copied from <p>. 0, or -ENOMEM (the queue keeps what it took: the
 * caller must treat the byte stream as broken). */
int qd_outq_write(struct qd_outq *q, struct rte_mempool *pool, const void *p, size_t len);
/* Formatted append (for status lines, headers, chunk sizes); at most 512 bytes. */
int qd_outq_printf(struct qd_outq *q, struct rte_mempool *pool, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Move every byte of <from> to the end of <to>. */
void qd_outq_splice(struct qd_outq *to, struct qd_outq *from);
void qd_outq_clear(struct qd_outq *q);

/* Send as much as the connection takes. Returns 0 (maybe bytes left: on_writable will
 * follow), or a negative errno from qd_tcp_send() other than -EAGAIN (connection
 * unusable: abort it). */
int qd_outq_flush(struct qd_outq *q, struct qd_tcp_conn *c, uint64_t now_us);

#endif /* QD_MBUF_QUEUE_H */
