/*
 * qdtcpload: many concurrent TCP echo connections from the Linux kernel's
 * stack, every echoed byte verified.
 *
 * It is the client of the lab's "many clients at once" test (issue 3): N
 * non-blocking sockets under one level-triggered epoll, each sending a
 * deterministic pseudo-random byte stream cut into random-sized messages, one
 * message in flight per connection. Every byte that comes back is compared
 * with the stream regenerated from (seed, connection index, offset): nothing
 * that was sent is kept, so a connection costs ~100 bytes however much it
 * moves. The generator is counter-based, so the expected byte at any offset
 * is computed directly and a mismatch is reported as connection + offset.
 *
 * Every wait is bounded: connect (--connect-timeout), progress of an open
 * connection and the peer's FIN (--idle-timeout), and the whole run
 * (--timeout). Every table is sized once at start. One thread.
 *
 * For the lab's peer-RST and vanishing-peer tests, --hold keeps every
 * connection open and idle for a while after its last message, and --abort
 * ends it with a RST (SO_LINGER 0) instead of a FIN.
 *
 * With --serve it is instead a small kernel echo (or discard) server: the
 * peer used to check this tool and qdtcpbulk on loopback, and the Linux
 * baseline that the benchmarks compare qdispatchd with.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "tool_common.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define NS_PER_US 1000ull
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

#define CONNECTIONS_MAX 1000000u     /* --connections */
#define SOURCES_MAX 64u		     /* --source addresses */
#define MESSAGES_MAX 1000000000ull   /* --messages per connection */
#define MESSAGE_BYTES_MAX (16u << 20) /* --max-size */
#define CONNECT_RATE_MAX 10000000ull /* --connect-rate per second */
#define SECONDS_MAX 604800.0	     /* any timeout or duration: one week */
#define IO_CHUNK_BYTES (64u << 10)   /* one send() or recv() */
#define EVENTS_MAX 1024		     /* epoll events per wakeup */
#define READS_PER_EVENT 4	     /* recv() calls per readable event */
#define WRITES_PER_EVENT 4	     /* send() calls per writable event */
#define STARTS_PER_LOOP 256	     /* connect() calls per loop iteration */
#define SWEEP_NS (100 * NS_PER_MS)   /* timeout sweep and progress period */
#define REPORT_MAX 10		     /* failed connections listed by index */
#define ERRNO_SLOTS 256		     /* errno counters; larger values share slot 0 */
#define FD_SPARE 64		     /* descriptors besides the sockets */
#define HOST_TEXT_MAX 300

#define SERVE_CLIENTS_DEFAULT 100000u
#define SERVE_BUF_BYTES (16u << 10) /* echo bytes held per client */
#define SERVE_ACCEPTS_PER_EVENT 256
#define SERVE_IDLE_DEFAULT_S 60.0
#define LISTEN_BACKLOG 4096

/* Latency histogram: log-linear, 32 sub-buckets per power of two (~3%). */
#define HIST_SUB_BITS 5u
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64u - HIST_SUB_BITS + 1u) * HIST_SUB)

/* Stream generator constants (splitmix64). */
#define SIZE_SALT 0x5a17e5a17e5a17e5ull

_Static_assert(IO_CHUNK_BYTES % 8 == 0, "chunks hold whole generator words");
_Static_assert(HIST_BUCKETS == 1920, "histogram covers every uint64_t");

enum conn_state {
	CONN_IDLE = 0,	/* connect() not called yet */
	CONN_CONNECTING, /* connect() in progress; deadline = connect timeout */
	CONN_BARRIER,	/* connected; waits until every connection settled (--barrier) */
	CONN_ACTIVE,	/* sending and verifying messages; deadline = idle timeout */
	CONN_HOLD,	/* every byte verified; idle until the deadline (--hold) */
	CONN_FIN_WAIT,	/* every byte verified, SHUT_WR sent; waits for the peer's FIN */
	CONN_OK,	/* verified and closed */
	CONN_FAILED,	/* closed on an error; conn.fail says which */
};

enum fail_reason {
	FAIL_NONE = 0,
	FAIL_CONNECT,	      /* connect() failed: conn.err */
	FAIL_CONNECT_TIMEOUT, /* no answer to the SYN within --connect-timeout */
	FAIL_RESET,	      /* ECONNRESET or EPIPE once connected */
	FAIL_IO,	      /* another socket error once connected: conn.err */
	FAIL_EOF,	      /* the peer's FIN before every byte came back */
	FAIL_MISMATCH,	      /* a wrong byte, or more bytes than were sent */
	FAIL_IDLE_TIMEOUT,    /* no progress for --idle-timeout */
	FAIL_FIN_TIMEOUT,     /* no FIN within --idle-timeout of our SHUT_WR */
	FAIL_RUN_TIMEOUT,     /* still running at the --timeout deadline */
	FAIL_INTERRUPTED,     /* SIGINT or SIGTERM */
	FAIL_REASONS,
};

static const char *const fail_names[FAIL_REASONS] = {
	[FAIL_NONE] = "none",
	[FAIL_CONNECT] = "connect_error",
	[FAIL_CONNECT_TIMEOUT] = "connect_timeout",
	[FAIL_RESET] = "reset",
	[FAIL_IO] = "io_error",
	[FAIL_EOF] = "early_eof",
	[FAIL_MISMATCH] = "mismatch",
	[FAIL_IDLE_TIMEOUT] = "idle_timeout",
	[FAIL_FIN_TIMEOUT] = "fin_timeout",
	[FAIL_RUN_TIMEOUT] = "run_timeout",
	[FAIL_INTERRUPTED] = "interrupted",
};

struct opts {
	struct sockaddr_storage target;
	socklen_t target_len;
	char target_text[HOST_TEXT_MAX];
	struct sockaddr_storage sources[SOURCES_MAX];
	socklen_t source_len;
	unsigned int sources_n;
	uint32_t connections;
	uint64_t messages;	/* per connection, unless duration_ns */
	uint64_t duration_ns;	/* 0: --messages mode */
	uint32_t size_min_bytes;
	uint32_t size_max_bytes;
	uint64_t seed;
	uint64_t connect_rate; /* connections started per second; 0 = no limit */
	uint64_t connect_timeout_ns;
	uint64_t idle_timeout_ns;
	uint64_t timeout_ns; /* whole run */
	bool timeout_set;
	bool idle_timeout_set;
	bool serve_clients_set;
	bool half_close;
	bool abort_close; /* --abort: close with SO_LINGER 0 (RST) */
	uint64_t hold_ns; /* --hold */
	bool barrier;
	bool json;
	bool progress;
	bool verbose;
	bool serve;
	bool serve_discard;
	uint32_t serve_clients_max;
};

/* One client connection. Offsets count bytes of the connection's stream. */
struct conn {
	uint64_t key;	       /* stream key, from --seed and the index */
	uint64_t tx_off;       /* bytes sent */
	uint64_t rx_off;       /* bytes echoed and verified */
	uint64_t msg_end;      /* offset where the current message ends */
	uint64_t msg_start_ns; /* when the current message started */
	uint64_t deadline_ns;  /* of the current wait (connect, idle, FIN) */
	uint64_t msg_index;    /* current message, from 0 */
	uint64_t fail_off;     /* first wrong byte (mismatch), else rx_off at failure */
	int fd;
	int err; /* errno of FAIL_CONNECT, FAIL_RESET, FAIL_IO */
	uint8_t state;
	uint8_t fail;
	uint8_t expected; /* mismatch: the byte of the stream */
	uint8_t got;	  /* mismatch: the byte received */
	bool extra;	  /* mismatch: a byte past what was sent */
	bool want_out;	  /* EPOLLOUT registered */
};

