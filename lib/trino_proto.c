/*
 * Trino/Presto protocol helpers (see trino_proto.h): request-target
 * classification and the streaming QueryResults scanner. Both run on the data
 * plane for every request and every response byte of a statement, so they are
 * single passes without allocation; both are fuzzed (tests/fuzz).
 */
#include "trino_proto.h"

#include <string.h>
#include <strings.h>

static const char *const kind_names[QD_TRINO_KIND_MAX] = {
	[QD_TRINO_OTHER] = "other",
	[QD_TRINO_SUBMIT] = "submit",
	[QD_TRINO_QUEUED] = "queued",
	[QD_TRINO_EXECUTING] = "executing",
	[QD_TRINO_PARTIAL_CANCEL] = "partial_cancel",
	[QD_TRINO_LEGACY] = "legacy",
	[QD_TRINO_QUERY] = "query",
	[QD_TRINO_UI_QUERY] = "ui_query",
	[QD_TRINO_DISPATCHER] = "dispatcher",
};

const char *
qd_trino_kind_name(enum qd_trino_kind k)
{
	return (unsigned int)k < QD_TRINO_KIND_MAX ? kind_names[k] : "?";
}

int
qd_trino_origin_form(const char *target, size_t len, const char **origin, size_t *origin_len,
		     const char **authority, size_t *authority_len)
{
	*authority = NULL;
	*authority_len = 0;
	if (len > 0 && target[0] == '/') {
		*origin = target;
		*origin_len = len;
		return 0;
	}
	size_t skip;
	if (len >= 7 && strncasecmp(target, "http://", 7) == 0)
		skip = 7;
	else if (len >= 8 && strncasecmp(target, "https://", 8) == 0)
		skip = 8;
	else
		return -1;
	size_t end = skip;
	while (end < len && target[end] != '/' && target[end] != '?' && target[end] != '#')
		end++;
	if (end == skip)
		return -1; /* no authority */
	*authority = target + skip;
	*authority_len = end - skip;
	if (end == len || target[end] != '/') {
		/* "http://h" or "http://h?q": the path is "/" (RFC 9112 3.2.2); a query
		 * string without a path is not something a Trino client sends. */
		*origin = "/";
		*origin_len = 1;
		return 0;
	}
	*origin = target + end;
	*origin_len = len - end;
	return 0;
}

/* Does <p> (<len>) start with the segment sequence <prefix> followed by '/' or the end?
 * Returns the length matched including that '/', or 0. */
static size_t
match_prefix(const char *p, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	if (len < n || memcmp(p, prefix, n) != 0)
		return 0;
	if (len == n)
		return n;
	return p[n] == '/' ? n + 1 : 0;
}

/* The segment at <p> up to '/' or the end. */
static size_t
segment_len(const char *p, size_t len)
{
	const char *slash = memchr(p, '/', len);
	return slash == NULL ? len : (size_t)(slash - p);
}

static void
set_id(struct qd_trino_target *out, enum qd_trino_kind kind, const char *p, size_t len)
{
	size_t n = segment_len(p, len);
	out->kind = kind;
	out->id = NULL;
	out->id_len = 0;
	if (n == 0 || n > QD_TRINO_ID_MAX)
		return;
	for (size_t i = 0; i < n; i++)
		if (!qd_trino_id_char(p[i]))
			return;
	out->id = p;
	out->id_len = n;
}

void
qd_trino_classify(const char *origin, size_t len, struct qd_trino_target *out)
{
	/* Only the path matters: cut the query string and fragment. */
	size_t plen = 0;
	while (plen < len && origin[plen] != '?' && origin[plen] != '#')
		plen++;
	*out = (struct qd_trino_target){.kind = QD_TRINO_OTHER, .path = origin, .path_len = plen};
	const char *p = origin;
	size_t m;

	if ((m = match_prefix(p, plen, "/v1/statement")) != 0) {
		const char *rest = p + m;
		size_t rlen = plen - m;
		if (rlen == 0) {
			out->kind = QD_TRINO_SUBMIT;
			return;
		}
		size_t q;
		if ((q = match_prefix(rest, rlen, "queued")) != 0) {
			set_id(out, QD_TRINO_QUEUED, rest + q, rlen - q);
			return;
		}
		if ((q = match_prefix(rest, rlen, "executing")) != 0) {
			const char *r2 = rest + q;
			size_t l2 = rlen - q;
			size_t pc = match_prefix(r2, l2, "partialCancel");
			if (pc != 0)
				set_id(out, QD_TRINO_PARTIAL_CANCEL, r2 + pc, l2 - pc);
			else
				set_id(out, QD_TRINO_EXECUTING, r2, l2);
			return;
		}
		set_id(out, QD_TRINO_LEGACY, rest, rlen);
		if (out->id_len == 0)
			out->kind = QD_TRINO_OTHER; /* not a statement path we know */
		return;
	}
	if ((m = match_prefix(p, plen, "/v1/query")) != 0) {
		if (m < plen)
			set_id(out, QD_TRINO_QUERY, p + m, plen - m);
		return; /* "/v1/query": the list of queries, any coordinator */
	}
	if ((m = match_prefix(p, plen, "/ui/api/query")) != 0 && m < plen) {
		set_id(out, QD_TRINO_UI_QUERY, p + m, plen - m);
		if (out->id_len == 0)
			out->kind = QD_TRINO_OTHER;
		return;
	}
	if (match_prefix(p, plen, "/v1/dispatcher") != 0)
		out->kind = QD_TRINO_DISPATCHER;
}

