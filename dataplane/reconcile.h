/*
 * Reconciliation of the routes restored from the state log after a restart.
 *
 * While qdispatchd was down its queries went on without it: some finished,
 * failed or were cancelled on their coordinators, and nobody will poll those
 * routes again, so they would hold their admission slots until the idle
 * timeout. The replay (control/state_log.c) flags every query route it brings
 * back as `restored`; the reconciler of each worker asks the coordinator of
 * each flagged route in its stripe of the route table (positions
 * i % workers == index, the stripes of qd_route_sweep) with
 * `GET /v1/query/{id}` over the worker's TCP stack, and:
 *   - 404 or 410 (the coordinator does not know the query): the route ends as
 *     gone;
 *   - 200 whose top-level "state" is FINISHED: ends finished; FAILED or
 *     CANCELED: ends failed; any state of a live query: the flag is cleared
 *     and the route goes on;
 *   - anything else (refused, reset, timeout, another status, no state): the
 *     flag stays and the check is repeated after a back-off, up to
 *     max_attempts; then the reconciler gives up on the route and clears its
 *     flag (the idle timeout and the health checks cover a coordinator that
 *     does not answer).
 * A route whose coordinator the health checks declared dead is skipped: the
 * proxy's sweep ends it. Once a whole pass over the stripe finds no flagged
 * route and no check is left, the reconciler stops for good (only the replay
 * flags routes), so qd_reconcile_poll() costs one test per loop iteration.
 *
 * Quiet routes are verified the same way (route.verify_after_s): a route of
 * this worker's stripe that saw no request and no verification for that long
 * is checked with its coordinator; gone or ended -> the route ends (its slots
 * go back), running -> checked again a period later, no answer -> retried as
 * above, then left for another period. This is what frees the slots of queries
 * whose clients moved to another dispatcher (a VIP failover). With it on, the
 * walk never stops; it steps every 10 ms once the restored routes are done.
 *
 * Route discovery (route.discovery_*): the proxy asks, for a query id it has
 * no route for, qd_reconcile_discover(); every coordinator not declared dead
 * gets `GET /v1/query/{id}` at once, each on its own connection. The first
 * answer 200 whose QueryInfo has a top-level "state" proves the query lives
 * there (a coordinator answers 404 or 410 for ids it does not know; any other
 * status proves nothing: a coordinator that sheds load or refuses our user
 * says nothing about where the query is); the other checks are dropped. The
 * outcome goes to the found callback (qd_proxy_discovered) from the next
 * qd_reconcile_poll(), never from inside qd_reconcile_discover(), with the
 * QueryInfo fields the admission classifies the query by. All 404 or no
 * answer by route.discovery_timeout_ms: not found. At most discovery_max ids
 * per worker at once, one discovery per id.
 *
 * Routes end through the end callback (the worker's: qd_proxy_end_route, which
 * releases the admission slots and counts the end); flags are cleared through
 * qd_route_clear_restored(). Both act by query id, never through an entry
 * pointer kept across loop iterations.
 */
#ifndef QD_RECONCILE_H
#define QD_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord_table.h"
#include "proxy.h"
#include "route_table.h"
#include "tcp.h"

#define QD_RECONCILE_IN_FLIGHT_MAX 64
#define QD_RECONCILE_DISCOVERY_MAX 1024

struct qd_qinfo;

/* End the route of <id> for reason <why>: 0 when this call ended it, else a negative
 * errno (-ENOENT, -EALREADY), as qd_proxy_end_route(). */
typedef int (*qd_reconcile_end_fn)(void *ctx, const char *id, size_t id_len,
				   enum qd_proxy_end why);

/* The discovery of <id> is over: found on coordinator <coord> (>= 0) with its QueryInfo
 * fields in <qi>, or not found (-1: every coordinator said 404, or no answer in time; <qi>
 * NULL). */
typedef void (*qd_reconcile_found_fn)(void *ctx, const char *id, size_t id_len, int coord,
				      const struct qd_qinfo *qi);

