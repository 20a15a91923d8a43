/*
 * Admission control: how many queries each resource group runs at once, and
 * the queue of those that wait, shared by every worker lcore.
 *
 * The fast path takes no lock and, most of the time, touches no shared cache
 * line: each worker spends a local reserve of slots per group and goes to the
 * group's shared pool (one atomic word) only to take or give back a batch
 * (perfbook's per-thread counters; Doorman/escrow at the scale of one
 * process). A query holds one slot in its leaf group and one in every
 * ancestor. Slots are conserved per group:
 *
 *     sum(in_use of every column) + sum(reserves) + pool == hardConcurrencyLimit + debt
 *
 * and neither the pool nor the debt ever goes below zero (the pool is only
 * decremented by a CAS that checks). Debt is what a group runs beyond its
 * limit: queries that already run and cannot wait (a query adopted from
 * another dispatcher, one restored from the state log), and a limit lowered
 * by a reload below what runs. While a group has debt nothing new is admitted
 * into it (the fast path refuses, reserves are returned) and every slot given
 * back pays the debt before it reaches the pool, so the group drains to its
 * limit. Without debt, "slots in use + slots in reserves <= limit" holds at
 * every instant. A query may end on another lcore than the one that admitted
 * it, so a column's in_use can go negative; only the sum means anything.
 *
 * When a group or one of its ancestors has queued queries, the fast path is
 * not taken: the submission joins the queue (under the one admission lock)
 * and the scheduler, which runs on releases, on enqueues and when workers
 * return their reserves, hands free slots to queued queries (FIFO within a
 * leaf, by schedulingPolicy across subgroups). Releases in a group with queued
 * queries go straight to the pool, and every worker returns its reserves of
 * such groups at its next loop (the flush epoch), so no slot idles in a
 * reserve while a query waits. The lock is never taken while the groups have
 * no queue: the rate of queue operations is bounded by the rate at which
 * slots free up, and a queued query waits for at least one poll anyway.
 *
 * Queued queries live in a fixed array of entries (admission.queued_max); an
 * entry holds the request (rebuilt head + SQL body, as mbufs) until a worker
 * that serves one of the query's polls dispatches it, so the query can be
 * polled, dispatched and cancelled through any lcore.
 */
#ifndef QD_ADMISSION_H
#define QD_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>
#include <rte_spinlock.h>

#include "resource_groups.h"

struct rte_mbuf;

#define QD_ADM_WORKERS_MAX 16
#define QD_ADM_COLUMNS (QD_ADM_WORKERS_MAX + 1) /* the last column: the scheduler */
#define QD_ADM_ID_MAX 48
#define QD_ADM_NONE UINT32_MAX

/* Shared state of one group. The pool and the queue counts have their own cache lines:
 * the pool is what workers hit when they refill. */
struct qd_adm_group {
	int64_t pool;                 /* free slots not in any reserve (atomic) */
	uint64_t pad0[7];
	uint32_t subtree_queued;      /* queued here and below (atomic; written under lock) */
	uint32_t queued;              /* queued in this leaf (under lock) */
	uint32_t head, tail;          /* FIFO of entry indexes (under lock) */
	uint32_t rr;                  /* fair policy: next child to try (under lock) */
	uint32_t limit;               /* hardConcurrencyLimit now (reloads change it) */
	int32_t batch;                /* slots a worker takes from the pool at once */
	uint64_t soft_mem;            /* softMemoryLimit in bytes, UINT64_MAX: none */
	int64_t mem_in_use;           /* bytes of PEAK_MEMORY estimates of running queries */
	int64_t debt;                 /* slots in use beyond the limit (atomic, >= 0) */
	uint64_t forced;              /* slots taken by qd_admission_force (adopted queries) */
	uint64_t admitted;            /* straight away (fast path or from the queue at once) */
	uint64_t admitted_queued;     /* after waiting in the queue */
	uint64_t queue_full;          /* rejected: maxQueued */
	uint64_t canceled_queued;     /* DELETE while queued */
	uint64_t timed_out;           /* queue timeout */
	uint64_t abandoned;           /* nobody polled it */
	bool retired;                 /* gone from the file at a reload: no new queries */
} __rte_cache_aligned;

