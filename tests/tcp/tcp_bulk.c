/*
 * qdtcpbulk: one TCP connection moving a large deterministic stream through
 * an echo (or discard) service, both directions digested with SHA-256.
 *
 * It is the client of the lab's bulk tests (issue 3): 100 MB each way through
 * qdispatchd's echo service, clean and under loss, reordering, duplication
 * and delay. The stream is pseudo-random, generated from --seed by the same
 * counter-based generator as qdtcpload (connection 0's stream), so nothing
 * sent is stored: what comes back is compared byte for byte with the stream
 * regenerated at the same offset (the first wrong offset is reported) and fed
 * to a second SHA-256; both digests are printed. The connection sends and
 * reads at once from one poll() loop, so an echo service that pushes back
 * never deadlocks it. After the last byte it half-closes (SHUT_WR) and, in
 * echo mode, expects every byte back followed by the peer's FIN; in discard
 * mode it expects only the FIN.
 *
 * Every wait is bounded: connect (--connect-timeout), any progress
 * (--idle-timeout) and the whole transfer (--timeout). The kernel's
 * TCP_INFO for the connection (retransmits, RTT) is printed at the end, so
 * an impaired run shows that the impairment really happened.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "tool_common.h"

#include <openssl/evp.h>

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

#define BYTES_MAX (1ull << 40)	     /* --bytes: 1 TiB */
#define CHUNK_BYTES_MAX (1u << 20)   /* --chunk */
#define CHUNK_BYTES_DEFAULT (64u << 10)
#define SECONDS_MAX 604800.0	     /* any timeout: one week */
#define HOST_TEXT_MAX 300
#define POLL_MS 100		     /* wake-up period: timeouts, progress, signals */
#define IO_PER_WAKEUP 16	     /* send() or recv() calls per direction per wake-up */

_Static_assert(CHUNK_BYTES_MAX % 8 == 0, "chunks hold whole generator words");

enum mode {
	MODE_ECHO = 0,	/* everything sent must come back */
	MODE_DISCARD,	/* nothing comes back; the peer closes after our FIN */
};

/* Why a transfer did not pass. */
enum outcome {
	OUT_PASS = 0,
	OUT_CONNECT,	     /* connect() failed: err */
	OUT_CONNECT_TIMEOUT, /* no answer to the SYN */
	OUT_RESET,	     /* ECONNRESET or EPIPE */
	OUT_IO,		     /* another socket error: err */
	OUT_EOF,	     /* the peer's FIN before every byte came back */
	OUT_MISMATCH,	     /* a wrong byte, or a byte more than was sent */
	OUT_DATA,	     /* discard mode: the service sent data */
	OUT_IDLE_TIMEOUT,    /* no progress for --idle-timeout */
	OUT_TIMEOUT,	     /* not done within --timeout */
	OUT_INTERRUPTED,     /* SIGINT or SIGTERM */
	OUT_COUNT,
};

static const char *const outcome_names[OUT_COUNT] = {
	[OUT_PASS] = "pass",
	[OUT_CONNECT] = "connect_error",
	[OUT_CONNECT_TIMEOUT] = "connect_timeout",
	[OUT_RESET] = "reset",
	[OUT_IO] = "io_error",
	[OUT_EOF] = "early_eof",
	[OUT_MISMATCH] = "mismatch",
	[OUT_DATA] = "unexpected_data",
	[OUT_IDLE_TIMEOUT] = "idle_timeout",
	[OUT_TIMEOUT] = "timeout",
	[OUT_INTERRUPTED] = "interrupted",
};

struct opts {
	struct sockaddr_storage target;
	socklen_t target_len;
	char target_text[HOST_TEXT_MAX];
	struct sockaddr_storage source;
	bool source_set;
	uint64_t bytes;
	uint64_t seed;
	uint32_t chunk_bytes;
	enum mode mode;
	uint64_t connect_timeout_ns;
	uint64_t idle_timeout_ns;
	uint64_t timeout_ns;
	bool json;
	bool progress;
};

