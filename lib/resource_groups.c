/*
 * Resource groups (see resource_groups.h): Trino's resource-groups.json read
 * into a flat array of groups (parents first) and a list of selectors, and
 * the two questions the data plane asks per submission: which query type is
 * this statement, and which leaf group does it belong to.
 *
 * Loading is boot/reload code: it may allocate, and it checks everything so
 * that a file the dispatcher would read differently from the coordinators is
 * refused with the JSON path of the field and the reason, never half applied.
 * Selection and classification run per submission on the data plane: no
 * allocation, bounded loops, the only state the immutable configuration.
 */
#include "resource_groups.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Longest JSON path of an error: 8 levels of "subGroups[255]." plus a field fits easily;
 * an unknown field name from the file is cut to fit. */
#define RG_PATH_MAX 320
/* Java's int, which Trino's limits are. */
#define RG_INT_MAX 2147483647

static const char *const qt_names[QD_RG_QT_COUNT] = {
	[QD_RG_QT_NONE] = "NONE",
	[QD_RG_QT_SELECT] = "SELECT",
	[QD_RG_QT_EXPLAIN] = "EXPLAIN",
	[QD_RG_QT_DESCRIBE] = "DESCRIBE",
	[QD_RG_QT_INSERT] = "INSERT",
	[QD_RG_QT_UPDATE] = "UPDATE",
	[QD_RG_QT_DELETE] = "DELETE",
	[QD_RG_QT_MERGE] = "MERGE",
	[QD_RG_QT_ANALYZE] = "ANALYZE",
	[QD_RG_QT_DATA_DEFINITION] = "DATA_DEFINITION",
	[QD_RG_QT_ALTER_TABLE_EXECUTE] = "ALTER_TABLE_EXECUTE",
};

#define RG_POLICY_COUNT 4
static const char *const policy_names[RG_POLICY_COUNT] = {
	[QD_RG_POLICY_FAIR] = "fair",
	[QD_RG_POLICY_WEIGHTED] = "weighted",
	[QD_RG_POLICY_WEIGHTED_FAIR] = "weighted_fair",
	[QD_RG_POLICY_QUERY_PRIORITY] = "query_priority",
};

const char *
qd_rg_query_type_name(enum qd_rg_query_type t)
{
	return (unsigned int)t < QD_RG_QT_COUNT ? qt_names[t] : "?";
}

const char *
qd_rg_policy_name(enum qd_rg_policy p)
{
	return (unsigned int)p < RG_POLICY_COUNT ? policy_names[p] : "?";
}

/* ---- loading ---------------------------------------------------------------------------- */

/* One load: the configuration being filled, where errors go, and the JSON path of the
 * value being read ("rootGroups[0].subGroups[1]"), grown and cut back as the walk goes. */
struct rg_parse {
	struct qd_rg_config *cfg;
	char *err;
	size_t err_len;
	char path[RG_PATH_MAX];
	size_t path_len;
};

/* Appends to the path; returns the previous length for path_pop. */
static size_t
path_push(struct rg_parse *p, const char *fmt, ...)
{
	size_t saved = p->path_len;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(p->path + saved, sizeof(p->path) - saved, fmt, ap);
	va_end(ap);
	if (n > 0)
		p->path_len = saved + (size_t)n < sizeof(p->path) ? saved + (size_t)n
								   : sizeof(p->path) - 1;
	return saved;
}

static void
path_pop(struct rg_parse *p, size_t saved)
{
	assert(saved <= p->path_len);
	p->path_len = saved;
	p->path[saved] = '\0';
}

/* "<path>.<field>: <reason>" (or "<path>: <reason>" without <field>); always -EINVAL. */
static int
rg_fail(struct rg_parse *p, const char *field, const char *fmt, ...)
{
	if (p->err == NULL || p->err_len == 0)
		return -EINVAL;
	int n;
	if (field == NULL)
		n = snprintf(p->err, p->err_len, "%s: ", p->path);
	else if (p->path_len == 0)
		n = snprintf(p->err, p->err_len, "%s: ", field);
	else
		n = snprintf(p->err, p->err_len, "%s.%s: ", p->path, field);
	if (n > 0 && (size_t)n < p->err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->err_len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Every key of <obj> must be in <known> (NULL terminated); a key in <unsupported> is
 * named as a Trino feature the dispatcher does not apply rather than as a typo. */
static int
check_keys(struct rg_parse *p, json_t *obj, const char *const *known,
	   const char *const *unsupported)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		bool ok = false;
		for (unsigned int i = 0; known[i] != NULL && !ok; i++)
			ok = strcmp(key, known[i]) == 0;
		if (ok)
			continue;
		for (unsigned int i = 0; unsupported != NULL && unsupported[i] != NULL; i++) {
			if (strcmp(key, unsupported[i]) == 0)
				return rg_fail(p, key, "not supported by the dispatcher (the rule "
						       "would not be applied); remove it");
		}
		return rg_fail(p, key, "unknown field");
	}
	return 0;
}

