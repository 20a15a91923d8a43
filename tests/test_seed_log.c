/*
 * Unit tests of the seed log (control/seed_log.c) through the control
 * commands that use it (control/ctl_coords.c): coordinators added, removed,
 * drained and undrained, and the groups file survive a close and a reopen and
 * replay in order on top of the config's coordinators; a change that is not
 * durable is refused and not applied; compaction keeps the state; damage in
 * the middle refuses the open with the file and offset; no state.dir means
 * no log and "durable": false.
 *
 * No EAL: the daemon is a zeroed struct qd_daemon with a calloc'ed
 * coordinator table and a neighbour table; each test works in its own
 * directory under /tmp and removes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_coords.h"
#include "daemon.h"
#include "seed_log.h"
#include "wal.h"

#define A1 "10.0.0.1:8080"
#define A2 "10.0.0.2:8080"

struct fixture {
	struct qd_daemon d;
	char dir[64];
	char err[512];
};

static uint32_t
ip(const char *s)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return a.s_addr;
}

/* The table as make_coordinators() fills it from a config listing <n> of A1, A2. */
static void
config_table(struct fixture *f, unsigned int n)
{
	memset(f->d.coords, 0, sizeof(*f->d.coords));
	const char *ips[] = {"10.0.0.1", "10.0.0.2"};
	for (unsigned int i = 0; i < n; i++) {
		f->d.coords->c[i].ip_be = ip(ips[i]);
		f->d.coords->c[i].port = 8080;
		f->d.coords->c[i].weight = 1;
	}
	f->d.coords->count = n;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/qd-seed-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->d.coords = aligned_alloc(RTE_CACHE_LINE_SIZE, sizeof(*f->d.coords));
	assert_non_null(f->d.coords);
	config_table(f, 2);
	assert_int_equal(qd_neigh_table_init(&f->d.neigh, 256), 0);
	snprintf(f->d.cfg.state_dir, sizeof(f->d.cfg.state_dir), "%s/state", f->dir);
	*state = f;
	return 0;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	qd_seed_close(&f->d);
	qd_neigh_table_free(&f->d.neigh);
	free(f->d.coords);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
open_ok(struct fixture *f)
{
	f->err[0] = '\0';
	int rc = qd_seed_open(&f->d, f->err, sizeof(f->err));
	if (rc != 0)
		fail_msg("qd_seed_open: %d %s", rc, f->err);
}

/* A restart: close, the config's table again, open. */
static void
restart(struct fixture *f, unsigned int config_coords)
{
	qd_seed_close(&f->d);
	assert_null(f->d.seed);
	config_table(f, config_coords);
	open_ok(f);
}

typedef int (*handler_fn)(void *, const json_t *, json_t **, char *, size_t);

/* Run control command <h> with args {coordinator: <addr>[, weight: w]}; its rc. The
 * reply, if any, goes to <reply> (or is dropped). */
static int
cmd(struct fixture *f, handler_fn h, const char *addr, int weight, json_t **reply)
{
	json_t *args = json_pack("{s:s}", "coordinator", addr);
	if (weight > 0)
		json_object_set_new(args, "weight", json_integer(weight));
	json_t *data = NULL;
	f->err[0] = '\0';
	int rc = h(&f->d, args, &data, f->err, sizeof(f->err));
	json_decref(args);
	if (reply != NULL)
		*reply = data;
	else
		json_decref(data);
	return rc;
}

static void
cmd_ok(struct fixture *f, handler_fn h, const char *addr, int weight)
{
	json_t *reply = NULL;
	int rc = cmd(f, h, addr, weight, &reply);
	if (rc != 0)
		fail_msg("%s: %d %s", addr, rc, f->err);
	assert_true(json_is_true(json_object_get(reply, "durable")) == (f->d.seed != NULL));
	json_decref(reply);
}

static const struct qd_coord *
entry(struct fixture *f, unsigned int i)
{
	assert_true(i < qd_coord_count(f->d.coords));
	return &f->d.coords->c[i];
}

static void
assert_entry(struct fixture *f, unsigned int i, const char *addr_ip, unsigned int weight,
	     bool drained, bool removed)
{
	const struct qd_coord *c = entry(f, i);
	assert_int_equal(c->ip_be, ip(addr_ip));
	assert_int_equal(c->port, 8080);
	assert_int_equal(c->weight, weight);
	assert_int_equal(c->drained, drained ? 1 : 0);
	assert_int_equal(c->removed, removed ? 1 : 0);
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
test_replay_in_order(void **state)
{
	struct fixture *f = *state;
	snprintf(f->d.cfg.admission_resource_groups, sizeof(f->d.cfg.admission_resource_groups),
		 "/etc/qdispatch/resource-groups.json");
	open_ok(f);
	assert_true(qd_seed_durable(&f->d));
	cmd_ok(f, qd_ctl_coordinator_add, "10.0.0.3:8080", 3);
	cmd_ok(f, qd_ctl_drain, A1, 0);
	cmd_ok(f, qd_ctl_coordinator_remove, A2, 0);
	cmd_ok(f, qd_ctl_coordinator_add, "10.0.0.4:8080", 0);
	cmd_ok(f, qd_ctl_coordinator_remove, "10.0.0.3:8080", 0);
	cmd_ok(f, qd_ctl_coordinator_add, "10.0.0.3:8080", 0); /* back, same index */
	cmd_ok(f, qd_ctl_drain, "10.0.0.4:8080", 0);
	cmd_ok(f, qd_ctl_undrain, "10.0.0.4:8080", 0);
	char groups[128];
	snprintf(groups, sizeof(groups), "%s/groups.json", f->dir);
	write_file(groups, "{\"rootGroups\": []}\n");
	assert_int_equal(qd_seed_record_groups(&f->d, groups, f->err, sizeof(f->err)), 0);
	assert_string_equal(f->d.cfg.admission_resource_groups, groups);
	assert_int_equal(qd_seed_records(&f->d), 9);

	for (int round = 0; round < 2; round++) {
		snprintf(f->d.cfg.admission_resource_groups,
			 sizeof(f->d.cfg.admission_resource_groups), "/etc/other.json");
		restart(f, 2);
		assert_int_equal(qd_coord_count(f->d.coords), 4);
		assert_entry(f, 0, "10.0.0.1", 1, true, false);
		assert_entry(f, 1, "10.0.0.2", 1, false, true);
		assert_entry(f, 2, "10.0.0.3", 3, false, false);
		assert_entry(f, 3, "10.0.0.4", 1, false, false);
		assert_string_equal(f->d.cfg.admission_resource_groups, groups);
	}

	/* Admission control off in the config: the groups record does not turn it on. */
	f->d.cfg.admission_resource_groups[0] = '\0';
	restart(f, 2);
	assert_string_equal(f->d.cfg.admission_resource_groups, "");

	/* The config drops A2: its records are skipped; the added ones move up one. */
	restart(f, 1);
	assert_int_equal(qd_coord_count(f->d.coords), 3);
	assert_entry(f, 0, "10.0.0.1", 1, true, false);
	assert_entry(f, 1, "10.0.0.3", 3, false, false);
	assert_entry(f, 2, "10.0.0.4", 1, false, false);
}

static void
test_refusals(void **state)
{
	struct fixture *f = *state;
	open_ok(f);
	json_t *reply = NULL;
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, A1, 0, NULL), -EEXIST);
	assert_non_null(strstr(f->err, "already a coordinator"));
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, "10.0.0.9:8080", 1001, NULL), -EINVAL);
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, "10.0.0.9", 0, NULL), -EINVAL);
	assert_int_equal(cmd(f, qd_ctl_coordinator_remove, "10.0.0.9:8080", 0, NULL), -ENOENT);
	assert_non_null(strstr(f->err, "not a configured coordinator"));
	/* Removed and added back with another weight: refused (weights are fixed). */
	cmd_ok(f, qd_ctl_coordinator_remove, A2, 0);
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, A2, 5, NULL), -EINVAL);
	/* A second remove changes nothing and writes nothing. */
	uint64_t before = qd_seed_records(&f->d);
	assert_int_equal(cmd(f, qd_ctl_coordinator_remove, A2, 0, &reply), 0);
	assert_true(json_is_false(json_object_get(reply, "changed")));
	assert_true(json_is_true(json_object_get(reply, "removed")));
	json_decref(reply);
	assert_int_equal(qd_seed_records(&f->d), before);
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, A2, 0, &reply), 0);
	assert_true(json_is_true(json_object_get(reply, "added_back")));
	assert_int_equal(json_integer_value(json_object_get(reply, "index")), 1);
	json_decref(reply);
	assert_int_equal(qd_coord_count(f->d.coords), 2);
	assert_entry(f, 1, "10.0.0.2", 1, false, false);

	/* Full table. */
	for (unsigned int i = 2; i < QD_COORDS_MAX; i++) {
		char a[32];
		snprintf(a, sizeof(a), "10.0.1.%u:8080", i);
		cmd_ok(f, qd_ctl_coordinator_add, a, 0);
	}
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, "10.0.2.1:8080", 0, NULL), -ENOSPC);
	assert_int_equal(qd_coord_count(f->d.coords), QD_COORDS_MAX);
	restart(f, 2);
	assert_int_equal(qd_coord_count(f->d.coords), QD_COORDS_MAX);
	assert_entry(f, QD_COORDS_MAX - 1, "10.0.1.63", 1, false, false);
}

