/*
 * Micro-benchmarks of the neighbour table lookup (dataplane/neigh.h), the
 * call a worker makes for the next hop of every packet it originates. Pure C,
 * no DPDK: this suite never starts EAL.
 *
 * The argument is the number of entries; the table gets the smallest
 * power-of-two capacity that holds them under the 3/4 load cap, so /768 is
 * the default neigh.capacity (1024 slots) filled to its limit and /1024 is
 * 1024 entries in 2048 slots. Addresses are consecutive host addresses of one
 * subnet (the realistic case) looked up in a shuffled order; misses are
 * addresses of another subnet. One iteration is one lookup.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>

#include "neigh.h"
#include "shim.h"

#define ENTRIES_MAX 4096

struct neigh_ctx {
	struct qd_neigh_table table;
	uint32_t count;
	uint32_t keys_be[ENTRIES_MAX];
};

static void
neigh_ctx_free(void *arg)
{
	struct neigh_ctx *c = arg;
	if (c == NULL)
		return;
	qd_neigh_table_free(&c->table);
	free(c);
}

/* Deterministic Fisher-Yates with a fixed LCG: the same order in every run. */
static void
shuffle(uint32_t *a, uint32_t n)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (uint32_t i = n - 1; i > 0; i--) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint32_t j = (uint32_t)((x >> 33) % (i + 1));
		uint32_t tmp = a[i];
		a[i] = a[j];
		a[j] = tmp;
	}
}

/* Fill 10.0.x.y (x.y = 1..n) and set keys to the hits (10.0.*) or misses (10.1.*). */
static int
setup(struct qd_bench_state *s, void **ctx, uint32_t key_net)
{
	int64_t n = qd_bench_arg(s);
	if (n < 1 || n > ENTRIES_MAX)
		return -EINVAL;
	uint32_t capacity = 16;
	while ((uint64_t)n * 4 > (uint64_t)capacity * 3)
		capacity *= 2;
	struct neigh_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	int rc = qd_neigh_table_init(&c->table, capacity);
	if (rc != 0) {
		free(c);
		return rc;
	}
	static const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x42};
	for (uint32_t i = 0; i < (uint32_t)n; i++) {
		rc = qd_neigh_replica_set(&c->table, htonl(0x0a000000u + 1 + i), mac,
					  QD_NEIGH_REACHABLE);
		if (rc != 0) {
			neigh_ctx_free(c);
			return rc;
		}
		c->keys_be[i] = htonl(key_net + 1 + i);
	}
	c->count = (uint32_t)n;
	shuffle(c->keys_be, c->count);
	*ctx = c;
	return 0;
}

static int
setup_hit(struct qd_bench_state *s, void **ctx)
{
	return setup(s, ctx, 0x0a000000u);
}

static int
setup_miss(struct qd_bench_state *s, void **ctx)
{
	return setup(s, ctx, 0x0a010000u);
}

/* <want_found>: whether every key must be found (hits) or none (misses). */
static void
run(struct qd_bench_state *s, struct neigh_ctx *c, bool want_found)
{
	uint64_t found = 0;
	uint64_t looked = 0;
	while (qd_bench_keep_running_batch(s, c->count)) {
		for (uint32_t i = 0; i < c->count; i++)
			found += qd_neigh_lookup(&c->table, c->keys_be[i]) != NULL;
		looked += c->count;
	}
	if (found != (want_found ? looked : 0))
		qd_bench_skip(s, "lookup result not as expected");
	qd_bench_set_items(s, qd_bench_iterations(s));
}

static void
bm_lookup_hit(struct qd_bench_state *s, void *ctx)
{
	run(s, ctx, true);
}

static void
bm_lookup_miss(struct qd_bench_state *s, void *ctx)
{
	run(s, ctx, false);
}

static const struct qd_bench neigh_benches[] = {
	{
		.name = "lookup_hit",
		.fn = bm_lookup_hit,
		.setup = setup_hit,
		.teardown = neigh_ctx_free,
		.args_count = 2,
		.args = {768, 1024},
	},
	{
		.name = "lookup_miss",
		.fn = bm_lookup_miss,
		.setup = setup_miss,
		.teardown = neigh_ctx_free,
		.args_count = 2,
		.args = {768, 1024},
	},
};

static const struct qd_bench_suite neigh_suite = {
	.name = "neigh",
	.benches = neigh_benches,
	.count = QD_BENCH_COUNT(neigh_benches),
};
QD_BENCH_SUITE(neigh_suite);
