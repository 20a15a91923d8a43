/*
 * Resource groups: the Trino resource-groups.json file, as far as a dispatcher
 * needs it, parsed into a flat, immutable tree.
 *
 * The dispatcher reads the same file the coordinators read (Trino's
 * "file" resource group manager), so an operator writes the limits once. What
 * matters here: groups and subGroups with hardConcurrencyLimit, maxQueued,
 * softMemoryLimit, schedulingPolicy and schedulingWeight, and the selectors
 * (user, source, clientTags, queryType; user and source are regular
 * expressions). Everything is checked at load: a bad file is refused with a
 * message naming the field (JSON path) and the reason, and nothing of it is
 * used. The result is plain memory, freed with qd_rg_free(); the admission
 * layer builds its counters from it and swaps whole configurations on reload.
 *
 * Groups are stored parents first (a group's index is larger than its
 * parent's), so walking from a leaf to the root is a loop over parent
 * indexes, and a group's full name is the dotted path ("global.adhoc.etl").
 */
#ifndef QD_RESOURCE_GROUPS_H
#define QD_RESOURCE_GROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QD_RG_GROUPS_MAX 256
#define QD_RG_DEPTH_MAX 8      /* levels of groups: depth 0 (root) .. QD_RG_DEPTH_MAX - 1 */
#define QD_RG_SELECTORS_MAX 256
#define QD_RG_NAME_MAX 128     /* full dotted name, NUL included */
#define QD_RG_TAGS_MAX 8       /* clientTags of one selector */
#define QD_RG_TAG_MAX 64
#define QD_RG_ERR_MAX 512
#define QD_RG_FILE_MAX (1u << 20) /* bytes of resource-groups.json */
#define QD_RG_REGEX_MAX 1024   /* bytes of one user/source pattern in the file */
#define QD_RG_MATCH_MAX 256    /* user/source bytes (NUL included) a pattern is matched against:
				* qd_rg_select copies them to the stack; a longer value never
				* matches a pattern (it still matches selectors without one) */

enum qd_rg_policy {
	QD_RG_POLICY_FAIR = 0,      /* "fair" (default): subgroups take turns */
	QD_RG_POLICY_WEIGHTED,      /* "weighted": random, in proportion to schedulingWeight */
	QD_RG_POLICY_WEIGHTED_FAIR, /* "weighted_fair": lowest running / schedulingWeight first */
	QD_RG_POLICY_QUERY_PRIORITY /* "query_priority": accepted, scheduled as fair */
};

/* Query types of Trino's selectors (queryType). */
enum qd_rg_query_type {
	QD_RG_QT_NONE = 0, /* unknown: only selectors without queryType match */
	QD_RG_QT_SELECT,
	QD_RG_QT_EXPLAIN,
	QD_RG_QT_DESCRIBE,
	QD_RG_QT_INSERT,
	QD_RG_QT_UPDATE,
	QD_RG_QT_DELETE,
	QD_RG_QT_MERGE,
	QD_RG_QT_ANALYZE,
	QD_RG_QT_DATA_DEFINITION,
	QD_RG_QT_ALTER_TABLE_EXECUTE,
	QD_RG_QT_COUNT
};

struct qd_rg_group {
	char name[QD_RG_NAME_MAX]; /* full dotted name: "global.adhoc" */
	int parent;                /* index into groups[], -1 for a root */
	uint8_t depth;             /* 0 for a root */
	bool leaf;                 /* no subGroups: queries are admitted only into leaves */
	uint32_t hard_concurrency_limit;
	uint32_t max_queued;
	uint64_t soft_memory_limit_bytes; /* UINT64_MAX: none; an absolute size in the file */
	uint32_t soft_memory_limit_pct;   /* "NN%" in the file: 1..100, 0 when absolute/none;
					   * the dispatcher does not know cluster memory and
					   * does not enforce percentages (docs) */
	enum qd_rg_policy scheduling_policy;
	uint32_t scheduling_weight;       /* default 1 */
};

struct qd_rg_selector {
	int group;                        /* leaf group index */
	void *user_re;                    /* compiled pattern (regex_t), NULL = any */
	void *source_re;
	char tags[QD_RG_TAGS_MAX][QD_RG_TAG_MAX]; /* every one must be among the client's tags */
	unsigned int tags_count;
	enum qd_rg_query_type query_type; /* QD_RG_QT_NONE = any */
};

struct qd_rg_config {
	struct qd_rg_group groups[QD_RG_GROUPS_MAX];
	unsigned int groups_count;
	struct qd_rg_selector selectors[QD_RG_SELECTORS_MAX];
	unsigned int selectors_count;
	bool uses_query_type; /* some selector matches on queryType */
};

/* What a submission is matched on. Strings need not be NUL terminated; NULL/0 = absent. */
struct qd_rg_query {
	const char *user;
	size_t user_len;
	const char *source;
	size_t source_len;
	const char *client_tags; /* the raw X-Trino-Client-Tags value: comma separated */
	size_t client_tags_len;
	enum qd_rg_query_type query_type;
};

/* Parse <len> bytes of JSON. 0 and *out (free with qd_rg_free), or -EINVAL with a message
 * like "rootGroups[0].subGroups[1].hardConcurrencyLimit: must be an integer >= 0" in <err>. */
int qd_rg_parse(const char *json, size_t len, struct qd_rg_config **out, char *err,
		size_t err_len);
/* Read and parse a file; errors name the file. -errno for I/O errors. */
int qd_rg_load_file(const char *path, struct qd_rg_config **out, char *err, size_t err_len);
void qd_rg_free(struct qd_rg_config *cfg);

/* The index of the group with the full dotted name <name>, or -1. */
int qd_rg_find_group(const struct qd_rg_config *cfg, const char *name);

/* The first selector (in file order) that matches: its leaf group index, or -1 (Trino
 * refuses such a query: "Query did not match any selection rule"). Thread safe. */
int qd_rg_select(const struct qd_rg_config *cfg, const struct qd_rg_query *q);

/* The query type of a statement from its first keywords (skips blanks and SQL comments;
 * CREATE/DROP/ALTER/GRANT/... are DATA_DEFINITION). As in Trino, EXPLAIN ANALYZE <stmt>
 * has the type of <stmt>, CREATE TABLE ... AS and REFRESH MATERIALIZED VIEW are INSERT;
 * the full table is in docs/resource-groups.md. */
enum qd_rg_query_type qd_rg_query_type_of(const char *sql, size_t len);

/* "SELECT", "DATA_DEFINITION", ... as Trino spells them. */
const char *qd_rg_query_type_name(enum qd_rg_query_type t);
const char *qd_rg_policy_name(enum qd_rg_policy p);

#endif /* QD_RESOURCE_GROUPS_H */
