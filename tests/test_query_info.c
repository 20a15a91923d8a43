/* The QueryInfo scanner (lib/query_info.c): state, session user/source/clientTags, the SQL
 * and queryType found at their depths only, whatever the split of the body into pieces;
 * nested look-alikes ignored; escapes, cut values, garbage; the selector input built from
 * them picks the same group as the submission's headers did (classification). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_info.h"
#include "resource_groups.h"

/* A QueryInfo shaped like Trino's: look-alike keys nested before the real ones. */
static const char *const doc =
	"{\"queryId\":\"20240101_000000_00001_abcde\","
	"\"session\":{\"queryId\":\"x\",\"user\":\"adhoc\",\"principal\":\"p\","
	"\"source\":\"alice\",\"clientTags\":[\"hipri\",\"nightly\"],"
	"\"systemProperties\":{\"user\":\"nested\",\"state\":\"FAILED\"},"
	"\"catalogProperties\":{}},"
	"\"stages\":[{\"state\":\"FINISHED\",\"query\":\"DROP TABLE t\",\"user\":\"deep\"}],"
	"\"state\":\"RUNNING\",\"memoryPool\":\"general\","
	"\"query\":\"  -- a comment\\n SELECT \\\"c\\\" FROM t\","
	"\"queryType\":\"SELECT\",\"resourceGroupId\":[\"global\",\"adhoc\"]}";

static void
check_doc(const struct qd_qinfo *qi)
{
	assert_true(qi->done);
	assert_string_equal(qi->state, "RUNNING");
	assert_string_equal(qi->user, "adhoc");
	assert_string_equal(qi->source, "alice");
	assert_string_equal(qi->tags, "hipri,nightly");
	assert_string_equal(qi->sql, "  -- a comment\n SELECT \"c\" FROM t");
	assert_string_equal(qi->qtype, "SELECT");
	assert_int_equal(qi->cut, 0);
	assert_int_equal(qi->found, QD_QINFO_F_STATE | QD_QINFO_F_USER | QD_QINFO_F_SOURCE |
					    QD_QINFO_F_TAGS | QD_QINFO_F_SQL | QD_QINFO_F_QTYPE);
}

static void
test_whole_and_split(void **state)
{
	(void)state;
	size_t n = strlen(doc);
	struct qd_qinfo qi;
	qd_qinfo_init(&qi, false);
	assert_true(qd_qinfo_feed(&qi, doc, n));
	check_doc(&qi);
	/* every split in two, and byte by byte */
	for (size_t cut = 0; cut <= n; cut++) {
		qd_qinfo_init(&qi, false);
		qd_qinfo_feed(&qi, doc, cut);
		qd_qinfo_feed(&qi, doc + cut, n - cut);
		check_doc(&qi);
	}
	qd_qinfo_init(&qi, false);
	for (size_t i = 0; i < n; i++)
		qd_qinfo_feed(&qi, doc + i, 1);
	check_doc(&qi);
}

static void
test_state_only(void **state)
{
	(void)state;
	struct qd_qinfo qi;
	qd_qinfo_init(&qi, true);
	const char *p = strstr(doc, "\"state\":\"RUNNING\"");
	size_t upto = (size_t)(p - doc) + strlen("\"state\":\"RUNNING\"");
	/* done exactly when the top-level state is complete, not at a nested one */
	assert_false(qd_qinfo_feed(&qi, doc, upto - 2));
	assert_true(qd_qinfo_feed(&qi, doc + upto - 2, strlen(doc) - (upto - 2)));
	assert_string_equal(qi.state, "RUNNING");
	assert_true(qd_qinfo_state_live(qi.state));
	assert_false(qd_qinfo_state_final(qi.state));
	assert_true(qd_qinfo_state_final("CANCELED"));
	assert_false(qd_qinfo_state_live("FINISHED"));
	assert_false(qd_qinfo_state_live(""));
}

