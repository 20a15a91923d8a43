/*
 * The streaming QueryInfo scanner (query_info.h).
 *
 * Only three levels of nesting matter: the document (depth 1), the "session"
 * object in it (depth 2) and its "clientTags" array (depth 3). Deeper levels
 * are counted and skipped; inside strings that go nowhere the scanner jumps
 * to the next quote or backslash, so the bulk of a large document costs a
 * memchr-like pass.
 */
#include "query_info.h"

#include <string.h>

enum qi_mode { QM_VALUE = 0, QM_STRING, QM_ESCAPE, QM_HEX, QM_DONE };

enum qi_key {
	QK_NONE = 0,
	QK_STATE,
	QK_QUERY,
	QK_QTYPE,
	QK_SESSION,
	QK_USER,
	QK_SOURCE,
	QK_TAGS,
};

enum qi_target { QT_NONE = 0, QT_KEY, QT_STATE, QT_USER, QT_SOURCE, QT_TAG, QT_SQL, QT_QTYPE };

#define QI_LEVELS 3

void
qd_qinfo_init(struct qd_qinfo *qi, bool state_only)
{
	memset(qi, 0, sizeof(*qi));
	qi->state_only = state_only;
}

static enum qi_key
key_of(const char *k, size_t n, unsigned int depth, enum qi_key key1)
{
	static const struct {
		const char *name;
		enum qi_key key;
		uint8_t depth;
	} keys[] = {
		{"state", QK_STATE, 1},   {"query", QK_QUERY, 1},   {"queryType", QK_QTYPE, 1},
		{"session", QK_SESSION, 1}, {"user", QK_USER, 2}, {"source", QK_SOURCE, 2},
		{"clientTags", QK_TAGS, 2},
	};
	if (depth == 2 && key1 != QK_SESSION)
		return QK_NONE;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].depth == depth && strlen(keys[i].name) == n &&
		    memcmp(keys[i].name, k, n) == 0)
			return keys[i].key;
	}
	return QK_NONE;
}

static uint16_t
flag_of(enum qi_target t)
{
	switch (t) {
	case QT_STATE: return QD_QINFO_F_STATE;
	case QT_USER: return QD_QINFO_F_USER;
	case QT_SOURCE: return QD_QINFO_F_SOURCE;
	case QT_TAG: return QD_QINFO_F_TAGS;
	case QT_SQL: return QD_QINFO_F_SQL;
	case QT_QTYPE: return QD_QINFO_F_QTYPE;
	default: return 0;
	}
}

/* Where a string value at the current position goes (the first occurrence wins). */
static enum qi_target
value_target(const struct qd_qinfo *qi)
{
	enum qi_target t = QT_NONE;
	uint32_t d = qi->depth;
	if (d == 1 && qi->is_object[1]) {
		t = qi->key1 == QK_STATE   ? QT_STATE
		    : qi->key1 == QK_QUERY ? QT_SQL
		    : qi->key1 == QK_QTYPE ? QT_QTYPE
					   : QT_NONE;
	} else if (d == 2 && qi->is_object[2] && qi->key1 == QK_SESSION) {
		t = qi->key2 == QK_USER ? QT_USER : qi->key2 == QK_SOURCE ? QT_SOURCE : QT_NONE;
	} else if (d == 3 && !qi->is_object[3] && qi->key1 == QK_SESSION && qi->key2 == QK_TAGS) {
		return QT_TAG; /* every element */
	}
	if (t != QT_NONE && (qi->found & flag_of(t)) != 0)
		return QT_NONE;
	return t;
}

static char *
target_buf(struct qd_qinfo *qi, enum qi_target t, size_t *cap)
{
	switch (t) {
	case QT_KEY: *cap = sizeof(qi->key); return qi->key;
	case QT_STATE: *cap = sizeof(qi->state); return qi->state;
	case QT_USER: *cap = sizeof(qi->user); return qi->user;
	case QT_SOURCE: *cap = sizeof(qi->source); return qi->source;
	case QT_SQL: *cap = sizeof(qi->sql); return qi->sql;
	case QT_QTYPE: *cap = sizeof(qi->qtype); return qi->qtype;
	default: *cap = 0; return NULL;
	}
}

static void
put_char(struct qd_qinfo *qi, char c)
{
	enum qi_target t = (enum qi_target)qi->target;
	if (t == QT_NONE)
		return;
	if (t == QT_TAG) {
		if (qi->tags_len + 1u < sizeof(qi->tags))
			qi->tags[qi->tags_len++] = c;
		else
			qi->cut |= QD_QINFO_F_TAGS;
		return;
	}
	size_t cap;
	char *buf = target_buf(qi, t, &cap);
	if (qi->len + 1u < cap)
		buf[qi->len++] = c;
	else if (t == QT_KEY)
		qi->len = (uint16_t)cap; /* too long to be one of ours: never matches */
	else
		qi->cut |= flag_of(t);
}

static void
string_start(struct qd_qinfo *qi)
{
	uint32_t d = qi->depth;
	qi->len = 0;
	qi->mode = QM_STRING;
	if (d >= 1 && d <= QI_LEVELS && qi->is_object[d] && qi->want_key[d]) {
		qi->target = QT_KEY;
		return;
	}
	qi->target = (uint8_t)value_target(qi);
	if (qi->target == QT_TAG && qi->tags_len > 0)
		put_char(qi, ',');
}

