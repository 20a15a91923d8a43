/*
 * Active health checks of the coordinators, run on the worker lcores over the
 * user-space TCP stack (the dispatcher's namespace has no kernel route to the
 * coordinators: the DPDK port is the only way there, and it is the path the
 * queries take, so a check proves what matters).
 *
 * Coordinator i is checked by worker i % workers, so each coordinator has one
 * checker and its fields in the shared table (coord_table.h) one writer. Every
 * interval the checker opens a connection, sends GET /v1/info and then
 * GET /v1/cluster on it (keep-alive), and closes it. A check passes when both
 * answer 200 within the timeout, /v1/info does not say "starting": true, and
 * /v1/cluster's JSON carries runningQueries and queuedQueries (stored as the
 * coordinator's load, and since_report reset). <fall> failed checks in a row
 * take an up coordinator down, <rise> passed checks take a down one up; an
 * unchecked coordinator (UNKNOWN) goes up after one pass or down after <fall>
 * failures. Transitions are logged with the reason.
 *
 * Coordinators appended to the table at run time (qdctl coordinators add) are
 * checked from the first poll that sees the new count; removed ones are not
 * checked and their health goes back to unknown (health_check.c).
 */
#ifndef QD_HEALTH_CHECK_H
#define QD_HEALTH_CHECK_H

#include <stdint.h>

#include "coord_table.h"
#include "tcp.h"

struct qd_health_conf {
	uint32_t interval_ms; /* between the starts of two checks of one coordinator; 0 = off */
	uint32_t timeout_ms;  /* connect + both answers */
	uint32_t rise;
	uint32_t fall;
	unsigned int worker_index; /* this worker checks coordinators i % worker_count == index */
	unsigned int worker_count;
};

struct qd_health_counters {
	uint64_t checks;
	uint64_t passed;
	uint64_t failed;
	uint64_t timeouts;
	uint64_t transitions;
};

struct qd_health;

/* NULL with errno on failure (EINVAL, ENOMEM). The stack and table outlive the checker.
 * interval_ms 0 or no coordinator table (coords NULL) make a checker that does nothing.
 * Probe state for every index of this worker below QD_COORDS_MAX is allocated here
 * (about 9 KiB each), so coordinators added later need no allocation. The
 * checker's connections go with the stack: destroy it after qd_tcp_stack_destroy(), or
 * once that stack gets no more input or timers (it frees only its queues and memory). */
struct qd_health *qd_health_create(const struct qd_health_conf *conf, struct qd_tcp_stack *stack,
				   struct qd_coord_table *coords, unsigned int lcore_id);
void qd_health_destroy(struct qd_health *h);
/* Optional, at the top of each worker loop iteration (like qd_proxy_set_now): the clock
 * the stack's callbacks into the checker use until the next poll. */
void qd_health_set_now(struct qd_health *h, uint64_t now_us);
/* Once per worker loop iteration: starts due checks, times out late ones. <now_us> is
 * the worker's clock, the one qd_coord_usable() and the proxy use. */
void qd_health_poll(struct qd_health *h, uint64_t now_us);
/* Relaxed snapshot for the control plane. */
void qd_health_read(const struct qd_health *h, struct qd_health_counters *out);

#endif /* QD_HEALTH_CHECK_H */