struct hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t buckets[HIST_BUCKETS];
};

struct run {
	const struct opts *o;
	struct conn *conns;
	int epfd;
	uint32_t next_start;	 /* next connection to start */
	uint64_t next_start_ns;	 /* --connect-rate pacing */
	uint64_t start_ns;	 /* the run began */
	uint64_t traffic_start_ns; /* messages began (barrier release) */
	uint64_t deadline_ns;	 /* --timeout */
	uint32_t settled;	 /* connections past CONNECTING */
	uint32_t open;		 /* connected sockets */
	uint32_t open_max;
	uint32_t ok;
	uint32_t failed;
	uint32_t aborted; /* connections closed with a RST (--abort) */
	bool released; /* the barrier let everyone go */
	uint64_t messages;
	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint64_t fail_counts[FAIL_REASONS];
	uint64_t connect_errno[ERRNO_SLOTS];
	uint64_t io_errno[ERRNO_SLOTS];
	struct hist lat;
	uint8_t rbuf[IO_CHUNK_BYTES];
	uint8_t gbuf[IO_CHUNK_BYTES];
};

const char qd_tool_prog[] = "qdtcpload";

/* ---- stream generator ------------------------------------------------------ */

/* Size of message <index> of the stream with <key>, in [min, max]. */
static uint32_t
message_size(const struct opts *o, uint64_t key, uint64_t index)
{
	uint64_t span = (uint64_t)o->size_max_bytes - o->size_min_bytes + 1;

	return o->size_min_bytes + (uint32_t)(qd_tool_mix64((key ^ SIZE_SALT) + index * QD_TOOL_GOLDEN64) % span);
}

/* ---- latency histogram ----------------------------------------------------- */

static unsigned int
hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned int)v;
	unsigned int msb = 63u - (unsigned int)__builtin_clzll(v);
	unsigned int shift = msb - HIST_SUB_BITS;

	return (shift + 1u) * HIST_SUB + (unsigned int)((v >> shift) & (HIST_SUB - 1u));
}

/* Middle of bucket <idx>. */
static uint64_t
hist_value(unsigned int idx)
{
	if (idx < HIST_SUB)
		return idx;
	unsigned int shift = idx / HIST_SUB - 1u;
	uint64_t low = (uint64_t)(HIST_SUB + idx % HIST_SUB) << shift;

	return low + ((1ull << shift) >> 1);
}

static void
hist_add(struct hist *h, uint64_t v_ns)
{
	unsigned int idx = hist_index(v_ns);

	assert(idx < HIST_BUCKETS);
	h->buckets[idx]++;
	if (h->count == 0 || v_ns < h->min_ns)
		h->min_ns = v_ns;
	if (v_ns > h->max_ns)
		h->max_ns = v_ns;
	h->count++;
	h->sum_ns += v_ns;
}

/* The <permille>-th permille of the recorded values, clamped to [min, max]. */
static uint64_t
hist_quantile(const struct hist *h, unsigned int permille)
{
	uint64_t rank, seen = 0;
	unsigned int i;

	assert(permille <= 1000);
	if (h->count == 0)
		return 0;
	rank = (h->count * permille + 999) / 1000;
	if (rank == 0)
		rank = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank)
			break;
	}
	assert(i < HIST_BUCKETS);
	uint64_t v = hist_value(i);

	if (v < h->min_ns)
		v = h->min_ns;
	if (v > h->max_ns)
		v = h->max_ns;
	return v;
}

/* ---- argument parsing ------------------------------------------------------ */

/* Parses the comma-separated numeric addresses of --source into <o>. */
static int
parse_sources(struct opts *o, const char *list)
{
	char buf[SOURCES_MAX * 48];
	char *save = NULL, *tok;

	if (strlen(list) >= sizeof(buf))
		return -E2BIG;
	strcpy(buf, list);
	o->sources_n = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		struct sockaddr_storage *ss = &o->sources[o->sources_n];

		if (o->sources_n == SOURCES_MAX)
			return -E2BIG;
		memset(ss, 0, sizeof(*ss));
		struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET, tok, &in4->sin_addr) == 1) {
			in4->sin_family = AF_INET;
		} else if (inet_pton(AF_INET6, tok, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
		} else {
			fprintf(stderr, "qdtcpload: --source: '%s' is not a numeric IP address\n", tok);
			return -EINVAL;
		}
		o->sources_n++;
	}
	return o->sources_n == 0 ? -EINVAL : 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: qdtcpload --target HOST:PORT [OPTIONS]\n"
"       qdtcpload --serve HOST:PORT [--discard] [SERVER OPTIONS]\n"
"\n"
"Opens many concurrent TCP connections to an echo service through the Linux\n"
"kernel's stack and verifies every byte that comes back. Each connection sends\n"
"a deterministic pseudo-random stream (from --seed and the connection's index)\n"
"cut into messages of random size, one message in flight: the next message\n"
"starts when the whole previous one came back. Echoed bytes are compared with\n"
"the stream regenerated at the same offset, so a wrong byte is reported with\n"
"its connection index and offset. The round trip of every message goes into a\n"
"latency histogram (about 3%% resolution).\n"
"\n"
"A connection passes when every byte it sent came back unchanged and nothing\n"
"more, and, with --half-close, when the peer's FIN followed the last byte.\n"
"Exit status: 0 when every connection passed, 1 when any failed, 2 on a usage\n"
"or set-up error (nothing was tested).\n"
"\n"
"client options:\n"
"  --target HOST:PORT     echo service to test (IPv6 as [ADDR]:PORT)\n"
"  --connections N        concurrent connections, 1..%u (default 100)\n"
"  --messages M           messages per connection, 0..%llu (default 10);\n"
"                         0 only connects and closes\n"
"  --duration S           instead of --messages: start new messages for S\n"
"                         seconds (each connection sends at least one)\n"
"  --min-size A           smallest message in bytes, >= 1 (default 1)\n"
"  --max-size B           largest message in bytes, <= %u (default 4096);\n"
"                         sizes take K, M, G suffixes (powers of 1024)\n"
"  --seed X               seed of the streams and sizes (default 1); the same\n"
"                         seed sends the same bytes\n"
"  --connect-rate R       start at most R connections per second (default 0:\n"
"                         as fast as the loop goes)\n"
"  --source IP[,IP...]    bind connections round-robin to these local addresses\n"
"                         (at most %u). One source has only the ports of\n"
"                         net.ipv4.ip_local_port_range (~28k by default) towards\n"
"                         one target; qdtcpload refuses more connections than\n"
"                         the sources have ports\n"
"  --barrier              send no message until every connection is connected\n"
"                         (or failed), so all N are open at once\n"
"  --half-close           after the last byte came back, shutdown(SHUT_WR) and\n"
"                         expect the peer's FIN (and nothing else); otherwise\n"
"                         close() right away\n"
"  --hold S               after the last byte came back, keep the connection\n"
"                         open and idle S seconds before closing it; a byte,\n"
"                         FIN or RST from the peer meanwhile fails it\n"
"                         (default 0)\n"
"  --abort                close with SO_LINGER 0, so the kernel sends a RST\n"
"                         instead of a FIN (the peer-RST test); excludes\n"
"                         --half-close\n"
"  --connect-timeout S    limit on each connect() (default 10)\n"
"  --idle-timeout S       limit on a connection making no progress, and on the\n"
"                         peer's FIN after our SHUT_WR (default 10)\n"
"  --timeout S            limit on the whole run (default 300, or --duration\n"
"                         plus 60; plus --hold); what is still open then fails\n"
"  --json                 print the result as one JSON object on stdout\n"
"  --progress             print a status line on stderr every second\n"
"  -v, --verbose          print every failure as it happens (stderr)\n"
"\n"
"server options (--serve):\n"
"  --serve HOST:PORT      listen there and echo every byte back; when a client\n"
"                         half-closes, send what is left, then close\n"
"  --discard              read and drop instead of echoing\n"
"  --max-clients N        clients at once; more are accepted and closed\n"
"                         (default %u, or what the hard RLIMIT_NOFILE allows)\n"
"  --idle-timeout S       close clients idle this long (default %.0f)\n"
"  --duration S           exit after S seconds (default: at SIGINT or SIGTERM)\n"
"\n"
"  -h, --help             this help\n"
"\n"
"Descriptors: qdtcpload raises RLIMIT_NOFILE to what N connections need (the\n"
"hard limit too when it may, as root). Output: a summary on stdout (or JSON):\n"
"connections ok and failed, the most open at once, messages, bytes, failures\n"
"by reason, connect and socket errors by errno, mismatches with connection and\n"
"offset, latency percentiles in microseconds, and the first %u failed\n"
"connections.\n"
"\n"
"examples:\n"
"  qdtcpload --serve 127.0.0.1:7007 &\n"
"  qdtcpload --target 127.0.0.1:7007 --connections 5000 --barrier \\\n"
"      --messages 20 --min-size 1 --max-size 16K --half-close --seed 7\n",
		CONNECTIONS_MAX, (unsigned long long)MESSAGES_MAX, MESSAGE_BYTES_MAX, SOURCES_MAX,
		SERVE_CLIENTS_DEFAULT, SERVE_IDLE_DEFAULT_S, REPORT_MAX);
}

