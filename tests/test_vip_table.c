/* The run-time VIP table: validation, states, announcements, drains by count and by time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vip_table.h"

static uint32_t
ip(const char *s)
{
	return inet_addr(s);
}

/* The log lines of the table under test, to check every change is logged. */
static char logged[16][256];
static unsigned int logged_count;

static void
capture(void *ctx, const char *line)
{
	(void)ctx;
	if (logged_count < 16)
		snprintf(logged[logged_count], sizeof(logged[0]), "%s", line);
	logged_count++;
}

static bool
logged_has(const char *needle)
{
	for (unsigned int i = 0; i < logged_count && i < 16; i++)
		if (strstr(logged[i], needle) != NULL)
			return true;
	return false;
}

static void
fresh(struct qd_vip_table *t)
{
	logged_count = 0;
	qd_vip_table_init(t, ip("10.1.0.11"), 24, capture, NULL);
}

static enum qd_vip_state
state_of(const struct qd_vip_table *t, const char *a)
{
	enum qd_vip_state st = QD_VIP_ABSENT;
	assert_true(qd_vip_lookup(t, ip(a), &st) >= 0);
	return st;
}

static void
test_validation(void **state)
{
	(void)state;
	struct qd_vip_table t;
	fresh(&t);
	char err[QD_VIP_ERR_MAX];
	assert_int_equal(qd_vip_check(&t, ip("10.1.0.101"), err, sizeof(err)), 0);
	assert_int_equal(qd_vip_check(&t, ip("10.1.0.11"), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is port.ip"));
	assert_int_equal(qd_vip_check(&t, ip("10.1.1.5"), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "outside port.ip's subnet 10.1.0.0/24"));
	assert_int_equal(qd_vip_check(&t, ip("10.1.0.0"), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "network address"));
	assert_int_equal(qd_vip_check(&t, ip("10.1.0.255"), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "broadcast address"));
	assert_int_equal(qd_vip_check(&t, ip("224.0.0.1"), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a unicast"));
	assert_int_equal(qd_vip_check(&t, 0, err, sizeof(err)), -EINVAL);

	assert_int_equal(qd_vip_add(&t, ip("10.1.0.101"), QD_VIP_ACTIVE, 0, err, sizeof(err)), 0);
	assert_int_equal(qd_vip_add(&t, ip("10.1.0.101"), QD_VIP_ABSENT, 0, err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "already in the VIP table"));
	/* take validates the same way for addresses it adds */
	assert_int_equal(qd_vip_take(&t, ip("10.1.1.5"), 0, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(qd_vip_count(&t), 1);

	/* A /31 has no network or broadcast address (RFC 3021). */
	struct qd_vip_table p2p;
	qd_vip_table_init(&p2p, ip("10.2.0.0"), 31, NULL, NULL);
	assert_int_equal(qd_vip_check(&p2p, ip("10.2.0.1"), err, sizeof(err)), 0);
}

static void
test_full_table(void **state)
{
	(void)state;
	struct qd_vip_table t;
	qd_vip_table_init(&t, ip("10.1.0.1"), 16, NULL, NULL);
	char err[QD_VIP_ERR_MAX];
	for (unsigned int i = 0; i < QD_VIP_SLOTS_MAX; i++)
		assert_int_equal(qd_vip_take(&t, htonl(0x0a010100 + i + 1), 0, NULL, err,
					     sizeof(err)), 0);
	assert_int_equal(qd_vip_take(&t, ip("10.1.2.1"), 0, NULL, err, sizeof(err)), -ENOSPC);
	assert_non_null(strstr(err, "holds 32 addresses"));
	/* Released slots stay their address's: still full for a new one, fine for an old one. */
	assert_int_equal(qd_vip_release(&t, ip("10.1.1.1"), 0, 0, NULL, err, sizeof(err)), 0);
	assert_int_equal(qd_vip_take(&t, ip("10.1.2.1"), 0, NULL, err, sizeof(err)), -ENOSPC);
	assert_int_equal(qd_vip_take(&t, ip("10.1.1.1"), 0, NULL, err, sizeof(err)), 0);
	assert_int_equal(qd_vip_slot_of(&t, ip("10.1.1.1")), 0);
}

static void
test_take_announces_three_times(void **state)
{
	(void)state;
	struct qd_vip_table t;
	fresh(&t);
	char err[QD_VIP_ERR_MAX];
	uint32_t conns[QD_VIP_SLOTS_MAX] = {0};
	uint32_t garp[QD_VIP_SLOTS_MAX];
	bool changed = false;
	assert_int_equal(qd_vip_take(&t, ip("10.1.0.102"), 1000, &changed, err, sizeof(err)), 0);
	assert_true(changed);
	assert_int_equal(state_of(&t, "10.1.0.102"), QD_VIP_ACTIVE);
	assert_true(qd_vip_held(&t, ip("10.1.0.102")));
	assert_true(logged_has("vip 10.1.0.102: absent -> active (taken)"));
	unsigned int sent = 0;
	uint64_t last = 0;
	for (uint64_t now = 1000; now <= 4000; now += 10) {
		unsigned int n = qd_vip_poll(&t, now, conns, garp, QD_VIP_SLOTS_MAX);
		assert_true(n <= 1);
		if (n == 1) {
			assert_int_equal(garp[0], ip("10.1.0.102"));
			if (sent == 0)
				assert_int_equal(now, 1000); /* the first at once */
			last = now;
			sent++;
		}
	}
	assert_int_equal(sent, QD_VIP_GARP_REPEATS);
	assert_true(last - 1000 <= 1100); /* all within about a second */
	/* <max> bounds the output; what did not fit goes at a later poll. */
	assert_int_equal(qd_vip_take(&t, ip("10.1.0.103"), 5000, NULL, err, sizeof(err)), 0);
	assert_int_equal(qd_vip_take(&t, ip("10.1.0.102"), 5000, &changed, err, sizeof(err)), 0);
	assert_false(changed); /* held already: announced again, no state change */
	assert_int_equal(qd_vip_poll(&t, 5000, conns, garp, 1), 1);
	assert_int_equal(qd_vip_poll(&t, 5000, conns, garp, 1), 1);
	assert_int_equal(qd_vip_poll(&t, 5000, conns, garp, 1), 0);
}

static void
test_release_without_drain(void **state)
{
	(void)state;
	struct qd_vip_table t;
	fresh(&t);
	char err[QD_VIP_ERR_MAX];
	uint32_t conns[QD_VIP_SLOTS_MAX] = {0};
	uint32_t garp[QD_VIP_SLOTS_MAX];
	bool changed;
	assert_int_equal(qd_vip_add(&t, ip("10.1.0.101"), QD_VIP_ACTIVE, 0, err, sizeof(err)), 0);
	conns[0] = 5;
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 0, 10, &changed, err, sizeof(err)),
			 0);
	assert_true(changed);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_ABSENT);
	assert_false(qd_vip_held(&t, ip("10.1.0.101")));
	/* No announcement for an address given up, even one scheduled before. */
	assert_int_equal(qd_vip_poll(&t, 10, conns, garp, QD_VIP_SLOTS_MAX), 0);
	assert_true(logged_has("active -> absent (released, no drain)"));
	/* Releasing an absent one changes nothing; an unknown one is an error. */
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 100, 20, &changed, err, sizeof(err)),
			 0);
	assert_false(changed);
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.109"), 0, 20, &changed, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "not in the VIP table"));
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), QD_VIP_DRAIN_MAX_MS + 1, 20, NULL,
					err, sizeof(err)), -EINVAL);
	struct qd_vip_info vi;
	qd_vip_info(&t, 0, &vi);
	assert_int_equal(vi.since_ms, 10);
	assert_int_equal(vi.takes, 1);
	assert_int_equal(vi.releases, 1);
}