struct qd_reconcile_conf {
	unsigned int worker_index;  /* this worker's stripe of the route table */
	unsigned int worker_count;
	uint32_t max_in_flight;     /* checks at once, one connection each (0: 16) */
	uint32_t timeout_ms;        /* connect + answer of one check (0: 2000) */
	uint32_t retry_ms;          /* back-off after a failed check (0: 1000) */
	uint32_t max_attempts;      /* failed checks of one route before giving up (0: 5) */
	qd_reconcile_end_fn end;    /* NULL: qd_proxy_end_route() on the proxy given */
	void *end_ctx;
	uint64_t verify_after_us;   /* quiet routes checked after this long (0: never) */
	uint32_t discovery_max;     /* discoveries at once (0: no discovery) */
	uint32_t discovery_timeout_ms; /* of one discovery (0: 1000) */
	qd_reconcile_found_fn found; /* NULL: qd_proxy_discovered() on the proxy given */
	void *found_ctx;
};

struct qd_reconcile_counters {
	uint64_t checked;        /* answers that decided a route's fate */
	uint64_t still_running;  /* ... the query still runs: flag cleared */
	uint64_t ended_gone;     /* ... 404/410: route ended by us */
	uint64_t ended_finished; /* ... FINISHED: route ended by us */
	uint64_t ended_failed;   /* ... FAILED or CANCELED: route ended by us */
	uint64_t errors;         /* failed checks (connection, timeout, status, no state) */
	uint64_t given_up;       /* routes whose flag was cleared after max_attempts */
	uint64_t in_flight;      /* gauge: routes being checked (back-offs included) */
	uint64_t done;           /* gauge: 1 once the stripe has no restored route left */
	/* verification of quiet routes */
	uint64_t verify_checked;  /* answers that decided a quiet route's fate */
	uint64_t verify_running;  /* ... still runs: checked again a period later */
	uint64_t verify_ended;    /* ... gone or ended: route ended by us */
	uint64_t verify_errors;   /* failed checks */
	/* discovery */
	uint64_t disc_started;
	uint64_t disc_found;
	uint64_t disc_not_found;  /* every coordinator said 404/410 (or refused) */
	uint64_t disc_timed_out;  /* some coordinator did not answer in time */
	uint64_t disc_full;       /* refused: discovery_max in flight */
	uint64_t disc_joined;     /* a request for an id being discovered waits on it */
	uint64_t disc_latency_us_sum; /* start to outcome, all discoveries */
	uint64_t disc_in_flight;  /* gauge */
};

struct qd_reconcile;

/* NULL with errno on failure (EINVAL, ENOMEM). <px> may be NULL when conf->end is set;
 * <coords> NULL makes a reconciler that does nothing. The stack, tables and proxy outlive
 * the reconciler; its connections go with the stack (destroy it after
 * qd_tcp_stack_destroy(), or once that stack gets no more input or timers). */
struct qd_reconcile *qd_reconcile_create(const struct qd_reconcile_conf *conf,
					 struct qd_tcp_stack *stack, struct qd_route_table *routes,
					 struct qd_coord_table *coords, struct qd_proxy *px,
					 unsigned int lcore_id);
void qd_reconcile_destroy(struct qd_reconcile *r);
/* Optional, at the top of each loop iteration: the clock the stack's callbacks see. */
void qd_reconcile_set_now(struct qd_reconcile *r, uint64_t now_us);
/* Once per worker loop iteration, between two qd_route_quiescent() calls of this
 * worker: walks the stripe (256 positions per millisecond), starts checks, times them
 * out. */
void qd_reconcile_poll(struct qd_reconcile *r, uint64_t now_us);
/* Start discovering the coordinator of query <id> (worker lcore). 0: started, the found
 * callback will tell; -EALREADY: a discovery of <id> is in flight (its outcome covers this
 * request too); -ENOSPC: discovery_max in flight; -ENOENT: no coordinator to ask;
 * -ENOTSUP: discovery is off; -EINVAL: bad id. */
int qd_reconcile_discover(struct qd_reconcile *r, const char *id, size_t id_len);
/* Relaxed snapshot for the control plane. */
void qd_reconcile_read(const struct qd_reconcile *r, struct qd_reconcile_counters *out);

#endif /* QD_RECONCILE_H */
