/*
 * sim_store.c: qdcoordsim's re-creation of openLooKeng's HA admission before
 * 1.3 (`--admission-store ADDR:PORT`), for `bench/run openlookeng-baseline`.
 *
 * openLooKeng's coordinators shared a Hazelcast state store. Every submission
 * took one global distributed lock ("submit-query-lock", tryLock 10 s), read
 * the state of every running query to count its resource group's, admitted
 * the query if the group had room (adding its record), and unlocked; a query's
 * end removed its record. Here the store is bench/olk_store.py, reached over
 * one kernel TCP connection with blocking round trips, one text line each
 * (LOCK, VALUES, PUT, UNLOCK, REMOVE). A POST makes the query wait and runs a
 * pass at once (its answer comes after the round trips); queries the pass
 * left waiting are looked at again by a pass every --admission-retry-ms (a
 * resource group's refresh) and after every query's end.
 *
 * The simulator has one thread, so a round trip holds up everything it serves
 * (a coordinator would block only the submitting thread): the lock's
 * serialisation is exact, its cost to unrelated requests overstated. Only the
 * benchmark uses this; without the option nothing here runs.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "sim.h"

#define SIM_STORE_NIL SIM_NO_TIMER
#define SIM_STORE_LINE_MAX 256

static uint64_t
sim_store_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Connect to the store (at start and after an error). */
static int
sim_store_connect(struct sim *s)
{
	struct sim_store *st = &s->store;
	struct timeval tv;
	int fd, one = 1;

	assert(s->opt.store_set && st->fd < 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A lock wait may last the tryLock time; past it plus a margin the store
	 * is gone, and the pass gives up (queries keep waiting). */
	tv.tv_sec = (time_t)(s->opt.store_lock_wait_ms / 1000u + 5u);
	tv.tv_usec = 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&s->opt.store, sizeof(s->opt.store)) != 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	st->fd = fd;
	st->rpos = st->rlen = 0;
	return 0;
}

int
sim_store_open(struct sim *s)
{
	s->store.wait_head = s->store.wait_tail = SIM_STORE_NIL;
	s->store.fd = -1;
	return s->opt.store_set ? sim_store_connect(s) : 0;
}

void
sim_store_close(struct sim *s)
{
	if (s->store.fd >= 0)
		close(s->store.fd);
	s->store.fd = -1;
}

/* An I/O or protocol error: count it, drop the connection (the next pass
 * connects again). */
static int
sim_store_fail(struct sim *s, const char *what)
{
	s->store.c.errors++;
	sim_log("admission store: %s (%s); reconnecting at the next pass", what,
		errno != 0 ? strerror(errno) : "protocol");
	sim_store_close(s);
	return -EIO;
}

static int
sim_store_send(struct sim *s, const char *line, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(s->store.fd, line + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return sim_store_fail(s, "send");
		off += (size_t)n;
	}
	return 0;
}

