/* Admission control (dataplane/admission.c) on hand-built resource-group trees: the fast
 * path and its reserves, the queue (FIFO, maxQueued, cancel, timeout, abandon), nested
 * groups and the scheduling policies, reloads, and the invariant under concurrency: three
 * EAL lcores submit and release as fast as they can while a shared counter of queries
 * "running" per group must never exceed that group's limit, and every slot comes back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_random.h>

#include "admission.h"

static struct rte_mempool *pool;

/* A tree: group i has parent parents[i] (-1 root), limit limits[i], maxQueued queued[i]. */
static struct qd_rg_config *
tree(unsigned int n, const int *parents, const uint32_t *limits, const uint32_t *queued,
     const enum qd_rg_policy *policies)
{
	struct qd_rg_config *rg = calloc(1, sizeof(*rg));
	assert_non_null(rg);
	rg->groups_count = n;
	for (unsigned int i = 0; i < n; i++) {
		struct qd_rg_group *g = &rg->groups[i];
		snprintf(g->name, sizeof(g->name), "g%u", i);
		g->parent = parents[i];
		g->depth = parents[i] < 0 ? 0 : (uint8_t)(rg->groups[parents[i]].depth + 1);
		g->hard_concurrency_limit = limits[i];
		g->max_queued = queued[i];
		g->soft_memory_limit_bytes = UINT64_MAX;
		g->scheduling_policy = policies ? policies[i] : QD_RG_POLICY_FAIR;
		g->scheduling_weight = 1;
		g->leaf = true;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (parents[i] >= 0)
			rg->groups[parents[i]].leaf = false;
	}
	return rg;
}

static struct qd_admission *
make(struct qd_rg_config *rg, unsigned int workers, uint32_t batch)
{
	struct qd_admission_conf conf = {
		.workers = workers,
		.queued_max = 64,
		.batch = batch,
		.queue_timeout_us = 10000000,
		.client_timeout_us = 5000000,
		.done_linger_us = 1000000,
	};
	struct qd_admission *a = qd_admission_create(&conf, rg);
	assert_non_null(a);
	return a;
}

static struct rte_mbuf *
request(void)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	assert_non_null(m);
	return m;
}

/* Submit that must queue; attaches a request and returns the entry. */
static uint32_t
must_queue(struct qd_admission *a, unsigned int w, int g, uint64_t now)
{
	uint32_t e = 0;
	assert_int_equal(qd_admission_submit(a, w, g, 0, now, &e), QD_ADM_QUEUED);
	assert_int_not_equal(e, QD_ADM_NONE);
	qd_admission_attach(a, e, request(), 1, 0);
	return e;
}

static void
must_check(const struct qd_admission *a)
{
	int bad = -1;
	assert_int_equal(qd_admission_check(a, &bad), 0);
}

static int64_t
running(const struct qd_admission *a, int g)
{
	struct qd_adm_group_stats s;
	qd_admission_group_stats(a, g, &s);
	return s.running;
}

/* Claim an admitted entry as a poll would, then mark it dispatched. */
static void
dispatch(struct qd_admission *a, uint32_t e, uint64_t now)
{
	assert_int_equal(qd_admission_poll(a, e, now), QD_ADM_ADMITTED);
	uint32_t len = 0;
	struct rte_mbuf *m = qd_admission_claim(a, e, &len);
	assert_non_null(m);
	assert_int_equal(len, 1);
	assert_null(qd_admission_claim(a, e, &len)); /* exactly once */
	rte_pktmbuf_free(m);
	qd_admission_dispatched(a, e);
}

