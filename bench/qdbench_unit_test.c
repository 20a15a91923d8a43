/*
 * Unit tests of qdbench's parts that need no network: the log-linear
 * histogram (hdr.c) against exact percentiles of known and random data, and
 * the streaming QueryResults scanner (qdbench_json.c) on field orders,
 * escapes, nesting, pieces of any size and bad bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hdr.h"
#include "qdbench_json.h"

static struct qd_hdr h1, h2, h3;

/* |got - want| within the histogram's bound: half a sub-bucket, want/256. */
static void
assert_close(uint64_t got, uint64_t want)
{
	uint64_t diff = got > want ? got - want : want - got;

	if (diff * 256 > want) {
		fail_msg("got %llu, want %llu (error %.3f %% > 0.39 %%)", (unsigned long long)got,
			 (unsigned long long)want, 100.0 * (double)diff / (double)want);
	}
}

static void
test_buckets(void **state)
{
	(void)state;
	/* Small values are exact; every bucket's range maps back to it, and
	 * consecutive buckets tile the whole range with no gap. */
	for (uint64_t v = 0; v < 128; v++) {
		assert_int_equal(qd_hdr_index(v), v);
		assert_int_equal(qd_hdr_bucket_low((unsigned int)v), v);
		assert_int_equal(qd_hdr_bucket_high((unsigned int)v), v);
	}
	for (unsigned int i = 0; i + 1 < QD_HDR_BUCKETS; i++) {
		uint64_t lo = qd_hdr_bucket_low(i), hi = qd_hdr_bucket_high(i);

		assert_true(lo <= hi);
		assert_int_equal(qd_hdr_index(lo), i);
		assert_int_equal(qd_hdr_index(hi), i);
		assert_int_equal(qd_hdr_bucket_low(i + 1), hi + 1);
		/* Width at most 1/128 of the bucket's lowest value. */
		assert_true(lo < 128 || (hi - lo + 1) * 128 <= lo);
	}
	assert_int_equal(qd_hdr_bucket_high(QD_HDR_BUCKETS - 1), UINT64_MAX);
	assert_int_equal(qd_hdr_index(UINT64_MAX), QD_HDR_BUCKETS - 1);
}

static void
test_exact_small(void **state)
{
	(void)state;
	qd_hdr_init(&h1);
	assert_int_equal(qd_hdr_percentile(&h1, 50), 0);
	for (uint64_t v = 10; v <= 100; v += 10)
		qd_hdr_record(&h1, v);
	/* The ceil(p/100 * n)-th smallest value. */
	assert_int_equal(qd_hdr_percentile(&h1, 0.0001), 10);
	assert_int_equal(qd_hdr_percentile(&h1, 10), 10);
	assert_int_equal(qd_hdr_percentile(&h1, 50), 50);
	assert_int_equal(qd_hdr_percentile(&h1, 50.1), 60);
	assert_int_equal(qd_hdr_percentile(&h1, 90), 90);
	assert_int_equal(qd_hdr_percentile(&h1, 99), 100);
	assert_int_equal(qd_hdr_percentile(&h1, 100), 100);
	assert_int_equal(h1.count, 10);
	assert_int_equal(h1.min, 10);
	assert_int_equal(h1.max, 100);
	assert_true(qd_hdr_mean(&h1) == 55.0);
}

