/*
 * The parts of the Trino/Presto client protocol a dispatcher must understand,
 * as pure functions over bytes (no I/O, no DPDK), so unit tests and fuzzers
 * drive them directly.
 *
 * - Request targets: which paths carry a query id, and where the id is
 *   (docs: trinodb/trino client-protocol.md; the shapes are listed in
 *   docs/architecture.md "Query routing"). Absolute-form targets
 *   (`DELETE http://host/v1/...`, sent by presto-client) are reduced to their
 *   origin form first.
 * - Response bodies: a streaming scanner over a QueryResults JSON document
 *   that finds the top-level `id`, whether a top-level `nextUri` is present,
 *   and whether a top-level `error` object is present, without buffering the
 *   body (a data page can be 128 MB) and at a few instructions per byte. It is
 *   a tokenizer, not a validator: malformed JSON yields "nothing found", never
 *   a crash or an out-of-bounds access.
 */
#ifndef QD_TRINO_PROTO_H
#define QD_TRINO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest query id the dispatcher routes (Trino's are 26 characters). */
#define QD_TRINO_ID_MAX 47

enum qd_trino_kind {
	QD_TRINO_OTHER = 0,      /* no query id: any healthy coordinator */
	QD_TRINO_SUBMIT,         /* /v1/statement */
	QD_TRINO_QUEUED,         /* /v1/statement/queued/{id}/{slug}/{token} */
	QD_TRINO_EXECUTING,      /* /v1/statement/executing/{id}/{slug}/{token} */
	QD_TRINO_PARTIAL_CANCEL, /* /v1/statement/executing/partialCancel/{id}/{stage}/... */
	QD_TRINO_LEGACY,         /* /v1/statement/{id}/{token} (old Presto) */
	QD_TRINO_QUERY,          /* /v1/query/{id}[/...] */
	QD_TRINO_UI_QUERY,       /* /ui/api/query/{id}[/...]: routed by id when known */
	QD_TRINO_DISPATCHER,     /* /v1/dispatcher/...: our own endpoints */
	QD_TRINO_KIND_MAX
};

struct qd_trino_target {
	enum qd_trino_kind kind;
	const char *id;   /* into the path; NULL unless the kind carries an id */
	size_t id_len;
	const char *path; /* origin-form path, without query string */
	size_t path_len;
};

/*
 * Reduce a request target to origin form: for "/p?q" it is itself; for
 * "http://authority/p?q" (any case of the scheme, also https) it is "/p?q"
 * ("/" when the authority is followed by nothing or by "?"). Sets
 * <*origin>/<*origin_len> (pointing into <target>, except the lone "/") and, for the
 * absolute form, <*authority>/<*authority_len> (else NULL/0). Returns 0, or -1 for a
 * target of neither form (e.g. "*" or garbage).
 */
int qd_trino_origin_form(const char *target, size_t len, const char **origin, size_t *origin_len,
			 const char **authority, size_t *authority_len);

/* Classify an origin-form target. Never fails: unknown shapes are QD_TRINO_OTHER. For the
 * protocol kinds (QUEUED, EXECUTING, PARTIAL_CANCEL, QUERY) an id longer than
 * QD_TRINO_ID_MAX or with characters outside [A-Za-z0-9_.-] leaves the kind set with id
 * NULL and id_len 0, so the caller answers 404; LEGACY and UI_QUERY fall back to OTHER. */
void qd_trino_classify(const char *origin, size_t len, struct qd_trino_target *out);

const char *qd_trino_kind_name(enum qd_trino_kind k);

/* True for a character a query id may contain. */
static inline bool
qd_trino_id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* ---- streaming QueryResults scanner ------------------------------------ */

#define QD_JSON_KEY_MAX 16 /* longer keys are not ours: remembered as "other" */

struct qd_json_scan {
	/* tokenizer */
	uint8_t mode;       /* enum in trino_proto.c */
	uint32_t depth;     /* nesting of objects and arrays */
	bool top_is_object; /* the document is an object (else nothing is found) */
	bool want_key;      /* at depth 1, the next string is a key */
	uint8_t cur_key;    /* which key of ours the value at depth 1 belongs to */
	uint8_t key_len;
	bool key_long;
	char key[QD_JSON_KEY_MAX];
	bool capturing;     /* inside the string value of "id" */
	/* results */
	bool id_found;
	bool id_bad;        /* too long or not an id: not usable */
	uint8_t id_len;
	char id[QD_TRINO_ID_MAX + 1];
	bool next_uri;      /* a top-level "nextUri" with a string value */
	bool error;         /* a top-level "error" with an object value */
	bool done;          /* the top-level value ended */
	uint64_t bytes;
};

void qd_json_scan_init(struct qd_json_scan *s);
/* Feed <len> more bytes of the body. */
void qd_json_scan_feed(struct qd_json_scan *s, const char *p, size_t len);

#endif /* QD_TRINO_PROTO_H */