static void
string_end(struct qd_qinfo *qi)
{
	enum qi_target t = (enum qi_target)qi->target;
	qi->mode = QM_VALUE;
	qi->target = QT_NONE;
	if (t == QT_NONE)
		return;
	if (t == QT_KEY) {
		enum qi_key k = qi->len < sizeof(qi->key)
					? key_of(qi->key, qi->len, qi->depth, (enum qi_key)qi->key1)
					: QK_NONE;
		if (qi->depth == 1)
			qi->key1 = (uint8_t)k;
		else if (qi->depth == 2)
			qi->key2 = (uint8_t)k;
		return;
	}
	if (t == QT_TAG) {
		qi->tags[qi->tags_len] = '\0';
		qi->found |= QD_QINFO_F_TAGS;
		return;
	}
	size_t cap;
	char *buf = target_buf(qi, t, &cap);
	buf[qi->len < cap ? qi->len : cap - 1] = '\0';
	if (t == QT_STATE && (qi->cut & QD_QINFO_F_STATE) != 0)
		return; /* not a state name of ours: as if absent */
	qi->found |= flag_of(t);
	if (t == QT_STATE && qi->state_only) {
		qi->done = true;
		qi->mode = QM_DONE;
	}
}

static void
structural(struct qd_qinfo *qi, char c)
{
	uint32_t d = qi->depth;
	switch (c) {
	case '"':
		string_start(qi);
		break;
	case '{':
	case '[':
		if (d < UINT32_MAX)
			d = ++qi->depth;
		if (d <= QI_LEVELS) {
			qi->is_object[d] = c == '{';
			qi->want_key[d] = c == '{';
			if (d == 1)
				qi->key1 = QK_NONE;
			else if (d == 2)
				qi->key2 = QK_NONE;
		}
		break;
	case '}':
	case ']':
		if (d == 0)
			break;
		qi->depth = --d;
		if (d == 0) {
			qi->done = true;
			qi->mode = QM_DONE;
		}
		break;
	case ',':
		if (d >= 1 && d <= QI_LEVELS && qi->is_object[d]) {
			qi->want_key[d] = true;
			if (d == 1)
				qi->key1 = QK_NONE;
			else if (d == 2)
				qi->key2 = QK_NONE;
		}
		break;
	case ':':
		if (d >= 1 && d <= QI_LEVELS)
			qi->want_key[d] = false;
		break;
	default:
		break; /* whitespace, numbers, literals */
	}
}

static char
unescape(char c)
{
	switch (c) {
	case 'n': return '\n';
	case 't': return '\t';
	case 'r': return '\r';
	case 'b': return '\b';
	case 'f': return '\f';
	default: return c; /* '"', '\\', '/' and anything malformed */
	}
}

bool
qd_qinfo_feed(struct qd_qinfo *qi, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !qi->done; i++) {
		char c = p[i];
		switch ((enum qi_mode)qi->mode) {
		case QM_VALUE:
			structural(qi, c);
			break;
		case QM_STRING:
			if (c == '"') {
				string_end(qi);
			} else if (c == '\\') {
				qi->mode = QM_ESCAPE;
			} else if (qi->target != QT_NONE) {
				put_char(qi, c);
			} else {
				/* the bulk of the document: on to the next quote or backslash */
				size_t j = i + 1;
				while (j < n && p[j] != '"' && p[j] != '\\')
					j++;
				i = j - 1;
			}
			break;
		case QM_ESCAPE:
			if (c == 'u') {
				/* non-ASCII in a name we match: a '?' keeps the length honest */
				qi->mode = QM_HEX;
				qi->hex_left = 4;
				put_char(qi, '?');
			} else {
				qi->mode = QM_STRING;
				put_char(qi, unescape(c));
			}
			break;
		case QM_HEX:
			if (--qi->hex_left == 0)
				qi->mode = QM_STRING;
			break;
		case QM_DONE:
			return true;
		}
	}
	return qi->done;
}

/* Trino's QueryState and Presto's: every state of a query that has not ended. */
static const char *const live_states[] = {
	"QUEUED",   "WAITING_FOR_RESOURCES", "DISPATCHING", "PLANNING",
	"STARTING", "RUNNING",               "BLOCKED",     "FINISHING",
};

bool
qd_qinfo_state_live(const char *state)
{
	for (size_t i = 0; i < sizeof(live_states) / sizeof(live_states[0]); i++)
		if (strcmp(state, live_states[i]) == 0)
			return true;
	return false;
}

bool
qd_qinfo_state_final(const char *state)
{
	return strcmp(state, "FINISHED") == 0 || strcmp(state, "FAILED") == 0 ||
	       strcmp(state, "CANCELED") == 0;
}

void
qd_qinfo_rg_query(const struct qd_qinfo *qi, struct qd_rg_query *q)
{
	memset(q, 0, sizeof(*q));
	if (qi->found & QD_QINFO_F_USER) {
		q->user = qi->user;
		q->user_len = strlen(qi->user);
	}
	if (qi->found & QD_QINFO_F_SOURCE) {
		q->source = qi->source;
		q->source_len = strlen(qi->source);
	}
	if ((qi->found & QD_QINFO_F_TAGS) && qi->tags_len > 0) {
		q->client_tags = qi->tags;
		q->client_tags_len = qi->tags_len;
	}
	if (qi->found & QD_QINFO_F_SQL)
		q->query_type = qd_rg_query_type_of(qi->sql, strlen(qi->sql));
	if (q->query_type == QD_RG_QT_NONE && (qi->found & QD_QINFO_F_QTYPE)) {
		for (int t = QD_RG_QT_NONE + 1; t < QD_RG_QT_COUNT; t++) {
			if (strcmp(qi->qtype, qd_rg_query_type_name((enum qd_rg_query_type)t)) == 0) {
				q->query_type = (enum qd_rg_query_type)t;
				break;
			}
		}
	}
}
