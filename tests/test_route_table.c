/* The query route table: single-threaded semantics (insert, lookup, exactly-once remove,
 * full table, idle sweep), then concurrency on three EAL lcores mapped onto the machine's
 * cores: two writers insert and remove their own ids while every lcore looks up ids of
 * the others; a reader must never see an entry for another id (an index reused while it
 * was read), each route ends exactly once, and at the end every index is back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>

#include "route_table.h"

static struct qd_route_table *
make(uint32_t cap, uint32_t threads)
{
	static unsigned int n;
	char name[32];
	snprintf(name, sizeof(name), "rt%u", n++);
	struct qd_route_table *t = qd_route_table_create(name, cap, threads, SOCKET_ID_ANY);
	assert_non_null(t);
	return t;
}

static void
id_of(char *buf, size_t len, unsigned int owner, unsigned int i)
{
	snprintf(buf, len, "20261125_%06u_%05u_w%04u", i / 100000, i % 100000, owner);
}

static void
count_end(void *ctx, const struct qd_route_entry *e, bool dead)
{
	assert_true(dead);
	assert_int_equal(e->group, 7);
	assert_int_equal(e->mem, 1000);
	(*(unsigned int *)ctx)++;
}

static void
test_basic(void **state)
{
	(void)state;
	struct qd_route_table *t = make(128, 1);
	assert_int_equal(qd_route_thread_register(t, 0), 0);
	const char *id = "20261125_190649_00001_abcde";
	assert_int_equal(qd_route_lookup(t, id, strlen(id), 1), -ENOENT);
	assert_int_equal(qd_route_insert(t, id, strlen(id), 2, 0, 1), 0);
	assert_int_equal(qd_route_insert(t, id, strlen(id), 1, 0, 1), -EEXIST);
	assert_int_equal(qd_route_lookup(t, id, strlen(id), 2), 2);
	/* a prefix or an extension is another id */
	assert_int_equal(qd_route_lookup(t, id, strlen(id) - 1, 2), -ENOENT);
	assert_int_equal(qd_route_count(t), 1);
	assert_int_equal(qd_route_remove(t, id, strlen(id)), 0);
	assert_int_equal(qd_route_remove(t, id, strlen(id)), -ENOENT);
	assert_int_equal(qd_route_lookup(t, id, strlen(id), 3), -ENOENT);
	/* bad ids */
	assert_int_equal(qd_route_insert(t, "", 0, 0, 0, 1), -EINVAL);
	char longid[64];
	memset(longid, 'a', sizeof(longid));
	assert_int_equal(qd_route_insert(t, longid, QD_TRINO_ID_MAX + 1, 0, 0, 1), -EINVAL);
	assert_int_equal(qd_route_insert(t, longid, QD_TRINO_ID_MAX, 0, 0, 1), 0);
	assert_int_equal(qd_route_lookup(t, longid, QD_TRINO_ID_MAX, 1), 0);
	qd_route_thread_unregister(t, 0);
	qd_route_table_destroy(t);
}

static void
test_full_and_reuse(void **state)
{
	(void)state;
	struct qd_route_table *t = make(64, 1);
	assert_int_equal(qd_route_thread_register(t, 0), 0);
	char id[48];
	for (unsigned int i = 0; i < 64; i++) {
		id_of(id, sizeof(id), 0, i);
		assert_int_equal(qd_route_insert(t, id, strlen(id), (uint16_t)(i % 7), 0, 1), 0);
	}
	id_of(id, sizeof(id), 0, 64);
	assert_int_equal(qd_route_insert(t, id, strlen(id), 0, 0, 1), -ENOSPC);
	/* Free them all; after a quiescent state the indexes come back. */
	for (unsigned int round = 0; round < 3; round++) {
		for (unsigned int i = 0; i < 64; i++) {
			id_of(id, sizeof(id), round, i);
			assert_int_equal(qd_route_lookup(t, id, strlen(id), 1), (int)(i % 7));
			assert_int_equal(qd_route_remove(t, id, strlen(id)), 0);
		}
		qd_route_quiescent(t, 0);
		for (unsigned int i = 0; i < 64; i++) {
			id_of(id, sizeof(id), round + 1, i);
			int rc = qd_route_insert(t, id, strlen(id), (uint16_t)(i % 7), 0, 1);
			if (rc != 0)
				fail_msg("round %u: insert %u after the table emptied: %d", round, i, rc);
		}
	}
	qd_route_thread_unregister(t, 0);
	qd_route_table_destroy(t);
}

