/*
 * The state log (see state_log.h): records from the workers' rings into lib/wal.c on
 * the main lcore, snapshots of the live routes, and replay at start.
 *
 * Replay is idempotent, which is what lets the snapshot be taken from the live route
 * table while the workers run: a ROUTE for a query already routed changes nothing, an END
 * for a query not routed changes nothing. A worker marks a route ended before it emits
 * the END record, so a snapshot taken after every record up to S was appended never
 * contains a query whose END is at or before S; a query in the snapshot whose END comes
 * after S is removed when that END is replayed.
 */
#include "state_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_ring_peek.h>

#include "admission.h"
#include "daemon.h"
#include "log.h"
#include "route_table.h"
#include "state_rec.h"
#include "wal.h"

struct qd_slog {
	struct qd_wal *wal;
	struct rte_ring *rings[QD_CONFIG_WORKERS_MAX];
	unsigned int rings_count;
	uint64_t since_snapshot;
	bool broken;               /* the log failed (fsync, I/O): no more appends */
	char dir[QD_WAL_PATH_MAX];
	struct qd_slog_stats st;
	struct qd_wal_recovery rec;
	/* replay context */
	struct qd_daemon *d;
	uint64_t now_us;
};

static uint64_t
wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The workers' clock (worker.c: TSC microseconds): routes' times are kept on it. */
static uint64_t
worker_now_us(void)
{
	uint64_t per_us = rte_get_tsc_hz() / 1000000u;
	return rte_rdtsc() / (per_us > 0 ? per_us : 1);
}

static int
coord_index(const struct qd_daemon *d, uint32_t ip_be, uint16_t port)
{
	unsigned int n = qd_coord_count(d->coords);
	for (unsigned int i = 0; i < n; i++) {
		if (d->coords->c[i].ip_be == ip_be && d->coords->c[i].port == port)
			return (int)i;
	}
	return -1;
}

/* Apply one record to the route table (replay). */
static void
apply(struct qd_slog *s, const struct qd_slog_rec *r)
{
	struct qd_daemon *d = s->d;
	size_t len = strnlen(r->id, sizeof(r->id));
	s->st.replayed++;
	if (r->version != QD_SLOG_VERSION || len == 0)
		return;
	switch (r->type) {
	case QD_SLOG_ROUTE: {
		int coord = coord_index(d, r->coord_ip_be, r->coord_port);
		if (coord < 0) {
			s->st.skipped_coordinator++;
			return;
		}
		int group = -1;
		if (r->group_hash != 0 && d->admission != NULL) {
			group = qd_admission_group_by_hash(d->admission, r->group_hash);
			if (group < 0)
				s->st.skipped_group++;
		}
		int rc = qd_route_insert_adm(d->routes, r->id, len, (uint16_t)coord, 0, s->now_us,
					     (int16_t)group, group >= 0 ? r->mem : 0);
		if (rc == -ENOSPC)
			s->st.skipped_full++;
		return;
	}
	case QD_SLOG_END:
		qd_route_remove(d->routes, r->id, len);
		return;
	case QD_SLOG_ALIAS:
		qd_route_insert_alias(d->routes, r->id, len, r->id2, strnlen(r->id2, sizeof(r->id2)),
				      s->now_us);
		return;
	default:
		return;
	}
}

static int
on_snapshot(void *arg, uint64_t seq, const void *data, size_t len)
{
	(void)seq;
	struct qd_slog *s = arg;
	if (len % sizeof(struct qd_slog_rec) != 0)
		return -EBADMSG;
	const struct qd_slog_rec *r = data;
	/* aliases name routes: every route first, then the aliases */
	for (size_t i = 0; i < len / sizeof(*r); i++)
		if (r[i].type == QD_SLOG_ROUTE)
			apply(s, &r[i]);
	for (size_t i = 0; i < len / sizeof(*r); i++)
		if (r[i].type != QD_SLOG_ROUTE)
			apply(s, &r[i]);
	return 0;
}