static void
test_fast_path_and_fifo(void **state)
{
	(void)state;
	int parents[] = {-1};
	uint32_t limits[] = {3}, queued[] = {10};
	struct qd_admission *a = make(tree(1, parents, limits, queued, NULL), 1, 0);
	uint32_t e;
	for (int i = 0; i < 3; i++)
		assert_int_equal(qd_admission_submit(a, 0, 0, 0, 1, &e), QD_ADM_RUN);
	assert_int_equal(running(a, 0), 3);
	uint32_t q1 = must_queue(a, 0, 0, 2), q2 = must_queue(a, 0, 0, 3);
	char id[QD_ADM_ID_MAX];
	snprintf(id, sizeof(id), "%s", a->entries[q1].id);
	assert_int_equal(qd_admission_find(a, id, strlen(id)), q1);
	id[strlen(id) - 1] ^= 1; /* a wrong tag is not found */
	assert_int_equal(qd_admission_find(a, id, strlen(id)), QD_ADM_NONE);
	assert_int_equal(qd_admission_find(a, "qdq_1", 5), QD_ADM_NONE);
	assert_int_equal(qd_admission_poll(a, q1, 4), QD_ADM_WAITING);
	/* while a queue exists nobody passes it, even with a slot in a reserve */
	qd_admission_release(a, 0, 0, 0);
	assert_int_equal(qd_admission_poll(a, q2, 5), QD_ADM_WAITING);
	assert_int_equal(qd_admission_poll(a, q1, 5), QD_ADM_ADMITTED);
	assert_int_equal(qd_admission_submit(a, 0, 0, 0, 6, &e), QD_ADM_QUEUED);
	qd_admission_attach(a, e, request(), 1, 0);
	dispatch(a, q1, 6);
	must_check(a);
	qd_admission_release(a, 0, 0, 0);
	assert_int_equal(qd_admission_poll(a, q2, 7), QD_ADM_ADMITTED);
	assert_int_equal(qd_admission_poll(a, e, 7), QD_ADM_WAITING);
	dispatch(a, q2, 7);
	/* everything ends: the last queued one runs and ends, all slots back */
	qd_admission_release(a, 0, 0, 0);
	dispatch(a, e, 8);
	for (int i = 0; i < 3; i++)
		qd_admission_release(a, 0, 0, 0);
	assert_int_equal(running(a, 0), 0);
	assert_int_equal(a->entries_used, 0);
	must_check(a);
	qd_admission_destroy(a);
}

static void
test_queue_full_cancel_timeout(void **state)
{
	(void)state;
	int parents[] = {-1};
	uint32_t limits[] = {1}, queued[] = {2};
	struct qd_admission *a = make(tree(1, parents, limits, queued, NULL), 2, 0);
	uint32_t e;
	assert_int_equal(qd_admission_submit(a, 0, 0, 0, 0, &e), QD_ADM_RUN);
	uint32_t q1 = must_queue(a, 1, 0, 0), q2 = must_queue(a, 1, 0, 0);
	assert_int_equal(qd_admission_submit(a, 1, 0, 0, 0, &e), QD_ADM_QUEUE_FULL);
	assert_int_equal(a->g[0].queue_full, 1);
	/* cancel the first: the second moves up, a place is free again */
	assert_true(qd_admission_cancel(a, 1, q1, 10));
	assert_int_equal(qd_admission_poll(a, q1, 11), QD_ADM_DONE);
	assert_int_equal(a->entries[q1].reason, QD_ADM_DONE_CANCELED);
	assert_false(qd_admission_cancel(a, 1, q1, 12)); /* twice: nothing */
	qd_admission_done_answered(a, q1);
	uint32_t q3 = must_queue(a, 0, 0, 20);
	/* queue timeout (10 s) for q2, abandon (5 s without a poll) for q3 */
	uint32_t cursor = 0;
	assert_int_equal(qd_admission_poll(a, q2, 5000000), QD_ADM_WAITING);
	assert_int_equal(qd_admission_expire(a, &cursor, 64, 5000010), 0);
	assert_int_equal(qd_admission_expire(a, &cursor, 64, 5000030), 1); /* q3 abandoned */
	assert_int_equal(a->entries[q3].reason, QD_ADM_DONE_ABANDONED);
	assert_int_equal(qd_admission_expire(a, &cursor, 64, 10000001), 1); /* q2 timed out */
	assert_int_equal(a->entries[q2].reason, QD_ADM_DONE_TIMEOUT);
	assert_int_equal(a->g[0].timed_out, 1);
	assert_int_equal(a->g[0].abandoned, 1);
	assert_int_equal(a->g[0].queued, 0);
	/* DONE entries linger, then are freed */
	assert_int_equal(qd_admission_expire(a, &cursor, 64, 20000000), 0);
	assert_int_equal(a->entries_used, 0);
	/* an admitted entry that is cancelled gives its slot back */
	uint32_t q4 = must_queue(a, 0, 0, 30);
	qd_admission_release(a, 0, 0, 0);
	assert_int_equal(qd_admission_poll(a, q4, 31), QD_ADM_ADMITTED);
	assert_int_equal(running(a, 0), 1);
	assert_true(qd_admission_cancel(a, 0, q4, 32));
	assert_int_equal(running(a, 0), 0);
	must_check(a);
	qd_admission_destroy(a);
}