/* One group in one column: what the fast path touches, side by side. */
struct qd_adm_slot {
	int64_t in_use;                     /* relaxed atomic stores by the owner */
	int32_t reserve;
	int32_t pad;
};

/* One worker's column (and the scheduler's, the last one). */
struct qd_adm_column {
	struct qd_adm_slot s[QD_RG_GROUPS_MAX];
	uint64_t flush_epoch_seen;
	uint64_t fast_admits;               /* counters (owner only) */
	uint64_t refills;
	uint64_t returns;
	uint64_t slow_path;
} __rte_cache_aligned;

enum qd_adm_entry_state {
	QD_ADM_FREE = 0,
	QD_ADM_WAITING,      /* in its group's FIFO */
	QD_ADM_ADMITTED,     /* slots taken for it; waits for a poll to dispatch it */
	QD_ADM_DISPATCHING,  /* a worker took its request and sends it */
	QD_ADM_DONE,         /* ended while queued; answers its final poll, then freed */
};

enum qd_adm_done_reason {
	QD_ADM_DONE_NONE = 0,
	QD_ADM_DONE_CANCELED,   /* DELETE */
	QD_ADM_DONE_TIMEOUT,    /* admission.queue_timeout_ms */
	QD_ADM_DONE_ABANDONED,  /* no poll for admission.client_timeout_ms */
	QD_ADM_DONE_FAILED,     /* could not be dispatched */
};

struct qd_adm_entry {
	char id[QD_ADM_ID_MAX];     /* placeholder query id: "qdq_<index>_<tag>" */
	uint32_t state;             /* enum qd_adm_entry_state (atomic) */
	uint32_t reason;            /* enum qd_adm_done_reason */
	uint32_t tag;               /* random: ids are not guessable, reuse is detected */
	uint32_t next;              /* FIFO link / free list */
	uint16_t group;
	uint16_t worker;            /* that queued it */
	uint32_t polls;             /* nextUri sequence */
	int64_t mem;                /* PEAK_MEMORY estimate, bytes (0 = none) */
	uint64_t queued_us;
	uint64_t last_poll_us;
	uint64_t done_us;
	struct rte_mbuf *request;   /* head + body, ready to send (owned by the entry) */
	uint32_t request_len;
	uint32_t coord_hint;        /* unused by admission: for the proxy (affinity) */
	uint32_t client_ip_be;
} __rte_cache_aligned;

struct qd_admission_conf {
	unsigned int workers;
	uint32_t queued_max;        /* entries */
	uint32_t batch;             /* 0 = auto per group: limit / (4 * workers), at least 1 */
	uint64_t queue_timeout_us;
	uint64_t client_timeout_us;
	uint64_t done_linger_us;    /* a DONE entry answers polls this long */
};

/* A loaded configuration and where its groups live in the admission arrays; swapped as
 * a whole on reload (readers load the pointer once per selection). */
struct qd_adm_view {
	struct qd_rg_config *rg;
	int32_t map[QD_RG_GROUPS_MAX]; /* rg->groups index -> admission group index */
};

