/* Maglev consistent hashing (lib/maglev.c): sizes refused, balance with equal weights and
 * with weights 1:2:3, the disruption when one of N backends goes (only its ~1/N of the
 * flows move; >= 95% of the others stay), its flows coming back with it, and "nothing
 * usable" -> -ENOENT. Flows are 100,000 client addresses hashed as the dispatcher would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maglev.h"

#define FLOWS 100000u

static uint64_t flow_hashes[FLOWS];

static int
setup_flows(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < FLOWS; i++) {
		uint32_t ip_be = __builtin_bswap32(0x0a000000u + i); /* 10.0.0.0 and up */
		flow_hashes[i] = qd_maglev_flow_hash(&ip_be, sizeof(ip_be));
	}
	return 0;
}

/* Backend keys as the dispatcher makes them: IPv4 << 16 | port, 10.213.1.(10+i):8080. */
static void
make_keys(uint64_t *keys, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		keys[i] = (uint64_t)(0x0ad5010au + i) << 16 | 8080;
}

static uint64_t
mask_of(unsigned int n)
{
	return n == 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
}

static void
count_slots(const struct qd_maglev *m, unsigned int *counts, unsigned int n)
{
	memset(counts, 0, sizeof(*counts) * n);
	for (uint32_t s = 0; s < m->size; s++) {
		assert_true(m->slots[s] < n);
		counts[m->slots[s]]++;
	}
}

static void
count_flows(const struct qd_maglev *m, unsigned int *counts, unsigned int n, uint16_t *owner)
{
	memset(counts, 0, sizeof(*counts) * n);
	for (uint32_t i = 0; i < FLOWS; i++) {
		uint16_t b = qd_maglev_lookup(m, flow_hashes[i]);
		assert_true(b < n);
		counts[b]++;
		if (owner != NULL)
			owner[i] = b;
	}
}

static void
test_sizes(void **state)
{
	(void)state;
	struct qd_maglev m;
	static const uint32_t bad[] = {0, 1, 4, 9, 100, 1001, 65536, 65535, 4294967291u};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(qd_maglev_init(&m, bad[i]), -EINVAL);
		assert_null(m.slots);
		qd_maglev_free(&m); /* harmless after a refusal */
	}
	static const uint32_t good[] = {2, 3, 1009, 65537, QD_MAGLEV_SIZE_MAX};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(qd_maglev_init(&m, good[i]), 0);
		assert_int_equal(m.size, good[i]);
		/* Never built: nobody to send to. */
		assert_int_equal(qd_maglev_lookup(&m, 0), QD_MAGLEV_NONE);
		assert_int_equal(qd_maglev_lookup(&m, UINT64_MAX), QD_MAGLEV_NONE);
		qd_maglev_free(&m);
		qd_maglev_free(&m);
	}
}

/* Equal weights: every backend owns M/N slots give or take one, and its share of the
 * flows is within 5% of 1/N, or 4 standard deviations of the sampling noise when that is
 * more (1% at 10,000 flows per backend, 2.5% at 1,560). */
static void
check_equal_balance(uint32_t size, unsigned int n)
{
	struct qd_maglev m;
	uint64_t keys[QD_MAGLEV_BACKENDS_MAX];
	unsigned int counts[QD_MAGLEV_BACKENDS_MAX];
	make_keys(keys, n);
	assert_int_equal(qd_maglev_init(&m, size), 0);
	assert_int_equal(qd_maglev_build(&m, keys, NULL, mask_of(n), n), 0);
	count_slots(&m, counts, n);
	for (unsigned int i = 0; i < n; i++) {
		assert_true(counts[i] >= size / n);
		assert_true(counts[i] <= size / n + 1);
	}
	count_flows(&m, counts, n, NULL);
	double want = (double)FLOWS / n;
	double tolerance = 4 / sqrt(want) > 0.05 ? 4 / sqrt(want) : 0.05;
	for (unsigned int i = 0; i < n; i++) {
		double dev = (counts[i] - want) / want;
		if (dev > tolerance || dev < -tolerance)
			fail_msg("M=%u N=%u: backend %u has %u flows, want ~%.0f", size, n, i,
				 counts[i], want);
	}
	qd_maglev_free(&m);
}

