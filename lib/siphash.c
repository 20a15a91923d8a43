/*
 * SipHash-2-4 over a byte string (see siphash.h), written from the paper's
 * description: 2 compression rounds per 8-byte word, 4 finalisation rounds.
 */
#include "siphash.h"

#include <string.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND(v0, v1, v2, v3)                                                          \
	do {                                                                              \
		v0 += v1;                                                                 \
		v1 = ROTL(v1, 13);                                                        \
		v1 ^= v0;                                                                 \
		v0 = ROTL(v0, 32);                                                        \
		v2 += v3;                                                                 \
		v3 = ROTL(v3, 16);                                                        \
		v3 ^= v2;                                                                 \
		v0 += v3;                                                                 \
		v3 = ROTL(v3, 21);                                                        \
		v3 ^= v0;                                                                 \
		v2 += v1;                                                                 \
		v1 = ROTL(v1, 17);                                                        \
		v1 ^= v2;                                                                 \
		v2 = ROTL(v2, 32);                                                        \
	} while (0)

static uint64_t
load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t
qd_siphash(const struct qd_siphash_key *key, const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t v0 = 0x736f6d6570736575ULL ^ key->k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ key->k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ key->k0;
	uint64_t v3 = 0x7465646279746573ULL ^ key->k1;
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = load_le64(in + i);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	uint8_t tail[8] = {0};
	memcpy(tail, in + full, len - full);
	uint64_t b = ((uint64_t)len << 56) | load_le64(tail);
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}
