/*
 * The seed log (see seed_log.h): the operator's durable changes to the
 * coordinator table and the resource-groups file, on lib/wal.h.
 *
 * Only the main lcore calls in here, so nothing is locked; the coordinator
 * table is written with the stores coord_table.h asks for (a new entry is
 * filled first and published with a release store of the count; flags are
 * relaxed stores), because the workers read it while we write.
 *
 * The config stays the base: config coordinators are never written to the
 * log, only changes are. Replay applies the changes in order on top of what
 * the config filled, so a coordinator added with qdctl comes after the
 * config's ones, in the order it was added, at every start. A change naming
 * a coordinator the config no longer lists (and no record added) is skipped
 * with a notice. The snapshot written by compaction keeps exactly that
 * meaning: it marks which entries the log added, and carries flags for the
 * others, which apply only when the config still lists them.
 *
 * A change is applied only after its record is durable. If a record's
 * completion does not come within QD_SEED_WAIT_MS, it may still reach the
 * disk later, and memory would then disagree with what a restart replays:
 * the log stops taking changes (every later append fails) until a restart.
 */
#include "seed_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "coord_table.h"
#include "daemon.h"
#include "log.h"
#include "wal.h"

#define COORD_PAYLOAD 12u
#define GROUPS_HEAD 16u
#define SNAP_HEAD 16u
#define SNAP_COORD 12u
#define SNAP_MAGIC "QDSEEDSN"
#define SNAP_F_GROUPS 0x1u
#define SNAP_C_ADDED 0x1u
#define SNAP_C_DRAINED 0x2u
#define SNAP_C_REMOVED 0x4u
#define SNAP_BYTES_MAX (SNAP_HEAD + QD_COORDS_MAX * SNAP_COORD + GROUPS_HEAD + QD_SEED_PATH_MAX)
#define RECORD_BYTES_MAX (GROUPS_HEAD + QD_SEED_PATH_MAX)
#define WAIT_ROUNDS 10000u       /* bound of the durable wait's loop (time bounds it first) */
#define HASH_BYTES_MAX (64u << 20) /* a groups file larger than this is not hashed */

_Static_assert(QD_COORDS_MAX <= UINT16_MAX, "snapshot count is 16 bits");

/* What replay did, for the start-up notice. */
struct seed_counts {
	unsigned int added, readded, removed, drained, undrained, groups, skipped;
};

struct qd_seed {
	struct qd_wal *wal;
	char dir[QD_WAL_PATH_MAX];
	uint64_t since_snapshot; /* records delivered or appended after the last snapshot */
	int failed;              /* sticky: an append whose fate is unknown (timeout) */
	bool added[QD_COORDS_MAX]; /* table entry i came from the log, not the config */
	bool has_groups;
	uint64_t groups_hash;
	char groups_path[QD_SEED_PATH_MAX];
	struct seed_counts counts;
	bool replaying;
};

