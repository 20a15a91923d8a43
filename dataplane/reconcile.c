/*
 * Reconciliation of restored routes with their coordinators (see reconcile.h).
 *
 * The shape is the health checker's (health_check.c): every check slot is
 * allocated at creation with its http_parser and queues, a check is one
 * connection with one request (Connection: close), the stack calls back into
 * the slot, and a connection is detached (its callbacks pointed at
 * detached_ops) before we shut it down or abort it, so nothing of a finished
 * check comes back to a slot that may already check the next route.
 *
 * A slot holds one route from its first attempt to its resolution, back-offs
 * included, which bounds both the connections (max_in_flight) and the memory
 * of attempts per route without a table of its own. The slot keeps a copy of
 * the route's id and its position: the walk skips positions a slot holds, and
 * before every attempt the slot verifies that the position still holds the
 * same live, flagged route (positions are reused only for other ids, after an
 * RCU grace period). The answer is acted on by id only.
 *
 * Answers are not buffered: a Trino QueryInfo is tens of KB (stages, stats,
 * the session's properties), and its top-level "state" may come after any of
 * that, so lib/query_info.c's streaming scanner follows the nesting; a check
 * of a route is decided as soon as the state is complete and the rest of the
 * body is discarded by the detached connection. A discovery check reads the
 * whole document (the session's user, source, tags and the SQL classify the
 * adopted query).
 *
 * Slots: checks[0 .. count) are the walk's (restored and quiet routes);
 * checks[count + d * ncoords + c] is discovery d's check of coordinator c, so
 * a discovery never waits for a slot and finding its checks takes no search.
 */
#include "reconcile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <http_parser.h>
#include <rte_byteorder.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "lcore_stats.h"
#include "log.h"
#include "mbuf_queue.h"
#include "query_info.h"

#define RC_DEFAULT_IN_FLIGHT 16
#define RC_DEFAULT_TIMEOUT_MS 2000
#define RC_DEFAULT_RETRY_MS 1000
#define RC_DEFAULT_ATTEMPTS 5
#define RC_ATTEMPTS_MAX 100
#define RC_WALK_BUDGET 256        /* positions looked at per walk step (at least) */
#define RC_WALK_EVERY_US 1000     /* one walk step per millisecond */
#define RC_RESOLVE_RETRY_US 1000  /* next hop unknown: try the connect again this often */
#define RC_PARSE_ROUNDS 256       /* contiguous runs parsed per callback */
#define RC_SCAN_MAX (4u << 20)    /* body bytes scanned for "state" before we call it bad */
#define RC_VERIFY_WALK_EVERY_US 10000 /* the walk's pace once only quiet routes are left */
#define RC_DEFAULT_DISC_TIMEOUT_MS 1000

enum rc_phase {
	RP_FREE = 0, /* no route */
	RP_WAIT,     /* back-off after a failed attempt, until deadline_us */
	RP_CONNECT,  /* conn NULL: next hop not resolved yet; else SYN sent */
	RP_ANSWER,   /* request sent, reading the answer */
};

enum rc_outcome {
	RO_ERROR = 0,
	RO_RUNNING,
	RO_GONE,
	RO_FINISHED,
	RO_FAILED,
};

/* ---- the reconciler -------------------------------------------------------------- */

struct qd_reconcile;

enum rc_kind {
	CK_WALK = 0, /* a route of the stripe: restored, or quiet (verify) */
	CK_DISC,     /* one coordinator's check of a discovery */
};

struct rc_check {
	struct qd_reconcile *r;
	struct qd_tcp_conn *conn;
	http_parser parser;
	struct qd_inq in;
	struct qd_outq out;
	struct qd_qinfo scan;
	uint64_t deadline_us;  /* of the attempt in flight, or the end of the back-off */
	uint64_t body_bytes;
	const char *error;     /* why the last attempt failed (static strings) */
	uint32_t pos;          /* the route's position in the table */
	uint16_t coord;
	uint16_t status;
	uint8_t phase;
	uint8_t attempts;      /* failed attempts so far */
	uint8_t id_len;
	bool answered;         /* the answer is complete enough to decide: parser paused */
	uint8_t kind;          /* enum rc_kind */
	bool verify;           /* CK_WALK: a quiet route (not a restored one) */
	uint16_t disc;         /* CK_DISC: its discovery */
	char id[QD_ROUTE_KEY_LEN]; /* the route's key, zero padded as in the entry */
};

/* One query id being discovered. */
struct rc_disc {
	char id[QD_ROUTE_KEY_LEN];
	uint8_t id_len;
	bool busy;
	int16_t coord;         /* the first coordinator that has it, -1 none yet */
	uint16_t pending;      /* its checks not over */
	uint16_t timeouts;     /* ... that ended by the deadline */
	uint64_t started_us;
	uint64_t deadline_us;
	struct qd_qinfo info;  /* the finder's QueryInfo fields */
};

