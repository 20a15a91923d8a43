/*
 * A real ENOSPC: the log on a 1 MiB tmpfs fills up; the error is clear, the
 * log stays usable, nothing acknowledged is lost, and a snapshot that
 * compacts the log makes room again.
 *
 * The tmpfs is mounted in a private mount namespace, so it disappears with
 * the process whatever happens. Needs root (CAP_SYS_ADMIN) and io_uring:
 * exit 77 otherwise. Exit 0 pass, 1 fail.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "wal.h"
#include "wal_util.h"

#define TMPFS_OPTS "size=1m"
#define SEGMENT_BYTES (300u * 1024) /* three fit in 1 MiB, a fourth does not */
#define RECORDS_MAX 200000u
#define CPL_BURST 64
#define BURST 32

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "wal_enospc: line %d: %s\n", __LINE__, #cond); \
			return 1; \
		} \
	} while (0)

static const struct qd_wal_opts opts = { .segment_bytes = SEGMENT_BYTES };

struct state {
	uint64_t acked;   /* every seq up to here is acknowledged durable */
	uint64_t failed;  /* completions with -ENOSPC */
	bool bad;         /* a completion out of order or with another error */
};

/* Append bursts until a completion reports -ENOSPC (or <max> records). */
static void
fill(struct qd_wal *w, struct state *s, uint64_t max)
{
	struct qd_wal_cpl cpl[CPL_BURST];
	uint8_t p[256];

	while (s->failed == 0 && !s->bad && qd_wal_next_seq(w) <= max) {
		for (int i = 0; i < BURST; i++) {
			uint64_t seq = qd_wal_next_seq(w);

			if (qd_wal_append(w, (uint16_t)(seq % 7), p, wt_payload(seq, p), 0,
					NULL) != 0)
				break;
		}
		qd_wal_sync(w);
		for (unsigned int n = qd_wal_poll(w, cpl, CPL_BURST); n > 0;
				n = qd_wal_poll(w, cpl, CPL_BURST)) {
			for (unsigned int i = 0; i < n; i++) {
				if (cpl[i].status == 0 && cpl[i].seq == s->acked + 1 && s->failed == 0)
					s->acked++;
				else if (cpl[i].status == -ENOSPC)
					s->failed++;
				else
					s->bad = true;
			}
		}
	}
}

struct check {
	uint64_t next;
	bool bad;
};

static int
on_snap(void *arg, uint64_t seq, const void *data, size_t len)
{
	struct check *c = arg;

	(void)data;
	(void)len;
	c->next = seq + 1;
	return 0;
}

static int
on_record(void *arg, uint64_t seq, uint16_t type, const void *payload, uint32_t len)
{
	struct check *c = arg;

	if (seq != c->next || type != seq % 7 || !wt_payload_ok(seq, payload, len))
		c->bad = true;
	c->next++;
	return 0;
}

static int
run(const char *dir)
{
	char msg[QD_WAL_MSG_MAX];
	static uint8_t big[400 * 1024];
	struct qd_wal_stats st;
	struct qd_wal_recovery rec;
	struct state s = { 0 };
	struct check c = { .next = 1 };
	struct qd_wal *w = qd_wal_open(dir, &opts, NULL, msg, sizeof(msg));
	uint64_t first_fill;

	if (w == NULL)
		fprintf(stderr, "wal_enospc: open: %s\n", msg);
	CHECK(w != NULL);
	fill(w, &s, RECORDS_MAX);
	CHECK(!s.bad && s.failed > 0);
	CHECK(qd_wal_error(w) == 0); /* ENOSPC on a new segment is not fatal */
	CHECK(qd_wal_durable_seq(w) == s.acked);
	CHECK(qd_wal_next_seq(w) == s.acked + 1);
	qd_wal_stats_get(w, &st);
	CHECK(st.enospc >= 1 && st.segments == 3);
	first_fill = s.acked;
	printf("wal_enospc: full after %" PRIu64 " records in %u segments\n", s.acked,
		st.segments);

	/* A snapshot larger than the free space fails cleanly and leaves nothing behind. */
	CHECK(qd_wal_snapshot(w, s.acked, big, sizeof(big)) == -ENOSPC);
	CHECK(qd_wal_error(w) == 0);
	CHECK(wt_count(dir, "snap-") == 0);

	/* A small one compacts the log and there is room again. */
	CHECK(qd_wal_snapshot(w, s.acked, "s", 1) == 0);
	CHECK(wt_count(dir, "seg-") == 1);
	s.failed = 0;
	fill(w, &s, s.acked + 2000);
	CHECK(!s.bad && s.failed == 0 && s.acked > first_fill + 1000);
	CHECK(qd_wal_close(w) == 0);

	w = qd_wal_open(dir, &opts, &rec, msg, sizeof(msg));
	CHECK(w != NULL);
	CHECK(rec.snapshot_seq == first_fill && rec.last_seq == s.acked + 1); /* + close mark */
	CHECK(qd_wal_replay(w, on_snap, on_record, &c) == 0);
	CHECK(!c.bad && c.next == s.acked + 1);
	CHECK(qd_wal_close(w) == 0);
	return 0;
}

int
main(void)
{
	char dir[WT_PATH_MAX];
	int rc;

	if (!wt_have_io_uring()) {
		printf("wal_enospc: no io_uring here: skip\n");
		return 77;
	}
	if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
			mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		printf("wal_enospc: cannot make a private mount namespace: skip\n");
		return 77;
	}
	if (wt_mkdtemp(dir, sizeof(dir), "walnospc") != 0)
		return 1;
	if (mount("tmpfs", dir, "tmpfs", 0, TMPFS_OPTS) != 0) {
		printf("wal_enospc: mount tmpfs: %s: skip\n", strerror(errno));
		rmdir(dir);
		return 77;
	}
	rc = run(dir);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	printf("wal_enospc: %s\n", rc == 0 ? "ok" : "FAIL");
	return rc;
}
