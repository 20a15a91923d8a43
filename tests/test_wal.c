/*
 * Unit tests of the durable log (lib/wal.c): round trip, rotation,
 * snapshots and compaction, group commit, the bounds, torn tails at every
 * byte, bit flips, injected I/O errors.
 *
 * A crash is simulated by copying the files of a log that is still open
 * after qd_wal_sync(): that is what a crash leaves on disk, since every
 * synced byte is in the file and nothing else is. Each test works in its
 * own directory under /tmp and removes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "crc32c.h"
#include "wal.h"
#include "wal_util.h"

#define SEG_SMALL (64u * 1024)
#define REPLAY_MAX 8192
#define CPL_BURST 64

struct replay {
	uint64_t seqs[REPLAY_MAX];
	uint32_t n;
	uint64_t snap_seq;
	char snap[64];
	bool bad_payload;
	uint32_t stop_after; /* 0 = never */
};

static int
on_snap(void *arg, uint64_t seq, const void *data, size_t len)
{
	struct replay *r = arg;

	r->snap_seq = seq;
	snprintf(r->snap, sizeof(r->snap), "%.*s", (int)len, (const char *)data);
	return 0;
}

static int
on_record(void *arg, uint64_t seq, uint16_t type, const void *payload, uint32_t len)
{
	struct replay *r = arg;

	if (!wt_payload_ok(seq, payload, len) || type != seq % 7)
		r->bad_payload = true;
	if (r->n < REPLAY_MAX)
		r->seqs[r->n++] = seq;
	if (r->stop_after != 0 && r->n == r->stop_after)
		return 42;
	return 0;
}

static struct qd_wal *
wal_open_ok(const char *dir, const struct qd_wal_opts *o, struct qd_wal_recovery *rec)
{
	char msg[QD_WAL_MSG_MAX];
	struct qd_wal *w = qd_wal_open(dir, o, rec, msg, sizeof(msg));

	if (w == NULL)
		fail_msg("qd_wal_open(%s): %s (%s)", dir, msg, strerror(errno));
	return w;
}

/* Append records <first>..<first + n - 1>, each with its own payload. */
static void
append_n(struct qd_wal *w, uint64_t first, uint32_t n)
{
	uint8_t p[256];

	for (uint32_t i = 0; i < n; i++) {
		uint64_t seq = 0, want = first + i;
		uint32_t len = wt_payload(want, p);

		assert_int_equal(qd_wal_append(w, (uint16_t)(want % 7), p, len, want * 10, &seq), 0);
		assert_int_equal(seq, want);
	}
}

/* Reap every completion; all must be durable and in order from <first>. Returns the count. */
static uint32_t
drain_ok(struct qd_wal *w, uint64_t first)
{
	struct qd_wal_cpl cpl[CPL_BURST];
	uint32_t total = 0;
	unsigned int n;

	assert_int_equal(qd_wal_sync(w), 0);
	while ((n = qd_wal_poll(w, cpl, CPL_BURST)) > 0) {
		for (unsigned int i = 0; i < n; i++) {
			assert_int_equal(cpl[i].status, 0);
			assert_int_equal(cpl[i].seq, first + total);
			assert_int_equal(cpl[i].user_data, cpl[i].seq * 10);
			total++;
		}
	}
	return total;
}

/* Append and drain in rounds of 200: a round may span a few segments. */
static void
append_drain(struct qd_wal *w, uint64_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i += 200) {
		uint32_t k = n - i < 200 ? n - i : 200;

		append_n(w, first + i, k);
		assert_int_equal(drain_ok(w, first + i), k);
	}
}

static void
replay_expect(struct qd_wal *w, struct replay *r, uint64_t first, uint64_t last)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(qd_wal_replay(w, on_snap, on_record, r), 0);
	assert_false(r->bad_payload);
	assert_int_equal(r->n, last >= first ? last - first + 1 : 0);
	for (uint32_t i = 0; i < r->n; i++)
		assert_int_equal(r->seqs[i], first + i);
}

static void
seg_path(char *p, size_t size, const char *dir, uint64_t first_seq)
{
	snprintf(p, size, "%s/seg-%020llu.wal", dir, (unsigned long long)first_seq);
}

/* Offset of record <seq> in a log written by append_n() from seq 1 into one segment. */
static uint64_t
rec_off(uint64_t seq)
{
	uint8_t p[256];
	uint64_t off = QD_WAL_SEGMENT_OVERHEAD;

	for (uint64_t s = 1; s < seq; s++)
		off += QD_WAL_RECORD_OVERHEAD + wt_payload(s, p);
	return off;
}

