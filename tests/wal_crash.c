/*
 * kill -9 of a log writer at random moments; every acknowledged record must
 * come back.
 *
 * Each round forks a writer. It opens the log, which recovers it, checks
 * what it recovered (snapshot + records after it, gap-free, every payload
 * what that sequence number must hold) and reports the last sequence
 * number K over a pipe. Then it appends bursts of records, snapshots now
 * and then, and reports each sequence number only after its durable
 * completion. The parent kills it at a random moment (often during
 * recovery, rotation or a snapshot) and holds the next round to:
 *   - recovered sequence numbers are a gap-free prefix snapshot+1..K,
 *   - K >= the last sequence number acknowledged in any earlier round,
 *   - K <= the last sequence number ever appended (nothing invented),
 *   - acknowledgements come in order, K+1, K+2, ...
 * The writer never closes the log, so there are no close marks in it.
 *
 * Usage: wal_crash [rounds]   (default 150; QD_WAL_CRASH_SEED fixes the seed)
 * Exit 0 pass, 1 fail, 77 skip (no io_uring).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wal.h"
#include "wal_util.h"

#define ROUNDS_DEFAULT 150
#define ROUNDS_MAX 100000
#define KILL_DELAY_US_MAX 40000
#define KILL_EARLY_US_MAX 2000
#define WRITER_LIFE_S 20        /* a writer nobody kills gives up */
#define SNAPSHOT_EVERY 700      /* durable records between snapshots */
#define BURST_MAX 48
#define CPL_BURST 64
#define MSG_RECOVERED 1u
#define MSG_APPENDED 2u
#define MSG_DURABLE 3u
#define MSG_FAIL 4u
#define MSG_SKIP 5u

/* One message on the pipe: smaller than PIPE_BUF, so written atomically. */
struct msg {
	uint32_t kind;
	uint32_t pad;
	uint64_t a;
	uint64_t b;
};

struct check {
	uint64_t snap_seq;
	uint64_t next;  /* seq the next record must have */
	bool bad;
	char why[160];
};

static const struct qd_wal_opts crash_opts = {
	.segment_bytes = 64 * 1024,
	.batch_bytes = 16 * 1024,
	.batches = 4,
	.records_max = 512,
};

static int
chk_snap(void *arg, uint64_t seq, const void *data, size_t len)
{
	struct check *c = arg;
	char want[32];

	snprintf(want, sizeof(want), "%" PRIu64, seq);
	c->snap_seq = seq;
	c->next = seq + 1;
	if (len != strlen(want) || memcmp(data, want, len) != 0) {
		c->bad = true;
		snprintf(c->why, sizeof(c->why), "snapshot %" PRIu64 " holds the wrong state", seq);
	}
	return 0;
}

static int
chk_record(void *arg, uint64_t seq, uint16_t type, const void *payload, uint32_t len)
{
	struct check *c = arg;

	if (seq != c->next) {
		snprintf(c->why, sizeof(c->why), "gap: got seq %" PRIu64 ", expected %" PRIu64,
			seq, c->next);
		c->bad = true;
		return 1;
	}
	if (type != seq % 7 || !wt_payload_ok(seq, payload, len)) {
		snprintf(c->why, sizeof(c->why), "seq %" PRIu64 ": wrong payload", seq);
		c->bad = true;
		return 1;
	}
	c->next++;
	return 0;
}

/* Open and check the log; on success *<last> is the last recovered seq. */
static struct qd_wal *
recover_and_check(const char *dir, uint64_t *last, char *why, size_t why_size)
{
	char msg[QD_WAL_MSG_MAX];
	struct check c = { .next = 1 };
	struct qd_wal_recovery rec;
	struct qd_wal *w = qd_wal_open(dir, &crash_opts, &rec, msg, sizeof(msg));
	int rc;

	if (w == NULL) {
		snprintf(why, why_size, "open: %s", msg);
		return NULL;
	}
	rc = qd_wal_replay(w, chk_snap, chk_record, &c);
	if (rc != 0 || c.bad || c.next - 1 != rec.last_seq || rec.skipped_ranges != 0) {
		snprintf(why, why_size, "replay rc %d: %s (last_seq %" PRIu64 ")", rc,
			c.bad ? c.why : "mismatch", rec.last_seq);
		qd_wal_close(w);
		return NULL;
	}
	*last = rec.last_seq;
	return w;
}