static void
test_sweep(void **state)
{
	(void)state;
	struct qd_route_table *t = make(256, 2);
	assert_int_equal(qd_route_thread_register(t, 0), 0);
	char id[48];
	for (unsigned int i = 0; i < 100; i++) {
		id_of(id, sizeof(id), 1, i);
		assert_int_equal(qd_route_insert_adm(t, id, strlen(id), 0, 0, 1000, 7, 1000), 0);
	}
	/* Used later: half of them stay fresh. */
	for (unsigned int i = 0; i < 100; i += 2) {
		id_of(id, sizeof(id), 1, i);
		assert_int_equal(qd_route_lookup(t, id, strlen(id), 5000000), 0);
	}
	/* Two stripes swept in full: the unused half is gone, nothing twice. */
	uint32_t removed = 0, dead = 0, c0 = 0, c1 = 1;
	/* Enough calls for both stripes to cover every position once. */
	uint32_t calls = t->positions / (2 * 64) + 1;
	for (uint32_t k = 0; k < calls; k++) {
		removed += qd_route_sweep(t, 0, 2, &c0, 64, 5500000, 1000000, 0, 0, &dead, NULL, NULL);
		removed += qd_route_sweep(t, 1, 2, &c1, 64, 5500000, 1000000, 0, 0, &dead, NULL, NULL);
	}
	assert_int_equal(removed, 50);
	assert_int_equal(dead, 0);
	assert_int_equal(qd_route_count(t), 50);
	for (unsigned int i = 0; i < 100; i++) {
		id_of(id, sizeof(id), 1, i);
		assert_int_equal(qd_route_lookup(t, id, strlen(id), 5500000) >= 0, i % 2 == 0);
	}
	/* A dead coordinator's routes end at once, counted apart, each reported once to the
	 * callback (which gives admission slots back); they linger for their clients' polls. */
	removed = 0;
	unsigned int reported = 0;
	for (uint32_t k = 0; k < calls; k++) {
		removed += qd_route_sweep(t, 0, 2, &c0, 64, 5500001, 1000000, 0, 1, &dead,
					  count_end, &reported);
		removed += qd_route_sweep(t, 1, 2, &c1, 64, 5500001, 1000000, 0, 1, &dead,
					  count_end, &reported);
	}
	assert_int_equal(removed, 0);
	assert_int_equal(dead, 50);
	assert_int_equal(reported, 50);
	assert_int_equal(qd_route_count(t), 50);
	assert_int_equal(qd_route_ended_count(t), 50);
	/* after the linger time they go */
	for (uint32_t k = 0; k < calls; k++) {
		qd_route_sweep(t, 0, 2, &c0, 64, 5500003, 1000000, 1, 1, &dead, count_end, &reported);
		qd_route_sweep(t, 1, 2, &c1, 64, 5500003, 1000000, 1, 1, &dead, count_end, &reported);
	}
	assert_int_equal(reported, 50);
	assert_int_equal(qd_route_count(t), 0);
	qd_route_thread_unregister(t, 0);
	qd_route_table_destroy(t);
}

static void
test_end_linger(void **state)
{
	(void)state;
	struct qd_route_table *t = make(64, 1);
	assert_int_equal(qd_route_thread_register(t, 0), 0);
	const char *id = "20261125_190649_00002_abcde";
	assert_int_equal(qd_route_end(t, id, strlen(id), 10), -ENOENT);
	assert_int_equal(qd_route_insert(t, id, strlen(id), 3, 0, 1), 0);
	assert_int_equal(qd_route_end(t, id, strlen(id), 10), 0);
	assert_int_equal(qd_route_end(t, id, strlen(id), 11), -EALREADY); /* counted once */
	/* still routed while it lingers */
	assert_int_equal(qd_route_lookup(t, id, strlen(id), 12), 3);
	assert_int_equal(qd_route_count(t), 1);
	assert_int_equal(qd_route_ended_count(t), 1);
	uint32_t cursor = 0, dead = 0, calls = t->positions / 64 + 1;
	uint32_t idle = 0;
	for (uint32_t k = 0; k < calls; k++) /* linger 1 s not over at 0.5 s */
		idle += qd_route_sweep(t, 0, 1, &cursor, 64, 500010, 1000000000, 1000000, 0, &dead, NULL, NULL);
	assert_int_equal(qd_route_count(t), 1);
	for (uint32_t k = 0; k < calls; k++) /* over: removed, not counted as idle */
		idle += qd_route_sweep(t, 0, 1, &cursor, 64, 1000011, 1000000000, 1000000, 0, &dead, NULL, NULL);
	assert_int_equal(idle, 0);
	assert_int_equal(qd_route_count(t), 0);
	assert_int_equal(qd_route_ended_count(t), 0);
	assert_int_equal(qd_route_lookup(t, id, strlen(id), 2000000), -ENOENT);
	qd_route_thread_unregister(t, 0);
	qd_route_table_destroy(t);
}

/* ---- concurrency ---------------------------------------------------------- */

#define CONC_CAP 4096
#define CONC_ROUNDS 200000

struct conc {
	struct qd_route_table *t;
	unsigned int thread;
	unsigned int threads;
	bool writer;
	uint64_t inserts, removes, lookups, hits, wrong, insert_fail;
	volatile bool *go;
};