static void
test_balance_equal(void **state)
{
	(void)state;
	check_equal_balance(65537, 3);
	check_equal_balance(65537, 10);
	check_equal_balance(1009, 10); /* M just over 100 N */
	check_equal_balance(6421, 64); /* 64 backends, ~1,560 flows each: +-5% is ~2 sigma */
}

/* Weights 1:2:3: slot counts M*w/6 give or take one, flow shares within 3% of that. */
static void
test_balance_weighted(void **state)
{
	(void)state;
	struct qd_maglev m;
	uint64_t keys[3];
	static const uint16_t weights[3] = {1, 2, 3};
	unsigned int counts[3];
	make_keys(keys, 3);
	assert_int_equal(qd_maglev_init(&m, 65537), 0);
	assert_int_equal(qd_maglev_build(&m, keys, weights, 0x7, 3), 0);
	count_slots(&m, counts, 3);
	for (unsigned int i = 0; i < 3; i++) {
		double want = 65537.0 * weights[i] / 6;
		assert_true(counts[i] >= (unsigned int)want - 1 && counts[i] <= (unsigned int)want + 1);
	}
	count_flows(&m, counts, 3, NULL);
	for (unsigned int i = 0; i < 3; i++) {
		double want = (double)FLOWS * weights[i] / 6;
		double dev = (counts[i] - want) / want;
		if (dev > 0.03 || dev < -0.03)
			fail_msg("weight %u: %u flows, want ~%.0f", weights[i], counts[i], want);
	}
	/* Weight 0 is "takes no turns": the same as not usable. */
	static const uint16_t w0[3] = {0, 2, 3};
	assert_int_equal(qd_maglev_build(&m, keys, w0, 0x7, 3), 0);
	count_slots(&m, counts, 3);
	assert_int_equal(counts[0], 0);
	assert_true(counts[1] + counts[2] == 65537);
	qd_maglev_free(&m);
}

/* Remove backend <gone> of <n>: the flows it had move (~1/N of all), >= 95% of the others
 * stay where they were; put it back: every flow is where it was at first. */
static void
check_disruption(uint32_t size, unsigned int n, unsigned int gone)
{
	struct qd_maglev m;
	uint64_t keys[QD_MAGLEV_BACKENDS_MAX];
	unsigned int counts[QD_MAGLEV_BACKENDS_MAX];
	uint16_t *before = malloc(sizeof(*before) * FLOWS);
	uint16_t *after = malloc(sizeof(*after) * FLOWS);
	assert_non_null(before);
	assert_non_null(after);
	make_keys(keys, n);
	assert_int_equal(qd_maglev_init(&m, size), 0);
	assert_int_equal(qd_maglev_build(&m, keys, NULL, mask_of(n), n), 0);
	count_flows(&m, counts, n, before);

	assert_int_equal(qd_maglev_build(&m, keys, NULL, mask_of(n) & ~(UINT64_C(1) << gone), n),
			 0);
	count_flows(&m, counts, n, after);
	assert_int_equal(counts[gone], 0);
	unsigned int on_gone = 0, survivors = 0, survivors_moved = 0;
	for (uint32_t i = 0; i < FLOWS; i++) {
		if (before[i] == gone) {
			on_gone++;
			continue;
		}
		survivors++;
		survivors_moved += after[i] != before[i];
	}
	unsigned int moved = on_gone + survivors_moved;
	double moved_frac = (double)moved / FLOWS;
	double stayed_frac = 1.0 - (double)survivors_moved / survivors;
	print_message("M=%u N=%u: %.2f%% of the flows moved (1/N = %.2f%%), %.2f%% of the "
		      "survivors' flows stayed\n",
		      size, n, 100 * moved_frac, 100.0 / n, 100 * stayed_frac);
	if (stayed_frac < 0.95)
		fail_msg("only %.2f%% of the survivors' flows stayed", 100 * stayed_frac);
	/* ~1/N: the gone backend's flows plus the few survivors' flows that moved. */
	if (moved_frac > 1.5 / n)
		fail_msg("%.2f%% of the flows moved, 1/N is %.2f%%", 100 * moved_frac, 100.0 / n);

	/* Back again: the same keys and weights make the same table, so every flow returns. */
	assert_int_equal(qd_maglev_build(&m, keys, NULL, mask_of(n), n), 0);
	count_flows(&m, counts, n, after);
	assert_memory_equal(before, after, sizeof(*before) * FLOWS);

	qd_maglev_free(&m);
	free(before);
	free(after);
}

