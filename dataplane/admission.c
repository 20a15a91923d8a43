/*
 * Admission control (admission.h): per-worker slot reserves in front of one
 * shared pool per resource group, and the dispatcher-side queue of the
 * queries that find their group full.
 *
 * Ordering: the fast path reads each group's subtree_queued before it spends
 * a reserve, so once a group has a queue, new submissions join it instead of
 * overtaking it (Trino's FIFO promise). A submission that races with the
 * first enqueue may still overtake it by the width of the race, which is the
 * same as having arrived a moment earlier. Nothing here blocks except the
 * queue lock, which is held for list operations only (never across I/O).
 */
#include "admission.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_random.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define SUB(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)

/* Give <n> slots back to <g>: they pay its debt first, the rest goes to the pool. The
 * pool never holds more than the limit: more would mean a slot released twice (asserted
 * in builds with assertions). */
static inline void
pool_give(struct qd_adm_group *g, int64_t n)
{
	RTE_ASSERT(n >= 0);
	int64_t d = LOAD(&g->debt);
	while (d > 0 && n > 0) {
		int64_t pay = RTE_MIN(d, n);
		if (__atomic_compare_exchange_n(&g->debt, &d, d - pay, true, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED)) {
			n -= pay;
			break;
		}
	}
	if (n == 0)
		return;
	int64_t now = __atomic_add_fetch(&g->pool, n, __ATOMIC_RELAXED);
	assert(now <= (int64_t)__atomic_load_n(&g->limit, __ATOMIC_RELAXED));
	(void)now;
}

static int64_t pool_take(struct qd_adm_group *g, int64_t want);

/* One slot of <g> whatever its pool holds: from the pool, else as debt. A slot that
 * reaches the pool between our failed take and the debt (a release that saw no debt yet)
 * is taken back to pay it, so a group in debt keeps no free slot for long. */
static void
take_forced(struct qd_adm_group *g)
{
	if (pool_take(g, 1) == 1)
		return;
	ADD(&g->debt, 1);
	if (pool_take(g, 1) == 1)
		pool_give(g, 1);
}

static int32_t
batch_for(const struct qd_admission *a, uint32_t limit)
{
	uint32_t lim = limit > 0 ? limit : 1;
	if (a->conf.batch != 0)
		return (int32_t)(a->conf.batch < lim ? a->conf.batch : lim);
	/* A quarter of the fair share per worker: reserves hold at most about
	 * limit/4 + workers slots in total, so a group is never kept from its
	 * limit by idle reserves for long (and they are flushed when a queue forms). */
	uint32_t b = limit / (4 * RTE_MAX(a->conf.workers, 1u));
	b = b > 64 ? 64 : b;
	return (int32_t)(b > 0 ? b : 1);
}

/* Paths and child lists from the parents in info[]. */
static void
derive_tree(struct qd_admission *a)
{
	for (unsigned int g = 0; g < a->groups; g++) {
		a->first_child[g] = -1;
		a->next_sibling[g] = -1;
	}
	/* children in index order, so fair turns follow the file */
	for (int g = (int)a->groups - 1; g >= 0; g--) {
		int p = a->info[g].parent;
		if (p >= 0) {
			a->next_sibling[g] = a->first_child[p];
			a->first_child[p] = (int16_t)g;
		}
	}
	for (unsigned int g = 0; g < a->groups; g++) {
		unsigned int n = 0;
		int x = (int)g;
		while (x >= 0 && n < QD_RG_DEPTH_MAX) {
			a->path[g][n++] = (int16_t)x;
			x = a->info[x].parent;
		}
		RTE_VERIFY(x < 0); /* the parser bounds the depth */
		a->path_len[g] = (uint8_t)n;
		a->batch[g] = batch_for(a, a->info[g].hard_concurrency_limit);
		a->g[g].batch = a->batch[g];
		a->g[g].soft_mem = a->info[g].soft_memory_limit_bytes;
		a->name_hash[g] = qd_admission_name_hash(a->info[g].name);
	}
}

static struct qd_adm_view *
view_new(struct qd_rg_config *rg)
{
	struct qd_adm_view *v = calloc(1, sizeof(*v));
	if (v != NULL)
		v->rg = rg;
	return v;
}

void
qd_admission_view_free(struct qd_adm_view *v)
{
	if (v == NULL)
		return;
	qd_rg_free(v->rg);
	free(v);
}

