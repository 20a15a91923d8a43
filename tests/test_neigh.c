/* Neighbour table and ARP resolution state machine, driven by a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "neigh.h"

static const uint8_t mac_a[6] = {2, 0, 0, 0, 0, 0xa};
static const uint8_t mac_b[6] = {2, 0, 0, 0, 0, 0xb};
static const struct qd_neigh_timing timing = {.reachable_ms = 30000, .retry_ms = 1000, .probes = 3};

static void
test_insert_lookup_remove_many(void **state)
{
	(void)state;
	struct qd_neigh_table t;
	assert_int_equal(qd_neigh_table_init(&t, 1024), 0);
	/* Fill to the load-factor limit, then one more is refused. */
	for (uint32_t i = 1; i <= 768; i++)
		assert_non_null(qd_neigh_insert(&t, htonl(0x0a000000 + i)));
	assert_int_equal(t.count, 768);
	assert_null(qd_neigh_insert(&t, htonl(0x0a100000)));
	/* Remove every third and check the rest are all still found (backward shift). */
	for (uint32_t i = 1; i <= 768; i += 3)
		assert_true(qd_neigh_remove(&t, htonl(0x0a000000 + i)));
	for (uint32_t i = 1; i <= 768; i++) {
		struct qd_neigh_entry *e = qd_neigh_lookup(&t, htonl(0x0a000000 + i));
		if ((i - 1) % 3 == 0)
			assert_null(e);
		else
			assert_non_null(e);
	}
	assert_false(qd_neigh_remove(&t, htonl(0x0a000001)));
	assert_int_equal(t.count, 512);
	qd_neigh_table_free(&t);
}

static void
test_random_against_model(void **state)
{
	(void)state;
	struct qd_neigh_table t;
	assert_int_equal(qd_neigh_table_init(&t, 64), 0);
	bool model[200] = {false};
	unsigned int present = 0;
	srand(42);
	for (int step = 0; step < 100000; step++) {
		uint32_t k = (uint32_t)(rand() % 200);
		uint32_t ipk = htonl(0xc0a80000 + k * 7 + 1);
		if (rand() % 2 == 0) {
			struct qd_neigh_entry *e = qd_neigh_insert(&t, ipk);
			if (e != NULL && !model[k]) {
				model[k] = true;
				present++;
			}
			if (e == NULL)
				assert_true(!model[k] && present == 48);
		} else {
			assert_int_equal(qd_neigh_remove(&t, ipk), model[k]);
			if (model[k])
				present--;
			model[k] = false;
		}
		assert_int_equal(t.count, present);
		uint32_t probe = (uint32_t)(rand() % 200);
		assert_int_equal(qd_neigh_lookup(&t, htonl(0xc0a80000 + probe * 7 + 1)) != NULL,
				 model[probe]);
	}
	qd_neigh_table_free(&t);
}

static void
test_resolution_lifecycle(void **state)
{
	(void)state;
	struct qd_neigh_table t;
	struct qd_neigh_action acts[8];
	const uint32_t coord = inet_addr("10.213.0.201");
	assert_int_equal(qd_neigh_table_init(&t, 64), 0);
	assert_int_equal(qd_neigh_want(&t, coord, true, 1000), 0);

	/* First probe at once, the next only after retry_ms. */
	assert_int_equal(qd_neigh_tick(&t, &timing, 1000, acts, 8), 1);
	assert_int_equal(acts[0].type, QD_NEIGH_ACT_PROBE);
	assert_int_equal(acts[0].ip_be, coord);
	assert_int_equal(qd_neigh_tick(&t, &timing, 1500, acts, 8), 0);
	assert_int_equal(qd_neigh_tick(&t, &timing, 2000, acts, 8), 1);

	/* The answer makes it reachable and marks it for replicas. */
	assert_true(qd_neigh_learn(&t, coord, mac_a, false, 2100));
	struct qd_neigh_entry *e = qd_neigh_lookup(&t, coord);
	assert_int_equal(e->state, QD_NEIGH_REACHABLE);
	assert_true(e->dirty);
	e->dirty = false;
	/* Hearing the same again is no news. */
	assert_false(qd_neigh_learn(&t, coord, mac_a, false, 2200));
	assert_false(e->dirty);

	/* After reachable_ms: stale (still usable) and probed again. */
	assert_int_equal(qd_neigh_tick(&t, &timing, 2200 + 29999, acts, 8), 0);
	assert_int_equal(qd_neigh_tick(&t, &timing, 2200 + 30000, acts, 8), 1);
	assert_int_equal(e->state, QD_NEIGH_STALE);
	assert_true(qd_neigh_state_usable(e->state));
	/* A MAC change (failover of the host) is news. */
	assert_true(qd_neigh_learn(&t, coord, mac_b, false, 33000));
	assert_memory_equal(e->mac, mac_b, 6);

	/* Unanswered probes: failed after <probes> tries, then asked for again later. */
	uint64_t now = 33000 + 30000;
	unsigned int probes = 0;
	for (int i = 0; i < 10; i++, now += 1000)
		probes += qd_neigh_tick(&t, &timing, now, acts, 8);
	assert_int_equal(probes, 3);
	assert_int_equal(e->state, QD_NEIGH_FAILED);
	assert_false(qd_neigh_state_usable(e->state));
	assert_int_equal(qd_neigh_tick(&t, &timing, now + 30000, acts, 8), 1);
	assert_int_equal(e->state, QD_NEIGH_INCOMPLETE);
	qd_neigh_table_free(&t);
}