static void
test_drain_ends_when_connections_reach_zero(void **state)
{
	(void)state;
	struct qd_vip_table t;
	fresh(&t);
	char err[QD_VIP_ERR_MAX];
	uint32_t conns[QD_VIP_SLOTS_MAX] = {0};
	uint32_t garp[QD_VIP_SLOTS_MAX];
	assert_int_equal(qd_vip_add(&t, ip("10.1.0.101"), QD_VIP_ACTIVE, 0, err, sizeof(err)), 0);
	assert_int_equal(qd_vip_add(&t, ip("10.1.0.102"), QD_VIP_ACTIVE, 0, err, sizeof(err)), 0);
	conns[1] = 2;
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.102"), 5000, 100, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(state_of(&t, "10.1.0.102"), QD_VIP_DRAINING);
	assert_true(qd_vip_held(&t, ip("10.1.0.102"))); /* still answered while draining */
	assert_true(qd_vip_any_draining(&t));
	assert_true(logged_has("active -> draining (released, drain up to 5000 ms)"));
	qd_vip_poll(&t, 200, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.102"), QD_VIP_DRAINING);
	conns[1] = 1;
	qd_vip_poll(&t, 300, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.102"), QD_VIP_DRAINING);
	conns[1] = 0;
	qd_vip_poll(&t, 400, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.102"), QD_VIP_ABSENT);
	assert_false(qd_vip_any_draining(&t));
	assert_true(logged_has("draining -> absent (drained: no connection left)"));
	/* the other VIP never moved */
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_ACTIVE);
	struct qd_vip_info vi;
	qd_vip_info(&t, 1, &vi);
	assert_int_equal(vi.since_ms, 400);
	assert_int_equal(vi.drain_until_ms, 0);
}

static void
test_drain_ends_by_time_and_can_be_cut_short(void **state)
{
	(void)state;
	struct qd_vip_table t;
	fresh(&t);
	char err[QD_VIP_ERR_MAX];
	uint32_t conns[QD_VIP_SLOTS_MAX] = {0};
	uint32_t garp[QD_VIP_SLOTS_MAX];
	bool changed;
	assert_int_equal(qd_vip_add(&t, ip("10.1.0.101"), QD_VIP_ACTIVE, 0, err, sizeof(err)), 0);
	conns[0] = 3;
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 5000, 1000, NULL, err, sizeof(err)),
			 0);
	/* A longer drain asked later does not extend it; a shorter one shortens it. */
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 9000, 2000, &changed, err,
					sizeof(err)), 0);
	assert_false(changed);
	qd_vip_poll(&t, 5999, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_DRAINING);
	qd_vip_poll(&t, 6000, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_ABSENT);
	assert_true(logged_has("drain time over, 3 connection(s) left"));

	/* Again, cut short by a second release, then taken back mid-drain. */
	assert_int_equal(qd_vip_take(&t, ip("10.1.0.101"), 7000, NULL, err, sizeof(err)), 0);
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 5000, 7000, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 100, 7100, &changed, err,
					sizeof(err)), 0);
	assert_true(changed);
	qd_vip_poll(&t, 7199, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_DRAINING);
	assert_int_equal(qd_vip_take(&t, ip("10.1.0.101"), 7150, &changed, err, sizeof(err)), 0);
	assert_true(changed);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_ACTIVE);
	assert_true(logged_has("draining -> active (taken back while draining)"));
	qd_vip_poll(&t, 99999, conns, garp, QD_VIP_SLOTS_MAX);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_ACTIVE); /* no drain left over */
	/* Release with drain 0 while draining: absent at once, connections or not. */
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 5000, 100000, NULL, err,
					sizeof(err)), 0);
	assert_int_equal(qd_vip_release(&t, ip("10.1.0.101"), 0, 100001, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(state_of(&t, "10.1.0.101"), QD_VIP_ABSENT);
	assert_false(qd_vip_any_draining(&t));
}

static void
test_absent_at_start_and_word_packing(void **state)
{
	(void)state;
	struct qd_vip_table t;
	fresh(&t);
	char err[QD_VIP_ERR_MAX];
	uint32_t conns[QD_VIP_SLOTS_MAX] = {0};
	uint32_t garp[QD_VIP_SLOTS_MAX];
	/* vip.claim_at_start = no: in the table, not held, never announced. */
	assert_int_equal(qd_vip_add(&t, ip("10.1.0.254"), QD_VIP_ABSENT, 0, err, sizeof(err)), 0);
	enum qd_vip_state st;
	assert_int_equal(qd_vip_lookup(&t, ip("10.1.0.254"), &st), 0);
	assert_int_equal(st, QD_VIP_ABSENT);
	assert_false(qd_vip_held(&t, ip("10.1.0.254")));
	assert_int_equal(qd_vip_poll(&t, 0, conns, garp, QD_VIP_SLOTS_MAX), 0);
	/* An address whose low bytes look like a state is still matched whole. */
	assert_int_equal(qd_vip_lookup(&t, ip("10.1.0.1"), &st), -1);
	assert_int_equal(t.slots[0], qd_vip_word(ip("10.1.0.254"), QD_VIP_ABSENT));
	assert_string_equal(qd_vip_state_name(QD_VIP_DRAINING), "draining");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_full_table),
		cmocka_unit_test(test_take_announces_three_times),
		cmocka_unit_test(test_release_without_drain),
		cmocka_unit_test(test_drain_ends_when_connections_reach_zero),
		cmocka_unit_test(test_drain_ends_by_time_and_can_be_cut_short),
		cmocka_unit_test(test_absent_at_start_and_word_packing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