enum {
	OPT_TARGET = 256,
	OPT_CONNECTIONS,
	OPT_MESSAGES,
	OPT_DURATION,
	OPT_MIN_SIZE,
	OPT_MAX_SIZE,
	OPT_SEED,
	OPT_CONNECT_RATE,
	OPT_SOURCE,
	OPT_BARRIER,
	OPT_HALF_CLOSE,
	OPT_HOLD,
	OPT_ABORT,
	OPT_CONNECT_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_SERVE,
	OPT_DISCARD,
	OPT_MAX_CLIENTS,
};

static const struct option long_opts[] = {
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "connections", required_argument, NULL, OPT_CONNECTIONS },
	{ "messages", required_argument, NULL, OPT_MESSAGES },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "min-size", required_argument, NULL, OPT_MIN_SIZE },
	{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "connect-rate", required_argument, NULL, OPT_CONNECT_RATE },
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "barrier", no_argument, NULL, OPT_BARRIER },
	{ "half-close", no_argument, NULL, OPT_HALF_CLOSE },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "abort", no_argument, NULL, OPT_ABORT },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "serve", required_argument, NULL, OPT_SERVE },
	{ "discard", no_argument, NULL, OPT_DISCARD },
	{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Applies one option <c> with argument <arg>; -EINVAL after printing why. */
static int
apply_opt(struct opts *o, int c, const char *arg, bool *messages_set)
{
	uint64_t v;

	switch (c) {
	case OPT_TARGET:
	case OPT_SERVE:
		if (qd_tool_parse_hostport(arg, c == OPT_SERVE, &o->target, &o->target_len) != 0)
			return qd_tool_bad_value(c == OPT_SERVE ? "serve" : "target", arg,
					 "HOST:PORT with a resolvable host and a port 1..65535");
		snprintf(o->target_text, sizeof(o->target_text), "%s", arg);
		o->serve = c == OPT_SERVE;
		return 0;
	case OPT_CONNECTIONS:
		if (qd_tool_parse_u64(arg, 1, CONNECTIONS_MAX, &v) != 0)
			return qd_tool_bad_value("connections", arg, "1..1000000");
		o->connections = (uint32_t)v;
		return 0;
	case OPT_MESSAGES:
		if (qd_tool_parse_u64(arg, 0, MESSAGES_MAX, &o->messages) != 0)
			return qd_tool_bad_value("messages", arg, "0..1000000000");
		*messages_set = true;
		return 0;
	case OPT_DURATION:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->duration_ns) != 0)
			return qd_tool_bad_value("duration", arg, "seconds > 0");
		return 0;
	case OPT_MIN_SIZE:
	case OPT_MAX_SIZE:
		if (qd_tool_parse_u64(arg, 1, MESSAGE_BYTES_MAX, &v) != 0)
			return qd_tool_bad_value(c == OPT_MIN_SIZE ? "min-size" : "max-size", arg,
					 "bytes, 1..16M");
		*(c == OPT_MIN_SIZE ? &o->size_min_bytes : &o->size_max_bytes) = (uint32_t)v;
		return 0;
	case OPT_SEED:
		if (qd_tool_parse_u64(arg, 0, UINT64_MAX, &o->seed) != 0)
			return qd_tool_bad_value("seed", arg, "an unsigned 64-bit integer");
		return 0;
	case OPT_CONNECT_RATE:
		if (qd_tool_parse_u64(arg, 0, CONNECT_RATE_MAX, &o->connect_rate) != 0)
			return qd_tool_bad_value("connect-rate", arg, "connections per second, 0..10000000");
		return 0;
	case OPT_SOURCE:
		if (parse_sources(o, arg) != 0)
			return qd_tool_bad_value("source", arg, "at most 64 comma-separated IP addresses");
		return 0;
	case OPT_CONNECT_TIMEOUT:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->connect_timeout_ns) != 0)
			return qd_tool_bad_value("connect-timeout", arg, "seconds > 0");
		return 0;
	case OPT_IDLE_TIMEOUT:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->idle_timeout_ns) != 0)
			return qd_tool_bad_value("idle-timeout", arg, "seconds > 0");
		o->idle_timeout_set = true;
		return 0;
	case OPT_TIMEOUT:
		if (qd_tool_parse_seconds(arg, 0.001, SECONDS_MAX, &o->timeout_ns) != 0)
			return qd_tool_bad_value("timeout", arg, "seconds > 0");
		o->timeout_set = true;
		return 0;
	case OPT_HOLD:
		if (qd_tool_parse_seconds(arg, 0.0, SECONDS_MAX, &o->hold_ns) != 0)
			return qd_tool_bad_value("hold", arg, "seconds >= 0");
		return 0;
	case OPT_MAX_CLIENTS:
		if (qd_tool_parse_u64(arg, 1, CONNECTIONS_MAX, &v) != 0)
			return qd_tool_bad_value("max-clients", arg, "1..1000000");
		o->serve_clients_max = (uint32_t)v;
		o->serve_clients_set = true;
		return 0;
	case OPT_BARRIER: o->barrier = true; return 0;
	case OPT_HALF_CLOSE: o->half_close = true; return 0;
	case OPT_ABORT: o->abort_close = true; return 0;
	case OPT_JSON: o->json = true; return 0;
	case OPT_PROGRESS: o->progress = true; return 0;
	case OPT_DISCARD: o->serve_discard = true; return 0;
	case 'v': o->verbose = true; return 0;
	default: return -EINVAL;
	}
}

