/*
 * sim_query.c: the coordinators qdcoordsim plays, as the clients see them.
 *
 * Every listening address is one coordinator with its own query-id suffix,
 * daily counter and counters. A query lives in a fixed table (live queries
 * plus a bounded history of final ones), found by id through a chained hash.
 * Its life is driven by time and by the client: deadlines (end of QUEUED,
 * data ready, abandonment, history expiry) sit in the process's deadline
 * heap; the pages are computed when the client asks for the token the last
 * page announced, and the last page is remembered so a re-GET of the same
 * token answers the same page. The HTTP layer hands every complete request
 * to sim_handle(), which answers it at once or asks for a long poll.
 *
 * The answers follow Trino's JSON (QueryResults, QueryInfo, ServerInfo,
 * ClusterStats); the directives and /v1/simulator endpoints are ours and
 * are described in docs/coordsim.md.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>

#include "sim.h"

#define SIM_NIL SIM_NO_TIMER
#define SIM_OTHER_NAME "(other)"
#define SIM_ROWS_LIMIT 1000000000000ull	   /* 10^12 rows */
#define SIM_ROW_BYTES_LIMIT (1ull << 30)   /* 1 GiB per value */
#define SIM_MS_LIMIT 86400000ull	   /* a day */
#define SIM_STATUS_COUNT_LIMIT 1000000000ull

/* Trino's error codes (io.trino.spi.StandardErrorCode) the simulator uses. */
struct sim_error_code {
	const char *name;
	int code;
	const char *type;
};

static const struct sim_error_code sim_errors[] = {
	{"GENERIC_USER_ERROR", 0, "USER_ERROR"},
	{"SYNTAX_ERROR", 1, "USER_ERROR"},
	{"ABANDONED_QUERY", 2, "USER_ERROR"},
	{"USER_CANCELED", 3, "USER_ERROR"},
	{"GENERIC_INTERNAL_ERROR", 65536, "INTERNAL_ERROR"},
	{"NO_NODES_AVAILABLE", 65541, "INTERNAL_ERROR"},
	{"SERVER_SHUTTING_DOWN", 65545, "INTERNAL_ERROR"},
	{"GENERIC_INSUFFICIENT_RESOURCES", 131072, "INSUFFICIENT_RESOURCES"},
	{"EXCEEDED_GLOBAL_MEMORY_LIMIT", 131073, "INSUFFICIENT_RESOURCES"},
	{"QUERY_QUEUE_FULL", 131074, "INSUFFICIENT_RESOURCES"},
	{"EXCEEDED_TIME_LIMIT", 131075, "INSUFFICIENT_RESOURCES"},
};
#define SIM_ERR_SYNTAX 1
#define SIM_ERR_ABANDONED 2
#define SIM_ERR_CANCELED 3
#define SIM_ERR_INTERNAL 4
#define SIM_ERR_QUEUE_FULL 9
#define SIM_ERRORS_COUNT (int)(sizeof(sim_errors) / sizeof(sim_errors[0]))

/* Trino's query-id alphabet: base 32 without 0, 1, l and o. */
static const char sim_base32[] = "abcdefghijkmnpqrstuvwxyz23456789";

static const char *const sim_state_names[] = {
	[SIM_Q_QUEUED] = "QUEUED",
	[SIM_Q_RUNNING] = "RUNNING",
	[SIM_Q_FINISHED] = "FINISHED",
	[SIM_Q_FAILED] = "FAILED",
	[SIM_Q_CANCELED] = "FAILED",
	[SIM_Q_ABANDONED] = "FAILED",
};

static bool
sim_state_final(enum sim_qstate st)
{
	return st >= SIM_Q_FINISHED;
}

/* ---- name maps ----------------------------------------------------------- */

static uint64_t
sim_hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* The slot of <name> in <m>, added if new; "(other)" once <m> is full;
 * SIM_NIL without memory. */
static uint32_t
sim_map_slot(struct sim_name_map *m, const char *name)
{
	uint32_t h, mask;
	unsigned int pass;

	if (m->e == NULL) {
		uint32_t cap = 4;

		while (cap < 2 * (m->limit + 1))
			cap *= 2;
		m->e = calloc(cap, sizeof(*m->e));
		if (m->e == NULL)
			return SIM_NIL;
		m->cap = cap;
	}
	mask = m->cap - 1;
	for (pass = 0; pass < 2; pass++) {
		h = (uint32_t)sim_hash(name, strlen(name)) & mask;
		while (m->e[h].used) {
			if (strcmp(m->e[h].name, name) == 0)
				return h;
			h = (h + 1) & mask;
		}
		/* The "(other)" entry is allowed beyond the limit. */
		if (m->used < m->limit || strcmp(name, SIM_OTHER_NAME) == 0) {
			m->e[h].used = true;
			snprintf(m->e[h].name, sizeof(m->e[h].name), "%s", name);
			m->used++;
			return h;
		}
		name = SIM_OTHER_NAME;
	}
	return SIM_NIL;
}

static void
sim_map_inc(struct sim_name_map *m, uint32_t slot)
{
	if (slot == SIM_NIL)
		return;
	m->e[slot].cur++;
	if (m->e[slot].cur > m->e[slot].max)
		m->e[slot].max = m->e[slot].cur;
}

static void
sim_map_dec(struct sim_name_map *m, uint32_t slot)
{
	if (slot == SIM_NIL)
		return;
	assert(m->e[slot].cur > 0);
	m->e[slot].cur--;
}

static void
sim_map_reset(struct sim_name_map *m)
{
	uint32_t i;

	for (i = 0; m->e != NULL && i < m->cap; i++)
		m->e[i].max = m->e[i].cur;
}

static void
sim_map_free(struct sim_name_map *m)
{
	free(m->e);
	m->e = NULL;
	m->used = 0;
}

/* ---- counters ------------------------------------------------------------ */

static struct sim_counters *
sim_ctr(struct sim *s, unsigned int coord, int which)
{
	return which == 0 ? &s->coords[coord].c : &s->total;
}

/* The query starts counting as running (at POST). */
static void
sim_running_inc(struct sim *s, struct sim_query *q)
{
	int w;

	for (w = 0; w < 2; w++) {
		struct sim_counters *c = sim_ctr(s, q->coord, w);

		c->running_now++;
		if (c->running_now > c->max_running)
			c->max_running = c->running_now;
		q->user_slot[w] = sim_map_slot(&c->by_user, q->user);
		q->source_slot[w] = sim_map_slot(&c->by_source, q->source);
		sim_map_inc(&c->by_user, q->user_slot[w]);
		sim_map_inc(&c->by_source, q->source_slot[w]);
	}
}

static void
sim_running_dec(struct sim *s, struct sim_query *q)
{
	int w;

	for (w = 0; w < 2; w++) {
		struct sim_counters *c = sim_ctr(s, q->coord, w);

		assert(c->running_now > 0);
		c->running_now--;
		sim_map_dec(&c->by_user, q->user_slot[w]);
		sim_map_dec(&c->by_source, q->source_slot[w]);
	}
}

static void
sim_queued_add(struct sim *s, unsigned int coord, int delta)
{
	int w;

	for (w = 0; w < 2; w++) {
		struct sim_counters *c = sim_ctr(s, coord, w);

		assert(delta > 0 || c->queued_now > 0);
		c->queued_now = (uint64_t)((int64_t)c->queued_now + delta);
	}
}

/* --admission-store: <q> starts or stops waiting for the store's admission
 * (not running meanwhile; in waiting_now and the store's list, oldest first). */
static void
sim_wait_add(struct sim *s, struct sim_query *q)
{
	uint32_t slot = (uint32_t)(q - s->queries);
	int w;

	assert(!q->store_wait);
	q->store_wait = true;
	q->wait_next = SIM_NIL;
	q->wait_prev = s->store.wait_tail;
	if (s->store.wait_tail != SIM_NIL)
		s->queries[s->store.wait_tail].wait_next = slot;
	else
		s->store.wait_head = slot;
	s->store.wait_tail = slot;
	for (w = 0; w < 2; w++)
		sim_ctr(s, q->coord, w)->waiting_now++;
}

static void
sim_wait_remove(struct sim *s, struct sim_query *q)
{
	int w;

	assert(q->store_wait);
	if (q->wait_prev != SIM_NIL)
		s->queries[q->wait_prev].wait_next = q->wait_next;
	else
		s->store.wait_head = q->wait_next;
	if (q->wait_next != SIM_NIL)
		s->queries[q->wait_next].wait_prev = q->wait_prev;
	else
		s->store.wait_tail = q->wait_prev;
	q->wait_prev = q->wait_next = SIM_NIL;
	q->store_wait = false;
	for (w = 0; w < 2; w++) {
		struct sim_counters *c = sim_ctr(s, q->coord, w);

		assert(c->waiting_now > 0);
		c->waiting_now--;
	}
}

