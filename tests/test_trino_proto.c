/* Trino protocol helpers: every path shape of the brief classified with its id; the
 * QueryResults scanner finds id/nextUri/error whatever the split of the body into
 * pieces, ignores nested keys, and survives garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trino_proto.h"

static void
expect_target(const char *target, enum qd_trino_kind kind, const char *id)
{
	const char *origin, *auth;
	size_t olen, alen;
	assert_int_equal(qd_trino_origin_form(target, strlen(target), &origin, &olen, &auth, &alen),
			 0);
	struct qd_trino_target t;
	qd_trino_classify(origin, olen, &t);
	if (t.kind != kind)
		fail_msg("%s: kind %s, want %s", target, qd_trino_kind_name(t.kind),
			 qd_trino_kind_name(kind));
	if (id == NULL) {
		assert_int_equal(t.id_len, 0);
	} else {
		if (t.id_len != strlen(id) || memcmp(t.id, id, t.id_len) != 0)
			fail_msg("%s: id '%.*s', want '%s'", target, (int)t.id_len,
				 t.id ? t.id : "", id);
	}
}

#define QID "20261125_190649_00001_abcde"

static void
test_paths(void **state)
{
	(void)state;
	expect_target("/v1/statement", QD_TRINO_SUBMIT, NULL);
	expect_target("/v1/statement?x=1", QD_TRINO_SUBMIT, NULL);
	expect_target("/v1/statement/", QD_TRINO_SUBMIT, NULL);
	expect_target("/v1/statement/queued/" QID "/y1a2/1", QD_TRINO_QUEUED, QID);
	expect_target("/v1/statement/executing/" QID "/y1a2/7", QD_TRINO_EXECUTING, QID);
	expect_target("/v1/statement/executing/partialCancel/" QID "/3/y1a2/7",
		      QD_TRINO_PARTIAL_CANCEL, QID);
	expect_target("/v1/statement/" QID "/1", QD_TRINO_LEGACY, QID);
	expect_target("/v1/query/" QID, QD_TRINO_QUERY, QID);
	expect_target("/v1/query/" QID "/killed", QD_TRINO_QUERY, QID);
	expect_target("/v1/query", QD_TRINO_OTHER, NULL);
	expect_target("/v1/queryx/" QID, QD_TRINO_OTHER, NULL);
	expect_target("/ui/api/query/" QID, QD_TRINO_UI_QUERY, QID);
	expect_target("/v1/dispatcher/health", QD_TRINO_DISPATCHER, NULL);
	expect_target("/v1/dispatcher", QD_TRINO_DISPATCHER, NULL);
	expect_target("/v1/dispatchers", QD_TRINO_OTHER, NULL);
	expect_target("/v1/info", QD_TRINO_OTHER, NULL);
	expect_target("/", QD_TRINO_OTHER, NULL);
	/* absolute form, as presto-client sends DELETE */
	expect_target("http://10.213.0.101:8080/v1/statement/executing/" QID "/s/2",
		      QD_TRINO_EXECUTING, QID);
	expect_target("HTTP://h/v1/query/" QID "?pretty", QD_TRINO_QUERY, QID);
	expect_target("https://h:1", QD_TRINO_OTHER, NULL);
	/* ids that cannot be ours: kind kept (404), no id */
	expect_target("/v1/statement/queued//s/1", QD_TRINO_QUEUED, NULL);
	expect_target("/v1/query/a%2Fb", QD_TRINO_QUERY, NULL);
	expect_target("/v1/query/0123456789012345678901234567890123456789012345678",
		      QD_TRINO_QUERY, NULL);
	expect_target("/v1/query/012345678901234567890123456789012345678901234",
		      QD_TRINO_QUERY, "012345678901234567890123456789012345678901234");
}

static void
test_origin_form_errors(void **state)
{
	(void)state;
	const char *o, *a;
	size_t ol, al;
	assert_int_equal(qd_trino_origin_form("*", 1, &o, &ol, &a, &al), -1);
	assert_int_equal(qd_trino_origin_form("", 0, &o, &ol, &a, &al), -1);
	assert_int_equal(qd_trino_origin_form("http:///x", 9, &o, &ol, &a, &al), -1);
	assert_int_equal(qd_trino_origin_form("ftp://h/x", 9, &o, &ol, &a, &al), -1);
	assert_int_equal(qd_trino_origin_form("http://h:8/x?y", 14, &o, &ol, &a, &al), 0);
	assert_int_equal(al, 3);
	assert_memory_equal(a, "h:8", 3);
	assert_int_equal(ol, 4);
	assert_memory_equal(o, "/x?y", 4);
}