static void
send_msg(int fd, uint32_t kind, uint64_t a, uint64_t b)
{
	struct msg m = { .kind = kind, .a = a, .b = b };

	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(3);
}

/* The writer: never returns, never closes the log. */
static void
writer(const char *dir, int fd, unsigned int seed)
{
	struct qd_wal_cpl cpl[CPL_BURST];
	uint8_t p[256];
	char why[QD_WAL_MSG_MAX + 64];
	uint64_t last = 0, next, since_snap = 0;
	time_t end = time(NULL) + WRITER_LIFE_S;
	struct qd_wal *w = recover_and_check(dir, &last, why, sizeof(why));

	if (w == NULL) {
		send_msg(fd, errno == ENOSYS || errno == EPERM ? MSG_SKIP : MSG_FAIL, 0, 0);
		fprintf(stderr, "writer: %s\n", why);
		_exit(1);
	}
	send_msg(fd, MSG_RECOVERED, last, 0);
	next = last + 1;
	srand(seed);
	while (time(NULL) < end) {
		uint32_t burst = 1 + (uint32_t)rand() % BURST_MAX;
		unsigned int n;

		for (uint32_t i = 0; i < burst; i++) {
			uint32_t len = wt_payload(next, p);

			if (qd_wal_append(w, (uint16_t)(next % 7), p, len, next, NULL) != 0)
				break;
			next++;
		}
		send_msg(fd, MSG_APPENDED, next - 1, 0);
		if (rand() % 4 == 0)
			qd_wal_wait(w, 2);
		n = qd_wal_poll(w, cpl, CPL_BURST);
		for (unsigned int i = 0; i < n; i++) {
			if (cpl[i].status != 0) {
				send_msg(fd, MSG_FAIL, cpl[i].seq, (uint64_t)-cpl[i].status);
				_exit(1);
			}
			send_msg(fd, MSG_DURABLE, cpl[i].seq, 0);
		}
		since_snap += n;
		if (since_snap >= SNAPSHOT_EVERY && qd_wal_durable_seq(w) > 0) {
			char s[32];
			uint64_t at = qd_wal_durable_seq(w);

			snprintf(s, sizeof(s), "%" PRIu64, at);
			if (qd_wal_snapshot(w, at, s, strlen(s)) != 0)
				_exit(4);
			since_snap = 0;
		}
	}
	_exit(0);
}

struct parent {
	uint64_t acked;        /* highest seq acknowledged, over all rounds */
	uint64_t appended;     /* highest seq ever appended */
	uint64_t expect_ack;   /* next acknowledgement this round */
	bool recovered;        /* this round's writer reported its recovery */
	bool failed;
	bool skip;
	uint64_t recovered_rounds;
};

static void
on_msg(struct parent *st, const struct msg *m, unsigned int round)
{
	switch (m->kind) {
	case MSG_RECOVERED:
		if (m->a < st->acked || m->a > st->appended) {
			fprintf(stderr, "round %u: recovered up to %" PRIu64 ", but acked %" PRIu64
				" and appended %" PRIu64 "\n", round, m->a, st->acked, st->appended);
			st->failed = true;
		}
		st->recovered = true;
		st->recovered_rounds++;
		st->expect_ack = m->a + 1;
		break;
	case MSG_APPENDED:
		if (m->a > st->appended)
			st->appended = m->a;
		break;
	case MSG_DURABLE:
		if (!st->recovered || m->a != st->expect_ack || m->a > st->appended) {
			fprintf(stderr, "round %u: ack %" PRIu64 " out of order (expected %" PRIu64
				")\n", round, m->a, st->expect_ack);
			st->failed = true;
		}
		st->expect_ack = m->a + 1;
		st->acked = m->a;
		break;
	case MSG_SKIP:
		st->skip = true;
		break;
	default:
		fprintf(stderr, "round %u: writer failed (%" PRIu64 ", %" PRIu64 ")\n", round,
			m->a, m->b);
		st->failed = true;
	}
}