/* Reserves of one worker go back when another worker's query has to queue. */
static void
test_reserve_flush(void **state)
{
	(void)state;
	int parents[] = {-1};
	uint32_t limits[] = {8}, queued[] = {10};
	struct qd_admission *a = make(tree(1, parents, limits, queued, NULL), 2, 4);
	uint32_t e;
	/* worker 0 takes a batch of 4 and uses 1; worker 1 takes 4 and uses all */
	assert_int_equal(qd_admission_submit(a, 0, 0, 0, 0, &e), QD_ADM_RUN);
	for (int i = 0; i < 4; i++)
		assert_int_equal(qd_admission_submit(a, 1, 0, 0, 0, &e), QD_ADM_RUN);
	assert_int_equal(a->col[0].s[0].reserve, 3);
	uint32_t q = must_queue(a, 1, 0, 1);
	assert_int_equal(qd_admission_poll(a, q, 2), QD_ADM_WAITING);
	qd_admission_worker_poll(a, 0); /* worker 0's next loop */
	assert_int_equal(a->col[0].s[0].reserve, 0);
	assert_int_equal(qd_admission_poll(a, q, 3), QD_ADM_ADMITTED);
	dispatch(a, q, 3);
	must_check(a);
	assert_int_equal(running(a, 0), 6);
	qd_admission_destroy(a);
}

/* Nested groups: the parent's limit holds over its children, children take turns (fair),
 * and a child under its own limit is not held up by a sibling's full queue. */
static void
test_nested_fair(void **state)
{
	(void)state;
	int parents[] = {-1, 0, 0};
	uint32_t limits[] = {2, 2, 2}, queued[] = {100, 50, 50};
	struct qd_admission *a = make(tree(3, parents, limits, queued, NULL), 1, 1);
	uint32_t e;
	assert_int_equal(qd_admission_submit(a, 0, 1, 0, 0, &e), QD_ADM_RUN);
	assert_int_equal(qd_admission_submit(a, 0, 1, 0, 0, &e), QD_ADM_RUN);
	/* root full: both children queue */
	uint32_t a1 = must_queue(a, 0, 1, 1), a2 = must_queue(a, 0, 1, 2);
	uint32_t b1 = must_queue(a, 0, 2, 3), b2 = must_queue(a, 0, 2, 4);
	assert_int_equal(a->g[0].subtree_queued, 4);
	/* each slot that frees goes to the children in turn */
	uint32_t order[4];
	for (int i = 0; i < 4; i++) {
		qd_admission_release(a, 0, 1, 0);
		unsigned int n = 0;
		uint32_t all[] = {a1, a2, b1, b2};
		for (int k = 0; k < 4; k++) {
			if (a->entries[all[k]].state == QD_ADM_ADMITTED) {
				order[i] = all[k];
				n++;
				dispatch(a, all[k], 10);
			}
		}
		if (n != 1)
			fail_msg("round %d: %u admitted (pools %" PRId64 " %" PRId64 " %" PRId64 ")", i, n,
				 a->g[0].pool, a->g[1].pool, a->g[2].pool);
	}
	/* FIFO within a child and turns across children */
	assert_true((order[0] == a1 && order[1] == b1) || (order[0] == b1 && order[1] == a1));
	assert_true((order[2] == a2 && order[3] == b2) || (order[2] == b2 && order[3] == a2));
	must_check(a);
	qd_admission_destroy(a);
}