struct xfer {
	const struct opts *o;
	int fd;
	uint64_t key;
	uint64_t tx_off;	/* bytes sent */
	uint64_t rx_off;	/* bytes received and verified */
	uint64_t start_ns;	/* connect() called */
	uint64_t connected_ns;
	uint64_t tx_done_ns;	/* last byte handed to the kernel */
	uint64_t rx_done_ns;	/* last byte back (echo) or FIN (discard) */
	uint64_t progress_ns;	/* last progress in either direction */
	bool shut;		/* SHUT_WR sent */
	bool eof;		/* the peer's FIN arrived */
	enum outcome outcome;
	int err;
	uint64_t mismatch_off;
	int mismatch_expected;	/* -1: the byte was past what was sent */
	uint8_t mismatch_got;
	EVP_MD_CTX *sha_tx;
	EVP_MD_CTX *sha_rx;
	char hex_tx[2 * EVP_MAX_MD_SIZE + 1];
	char hex_rx[2 * EVP_MAX_MD_SIZE + 1];
	struct tcp_info info;
	bool info_ok;
	uint8_t *wbuf;		/* chunk_bytes */
	uint8_t *rbuf;		/* chunk_bytes */
	uint8_t *gbuf;		/* chunk_bytes: the expected bytes */
};

const char qd_tool_prog[] = "qdtcpbulk";

/* ---- stream generator (the same as qdtcpload's) ----------------------------- */

/* ---- argument parsing ------------------------------------------------------ */

static int
parse_source(const char *text, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: qdtcpbulk --target HOST:PORT [OPTIONS]\n"
"\n"
"Sends --bytes of a deterministic pseudo-random stream (from --seed) through\n"
"one TCP connection of the Linux kernel's stack and, in echo mode, reads the\n"
"echo at the same time. It prints the SHA-256 of what was sent and of what came\n"
"back, the duration and the throughput, and the kernel's retransmit count and\n"
"RTT for the connection (TCP_INFO). Every echoed byte is also compared with the\n"
"stream regenerated at its offset; the transfer stops at the first wrong byte\n"
"and reports its offset (the received digest then covers the bytes before it).\n"
"\n"
"After the last byte it half-closes (shutdown SHUT_WR). Echo mode passes when\n"
"exactly --bytes came back, unchanged (equal digests), followed by the peer's\n"
"FIN. Discard mode passes when every byte was sent and the peer's FIN came\n"
"with no data (the peer closes once it read our FIN).\n"
"Exit status: 0 pass, 1 fail, 2 usage or set-up error (nothing was tested).\n"
"\n"
"options:\n"
"  --target HOST:PORT     the echo or discard service (IPv6 as [ADDR]:PORT)\n"
"  --bytes N              bytes to send, 1..1T, with K, M, G suffixes (powers of\n"
"                         1024; default 100M = 104857600)\n"
"  --mode echo|discard    echo: read and verify the echo (default); discard:\n"
"                         only send\n"
"  --seed X               seed of the stream (default 1); qdtcpload --seed X\n"
"                         sends the same bytes on its connection 0\n"
"  --chunk B              bytes per send() and recv(), 1..1M (default 64K)\n"
"  --source IP            bind the connection to this local address\n"
"  --connect-timeout S    limit on connect() (default 10)\n"
"  --idle-timeout S       limit on a stretch with no progress either way\n"
"                         (default 30)\n"
"  --timeout S            limit on the whole transfer (default 600)\n"
"  --json                 print the result as one JSON object on stdout\n"
"  --progress             print a status line on stderr every second\n"
"  -h, --help             this help\n"
"\n"
"example (a kernel echo server to test against: qdtcpload --serve):\n"
"  qdtcpload --serve 127.0.0.1:7007 &\n"
"  qdtcpbulk --target 127.0.0.1:7007 --bytes 100M --seed 7\n");
}

