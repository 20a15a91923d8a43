/*
 * Maglev lookup table (see maglev.h for the algorithm and the weight scheme):
 * the permutations, the turn order and the fill, plus publishing the result
 * so lookups on other threads never see a half-built table.
 */
#include "maglev.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "siphash.h"

/* Fixed, public keys (hex digits of pi and e): the table must be the same on every
 * dispatcher, so nothing here may be random. */
static const struct qd_siphash_key offset_key = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull};
static const struct qd_siphash_key skip_key = {0xa4093822299f31d0ull, 0x082efa98ec4e6c89ull};
static const struct qd_siphash_key flow_key = {0xb7e151628aed2a6aull, 0xbf7158809cf4f3c7ull};

static bool
is_prime(uint32_t v)
{
	if (v < 2)
		return false;
	if (v % 2 == 0)
		return v == 2;
	for (uint32_t d = 3; (uint64_t)d * d <= v; d += 2) {
		if (v % d == 0)
			return false;
	}
	return true;
}

int
qd_maglev_init(struct qd_maglev *m, uint32_t size_prime)
{
	memset(m, 0, sizeof(*m));
	if (size_prime > QD_MAGLEV_SIZE_MAX || !is_prime(size_prime))
		return -EINVAL;
	m->slots = malloc(sizeof(*m->slots) * size_prime);
	m->scratch = malloc(sizeof(*m->scratch) * size_prime);
	if (m->slots == NULL || m->scratch == NULL) {
		qd_maglev_free(m);
		return -ENOMEM;
	}
	/* UINT16_MAX in every slot: 0xff bytes. */
	memset(m->slots, 0xff, sizeof(*m->slots) * size_prime);
	m->size = size_prime;
	return 0;
}

void
qd_maglev_free(struct qd_maglev *m)
{
	free(m->slots);
	free(m->scratch);
	memset(m, 0, sizeof(*m));
}

/* The key as 8 little-endian bytes, so the hash (and the table) is the same on any host. */
static uint64_t
key_hash(const struct qd_siphash_key *k, uint64_t key)
{
	uint8_t b[8];
	for (unsigned int i = 0; i < 8; i++)
		b[i] = (uint8_t)(key >> (8 * i));
	return qd_siphash(k, b, sizeof(b));
}

uint64_t
qd_maglev_flow_hash(const void *data, size_t len)
{
	return qd_siphash(&flow_key, data, len);
}

/* Per-backend state of one build; only the backends that take part, compacted. */
struct turn_state {
	uint32_t pos;      /* next slot of its permutation to try */
	uint32_t skip;
	int64_t credit;    /* smooth weighted round robin */
	int64_t weight;
	uint16_t index;    /* in the caller's arrays */
};

/* The backend that takes the next turn: every credit grows by its weight, the largest
 * (first on a tie) pays <total>. Bounded by <count> <= QD_MAGLEV_BACKENDS_MAX. */
static struct turn_state *
next_turn(struct turn_state *t, unsigned int count, int64_t total)
{
	struct turn_state *best = &t[0];
	for (unsigned int i = 0; i < count; i++) {
		t[i].credit += t[i].weight;
		if (t[i].credit > best->credit)
			best = &t[i];
	}
	best->credit -= total;
	return best;
}

/* Fill <table> (m->size slots) from <count> backends. Each backend's cursor only moves
 * forward along its permutation and passes only filled slots, which stay filled, so it
 * wraps at most once: at most size * count probes in all. */
static void
fill(uint16_t *table, uint32_t size, struct turn_state *t, unsigned int count, int64_t total)
{
	memset(table, 0xff, sizeof(*table) * size);
	for (uint32_t filled = 0; filled < size; filled++) {
		struct turn_state *b = next_turn(t, count, total);
		uint32_t probes = 0;
		while (table[b->pos] != QD_MAGLEV_NONE) {
			b->pos += b->skip;
			if (b->pos >= size)
				b->pos -= size;
			probes++;
			/* A full cycle without a free slot would mean the table is full. */
			assert(probes < size);
		}
		table[b->pos] = b->index;
		b->pos += b->skip;
		if (b->pos >= size)
			b->pos -= size;
	}
}

/* Copy <from> into the table lookups read, one atomic 16-bit store per slot. */
static void
publish(struct qd_maglev *m, const uint16_t *from)
{
	for (uint32_t i = 0; i < m->size; i++)
		__atomic_store_n(&m->slots[i], from[i], __ATOMIC_RELAXED);
	/* Lookups need no ordering with anything else: a slot holds a backend index and
	 * nothing more. The release fence only makes the whole table visible before the
	 * caller publishes whatever it does next (e.g. "backend i is down"). */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

int
qd_maglev_build(struct qd_maglev *m, const uint64_t *backend_keys, const uint16_t *weights,
		uint64_t usable_mask, unsigned int n)
{
	if (m->slots == NULL || m->scratch == NULL || m->size < 2)
		return -EINVAL;
	if (n > QD_MAGLEV_BACKENDS_MAX)
		return -EINVAL;
	struct turn_state t[QD_MAGLEV_BACKENDS_MAX];
	unsigned int count = 0;
	int64_t total = 0;
	for (unsigned int i = 0; i < n; i++) {
		uint16_t w = weights == NULL ? 1 : weights[i];
		if ((usable_mask >> i & 1) == 0 || w == 0)
			continue;
		t[count] = (struct turn_state){
			.pos = (uint32_t)(key_hash(&offset_key, backend_keys[i]) % m->size),
			.skip = (uint32_t)(key_hash(&skip_key, backend_keys[i]) % (m->size - 1)) + 1,
			.credit = 0,
			.weight = w,
			.index = (uint16_t)i,
		};
		total += w;
		count++;
	}
	if (count == 0) {
		memset(m->scratch, 0xff, sizeof(*m->scratch) * m->size);
		publish(m, m->scratch);
		return -ENOENT;
	}
	fill(m->scratch, m->size, t, count, total);
	publish(m, m->scratch);
	m->builds++;
	return 0;
}
