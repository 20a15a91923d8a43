/*
 * A quick measurement, not a test of speed: durable records per second and
 * time-to-durable (p50, p99) with group commit against one write+fdatasync
 * per record, for 64- and 512-byte records, in one run.
 *
 * Group commit: the writer keeps up to OUTSTANDING records in the log and
 * polls; one record per sync: append, qd_wal_sync(), reap. Each mode runs
 * for RUN_MS. The log lives under $QD_WAL_PERF_DIR if set (default /tmp);
 * on tmpfs fdatasync costs nothing and the numbers mean little.
 * It asserts only that group commit batched (fewer fdatasyncs than records).
 * Exit 0 pass, 1 fail, 77 skip (no io_uring).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wal.h"
#include "wal_util.h"

#define RUN_MS 700
#define OUTSTANDING 256
#define SAMPLES_MAX (1u << 20)
#define CPL_BURST 64

struct result {
	double per_s;
	double p50_us;
	double p99_us;
	uint64_t records;
	uint64_t fsyncs;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t lat_ns[SAMPLES_MAX];
static uint64_t start_ns[OUTSTANDING];

/* Time records of <size> bytes for RUN_MS, batched (<group>) or one per sync. */
static int
measure(const char *base, uint32_t size, bool group, struct result *res)
{
	char dir[WT_PATH_MAX];
	struct qd_wal_cpl cpl[CPL_BURST];
	struct qd_wal_stats st;
	static uint8_t payload[512];
	uint64_t t0, n = 0, inflight = 0;
	struct qd_wal *w;
	char msg[QD_WAL_MSG_MAX];

	snprintf(dir, sizeof(dir), "%s/qd-walperf-XXXXXX", base);
	if (mkdtemp(dir) == NULL)
		return -1;
	w = qd_wal_open(dir, NULL, NULL, msg, sizeof(msg));
	if (w == NULL) {
		fprintf(stderr, "wal_perf: %s\n", msg);
		return -1;
	}
	t0 = now_ns();
	while (now_ns() - t0 < (uint64_t)RUN_MS * 1000000u && n < SAMPLES_MAX - OUTSTANDING) {
		/* user_data carries the slot of the start time. */
		while (inflight < (group ? OUTSTANDING : 1)) {
			uint64_t seq = qd_wal_next_seq(w);

			start_ns[seq % OUTSTANDING] = now_ns();
			if (qd_wal_append(w, 1, payload, size, seq % OUTSTANDING, NULL) != 0)
				return -1;
			inflight++;
		}
		if (group)
			qd_wal_wait(w, 100);
		else if (qd_wal_sync(w) != 0)
			return -1;
		for (unsigned int k = qd_wal_poll(w, cpl, CPL_BURST); k > 0;
				k = qd_wal_poll(w, cpl, CPL_BURST)) {
			for (unsigned int i = 0; i < k; i++) {
				if (cpl[i].status != 0)
					return -1;
				lat_ns[n++] = now_ns() - start_ns[cpl[i].user_data];
				inflight--;
			}
		}
	}
	res->per_s = (double)n * 1e9 / (double)(now_ns() - t0);
	qd_wal_stats_get(w, &st);
	res->records = n;
	res->fsyncs = st.fsyncs;
	qsort(lat_ns, n, sizeof(lat_ns[0]), cmp_u64);
	res->p50_us = n > 0 ? (double)lat_ns[n / 2] / 1000.0 : 0;
	res->p99_us = n > 0 ? (double)lat_ns[n * 99 / 100] / 1000.0 : 0;
	qd_wal_sync(w);
	qd_wal_close(w);
	wt_rmdir(dir);
	return 0;
}

int
main(void)
{
	const char *base = getenv("QD_WAL_PERF_DIR");
	static const uint32_t sizes[] = { 64, 512 };
	int rc = 0;

	if (!wt_have_io_uring()) {
		printf("wal_perf: no io_uring here: skip\n");
		return 77;
	}
	if (base == NULL)
		base = "/tmp";
	printf("%-8s %6s %12s %10s %10s %10s %8s\n", "mode", "bytes", "records/s", "p50_us",
		"p99_us", "records", "fsyncs");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct result g, s;

		if (measure(base, sizes[i], true, &g) != 0 || measure(base, sizes[i], false, &s) != 0) {
			fprintf(stderr, "wal_perf: measurement failed\n");
			return 1;
		}
		printf("%-8s %6u %12.0f %10.1f %10.1f %10" PRIu64 " %8" PRIu64 "\n", "group",
			sizes[i], g.per_s, g.p50_us, g.p99_us, g.records, g.fsyncs);
		printf("%-8s %6u %12.0f %10.1f %10.1f %10" PRIu64 " %8" PRIu64 "\n", "single",
			sizes[i], s.per_s, s.p50_us, s.p99_us, s.records, s.fsyncs);
		printf("ratio    %6u %12.1fx (group/single records per second)\n", sizes[i],
			s.per_s > 0 ? g.per_s / s.per_s : 0);
		if (g.fsyncs >= g.records)
			rc = 1; /* group commit did not batch */
	}
	return rc;
}