static void
test_not_durable(void **state)
{
	struct fixture *f = *state;
	open_ok(f);
	/* No room for the first segment: not fatal, nothing applied, the next try works. */
	qd_wal_inject_fault(qd_seed_wal(&f->d), QD_WAL_FAULT_SEGMENT, -ENOSPC);
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, "10.0.0.3:8080", 0, NULL), -ENOSPC);
	assert_non_null(strstr(f->err, "not durable"));
	assert_non_null(strstr(f->err, "nothing changed"));
	assert_int_equal(qd_coord_count(f->d.coords), 2);
	assert_int_equal(cmd(f, qd_ctl_drain, A1, 0, NULL), 0);
	assert_int_equal(entry(f, 0)->drained, 1);

	/* A failed fsync: refused, not applied, and the log takes nothing more. */
	qd_wal_inject_fault(qd_seed_wal(&f->d), QD_WAL_FAULT_FSYNC, -EIO);
	assert_int_equal(cmd(f, qd_ctl_coordinator_remove, A2, 0, NULL), -EIO);
	assert_int_equal(entry(f, 1)->removed, 0);
	assert_int_equal(cmd(f, qd_ctl_undrain, A1, 0, NULL), -EIO);
	assert_non_null(strstr(f->err, "restart"));
	assert_int_equal(entry(f, 0)->drained, 1);
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, "10.0.0.3:8080", 0, NULL), -EIO);
	assert_int_equal(qd_coord_count(f->d.coords), 2);

	/* What was acknowledged is there after a restart. */
	restart(f, 2);
	assert_int_equal(entry(f, 0)->drained, 1);
	assert_int_equal(qd_coord_count(f->d.coords), 2);
}