static void
test_disruption(void **state)
{
	(void)state;
	check_disruption(65537, 3, 1);
	check_disruption(65537, 10, 4);
	check_disruption(1009, 10, 0);
	check_disruption(65537, 64, 63);
}

static void
test_nothing_usable(void **state)
{
	(void)state;
	struct qd_maglev m;
	uint64_t keys[4];
	static const uint16_t zero[4] = {0, 0, 0, 0};
	make_keys(keys, 4);
	assert_int_equal(qd_maglev_init(&m, 1009), 0);
	assert_int_equal(qd_maglev_build(&m, keys, NULL, 0xf, 4), 0);
	assert_int_equal(qd_maglev_build(&m, keys, NULL, 0, 4), -ENOENT);
	/* Nothing left to send to, not a stale answer. */
	for (uint32_t i = 0; i < 1000; i++)
		assert_int_equal(qd_maglev_lookup(&m, flow_hashes[i]), QD_MAGLEV_NONE);
	assert_int_equal(qd_maglev_build(&m, keys, zero, 0xf, 4), -ENOENT);
	assert_int_equal(qd_maglev_build(&m, keys, NULL, 0xf0, 4), -ENOENT); /* bits past n */
	assert_int_equal(qd_maglev_build(&m, keys, NULL, 0xf, 0), -ENOENT);
	assert_int_equal(qd_maglev_build(&m, keys, NULL, 0xf, QD_MAGLEV_BACKENDS_MAX + 1),
			 -EINVAL);
	/* And back to normal. */
	assert_int_equal(qd_maglev_build(&m, keys, NULL, 0x2, 4), 0);
	for (uint32_t i = 0; i < 1000; i++)
		assert_int_equal(qd_maglev_lookup(&m, flow_hashes[i]), 1);
	assert_int_equal(m.builds, 2);
	qd_maglev_free(&m);

	struct qd_maglev zeroed = {0};
	assert_int_equal(qd_maglev_build(&zeroed, keys, NULL, 0xf, 4), -EINVAL);
}

/* Peers must agree: the table depends on the keys, not on the process. A table built
 * twice from scratch is the same, and matches a digest taken from this code once, so a
 * change of hash or algorithm (which would move every client on upgrade) is noticed. */
static void
test_deterministic(void **state)
{
	(void)state;
	struct qd_maglev a, b;
	uint64_t keys[5];
	make_keys(keys, 5);
	assert_int_equal(qd_maglev_init(&a, 65537), 0);
	assert_int_equal(qd_maglev_init(&b, 65537), 0);
	assert_int_equal(qd_maglev_build(&a, keys, NULL, 0x1f, 5), 0);
	assert_int_equal(qd_maglev_build(&b, keys, NULL, 0x1b, 5), 0);
	assert_int_equal(qd_maglev_build(&b, keys, NULL, 0x1f, 5), 0);
	assert_memory_equal(a.slots, b.slots, sizeof(*a.slots) * 65537);
	uint64_t digest = 1469598103934665603ull; /* FNV-1a over the slots */
	for (uint32_t s = 0; s < a.size; s++) {
		digest ^= a.slots[s];
		digest *= 1099511628211ull;
	}
	assert_int_equal(digest, 0x6467b1e4b370d0a6ull);
	qd_maglev_free(&a);
	qd_maglev_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_balance_equal),
		cmocka_unit_test(test_balance_weighted),
		cmocka_unit_test(test_disruption),
		cmocka_unit_test(test_nothing_usable),
		cmocka_unit_test(test_deterministic),
	};
	return cmocka_run_group_tests(tests, setup_flows, NULL);
}
