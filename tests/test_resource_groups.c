/* Resource groups (lib/resource_groups.c): the example files load, every refusal names its
 * JSON path and reason, limits hold, and selection and query types agree with Trino. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resource_groups.h"

/* A group object with the required fields; <extra> starts with a comma. */
#define G(name, extra)                                                                     \
	"{\"name\":\"" name "\",\"hardConcurrencyLimit\":1,\"maxQueued\":1,"                \
	"\"softMemoryLimit\":\"1GB\"" extra "}"
/* One root group "g" and one selector naming it. */
#define ONE(group_extra, selector_extra)                                                   \
	"{\"rootGroups\":[" G("g", group_extra) "],\"selectors\":[{\"group\":\"g\"" selector_extra \
	"}]}"

static struct qd_rg_config *
load(const char *json)
{
	struct qd_rg_config *cfg = NULL;
	char err[QD_RG_ERR_MAX];
	int rc = qd_rg_parse(json, strlen(json), &cfg, err, sizeof(err));
	if (rc != 0)
		fail_msg("refused: %s\n%s", err, json);
	assert_non_null(cfg);
	return cfg;
}

static void
expect_err(const char *json, const char *want)
{
	struct qd_rg_config *cfg = (void *)1;
	char err[QD_RG_ERR_MAX] = "";
	int rc = qd_rg_parse(json, strlen(json), &cfg, err, sizeof(err));
	if (rc != -EINVAL)
		fail_msg("rc %d, want -EINVAL for\n%s", rc, json);
	assert_null(cfg);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static const char *
source_path(const char *rel, char *buf, size_t len)
{
	const char *src = getenv("QD_SOURCE");
	snprintf(buf, len, "%s/%s", src != NULL ? src : ".", rel);
	return buf;
}

static struct qd_rg_config *
load_example(const char *rel)
{
	char path[1024], err[QD_RG_ERR_MAX];
	struct qd_rg_config *cfg = NULL;
	source_path(rel, path, sizeof(path));
	if (qd_rg_load_file(path, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	return cfg;
}

/* The selected group's full name, or "-" when nothing matched. */
static const char *
sel(const struct qd_rg_config *cfg, const char *user, const char *source, const char *tags,
    enum qd_rg_query_type qt)
{
	struct qd_rg_query q = {
		.user = user, .user_len = user ? strlen(user) : 0,
		.source = source, .source_len = source ? strlen(source) : 0,
		.client_tags = tags, .client_tags_len = tags ? strlen(tags) : 0,
		.query_type = qt,
	};
	int g = qd_rg_select(cfg, &q);
	if (g < 0)
		return "-";
	assert_true((unsigned int)g < cfg->groups_count);
	assert_true(cfg->groups[g].leaf);
	return cfg->groups[g].name;
}

static const struct qd_rg_group *
group(const struct qd_rg_config *cfg, const char *name)
{
	int i = qd_rg_find_group(cfg, name);
	if (i < 0)
		fail_msg("no group %s", name);
	return &cfg->groups[i];
}

static void
check_parents_first(const struct qd_rg_config *cfg)
{
	for (unsigned int i = 0; i < cfg->groups_count; i++) {
		const struct qd_rg_group *g = &cfg->groups[i];
		if (g->parent < 0) {
			assert_int_equal(g->depth, 0);
			assert_null(strchr(g->name, '.'));
			continue;
		}
		assert_true(g->parent < (int)i);
		const struct qd_rg_group *p = &cfg->groups[g->parent];
		assert_int_equal(g->depth, p->depth + 1);
		assert_false(p->leaf);
		size_t pl = strlen(p->name);
		assert_memory_equal(g->name, p->name, pl);
		assert_int_equal(g->name[pl], '.');
	}
}

static void
test_lab_example(void **state)
{
	(void)state;
	struct qd_rg_config *cfg = load_example("docs/examples/resource-groups-lab.json");
	assert_int_equal(cfg->groups_count, 5);
	assert_int_equal(cfg->selectors_count, 3);
	assert_false(cfg->uses_query_type);
	check_parents_first(cfg);
	const char *order[] = {"global", "global.etl", "global.adhoc", "global.adhoc.alice",
			       "global.adhoc.others"};
	for (unsigned int i = 0; i < 5; i++)
		assert_string_equal(cfg->groups[i].name, order[i]);
	const struct qd_rg_group *g = group(cfg, "global");
	assert_int_equal(g->hard_concurrency_limit, 20);
	assert_int_equal(g->max_queued, 1000);
	assert_int_equal(g->scheduling_policy, QD_RG_POLICY_FAIR);
	assert_false(g->leaf);
	assert_int_equal(g->soft_memory_limit_pct, 100);
	assert_true(g->soft_memory_limit_bytes == UINT64_MAX);
	g = group(cfg, "global.etl");
	assert_int_equal(g->hard_concurrency_limit, 4);
	assert_int_equal(g->max_queued, 100);
	assert_true(g->leaf);
	g = group(cfg, "global.adhoc");
	assert_int_equal(g->hard_concurrency_limit, 6);
	assert_int_equal(g->max_queued, 50);
	assert_int_equal(g->scheduling_policy, QD_RG_POLICY_WEIGHTED_FAIR);
	assert_int_equal(group(cfg, "global.adhoc.alice")->hard_concurrency_limit, 3);
	assert_int_equal(group(cfg, "global.adhoc.others")->hard_concurrency_limit, 4);
	assert_int_equal(group(cfg, "global.adhoc.others")->scheduling_weight, 1);

	assert_string_equal(sel(cfg, "bob", "etl-nightly", NULL, QD_RG_QT_INSERT), "global.etl");
	assert_string_equal(sel(cfg, "alice", "etl", NULL, QD_RG_QT_SELECT), "global.etl");
	assert_string_equal(sel(cfg, "alice", "trino-cli", NULL, QD_RG_QT_SELECT),
			    "global.adhoc.alice");
	assert_string_equal(sel(cfg, "alice", NULL, NULL, QD_RG_QT_NONE), "global.adhoc.alice");
	assert_string_equal(sel(cfg, "alice2", "x-etl", NULL, QD_RG_QT_SELECT),
			    "global.adhoc.others");
	assert_string_equal(sel(cfg, "bob", NULL, NULL, QD_RG_QT_SELECT), "global.adhoc.others");
	assert_string_equal(sel(cfg, NULL, NULL, NULL, QD_RG_QT_SELECT), "global.adhoc.others");
	qd_rg_free(cfg);
}

/* An equivalent of the example in Trino's documentation, without templates. */
static void
test_trino_example(void **state)
{
	(void)state;
	struct qd_rg_config *cfg = load_example("docs/examples/resource-groups-trino.json");
	assert_int_equal(cfg->groups_count, 9);
	assert_int_equal(cfg->selectors_count, 6);
	assert_true(cfg->uses_query_type);
	check_parents_first(cfg);
	assert_int_equal(group(cfg, "global")->scheduling_policy, QD_RG_POLICY_WEIGHTED);
	assert_int_equal(group(cfg, "global.adhoc.bi")->scheduling_policy,
			 QD_RG_POLICY_WEIGHTED_FAIR);
	assert_int_equal(group(cfg, "global")->soft_memory_limit_pct, 80);
	assert_int_equal(group(cfg, "admin")->scheduling_policy, QD_RG_POLICY_QUERY_PRIORITY);
	assert_int_equal(group(cfg, "admin")->parent, -1);
	assert_true(group(cfg, "admin")->leaf);
	assert_int_equal(group(cfg, "global.adhoc")->scheduling_weight, 10);
	/* maxRunning, the old name of hardConcurrencyLimit */
	assert_int_equal(group(cfg, "global.pipeline.nightly")->hard_concurrency_limit, 5);
	assert_true(group(cfg, "global.pipeline.nightly")->soft_memory_limit_bytes == 512ull << 30);
	assert_int_equal(group(cfg, "global.pipeline.nightly")->soft_memory_limit_pct, 0);
	assert_true(group(cfg, "global.pipeline.hourly")->soft_memory_limit_bytes ==
		    (3ull << 40) / 2);

	assert_string_equal(sel(cfg, "bob", "pipeline", "nightly", QD_RG_QT_INSERT), "admin");
	assert_string_equal(sel(cfg, "eve", "my-pipeline-7", NULL, QD_RG_QT_DATA_DEFINITION),
			    "global.data_definition");
	assert_string_equal(sel(cfg, "eve", "my-pipeline-7", "a, nightly ,b", QD_RG_QT_INSERT),
			    "global.pipeline.nightly");
	assert_string_equal(sel(cfg, "eve", "my-pipeline-7", "nightlyx", QD_RG_QT_INSERT),
			    "global.pipeline.hourly");
	assert_string_equal(sel(cfg, "eve", "jdbc#tableau-2024", "hipri", QD_RG_QT_SELECT),
			    "global.adhoc.bi");
	assert_string_equal(sel(cfg, "eve", "jdbc#tableau-2024", NULL, QD_RG_QT_SELECT),
			    "global.adhoc.other");
	assert_string_equal(sel(cfg, NULL, NULL, NULL, QD_RG_QT_NONE), "global.adhoc.other");
	qd_rg_free(cfg);
}

static void
test_nesting(void **state)
{
	(void)state;
	struct qd_rg_config *cfg = load(
		"{\"rootGroups\":["
		G("a", ",\"subGroups\":[" G("x", ",\"subGroups\":[" G("deep", "") "]") ","
		  G("y", ",\"subGroups\":[]") "]") ","
		G("b", ",\"subGroups\":[" G("x", "") "]") "],"
		"\"selectors\":[{\"group\":\"a.x.deep\"},{\"group\":\"a.y\"},{\"group\":\"b.x\"}]}");
	check_parents_first(cfg);
	const char *order[] = {"a", "a.x", "a.x.deep", "a.y", "b", "b.x"};
	assert_int_equal(cfg->groups_count, 6);
	for (unsigned int i = 0; i < 6; i++)
		assert_string_equal(cfg->groups[i].name, order[i]);
	assert_int_equal(group(cfg, "a.x.deep")->depth, 2);
	assert_true(group(cfg, "a.y")->leaf); /* an empty subGroups array */
	assert_false(group(cfg, "a.x")->leaf);
	assert_int_equal(group(cfg, "b.x")->parent, qd_rg_find_group(cfg, "b"));
	assert_int_equal(qd_rg_find_group(cfg, "x"), -1);
	assert_int_equal(qd_rg_find_group(cfg, "a.x.dee"), -1);
	qd_rg_free(cfg);
}

static void
expect_mem_limit(const char *value, uint64_t bytes, uint32_t pct)
{
	char json[512];
	snprintf(json, sizeof(json),
		 "{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":0,\"maxQueued\":0,"
		 "\"softMemoryLimit\":\"%s\"}],\"selectors\":[{\"group\":\"g\"}]}", value);
	struct qd_rg_config *cfg = load(json);
	if (cfg->groups[0].soft_memory_limit_bytes != bytes ||
	    cfg->groups[0].soft_memory_limit_pct != pct)
		fail_msg("%s: %llu bytes %u%%, want %llu %u%%", value,
			 (unsigned long long)cfg->groups[0].soft_memory_limit_bytes,
			 cfg->groups[0].soft_memory_limit_pct, (unsigned long long)bytes, pct);
	qd_rg_free(cfg);
}

static void
test_memory_limits(void **state)
{
	(void)state;
	expect_mem_limit("100B", 100, 0);
	expect_mem_limit("0B", 0, 0);
	expect_mem_limit("1kB", 1024, 0);
	expect_mem_limit("512MB", 512ull << 20, 0);
	expect_mem_limit("10GB", 10ull << 30, 0);
	expect_mem_limit("1TB", 1ull << 40, 0);
	expect_mem_limit("2PB", 2ull << 50, 0);
	expect_mem_limit("1.5GB", 3ull << 29, 0);
	expect_mem_limit(" 10 GB ", 10ull << 30, 0);
	expect_mem_limit("80%", UINT64_MAX, 80);
	expect_mem_limit("100%", UINT64_MAX, 100);
	expect_mem_limit("1%", UINT64_MAX, 1);
	expect_mem_limit("12.5%", UINT64_MAX, 13); /* rounded up; not enforced anyway */
	expect_mem_limit("0.1%", UINT64_MAX, 1);
	const char *bad[] = {"10gb", "10KB", "10", "GB", "", "-1GB", "1.GB", "10 G", "0%",
			     "101%", "100.5%", "%", "10%%", "99999999999999999999B",
			     "16384PB", "1.0000000001GB"};
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char json[512];
		snprintf(json, sizeof(json),
			 "{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":0,"
			 "\"maxQueued\":0,\"softMemoryLimit\":\"%s\"}],"
			 "\"selectors\":[{\"group\":\"g\"}]}", bad[i]);
		expect_err(json, "rootGroups[0].softMemoryLimit: must be a data size like");
	}
}

/* Every refusal: its message names the JSON path and the reason. */
static void
test_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		const char *want;
	} cases[] = {
		{"{\"rootGroups\": [}", "line 1, column 17"},
		{"{\n\"rootGroups\": 1,\n\"selectors\" 2}", "line 3, column"},
		{"", "line 1"},
		{"[]", "must be a JSON object with rootGroups and selectors"},
		{"{\"rootGroups\":[],\"selectors\":[]}", "rootGroups: must be a non-empty array"},
		{"{\"selectors\":[]}", "rootGroups: must be a non-empty array"},
		{"{\"rootGroups\":[" G("g", "") "]}", "selectors: must be a non-empty array"},
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":{}}",
		 "selectors: must be a non-empty array"},
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":[{\"group\":\"g\"}],\"x\":1}",
		 "x: unknown field"},
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":[{\"group\":\"g\"}],"
		 "\"cpuQuotaPeriod\":1}", "cpuQuotaPeriod: must be a duration"},
		{"{\"rootGroups\":[" G("g", "") "],\"rootGroups\":[],\"selectors\":[]}",
		 "duplicate object key"},
		{"{\"rootGroups\":[1],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0]: must be an object"},
		/* groups */
		{ONE(",\"bogus\":1", ""), "rootGroups[0].bogus: unknown field"},
		{"{\"rootGroups\":[{\"hardConcurrencyLimit\":1,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].name: is required"},
		{"{\"rootGroups\":[{\"name\":7,\"hardConcurrencyLimit\":1,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].name: must be a string"},
		{"{\"rootGroups\":[" G("", "") "],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].name: must not be empty"},
		{"{\"rootGroups\":[" G("a.b", "") "],\"selectors\":[{\"group\":\"a.b\"}]}",
		 "rootGroups[0].name: \"a.b\": only letters, digits, '_' and '-' are allowed"},
		{"{\"rootGroups\":[" G("a b", "") "],\"selectors\":[{\"group\":\"g\"}]}",
		 "only letters, digits"},
		{"{\"rootGroups\":[" G("g", ",\"subGroups\":[" G("${USER}", "") "]") "],"
		 "\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].subGroups[0].name: \"${USER}\": templated group names"},
		{"{\"rootGroups\":[" G("bi-${toolname}", "") "],\"selectors\":[{\"group\":\"g\"}]}",
		 "are not supported by the dispatcher yet"},
		{"{\"rootGroups\":[" G("g", "") "," G("g", "") "],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[1].name: duplicate group \"g\""},
		{"{\"rootGroups\":[" G("g", ",\"subGroups\":[" G("a", "") "," G("b", "") ","
		 G("a", "") "]") "],\"selectors\":[{\"group\":\"g.a\"}]}",
		 "rootGroups[0].subGroups[2].name: duplicate group \"g.a\""},
		{"{\"rootGroups\":[{\"name\":\"g\",\"maxQueued\":1,\"softMemoryLimit\":\"1GB\"}],"
		 "\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].hardConcurrencyLimit: is required"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":1,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].maxQueued: is required"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":1,\"maxQueued\":1}],"
		 "\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].softMemoryLimit: is required"},
		{"{\"rootGroups\":[" G("g", ",\"subGroups\":[" G("a", "") ","
		 "{\"name\":\"b\",\"hardConcurrencyLimit\":-1,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\"}]") "],\"selectors\":[{\"group\":\"g.a\"}]}",
		 "rootGroups[0].subGroups[1].hardConcurrencyLimit: must be an integer >= 0"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":1.5,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].hardConcurrencyLimit: must be an integer >= 0"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":\"3\",\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].hardConcurrencyLimit: must be an integer >= 0"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":2147483648,"
		 "\"maxQueued\":1,\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].hardConcurrencyLimit: must be at most 2147483647"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"maxRunning\":-2,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].maxRunning: must be an integer >= 0"},
		{ONE(",\"maxRunning\":3", ""),
		 "rootGroups[0].maxRunning: give hardConcurrencyLimit or its old name maxRunning"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":1,\"maxQueued\":null,"
		 "\"softMemoryLimit\":\"1GB\"}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].maxQueued: must be an integer >= 0"},
		{"{\"rootGroups\":[{\"name\":\"g\",\"hardConcurrencyLimit\":1,\"maxQueued\":1,"
		 "\"softMemoryLimit\":10}],\"selectors\":[{\"group\":\"g\"}]}",
		 "rootGroups[0].softMemoryLimit: must be a data size"},
		{ONE(",\"softConcurrencyLimit\":-1", ""),
		 "rootGroups[0].softConcurrencyLimit: must be an integer >= 0"},
		{ONE(",\"schedulingWeight\":0", ""),
		 "rootGroups[0].schedulingWeight: must be an integer >= 1"},
		{ONE(",\"schedulingPolicy\":\"round_robin\"", ""),
		 "rootGroups[0].schedulingPolicy: must be one of fair, weighted, weighted_fair, "
		 "query_priority"},
		{ONE(",\"schedulingPolicy\":1", ""), "rootGroups[0].schedulingPolicy: must be one of"},
		{ONE(",\"softCpuLimit\":5", ""), "rootGroups[0].softCpuLimit: must be a duration"},
		{ONE(",\"hardCpuLimit\":true", ""), "rootGroups[0].hardCpuLimit: must be a duration"},
		{ONE(",\"jmxExport\":\"yes\"", ""), "rootGroups[0].jmxExport: must be true or false"},
		{ONE(",\"subGroups\":{}", ""), "rootGroups[0].subGroups: must be an array"},
		{ONE(",\"subGroups\":[[]]", ""), "rootGroups[0].subGroups[0]: must be an object"},
		/* selectors */
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":[\"g\"]}",
		 "selectors[0]: must be an object"},
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":[{\"user\":\"a\"}]}",
		 "selectors[0].group: is required"},
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":[{\"group\":[]}]}",
		 "selectors[0].group: must be a string"},
		{"{\"rootGroups\":[" G("global", ",\"subGroups\":[" G("a", "") "]") "],"
		 "\"selectors\":[{\"group\":\"global.a\"},{\"group\":\"global.a\"},"
		 "{\"group\":\"global.x\"}]}",
		 "selectors[2].group: no group named \"global.x\""},
		{"{\"rootGroups\":[" G("global", ",\"subGroups\":[" G("a", "") "]") "],"
		 "\"selectors\":[{\"group\":\"global\"}]}",
		 "selectors[0].group: \"global\" has subgroups; a selector must name a leaf group"},
		{"{\"rootGroups\":[" G("g", "") "],\"selectors\":[{\"group\":\"g.${USER}\"}]}",
		 "selectors[0].group: \"g.${USER}\": templated group names"},
		{ONE("", ",\"colour\":\"red\""), "selectors[0].colour: unknown field"},
		{ONE("", ",\"userGroup\":\"admins\""),
		 "selectors[0].userGroup: not supported by the dispatcher"},
		{ONE("", ",\"originalUser\":\"a\""),
		 "selectors[0].originalUser: not supported by the dispatcher"},
		{ONE("", ",\"authenticatedUser\":\"a\""),
		 "selectors[0].authenticatedUser: not supported by the dispatcher"},
		{ONE("", ",\"selectorResourceEstimate\":{}"),
		 "selectors[0].selectorResourceEstimate: not supported by the dispatcher"},
		{ONE("", ",\"user\":\"(a\""), "selectors[0].user: bad regular expression: "},
		{ONE("", ",\"source\":\"a{2,1}\""), "selectors[0].source: bad regular expression: "},
		{ONE("", ",\"user\":1"), "selectors[0].user: must be a string (a regular expression)"},
		{ONE("", ",\"source\":null"), "selectors[0].source: must be a string"},
		{ONE("", ",\"user\":\"etl\\\\d+\""),
		 "selectors[0].user: \"\\d\" is Java regular expression syntax"},
		{ONE("", ",\"source\":\"\\\\p{Alpha}\""), "selectors[0].source: \"\\p\" is Java"},
		{ONE("", ",\"user\":\"[a\\\\-z]\""),
		 "selectors[0].user: a backslash inside [...] is a literal"},
		{ONE("", ",\"user\":\"(?i)bob\""), "selectors[0].user: bad regular expression"},
		{ONE("", ",\"clientTags\":\"a\""), "selectors[0].clientTags: must be an array"},
		{ONE("", ",\"clientTags\":[1]"), "selectors[0].clientTags: must be an array of strings"},
		{ONE("", ",\"clientTags\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]"),
		 "selectors[0].clientTags: more than 8 tags"},
		{ONE("", ",\"clientTags\":[\"\"]"), "selectors[0].clientTags: \"\": a tag must be"},
		{ONE("", ",\"clientTags\":[\"a,b\"]"), "selectors[0].clientTags: \"a,b\": a tag"},
		{ONE("", ",\"clientTags\":[\" a\"]"), "a tag must be 1 to 63 bytes"},
		{ONE("", ",\"clientTags\":[\"0123456789012345678901234567890123456789012345678901"
			 "234567890123\"]"), "a tag must be 1 to 63 bytes"},
		{ONE("", ",\"queryType\":\"SELCT\""),
		 "selectors[0].queryType: must be one of SELECT, EXPLAIN, DESCRIBE, INSERT"},
		{ONE("", ",\"queryType\":\"NONE\""), "selectors[0].queryType: must be one of"},
		{ONE("", ",\"queryType\":[]"), "selectors[0].queryType: must be one of"},
	};
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_err(cases[i].json, cases[i].want);
}