struct qd_admission {
	struct qd_admission_conf conf;
	struct qd_adm_view *view;   /* current (atomic pointer) */
	unsigned int groups;        /* groups in use (reloads only append) */
	int32_t batch[QD_RG_GROUPS_MAX];
	struct qd_rg_group info[QD_RG_GROUPS_MAX]; /* names, parents, policies, limits */
	int16_t path[QD_RG_GROUPS_MAX][QD_RG_DEPTH_MAX]; /* the group, its parent, ... root */
	uint8_t path_len[QD_RG_GROUPS_MAX];
	uint32_t name_hash[QD_RG_GROUPS_MAX]; /* FNV-1a of the full name: the state log's key */
	int16_t first_child[QD_RG_GROUPS_MAX];
	int16_t next_sibling[QD_RG_GROUPS_MAX];
	uint32_t waiting_total;     /* entries WAITING, all groups (atomic) */
	uint32_t root_rr;
	bool eal_mem;
	bool entries_eal;
	uint64_t flush_epoch;       /* bumped when a group gets its first queued query */
	rte_spinlock_t lock;        /* queues, entries' FIFO links, free list, reload */
	uint32_t free_head;
	uint32_t entries_used;
	uint64_t reloads;
	uint64_t cap_changes;        /* qd_admission_set_cap calls that changed a limit */
	uint64_t entries_full;      /* no entry left (admission.queued_max) */
	struct qd_adm_group g[QD_RG_GROUPS_MAX];
	struct qd_adm_column col[QD_ADM_COLUMNS];
	struct qd_adm_entry *entries; /* conf.queued_max */
};

enum qd_adm_result {
	QD_ADM_RUN = 0,       /* slots held: send it now */
	QD_ADM_QUEUED,        /* *entry holds it; answer with a placeholder */
	QD_ADM_QUEUE_FULL,    /* maxQueued of a group on the path reached */
	QD_ADM_NO_ENTRY,      /* admission.queued_max reached */
};

/* Create for <rg> (owned from now on, freed with the admission). NULL with errno. Uses
 * rte_zmalloc when an EAL runs, so it can live in hugepage memory; calloc otherwise. */
struct qd_admission *qd_admission_create(const struct qd_admission_conf *conf,
					 struct qd_rg_config *rg);
void qd_admission_destroy(struct qd_admission *a);

/* Replace the configuration with <rg> (owned from now on): limits, queues and policies of
 * groups that keep their name change in place (a lower limit lets running queries finish
 * and admits no more until the group is under it), new groups are appended, groups gone
 * from the file are retired. The old view is returned for the caller to free with
 * qd_admission_view_free() once no worker can be reading it (after an RCU grace period).
 * NULL and errno on failure (too many groups in total): nothing changed, <rg> not taken. */
struct qd_adm_view *qd_admission_reload(struct qd_admission *a, struct qd_rg_config *rg);
void qd_admission_view_free(struct qd_adm_view *v);

/* Admission group index of the leaf a query goes to, or -1 (no selector matched). */
int qd_admission_select(const struct qd_admission *a, const struct qd_rg_query *q);

/* Lock-free fast path: take a slot in <group> and its ancestors from <worker>'s reserves.
 * true: held. false: a queue exists on the path or a pool is empty (go slow). */
bool qd_admission_try_acquire(struct qd_admission *a, unsigned int worker, int group,
			      int64_t mem);
/* Give back a slot taken by try_acquire or by the scheduler, on whatever worker the query
 * ended. Runs the scheduler when the path has queued queries. */
void qd_admission_release(struct qd_admission *a, unsigned int worker, int group, int64_t mem);

/* Submit a query: the fast path, else the queue. QD_ADM_RUN: slots held (if the scheduler
 * admitted it at once, *entry is QD_ADM_NONE too). QD_ADM_QUEUED: *entry is its waiting
 * entry (state WAITING or already ADMITTED), with id set; the caller then attaches the
 * request with qd_admission_attach(). */
enum qd_adm_result qd_admission_submit(struct qd_admission *a, unsigned int worker, int group,
				       int64_t mem, uint64_t now_us, uint32_t *entry);
void qd_admission_attach(struct qd_admission *a, uint32_t entry, struct rte_mbuf *request,
			 uint32_t len, uint32_t client_ip_be);

