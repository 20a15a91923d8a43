/*
 * hdr: a small log-linear latency histogram in the spirit of HdrHistogram.
 *
 * Values are unsigned 64-bit integers (qdbench records nanoseconds). Values
 * below 128 have a bucket each; above, every power of two [2^k, 2^(k+1)) is
 * cut into 128 equal sub-buckets of width 2^(k-7). A value is therefore kept
 * to within one sub-bucket, at most 1/128 of itself; the value reported for a
 * bucket is its midpoint, so a reported percentile is within 1/256 (0.4 %) of
 * the recorded value it stands for, and the exact minimum and maximum are
 * kept aside. The table has a fixed size (QD_HDR_BUCKETS counters, ~58 KiB)
 * for the whole uint64_t range: recording never allocates and never fails.
 *
 * Percentiles follow the usual definition: the value at percentile p is the
 * smallest recorded value v such that at least p % of the recorded values
 * are <= v (the ceil(p/100 * count)-th smallest, at least the first).
 */
#ifndef QD_BENCH_HDR_H
#define QD_BENCH_HDR_H

#include <stdint.h>

#define QD_HDR_SUB_BITS 7u
#define QD_HDR_SUB_COUNT (1u << QD_HDR_SUB_BITS) /* 128 sub-buckets per power of two */
/* Values 0..127 one bucket each, then 128 sub-buckets for each exponent 7..63. */
#define QD_HDR_BUCKETS (QD_HDR_SUB_COUNT + (64u - QD_HDR_SUB_BITS) * QD_HDR_SUB_COUNT)

struct qd_hdr {
	uint64_t count;
	uint64_t min; /* UINT64_MAX while empty */
	uint64_t max;
	/* Sum of the values, saturating: the mean of ~584 years of nanoseconds. */
	uint64_t sum;
	uint64_t buckets[QD_HDR_BUCKETS];
};

/* Empties <h>. A zeroed struct is not empty (min must be UINT64_MAX). */
void qd_hdr_init(struct qd_hdr *h);

/* Records <n> occurrences of <value>. */
void qd_hdr_record_n(struct qd_hdr *h, uint64_t value, uint64_t n);

static inline void
qd_hdr_record(struct qd_hdr *h, uint64_t value)
{
	qd_hdr_record_n(h, value, 1);
}

/* Adds every value recorded in <src> to <dst>. */
void qd_hdr_merge(struct qd_hdr *dst, const struct qd_hdr *src);

/* The bucket of <value>, and the lowest and highest values of bucket <index>
 * (exposed for the tests). */
unsigned int qd_hdr_index(uint64_t value);
uint64_t qd_hdr_bucket_low(unsigned int index);
uint64_t qd_hdr_bucket_high(unsigned int index);

/* The value at percentile <p> (0 < p <= 100; p <= 0 gives the minimum), as
 * the midpoint of its bucket clamped to [min, max]; 0 when empty. */
uint64_t qd_hdr_percentile(const struct qd_hdr *h, double p);

/* Mean of the recorded values; 0 when empty. */
double qd_hdr_mean(const struct qd_hdr *h);

#endif