static void
test_learning_rules(void **state)
{
	(void)state;
	struct qd_neigh_table t;
	struct qd_neigh_action acts[4];
	assert_int_equal(qd_neigh_table_init(&t, 64), 0);
	const uint32_t client = inet_addr("10.213.0.2");
	/* Not addressed to us and unknown: not created. */
	assert_false(qd_neigh_learn(&t, client, mac_a, false, 0));
	assert_null(qd_neigh_lookup(&t, client));
	/* Addressed to us: created. */
	assert_true(qd_neigh_learn(&t, client, mac_a, true, 0));
	/* Multicast or zero MACs and address 0 are never learned. */
	const uint8_t mcast[6] = {1, 0, 0x5e, 0, 0, 1}, zero[6] = {0};
	assert_false(qd_neigh_learn(&t, inet_addr("10.213.0.3"), mcast, true, 0));
	assert_false(qd_neigh_learn(&t, inet_addr("10.213.0.3"), zero, true, 0));
	assert_false(qd_neigh_learn(&t, 0, mac_a, true, 0));
	assert_int_equal(t.count, 1);
	/* An unpinned entry that fails is forgotten once replicas were told. */
	struct qd_neigh_entry *e = qd_neigh_lookup(&t, client);
	e->dirty = false;
	uint64_t now = 30000;
	for (int i = 0; i < 6; i++, now += 1000)
		qd_neigh_tick(&t, &timing, now, acts, 4);
	e = qd_neigh_lookup(&t, client);
	assert_non_null(e);
	assert_int_equal(e->state, QD_NEIGH_FAILED);
	e->dirty = false; /* published */
	qd_neigh_tick(&t, &timing, now, acts, 4);
	assert_null(qd_neigh_lookup(&t, client));
	assert_int_equal(t.count, 0);
	qd_neigh_table_free(&t);
}

static void
test_tick_action_bound(void **state)
{
	(void)state;
	struct qd_neigh_table t;
	struct qd_neigh_action acts[4];
	assert_int_equal(qd_neigh_table_init(&t, 64), 0);
	for (uint32_t i = 1; i <= 10; i++)
		assert_int_equal(qd_neigh_want(&t, htonl(0x0a000000 + i), true, 0), 0);
	/* Only four fit; the rest are not lost, they go out on the next ticks. */
	assert_int_equal(qd_neigh_tick(&t, &timing, 0, acts, 4), 4);
	assert_int_equal(qd_neigh_tick(&t, &timing, 0, acts, 4), 4);
	assert_int_equal(qd_neigh_tick(&t, &timing, 0, acts, 4), 2);
	assert_int_equal(qd_neigh_tick(&t, &timing, 0, acts, 4), 0);
	assert_int_equal(qd_neigh_table_init(&t, 100), -EINVAL);
	qd_neigh_table_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_lookup_remove_many),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_resolution_lifecycle),
		cmocka_unit_test(test_learning_rules),
		cmocka_unit_test(test_tick_action_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