/* Checks the options against each other; -EINVAL after printing why. */
static int
check_opts(struct opts *o, bool messages_set)
{
	if (o->target_len == 0) {
		fprintf(stderr, "qdtcpload: --target HOST:PORT (or --serve HOST:PORT) is required\n");
		return -EINVAL;
	}
	if (o->serve)
		return 0;
	if (o->serve_discard) {
		fprintf(stderr, "qdtcpload: --discard goes with --serve\n");
		return -EINVAL;
	}
	if (messages_set && o->duration_ns != 0) {
		fprintf(stderr, "qdtcpload: --messages and --duration exclude each other\n");
		return -EINVAL;
	}
	if (o->size_min_bytes > o->size_max_bytes) {
		fprintf(stderr, "qdtcpload: --min-size %u is above --max-size %u\n",
			o->size_min_bytes, o->size_max_bytes);
		return -EINVAL;
	}
	if (o->abort_close && o->half_close) {
		fprintf(stderr, "qdtcpload: --abort and --half-close exclude each other\n");
		return -EINVAL;
	}
	if (!o->timeout_set && o->duration_ns != 0)
		o->timeout_ns = o->duration_ns + 60 * NS_PER_S;
	if (!o->timeout_set)
		o->timeout_ns += o->hold_ns;
	if (o->duration_ns != 0 && o->timeout_ns <= o->duration_ns) {
		fprintf(stderr, "qdtcpload: --timeout must be longer than --duration\n");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < o->sources_n; i++) {
		if (o->sources[i].ss_family != o->target.ss_family) {
			fprintf(stderr, "qdtcpload: --source addresses must be of the target's "
					"address family\n");
			return -EINVAL;
		}
	}
	o->source_len = o->target.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						       : sizeof(struct sockaddr_in6);
	return 0;
}

/* Fills <o> from the command line. Returns 0, 1 after --help, or -EINVAL. */
static int
parse_args(struct opts *o, int argc, char **argv)
{
	bool messages_set = false;
	int c;

	*o = (struct opts){
		.connections = 100,
		.messages = 10,
		.size_min_bytes = 1,
		.size_max_bytes = 4096,
		.seed = 1,
		.connect_timeout_ns = 10 * NS_PER_S,
		.idle_timeout_ns = 10 * NS_PER_S,
		.timeout_ns = 300 * NS_PER_S,
		.serve_clients_max = SERVE_CLIENTS_DEFAULT,
	};
	while ((c = getopt_long(argc, argv, "hv", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?') {
			fprintf(stderr, "qdtcpload: see qdtcpload --help\n");
			return -EINVAL;
		}
		if (apply_opt(o, c, optarg, &messages_set) != 0)
			return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "qdtcpload: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return check_opts(o, messages_set);
}

/* ---- set-up ----------------------------------------------------------------- */

/* Raises RLIMIT_NOFILE to at least <need> descriptors (the hard limit too
 * when the process may). */
static int
raise_nofile(uint64_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		rl.rlim_max = need;
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		int err = errno;

		fprintf(stderr,
			"qdtcpload: cannot raise RLIMIT_NOFILE to %" PRIu64 ": %s (run as root, raise "
			"'ulimit -Hn', or check fs.nr_open)\n", need, strerror(err));
		return -err;
	}
	return 0;
}

/* Refuses more connections than the sources have ephemeral ports towards
 * one target (ports in TIME_WAIT from earlier runs count against it too). */
static int
check_port_range(const struct opts *o)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	unsigned int lo, hi;

	if (f == NULL)
		return 0;
	int n = fscanf(f, "%u %u", &lo, &hi);

	fclose(f);
	if (n != 2 || hi < lo)
		return 0;
	uint64_t ports = (uint64_t)(hi - lo + 1) * (o->sources_n == 0 ? 1 : o->sources_n);

	if (o->connections <= ports)
		return 0;
	fprintf(stderr,
		"qdtcpload: %u connections need more than the %" PRIu64 " ephemeral ports of %u "
		"source address(es) (net.ipv4.ip_local_port_range %u-%u); give more addresses "
		"with --source or widen the range\n",
		o->connections, ports, o->sources_n == 0 ? 1 : o->sources_n, lo, hi);
	return -EADDRNOTAVAIL;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = qd_tool_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ---- client: one connection ------------------------------------------------ */

static void conn_begin(struct run *r, struct conn *c, uint32_t index);

static uint32_t
conn_index(const struct run *r, const struct conn *c)
{
	return (uint32_t)(c - r->conns);
}

static void
count_errno(uint64_t *slots, int err)
{
	slots[err > 0 && err < (int)ERRNO_SLOTS ? err : 0]++;
}

/* Closes <c> and records it as failed with <reason> (and errno <err>). */
static void
conn_fail(struct run *r, struct conn *c, enum fail_reason reason, int err)
{
	assert(c->state != CONN_OK && c->state != CONN_FAILED);
	assert(reason > FAIL_NONE && reason < FAIL_REASONS);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
		if (c->state >= CONN_BARRIER)
			r->open--;
	}
	if (c->state <= CONN_CONNECTING)
		r->settled++;
	c->state = CONN_FAILED;
	c->fail = (uint8_t)reason;
	c->err = err;
	if (reason != FAIL_MISMATCH)
		c->fail_off = c->rx_off;
	r->failed++;
	r->fail_counts[reason]++;
	if (reason == FAIL_CONNECT)
		count_errno(r->connect_errno, err);
	else if (reason == FAIL_RESET || reason == FAIL_IO)
		count_errno(r->io_errno, err);
	if (r->o->verbose)
		fprintf(stderr, "qdtcpload: connection %u failed: %s%s%s at offset %" PRIu64
			" (sent %" PRIu64 ")\n", conn_index(r, c), fail_names[reason],
			err != 0 ? " " : "", err != 0 ? qd_tool_errno_name(err) : "", c->fail_off,
			c->tx_off);
}

static void
conn_done(struct run *r, struct conn *c)
{
	assert(c->fd >= 0 && c->rx_off == c->tx_off);
	if (r->o->abort_close) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		/* close() then sends a RST and drops the socket at once. */
		if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0) {
			conn_fail(r, c, FAIL_IO, errno);
			return;
		}
		r->aborted++;
	}
	close(c->fd);
	c->fd = -1;
	c->state = CONN_OK;
	r->open--;
	r->ok++;
}

/* Sets EPOLLOUT on <c> when <want>. */
static int
conn_want_out(struct run *r, struct conn *c, bool want)
{
	if (c->want_out == want)
		return 0;
	struct epoll_event ev = {
		.events = EPOLLIN | (want ? EPOLLOUT : 0u),
		.data.u32 = conn_index(r, c),
	};

	if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		return -errno;
	c->want_out = want;
	return 0;
}

/* Classifies a socket error of a connected <c>. */
static void
conn_sock_error(struct run *r, struct conn *c, int err)
{
	if (err == ECONNRESET || err == EPIPE)
		conn_fail(r, c, FAIL_RESET, err);
	else if (err == ETIMEDOUT)
		conn_fail(r, c, FAIL_IDLE_TIMEOUT, err);
	else
		conn_fail(r, c, FAIL_IO, err);
}

/* Sends what is left of the current message, at most WRITES_PER_EVENT
 * chunks; registers EPOLLOUT while bytes remain. */