struct qd_reconcile {
	struct qd_reconcile_conf conf;
	struct qd_tcp_stack *stack;
	struct rte_mempool *pool;
	struct qd_route_table *routes;
	struct qd_coord_table *coords;
	struct qd_proxy *px;
	unsigned int lcore_id;
	uint64_t now_us;
	uint64_t wake_us;      /* no slot needs the poll before this */
	uint64_t walk_next_us;
	uint32_t cursor;       /* next position of our stripe to look at */
	bool pass_flagged;     /* this pass met a flagged route */
	bool done;             /* nothing left to walk: the walk stops */
	bool restored_done;    /* no restored route left in the stripe */
	unsigned int busy;     /* walk slots not RP_FREE */
	unsigned int ncoords;  /* coordinators a discovery asks (checks per discovery) */
	unsigned int disc_busy; /* discoveries in flight */
	struct rc_disc *discs; /* conf.discovery_max */
	struct qd_qinfo disc_info; /* the reported QueryInfo, for the found callback */
	struct qd_reconcile_counters counters;
	http_parser_settings settings;
	unsigned int count;    /* walk checks */
	unsigned int total;    /* walk + discovery checks */
	struct rc_check checks[];
};

static void rc_on_connected(struct qd_tcp_conn *c);
static void rc_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void rc_on_writable(struct qd_tcp_conn *c);
static void rc_on_peer_fin(struct qd_tcp_conn *c);
static void rc_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

static const struct qd_tcp_ops check_ops = {
	.on_connected = rc_on_connected,
	.on_data = rc_on_data,
	.on_writable = rc_on_writable,
	.on_peer_fin = rc_on_peer_fin,
	.on_closed = rc_on_closed,
};

static void dt_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void dt_on_nothing(struct qd_tcp_conn *c);
static void dt_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

/* A connection we are done with (app: the qd_reconcile, for the clock). */
static const struct qd_tcp_ops detached_ops = {
	.on_connected = dt_on_nothing,
	.on_data = dt_on_data,
	.on_writable = dt_on_nothing,
	.on_peer_fin = dt_on_nothing,
	.on_closed = dt_on_closed,
};

static void
wake_at(struct qd_reconcile *r, uint64_t t)
{
	if (t < r->wake_us)
		r->wake_us = t;
}

static void
set_busy(struct qd_reconcile *r, unsigned int busy)
{
	r->busy = busy;
	__atomic_store_n(&r->counters.in_flight, (uint64_t)busy, __ATOMIC_RELAXED);
}

/* A route the reconciliation is for: live, not ended, a query (not an alias), flagged.
 * Relaxed reads after the acquire of <live>, as the sweep reads entries. */
static bool
flagged(const struct qd_route_entry *e)
{
	return __atomic_load_n(&e->live, __ATOMIC_ACQUIRE) != 0 &&
	       __atomic_load_n(&e->ended, __ATOMIC_ACQUIRE) == 0 && e->is_alias == 0 &&
	       __atomic_load_n(&e->restored, __ATOMIC_ACQUIRE) != 0;
}

/* A live query route (not ended, not an alias): what verification may look at. */
static bool
alive(const struct qd_route_entry *e)
{
	return __atomic_load_n(&e->live, __ATOMIC_ACQUIRE) != 0 &&
	       __atomic_load_n(&e->ended, __ATOMIC_ACQUIRE) == 0 && e->is_alias == 0;
}

/* A live route that saw no request and no verification for verify_after_us. */
static bool
quiet(const struct qd_reconcile *r, const struct qd_route_entry *e)
{
	if (r->conf.verify_after_us == 0 || !alive(e))
		return false;
	uint64_t last = RTE_MAX(__atomic_load_n(&e->last_used_us, __ATOMIC_RELAXED),
				__atomic_load_n(&e->verified_us, __ATOMIC_RELAXED));
	return r->now_us > last && r->now_us - last >= r->conf.verify_after_us;
}

static void
addr_of(const struct qd_coord *co, char *buf, size_t len)
{
	uint32_t ip = rte_be_to_cpu_32(co->ip_be);
	snprintf(buf, len, "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
		 ip & 255, (unsigned int)co->port);
}

/* ---- connections ---------------------------------------------------------------- */

static struct qd_tcp_conn *
detach(struct rc_check *ck)
{
	struct qd_tcp_conn *c = ck->conn;
	ck->conn = NULL;
	qd_inq_clear(&ck->in);
	qd_outq_clear(&ck->out);
	if (c != NULL)
		qd_tcp_conn_set_app(c, &detached_ops, ck->r);
	return c;
}

static void
slot_free(struct rc_check *ck)
{
	RTE_ASSERT(ck->kind == CK_WALK && ck->phase != RP_FREE && ck->r->busy > 0);
	ck->phase = RP_FREE;
	ck->attempts = 0;
	set_busy(ck->r, ck->r->busy - 1);
}

static void disc_check_end(struct rc_check *ck, enum rc_outcome outcome);

static void
clear_flag(struct rc_check *ck)
{
	/* -ENOENT / -EALREADY: the route went or ended meanwhile, nothing to clear */
	(void)qd_route_clear_restored(ck->r->routes, ck->id, ck->id_len);
}

static int
end_route(struct qd_reconcile *r, const struct rc_check *ck, enum qd_proxy_end why)
{
	if (r->conf.end != NULL)
		return r->conf.end(r->conf.end_ctx, ck->id, ck->id_len, why);
	return qd_proxy_end_route(r->px, ck->id, ck->id_len, why);
}

