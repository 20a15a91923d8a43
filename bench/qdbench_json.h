/*
 * qdbench_json: a streaming scanner of Trino/Presto QueryResults bodies.
 *
 * qdbench reads every page a coordinator sends, but needs only a few fields:
 * the top-level `nextUri`, `id`, `stats.state`, whether there is a non-null
 * `error` (and its `errorName`/`message`), and how many rows the top-level
 * `data` array holds. The scanner takes the body in pieces as they arrive,
 * one byte at a time, with a fixed amount of state: a page of any size (the
 * simulator can send 128 MB in one page) costs no memory, and fields may come
 * in any order. It checks the JSON's structure (brackets, strings, commas and
 * colons) but not the spelling of numbers and literals.
 */
#ifndef QD_BENCH_QDBENCH_JSON_H
#define QD_BENCH_QDBENCH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QDB_JSON_DEPTH_MAX 64
#define QDB_JSON_KEY_MAX 16	/* keys we look for are shorter; longer ones never match */
#define QDB_JSON_URI_MAX 2048
#define QDB_JSON_SHORT_MAX 64
#define QDB_JSON_MESSAGE_MAX 256

struct qdb_json {
	/* Results, valid once qdb_json_finish() returned true. */
	char next_uri[QDB_JSON_URI_MAX];
	bool has_next_uri;
	bool next_uri_truncated;
	char id[QDB_JSON_SHORT_MAX];
	char state[QDB_JSON_SHORT_MAX];
	bool has_error;
	char error_name[QDB_JSON_SHORT_MAX];
	char error_message[QDB_JSON_MESSAGE_MAX];
	uint64_t rows;
	const char *fail; /* why the body is not valid JSON, or NULL */

	/* Scanner state. */
	uint8_t mode;
	uint8_t lit_kind;
	uint8_t esc_left;   /* hex digits of a \u escape still to read */
	uint32_t esc_code;
	unsigned int depth;
	bool seen_root;
	bool in_key;
	uint8_t container[QDB_JSON_DEPTH_MAX + 1]; /* '{' or '[' at each depth */
	char key[3][QDB_JSON_KEY_MAX + 1];	    /* the current key at depth 1..2 */
	uint8_t key_len[3];
	bool key_long[3];
	char *capture; /* where the string being read goes, or NULL */
	size_t capture_cap;
	size_t capture_len;
	bool *capture_truncated;
};

void qdb_json_init(struct qdb_json *j);

/* Scans <len> more bytes of the body; false once the body is known to be bad
 * (j->fail says why); later calls then do nothing. */
bool qdb_json_feed(struct qdb_json *j, const char *data, size_t len);

/* The body is complete: true when it was one whole JSON object. */
bool qdb_json_finish(struct qdb_json *j);

#endif