/* A JSON file of <n> groups: a root with n - 1 leaves, or a chain <n> deep; one selector
 * names a leaf. */
static char *
make_groups(unsigned int n, bool chain)
{
	size_t cap = (size_t)n * 160 + 256;
	char *s = malloc(cap);
	assert_non_null(s);
	char leaf[16 * QD_RG_DEPTH_MAX] = "g0";
	size_t len = (size_t)snprintf(s, cap, "{\"rootGroups\":[");
	for (unsigned int i = 0; i < n; i++) {
		bool has_subs = i + 1 < n && (chain || i == 0);
		len += (size_t)snprintf(s + len, cap - len,
					"%s{\"name\":\"g%u\",\"hardConcurrencyLimit\":1,"
					"\"maxQueued\":1,\"softMemoryLimit\":\"1MB\"%s%s",
					!chain && i > 1 ? "," : "", i,
					has_subs ? ",\"subGroups\":[" : "",
					!chain && i > 0 ? "}" : "");
		if (chain && i > 0 && strlen(leaf) + 8 < sizeof(leaf))
			snprintf(leaf + strlen(leaf), sizeof(leaf) - strlen(leaf), ".g%u", i);
	}
	if (chain) {
		for (unsigned int i = n; i > 0; i--)
			len += (size_t)snprintf(s + len, cap - len, "}%s", i > 1 ? "]" : "");
	} else {
		len += (size_t)snprintf(s + len, cap - len, "%s}", n > 1 ? "]" : "");
		if (n > 1)
			snprintf(leaf, sizeof(leaf), "g0.g1");
	}
	len += (size_t)snprintf(s + len, cap - len, "],\"selectors\":[{\"group\":\"%s\"}]}", leaf);
	assert_true(len < cap);
	return s;
}