/* The attempt in flight is over with <outcome>: close its connection and act. */
static void
attempt_end(struct rc_check *ck, enum rc_outcome outcome, const char *error)
{
	struct qd_reconcile *r = ck->r;
	struct qd_tcp_conn *c = detach(ck);
	if (c != NULL) {
		/* A decided answer may have body left: the detached connection drops it while
		 * the coordinator closes (Connection: close). A failed one is reset. */
		if (outcome == RO_ERROR)
			qd_tcp_abort(c, r->now_us); /* on_closed goes to detached_ops */
		else
			qd_tcp_shutdown(c, r->now_us);
	}
	if (ck->kind == CK_DISC) {
		disc_check_end(ck, outcome);
		return;
	}
	if (outcome == RO_ERROR) {
		qd_stat_add(ck->verify ? &r->counters.verify_errors : &r->counters.errors, 1);
		ck->error = error;
		ck->attempts++;
		if (ck->attempts < r->conf.max_attempts) {
			ck->phase = RP_WAIT;
			ck->deadline_us = r->now_us + (uint64_t)r->conf.retry_ms * 1000u;
			wake_at(r, ck->deadline_us);
			return;
		}
		if (ck->verify) {
			/* no answer: the route stays, asked again a period from now */
			(void)qd_route_mark_verified(r->routes, ck->id, ck->id_len, r->now_us);
			slot_free(ck);
			return;
		}
		char addr[24];
		addr_of(&r->coords->c[ck->coord], addr, sizeof(addr));
		QD_LOG(WARNING, dp,
		       "lcore %u: restored query %s: no answer from coordinator %s after %u "
		       "checks (%s); left to the idle timeout",
		       r->lcore_id, ck->id, addr, (unsigned int)ck->attempts, error);
		clear_flag(ck);
		qd_stat_add(&r->counters.given_up, 1);
		slot_free(ck);
		return;
	}
	if (ck->verify) {
		qd_stat_add(&r->counters.verify_checked, 1);
		if (outcome == RO_RUNNING) {
			(void)qd_route_mark_verified(r->routes, ck->id, ck->id_len, r->now_us);
			qd_stat_add(&r->counters.verify_running, 1);
		} else {
			enum qd_proxy_end why = outcome == RO_GONE	   ? QD_PROXY_END_GONE
						: outcome == RO_FINISHED ? QD_PROXY_END_FINISHED
									 : QD_PROXY_END_FAILED;
			if (end_route(r, ck, why) == 0)
				qd_stat_add(&r->counters.verify_ended, 1);
		}
		slot_free(ck);
		return;
	}
	qd_stat_add(&r->counters.checked, 1);
	switch (outcome) {
	case RO_RUNNING:
		clear_flag(ck);
		qd_stat_add(&r->counters.still_running, 1);
		break;
	case RO_GONE:
		if (end_route(r, ck, QD_PROXY_END_GONE) == 0)
			qd_stat_add(&r->counters.ended_gone, 1);
		break;
	case RO_FINISHED:
		if (end_route(r, ck, QD_PROXY_END_FINISHED) == 0)
			qd_stat_add(&r->counters.ended_finished, 1);
		break;
	case RO_FAILED:
		if (end_route(r, ck, QD_PROXY_END_FAILED) == 0)
			qd_stat_add(&r->counters.ended_failed, 1);
		break;
	case RO_ERROR:
		break;
	}
	slot_free(ck);
}

/* The answer is complete enough: what does it say? */
static void
decide(struct rc_check *ck)
{
	if (ck->status == 404 || ck->status == 410) {
		attempt_end(ck, RO_GONE, NULL);
		return;
	}
	if (ck->status != 200) {
		attempt_end(ck, RO_ERROR, "unexpected status");
		return;
	}
	const struct qd_qinfo *s = &ck->scan;
	if ((s->found & QD_QINFO_F_STATE) == 0) {
		attempt_end(ck, RO_ERROR, "no state in the answer");
		return;
	}
	if (strcmp(s->state, "FINISHED") == 0) {
		attempt_end(ck, RO_FINISHED, NULL);
		return;
	}
	if (qd_qinfo_state_final(s->state)) {
		attempt_end(ck, RO_FAILED, NULL);
		return;
	}
	if (qd_qinfo_state_live(s->state)) {
		attempt_end(ck, RO_RUNNING, NULL);
		return;
	}
	attempt_end(ck, RO_ERROR, "unknown state");
}

static void
connect_try(struct rc_check *ck)
{
	struct qd_reconcile *r = ck->r;
	const struct qd_coord *co = &r->coords->c[ck->coord];
	ck->in = (struct qd_inq){0};
	ck->out = (struct qd_outq){0};
	struct qd_tcp_conn *c = qd_tcp_connect(r->stack, co->ip_be, co->port, &check_ops, ck,
					       r->now_us);
	if (c != NULL) {
		ck->conn = c;
		return;
	}
	if (errno == EAGAIN) {
		/* next hop not resolved yet (or no free port): again soon, until the deadline */
		wake_at(r, RTE_MIN(ck->deadline_us, r->now_us + RC_RESOLVE_RETRY_US));
		return;
	}
	attempt_end(ck, RO_ERROR, errno == ENOSPC ? "no connection slot" : "cannot connect");
}