static int
on_record(void *arg, uint64_t seq, uint16_t type, const void *payload, uint32_t len)
{
	(void)seq;
	struct qd_slog *s = arg;
	if (len != sizeof(struct qd_slog_rec))
		return 0; /* a record of another version's size: not ours to read */
	struct qd_slog_rec r;
	memcpy(&r, payload, sizeof(r));
	if (r.type != type)
		return 0;
	apply(s, &r);
	return 0;
}

/* After replay: the queries still routed hold their slots and count as in flight. */
static bool
restore_one(void *ctx, const struct qd_route_entry *e)
{
	struct qd_slog *s = ctx;
	struct qd_daemon *d = s->d;
	if (e->is_alias) {
		s->st.restored_aliases++;
		return true;
	}
	s->st.restored_routes++;
	/* the workers check it with its coordinator (reconcile): it may have ended while we
	 * were down */
	__atomic_store_n(&((struct qd_route_entry *)e)->restored, 1, __ATOMIC_RELEASE);
	__atomic_fetch_add(&d->coords->c[e->coord].inflight, 1, __ATOMIC_RELAXED);
	if (e->group >= 0 && d->admission != NULL) {
		qd_admission_restore(d->admission, e->group, e->mem);
		s->st.restored_slots++;
	}
	return true;
}