static void
test_limits(void **state)
{
	(void)state;
	char *s = make_groups(QD_RG_GROUPS_MAX, false);
	struct qd_rg_config *cfg = load(s);
	assert_int_equal(cfg->groups_count, QD_RG_GROUPS_MAX);
	check_parents_first(cfg);
	qd_rg_free(cfg);
	free(s);
	s = make_groups(QD_RG_GROUPS_MAX + 1, false);
	expect_err(s, "rootGroups[0].subGroups[255]: more than 256 groups");
	free(s);

	s = make_groups(QD_RG_DEPTH_MAX, true);
	cfg = load(s);
	assert_int_equal(cfg->groups[QD_RG_DEPTH_MAX - 1].depth, QD_RG_DEPTH_MAX - 1);
	assert_true(cfg->groups[QD_RG_DEPTH_MAX - 1].leaf);
	check_parents_first(cfg);
	qd_rg_free(cfg);
	free(s);
	s = make_groups(QD_RG_DEPTH_MAX + 1, true);
	expect_err(s, "rootGroups[0].subGroups[0].subGroups[0].subGroups[0].subGroups[0]."
		      "subGroups[0].subGroups[0].subGroups[0].subGroups[0]: groups nested deeper "
		      "than 8 levels");
	free(s);

	/* Selectors: 256 fit, 257 do not. */
	size_t cap = 40 * (QD_RG_SELECTORS_MAX + 1) + 256;
	s = malloc(cap);
	assert_non_null(s);
	for (unsigned int n = QD_RG_SELECTORS_MAX; n <= QD_RG_SELECTORS_MAX + 1; n++) {
		size_t len = (size_t)snprintf(s, cap, "{\"rootGroups\":[" G("g", "")
					      "],\"selectors\":[");
		for (unsigned int i = 0; i < n; i++)
			len += (size_t)snprintf(s + len, cap - len, "%s{\"group\":\"g\"}",
						i > 0 ? "," : "");
		snprintf(s + len, cap - len, "]}");
		if (n == QD_RG_SELECTORS_MAX) {
			cfg = load(s);
			assert_int_equal(cfg->selectors_count, QD_RG_SELECTORS_MAX);
			qd_rg_free(cfg);
		} else {
			expect_err(s, "selectors: more than 256 selectors");
		}
	}
	free(s);

	/* A full name of 127 bytes fits, 128 do not. */
	char name_a[80], name_b[80], json[1024];
	memset(name_a, 'a', 63);
	name_a[63] = '\0';
	memset(name_b, 'b', 63);
	name_b[63] = '\0';
	snprintf(json, sizeof(json),
		 "{\"rootGroups\":[{\"name\":\"%s\",\"hardConcurrencyLimit\":1,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\",\"subGroups\":[{\"name\":\"%s\","
		 "\"hardConcurrencyLimit\":1,\"maxQueued\":1,\"softMemoryLimit\":\"1GB\"}]}],"
		 "\"selectors\":[{\"group\":\"%s.%s\"}]}", name_a, name_b, name_a, name_b);
	cfg = load(json);
	assert_int_equal(strlen(cfg->groups[1].name), 127);
	qd_rg_free(cfg);
	name_b[63] = 'b';
	name_b[64] = '\0';
	snprintf(json, sizeof(json),
		 "{\"rootGroups\":[{\"name\":\"%s\",\"hardConcurrencyLimit\":1,\"maxQueued\":1,"
		 "\"softMemoryLimit\":\"1GB\",\"subGroups\":[{\"name\":\"%s\","
		 "\"hardConcurrencyLimit\":1,\"maxQueued\":1,\"softMemoryLimit\":\"1GB\"}]}],"
		 "\"selectors\":[{\"group\":\"x\"}]}", name_a, name_b);
	expect_err(json, "rootGroups[0].subGroups[0].name: full name longer than 127 bytes");
}