/* An optional (or, with <required>, mandatory) integer field in [<min>, 2^31-1]. */
static int
get_int(struct rg_parse *p, json_t *obj, const char *key, bool required, uint32_t min,
	uint32_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return required ? rg_fail(p, key, "is required") : 0;
	if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min)
		return rg_fail(p, key, "must be an integer >= %u", min);
	if (json_integer_value(v) > RG_INT_MAX)
		return rg_fail(p, key, "must be at most %d", RG_INT_MAX);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* Trino's DataSize units; binary multiples, case as Trino spells them. */
static const struct {
	const char *unit;
	uint64_t mult;
} size_units[] = {
	{"B", 1ull},
	{"kB", 1ull << 10},
	{"MB", 1ull << 20},
	{"GB", 1ull << 30},
	{"TB", 1ull << 40},
	{"PB", 1ull << 50},
};

/* "<digits>[.<digits>]" at *s: the integer part and the fraction as <frac>/<frac_den>
 * (at most 9 fraction digits, so the arithmetic below cannot overflow). */
static bool
parse_decimal(const char **s, uint64_t *ipart, uint64_t *frac, uint64_t *frac_den)
{
	const char *c = *s;
	unsigned int digits = 0;
	*ipart = 0;
	*frac = 0;
	*frac_den = 1;
	for (; isdigit((unsigned char)*c); c++, digits++) {
		if (digits >= 18)
			return false; /* beyond any size we could hold */
		*ipart = *ipart * 10 + (uint64_t)(*c - '0');
	}
	if (digits == 0)
		return false;
	if (*c == '.') {
		c++;
		unsigned int fd = 0;
		for (; isdigit((unsigned char)*c); c++, fd++) {
			if (fd >= 9)
				return false;
			*frac = *frac * 10 + (uint64_t)(*c - '0');
			*frac_den *= 10;
		}
		if (fd == 0)
			return false;
	}
	*s = c;
	return true;
}

/* softMemoryLimit: an absolute size ("10GB", "1.5TB", "100B") into <bytes>, or a share of
 * the cluster's memory ("80%", "12.5%") into <pct> rounded up to a whole percent. */
static bool
parse_memory_limit(const char *s, uint64_t *bytes, uint32_t *pct)
{
	uint64_t ip, frac, den;
	while (*s == ' ')
		s++;
	if (!parse_decimal(&s, &ip, &frac, &den))
		return false;
	while (*s == ' ')
		s++;
	if (s[0] == '%' && s[1] == '\0') {
		if ((ip == 0 && frac == 0) || ip > 100 || (ip == 100 && frac > 0))
			return false;
		*pct = (uint32_t)ip + (frac > 0 ? 1 : 0);
		*bytes = UINT64_MAX;
		return true;
	}
	size_t ulen = strlen(s);
	while (ulen > 0 && s[ulen - 1] == ' ')
		ulen--;
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		uint64_t m = size_units[i].mult;
		if (strlen(size_units[i].unit) != ulen || strncmp(s, size_units[i].unit, ulen) != 0)
			continue;
		if (ip > (UINT64_MAX - 1) / m)
			return false;
		uint64_t b = ip * m;
		/* frac < den <= 1e9 and m <= 2^50: the product needs up to 80 bits. Rounded
		 * down to a byte. */
		uint64_t extra = (uint64_t)((unsigned __int128)frac * m / den);
		if (b > UINT64_MAX - 1 - extra)
			return false;
		*bytes = b + extra;
		*pct = 0;
		return true;
	}
	return false;
}

static bool
name_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* The group's "name": one segment, no template, unique among its siblings. Fills
 * g->name with the full dotted name. */
static int
group_name(struct rg_parse *p, json_t *obj, int parent, struct qd_rg_group *g)
{
	const struct qd_rg_config *cfg = p->cfg;
	json_t *v = json_object_get(obj, "name");
	if (v == NULL)
		return rg_fail(p, "name", "is required");
	if (!json_is_string(v))
		return rg_fail(p, "name", "must be a string");
	const char *name = json_string_value(v);
	if (strstr(name, "${") != NULL)
		return rg_fail(p, "name", "\"%s\": templated group names (${USER}, ${SOURCE}, ...) "
				  "are not supported by the dispatcher yet", name);
	size_t len = strlen(name);
	if (len == 0)
		return rg_fail(p, "name", "must not be empty");
	for (size_t i = 0; i < len; i++) {
		if (!name_char_ok(name[i]))
			return rg_fail(p, "name", "\"%s\": only letters, digits, '_' and '-' "
					  "are allowed", name);
	}
	int n;
	if (parent < 0)
		n = snprintf(g->name, sizeof(g->name), "%s", name);
	else
		n = snprintf(g->name, sizeof(g->name), "%s.%s", cfg->groups[parent].name, name);
	if (n < 0 || (size_t)n >= sizeof(g->name))
		return rg_fail(p, "name", "full name longer than %d bytes", QD_RG_NAME_MAX - 1);
	for (unsigned int i = 0; i < cfg->groups_count; i++) {
		if (cfg->groups[i].parent == parent && strcmp(cfg->groups[i].name, g->name) == 0)
			return rg_fail(p, "name", "duplicate group \"%s\"", g->name);
	}
	return 0;
}

