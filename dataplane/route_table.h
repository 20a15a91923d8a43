/*
 * The query route table: query id -> coordinator, one table shared by every
 * worker lcore.
 *
 * A query's follow-up requests may land on any lcore (RSS or the af_packet
 * fanout hash picks the core by the client's 4-tuple, and clients open new
 * connections freely), so the lcore that saw the POST's response records the
 * route and every lcore reads it. Reads are lock-free: an rte_hash with
 * RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF. Writes (one insert per query, one
 * delete when it ends) are rare next to reads; the hash serialises concurrent
 * writers among themselves (MULTI_WRITER_ADD), never readers.
 *
 * The hash's key position indexes a fixed entry array allocated at start-up
 * (coordinator, times, a copy of the id). A deleted key's position is reused
 * only after every worker has passed a quiescent state (RCU QSBR, the hash's
 * defer queue), so a reader that found an entry can use it until the end of
 * its loop iteration even if another lcore ends the query meanwhile. Each worker therefore calls qd_route_quiescent() once per loop
 * iteration and goes offline around its idle sleeps.
 *
 * Ending a query is exactly-once: qd_route_end() succeeds for one caller only
 * (a compare-and-swap on the entry), and only that caller counts the end. The
 * route itself lingers after the end (clients poll a cancelled query's nextUri
 * for its final page, and fetch /v1/query/{id} after the last one; the
 * coordinator still answers both) and is removed by the sweep once
 * <linger> has passed. Idle routes (the client went away without finishing or
 * cancelling) are ended and removed by the same sweep, run incrementally by
 * every worker over its own stripe of the array.
 */
#ifndef QD_ROUTE_TABLE_H
#define QD_ROUTE_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_hash.h>
#include <rte_rcu_qsbr.h>

#include "trino_proto.h"

#define QD_ROUTE_KEY_LEN 48 /* QD_TRINO_ID_MAX + NUL, the size rte_hash compares fastest */
#define QD_ROUTE_THREADS_MAX 64

struct qd_route_entry {
	char id[QD_ROUTE_KEY_LEN];  /* the key, zero padded (for the sweeper's delete) */
	uint64_t created_us;
	uint64_t last_used_us;      /* relaxed atomics: any lcore touches it on use */
	uint64_t ended_us;          /* when the query ended (valid once <ended> is set) */
	uint16_t coord;             /* index into the configured coordinators */
	uint16_t owner;             /* worker index that created it */
	int16_t group;              /* admission group holding a slot for it, -1 none */
	uint8_t is_alias;           /* another name of the query at <alias_pos> */
	uint8_t restored;           /* replayed from the state log: its coordinator has not
				     * confirmed it still runs (cleared once checked) */
	uint8_t adopted;            /* found by asking the coordinators (route discovery): the
				     * query was admitted by another dispatcher */
	uint32_t alias_pos;         /* alias: its query's position; query: its alias's, or NONE */
	uint64_t verified_us;       /* its coordinator last said it runs (relaxed atomic) */
	int64_t mem;                /* its PEAK_MEMORY estimate held in that group */
	uint32_t live;              /* 1 between insert and the winning remove */
	uint32_t ended;             /* 1 once the query ended: lingers, then removed */
} __rte_cache_aligned;

struct qd_route_table {
	struct rte_hash *hash;
	struct rte_rcu_qsbr *qsbr;
	struct qd_route_entry *entries; /* by the hash's key position */
	uint32_t positions;             /* entries[] size: the hash's largest position + 1 */
	uint32_t capacity;              /* routes at most */
	uint32_t live_count;            /* entries, ended ones included (relaxed atomics) */
	uint32_t ended_count;           /* entries lingering after their query ended */
	uint32_t adopted_count;         /* entries of adopted queries (relaxed atomics) */
	uint32_t threads;
};

/* Create a table for <capacity> routes read by <threads> workers (thread ids 0..threads-1).
 * NULL with errno on failure. */
struct qd_route_table *qd_route_table_create(const char *name, uint32_t capacity,
					     uint32_t threads, int socket);
void qd_route_table_destroy(struct qd_route_table *t);

/* Worker <thread> starts/stops reading (online/offline around sleeps, register at start). */
int qd_route_thread_register(struct qd_route_table *t, unsigned int thread);
void qd_route_thread_unregister(struct qd_route_table *t, unsigned int thread);
void qd_route_thread_online(struct qd_route_table *t, unsigned int thread);
void qd_route_thread_offline(struct qd_route_table *t, unsigned int thread);
/* Once per loop iteration: this thread holds no entry pointer any more. */
static inline void
qd_route_quiescent(struct qd_route_table *t, unsigned int thread)
{
	rte_rcu_qsbr_quiescent(t->qsbr, thread);
}

/* Record <id> -> <coord>. 0, -EEXIST (already routed: left as it was), -ENOSPC (table
 * full), -EINVAL (id empty or longer than QD_TRINO_ID_MAX). */
int qd_route_insert(struct qd_route_table *t, const char *id, size_t id_len, uint16_t coord,
		    uint16_t owner, uint64_t now_us);

