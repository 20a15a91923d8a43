/*
 * qdbench_json: the streaming QueryResults scanner of qdbench_json.h.
 *
 * A byte-at-a-time state machine over the JSON grammar. Containers are kept
 * on a small stack; the key being read is kept for depths 1 and 2 (the top
 * level object and the objects in it), which is all the fields qdbench needs:
 * `nextUri`, `id` and `error` at depth 1, `stats.state`, `error.errorName`
 * and `error.message` at depth 2, and the elements of the depth-1 `data`
 * array (each is a row). A string value is copied only when its place is one
 * of those fields, and only as much as fits (a truncated nextUri is flagged).
 */
#include "qdbench_json.h"

#include <string.h>

enum {
	M_VALUE,      /* a value must come next */
	M_VALUE_OR_END, /* just after '[': a value or ']' */
	M_KEY_OR_END, /* just after '{': a key or '}' */
	M_KEY,	      /* after ',' in an object: a key */
	M_COLON,      /* after a key */
	M_AFTER,      /* after a value: ',' or the container's end */
	M_STRING,     /* inside a string (key or value) */
	M_ESCAPE,     /* after a backslash in a string */
	M_LITERAL,    /* inside a number, true, false or null */
	M_DONE,	      /* the root value is complete: only whitespace may follow */
	M_FAIL,
};

void
qdb_json_init(struct qdb_json *j)
{
	memset(j, 0, sizeof(*j));
	j->mode = M_VALUE;
}

static bool
fail(struct qdb_json *j, const char *why)
{
	j->fail = why;
	j->mode = M_FAIL;
	return false;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
key_is(const struct qdb_json *j, unsigned int depth, const char *name)
{
	return !j->key_long[depth] && j->key_len[depth] == strlen(name) &&
	       memcmp(j->key[depth], name, j->key_len[depth]) == 0;
}

/* A value starts at the current depth (inside j->container[j->depth]). */
static void
value_starts(struct qdb_json *j, char first)
{
	unsigned int d = j->depth;

	j->capture = NULL;
	j->capture_truncated = NULL;
	if (d == 2 && j->container[2] == '[' && j->container[1] == '{' && key_is(j, 1, "data"))
		j->rows++;
	if (d == 1 && j->container[1] == '{' && key_is(j, 1, "error") && first != 'n')
		j->has_error = true;
	if (first != '"' || d == 0 || j->container[d] != '{')
		return;
	if (d == 1) {
		if (key_is(j, 1, "nextUri")) {
			j->capture = j->next_uri;
			j->capture_cap = sizeof(j->next_uri);
			j->capture_truncated = &j->next_uri_truncated;
			j->has_next_uri = true;
		} else if (key_is(j, 1, "id")) {
			j->capture = j->id;
			j->capture_cap = sizeof(j->id);
		}
	} else if (d == 2 && j->container[1] == '{') {
		if (key_is(j, 1, "stats") && key_is(j, 2, "state")) {
			j->capture = j->state;
			j->capture_cap = sizeof(j->state);
		} else if (key_is(j, 1, "error") && key_is(j, 2, "errorName")) {
			j->capture = j->error_name;
			j->capture_cap = sizeof(j->error_name);
		} else if (key_is(j, 1, "error") && key_is(j, 2, "message")) {
			j->capture = j->error_message;
			j->capture_cap = sizeof(j->error_message);
		}
	}
	if (j->capture != NULL) {
		j->capture[0] = '\0';
		j->capture_len = 0;
	}
}

static void
string_byte(struct qdb_json *j, char c)
{
	if (j->in_key) {
		unsigned int d = j->depth;

		if (d <= 2) {
			if (j->key_len[d] < QDB_JSON_KEY_MAX)
				j->key[d][j->key_len[d]++] = c;
			else
				j->key_long[d] = true;
		}
		return;
	}
	if (j->capture == NULL)
		return;
	if (j->capture_len + 1 < j->capture_cap) {
		j->capture[j->capture_len++] = c;
		j->capture[j->capture_len] = '\0';
	} else if (j->capture_truncated != NULL) {
		*j->capture_truncated = true;
	}
}

/* The end of a value: what may follow depends on the container. */
static void
value_done(struct qdb_json *j)
{
	j->capture = NULL;
	j->mode = j->depth == 0 ? M_DONE : M_AFTER;
}

static bool
open_container(struct qdb_json *j, char c)
{
	if (j->depth >= QDB_JSON_DEPTH_MAX)
		return fail(j, "JSON nested too deeply");
	j->depth++;
	j->container[j->depth] = (uint8_t)c;
	if (j->depth <= 2) {
		j->key_len[j->depth] = 0;
		j->key_long[j->depth] = false;
	}
	j->mode = c == '{' ? M_KEY_OR_END : M_VALUE_OR_END;
	return true;
}

static bool
close_container(struct qdb_json *j, char c)
{
	if (j->depth == 0 || j->container[j->depth] != (c == '}' ? '{' : '['))
		return fail(j, "mismatched bracket in JSON");
	j->depth--;
	value_done(j);
	return true;
}

static bool
start_value(struct qdb_json *j, char c)
{
	if (j->depth == 0) {
		if (c != '{')
			return fail(j, "body is not a JSON object");
		j->seen_root = true;
	}
	value_starts(j, c);
	switch (c) {
	case '{':
	case '[':
		return open_container(j, c);
	case '"':
		j->in_key = false;
		j->mode = M_STRING;
		return true;
	case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6':
	case '7': case '8': case '9': case 't': case 'f': case 'n':
		j->mode = M_LITERAL;
		return true;
	default:
		return fail(j, "unexpected character in JSON");
	}
}

static bool
start_key(struct qdb_json *j, char c)
{
	if (c != '"')
		return fail(j, "expected a key in a JSON object");
	if (j->depth <= 2) {
		j->key_len[j->depth] = 0;
		j->key_long[j->depth] = false;
	}
	j->in_key = true;
	j->mode = M_STRING;
	return true;
}

static bool
literal_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '-' ||
	       c == '+' || c == 'E';
}