static void
conn_write(struct run *r, struct conn *c, uint64_t now)
{
	unsigned int i;

	assert(c->state == CONN_ACTIVE && c->tx_off <= c->msg_end);
	for (i = 0; i < WRITES_PER_EVENT && c->tx_off < c->msg_end; i++) {
		uint64_t left = c->msg_end - c->tx_off;
		size_t len = left < IO_CHUNK_BYTES ? (size_t)left : IO_CHUNK_BYTES;

		qd_tool_stream_fill(c->key, c->tx_off, r->gbuf, len);
		ssize_t n = send(c->fd, r->gbuf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			conn_sock_error(r, c, errno);
			return;
		}
		c->tx_off += (uint64_t)n;
		r->bytes_sent += (uint64_t)n;
		c->deadline_ns = now + r->o->idle_timeout_ns;
	}
	int err = conn_want_out(r, c, c->tx_off < c->msg_end);

	if (err != 0)
		conn_fail(r, c, FAIL_IO, -err);
}

/* Starts message <c>->msg_index, or ends the stream when there is none. */
static void
conn_next_message(struct run *r, struct conn *c, uint64_t now)
{
	const struct opts *o = r->o;
	bool more = o->duration_ns == 0 ? c->msg_index < o->messages
					: c->msg_index == 0 ||
						  now < r->traffic_start_ns + o->duration_ns;

	if (more) {
		c->msg_end = c->tx_off + message_size(o, c->key, c->msg_index);
		c->msg_start_ns = qd_tool_now_ns();
		c->deadline_ns = now + o->idle_timeout_ns;
		conn_write(r, c, now);
		return;
	}
	if (o->hold_ns != 0 && c->state != CONN_HOLD) {
		/* The sweep ends the hold and comes back here. */
		c->state = CONN_HOLD;
		c->deadline_ns = now + o->hold_ns;
		int err = conn_want_out(r, c, false);

		if (err != 0)
			conn_fail(r, c, FAIL_IO, -err);
		return;
	}
	if (!o->half_close) {
		conn_done(r, c);
		return;
	}
	if (shutdown(c->fd, SHUT_WR) != 0) {
		conn_sock_error(r, c, errno);
		return;
	}
	c->state = CONN_FIN_WAIT;
	c->deadline_ns = now + o->idle_timeout_ns;
	int err = conn_want_out(r, c, false);

	if (err != 0)
		conn_fail(r, c, FAIL_IO, -err);
}

/* Checks <n> received bytes in r->rbuf against the stream at rx_off. Returns
 * false after failing <c> on a mismatch. */
static bool
conn_verify(struct run *r, struct conn *c, size_t n)
{
	size_t good = n;

	if (c->rx_off + n > c->tx_off) {
		/* The peer sent bytes we never did. */
		good = (size_t)(c->tx_off - c->rx_off);
	}
	qd_tool_stream_fill(c->key, c->rx_off, r->gbuf, good);
	if (memcmp(r->gbuf, r->rbuf, good) == 0 && good == n)
		return true;
	size_t i = 0;

	while (i < good && r->gbuf[i] == r->rbuf[i])
		i++;
	c->fail_off = c->rx_off + i;
	c->got = r->rbuf[i];
	c->extra = i == good;
	c->expected = c->extra ? 0 : r->gbuf[i];
	conn_fail(r, c, FAIL_MISMATCH, 0);
	return false;
}

/* Reads and verifies what the peer sent, at most READS_PER_EVENT chunks;
 * completes messages and handles the peer's FIN. */
static void
conn_read(struct run *r, struct conn *c, uint64_t now)
{
	for (unsigned int i = 0; i < READS_PER_EVENT; i++) {
		ssize_t n = recv(c->fd, r->rbuf, sizeof(r->rbuf), MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_sock_error(r, c, errno);
			return;
		}
		if (n == 0) {
			if (c->state == CONN_FIN_WAIT)
				conn_done(r, c);
			else
				conn_fail(r, c, FAIL_EOF, 0);
			return;
		}
		if (!conn_verify(r, c, (size_t)n))
			return;
		c->rx_off += (uint64_t)n;
		r->bytes_received += (uint64_t)n;
		c->deadline_ns = now + r->o->idle_timeout_ns;
		if (c->state == CONN_ACTIVE && c->rx_off == c->msg_end) {
			hist_add(&r->lat, qd_tool_now_ns() - c->msg_start_ns);
			r->messages++;
			c->msg_index++;
			conn_next_message(r, c, now);
			if (c->state != CONN_ACTIVE && c->state != CONN_FIN_WAIT)
				return;
		}
	}
}

/* <c> finished its handshake: start its messages, or wait at the barrier. */
static void
conn_established(struct run *r, struct conn *c, uint64_t now)
{
	r->settled++;
	r->open++;
	if (r->open > r->open_max)
		r->open_max = r->open;
	if (r->o->barrier && !r->released) {
		c->state = CONN_BARRIER;
		c->deadline_ns = UINT64_MAX;
		int err = conn_want_out(r, c, false);

		if (err != 0)
			conn_fail(r, c, FAIL_IO, -err);
		return;
	}
	c->state = CONN_ACTIVE;
	conn_next_message(r, c, now);
}

/* Opens the socket of connection <index> and calls connect(). */
static void
conn_start(struct run *r, uint32_t index, uint64_t now)
{
	const struct opts *o = r->o;
	struct conn *c = &r->conns[index];
	int one = 1;

	conn_begin(r, c, index);
	c->state = CONN_CONNECTING;
	c->deadline_ns = now + o->connect_timeout_ns;
	c->fd = socket(o->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(r, c, FAIL_CONNECT, errno);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->sources_n != 0) {
		const struct sockaddr_storage *src = &o->sources[index % o->sources_n];

		/* The port is chosen at connect() against the whole 4-tuple. */
		setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(c->fd, (const struct sockaddr *)src, o->source_len) != 0) {
			conn_fail(r, c, FAIL_CONNECT, errno);
			return;
		}
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = index };

	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		conn_fail(r, c, FAIL_CONNECT, errno);
		return;
	}
	c->want_out = true;
	if (connect(c->fd, (const struct sockaddr *)&o->target, o->target_len) == 0)
		conn_established(r, c, now);
	else if (errno != EINPROGRESS)
		conn_fail(r, c, FAIL_CONNECT, errno);
}

/* Resets <c> for connection <index>. */
static void
conn_begin(struct run *r, struct conn *c, uint32_t index)
{
	*c = (struct conn){ .key = qd_tool_stream_key(r->o->seed, index), .fd = -1 };
}

/* Handles epoll <events> of connection <index>. */
static void
conn_event(struct run *r, uint32_t index, uint32_t events, uint64_t now)
{
	struct conn *c = &r->conns[index];

	assert(index < r->o->connections);
	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err == 0 && (events & (EPOLLOUT | EPOLLIN)) != 0)
			conn_established(r, c, now);
		else if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0)
			conn_fail(r, c, FAIL_CONNECT, err != 0 ? err : ECONNABORTED);
		return;
	}
	if (c->state != CONN_ACTIVE && c->state != CONN_FIN_WAIT && c->state != CONN_BARRIER &&
	    c->state != CONN_HOLD)
		return; /* closed earlier in this batch */
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0)
		conn_read(r, c, now);
	if ((events & EPOLLOUT) != 0 && c->state == CONN_ACTIVE)
		conn_write(r, c, now);
}

/* ---- client: the run --------------------------------------------------------- */

/* Fails connections whose current wait ran out; with <all_reason>, fails
 * every connection still running with that reason. */