/* ---- little-endian fields ---------------------------------------------------- */

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
put64le(uint8_t *p, uint64_t v)
{
	for (unsigned int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t
get64le(const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void
addr_str(uint32_t ip_be, uint16_t port, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = ip_be};
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, (unsigned int)port);
}

static bool
is_coord_type(uint16_t t)
{
	return t >= QD_SEED_COORD_ADD && t <= QD_SEED_COORD_UNDRAIN;
}

/* ---- payloads ---------------------------------------------------------------- */

/* Bytes written to <buf> (RECORD_BYTES_MAX), 0 when <r> cannot be encoded. */
static uint32_t
encode(const struct qd_seed_rec *r, uint8_t *buf)
{
	memset(buf, 0, RECORD_BYTES_MAX);
	buf[0] = QD_SEED_VERSION;
	if (is_coord_type(r->type)) {
		put16(buf + 2, r->port);
		memcpy(buf + 4, &r->ip_be, 4); /* network order as is */
		put16(buf + 8, r->type == QD_SEED_COORD_ADD ? r->weight : 0);
		return COORD_PAYLOAD;
	}
	if (r->type == QD_SEED_GROUPS) {
		size_t n = strnlen(r->path, sizeof(r->path));
		if (n == 0 || n >= sizeof(r->path))
			return 0;
		put16(buf + 2, (uint16_t)n);
		put64le(buf + 8, r->hash);
		memcpy(buf + GROUPS_HEAD, r->path, n);
		return GROUPS_HEAD + (uint32_t)n;
	}
	return 0;
}

/* 0, or -EINVAL with <why> set. */
static int
decode(uint16_t type, const uint8_t *p, uint32_t len, struct qd_seed_rec *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	if (len < 1 || p[0] != QD_SEED_VERSION) {
		*why = "unknown payload version (written by a newer qdispatchd?)";
		return -EINVAL;
	}
	if (is_coord_type(type)) {
		if (len != COORD_PAYLOAD) {
			*why = "coordinator record of the wrong size";
			return -EINVAL;
		}
		r->port = get16(p + 2);
		memcpy(&r->ip_be, p + 4, 4);
		r->weight = get16(p + 8);
		if (type == QD_SEED_COORD_ADD && (r->weight < 1 || r->weight > 1000)) {
			*why = "coordinator weight out of 1..1000";
			return -EINVAL;
		}
		return 0;
	}
	if (type == QD_SEED_GROUPS) {
		uint16_t n = len >= GROUPS_HEAD ? get16(p + 2) : 0;
		if (len < GROUPS_HEAD || n == 0 || n >= sizeof(r->path) || len != GROUPS_HEAD + n ||
		    memchr(p + GROUPS_HEAD, '\0', n) != NULL) {
			*why = "malformed groups record";
			return -EINVAL;
		}
		r->hash = get64le(p + 8);
		memcpy(r->path, p + GROUPS_HEAD, n);
		r->path[n] = '\0';
		return 0;
	}
	*why = "unknown record type (written by a newer qdispatchd?)";
	return -EINVAL;
}

/* ---- applying a change ------------------------------------------------------- */

static int
find(const struct qd_coord_table *t, uint32_t ip_be, uint16_t port)
{
	unsigned int n = qd_coord_count(t);
	for (unsigned int i = 0; i < n && i < QD_COORDS_MAX; i++)
		if (t->c[i].ip_be == ip_be && t->c[i].port == port)
			return (int)i;
	return -1;
}

static void
set_flag(uint32_t *f, bool on)
{
	/* The main lcore is the only writer of drained and removed (coord_table.h). */
	__atomic_store_n(f, on ? 1u : 0u, __ATOMIC_RELAXED);
}

static int
apply_add(struct qd_daemon *d, struct qd_seed *s, const struct qd_seed_rec *r)
{
	struct qd_coord_table *t = d->coords;
	int i = find(t, r->ip_be, r->port);
	if (i >= 0) {
		/* Back after a remove, same index (routes keep it); its weight stays. */
		if (s != NULL && qd_coord_load32(&t->c[i].removed) != 0)
			s->counts.readded += s->replaying;
		set_flag(&t->c[i].removed, false);
		return 0;
	}
	unsigned int n = qd_coord_count(t);
	if (n >= QD_COORDS_MAX)
		return -ENOSPC;
	if (r->weight < 1 || r->weight > 1000)
		return -EINVAL;
	struct qd_coord *c = &t->c[n];
	/* Never used before (entries are not reused): only the fixed fields to fill. */
	c->ip_be = r->ip_be;
	c->port = r->port;
	c->weight = r->weight;
	if (s != NULL) {
		s->added[n] = true;
		s->counts.added += s->replaying;
	}
	/* Readers see the entry only once the count covers it, and then whole. */
	__atomic_store_n(&t->count, n + 1, __ATOMIC_RELEASE);
	return 0;
}

int
qd_seed_apply(struct qd_daemon *d, const struct qd_seed_rec *r)
{
	struct qd_seed *s = d->seed;
	if (r == NULL)
		return -EINVAL;
	if (r->type == QD_SEED_GROUPS) {
		size_t n = strnlen(r->path, sizeof(r->path));
		if (n == 0 || n >= sizeof(r->path) || n >= sizeof(d->cfg.admission_resource_groups))
			return -EINVAL;
		if (s != NULL) {
			s->has_groups = true;
			s->groups_hash = r->hash;
			memcpy(s->groups_path, r->path, n + 1);
			s->counts.groups += s->replaying;
		}
		/* Admission control is the config's decision: a log cannot turn it on. */
		if (d->cfg.admission_resource_groups[0] == '\0')
			return -ENOENT;
		memcpy(d->cfg.admission_resource_groups, r->path, n + 1);
		return 0;
	}
	if (!is_coord_type(r->type) || d->coords == NULL)
		return -EINVAL;
	if (r->type == QD_SEED_COORD_ADD)
		return apply_add(d, s, r);
	int i = find(d->coords, r->ip_be, r->port);
	if (i < 0)
		return -ENOENT;
	struct qd_coord *c = &d->coords->c[i];
	if (r->type == QD_SEED_COORD_REMOVE) {
		set_flag(&c->removed, true);
		if (s != NULL)
			s->counts.removed += s->replaying;
	} else {
		bool drain = r->type == QD_SEED_COORD_DRAIN;
		set_flag(&c->drained, drain);
		if (s != NULL) {
			s->counts.drained += s->replaying && drain;
			s->counts.undrained += s->replaying && !drain;
		}
	}
	return 0;
}

/* ---- snapshot ---------------------------------------------------------------- */

static size_t
snapshot_encode(const struct qd_daemon *d, const struct qd_seed *s, uint8_t *buf)
{
	memset(buf, 0, SNAP_BYTES_MAX);
	unsigned int n = d->coords != NULL ? qd_coord_count(d->coords) : 0;
	memcpy(buf, SNAP_MAGIC, 8);
	put16(buf + 8, QD_SEED_VERSION);
	put16(buf + 10, (uint16_t)n);
	buf[12] = s->has_groups ? SNAP_F_GROUPS : 0;
	size_t off = SNAP_HEAD;
	for (unsigned int i = 0; i < n; i++, off += SNAP_COORD) {
		const struct qd_coord *c = &d->coords->c[i];
		memcpy(buf + off, &c->ip_be, 4);
		put16(buf + off + 4, c->port);
		put16(buf + off + 6, c->weight);
		buf[off + 8] = (uint8_t)((s->added[i] ? SNAP_C_ADDED : 0) |
					 (qd_coord_load32(&c->drained) ? SNAP_C_DRAINED : 0) |
					 (qd_coord_load32(&c->removed) ? SNAP_C_REMOVED : 0));
	}
	if (s->has_groups) {
		size_t len = strlen(s->groups_path);
		put16(buf + off + 2, (uint16_t)len);
		put64le(buf + off + 8, s->groups_hash);
		memcpy(buf + off + GROUPS_HEAD, s->groups_path, len);
		off += GROUPS_HEAD + len;
	}
	return off;
}

struct replay_ctx {
	struct qd_daemon *d;
	char *err;
	size_t err_len;
};

static void
note_skip(struct qd_daemon *d, const struct qd_seed_rec *r, uint64_t seq, int rc)
{
	d->seed->counts.skipped++;
	char addr[32];
	addr_str(r->ip_be, r->port, addr, sizeof(addr));
	if (r->type == QD_SEED_GROUPS)
		QD_LOG(NOTICE, main, "seed log: record %" PRIu64 " (groups file %s) not applied: "
		       "admission control is off in the config", seq, r->path);
	else if (rc == -ENOSPC)
		QD_LOG(WARNING, main, "seed log: record %" PRIu64 " (add %s) not applied: the "
		       "coordinator table is full (%d)", seq, addr, QD_COORDS_MAX);
	else
		QD_LOG(NOTICE, main, "seed log: record %" PRIu64 " (%s) not applied: the config no "
		       "longer lists that coordinator", seq, addr);
}

static int
on_snapshot(void *arg, uint64_t seq, const void *data, size_t len)
{
	struct replay_ctx *x = arg;
	const uint8_t *p = data;
	if (len < SNAP_HEAD || memcmp(p, SNAP_MAGIC, 8) != 0 || get16(p + 8) != QD_SEED_VERSION) {
		snprintf(x->err, x->err_len, "seed log %s: snapshot %" PRIu64 " is not a version %d "
			 "seed snapshot (written by a newer qdispatchd?)", x->d->seed->dir, seq,
			 QD_SEED_VERSION);
		return -EBADMSG;
	}
	unsigned int n = get16(p + 10);
	bool groups = (p[12] & SNAP_F_GROUPS) != 0;
	size_t need = SNAP_HEAD + (size_t)n * SNAP_COORD + (groups ? GROUPS_HEAD : 0);
	if (n > QD_COORDS_MAX || len < need) {
		snprintf(x->err, x->err_len, "seed log %s: snapshot %" PRIu64 " is truncated",
			 x->d->seed->dir, seq);
		return -EBADMSG;
	}
	size_t off = SNAP_HEAD;
	for (unsigned int i = 0; i < n; i++, off += SNAP_COORD) {
		struct qd_seed_rec r = {.type = QD_SEED_COORD_ADD};
		memcpy(&r.ip_be, p + off, 4);
		r.port = get16(p + off + 4);
		r.weight = get16(p + off + 6);
		uint8_t f = p[off + 8];
		int rc = 0;
		if (f & SNAP_C_ADDED)
			rc = qd_seed_apply(x->d, &r);
		else if (find(x->d->coords, r.ip_be, r.port) < 0)
			rc = (f & (SNAP_C_DRAINED | SNAP_C_REMOVED)) ? -ENOENT : 0;
		if (rc == 0 && (f & SNAP_C_DRAINED)) {
			r.type = QD_SEED_COORD_DRAIN;
			rc = qd_seed_apply(x->d, &r);
		}
		if (rc == 0 && (f & SNAP_C_REMOVED)) {
			r.type = QD_SEED_COORD_REMOVE;
			rc = qd_seed_apply(x->d, &r);
		}
		if (rc != 0)
			note_skip(x->d, &r, seq, rc);
	}
	if (groups) {
		/* Same layout as a groups record, whose version byte is the snapshot's. */
		struct qd_seed_rec r;
		const char *why = "length mismatch";
		uint8_t tmp[RECORD_BYTES_MAX];
		size_t glen = len - off;
		int rc = -EINVAL;
		if (glen <= sizeof(tmp) && glen == GROUPS_HEAD + (size_t)get16(p + off + 2)) {
			memcpy(tmp, p + off, glen);
			tmp[0] = QD_SEED_VERSION;
			rc = decode(QD_SEED_GROUPS, tmp, (uint32_t)glen, &r, &why);
		}
		if (rc != 0) {
			snprintf(x->err, x->err_len, "seed log %s: snapshot %" PRIu64 ": bad groups "
				 "entry (%s)", x->d->seed->dir, seq, why);
			return -EBADMSG;
		}
		rc = qd_seed_apply(x->d, &r);
		if (rc != 0)
			note_skip(x->d, &r, seq, rc);
	}
	return 0;
}

static int
on_record(void *arg, uint64_t seq, uint16_t type, const void *payload, uint32_t len)
{
	struct replay_ctx *x = arg;
	struct qd_seed_rec r;
	const char *why = NULL;
	if (decode(type, payload, len, &r, &why) != 0) {
		snprintf(x->err, x->err_len, "seed log %s: record %" PRIu64 " (type %u): %s",
			 x->d->seed->dir, seq, (unsigned int)type, why);
		return -EBADMSG;
	}
	x->d->seed->since_snapshot++;
	int rc = qd_seed_apply(x->d, &r);
	if (rc != 0)
		note_skip(x->d, &r, seq, rc);
	return 0;
}

/* Fold the log into a snapshot of the state applied so far. Errors are logged, not
 * returned: the log goes on without the compaction. */
static void
maybe_compact(struct qd_daemon *d, struct qd_seed *s)
{
	if (s->since_snapshot < QD_SEED_COMPACT_RECORDS)
		return;
	uint64_t seq = qd_wal_durable_seq(s->wal);
	if (seq == 0)
		return;
	uint8_t buf[SNAP_BYTES_MAX];
	size_t len = snapshot_encode(d, s, buf);
	int rc = qd_wal_snapshot(s->wal, seq, buf, len);
	if (rc != 0) {
		QD_LOG(WARNING, main, "seed log %s: snapshot at record %" PRIu64 " failed: %s",
		       s->dir, seq, strerror(-rc));
		return;
	}
	QD_LOG(INFO, main, "seed log %s: compacted %" PRIu64 " records into a snapshot at "
	       "record %" PRIu64, s->dir, s->since_snapshot, seq);
	s->since_snapshot = 0;
}

/* ---- open, append, close ------------------------------------------------------- */

static int
make_dir(const char *path, char *err, size_t err_len)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST) {
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		if (errno == EEXIST)
			errno = ENOTDIR;
	}
	int rc = -errno;
	snprintf(err, err_len, "state.dir %s: %s", path, strerror(-rc));
	return rc;
}

