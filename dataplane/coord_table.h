/*
 * The coordinators as every lcore sees them: address, weight, health, drain
 * flag and load, in one array shared by the workers and the main lcore.
 *
 * Each field has one kind of writer, and every access is a relaxed atomic, so
 * nobody takes a lock to pick a coordinator:
 *   - health, cluster load, check counters: the worker that probes that
 *     coordinator (dataplane/health_check.c; coordinator i belongs to worker
 *     i % workers), so a coordinator's checks never race with each other;
 *   - drained: the main lcore (qdctl drain/undrain);
 *   - down_until_us (passive detection) and in-flight counts: any worker, with
 *     atomic stores/adds.
 * A coordinator is usable for new queries when it is up (or not yet checked),
 * not drained and not passively marked down. Queries already routed to it keep
 * going there whatever its state: only its death ends them.
 */
#ifndef QD_COORD_TABLE_H
#define QD_COORD_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>

#define QD_COORDS_MAX 64

enum qd_coord_health {
	QD_COORD_UNKNOWN = 0, /* not checked yet (or checks are off): treated as up */
	QD_COORD_UP,
	QD_COORD_DOWN,
};

struct qd_coord {
	/* fixed at start-up */
	uint32_t ip_be;
	uint16_t port;
	uint16_t weight;              /* 1..1000 */
	/* health checker of this coordinator */
	uint32_t health;              /* enum qd_coord_health */
	uint32_t cluster_running;     /* runningQueries from its /v1/cluster */
	uint32_t cluster_queued;      /* queuedQueries */
	uint32_t consecutive;         /* successes while down, failures while up */
	uint64_t checked_us;          /* last check completed (0 = never) */
	uint64_t changed_us;          /* last health transition */
	uint64_t checks_ok;
	uint64_t checks_failed;
	uint64_t transitions;
	char last_error[64];          /* NUL terminated; written by the checker only */
	/* main lcore */
	uint32_t drained;             /* 1: no new queries (queries running there go on) */
	uint32_t removed;             /* 1: taken out at run time (qdctl coordinators remove):
				       * no new queries, no checks; its slot is not reused */
	/* any worker */
	uint64_t down_until_us;       /* passive: a connection to it failed */
	uint64_t passive_failures;
	int64_t inflight;             /* queries routed there by this dispatcher, not ended */
	uint64_t dispatched;          /* queries sent there, total */
	uint32_t since_report;        /* queries sent since the last /v1/cluster (load estimate) */
} __rte_cache_aligned;

/* Entries are only ever appended (qdctl coordinators add: the main lcore fills the next
 * entry, then publishes the new count with a release store), never moved or reused, so
 * a coordinator's index is stable for the life of the process: routes keep it. */
struct qd_coord_table {
	unsigned int count;
	struct qd_coord c[QD_COORDS_MAX];
};

/* Entries a reader may look at now (acquire: their fixed fields are written). */
static inline unsigned int
qd_coord_count(const struct qd_coord_table *t)
{
	return __atomic_load_n(&t->count, __ATOMIC_ACQUIRE);
}

static inline uint32_t
qd_coord_load32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint64_t
qd_coord_load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Usable for a new query at <now_us>. */
static inline bool
qd_coord_usable(const struct qd_coord *c, uint64_t now_us)
{
	return qd_coord_load32(&c->health) != QD_COORD_DOWN && qd_coord_load32(&c->drained) == 0 &&
	       qd_coord_load32(&c->removed) == 0 && qd_coord_load64(&c->down_until_us) <= now_us;
}

/* Dead for queries already routed there: the health checks declared it down. */
static inline bool
qd_coord_dead(const struct qd_coord *c)
{
	return qd_coord_load32(&c->health) == QD_COORD_DOWN;
}

/* A connection to it failed: skip it for new queries until <until_us>. */
static inline void
qd_coord_mark_failed(struct qd_coord *c, uint64_t until_us)
{
	__atomic_store_n(&c->down_until_us, until_us, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->passive_failures, 1, __ATOMIC_RELAXED);
}

/* Load for placement: what its last /v1/cluster said plus what we sent since. */
static inline uint32_t
qd_coord_load(const struct qd_coord *c)
{
	return qd_coord_load32(&c->cluster_running) + qd_coord_load32(&c->cluster_queued) +
	       qd_coord_load32(&c->since_report);
}

static inline const char *
qd_coord_health_name(uint32_t h)
{
	return h == QD_COORD_UP ? "up" : h == QD_COORD_DOWN ? "down" : "unknown";
}

#endif /* QD_COORD_TABLE_H */