#define SIM_COUNT(s, coord, field)                                                       \
	do {                                                                             \
		(s)->coords[(coord)].c.field++;                                          \
		(s)->total.field++;                                                      \
	} while (0)

static void
sim_counters_reset(struct sim_counters *c)
{
	c->posts = c->submitted = c->finished = c->failed = 0;
	c->canceled = c->abandoned = c->deletes = c->rejected = c->lost = 0;
	c->max_running = c->running_now;
	sim_map_reset(&c->by_user);
	sim_map_reset(&c->by_source);
}

/* ---- the query table ----------------------------------------------------- */

int
sim_queries_init(struct sim *s)
{
	uint32_t i, buckets = 16;

	s->query_slots = s->opt.max_queries + s->opt.history + 1;
	while (buckets < s->query_slots)
		buckets *= 2;
	s->queries = calloc(s->query_slots, sizeof(*s->queries));
	s->query_free = calloc(s->query_slots, sizeof(*s->query_free));
	s->id_hash = malloc(buckets * sizeof(*s->id_hash));
	s->status_memo = calloc(s->opt.status_memory, sizeof(*s->status_memo));
	if (s->queries == NULL || s->query_free == NULL || s->id_hash == NULL ||
	    s->status_memo == NULL)
		return -ENOMEM;
	s->id_hash_mask = buckets - 1;
	for (i = 0; i < buckets; i++)
		s->id_hash[i] = SIM_NIL;
	for (i = 0; i < s->query_slots; i++) {
		s->queries[i].timer.heap_pos = SIM_NO_TIMER;
		s->queries[i].timer.index = i;
		s->queries[i].timer.kind = SIM_TIMER_QUERY;
		s->query_free[s->query_slots - 1 - i] = i;
	}
	s->query_free_count = s->query_slots;
	s->hist_head = s->hist_tail = SIM_NIL;
	s->total.by_user.limit = s->opt.max_names;
	s->total.by_source.limit = s->opt.max_names;
	return 0;
}

void
sim_queries_fini(struct sim *s)
{
	uint32_t i;

	for (i = 0; s->queries != NULL && i < s->query_slots; i++)
		free(s->queries[i].sql);
	for (i = 0; i < SIM_LISTEN_MAX; i++) {
		sim_map_free(&s->coords[i].c.by_user);
		sim_map_free(&s->coords[i].c.by_source);
	}
	sim_map_free(&s->total.by_user);
	sim_map_free(&s->total.by_source);
	free(s->queries);
	free(s->query_free);
	free(s->id_hash);
	free(s->status_memo);
}

static uint32_t
sim_id_bucket(const struct sim *s, const char *id, size_t len)
{
	return (uint32_t)sim_hash(id, len) & s->id_hash_mask;
}

/* The query with <id> (of <len> bytes), or NULL. */
static struct sim_query *
sim_query_find(struct sim *s, const char *id, size_t len)
{
	uint32_t i;

	if (len != SIM_QUERY_ID_BYTES)
		return NULL;
	for (i = s->id_hash[sim_id_bucket(s, id, len)]; i != SIM_NIL; i = s->queries[i].hash_next)
		if (memcmp(s->queries[i].id, id, len) == 0)
			return &s->queries[i];
	return NULL;
}

static uint32_t
sim_slot_of(const struct sim *s, const struct sim_query *q)
{
	return (uint32_t)(q - s->queries);
}

static void
sim_hist_unlink(struct sim *s, struct sim_query *q)
{
	if (q->hist_prev != SIM_NIL)
		s->queries[q->hist_prev].hist_next = q->hist_next;
	else
		s->hist_head = q->hist_next;
	if (q->hist_next != SIM_NIL)
		s->queries[q->hist_next].hist_prev = q->hist_prev;
	else
		s->hist_tail = q->hist_prev;
	q->hist_prev = q->hist_next = SIM_NIL;
	s->hist_count--;
}

/* Remove <q> from the table (it must be final or its counts undone). */
static void
sim_query_free(struct sim *s, struct sim_query *q)
{
	uint32_t slot = sim_slot_of(s, q);
	uint32_t *link = &s->id_hash[sim_id_bucket(s, q->id, SIM_QUERY_ID_BYTES)];

	assert(!q->store_wait && !q->store_put);
	while (*link != slot) {
		assert(*link != SIM_NIL);
		link = &s->queries[*link].hash_next;
	}
	*link = q->hash_next;
	if (sim_state_final(q->state))
		sim_hist_unlink(s, q);
	else
		s->live_queries--;
	sim_timer_cancel(s, &q->timer);
	free(q->sql);
	q->sql = NULL;
	q->used = false;
	q->gen++;
	s->query_free[s->query_free_count++] = slot;
}

/* The next deadline of <q>: its phase change, abandonment or expiry. */
static void
sim_query_schedule(struct sim *s, struct sim_query *q)
{
	uint64_t t;

	if (sim_state_final(q->state)) {
		t = q->ended_ms + (uint64_t)s->opt.history_s * 1000u;
	} else {
		t = q->last_poll_ms + (uint64_t)s->opt.client_timeout_s * 1000u;
		if (q->state == SIM_Q_QUEUED && q->dispatched_ms < t)
			t = q->dispatched_ms;
		if (q->state == SIM_Q_RUNNING && q->d.fail == SIM_FAIL_RUNNING) {
			uint64_t ready = q->dispatched_ms + q->d.run_ms;

			if (ready < t)
				t = ready;
		}
	}
	sim_timer_set(s, &q->timer, t);
}

/* <q> reaches the final state <st>. */
static void
sim_query_end(struct sim *s, struct sim_query *q, enum sim_qstate st)
{
	uint32_t slot = sim_slot_of(s, q);

	assert(!sim_state_final(q->state) && sim_state_final(st));
	if (q->state == SIM_Q_QUEUED)
		sim_queued_add(s, q->coord, -1);
	if (q->counted)
		sim_running_dec(s, q);
	q->counted = false;
	if (q->store_wait)
		sim_wait_remove(s, q);
	if (q->store_put) {
		/* its record leaves the store; a waiting query may fit now (the main
		 * loop's sim_store_tick runs the pass: never inside another pass) */
		sim_store_remove(s, q);
		s->store.next_pass_ms = s->now_ms;
	}
	switch (st) {
	case SIM_Q_FINISHED:
		SIM_COUNT(s, q->coord, finished);
		break;
	case SIM_Q_FAILED:
		SIM_COUNT(s, q->coord, failed);
		break;
	case SIM_Q_CANCELED:
		SIM_COUNT(s, q->coord, canceled);
		break;
	case SIM_Q_ABANDONED:
		SIM_COUNT(s, q->coord, abandoned);
		break;
	default:
		assert(0);
	}
	q->state = st;
	q->ended_ms = s->now_ms;
	s->live_queries--;
	/* to the end of the history list */
	q->hist_next = SIM_NIL;
	q->hist_prev = s->hist_tail;
	if (s->hist_tail != SIM_NIL)
		s->queries[s->hist_tail].hist_next = slot;
	else
		s->hist_head = slot;
	s->hist_tail = slot;
	s->hist_count++;
	/* Forget the oldest beyond --history; never the one ending now, whose
	 * final page is about to be written. */
	while (s->hist_count > s->opt.history && s->hist_head != slot)
		sim_query_free(s, &s->queries[s->hist_head]);
	sim_query_schedule(s, q);
}

/* Apply the changes time brings to <q>: dispatch, failure directives,
 * abandonment. */
static void
sim_query_advance(struct sim *s, struct sim_query *q)
{
	if (sim_state_final(q->state))
		return;
	if (s->now_ms >= q->last_poll_ms + (uint64_t)s->opt.client_timeout_s * 1000u) {
		sim_query_end(s, q, SIM_Q_ABANDONED);
		return;
	}
	if (q->state == SIM_Q_QUEUED && s->now_ms >= q->dispatched_ms) {
		assert(!q->store_wait);
		if (q->d.fail == SIM_FAIL_QUEUED) {
			sim_query_end(s, q, SIM_Q_FAILED);
			return;
		}
		sim_queued_add(s, q->coord, -1);
		q->state = SIM_Q_RUNNING;
	}
	if (q->state == SIM_Q_RUNNING && q->d.fail == SIM_FAIL_RUNNING &&
	    s->now_ms >= q->dispatched_ms + q->d.run_ms) {
		sim_query_end(s, q, SIM_Q_FAILED);
		return;
	}
}

void
sim_query_timer(struct sim *s, uint32_t slot)
{
	struct sim_query *q = &s->queries[slot];

	assert(q->used);
	if (sim_state_final(q->state)) {
		if (s->now_ms >= q->ended_ms + (uint64_t)s->opt.history_s * 1000u) {
			sim_query_free(s, q);
			return;
		}
	} else {
		sim_query_advance(s, q);
	}
	sim_query_schedule(s, q);
}

