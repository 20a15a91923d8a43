/*
 * hdr: the log-linear histogram of hdr.h. Bucket arithmetic only; no
 * allocation, no floating point except in the percentile's rank.
 */
#include "hdr.h"

#include <math.h>
#include <string.h>

void
qd_hdr_init(struct qd_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned int
qd_hdr_index(uint64_t value)
{
	if (value < QD_HDR_SUB_COUNT)
		return (unsigned int)value;
	unsigned int msb = 63u - (unsigned int)__builtin_clzll(value); /* >= 7 */
	unsigned int shift = msb - QD_HDR_SUB_BITS;
	/* value >> shift is in [128, 256): the leading one and 7 more bits. */
	unsigned int sub = (unsigned int)(value >> shift) - QD_HDR_SUB_COUNT;

	return QD_HDR_SUB_COUNT + shift * QD_HDR_SUB_COUNT + sub;
}

uint64_t
qd_hdr_bucket_low(unsigned int index)
{
	if (index < QD_HDR_SUB_COUNT)
		return index;
	unsigned int shift = (index - QD_HDR_SUB_COUNT) / QD_HDR_SUB_COUNT;
	uint64_t sub = (index - QD_HDR_SUB_COUNT) % QD_HDR_SUB_COUNT;

	return (QD_HDR_SUB_COUNT + sub) << shift;
}

uint64_t
qd_hdr_bucket_high(unsigned int index)
{
	if (index < QD_HDR_SUB_COUNT)
		return index;
	unsigned int shift = (index - QD_HDR_SUB_COUNT) / QD_HDR_SUB_COUNT;

	/* low + width - 1; written so that the last bucket ends at UINT64_MAX. */
	return qd_hdr_bucket_low(index) + ((((uint64_t)1) << shift) - 1);
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
sat_mul(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

void
qd_hdr_record_n(struct qd_hdr *h, uint64_t value, uint64_t n)
{
	if (n == 0)
		return;
	h->buckets[qd_hdr_index(value)] += n;
	h->count += n;
	h->sum = sat_add(h->sum, sat_mul(value, n));
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
}

void
qd_hdr_merge(struct qd_hdr *dst, const struct qd_hdr *src)
{
	if (src->count == 0)
		return;
	for (unsigned int i = 0; i < QD_HDR_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum = sat_add(dst->sum, src->sum);
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t
qd_hdr_percentile(const struct qd_hdr *h, double p)
{
	if (h->count == 0)
		return 0;
	if (!(p > 0.0))
		return h->min;
	if (p >= 100.0)
		return h->max;
	/* The rank of the value: ceil(p/100 * count), computed so that 50 % of
	 * 10 is exactly 5 despite binary fractions. */
	double want = p / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)ceil(want - 1e-9 * want);

	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;

	for (unsigned int i = 0; i < QD_HDR_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen < rank)
			continue;
		uint64_t low = qd_hdr_bucket_low(i), high = qd_hdr_bucket_high(i);
		uint64_t mid = low + (high - low) / 2;

		if (mid < h->min)
			mid = h->min;
		if (mid > h->max)
			mid = h->max;
		return mid;
	}
	return h->max;
}

double
qd_hdr_mean(const struct qd_hdr *h)
{
	return h->count == 0 ? 0.0 : (double)h->sum / (double)h->count;
}