struct qd_admission *
qd_admission_create(const struct qd_admission_conf *conf, struct qd_rg_config *rg)
{
	if (conf->workers == 0 || conf->workers > QD_ADM_WORKERS_MAX || conf->queued_max == 0 ||
	    rg == NULL || rg->groups_count == 0 || rg->groups_count > QD_RG_GROUPS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	bool eal = true;
	struct qd_admission *a = rte_zmalloc("qd_admission", sizeof(*a), RTE_CACHE_LINE_SIZE);
	if (a == NULL) {
		eal = false;
		a = aligned_alloc(RTE_CACHE_LINE_SIZE,
				  RTE_ALIGN_CEIL(sizeof(*a), RTE_CACHE_LINE_SIZE));
		if (a == NULL)
			return NULL;
		memset(a, 0, sizeof(*a));
	}
	a->eal_mem = eal;
	a->conf = *conf;
	size_t esz = sizeof(struct qd_adm_entry) * conf->queued_max;
	a->entries = eal ? rte_zmalloc("qd_admission_entries", esz, RTE_CACHE_LINE_SIZE) : NULL;
	a->entries_eal = a->entries != NULL;
	if (a->entries == NULL) {
		a->entries = aligned_alloc(RTE_CACHE_LINE_SIZE, RTE_ALIGN_CEIL(esz, 64));
		if (a->entries != NULL)
			memset(a->entries, 0, esz);
	}
	a->view = view_new(rg);
	if (a->entries == NULL || a->view == NULL) {
		if (a->view != NULL)
			a->view->rg = NULL; /* not taken on failure */
		qd_admission_destroy(a);
		errno = ENOMEM;
		return NULL;
	}
	rte_spinlock_init(&a->lock);
	for (uint32_t i = 0; i < conf->queued_max; i++)
		a->entries[i].next = i + 1 < conf->queued_max ? i + 1 : QD_ADM_NONE;
	a->free_head = 0;
	a->groups = rg->groups_count;
	for (unsigned int g = 0; g < rg->groups_count; g++) {
		a->info[g] = rg->groups[g];
		a->view->map[g] = (int32_t)g;
		a->g[g].pool = rg->groups[g].hard_concurrency_limit;
		a->g[g].limit = rg->groups[g].hard_concurrency_limit;
		a->g[g].head = a->g[g].tail = QD_ADM_NONE;
	}
	derive_tree(a);
	return a;
}

void
qd_admission_destroy(struct qd_admission *a)
{
	if (a == NULL)
		return;
	if (a->entries != NULL) {
		for (uint32_t i = 0; i < a->conf.queued_max; i++)
			rte_pktmbuf_free(a->entries[i].request);
	}
	qd_admission_view_free(a->view);
	if (a->entries_eal)
		rte_free(a->entries);
	else
		free(a->entries);
	if (a->eal_mem)
		rte_free(a);
	else
		free(a);
}

int
qd_admission_select(const struct qd_admission *a, const struct qd_rg_query *q)
{
	const struct qd_adm_view *v = __atomic_load_n(&a->view, __ATOMIC_ACQUIRE);
	int leaf = qd_rg_select(v->rg, q);
	return leaf < 0 ? -1 : v->map[leaf];
}

/* ---- pools and reserves ----------------------------------------------------------- */

static int64_t
pool_take(struct qd_adm_group *g, int64_t want)
{
	int64_t cur = LOAD(&g->pool);
	while (cur > 0) {
		int64_t take = RTE_MIN(cur, want);
		if (__atomic_compare_exchange_n(&g->pool, &cur, cur - take, true, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			return take;
	}
	return 0;
}

static bool
mem_over(const struct qd_admission *a, int g)
{
	uint64_t soft = a->g[g].soft_mem;
	return soft != UINT64_MAX && LOAD(&a->g[g].mem_in_use) > (int64_t)soft;
}

/* Undo levels <from>..<n>-1 of a fast-path acquire (a level below failed). */
static void
acquire_undo(struct qd_admission *a, struct qd_adm_column *col, const int16_t *path,
	     unsigned int from, unsigned int n, int64_t mem)
{
	for (unsigned int i = from; i < n; i++) {
		struct qd_adm_slot *sl = &col->s[path[i]];
		STORE(&sl->reserve, sl->reserve + 1);
		STORE(&sl->in_use, sl->in_use - 1);
		if (mem != 0)
			SUB(&a->g[path[i]].mem_in_use, mem);
	}
}

bool
qd_admission_try_acquire(struct qd_admission *a, unsigned int worker, int group, int64_t mem)
{
	RTE_ASSERT(worker < a->conf.workers && group >= 0 && (unsigned int)group < a->groups);
	struct qd_adm_column *col = &a->col[worker];
	const int16_t *path = a->path[group];
	unsigned int n = a->path_len[group];
	/* One pass from the root down, undone if a level cannot give a slot. The root goes
	 * first because its subtree_queued counts every queue below it: with any queue on
	 * the path nothing is touched at all. The common case touches, per level, the
	 * group's queue word and this worker's slot record. */
	for (unsigned int i = n; i-- > 0;) {
		int g = path[i];
		struct qd_adm_group *sg = &a->g[g];
		struct qd_adm_slot *sl = &col->s[g];
		if (LOAD(&sg->subtree_queued) != 0 || LOAD(&sg->debt) != 0 ||
		    (sg->soft_mem != UINT64_MAX && mem_over(a, g))) {
			acquire_undo(a, col, path, i + 1, n, mem);
			return false;
		}
		if (sl->reserve == 0) {
			int64_t got = pool_take(sg, sg->batch);
			if (got == 0) {
				acquire_undo(a, col, path, i + 1, n, mem);
				return false;
			}
			STORE(&sl->reserve, (int32_t)got);
			col->refills++;
		}
		STORE(&sl->reserve, sl->reserve - 1);
		STORE(&sl->in_use, sl->in_use + 1);
		if (mem != 0)
			ADD(&sg->mem_in_use, mem);
	}
	col->fast_admits++;
	return true;
}

static bool
path_has_queue(const struct qd_admission *a, int group)
{
	for (unsigned int i = 0; i < a->path_len[group]; i++) {
		if (LOAD(&a->g[a->path[group][i]].subtree_queued) != 0)
			return true;
	}
	return false;
}

void
qd_admission_release(struct qd_admission *a, unsigned int worker, int group, int64_t mem)
{
	RTE_ASSERT(worker < a->conf.workers && group >= 0 && (unsigned int)group < a->groups);
	struct qd_adm_column *col = &a->col[worker];
	bool wake = mem != 0;
	for (unsigned int i = 0; i < a->path_len[group]; i++) {
		int g = a->path[group][i];
		struct qd_adm_group *sg = &a->g[g];
		struct qd_adm_slot *sl = &col->s[g];
		STORE(&sl->in_use, sl->in_use - 1);
		if (mem != 0)
			SUB(&sg->mem_in_use, mem);
		/* A slot somebody waits for goes where the scheduler finds it; a group over
		 * its (lowered) limit takes it back the same way. */
		if (LOAD(&sg->subtree_queued) != 0) {
			pool_give(sg, 1);
			wake = true;
			continue;
		}
		if (LOAD(&sg->debt) > 0 || sg->retired) {
			pool_give(sg, 1);
			continue;
		}
		int32_t r = sl->reserve + 1;
		if (r > 2 * sg->batch) {
			pool_give(sg, r - sg->batch);
			r = sg->batch;
			col->returns++;
		}
		STORE(&sl->reserve, r);
	}
	if (wake)
		qd_admission_schedule(a);
}

/* ---- the queue ----------------------------------------------------------------------- */

static bool
can_run(const struct qd_admission *a, int g)
{
	return LOAD(&a->g[g].pool) > 0 && LOAD(&a->g[g].debt) == 0 && !mem_over(a, g);
}

static int64_t
running_of(const struct qd_admission *a, int g)
{
	int64_t r = 0;
	for (unsigned int c = 0; c < QD_ADM_COLUMNS; c++)
		r += LOAD(&a->col[c].s[g].in_use);
	return r;
}

static uint32_t pick_in(struct qd_admission *a, int g);

/* Children of <g> in fair turns from its cursor; the first that yields an entry wins. */
static uint32_t
pick_fair(struct qd_admission *a, int g)
{
	int start = -1, x;
	unsigned int k = 0;
	/* find the child at or after the cursor, then go round once */
	for (x = a->first_child[g]; x >= 0; x = a->next_sibling[x]) {
		if ((uint32_t)x >= a->g[g].rr) {
			start = x;
			break;
		}
	}
	if (start < 0)
		start = a->first_child[g];
	x = start;
	for (k = 0; x >= 0 && k < QD_RG_GROUPS_MAX; k++) {
		uint32_t e = pick_in(a, x);
		if (e != QD_ADM_NONE) {
			a->g[g].rr = (uint32_t)x + 1;
			return e;
		}
		x = a->next_sibling[x] >= 0 ? a->next_sibling[x] : a->first_child[g];
		if (x == start)
			break;
	}
	return QD_ADM_NONE;
}

static bool
eligible(const struct qd_admission *a, int g)
{
	return LOAD(&a->g[g].subtree_queued) != 0 && can_run(a, g);
}

static uint32_t
pick_weighted(struct qd_admission *a, int g)
{
	uint64_t total = 0;
	for (int x = a->first_child[g]; x >= 0; x = a->next_sibling[x])
		total += eligible(a, x) ? a->info[x].scheduling_weight : 0;
	if (total == 0)
		return QD_ADM_NONE;
	uint64_t r = rte_rand_max(total);
	for (int x = a->first_child[g]; x >= 0; x = a->next_sibling[x]) {
		if (!eligible(a, x))
			continue;
		if (r < a->info[x].scheduling_weight) {
			uint32_t e = pick_in(a, x);
			if (e != QD_ADM_NONE)
				return e;
			break;
		}
		r -= a->info[x].scheduling_weight;
	}
	return pick_fair(a, g);
}

static uint32_t
pick_weighted_fair(struct qd_admission *a, int g)
{
	int best = -1;
	double best_share = 0;
	for (int x = a->first_child[g]; x >= 0; x = a->next_sibling[x]) {
		if (!eligible(a, x))
			continue;
		double share = (double)running_of(a, x) / (double)a->info[x].scheduling_weight;
		if (best < 0 || share < best_share) {
			best = x;
			best_share = share;
		}
	}
	if (best < 0)
		return QD_ADM_NONE;
	uint32_t e = pick_in(a, best);
	return e != QD_ADM_NONE ? e : pick_fair(a, g);
}

/* The entry that should run next under <g>, or NONE. */
static uint32_t
pick_in(struct qd_admission *a, int g)
{
	if (!eligible(a, g))
		return QD_ADM_NONE;
	if (a->first_child[g] < 0)
		return a->g[g].head;
	switch (a->info[g].scheduling_policy) {
	case QD_RG_POLICY_WEIGHTED:
		return pick_weighted(a, g);
	case QD_RG_POLICY_WEIGHTED_FAIR:
		return pick_weighted_fair(a, g);
	default:
		return pick_fair(a, g);
	}
}

/* Take one slot along <group>'s path from the pools, all or nothing. */
static bool
take_path(struct qd_admission *a, int group)
{
	unsigned int n = a->path_len[group], i;
	for (i = 0; i < n; i++) {
		if (pool_take(&a->g[a->path[group][i]], 1) != 1)
			break;
	}
	if (i == n)
		return true;
	while (i-- > 0)
		pool_give(&a->g[a->path[group][i]], 1);
	return false;
}

/* Unlink <e> from its leaf FIFO (under lock); O(queue) for a middle entry. */
static void
fifo_remove(struct qd_admission *a, uint32_t e)
{
	struct qd_adm_entry *en = &a->entries[e];
	struct qd_adm_group *lg = &a->g[en->group];
	uint32_t prev = QD_ADM_NONE, x = lg->head;
	for (uint32_t k = 0; x != QD_ADM_NONE && k <= a->conf.queued_max; k++) {
		if (x == e)
			break;
		prev = x;
		x = a->entries[x].next;
	}
	RTE_VERIFY(x == e);
	if (prev == QD_ADM_NONE)
		lg->head = en->next;
	else
		a->entries[prev].next = en->next;
	if (lg->tail == e)
		lg->tail = prev;
	en->next = QD_ADM_NONE;
	lg->queued--;
	for (unsigned int i = 0; i < a->path_len[en->group]; i++)
		SUB(&a->g[a->path[en->group][i]].subtree_queued, 1);
	SUB(&a->waiting_total, 1);
}

static uint32_t
schedule_locked(struct qd_admission *a)
{
	uint32_t admitted = 0;
	for (uint32_t k = 0; k < a->conf.queued_max && LOAD(&a->waiting_total) != 0; k++) {
		uint32_t e = QD_ADM_NONE;
		/* roots take turns too */
		for (unsigned int j = 0; j < a->groups && e == QD_ADM_NONE; j++) {
			unsigned int r = (a->root_rr + j) % a->groups;
			if (a->info[r].parent >= 0)
				continue;
			e = pick_in(a, (int)r);
			if (e != QD_ADM_NONE)
				a->root_rr = r + 1;
		}
		if (e == QD_ADM_NONE)
			break;
		struct qd_adm_entry *en = &a->entries[e];
		if (!take_path(a, en->group))
			break; /* a fast path got there first (it cannot, with a queue: defensive) */
		fifo_remove(a, e);
		struct qd_adm_column *sc = &a->col[QD_ADM_COLUMNS - 1];
		for (unsigned int i = 0; i < a->path_len[en->group]; i++) {
			int g = a->path[en->group][i];
			ADD(&sc->s[g].in_use, 1);
			if (en->mem != 0)
				ADD(&a->g[g].mem_in_use, en->mem);
		}
		a->g[en->group].admitted_queued++;
		__atomic_store_n(&en->state, QD_ADM_ADMITTED, __ATOMIC_RELEASE);
		admitted++;
	}
	return admitted;
}

uint32_t
qd_admission_schedule(struct qd_admission *a)
{
	if (LOAD(&a->waiting_total) == 0)
		return 0;
	rte_spinlock_lock(&a->lock);
	uint32_t n = schedule_locked(a);
	rte_spinlock_unlock(&a->lock);
	return n;
}

static void
entry_free_locked(struct qd_admission *a, uint32_t e)
{
	struct qd_adm_entry *en = &a->entries[e];
	rte_pktmbuf_free(en->request);
	en->request = NULL;
	en->request_len = 0;
	__atomic_store_n(&en->state, QD_ADM_FREE, __ATOMIC_RELEASE);
	en->next = a->free_head;
	a->free_head = e;
	SUB(&a->entries_used, 1);
}

/* Slots of an admitted entry go back to the pools (it will never run). */
static void
unadmit_locked(struct qd_admission *a, struct qd_adm_entry *en)
{
	struct qd_adm_column *sc = &a->col[QD_ADM_COLUMNS - 1];
	for (unsigned int i = 0; i < a->path_len[en->group]; i++) {
		int g = a->path[en->group][i];
		SUB(&sc->s[g].in_use, 1);
		if (en->mem != 0)
			SUB(&a->g[g].mem_in_use, en->mem);
		pool_give(&a->g[g], 1);
	}
}

enum qd_adm_result
qd_admission_submit(struct qd_admission *a, unsigned int worker, int group, int64_t mem,
		    uint64_t now_us, uint32_t *entry)
{
	*entry = QD_ADM_NONE;
	if (!a->g[group].retired && qd_admission_try_acquire(a, worker, group, mem)) {
		a->g[group].admitted++; /* relaxed counter: racy increments are tolerated */
		return QD_ADM_RUN;
	}
	a->col[worker].slow_path++;
	rte_spinlock_lock(&a->lock);
	for (unsigned int i = 0; i < a->path_len[group]; i++) {
		int g = a->path[group][i];
		if (a->g[g].subtree_queued >= a->info[g].max_queued) {
			/* Trino runs a query that can run even when the queue is full */
			bool ran = a->g[group].queued == 0 && !path_has_queue(a, group) &&
				   take_path(a, group);
			if (ran) {
				struct qd_adm_column *sc = &a->col[QD_ADM_COLUMNS - 1];
				for (unsigned int j = 0; j < a->path_len[group]; j++) {
					ADD(&sc->s[a->path[group][j]].in_use, 1);
					if (mem != 0)
						ADD(&a->g[a->path[group][j]].mem_in_use, mem);
				}
				a->g[group].admitted++;
			} else {
				a->g[group].queue_full++;
			}
			rte_spinlock_unlock(&a->lock);
			return ran ? QD_ADM_RUN : QD_ADM_QUEUE_FULL;
		}
	}
	uint32_t e = a->free_head;
	if (e == QD_ADM_NONE) {
		a->entries_full++;
		rte_spinlock_unlock(&a->lock);
		return QD_ADM_NO_ENTRY;
	}
	struct qd_adm_entry *en = &a->entries[e];
	a->free_head = en->next;
	ADD(&a->entries_used, 1);
	en->tag = (uint32_t)rte_rand();
	snprintf(en->id, sizeof(en->id), "qdq_%" PRIu32 "_%08" PRIx32, e, en->tag);
	en->reason = QD_ADM_DONE_NONE;
	en->group = (uint16_t)group;
	en->worker = (uint16_t)worker;
	en->polls = 0;
	en->mem = mem;
	en->queued_us = now_us;
	en->last_poll_us = now_us;
	en->done_us = 0;
	en->request = NULL;
	en->request_len = 0;
	en->next = QD_ADM_NONE;
	struct qd_adm_group *lg = &a->g[group];
	if (lg->tail == QD_ADM_NONE)
		lg->head = e;
	else
		a->entries[lg->tail].next = e;
	lg->tail = e;
	lg->queued++;
	bool first = false;
	for (unsigned int i = 0; i < a->path_len[group]; i++)
		first |= ADD(&a->g[a->path[group][i]].subtree_queued, 1) == 0;
	ADD(&a->waiting_total, 1);
	__atomic_store_n(&en->state, QD_ADM_WAITING, __ATOMIC_RELEASE);
	if (first) /* workers return their reserves of these groups at their next loop */
		__atomic_fetch_add(&a->flush_epoch, 1, __ATOMIC_RELEASE);
	schedule_locked(a);
	if (en->state == QD_ADM_ADMITTED) {
		/* admitted at once: the caller runs it as if the fast path had */
		a->g[group].admitted_queued--;
		a->g[group].admitted++;
		entry_free_locked(a, e);
		rte_spinlock_unlock(&a->lock);
		return QD_ADM_RUN;
	}
	rte_spinlock_unlock(&a->lock);
	*entry = e;
	return QD_ADM_QUEUED;
}

void
qd_admission_attach(struct qd_admission *a, uint32_t entry, struct rte_mbuf *request,
		    uint32_t len, uint32_t client_ip_be)
{
	struct qd_adm_entry *en = &a->entries[entry];
	rte_spinlock_lock(&a->lock);
	RTE_VERIFY(en->request == NULL);
	en->request = request;
	en->request_len = len;
	en->client_ip_be = client_ip_be;
	rte_spinlock_unlock(&a->lock);
}

uint32_t
qd_admission_find(const struct qd_admission *a, const char *id, size_t len)
{
	char buf[QD_ADM_ID_MAX];
	if (len < 6 || len >= sizeof(buf) || memcmp(id, "qdq_", 4) != 0)
		return QD_ADM_NONE;
	memcpy(buf, id, len);
	buf[len] = '\0';
	char *end = NULL;
	unsigned long idx = strtoul(buf + 4, &end, 10);
	if (end == buf + 4 || *end != '_' || idx >= a->conf.queued_max)
		return QD_ADM_NONE;
	char *tend = NULL;
	unsigned long tag = strtoul(end + 1, &tend, 16);
	if (tend != end + 9 || *tend != '\0')
		return QD_ADM_NONE;
	const struct qd_adm_entry *en = &a->entries[idx];
	if (__atomic_load_n(&en->state, __ATOMIC_ACQUIRE) == QD_ADM_FREE ||
	    LOAD(&en->tag) != (uint32_t)tag)
		return QD_ADM_NONE;
	return (uint32_t)idx;
}

enum qd_adm_entry_state
qd_admission_poll(struct qd_admission *a, uint32_t entry, uint64_t now_us)
{
	struct qd_adm_entry *en = &a->entries[entry];
	STORE(&en->last_poll_us, now_us);
	ADD(&en->polls, 1);
	uint32_t st = __atomic_load_n(&en->state, __ATOMIC_ACQUIRE);
	if (st == QD_ADM_WAITING) {
		qd_admission_schedule(a);
		st = __atomic_load_n(&en->state, __ATOMIC_ACQUIRE);
	}
	return (enum qd_adm_entry_state)st;
}

struct rte_mbuf *
qd_admission_claim(struct qd_admission *a, uint32_t entry, uint32_t *len)
{
	struct qd_adm_entry *en = &a->entries[entry];
	struct rte_mbuf *m = NULL;
	rte_spinlock_lock(&a->lock);
	/* an entry admitted before its request was attached waits for the attach */
	if (en->state == QD_ADM_ADMITTED && en->request != NULL) {
		m = en->request;
		*len = en->request_len;
		en->request = NULL;
		en->request_len = 0;
		/* The slots stay counted in the scheduler's column; whichever worker ends
		 * the query subtracts them from its own: only the sum means anything. */
		__atomic_store_n(&en->state, QD_ADM_DISPATCHING, __ATOMIC_RELEASE);
	}
	rte_spinlock_unlock(&a->lock);
	return m;
}

void
qd_admission_dispatched(struct qd_admission *a, uint32_t entry)
{
	rte_spinlock_lock(&a->lock);
	RTE_VERIFY(a->entries[entry].state == QD_ADM_DISPATCHING);
	entry_free_locked(a, entry);
	rte_spinlock_unlock(&a->lock);
}

/* End a queued or admitted entry (under lock); true when slots went back. */
static bool
end_locked(struct qd_admission *a, uint32_t e, enum qd_adm_done_reason why, uint64_t now_us)
{
	struct qd_adm_entry *en = &a->entries[e];
	bool slots = false;
	if (en->state == QD_ADM_WAITING) {
		fifo_remove(a, e);
	} else if (en->state == QD_ADM_ADMITTED) {
		unadmit_locked(a, en);
		slots = true;
	} else {
		return false;
	}
	rte_pktmbuf_free(en->request);
	en->request = NULL;
	en->reason = why;
	en->done_us = now_us;
	__atomic_store_n(&en->state, QD_ADM_DONE, __ATOMIC_RELEASE);
	struct qd_adm_group *lg = &a->g[en->group];
	if (why == QD_ADM_DONE_CANCELED)
		lg->canceled_queued++;
	else if (why == QD_ADM_DONE_TIMEOUT)
		lg->timed_out++;
	else if (why == QD_ADM_DONE_ABANDONED)
		lg->abandoned++;
	return slots;
}

bool
qd_admission_cancel(struct qd_admission *a, unsigned int worker, uint32_t entry, uint64_t now_us)
{
	(void)worker;
	rte_spinlock_lock(&a->lock);
	uint32_t st = a->entries[entry].state;
	bool queued = st == QD_ADM_WAITING || st == QD_ADM_ADMITTED;
	end_locked(a, entry, QD_ADM_DONE_CANCELED, now_us);
	/* the freed place (or slots) may let another entry run */
	schedule_locked(a);
	rte_spinlock_unlock(&a->lock);
	return queued;
}

void
qd_admission_done_answered(struct qd_admission *a, uint32_t entry)
{
	rte_spinlock_lock(&a->lock);
	if (a->entries[entry].state == QD_ADM_DONE)
		entry_free_locked(a, entry);
	rte_spinlock_unlock(&a->lock);
}

void
qd_admission_worker_poll(struct qd_admission *a, unsigned int worker)
{
	struct qd_adm_column *col = &a->col[worker];
	uint64_t epoch = __atomic_load_n(&a->flush_epoch, __ATOMIC_ACQUIRE);
	bool waiting = LOAD(&a->waiting_total) != 0;
	if (epoch == col->flush_epoch_seen && !waiting)
		return;
	col->flush_epoch_seen = epoch;
	bool returned = false;
	for (unsigned int g = 0; g < a->groups; g++) {
		int32_t r = col->s[g].reserve;
		if (r == 0)
			continue;
		if (LOAD(&a->g[g].subtree_queued) != 0 || LOAD(&a->g[g].debt) > 0 ||
		    a->g[g].retired) {
			STORE(&col->s[g].reserve, 0);
			pool_give(&a->g[g], r);
			col->returns++;
			returned = true;
		}
	}
	if (returned)
		qd_admission_schedule(a);
}

uint32_t
qd_admission_expire(struct qd_admission *a, uint32_t *cursor, uint32_t budget, uint64_t now_us)
{
	uint32_t ended = 0, max = a->conf.queued_max;
	if (LOAD(&a->entries_used) == 0)
		return 0;
	rte_spinlock_lock(&a->lock);
	for (uint32_t k = 0; k < budget && k < max; k++) {
		uint32_t e = (*cursor + k) % max;
		struct qd_adm_entry *en = &a->entries[e];
		switch (en->state) {
		case QD_ADM_WAITING:
			if (now_us > en->queued_us &&
			    now_us - en->queued_us > a->conf.queue_timeout_us) {
				end_locked(a, e, QD_ADM_DONE_TIMEOUT, now_us);
				ended++;
				break;
			}
			/* fall through */
		case QD_ADM_ADMITTED:
			if (now_us > LOAD(&en->last_poll_us) &&
			    now_us - LOAD(&en->last_poll_us) > a->conf.client_timeout_us) {
				end_locked(a, e, QD_ADM_DONE_ABANDONED, now_us);
				ended++;
			}
			break;
		case QD_ADM_DONE:
			if (now_us > en->done_us && now_us - en->done_us > a->conf.done_linger_us)
				entry_free_locked(a, e);
			break;
		default:
			break;
		}
	}
	*cursor = (*cursor + RTE_MIN(budget, max)) % max;
	schedule_locked(a);
	rte_spinlock_unlock(&a->lock);
	return ended;
}

/* <g>'s limit goes from <old> to <limit> (under the admission lock). The pool stays <= the
 * limit at every instant: a raise stores the limit first and pays any debt before the
 * pool grows; a cut takes the pool's free slots first and what runs beyond the new limit
 * becomes debt (the pool never goes below 0). */
static void
limit_change(struct qd_adm_group *g, uint32_t old, uint32_t limit)
{
	if (limit >= old)
		STORE(&g->limit, limit);
	int64_t delta = (int64_t)limit - (int64_t)old;
	if (delta > 0) {
		pool_give(g, delta);
	} else if (delta < 0) {
		int64_t owed = -delta;
		for (unsigned int k = 0; k < 64 && owed > 0; k++) {
			int64_t got = pool_take(g, owed);
			if (got == 0)
				break;
			owed -= got;
		}
		if (owed > 0)
			ADD(&g->debt, owed);
	}
	STORE(&g->limit, limit);
}

struct qd_adm_view *
qd_admission_reload(struct qd_admission *a, struct qd_rg_config *rg)
{
	struct qd_adm_view *nv = view_new(rg);
	if (nv == NULL)
		return NULL;
	rte_spinlock_lock(&a->lock);
	/* count the groups the new file adds before changing anything */
	unsigned int added = 0;
	for (unsigned int i = 0; i < rg->groups_count; i++) {
		unsigned int g;
		for (g = 0; g < a->groups; g++) {
			if (strcmp(a->info[g].name, rg->groups[i].name) == 0)
				break;
		}
		nv->map[i] = g < a->groups ? (int32_t)g : (int32_t)(a->groups + added++);
	}
	if (a->groups + added > QD_RG_GROUPS_MAX) {
		rte_spinlock_unlock(&a->lock);
		nv->rg = NULL;
		free(nv);
		errno = ENOSPC;
		return NULL;
	}
	bool keep[QD_RG_GROUPS_MAX] = {false};
	for (unsigned int i = 0; i < rg->groups_count; i++) {
		int g = nv->map[i];
		struct qd_rg_group info = rg->groups[i];
		info.parent = info.parent >= 0 ? nv->map[info.parent] : -1;
		uint32_t old_limit = (unsigned int)g < a->groups ? a->g[g].limit : 0;
		if ((unsigned int)g >= a->groups) {
			a->g[g].head = a->g[g].tail = QD_ADM_NONE;
			a->g[g].pool = 0;
		}
		a->info[g] = info;
		/* the pool stays <= the limit at every instant: raise the limit first,
		 * lower it last */
		limit_change(&a->g[g], old_limit, info.hard_concurrency_limit);
		a->g[g].retired = false;
		keep[g] = true;
	}
	a->groups += added;
	for (unsigned int g = 0; g < a->groups; g++)
		a->g[g].retired = !keep[g];
	derive_tree(a);
	struct qd_adm_view *old = a->view;
	__atomic_store_n(&a->view, nv, __ATOMIC_RELEASE);
	a->reloads++;
	__atomic_fetch_add(&a->flush_epoch, 1, __ATOMIC_RELEASE);
	schedule_locked(a);
	rte_spinlock_unlock(&a->lock);
	return old;
}

uint32_t
qd_admission_name_hash(const char *name)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; name[i] != '\0' && i < QD_RG_NAME_MAX; i++)
		h = (h ^ (uint8_t)name[i]) * 16777619u;
	return h;
}

int
qd_admission_group_by_hash(const struct qd_admission *a, uint32_t hash)
{
	for (unsigned int g = 0; g < a->groups; g++) {
		if (a->name_hash[g] == hash && !a->g[g].retired)
			return (int)g;
	}
	return -1;
}

/* One slot along <group>'s path held in column <col>, past the limits if need be. */
static void
force_path(struct qd_admission *a, struct qd_adm_column *col, int group, int64_t mem)
{
	bool debt = false;
	for (unsigned int i = 0; i < a->path_len[group]; i++) {
		int g = a->path[group][i];
		take_forced(&a->g[g]);
		debt = debt || LOAD(&a->g[g].debt) > 0;
		ADD(&col->s[g].in_use, 1);
		if (mem != 0)
			ADD(&a->g[g].mem_in_use, mem);
	}
	/* every worker returns its reserves of indebted groups at its next loop: they pay */
	if (debt)
		__atomic_fetch_add(&a->flush_epoch, 1, __ATOMIC_RELEASE);
}

void
qd_admission_restore(struct qd_admission *a, int group, int64_t mem)
{
	RTE_ASSERT(group >= 0 && (unsigned int)group < a->groups);
	rte_spinlock_lock(&a->lock);
	force_path(a, &a->col[QD_ADM_COLUMNS - 1], group, mem);
	rte_spinlock_unlock(&a->lock);
}

int
qd_admission_set_cap(struct qd_admission *a, int group, uint32_t cap)
{
	if (group < 0 || (unsigned int)group >= a->groups)
		return -EINVAL;
	struct qd_adm_group *g = &a->g[group];
	rte_spinlock_lock(&a->lock);
	uint32_t old = g->limit;
	if (cap == old) {
		rte_spinlock_unlock(&a->lock);
		return 0;
	}
	/* as at a reload; a debt makes workers return their reserves (the flush below) */
	limit_change(g, old, cap);
	a->cap_changes++;
	if (cap < old)
		__atomic_fetch_add(&a->flush_epoch, 1, __ATOMIC_RELEASE);
	else
		schedule_locked(a);
	rte_spinlock_unlock(&a->lock);
	return 0;
}

void
qd_admission_force(struct qd_admission *a, unsigned int worker, int group, int64_t mem)
{
	RTE_ASSERT(worker < a->conf.workers && group >= 0 && (unsigned int)group < a->groups);
	/* No lock: the pools and the debt are atomic, and the column is this worker's. */
	force_path(a, &a->col[worker], group, mem);
	ADD(&a->g[group].forced, 1);
}

void
qd_admission_group_stats(const struct qd_admission *a, int group, struct qd_adm_group_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned int c = 0; c < QD_ADM_COLUMNS; c++) {
		out->running += LOAD(&a->col[c].s[group].in_use);
		out->reserved += LOAD(&a->col[c].s[group].reserve);
	}
	out->pool = LOAD(&a->g[group].pool);
	out->debt = LOAD(&a->g[group].debt);
	out->queued = LOAD(&a->g[group].queued);
	out->subtree_queued = LOAD(&a->g[group].subtree_queued);
	out->mem_in_use = LOAD(&a->g[group].mem_in_use);
}

int
qd_admission_check(const struct qd_admission *a, int *bad)
{
	for (unsigned int g = 0; g < a->groups; g++) {
		struct qd_adm_group_stats s;
		qd_admission_group_stats(a, (int)g, &s);
		if (s.running + s.reserved + s.pool != (int64_t)LOAD(&a->g[g].limit) + s.debt ||
		    s.running < 0 || s.reserved < 0 || s.pool < 0 || s.debt < 0) {
			if (bad != NULL)
				*bad = (int)g;
			return -1;
		}
	}
	return 0;
}