void
sim_query_admitted(struct sim *s, struct sim_query *q)
{
	assert(q->used && q->store_wait && q->state == SIM_Q_QUEUED && !q->counted);
	sim_wait_remove(s, q);
	q->counted = true;
	sim_running_inc(s, q);
	/* queue_ms counts from the admission */
	q->dispatched_ms = s->now_ms + q->d.queue_ms;
	sim_query_advance(s, q);
	sim_query_schedule(s, q);
}

void
sim_coord_forget(struct sim *s, unsigned int coord)
{
	uint32_t i;

	for (i = 0; i < s->query_slots; i++) {
		struct sim_query *q = &s->queries[i];

		if (!q->used || q->coord != coord)
			continue;
		if (!sim_state_final(q->state)) {
			if (q->state == SIM_Q_QUEUED)
				sim_queued_add(s, coord, -1);
			if (q->counted)
				sim_running_dec(s, q);
			q->counted = false;
			if (q->store_wait)
				sim_wait_remove(s, q);
			sim_store_remove(s, q);
			SIM_COUNT(s, coord, lost);
		}
		sim_query_free(s, q);
	}
}

/* ---- coordinators and ids ------------------------------------------------ */

void
sim_coord_start(struct sim *s, unsigned int coord)
{
	struct sim_coord *c = &s->coords[coord];
	unsigned int i, other;
	bool clash;

	/* A fresh suffix, distinct from the other addresses' (a restart of a
	 * real coordinator draws a new one too). */
	do {
		for (i = 0; i < 5; i++)
			c->suffix[i] = sim_base32[sim_random(s) % 32];
		c->suffix[5] = '\0';
		clash = false;
		for (other = 0; other < s->opt.listen_count; other++)
			if (other != coord && strcmp(s->coords[other].suffix, c->suffix) == 0)
				clash = true;
	} while (clash);
	c->day = 0;
	c->counter = 0;
	c->start_ms = s->now_ms;
	c->c.by_user.limit = s->opt.max_names;
	c->c.by_source.limit = s->opt.max_names;
}

/* A new query id of <coord> into <id> (SIM_QUERY_ID_BYTES + 1). */
static void
sim_new_id(struct sim *s, unsigned int coord, uint64_t wall_ms, char *id)
{
	struct sim_coord *c = &s->coords[coord];
	time_t secs = (time_t)(wall_ms / 1000u);
	uint32_t day = (uint32_t)(wall_ms / 86400000u);
	struct tm tm;
	int n;

	gmtime_r(&secs, &tm);
	if (day != c->day) {
		c->day = day;
		c->counter = 0;
	}
	/* Trino waits for the next second after 99999; we cannot wait, so the
	 * counter wraps (an id still differs by its time unless 100000 queries
	 * arrive within one second). */
	if (c->counter > 99999)
		c->counter = 0;
	n = snprintf(id, SIM_QUERY_ID_BYTES + 1, "%04d%02d%02d_%02d%02d%02d_%05u_%s",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, c->counter, c->suffix);
	assert(n == SIM_QUERY_ID_BYTES);
	c->counter++;
}

/* ---- directives ---------------------------------------------------------- */

static int
sim_directive_u64(const char *v, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t x = 0;
	size_t i;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		if (x > (max - (uint64_t)(v[i] - '0')) / 10)
			return -ERANGE;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

static bool
sim_word_is(const char *w, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

static bool
sim_at_least(uint64_t x, uint64_t min)
{
	return x >= min;
}

/* One "key=value" word of a sim: comment. */
static void
sim_directive_word(const char *w, size_t n, struct sim_directives *d)
{
	const char *eq = memchr(w, '=', n);
	size_t klen, vlen;
	const char *v;
	uint64_t x;
	int i;

	if (d->bad[0] != '\0')
		return;
	if (eq == NULL) {
		snprintf(d->bad, sizeof(d->bad), "directive '%.*s' is not key=value",
			 (int)(n > 40 ? 40 : n), w);
		return;
	}
	klen = (size_t)(eq - w);
	v = eq + 1;
	vlen = n - klen - 1;
#define SIM_NUM(key, field, min, max)                                                     \
	if (sim_word_is(w, klen, key)) {                                                 \
		if (sim_directive_u64(v, vlen, (max), &x) != 0 || !sim_at_least(x, (min))) \
			snprintf(d->bad, sizeof(d->bad), "%s=%.*s: expected %llu..%llu", \
				 key, (int)(vlen > 24 ? 24 : vlen), v,                   \
				 (unsigned long long)(min), (unsigned long long)(max));  \
		else                                                                     \
			d->field = x;                                                    \
		return;                                                                  \
	}
	SIM_NUM("rows", rows, 0, SIM_ROWS_LIMIT)
	SIM_NUM("page_rows", page_rows, 1, SIM_ROWS_LIMIT)
	SIM_NUM("row_bytes", row_bytes, 0, SIM_ROW_BYTES_LIMIT)
	SIM_NUM("queue_ms", queue_ms, 0, SIM_MS_LIMIT)
	SIM_NUM("run_ms", run_ms, 0, SIM_MS_LIMIT)
	SIM_NUM("page_ms", page_ms, 0, SIM_MS_LIMIT)
	SIM_NUM("status_count", status_count, 1, SIM_STATUS_COUNT_LIMIT)
#undef SIM_NUM
	if (sim_word_is(w, klen, "status")) {
		if (sim_directive_u64(v, vlen, 599, &x) != 0 || x < 300)
			snprintf(d->bad, sizeof(d->bad), "status=%.*s: expected 300..599",
				 (int)(vlen > 24 ? 24 : vlen), v);
		else
			d->status = (unsigned int)x;
		return;
	}
	if (sim_word_is(w, klen, "fail")) {
		if (sim_word_is(v, vlen, "submit"))
			d->fail = SIM_FAIL_SUBMIT;
		else if (sim_word_is(v, vlen, "queued"))
			d->fail = SIM_FAIL_QUEUED;
		else if (sim_word_is(v, vlen, "running"))
			d->fail = SIM_FAIL_RUNNING;
		else
			snprintf(d->bad, sizeof(d->bad),
				 "fail=%.*s: expected submit, queued or running",
				 (int)(vlen > 24 ? 24 : vlen), v);
		return;
	}
	if (sim_word_is(w, klen, "error")) {
		for (i = 0; i < SIM_ERRORS_COUNT; i++) {
			if (sim_word_is(v, vlen, sim_errors[i].name)) {
				d->error = i;
				return;
			}
		}
		snprintf(d->bad, sizeof(d->bad), "error=%.*s: not a known error name",
			 (int)(vlen > 40 ? 40 : vlen), v);
		return;
	}
	snprintf(d->bad, sizeof(d->bad), "unknown directive '%.*s'",
		 (int)(klen > 40 ? 40 : klen), w);
}

/* The words of the comment text <p>..<end> if it starts with "sim:". */
static void
sim_directive_comment(const char *p, const char *end, struct sim_directives *d)
{
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (end - p < 4 || memcmp(p, "sim:", 4) != 0)
		return;
	p += 4;
	for (;;) {
		const char *w;

		while (p < end && isspace((unsigned char)*p))
			p++;
		if (p == end)
			return;
		w = p;
		while (p < end && !isspace((unsigned char)*p))
			p++;
		sim_directive_word(w, (size_t)(p - w), d);
	}
}

void
sim_parse_directives(const char *sql, size_t len, struct sim_directives *d)
{
	const char *p = sql, *end = sql + len;
	char quote = 0;

	memset(d, 0, sizeof(*d));
	d->rows = 1;
	d->page_rows = 1000;
	d->row_bytes = 8;
	d->error = -1;
	while (p < end) {
		if (quote != 0) {
			if (*p == quote)
				quote = 0;
			p++;
		} else if (*p == '\'' || *p == '"') {
			quote = *p++;
		} else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			const char *c = p + 2, *close = c;

			while (close + 1 < end && !(close[0] == '*' && close[1] == '/'))
				close++;
			if (close + 1 >= end)
				close = end;
			sim_directive_comment(c, close, d);
			p = close + 2 < end ? close + 2 : end;
		} else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
			const char *c = p + 2, *eol = memchr(c, '\n', (size_t)(end - c));

			if (eol == NULL)
				eol = end;
			sim_directive_comment(c, eol, d);
			p = eol;
		} else {
			p++;
		}
	}
}

/* Skip blanks and comments at <p>. */
static const char *
sim_skip_blank(const char *p, const char *end)
{
	while (p < end) {
		if (isspace((unsigned char)*p)) {
			p++;
		} else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
			const char *eol = memchr(p, '\n', (size_t)(end - p));

			p = eol == NULL ? end : eol + 1;
		} else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			p += 2;
			while (p + 1 < end && !(p[0] == '*' && p[1] == '/'))
				p++;
			p = p + 2 <= end ? p + 2 : end;
		} else {
			break;
		}
	}
	return p;
}

static bool
sim_keyword(const char **pp, const char *end, const char *kw)
{
	size_t n = strlen(kw);
	const char *p = *pp;

	if ((size_t)(end - p) < n || strncasecmp(p, kw, n) != 0)
		return false;
	if ((size_t)(end - p) > n && !isspace((unsigned char)p[n]))
		return false;
	*pp = sim_skip_blank(p + n, end);
	return true;
}

