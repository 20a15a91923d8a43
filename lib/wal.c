/*
 * Durable append-only log on io_uring: group commit, segments, snapshots
 * and recovery.
 *
 * Appends are copied into the filling batch buffer (registered with the
 * ring). When no batch is in flight, qd_wal_poll() submits the oldest
 * staged batch as one write linked to one fdatasync; everything appended
 * while that pair runs piles up in the next buffer, which is the group
 * commit. Only one batch is ever in flight, and a new segment is created
 * only between batches. That gives recovery its rule (docs/wal.md): the
 * bytes of a batch reach the file only after every earlier batch is
 * durable, so damage followed by a record of a later batch is damage in
 * the middle, never a torn write.
 *
 * Segment creation, snapshots and recovery are rare and use plain blocking
 * system calls on the owner thread; only the per-record path goes through
 * the ring.
 */
#include <assert.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "crc32c.h"
#include "wal.h"

#define WAL_VERSION 1u
#define WAL_REC_MAGIC 0x52574451u /* "QDWR" as little-endian bytes */
#define WAL_REC_HDR 32u
#define WAL_SEG_MAGIC "QDWALSEG"
#define WAL_SEG_HDR 32u
#define WAL_SNAP_MAGIC "QDWALSNP"
#define WAL_SNAP_HDR 32u
#define WAL_TYPE_CLOSE 0xffffu    /* written by qd_wal_close() */
#define WAL_RING_DEPTH 8u         /* one batch in flight needs two entries */
#define WAL_SNAPSHOTS_MAX 16u     /* snapshot files tolerated in the directory */
#define WAL_DIRENTS_MAX 65536u    /* directory entries read at open */
#define WAL_NAME_MAX 48u          /* "snap-<20 digits>.snap.tmp" and NUL */
#define WAL_SYNC_WAITS_MAX 100000u /* qd_wal_sync(): waits before giving up on signals */
#define WAL_ENT_PENDING 1         /* qd_wal_cpl.status while not decided */
#define WAL_UD_WRITE 1u
#define WAL_UD_FSYNC 2u

_Static_assert(WAL_REC_HDR == QD_WAL_RECORD_OVERHEAD, "record header size is public");
_Static_assert(WAL_SEG_HDR == QD_WAL_SEGMENT_OVERHEAD, "segment header size is public");
_Static_assert(QD_WAL_RECORD_BYTES_MAX + WAL_REC_HDR <= QD_WAL_BATCH_BYTES_MAX,
	"a record of the largest size fits in the largest batch");
_Static_assert(QD_WAL_SEGMENT_BYTES_MAX <= UINT32_MAX, "segment size is stored in 32 bits");
_Static_assert(sizeof(WAL_SEG_MAGIC) - 1 == 8 && sizeof(WAL_SNAP_MAGIC) - 1 == 8,
	"file magics are 8 bytes");

/* A record header, decoded. The layout on disk is in docs/wal.md. */
struct wal_rec {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len;
	uint32_t crc;
	uint64_t seq;
	uint64_t batch_seq; /* seq of the first record of the batch it was written in */
};

enum wal_batch_state {
	WAL_BATCH_FREE = 0,
	WAL_BATCH_FILLING,  /* takes appends */
	WAL_BATCH_SEALED,   /* full, waits for the ring */
	WAL_BATCH_INFLIGHT, /* write + fdatasync submitted */
};

struct wal_batch {
	uint8_t *buf;
	uint32_t used;
	uint32_t nrec;
	uint32_t ent_first; /* index in wal.ents of its first record */
	uint64_t seq_first;
	uint64_t off;       /* file offset of buf[0] */
	bool seg_new;       /* create the segment seq_first before writing */
	enum wal_batch_state state;
};

struct wal_ent {
	uint64_t seq;
	uint64_t user_data;
	int32_t status;     /* WAL_ENT_PENDING, 0 or a negative errno */
};

struct qd_wal {
	struct io_uring ring;
	bool ring_up;
	int dir_fd;
	char dir[QD_WAL_PATH_MAX];
	struct qd_wal_opts o;
	int err;             /* fatal error, sticky */
	int fail_seen;       /* first failure since qd_wal_sync() started */
	int fault[3];        /* enum qd_wal_fault -> injected errno, 0 = none */

	uint64_t next_seq;
	uint64_t durable_seq;
	bool appended;       /* qd_wal_append() has been called: no replay */
	bool replayed;
	bool last_is_close;  /* the newest record in the log is a close mark */

	/* Where the next staged record goes. */
	bool plan_valid;     /* false: it starts a new segment */
	uint64_t plan_off;
	uint64_t plan_cap;

	/* The segment being appended to, as on disk. */
	int seg_fd;          /* -1: none, the next batch creates one */
	uint64_t seg_cap;
	uint64_t seg_end;    /* end of the durable records in it */
	uint64_t segs[QD_WAL_SEGMENTS_MAX]; /* first seq of each segment, ascending */
	uint32_t nsegs;
	uint64_t snap_seq;   /* 0: no snapshot */

	/* Recovery results that qd_wal_replay() needs. */
	uint32_t replay_nsegs;
	uint64_t replay_next_seq;
	uint64_t scan_bytes_max; /* largest segment file seen at open */

	struct wal_batch batches[QD_WAL_BATCHES_MAX];
	uint32_t b_head;     /* oldest batch not free */
	uint32_t b_used;
	bool inflight;
	bool sq_unsubmitted; /* io_uring_submit() failed transiently */
	unsigned int cqe_left;
	int write_err;
	int fsync_err;
	uint8_t *buf_mem;

	struct wal_ent *ents; /* records appended and not reaped, in seq order */
	uint32_t ent_head;
	uint32_t ent_count;

	struct qd_wal_stats st;
};

/* Little-endian field access at byte offsets of on-disk headers. */
static void
put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void
put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void
put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t
get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t
get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

__attribute__((format(printf, 3, 4))) static void
wal_msg(char *msg, size_t msg_size, const char *fmt, ...)
{
	va_list ap;

	if (msg == NULL || msg_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msg_size, fmt, ap);
	va_end(ap);
}

static void
wal_seg_name(char *name, uint64_t first_seq, bool tmp)
{
	snprintf(name, WAL_NAME_MAX, "seg-%020" PRIu64 ".wal%s", first_seq, tmp ? ".tmp" : "");
}

static void
wal_snap_name(char *name, uint64_t seq, bool tmp)
{
	snprintf(name, WAL_NAME_MAX, "snap-%020" PRIu64 ".snap%s", seq, tmp ? ".tmp" : "");
}

/*
 * Encode a record header for <type>, <len>, <seq>, <batch_seq> at <p>, the
 * payload already being at p + WAL_REC_HDR, and seal it with the CRC32C of
 * the header (crc field zero) followed by the payload.
 */
static void
wal_rec_encode(uint8_t *p, uint16_t type, uint32_t len, uint64_t seq, uint64_t batch_seq)
{
	uint32_t crc;

	put32(p + 0, WAL_REC_MAGIC);
	put16(p + 4, WAL_VERSION);
	put16(p + 6, type);
	put32(p + 8, len);
	put32(p + 12, 0);
	put64(p + 16, seq);
	put64(p + 24, batch_seq);
	crc = qd_crc32c(QD_CRC32C_INIT, p, WAL_REC_HDR);
	crc = qd_crc32c(crc, p + WAL_REC_HDR, len);
	put32(p + 12, crc);
}

/*
 * Check the record at <off> of the <len> bytes at <buf>. Returns NULL and
 * fills <r> when it is whole and its checksum holds, else why not.
 */