static void
test_reload(void **state)
{
	(void)state;
	int parents[] = {-1, 0};
	uint32_t limits[] = {10, 4}, queued[] = {10, 10};
	struct qd_admission *a = make(tree(2, parents, limits, queued, NULL), 1, 1);
	uint32_t e;
	for (int i = 0; i < 4; i++)
		assert_int_equal(qd_admission_submit(a, 0, 1, 0, 0, &e), QD_ADM_RUN);
	/* lower g1 to 2: nothing new runs until two end */
	uint32_t limits2[] = {10, 2};
	struct qd_adm_view *old = qd_admission_reload(a, tree(2, parents, limits2, queued, NULL));
	assert_non_null(old);
	qd_admission_view_free(old);
	qd_admission_worker_poll(a, 0);
	must_check(a);
	uint32_t q = must_queue(a, 0, 1, 1);
	qd_admission_release(a, 0, 1, 0);
	qd_admission_release(a, 0, 1, 0);
	assert_int_equal(qd_admission_poll(a, q, 2), QD_ADM_WAITING);
	qd_admission_release(a, 0, 1, 0);
	assert_int_equal(qd_admission_poll(a, q, 3), QD_ADM_ADMITTED);
	dispatch(a, q, 3);
	must_check(a);
	/* a new group appears, g1 disappears (retired) */
	int parents3[] = {-1, 0};
	uint32_t limits3[] = {10, 5};
	struct qd_rg_config *rg3 = tree(2, parents3, limits3, queued, NULL);
	snprintf(rg3->groups[1].name, sizeof(rg3->groups[1].name), "new");
	old = qd_admission_reload(a, rg3);
	assert_non_null(old);
	qd_admission_view_free(old);
	assert_int_equal(a->groups, 3);
	assert_true(a->g[1].retired);
	assert_int_equal(a->view->map[1], 2);
	assert_int_equal(qd_admission_submit(a, 0, 2, 0, 4, &e), QD_ADM_RUN);
	qd_admission_release(a, 0, 2, 0);
	qd_admission_release(a, 0, 1, 0);
	qd_admission_release(a, 0, 1, 0);
	must_check(a);
	assert_int_equal(running(a, 0), 0);
	qd_admission_destroy(a);
}

static int64_t
debt_of(const struct qd_admission *a, int g)
{
	struct qd_adm_group_stats s;
	qd_admission_group_stats(a, g, &s);
	assert_true(s.pool >= 0 && s.debt >= 0);
	return s.debt;
}

/* Adopted queries (qd_admission_force): one slot along the path even in a full group; the
 * excess is debt, the pool never goes below 0, nothing new is admitted (fast path, reserves
 * of other workers, queue) until running drops under the limit, releases pay the debt
 * first; a restore uses the same path; conservation holds at every step. */