static void
test_regex(void **state)
{
	(void)state;
	struct qd_rg_config *cfg = load(
		"{\"rootGroups\":[" G("a", "") "," G("b", "") "," G("c", "") "," G("d", "") ","
		G("e", "") "],\"selectors\":["
		"{\"user\":\"al|bo\",\"group\":\"a\"},"
		"{\"user\":\"x[0-9]+\",\"source\":\"\\\\w+-cli\",\"group\":\"b\"},"
		"{\"source\":\"\",\"group\":\"c\"},"
		"{\"user\":\"[[:alpha:]]{3}\",\"group\":\"d\"},"
		"{\"source\":\".*\",\"group\":\"e\"}]}");
	/* whole string, alternation inside the group */
	assert_string_equal(sel(cfg, "al", "s", NULL, 0), "a");
	assert_string_equal(sel(cfg, "bo", "s", NULL, 0), "a");
	assert_string_equal(sel(cfg, "alpha", "s", NULL, 0), "e");
	assert_string_equal(sel(cfg, "xxbo", "s", NULL, 0), "e");
	assert_string_equal(sel(cfg, "bob", "s", NULL, 0), "d");
	assert_string_equal(sel(cfg, "x12", "trino-cli", NULL, 0), "b");
	assert_string_equal(sel(cfg, "x12", "trino-cli2", NULL, 0), "e");
	assert_string_equal(sel(cfg, "x12a", "trino-cli", NULL, 0), "e");
	/* an absent source is "": matches the empty pattern */
	assert_string_equal(sel(cfg, "x12", NULL, NULL, 0), "c");
	assert_string_equal(sel(cfg, "zz", "", NULL, 0), "c");
	/* ".*" needs no regex, so it also matches a value too long to copy */
	assert_null(cfg->selectors[4].source_re);
	char longv[QD_RG_MATCH_MAX + 10];
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	assert_string_equal(sel(cfg, "al", longv, NULL, 0), "a");
	assert_string_equal(sel(cfg, longv, "s", NULL, 0), "e");
	/* the longest value that fits still matches */
	char fits[QD_RG_MATCH_MAX];
	memset(fits, '1', sizeof(fits) - 1);
	fits[0] = 'x';
	fits[sizeof(fits) - 1] = '\0';
	assert_string_equal(sel(cfg, fits, "a-cli", NULL, 0), "b");
	fits[sizeof(fits) - 2] = 'y';
	assert_string_equal(sel(cfg, fits, "a-cli", NULL, 0), "e");
	/* a NUL inside the value never matches a pattern by its prefix */
	struct qd_rg_query q = {.user = "al\0x", .user_len = 4, .source = "s", .source_len = 1};
	assert_int_equal(qd_rg_select(cfg, &q), qd_rg_find_group(cfg, "e"));
	/* the value is used by length, not up to a NUL */
	q = (struct qd_rg_query){.user = "alice", .user_len = 2, .source = "s", .source_len = 1};
	assert_int_equal(qd_rg_select(cfg, &q), qd_rg_find_group(cfg, "a"));
	qd_rg_free(cfg);
}