/* Make at least one more byte readable in the buffer. */
static int
sim_store_fill(struct sim *s)
{
	struct sim_store *st = &s->store;
	ssize_t n;

	if (st->rpos == st->rlen)
		st->rpos = st->rlen = 0;
	if (st->rlen == sizeof(st->rbuf)) {
		memmove(st->rbuf, st->rbuf + st->rpos, st->rlen - st->rpos);
		st->rlen -= st->rpos;
		st->rpos = 0;
	}
	do {
		errno = 0;
		n = recv(st->fd, st->rbuf + st->rlen, sizeof(st->rbuf) - st->rlen, 0);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return sim_store_fail(s, n == 0 ? "connection closed" : "recv");
	st->rlen += (size_t)n;
	return 0;
}

/* Read one line (without its newline) into <out>. */
static int
sim_store_line(struct sim *s, char *out, size_t max)
{
	struct sim_store *st = &s->store;

	for (;;) {
		char *nl = memchr(st->rbuf + st->rpos, '\n', st->rlen - st->rpos);

		if (nl != NULL) {
			size_t n = (size_t)(nl - (st->rbuf + st->rpos));

			if (n >= max) {
				errno = 0;
				return sim_store_fail(s, "line too long");
			}
			memcpy(out, st->rbuf + st->rpos, n);
			out[n] = '\0';
			st->rpos += n + 1;
			return 0;
		}
		if (st->rlen - st->rpos >= SIM_STORE_LINE_MAX) {
			errno = 0;
			return sim_store_fail(s, "line too long");
		}
		if (sim_store_fill(s) != 0)
			return -EIO;
	}
}

/* Send <cmd> and read its one-line answer into <ans>. */
static int
sim_store_call(struct sim *s, const char *cmd, char *ans, size_t max)
{
	if (sim_store_send(s, cmd, strlen(cmd)) != 0)
		return -EIO;
	return sim_store_line(s, ans, max);
}

static int
sim_store_expect_ok(struct sim *s, const char *cmd)
{
	char ans[SIM_STORE_LINE_MAX];

	if (sim_store_call(s, cmd, ans, sizeof(ans)) != 0)
		return -EIO;
	if (strcmp(ans, "OK") != 0) {
		errno = 0;
		sim_log("admission store: '%.*s' answered '%s'", (int)strcspn(cmd, "\n"), cmd, ans);
		return sim_store_fail(s, "unexpected answer");
	}
	return 0;
}

/* The distinct groups (sources) of the waiting queries and how many of each
 * run. The store splits a line on blanks, so a group is the source up to its
 * first blank, "-" for none. */
struct sim_store_groups {
	char name[SIM_STORE_GROUPS_MAX][SIM_USER_MAX_BYTES + 1];
	uint64_t running[SIM_STORE_GROUPS_MAX];
	unsigned int n;
};

static void
sim_store_group_of(const struct sim_query *q, char *out, size_t max)
{
	size_t n = strcspn(q->source, " \t\r\n");

	if (n == 0)
		snprintf(out, max, "-");
	else
		snprintf(out, max, "%.*s", (int)n, q->source);
}

static int
sim_store_group_find(const struct sim_store_groups *g, const char *name, size_t len)
{
	unsigned int i;

	for (i = 0; i < g->n; i++)
		if (strlen(g->name[i]) == len && memcmp(g->name[i], name, len) == 0)
			return (int)i;
	return -1;
}

/* VALUES: read every running query's record and count those of the groups
 * in <g>. A record is "<id> <group> RUNNING ...\n", <size> bytes. */
static int
sim_store_values(struct sim *s, struct sim_store_groups *g)
{
	struct sim_store *st = &s->store;
	char ans[SIM_STORE_LINE_MAX];
	uint64_t n, size, i;

	if (sim_store_call(s, "VALUES\n", ans, sizeof(ans)) != 0)
		return -EIO;
	if (sscanf(ans, "RECORDS %" SCNu64 " %" SCNu64, &n, &size) != 2 || size < 2 ||
	    size > sizeof(st->rbuf)) {
		errno = 0;
		return sim_store_fail(s, "bad VALUES answer");
	}
	for (i = 0; i < n; i++) {
		const char *rec, *sp, *grp;
		int k;

		while (st->rlen - st->rpos < size)
			if (sim_store_fill(s) != 0)
				return -EIO;
		rec = st->rbuf + st->rpos;
		sp = memchr(rec, ' ', size);
		grp = sp != NULL ? sp + 1 : NULL;
		sp = grp != NULL ? memchr(grp, ' ', (size_t)(rec + size - grp)) : NULL;
		if (sp == NULL || rec[size - 1] != '\n') {
			errno = 0;
			return sim_store_fail(s, "bad record");
		}
		k = sim_store_group_find(g, grp, (size_t)(sp - grp));
		if (k >= 0)
			g->running[k]++;
		st->rpos += size;
	}
	st->c.records_read += n;
	st->c.bytes_read += n * size;
	return 0;
}

/* The pass itself; returns after the UNLOCK, or early on an error or a lock
 * timeout (the queries left keep waiting). */
static void
sim_store_pass_locked(struct sim *s)
{
	struct sim_store *st = &s->store;
	static struct sim_store_groups g; /* one thread; 4 KiB off the stack */
	char cmd[64 + SIM_USER_MAX_BYTES + SIM_QUERY_ID_BYTES];
	char ans[SIM_STORE_LINE_MAX], grp[SIM_USER_MAX_BYTES + 1];
	uint32_t slot, next;
	bool refused = false;

	memset(&g, 0, sizeof(g));
	for (slot = st->wait_head; slot != SIM_STORE_NIL; slot = s->queries[slot].wait_next) {
		sim_store_group_of(&s->queries[slot], grp, sizeof(grp));
		if (g.n < SIM_STORE_GROUPS_MAX && sim_store_group_find(&g, grp, strlen(grp)) < 0)
			snprintf(g.name[g.n++], sizeof(g.name[0]), "%s", grp);
	}
	snprintf(cmd, sizeof(cmd), "LOCK %u\n", s->opt.store_lock_wait_ms);
	if (sim_store_call(s, cmd, ans, sizeof(ans)) != 0)
		return;
	if (strcmp(ans, "TIMEOUT") == 0) {
		/* openLooKeng failed the submission's lock attempt; the query waits */
		st->c.lock_timeouts++;
		return;
	}
	if (strcmp(ans, "OK") != 0) {
		errno = 0;
		sim_store_fail(s, "bad LOCK answer");
		return;
	}
	if (sim_store_values(s, &g) != 0)
		return;
	for (slot = st->wait_head; slot != SIM_STORE_NIL; slot = next) {
		struct sim_query *q = &s->queries[slot];
		int k;

		next = q->wait_next;
		assert(q->used && q->store_wait);
		sim_store_group_of(q, grp, sizeof(grp));
		k = sim_store_group_find(&g, grp, strlen(grp));
		/* k < 0: a 33rd distinct group, looked at in a later pass */
		if (k < 0 || g.running[k] >= s->opt.store_limit) {
			refused = true;
			continue;
		}
		snprintf(cmd, sizeof(cmd), "PUT %s %s\n", q->id, grp);
		if (sim_store_expect_ok(s, cmd) != 0)
			return;
		g.running[k]++;
		q->store_put = true;
		st->c.admitted++;
		sim_query_admitted(s, q);
	}
	if (refused)
		st->c.refused++;
	sim_store_expect_ok(s, "UNLOCK\n");
}

void
sim_store_pass(struct sim *s)
{
	struct sim_store *st = &s->store;
	uint64_t t0, us;

	if (st->wait_head == SIM_STORE_NIL)
		return;
	st->next_pass_ms = s->now_ms + s->opt.store_retry_ms;
	if (st->fd < 0 && sim_store_connect(s) != 0) {
		st->c.errors++;
		return;
	}
	t0 = sim_store_us();
	st->c.passes++;
	sim_store_pass_locked(s);
	us = sim_store_us() - t0;
	st->c.pass_us_total += us;
	if (us > st->c.pass_us_max)
		st->c.pass_us_max = us;
}

void
sim_store_tick(struct sim *s)
{
	if (s->opt.store_set && s->store.wait_head != SIM_STORE_NIL &&
	    s->now_ms >= s->store.next_pass_ms)
		sim_store_pass(s);
}

void
sim_store_remove(struct sim *s, struct sim_query *q)
{
	char cmd[SIM_QUERY_ID_BYTES + 16], ans[SIM_STORE_LINE_MAX];

	if (!q->store_put)
		return;
	q->store_put = false;
	if (s->store.fd < 0 && sim_store_connect(s) != 0) {
		s->store.c.errors++;
		return;
	}
	snprintf(cmd, sizeof(cmd), "REMOVE %s\n", q->id);
	if (sim_store_call(s, cmd, ans, sizeof(ans)) == 0)
		s->store.c.removes++;
}

void
sim_store_stats(struct sim *s, struct sim_sb *b)
{
	const struct sim_store *st = &s->store;

	sim_sb_printf(b,
		      "{\"enabled\":%s,\"limit\":%u,\"retry_ms\":%u,\"connected\":%s,"
		      "\"passes\":%" PRIu64 ",\"admitted\":%" PRIu64 ",\"refused\":%" PRIu64
		      ",\"lock_timeouts\":%" PRIu64 ",\"errors\":%" PRIu64
		      ",\"records_read\":%" PRIu64 ",\"bytes_read\":%" PRIu64
		      ",\"removes\":%" PRIu64 ",\"pass_us_mean\":%" PRIu64
		      ",\"pass_us_max\":%" PRIu64 "}",
		      s->opt.store_set ? "true" : "false", s->opt.store_limit,
		      s->opt.store_retry_ms, st->fd >= 0 ? "true" : "false", st->c.passes,
		      st->c.admitted, st->c.refused, st->c.lock_timeouts, st->c.errors,
		      st->c.records_read, st->c.bytes_read, st->c.removes,
		      st->c.passes > 0 ? st->c.pass_us_total / st->c.passes : 0,
		      st->c.pass_us_max);
}