static int
conc_main(void *arg)
{
	struct conc *c = arg;
	struct qd_route_table *t = c->t;
	if (qd_route_thread_register(t, c->thread) != 0)
		return -1;
	while (!__atomic_load_n(c->go, __ATOMIC_ACQUIRE))
		;
	char id[48], other[48];
	unsigned int seed = 1234 + c->thread;
	unsigned int live_lo = 0, live_hi = 0; /* this writer's ids [lo, hi) are inserted */
	for (unsigned int r = 0; r < CONC_ROUNDS; r++) {
		if (c->writer) {
			if (live_hi - live_lo < CONC_CAP / 4 && (rand_r(&seed) & 1)) {
				id_of(id, sizeof(id), c->thread, live_hi);
				int rc = qd_route_insert(t, id, strlen(id),
							 (uint16_t)(live_hi % 50), (uint16_t)c->thread,
							 r);
				if (rc == 0) {
					live_hi++;
					c->inserts++;
				} else {
					c->insert_fail++;
				}
			} else if (live_hi > live_lo) {
				id_of(id, sizeof(id), c->thread, live_lo);
				if (qd_route_remove(t, id, strlen(id)) == 0)
					c->removes++;
				live_lo++;
			}
		}
		/* Look up a recent id of another writer: its coordinator must be the one
		 * that id was inserted with, or the id must be absent. */
		unsigned int w = (c->thread + 1) % c->threads;
		unsigned int i = (unsigned int)rand_r(&seed) % (r + 1);
		id_of(other, sizeof(other), w, i % (CONC_CAP * 8));
		int coord = qd_route_lookup(t, other, strlen(other), r);
		c->lookups++;
		if (coord >= 0) {
			c->hits++;
			if ((unsigned int)coord != (i % (CONC_CAP * 8)) % 50)
				c->wrong++;
		}
		qd_route_quiescent(t, c->thread);
	}
	/* Drain what is left. */
	while (c->writer && live_lo < live_hi) {
		id_of(id, sizeof(id), c->thread, live_lo++);
		if (qd_route_remove(t, id, strlen(id)) == 0)
			c->removes++;
	}
	qd_route_thread_unregister(t, c->thread);
	return 0;
}

static void
test_concurrent(void **state)
{
	(void)state;
	unsigned int workers = rte_lcore_count() - 1;
	if (workers < 2)
		skip();
	unsigned int threads = workers + 1;
	struct qd_route_table *t = make(CONC_CAP, threads);
	struct conc c[RTE_MAX_LCORE];
	volatile bool go = false;
	memset(c, 0, sizeof(c));
	unsigned int k = 0, lcore;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		c[k] = (struct conc){.t = t, .thread = k, .threads = threads, .writer = k < 2,
				     .go = &go};
		assert_int_equal(rte_eal_remote_launch(conc_main, &c[k], lcore), 0);
		k++;
	}
	/* The main lcore reads too. */
	c[k] = (struct conc){.t = t, .thread = k, .threads = threads, .writer = false, .go = &go};
	__atomic_store_n(&go, true, __ATOMIC_RELEASE);
	assert_int_equal(conc_main(&c[k]), 0);
	rte_eal_mp_wait_lcore();
	uint64_t inserts = 0, removes = 0, hits = 0, wrong = 0, lookups = 0;
	for (unsigned int i = 0; i <= k; i++) {
		inserts += c[i].inserts;
		removes += c[i].removes;
		hits += c[i].hits;
		wrong += c[i].wrong;
		lookups += c[i].lookups;
	}
	printf("# %u threads: %" PRIu64 " inserts, %" PRIu64 " removes, %" PRIu64 " lookups, %" PRIu64
	       " hits, %" PRIu64 " wrong\n",
	       threads, inserts, removes, lookups, hits, wrong);
	assert_true(inserts > 1000);
	assert_true(hits > 100); /* the readers did see live routes */
	assert_int_equal(wrong, 0);
	assert_int_equal(inserts, removes); /* each ended exactly once */
	assert_int_equal(qd_route_count(t), 0);
	/* Every index is back: the table takes its full capacity again. */
	assert_int_equal(qd_route_thread_register(t, 0), 0);
	char id[48];
	for (unsigned int i = 0; i < CONC_CAP; i++) {
		id_of(id, sizeof(id), 99, i);
		int rc = qd_route_insert(t, id, strlen(id), 0, 0, 1);
		if (rc != 0)
			fail_msg("insert %u of %u after the run: %d", i, CONC_CAP, rc);
		if ((i & 63) == 0)
			qd_route_quiescent(t, 0);
	}
	qd_route_thread_unregister(t, 0);
	qd_route_table_destroy(t);
}

int
main(int argc, char **argv)
{
	(void)argc;
	/* Three lcores on however many cores there are (at least one): lock-free code must
	 * also be right when its threads are preempted. */
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
			    "--no-telemetry", "--lcores", "0@0,1@(0-1),2@(0-1)",
			    "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0) {
		char *fallback[] = {argv[0], "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
				    "--no-telemetry", "--lcores", "0@0,1@0,2@0", "--log-level=error",
				    NULL};
		if (rte_eal_init(10, fallback) < 0) {
			fprintf(stderr, "EAL init failed\n");
			return 1;
		}
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_full_and_reuse),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_end_linger),
		cmocka_unit_test(test_concurrent),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rte_eal_cleanup();
	return rc;
}