static void
test_crc32c(void **state)
{
	uint8_t buf[1024];
	uint32_t a, b;

	(void)state;
	assert_int_equal(qd_crc32c(QD_CRC32C_INIT, "123456789", 9), 0xe3069283u);
	assert_int_equal(qd_crc32c_sw(QD_CRC32C_INIT, "123456789", 9), 0xe3069283u);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 97 + 13);
	for (size_t off = 0; off < 9; off++) {
		for (size_t len = 0; len + off <= sizeof(buf); len += 61) {
			a = qd_crc32c(QD_CRC32C_INIT, buf + off, len);
			assert_int_equal(a, qd_crc32c_sw(QD_CRC32C_INIT, buf + off, len));
			b = qd_crc32c(qd_crc32c(QD_CRC32C_INIT, buf + off, len / 3), buf + off + len / 3,
				len - len / 3);
			assert_int_equal(a, b);
		}
	}
}

static void
test_round_trip(void **state)
{
	char base[WT_PATH_MAX], dir[WT_PATH_MAX + 8];
	struct qd_wal_opts o = { .flags = QD_WAL_F_CREATE };
	struct qd_wal_recovery rec;
	struct replay r;
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(base, sizeof(base), "wal"), 0);
	snprintf(dir, sizeof(dir), "%s/log", base); /* QD_WAL_F_CREATE makes it */
	w = wal_open_ok(dir, &o, &rec);
	assert_int_equal(rec.last_seq, 0);
	assert_int_equal(qd_wal_next_seq(w), 1);
	append_n(w, 1, 500);
	assert_int_equal(drain_ok(w, 1), 500);
	assert_int_equal(qd_wal_durable_seq(w), 500);
	assert_int_equal(qd_wal_close(w), 0);

	w = wal_open_ok(dir, NULL, &rec);
	assert_int_equal(rec.last_seq, 501); /* 500 and the close mark */
	assert_true(rec.clean_close);
	assert_int_equal(rec.truncated_bytes, 0);
	replay_expect(w, &r, 1, 500);
	assert_int_equal(qd_wal_replay(w, on_snap, on_record, &r), -EBUSY);
	append_n(w, 502, 10);
	assert_int_equal(drain_ok(w, 502), 10);
	assert_int_equal(qd_wal_close(w), 0);

	/* Open and close without appending adds no second close mark. */
	w = wal_open_ok(dir, NULL, &rec);
	assert_int_equal(rec.last_seq, 512);
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(dir, NULL, &rec);
	assert_int_equal(rec.last_seq, 512);
	memset(&r, 0, sizeof(r));
	r.stop_after = 3;
	assert_int_equal(qd_wal_replay(w, on_snap, on_record, &r), 42);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
	wt_rmdir(base);
}

static void
test_lock_and_options(void **state)
{
	char dir[WT_PATH_MAX], msg[QD_WAL_MSG_MAX];
	struct qd_wal_opts o = { 0 };
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, NULL, NULL);
	assert_null(qd_wal_open(dir, NULL, NULL, msg, sizeof(msg)));
	assert_int_equal(errno, EBUSY);
	assert_non_null(strstr(msg, dir));
	assert_int_equal(qd_wal_close(w), 0);

	o.record_bytes_max = QD_WAL_RECORD_BYTES_MAX + 1;
	assert_null(qd_wal_open(dir, &o, NULL, msg, sizeof(msg)));
	assert_int_equal(errno, EINVAL);
	o.record_bytes_max = 5000;
	o.batch_bytes = 4096; /* a record must fit one batch */
	assert_null(qd_wal_open(dir, &o, NULL, NULL, 0));
	assert_int_equal(errno, EINVAL);
	o = (struct qd_wal_opts){ .batches = QD_WAL_BATCHES_MAX + 1 };
	assert_null(qd_wal_open(dir, &o, NULL, NULL, 0));
	assert_int_equal(errno, EINVAL);
	o = (struct qd_wal_opts){ .segment_bytes = QD_WAL_SEGMENT_BYTES_MIN - 1 };
	assert_null(qd_wal_open(dir, &o, NULL, NULL, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(qd_wal_open("/nonexistent/qd-wal", NULL, NULL, msg, sizeof(msg)));
	assert_int_equal(errno, ENOENT);
	wt_rmdir(dir);
}

static void
test_rotation(void **state)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal_recovery rec;
	struct qd_wal_stats st;
	struct replay r;
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, &o, NULL);
	for (uint32_t i = 0; i < 20; i++) {
		append_n(w, 1 + i * 100, 100);
		assert_int_equal(drain_ok(w, 1 + i * 100), 100);
	}
	qd_wal_stats_get(w, &st);
	assert_true(st.rotations >= 4);
	assert_int_equal(st.segments, st.rotations);
	assert_int_equal(wt_count(dir, "seg-"), (int)st.rotations);
	assert_int_equal(qd_wal_close(w), 0);

	w = wal_open_ok(dir, &o, &rec);
	assert_int_equal(rec.segments, st.rotations);
	assert_int_equal(rec.last_seq, 2001);
	replay_expect(w, &r, 1, 2000);
	/* Appends go on in the last segment, rotating again when it fills. */
	append_n(w, 2002, 1000);
	assert_int_equal(drain_ok(w, 2002), 1000);
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(dir, &o, &rec);
	assert_int_equal(rec.last_seq, 3002);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
}