static void
test_force_debt(void **state)
{
	(void)state;
	int parents[] = {-1, 0, 0};
	uint32_t limits[] = {3, 2, 3}, queued[] = {10, 10, 10};
	struct qd_admission *a = make(tree(3, parents, limits, queued, NULL), 2, 1);
	uint32_t e;
	/* group 1 full through worker 0; worker 1 holds a reserve slot of the root */
	assert_int_equal(qd_admission_submit(a, 0, 1, 0, 0, &e), QD_ADM_RUN);
	assert_int_equal(qd_admission_submit(a, 0, 1, 0, 0, &e), QD_ADM_RUN);
	assert_int_equal(qd_admission_submit(a, 1, 2, 0, 0, &e), QD_ADM_RUN);
	qd_admission_release(a, 1, 2, 0); /* its slots stay in worker 1's reserves */
	must_check(a);
	assert_int_equal(debt_of(a, 0), 0);
	/* adopt two into group 1 on worker 1: over group 1's limit (and then the root's) */
	qd_admission_force(a, 1, 1, 0);
	qd_admission_force(a, 1, 1, 0);
	must_check(a);
	assert_int_equal(running(a, 1), 4);
	assert_int_equal(debt_of(a, 1), 2);
	assert_int_equal(a->g[1].forced, 2);
	assert_int_equal(a->g[0].pool, 0);
	/* the other worker gives its reserves back at its next loop: they pay the root's debt */
	qd_admission_worker_poll(a, 1);
	qd_admission_worker_poll(a, 0);
	must_check(a);
	int64_t root_debt = debt_of(a, 0);
	assert_int_equal(running(a, 0) - root_debt, 3); /* the rest of running is within limit */
	/* nothing new runs in an indebted group, even where a pool or reserve has room */
	assert_false(qd_admission_try_acquire(a, 0, 1, 0));
	uint32_t q = must_queue(a, 0, 2, 1); /* group 2 is free, its parent is in debt */
	must_check(a);
	/* releases pay the debt first: the queue waits until running is under the limits */
	qd_admission_release(a, 1, 1, 0);
	must_check(a);
	assert_int_equal(debt_of(a, 1), 1);
	assert_int_equal(debt_of(a, 0), 0);
	assert_int_equal(running(a, 0), 3); /* at the root's limit: still waits */
	assert_int_equal(qd_admission_poll(a, q, 2), QD_ADM_WAITING);
	qd_admission_release(a, 0, 1, 0);
	must_check(a);
	assert_int_equal(debt_of(a, 1), 0);
	assert_int_equal(qd_admission_poll(a, q, 3), QD_ADM_ADMITTED);
	dispatch(a, q, 3);
	must_check(a);
	assert_int_equal(running(a, 0), 3);
	assert_int_equal(running(a, 1), 2);
	qd_admission_release(a, 0, 1, 0);
	qd_admission_release(a, 1, 1, 0);
	qd_admission_release(a, 0, 2, 0);
	must_check(a);
	assert_int_equal(running(a, 0), 0);
	/* a restore is the same forced path; a lowered limit becomes debt, not a negative pool */
	qd_admission_restore(a, 2, 0);
	qd_admission_restore(a, 2, 0);
	qd_admission_restore(a, 2, 0);
	qd_admission_restore(a, 2, 0);
	must_check(a);
	/* slots idle in reserves count as used until the workers' next loop gives them back */
	qd_admission_worker_poll(a, 0);
	qd_admission_worker_poll(a, 1);
	must_check(a);
	assert_int_equal(debt_of(a, 2), 1);
	assert_int_equal(debt_of(a, 0), 1);
	uint32_t limits2[] = {3, 2, 1};
	struct qd_adm_view *old = qd_admission_reload(a, tree(3, parents, limits2, queued, NULL));
	assert_non_null(old);
	qd_admission_view_free(old);
	must_check(a);
	assert_int_equal(debt_of(a, 2), 3);
	for (int i = 0; i < 4; i++)
		qd_admission_release(a, 0, 2, 0);
	must_check(a);
	assert_int_equal(debt_of(a, 2), 0);
	assert_int_equal(running(a, 0), 0);
	assert_true(qd_admission_try_acquire(a, 0, 2, 0));
	qd_admission_release(a, 0, 2, 0);
	must_check(a);
	qd_admission_destroy(a);
}

/* softMemoryLimit: a group runs queries while its estimates in use are at or under the
 * limit (Trino's rule: the last query may take it over), then queues. */