enum {
	OPT_TARGET = 256,
	OPT_BYTES,
	OPT_MODE,
	OPT_SEED,
	OPT_CHUNK,
	OPT_SOURCE,
	OPT_CONNECT_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_PROGRESS,
};

static const struct option long_opts[] = {
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "bytes", required_argument, NULL, OPT_BYTES },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "chunk", required_argument, NULL, OPT_CHUNK },
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Applies option <c> with argument <arg>; -EINVAL after printing why. */
static int
apply_opt(struct opts *o, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case OPT_TARGET:
		if (qd_tool_parse_hostport(arg, false, &o->target, &o->target_len) != 0)
			return qd_tool_bad_value("target", arg,
					 "HOST:PORT with a resolvable host and a port 1..65535");
		snprintf(o->target_text, sizeof(o->target_text), "%s", arg);
		return 0;
	case OPT_BYTES:
		if (qd_tool_parse_u64(arg, 1, BYTES_MAX, &o->bytes) != 0)
			return qd_tool_bad_value("bytes", arg, "1..1T bytes");
		return 0;
	case OPT_MODE:
		if (strcmp(arg, "echo") == 0)
			o->mode = MODE_ECHO;
		else if (strcmp(arg, "discard") == 0)
			o->mode = MODE_DISCARD;
		else
			return qd_tool_bad_value("mode", arg, "echo or discard");
		return 0;
	case OPT_SEED:
		if (qd_tool_parse_u64(arg, 0, UINT64_MAX, &o->seed) != 0)
			return qd_tool_bad_value("seed", arg, "an unsigned 64-bit integer");
		return 0;
	case OPT_CHUNK:
		if (qd_tool_parse_u64(arg, 1, CHUNK_BYTES_MAX, &v) != 0)
			return qd_tool_bad_value("chunk", arg, "1..1M bytes");
		o->chunk_bytes = (uint32_t)v;
		return 0;
	case OPT_SOURCE:
		if (parse_source(arg, &o->source) != 0)
			return qd_tool_bad_value("source", arg, "a numeric IP address");
		o->source_set = true;
		return 0;
	case OPT_CONNECT_TIMEOUT:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->connect_timeout_ns) != 0)
			return qd_tool_bad_value("connect-timeout", arg, "seconds > 0");
		return 0;
	case OPT_IDLE_TIMEOUT:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->idle_timeout_ns) != 0)
			return qd_tool_bad_value("idle-timeout", arg, "seconds > 0");
		return 0;
	case OPT_TIMEOUT:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->timeout_ns) != 0)
			return qd_tool_bad_value("timeout", arg, "seconds > 0");
		return 0;
	case OPT_JSON: o->json = true; return 0;
	case OPT_PROGRESS: o->progress = true; return 0;
	default: return -EINVAL;
	}
}