static void
test_snapshot_compaction(void **state)
{
	char dir[WT_PATH_MAX], copy[WT_PATH_MAX], a[WT_PATH_MAX * 2], b[WT_PATH_MAX * 2];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal_recovery rec;
	struct qd_wal_stats st;
	struct replay r;
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	assert_int_equal(wt_mkdtemp(copy, sizeof(copy), "walcopy"), 0);
	w = wal_open_ok(dir, &o, NULL);
	append_drain(w, 1, 2000);
	assert_true(wt_count(dir, "seg-") >= 4);
	assert_true(wt_copy_dir(dir, copy) > 0); /* as before the snapshot */

	assert_int_equal(qd_wal_snapshot(w, 2001, "x", 1), -EINVAL); /* not durable */
	assert_int_equal(qd_wal_snapshot(w, 2000, "state-2000", 10), 0);
	assert_int_equal(wt_count(dir, "seg-"), 1);
	assert_int_equal(wt_count(dir, "snap-"), 1);
	qd_wal_stats_get(w, &st);
	assert_true(st.segments_deleted >= 3);
	assert_int_equal(st.segments, 1);
	assert_int_equal(qd_wal_snapshot(w, 1999, "old", 3), -EINVAL); /* older than the current */
	append_n(w, 2001, 100);
	assert_int_equal(drain_ok(w, 2001), 100);
	assert_int_equal(qd_wal_close(w), 0);

	w = wal_open_ok(dir, &o, &rec);
	assert_int_equal(rec.snapshot_seq, 2000);
	assert_int_equal(rec.first_seq, 2001);
	assert_int_equal(rec.last_seq, 2101);
	replay_expect(w, &r, 2001, 2100);
	assert_int_equal(r.snap_seq, 2000);
	assert_string_equal(r.snap, "state-2000");
	assert_int_equal(qd_wal_snapshot(w, 2101, "state-2101", 10), 0);
	assert_int_equal(wt_count(dir, "snap-"), 1); /* the older one is gone */
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(dir, &o, &rec);
	replay_expect(w, &r, 2102, 2101);
	assert_string_equal(r.snap, "state-2101");
	assert_int_equal(qd_wal_close(w), 0);

	/* A crash between the snapshot and the deletes: open finishes the compaction. */
	snprintf(a, sizeof(a), "%s/snap-%020d.snap", dir, 2101);
	snprintf(b, sizeof(b), "%s/snap-%020d.snap", copy, 1500);
	assert_int_equal(wt_copy_file(a, b), 0);
	w = qd_wal_open(copy, &o, &rec, NULL, 0);
	assert_null(w); /* header says 2101, name says 1500 */
	assert_int_equal(errno, EBADMSG);
	unlink(b);
	w = wal_open_ok(copy, &o, &rec); /* no snapshot: the whole log */
	assert_int_equal(rec.snapshot_seq, 0);
	assert_int_equal(qd_wal_snapshot(w, 1500, "state-1500", 10), 0);
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(copy, &o, &rec);
	replay_expect(w, &r, 1501, 2000);
	assert_string_equal(r.snap, "state-1500");
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(copy);
	wt_rmdir(dir);
}

static void
test_interrupted_compaction(void **state)
{
	char dir[WT_PATH_MAX], copy[WT_PATH_MAX], a[WT_PATH_MAX * 2], b[WT_PATH_MAX * 2];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal_recovery rec;
	struct replay r;
	struct qd_wal *w;
	int segs, kept;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	assert_int_equal(wt_mkdtemp(copy, sizeof(copy), "walcopy"), 0);
	w = wal_open_ok(dir, &o, NULL);
	append_drain(w, 1, 2000);
	assert_true(wt_copy_dir(dir, copy) > 0);
	segs = wt_count(copy, "seg-");
	assert_int_equal(qd_wal_snapshot(w, 1900, "state-1900", 10), 0);
	kept = wt_count(dir, "seg-");
	assert_true(kept < segs);
	/* The copy gets the snapshot but keeps every segment. */
	snprintf(a, sizeof(a), "%s/snap-%020d.snap", dir, 1900);
	snprintf(b, sizeof(b), "%s/snap-%020d.snap", copy, 1900);
	assert_int_equal(wt_copy_file(a, b), 0);
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(copy, &o, &rec);
	assert_int_equal(rec.segments_obsolete, (uint32_t)(segs - kept));
	assert_int_equal(wt_count(copy, "seg-"), kept);
	replay_expect(w, &r, 1901, 2000);
	assert_string_equal(r.snap, "state-1900");
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(copy);
	wt_rmdir(dir);
}