static const char *
wal_rec_check(const uint8_t *buf, size_t len, size_t off, struct wal_rec *r)
{
	uint8_t h[WAL_REC_HDR];
	uint32_t crc;

	if (off > len || len - off < WAL_REC_HDR)
		return "record header runs past the end of the file";
	memcpy(h, buf + off, WAL_REC_HDR);
	r->magic = get32(h + 0);
	if (r->magic != WAL_REC_MAGIC)
		return "bad record magic";
	r->version = get16(h + 4);
	r->type = get16(h + 6);
	r->len = get32(h + 8);
	r->crc = get32(h + 12);
	r->seq = get64(h + 16);
	r->batch_seq = get64(h + 24);
	if (r->version != WAL_VERSION)
		return "unknown record version";
	if (r->len > QD_WAL_RECORD_BYTES_MAX)
		return "record length over the limit";
	if (len - off - WAL_REC_HDR < r->len)
		return "record runs past the end of the file";
	if (r->seq == 0 || r->batch_seq == 0 || r->batch_seq > r->seq)
		return "bad sequence numbers";
	put32(h + 12, 0);
	crc = qd_crc32c(QD_CRC32C_INIT, h, WAL_REC_HDR);
	crc = qd_crc32c(crc, buf + off + WAL_REC_HDR, r->len);
	if (crc != r->crc)
		return "checksum mismatch";
	return NULL;
}

static void
wal_seg_hdr_encode(uint8_t *p, uint64_t first_seq, uint32_t seg_bytes)
{
	memset(p, 0, WAL_SEG_HDR);
	memcpy(p, WAL_SEG_MAGIC, 8);
	put16(p + 8, WAL_VERSION);
	put16(p + 10, WAL_SEG_HDR);
	put64(p + 16, first_seq);
	put32(p + 24, seg_bytes);
	put32(p + 12, qd_crc32c(QD_CRC32C_INIT, p, WAL_SEG_HDR));
}

/* Check a segment header against the <first_seq> of its file name. */
static const char *
wal_seg_hdr_check(const uint8_t *buf, size_t len, uint64_t first_seq, uint32_t *seg_bytes)
{
	uint8_t h[WAL_SEG_HDR];
	uint32_t crc;

	if (len < WAL_SEG_HDR)
		return "segment header runs past the end of the file";
	memcpy(h, buf, WAL_SEG_HDR);
	if (memcmp(h, WAL_SEG_MAGIC, 8) != 0)
		return "bad segment magic";
	crc = get32(h + 12);
	put32(h + 12, 0);
	if (qd_crc32c(QD_CRC32C_INIT, h, WAL_SEG_HDR) != crc)
		return "segment header checksum mismatch";
	if (get16(h + 8) != WAL_VERSION || get16(h + 10) != WAL_SEG_HDR)
		return "unknown segment version";
	if (get64(h + 16) != first_seq)
		return "segment header and file name disagree on the first sequence number";
	*seg_bytes = get32(h + 24);
	if (*seg_bytes < QD_WAL_SEGMENT_BYTES_MIN || *seg_bytes > QD_WAL_SEGMENT_BYTES_MAX)
		return "segment size out of range";
	return NULL;
}

/* Read all of file <fd>, <size> bytes, into <buf>. Returns 0 or -errno. */
static int
wal_read_all(int fd, uint8_t *buf, size_t size)
{
	size_t done = 0;

	/* Each pass reads at least one byte, so at most <size> passes. */
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file shrank under us */
		done += (size_t)n;
	}
	return 0;
}