/* The limits and scheduling fields of one group. */
static int
group_fields(struct rg_parse *p, json_t *obj, struct qd_rg_group *g)
{
	int rc;
	bool has_hard = json_object_get(obj, "hardConcurrencyLimit") != NULL;
	bool has_running = json_object_get(obj, "maxRunning") != NULL;
	if (has_hard && has_running)
		return rg_fail(p, "maxRunning", "give hardConcurrencyLimit or its old name "
				  "maxRunning, not both");
	if ((rc = get_int(p, obj, has_running ? "maxRunning" : "hardConcurrencyLimit", true, 0,
			  &g->hard_concurrency_limit)) != 0)
		return rc;
	if ((rc = get_int(p, obj, "maxQueued", true, 0, &g->max_queued)) != 0)
		return rc;
	uint32_t ignored;
	if ((rc = get_int(p, obj, "softConcurrencyLimit", false, 0, &ignored)) != 0)
		return rc;
	g->scheduling_weight = 1;
	if ((rc = get_int(p, obj, "schedulingWeight", false, 1, &g->scheduling_weight)) != 0)
		return rc;

	json_t *v = json_object_get(obj, "softMemoryLimit");
	if (v == NULL)
		return rg_fail(p, "softMemoryLimit", "is required");
	if (!json_is_string(v) || !parse_memory_limit(json_string_value(v),
						      &g->soft_memory_limit_bytes,
						      &g->soft_memory_limit_pct))
		return rg_fail(p, "softMemoryLimit", "must be a data size like \"10GB\" (units B, "
			       "kB, MB, GB, TB, PB) or a percentage from 1%% to 100%% like \"80%%\"");

	g->scheduling_policy = QD_RG_POLICY_FAIR;
	v = json_object_get(obj, "schedulingPolicy");
	if (v != NULL) {
		unsigned int i = 0;
		/* Trino upper-cases the value before looking it up: "FAIR" is fair. */
		while (json_is_string(v) && i < RG_POLICY_COUNT &&
		       strcasecmp(json_string_value(v), policy_names[i]) != 0)
			i++;
		if (!json_is_string(v) || i == RG_POLICY_COUNT)
			return rg_fail(p, "schedulingPolicy", "must be one of fair, weighted, "
				       "weighted_fair, query_priority");
		g->scheduling_policy = (enum qd_rg_policy)i;
	}
	/* Accepted so that the coordinators' file loads unchanged; the coordinators
	 * enforce CPU limits, the dispatcher does not see CPU time. */
	static const char *const str_fields[] = {"softCpuLimit", "hardCpuLimit"};
	for (unsigned int i = 0; i < 2; i++) {
		v = json_object_get(obj, str_fields[i]);
		if (v != NULL && !json_is_string(v))
			return rg_fail(p, str_fields[i], "must be a duration like \"1h\"");
	}
	v = json_object_get(obj, "jmxExport");
	if (v != NULL && !json_is_boolean(v))
		return rg_fail(p, "jmxExport", "must be true or false");
	return 0;
}

static const char *const group_keys[] = {
	"name", "hardConcurrencyLimit", "maxRunning", "maxQueued", "softMemoryLimit",
	"schedulingPolicy", "schedulingWeight", "subGroups", "softConcurrencyLimit",
	"softCpuLimit", "hardCpuLimit", "jmxExport", NULL,
};

/* One group at p->path and, depth first, its subgroups: appended parents first. Recursion
 * is bounded by QD_RG_DEPTH_MAX. */
static int
parse_group(struct rg_parse *p, json_t *obj, int parent, unsigned int depth)
{
	struct qd_rg_config *cfg = p->cfg;
	int rc;
	if (!json_is_object(obj))
		return rg_fail(p, NULL, "must be an object");
	if (depth >= QD_RG_DEPTH_MAX)
		return rg_fail(p, NULL, "groups nested deeper than %d levels", QD_RG_DEPTH_MAX);
	if (cfg->groups_count >= QD_RG_GROUPS_MAX)
		return rg_fail(p, NULL, "more than %d groups", QD_RG_GROUPS_MAX);
	if ((rc = check_keys(p, obj, group_keys, NULL)) != 0)
		return rc;
	int idx = (int)cfg->groups_count;
	struct qd_rg_group *g = &cfg->groups[idx];
	memset(g, 0, sizeof(*g));
	if ((rc = group_name(p, obj, parent, g)) != 0)
		return rc;
	if ((rc = group_fields(p, obj, g)) != 0)
		return rc;
	g->parent = parent;
	g->depth = (uint8_t)depth;
	g->leaf = true;
	cfg->groups_count++; /* before the children: parents first */

	json_t *subs = json_object_get(obj, "subGroups");
	if (subs == NULL)
		return 0;
	if (!json_is_array(subs))
		return rg_fail(p, "subGroups", "must be an array");
	g->leaf = json_array_size(subs) == 0;
	size_t i;
	json_t *sub;
	json_array_foreach(subs, i, sub) {
		size_t saved = path_push(p, ".subGroups[%zu]", i);
		rc = parse_group(p, sub, idx, depth + 1);
		if (rc != 0)
			return rc;
		path_pop(p, saved);
	}
	return 0;
}