static void
test_group_commit(void **state)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_stats st;
	struct qd_wal_cpl cpl[4];
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, NULL, NULL);
	/* 1000 appends before the ring is poked: one write, one fdatasync. */
	append_n(w, 1, 1000);
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.writes, 0);
	assert_int_equal(drain_ok(w, 1), 1000);
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.fsyncs, 1);
	assert_int_equal(st.batch_records_max, 1000);
	assert_int_equal(st.records_durable, 1000);

	/* What piles up while a batch is in flight goes out as the next batch. */
	append_n(w, 1001, 1);
	assert_int_equal(qd_wal_poll(w, cpl, 0), 0);
	append_n(w, 1002, 300);
	assert_int_equal(drain_ok(w, 1001), 301);
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.writes, 3);
	assert_int_equal(st.fsyncs, 3);

	/* One record per sync: one write and one fdatasync each. */
	for (uint32_t i = 0; i < 20; i++) {
		append_n(w, 1302 + i, 1);
		assert_int_equal(drain_ok(w, 1302 + i), 1);
	}
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.writes, 23);
	assert_int_equal(st.fsyncs, 23);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
}

static void
test_queue_bound(void **state)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_opts o = { .records_max = 16 };
	struct qd_wal_stats st;
	struct qd_wal_cpl cpl[16];
	uint8_t p[256];
	struct qd_wal *w;
	uint32_t n = 0;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, &o, NULL);
	append_n(w, 1, 16);
	assert_int_equal(qd_wal_append(w, 1, "x", 1, 0, NULL), -EAGAIN);
	assert_int_equal(qd_wal_sync(w), 0);
	/* Durable but not reaped still counts against the bound. */
	assert_int_equal(qd_wal_append(w, 1, "x", 1, 0, NULL), -EAGAIN);
	assert_int_equal(qd_wal_poll(w, cpl, 4), 4);
	append_n(w, 17, 4);
	assert_int_equal(qd_wal_append(w, 1, "x", 1, 0, NULL), -EAGAIN);
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.appends_full, 3);
	assert_int_equal(qd_wal_poll(w, cpl, 16), 12);
	assert_int_equal(drain_ok(w, 17), 4);
	assert_int_equal(qd_wal_close(w), 0);

	/* The buffers bound the bytes: two batches of 4 KiB, 132-byte records. */
	o = (struct qd_wal_opts){ .batches = 2, .batch_bytes = 4096, .records_max = 4096 };
	w = wal_open_ok(dir, &o, NULL);
	memset(p, 7, sizeof(p));
	while (n < 1000 && qd_wal_append(w, 1, p, 100, 0, NULL) == 0)
		n++;
	assert_int_equal(n, 2 * (4096 / 132));
	assert_int_equal(qd_wal_append(w, 1, p, 100, 0, NULL), -EAGAIN);
	assert_int_equal(qd_wal_sync(w), 0);
	assert_int_equal(qd_wal_append(w, 1, p, 100, 0, NULL), 0);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
}

static void
test_record_bound(void **state)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_opts o = { .record_bytes_max = 100 };
	struct qd_wal_stats st;
	static uint8_t big[QD_WAL_RECORD_BYTES_DEFAULT + 1];
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, &o, NULL);
	assert_int_equal(qd_wal_append(w, 1, big, 100, 0, NULL), 0);
	assert_int_equal(qd_wal_append(w, 1, big, 101, 0, NULL), -EMSGSIZE);
	assert_int_equal(qd_wal_append(w, QD_WAL_TYPE_RESERVED, big, 1, 0, NULL), -EINVAL);
	assert_int_equal(qd_wal_append(w, 0, NULL, 0, 0, NULL), 0);
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.appends_too_big, 1);
	assert_int_equal(st.appends, 2);
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(dir, NULL, NULL);
	assert_int_equal(qd_wal_append(w, 1, big, QD_WAL_RECORD_BYTES_DEFAULT, 0, NULL), 0);
	assert_int_equal(qd_wal_append(w, 1, big, QD_WAL_RECORD_BYTES_DEFAULT + 1, 0, NULL),
		-EMSGSIZE);
	assert_int_equal(qd_wal_sync(w), 0);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
}