static void
test_compaction(void **state)
{
	struct fixture *f = *state;
	snprintf(f->d.cfg.admission_resource_groups, sizeof(f->d.cfg.admission_resource_groups),
		 "/etc/qdispatch/resource-groups.json");
	open_ok(f);
	char groups[128];
	snprintf(groups, sizeof(groups), "%s/groups.json", f->dir);
	write_file(groups, "{}\n");
	cmd_ok(f, qd_ctl_coordinator_add, "10.0.0.3:8080", 7);
	cmd_ok(f, qd_ctl_coordinator_remove, "10.0.0.3:8080", 0);
	cmd_ok(f, qd_ctl_coordinator_add, "10.0.0.4:8080", 2);
	assert_int_equal(qd_seed_record_groups(&f->d, groups, f->err, sizeof(f->err)), 0);
	unsigned int toggles = 2 * QD_SEED_COMPACT_RECORDS + 11;
	for (unsigned int i = 0; i < toggles; i++)
		cmd_ok(f, i % 2 == 0 ? qd_ctl_drain : qd_ctl_undrain, A2, 0);
	/* An odd count: A2 ends drained. The log was folded twice. */
	assert_true(qd_seed_records(&f->d) <= QD_SEED_COMPACT_RECORDS);
	struct qd_wal_stats st;
	qd_wal_stats_get(qd_seed_wal(&f->d), &st);
	assert_int_equal(st.snapshots, 2);
	char sdir[128];
	snprintf(sdir, sizeof(sdir), "%s/state/seed", f->dir);
	DIR *dp = opendir(sdir);
	assert_non_null(dp);
	unsigned int snaps = 0;
	for (struct dirent *e = readdir(dp); e != NULL; e = readdir(dp))
		snaps += strncmp(e->d_name, "snap-", 5) == 0;
	closedir(dp);
	assert_int_equal(snaps, 1);

	for (int round = 0; round < 2; round++) {
		snprintf(f->d.cfg.admission_resource_groups,
			 sizeof(f->d.cfg.admission_resource_groups), "/etc/other.json");
		restart(f, 2);
		assert_int_equal(qd_coord_count(f->d.coords), 4);
		assert_entry(f, 0, "10.0.0.1", 1, false, false);
		assert_entry(f, 1, "10.0.0.2", 1, true, false);
		assert_entry(f, 2, "10.0.0.3", 7, false, true);
		assert_entry(f, 3, "10.0.0.4", 2, false, false);
		assert_string_equal(f->d.cfg.admission_resource_groups, groups);
	}
	/* The snapshot keeps the config's say: drop A2 from it and its flag goes too. */
	restart(f, 1);
	assert_int_equal(qd_coord_count(f->d.coords), 3);
	assert_entry(f, 1, "10.0.0.3", 7, false, true);
}