static void
sweep(struct run *r, uint64_t now, enum fail_reason all_reason)
{
	for (uint32_t i = 0; i < r->next_start; i++) {
		struct conn *c = &r->conns[i];

		if (c->state == CONN_OK || c->state == CONN_FAILED)
			continue;
		if (all_reason != FAIL_NONE)
			conn_fail(r, c, all_reason, 0);
		else if (now < c->deadline_ns)
			continue;
		else if (c->state == CONN_HOLD)
			conn_next_message(r, c, now); /* held long enough: close */
		else if (c->state == CONN_CONNECTING)
			conn_fail(r, c, FAIL_CONNECT_TIMEOUT, 0);
		else if (c->state == CONN_FIN_WAIT)
			conn_fail(r, c, FAIL_FIN_TIMEOUT, 0);
		else
			conn_fail(r, c, FAIL_IDLE_TIMEOUT, 0);
	}
	if (all_reason != FAIL_NONE) {
		for (uint32_t i = r->next_start; i < r->o->connections; i++) {
			conn_begin(r, &r->conns[i], i);
			r->conns[i].state = CONN_CONNECTING;
			conn_fail(r, &r->conns[i], all_reason, 0);
		}
		r->next_start = r->o->connections;
	}
}

/* Starts the connections that are due under --connect-rate. */
static void
start_due(struct run *r, uint64_t now)
{
	const struct opts *o = r->o;
	uint64_t interval_ns = o->connect_rate == 0 ? 0 : NS_PER_S / o->connect_rate;

	for (unsigned int n = 0; n < STARTS_PER_LOOP && r->next_start < o->connections; n++) {
		if (interval_ns != 0 && now < r->next_start_ns)
			return;
		conn_start(r, r->next_start, now);
		r->next_start++;
		r->next_start_ns += interval_ns;
		if (r->next_start_ns + SWEEP_NS < now)
			r->next_start_ns = now; /* fell behind: no burst to catch up */
	}
}

/* Lets every connection waiting at the barrier start its messages. */
static void
release_barrier(struct run *r, uint64_t now)
{
	r->released = true;
	r->traffic_start_ns = now;
	for (uint32_t i = 0; i < r->o->connections; i++) {
		struct conn *c = &r->conns[i];

		if (c->state == CONN_BARRIER) {
			c->state = CONN_ACTIVE;
			conn_next_message(r, c, now);
		}
	}
}

/* Milliseconds epoll_wait may sleep. */
static int
wait_ms(const struct run *r, uint64_t now, uint64_t next_sweep_ns)
{
	uint64_t until = next_sweep_ns;

	if (r->next_start < r->o->connections) {
		if (r->o->connect_rate == 0)
			return 0;
		if (r->next_start_ns < until)
			until = r->next_start_ns;
	}
	if (r->deadline_ns < until)
		until = r->deadline_ns;
	if (until <= now)
		return 0;
	return (int)((until - now + NS_PER_MS - 1) / NS_PER_MS);
}

static void
print_progress(const struct run *r, uint64_t now)
{
	fprintf(stderr, "qdtcpload: %.1fs started %u open %u ok %u failed %u messages %" PRIu64
		" bytes %" PRIu64 "\n", (double)(now - r->start_ns) / (double)NS_PER_S,
		r->next_start, r->open, r->ok, r->failed, r->messages, r->bytes_received);
}

/* Runs the client until every connection passed or failed. */
static void
run_loop(struct run *r)
{
	static struct epoll_event events[EVENTS_MAX];
	uint64_t now = qd_tool_now_ns(), next_sweep_ns = now + SWEEP_NS, next_progress_ns = now + NS_PER_S;

	r->start_ns = r->traffic_start_ns = r->next_start_ns = now;
	r->deadline_ns = now + r->o->timeout_ns;
	while (r->ok + r->failed < r->o->connections) {
		start_due(r, now);
		if (r->o->barrier && !r->released && r->settled == r->o->connections)
			release_barrier(r, now);
		int n = epoll_wait(r->epfd, events, EVENTS_MAX, wait_ms(r, now, next_sweep_ns));

		if (n < 0 && errno != EINTR) {
			perror("qdtcpload: epoll_wait");
			sweep(r, now, FAIL_INTERRUPTED);
			return;
		}
		now = qd_tool_now_ns();
		for (int i = 0; i < n; i++)
			conn_event(r, events[i].data.u32, events[i].events, now);
		if (qd_tool_stop_signal != 0) {
			sweep(r, now, FAIL_INTERRUPTED);
		} else if (now >= r->deadline_ns) {
			sweep(r, now, FAIL_RUN_TIMEOUT);
		} else if (now >= next_sweep_ns) {
			sweep(r, now, FAIL_NONE);
			next_sweep_ns = now + SWEEP_NS;
		}
		if (r->o->progress && now >= next_progress_ns) {
			print_progress(r, now);
			next_progress_ns += NS_PER_S;
		}
	}
}

/* ---- client: report ---------------------------------------------------------- */

static void
json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void
json_errnos(FILE *f, const char *name, const uint64_t *slots)
{
	bool first = true;

	fprintf(f, "\"%s\":{", name);
	for (int e = 0; e < (int)ERRNO_SLOTS; e++) {
		if (slots[e] == 0)
			continue;
		fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", e == 0 ? "other" : qd_tool_errno_name(e),
			slots[e]);
		first = false;
	}
	fputc('}', f);
}

static void
json_failures(FILE *f, const struct run *r)
{
	unsigned int listed = 0;

	fputs("\"failures\":[", f);
	for (uint32_t i = 0; i < r->o->connections && listed < REPORT_MAX; i++) {
		const struct conn *c = &r->conns[i];

		if (c->state != CONN_FAILED)
			continue;
		fprintf(f, "%s{\"connection\":%u,\"reason\":\"%s\",\"offset\":%" PRIu64
			",\"sent\":%" PRIu64, listed == 0 ? "" : ",", i, fail_names[c->fail],
			c->fail_off, c->tx_off);
		if (c->err != 0)
			fprintf(f, ",\"errno\":\"%s\"", qd_tool_errno_name(c->err));
		if (c->fail == FAIL_MISMATCH && c->extra)
			fprintf(f, ",\"expected\":null,\"got\":%u", c->got);
		else if (c->fail == FAIL_MISMATCH)
			fprintf(f, ",\"expected\":%u,\"got\":%u", c->expected, c->got);
		fputc('}', f);
		listed++;
	}
	fputc(']', f);
}

static void
report_json(const struct run *r, uint64_t elapsed_ns)
{
	const struct opts *o = r->o;
	FILE *f = stdout;

	fputs("{\"tool\":\"qdtcpload\",\"target\":", f);
	json_string(f, o->target_text);
	fprintf(f, ",\"seed\":%" PRIu64 ",\"connections\":%u,\"connections_ok\":%u,"
		"\"connections_failed\":%u,\"connections_open_max\":%u,\"messages\":%" PRIu64
		",\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64
		",\"mismatches\":%" PRIu64 ",\"resets\":%" PRIu64 ",\"aborted\":%u,"
		"\"duration_s\":%.3f,",
		o->seed, o->connections, r->ok, r->failed, r->open_max, r->messages, r->bytes_sent,
		r->bytes_received, r->fail_counts[FAIL_MISMATCH], r->fail_counts[FAIL_RESET],
		r->aborted, (double)elapsed_ns / (double)NS_PER_S);
	fputs("\"failed_by_reason\":{", f);
	for (int i = FAIL_NONE + 1; i < FAIL_REASONS; i++)
		fprintf(f, "%s\"%s\":%" PRIu64, i == FAIL_NONE + 1 ? "" : ",", fail_names[i],
			r->fail_counts[i]);
	fputs("},", f);
	json_errnos(f, "connect_errors", r->connect_errno);
	fputc(',', f);
	json_errnos(f, "socket_errors", r->io_errno);
	fprintf(f, ",\"latency_us\":{\"count\":%" PRIu64 ",\"min\":%.1f,\"mean\":%.1f,"
		"\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},",
		r->lat.count, (double)r->lat.min_ns / 1e3,
		r->lat.count == 0 ? 0.0 : (double)r->lat.sum_ns / (double)r->lat.count / 1e3,
		(double)hist_quantile(&r->lat, 500) / 1e3, (double)hist_quantile(&r->lat, 900) / 1e3,
		(double)hist_quantile(&r->lat, 990) / 1e3, (double)hist_quantile(&r->lat, 999) / 1e3,
		(double)r->lat.max_ns / 1e3);
	json_failures(f, r);
	fprintf(f, ",\"ok\":%s}\n", r->ok == o->connections ? "true" : "false");
}