/* Recognise USE, SET SESSION and RESET SESSION: the statements whose answer
 * carries session headers. <arg> gets a header-safe argument. */
static enum sim_stmt
sim_statement_kind(const char *sql, size_t len, char *arg, size_t arg_max)
{
	const char *p = sim_skip_blank(sql, sql + len), *end = sql + len;
	enum sim_stmt kind;
	size_t n = 0;

	if (sim_keyword(&p, end, "USE"))
		kind = SIM_STMT_USE;
	else if (sim_keyword(&p, end, "SET") && sim_keyword(&p, end, "SESSION"))
		kind = SIM_STMT_SET_SESSION;
	else if (p = sim_skip_blank(sql, end),
		 sim_keyword(&p, end, "RESET") && sim_keyword(&p, end, "SESSION"))
		kind = SIM_STMT_RESET_SESSION;
	else
		return SIM_STMT_SELECT;
	/* keep printable characters without blanks and quotes, up to ';' */
	for (; p < end && *p != ';' && n + 1 < arg_max; p++) {
		if (*p <= ' ' || *p == '\'' || *p == '"' || (unsigned char)*p >= 0x7f)
			continue;
		arg[n++] = *p;
	}
	arg[n] = '\0';
	if (n == 0)
		return SIM_STMT_SELECT;
	return kind;
}

/* ---- JSON answers -------------------------------------------------------- */

struct sim_ctx {
	struct sim *s;
	const struct sim_req_view *r;
	struct sim_resp *resp;
	char base[SIM_HOST_MAX_BYTES + 64]; /* "http://host" of the URIs */
};

static const char *
sim_hdr_prefix(enum sim_flavour f)
{
	return f == SIM_FLAVOUR_PRESTO ? "X-Presto-" : "X-Trino-";
}