/* Feed <doc> split at every pair of positions (3 pieces) and check the result. */
static void
expect_scan(const char *doc, const char *id, bool next_uri, bool error)
{
	size_t n = strlen(doc);
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b += (n > 64 ? 7 : 1)) {
			struct qd_json_scan s;
			qd_json_scan_init(&s);
			qd_json_scan_feed(&s, doc, a);
			qd_json_scan_feed(&s, doc + a, b - a);
			qd_json_scan_feed(&s, doc + b, n - b);
			if (id == NULL) {
				assert_false(s.id_found);
			} else {
				if (!s.id_found || strcmp(s.id, id) != 0)
					fail_msg("split %zu/%zu of %s: id %s", a, b, doc,
						 s.id_found ? s.id : "(none)");
			}
			if (s.next_uri != next_uri || s.error != error)
				fail_msg("split %zu/%zu of %s: nextUri %d error %d", a, b, doc,
					 s.next_uri, s.error);
		}
	}
}

static void
test_scan(void **state)
{
	(void)state;
	expect_scan("{\"id\":\"" QID "\",\"nextUri\":\"http://h/v1/statement/queued/" QID
		    "/s/1\",\"stats\":{\"state\":\"QUEUED\"}}",
		    QID, true, false);
	/* final page: no nextUri; data holding keys named like ours */
	expect_scan("{ \"id\" : \"" QID "\", \"columns\":[{\"name\":\"nextUri\"}],"
		    "\"data\":[[\"id\",\"nextUri\",{\"error\":{}}]],\"stats\":{\"id\":\"x\"}}",
		    QID, false, false);
	/* failed query */
	expect_scan("{\"id\":\"" QID "\",\"error\":{\"message\":\"boom \\\" }\",\"errorCode\":1}}",
		    QID, false, true);
	/* order does not matter; error:null is not an error */
	expect_scan("{\"nextUri\":\"u\",\"error\":null,\"id\":\"" QID "\"}", QID, true, false);
	/* escapes in the id: unusable */
	expect_scan("{\"id\":\"a\\u0041\"}", NULL, false, false);
	/* not an object */
	expect_scan("[\"id\",\"x\"]", NULL, false, false);
	expect_scan("", NULL, false, false);
	/* key with an escaped quote is none of ours */
	expect_scan("{\"i\\\"d\":\"x\",\"id\":\"y\"}", "y", false, false);
}

static void
test_scan_done_and_bytes(void **state)
{
	(void)state;
	struct qd_json_scan s;
	qd_json_scan_init(&s);
	const char *doc = "{\"id\":\"q\"}  trailing";
	qd_json_scan_feed(&s, doc, strlen(doc));
	assert_true(s.done);
	assert_true(s.id_found);
	assert_int_equal(s.bytes, strlen(doc));
}

static void
test_scan_garbage(void **state)
{
	(void)state;
	/* Random bytes must never crash or overrun (ASan watches); the result is whatever. */
	unsigned int seed = 12345;
	char buf[4096];
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)(rand_r(&seed) % sizeof(buf));
		for (size_t i = 0; i < n; i++) {
			static const char alphabet[] = "{}[]\":,\\ idnextUrierror0123abc";
			buf[i] = (rand_r(&seed) & 1) ? alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)]
						     : (char)rand_r(&seed);
		}
		struct qd_json_scan s;
		qd_json_scan_init(&s);
		size_t cut = n ? (size_t)rand_r(&seed) % n : 0;
		qd_json_scan_feed(&s, buf, cut);
		qd_json_scan_feed(&s, buf + cut, n - cut);
		assert_true(s.id_len <= QD_TRINO_ID_MAX);
		if (s.id_found)
			assert_int_equal(strlen(s.id), s.id_len);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_origin_form_errors),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_scan_done_and_bytes),
		cmocka_unit_test(test_scan_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