static void
text_errnos(FILE *f, const char *what, const uint64_t *slots)
{
	bool any = false;

	fprintf(f, "%s:", what);
	for (int e = 0; e < (int)ERRNO_SLOTS; e++) {
		if (slots[e] == 0)
			continue;
		fprintf(f, " %s %" PRIu64, e == 0 ? "other" : qd_tool_errno_name(e), slots[e]);
		any = true;
	}
	fprintf(f, "%s\n", any ? "" : " none");
}

static void
text_failures(FILE *f, const struct run *r)
{
	unsigned int listed = 0;

	for (uint32_t i = 0; i < r->o->connections && listed < REPORT_MAX; i++) {
		const struct conn *c = &r->conns[i];

		if (c->state != CONN_FAILED)
			continue;
		fprintf(f, "failed: connection %u: %s", i, fail_names[c->fail]);
		if (c->err != 0)
			fprintf(f, " (%s)", qd_tool_errno_name(c->err));
		if (c->fail == FAIL_MISMATCH && c->extra)
			fprintf(f, ": byte 0x%02x at offset %" PRIu64 " after the %" PRIu64
				" bytes sent", c->got, c->fail_off, c->tx_off);
		else if (c->fail == FAIL_MISMATCH)
			fprintf(f, ": offset %" PRIu64 " expected 0x%02x got 0x%02x", c->fail_off,
				c->expected, c->got);
		else
			fprintf(f, ": %" PRIu64 " of %" PRIu64 " bytes back", c->fail_off, c->tx_off);
		fputc('\n', f);
		listed++;
	}
	if (r->failed > listed)
		fprintf(f, "failed: ... and %u more\n", r->failed - listed);
}

static void
report_text(const struct run *r, uint64_t elapsed_ns)
{
	const struct opts *o = r->o;
	FILE *f = stdout;
	double secs = (double)elapsed_ns / (double)NS_PER_S;

	fprintf(f, "target: %s, seed %" PRIu64 "\n", o->target_text, o->seed);
	fprintf(f, "connections: %u ok, %u failed of %u (open at once: %u)\n", r->ok, r->failed,
		o->connections, r->open_max);
	fprintf(f, "messages: %" PRIu64 ", bytes sent %" PRIu64 ", received and verified %" PRIu64
		"\n", r->messages, r->bytes_sent, r->bytes_received);
	fprintf(f, "failures:");
	for (int i = FAIL_NONE + 1; i < FAIL_REASONS; i++)
		if (r->fail_counts[i] != 0)
			fprintf(f, " %s %" PRIu64, fail_names[i], r->fail_counts[i]);
	fprintf(f, "%s\n", r->failed == 0 ? " none" : "");
	fprintf(f, "mismatches: %" PRIu64 ", resets: %" PRIu64 ", aborted by us: %u\n",
		r->fail_counts[FAIL_MISMATCH], r->fail_counts[FAIL_RESET], r->aborted);
	text_errnos(f, "connect errors", r->connect_errno);
	text_errnos(f, "socket errors", r->io_errno);
	fprintf(f, "latency_us: min %.1f p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f "
		"(%" PRIu64 " messages)\n", (double)r->lat.min_ns / 1e3,
		(double)hist_quantile(&r->lat, 500) / 1e3, (double)hist_quantile(&r->lat, 900) / 1e3,
		(double)hist_quantile(&r->lat, 990) / 1e3, (double)hist_quantile(&r->lat, 999) / 1e3,
		(double)r->lat.max_ns / 1e3, r->lat.count);
	fprintf(f, "duration: %.3f s, %.0f messages/s, %.1f MB/s each way\n", secs,
		secs > 0 ? (double)r->messages / secs : 0.0,
		secs > 0 ? (double)r->bytes_received / secs / 1e6 : 0.0);
	text_failures(f, r);
	if (r->connect_errno[EADDRNOTAVAIL] != 0)
		fprintf(f, "hint: EADDRNOTAVAIL means the ephemeral ports ran out (TIME_WAIT of "
			"earlier runs counts): add --source addresses\n");
	fprintf(f, "result: %s\n", r->ok == o->connections ? "PASS" : "FAIL");
}

static int
client_main(const struct opts *o)
{
	struct run *r = calloc(1, sizeof(*r));

	if (r == NULL || check_port_range(o) != 0 || raise_nofile(o->connections + FD_SPARE) != 0) {
		free(r);
		return 2;
	}
	r->o = o;
	r->conns = calloc(o->connections, sizeof(*r->conns));
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->conns == NULL || r->epfd < 0) {
		fprintf(stderr, "qdtcpload: cannot allocate %u connections: %s\n", o->connections,
			strerror(errno));
		return 2;
	}
	for (uint32_t i = 0; i < o->connections; i++)
		r->conns[i].fd = -1;
	run_loop(r);
	uint64_t elapsed_ns = qd_tool_now_ns() - r->start_ns;

	assert(r->ok + r->failed == o->connections && r->open == 0);
	if (o->json)
		report_json(r, elapsed_ns);
	else
		report_text(r, elapsed_ns);
	int rc = r->ok == o->connections ? 0 : 1;

	close(r->epfd);
	free(r->conns);
	free(r);
	return rc;
}

/* ---- server ------------------------------------------------------------------ */

struct sclient {
	int fd;
	bool eof;	   /* the client's FIN arrived */
	uint32_t off;	   /* buf[off..len) waits to be echoed */
	uint32_t len;
	uint32_t events;   /* registered epoll events */
	uint64_t idle_ns;  /* closed when idle past this */
	uint8_t *buf;	   /* SERVE_BUF_BYTES, echo only */
};

struct server {
	const struct opts *o;
	int epfd;
	int lfd;
	struct sclient *clients;
	uint32_t *free_slots; /* stack of free client slots */
	uint32_t free_n;
	uint64_t accepted, refused, closed, resets, idle_closed, bytes;
	uint8_t scratch[IO_CHUNK_BYTES];
};

static void
server_close(struct server *s, uint32_t slot, bool idle)
{
	struct sclient *cl = &s->clients[slot];

	assert(cl->fd >= 0 && s->free_n < s->o->serve_clients_max);
	close(cl->fd);
	free(cl->buf);
	*cl = (struct sclient){ .fd = -1 };
	s->free_slots[s->free_n++] = slot;
	s->closed++;
	s->idle_closed += idle;
}

static void
server_io_error(struct server *s, uint32_t slot, int err)
{
	s->resets += err == ECONNRESET || err == EPIPE;
	server_close(s, slot, false);
}