/* A crash image of a log holding records 1..<n>, each synced as its own batch. */
static void
make_crash_image(const char *dir, const char *image, uint32_t n, uint32_t per_batch)
{
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal *w = wal_open_ok(dir, &o, NULL);

	for (uint32_t s = 1; s <= n; s += per_batch) {
		append_n(w, s, per_batch);
		assert_int_equal(drain_ok(w, s), per_batch);
	}
	assert_true(wt_copy_dir(dir, image) > 0);
	assert_int_equal(qd_wal_close(w), 0);
}

static void
test_torn_tail_every_byte(void **state)
{
	char dir[WT_PATH_MAX], image[WT_PATH_MAX], work[WT_PATH_MAX], seg[WT_PATH_MAX * 2];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal_recovery rec;
	struct replay r;
	uint8_t p[256];
	const uint32_t n = 12;
	uint64_t last_off = rec_off(n);
	uint32_t last_len = QD_WAL_RECORD_OVERHEAD + wt_payload(n, p);
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	assert_int_equal(wt_mkdtemp(image, sizeof(image), "walimg"), 0);
	assert_int_equal(wt_mkdtemp(work, sizeof(work), "walwork"), 0);
	make_crash_image(dir, image, n, 4);
	/* The whole record is there: all n recovered, nothing truncated. */
	assert_true(wt_copy_dir(image, work) > 0);
	w = wal_open_ok(work, &o, &rec);
	assert_int_equal(rec.last_seq, n);
	assert_false(rec.clean_close);
	assert_int_equal(qd_wal_close(w), 0);

	seg_path(seg, sizeof(seg), work, 1);
	for (uint32_t k = 0; k < last_len; k++) {
		assert_true(wt_copy_dir(image, work) > 0);
		assert_int_equal(wt_zero_from(seg, last_off + k), 0);
		w = wal_open_ok(work, &o, &rec);
		assert_int_equal(rec.last_seq, n - 1);
		assert_int_equal(rec.truncated_off, k > 0 ? last_off : 0);
		assert_true((rec.truncated_bytes > 0) == (k > 0));
		replay_expect(w, &r, 1, n - 1);
		/* The log goes on from the record before, over zeroed bytes. */
		append_n(w, n, 1);
		assert_int_equal(drain_ok(w, n), 1);
		assert_int_equal(qd_wal_close(w), 0);
		w = wal_open_ok(work, &o, &rec);
		assert_int_equal(rec.last_seq, n + 1);
		assert_int_equal(rec.truncated_bytes, 0);
		replay_expect(w, &r, 1, n);
		assert_int_equal(qd_wal_close(w), 0);
	}
	/* A file cut short (a crash inside the zeroing): recovered and preallocated again. */
	for (uint32_t k = 0; k < last_len; k += 7) {
		struct stat sb;

		assert_true(wt_copy_dir(image, work) > 0);
		assert_int_equal(truncate(seg, (off_t)(last_off + k)), 0);
		w = wal_open_ok(work, &o, &rec);
		assert_int_equal(rec.last_seq, n - 1);
		assert_int_equal(stat(seg, &sb), 0);
		assert_int_equal(sb.st_size, SEG_SMALL);
		replay_expect(w, &r, 1, n - 1);
		assert_int_equal(qd_wal_close(w), 0);
	}
	wt_rmdir(work);
	wt_rmdir(image);
	wt_rmdir(dir);
}

/* Damage the byte <off> of segment <seg_first> in a copy of <image>; open must refuse. */
static void
expect_refused_at(const char *image, const char *work, uint64_t seg_first, uint64_t off,
		uint64_t msg_off, const char *what)
{
	char seg[WT_PATH_MAX * 2], msg[QD_WAL_MSG_MAX], want[64];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };

	assert_true(wt_copy_dir(image, work) > 0);
	seg_path(seg, sizeof(seg), work, seg_first);
	assert_int_equal(wt_flip(seg, off, 0x10), 0);
	assert_null(qd_wal_open(work, &o, NULL, msg, sizeof(msg)));
	assert_int_equal(errno, EBADMSG);
	assert_non_null(strstr(msg, strrchr(seg, '/') + 1));
	snprintf(want, sizeof(want), "offset %llu", (unsigned long long)msg_off);
	if (strstr(msg, want) == NULL)
		fail_msg("%s: message lacks '%s': %s", what, want, msg);
}