/* Write all of <iov> at offset 0 of <fd>. Returns 0 or -errno. */
static int
wal_write_all(int fd, struct iovec *iov, int iovcnt)
{
	off_t off = 0;

	/* Each pass writes at least one byte or fails. */
	while (iovcnt > 0) {
		ssize_t n = pwritev(fd, iov, iovcnt, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		off += n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int
wal_fsync_dir(struct qd_wal *w)
{
	return fsync(w->dir_fd) == 0 ? 0 : -errno;
}

/*
 * The log failed for good with <err>: every record not yet durable fails
 * with it, and so does every later call. Never retried: after a failed
 * fsync the kernel may have dropped the dirty pages, so a retry that
 * succeeds proves nothing.
 */
static void
wal_fail(struct qd_wal *w, int err)
{
	assert(err < 0);
	if (w->err == 0)
		w->err = err;
	if (w->fail_seen == 0)
		w->fail_seen = err;
	for (uint32_t i = 0; i < w->b_used; i++) {
		struct wal_batch *b = &w->batches[(w->b_head + i) % w->o.batches];

		for (uint32_t k = 0; k < b->nrec; k++)
			w->ents[(b->ent_first + k) % w->o.records_max].status = w->err;
		w->st.records_failed += b->nrec;
		b->state = WAL_BATCH_FREE;
	}
	w->b_used = 0;
}

/*
 * Nothing is in flight and the staged batches cannot be written (<err>:
 * no room for their segment). Fail them and hand their sequence numbers
 * back, so that the log on disk stays gap-free and usable.
 */
static void
wal_rollback(struct qd_wal *w, int err)
{
	assert(!w->inflight);
	assert(w->b_used > 0);
	assert(w->batches[w->b_head].seq_first == w->durable_seq + 1);
	if (w->fail_seen == 0)
		w->fail_seen = err;
	for (uint32_t i = 0; i < w->b_used; i++) {
		struct wal_batch *b = &w->batches[(w->b_head + i) % w->o.batches];

		for (uint32_t k = 0; k < b->nrec; k++)
			w->ents[(b->ent_first + k) % w->o.records_max].status = err;
		w->st.records_failed += b->nrec;
		b->state = WAL_BATCH_FREE;
	}
	w->b_used = 0;
	w->next_seq = w->durable_seq + 1;
	w->plan_valid = w->seg_fd >= 0;
	w->plan_off = w->seg_end;
	w->plan_cap = w->seg_cap;
	if (err == -ENOSPC)
		w->st.enospc++;
}

static int
wal_prealloc(int fd, uint64_t bytes)
{
	if (fallocate(fd, 0, 0, (off_t)bytes) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	/* No preallocation here: a sparse file; a later write may hit ENOSPC. */
	return ftruncate(fd, (off_t)bytes) == 0 ? 0 : -errno;
}

/*
 * Create the segment whose first record is <first_seq> and make it the one
 * appended to: written under a temporary name, preallocated, header
 * written, fdatasync'ed, renamed, directory fsync'ed. A segment file under
 * its final name therefore always has a whole header. Returns 0 or -errno;
 * a failed fsync also makes the log fail.
 */
static int
wal_segment_create(struct qd_wal *w, uint64_t first_seq)
{
	char tmp[WAL_NAME_MAX], name[WAL_NAME_MAX];
	uint8_t hdr[WAL_SEG_HDR];
	struct iovec iov = { .iov_base = hdr, .iov_len = sizeof(hdr) };
	int fd, rc;

	assert(!w->inflight);
	if (w->nsegs == QD_WAL_SEGMENTS_MAX)
		return -ENOSPC; /* documented: snapshot to compact */
	wal_seg_name(tmp, first_seq, true);
	wal_seg_name(name, first_seq, false);
	fd = openat(w->dir_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = w->fault[QD_WAL_FAULT_SEGMENT];
	w->fault[QD_WAL_FAULT_SEGMENT] = 0;
	if (rc == 0)
		rc = wal_prealloc(fd, w->o.segment_bytes);
	wal_seg_hdr_encode(hdr, first_seq, w->o.segment_bytes);
	if (rc == 0)
		rc = wal_write_all(fd, &iov, 1);
	if (rc == 0 && fdatasync(fd) != 0) {
		rc = -errno;
		wal_fail(w, rc);
	}
	if (rc == 0 && renameat(w->dir_fd, tmp, w->dir_fd, name) != 0)
		rc = -errno;
	if (rc != 0) {
		close(fd);
		unlinkat(w->dir_fd, tmp, 0);
		return rc;
	}
	rc = wal_fsync_dir(w);
	if (rc != 0) {
		close(fd);
		wal_fail(w, rc);
		return rc;
	}
	if (w->seg_fd >= 0)
		close(w->seg_fd);
	w->seg_fd = fd;
	w->seg_cap = w->o.segment_bytes;
	w->seg_end = WAL_SEG_HDR;
	w->segs[w->nsegs++] = first_seq;
	w->st.rotations++;
	return 0;
}

/* The oldest staged batch goes to the ring as write -> fdatasync. */
static void
wal_submit(struct qd_wal *w)
{
	struct wal_batch *b;
	struct io_uring_sqe *sqe;
	int rc;

	if (w->err != 0 || w->inflight || w->b_used == 0)
		return;
	b = &w->batches[w->b_head];
	assert(b->state == WAL_BATCH_FILLING || b->state == WAL_BATCH_SEALED);
	assert(b->nrec > 0 && b->seq_first == w->durable_seq + 1);
	if (b->seg_new) {
		rc = wal_segment_create(w, b->seq_first);
		if (rc != 0 && w->err != 0)
			wal_fail(w, w->err);
		else if (rc != 0)
			wal_rollback(w, rc);
		if (rc != 0)
			return;
		b->seg_new = false;
	}
	assert(w->seg_fd >= 0 && b->off == w->seg_end && b->off + b->used <= w->seg_cap);
	/* The bytes about to go to disk start with the record we expect. */
	assert(get32(b->buf) == WAL_REC_MAGIC && get64(b->buf + 16) == b->seq_first);
	sqe = io_uring_get_sqe(&w->ring);
	assert(sqe != NULL); /* depth 8, at most 2 in use */
	if (w->st.registered_buffers)
		io_uring_prep_write_fixed(sqe, w->seg_fd, b->buf, b->used, b->off,
			(int)(b - w->batches));
	else
		io_uring_prep_write(sqe, w->seg_fd, b->buf, b->used, b->off);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, WAL_UD_WRITE);
	sqe = io_uring_get_sqe(&w->ring);
	assert(sqe != NULL);
	io_uring_prep_fsync(sqe, w->seg_fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, WAL_UD_FSYNC);
	b->state = WAL_BATCH_INFLIGHT;
	w->inflight = true;
	w->cqe_left = 2;
	w->write_err = 0;
	w->fsync_err = 0;
	w->st.writes++;
	w->st.fsyncs++;
	w->st.bytes_written += b->used;
	if (b->nrec > w->st.batch_records_max)
		w->st.batch_records_max = b->nrec;
	rc = io_uring_submit(&w->ring);
	if (rc == -EAGAIN || rc == -EINTR || rc == -EBUSY || (rc >= 0 && rc < 2)) {
		w->sq_unsubmitted = true; /* still in the SQ ring: the next reap retries */
	} else if (rc < 0) {
		w->inflight = false; /* nothing reached the kernel */
		wal_fail(w, rc);
	}
}

/* The batch in flight has both its completions: durable, or the log fails. */
static void
wal_batch_done(struct qd_wal *w)
{
	struct wal_batch *b = &w->batches[w->b_head];
	int err = w->write_err != 0 ? w->write_err : w->fsync_err;

	assert(b->state == WAL_BATCH_INFLIGHT && w->cqe_left == 0);
	w->inflight = false;
	if (err != 0) {
		wal_fail(w, err);
		return;
	}
	for (uint32_t k = 0; k < b->nrec; k++) {
		struct wal_ent *e = &w->ents[(b->ent_first + k) % w->o.records_max];

		assert(e->status == WAL_ENT_PENDING && e->seq == b->seq_first + k);
		e->status = 0;
	}
	w->durable_seq = b->seq_first + b->nrec - 1;
	w->seg_end = b->off + b->used;
	w->st.records_durable += b->nrec;
	b->state = WAL_BATCH_FREE;
	w->b_head = (w->b_head + 1) % w->o.batches;
	w->b_used--;
}

static void
wal_cqe(struct qd_wal *w, uint64_t ud, int res)
{
	const struct wal_batch *b = &w->batches[w->b_head];

	assert(w->inflight && w->cqe_left > 0);
	if (w->err != 0) {
		/* The log failed while this batch was in flight: nothing to decide. */
		if (--w->cqe_left == 0)
			w->inflight = false;
		return;
	}
	if (ud == WAL_UD_WRITE) {
		if (w->fault[QD_WAL_FAULT_WRITE] != 0)
			res = w->fault[QD_WAL_FAULT_WRITE];
		w->fault[QD_WAL_FAULT_WRITE] = 0;
		if (res < 0)
			w->write_err = res;
		else if ((uint32_t)res != b->used)
			w->write_err = -EIO; /* short write: the rest may never land */
	} else {
		assert(ud == WAL_UD_FSYNC);
		if (w->fault[QD_WAL_FAULT_FSYNC] != 0)
			res = w->fault[QD_WAL_FAULT_FSYNC];
		w->fault[QD_WAL_FAULT_FSYNC] = 0;
		if (res < 0)
			w->fsync_err = res; /* -ECANCELED when the write failed */
	}
	if (--w->cqe_left == 0)
		wal_batch_done(w);
}

/* Take the completions the ring has, without blocking. */
static void
wal_reap(struct qd_wal *w)
{
	struct io_uring_cqe *cqe;
	unsigned int n = 0;

	if (w->sq_unsubmitted && w->err == 0) {
		int rc = io_uring_submit(&w->ring);

		if (rc >= 0 && io_uring_sq_ready(&w->ring) == 0)
			w->sq_unsubmitted = false;
		else if (rc < 0 && rc != -EAGAIN && rc != -EINTR && rc != -EBUSY)
			wal_fail(w, rc);
	}
	/* At most the two completions of the batch in flight. */
	while (w->inflight && n < 2 && io_uring_peek_cqe(&w->ring, &cqe) == 0) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&w->ring, cqe);
		wal_cqe(w, ud, res);
		n++;
	}
}

/* Seal the filling batch, if any: the next append starts a new one. */
static void
wal_seal(struct qd_wal *w)
{
	struct wal_batch *b;

	if (w->b_used == 0)
		return;
	b = &w->batches[(w->b_head + w->b_used - 1) % w->o.batches];
	if (b->state == WAL_BATCH_FILLING)
		b->state = WAL_BATCH_SEALED;
}

static int
wal_append_internal(struct qd_wal *w, uint16_t type, const void *payload, uint32_t len,
		uint64_t user_data, uint64_t *seq_out)
{
	uint32_t need = WAL_REC_HDR + len;
	struct wal_batch *b = NULL;
	bool rotate;
	uint64_t seq = w->next_seq;
	struct wal_ent *e;

	if (w->ent_count == w->o.records_max) {
		w->st.appends_full++;
		return -EAGAIN;
	}
	rotate = !w->plan_valid || w->plan_off + need > w->plan_cap;
	if (w->b_used > 0) {
		b = &w->batches[(w->b_head + w->b_used - 1) % w->o.batches];
		if (b->state != WAL_BATCH_FILLING || rotate || b->used + need > w->o.batch_bytes)
			b = NULL;
	}
	if (b == NULL && w->b_used == w->o.batches) {
		w->st.appends_full++;
		return -EAGAIN;
	}
	if (b == NULL) {
		wal_seal(w);
		b = &w->batches[(w->b_head + w->b_used) % w->o.batches];
		assert(b->state == WAL_BATCH_FREE);
		w->b_used++;
		if (rotate) {
			w->plan_valid = true;
			w->plan_off = WAL_SEG_HDR;
			w->plan_cap = w->o.segment_bytes;
		}
		b->state = WAL_BATCH_FILLING;
		b->used = 0;
		b->nrec = 0;
		b->ent_first = (w->ent_head + w->ent_count) % w->o.records_max;
		b->seq_first = seq;
		b->off = w->plan_off;
		b->seg_new = rotate;
	}
	assert(b->used + need <= w->o.batch_bytes && w->plan_off + need <= w->plan_cap);
	if (len > 0)
		memcpy(b->buf + b->used + WAL_REC_HDR, payload, len);
	wal_rec_encode(b->buf + b->used, type, len, seq, b->seq_first);
	b->used += need;
	b->nrec++;
	w->plan_off += need;
	e = &w->ents[(w->ent_head + w->ent_count) % w->o.records_max];
	e->seq = seq;
	e->user_data = user_data;
	e->status = WAL_ENT_PENDING;
	w->ent_count++;
	w->next_seq++;
	w->appended = true;
	w->last_is_close = type == WAL_TYPE_CLOSE;
	w->st.appends++;
	if (seq_out != NULL)
		*seq_out = seq;
	return 0;
}

int
qd_wal_append(struct qd_wal *w, uint16_t type, const void *payload, uint32_t len,
		uint64_t user_data, uint64_t *seq)
{
	assert(w != NULL);
	assert(payload != NULL || len == 0);
	if (w->err != 0)
		return w->err;
	if (type >= QD_WAL_TYPE_RESERVED)
		return -EINVAL;
	if (len > w->o.record_bytes_max) {
		w->st.appends_too_big++;
		return -EMSGSIZE;
	}
	return wal_append_internal(w, type, payload, len, user_data, seq);
}

unsigned int
qd_wal_poll(struct qd_wal *w, struct qd_wal_cpl *cpl, unsigned int cpl_max)
{
	unsigned int n = 0;

	assert(w != NULL);
	assert(cpl != NULL || cpl_max == 0);
	wal_reap(w);
	wal_submit(w);
	while (n < cpl_max && w->ent_count > 0) {
		const struct wal_ent *e = &w->ents[w->ent_head];

		if (e->status == WAL_ENT_PENDING)
			break;
		cpl[n].seq = e->seq;
		cpl[n].user_data = e->user_data;
		cpl[n].status = e->status;
		n++;
		w->ent_head = (w->ent_head + 1) % w->o.records_max;
		w->ent_count--;
	}
	return n;
}

int
qd_wal_wait(struct qd_wal *w, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	int rc;

	assert(w != NULL);
	wal_reap(w);
	wal_submit(w);
	if (!w->inflight)
		return w->err;
	/* The kernel refused the batch for now: come back soon to resubmit it. */
	if (w->sq_unsubmitted && (timeout_ms < 0 || timeout_ms > 1))
		timeout_ms = 1;
	ts.tv_sec = timeout_ms / 1000;
	ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	rc = io_uring_wait_cqe_timeout(&w->ring, &cqe, timeout_ms < 0 ? NULL : &ts);
	if (rc == -ETIME)
		return -ETIME;
	if (rc < 0 && rc != -EINTR)
		wal_fail(w, rc);
	wal_reap(w);
	wal_submit(w);
	return w->err;
}

int
qd_wal_sync(struct qd_wal *w)
{
	assert(w != NULL);
	w->fail_seen = 0;
	/* Each wait finishes the batch in flight unless a signal cut it short. */
	for (uint32_t i = 0; i < WAL_SYNC_WAITS_MAX; i++) {
		wal_reap(w);
		wal_submit(w);
		if (w->b_used == 0 || w->err != 0)
			break;
		qd_wal_wait(w, -1);
	}
	if (w->b_used > 0 && w->err == 0)
		return -EINTR;
	assert(w->b_used == 0);
	return w->err != 0 ? w->err : w->fail_seen;
}

/*
 * Snapshot file: header then data, checksummed together. Written whole
 * under a temporary name, so a file under the final name is complete
 * unless the disk damaged it.
 */
static int
wal_snapshot_write(struct qd_wal *w, uint64_t seq, const void *data, size_t len)
{
	char tmp[WAL_NAME_MAX], name[WAL_NAME_MAX];
	uint8_t hdr[WAL_SNAP_HDR];
	struct iovec iov[2];
	uint32_t crc;
	int fd, rc;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, WAL_SNAP_MAGIC, 8);
	put16(hdr + 8, WAL_VERSION);
	put16(hdr + 10, WAL_SNAP_HDR);
	put64(hdr + 16, seq);
	put64(hdr + 24, len);
	crc = qd_crc32c(QD_CRC32C_INIT, hdr, sizeof(hdr));
	put32(hdr + 12, qd_crc32c(crc, data, len));
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = (void *)(uintptr_t)data, .iov_len = len };
	wal_snap_name(tmp, seq, true);
	wal_snap_name(name, seq, false);
	fd = openat(w->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = wal_write_all(fd, iov, len > 0 ? 2 : 1);
	if (rc == 0 && fsync(fd) != 0) {
		rc = -errno;
		wal_fail(w, rc);
	}
	close(fd);
	if (rc == 0 && renameat(w->dir_fd, tmp, w->dir_fd, name) != 0)
		rc = -errno;
	if (rc != 0) {
		unlinkat(w->dir_fd, tmp, 0);
		return rc;
	}
	rc = wal_fsync_dir(w);
	if (rc != 0)
		wal_fail(w, rc);
	return rc;
}

/* Delete the segments that hold only records up to <seq>, never the last one. */
static int
wal_compact(struct qd_wal *w, uint64_t seq)
{
	char name[WAL_NAME_MAX];
	uint32_t n = 0;

	while (w->nsegs - n >= 2 && w->segs[n + 1] <= seq + 1) {
		wal_seg_name(name, w->segs[n], false);
		if (unlinkat(w->dir_fd, name, 0) != 0 && errno != ENOENT)
			break; /* kept; the next snapshot or open tries again */
		n++;
	}
	if (n == 0)
		return 0;
	memmove(w->segs, w->segs + n, (w->nsegs - n) * sizeof(w->segs[0]));
	w->nsegs -= n;
	w->st.segments_deleted += n;
	return 1;
}

int
qd_wal_snapshot(struct qd_wal *w, uint64_t seq, const void *data, size_t len)
{
	char name[WAL_NAME_MAX];
	uint64_t old = w->snap_seq;
	int rc;

	assert(w != NULL);
	assert(data != NULL || len == 0);
	if (w->err != 0)
		return w->err;
	if (seq == 0 || seq > w->durable_seq || seq < w->snap_seq)
		return -EINVAL;
	if (len > w->o.snapshot_bytes_max)
		return -EMSGSIZE;
	rc = wal_snapshot_write(w, seq, data, len);
	if (rc != 0)
		return rc;
	w->snap_seq = seq;
	w->st.snapshots++;
	/* Only now, with the snapshot durable, may the records it covers go. */
	rc = wal_compact(w, seq);
	if (old != 0 && old != seq) {
		wal_snap_name(name, old, false);
		if (unlinkat(w->dir_fd, name, 0) == 0)
			rc = 1;
	}
	if (rc > 0) {
		rc = wal_fsync_dir(w);
		if (rc != 0)
			wal_fail(w, rc);
	}
	return rc;
}

uint64_t
qd_wal_durable_seq(const struct qd_wal *w)
{
	return w->durable_seq;
}

uint64_t
qd_wal_next_seq(const struct qd_wal *w)
{
	return w->next_seq;
}

int
qd_wal_error(const struct qd_wal *w)
{
	return w->err;
}

int
qd_wal_fd(const struct qd_wal *w)
{
	return w->ring.ring_fd;
}

void
qd_wal_stats_get(const struct qd_wal *w, struct qd_wal_stats *stats)
{
	*stats = w->st;
	stats->segments = w->nsegs;
}

void
qd_wal_inject_fault(struct qd_wal *w, enum qd_wal_fault fault, int err)
{
	assert(fault >= QD_WAL_FAULT_WRITE && fault <= QD_WAL_FAULT_SEGMENT);
	assert(err <= 0);
	w->fault[fault] = err;
}

static void
wal_free(struct qd_wal *w)
{
	if (w->ring_up)
		io_uring_queue_exit(&w->ring);
	if (w->seg_fd >= 0)
		close(w->seg_fd);
	if (w->dir_fd >= 0)
		close(w->dir_fd); /* drops the flock */
	free(w->buf_mem);
	free(w->ents);
	free(w);
}

int
qd_wal_close(struct qd_wal *w)
{
	int rc;

	assert(w != NULL);
	rc = qd_wal_sync(w);
	/*
	 * The close mark is a batch of its own, so damage in the records
	 * before it is told apart from a torn write at the next open.
	 */
	if (rc == 0 && w->err == 0 && w->seg_fd >= 0 && !w->last_is_close) {
		w->ent_count = 0; /* completions are dropped at close anyway */
		if (wal_append_internal(w, WAL_TYPE_CLOSE, NULL, 0, 0, NULL) == 0)
			rc = qd_wal_sync(w);
	}
	wal_free(w);
	return rc;
}

/* ---- recovery ---------------------------------------------------------- */

struct wal_scan {
	struct qd_wal *w;
	const uint8_t *buf;
	size_t len;
	const char *name;
	bool is_last;
	uint64_t next_first;     /* first seq of the next segment, if not last */
	bool skip;
	uint64_t expected;       /* seq the next record must have */
	uint64_t deliver_after;  /* records up to this seq are in the snapshot */
	qd_wal_record_fn fn;     /* NULL during the verifying pass */
	void *arg;
	struct qd_wal_recovery *rec;
	char *msg;
	size_t msg_size;
	size_t tail;             /* last segment: where appends go on */
	uint64_t first_after_snap;
};

static bool
wal_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* The first whole record at or after <from> whose seq is at least <min_seq>. */
static bool
wal_find_record(const uint8_t *buf, size_t len, size_t from, uint64_t min_seq, bool later_batch,
		size_t *at, struct wal_rec *r)
{
	/* One pass over the rest of the file; the magic test skips most offsets. */
	for (size_t q = from; q + WAL_REC_HDR <= len; q++) {
		if (buf[q] != (WAL_REC_MAGIC & 0xffu) || get32(buf + q) != WAL_REC_MAGIC)
			continue;
		if (wal_rec_check(buf, len, q, r) != NULL || r->seq < min_seq)
			continue;
		if (later_batch && r->batch_seq < min_seq)
			continue;
		*at = q;
		return true;
	}
	return false;
}

static void
wal_note_skip(struct wal_scan *s, size_t from, size_t to, uint64_t seq_to)
{
	struct qd_wal_recovery *rec = s->rec;

	rec->skipped_ranges++;
	rec->skipped_bytes += to - from;
	if (seq_to > s->expected)
		rec->skipped_seqs += seq_to - s->expected;
	if (rec->msg[0] == '\0')
		wal_msg(rec->msg, sizeof(rec->msg),
			"skipped damage in %s/%s at offset %zu (%zu bytes, seqs %" PRIu64
			"..%" PRIu64 ")", s->w->dir, s->name, from, to - from, s->expected,
			seq_to > s->expected ? seq_to - 1 : s->expected);
}

/*
 * The record expected at <pos> is missing or bad (<why>). Decide: the
 * clean end of a segment, a torn tail, or damage in the middle, which is
 * refused or, in skip mode, stepped over. Returns 1 when the scan of this
 * segment is over, 0 to go on at s->tail, -EBADMSG to refuse.
 */
static int
wal_scan_bad(struct wal_scan *s, size_t pos, const char *why)
{
	struct wal_rec r;
	size_t at;

	if (!s->is_last && s->expected >= s->next_first)
		return 1; /* records run up to the next segment: the rest is unused */
	/*
	 * In the last segment, bad bytes are a torn write unless a record of a
	 * later batch follows: that batch was written only after this one was
	 * durable.
	 */
	if (s->is_last && !wal_find_record(s->buf, s->len, pos, s->expected + 1, true, &at, &r)) {
		s->tail = pos;
		return 1;
	}
	if (!s->skip && !s->is_last && wal_zero(s->buf + pos, s->len - pos)) {
		wal_msg(s->msg, s->msg_size,
			"%s/%s: offset %zu: records missing: the segment ends before seq %"
			PRIu64 " but the next one starts at seq %" PRIu64 ": refusing to open",
			s->w->dir, s->name, pos, s->expected, s->next_first);
		return -EBADMSG;
	}
	if (!s->skip) {
		wal_msg(s->msg, s->msg_size,
			"%s/%s: damaged record at offset %zu (%s; expected seq %" PRIu64 "), "
			"followed by %s: refusing to open (skip mode drops the damaged range)",
			s->w->dir, s->name, pos, why, s->expected,
			s->is_last ? "records of a later batch" : "a later segment");
		return -EBADMSG;
	}
	if (!wal_find_record(s->buf, s->len, pos, s->expected, false, &at, &r)) {
		assert(!s->is_last);
		wal_note_skip(s, pos, s->len, s->next_first);
		if (s->next_first > s->expected)
			s->expected = s->next_first;
		return 1;
	}
	wal_note_skip(s, pos, at, r.seq);
	s->expected = r.seq;
	s->tail = at;
	return 0;
}

/* Walk the records of one segment, from s->tail. Returns 0, -EBADMSG or a callback's value. */
static int
wal_scan_records(struct wal_scan *s)
{
	size_t pos = s->tail;

	/* Every pass consumes a record or moves on: bounded by the file size. */
	while (pos <= s->len) {
		struct wal_rec r;
		const char *why = wal_rec_check(s->buf, s->len, pos, &r);
		int rc;

		if (why == NULL && r.seq != s->expected)
			why = "unexpected sequence number";
		if (why != NULL) {
			rc = wal_scan_bad(s, pos, why);
			if (rc != 0)
				return rc > 0 ? 0 : rc;
			assert(s->tail >= pos);
			pos = s->tail;
			continue;
		}
		s->rec->records++;
		if (r.seq > s->deliver_after && s->first_after_snap == 0)
			s->first_after_snap = r.seq;
		if (s->fn != NULL && r.seq > s->deliver_after && r.type < QD_WAL_TYPE_RESERVED) {
			rc = s->fn(s->arg, r.seq, r.type, s->buf + pos + WAL_REC_HDR, r.len);
			if (rc != 0)
				return rc;
		}
		s->w->last_is_close = r.type == WAL_TYPE_CLOSE;
		s->expected++;
		pos += WAL_REC_HDR + r.len;
		s->tail = pos;
	}
	assert(0); /* wal_rec_check fails at the end of the buffer */
	return -EIO;
}

/* Read segment <i> of the list into <buf> and walk it. */
static int
wal_scan_segment(struct wal_scan *s, uint32_t i, uint8_t *buf, uint32_t *seg_bytes)
{
	struct qd_wal *w = s->w;
	char name[WAL_NAME_MAX];
	struct stat sb;
	const char *why;
	int fd, rc;

	wal_seg_name(name, w->segs[i], false);
	s->name = name;
	fd = openat(w->dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		rc = -errno;
		wal_msg(s->msg, s->msg_size, "%s/%s: %s", w->dir, name, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if ((uint64_t)sb.st_size > w->scan_bytes_max) {
		close(fd);
		wal_msg(s->msg, s->msg_size, "%s/%s: grew while opening", w->dir, name);
		return -EIO;
	}
	rc = wal_read_all(fd, buf, (size_t)sb.st_size);
	close(fd);
	if (rc != 0) {
		wal_msg(s->msg, s->msg_size, "%s/%s: read: %s", w->dir, name, strerror(-rc));
		return rc;
	}
	s->buf = buf;
	s->len = (size_t)sb.st_size;
	s->is_last = i + 1 == w->nsegs;
	s->next_first = s->is_last ? UINT64_MAX : w->segs[i + 1];
	*seg_bytes = (uint32_t)(s->len < QD_WAL_SEGMENT_BYTES_MAX ? s->len :
		QD_WAL_SEGMENT_BYTES_MAX);
	why = wal_seg_hdr_check(buf, s->len, w->segs[i], seg_bytes);
	if (why != NULL && !s->skip) {
		wal_msg(s->msg, s->msg_size, "%s/%s: offset 0: %s: refusing to open", w->dir,
			name, why);
		return -EBADMSG;
	}
	if (why != NULL)
		wal_note_skip(s, 0, WAL_SEG_HDR, s->expected);
	if (w->segs[i] != s->expected && !s->skip) {
		wal_msg(s->msg, s->msg_size, "%s/%s: offset 0: records missing: expected seq %"
			PRIu64 ", segment starts at %" PRIu64 ": refusing to open", w->dir, name,
			s->expected, w->segs[i]);
		return -EBADMSG;
	}
	if (w->segs[i] > s->expected) {
		wal_note_skip(s, 0, 0, w->segs[i]);
		s->expected = w->segs[i];
	}
	s->tail = WAL_SEG_HDR;
	return wal_scan_records(s);
}

static int
wal_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Parse "<prefix><20 digits><suffix>". */
static bool
wal_parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *seq)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	uint64_t v = 0;

	if (strlen(name) != pl + 20 + sl || strncmp(name, prefix, pl) != 0 ||
			strcmp(name + pl + 20, suffix) != 0)
		return false;
	for (size_t i = 0; i < 20; i++) {
		char c = name[pl + i];

		if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(c - '0');
	}
	*seq = v;
	return v > 0;
}

/*
 * List the directory: segments into w->segs, snapshots into <snaps>
 * (ascending both), leftover temporary files deleted.
 */
static int
wal_list(struct qd_wal *w, uint64_t *snaps, uint32_t *nsnaps, char *msg, size_t msg_size)
{
	int fd = dup(w->dir_fd);
	DIR *d;
	struct dirent *de;
	uint32_t n = 0;
	int rc = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	while (rc == 0 && (de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		size_t nl = strlen(nm);
		uint64_t seq;

		if (++n > WAL_DIRENTS_MAX) {
			wal_msg(msg, msg_size, "%s: more than %u entries", w->dir, WAL_DIRENTS_MAX);
			rc = -EMFILE;
		} else if (nl > 4 && strcmp(nm + nl - 4, ".tmp") == 0 &&
				(strncmp(nm, "seg-", 4) == 0 || strncmp(nm, "snap-", 5) == 0)) {
			unlinkat(w->dir_fd, nm, 0); /* an interrupted create or snapshot */
		} else if (wal_parse_name(nm, "seg-", ".wal", &seq)) {
			if (w->nsegs == QD_WAL_SEGMENTS_MAX) {
				wal_msg(msg, msg_size, "%s: more than %u segments", w->dir,
					QD_WAL_SEGMENTS_MAX);
				rc = -EMFILE;
			} else {
				w->segs[w->nsegs++] = seq;
			}
		} else if (wal_parse_name(nm, "snap-", ".snap", &seq)) {
			if (*nsnaps == WAL_SNAPSHOTS_MAX) {
				wal_msg(msg, msg_size, "%s: more than %u snapshots", w->dir,
					WAL_SNAPSHOTS_MAX);
				rc = -EMFILE;
			} else {
				snaps[(*nsnaps)++] = seq;
			}
		}
	}
	closedir(d);
	qsort(w->segs, w->nsegs, sizeof(w->segs[0]), wal_cmp_u64);
	qsort(snaps, *nsnaps, sizeof(snaps[0]), wal_cmp_u64);
	return rc;
}

/*
 * Read and verify snapshot <seq>. On success returns 0 with the whole file
 * in *<file> (malloc'ed, the caller frees; the data starts WAL_SNAP_HDR
 * bytes in) and the data size in *<len>. On damage returns -EBADMSG with
 * the reason in *<why>.
 */
static int
wal_snap_load(struct qd_wal *w, uint64_t seq, uint8_t **file, size_t *len, const char **why)
{
	char name[WAL_NAME_MAX];
	uint8_t hdr[WAL_SNAP_HDR];
	struct stat sb;
	uint8_t *buf;
	uint32_t crc;
	int fd, rc;

	*why = NULL;
	wal_snap_name(name, seq, false);
	fd = openat(w->dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (sb.st_size < WAL_SNAP_HDR || (uint64_t)sb.st_size > QD_WAL_SNAPSHOT_BYTES_MAX +
			(uint64_t)WAL_SNAP_HDR) {
		close(fd);
		*why = "snapshot size out of range";
		return -EBADMSG;
	}
	buf = malloc((size_t)sb.st_size);
	if (buf == NULL) {
		close(fd);
		return -ENOMEM;
	}
	rc = wal_read_all(fd, buf, (size_t)sb.st_size);
	close(fd);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	memcpy(hdr, buf, sizeof(hdr));
	crc = get32(hdr + 12);
	put32(hdr + 12, 0);
	if (memcmp(hdr, WAL_SNAP_MAGIC, 8) != 0)
		*why = "bad snapshot magic";
	else if (get16(hdr + 8) != WAL_VERSION || get16(hdr + 10) != WAL_SNAP_HDR)
		*why = "unknown snapshot version";
	else if (get64(hdr + 16) != seq)
		*why = "snapshot header and file name disagree on the sequence number";
	else if (get64(hdr + 24) != (uint64_t)sb.st_size - WAL_SNAP_HDR)
		*why = "snapshot length does not match the file size";
	else if (qd_crc32c(qd_crc32c(QD_CRC32C_INIT, hdr, sizeof(hdr)), buf + WAL_SNAP_HDR,
			(size_t)sb.st_size - WAL_SNAP_HDR) != crc)
		*why = "snapshot checksum mismatch";
	if (*why != NULL) {
		free(buf);
		return -EBADMSG;
	}
	*len = (size_t)sb.st_size - WAL_SNAP_HDR;
	*file = buf;
	return 0;
}

/* Pick the newest snapshot that verifies; older ones are then deleted. */
static int
wal_recover_snapshot(struct qd_wal *w, struct qd_wal_recovery *rec, char *msg, size_t msg_size)
{
	uint64_t snaps[WAL_SNAPSHOTS_MAX];
	uint32_t nsnaps = 0;
	char name[WAL_NAME_MAX];
	char m[QD_WAL_MSG_MAX];
	int rc = wal_list(w, snaps, &nsnaps, msg, msg_size);

	if (rc != 0)
		return rc;
	for (uint32_t i = nsnaps; i > 0 && w->snap_seq == 0; i--) {
		const char *why;
		uint8_t *data;
		size_t len;

		rc = wal_snap_load(w, snaps[i - 1], &data, &len, &why);
		if (rc == 0) {
			free(data);
			w->snap_seq = snaps[i - 1];
			break;
		}
		wal_snap_name(name, snaps[i - 1], false);
		wal_msg(m, sizeof(m), "%s/%s: offset 0: %s: refusing to open (skip mode "
			"falls back to an older snapshot)", w->dir, name,
			why != NULL ? why : strerror(-rc));
		if (rc != -EBADMSG || !(w->o.flags & QD_WAL_F_SKIP_CORRUPT)) {
			wal_msg(msg, msg_size, "%s", m);
			return rc;
		}
		rec->skipped_ranges++;
		if (rec->msg[0] == '\0')
			wal_msg(rec->msg, sizeof(rec->msg), "skipped: %s", m);
	}
	rec->snapshot_seq = w->snap_seq;
	for (uint32_t i = 0; i + 1 < nsnaps && snaps[nsnaps - 1] == w->snap_seq; i++) {
		wal_snap_name(name, snaps[i], false);
		unlinkat(w->dir_fd, name, 0); /* superseded; an interrupted compaction */
	}
	return 0;
}

/* Size the scan buffer: the largest segment file. */
static int
wal_scan_size(struct qd_wal *w, char *msg, size_t msg_size)
{
	char name[WAL_NAME_MAX];
	struct stat sb;

	w->scan_bytes_max = WAL_SEG_HDR;
	for (uint32_t i = 0; i < w->nsegs; i++) {
		wal_seg_name(name, w->segs[i], false);
		if (fstatat(w->dir_fd, name, &sb, 0) != 0) {
			wal_msg(msg, msg_size, "%s/%s: %s", w->dir, name, strerror(errno));
			return -errno;
		}
		if ((uint64_t)sb.st_size > QD_WAL_SEGMENT_BYTES_MAX) {
			wal_msg(msg, msg_size, "%s/%s: %jd bytes, larger than any segment", w->dir,
				name, (intmax_t)sb.st_size);
			return -EBADMSG;
		}
		if ((uint64_t)sb.st_size > w->scan_bytes_max)
			w->scan_bytes_max = (uint64_t)sb.st_size;
	}
	return 0;
}

/*
 * Walk every kept segment. With <fn> NULL this is the verifying pass of
 * qd_wal_open(); with <fn> it is qd_wal_replay(), which must see exactly
 * what the first pass saw. <buf> holds the last segment afterwards.
 */
static int
wal_walk(struct qd_wal *w, struct wal_scan *s, uint8_t *buf, uint32_t *last_seg_bytes)
{
	int rc = 0;

	s->w = w;
	s->skip = (w->o.flags & QD_WAL_F_SKIP_CORRUPT) != 0;
	s->deliver_after = w->snap_seq;
	s->expected = w->snap_seq + 1;
	if (w->nsegs > 0 && w->segs[0] < s->expected)
		s->expected = w->segs[0];
	for (uint32_t i = 0; i < w->nsegs && rc == 0; i++)
		rc = wal_scan_segment(s, i, buf, last_seg_bytes);
	return rc;
}

/*
 * The last segment goes on from s->tail. Bytes after it that are not zero
 * are a torn write: zero them on disk (truncate and preallocate again)
 * before anything is appended, so that stale bytes can never pass for
 * records at a later recovery.
 */
static int
wal_fix_tail(struct qd_wal *w, const struct wal_scan *s, uint32_t seg_bytes,
		struct qd_wal_recovery *rec, char *msg, size_t msg_size)
{
	char name[WAL_NAME_MAX];
	size_t end = s->len;
	int fd, rc = 0;

	wal_seg_name(name, w->segs[w->nsegs - 1], false);
	fd = openat(w->dir_fd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		wal_msg(msg, msg_size, "%s/%s: %s", w->dir, name, strerror(errno));
		return -errno;
	}
	/* Bounded by the segment size. */
	while (end > s->tail && s->buf[end - 1] == 0)
		end--;
	if (end == s->tail && s->len < seg_bytes) {
		/* A crash cut the zeroing below short: preallocate again. */
		rc = wal_prealloc(fd, seg_bytes);
		if (rc == 0 && fsync(fd) != 0)
			rc = -errno;
	}
	if (end > s->tail && rc == 0) {
		rec->truncated_off = s->tail;
		rec->truncated_bytes = end - s->tail;
		if (ftruncate(fd, (off_t)s->tail) != 0)
			rc = -errno;
		if (rc == 0)
			rc = wal_prealloc(fd, seg_bytes > s->len ? seg_bytes : s->len);
		if (rc == 0 && fsync(fd) != 0)
			rc = -errno;
		if (rec->msg[0] == '\0')
			wal_msg(rec->msg, sizeof(rec->msg), "torn tail zeroed in %s/%s at offset "
				"%zu (%zu bytes)", w->dir, name, s->tail, end - s->tail);
	}
	if (rc != 0) {
		wal_msg(msg, msg_size, "%s/%s: zeroing the tail at offset %zu: %s", w->dir, name,
			s->tail, strerror(-rc));
		close(fd);
		return rc;
	}
	w->seg_fd = fd;
	w->seg_cap = seg_bytes;
	w->seg_end = s->tail;
	return 0;
}

static int
wal_recover(struct qd_wal *w, struct qd_wal_recovery *rec, char *msg, size_t msg_size)
{
	struct wal_scan s;
	uint32_t seg_bytes = 0;
	uint32_t before;
	uint8_t *buf;
	int rc;

	rc = wal_recover_snapshot(w, rec, msg, msg_size);
	before = w->nsegs;
	if (rc == 0 && w->snap_seq != 0 && wal_compact(w, w->snap_seq) > 0)
		rc = wal_fsync_dir(w); /* finish a compaction a crash cut short */
	rec->segments_obsolete = before - w->nsegs;
	if (rc == 0)
		rc = wal_scan_size(w, msg, msg_size);
	if (rc != 0)
		return rc;
	buf = malloc(w->scan_bytes_max);
	if (buf == NULL)
		return -ENOMEM;
	memset(&s, 0, sizeof(s));
	s.rec = rec;
	s.msg = msg;
	s.msg_size = msg_size;
	rc = wal_walk(w, &s, buf, &seg_bytes);
	if (rc == 0 && w->nsegs > 0)
		rc = wal_fix_tail(w, &s, seg_bytes, rec, msg, msg_size);
	free(buf);
	if (rc != 0)
		return rc;
	w->replay_nsegs = w->nsegs;
	w->replay_next_seq = s.expected;
	w->next_seq = s.expected;
	if (w->next_seq <= w->snap_seq)
		w->next_seq = w->snap_seq + 1; /* the log lost records the snapshot holds */
	/*
	 * After skipped damage, or a log shorter than its snapshot, appends
	 * start a new segment, so that the next snapshot compacts the old ones
	 * away and later opens need no skip mode.
	 */
	if (w->seg_fd >= 0 && (rec->skipped_ranges > 0 || w->next_seq != s.expected)) {
		close(w->seg_fd);
		w->seg_fd = -1;
	}
	w->durable_seq = w->next_seq - 1;
	w->plan_valid = w->seg_fd >= 0;
	w->plan_off = w->seg_end;
	w->plan_cap = w->seg_cap;
	rec->segments = w->nsegs;
	rec->first_seq = s.first_after_snap;
	rec->last_seq = w->durable_seq;
	rec->clean_close = w->last_is_close && rec->truncated_bytes == 0;
	return 0;
}

static int
wal_opts(struct qd_wal *w, const struct qd_wal_opts *opts, char *msg, size_t msg_size)
{
	struct qd_wal_opts *o = &w->o;
	uint32_t rec_fit;

	if (opts != NULL)
		*o = *opts;
	if (o->segment_bytes == 0)
		o->segment_bytes = QD_WAL_SEGMENT_BYTES_DEFAULT;
	if (o->batch_bytes == 0)
		o->batch_bytes = QD_WAL_BATCH_BYTES_DEFAULT;
	if (o->batches == 0)
		o->batches = QD_WAL_BATCHES_DEFAULT;
	if (o->records_max == 0)
		o->records_max = QD_WAL_RECORDS_DEFAULT;
	if (o->snapshot_bytes_max == 0)
		o->snapshot_bytes_max = QD_WAL_SNAPSHOT_BYTES_DEFAULT;
	rec_fit = o->batch_bytes - WAL_REC_HDR;
	if (o->segment_bytes - WAL_SEG_HDR - WAL_REC_HDR < rec_fit)
		rec_fit = o->segment_bytes - WAL_SEG_HDR - WAL_REC_HDR;
	if (o->record_bytes_max == 0)
		o->record_bytes_max = rec_fit < QD_WAL_RECORD_BYTES_DEFAULT ? rec_fit :
			QD_WAL_RECORD_BYTES_DEFAULT;
	if ((o->flags & ~(QD_WAL_F_CREATE | QD_WAL_F_SKIP_CORRUPT)) != 0 ||
			o->segment_bytes < QD_WAL_SEGMENT_BYTES_MIN ||
			o->segment_bytes > QD_WAL_SEGMENT_BYTES_MAX ||
			o->batch_bytes < QD_WAL_BATCH_BYTES_MIN ||
			o->batch_bytes > QD_WAL_BATCH_BYTES_MAX ||
			o->batches < QD_WAL_BATCHES_MIN || o->batches > QD_WAL_BATCHES_MAX ||
			o->records_max > QD_WAL_RECORDS_MAX ||
			o->record_bytes_max > QD_WAL_RECORD_BYTES_MAX ||
			o->record_bytes_max > rec_fit ||
			o->snapshot_bytes_max > QD_WAL_SNAPSHOT_BYTES_MAX) {
		wal_msg(msg, msg_size, "wal: option out of range (see wal.h for the limits)");
		return -EINVAL;
	}
	return 0;
}

/* fsync the directory that holds <dir>, after creating <dir> in it. */
static int
wal_fsync_parent(const char *dir)
{
	char parent[QD_WAL_PATH_MAX];
	size_t n = strlen(dir);
	int fd, rc = 0;

	memcpy(parent, dir, n + 1);
	while (n > 1 && parent[n - 1] == '/')
		parent[--n] = '\0';
	while (n > 0 && parent[n - 1] != '/')
		n--;
	if (n == 0)
		snprintf(parent, sizeof(parent), ".");
	else
		parent[n == 1 ? 1 : n - 1] = '\0';
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int
wal_open_dir(struct qd_wal *w, const char *dir, char *msg, size_t msg_size)
{
	int rc;

	if (strlen(dir) >= sizeof(w->dir) || dir[0] == '\0') {
		wal_msg(msg, msg_size, "wal: directory path empty or too long");
		return -ENAMETOOLONG;
	}
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	if ((w->o.flags & QD_WAL_F_CREATE) && mkdir(dir, 0755) == 0) {
		rc = wal_fsync_parent(dir);
		if (rc != 0) {
			wal_msg(msg, msg_size, "%s: fsync of the parent: %s", dir, strerror(-rc));
			return rc;
		}
	}
	w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dir_fd < 0) {
		rc = -errno;
		wal_msg(msg, msg_size, "%s: %s", dir, strerror(-rc));
		return rc;
	}
	/* One owner at a time: two writers would interleave batches. */
	if (flock(w->dir_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		wal_msg(msg, msg_size, "%s: %s", dir, rc == -EBUSY ?
			"another owner has the log open" : strerror(-rc));
		return rc;
	}
	return 0;
}

/* The ring, the batch buffers (registered when the kernel lets us) and the queue. */
static int
wal_setup_io(struct qd_wal *w, char *msg, size_t msg_size)
{
	struct iovec iov[QD_WAL_BATCHES_MAX];
	size_t bytes = (size_t)w->o.batches * w->o.batch_bytes;
	void *mem;
	int rc;

	rc = io_uring_queue_init(WAL_RING_DEPTH, &w->ring, 0);
	if (rc < 0) {
		wal_msg(msg, msg_size, "wal: io_uring_queue_init: %s", strerror(-rc));
		return rc;
	}
	w->ring_up = true;
	if (posix_memalign(&mem, 4096, bytes) != 0)
		return -ENOMEM;
	w->buf_mem = mem;
	memset(mem, 0, bytes);
	for (uint32_t i = 0; i < w->o.batches; i++) {
		w->batches[i].buf = w->buf_mem + (size_t)i * w->o.batch_bytes;
		iov[i].iov_base = w->batches[i].buf;
		iov[i].iov_len = w->o.batch_bytes;
	}
	/* Refused under a small RLIMIT_MEMLOCK: plain writes do the same job. */
	w->st.registered_buffers = io_uring_register_buffers(&w->ring, iov, w->o.batches) == 0;
	w->ents = calloc(w->o.records_max, sizeof(w->ents[0]));
	return w->ents != NULL ? 0 : -ENOMEM;
}

struct qd_wal *
qd_wal_open(const char *dir, const struct qd_wal_opts *opts, struct qd_wal_recovery *rec,
		char *msg, size_t msg_size)
{
	struct qd_wal_recovery rec_local;
	struct qd_wal *w;
	int rc;

	assert(dir != NULL);
	if (rec == NULL)
		rec = &rec_local;
	memset(rec, 0, sizeof(*rec));
	wal_msg(msg, msg_size, "%s", "");
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	w->dir_fd = -1;
	w->seg_fd = -1;
	rc = wal_opts(w, opts, msg, msg_size);
	if (rc == 0)
		rc = wal_open_dir(w, dir, msg, msg_size);
	if (rc == 0)
		rc = wal_setup_io(w, msg, msg_size);
	if (rc == 0)
		rc = wal_recover(w, rec, msg, msg_size);
	if (rc != 0) {
		if (msg != NULL && msg_size > 0 && msg[0] == '\0')
			wal_msg(msg, msg_size, "%s: %s", dir, strerror(-rc));
		wal_free(w);
		errno = -rc;
		return NULL;
	}
	w->st.segments_deleted = 0; /* counts compaction by snapshots only */
	return w;
}

int
qd_wal_replay(struct qd_wal *w, qd_wal_snapshot_fn snap, qd_wal_record_fn record, void *arg)
{
	struct qd_wal_recovery rec;
	struct wal_scan s;
	uint32_t seg_bytes;
	uint8_t *buf;
	int rc = 0;

	assert(w != NULL && record != NULL);
	if (w->appended || w->replayed || w->st.snapshots > 0)
		return -EBUSY;
	w->replayed = true;
	assert(w->nsegs == w->replay_nsegs);
	if (w->snap_seq != 0 && snap != NULL) {
		const char *why;
		uint8_t *data;
		size_t len;

		rc = wal_snap_load(w, w->snap_seq, &data, &len, &why);
		if (rc != 0)
			return rc == -ENOMEM ? rc : -EIO;
		rc = snap(arg, w->snap_seq, data + WAL_SNAP_HDR, len);
		free(data);
		if (rc != 0)
			return rc;
	}
	/* Recovery may have preallocated the last segment again: size anew. */
	rc = wal_scan_size(w, NULL, 0);
	if (rc != 0)
		return -EIO;
	buf = malloc(w->scan_bytes_max);
	if (buf == NULL)
		return -ENOMEM;
	memset(&rec, 0, sizeof(rec));
	memset(&s, 0, sizeof(s));
	s.rec = &rec;
	s.fn = record;
	s.arg = arg;
	rc = wal_walk(w, &s, buf, &seg_bytes);
	free(buf);
	if (rc == 0 && s.expected != w->replay_next_seq)
		rc = -EIO; /* the files changed between the two passes */
	if (rc == -EBADMSG)
		rc = -EIO;
	return rc;
}