int
qd_rg_find_group(const struct qd_rg_config *cfg, const char *name)
{
	assert(cfg != NULL && name != NULL);
	for (unsigned int i = 0; i < cfg->groups_count; i++) {
		if (strcmp(cfg->groups[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* Java and POSIX extended expressions agree on most of what people write (".*", "a|b",
 * "[a-z]+", "x{2,3}"), but some Java escapes compile in POSIX with another meaning
 * ("\d" is a literal 'd' in glibc; "[\-]" holds a backslash). Those would silently
 * select differently from the coordinators, so they are refused with a hint. */
static int
check_java_regex(struct rg_parse *p, const char *field, const char *re)
{
	bool in_set = false;
	size_t set_start = 0;
	size_t len = strlen(re);
	for (size_t i = 0; i < len; i++) {
		char c = re[i];
		if (in_set) {
			if (c == '\\')
				return rg_fail(p, field, "a backslash inside [...] is a literal in "
					       "POSIX regular expressions but an escape in Java; "
					       "rewrite the set without it");
			if (c == '[' && i + 1 < len && (re[i + 1] == ':' || re[i + 1] == '.' ||
							 re[i + 1] == '=')) {
				const char *end = strstr(re + i + 2, (char[]){re[i + 1], ']', 0});
				if (end != NULL)
					i = (size_t)(end - re) + 1;
			} else if (c == ']' && i > set_start) {
				in_set = false;
			}
			continue;
		}
		if (c == '[') {
			in_set = true;
			set_start = i + 1;
			if (set_start < len && re[set_start] == '^')
				set_start++;
			continue;
		}
		if (c != '\\' || i + 1 >= len)
			continue;
		char e = re[++i];
		if (isalnum((unsigned char)e) && strchr("wWsSbB", e) == NULL)
			return rg_fail(p, field, "\"\\%c\" is Java regular expression syntax that "
				       "POSIX extended expressions do not share (write \\d as "
				       "[0-9])", e);
	}
	return 0;
}

/* <pattern> compiled to match the whole string (Java's matches()), into *out. */
static int
compile_regex(struct rg_parse *p, const char *field, const char *pattern, void **out)
{
	size_t len = strlen(pattern);
	if (len > QD_RG_REGEX_MAX)
		return rg_fail(p, field, "longer than %d bytes", QD_RG_REGEX_MAX);
	int rc = check_java_regex(p, field, pattern);
	if (rc != 0)
		return rc;
	/* The commonest pattern matches anything: no regex, so it also matches values
	 * longer than QD_RG_MATCH_MAX. */
	if (strcmp(pattern, ".*") == 0) {
		*out = NULL;
		return 0;
	}
	char wrapped[QD_RG_REGEX_MAX + 8];
	snprintf(wrapped, sizeof(wrapped), "^(%s)$", pattern);
	regex_t *re = malloc(sizeof(*re));
	if (re == NULL)
		return rg_fail(p, field, "out of memory");
	int err = regcomp(re, wrapped, REG_EXTENDED | REG_NOSUB);
	if (err != 0) {
		char msg[128];
		regerror(err, re, msg, sizeof(msg));
		free(re);
		return rg_fail(p, field, "bad regular expression: %s", msg);
	}
	*out = re;
	return 0;
}

static int
selector_tags(struct rg_parse *p, json_t *tags, struct qd_rg_selector *s)
{
	if (!json_is_array(tags))
		return rg_fail(p, "clientTags", "must be an array of strings");
	if (json_array_size(tags) > QD_RG_TAGS_MAX)
		return rg_fail(p, "clientTags", "more than %d tags", QD_RG_TAGS_MAX);
	size_t i;
	json_t *t;
	json_array_foreach(tags, i, t) {
		const char *v = json_string_value(t);
		if (v == NULL)
			return rg_fail(p, "clientTags", "must be an array of strings");
		size_t len = strlen(v);
		/* The client sends its tags comma separated and trimmed: such a tag would
		 * never be among them. */
		if (len == 0 || len >= QD_RG_TAG_MAX || strchr(v, ',') != NULL || v[0] == ' ' ||
		    v[len - 1] == ' ')
			return rg_fail(p, "clientTags", "\"%s\": a tag must be 1 to %d bytes "
				       "without commas or blanks at either end", v,
				       QD_RG_TAG_MAX - 1);
		memcpy(s->tags[i], v, len + 1);
	}
	s->tags_count = (unsigned int)json_array_size(tags);
	return 0;
}

static const char *const selector_keys[] = {
	"group", "user", "source", "clientTags", "queryType", NULL,
};
/* Trino selector fields the dispatcher cannot evaluate: it does not know a user's
 * groups, the original or authenticated user, or resource estimates at selection. */
static const char *const selector_unsupported[] = {
	"userGroup", "originalUser", "authenticatedUser", "selectorResourceEstimate", NULL,
};

static int
selector_group(struct rg_parse *p, json_t *obj, struct qd_rg_selector *s)
{
	json_t *v = json_object_get(obj, "group");
	if (v == NULL)
		return rg_fail(p, "group", "is required");
	const char *name = json_string_value(v);
	if (name == NULL)
		return rg_fail(p, "group", "must be a string");
	if (strstr(name, "${") != NULL)
		return rg_fail(p, "group", "\"%s\": templated group names (${USER}, ${SOURCE}, "
			       "...) are not supported by the dispatcher yet", name);
	s->group = qd_rg_find_group(p->cfg, name);
	if (s->group < 0)
		return rg_fail(p, "group", "no group named \"%s\"", name);
	if (!p->cfg->groups[s->group].leaf)
		return rg_fail(p, "group", "\"%s\" has subgroups; a selector must name a leaf "
			       "group", name);
	return 0;
}

static int
parse_selector(struct rg_parse *p, json_t *obj, struct qd_rg_selector *s)
{
	int rc;
	if (!json_is_object(obj))
		return rg_fail(p, NULL, "must be an object");
	if ((rc = check_keys(p, obj, selector_keys, selector_unsupported)) != 0)
		return rc;
	if ((rc = selector_group(p, obj, s)) != 0)
		return rc;
	static const char *const re_fields[2] = {"user", "source"};
	void **re_out[2] = {&s->user_re, &s->source_re};
	for (unsigned int i = 0; i < 2; i++) {
		json_t *v = json_object_get(obj, re_fields[i]);
		if (v == NULL)
			continue;
		if (!json_is_string(v))
			return rg_fail(p, re_fields[i], "must be a string (a regular expression)");
		if ((rc = compile_regex(p, re_fields[i], json_string_value(v), re_out[i])) != 0)
			return rc;
	}
	json_t *v = json_object_get(obj, "clientTags");
	if (v != NULL && (rc = selector_tags(p, v, s)) != 0)
		return rc;
	v = json_object_get(obj, "queryType");
	if (v != NULL) {
		/* Trino compares query types ignoring case. */
		unsigned int t = QD_RG_QT_NONE + 1;
		while (json_is_string(v) && t < QD_RG_QT_COUNT &&
		       strcasecmp(json_string_value(v), qt_names[t]) != 0)
			t++;
		if (!json_is_string(v) || t == QD_RG_QT_COUNT)
			return rg_fail(p, "queryType", "must be one of SELECT, EXPLAIN, DESCRIBE, "
				       "INSERT, UPDATE, DELETE, MERGE, ANALYZE, DATA_DEFINITION, "
				       "ALTER_TABLE_EXECUTE");
		s->query_type = (enum qd_rg_query_type)t;
		p->cfg->uses_query_type = true;
	}
	return 0;
}

static const char *const top_keys[] = {"rootGroups", "selectors", "cpuQuotaPeriod", NULL};

static int
parse_top(struct rg_parse *p, json_t *root)
{
	struct qd_rg_config *cfg = p->cfg;
	int rc;
	if (!json_is_object(root))
		return rg_fail(p, NULL, "must be a JSON object with rootGroups and selectors");
	if ((rc = check_keys(p, root, top_keys, NULL)) != 0)
		return rc;
	json_t *v = json_object_get(root, "cpuQuotaPeriod");
	if (v != NULL && !json_is_string(v))
		return rg_fail(p, "cpuQuotaPeriod", "must be a duration like \"1h\"");
	json_t *groups = json_object_get(root, "rootGroups");
	if (!json_is_array(groups) || json_array_size(groups) == 0)
		return rg_fail(p, "rootGroups", "must be a non-empty array of groups");
	json_t *sels = json_object_get(root, "selectors");
	/* No selector would refuse every query: surely a mistake, not a policy. */
	if (!json_is_array(sels) || json_array_size(sels) == 0)
		return rg_fail(p, "selectors", "must be a non-empty array of selectors");
	if (json_array_size(sels) > QD_RG_SELECTORS_MAX)
		return rg_fail(p, "selectors", "more than %d selectors", QD_RG_SELECTORS_MAX);

	size_t i;
	json_t *item;
	json_array_foreach(groups, i, item) {
		size_t saved = path_push(p, "rootGroups[%zu]", i);
		if ((rc = parse_group(p, item, -1, 0)) != 0)
			return rc;
		path_pop(p, saved);
	}
	json_array_foreach(sels, i, item) {
		size_t saved = path_push(p, "selectors[%zu]", i);
		/* Counted before parsing so that qd_rg_free releases a half-built selector. */
		struct qd_rg_selector *s = &cfg->selectors[cfg->selectors_count++];
		memset(s, 0, sizeof(*s));
		if ((rc = parse_selector(p, item, s)) != 0)
			return rc;
		path_pop(p, saved);
	}
	return 0;
}

int
qd_rg_parse(const char *json, size_t len, struct qd_rg_config **out, char *err, size_t err_len)
{
	assert(out != NULL);
	assert(json != NULL || len == 0);
	*out = NULL;
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	json_error_t jerr;
	/* Duplicate keys are refused: Trino's reader would keep one of them silently. */
	json_t *root = json_loadb(json != NULL ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "line %d, column %d: %s", jerr.line, jerr.column,
				 jerr.text);
		return -EINVAL;
	}
	struct qd_rg_config *cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL) {
		json_decref(root);
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	struct rg_parse p = {.cfg = cfg, .err = err, .err_len = err_len};
	int rc = parse_top(&p, root);
	json_decref(root);
	if (rc != 0) {
		qd_rg_free(cfg);
		return rc;
	}
	assert(cfg->groups_count > 0 && cfg->groups_count <= QD_RG_GROUPS_MAX);
	assert(cfg->selectors_count > 0 && cfg->selectors_count <= QD_RG_SELECTORS_MAX);
	*out = cfg;
	return 0;
}

/* Up to QD_RG_FILE_MAX + 1 bytes of <fd> into <buf>; the count, or -errno. */
static ssize_t
read_bounded(int fd, char *buf)
{
	size_t got = 0;
	/* Every round reads at least one byte or ends; EINTR retries are capped too. */
	for (unsigned int round = 0; round < QD_RG_FILE_MAX + 100 && got <= QD_RG_FILE_MAX;
	     round++) {
		ssize_t n = read(fd, buf + got, QD_RG_FILE_MAX + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int
qd_rg_load_file(const char *path, struct qd_rg_config **out, char *err, size_t err_len)
{
	assert(path != NULL && out != NULL);
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "%s: %s", path, strerror(e));
		return -e;
	}
	char *buf = malloc(QD_RG_FILE_MAX + 1);
	if (buf == NULL) {
		close(fd);
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	ssize_t n = read_bounded(fd, buf);
	close(fd);
	int rc;
	if (n < 0) {
		rc = (int)n;
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "%s: %s", path, strerror((int)-n));
	} else if ((size_t)n > QD_RG_FILE_MAX) {
		rc = -EFBIG;
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "%s: larger than %u bytes", path, QD_RG_FILE_MAX);
	} else {
		char msg[QD_RG_ERR_MAX];
		rc = qd_rg_parse(buf, (size_t)n, out, msg, sizeof(msg));
		if (rc != 0 && err != NULL && err_len > 0)
			snprintf(err, err_len, "%s: %s", path, msg);
	}
	free(buf);
	return rc;
}

void
qd_rg_free(struct qd_rg_config *cfg)
{
	if (cfg == NULL)
		return;
	assert(cfg->selectors_count <= QD_RG_SELECTORS_MAX);
	for (unsigned int i = 0; i < cfg->selectors_count; i++) {
		void *res[2] = {cfg->selectors[i].user_re, cfg->selectors[i].source_re};
		for (unsigned int j = 0; j < 2; j++) {
			if (res[j] != NULL) {
				regfree(res[j]);
				free(res[j]);
			}
		}
	}
	free(cfg);
}

/* ---- selection (data plane) ------------------------------------------------------------- */

/* A NUL-terminated copy of <s> in <buf> for regexec. False when it does not fit or holds a
 * NUL (regexec would see a prefix and could match what the whole value does not). An
 * absent value is "" as in Trino, where the source defaults to empty. */
static bool
copy_value(char buf[QD_RG_MATCH_MAX], const char *s, size_t len)
{
	if (s == NULL)
		len = 0;
	if (len >= QD_RG_MATCH_MAX || (len > 0 && memchr(s, '\0', len) != NULL))
		return false;
	if (len > 0)
		memcpy(buf, s, len);
	buf[len] = '\0';
	return true;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* <tag> is one of the comma-separated, blank-trimmed elements of <tags>. */
static bool
tag_present(const char *tags, size_t len, const char *tag)
{
	size_t tlen = strlen(tag);
	size_t end;
	for (size_t start = 0; start < len; start = end + 1) {
		const char *comma = memchr(tags + start, ',', len - start);
		end = comma != NULL ? (size_t)(comma - tags) : len;
		size_t a = start, b = end;
		while (a < b && is_blank(tags[a]))
			a++;
		while (b > a && is_blank(tags[b - 1]))
			b--;
		if (b - a == tlen && memcmp(tags + a, tag, tlen) == 0)
			return true;
	}
	return false;
}

static bool
selector_matches(const struct qd_rg_selector *s, const struct qd_rg_query *q, const char *user,
		 bool user_ok, const char *source, bool source_ok)
{
	if (s->query_type != QD_RG_QT_NONE && s->query_type != q->query_type)
		return false;
	for (unsigned int t = 0; t < s->tags_count; t++) {
		if (q->client_tags == NULL ||
		    !tag_present(q->client_tags, q->client_tags_len, s->tags[t]))
			return false;
	}
	if (s->user_re != NULL && (!user_ok || regexec(s->user_re, user, 0, NULL, 0) != 0))
		return false;
	if (s->source_re != NULL &&
	    (!source_ok || regexec(s->source_re, source, 0, NULL, 0) != 0))
		return false;
	return true;
}

int
qd_rg_select(const struct qd_rg_config *cfg, const struct qd_rg_query *q)
{
	assert(cfg != NULL && q != NULL);
	assert(cfg->selectors_count <= QD_RG_SELECTORS_MAX);
	char user[QD_RG_MATCH_MAX], source[QD_RG_MATCH_MAX];
	bool user_ok = copy_value(user, q->user, q->user_len);
	bool source_ok = copy_value(source, q->source, q->source_len);
	for (unsigned int i = 0; i < cfg->selectors_count; i++) {
		const struct qd_rg_selector *s = &cfg->selectors[i];
		if (selector_matches(s, q, user, user_ok, source, source_ok)) {
			assert(s->group >= 0 && (unsigned int)s->group < cfg->groups_count);
			return s->group;
		}
	}
	return -1;
}

/* ---- query type (data plane) ------------------------------------------------------------ */

/* A cursor over the statement text. Every step advances pos or stops at len. */
struct sql_lex {
	const char *s;
	size_t len;
	size_t pos;
};

#define SQL_WORD_MAX 16 /* longer than any keyword we look for */

/* Past blanks, "-- ..." to the end of the line and "/ * ... * /" (not nested, as in
 * Trino); an unterminated comment runs to the end. */
static void
lex_skip(struct sql_lex *l)
{
	while (l->pos < l->len) {
		const char *c = l->s + l->pos;
		size_t left = l->len - l->pos;
		if (isspace((unsigned char)c[0])) {
			l->pos++;
		} else if (left >= 2 && c[0] == '-' && c[1] == '-') {
			const char *nl = memchr(c, '\n', left);
			l->pos = nl != NULL ? (size_t)(nl - l->s) + 1 : l->len;
		} else if (left >= 2 && c[0] == '/' && c[1] == '*') {
			const char *end = memmem(c + 2, left - 2, "*/", 2);
			l->pos = end != NULL ? (size_t)(end - l->s) + 2 : l->len;
		} else {
			return;
		}
	}
}

/* The next identifier-like word, upper-cased into <buf> (cut at SQL_WORD_MAX - 1, so a
 * longer word never equals a keyword); "" when the next token is not a word. */
static void
lex_word(struct sql_lex *l, char buf[SQL_WORD_MAX])
{
	lex_skip(l);
	size_t n = 0;
	while (l->pos < l->len) {
		char c = l->s[l->pos];
		if (!isalnum((unsigned char)c) && c != '_')
			break;
		if (n < SQL_WORD_MAX - 1)
			buf[n++] = (char)toupper((unsigned char)c);
		else
			buf[0] = '#'; /* too long: matches nothing */
		l->pos++;
	}
	buf[n] = '\0';
}

/* Past a '…' string or "…" identifier starting at pos (doubled quotes escape). */
static void
lex_quoted(struct sql_lex *l)
{
	char q = l->s[l->pos];
	for (l->pos++; l->pos < l->len; l->pos++) {
		if (l->s[l->pos] != q)
			continue;
		if (l->pos + 1 < l->len && l->s[l->pos + 1] == q)
			l->pos++;
		else
			break;
	}
	if (l->pos < l->len)
		l->pos++;
}

/* CREATE [OR REPLACE] TABLE ... AS <query> is INSERT in Trino (CreateTableAsSelect); any
 * other CREATE is DATA_DEFINITION. The AS of CTAS is the only AS outside parentheses,
 * strings and quoted identifiers in a CREATE TABLE. */
static enum qd_rg_query_type
create_type(struct sql_lex *l)
{
	char w[SQL_WORD_MAX];
	lex_word(l, w);
	if (strcmp(w, "OR") == 0) {
		lex_word(l, w); /* REPLACE */
		lex_word(l, w);
	}
	if (strcmp(w, "TABLE") != 0)
		return QD_RG_QT_DATA_DEFINITION;
	int depth = 0;
	while (l->pos < l->len) {
		lex_skip(l);
		if (l->pos >= l->len)
			break;
		char c = l->s[l->pos];
		if (c == '\'' || c == '"') {
			lex_quoted(l);
		} else if (isalnum((unsigned char)c) || c == '_') {
			lex_word(l, w);
			if (depth == 0 && strcmp(w, "AS") == 0)
				return QD_RG_QT_INSERT;
		} else {
			depth += c == '(' ? 1 : c == ')' ? -1 : 0;
			l->pos++;
		}
	}
	return QD_RG_QT_DATA_DEFINITION;
}

/* ALTER TABLE <name> EXECUTE <procedure> is ALTER_TABLE_EXECUTE; every other ALTER is
 * DATA_DEFINITION. <name> is up to three dotted parts, each a word or "quoted". */
static enum qd_rg_query_type
alter_type(struct sql_lex *l)
{
	char w[SQL_WORD_MAX];
	lex_word(l, w);
	if (strcmp(w, "TABLE") != 0)
		return QD_RG_QT_DATA_DEFINITION;
	for (unsigned int part = 0; part < 3; part++) {
		lex_skip(l);
		if (l->pos < l->len && l->s[l->pos] == '"')
			lex_quoted(l);
		else
			lex_word(l, w);
		lex_skip(l);
		if (l->pos >= l->len || l->s[l->pos] != '.')
			break;
		l->pos++;
	}
	lex_word(l, w);
	return strcmp(w, "EXECUTE") == 0 ? QD_RG_QT_ALTER_TABLE_EXECUTE
					  : QD_RG_QT_DATA_DEFINITION;
}

/* First keywords with a fixed type. EXECUTE is absent on purpose: its type is that of
 * the prepared statement, which the dispatcher does not know. */
static const struct {
	const char *word;
	enum qd_rg_query_type type;
} first_words[] = {
	{"SELECT", QD_RG_QT_SELECT},	      {"WITH", QD_RG_QT_SELECT},
	{"VALUES", QD_RG_QT_SELECT},	      {"TABLE", QD_RG_QT_SELECT},
	{"SHOW", QD_RG_QT_DESCRIBE},	      {"DESCRIBE", QD_RG_QT_DESCRIBE},
	{"DESC", QD_RG_QT_DESCRIBE},	      {"INSERT", QD_RG_QT_INSERT},
	{"REFRESH", QD_RG_QT_INSERT},	      {"UPDATE", QD_RG_QT_UPDATE},
	{"DELETE", QD_RG_QT_DELETE},	      {"MERGE", QD_RG_QT_MERGE},
	{"ANALYZE", QD_RG_QT_ANALYZE},	      {"DROP", QD_RG_QT_DATA_DEFINITION},
	{"GRANT", QD_RG_QT_DATA_DEFINITION},  {"REVOKE", QD_RG_QT_DATA_DEFINITION},
	{"DENY", QD_RG_QT_DATA_DEFINITION},   {"COMMENT", QD_RG_QT_DATA_DEFINITION},
	{"CALL", QD_RG_QT_DATA_DEFINITION},   {"TRUNCATE", QD_RG_QT_DATA_DEFINITION},
	{"USE", QD_RG_QT_DATA_DEFINITION},    {"SET", QD_RG_QT_DATA_DEFINITION},
	{"RESET", QD_RG_QT_DATA_DEFINITION},  {"START", QD_RG_QT_DATA_DEFINITION},
	{"COMMIT", QD_RG_QT_DATA_DEFINITION}, {"ROLLBACK", QD_RG_QT_DATA_DEFINITION},
	{"PREPARE", QD_RG_QT_DATA_DEFINITION}, {"DEALLOCATE", QD_RG_QT_DATA_DEFINITION},
};

/* EXPLAIN ANALYZE may wrap EXPLAIN ANALYZE; more than this many wrappers is not SQL
 * anyone sends, and the answer is then NONE. */
#define SQL_WRAP_MAX 4

/* The type of the statement at the cursor; recursion only through EXPLAIN ANALYZE, at
 * most <wraps_left> deep. */
static enum qd_rg_query_type
statement_type(struct sql_lex *l, unsigned int wraps_left)
{
	char w[SQL_WORD_MAX];
	lex_skip(l);
	if (l->pos < l->len && l->s[l->pos] == '(')
		return QD_RG_QT_SELECT; /* "(SELECT ...) UNION ..." */
	lex_word(l, w);
	for (size_t i = 0; i < sizeof(first_words) / sizeof(first_words[0]); i++) {
		if (strcmp(w, first_words[i].word) == 0)
			return first_words[i].type;
	}
	if (strcmp(w, "CREATE") == 0)
		return create_type(l);
	if (strcmp(w, "ALTER") == 0)
		return alter_type(l);
	if (strcmp(w, "EXPLAIN") != 0)
		return QD_RG_QT_NONE;
	/* Trino gives EXPLAIN ANALYZE [VERBOSE] <stmt> the type of <stmt>, and plain EXPLAIN
	 * (with or without options) EXPLAIN. */
	lex_word(l, w);
	if (strcmp(w, "ANALYZE") != 0)
		return QD_RG_QT_EXPLAIN;
	size_t after_analyze = l->pos;
	lex_word(l, w);
	if (strcmp(w, "VERBOSE") != 0)
		l->pos = after_analyze;
	if (wraps_left == 0)
		return QD_RG_QT_NONE;
	enum qd_rg_query_type t = statement_type(l, wraps_left - 1);
	/* Nothing known after it: "EXPLAIN ANALYZE t" is the plan of "ANALYZE t". */
	return t != QD_RG_QT_NONE ? t : QD_RG_QT_EXPLAIN;
}

enum qd_rg_query_type
qd_rg_query_type_of(const char *sql, size_t len)
{
	if (sql == NULL)
		return QD_RG_QT_NONE;
	struct sql_lex l = {.s = sql, .len = len, .pos = 0};
	return statement_type(&l, SQL_WRAP_MAX);
}
