/*
 * tool_common: what the Linux-side TCP test tools (qdtcpload, qdtcpbulk,
 * qdsynflood) share. Plain C and libc.
 *
 *   qd_tool_prog          the tool's name in messages; each tool defines it
 *   qd_tool_stop_signal   the last SIGINT/SIGTERM seen by qd_tool_on_signal
 *   qd_tool_now_ns        CLOCK_MONOTONIC in nanoseconds
 *   qd_tool_errno_name    "ECONNRESET" for ECONNRESET, "EUNKNOWN" if unknown
 *   qd_tool_mix64, qd_tool_stream_key, qd_tool_stream_fill
 *                         the deterministic stream generator: the same seed
 *                         and connection index give the same bytes in every
 *                         tool
 *   qd_tool_parse_u64     unsigned integers with K, M, G suffixes, in a range
 *   qd_tool_parse_seconds seconds (fractions allowed), in a range
 *   qd_tool_parse_hostport "HOST:PORT" or "[V6]:PORT" to a socket address
 *   qd_tool_bad_value     prints "<prog>: --OPT 'VALUE': expected EXPECT"
 */
#ifndef QD_TESTS_TCP_TOOL_COMMON_H
#define QD_TESTS_TCP_TOOL_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define QD_TOOL_GOLDEN64 0x9e3779b97f4a7c15ull

/* Defined by each tool: its name, as messages start with it. */
extern const char qd_tool_prog[];

/* Set by qd_tool_on_signal to the signal's number. */
extern volatile sig_atomic_t qd_tool_stop_signal;

void qd_tool_on_signal(int sig);

uint64_t qd_tool_now_ns(void);

const char *qd_tool_errno_name(int err);

/* splitmix64's finaliser of x + GOLDEN64. */
static inline uint64_t
qd_tool_mix64(uint64_t x)
{
	x += QD_TOOL_GOLDEN64;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The key of connection <index>'s stream under <seed>. */
uint64_t qd_tool_stream_key(uint64_t seed, uint64_t index);

/* Writes bytes [off, off + len) of stream <key> into <buf>. Byte i of the
 * stream is byte (i % 8), little-endian, of mix64(key + (i / 8) * GOLDEN64). */
void qd_tool_stream_fill(uint64_t key, uint64_t off, uint8_t *buf, size_t len);

/* Parses an unsigned integer (decimal, or hexadecimal with 0x) with an
 * optional K, M or G suffix (powers of 1024) into <out>; -EINVAL when it is
 * not one, -ERANGE outside [<min>, <max>]. */
int qd_tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses seconds (fractions allowed) in [<min_s>, <max_s>] into <out_ns>;
 * -EINVAL otherwise. */
int qd_tool_parse_seconds(const char *s, double min_s, double max_s, uint64_t *out_ns);

/* Resolves "HOST:PORT" or "[V6]:PORT" into <ss> and <len>. <passive>: a
 * local address to listen on. Port 0 is refused (-EINVAL); a host that does
 * not resolve is -EHOSTUNREACH. */
int qd_tool_parse_hostport(const char *text, bool passive, struct sockaddr_storage *ss,
			   socklen_t *len);

/* Prints "<qd_tool_prog>: --<opt> '<value>': expected <expect>" on stderr;
 * returns -EINVAL. */
int qd_tool_bad_value(const char *opt, const char *value, const char *expect);

#endif
