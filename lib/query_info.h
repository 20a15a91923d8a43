/*
 * What a dispatcher needs from a coordinator's QueryInfo (`GET /v1/query/{id}`),
 * read as the body streams in, without buffering the document.
 *
 * A Trino QueryInfo is tens of KB (stages, stats, the session's properties),
 * and the fields we need sit anywhere in it: the top-level "state" (is the
 * query still running?), and for a query another dispatcher admitted, what the
 * resource-group selectors match on: "session" -> "user", "source",
 * "clientTags" (an array of strings), and the top-level "query" (the SQL text,
 * whose first keywords give the query type, as the admitting dispatcher
 * classified it) and "queryType" (Trino's own, once the query is analysed). The
 * scanner is a tokenizer that follows the nesting and copies only those
 * values, each up to a fixed size (longer ones are cut and flagged). It never
 * reads out of bounds and finds nothing in malformed JSON. Field names are
 * Trino's (io.trino.execution.QueryInfo, io.trino.SessionRepresentation) and
 * Presto's, which are the same for these.
 */
#ifndef QD_QUERY_INFO_H
#define QD_QUERY_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resource_groups.h"

#define QD_QINFO_STATE_MAX 24  /* "WAITING_FOR_RESOURCES" is 21, NUL included */
#define QD_QINFO_NAME_MAX 128  /* user, source (NUL included) */
#define QD_QINFO_TAGS_MAX 256  /* clientTags joined with ',' (NUL included) */
#define QD_QINFO_SQL_MAX 512   /* the SQL's first bytes: enough for its query type */
#define QD_QINFO_QTYPE_MAX 32
#define QD_QINFO_KEY_MAX 16    /* the longest key we look for is "clientTags" */

/* Which fields a scan found complete (bit per field). */
enum {
	QD_QINFO_F_STATE = 1u << 0,
	QD_QINFO_F_USER = 1u << 1,
	QD_QINFO_F_SOURCE = 1u << 2,
	QD_QINFO_F_TAGS = 1u << 3,
	QD_QINFO_F_SQL = 1u << 4,
	QD_QINFO_F_QTYPE = 1u << 5,
};

struct qd_qinfo {
	/* results (NUL terminated) */
	char state[QD_QINFO_STATE_MAX];
	char user[QD_QINFO_NAME_MAX];
	char source[QD_QINFO_NAME_MAX];
	char tags[QD_QINFO_TAGS_MAX];
	char sql[QD_QINFO_SQL_MAX];
	char qtype[QD_QINFO_QTYPE_MAX];
	uint16_t found;        /* QD_QINFO_F_* */
	uint16_t cut;          /* QD_QINFO_F_* of values longer than their buffer */
	bool state_only;       /* stop as soon as the state is complete */
	bool done;             /* the document closed, or state_only and the state is in */
	/* tokenizer */
	uint32_t depth;        /* nesting of objects and arrays */
	uint8_t mode;
	uint8_t hex_left;      /* \uXXXX digits still to skip */
	uint8_t key1;          /* the current key at depth 1 (enum in query_info.c) */
	uint8_t key2;          /* ... at depth 2 inside "session" */
	uint8_t target;        /* where the string being read goes */
	bool want_key[4];      /* per depth 1..3: the next string is a key */
	bool is_object[4];     /* per depth 1..3 */
	uint16_t len;          /* bytes of the string being read kept so far */
	uint16_t tags_len;
	char key[QD_QINFO_KEY_MAX];
};

/* Start a scan; <state_only>: only "state" is wanted (the scan is done once it is in). */
void qd_qinfo_init(struct qd_qinfo *qi, bool state_only);
/* Feed <n> bytes of the body. Returns true once the scan is done (nothing more needed). */
bool qd_qinfo_feed(struct qd_qinfo *qi, const char *p, size_t n);

/* True when the state names a query that has not ended (QUEUED .. FINISHING). */
bool qd_qinfo_state_live(const char *state);
/* True for FINISHED, FAILED, CANCELED. */
bool qd_qinfo_state_final(const char *state);

/* The selector input for the scanned query: user, source, clientTags as found (absent
 * ones NULL), the query type from the SQL's first keywords (as the dispatcher that admitted
 * it classified the POST), else from "queryType". <q>'s strings point into <qi>. */
void qd_qinfo_rg_query(const struct qd_qinfo *qi, struct qd_rg_query *q);

#endif /* QD_QUERY_INFO_H */
