/*
 * Micro-benchmarks of admission counting: what it costs a worker to take one
 * slot in a resource group (a leaf under a root: two levels, as a query
 * holds a slot in its leaf and in every ancestor) and give it back, four
 * ways, on 1 and 2 threads:
 *
 *   reserves   qd_admission_try_acquire/_release (dataplane/admission.c):
 *              each worker spends its own reserve of slots and touches the
 *              group's shared pool only to refill or return a batch.
 *   mutex      one pthread mutex per group around its running counter: lock,
 *              check the limit, count, unlock; leaf, then root.
 *   atomic     one shared atomic counter per group, taken by a CAS that checks
 *              the limit (released by a fetch-sub); leaf, then root.
 *   olk_scan   how openLooKeng counted before 1.3, as re-created here: one
 *              global lock, and each admission scans the state of every
 *              running query (an array of N 32-byte structs: id, group, state,
 *              times) to count the group's and its parent's running queries.
 *              The argument is N; those N queries run in another root group,
 *              so they are read but never counted against our limits.
 *
 * One iteration is one admission: acquire + release of one slot (both
 * levels). Limits are 1 << 30, so every acquire succeeds and what is measured
 * is the path, not rejection; an acquire that fails marks the run failed.
 *
 * The *_near_limit variants set both limits to 64 and make each thread hold
 * HOLD (24) slots before it gives them back, so with 2 threads 48 of the 64
 * slots are taken at the peak: the reserves (auto batch 64 / (4 x 2) = 8)
 * must be refilled from the pool and returned to it all the time. An acquire
 * refused there is counted ("rejected", per admission), not failed, since
 * near the limit refusing is a legitimate answer.
 *
 * Threads run the same body at once (Threads(1), Threads(2), wall-clock time):
 * at 2 threads the Time column is the wall time per admission of both
 * threads together (shim.h); the label gives the machine's online CPUs, since
 * on a two-core machine the second thread competes with everything else.
 * Thread 0 checks after the loop that every counter is back where it was.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admission.h"
#include "resource_groups.h"
#include "shim.h"

#define BATCH 32              /* admissions per qd_bench_keep_running_batch() */
#define HOLD 24               /* slots one thread holds in the near-limit variants */
#define THREADS_MAX 2
#define LIMIT_FREE (1 << 30)
#define LIMIT_NEAR 64
#define ROOT 0
#define LEAF 1
#define OTHER_ROOT 2          /* olk_scan: where the background queries run */
#define GROUPS 3

_Static_assert(HOLD <= 64, "held slots are tracked in a 64-bit mask");
_Static_assert(THREADS_MAX * HOLD <= LIMIT_NEAR, "every near-limit acquire can succeed");

static void
label_cores(struct qd_bench_state *s)
{
	char label[64];
	snprintf(label, sizeof(label), "%ld online CPUs", sysconf(_SC_NPROCESSORS_ONLN));
	qd_bench_set_label(s, label);
}

static int64_t
limit_of(struct qd_bench_state *s, bool near)
{
	(void)s;
	return near ? LIMIT_NEAR : LIMIT_FREE;
}

/* ---- (a) qd_admission: per-worker reserves ------------------------------------------ */

struct res_ctx {
	struct qd_admission *a;
	int leaf;
};

