/*
 * tool_common: what the Linux-side TCP test tools share (see tool_common.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "tool_common.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <endian.h>
#include <netinet/in.h>

#define NS_PER_S 1000000000ull
#define HOST_TEXT_MAX 300

volatile sig_atomic_t qd_tool_stop_signal;

void
qd_tool_on_signal(int sig)
{
	qd_tool_stop_signal = sig;
}

uint64_t
qd_tool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

const char *
qd_tool_errno_name(int err)
{
	const char *name = strerrorname_np(err);

	return name != NULL ? name : "EUNKNOWN";
}

/* ---- stream generator ------------------------------------------------------ */

uint64_t
qd_tool_stream_key(uint64_t seed, uint64_t index)
{
	return qd_tool_mix64(seed ^ qd_tool_mix64(index + 1));
}

void
qd_tool_stream_fill(uint64_t key, uint64_t off, uint8_t *buf, size_t len)
{
	size_t i = 0;

	while (i < len && ((off + i) & 7) != 0) {
		uint64_t word = qd_tool_mix64(key + ((off + i) >> 3) * QD_TOOL_GOLDEN64);

		buf[i] = (uint8_t)(word >> (8 * ((off + i) & 7)));
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		uint64_t word = htole64(qd_tool_mix64(key + ((off + i) >> 3) * QD_TOOL_GOLDEN64));

		memcpy(buf + i, &word, 8);
	}
	if (i < len) {
		uint64_t word = qd_tool_mix64(key + ((off + i) >> 3) * QD_TOOL_GOLDEN64);

		for (unsigned int b = 0; i < len; b++, i++)
			buf[i] = (uint8_t)(word >> (8 * b));
	}
}

/* ---- argument parsing ------------------------------------------------------ */

int
qd_tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	uint64_t v, mult = 1;

	if (s == NULL || *s == '\0' || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10);
	if (errno != 0 || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	default: break;
	}
	if (*end != '\0' || (v != 0 && v > UINT64_MAX / mult))
		return -EINVAL;
	v *= mult;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int
qd_tool_parse_seconds(const char *s, double min_s, double max_s, uint64_t *out_ns)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min_s) || v > max_s)
		return -EINVAL;
	*out_ns = (uint64_t)(v * (double)NS_PER_S);
	return 0;
}

int
qd_tool_parse_hostport(const char *text, bool passive, struct sockaddr_storage *ss,
		       socklen_t *len)
{
	char host[HOST_TEXT_MAX];
	const char *port;
	size_t host_len;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return -EINVAL;
		host_len = (size_t)(close - text - 1);
		text++;
		port = close + 2;
	} else {
		const char *colon = strrchr(text, ':');

		if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
			return -EINVAL;
		host_len = (size_t)(colon - text);
		port = colon + 1;
	}
	if (host_len == 0 || host_len >= sizeof(host) || *port == '\0')
		return -EINVAL;
	memcpy(host, text, host_len);
	host[host_len] = '\0';

	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	struct addrinfo *res = NULL;

	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
		return -EHOSTUNREACH;
	assert(res->ai_addrlen <= sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	uint16_t p = ss->ss_family == AF_INET ? ((struct sockaddr_in *)ss)->sin_port
					      : ((struct sockaddr_in6 *)ss)->sin6_port;
	return p == 0 ? -EINVAL : 0;
}

int
qd_tool_bad_value(const char *opt, const char *value, const char *expect)
{
	fprintf(stderr, "%s: --%s '%s': expected %s\n", qd_tool_prog, opt, value, expect);
	return -EINVAL;
}