static void
test_corruption(void **state)
{
	struct fixture *f = *state;
	open_ok(f);
	for (int i = 0; i < 3; i++) {
		cmd_ok(f, qd_ctl_drain, A1, 0);
		cmd_ok(f, qd_ctl_undrain, A1, 0);
	}
	qd_seed_close(&f->d);
	/* Record 3 of 6 (plus the close mark): segment header, two records, its header. */
	char seg[160];
	snprintf(seg, sizeof(seg), "%s/state/seed/seg-%020u.wal", f->dir, 1u);
	FILE *fp = fopen(seg, "r+b");
	assert_non_null(fp);
	long off = QD_WAL_SEGMENT_OVERHEAD + 2 * (QD_WAL_RECORD_OVERHEAD + 12) +
		   QD_WAL_RECORD_OVERHEAD + 5;
	assert_int_equal(fseek(fp, off, SEEK_SET), 0);
	int b = fgetc(fp);
	assert_int_equal(fseek(fp, off, SEEK_SET), 0);
	fputc(b ^ 0x40, fp);
	fclose(fp);
	config_table(f, 2);
	int rc = qd_seed_open(&f->d, f->err, sizeof(f->err));
	assert_int_equal(rc, -EBADMSG);
	assert_null(f->d.seed);
	printf("refused: %s\n", f->err);
	assert_non_null(strstr(f->err, "seg-00000000000000000001.wal"));
	assert_non_null(strstr(f->err, "offset"));
	assert_int_equal(entry(f, 0)->drained, 0);
}

static void
test_no_state_dir(void **state)
{
	struct fixture *f = *state;
	f->d.cfg.state_dir[0] = '\0';
	open_ok(f);
	assert_null(f->d.seed);
	assert_false(qd_seed_durable(&f->d));
	json_t *reply = NULL;
	assert_int_equal(cmd(f, qd_ctl_coordinator_add, "10.0.0.3:8080", 4, &reply), 0);
	assert_true(json_is_false(json_object_get(reply, "durable")));
	assert_true(json_is_false(json_object_get(reply, "proxy")));
	json_decref(reply);
	assert_entry(f, 2, "10.0.0.3", 4, false, false);
	cmd_ok(f, qd_ctl_drain, "10.0.0.3:8080", 0);
	assert_int_equal(entry(f, 2)->drained, 1);
	assert_int_equal(qd_seed_record_groups(&f->d, "/x.json", f->err, sizeof(f->err)), 0);
	/* Nothing on disk. */
	char sdir[128];
	snprintf(sdir, sizeof(sdir), "%s/state", f->dir);
	assert_int_equal(access(sdir, F_OK), -1);
}

static void
test_bad_state_dir(void **state)
{
	struct fixture *f = *state;
	char file[128];
	snprintf(file, sizeof(file), "%s/file", f->dir);
	write_file(file, "x");
	snprintf(f->d.cfg.state_dir, sizeof(f->d.cfg.state_dir), "%s", file);
	int rc = qd_seed_open(&f->d, f->err, sizeof(f->err));
	assert_int_equal(rc, -ENOTDIR);
	assert_non_null(strstr(f->err, "state.dir"));
	assert_null(f->d.seed);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_replay_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_state_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_state_dir, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