/* The slot's route as it was when the slot took it: still live, flagged, same id? */
static bool
still_ours(const struct rc_check *ck)
{
	const struct qd_route_table *t = ck->r->routes;
	if (ck->pos >= t->positions)
		return false;
	const struct qd_route_entry *e = &t->entries[ck->pos];
	return (ck->verify ? alive(e) : flagged(e)) && memcmp(e->id, ck->id, QD_ROUTE_KEY_LEN) == 0;
}

/* Start an attempt for the slot's route, or let the route go when it is not ours to
 * check now (ended meanwhile, or its coordinator dead: the sweep ends those). */
static void
attempt_start(struct rc_check *ck)
{
	struct qd_reconcile *r = ck->r;
	if (!still_ours(ck) || qd_coord_dead(&r->coords->c[ck->coord])) {
		slot_free(ck);
		return;
	}
	ck->phase = RP_CONNECT;
	ck->deadline_us = r->now_us + (uint64_t)r->conf.timeout_ms * 1000u;
	wake_at(r, ck->deadline_us);
	connect_try(ck);
}

static void
send_request(struct rc_check *ck)
{
	struct qd_reconcile *r = ck->r;
	http_parser_init(&ck->parser, HTTP_RESPONSE);
	ck->parser.data = ck;
	qd_qinfo_init(&ck->scan, ck->kind != CK_DISC);
	ck->status = 0;
	ck->body_bytes = 0;
	ck->answered = false;
	ck->phase = RP_ANSWER;
	char addr[24];
	addr_of(&r->coords->c[ck->coord], addr, sizeof(addr));
	/* The user headers: a coordinator without authentication takes the user from them
	 * (Trino refuses a request that names none). */
	int rc = qd_outq_printf(&ck->out, r->pool,
				"GET /v1/query/%s HTTP/1.1\r\nHost: %s\r\n"
				"User-Agent: qdispatch-reconcile\r\nAccept: application/json\r\n"
				"X-Trino-User: qdispatch\r\nX-Presto-User: qdispatch\r\n"
				"Connection: close\r\n\r\n",
				ck->id, addr);
	if (rc != 0) {
		attempt_end(ck, RO_ERROR, "no mbuf for the request");
		return;
	}
	if (qd_outq_flush(&ck->out, ck->conn, r->now_us) != 0)
		attempt_end(ck, RO_ERROR, "send failed");
	/* bytes the send buffer did not take go out from on_writable */
}

/* ---- the answer ------------------------------------------------------------------ */

static int
rc_on_headers_complete(http_parser *hp)
{
	struct rc_check *ck = hp->data;
	ck->status = (uint16_t)hp->status_code;
	if (hp->status_code / 100 == 1 || hp->status_code == 200)
		return 0; /* an interim answer (the real one follows), or the body to scan */
	/* the status alone decides */
	ck->answered = true;
	http_parser_pause(hp, 1);
	return 0;
}

static int
rc_on_body(http_parser *hp, const char *at, size_t n)
{
	struct rc_check *ck = hp->data;
	if (ck->status != 200)
		return 0;
	bool done = qd_qinfo_feed(&ck->scan, at, n);
	ck->body_bytes += n;
	if (done || ck->body_bytes > RC_SCAN_MAX) {
		ck->answered = true;
		http_parser_pause(hp, 1);
	}
	return 0;
}

static int
rc_on_message_complete(http_parser *hp)
{
	struct rc_check *ck = hp->data;
	if (hp->status_code / 100 == 1)
		return 0;
	ck->answered = true;
	http_parser_pause(hp, 1);
	return 0;
}

/* Parse what arrived; from on_data. */
static void
process(struct rc_check *ck)
{
	struct qd_reconcile *r = ck->r;
	/* Each round consumes one contiguous run or stops; the input is bounded by the
	 * receive window, and what is left waits for the next segment. */
	for (unsigned int round = 0; round < RC_PARSE_ROUNDS && !ck->answered; round++) {
		const char *at;
		size_t n = qd_inq_peek(&ck->in, &at);
		if (n == 0)
			break;
		size_t used = http_parser_execute(&ck->parser, &r->settings, at, n);
		enum http_errno err = HTTP_PARSER_ERRNO(&ck->parser);
		qd_inq_consume(&ck->in, (uint32_t)used);
		qd_tcp_recv_consumed(ck->conn, (uint32_t)used, r->now_us);
		if (err != HPE_OK && err != HPE_PAUSED) {
			attempt_end(ck, RO_ERROR, "bad HTTP");
			return;
		}
		if (used == 0 && !ck->answered)
			break; /* never spin */
	}
	if (ck->answered)
		decide(ck);
}

/* ---- callbacks -------------------------------------------------------------------- */

static void
rc_on_connected(struct qd_tcp_conn *c)
{
	send_request(qd_tcp_conn_app(c));
}