/* ---- QueryResults scanner ---------------------------------------------- */

enum scan_mode { M_VALUE = 0, M_STRING, M_ESCAPE, M_DONE };
enum scan_key { K_NONE = 0, K_ID, K_NEXT_URI, K_ERROR, K_OTHER };

void
qd_json_scan_init(struct qd_json_scan *s)
{
	memset(s, 0, sizeof(*s));
}

static uint8_t
key_of(const struct qd_json_scan *s)
{
	if (s->key_long)
		return K_OTHER;
	if (s->key_len == 2 && memcmp(s->key, "id", 2) == 0)
		return K_ID;
	if (s->key_len == 7 && memcmp(s->key, "nextUri", 7) == 0)
		return K_NEXT_URI;
	if (s->key_len == 5 && memcmp(s->key, "error", 5) == 0)
		return K_ERROR;
	return K_OTHER;
}

/* The string being read is a key at depth 1. */
static inline bool
in_top_key(const struct qd_json_scan *s)
{
	return s->depth == 1 && s->top_is_object && s->want_key;
}

static void
string_end(struct qd_json_scan *s)
{
	if (in_top_key(s)) {
		s->cur_key = key_of(s);
		s->key_len = 0;
		s->key_long = false;
	} else if (s->capturing) {
		s->capturing = false;
		if (!s->id_bad && s->id_len > 0) {
			s->id[s->id_len] = '\0';
			s->id_found = true;
		}
	}
}

static void
string_start(struct qd_json_scan *s)
{
	if (s->depth != 1 || !s->top_is_object || s->want_key)
		return;
	if (s->cur_key == K_ID && !s->id_found) {
		s->capturing = true;
		s->id_len = 0;
		s->id_bad = false;
	} else if (s->cur_key == K_NEXT_URI) {
		s->next_uri = true;
	}
}

void
qd_json_scan_feed(struct qd_json_scan *s, const char *p, size_t len)
{
	s->bytes += len;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		switch ((enum scan_mode)s->mode) {
		case M_STRING:
			if (c == '"') {
				s->mode = M_VALUE;
				string_end(s);
			} else if (c == '\\') {
				s->mode = M_ESCAPE;
			} else if (s->capturing) {
				if (s->id_len < QD_TRINO_ID_MAX && qd_trino_id_char(c))
					s->id[s->id_len++] = c;
				else
					s->id_bad = true;
			} else if (in_top_key(s)) {
				if (s->key_len < QD_JSON_KEY_MAX)
					s->key[s->key_len++] = c;
				else
					s->key_long = true;
			} else {
				/* The bulk of a data page: skip to the next quote or backslash. */
				size_t j = i + 1;
				while (j < len && p[j] != '"' && p[j] != '\\')
					j++;
				i = j - 1;
			}
			break;
		case M_ESCAPE:
			/* An id never holds escapes; an escaped key is none of ours. */
			if (s->capturing)
				s->id_bad = true;
			else if (in_top_key(s))
				s->key_long = true;
			s->mode = M_STRING;
			break;
		case M_DONE:
			return;
		case M_VALUE:
			switch (c) {
			case '"':
				s->mode = M_STRING;
				string_start(s);
				break;
			case '{':
				if (s->depth == 0) {
					s->top_is_object = true;
					s->want_key = true;
				} else if (s->depth == 1 && s->top_is_object && !s->want_key &&
					   s->cur_key == K_ERROR) {
					s->error = true;
				}
				if (s->depth < UINT32_MAX)
					s->depth++;
				break;
			case '[':
				if (s->depth < UINT32_MAX)
					s->depth++;
				break;
			case '}':
			case ']':
				if (s->depth > 0 && --s->depth == 0) {
					s->done = true;
					s->mode = M_DONE;
					return;
				}
				break;
			case ',':
				if (s->depth == 1) {
					s->want_key = true;
					s->cur_key = K_NONE;
				}
				break;
			case ':':
				if (s->depth == 1)
					s->want_key = false;
				break;
			default:
				break; /* whitespace, numbers, literals */
			}
			break;
		}
	}
}
