/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed pseudo-random function
 * for short inputs. qdispatch uses it where RFC 6528 (initial sequence
 * numbers) and RFC 4987 (SYN cookies) ask for a keyed hash an attacker cannot
 * predict; a 128-bit secret is drawn from getrandom() at start-up.
 */
#ifndef QD_SIPHASH_H
#define QD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct qd_siphash_key {
	uint64_t k0;
	uint64_t k1;
};

uint64_t qd_siphash(const struct qd_siphash_key *key, const void *data, size_t len);

#endif /* QD_SIPHASH_H */