static int
res_setup(struct qd_bench_state *s, void **ctx, bool near)
{
	struct qd_rg_config *rg = calloc(1, sizeof(*rg));
	struct res_ctx *c = calloc(1, sizeof(*c));
	if (rg == NULL || c == NULL) {
		free(rg);
		free(c);
		return -ENOMEM;
	}
	uint32_t limit = (uint32_t)limit_of(s, near);
	static const char *const names[2] = {"global", "global.adhoc"};
	rg->groups_count = 2;
	for (int g = 0; g < 2; g++) {
		struct qd_rg_group *grp = &rg->groups[g];
		snprintf(grp->name, sizeof(grp->name), "%s", names[g]);
		grp->parent = g == ROOT ? -1 : ROOT;
		grp->depth = (uint8_t)g;
		grp->leaf = g == LEAF;
		grp->hard_concurrency_limit = limit;
		grp->max_queued = 100;
		grp->soft_memory_limit_bytes = UINT64_MAX;
		grp->scheduling_weight = 1;
	}
	struct qd_admission_conf conf = {
		.workers = THREADS_MAX,
		.queued_max = 16,
		.batch = 0, /* auto, as qdispatchd runs it */
		.queue_timeout_us = 60000000,
		.client_timeout_us = 60000000,
		.done_linger_us = 1000000,
	};
	c->a = qd_admission_create(&conf, rg); /* owns rg from now on, unless it fails */
	if (c->a == NULL) {
		int rc = -errno;
		qd_rg_free(rg);
		free(c);
		return rc != 0 ? rc : -ENOMEM;
	}
	/* Groups keep the file's order when nothing was reloaded: the leaf is index 1. */
	c->leaf = LEAF;
	if (strcmp(c->a->info[LEAF].name, "global.adhoc") != 0) {
		qd_admission_destroy(c->a);
		free(c);
		return -EINVAL;
	}
	*ctx = c;
	return 0;
}

static int
res_setup_free(struct qd_bench_state *s, void **ctx)
{
	return res_setup(s, ctx, false);
}

static int
res_setup_near(struct qd_bench_state *s, void **ctx)
{
	return res_setup(s, ctx, true);
}

static void
res_teardown(void *ctx)
{
	struct res_ctx *c = ctx;
	qd_admission_destroy(c->a);
	free(c);
}

static inline bool
res_acquire(struct res_ctx *c, unsigned int t, unsigned int k)
{
	(void)k;
	return qd_admission_try_acquire(c->a, t, c->leaf, 0);
}

static inline void
res_release(struct res_ctx *c, unsigned int t, unsigned int k)
{
	(void)k;
	qd_admission_release(c->a, t, c->leaf, 0);
}

static const char *
res_check(struct res_ctx *c)
{
	int bad;
	if (qd_admission_check(c->a, &bad) != 0)
		return "slots not conserved";
	for (int g = 0; g < 2; g++) {
		struct qd_adm_group_stats st;
		qd_admission_group_stats(c->a, g, &st);
		if (st.running != 0)
			return "slots still running after the loop";
	}
	return NULL;
}

/* ---- (b) a mutex-protected counter per group ---------------------------------------- */

struct mtx_group {
	pthread_mutex_t mu;
	int64_t running;
	int64_t limit;
} __attribute__((aligned(64)));

struct mtx_ctx {
	struct mtx_group g[2];
};