static void
sim_resp_header(struct sim_resp *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sim_resp_header(struct sim_resp *resp, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(resp->headers + resp->headers_len,
		      sizeof(resp->headers) - resp->headers_len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(resp->headers) - resp->headers_len)
		resp->headers_len += (size_t)n;
	else
		resp->headers[resp->headers_len] = '\0';
}

/* Hand the text of <b> to <resp> as its body (rows spliced at <split>). */
static void
sim_resp_body(struct sim_resp *resp, struct sim_sb *b, size_t split, uint64_t rows_first,
	      uint64_t rows_count, uint64_t row_bytes)
{
	if (b->overflow) {
		sim_sb_free(b);
		sim_sb_init(b, 256);
		sim_sb_str(b, "{\"error\":{\"message\":\"answer too large\",\"errorCode\":65536,"
			      "\"errorName\":\"GENERIC_INTERNAL_ERROR\","
			      "\"errorType\":\"INTERNAL_ERROR\"}}");
		resp->status = 500;
		split = b->len;
		rows_count = 0;
	}
	if (b->p == NULL)
		sim_sb_add(b, "", 0);
	sim_body_set(&resp->body, b->p, b->len, split, rows_first, rows_count, row_bytes);
	b->p = NULL;
	sim_sb_free(b);
}

static void
sim_error_json(struct sim_sb *b, const struct sim_error_code *e, const char *message,
	       enum sim_flavour f)
{
	sim_sb_str(b, "{\"message\":");
	sim_sb_json(b, message, strlen(message));
	sim_sb_printf(b, ",\"errorCode\":%d,\"errorName\":\"%s\",\"errorType\":\"%s\","
			 "\"failureInfo\":{\"type\":\"%s\",\"message\":",
		      e->code, e->name, e->type,
		      f == SIM_FLAVOUR_PRESTO ? "com.facebook.presto.spi.PrestoException"
					      : "io.trino.spi.TrinoException");
	sim_sb_json(b, message, strlen(message));
	sim_sb_str(b, ",\"suppressed\":[],\"stack\":[]}}");
}

/* A plain error answer: {"error": {...}} with <status>. */
static void
sim_answer_error(struct sim_ctx *x, unsigned int status, int err, const char *message)
{
	struct sim_sb b;

	sim_sb_init(&b, 4096);
	sim_sb_str(&b, "{\"error\":");
	sim_error_json(&b, &sim_errors[err], message, x->r->flavour);
	sim_sb_str(&b, "}");
	x->resp->status = status;
	sim_resp_body(x->resp, &b, b.len, 0, 0, 0);
}

/* The error a final failed query shows, and its message. */
static const struct sim_error_code *
sim_query_error(const struct sim_query *q, char *msg, size_t msg_max)
{
	int e;

	switch (q->state) {
	case SIM_Q_CANCELED:
		snprintf(msg, msg_max, "Query was canceled");
		return &sim_errors[SIM_ERR_CANCELED];
	case SIM_Q_ABANDONED:
		snprintf(msg, msg_max,
			 "Query %s was abandoned by the client, as it may have exited or stopped "
			 "checking for query results",
			 q->id);
		return &sim_errors[SIM_ERR_ABANDONED];
	default:
		break;
	}
	if (q->d.bad[0] != '\0') {
		snprintf(msg, msg_max, "line 1:1: qdcoordsim: %s", q->d.bad);
		return &sim_errors[SIM_ERR_SYNTAX];
	}
	switch (q->d.fail) {
	case SIM_FAIL_SUBMIT:
		e = q->d.error >= 0 ? q->d.error : SIM_ERR_SYNTAX;
		snprintf(msg, msg_max, "qdcoordsim: query failed at submission (fail=submit)");
		break;
	case SIM_FAIL_QUEUED:
		e = q->d.error >= 0 ? q->d.error : SIM_ERR_QUEUE_FULL;
		snprintf(msg, msg_max, "qdcoordsim: query failed in the queue (fail=queued)");
		break;
	default:
		e = q->d.error >= 0 ? q->d.error : SIM_ERR_INTERNAL;
		snprintf(msg, msg_max, "qdcoordsim: query failed while running (fail=running)");
		break;
	}
	return &sim_errors[e];
}

static void
sim_uri(struct sim_sb *b, const struct sim_ctx *x, const struct sim_query *q,
	enum sim_uri_kind kind, uint64_t token)
{
	sim_sb_printf(b, "\"%s/v1/statement/%s/%s/%s/%" PRIu64 "\"", x->base,
		      kind == SIM_URI_QUEUED ? "queued" : "executing", q->id, q->slug, token);
}

static uint64_t
sim_page_rows(const struct sim_query *q, uint64_t page, uint64_t *first)
{
	uint64_t f = page * q->d.page_rows;

	*first = f;
	if (f >= q->d.rows)
		return 0;
	return q->d.rows - f < q->d.page_rows ? q->d.rows - f : q->d.page_rows;
}

/* Write the QueryResults of page <pg> of <q>; the data rows are generated
 * while the answer is sent. */
static void
sim_answer_page(struct sim_ctx *x, struct sim_query *q, const struct sim_page *pg)
{
	bool final = pg->next_kind == SIM_URI_NONE;
	bool failed = pg->state == SIM_Q_FAILED || pg->state == SIM_Q_CANCELED ||
		      pg->state == SIM_Q_ABANDONED;
	uint64_t rows_first = 0, rows_count = 0, processed;
	bool special = q->stmt != SIM_STMT_SELECT;
	const char *pfx = sim_hdr_prefix(q->flavour);
	size_t split;
	struct sim_sb b;

	sim_sb_init(&b, SIM_JSON_MAX_BYTES);
	sim_sb_printf(&b, "{\"id\":\"%s\",\"infoUri\":\"%s/ui/query.html?%s\"", q->id, x->base,
		      q->id);
	if (!final && pg->next_kind == SIM_URI_EXECUTING && pg->kind == SIM_URI_EXECUTING)
		sim_sb_printf(&b,
			      ",\"partialCancelUri\":\"%s/v1/statement/executing/partialCancel/"
			      "%s/0/%s/%" PRIu64 "\"",
			      x->base, q->id, q->slug, pg->next_token);
	if (!final) {
		sim_sb_str(&b, ",\"nextUri\":");
		sim_uri(&b, x, q, pg->next_kind, pg->next_token);
	}
	if (pg->columns) {
		if (special)
			sim_sb_str(&b, ",\"columns\":[{\"name\":\"result\",\"type\":\"boolean\","
				       "\"typeSignature\":{\"rawType\":\"boolean\",\"arguments\":[]}}]");
		else
			sim_sb_str(&b, ",\"columns\":[{\"name\":\"c0\",\"type\":\"varchar\","
				       "\"typeSignature\":{\"rawType\":\"varchar\",\"arguments\":"
				       "[{\"kind\":\"LONG\",\"value\":2147483647}]}}]");
	}
	if (pg->data_page >= 0 && special) {
		sim_sb_str(&b, ",\"data\":[[true]]");
	} else if (pg->data_page >= 0) {
		rows_count = sim_page_rows(q, (uint64_t)pg->data_page, &rows_first);
		sim_sb_str(&b, ",\"data\":[");
	}
	split = b.len;
	if (pg->data_page >= 0 && !special)
		sim_sb_str(&b, "]");
	processed = pg->data_page >= 0 ? rows_first + rows_count : 0;
	if (pg->data_page < 0 && pg->state == SIM_Q_FINISHED)
		processed = q->d.rows;
	sim_sb_printf(&b,
		      ",\"stats\":{\"state\":\"%s\",\"queued\":%s,\"scheduled\":%s,"
		      "\"nodes\":%d,\"totalSplits\":%" PRIu64 ",\"queuedSplits\":0,"
		      "\"runningSplits\":%d,\"completedSplits\":%" PRIu64 ","
		      "\"cpuTimeMillis\":%" PRIu64 ",\"wallTimeMillis\":%" PRIu64 ","
		      "\"queuedTimeMillis\":%" PRIu64 ",\"elapsedTimeMillis\":%" PRIu64 ","
		      "\"processedRows\":%" PRIu64 ",\"processedBytes\":%" PRIu64 ","
		      "\"physicalInputBytes\":%" PRIu64 ",\"peakMemoryBytes\":%" PRIu64 ","
		      "\"spilledBytes\":0",
		      sim_state_names[pg->state], pg->state == SIM_Q_QUEUED ? "true" : "false",
		      pg->state == SIM_Q_QUEUED ? "false" : "true",
		      pg->state == SIM_Q_QUEUED ? 0 : 1, q->pages_total,
		      (pg->state == SIM_Q_RUNNING) ? 1 : 0,
		      q->d.page_rows ? (processed + q->d.page_rows - 1) / q->d.page_rows : 0,
		      pg->elapsed_ms - pg->queued_ms, pg->elapsed_ms - pg->queued_ms,
		      pg->queued_ms, pg->elapsed_ms, processed, processed * q->d.row_bytes,
		      processed * q->d.row_bytes,
		      rows_count * (q->d.row_bytes + 4));
	if (final && pg->state == SIM_Q_FINISHED)
		sim_sb_str(&b, ",\"progressPercentage\":100.0");
	sim_sb_str(&b, "}");
	if (failed) {
		char msg[512];
		const struct sim_error_code *e = sim_query_error(q, msg, sizeof(msg));

		sim_sb_str(&b, ",\"error\":");
		sim_error_json(&b, e, msg, q->flavour);
	}
	sim_sb_str(&b, ",\"warnings\":[]");
	if (special && final && pg->state == SIM_Q_FINISHED) {
		static const char *const types[] = {
			[SIM_STMT_USE] = "USE",
			[SIM_STMT_SET_SESSION] = "SET SESSION",
			[SIM_STMT_RESET_SESSION] = "RESET SESSION",
		};
		const char *dot = strchr(q->stmt_arg, '.');

		sim_sb_printf(&b, ",\"updateType\":\"%s\"", types[q->stmt]);
		if (q->stmt == SIM_STMT_USE && dot != NULL)
			sim_resp_header(x->resp, "%sSet-Catalog: %.*s\r\n%sSet-Schema: %s\r\n",
					pfx, (int)(dot - q->stmt_arg), q->stmt_arg, pfx,
					dot + 1);
		else if (q->stmt == SIM_STMT_USE)
			sim_resp_header(x->resp, "%sSet-Schema: %s\r\n", pfx, q->stmt_arg);
		else if (q->stmt == SIM_STMT_SET_SESSION)
			sim_resp_header(x->resp, "%sSet-Session: %s\r\n", pfx, q->stmt_arg);
		else
			sim_resp_header(x->resp, "%sClear-Session: %s\r\n", pfx, q->stmt_arg);
	}
	sim_sb_str(&b, "}");
	x->resp->status = 200;
	sim_resp_body(x->resp, &b, split, rows_first, rows_count, q->d.row_bytes);
}

static void
sim_page_times(const struct sim *s, const struct sim_query *q, struct sim_page *pg)
{
	uint64_t end = q->ended_ms != 0 ? q->ended_ms : s->now_ms;
	uint64_t dispatched = q->dispatched_ms < end ? q->dispatched_ms : end;

	pg->elapsed_ms = end - q->created_ms;
	pg->queued_ms = dispatched - q->created_ms;
}

/* ---- POST /v1/statement -------------------------------------------------- */

/* status=NNN with status_count=N: true while this text has been answered
 * with the status fewer than N times on this address. */
static bool
sim_status_due(struct sim *s, unsigned int coord, const struct sim_directives *d,
	       const char *sql, size_t len)
{
	uint64_t h = sim_hash(sql, len) ^ ((uint64_t)coord * 0x9e3779b97f4a7c15ull);
	struct sim_status_memo *m;

	if (d->status_count == 0)
		return true;
	m = &s->status_memo[h % s->opt.status_memory];
	if (!m->used || m->hash != h || m->coord != coord) {
		m->used = true;
		m->hash = h;
		m->coord = coord;
		m->seen = 0;
	}
	if (m->seen >= d->status_count)
		return false;
	m->seen++;
	return true;
}

static void
sim_post_statement(struct sim_ctx *x)
{
	struct sim *s = x->s;
	const struct sim_req_view *r = x->r;
	unsigned int coord = r->coord;
	struct sim_directives d;
	struct sim_query *q;
	uint32_t slot, bucket;
	struct sim_page pg;
	size_t keep;

	SIM_COUNT(s, coord, posts);
	sim_parse_directives(r->body, r->body_len, &d);
	if (d.status != 0 && d.bad[0] == '\0' &&
	    sim_status_due(s, coord, &d, r->body, r->body_len)) {
		char msg[128];

		SIM_COUNT(s, coord, rejected);
		snprintf(msg, sizeof(msg), "qdcoordsim: status=%u directive", d.status);
		if (d.status == 503 || d.status == 429)
			sim_resp_header(x->resp, "Retry-After: 1\r\n");
		sim_answer_error(x, d.status, SIM_ERR_INTERNAL, msg);
		return;
	}
	if (r->body_len == 0) {
		sim_answer_error(x, 400, SIM_ERR_SYNTAX, "SQL statement is empty");
		return;
	}
	if (s->live_queries >= s->opt.max_queries || s->query_free_count == 0) {
		SIM_COUNT(s, coord, rejected);
		sim_resp_header(x->resp, "Retry-After: 1\r\n");
		sim_answer_error(x, 503, SIM_ERR_QUEUE_FULL,
				 "qdcoordsim: too many queries (--max-queries)");
		return;
	}
	slot = s->query_free[--s->query_free_count];
	q = &s->queries[slot];
	assert(!q->used);
	q->used = true;
	q->coord = coord;
	q->d = d;
	q->flavour = r->flavour;
	q->created_ms = s->now_ms;
	q->created_wall_ms = sim_wall_ms();
	q->dispatched_ms = s->now_ms + d.queue_ms;
	q->ended_ms = 0;
	q->last_poll_ms = s->now_ms;
	q->pages_total = d.rows == 0 ? 0 : (d.rows - 1) / d.page_rows + 1;
	q->pages_served = 0;
	q->hist_prev = q->hist_next = SIM_NIL;
	q->wait_prev = q->wait_next = SIM_NIL;
	q->store_wait = q->store_put = false;
	q->user_slot[0] = q->user_slot[1] = SIM_NIL;
	q->source_slot[0] = q->source_slot[1] = SIM_NIL;
	snprintf(q->user, sizeof(q->user), "%s",
		 r->has_user && r->user[0] != '\0' ? r->user : "anonymous");
	snprintf(q->source, sizeof(q->source), "%s", r->source);
	snprintf(q->tags, sizeof(q->tags), "%s", r->client_tags != NULL ? r->client_tags : "");
	keep = r->body_len < s->opt.query_text_max ? r->body_len : s->opt.query_text_max;
	q->sql = malloc(keep + 1);
	if (q->sql != NULL) {
		memcpy(q->sql, r->body, keep);
		q->sql[keep] = '\0';
		q->sql_len = keep;
	} else {
		q->sql_len = 0;
	}
	q->stmt = sim_statement_kind(r->body, r->body_len, q->stmt_arg, sizeof(q->stmt_arg));
	if (q->stmt != SIM_STMT_SELECT) {
		q->pages_total = 1;
		q->d.rows = 1;
		q->d.page_rows = 1;
	}
	sim_new_id(s, coord, q->created_wall_ms, q->id);
	snprintf(q->slug, sizeof(q->slug), "y%016" PRIx64, sim_random(s));
	bucket = sim_id_bucket(s, q->id, SIM_QUERY_ID_BYTES);
	q->hash_next = s->id_hash[bucket];
	s->id_hash[bucket] = slot;
	s->live_queries++;
	SIM_COUNT(s, coord, submitted);

	memset(&pg, 0, sizeof(pg));
	pg.kind = SIM_URI_QUEUED;
	pg.token = 0;
	pg.data_page = -1;
	if (d.fail == SIM_FAIL_SUBMIT || d.bad[0] != '\0') {
		/* failed at once: ends at its POST, never counted as running */
		q->state = SIM_Q_RUNNING;
		q->counted = false;
		sim_query_end(s, q, SIM_Q_FAILED);
		pg.state = SIM_Q_FAILED;
		pg.next_kind = SIM_URI_NONE;
	} else {
		q->state = SIM_Q_QUEUED;
		sim_queued_add(s, coord, 1);
		if (s->opt.store_set) {
			/* openLooKeng before 1.3: admitted by the state store, under its
			 * global lock; the POST is answered after that round trip */
			q->counted = false;
			q->dispatched_ms = UINT64_MAX;
			sim_wait_add(s, q);
			sim_query_schedule(s, q);
			sim_store_pass(s);
		} else {
			q->counted = true;
			sim_running_inc(s, q);
			sim_query_schedule(s, q);
		}
		pg.state = SIM_Q_QUEUED;
		pg.next_kind = SIM_URI_QUEUED;
		pg.next_token = 1;
	}
	sim_page_times(s, q, &pg);
	q->last = pg;
	if (s->opt.verbose)
		sim_log("%s: query %s user=%s source=%s rows=%" PRIu64, s->coords[coord].name,
			q->id, q->user, q->source, q->d.rows);
	sim_answer_page(x, q, &pg);
}

/* ---- GET and DELETE on nextUri ------------------------------------------- */

/* The path parts of a statement URI. */
struct sim_stmt_uri {
	enum sim_uri_kind kind;
	const char *id;
	size_t id_len;
	const char *slug;
	size_t slug_len;
	uint64_t token;
	bool partial_cancel;
};

/* Split "<a>/<b>/..." of <p> into at most <max> parts; returns the count. */
static unsigned int
sim_split(const char *p, const char **part, size_t *len, unsigned int max)
{
	unsigned int n = 0;

	while (*p != '\0' && n < max) {
		const char *sl = strchr(p, '/');
		size_t l = sl != NULL ? (size_t)(sl - p) : strlen(p);

		part[n] = p;
		len[n] = l;
		n++;
		if (sl == NULL)
			return n;
		p = sl + 1;
	}
	return *p == '\0' ? n : max + 1;
}

/* Parse "/v1/statement/queued|executing/..." ; -EINVAL if it is not one. */
static int
sim_parse_stmt_uri(const char *path, struct sim_stmt_uri *u)
{
	const char *part[8];
	size_t len[8];
	unsigned int n;
	uint64_t token;

	memset(u, 0, sizeof(*u));
	if (strncmp(path, "/v1/statement/", 14) != 0)
		return -EINVAL;
	n = sim_split(path + 14, part, len, 7);
	if (n == 6 && len[0] == 9 && memcmp(part[0], "executing", 9) == 0 && len[1] == 13 &&
	    memcmp(part[1], "partialCancel", 13) == 0) {
		u->kind = SIM_URI_EXECUTING;
		u->partial_cancel = true;
		u->id = part[2];
		u->id_len = len[2];
		u->slug = part[4];
		u->slug_len = len[4];
		return sim_directive_u64(part[5], len[5], UINT64_MAX, &token) == 0 ? 0 : -EINVAL;
	}
	if (n != 4)
		return -EINVAL;
	if (len[0] == 6 && memcmp(part[0], "queued", 6) == 0)
		u->kind = SIM_URI_QUEUED;
	else if (len[0] == 9 && memcmp(part[0], "executing", 9) == 0)
		u->kind = SIM_URI_EXECUTING;
	else
		return -EINVAL;
	u->id = part[1];
	u->id_len = len[1];
	u->slug = part[2];
	u->slug_len = len[2];
	if (sim_directive_u64(part[3], len[3], UINT64_MAX, &u->token) != 0)
		return -EINVAL;
	return 0;
}

/* The query a statement URI names on this address, slug checked. */
static struct sim_query *
sim_stmt_query(struct sim_ctx *x, const struct sim_stmt_uri *u)
{
	struct sim_query *q = sim_query_find(x->s, u->id, u->id_len);

	if (q == NULL || q->coord != x->r->coord)
		return NULL;
	if (u->slug_len != strlen(q->slug) || memcmp(u->slug, q->slug, u->slug_len) != 0)
		return NULL;
	return q;
}

static void
sim_not_found(struct sim_ctx *x)
{
	sim_answer_error(x, 404, 0, "Query not found");
}

/* Compute the page that answers the token <q->last> announced; may ask for
 * a long poll instead. */
static void
sim_next_page(struct sim_ctx *x, struct sim_query *q, const struct sim_stmt_uri *u)
{
	struct sim *s = x->s;
	struct sim_page pg;
	uint64_t wait_until = 0;

	if (q->store_wait)
		sim_store_tick(s); /* may admit it */
	memset(&pg, 0, sizeof(pg));
	pg.kind = u->kind;
	pg.token = u->token;
	pg.data_page = -1;
	pg.next_token = u->token + 1;
	if (sim_state_final(q->state)) {
		pg.state = q->state;
		pg.next_kind = SIM_URI_NONE;
		pg.columns = q->state == SIM_Q_FINISHED;
	} else if (u->kind == SIM_URI_QUEUED) {
		if (q->state == SIM_Q_QUEUED) {
			/* waiting for the store: until its next pass */
			wait_until = q->store_wait ? s->store.next_pass_ms : q->dispatched_ms;
			pg.state = SIM_Q_QUEUED;
			pg.next_kind = SIM_URI_QUEUED;
		} else {
			/* dispatched: the client moves to the executing URIs */
			pg.state = SIM_Q_RUNNING;
			pg.next_kind = SIM_URI_EXECUTING;
			pg.next_token = 0;
		}
	} else {
		uint64_t ready = q->dispatched_ms + q->d.run_ms + q->pages_served * q->d.page_ms;

		pg.state = SIM_Q_RUNNING;
		pg.columns = true;
		pg.next_kind = SIM_URI_EXECUTING;
		if (s->now_ms < ready) {
			wait_until = ready;
		} else if (q->pages_served < q->pages_total) {
			pg.data_page = (int64_t)q->pages_served++;
		} else {
			sim_query_end(s, q, SIM_Q_FINISHED);
			pg.state = SIM_Q_FINISHED;
			pg.next_kind = SIM_URI_NONE;
		}
	}
	if (wait_until > s->now_ms && x->r->may_wait && s->opt.long_poll_ms > 0) {
		uint64_t limit = s->now_ms + s->opt.long_poll_ms;

		x->resp->wait = true;
		x->resp->wait_until_ms = wait_until < limit ? wait_until : limit;
		return;
	}
	sim_page_times(s, q, &pg);
	q->last = pg;
	sim_answer_page(x, q, &pg);
}

static void
sim_get_statement(struct sim_ctx *x, const struct sim_stmt_uri *u)
{
	struct sim_query *q = sim_stmt_query(x, u);

	if (q == NULL || u->partial_cancel) {
		sim_not_found(x);
		return;
	}
	sim_query_advance(x->s, q);
	if (!sim_state_final(q->state)) {
		q->last_poll_ms = x->s->now_ms;
		sim_query_schedule(x->s, q);
	}
	if (u->kind == q->last.kind && u->token == q->last.token) {
		sim_answer_page(x, q, &q->last);
		return;
	}
	if (q->last.next_kind == SIM_URI_NONE || u->kind != q->last.next_kind ||
	    u->token != q->last.next_token) {
		sim_answer_error(x, 410, 0, "Invalid token: not the current or the next page");
		return;
	}
	sim_next_page(x, q, u);
}

/* DELETE of a query: cancel it (if still live) and count the delete. */
static void
sim_cancel(struct sim_ctx *x, struct sim_query *q)
{
	struct sim *s = x->s;

	SIM_COUNT(s, q->coord, deletes);
	sim_query_advance(s, q);
	if (!sim_state_final(q->state))
		sim_query_end(s, q, SIM_Q_CANCELED);
	x->resp->status = 204;
	x->resp->no_body = true;
}

static void
sim_delete_statement(struct sim_ctx *x, const struct sim_stmt_uri *u)
{
	struct sim_query *q = sim_stmt_query(x, u);

	if (q == NULL) {
		sim_not_found(x);
		return;
	}
	if (u->partial_cancel) {
		/* stops one stage early; our queries have one stage: nothing to do */
		x->resp->status = 204;
		x->resp->no_body = true;
		return;
	}
	sim_cancel(x, q);
}

/* ---- /v1/query/<id> ------------------------------------------------------ */

static void
sim_iso_time(uint64_t wall_ms, char *out, size_t out_max)
{
	time_t secs = (time_t)(wall_ms / 1000u);
	struct tm tm;

	gmtime_r(&secs, &tm);
	if (snprintf(out, out_max, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (unsigned int)(wall_ms % 1000u)) >= (int)out_max)
		out[0] = '\0';
}

/* Client tags as Trino's session shows them: a JSON array, blanks around names cut. */
static void
sim_tags_json(struct sim_sb *b, const char *tags)
{
	const char *p = tags;
	bool first = true;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		size_t len = n;

		while (len > 0 && isspace((unsigned char)*s)) {
			s++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)s[len - 1]))
			len--;
		if (len > 0) {
			if (!first)
				sim_sb_str(b, ",");
			sim_sb_json(b, s, len);
			first = false;
		}
		p += n;
		if (*p == ',')
			p++;
	}
}