/* The same, when the damage is in the record that starts at <off>. */
static void
expect_refused(const char *image, const char *work, uint64_t seg_first, uint64_t rec,
		uint64_t delta, const char *what)
{
	expect_refused_at(image, work, seg_first, rec + delta, rec, what);
}

static void
test_bit_flips(void **state)
{
	char dir[WT_PATH_MAX], image[WT_PATH_MAX], work[WT_PATH_MAX], seg[WT_PATH_MAX * 2];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL, .flags = QD_WAL_F_SKIP_CORRUPT };
	struct qd_wal_recovery rec;
	struct replay r;
	uint8_t p[256];
	uint64_t off = rec_off(20);
	uint32_t len = wt_payload(20, p);
	const uint64_t spots[] = { 0, 5, 8, 12, 17, 25, 32, 32 + len / 2, 32 + len - 1 };
	struct qd_wal *w;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	assert_int_equal(wt_mkdtemp(image, sizeof(image), "walimg"), 0);
	assert_int_equal(wt_mkdtemp(work, sizeof(work), "walwork"), 0);
	make_crash_image(dir, image, 50, 5);
	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		expect_refused(image, work, 1, off, spots[i], "record 20");
		/* Skip mode drops record 20 and keeps the rest. */
		w = wal_open_ok(work, &o, &rec);
		assert_int_equal(rec.skipped_ranges, 1);
		assert_int_equal(rec.skipped_seqs, 1);
		assert_int_equal(rec.last_seq, 50);
		assert_non_null(strstr(rec.msg, "seg-"));
		memset(&r, 0, sizeof(r));
		assert_int_equal(qd_wal_replay(w, on_snap, on_record, &r), 0);
		assert_false(r.bad_payload);
		assert_int_equal(r.n, 49);
		for (uint32_t k = 0; k < r.n; k++)
			assert_int_equal(r.seqs[k], k < 19 ? k + 1 : k + 2);
		/* Appends go to a new segment, so a snapshot can drop the damage. */
		append_n(w, 51, 1);
		assert_int_equal(drain_ok(w, 51), 1);
		assert_int_equal(qd_wal_snapshot(w, 51, "s", 1), 0);
		assert_int_equal(qd_wal_close(w), 0);
		o.flags = 0;
		w = wal_open_ok(work, &o, &rec); /* no skip needed any more */
		assert_int_equal(rec.last_seq, 52);
		assert_int_equal(qd_wal_close(w), 0);
		o.flags = QD_WAL_F_SKIP_CORRUPT;
	}
	/* The segment header. */
	expect_refused_at(image, work, 1, 20, 0, "segment header");
	/* Damage in the last batch of a crash image cannot be told from a torn write. */
	assert_true(wt_copy_dir(image, work) > 0);
	seg_path(seg, sizeof(seg), work, 1);
	assert_int_equal(wt_flip(seg, rec_off(48) + 40, 1), 0);
	o.flags = 0;
	w = wal_open_ok(work, &o, &rec);
	assert_int_equal(rec.last_seq, 47);
	assert_int_equal(rec.truncated_off, rec_off(48));
	assert_int_equal(qd_wal_close(w), 0);
	/* After a clean close, the close mark proves the last batch was durable. */
	expect_refused(dir, work, 1, rec_off(50), 40, "last record, clean close");
	expect_refused(dir, work, 1, rec_off(46), 0, "last batch, clean close");
	wt_rmdir(work);
	wt_rmdir(image);
	wt_rmdir(dir);
}