static void
test_tags_and_types(void **state)
{
	(void)state;
	struct qd_rg_config *cfg = load(
		"{\"rootGroups\":[" G("ab", "") "," G("a", "") "," G("ddl", "") "," G("rest", "")
		"],\"selectors\":["
		"{\"clientTags\":[\"a\",\"b\"],\"group\":\"ab\"},"
		"{\"clientTags\":[\"a\"],\"queryType\":\"select\",\"group\":\"a\"},"
		"{\"queryType\":\"DATA_DEFINITION\",\"group\":\"ddl\"},"
		"{\"user\":\"u\",\"group\":\"rest\"}]}");
	assert_int_equal(cfg->selectors[1].query_type, QD_RG_QT_SELECT);
	assert_true(cfg->uses_query_type);
	assert_string_equal(sel(cfg, "u", NULL, "a,b", QD_RG_QT_SELECT), "ab");
	assert_string_equal(sel(cfg, "u", NULL, " b ,\tx, a ", QD_RG_QT_INSERT), "ab");
	assert_string_equal(sel(cfg, "u", NULL, "a", QD_RG_QT_SELECT), "a");
	assert_string_equal(sel(cfg, "u", NULL, "ab,a b", QD_RG_QT_SELECT), "rest");
	assert_string_equal(sel(cfg, "u", NULL, "a,,", QD_RG_QT_SELECT), "a");
	assert_string_equal(sel(cfg, "u", NULL, "a", QD_RG_QT_EXPLAIN), "rest");
	assert_string_equal(sel(cfg, "u", NULL, "a", QD_RG_QT_DATA_DEFINITION), "ddl");
	assert_string_equal(sel(cfg, "u", NULL, NULL, QD_RG_QT_SELECT), "rest");
	assert_string_equal(sel(cfg, "u", NULL, "", QD_RG_QT_NONE), "rest");
	assert_string_equal(sel(cfg, "v", NULL, "b", QD_RG_QT_NONE), "-");
	assert_string_equal(sel(cfg, NULL, NULL, NULL, QD_RG_QT_NONE), "-");
	/* tags by length: "a,b" cut to "a," */
	struct qd_rg_query q = {.client_tags = "a,b", .client_tags_len = 2,
				.query_type = QD_RG_QT_SELECT};
	assert_int_equal(qd_rg_select(cfg, &q), qd_rg_find_group(cfg, "a"));
	qd_rg_free(cfg);
}