static void
sim_query_info(struct sim_ctx *x, struct sim_query *q)
{
	struct sim *s = x->s;
	struct sim_page pg;
	char created[40];
	struct sim_sb b;
	bool failed;

	sim_query_advance(s, q);
	failed = q->state == SIM_Q_FAILED || q->state == SIM_Q_CANCELED ||
		 q->state == SIM_Q_ABANDONED;
	memset(&pg, 0, sizeof(pg));
	sim_page_times(s, q, &pg);
	sim_iso_time(q->created_wall_ms, created, sizeof(created));
	sim_sb_init(&b, SIM_JSON_MAX_BYTES);
	sim_sb_printf(&b, "{\"queryId\":\"%s\",\"session\":{\"queryId\":\"%s\",\"user\":", q->id,
		      q->id);
	sim_sb_json(&b, q->user, strlen(q->user));
	sim_sb_str(&b, ",\"source\":");
	sim_sb_json(&b, q->source, strlen(q->source));
	sim_sb_str(&b, ",\"clientTags\":[");
	sim_tags_json(&b, q->tags);
	sim_sb_printf(&b,
		      "]},\"state\":\"%s\",\"memoryPool\":\"general\",\"scheduled\":%s,"
		      "\"self\":\"%s/v1/query/%s\",\"fieldNames\":[\"%s\"],\"query\":",
		      sim_state_names[q->state], q->state == SIM_Q_QUEUED ? "false" : "true",
		      x->base, q->id, q->stmt == SIM_STMT_SELECT ? "c0" : "result");
	sim_sb_json(&b, q->sql != NULL ? q->sql : "", q->sql_len);
	sim_sb_printf(&b,
		      ",\"queryStats\":{\"createTime\":\"%s\",\"elapsedTime\":\"%" PRIu64
		      "ms\",\"queuedTime\":\"%" PRIu64 "ms\",\"totalDrivers\":%" PRIu64
		      ",\"completedDrivers\":%" PRIu64 ",\"processedInputPositions\":%" PRIu64 "}",
		      created, pg.elapsed_ms, pg.queued_ms, q->pages_total, q->pages_served,
		      q->pages_served * q->d.page_rows < q->d.rows
			      ? q->pages_served * q->d.page_rows
			      : q->d.rows);
	if (failed) {
		char msg[512];
		const struct sim_error_code *e = sim_query_error(q, msg, sizeof(msg));

		sim_sb_printf(&b,
			      ",\"errorType\":\"%s\",\"errorCode\":{\"code\":%d,\"name\":\"%s\","
			      "\"type\":\"%s\"},\"failureInfo\":{\"type\":\"%s\",\"message\":",
			      e->type, e->code, e->name, e->type,
			      q->flavour == SIM_FLAVOUR_PRESTO
				      ? "com.facebook.presto.spi.PrestoException"
				      : "io.trino.spi.TrinoException");
		sim_sb_json(&b, msg, strlen(msg));
		sim_sb_str(&b, ",\"suppressed\":[],\"stack\":[]}");
	}
	sim_sb_printf(&b, ",\"finalQueryInfo\":%s,\"queryType\":\"%s\","
			  "\"resourceGroupId\":[\"global\"]}",
		      sim_state_final(q->state) ? "true" : "false",
		      q->stmt == SIM_STMT_SELECT ? "SELECT" : "DATA_DEFINITION");
	x->resp->status = 200;
	sim_resp_body(x->resp, &b, b.len, 0, 0, 0);
}