static void
test_damage_across_segments(void **state)
{
	char dir[WT_PATH_MAX], work[WT_PATH_MAX], p1[WT_PATH_MAX * 2], msg[QD_WAL_MSG_MAX];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal_recovery rec;
	struct replay r;
	uint64_t segs[8];
	int nsegs = 0;
	struct qd_wal *w;
	DIR *d;
	struct dirent *de;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	assert_int_equal(wt_mkdtemp(work, sizeof(work), "walwork"), 0);
	w = wal_open_ok(dir, &o, NULL);
	append_drain(w, 1, 1200);
	assert_int_equal(qd_wal_close(w), 0);
	d = opendir(dir);
	while ((de = readdir(d)) != NULL && nsegs < 8)
		if (strncmp(de->d_name, "seg-", 4) == 0)
			segs[nsegs++] = strtoull(de->d_name + 4, NULL, 10);
	closedir(d);
	assert_true(nsegs >= 3);
	for (int i = 0; i < nsegs; i++)
		for (int j = i + 1; j < nsegs; j++)
			if (segs[j] < segs[i]) {
				uint64_t t = segs[i];

				segs[i] = segs[j];
				segs[j] = t;
			}
	/* The last record of the first segment: a later segment follows, so damage. */
	expect_refused(dir, work, 1, rec_off(segs[1] - 1), 33, "end of first segment");
	o.flags = QD_WAL_F_SKIP_CORRUPT;
	w = wal_open_ok(work, &o, &rec);
	assert_int_equal(rec.skipped_seqs, 1);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qd_wal_replay(w, on_snap, on_record, &r), 0);
	assert_int_equal(r.n, 1199);
	assert_int_equal(qd_wal_close(w), 0);
	o.flags = 0;

	/* A missing segment in the middle. */
	assert_true(wt_copy_dir(dir, work) > 0);
	seg_path(p1, sizeof(p1), work, segs[1]);
	assert_int_equal(unlink(p1), 0);
	assert_null(qd_wal_open(work, &o, NULL, msg, sizeof(msg)));
	assert_int_equal(errno, EBADMSG);
	assert_non_null(strstr(msg, "records missing"));
	o.flags = QD_WAL_F_SKIP_CORRUPT;
	w = wal_open_ok(work, &o, &rec);
	assert_int_equal(rec.skipped_seqs, segs[2] - segs[1]);
	assert_int_equal(qd_wal_close(w), 0);
	o.flags = 0;

	/* A damaged snapshot. */
	w = wal_open_ok(dir, &o, NULL);
	assert_int_equal(qd_wal_snapshot(w, 1000, "state-1000", 10), 0);
	assert_int_equal(qd_wal_close(w), 0);
	assert_true(wt_copy_dir(dir, work) > 0);
	snprintf(p1, sizeof(p1), "%s/snap-%020d.snap", work, 1000);
	assert_int_equal(wt_flip(p1, 35, 4), 0);
	assert_null(qd_wal_open(work, &o, NULL, msg, sizeof(msg)));
	assert_int_equal(errno, EBADMSG);
	assert_non_null(strstr(msg, "snap-00000000000000001000.snap"));
	assert_null(qd_wal_open(work, &o, NULL, NULL, 0));
	assert_int_equal(errno, EBADMSG);
	/* Skip mode: no usable snapshot, so the records it covered count as skipped. */
	o.flags = QD_WAL_F_SKIP_CORRUPT;
	w = wal_open_ok(work, &o, &rec);
	assert_int_equal(rec.snapshot_seq, 0);
	assert_true(rec.skipped_ranges >= 2);
	assert_non_null(strstr(rec.msg, "snap-00000000000000001000.snap"));
	assert_int_equal(rec.last_seq, 1201);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(work);
	wt_rmdir(dir);
}

/* Records 1..10 durable, then <fault> hits the batch of 11..20. */
static void
check_io_fault(enum qd_wal_fault fault)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_recovery rec;
	struct qd_wal_stats st, st2;
	struct qd_wal_cpl cpl[32];
	struct replay r;
	struct qd_wal *w;
	unsigned int n;

	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, NULL, NULL);
	append_n(w, 1, 10);
	assert_int_equal(drain_ok(w, 1), 10);
	qd_wal_inject_fault(w, fault, -EIO);
	append_n(w, 11, 10);
	assert_int_equal(qd_wal_sync(w), -EIO);
	assert_int_equal(qd_wal_error(w), -EIO);
	assert_int_equal(qd_wal_durable_seq(w), 10);
	n = qd_wal_poll(w, cpl, 32);
	assert_int_equal(n, 10);
	for (unsigned int i = 0; i < n; i++) {
		assert_int_equal(cpl[i].seq, 11 + i);
		assert_int_equal(cpl[i].status, -EIO);
	}
	/* Fatal: nothing more is accepted and the fsync is never retried. */
	qd_wal_stats_get(w, &st);
	assert_int_equal(qd_wal_append(w, 1, "x", 1, 0, NULL), -EIO);
	assert_int_equal(qd_wal_snapshot(w, 10, "s", 1), -EIO);
	assert_int_equal(qd_wal_sync(w), -EIO);
	assert_int_equal(qd_wal_wait(w, 10), -EIO);
	assert_int_equal(qd_wal_poll(w, cpl, 32), 0);
	qd_wal_stats_get(w, &st2);
	assert_int_equal(st2.fsyncs, st.fsyncs);
	assert_int_equal(st2.writes, st.writes);
	assert_int_equal(st2.records_failed, 10);
	assert_int_equal(qd_wal_close(w), -EIO);
	/* What was acknowledged is on disk; no close mark was written. */
	w = wal_open_ok(dir, NULL, &rec);
	assert_false(rec.clean_close);
	assert_true(rec.last_seq >= 10);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qd_wal_replay(w, on_snap, on_record, &r), 0);
	assert_true(r.n >= 10);
	for (uint32_t i = 0; i < r.n; i++)
		assert_int_equal(r.seqs[i], i + 1);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
}

