/*
 * Neighbour table: IPv4 address -> Ethernet address, with the ARP resolution
 * state machine.
 *
 * One table (the master) lives on the main lcore and owns every decision:
 * when to probe, when an entry goes stale, when it fails. Each worker lcore
 * keeps a replica of the usable entries that only the master's messages
 * change, so a worker looks up a next hop without sharing memory with anyone.
 * Workers report what they learn from ARP to the master. The table code is
 * plain C with no DPDK inside, so unit tests drive the state machine with a
 * fake clock.
 */
#ifndef QD_NEIGH_H
#define QD_NEIGH_H

#include <stdbool.h>
#include <stdint.h>

#define QD_NEIGH_CAPACITY_MAX 65536u

enum qd_neigh_state {
	QD_NEIGH_FREE = 0,    /* slot unused */
	QD_NEIGH_INCOMPLETE,  /* probing, no address yet */
	QD_NEIGH_REACHABLE,   /* confirmed within neigh.reachable_s */
	QD_NEIGH_STALE,       /* usable, being re-confirmed */
	QD_NEIGH_FAILED,      /* probes unanswered: unusable */
};

struct qd_neigh_entry {
	uint32_t ip_be;
	uint8_t mac[6];
	uint8_t state;   /* enum qd_neigh_state */
	uint8_t probes;  /* requests sent in the current round */
	bool pinned;     /* wanted by configuration: never evicted, probed forever */
	bool dirty;      /* master only: replicas have not seen the latest value */
	uint64_t updated_ms;
	uint64_t next_probe_ms;
};

struct qd_neigh_table {
	uint32_t capacity; /* power of two */
	uint32_t count;
	uint8_t shift;     /* 32 - log2(capacity) */
	struct qd_neigh_entry *entries;
};

struct qd_neigh_timing {
	uint64_t reachable_ms;
	uint64_t retry_ms;
	uint32_t probes;
};

/* What the master wants done after a tick; the caller carries it out. */
enum qd_neigh_action_type {
	QD_NEIGH_ACT_PROBE,    /* broadcast an ARP request for <ip_be> */
};

struct qd_neigh_action {
	enum qd_neigh_action_type type;
	uint32_t ip_be;
};

/* Allocate a table of <capacity> slots (a power of two, <= QD_NEIGH_CAPACITY_MAX).
 * Start-up only. Returns 0 or -EINVAL/-ENOMEM. */
int qd_neigh_table_init(struct qd_neigh_table *t, uint32_t capacity);
void qd_neigh_table_free(struct qd_neigh_table *t);

struct qd_neigh_entry *qd_neigh_lookup(struct qd_neigh_table *t, uint32_t ip_be);

/* Find or create the entry for <ip_be>. Refuses (NULL) when the table is
 * 3/4 full, which keeps linear probing short. */
struct qd_neigh_entry *qd_neigh_insert(struct qd_neigh_table *t, uint32_t ip_be);

/* Remove <ip_be>; returns true when it was present. */
bool qd_neigh_remove(struct qd_neigh_table *t, uint32_t ip_be);

/* Replica side: set <ip_be> to <mac>/<state> as the master said. Returns 0 or -ENOSPC. */
int qd_neigh_replica_set(struct qd_neigh_table *t, uint32_t ip_be, const uint8_t mac[6],
			 enum qd_neigh_state state);

/* Master: resolve <ip_be> (and keep it resolved when <pinned>). Returns 0 or -ENOSPC. */
int qd_neigh_want(struct qd_neigh_table *t, uint32_t ip_be, bool pinned, uint64_t now_ms);

/* Master: a worker saw <ip_be> at <mac>. <create> says whether an unknown address may be
 * added (true when the ARP was addressed to us, as RFC 826 asks). Returns true when the
 * entry changed in a way replicas must see. */
bool qd_neigh_learn(struct qd_neigh_table *t, uint32_t ip_be, const uint8_t mac[6], bool create,
		    uint64_t now_ms);

/* Master: run timers at <now_ms>. Writes at most <max> actions into <out> and returns how
 * many; entries whose timer could not get an action slot are retried on the next tick. */
unsigned int qd_neigh_tick(struct qd_neigh_table *t, const struct qd_neigh_timing *timing,
			   uint64_t now_ms, struct qd_neigh_action *out, unsigned int max);

/* Whether replicas may use an entry in <state> to send packets. */
static inline bool
qd_neigh_state_usable(enum qd_neigh_state state)
{
	return state == QD_NEIGH_REACHABLE || state == QD_NEIGH_STALE;
}

const char *qd_neigh_state_name(enum qd_neigh_state state);

#endif /* QD_NEIGH_H */