static void
sim_query_resource(struct sim_ctx *x, const char *id)
{
	struct sim_query *q = sim_query_find(x->s, id, strlen(id));

	if (q != NULL && q->coord != x->r->coord)
		q = NULL;
	switch (x->r->method) {
	case HTTP_GET:
		if (q == NULL)
			sim_not_found(x);
		else
			sim_query_info(x, q);
		return;
	case HTTP_HEAD:
		x->resp->status = q == NULL ? 404 : 200;
		x->resp->no_body = true;
		return;
	case HTTP_DELETE:
		if (q == NULL)
			sim_not_found(x);
		else
			sim_cancel(x, q);
		return;
	default:
		sim_answer_error(x, 405, 0, "Method Not Allowed");
		return;
	}
}

/* ---- server info, cluster, simulator endpoints -------------------------- */

static void
sim_format_duration(uint64_t ms, char *out, size_t out_len)
{
	double v = (double)ms / 1000.0;
	const char *unit = "s";

	if (ms < 1000) {
		snprintf(out, out_len, "%" PRIu64 ".00ms", ms);
		return;
	}
	if (v >= 86400.0) {
		v /= 86400.0;
		unit = "d";
	} else if (v >= 3600.0) {
		v /= 3600.0;
		unit = "h";
	} else if (v >= 60.0) {
		v /= 60.0;
		unit = "m";
	}
	snprintf(out, out_len, "%.2f%s", v, unit);
}

static void
sim_info(struct sim_ctx *x)
{
	struct sim_coord *c = &x->s->coords[x->r->coord];
	char uptime[32];
	struct sim_sb b;

	sim_format_duration(x->s->now_ms - c->start_ms, uptime, sizeof(uptime));
	sim_sb_init(&b, 4096);
	sim_sb_printf(&b,
		      "{\"nodeVersion\":{\"version\":\"%s\"},\"environment\":\"%s\","
		      "\"coordinator\":true,\"starting\":false,\"uptime\":\"%s\"}",
		      SIM_VERSION, x->s->opt.environment, uptime);
	x->resp->status = 200;
	sim_resp_body(x->resp, &b, b.len, 0, 0, 0);
}

static void
sim_cluster(struct sim_ctx *x)
{
	const struct sim_counters *c = &x->s->coords[x->r->coord].c;
	/* queries waiting for the store's admission are queued but not running */
	uint64_t running = c->running_now - (c->queued_now - c->waiting_now);
	struct sim_sb b;

	sim_sb_init(&b, 4096);
	sim_sb_printf(&b,
		      "{\"runningQueries\":%" PRIu64 ",\"blockedQueries\":0,\"queuedQueries\":%" PRIu64
		      ",\"activeCoordinators\":1,\"activeWorkers\":1,\"runningDrivers\":%" PRIu64
		      ",\"totalAvailableProcessors\":1,\"reservedMemory\":0.0,\"totalMemory\":0,"
		      "\"totalInputRows\":0,\"totalInputBytes\":0,\"totalCpuTimeSecs\":0}",
		      running, c->queued_now, running);
	x->resp->status = 200;
	sim_resp_body(x->resp, &b, b.len, 0, 0, 0);
}

static void
sim_stats_map(struct sim_sb *b, const struct sim_name_map *m)
{
	bool first = true;
	uint32_t i;

	sim_sb_str(b, "{");
	for (i = 0; m->e != NULL && i < m->cap; i++) {
		if (!m->e[i].used || m->e[i].max == 0)
			continue;
		if (!first)
			sim_sb_str(b, ",");
		first = false;
		sim_sb_json(b, m->e[i].name, strlen(m->e[i].name));
		sim_sb_printf(b, ":%u", m->e[i].max);
	}
	sim_sb_str(b, "}");
}

static void
sim_stats_counters(struct sim_sb *b, const struct sim_counters *c)
{
	sim_sb_printf(b,
		      "\"posts\":%" PRIu64 ",\"submitted\":%" PRIu64 ",\"finished\":%" PRIu64
		      ",\"failed\":%" PRIu64 ",\"canceled\":%" PRIu64 ",\"abandoned\":%" PRIu64
		      ",\"deletes\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"lost\":%" PRIu64
		      ",\"running_now\":%" PRIu64 ",\"queued_now\":%" PRIu64
		      ",\"waiting_now\":%" PRIu64
		      ",\"max_running\":%" PRIu64 ",\"max_running_by_user\":",
		      c->posts, c->submitted, c->finished, c->failed, c->canceled, c->abandoned,
		      c->deletes, c->rejected, c->lost, c->running_now, c->queued_now,
		      c->waiting_now, c->max_running);
	sim_stats_map(b, &c->by_user);
	sim_sb_str(b, ",\"max_running_by_source\":");
	sim_stats_map(b, &c->by_source);
}