/* The same, for a query that holds an admission slot in <group> (-1 none) with memory
 * estimate <mem>: whoever ends the route gives them back (qd_route_end_take, the sweep). */
int qd_route_insert_adm(struct qd_route_table *t, const char *id, size_t id_len, uint16_t coord,
			uint16_t owner, uint64_t now_us, int16_t group, int64_t mem);

/* The same, for a query this dispatcher did not admit but found on coordinator <coord>
 * (route discovery): the entry is marked adopted and counted in adopted_count. */
int qd_route_insert_adopted(struct qd_route_table *t, const char *id, size_t id_len,
			    uint16_t coord, uint16_t owner, uint64_t now_us, int16_t group,
			    int64_t mem);

#define QD_ROUTE_NO_ALIAS UINT32_MAX

/* A second name for the routed query <real_id>: a query queued at the dispatcher keeps
 * the placeholder id its client saw first (trino-client cancels by that id), so requests
 * naming it reach the query under its coordinator's id. The alias holds no slot, is not
 * counted as a query, ends when its query ends and lingers as long. 0, -ENOENT (no live
 * route for real_id), -EEXIST, -ENOSPC, -EINVAL. */
int qd_route_insert_alias(struct qd_route_table *t, const char *alias_id, size_t alias_len,
			  const char *real_id, size_t real_len, uint64_t now_us);

/* Like qd_route_lookup; for an alias, also the query's own id in <real> (NUL terminated,
 * QD_ROUTE_KEY_LEN bytes) and its length in *real_len (0 when <id> is not an alias). */
int qd_route_resolve(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us,
		     char *real, size_t *real_len);

/* The coordinator of <id> (and refresh its idle clock), or -ENOENT. */
int qd_route_lookup(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us);

/* The query of <id> ended: 0 for the one caller that marks it (and counts the end),
 * -EALREADY when it had ended already, -ENOENT when there is no route. The route keeps
 * working until the sweep removes it after the linger time. */
int qd_route_end(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us);
/* The same; the winner also gets the entry's coordinator, group and memory in *out. */
int qd_route_end_take(struct qd_route_table *t, const char *id, size_t id_len, uint64_t now_us,
		      struct qd_route_entry *out);

/* Called by the sweep for each route it ends (idle, or its coordinator dead), once. */
typedef void (*qd_route_ended_fn)(void *ctx, const struct qd_route_entry *e, bool dead);

/* Remove the route of <id> at once: 0 for the one caller that removed it, -ENOENT for
 * everyone else. (Does not end the query for counting: tests and the sweep use it.) */
int qd_route_remove(struct qd_route_table *t, const char *id, size_t id_len);

/* Sweep up to <budget> entries of stripe <thread> (of <stripes>) starting at *cursor:
 * routes whose query ended more than <linger_us> ago are removed; routes unused for more
 * than <idle_us> are ended and removed, counted in the return value. Routes of a
 * coordinator with a bit set in <dead_mask> (coord < 64) are ended, counted in
 * *dead_removed instead, and linger like any ended route (the coordinator may come back
 * and its clients still poll). <fn> (may be NULL) hears of every end. */
uint32_t qd_route_sweep(struct qd_route_table *t, unsigned int thread, unsigned int stripes,
			uint32_t *cursor, uint32_t budget, uint64_t now_us, uint64_t idle_us,
			uint64_t linger_us, uint64_t dead_mask, uint32_t *dead_removed,
			qd_route_ended_fn fn, void *ctx);

/* Call <fn> for every route whose query has not ended (aliases included: is_alias), in
 * position order; <fn> returning false stops. For the main lcore (the state log's
 * snapshot): entries read with relaxed loads while workers run, so the view is fuzzy, which
 * is what the log's replay tolerates. Returns the entries visited. */
typedef bool (*qd_route_visit_fn)(void *ctx, const struct qd_route_entry *e);
uint32_t qd_route_foreach(struct qd_route_table *t, qd_route_visit_fn fn, void *ctx);

/* Routes in the table now, lingering ones included (exact when no writer runs). */
uint32_t qd_route_count(const struct qd_route_table *t);
/* Of those, routes whose query has ended and that only linger. */
uint32_t qd_route_ended_count(const struct qd_route_table *t);

/* The coordinator of restored route <id> confirmed it (or the reconciliation gave up on
 * it): clear its `restored` flag. 0, -ENOENT (no live route), -EALREADY (the query ended:
 * the entry is left alone). */
int qd_route_clear_restored(struct qd_route_table *t, const char *id, size_t id_len);

/* The coordinator of <id> said at <now_us> that the query still runs (the verification of
 * quiet routes): the next check waits a full period from now. 0, -ENOENT, -EALREADY. */
int qd_route_mark_verified(struct qd_route_table *t, const char *id, size_t id_len,
			   uint64_t now_us);
/* Routes of adopted queries in the table now, lingering ones included. */
uint32_t qd_route_adopted_count(const struct qd_route_table *t);

#endif /* QD_ROUTE_TABLE_H */