int
qd_seed_open(struct qd_daemon *d, char *err, size_t err_len)
{
	if (d->cfg.state_dir[0] == '\0') {
		QD_LOG(NOTICE, main, "no state.dir: qdctl changes (coordinators add/remove, drain, "
		       "reload-groups) are not kept across restarts");
		return 0;
	}
	if (d->seed != NULL || d->coords == NULL) {
		snprintf(err, err_len, "seed log: opened twice or without a coordinator table");
		return -EINVAL;
	}
	int rc = make_dir(d->cfg.state_dir, err, err_len);
	if (rc != 0)
		return rc;
	struct qd_seed *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, err_len, "seed log: out of memory");
		return -ENOMEM;
	}
	int n = snprintf(s->dir, sizeof(s->dir), "%s/seed", d->cfg.state_dir);
	if (n < 0 || (size_t)n >= sizeof(s->dir)) {
		free(s);
		snprintf(err, err_len, "state.dir %s: too long for the seed log (at most %u "
			 "characters)", d->cfg.state_dir, QD_WAL_PATH_MAX - 6);
		return -ENAMETOOLONG;
	}
	/* A few records a day: the smallest segments and buffers do. */
	struct qd_wal_opts o = {
		.flags = QD_WAL_F_CREATE,
		.segment_bytes = QD_WAL_SEGMENT_BYTES_MIN,
		.batch_bytes = QD_WAL_BATCH_BYTES_MIN,
		.batches = QD_WAL_BATCHES_MIN,
		.records_max = 64,
		.record_bytes_max = 1024,
		.snapshot_bytes_max = 64 * 1024,
	};
	struct qd_wal_recovery rec;
	char msg[QD_WAL_MSG_MAX];
	s->wal = qd_wal_open(s->dir, &o, &rec, msg, sizeof(msg));
	if (s->wal == NULL) {
		rc = -errno;
		snprintf(err, err_len, "seed log: %s", msg);
		free(s);
		return rc;
	}
	if (rec.msg[0] != '\0')
		QD_LOG(WARNING, main, "seed log %s: %s", s->dir, rec.msg);
	d->seed = s;
	struct replay_ctx x = {.d = d, .err = err, .err_len = err_len};
	s->replaying = true;
	err[0] = '\0';
	rc = qd_wal_replay(s->wal, on_snapshot, on_record, &x);
	s->replaying = false;
	if (rc != 0) {
		if (err[0] == '\0')
			snprintf(err, err_len, "seed log %s: replay failed: %s", s->dir,
				 strerror(-rc));
		qd_wal_close(s->wal);
		free(s);
		d->seed = NULL;
		return rc < 0 ? rc : -EIO;
	}
	const struct seed_counts *c = &s->counts;
	bool groups = s->has_groups && d->cfg.admission_resource_groups[0] != '\0';
	QD_LOG(NOTICE, main, "seed log %s: %" PRIu64 " record(s)%s replayed: %u coordinator(s) "
	       "added, %u added back, %u removed, %u drained, %u undrained, %u groups file "
	       "record(s), %u skipped; %u coordinator(s) in the table%s%s",
	       s->dir, s->since_snapshot, rec.snapshot_seq ? " and a snapshot" : "", c->added,
	       c->readded, c->removed, c->drained, c->undrained, c->groups, c->skipped,
	       qd_coord_count(d->coords), groups ? "; groups file " : "",
	       groups ? d->cfg.admission_resource_groups : "");
	if (groups) {
		uint64_t now_hash = 0;
		if (qd_seed_file_hash(d->cfg.admission_resource_groups, &now_hash) == 0 &&
		    now_hash != s->groups_hash)
			QD_LOG(NOTICE, main, "seed log: %s changed since it was last loaded (config "
			       "epoch %016" PRIx64 ", now %016" PRIx64 "): the new content is loaded",
			       d->cfg.admission_resource_groups, s->groups_hash, now_hash);
	}
	maybe_compact(d, s);
	return 0;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