static void
test_eio_fsync(void **state)
{
	(void)state;
	check_io_fault(QD_WAL_FAULT_FSYNC);
}

static void
test_eio_write(void **state)
{
	(void)state;
	check_io_fault(QD_WAL_FAULT_WRITE);
}

static void
test_segment_enospc(void **state)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_opts o = { .segment_bytes = SEG_SMALL };
	struct qd_wal_stats st;
	struct qd_wal_cpl cpl[CPL_BURST];
	struct qd_wal_recovery rec;
	struct replay r;
	struct qd_wal *w;
	uint32_t failed = 0;
	uint64_t next;
	unsigned int n;

	(void)state;
	assert_int_equal(wt_mkdtemp(dir, sizeof(dir), "wal"), 0);
	w = wal_open_ok(dir, &o, NULL);
	qd_wal_inject_fault(w, QD_WAL_FAULT_SEGMENT, -ENOSPC);
	append_n(w, 1, 5);
	assert_int_equal(qd_wal_sync(w), -ENOSPC); /* the first segment could not be made */
	assert_int_equal(qd_wal_error(w), 0);      /* not fatal */
	assert_int_equal(qd_wal_next_seq(w), 1);   /* the numbers are handed back */
	while ((n = qd_wal_poll(w, cpl, CPL_BURST)) > 0)
		for (unsigned int i = 0; i < n; i++, failed++)
			assert_int_equal(cpl[i].status, -ENOSPC);
	assert_int_equal(failed, 5);
	append_n(w, 1, 400);
	assert_int_equal(drain_ok(w, 1), 400);
	/* Fill the segment; the next one cannot be made. */
	qd_wal_inject_fault(w, QD_WAL_FAULT_SEGMENT, -ENOSPC);
	for (next = 401; next < 1000; next += 50) {
		append_n(w, next, 50);
		if (qd_wal_sync(w) != 0)
			break;
		assert_int_equal(drain_ok(w, next), 50);
	}
	assert_true(next < 1000);
	assert_int_equal(qd_wal_error(w), 0);
	qd_wal_stats_get(w, &st);
	assert_int_equal(st.enospc, 2);
	assert_int_equal(qd_wal_next_seq(w), qd_wal_durable_seq(w) + 1);
	/* Records that fit the full segment made it; the others failed. */
	next = qd_wal_next_seq(w);
	failed = 0;
	while ((n = qd_wal_poll(w, cpl, CPL_BURST)) > 0)
		for (unsigned int i = 0; i < n; i++) {
			assert_int_equal(cpl[i].status, cpl[i].seq < next ? 0 : -ENOSPC);
			failed += cpl[i].status != 0;
		}
	assert_true(failed > 0);
	/* Space is back: the same numbers are used again. */
	append_n(w, next, 100);
	assert_int_equal(drain_ok(w, next), 100);
	assert_int_equal(qd_wal_close(w), 0);
	w = wal_open_ok(dir, &o, &rec);
	replay_expect(w, &r, 1, next + 99);
	assert_int_equal(qd_wal_close(w), 0);
	wt_rmdir(dir);
}

/* A failed assert jumps out of the test: its directories go here. */
static int
teardown(void **state)
{
	(void)state;
	wt_cleanup();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_crc32c, teardown),
		cmocka_unit_test_teardown(test_round_trip, teardown),
		cmocka_unit_test_teardown(test_lock_and_options, teardown),
		cmocka_unit_test_teardown(test_rotation, teardown),
		cmocka_unit_test_teardown(test_snapshot_compaction, teardown),
		cmocka_unit_test_teardown(test_interrupted_compaction, teardown),
		cmocka_unit_test_teardown(test_group_commit, teardown),
		cmocka_unit_test_teardown(test_queue_bound, teardown),
		cmocka_unit_test_teardown(test_record_bound, teardown),
		cmocka_unit_test_teardown(test_torn_tail_every_byte, teardown),
		cmocka_unit_test_teardown(test_bit_flips, teardown),
		cmocka_unit_test_teardown(test_damage_across_segments, teardown),
		cmocka_unit_test_teardown(test_eio_fsync, teardown),
		cmocka_unit_test_teardown(test_eio_write, teardown),
		cmocka_unit_test_teardown(test_segment_enospc, teardown),
	};

	if (!wt_have_io_uring()) {
		printf("test_wal: no io_uring here: skip\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
