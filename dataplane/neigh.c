/*
 * Neighbour table and ARP resolution state machine (see neigh.h).
 *
 * Open addressing with linear probing and backward-shift deletion: lookups
 * touch one or two cache lines and there are no tombstones to clean up. The
 * load factor is capped at 3/4 so a probe sequence stays short even when the
 * table is nearly full.
 */
#include "neigh.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
	[QD_NEIGH_FREE] = "free",
	[QD_NEIGH_INCOMPLETE] = "incomplete",
	[QD_NEIGH_REACHABLE] = "reachable",
	[QD_NEIGH_STALE] = "stale",
	[QD_NEIGH_FAILED] = "failed",
};

const char *
qd_neigh_state_name(enum qd_neigh_state state)
{
	if ((unsigned int)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "?";
	return state_names[state];
}

static inline uint32_t
slot_of(const struct qd_neigh_table *t, uint32_t ip_be)
{
	/* Fibonacci hashing: the top bits of the product depend on every input bit (the
	 * low ones see only the low bits, the network part of a big-endian address). */
	return (uint32_t)(ip_be * 2654435769u) >> t->shift;
}

int
qd_neigh_table_init(struct qd_neigh_table *t, uint32_t capacity)
{
	if (capacity < 16 || capacity > QD_NEIGH_CAPACITY_MAX || (capacity & (capacity - 1)) != 0)
		return -EINVAL;
	t->entries = calloc(capacity, sizeof(t->entries[0]));
	if (t->entries == NULL)
		return -ENOMEM;
	t->capacity = capacity;
	t->shift = (uint8_t)(32 - __builtin_ctz(capacity));
	t->count = 0;
	return 0;
}

void
qd_neigh_table_free(struct qd_neigh_table *t)
{
	free(t->entries);
	t->entries = NULL;
	t->capacity = 0;
	t->count = 0;
}

struct qd_neigh_entry *
qd_neigh_lookup(struct qd_neigh_table *t, uint32_t ip_be)
{
	uint32_t mask = t->capacity - 1;
	uint32_t i = slot_of(t, ip_be);
	/* Bounded: the table is never full, so a free slot ends every probe. */
	for (uint32_t n = 0; n < t->capacity; n++, i = (i + 1) & mask) {
		struct qd_neigh_entry *e = &t->entries[i];
		if (e->state == QD_NEIGH_FREE)
			return NULL;
		if (e->ip_be == ip_be)
			return e;
	}
	return NULL;
}

struct qd_neigh_entry *
qd_neigh_insert(struct qd_neigh_table *t, uint32_t ip_be)
{
	assert(ip_be != 0);
	struct qd_neigh_entry *e = qd_neigh_lookup(t, ip_be);
	if (e != NULL)
		return e;
	if ((uint64_t)(t->count + 1) * 4 > (uint64_t)t->capacity * 3)
		return NULL;
	uint32_t mask = t->capacity - 1;
	uint32_t i = slot_of(t, ip_be);
	for (uint32_t n = 0; n < t->capacity; n++, i = (i + 1) & mask) {
		e = &t->entries[i];
		if (e->state != QD_NEIGH_FREE)
			continue;
		memset(e, 0, sizeof(*e));
		e->ip_be = ip_be;
		e->state = QD_NEIGH_INCOMPLETE;
		t->count++;
		return e;
	}
	assert(!"neigh table full despite the load-factor check");
	return NULL;
}

bool
qd_neigh_remove(struct qd_neigh_table *t, uint32_t ip_be)
{
	struct qd_neigh_entry *e = qd_neigh_lookup(t, ip_be);
	if (e == NULL)
		return false;
	uint32_t mask = t->capacity - 1;
	uint32_t hole = (uint32_t)(e - t->entries);
	uint32_t i = (hole + 1) & mask;
	/* Backward shift: pull later members of the cluster into the hole when their
	 * home slot does not lie strictly between the hole and their position. */
	for (uint32_t n = 0; n < t->capacity; n++, i = (i + 1) & mask) {
		struct qd_neigh_entry *c = &t->entries[i];
		if (c->state == QD_NEIGH_FREE)
			break;
		uint32_t home = slot_of(t, c->ip_be);
		bool movable = ((i - home) & mask) >= ((i - hole) & mask);
		if (movable) {
			t->entries[hole] = *c;
			hole = i;
		}
	}
	memset(&t->entries[hole], 0, sizeof(t->entries[hole]));
	t->count--;
	return true;
}

int
qd_neigh_replica_set(struct qd_neigh_table *t, uint32_t ip_be, const uint8_t mac[6],
		     enum qd_neigh_state state)
{
	if (!qd_neigh_state_usable(state)) {
		qd_neigh_remove(t, ip_be);
		return 0;
	}
	struct qd_neigh_entry *e = qd_neigh_insert(t, ip_be);
	if (e == NULL)
		return -ENOSPC;
	memcpy(e->mac, mac, 6);
	e->state = (uint8_t)state;
	return 0;
}

int
qd_neigh_want(struct qd_neigh_table *t, uint32_t ip_be, bool pinned, uint64_t now_ms)
{
	struct qd_neigh_entry *e = qd_neigh_insert(t, ip_be);
	if (e == NULL)
		return -ENOSPC;
	e->pinned = e->pinned || pinned;
	if (e->state == QD_NEIGH_INCOMPLETE && e->probes == 0) {
		e->updated_ms = now_ms;
		e->next_probe_ms = now_ms;
	}
	return 0;
}

bool
qd_neigh_learn(struct qd_neigh_table *t, uint32_t ip_be, const uint8_t mac[6], bool create,
	       uint64_t now_ms)
{
	static const uint8_t zero[6];
	if (ip_be == 0 || memcmp(mac, zero, 6) == 0 || (mac[0] & 1) != 0)
		return false; /* probes and multicast senders are never neighbours */
	struct qd_neigh_entry *e = create ? qd_neigh_insert(t, ip_be) : qd_neigh_lookup(t, ip_be);
	if (e == NULL)
		return false;
	bool changed = e->state != QD_NEIGH_REACHABLE || memcmp(e->mac, mac, 6) != 0;
	memcpy(e->mac, mac, 6);
	e->state = QD_NEIGH_REACHABLE;
	e->probes = 0;
	e->updated_ms = now_ms;
	e->next_probe_ms = 0;
	if (changed)
		e->dirty = true;
	return changed;
}

static bool
emit(struct qd_neigh_entry *e, uint64_t now_ms, const struct qd_neigh_timing *timing,
     struct qd_neigh_action *out, unsigned int *n, unsigned int max)
{
	if (*n == max)
		return false;
	out[*n].type = QD_NEIGH_ACT_PROBE;
	out[*n].ip_be = e->ip_be;
	(*n)++;
	e->probes++;
	e->next_probe_ms = now_ms + timing->retry_ms;
	return true;
}

static void
tick_entry(struct qd_neigh_table *t, struct qd_neigh_entry *e,
	   const struct qd_neigh_timing *timing, uint64_t now_ms, struct qd_neigh_action *out,
	   unsigned int *n, unsigned int max)
{
	switch ((enum qd_neigh_state)e->state) {
	case QD_NEIGH_REACHABLE:
		if (now_ms - e->updated_ms < timing->reachable_ms)
			return;
		/* Still usable while we ask again: traffic is not held up by a refresh. */
		e->state = QD_NEIGH_STALE;
		e->probes = 0;
		e->dirty = true;
		e->next_probe_ms = now_ms;
		/* fall through */
	case QD_NEIGH_STALE:
	case QD_NEIGH_INCOMPLETE:
		if (now_ms < e->next_probe_ms)
			return;
		if (e->probes < timing->probes) {
			emit(e, now_ms, timing, out, n, max);
			return;
		}
		e->state = QD_NEIGH_FAILED;
		e->dirty = true;
		e->updated_ms = now_ms;
		return;
	case QD_NEIGH_FAILED:
		/* Pinned next hops (coordinators, gateway) keep being asked for, slowly;
		 * others are forgotten once replicas have dropped them. */
		if (e->pinned) {
			if (now_ms - e->updated_ms >= timing->reachable_ms) {
				e->state = QD_NEIGH_INCOMPLETE;
				e->probes = 0;
				e->updated_ms = now_ms;
				emit(e, now_ms, timing, out, n, max);
			}
		} else if (!e->dirty) {
			qd_neigh_remove(t, e->ip_be);
		}
		return;
	case QD_NEIGH_FREE:
		return;
	}
}

unsigned int
qd_neigh_tick(struct qd_neigh_table *t, const struct qd_neigh_timing *timing, uint64_t now_ms,
	      struct qd_neigh_action *out, unsigned int max)
{
	assert(timing->retry_ms > 0 && timing->probes > 0);
	unsigned int n = 0;
	for (uint32_t i = 0; i < t->capacity; i++) {
		struct qd_neigh_entry *e = &t->entries[i];
		if (e->state == QD_NEIGH_FREE)
			continue;
		uint32_t before = t->count;
		tick_entry(t, e, timing, now_ms, out, &n, max);
		/* A removal may shift a not-yet-visited entry into slot i. */
		if (t->count < before)
			i--;
	}
	return n;
}