qd_seed_append(struct qd_daemon *d, const struct qd_seed_rec *r, char *err, size_t err_len)
{
	struct qd_seed *s = d->seed;
	if (s == NULL)
		return 0;
	if (s->failed != 0) {
		snprintf(err, err_len, "the seed log %s stopped confirming writes earlier (%s): "
			 "restart qdispatchd", s->dir, strerror(-s->failed));
		return s->failed;
	}
	int rc = qd_wal_error(s->wal);
	if (rc != 0) {
		snprintf(err, err_len, "the seed log %s failed earlier (%s): restart qdispatchd",
			 s->dir, strerror(-rc));
		return rc;
	}
	uint8_t buf[RECORD_BYTES_MAX];
	uint32_t len = encode(r, buf);
	if (len == 0) {
		snprintf(err, err_len, "seed log: cannot encode a change of type %u",
			 (unsigned int)r->type);
		return -EINVAL;
	}
	/* Every change before this one is applied: a snapshot now holds them all. */
	maybe_compact(d, s);
	uint64_t seq = 0;
	rc = qd_wal_append(s->wal, r->type, buf, len, 0, &seq);
	if (rc != 0) {
		snprintf(err, err_len, "seed log %s: append: %s", s->dir, strerror(-rc));
		return rc;
	}
	uint64_t deadline = now_ms() + QD_SEED_WAIT_MS;
	for (unsigned int round = 0; round < WAIT_ROUNDS; round++) {
		struct qd_wal_cpl cpl[8];
		unsigned int n = qd_wal_poll(s->wal, cpl, 8);
		for (unsigned int i = 0; i < n; i++) {
			/* Only our record can be outstanding: every append waits like this one. */
			if (cpl[i].seq != seq)
				continue;
			if (cpl[i].status == 0) {
				s->since_snapshot++;
				return 0;
			}
			snprintf(err, err_len, "seed log %s: record %" PRIu64 " not durable: %s%s",
				 s->dir, seq, strerror(-cpl[i].status),
				 cpl[i].status == -ENOSPC ? " (no room for a new segment)" : "");
			return cpl[i].status;
		}
		uint64_t now = now_ms();
		if (now >= deadline)
			break;
		rc = qd_wal_wait(s->wal, (int)(deadline - now));
		if (rc != 0 && rc != -ETIME && qd_wal_error(s->wal) == 0)
			break;
	}
	/* Its fate is unknown: it may reach the disk later, and a restart would replay a
	 * change that memory never had. Take no more until then. */
	s->failed = -ETIMEDOUT;
	QD_LOG(ERR, main, "seed log %s: record %" PRIu64 " not confirmed durable within %d ms: "
	       "no more changes until a restart", s->dir, seq, QD_SEED_WAIT_MS);
	snprintf(err, err_len, "seed log %s: record %" PRIu64 " not confirmed durable within %d "
		 "ms (the disk is stuck?); not applied now, a restart may apply it; no more "
		 "changes until a restart", s->dir, seq, QD_SEED_WAIT_MS);
	return -ETIMEDOUT;
}