static void
rc_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct rc_check *ck = qd_tcp_conn_app(c);
	if (ck->phase != RP_ANSWER) {
		/* nothing asked yet: not an answer of ours */
		uint32_t n = rte_pktmbuf_pkt_len(m);
		rte_pktmbuf_free(m);
		qd_tcp_recv_consumed(c, n, ck->r->now_us);
		return;
	}
	qd_inq_append(&ck->in, m);
	process(ck);
}

static void
rc_on_writable(struct qd_tcp_conn *c)
{
	struct rc_check *ck = qd_tcp_conn_app(c);
	if (!qd_outq_empty(&ck->out) && qd_outq_flush(&ck->out, c, ck->r->now_us) != 0)
		attempt_end(ck, RO_ERROR, "send failed");
}

static void
rc_on_peer_fin(struct qd_tcp_conn *c)
{
	struct rc_check *ck = qd_tcp_conn_app(c);
	if (ck->phase != RP_ANSWER) {
		attempt_end(ck, RO_ERROR, "closed before the request");
		return;
	}
	/* a body delimited by the close ends here */
	if (!ck->answered && qd_inq_empty(&ck->in))
		http_parser_execute(&ck->parser, &ck->r->settings, NULL, 0);
	if (ck->answered) {
		decide(ck);
		return;
	}
	attempt_end(ck, RO_ERROR, "connection closed");
}

static void
rc_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct rc_check *ck = qd_tcp_conn_app(c);
	ck->conn = NULL; /* gone: nothing to abort */
	attempt_end(ck, RO_ERROR,
		    why == QD_TCP_CLOSE_REFUSED   ? "connection refused"
		    : why == QD_TCP_CLOSE_RESET   ? "connection reset"
		    : why == QD_TCP_CLOSE_TIMEOUT ? "connection timed out"
						  : "connection closed");
}

static void
dt_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct qd_reconcile *r = qd_tcp_conn_app(c);
	uint32_t n = rte_pktmbuf_pkt_len(m);
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, n, r->now_us);
}

static void
dt_on_nothing(struct qd_tcp_conn *c)
{
	(void)c;
}

static void
dt_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)c;
	(void)why;
}

/* ---- the walk --------------------------------------------------------------------- */

static bool
held(const struct qd_reconcile *r, uint32_t pos)
{
	for (unsigned int k = 0; k < r->count; k++)
		if (r->checks[k].phase != RP_FREE && r->checks[k].pos == pos)
			return true;
	return false;
}

static struct rc_check *
free_slot(struct qd_reconcile *r)
{
	for (unsigned int k = 0; k < r->count; k++)
		if (r->checks[k].phase == RP_FREE)
			return &r->checks[k];
	return NULL;
}

/* No restored route is left in the stripe. The walk goes on for quiet routes when they
 * are verified. */
static bool
restored_busy(const struct qd_reconcile *r)
{
	for (unsigned int k = 0; k < r->count; k++)
		if (r->checks[k].phase != RP_FREE && !r->checks[k].verify)
			return true;
	return false;
}

static void
finish(struct qd_reconcile *r)
{
	r->restored_done = true;
	r->done = r->conf.verify_after_us == 0;
	__atomic_store_n(&r->counters.done, 1, __ATOMIC_RELAXED);
	struct qd_reconcile_counters *k = &r->counters;
	if (k->checked + k->given_up == 0)
		return; /* nothing was restored here: nothing to say */
	QD_LOG(NOTICE, dp,
	       "lcore %u: restored routes reconciled: %" PRIu64 " still running, %" PRIu64
	       " finished, %" PRIu64 " failed, %" PRIu64 " gone, %" PRIu64 " given up (%" PRIu64
	       " failed checks)",
	       r->lcore_id, k->still_running, k->ended_finished, k->ended_failed, k->ended_gone,
	       k->given_up, k->errors);
}