/* The entry of placeholder id <id>, or QD_ADM_NONE (unknown, reused or malformed). */
uint32_t qd_admission_find(const struct qd_admission *a, const char *id, size_t len);
/* A poll of <entry> arrived: refreshes its client clock and returns its state. When the
 * state is ADMITTED, the caller may claim it. */
enum qd_adm_entry_state qd_admission_poll(struct qd_admission *a, uint32_t entry,
					  uint64_t now_us);
/* ADMITTED -> DISPATCHING for exactly one caller: the request is returned (*len set) and is
 * the caller's from now on, and so are the slots (release them when the query ends, or at
 * once if it cannot be sent). NULL when someone else claimed it or it is not admitted. */
struct rte_mbuf *qd_admission_claim(struct qd_admission *a, uint32_t entry, uint32_t *len);
/* The claimed entry's poll has been answered: the entry is freed. */
void qd_admission_dispatched(struct qd_admission *a, uint32_t entry);
/* DELETE: a waiting or admitted entry ends (its slots go back); true when it was queued. */
bool qd_admission_cancel(struct qd_admission *a, unsigned int worker, uint32_t entry,
			 uint64_t now_us);
/* A DONE entry's final poll was answered: free it. */
void qd_admission_done_answered(struct qd_admission *a, uint32_t entry);

/* Once per worker loop (cheap unless the flush epoch moved): return this worker's reserves
 * of groups with queued queries and run the scheduler. */
void qd_admission_worker_poll(struct qd_admission *a, unsigned int worker);
/* Timeouts and abandoned entries, and freeing DONE entries nobody polled; up to <budget>
 * entries from *cursor. Run by the main lcore. Returns entries that ended. */
uint32_t qd_admission_expire(struct qd_admission *a, uint32_t *cursor, uint32_t budget,
			     uint64_t now_us);
/* Run the scheduler (takes the lock). Returns queries admitted. */
uint32_t qd_admission_schedule(struct qd_admission *a);

/* The group whose full name hashes to <hash> (qd_admission.name_hash), or -1. */
int qd_admission_group_by_hash(const struct qd_admission *a, uint32_t hash);
/* A query that held slots before a restart (the state log) holds them again: one slot in
 * <group> and its ancestors, taken from the pools even past the limit (the pool may go
 * negative: nothing more is admitted until enough of them end). Main lcore, before the
 * workers start. Released like any other. */
void qd_admission_restore(struct qd_admission *a, int group, int64_t mem);
/* A query that already runs elsewhere and now belongs to this dispatcher (adopted after a
 * failover, dataplane/reconcile.c) holds one slot in <group> and its ancestors at once:
 * from the pools when they have one, else as debt (over the limit; no new admission in
 * that group until enough queries end). Worker <worker>'s lcore. Released like any other
 * (qd_admission_release). */
void qd_admission_force(struct qd_admission *a, unsigned int worker, int group, int64_t mem);
uint32_t qd_admission_name_hash(const char *name);

/* Totals for display and tests: relaxed sums over the columns. */
/* Set <group>'s limit on this dispatcher to <cap> (main lcore): the share of the group's
 * cluster-wide hardConcurrencyLimit that the peers' escrow gives us (lib/cluster.h). A cap
 * below the running queries admits nothing until enough of them end. */
int qd_admission_set_cap(struct qd_admission *a, int group, uint32_t cap);

struct qd_adm_group_stats {
	int64_t running;
	int64_t reserved;
	int64_t pool;
	int64_t debt;             /* over the limit */
	uint32_t queued;          /* in this leaf */
	uint32_t subtree_queued;
	int64_t mem_in_use;
};
void qd_admission_group_stats(const struct qd_admission *a, int group,
			      struct qd_adm_group_stats *out);
/* Checks conservation (with debt) for every group: 0, or -1 with the group in *bad. Exact only when no
 * worker acquires or releases meanwhile (tests; debug builds assert it at quiet points). */
int qd_admission_check(const struct qd_admission *a, int *bad);

#endif /* QD_ADMISSION_H */