static void
test_soft_memory(void **state)
{
	(void)state;
	int parents[] = {-1};
	uint32_t limits[] = {10}, queued[] = {10};
	struct qd_rg_config *rg = tree(1, parents, limits, queued, NULL);
	rg->groups[0].soft_memory_limit_bytes = 1000;
	struct qd_admission *a = make(rg, 1, 1);
	uint32_t e;
	assert_int_equal(qd_admission_submit(a, 0, 0, 800, 0, &e), QD_ADM_RUN);
	assert_int_equal(qd_admission_submit(a, 0, 0, 800, 0, &e), QD_ADM_RUN); /* 800 <= 1000 */
	uint32_t q = 0;
	assert_int_equal(qd_admission_submit(a, 0, 0, 10, 1, &q), QD_ADM_QUEUED); /* 1600 > 1000 */
	qd_admission_attach(a, q, request(), 1, 0);
	/* queries without an estimate wait behind it too (FIFO) */
	assert_int_equal(qd_admission_submit(a, 0, 0, 0, 1, &e), QD_ADM_QUEUED);
	qd_admission_attach(a, e, request(), 1, 0);
	assert_int_equal(qd_admission_poll(a, q, 2), QD_ADM_WAITING);
	qd_admission_release(a, 0, 0, 800); /* 800 in use: at most the limit again */
	assert_int_equal(qd_admission_poll(a, q, 3), QD_ADM_ADMITTED);
	/* 810 in use: still at most the limit, so the next one runs too */
	assert_int_equal(qd_admission_poll(a, e, 3), QD_ADM_ADMITTED);
	struct qd_adm_group_stats st;
	qd_admission_group_stats(a, 0, &st);
	assert_int_equal(st.mem_in_use, 810);
	dispatch(a, q, 4);
	dispatch(a, e, 4);
	qd_admission_release(a, 0, 0, 800);
	qd_admission_release(a, 0, 0, 10);
	qd_admission_release(a, 0, 0, 0);
	qd_admission_group_stats(a, 0, &st);
	assert_int_equal(st.mem_in_use, 0);
	assert_int_equal(st.running, 0);
	must_check(a);
	qd_admission_destroy(a);
}

/* weighted_fair: the child with the lowest running/weight goes first; weighted: picks
 * in proportion to the weights. */
static void
test_weighted_policies(void **state)
{
	(void)state;
	for (int policy = 0; policy < 2; policy++) {
		int parents[] = {-1, 0, 0};
		uint32_t limits[] = {300, 300, 300}, queued[] = {1000, 500, 500};
		enum qd_rg_policy pol[] = {policy == 0 ? QD_RG_POLICY_WEIGHTED_FAIR
						       : QD_RG_POLICY_WEIGHTED,
					   QD_RG_POLICY_FAIR, QD_RG_POLICY_FAIR};
		struct qd_rg_config *rg = tree(3, parents, limits, queued, pol);
		rg->groups[0].hard_concurrency_limit = 8;
		rg->groups[1].scheduling_weight = 1;
		rg->groups[2].scheduling_weight = 3;
		struct qd_admission_conf conf = {.workers = 1, .queued_max = 1024, .batch = 1,
						 .queue_timeout_us = UINT64_MAX / 2,
						 .client_timeout_us = UINT64_MAX / 2,
						 .done_linger_us = 1};
		struct qd_admission *a = qd_admission_create(&conf, rg);
		assert_non_null(a);
		uint32_t e;
		/* 8 run (the root's limit), oldest first in <run> */
		int run[8];
		unsigned int head = 0;
		for (int i = 0; i < 8; i++) {
			assert_int_equal(qd_admission_submit(a, 0, 1, 0, 0, &e), QD_ADM_RUN);
			run[i] = 1;
		}
		for (int i = 0; i < 400; i++) {
			assert_int_equal(qd_admission_submit(a, 0, 1 + (i & 1), 0, 0, &e),
					 QD_ADM_QUEUED);
			qd_admission_attach(a, e, request(), 1, 0);
		}
		/* the oldest running query ends, the scheduler picks who runs next */
		unsigned int picks[3] = {0};
		for (int i = 0; i < 200; i++) {
			qd_admission_release(a, 0, run[head % 8], 0);
			int admitted = -1;
			for (uint32_t k = 0; k < conf.queued_max; k++) {
				if (a->entries[k].state == QD_ADM_ADMITTED) {
					admitted = a->entries[k].group;
					dispatch(a, k, 1);
					break;
				}
			}
			assert_true(admitted == 1 || admitted == 2);
			picks[admitted]++;
			run[head % 8] = admitted;
			head++;
		}
		printf("%s: group weight 1 got %u, weight 3 got %u\n",
		       policy == 0 ? "weighted_fair" : "weighted", picks[1], picks[2]);
		/* weight 3 takes about three quarters of the turns */
		assert_true(picks[2] > 2 * picks[1]);
		assert_true(picks[2] < 5 * picks[1]);
		qd_admission_destroy(a);
	}
}