/* First match in file order, even when a later selector is more specific. */
static void
test_selection_order(void **state)
{
	(void)state;
	struct qd_rg_config *cfg = load(
		"{\"rootGroups\":[" G("first", "") "," G("second", "") "],\"selectors\":["
		"{\"user\":\"a.*\",\"group\":\"second\"},"
		"{\"user\":\"alice\",\"group\":\"first\"},"
		"{\"group\":\"first\"}]}");
	assert_string_equal(sel(cfg, "alice", NULL, NULL, 0), "second");
	assert_string_equal(sel(cfg, "bob", NULL, NULL, 0), "first");
	qd_rg_free(cfg);
}

static void
expect_qt(const char *sql, enum qd_rg_query_type want)
{
	enum qd_rg_query_type got = qd_rg_query_type_of(sql, strlen(sql));
	if (got != want)
		fail_msg("\"%s\": %s, want %s", sql, qd_rg_query_type_name(got),
			 qd_rg_query_type_name(want));
}

static void
test_query_types(void **state)
{
	(void)state;
	expect_qt("SELECT 1", QD_RG_QT_SELECT);
	expect_qt("  select\n*", QD_RG_QT_SELECT);
	expect_qt("SeLeCt(1)", QD_RG_QT_SELECT);
	expect_qt("/* sim: sleep=10 */ SELECT 1", QD_RG_QT_SELECT);
	expect_qt("/* sim: x *//**/-- c\n\t-- d\r\nINSERT INTO t VALUES 1", QD_RG_QT_INSERT);
	expect_qt("/*/ SELECT */ DELETE FROM t", QD_RG_QT_DELETE);
	expect_qt("-- DELETE\nUPDATE t SET a = 1", QD_RG_QT_UPDATE);
	expect_qt("WITH x AS (SELECT 1) SELECT * FROM x", QD_RG_QT_SELECT);
	expect_qt("VALUES 1, 2", QD_RG_QT_SELECT);
	expect_qt("TABLE t", QD_RG_QT_SELECT);
	expect_qt("(SELECT 1) UNION (SELECT 2)", QD_RG_QT_SELECT);
	expect_qt("SHOW TABLES", QD_RG_QT_DESCRIBE);
	expect_qt("SHOW CREATE TABLE t", QD_RG_QT_DESCRIBE);
	expect_qt("SHOW STATS FOR t", QD_RG_QT_DESCRIBE);
	expect_qt("DESCRIBE t", QD_RG_QT_DESCRIBE);
	expect_qt("DESC t", QD_RG_QT_DESCRIBE);
	expect_qt("DESCRIBE OUTPUT s", QD_RG_QT_DESCRIBE);
	expect_qt("EXPLAIN SELECT 1", QD_RG_QT_EXPLAIN);
	expect_qt("EXPLAIN (TYPE DISTRIBUTED) DELETE FROM t", QD_RG_QT_EXPLAIN);
	expect_qt("explain analyze select 1", QD_RG_QT_SELECT);
	expect_qt("EXPLAIN ANALYZE VERBOSE INSERT INTO t SELECT 1", QD_RG_QT_INSERT);
	expect_qt("EXPLAIN ANALYZE /* c */ VERBOSE (SELECT 1)", QD_RG_QT_SELECT);
	expect_qt("EXPLAIN ANALYZE t", QD_RG_QT_EXPLAIN);
	expect_qt("EXPLAIN ANALYZE EXPLAIN ANALYZE EXPLAIN ANALYZE EXPLAIN ANALYZE "
		  "EXPLAIN ANALYZE SELECT 1", QD_RG_QT_EXPLAIN);
	expect_qt("INSERT INTO t SELECT 1", QD_RG_QT_INSERT);
	expect_qt("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", QD_RG_QT_MERGE);
	expect_qt("ANALYZE t", QD_RG_QT_ANALYZE);
	expect_qt("CREATE TABLE t (a bigint COMMENT 'as', \"as\" int) WITH (format = 'ORC')",
		  QD_RG_QT_DATA_DEFINITION);
	expect_qt("CREATE TABLE t AS SELECT 1", QD_RG_QT_INSERT);
	expect_qt("create or replace table \"x\".t (a, b) comment 'c' with (p = 1) as select 1, 2",
		  QD_RG_QT_INSERT);
	expect_qt("CREATE TABLE IF NOT EXISTS t /* AS */ (a int)", QD_RG_QT_DATA_DEFINITION);
	expect_qt("CREATE VIEW v AS SELECT 1", QD_RG_QT_DATA_DEFINITION);
	expect_qt("CREATE MATERIALIZED VIEW v AS SELECT 1", QD_RG_QT_DATA_DEFINITION);
	expect_qt("CREATE SCHEMA s", QD_RG_QT_DATA_DEFINITION);
	expect_qt("REFRESH MATERIALIZED VIEW v", QD_RG_QT_INSERT);
	expect_qt("DROP TABLE t", QD_RG_QT_DATA_DEFINITION);
	expect_qt("ALTER TABLE t ADD COLUMN c int", QD_RG_QT_DATA_DEFINITION);
	expect_qt("ALTER TABLE c.s.t EXECUTE optimize", QD_RG_QT_ALTER_TABLE_EXECUTE);
	expect_qt("alter table \"c\" . \"s.x\".\"t\"\"\" execute expire_snapshots",
		  QD_RG_QT_ALTER_TABLE_EXECUTE);
	expect_qt("ALTER TABLE IF EXISTS t RENAME TO u", QD_RG_QT_DATA_DEFINITION);
	expect_qt("ALTER SCHEMA s RENAME TO t", QD_RG_QT_DATA_DEFINITION);
	expect_qt("GRANT SELECT ON t TO u", QD_RG_QT_DATA_DEFINITION);
	expect_qt("REVOKE SELECT ON t FROM u", QD_RG_QT_DATA_DEFINITION);
	expect_qt("DENY SELECT ON t TO u", QD_RG_QT_DATA_DEFINITION);
	expect_qt("COMMENT ON TABLE t IS 'x'", QD_RG_QT_DATA_DEFINITION);
	expect_qt("CALL system.sync_partition_metadata('s', 't', 'ADD')",
		  QD_RG_QT_DATA_DEFINITION);
	expect_qt("TRUNCATE TABLE t", QD_RG_QT_DATA_DEFINITION);
	expect_qt("USE c.s", QD_RG_QT_DATA_DEFINITION);
	expect_qt("SET SESSION x = 1", QD_RG_QT_DATA_DEFINITION);
	expect_qt("RESET SESSION x", QD_RG_QT_DATA_DEFINITION);
	expect_qt("START TRANSACTION", QD_RG_QT_DATA_DEFINITION);
	expect_qt("COMMIT", QD_RG_QT_DATA_DEFINITION);
	expect_qt("ROLLBACK", QD_RG_QT_DATA_DEFINITION);
	expect_qt("PREPARE p FROM SELECT 1", QD_RG_QT_DATA_DEFINITION);
	expect_qt("DEALLOCATE PREPARE p", QD_RG_QT_DATA_DEFINITION);
	expect_qt("EXECUTE p", QD_RG_QT_NONE);
	expect_qt("EXECUTE IMMEDIATE 'SELECT 1'", QD_RG_QT_NONE);
	expect_qt("SELECTX 1", QD_RG_QT_NONE);
	expect_qt("SELECTSELECTSELECTSELECT", QD_RG_QT_NONE);
	expect_qt("", QD_RG_QT_NONE);
	expect_qt("   ", QD_RG_QT_NONE);
	expect_qt("/* unterminated SELECT", QD_RG_QT_NONE);
	expect_qt("-- only a comment", QD_RG_QT_NONE);
	expect_qt("1 + 1", QD_RG_QT_NONE);
	expect_qt("'SELECT'", QD_RG_QT_NONE);
	assert_int_equal(qd_rg_query_type_of(NULL, 0), QD_RG_QT_NONE);
	/* by length: only "SEL" of "SELECT" */
	assert_int_equal(qd_rg_query_type_of("SELECT", 3), QD_RG_QT_NONE);
	assert_int_equal(qd_rg_query_type_of("DROP TABLE", 4), QD_RG_QT_DATA_DEFINITION);
	assert_int_equal(qd_rg_query_type_of("CREATE TABLE t AS", 16), QD_RG_QT_DATA_DEFINITION);
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(qd_rg_query_type_name(QD_RG_QT_SELECT), "SELECT");
	assert_string_equal(qd_rg_query_type_name(QD_RG_QT_DATA_DEFINITION), "DATA_DEFINITION");
	assert_string_equal(qd_rg_query_type_name(QD_RG_QT_ALTER_TABLE_EXECUTE),
			    "ALTER_TABLE_EXECUTE");
	assert_string_equal(qd_rg_query_type_name(QD_RG_QT_COUNT), "?");
	assert_string_equal(qd_rg_policy_name(QD_RG_POLICY_FAIR), "fair");
	assert_string_equal(qd_rg_policy_name(QD_RG_POLICY_WEIGHTED_FAIR), "weighted_fair");
	assert_string_equal(qd_rg_policy_name(QD_RG_POLICY_QUERY_PRIORITY), "query_priority");
	assert_string_equal(qd_rg_policy_name((enum qd_rg_policy)9), "?");
	for (int t = 1; t < QD_RG_QT_COUNT; t++) {
		char json[256];
		snprintf(json, sizeof(json), ONE("", ",\"queryType\":\"%s\""),
			 qd_rg_query_type_name((enum qd_rg_query_type)t));
		struct qd_rg_config *cfg = load(json);
		assert_int_equal(cfg->selectors[0].query_type, t);
		qd_rg_free(cfg);
	}
	/* Trino upper-cases the policy before looking it up. */
	struct qd_rg_config *cfg = load(ONE(",\"schedulingPolicy\":\"Weighted_Fair\"", ""));
	assert_int_equal(cfg->groups[0].scheduling_policy, QD_RG_POLICY_WEIGHTED_FAIR);
	qd_rg_free(cfg);
	qd_rg_free(NULL);
}