/* Fills <o> from the command line. Returns 0, 1 after --help, or -EINVAL. */
static int
parse_args(struct opts *o, int argc, char **argv)
{
	int c;

	*o = (struct opts){
		.bytes = 100ull << 20,
		.seed = 1,
		.chunk_bytes = CHUNK_BYTES_DEFAULT,
		.mode = MODE_ECHO,
		.connect_timeout_ns = 10 * NS_PER_S,
		.idle_timeout_ns = 30 * NS_PER_S,
		.timeout_ns = 600 * NS_PER_S,
	};
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?') {
			fprintf(stderr, "qdtcpbulk: see qdtcpbulk --help\n");
			return -EINVAL;
		}
		if (apply_opt(o, c, optarg) != 0)
			return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "qdtcpbulk: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (o->target_len == 0) {
		fprintf(stderr, "qdtcpbulk: --target HOST:PORT is required\n");
		return -EINVAL;
	}
	if (o->source_set && o->source.ss_family != o->target.ss_family) {
		fprintf(stderr, "qdtcpbulk: --source must be of the target's address family\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- transfer ------------------------------------------------------------------ */

static void
xfer_fail(struct xfer *x, enum outcome why, int err)
{
	assert(why != OUT_PASS && why < OUT_COUNT);
	if (x->outcome == OUT_PASS) {
		x->outcome = why;
		x->err = err;
	}
}

static void
xfer_sock_error(struct xfer *x, int err)
{
	xfer_fail(x, err == ECONNRESET || err == EPIPE ? OUT_RESET : OUT_IO, err);
}

/* Opens the socket and connects, waiting at most --connect-timeout. */
static int
xfer_connect(struct xfer *x)
{
	const struct opts *o = x->o;
	socklen_t len = o->target.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						       : sizeof(struct sockaddr_in6);
	int err = 0;

	x->start_ns = qd_tool_now_ns();
	x->fd = socket(o->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (x->fd < 0)
		return -errno;
	if (o->source_set && bind(x->fd, (const struct sockaddr *)&o->source, len) != 0)
		return -errno;
	if (connect(x->fd, (const struct sockaddr *)&o->target, o->target_len) != 0 &&
	    errno != EINPROGRESS)
		return -errno;
	struct pollfd pfd = { .fd = x->fd, .events = POLLOUT };
	uint64_t deadline = x->start_ns + o->connect_timeout_ns;

	for (;;) {
		uint64_t now = qd_tool_now_ns();

		if (qd_tool_stop_signal != 0)
			return -EINTR;
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t wait_ns = deadline - now < POLL_MS * NS_PER_MS ? deadline - now
									  : POLL_MS * NS_PER_MS;
		int n = poll(&pfd, 1, (int)((wait_ns + NS_PER_MS - 1) / NS_PER_MS));

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			break;
	}
	len = sizeof(err);
	if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return -errno;
	x->connected_ns = qd_tool_now_ns();
	return -err;
}

/* Sends up to IO_PER_WAKEUP chunks; half-closes after the last byte. */
static void
xfer_send(struct xfer *x, uint64_t now)
{
	const struct opts *o = x->o;

	for (unsigned int i = 0; i < IO_PER_WAKEUP && x->tx_off < o->bytes; i++) {
		uint64_t left = o->bytes - x->tx_off;
		size_t len = left < o->chunk_bytes ? (size_t)left : o->chunk_bytes;

		qd_tool_stream_fill(x->key, x->tx_off, x->wbuf, len);
		ssize_t n = send(x->fd, x->wbuf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			xfer_sock_error(x, errno);
			return;
		}
		/* Only what the kernel took goes into the digest. */
		EVP_DigestUpdate(x->sha_tx, x->wbuf, (size_t)n);
		x->tx_off += (uint64_t)n;
		x->progress_ns = now;
	}
	if (x->tx_off == o->bytes && !x->shut) {
		x->tx_done_ns = qd_tool_now_ns();
		if (shutdown(x->fd, SHUT_WR) != 0) {
			xfer_sock_error(x, errno);
			return;
		}
		x->shut = true;
	}
}

/* Checks <n> bytes in x->rbuf against the stream at rx_off; records the
 * first wrong byte. */
static bool
xfer_verify(struct xfer *x, size_t n)
{
	size_t good = n;

	if (x->rx_off + n > x->tx_off)
		good = (size_t)(x->tx_off - x->rx_off); /* bytes we never sent */
	qd_tool_stream_fill(x->key, x->rx_off, x->gbuf, good);
	if (good == n && memcmp(x->gbuf, x->rbuf, n) == 0)
		return true;
	size_t i = 0;

	while (i < good && x->gbuf[i] == x->rbuf[i])
		i++;
	x->mismatch_off = x->rx_off + i;
	x->mismatch_expected = i == good ? -1 : x->gbuf[i];
	x->mismatch_got = x->rbuf[i];
	xfer_fail(x, OUT_MISMATCH, 0);
	return false;
}

/* Reads up to IO_PER_WAKEUP chunks, verifying and digesting them. */
static void
xfer_recv(struct xfer *x, uint64_t now)
{
	const struct opts *o = x->o;

	for (unsigned int i = 0; i < IO_PER_WAKEUP && !x->eof; i++) {
		ssize_t n = recv(x->fd, x->rbuf, o->chunk_bytes, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			xfer_sock_error(x, errno);
			return;
		}
		if (n == 0) {
			x->eof = true;
			x->rx_done_ns = qd_tool_now_ns();
			/* Echo: a FIN before every byte is back; discard: one before ours. */
			if (o->mode == MODE_DISCARD ? !x->shut : x->rx_off < o->bytes)
				xfer_fail(x, OUT_EOF, 0);
			return;
		}
		if (o->mode == MODE_DISCARD) {
			/* A discard service sends nothing. */
			x->mismatch_off = x->rx_off;
			x->mismatch_got = x->rbuf[0];
			xfer_fail(x, OUT_DATA, 0);
			return;
		}
		if (!xfer_verify(x, (size_t)n))
			return;
		EVP_DigestUpdate(x->sha_rx, x->rbuf, (size_t)n);
		x->rx_off += (uint64_t)n;
		x->progress_ns = now;
	}
}

static bool
xfer_finished(const struct xfer *x)
{
	return x->outcome != OUT_PASS || (x->shut && x->eof);
}

static void
xfer_print_progress(const struct xfer *x, uint64_t now)
{
	fprintf(stderr, "qdtcpbulk: %.1fs sent %" PRIu64 " received %" PRIu64 "\n",
		(double)(now - x->start_ns) / (double)NS_PER_S, x->tx_off, x->rx_off);
}

/* Moves the data until both directions finished or something failed. */
static void
xfer_loop(struct xfer *x)
{
	const struct opts *o = x->o;
	uint64_t deadline = x->start_ns + o->timeout_ns, next_progress = x->start_ns + NS_PER_S;

	x->progress_ns = qd_tool_now_ns();
	while (!xfer_finished(x)) {
		struct pollfd pfd = {
			.fd = x->fd,
			.events = POLLIN | (x->tx_off < o->bytes ? POLLOUT : 0),
		};
		int n = poll(&pfd, 1, POLL_MS);
		uint64_t now = qd_tool_now_ns();

		if (n < 0 && errno != EINTR) {
			xfer_fail(x, OUT_IO, errno);
			return;
		}
		if (n > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP)) != 0)
			xfer_recv(x, now);
		if (n > 0 && x->outcome == OUT_PASS && x->tx_off < o->bytes &&
		    (pfd.revents & (POLLOUT | POLLERR)) != 0)
			xfer_send(x, now);
		if (qd_tool_stop_signal != 0)
			xfer_fail(x, OUT_INTERRUPTED, 0);
		else if (now >= deadline)
			xfer_fail(x, OUT_TIMEOUT, 0);
		else if (now - x->progress_ns >= o->idle_timeout_ns)
			xfer_fail(x, OUT_IDLE_TIMEOUT, 0);
		if (o->progress && now >= next_progress) {
			xfer_print_progress(x, now);
			next_progress += NS_PER_S;
		}
	}
}

/* ---- report -------------------------------------------------------------------- */

static void
digest_hex(EVP_MD_CTX *ctx, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_DigestFinal_ex(ctx, md, &len);
	assert(len == 32);
	for (unsigned int i = 0; i < len; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	hex[2 * len] = '\0';
}

static bool
xfer_passed(const struct xfer *x)
{
	if (x->outcome != OUT_PASS || x->tx_off != x->o->bytes || !x->eof)
		return false;
	if (x->o->mode == MODE_DISCARD)
		return x->rx_off == 0;
	return x->rx_off == x->o->bytes && strcmp(x->hex_tx, x->hex_rx) == 0;
}

/* Seconds and megabytes per second of <bytes> moved between <from> and <to>. */
static double
rate_mb_s(uint64_t bytes, uint64_t from_ns, uint64_t to_ns)
{
	return to_ns > from_ns ? (double)bytes / ((double)(to_ns - from_ns) / 1e9) / 1e6 : 0.0;
}

static void
report_json(const struct xfer *x, bool pass)
{
	const struct opts *o = x->o;
	uint64_t end_ns = x->rx_done_ns != 0 ? x->rx_done_ns : qd_tool_now_ns();
	uint64_t tx_end_ns = x->tx_done_ns != 0 ? x->tx_done_ns : end_ns;

	printf("{\"tool\":\"qdtcpbulk\",\"target\":\"");
	for (const char *s = o->target_text; *s != '\0'; s++)
		printf(*s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
	printf("\",\"mode\":\"%s\",\"seed\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"bytes_sent\":%"
	       PRIu64 ",\"bytes_received\":%" PRIu64 ",\"sha256_sent\":\"%s\","
	       "\"sha256_received\":\"%s\",\"eof\":%s,\"duration_s\":%.3f,"
	       "\"send_mb_s\":%.2f,\"receive_mb_s\":%.2f,", o->mode == MODE_ECHO ? "echo" : "discard",
	       o->seed, o->bytes, x->tx_off, x->rx_off, x->hex_tx, x->hex_rx,
	       x->eof ? "true" : "false",
	       (double)(end_ns - x->start_ns) / 1e9,
	       rate_mb_s(x->tx_off, x->connected_ns, tx_end_ns),
	       rate_mb_s(x->rx_off, x->connected_ns, end_ns));
	if (x->info_ok)
		printf("\"retransmits\":%u,\"rtt_us\":%u,\"rttvar_us\":%u,\"mss\":%u,",
		       x->info.tcpi_total_retrans, x->info.tcpi_rtt, x->info.tcpi_rttvar,
		       x->info.tcpi_snd_mss);
	printf("\"outcome\":\"%s\"", outcome_names[x->outcome]);
	if (x->err != 0)
		printf(",\"errno\":\"%s\"", qd_tool_errno_name(x->err));
	if (x->outcome == OUT_MISMATCH) {
		printf(",\"mismatch_offset\":%" PRIu64 ",\"got\":%u", x->mismatch_off,
		       x->mismatch_got);
		if (x->mismatch_expected >= 0)
			printf(",\"expected\":%d", x->mismatch_expected);
		else
			printf(",\"expected\":null");
	}
	printf(",\"ok\":%s}\n", pass ? "true" : "false");
}

static void
report_text(const struct xfer *x, bool pass)
{
	const struct opts *o = x->o;
	uint64_t end_ns = x->rx_done_ns != 0 ? x->rx_done_ns : qd_tool_now_ns();
	uint64_t tx_end_ns = x->tx_done_ns != 0 ? x->tx_done_ns : end_ns;

	printf("target: %s, mode %s, seed %" PRIu64 ", %" PRIu64 " bytes\n", o->target_text,
	       o->mode == MODE_ECHO ? "echo" : "discard", o->seed, o->bytes);
	printf("sent:     %" PRIu64 " bytes, %.1f MB/s (%.1f Mbit/s)\n", x->tx_off,
	       rate_mb_s(x->tx_off, x->connected_ns, tx_end_ns),
	       8 * rate_mb_s(x->tx_off, x->connected_ns, tx_end_ns));
	printf("received: %" PRIu64 " bytes, %.1f MB/s (%.1f Mbit/s), peer FIN %s\n", x->rx_off,
	       rate_mb_s(x->rx_off, x->connected_ns, end_ns),
	       8 * rate_mb_s(x->rx_off, x->connected_ns, end_ns), x->eof ? "seen" : "not seen");
	printf("sha256 sent:     %s\n", x->hex_tx);
	printf("sha256 received: %s\n", x->hex_rx);
	printf("duration: %.3f s (connect %.3f ms)\n", (double)(end_ns - x->start_ns) / 1e9,
	       (double)(x->connected_ns - x->start_ns) / 1e6);
	if (x->info_ok)
		printf("tcp_info: retransmits %u, rtt %.3f ms (var %.3f), mss %u\n",
		       x->info.tcpi_total_retrans, x->info.tcpi_rtt / 1e3, x->info.tcpi_rttvar / 1e3,
		       x->info.tcpi_snd_mss);
	if (x->outcome == OUT_MISMATCH && x->mismatch_expected >= 0)
		printf("mismatch: offset %" PRIu64 " expected 0x%02x got 0x%02x\n", x->mismatch_off,
		       x->mismatch_expected, x->mismatch_got);
	else if (x->outcome == OUT_MISMATCH)
		printf("mismatch: byte 0x%02x at offset %" PRIu64 ", past the %" PRIu64
		       " bytes sent\n", x->mismatch_got, x->mismatch_off, x->tx_off);
	else if (x->outcome != OUT_PASS)
		printf("failure: %s%s%s\n", outcome_names[x->outcome], x->err != 0 ? " " : "",
		       x->err != 0 ? qd_tool_errno_name(x->err) : "");
	printf("result: %s\n", pass ? "PASS" : "FAIL");
}

static int
xfer_alloc(struct xfer *x, const struct opts *o)
{
	*x = (struct xfer){ .o = o, .fd = -1, .key = qd_tool_stream_key(o->seed, 0) };
	x->wbuf = malloc(o->chunk_bytes);
	x->rbuf = malloc(o->chunk_bytes);
	x->gbuf = malloc(o->chunk_bytes);
	x->sha_tx = EVP_MD_CTX_new();
	x->sha_rx = EVP_MD_CTX_new();
	if (x->wbuf == NULL || x->rbuf == NULL || x->gbuf == NULL || x->sha_tx == NULL ||
	    x->sha_rx == NULL || EVP_DigestInit_ex(x->sha_tx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(x->sha_rx, EVP_sha256(), NULL) != 1) {
		fprintf(stderr, "qdtcpbulk: cannot allocate buffers or SHA-256 contexts\n");
		return -ENOMEM;
	}
	return 0;
}

static void
xfer_free(struct xfer *x)
{
	if (x->fd >= 0)
		close(x->fd);
	EVP_MD_CTX_free(x->sha_tx);
	EVP_MD_CTX_free(x->sha_rx);
	free(x->wbuf);
	free(x->rbuf);
	free(x->gbuf);
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct xfer x;
	int rc = parse_args(&o, argc, argv);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	signal(SIGINT, qd_tool_on_signal);
	signal(SIGTERM, qd_tool_on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (xfer_alloc(&x, &o) != 0) {
		xfer_free(&x);
		return 2;
	}
	int err = xfer_connect(&x);

	if (err != 0)
		xfer_fail(&x, err == -ETIMEDOUT ? OUT_CONNECT_TIMEOUT
			      : err == -EINTR  ? OUT_INTERRUPTED
					       : OUT_CONNECT, -err);
	else
		xfer_loop(&x);
	socklen_t len = sizeof(x.info);

	/* TCP_INFO of a connection that never opened says nothing. */
	x.info_ok = err == 0 && getsockopt(x.fd, IPPROTO_TCP, TCP_INFO, &x.info, &len) == 0;
	if (x.connected_ns == 0)
		x.connected_ns = qd_tool_now_ns();
	digest_hex(x.sha_tx, x.hex_tx);
	digest_hex(x.sha_rx, x.hex_rx);
	bool pass = xfer_passed(&x);

	if (o.json)
		report_json(&x, pass);
	else
		report_text(&x, pass);
	xfer_free(&x);
	return pass ? 0 : 1;
}