static void
test_known_range(void **state)
{
	(void)state;
	/* 1..1,000,000 ns once each: the p-th percentile is p * 10,000. */
	qd_hdr_init(&h1);
	for (uint64_t v = 1; v <= 1000000; v++)
		qd_hdr_record(&h1, v);
	assert_close(qd_hdr_percentile(&h1, 50), 500000);
	assert_close(qd_hdr_percentile(&h1, 90), 900000);
	assert_close(qd_hdr_percentile(&h1, 99), 990000);
	assert_close(qd_hdr_percentile(&h1, 99.9), 999000);
	assert_int_equal(qd_hdr_percentile(&h1, 100), 1000000);
	assert_int_equal(h1.min, 1);
	assert_true(qd_hdr_mean(&h1) == 500000.5);
	/* A value's bucket may not be confused with a neighbour's: 20 ms and
	 * 20.5 ms (2.5 % apart) give distinct medians. */
	qd_hdr_init(&h2);
	qd_hdr_init(&h3);
	qd_hdr_record_n(&h2, 20000000, 1000);
	qd_hdr_record_n(&h3, 20500000, 1000);
	assert_close(qd_hdr_percentile(&h2, 50), 20000000);
	assert_close(qd_hdr_percentile(&h3, 50), 20500000);
	assert_true(qd_hdr_percentile(&h2, 50) < qd_hdr_percentile(&h3, 50));
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
test_random_against_sorted(void **state)
{
	(void)state;
	enum { N = 200000 };
	uint64_t *vals = malloc(N * sizeof(*vals));
	uint64_t s = 12345;
	static const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};

	assert_non_null(vals);
	qd_hdr_init(&h1);
	qd_hdr_init(&h2);
	qd_hdr_init(&h3);
	for (int i = 0; i < N; i++) {
		/* Log-uniform over 1 us .. ~1 s: every octave is exercised. */
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		unsigned int octave = (unsigned int)(s >> 59) % 20;
		uint64_t v = (1000ull << octave) + ((s >> 20) & ((1000ull << octave) - 1));

		vals[i] = v;
		qd_hdr_record(&h1, v);
		qd_hdr_record(i % 2 ? &h2 : &h3, v);
	}
	qsort(vals, N, sizeof(*vals), cmp_u64);
	qd_hdr_merge(&h2, &h3);
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		size_t rank = (size_t)((ps[k] / 100.0) * N + 0.999999);
		uint64_t want = vals[rank - 1];

		assert_close(qd_hdr_percentile(&h1, ps[k]), want);
		/* Merged halves are the same histogram. */
		assert_int_equal(qd_hdr_percentile(&h2, ps[k]), qd_hdr_percentile(&h1, ps[k]));
	}
	assert_int_equal(h1.min, vals[0]);
	assert_int_equal(h1.max, vals[N - 1]);
	assert_int_equal(h2.count, N);
	assert_int_equal(qd_hdr_percentile(&h1, 100), vals[N - 1]);
	assert_memory_equal(h1.buckets, h2.buckets, sizeof(h1.buckets));
	free(vals);
}

static void
test_extremes(void **state)
{
	(void)state;
	qd_hdr_init(&h1);
	qd_hdr_record(&h1, UINT64_MAX);
	qd_hdr_record(&h1, 0);
	qd_hdr_record_n(&h1, 7, 0); /* nothing */
	assert_int_equal(h1.count, 2);
	assert_int_equal(qd_hdr_percentile(&h1, 50), 0);
	assert_int_equal(qd_hdr_percentile(&h1, 100), UINT64_MAX);
	/* The saturated sum still gives a mean. */
	assert_true(qd_hdr_mean(&h1) > 0);
}

/* ---- the QueryResults scanner ---- */

static struct qdb_json js;

/* Feeds <body> in pieces of <piece> bytes (0: all at once). */
static bool
scan(const char *body, size_t piece)
{
	size_t len = strlen(body), off = 0;

	qdb_json_init(&js);
	while (off < len) {
		size_t n = piece == 0 || piece > len - off ? len - off : piece;

		if (!qdb_json_feed(&js, body + off, n))
			return false;
		off += n;
	}
	return qdb_json_finish(&js);
}