/* Reads what fits into the echo buffer of <cl>; returns -errno on error. */
static int
server_fill(struct sclient *cl)
{
	for (unsigned int i = 0; i < READS_PER_EVENT && !cl->eof && cl->len < SERVE_BUF_BYTES; i++) {
		if (cl->off != 0) {
			memmove(cl->buf, cl->buf + cl->off, cl->len - cl->off);
			cl->len -= cl->off;
			cl->off = 0;
		}
		ssize_t n = recv(cl->fd, cl->buf + cl->len, SERVE_BUF_BYTES - cl->len, MSG_DONTWAIT);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		if (n == 0)
			cl->eof = true;
		cl->len += (uint32_t)n;
	}
	return 0;
}

/* Echoes what <cl> holds; returns -errno on error. */
static int
server_flush(struct server *s, struct sclient *cl)
{
	while (cl->off < cl->len) {
		ssize_t n = send(cl->fd, cl->buf + cl->off, cl->len - cl->off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		cl->off += (uint32_t)n;
		s->bytes += (uint64_t)n;
	}
	cl->off = cl->len = 0;
	return 0;
}

/* Reads and drops; returns -errno on error. */
static int
server_drain(struct server *s, struct sclient *cl)
{
	for (unsigned int i = 0; i < READS_PER_EVENT && !cl->eof; i++) {
		ssize_t n = recv(cl->fd, s->scratch, sizeof(s->scratch), MSG_DONTWAIT);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		cl->eof = n == 0;
		s->bytes += (uint64_t)n;
	}
	return 0;
}

static void
server_client_event(struct server *s, uint32_t slot, uint64_t now)
{
	struct sclient *cl = &s->clients[slot];
	int err;

	if (cl->fd < 0)
		return;
	cl->idle_ns = now + s->o->idle_timeout_ns;
	if (s->o->serve_discard)
		err = server_drain(s, cl);
	else if ((err = server_fill(cl)) == 0)
		err = server_flush(s, cl);
	if (err != 0) {
		server_io_error(s, slot, -err);
		return;
	}
	if (cl->eof && cl->off == cl->len) {
		server_close(s, slot, false); /* their FIN, all echoed: our FIN */
		return;
	}
	uint32_t want = (cl->eof || cl->len == SERVE_BUF_BYTES ? 0u : (uint32_t)EPOLLIN) |
			(cl->off < cl->len ? (uint32_t)EPOLLOUT : 0u);

	if (want != cl->events) {
		struct epoll_event ev = { .events = want, .data.u64 = (uint64_t)slot + 1 };

		if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, cl->fd, &ev) != 0) {
			server_io_error(s, slot, errno);
			return;
		}
		cl->events = want;
	}
}

static void
server_accept(struct server *s, uint64_t now)
{
	int one = 1;

	for (unsigned int i = 0; i < SERVE_ACCEPTS_PER_EVENT; i++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return; /* EAGAIN, or a client gone before accept(): both fine */
		if (s->free_n == 0) {
			close(fd);
			s->refused++;
			continue;
		}
		uint32_t slot = s->free_slots[--s->free_n];
		struct sclient *cl = &s->clients[slot];

		*cl = (struct sclient){ .fd = fd, .events = EPOLLIN,
					.idle_ns = now + s->o->idle_timeout_ns };
		s->accepted++;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)slot + 1 };

		if ((!s->o->serve_discard && (cl->buf = malloc(SERVE_BUF_BYTES)) == NULL) ||
		    epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
			server_io_error(s, slot, errno);
	}
}

static int
server_listen(struct server *s)
{
	const struct opts *o = s->o;
	int one = 1;

	s->lfd = socket(o->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -errno;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (const struct sockaddr *)&o->target, o->target_len) != 0 ||
	    listen(s->lfd, LISTEN_BACKLOG) != 0)
		return -errno;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) != 0)
		return -errno;
	return 0;
}

static void
server_loop(struct server *s)
{
	static struct epoll_event events[EVENTS_MAX];
	uint64_t now = qd_tool_now_ns(), next_sweep_ns = now + NS_PER_S;
	uint64_t end_ns = s->o->duration_ns == 0 ? UINT64_MAX : now + s->o->duration_ns;

	while (qd_tool_stop_signal == 0 && now < end_ns) {
		int n = epoll_wait(s->epfd, events, EVENTS_MAX, 100);

		if (n < 0 && errno != EINTR) {
			perror("qdtcpload: epoll_wait");
			return;
		}
		now = qd_tool_now_ns();
		for (int i = 0; i < n; i++) {
			if (events[i].data.u64 == 0)
				server_accept(s, now);
			else
				server_client_event(s, (uint32_t)(events[i].data.u64 - 1), now);
		}
		if (now < next_sweep_ns)
			continue;
		next_sweep_ns = now + NS_PER_S;
		for (uint32_t i = 0; i < s->o->serve_clients_max; i++)
			if (s->clients[i].fd >= 0 && now > s->clients[i].idle_ns)
				server_close(s, i, true);
	}
}

/* Without --max-clients, serve as many clients as the hard RLIMIT_NOFILE
 * allows when it is below the default (a container without CAP_SYS_RESOURCE). */
static void
server_fit_clients(struct opts *o)
{
	struct rlimit rl;

	if (o->serve_clients_set || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
	    rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)o->serve_clients_max + FD_SPARE)
		return;
	if (rl.rlim_max > 2 * FD_SPARE)
		o->serve_clients_max = (uint32_t)(rl.rlim_max - FD_SPARE);
}

static int
server_main(struct opts *o)
{
	struct server *s = calloc(1, sizeof(*s));
	int err;

	server_fit_clients(o);
	if (s == NULL || raise_nofile((uint64_t)o->serve_clients_max + FD_SPARE) != 0)
		return 2;
	s->o = o;
	s->clients = calloc(o->serve_clients_max, sizeof(*s->clients));
	s->free_slots = calloc(o->serve_clients_max, sizeof(*s->free_slots));
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->clients == NULL || s->free_slots == NULL || s->epfd < 0) {
		fprintf(stderr, "qdtcpload: cannot allocate %u clients\n", o->serve_clients_max);
		return 2;
	}
	for (uint32_t i = 0; i < o->serve_clients_max; i++) {
		s->clients[i].fd = -1;
		s->free_slots[i] = o->serve_clients_max - 1 - i;
	}
	s->free_n = o->serve_clients_max;
	if ((err = server_listen(s)) != 0) {
		fprintf(stderr, "qdtcpload: cannot listen on %s: %s\n", o->target_text, strerror(-err));
		return 2;
	}
	fprintf(stderr, "qdtcpload: serving %s on %s (at most %u clients)\n",
		o->serve_discard ? "discard" : "echo", o->target_text, o->serve_clients_max);
	server_loop(s);
	for (uint32_t i = 0; i < o->serve_clients_max; i++)
		if (s->clients[i].fd >= 0)
			server_close(s, i, false);
	fprintf(stderr, "qdtcpload: served: accepted %" PRIu64 " refused %" PRIu64 " closed %"
		PRIu64 " (idle %" PRIu64 ") resets %" PRIu64 " bytes %" PRIu64 "\n", s->accepted,
		s->refused, s->closed, s->idle_closed, s->resets, s->bytes);
	close(s->lfd);
	close(s->epfd);
	free(s->free_slots);
	free(s->clients);
	free(s);
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o;
	int rc = parse_args(&o, argc, argv);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	install_signals();
	if (o.serve) {
		if (!o.idle_timeout_set)
			o.idle_timeout_ns = (uint64_t)(SERVE_IDLE_DEFAULT_S * (double)NS_PER_S);
		return server_main(&o);
	}
	return client_main(&o);
}