static void
test_cut_and_garbage(void **state)
{
	(void)state;
	char big[2048];
	memset(big, 0, sizeof(big));
	int n = snprintf(big, sizeof(big), "{\"state\":\"%0100d\",\"session\":{\"user\":\"", 7);
	memset(big + n, 'u', 300);
	strcat(big, "\"},\"query\":\"select 1\"}");
	struct qd_qinfo qi;
	qd_qinfo_init(&qi, false);
	assert_true(qd_qinfo_feed(&qi, big, strlen(big)));
	assert_int_equal(qi.found & QD_QINFO_F_STATE, 0); /* too long: not a state */
	assert_true(qi.cut & QD_QINFO_F_USER);
	assert_int_equal(strlen(qi.user), QD_QINFO_NAME_MAX - 1);
	assert_string_equal(qi.sql, "select 1");
	/* an escape in a name: \u00e9 counts as one '?' */
	qd_qinfo_init(&qi, false);
	const char *esc = "{\"session\":{\"user\":\"ren\\u00e9\",\"source\":\"a\\/b\"}}";
	assert_true(qd_qinfo_feed(&qi, esc, strlen(esc)));
	assert_string_equal(qi.user, "ren?");
	assert_string_equal(qi.source, "a/b");
	/* garbage never reads out of bounds and finds nothing it should not */
	static const char *const junk[] = {
		"", "]]]}}}", "\"state\":\"RUNNING\"", "[{\"state\":\"RUNNING\"}]",
		"{\"state\":RUNNING}", "{\"state\"", "{\"a\":\"\\", "{{{{{{{{{{{{\"state\":\"X\"",
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		qd_qinfo_init(&qi, false);
		qd_qinfo_feed(&qi, junk[i], strlen(junk[i]));
		assert_int_equal(qi.found & QD_QINFO_F_STATE, 0);
	}
	/* random bytes */
	srand(7);
	char r[512];
	for (int round = 0; round < 2000; round++) {
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = "{}[]\":,\\u abstate"[rand() % 18];
		qd_qinfo_init(&qi, false);
		qd_qinfo_feed(&qi, r, sizeof(r));
		assert_true(strlen(qi.state) < QD_QINFO_STATE_MAX);
		assert_true(qi.tags_len < QD_QINFO_TAGS_MAX);
	}
}

static const char *const groups_json =
	"{\"rootGroups\":[{\"name\":\"global\",\"hardConcurrencyLimit\":8,\"maxQueued\":10,\"softMemoryLimit\":\"100%\","
	"\"subGroups\":[{\"name\":\"etl\",\"hardConcurrencyLimit\":2,\"maxQueued\":5,\"softMemoryLimit\":\"1GB\"},"
	"{\"name\":\"hipri\",\"hardConcurrencyLimit\":2,\"maxQueued\":5,\"softMemoryLimit\":\"1GB\"},"
	"{\"name\":\"ddl\",\"hardConcurrencyLimit\":2,\"maxQueued\":5,\"softMemoryLimit\":\"1GB\"},"
	"{\"name\":\"alice\",\"hardConcurrencyLimit\":2,\"maxQueued\":5,\"softMemoryLimit\":\"1GB\"},"
	"{\"name\":\"other\",\"hardConcurrencyLimit\":2,\"maxQueued\":5,\"softMemoryLimit\":\"1GB\"}]}],"
	"\"selectors\":[{\"source\":\"etl\",\"group\":\"global.etl\"},"
	"{\"clientTags\":[\"hipri\"],\"group\":\"global.hipri\"},"
	"{\"queryType\":\"DATA_DEFINITION\",\"group\":\"global.ddl\"},"
	"{\"user\":\"al.*\",\"group\":\"global.alice\"},"
	"{\"group\":\"global.other\"}]}";

static int
group_of(const struct qd_rg_config *rg, const char *body)
{
	struct qd_qinfo qi;
	qd_qinfo_init(&qi, false);
	qd_qinfo_feed(&qi, body, strlen(body));
	struct qd_rg_query q;
	qd_qinfo_rg_query(&qi, &q);
	return qd_rg_select(rg, &q);
}

static void
test_classify(void **state)
{
	(void)state;
	struct qd_rg_config *rg = NULL;
	char err[QD_RG_ERR_MAX];
	assert_int_equal(qd_rg_parse(groups_json, strlen(groups_json), &rg, err, sizeof(err)), 0);
	int etl = qd_rg_find_group(rg, "global.etl"), hipri = qd_rg_find_group(rg, "global.hipri");
	int ddl = qd_rg_find_group(rg, "global.ddl"), alice = qd_rg_find_group(rg, "global.alice");
	int other = qd_rg_find_group(rg, "global.other");
	assert_int_equal(group_of(rg, "{\"session\":{\"user\":\"bob\",\"source\":\"etl\"},"
				      "\"query\":\"select 1\"}"), etl);
	assert_int_equal(group_of(rg, "{\"session\":{\"user\":\"bob\",\"clientTags\":[\"x\","
				      "\"hipri\"]},\"query\":\"select 1\"}"), hipri);
	assert_int_equal(group_of(rg, "{\"session\":{\"user\":\"bob\"},"
				      "\"query\":\"CREATE TABLE t (a int)\"}"), ddl);
	/* no SQL text: Trino's queryType */
	assert_int_equal(group_of(rg, "{\"session\":{\"user\":\"bob\"},"
				      "\"queryType\":\"DATA_DEFINITION\"}"), ddl);
	assert_int_equal(group_of(rg, "{\"session\":{\"user\":\"alice\"},\"query\":\"select 1\"}"),
			 alice);
	/* a nested look-alike does not classify */
	assert_int_equal(group_of(rg, "{\"stages\":{\"session\":{\"user\":\"alice\"}},"
				      "\"session\":{\"user\":\"bob\"},\"query\":\"select 1\"}"), other);
	qd_rg_free(rg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_and_split),
		cmocka_unit_test(test_state_only),
		cmocka_unit_test(test_cut_and_garbage),
		cmocka_unit_test(test_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