/* Read whole messages from <fd> until EOF or <deadline_us> (monotonic). */
static bool
pump(int fd, struct parent *st, unsigned int round, int64_t deadline_us)
{
	static uint8_t buf[sizeof(struct msg) * 512];
	static size_t have;

	for (;;) {
		struct timespec ts;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t now_us;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		if (deadline_us >= 0 && now_us >= deadline_us)
			return true;
		if (deadline_us >= 0 &&
				poll(&pfd, 1, (int)((deadline_us - now_us + 999) / 1000)) <= 0)
			continue;
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			have = 0; /* a message cut short by the kill was never sent */
			return false;
		}
		have += (size_t)n;
		for (size_t off = 0; off + sizeof(struct msg) <= have; off += sizeof(struct msg)) {
			struct msg m;

			memcpy(&m, buf + off, sizeof(m));
			on_msg(st, &m, round);
		}
		memmove(buf, buf + have / sizeof(struct msg) * sizeof(struct msg),
			have % sizeof(struct msg));
		have %= sizeof(struct msg);
	}
}

static int
run_round(const char *dir, struct parent *st, unsigned int round, unsigned int seed)
{
	struct timespec ts;
	int fds[2], status;
	int64_t deadline;
	pid_t pid;

	if (pipe(fds) != 0)
		return -1;
	st->recovered = false;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		writer(dir, fds[1], seed);
	}
	close(fds[1]);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* One round in four dies within 2 ms: mostly inside recovery. */
	deadline = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 +
		(int64_t)(rand() % (rand() % 4 == 0 ? KILL_EARLY_US_MAX : KILL_DELAY_US_MAX));
	if (pump(fds[0], st, round, deadline))
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	pump(fds[0], st, round, -1); /* what it said before it died */
	close(fds[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && !st->skip) {
		fprintf(stderr, "round %u: writer exited %d\n", round, WEXITSTATUS(status));
		st->failed = true;
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL) {
		fprintf(stderr, "round %u: writer died of signal %d\n", round, WTERMSIG(status));
		st->failed = true;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	char dir[WT_PATH_MAX], why[QD_WAL_MSG_MAX + 64];
	struct parent st = { 0 };
	unsigned int rounds = ROUNDS_DEFAULT, seed = (unsigned int)time(NULL) ^ (unsigned)getpid();
	const char *env = getenv("QD_WAL_CRASH_SEED");
	uint64_t last = 0;
	struct qd_wal *w;
	unsigned int r;

	if (argc > 1)
		rounds = (unsigned int)strtoul(argv[1], NULL, 10);
	if (rounds == 0 || rounds > ROUNDS_MAX)
		rounds = ROUNDS_DEFAULT;
	if (env != NULL)
		seed = (unsigned int)strtoul(env, NULL, 10);
	if (!wt_have_io_uring()) {
		printf("wal_crash: no io_uring here: skip\n");
		return 77;
	}
	printf("wal_crash: %u rounds, seed %u (QD_WAL_CRASH_SEED to repeat)\n", rounds, seed);
	srand(seed);
	if (wt_mkdtemp(dir, sizeof(dir), "walcrash") != 0)
		return 1;
	for (r = 0; r < rounds && !st.failed && !st.skip; r++)
		if (run_round(dir, &st, r, seed + r) != 0)
			st.failed = true;
	if (st.skip) {
		printf("wal_crash: io_uring not available: skip\n");
		wt_rmdir(dir);
		return 77;
	}
	if (!st.failed) {
		w = recover_and_check(dir, &last, why, sizeof(why));
		if (w == NULL || last < st.acked || last > st.appended) {
			fprintf(stderr, "final recovery: %s (last %" PRIu64 ", acked %" PRIu64 ")\n",
				w == NULL ? why : "range", last, st.acked);
			st.failed = true;
		}
		if (w != NULL)
			qd_wal_close(w);
	}
	printf("wal_crash: %u rounds, %" PRIu64 " with a reported recovery, %" PRIu64
		" records acknowledged, %" PRIu64 " recovered at the end: %s\n", r,
		st.recovered_rounds, st.acked, last, st.failed ? "FAIL" : "ok");
	if (!st.failed)
		wt_rmdir(dir);
	else
		fprintf(stderr, "log kept in %s\n", dir);
	return st.failed ? 1 : 0;
}