static void
sim_sim_stats(struct sim_ctx *x)
{
	struct sim *s = x->s;
	unsigned int i;
	struct sim_sb b;

	sim_sb_init(&b, SIM_JSON_MAX_BYTES);
	sim_sb_str(&b, "{\"total\":{");
	sim_stats_counters(&b, &s->total);
	sim_sb_str(&b, "},\"coordinators\":{");
	for (i = 0; i < s->opt.listen_count; i++) {
		const struct sim_coord *c = &s->coords[i];

		sim_sb_printf(&b, "%s\"%s\":{\"alive\":%s,\"suffix\":\"%s\",", i ? "," : "",
			      c->name, c->alive ? "true" : "false", c->suffix);
		sim_stats_counters(&b, &c->c);
		sim_sb_str(&b, "}");
	}
	sim_sb_printf(&b,
		      "},\"table\":{\"live\":%u,\"history\":%u,\"slots\":%u},"
		      "\"connections\":{\"accepted\":%" PRIu64 ",\"refused\":%" PRIu64
		      ",\"idle_closed\":%" PRIu64 ",\"requests\":%" PRIu64 "}}",
		      s->live_queries, s->hist_count, s->query_slots, s->io.conns_accepted,
		      s->io.conns_refused, s->io.conns_idle_closed, s->io.requests);
	if (s->opt.store_set) {
		/* replace the closing brace: one more member */
		b.len--;
		sim_sb_str(&b, ",\"store\":");
		sim_store_stats(s, &b);
		sim_sb_str(&b, "}");
	}
	x->resp->status = 200;
	sim_resp_body(x->resp, &b, b.len, 0, 0, 0);
}

static void
sim_sim_ok(struct sim_ctx *x, const char *what, const char *coord)
{
	struct sim_sb b;

	sim_sb_init(&b, 1024);
	sim_sb_printf(&b, "{\"ok\":true,\"action\":\"%s\"", what);
	if (coord != NULL)
		sim_sb_printf(&b, ",\"coordinator\":\"%s\"", coord);
	sim_sb_str(&b, "}");
	x->resp->status = 200;
	sim_resp_body(x->resp, &b, b.len, 0, 0, 0);
}

/* The coordinator named by "?coordinator=IP:PORT" (':' may be %3A). */
static int
sim_query_coord(struct sim_ctx *x)
{
	const char *q = x->r->query;
	char val[64];
	size_t n = 0;

	while (*q != '\0') {
		if (strncmp(q, "coordinator=", 12) == 0) {
			q += 12;
			while (*q != '\0' && *q != '&' && n + 1 < sizeof(val)) {
				if (q[0] == '%' && (q[1] == '3') && (q[2] == 'A' || q[2] == 'a')) {
					val[n++] = ':';
					q += 3;
				} else {
					val[n++] = *q++;
				}
			}
			val[n] = '\0';
			return sim_coord_find(x->s, val);
		}
		q = strchr(q, '&');
		if (q == NULL)
			break;
		q++;
	}
	return -1;
}

static void
sim_simulator(struct sim_ctx *x, const char *what)
{
	struct sim *s = x->s;
	int coord;
	unsigned int i;

	if (strcmp(what, "stats") == 0) {
		if (x->r->method != HTTP_GET)
			goto method;
		sim_sim_stats(x);
		return;
	}
	if (x->r->method != HTTP_POST)
		goto method;
	if (strcmp(what, "reset") == 0) {
		sim_counters_reset(&s->total);
		for (i = 0; i < s->opt.listen_count; i++)
			sim_counters_reset(&s->coords[i].c);
		memset(&s->store.c, 0, sizeof(s->store.c));
		sim_sim_ok(x, "reset", NULL);
		return;
	}
	if (strcmp(what, "kill") != 0 && strcmp(what, "revive") != 0) {
		sim_answer_error(x, 404, 0, "no such simulator endpoint");
		return;
	}
	coord = sim_query_coord(x);
	if (coord < 0) {
		sim_answer_error(x, 400, 0,
				 "expected ?coordinator=IP:PORT naming an address this process serves");
		return;
	}
	if (what[0] == 'k') {
		if (s->coords[coord].alive)
			x->resp->kill_coord = coord;
		sim_sim_ok(x, "kill", s->coords[coord].name);
		return;
	}
	if (!s->coords[coord].alive && sim_coord_revive(s, (unsigned int)coord) != 0) {
		sim_answer_error(x, 500, SIM_ERR_INTERNAL, "revive: cannot listen again (see log)");
		return;
	}
	sim_sim_ok(x, "revive", s->coords[coord].name);
	return;
method:
	sim_answer_error(x, 405, 0, "Method Not Allowed");
}

/* ---- routing ------------------------------------------------------------- */

static bool
sim_host_ok(const char *h)
{
	for (; *h != '\0'; h++)
		if (!isalnum((unsigned char)*h) && strchr(".-_:[]", *h) == NULL)
			return false;
	return true;
}

/* "http://host" of the URIs the answer names. */
static int
sim_base_uri(struct sim_ctx *x)
{
	const struct sim_req_view *r = x->r;
	const char *proto = "http", *host = r->host;

	if (x->s->opt.forwarded == SIM_FWD_ACCEPT) {
		if (r->fwd_proto[0] != '\0')
			proto = r->fwd_proto;
		if (r->fwd_host[0] != '\0')
			host = r->fwd_host;
	}
	if (!sim_host_ok(host) || !sim_host_ok(proto) ||
	    (strcmp(proto, "http") != 0 && strcmp(proto, "https") != 0))
		return -EINVAL;
	if (x->s->opt.forwarded == SIM_FWD_ACCEPT && r->fwd_port[0] != '\0' &&
	    r->fwd_host[0] != '\0' && strchr(host, ':') == NULL) {
		if (!sim_host_ok(r->fwd_port))
			return -EINVAL;
		snprintf(x->base, sizeof(x->base), "%s://%s:%s", proto, host, r->fwd_port);
	} else {
		snprintf(x->base, sizeof(x->base), "%s://%s", proto, host);
	}
	return 0;
}

void
sim_handle(struct sim *s, const struct sim_req_view *r, struct sim_resp *resp)
{
	struct sim_ctx x = {.s = s, .r = r, .resp = resp};
	const char *path = r->path;
	struct sim_stmt_uri u;

	if (strncmp(path, "/v1/simulator/", 14) == 0) {
		sim_simulator(&x, path + 14);
		return;
	}
	if (r->forwarded && s->opt.forwarded == SIM_FWD_REJECT) {
		/* what a stock Trino (http-server.process-forwarded=false) does */
		sim_answer_error(&x, 406, 0,
				 "Server configuration does not allow processing of the "
				 "X-Forwarded-For header");
		return;
	}
	if (sim_base_uri(&x) != 0) {
		sim_answer_error(&x, 400, 0, "Bad Host header");
		return;
	}
	if (strcmp(path, "/v1/statement") == 0) {
		if (r->method != HTTP_POST)
			sim_answer_error(&x, 405, 0, "Method Not Allowed");
		else
			sim_post_statement(&x);
		return;
	}
	if (sim_parse_stmt_uri(path, &u) == 0) {
		if (r->method == HTTP_GET && !u.partial_cancel)
			sim_get_statement(&x, &u);
		else if (r->method == HTTP_DELETE)
			sim_delete_statement(&x, &u);
		else
			sim_answer_error(&x, 405, 0, "Method Not Allowed");
		return;
	}
	if (strncmp(path, "/v1/query/", 10) == 0 && strchr(path + 10, '/') == NULL) {
		sim_query_resource(&x, path + 10);
		return;
	}
	if (r->method == HTTP_GET || r->method == HTTP_HEAD) {
		if (strcmp(path, "/v1/info") == 0) {
			sim_info(&x);
		} else if (strcmp(path, "/v1/info/state") == 0) {
			struct sim_sb b;

			sim_sb_init(&b, 64);
			sim_sb_str(&b, "\"ACTIVE\"");
			resp->status = 200;
			sim_resp_body(resp, &b, b.len, 0, 0, 0);
		} else if (strcmp(path, "/v1/cluster") == 0 || strcmp(path, "/ui/api/stats") == 0) {
			sim_cluster(&x);
		} else if (strcmp(path, "/ui/query.html") == 0) {
			struct sim_sb b;

			sim_sb_init(&b, 1024);
			sim_sb_str(&b, "<!DOCTYPE html><html><head><title>Query</title></head>"
				       "<body><p>qdcoordsim: see /v1/query/ID</p></body></html>\n");
			resp->status = 200;
			resp->content_type = "text/html";
			sim_resp_body(resp, &b, b.len, 0, 0, 0);
		} else {
			sim_answer_error(&x, 404, 0, "Not Found");
		}
		if (r->method == HTTP_HEAD)
			resp->no_body = true;
		return;
	}
	if (strcmp(path, "/v1/info") == 0 || strcmp(path, "/v1/cluster") == 0)
		sim_answer_error(&x, 405, 0, "Method Not Allowed");
	else
		sim_answer_error(&x, 404, 0, "Not Found");
}