static bool
step(struct qdb_json *j, char c)
{
	switch (j->mode) {
	case M_STRING:
		if (c == '"') {
			if (j->in_key) {
				j->in_key = false;
				j->mode = M_COLON;
			} else {
				value_done(j);
			}
		} else if (c == '\\') {
			j->mode = M_ESCAPE;
		} else if ((unsigned char)c < 0x20) {
			return fail(j, "control character in a JSON string");
		} else {
			string_byte(j, c);
		}
		return true;
	case M_ESCAPE:
		if (j->esc_left > 0) {
			uint32_t v;

			if (c >= '0' && c <= '9')
				v = (uint32_t)(c - '0');
			else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
				v = (uint32_t)((c | 0x20) - 'a' + 10);
			else
				return fail(j, "bad \\u escape in JSON");
			j->esc_code = j->esc_code << 4 | v;
			if (--j->esc_left == 0) {
				/* Only ASCII is kept exactly; the fields we read are ASCII. */
				string_byte(j, j->esc_code < 0x80 ? (char)j->esc_code : '?');
				j->mode = M_STRING;
			}
			return true;
		}
		switch (c) {
		case '"': case '\\': case '/': string_byte(j, c); break;
		case 'b': string_byte(j, '\b'); break;
		case 'f': string_byte(j, '\f'); break;
		case 'n': string_byte(j, '\n'); break;
		case 'r': string_byte(j, '\r'); break;
		case 't': string_byte(j, '\t'); break;
		case 'u': j->esc_left = 4; j->esc_code = 0; return true;
		default: return fail(j, "bad escape in JSON");
		}
		j->mode = M_STRING;
		return true;
	case M_LITERAL:
		if (literal_char(c))
			return true;
		value_done(j);
		return step(j, c); /* the delimiter is handled in M_AFTER / M_DONE */
	default:
		break;
	}
	if (is_space(c))
		return true;
	switch (j->mode) {
	case M_VALUE:
		return start_value(j, c);
	case M_VALUE_OR_END:
		return c == ']' ? close_container(j, c) : start_value(j, c);
	case M_KEY_OR_END:
		return c == '}' ? close_container(j, c) : start_key(j, c);
	case M_KEY:
		return start_key(j, c);
	case M_COLON:
		if (c != ':')
			return fail(j, "expected ':' in a JSON object");
		j->mode = M_VALUE;
		return true;
	case M_AFTER:
		if (c == ',') {
			j->mode = j->container[j->depth] == '{' ? M_KEY : M_VALUE;
			return true;
		}
		if (c == '}' || c == ']')
			return close_container(j, c);
		return fail(j, "expected ',' or the end of a JSON container");
	case M_DONE:
		return fail(j, "data after the JSON object");
	default:
		return fail(j, "JSON scanner in a bad state");
	}
}

bool
qdb_json_feed(struct qdb_json *j, const char *data, size_t len)
{
	if (j->mode == M_FAIL)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!step(j, data[i]))
			return false;
	return true;
}

bool
qdb_json_finish(struct qdb_json *j)
{
	if (j->mode == M_FAIL)
		return false;
	if (!j->seen_root)
		return fail(j, "empty body where JSON was expected");
	if (j->mode != M_DONE)
		return fail(j, "JSON body ends early");
	return true;
}