/* ---- concurrency -------------------------------------------------------------------- */

#define CONC_ROUNDS 200000

struct conc {
	struct qd_admission *a;
	unsigned int worker;
	int64_t *actual;    /* per group: queries running now (atomic) */
	int64_t *maxseen;
	uint64_t ran;
	uint64_t queued;
	uint64_t violations;
};

static void
note_run(struct conc *c, int leaf, int sign)
{
	struct qd_admission *a = c->a;
	for (unsigned int i = 0; i < a->path_len[leaf]; i++) {
		int g = a->path[leaf][i];
		int64_t now = __atomic_add_fetch(&c->actual[g], sign, __ATOMIC_SEQ_CST);
		if (sign > 0 && now > (int64_t)a->info[g].hard_concurrency_limit)
			c->violations++;
		int64_t m = __atomic_load_n(&c->maxseen[g], __ATOMIC_RELAXED);
		while (now > m && !__atomic_compare_exchange_n(&c->maxseen[g], &m, now, true,
							       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
}

static int
conc_main(void *arg)
{
	struct conc *c = arg;
	struct qd_admission *a = c->a;
	int held[64], nheld = 0;
	uint32_t waiting[64];
	int nwait = 0;
	uint64_t x = 0x9e3779b97f4a7c15ull * (c->worker + 1);
	for (uint64_t r = 0; r < CONC_ROUNDS; r++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		qd_admission_worker_poll(a, c->worker);
		if ((x & 3) != 0 && nheld + nwait < 48) {
			int leaf = 2 + (int)((x >> 8) % 2); /* the two leaves */
			uint32_t e;
			enum qd_adm_result res = qd_admission_submit(a, c->worker, leaf, 0, r, &e);
			if (res == QD_ADM_RUN) {
				note_run(c, leaf, +1);
				held[nheld++] = leaf;
				c->ran++;
			} else if (res == QD_ADM_QUEUED) {
				struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
				if (m == NULL)
					return -1;
				qd_admission_attach(a, e, m, 1, 0);
				waiting[nwait++] = e;
				c->queued++;
			}
		} else if (nheld > 0) {
			int leaf = held[--nheld];
			note_run(c, leaf, -1);
			qd_admission_release(a, c->worker, leaf, 0);
		}
		/* poll the waiting ones; sometimes cancel one */
		for (int k = 0; k < nwait; k++) {
			uint32_t e = waiting[k];
			if (((x >> 20) & 31) == 0) {
				qd_admission_cancel(a, c->worker, e, r);
				qd_admission_done_answered(a, e);
				waiting[k--] = waiting[--nwait];
				continue;
			}
			if (qd_admission_poll(a, e, r) != QD_ADM_ADMITTED)
				continue;
			uint32_t len;
			struct rte_mbuf *m = qd_admission_claim(a, e, &len);
			if (m == NULL)
				return -2;
			rte_pktmbuf_free(m);
			int leaf = a->entries[e].group;
			qd_admission_dispatched(a, e);
			note_run(c, leaf, +1);
			held[nheld++] = leaf;
			waiting[k--] = waiting[--nwait];
		}
	}
	/* drain: end everything, waiting ones get admitted as slots free up */
	for (int spins = 0; (nheld > 0 || nwait > 0) && spins < 10000000; spins++) {
		if (nheld > 0) {
			int leaf = held[--nheld];
			note_run(c, leaf, -1);
			qd_admission_release(a, c->worker, leaf, 0);
		}
		qd_admission_worker_poll(a, c->worker);
		for (int k = 0; k < nwait; k++) {
			uint32_t e = waiting[k];
			if (qd_admission_poll(a, e, 0) != QD_ADM_ADMITTED)
				continue;
			uint32_t len;
			struct rte_mbuf *m = qd_admission_claim(a, e, &len);
			rte_pktmbuf_free(m);
			int leaf = a->entries[e].group;
			qd_admission_dispatched(a, e);
			note_run(c, leaf, +1);
			held[nheld++] = leaf;
			waiting[k--] = waiting[--nwait];
		}
	}
	return nheld == 0 && nwait == 0 ? 0 : -3;
}

static void
test_concurrent(void **state)
{
	(void)state;
	/* root 12 > children 8 + 8: both levels bind at times */
	int parents[] = {-1, 0, 1, 1};
	uint32_t limits[] = {16, 12, 8, 8}, queued[] = {1000, 1000, 40, 40};
	enum qd_rg_policy pol[] = {QD_RG_POLICY_FAIR, QD_RG_POLICY_WEIGHTED_FAIR,
				   QD_RG_POLICY_FAIR, QD_RG_POLICY_FAIR};
	unsigned int workers = rte_lcore_count();
	struct qd_admission *a = make(tree(4, parents, limits, queued, pol), workers, 0);
	int64_t actual[4] = {0}, maxseen[4] = {0};
	struct conc c[RTE_MAX_LCORE];
	unsigned int k = 0, lcore;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		c[k] = (struct conc){.a = a, .worker = k, .actual = actual, .maxseen = maxseen};
		assert_int_equal(rte_eal_remote_launch(conc_main, &c[k], lcore), 0);
		k++;
	}
	c[k] = (struct conc){.a = a, .worker = k, .actual = actual, .maxseen = maxseen};
	assert_int_equal(conc_main(&c[k]), 0);
	RTE_LCORE_FOREACH_WORKER(lcore)
		assert_int_equal(rte_eal_wait_lcore(lcore), 0);
	uint64_t ran = 0, queued_n = 0, violations = 0;
	for (unsigned int i = 0; i <= k; i++) {
		ran += c[i].ran;
		queued_n += c[i].queued;
		violations += c[i].violations;
	}
	printf("concurrent: %u workers, %" PRIu64 " fast admissions, %" PRIu64
	       " queued, max running %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "\n",
	       k + 1, ran, queued_n, maxseen[0], maxseen[1], maxseen[2], maxseen[3]);
	assert_int_equal(violations, 0);
	assert_true(queued_n > 0); /* the queue was exercised */
	assert_true(maxseen[1] == 12); /* and the limit reached */
	for (unsigned int w = 0; w <= k; w++) {
		a->flush_epoch++;
		qd_admission_worker_poll(a, w);
	}
	must_check(a);
	for (int g = 0; g < 4; g++) {
		struct qd_adm_group_stats s;
		qd_admission_group_stats(a, g, &s);
		assert_int_equal(s.running, 0);
		assert_int_equal(s.subtree_queued, 0);
	}
	assert_int_equal(a->entries_used, 0);
	qd_admission_destroy(a);
}

int
main(int argc, char **argv)
{
	(void)argc;
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
			    "--no-telemetry", "--lcores", "0@0,1@(0-1),2@(0-1)",
			    "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0) {
		char *fallback[] = {argv[0], "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
				    "--no-telemetry", "--lcores", "0@0,1@0,2@0", "--log-level=error",
				    NULL};
		if (rte_eal_init(10, fallback) < 0) {
			fprintf(stderr, "EAL init failed\n");
			return 1;
		}
	}
	rte_srand(20261126); /* the weighted policy draws from rte_rand: same draws each run */
	pool = rte_pktmbuf_pool_create("adm_test", 4095, 64, 0, 256, SOCKET_ID_ANY);
	if (pool == NULL) {
		fprintf(stderr, "mbuf pool: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_path_and_fifo),
		cmocka_unit_test(test_queue_full_cancel_timeout),
		cmocka_unit_test(test_reserve_flush),
		cmocka_unit_test(test_nested_fair),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_force_debt),
		cmocka_unit_test(test_soft_memory),
		cmocka_unit_test(test_weighted_policies),
		cmocka_unit_test(test_concurrent),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return rc;
}