static int
mtx_setup(struct qd_bench_state *s, void **ctx, bool near)
{
	struct mtx_ctx *c = aligned_alloc(64, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	memset(c, 0, sizeof(*c));
	for (int g = 0; g < 2; g++) {
		pthread_mutex_init(&c->g[g].mu, NULL);
		c->g[g].limit = limit_of(s, near);
	}
	*ctx = c;
	return 0;
}

static int
mtx_setup_free(struct qd_bench_state *s, void **ctx)
{
	return mtx_setup(s, ctx, false);
}

static int
mtx_setup_near(struct qd_bench_state *s, void **ctx)
{
	return mtx_setup(s, ctx, true);
}

static void
mtx_teardown(void *ctx)
{
	struct mtx_ctx *c = ctx;
	for (int g = 0; g < 2; g++)
		pthread_mutex_destroy(&c->g[g].mu);
	free(c);
}

static inline bool
mtx_take(struct mtx_group *g)
{
	pthread_mutex_lock(&g->mu);
	bool ok = g->running < g->limit;
	g->running += ok;
	pthread_mutex_unlock(&g->mu);
	return ok;
}

static inline void
mtx_give(struct mtx_group *g)
{
	pthread_mutex_lock(&g->mu);
	g->running--;
	pthread_mutex_unlock(&g->mu);
}

static inline bool
mtx_acquire(struct mtx_ctx *c, unsigned int t, unsigned int k)
{
	(void)t, (void)k;
	if (!mtx_take(&c->g[LEAF]))
		return false;
	if (!mtx_take(&c->g[ROOT])) {
		mtx_give(&c->g[LEAF]);
		return false;
	}
	return true;
}

static inline void
mtx_release(struct mtx_ctx *c, unsigned int t, unsigned int k)
{
	(void)t, (void)k;
	mtx_give(&c->g[LEAF]);
	mtx_give(&c->g[ROOT]);
}

static const char *
mtx_check(struct mtx_ctx *c)
{
	return c->g[LEAF].running == 0 && c->g[ROOT].running == 0 ? NULL : "counters not back to 0";
}

/* ---- (c) a shared atomic counter per group ------------------------------------------ */

struct atm_group {
	int64_t running;
	int64_t limit;
} __attribute__((aligned(64)));

struct atm_ctx {
	struct atm_group g[2];
};

static int
atm_setup(struct qd_bench_state *s, void **ctx, bool near)
{
	struct atm_ctx *c = aligned_alloc(64, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	memset(c, 0, sizeof(*c));
	for (int g = 0; g < 2; g++)
		c->g[g].limit = limit_of(s, near);
	*ctx = c;
	return 0;
}

static int
atm_setup_free(struct qd_bench_state *s, void **ctx)
{
	return atm_setup(s, ctx, false);
}

static int
atm_setup_near(struct qd_bench_state *s, void **ctx)
{
	return atm_setup(s, ctx, true);
}

static void
atm_teardown(void *ctx)
{
	free(ctx);
}

static inline bool
atm_take(struct atm_group *g)
{
	int64_t cur = __atomic_load_n(&g->running, __ATOMIC_RELAXED);
	do {
		if (cur >= g->limit)
			return false;
	} while (!__atomic_compare_exchange_n(&g->running, &cur, cur + 1, true, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	return true;
}

static inline void
atm_give(struct atm_group *g)
{
	__atomic_fetch_sub(&g->running, 1, __ATOMIC_RELEASE);
}

static inline bool
atm_acquire(struct atm_ctx *c, unsigned int t, unsigned int k)
{
	(void)t, (void)k;
	if (!atm_take(&c->g[LEAF]))
		return false;
	if (!atm_take(&c->g[ROOT])) {
		atm_give(&c->g[LEAF]);
		return false;
	}
	return true;
}

static inline void
atm_release(struct atm_ctx *c, unsigned int t, unsigned int k)
{
	(void)t, (void)k;
	atm_give(&c->g[LEAF]);
	atm_give(&c->g[ROOT]);
}

static const char *
atm_check(struct atm_ctx *c)
{
	return c->g[LEAF].running == 0 && c->g[ROOT].running == 0 ? NULL : "counters not back to 0";
}

/* ---- (d) openLooKeng before 1.3: global lock + scan of every running query --------- */

enum olk_state { OLK_FINISHED = 0, OLK_RUNNING = 1 };

/* A query's state as the scan sees it; 32 bytes, two per cache line. */
struct olk_query {
	uint64_t query_id;
	uint64_t created_us;
	uint32_t group;
	uint32_t state;
	uint32_t user;
	uint32_t pad;
};

struct olk_ctx {
	pthread_mutex_t lock; /* the one lock of every admission and release */
	int64_t limit[GROUPS];
	uint32_t parent[GROUPS]; /* UINT32_MAX for a root */
	uint32_t count;          /* background queries + THREADS_MAX * HOLD own entries */
	uint32_t own_base;       /* entries of thread t: own_base + t * HOLD + k */
	struct olk_query *q;
};

#define OLK_BACKGROUND_MAX 1000000

static int
olk_setup(struct qd_bench_state *s, void **ctx, bool near)
{
	int64_t n = qd_bench_arg(s);
	if (n < 0 || n > OLK_BACKGROUND_MAX)
		return -EINVAL;
	struct olk_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->count = (uint32_t)n + THREADS_MAX * HOLD;
	c->own_base = (uint32_t)n;
	c->q = calloc(c->count, sizeof(*c->q));
	if (c->q == NULL) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->parent[ROOT] = UINT32_MAX;
	c->parent[LEAF] = ROOT;
	c->parent[OTHER_ROOT] = UINT32_MAX;
	for (int g = 0; g < GROUPS; g++)
		c->limit[g] = limit_of(s, near);
	for (uint32_t i = 0; i < c->count; i++) {
		c->q[i] = (struct olk_query){
			.query_id = 0x20261125000000ull + i,
			.created_us = 1000000ull * i,
			.group = i < c->own_base ? OTHER_ROOT : LEAF,
			.state = i < c->own_base ? OLK_RUNNING : OLK_FINISHED,
			.user = i % 97,
		};
	}
	*ctx = c;
	return 0;
}

static int
olk_setup_free(struct qd_bench_state *s, void **ctx)
{
	return olk_setup(s, ctx, false);
}

static int
olk_setup_near(struct qd_bench_state *s, void **ctx)
{
	return olk_setup(s, ctx, true);
}

static void
olk_teardown(void *ctx)
{
	struct olk_ctx *c = ctx;
	pthread_mutex_destroy(&c->lock);
	free(c->q);
	free(c);
}

/* Under the lock: the running queries of the leaf and of its root, by reading every
 * query's state (a query counts for its group and its group's parent). */
static inline void
olk_count(const struct olk_ctx *c, int64_t *leaf, int64_t *root)
{
	int64_t in_leaf = 0, in_root = 0;
	for (uint32_t i = 0; i < c->count; i++) {
		const struct olk_query *q = &c->q[i];
		if (q->state != OLK_RUNNING)
			continue;
		in_leaf += q->group == LEAF;
		in_root += q->group == ROOT || c->parent[q->group] == ROOT;
	}
	*leaf = in_leaf;
	*root = in_root;
}

static inline bool
olk_acquire(struct olk_ctx *c, unsigned int t, unsigned int k)
{
	struct olk_query *own = &c->q[c->own_base + t * HOLD + k];
	pthread_mutex_lock(&c->lock);
	int64_t leaf, root;
	olk_count(c, &leaf, &root);
	bool ok = leaf < c->limit[LEAF] && root < c->limit[ROOT];
	if (ok)
		own->state = OLK_RUNNING;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static inline void
olk_release(struct olk_ctx *c, unsigned int t, unsigned int k)
{
	struct olk_query *own = &c->q[c->own_base + t * HOLD + k];
	pthread_mutex_lock(&c->lock);
	own->state = OLK_FINISHED;
	pthread_mutex_unlock(&c->lock);
}

static const char *
olk_check(struct olk_ctx *c)
{
	int64_t leaf, root;
	olk_count(c, &leaf, &root);
	return leaf == 0 && root == 0 ? NULL : "queries still running after the loop";
}

/* ---- the bodies ------------------------------------------------------------------------ */

/* After the loop (whose last call is a barrier, so every thread's loop is over): thread 0
 * checks the counters; every thread reports its admissions. */
static void
finish(struct qd_bench_state *s, const char *bad, uint64_t rejected, bool near)
{
	if (qd_bench_thread_index(s) == 0 && bad != NULL)
		qd_bench_skip(s, bad);
	else if (!near && rejected != 0)
		qd_bench_skip(s, "an acquire failed under a limit it cannot reach");
	if (near)
		qd_bench_set_counter(s, "rejected", (double)rejected);
	qd_bench_set_items(s, qd_bench_iterations(s));
	label_cores(s);
}

/* One admission per iteration: acquire one slot, give it back. */
#define BODY_ONE(pfx, ctx_type)                                                           \
	static void bm_##pfx(struct qd_bench_state *s, void *arg)                         \
	{                                                                                 \
		ctx_type *c = arg;                                                        \
		unsigned int t = qd_bench_thread_index(s);                                \
		uint64_t rejected = 0;                                                    \
		while (qd_bench_keep_running_batch(s, BATCH)) {                           \
			for (unsigned int i = 0; i < BATCH; i++) {                        \
				if (pfx##_acquire(c, t, 0))                               \
					pfx##_release(c, t, 0);                           \
				else                                                      \
					rejected++;                                       \
			}                                                                 \
		}                                                                         \
		finish(s, qd_bench_thread_index(s) == 0 ? pfx##_check(c) : NULL, rejected, \
		       false);                                                            \
	}

/* HOLD admissions per HOLD iterations: take HOLD slots, then give back those taken. */
#define BODY_NEAR(pfx, ctx_type)                                                          \
	static void bm_##pfx##_near_limit(struct qd_bench_state *s, void *arg)            \
	{                                                                                 \
		ctx_type *c = arg;                                                        \
		unsigned int t = qd_bench_thread_index(s);                                \
		uint64_t rejected = 0;                                                    \
		while (qd_bench_keep_running_batch(s, HOLD)) {                            \
			uint64_t held = 0;                                                \
			for (unsigned int k = 0; k < HOLD; k++) {                         \
				if (pfx##_acquire(c, t, k))                               \
					held |= UINT64_C(1) << k;                         \
				else                                                      \
					rejected++;                                       \
			}                                                                 \
			for (unsigned int k = 0; k < HOLD; k++) {                         \
				if (held >> k & 1)                                        \
					pfx##_release(c, t, k);                           \
			}                                                                 \
		}                                                                         \
		finish(s, qd_bench_thread_index(s) == 0 ? pfx##_check(c) : NULL, rejected, \
		       true);                                                             \
	}

BODY_ONE(res, struct res_ctx)
BODY_ONE(mtx, struct mtx_ctx)
BODY_ONE(atm, struct atm_ctx)
BODY_ONE(olk, struct olk_ctx)
BODY_NEAR(res, struct res_ctx)
BODY_NEAR(mtx, struct mtx_ctx)
BODY_NEAR(atm, struct atm_ctx)
BODY_NEAR(olk, struct olk_ctx)

#define THREADS .threads_count = 2, .threads = {1, 2}, .real_time = true

static const struct qd_bench admission_benches[] = {
	{.name = "reserves", .fn = bm_res, .setup = res_setup_free, .teardown = res_teardown,
	 THREADS},
	{.name = "mutex", .fn = bm_mtx, .setup = mtx_setup_free, .teardown = mtx_teardown,
	 THREADS},
	{.name = "atomic", .fn = bm_atm, .setup = atm_setup_free, .teardown = atm_teardown,
	 THREADS},
	{.name = "olk_scan", .fn = bm_olk, .setup = olk_setup_free, .teardown = olk_teardown,
	 .args_count = 3, .args = {10, 1000, 100000}, THREADS},
	{.name = "reserves_near_limit", .fn = bm_res_near_limit, .setup = res_setup_near,
	 .teardown = res_teardown, THREADS},
	{.name = "mutex_near_limit", .fn = bm_mtx_near_limit, .setup = mtx_setup_near,
	 .teardown = mtx_teardown, THREADS},
	{.name = "atomic_near_limit", .fn = bm_atm_near_limit, .setup = atm_setup_near,
	 .teardown = atm_teardown, THREADS},
	{.name = "olk_scan_near_limit", .fn = bm_olk_near_limit, .setup = olk_setup_near,
	 .teardown = olk_teardown, .args_count = 1, .args = {10}, THREADS},
};

static const struct qd_bench_suite admission_suite = {
	.name = "admission",
	.benches = admission_benches,
	.count = QD_BENCH_COUNT(admission_benches),
};
QD_BENCH_SUITE(admission_suite);