static int
mkdir_p(const char *path)
{
	char buf[QD_WAL_PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int
qd_slog_open(struct qd_daemon *d, char *err, size_t err_len)
{
	if (d->cfg.state_dir[0] == '\0' || d->routes == NULL)
		return 0;
	struct qd_slog *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, err_len, "state log: out of memory");
		return -ENOMEM;
	}
	s->d = d;
	if (snprintf(s->dir, sizeof(s->dir), "%s/state", d->cfg.state_dir) >= (int)sizeof(s->dir)) {
		free(s);
		snprintf(err, err_len, "state.dir: too long for the state log");
		return -ENAMETOOLONG;
	}
	int rc = mkdir_p(s->dir);
	if (rc != 0) {
		snprintf(err, err_len, "state log: cannot create %s: %s", s->dir, strerror(-rc));
		free(s);
		return rc;
	}
	/* records are 128 bytes: batches of 256 KiB hold 2,000 of them */
	struct qd_wal_opts opts = {.flags = QD_WAL_F_CREATE,
				   .record_bytes_max = QD_SLOG_REC_BYTES,
				   .records_max = 65536,
				   .snapshot_bytes_max = (uint64_t)QD_SLOG_REC_BYTES * 2u *
							 (d->cfg.route_max + 1024u)};
	char msg[QD_WAL_MSG_MAX];
	s->wal = qd_wal_open(s->dir, &opts, &s->rec, msg, sizeof(msg));
	if (s->wal == NULL) {
		rc = -errno;
		snprintf(err, err_len, "state log: %s", msg);
		free(s);
		return rc;
	}
	if (s->rec.msg[0] != '\0')
		QD_LOG(WARNING, main, "state log %s: %s", s->dir, s->rec.msg);
	s->now_us = worker_now_us();
	rc = qd_wal_replay(s->wal, on_snapshot, on_record, s);
	if (rc != 0) {
		snprintf(err, err_len, "state log %s: replay failed: %s", s->dir, strerror(-rc));
		qd_wal_close(s->wal);
		free(s);
		return rc;
	}
	qd_route_foreach(d->routes, restore_one, s);
	QD_LOG(NOTICE, main,
	       "state log %s: %" PRIu64 " records replayed (last seq %" PRIu64 "%s); %" PRIu64
	       " queries routed again (%" PRIu64 " with their admission slots), %" PRIu64
	       " aliases; skipped: %" PRIu64 " unknown coordinator, %" PRIu64
	       " group gone, %" PRIu64 " table full",
	       s->dir, s->st.replayed, s->rec.last_seq, s->rec.clean_close ? ", closed cleanly" : "",
	       s->st.restored_routes, s->st.restored_slots, s->st.restored_aliases,
	       s->st.skipped_coordinator, s->st.skipped_group, s->st.skipped_full);
	for (unsigned int i = 0; i < d->cfg.workers; i++) {
		char name[32];
		snprintf(name, sizeof(name), "qd_slog_%u", i);
		s->rings[i] = rte_ring_create_elem(name, QD_SLOG_REC_BYTES, QD_SLOG_RING_SIZE,
						   (int)rte_socket_id(),
						   RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (s->rings[i] == NULL) {
			snprintf(err, err_len, "state log: ring %s: %s", name,
				 rte_strerror(rte_errno));
			d->slog = s;
			qd_slog_close(d);
			return -ENOMEM;
		}
		s->rings_count++;
	}
	d->slog = s;
	return 0;
}

struct rte_ring *
qd_slog_ring(const struct qd_daemon *d, unsigned int i)
{
	return d->slog != NULL && i < d->slog->rings_count ? d->slog->rings[i] : NULL;
}

static void
reap(struct qd_slog *s)
{
	struct qd_wal_cpl cpl[256];
	for (unsigned int k = 0; k < 64; k++) {
		unsigned int n = qd_wal_poll(s->wal, cpl, RTE_DIM(cpl));
		for (unsigned int i = 0; i < n; i++) {
			if (cpl[i].status == 0) {
				s->st.durable++;
				continue;
			}
			s->st.failed++;
			if (!s->broken && cpl[i].status != -ENOSPC) {
				s->broken = true;
				QD_LOG(ERR, main, "state log %s failed: %s; queries are no longer "
				       "recorded (a restart will not know them)", s->dir,
				       strerror(-cpl[i].status));
			}
		}
		if (n < RTE_DIM(cpl))
			return;
	}
}

static bool
snapshot_add(void *ctx, const struct qd_route_entry *e)
{
	struct {
		struct qd_slog_rec *recs;
		size_t n, cap;
		const struct qd_daemon *d;
	} *b = ctx;
	if (b->n == b->cap)
		return false;
	struct qd_slog_rec *r = &b->recs[b->n];
	memset(r, 0, sizeof(*r));
	r->version = QD_SLOG_VERSION;
	memcpy(r->id, e->id, sizeof(r->id) - 1);
	if (e->is_alias) {
		uint32_t rp = __atomic_load_n(&e->alias_pos, __ATOMIC_ACQUIRE);
		if (rp >= b->d->routes->positions)
			return true;
		r->type = QD_SLOG_ALIAS;
		memcpy(r->id2, b->d->routes->entries[rp].id, sizeof(r->id2) - 1);
	} else {
		r->type = QD_SLOG_ROUTE;
		const struct qd_coord *c = &b->d->coords->c[e->coord];
		r->coord_ip_be = c->ip_be;
		r->coord_port = c->port;
		if (e->group >= 0 && b->d->admission != NULL) {
			r->group_hash = b->d->admission->name_hash[e->group];
			r->mem = e->mem;
		}
	}
	b->n++;
	return true;
}

/* Fold the log into a snapshot of the live routes; the segments it covers go. */
static void
snapshot(struct qd_slog *s)
{
	struct qd_daemon *d = s->d;
	int rc = qd_wal_sync(s->wal);
	reap(s);
	if (rc != 0)
		return;
	uint64_t seq = qd_wal_durable_seq(s->wal);
	struct {
		struct qd_slog_rec *recs;
		size_t n, cap;
		const struct qd_daemon *d;
	} b = {.cap = (size_t)d->routes->capacity * 2u + 64u, .d = d};
	b.recs = malloc(b.cap * sizeof(*b.recs));
	if (b.recs == NULL) {
		s->st.snapshot_failures++;
		return;
	}
	qd_route_foreach(d->routes, snapshot_add, &b);
	rc = qd_wal_snapshot(s->wal, seq, b.recs, b.n * sizeof(*b.recs));
	free(b.recs);
	if (rc != 0) {
		s->st.snapshot_failures++;
		QD_LOG(WARNING, main, "state log %s: snapshot at %" PRIu64 " failed: %s", s->dir,
		       seq, strerror(-rc));
		return;
	}
	s->st.snapshots++;
	s->since_snapshot = 0;
}

void
qd_slog_service(struct qd_daemon *d)
{
	struct qd_slog *s = d->slog;
	if (s == NULL)
		return;
	uint64_t now = wall_ms();
	unsigned int budget = QD_SLOG_DRAIN_MAX;
	for (unsigned int i = 0; i < s->rings_count && budget > 0; i++) {
		struct qd_slog_rec r;
		while (budget > 0 && !s->broken) {
			/* peek: a record the log cannot take now stays in the ring */
			if (rte_ring_dequeue_bulk_elem_start(s->rings[i], &r, sizeof(r), 1, NULL) != 1)
				break;
			r.logged_ms = now;
			int rc = qd_wal_append(s->wal, r.type, &r, sizeof(r), 0, NULL);
			if (rc == -EAGAIN) {
				reap(s);
				rc = qd_wal_append(s->wal, r.type, &r, sizeof(r), 0, NULL);
			}
			if (rc == -EAGAIN) {
				rte_ring_dequeue_elem_finish(s->rings[i], 0);
				s->st.deferred++;
				break;
			}
			rte_ring_dequeue_elem_finish(s->rings[i], 1);
			budget--;
			if (rc != 0) {
				s->st.failed++;
				continue;
			}
			s->st.appended++;
			s->since_snapshot++;
		}
		if (s->broken) /* keep the rings from filling the workers' counters forever */
			while (rte_ring_sc_dequeue_elem(s->rings[i], &r, sizeof(r)) == 0 &&
			       budget-- > 0)
				s->st.failed++;
	}
	reap(s);
	if (!s->broken && s->since_snapshot >= d->cfg.state_snapshot_every)
		snapshot(s);
}

void
qd_slog_close(struct qd_daemon *d)
{
	struct qd_slog *s = d->slog;
	if (s == NULL)
		return;
	/* everything the workers handed over goes in before the close mark */
	for (unsigned int k = 0; k < 1000 && s->wal != NULL && !s->broken; k++) {
		unsigned int left = 0;
		for (unsigned int i = 0; i < s->rings_count; i++)
			left += rte_ring_count(s->rings[i]);
		if (left == 0)
			break;
		qd_slog_service(d);
	}
	if (s->wal != NULL) {
		int rc = qd_wal_close(s->wal);
		if (rc != 0)
			QD_LOG(ERR, main, "state log %s: close: %s", s->dir, strerror(-rc));
	}
	for (unsigned int i = 0; i < s->rings_count; i++)
		rte_ring_free(s->rings[i]);
	free(s);
	d->slog = NULL;
}

json_t *
qd_slog_json(const struct qd_daemon *d)
{
	const struct qd_slog *s = d->slog;
	if (s == NULL)
		return json_null();
	struct qd_wal_stats ws;
	qd_wal_stats_get(s->wal, &ws);
	unsigned int queued = 0;
	for (unsigned int i = 0; i < s->rings_count; i++)
		queued += rte_ring_count(s->rings[i]);
	return json_pack(
		"{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:I, s:I}",
		"dir", s->dir, "healthy", !s->broken && qd_wal_error(s->wal) == 0, "appended",
		(json_int_t)s->st.appended, "durable", (json_int_t)s->st.durable, "failed",
		(json_int_t)s->st.failed, "deferred", (json_int_t)s->st.deferred, "in_rings",
		(json_int_t)queued, "durable_seq", (json_int_t)qd_wal_durable_seq(s->wal),
		"fsyncs", (json_int_t)ws.fsyncs, "snapshots", (json_int_t)s->st.snapshots,
		"segments", (json_int_t)ws.segments, "replayed", (json_int_t)s->st.replayed,
		"restored_routes", (json_int_t)s->st.restored_routes, "restored_aliases",
		(json_int_t)s->st.restored_aliases, "restored_slots",
		(json_int_t)s->st.restored_slots, "skipped_coordinator",
		(json_int_t)s->st.skipped_coordinator, "skipped_group",
		(json_int_t)s->st.skipped_group, "skipped_full", (json_int_t)s->st.skipped_full,
		"snapshot_failures", (json_int_t)s->st.snapshot_failures);
}