static void
write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/qd_rg_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128], err[QD_RG_ERR_MAX];
	struct qd_rg_config *cfg = (void *)1;
	snprintf(path, sizeof(path), "%s/missing.json", dir);
	assert_int_equal(qd_rg_load_file(path, &cfg, err, sizeof(err)), -ENOENT);
	assert_null(cfg);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file"));

	snprintf(path, sizeof(path), "%s/bad.json", dir);
	const char *bad = ONE("", ",\"user\":\"(\"");
	write_file(path, bad, strlen(bad));
	assert_int_equal(qd_rg_load_file(path, &cfg, err, sizeof(err)), -EINVAL);
	char want[256];
	snprintf(want, sizeof(want), "%s: selectors[0].user: bad regular expression", path);
	if (strstr(err, want) == NULL)
		fail_msg("%s", err);

	const char *syntax = "{\n  \"rootGroups\": [\n    ,\n";
	write_file(path, syntax, strlen(syntax));
	assert_int_equal(qd_rg_load_file(path, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: line 3, column 5", path);
	if (strstr(err, want) == NULL)
		fail_msg("%s", err);

	/* QD_RG_FILE_MAX bytes load (blank padding); one more is refused. */
	const char *good = ONE("", "");
	size_t big = QD_RG_FILE_MAX;
	char *buf = malloc(big + 1);
	assert_non_null(buf);
	memset(buf, ' ', big + 1);
	memcpy(buf, good, strlen(good));
	snprintf(path, sizeof(path), "%s/big.json", dir);
	write_file(path, buf, big);
	assert_int_equal(qd_rg_load_file(path, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->groups_count, 1);
	qd_rg_free(cfg);
	write_file(path, buf, big + 1);
	assert_int_equal(qd_rg_load_file(path, &cfg, err, sizeof(err)), -EFBIG);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
	assert_string_equal(err, want);
	free(buf);

	/* A directory: read fails with EISDIR. */
	assert_int_equal(qd_rg_load_file(dir, &cfg, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, dir));

	/* A tiny error buffer is cut, not overrun; a NULL one is allowed. */
	char tiny[8];
	assert_int_equal(qd_rg_parse("{", 1, &cfg, tiny, sizeof(tiny)), -EINVAL);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_int_equal(qd_rg_parse(bad, strlen(bad), &cfg, NULL, 0), -EINVAL);

	snprintf(path, sizeof(path), "%s/bad.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/big.json", dir);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lab_example),
		cmocka_unit_test(test_trino_example),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_memory_limits),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_regex),
		cmocka_unit_test(test_tags_and_types),
		cmocka_unit_test(test_selection_order),
		cmocka_unit_test(test_query_types),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