/* One step of the walk over our stripe: up to RC_WALK_BUDGET positions. */
static void
walk(struct qd_reconcile *r)
{
	struct qd_route_table *t = r->routes;
	const unsigned int stripes = r->conf.worker_count;
	const unsigned int coords = qd_coord_count(r->coords);
	/* Verifying quiet routes, a pass over the stripe takes about a second whatever
	 * route.max is (100 steps of RC_VERIFY_WALK_EVERY_US): a position is one entry read,
	 * and at the default 262,144 a fixed budget would take ~5 s a pass. */
	unsigned int budget = RC_WALK_BUDGET;
	if (r->restored_done && t->positions / stripes / 100u > budget)
		budget = t->positions / stripes / 100u;
	for (unsigned int n = 0; n < budget; n++) {
		uint32_t idx = r->cursor;
		if (idx >= t->positions) {
			/* a pass is over: the restored routes are done when it met no flagged
			 * route and no restored one is being checked */
			if (!r->restored_done && !r->pass_flagged && !restored_busy(r)) {
				finish(r);
				if (r->done)
					return;
			}
			r->pass_flagged = false;
			r->cursor = r->conf.worker_index;
			return;
		}
		const struct qd_route_entry *e = &t->entries[idx];
		bool restored = flagged(e);
		if (!restored && !quiet(r, e)) {
			r->cursor = idx + stripes;
			continue;
		}
		r->pass_flagged = r->pass_flagged || restored;
		uint16_t coord = e->coord;
		if (held(r, idx) || (coord < coords && qd_coord_dead(&r->coords->c[coord]))) {
			/* being checked; or the sweep ends it (its coordinator is dead) */
			r->cursor = idx + stripes;
			continue;
		}
		struct rc_check *ck = free_slot(r);
		if (ck == NULL)
			return; /* every slot busy: this route waits for one, the cursor with it */
		r->cursor = idx + stripes;
		/* Copied out: the entry pointer is good until our next quiescent state only. */
		memcpy(ck->id, e->id, QD_ROUTE_KEY_LEN);
		ck->id[QD_ROUTE_KEY_LEN - 1] = '\0';
		ck->id_len = (uint8_t)strnlen(ck->id, QD_ROUTE_KEY_LEN);
		ck->pos = idx;
		ck->coord = coord;
		ck->verify = !restored;
		ck->attempts = 0;
		ck->error = NULL;
		if (coord >= coords || ck->id_len == 0) {
			/* replayed for a coordinator we no longer know: nobody to ask */
			if (!restored) {
				(void)qd_route_mark_verified(t, ck->id, ck->id_len, r->now_us);
				continue;
			}
			clear_flag(ck);
			qd_stat_add(&r->counters.given_up, 1);
			continue;
		}
		ck->phase = RP_WAIT;
		set_busy(r, r->busy + 1);
		attempt_start(ck);
	}
}

/* ---- set-up and the poll ---------------------------------------------------------- */

