/*
 * Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
 * Software Network Load Balancer", NSDI 2016, section 3.4): the lookup table
 * behind `placement.policy = client_ip`. A client address hashes to one slot
 * of a fixed-size table, and the slot names a coordinator, so a client keeps
 * reaching the same coordinator (what nginx's ip_hash gives), while a
 * coordinator that goes down moves only its own clients: about 1/N of them,
 * spread over the survivors, not a reshuffle of everyone.
 *
 * How the table is filled (qd_maglev_build):
 *   - Every backend has a permutation of the M slots, from two hashes of its
 *     stable key (address and port, not its index, so the permutation does
 *     not change when another backend comes or goes):
 *         offset = h1(key) mod M,  skip = h2(key) mod (M - 1) + 1,
 *         permutation[j] = (offset + j * skip) mod M.
 *     M is prime, so every skip in 1..M-1 visits every slot exactly once.
 *     h1 and h2 are SipHash-2-4 under two fixed keys: every dispatcher (and
 *     every restart) computes the same table from the same backends (same
 *     keys, weights and order in the arrays), which is what lets active-active
 *     peers send a client to the same coordinator.
 *   - Usable backends then take turns; in its turn a backend claims the first
 *     still-empty slot of its permutation. Turns go on until the table is
 *     full: exactly M turns, so each backend owns exactly as many slots as it
 *     had turns.
 *   - Weights (the part the paper leaves open): the turn order is smooth
 *     weighted round robin (the scheme of nginx's upstream module): before
 *     each turn every backend's credit grows by its weight, the backend with
 *     the most credit (lowest index on a tie) takes the turn and pays the sum
 *     of the weights. Over every W = sum(weights) turns a backend takes
 *     exactly weight turns, interleaved rather than in a block, and after any
 *     number of turns it is within one turn of its exact share, so its slot
 *     count is M * weight / W rounded one way or the other. With equal
 *     weights this is plain round robin, the paper's algorithm. A backend
 *     whose share is below one slot (M * weight / W < 1) may get none.
 *
 * Disruption, measured by tests/test_maglev.c over 100,000 client addresses:
 * with M = 65537, taking one of 10 backends out moves 10.3% of the flows (its
 * own 10% and 0.3% of the others'); one of 64 moves 2.0% (1.6% + 0.5%); at
 * M = 1009 (just over 100 N) one of 10 moves 13% (3.5% of the others'). Putting
 * the backend back restores the previous table exactly.
 *
 * Cost: a build is O(M * n) at worst (each backend's cursor walks its own
 * permutation at most once, and each turn picks among n credits) and
 * allocates nothing; a lookup is a multiply and one load. Builds run on the
 * control plane (health changes); lookups may run on any lcore at the same
 * time: the new table is made in a scratch copy and then published slot by
 * slot with atomic 16-bit stores, so a concurrent lookup sees, per slot,
 * the old owner or the new one, never a torn or empty value. Two builds must
 * not run at once (the caller serialises them).
 *
 * Choosing M: at least 100 times the largest number of backends, and fixed
 * for the life of the table (a different M is a different table: everything
 * moves). QD_MAGLEV_SIZE_DEFAULT (65537, the paper's) fits 64 backends with
 * a maximum imbalance of about 1% and costs 2 x 128 KiB.
 */
#ifndef QD_MAGLEV_H
#define QD_MAGLEV_H

#include <stddef.h>
#include <stdint.h>

#define QD_MAGLEV_BACKENDS_MAX 64       /* one bit each in usable_mask */
#define QD_MAGLEV_SIZE_MAX 16777213u    /* largest prime below 2^24: 32 MiB of tables */
#define QD_MAGLEV_SIZE_DEFAULT 65537u
#define QD_MAGLEV_NONE UINT16_MAX       /* lookup: no usable backend (or never built) */

struct qd_maglev {
	uint32_t size;      /* M, prime */
	uint16_t *slots;    /* M backend indexes, read by lookups (atomic 16-bit) */
	uint16_t *scratch;  /* M, the build's work area */
	uint64_t builds;    /* successful builds, for display */
};

/* Allocate a table of <size_prime> slots, every one QD_MAGLEV_NONE. 0, -EINVAL when
 * <size_prime> is not a prime in 2..QD_MAGLEV_SIZE_MAX, -ENOMEM. */
int qd_maglev_init(struct qd_maglev *m, uint32_t size_prime);
/* Free the tables; <m> may then be initialised again. Safe on a zeroed or freed <m>. */
void qd_maglev_free(struct qd_maglev *m);

/* Fill the table from <n> (<= QD_MAGLEV_BACKENDS_MAX) backends. Backend i has the stable
 * key <backend_keys>[i] (e.g. IPv4 << 16 | port; keys should differ, equal keys get equal
 * permutations) and weight <weights>[i] (NULL: all 1); it takes part when bit i of
 * <usable_mask> is set and its weight is not 0. Lookups then return indexes i < n.
 * 0; -ENOENT when no backend takes part (every slot is then QD_MAGLEV_NONE, so lookups
 * say so); -EINVAL for n > QD_MAGLEV_BACKENDS_MAX or an uninitialised <m>. */
int qd_maglev_build(struct qd_maglev *m, const uint64_t *backend_keys, const uint16_t *weights,
		    uint64_t usable_mask, unsigned int n);

/* The backend index for <flow_hash>, or QD_MAGLEV_NONE. The slot is chosen from the high
 * bits of <flow_hash> (Lemire's multiply-shift range reduction, no division), so it must be
 * a well-mixed 64-bit hash: qd_maglev_flow_hash() of the client address, for example. */
static inline uint16_t
qd_maglev_lookup(const struct qd_maglev *m, uint64_t flow_hash)
{
	uint32_t slot = (uint32_t)(((unsigned __int128)flow_hash * m->size) >> 64);
	return __atomic_load_n(&m->slots[slot], __ATOMIC_RELAXED);
}

/* SipHash-2-4 of <len> bytes under a fixed, public key: the same on every dispatcher, so
 * peers place a client alike. Not for anything an attacker must not predict (a client can
 * choose its address no more than it can choose its coordinator under ip_hash). */
uint64_t qd_maglev_flow_hash(const void *data, size_t len);

#endif /* QD_MAGLEV_H */