static void
test_json_fields_any_order(void **state)
{
	(void)state;
	static const char *const bodies[] = {
		"{\"id\":\"20260101_000000_00001_abcde\",\"infoUri\":\"http://h:1/ui\","
		"\"nextUri\":\"http://h:1/v1/statement/executing/x/y/2\",\"columns\":[{\"name\":\"c0\","
		"\"type\":\"varchar\",\"typeSignature\":{\"arguments\":[{\"value\":1}]}}],"
		"\"data\":[[\"a\"],[\"b,]\\\"\"],[\"c\"]],\"stats\":{\"state\":\"RUNNING\","
		"\"nodes\":1,\"rootStage\":{\"state\":\"X\"}},\"warnings\":[]}",
		/* Same fields, reversed, nested and escaped differently. */
		" { \"warnings\" : [ ] , \"stats\" : { \"rootStage\" : { \"state\" : \"X\" } , "
		"\"state\" : \"RUNNING\" } , \"data\" : [ [ \"a\" ] , [ \"b,]\\\"\" ] , [ \"c\" ] ] ,"
		" \"nextUri\" : \"http:\\/\\/h:1\\/v1\\/statement\\/executing\\/x\\/y\\/2\" , "
		"\"columns\":[{\"data\":[1,2,3,4]}], \"id\" : \"20260101_000000_00001_abcde\" }\n",
	};

	for (size_t b = 0; b < 2; b++) {
		for (size_t piece = 0; piece <= 7; piece++) {
			assert_true(scan(bodies[b], piece));
			assert_true(js.has_next_uri);
			assert_string_equal(js.next_uri, "http://h:1/v1/statement/executing/x/y/2");
			assert_string_equal(js.state, "RUNNING");
			assert_string_equal(js.id, "20260101_000000_00001_abcde");
			assert_int_equal(js.rows, 3);
			assert_false(js.has_error);
		}
	}
}

static void
test_json_final_and_error(void **state)
{
	(void)state;
	assert_true(scan("{\"id\":\"q\",\"data\":[],\"stats\":{\"state\":\"FINISHED\"},\"error\":null}", 3));
	assert_false(js.has_next_uri);
	assert_false(js.has_error);
	assert_int_equal(js.rows, 0);
	assert_string_equal(js.state, "FINISHED");

	assert_true(scan("{\"error\":{\"message\":\"line 1:1: \\u0041bc\",\"errorCode\":1,"
			 "\"errorName\":\"SYNTAX_ERROR\",\"errorType\":\"USER_ERROR\"},"
			 "\"stats\":{\"state\":\"FAILED\"}}", 1));
	assert_true(js.has_error);
	assert_string_equal(js.error_name, "SYNTAX_ERROR");
	assert_string_equal(js.error_message, "line 1:1: Abc");
	assert_string_equal(js.state, "FAILED");
	/* Keys deeper than the top level never count: a nested nextUri or data. */
	assert_true(scan("{\"x\":{\"nextUri\":\"/a\",\"data\":[1,2]},\"stats\":{\"state\":\"QUEUED\"}}", 0));
	assert_false(js.has_next_uri);
	assert_int_equal(js.rows, 0);
}

static void
test_json_bad_bodies(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "   ", "[]", "\"x\"", "{", "{\"a\":1", "{\"a\" 1}", "{\"a\":1,}", "{\"a\":[1,]}",
		"{\"a\":1}}", "{\"a\":1} x", "{\"a\":\"\\q\"}", "{\"a\":\"\\u00zz\"}", "{\"a\":]}",
		"{a:1}", "{\"a\":1]", "{\"a\":\"x\ny\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan(bad[i], 0))
			fail_msg("accepted bad body #%zu: '%s'", i, bad[i]);
		assert_non_null(js.fail);
	}
	/* Depth is bounded, not a stack overflow. */
	char deep[300];

	memset(deep, '[', sizeof(deep) - 1);
	deep[0] = '{';
	deep[sizeof(deep) - 1] = '\0';
	assert_false(scan(deep, 0));
}

static void
test_json_long_next_uri(void **state)
{
	(void)state;
	size_t n = QDB_JSON_URI_MAX + 100;
	char *body = malloc(n + 64);

	assert_non_null(body);
	int off = snprintf(body, n + 64, "{\"nextUri\":\"/");

	memset(body + off, 'a', n);
	snprintf(body + off + n, 64, "\",\"stats\":{\"state\":\"RUNNING\"}}");
	assert_true(scan(body, 100));
	assert_true(js.has_next_uri);
	assert_true(js.next_uri_truncated);
	assert_string_equal(js.state, "RUNNING");
	free(body);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_exact_small),
		cmocka_unit_test(test_known_range),
		cmocka_unit_test(test_random_against_sorted),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_json_fields_any_order),
		cmocka_unit_test(test_json_final_and_error),
		cmocka_unit_test(test_json_bad_bodies),
		cmocka_unit_test(test_json_long_next_uri),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