int
qd_seed_file_hash(const char *path, uint64_t *hash)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
	uint8_t buf[8192];
	size_t total = 0;
	int rc = 0;
	while (total <= HASH_BYTES_MAX) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 0x100000001b3ull; /* FNV-1a 64 prime */
		}
		total += (size_t)n;
	}
	if (rc == 0 && total > HASH_BYTES_MAX)
		rc = -EFBIG;
	close(fd);
	if (rc == 0)
		*hash = h;
	return rc;
}

int
qd_seed_record_groups(struct qd_daemon *d, const char *path, char *err, size_t err_len)
{
	struct qd_seed_rec r = {.type = QD_SEED_GROUPS};
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(r.path)) {
		snprintf(err, err_len, "seed log: groups file name of %zu characters (1..%u)", n,
			 QD_SEED_PATH_MAX - 1);
		return -ENAMETOOLONG;
	}
	memcpy(r.path, path, n + 1);
	if (d->seed == NULL)
		return 0;
	/* The file may change between the reload and this read; the hash then names the
	 * newer content, which is what the next start loads anyway. */
	int rc = qd_seed_file_hash(path, &r.hash);
	if (rc != 0) {
		snprintf(err, err_len, "seed log: cannot hash %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = qd_seed_append(d, &r, err, err_len);
	if (rc != 0)
		return rc;
	qd_seed_apply(d, &r);
	return 0;
}

bool
qd_seed_durable(const struct qd_daemon *d)
{
	return d->seed != NULL;
}

uint64_t
qd_seed_records(const struct qd_daemon *d)
{
	return d->seed != NULL ? d->seed->since_snapshot : 0;
}

struct qd_wal *
qd_seed_wal(struct qd_daemon *d)
{
	return d->seed != NULL ? d->seed->wal : NULL;
}

void
qd_seed_close(struct qd_daemon *d)
{
	struct qd_seed *s = d->seed;
	if (s == NULL)
		return;
	int rc = qd_wal_close(s->wal);
	if (rc != 0)
		QD_LOG(WARNING, main, "seed log %s: close: %s", s->dir, strerror(-rc));
	free(s);
	d->seed = NULL;
}
