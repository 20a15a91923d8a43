/*
 * sim_body.c: response text for qdcoordsim.
 *
 * Two tools: a string builder with a hard size limit (every JSON answer is
 * written with it), and the body generator that streams a QueryResults page:
 * the page's JSON text is split where the data rows go, and the rows are
 * produced from their index while the socket takes them. Row values are a
 * pure function of (row, row_bytes), documented in docs/coordsim.md, so a
 * client can check every byte and a 128 MB page needs no 128 MB buffer.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ---- string builder ------------------------------------------------------ */

void
sim_sb_init(struct sim_sb *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void
sim_sb_free(struct sim_sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Make room for <n> more bytes and a NUL; false after an overflow. */
static bool
sim_sb_reserve(struct sim_sb *b, size_t n)
{
	size_t want;
	char *p;

	if (b->overflow)
		return false;
	if (n > b->max || b->len > b->max - n) {
		b->overflow = true;
		return false;
	}
	want = b->len + n + 1;
	if (want <= b->cap)
		return true;
	if (b->cap == 0)
		b->cap = 1024;
	while (b->cap < want)
		b->cap *= 2;
	p = realloc(b->p, b->cap);
	if (p == NULL) {
		b->overflow = true;
		return false;
	}
	b->p = p;
	return true;
}

void
sim_sb_add(struct sim_sb *b, const char *s, size_t n)
{
	if (!sim_sb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
sim_sb_str(struct sim_sb *b, const char *s)
{
	sim_sb_add(b, s, strlen(s));
}

void
sim_sb_printf(struct sim_sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sim_sb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
sim_sb_json(struct sim_sb *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;

	sim_sb_add(b, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[7];

		if (ch >= 0x20 && ch != '"' && ch != '\\') {
			run++;
			continue;
		}
		sim_sb_add(b, s + i - run, run);
		run = 0;
		esc[0] = '\\';
		switch (ch) {
		case '"':
		case '\\':
			esc[1] = (char)ch;
			sim_sb_add(b, esc, 2);
			break;
		case '\n':
			sim_sb_add(b, "\\n", 2);
			break;
		case '\r':
			sim_sb_add(b, "\\r", 2);
			break;
		case '\t':
			sim_sb_add(b, "\\t", 2);
			break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			sim_sb_add(b, esc, 6);
			break;
		}
	}
	sim_sb_add(b, s + n - run, run);
	sim_sb_add(b, "\"", 1);
}

/* ---- rows ---------------------------------------------------------------- */

/*
 * Row <row>'s value is the first row_bytes characters of
 *   "<row in decimal>:" followed by the alphabet 0-9a-z repeated forever,
 *   starting at character (row mod 36).
 * So row 0 with 8 bytes is "0:012345", row 37 is "37:12345".
 */
static const char sim_alpha[] = "0123456789abcdefghijklmnopqrstuvwxyz";
#define SIM_ALPHA_LEN 36u
#define SIM_FILL_SPAN 4096u
/* the alphabet repeated: any span of SIM_FILL_SPAN bytes starting at any phase */
static char sim_fill[SIM_FILL_SPAN + SIM_ALPHA_LEN];
static bool sim_fill_ready;

static void
sim_fill_init(void)
{
	size_t i;

	if (sim_fill_ready)
		return;
	for (i = 0; i < sizeof(sim_fill); i++)
		sim_fill[i] = sim_alpha[i % SIM_ALPHA_LEN];
	sim_fill_ready = true;
}

/* "<row>:" into <out>; returns its length. */
static size_t
sim_row_prefix(uint64_t row, char *out, size_t out_max)
{
	int n = snprintf(out, out_max, "%llu:", (unsigned long long)row);

	assert(n > 0 && (size_t)n < out_max);
	return (size_t)n;
}

char
sim_row_byte(uint64_t row, uint64_t k)
{
	char prefix[32];
	size_t plen = sim_row_prefix(row, prefix, sizeof(prefix));

	if (k < plen)
		return prefix[k];
	return sim_alpha[(row + (k - plen)) % SIM_ALPHA_LEN];
}

uint64_t
sim_rows_json_bytes(uint64_t count, uint64_t row_bytes)
{
	if (count == 0)
		return 0;
	/* ["v"] is 4 bytes around the value, and count-1 commas */
	return count * (row_bytes + 4) + (count - 1);
}

void
sim_body_set(struct sim_body *b, char *text, size_t text_len, size_t text_split,
	     uint64_t rows_first, uint64_t rows_count, uint64_t row_bytes)
{
	assert(text_split <= text_len);
	memset(b, 0, sizeof(*b));
	b->text = text;
	b->text_len = text_len;
	b->text_split = text_split;
	b->rows_first = rows_first;
	b->rows_count = rows_count;
	b->row_bytes = row_bytes;
	b->total = text_len + sim_rows_json_bytes(rows_count, row_bytes);
	sim_fill_init();
}

void
sim_body_free(struct sim_body *b)
{
	free(b->text);
	memset(b, 0, sizeof(*b));
}

bool
sim_body_active(const struct sim_body *b)
{
	return b->text != NULL && b->sent < b->total;
}

/* Produce bytes of the current row from row_pos on; returns the count. */
static size_t
sim_body_row(struct sim_body *b, char *out, size_t cap)
{
	uint64_t row = b->rows_first + b->row;
	char head[40];
	size_t hlen = 0, plen, done = 0;
	uint64_t vstart, vend, rlen;
	char prefix[32];

	if (b->row > 0)
		head[hlen++] = ',';
	head[hlen++] = '[';
	head[hlen++] = '"';
	vstart = hlen;
	vend = vstart + b->row_bytes;
	rlen = vend + 2;
	plen = sim_row_prefix(row, prefix, sizeof(prefix));
	while (done < cap && b->row_pos < rlen) {
		uint64_t pos = b->row_pos;
		size_t n;

		if (pos < vstart) {
			out[done++] = head[pos];
			b->row_pos++;
			continue;
		}
		if (pos >= vend) {
			out[done++] = pos == vend ? '"' : ']';
			b->row_pos++;
			continue;
		}
		/* inside the value */
		if (pos - vstart < plen) {
			out[done++] = prefix[pos - vstart];
			b->row_pos++;
			continue;
		}
		n = cap - done;
		if (n > SIM_FILL_SPAN)
			n = SIM_FILL_SPAN;
		if (n > vend - pos)
			n = (size_t)(vend - pos);
		memcpy(out + done,
		       sim_fill + (row + (pos - vstart - plen)) % SIM_ALPHA_LEN, n);
		done += n;
		b->row_pos += n;
	}
	if (b->row_pos == rlen) {
		b->row++;
		b->row_pos = 0;
	}
	return done;
}

size_t
sim_body_read(struct sim_body *b, char *out, size_t cap)
{
	size_t done = 0;
	uint64_t rows_end = b->text_split + sim_rows_json_bytes(b->rows_count, b->row_bytes);

	while (done < cap && b->sent < b->total) {
		size_t n;

		if (b->sent < b->text_split) {
			n = (size_t)(b->text_split - b->sent);
			if (n > cap - done)
				n = cap - done;
			memcpy(out + done, b->text + b->sent, n);
		} else if (b->sent < rows_end) {
			n = sim_body_row(b, out + done, cap - done);
		} else {
			size_t off = (size_t)(b->sent - rows_end) + b->text_split;

			n = b->text_len - off;
			if (n > cap - done)
				n = cap - done;
			memcpy(out + done, b->text + off, n);
		}
		done += n;
		b->sent += n;
	}
	return done;
}