struct qd_reconcile *
qd_reconcile_create(const struct qd_reconcile_conf *conf, struct qd_tcp_stack *stack,
		    struct qd_route_table *routes, struct qd_coord_table *coords,
		    struct qd_proxy *px, unsigned int lcore_id)
{
	if (conf == NULL || stack == NULL || routes == NULL || conf->worker_count == 0 ||
	    conf->worker_index >= conf->worker_count ||
	    conf->max_in_flight > QD_RECONCILE_IN_FLIGHT_MAX ||
	    conf->max_attempts > RC_ATTEMPTS_MAX || (conf->end == NULL && px == NULL) ||
	    (coords != NULL && coords->count > QD_COORDS_MAX)) {
		errno = EINVAL;
		return NULL;
	}
	if (conf->discovery_max > QD_RECONCILE_DISCOVERY_MAX ||
	    (conf->discovery_max > 0 && conf->found == NULL && px == NULL)) {
		errno = EINVAL;
		return NULL;
	}
	unsigned int count = conf->max_in_flight ? conf->max_in_flight : RC_DEFAULT_IN_FLIGHT;
	unsigned int ncoords = coords != NULL ? qd_coord_count(coords) : 0;
	unsigned int total = count + conf->discovery_max * ncoords;
	int socket = (int)rte_lcore_to_socket_id(lcore_id);
	size_t size = sizeof(struct qd_reconcile) + (size_t)total * sizeof(struct rc_check);
	struct qd_reconcile *r = rte_zmalloc_socket("qd_reconcile", size, RTE_CACHE_LINE_SIZE,
						    socket);
	if (r == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (conf->discovery_max > 0) {
		r->discs = rte_zmalloc_socket("qd_reconcile_discs",
					      sizeof(r->discs[0]) * conf->discovery_max,
					      RTE_CACHE_LINE_SIZE, socket);
		if (r->discs == NULL) {
			rte_free(r);
			errno = ENOMEM;
			return NULL;
		}
	}
	r->ncoords = ncoords;
	r->total = total;
	r->conf = *conf;
	r->conf.max_in_flight = count;
	if (r->conf.timeout_ms == 0)
		r->conf.timeout_ms = RC_DEFAULT_TIMEOUT_MS;
	if (r->conf.retry_ms == 0)
		r->conf.retry_ms = RC_DEFAULT_RETRY_MS;
	if (r->conf.max_attempts == 0)
		r->conf.max_attempts = RC_DEFAULT_ATTEMPTS;
	if (r->conf.discovery_timeout_ms == 0)
		r->conf.discovery_timeout_ms = RC_DEFAULT_DISC_TIMEOUT_MS;
	r->stack = stack;
	r->pool = qd_tcp_stack_pool(stack);
	r->routes = routes;
	r->coords = coords;
	r->px = px;
	r->lcore_id = lcore_id;
	r->count = count;
	r->cursor = conf->worker_index;
	r->wake_us = UINT64_MAX;
	if (coords == NULL) {
		r->done = r->restored_done = true;
		r->counters.done = 1;
	}
	http_parser_settings_init(&r->settings);
	r->settings.on_headers_complete = rc_on_headers_complete;
	r->settings.on_body = rc_on_body;
	r->settings.on_message_complete = rc_on_message_complete;
	for (unsigned int k = 0; k < total; k++) {
		r->checks[k].r = r;
		r->checks[k].kind = k < count ? CK_WALK : CK_DISC;
		r->checks[k].disc = k < count ? 0 : (uint16_t)((k - count) / ncoords);
		r->checks[k].coord = k < count ? 0 : (uint16_t)((k - count) % ncoords);
	}
	return r;
}

void
qd_reconcile_destroy(struct qd_reconcile *r)
{
	if (r == NULL)
		return;
	/* Connections go with the stack (as the proxy's do); only our queues hold mbufs. */
	for (unsigned int k = 0; k < r->total; k++) {
		qd_inq_clear(&r->checks[k].in);
		qd_outq_clear(&r->checks[k].out);
	}
	rte_free(r->discs);
	rte_free(r);
}

void
qd_reconcile_set_now(struct qd_reconcile *r, uint64_t now_us)
{
	r->now_us = now_us;
}

/* When slot <ck> next needs the poll. */
static uint64_t
check_wake(const struct rc_check *ck)
{
	if (ck->phase == RP_FREE)
		return UINT64_MAX;
	if (ck->phase == RP_CONNECT && ck->conn == NULL)
		return RTE_MIN(ck->deadline_us, ck->r->now_us + RC_RESOLVE_RETRY_US);
	return ck->deadline_us;
}

static void
check_poll(struct rc_check *ck)
{
	uint64_t now = ck->r->now_us;
	switch ((enum rc_phase)ck->phase) {
	case RP_FREE:
		return;
	case RP_WAIT:
		if (now >= ck->deadline_us)
			attempt_start(ck);
		return;
	case RP_CONNECT:
	case RP_ANSWER:
		if (now >= ck->deadline_us)
			attempt_end(ck, RO_ERROR,
				    ck->phase == RP_ANSWER ? "timeout"
				    : ck->conn == NULL     ? "timeout (next hop unresolved)"
							   : "connect timeout");
		else if (ck->phase == RP_CONNECT && ck->conn == NULL)
			connect_try(ck);
		return;
	}
}

/* ---- discovery ---------------------------------------------------------------------- */

static struct rc_check *
disc_check(struct qd_reconcile *r, unsigned int d, unsigned int c)
{
	RTE_ASSERT(d < r->conf.discovery_max && c < r->ncoords);
	return &r->checks[r->count + d * r->ncoords + c];
}

/* A check of discovery <ck->disc> is over (the connection is detached already). */
static void
disc_check_end(struct rc_check *ck, enum rc_outcome outcome)
{
	struct qd_reconcile *r = ck->r;
	struct rc_disc *d = &r->discs[ck->disc];
	ck->phase = RP_FREE;
	RTE_VERIFY(d->busy && d->pending > 0);
	d->pending--;
	if (outcome == RO_ERROR && r->now_us >= ck->deadline_us)
		d->timeouts++;
	bool here = outcome == RO_RUNNING || outcome == RO_FINISHED || outcome == RO_FAILED;
	if (!here || d->coord >= 0)
		return;
	d->coord = (int16_t)ck->coord;
	d->info = ck->scan;
	/* the others' answers do not matter any more */
	for (unsigned int c = 0; c < r->ncoords; c++) {
		struct rc_check *o = disc_check(r, ck->disc, c);
		if (o == ck || o->phase == RP_FREE)
			continue;
		struct qd_tcp_conn *oc = detach(o);
		o->phase = RP_FREE;
		d->pending--;
		if (oc != NULL)
			qd_tcp_abort(oc, r->now_us);
	}
}

int
qd_reconcile_discover(struct qd_reconcile *r, const char *id, size_t id_len)
{
	if (r->conf.discovery_max == 0)
		return -ENOTSUP;
	if (id_len == 0 || id_len >= QD_ROUTE_KEY_LEN || memchr(id, '\0', id_len) != NULL)
		return -EINVAL;
	int free_d = -1;
	for (unsigned int k = 0; k < r->conf.discovery_max; k++) {
		const struct rc_disc *d = &r->discs[k];
		if (d->busy && d->id_len == id_len && memcmp(d->id, id, id_len) == 0) {
			qd_stat_add(&r->counters.disc_joined, 1);
			return -EALREADY;
		}
		if (!d->busy && free_d < 0)
			free_d = (int)k;
	}
	if (free_d < 0) {
		qd_stat_add(&r->counters.disc_full, 1);
		return -ENOSPC;
	}
	unsigned int ask = 0;
	for (unsigned int c = 0; c < r->ncoords; c++)
		ask += !qd_coord_dead(&r->coords->c[c]);
	if (ask == 0)
		return -ENOENT;
	struct rc_disc *d = &r->discs[free_d];
	memset(d->id, 0, sizeof(d->id));
	memcpy(d->id, id, id_len);
	d->id_len = (uint8_t)id_len;
	d->busy = true;
	d->coord = -1;
	d->pending = (uint16_t)ask;
	d->timeouts = 0;
	d->started_us = r->now_us;
	d->deadline_us = r->now_us + (uint64_t)r->conf.discovery_timeout_ms * 1000u;
	r->disc_busy++;
	__atomic_store_n(&r->counters.disc_in_flight, (uint64_t)r->disc_busy, __ATOMIC_RELAXED);
	qd_stat_add(&r->counters.disc_started, 1);
	/* Checks that fail at once only count down: the outcome is reported from the poll. */
	for (unsigned int c = 0; c < r->ncoords && d->coord < 0; c++) {
		if (qd_coord_dead(&r->coords->c[c]))
			continue;
		struct rc_check *ck = disc_check(r, (unsigned int)free_d, c);
		RTE_VERIFY(ck->phase == RP_FREE);
		memcpy(ck->id, d->id, sizeof(ck->id));
		ck->id_len = d->id_len;
		ck->attempts = 0;
		ck->error = NULL;
		ck->phase = RP_CONNECT;
		ck->deadline_us = d->deadline_us;
		connect_try(ck);
	}
	return 0;
}

/* Report discovery <k>: its slot is free again before the callback runs (the callback may
 * serve requests that start other discoveries); the QueryInfo is copied out first. */
static void
disc_report(struct qd_reconcile *r, unsigned int k)
{
	struct rc_disc *d = &r->discs[k];
	char id[QD_ROUTE_KEY_LEN];
	memcpy(id, d->id, sizeof(id));
	size_t id_len = d->id_len;
	int coord = d->coord;
	struct qd_qinfo *qi = NULL;
	if (coord >= 0) {
		qd_stat_add(&r->counters.disc_found, 1);
		qi = &r->disc_info;
		*qi = d->info;
	} else if (d->timeouts > 0) {
		qd_stat_add(&r->counters.disc_timed_out, 1);
	} else {
		qd_stat_add(&r->counters.disc_not_found, 1);
	}
	qd_stat_add(&r->counters.disc_latency_us_sum,
		    r->now_us > d->started_us ? r->now_us - d->started_us : 0);
	d->busy = false;
	r->disc_busy--;
	__atomic_store_n(&r->counters.disc_in_flight, (uint64_t)r->disc_busy, __ATOMIC_RELAXED);
	if (r->conf.found != NULL)
		r->conf.found(r->conf.found_ctx, id, id_len, coord, qi);
	else
		qd_proxy_discovered(r->px, id, id_len, coord, qi);
}

/* Every loop iteration while discoveries run: their checks' clocks, then outcomes. */
static void
disc_poll(struct qd_reconcile *r)
{
	for (unsigned int k = 0; k < r->conf.discovery_max && r->disc_busy > 0; k++) {
		struct rc_disc *d = &r->discs[k];
		if (!d->busy)
			continue;
		for (unsigned int c = 0; c < r->ncoords && d->pending > 0 && d->coord < 0; c++)
			check_poll(disc_check(r, k, c));
		if (d->pending == 0 || d->coord >= 0)
			disc_report(r, k);
	}
}

void
qd_reconcile_poll(struct qd_reconcile *r, uint64_t now_us)
{
	r->now_us = now_us;
	if (r->disc_busy > 0)
		disc_poll(r);
	if (r->done)
		return;
	if (now_us >= r->wake_us) {
		/* Callbacks during this pass may only lower wake_us (wake_at); start from the
		 * farthest and take the minimum over every slot afterwards. */
		r->wake_us = UINT64_MAX;
		for (unsigned int k = 0; k < r->count; k++)
			check_poll(&r->checks[k]);
		for (unsigned int k = 0; k < r->count; k++)
			wake_at(r, check_wake(&r->checks[k]));
	}
	if (now_us >= r->walk_next_us) {
		r->walk_next_us = now_us + (r->restored_done ? RC_VERIFY_WALK_EVERY_US
							     : RC_WALK_EVERY_US);
		walk(r);
	}
}

void
qd_reconcile_read(const struct qd_reconcile *r, struct qd_reconcile_counters *out)
{
	out->checked = qd_stat_read(&r->counters.checked);
	out->still_running = qd_stat_read(&r->counters.still_running);
	out->ended_gone = qd_stat_read(&r->counters.ended_gone);
	out->ended_finished = qd_stat_read(&r->counters.ended_finished);
	out->ended_failed = qd_stat_read(&r->counters.ended_failed);
	out->errors = qd_stat_read(&r->counters.errors);
	out->given_up = qd_stat_read(&r->counters.given_up);
	out->in_flight = qd_stat_read(&r->counters.in_flight);
	out->done = qd_stat_read(&r->counters.done);
	out->verify_checked = qd_stat_read(&r->counters.verify_checked);
	out->verify_running = qd_stat_read(&r->counters.verify_running);
	out->verify_ended = qd_stat_read(&r->counters.verify_ended);
	out->verify_errors = qd_stat_read(&r->counters.verify_errors);
	out->disc_started = qd_stat_read(&r->counters.disc_started);
	out->disc_found = qd_stat_read(&r->counters.disc_found);
	out->disc_not_found = qd_stat_read(&r->counters.disc_not_found);
	out->disc_timed_out = qd_stat_read(&r->counters.disc_timed_out);
	out->disc_full = qd_stat_read(&r->counters.disc_full);
	out->disc_joined = qd_stat_read(&r->counters.disc_joined);
	out->disc_latency_us_sum = qd_stat_read(&r->counters.disc_latency_us_sum);
	out->disc_in_flight = qd_stat_read(&r->counters.disc_in_flight);
}
