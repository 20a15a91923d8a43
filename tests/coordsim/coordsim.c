/*
 * qdcoordsim: a Trino/Presto coordinator simulator for the qdispatch tests
 * and the lab.
 *
 * One process serves many coordinator addresses (--listen, repeatable); each
 * address is an independent coordinator with its own query ids, queries and
 * counters (sim_query.c). It speaks the client protocol the way the npm
 * trino-client and presto-client see a real coordinator: POST /v1/statement,
 * nextUri paging with long polls, DELETE, GET /v1/query/ID, /v1/info,
 * /v1/cluster. Directives in SQL comments shape each query (rows, page size,
 * queue and run times, failures, error statuses), and the /v1/simulator endpoints give
 * the tests counters, a reset, and kill/revive of an address. The protocol is
 * documented in docs/coordsim.md.
 *
 * This file is the process: options, one thread with one level-triggered
 * epoll loop, non-blocking sockets, a min-heap of deadlines (long polls and
 * query phase changes; the epoll timeout is the next deadline, nothing ever
 * sleeps), and HTTP/1.1 over a fixed table of connections parsed by
 * libhttp_parser. Pipelined requests are answered in order: the parser pauses
 * at the end of each request, the request is answered (or parked in a long
 * poll), and parsing resumes only once that answer is queued. A response body
 * is produced into the connection's fixed output buffer only as fast as the
 * socket takes it (a 128 MB page is generated while it is sent), so a client
 * that does not read cannot make us buffer more. Every resource is bounded by
 * an option.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <http_parser.h>

#include "sim.h"

#define SIM_CONNS_DEFAULT 256
#define SIM_CONNS_LIMIT 65536
#define SIM_REQUEST_DEFAULT_BYTES (64 * 1024)
#define SIM_REQUEST_MIN_BYTES 1024
#define SIM_REQUEST_LIMIT_BYTES (16 * 1024 * 1024)
#define SIM_IDLE_TIMEOUT_DEFAULT_S 60
#define SIM_IDLE_TIMEOUT_LIMIT_S 86400
#define SIM_MAX_QUERIES_DEFAULT 10000
#define SIM_MAX_QUERIES_LIMIT 1000000
#define SIM_HISTORY_DEFAULT 1000
#define SIM_HISTORY_LIMIT 1000000
#define SIM_HISTORY_S_DEFAULT 900
#define SIM_CLIENT_TIMEOUT_DEFAULT_S 300
#define SIM_LONG_POLL_DEFAULT_MS 200
#define SIM_LONG_POLL_LIMIT_MS 60000
#define SIM_MAX_NAMES_DEFAULT 256
#define SIM_MAX_NAMES_LIMIT 65536
#define SIM_QUERY_TEXT_DEFAULT 4096
#define SIM_STATUS_MEMORY_DEFAULT 1024
#define SIM_STATUS_MEMORY_LIMIT 1048576

#define SIM_IN_BYTES 16384	 /* bytes read from a socket but not parsed yet */
#define SIM_OUT_BYTES 65536	 /* bytes of responses not sent yet */
#define SIM_HEAD_MAX_OUT 1024	 /* one response head, extra headers included */
#define SIM_OUT_ROOM (SIM_HEAD_MAX_OUT + 64) /* free output to parse a request */
#define SIM_URL_MAX_BYTES 4096
#define SIM_FIELD_MAX_BYTES 64	 /* longer header names are kept truncated */
#define SIM_HEAD_MAX_BYTES 16384 /* header names and values of one request */
#define SIM_HEADERS_MAX 128
#define SIM_EVENTS_MAX 64
#define SIM_ACCEPT_BATCH 64
#define SIM_EVENT_ROUNDS 8	 /* parse/produce/send rounds per connection event */
#define SIM_TICK_MS 1000
#define SIM_TIMERS_PER_LOOP 4096 /* expired deadlines handled per loop turn */
#define SIM_LINGER_MS 2000	 /* read and drop a closing client's input this long */

_Static_assert(SIM_OUT_BYTES >= 4 * SIM_OUT_ROOM, "output buffer holds several heads");
_Static_assert(SIM_HEAD_MAX_OUT > SIM_EXTRA_HEADERS_BYTES + 256, "room for a head");

/* epoll user data: the tag in the high 32 bits, an index in the low ones. */
#define SIM_TAG_LISTENER 1ull
#define SIM_TAG_CONN 2ull
#define SIM_TAG_SIGNAL 3ull

/* Why a request was refused before it was complete; selects the status. */
enum sim_req_error {
	SIM_REQ_OK = 0,
	SIM_REQ_URL_TOO_LONG,	 /* 414 */
	SIM_REQ_HEAD_TOO_LARGE,	 /* 431 */
	SIM_REQ_BODY_TOO_LARGE,	 /* 413 */
};

/* Which header the value callbacks are currently filling. */
enum sim_header {
	SIM_HEADER_OTHER = 0,
	SIM_HEADER_HOST,
	SIM_HEADER_USER,
	SIM_HEADER_SOURCE,
	SIM_HEADER_TAGS,
	SIM_HEADER_FWD_HOST,
	SIM_HEADER_FWD_PROTO,
	SIM_HEADER_FWD_PORT,
	SIM_HEADER_EXPECT,
};

/* One request being assembled by the parser callbacks. The buffers are reset
 * by length only; the strings are NUL-terminated as they grow. */
struct sim_request {
	char *body;		  /* body_max_bytes long, owned by the sim */
	uint32_t body_max_bytes;
	uint32_t body_len;
	uint32_t url_len;
	uint32_t field_len;
	uint32_t head_bytes;
	uint32_t headers_count;
	uint32_t value_len;	  /* bytes of the current header value kept */
	bool in_value;		  /* the last header callback was a value */
	bool complete;
	bool keep_alive;
	bool has_host;
	bool has_user;
	bool has_source;
	bool trino_headers;	  /* some X-Trino-* header */
	bool presto_headers;	  /* some X-Presto-* header */
	bool forwarded;		  /* some X-Forwarded-* or Forwarded header */
	enum sim_header header;	  /* header the current value belongs to */
	enum sim_req_error error;
	enum http_method method;
	char url[SIM_URL_MAX_BYTES + 1];
	char host[SIM_HOST_MAX_BYTES + 1];
	char user[SIM_USER_MAX_BYTES + 1];
	char source[SIM_USER_MAX_BYTES + 1];
	char tags[SIM_USER_MAX_BYTES + 1]; /* X-Trino-Client-Tags, as sent */
	char fwd_host[SIM_HOST_MAX_BYTES + 1];
	char fwd_proto[16];
	char fwd_port[8];
	char expect[32];
	char field[SIM_FIELD_MAX_BYTES + 1];
};

struct sim_conn {
	int fd;			  /* -1: slot free */
	uint32_t index;
	unsigned int coord;	  /* the address it was accepted on */
	uint32_t events;	  /* epoll interest currently registered */
	uint64_t last_active_ms;
	bool close_after_write;
	bool peer_closed;
	bool lingering;		  /* answered and shut down: reading to EOF */
	bool waiting;		  /* a long poll: answer when <timer> fires */
	uint64_t linger_until_ms;
	struct sim_timer timer;
	http_parser parser;
	struct sim_request req;
	struct sim_body body;	  /* the body being produced into <out> */
	uint32_t in_off;
	uint32_t in_len;
	uint32_t out_off;
	uint32_t out_len;
	char in[SIM_IN_BYTES];
	char out[SIM_OUT_BYTES];
};

static http_parser_settings sim_parser_settings;

void
sim_log(const char *fmt, ...)
{
	va_list ap;

	fputs("qdcoordsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t
sim_clock_ms(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC, &ts);

	assert(rc == 0);
	(void)rc;
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
sim_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* xorshift64*: ids and slugs only need to differ, not to be secret. */
uint64_t
sim_random(struct sim *s)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 2685821657736338717ull;
}

/* ---- options ----------------------------------------------------------- */

static void
sim_usage(FILE *out)
{
	fprintf(out,
		"usage: qdcoordsim --listen ADDR:PORT [--listen ADDR:PORT ...] [options]\n"
		"\n"
		"A Trino/Presto coordinator simulator for the qdispatch tests and lab. Every\n"
		"--listen address is one coordinator with its own query ids and counters.\n"
		"It answers POST /v1/statement, the nextUri pages (long polls), DELETE,\n"
		"GET/HEAD/DELETE /v1/query/ID, GET /v1/info and /v1/cluster like a real\n"
		"coordinator, and /v1/simulator/{stats,reset,kill,revive} for the tests.\n"
		"Queries are shaped by directives in a SQL comment, for example\n"
		"  SELECT 1 /* sim: rows=1000 page_rows=100 row_bytes=8 queue_ms=50 run_ms=20 */\n"
		"  directives: rows page_rows row_bytes queue_ms run_ms page_ms\n"
		"              fail=submit|queued|running error=NAME status=NNN status_count=N\n"
		"See docs/coordsim.md for the protocol, the directives and the row values.\n"
		"HTTP/1.1 keep-alive and pipelining. Runs in the foreground, logs to stderr,\n"
		"stops on SIGTERM or SIGINT. Exit status: 0 stopped, 1 start-up failed,\n"
		"2 bad arguments.\n"
		"\n"
		"options:\n"
		"  -l, --listen ADDR:PORT   IPv4 address and TCP port to serve (repeatable,\n"
		"                           at most %d)\n"
		"  -c, --max-conns N        open connections at most (default %d, 1..%d);\n"
		"                           more are accepted and closed at once\n"
		"  -r, --request-max BYTES  largest request body (default %d); larger gets 413\n"
		"  -i, --idle-timeout S     close connections idle this long (default %d)\n"
		"  -q, --max-queries N      live queries at most, all addresses together\n"
		"                           (default %d); more POSTs get 503 QUERY_QUEUE_FULL\n"
		"  -H, --history N          finished queries kept for GET /v1/query/ID\n"
		"                           (default %d; the oldest is forgotten first)\n"
		"      --history-seconds S  and for at most S seconds (default %d)\n"
		"  -t, --client-timeout S   a query not polled for S seconds ends abandoned\n"
		"                           (default %d)\n"
		"  -p, --long-poll-ms MS    longest wait of a GET while nothing changes\n"
		"                           (default %d, 0: answer at once, at most %d)\n"
		"      --max-names N        distinct users and sources counted per address\n"
		"                           (default %d); beyond, they count as \"(other)\"\n"
		"      --query-text-max B   bytes of each statement kept for /v1/query/ID\n"
		"                           (default %d)\n"
		"      --status-memory N    statements remembered for status_count (default %d)\n"
		"      --forwarded MODE     X-Forwarded-* headers: reject (406, like a stock\n"
		"                           Trino; default), ignore, or accept (build the\n"
		"                           URIs from X-Forwarded-Proto/Host/Port)\n"
		"      --admission-store ADDR:PORT  admit queries as openLooKeng before 1.3\n"
		"                           did in HA mode (a re-creation, for benchmarks):\n"
		"                           every submission takes the global lock of the\n"
		"                           state store at ADDR:PORT (bench/olk_store.py),\n"
		"                           reads every running query's record, admits what\n"
		"                           fits its source's limit and unlocks; the rest\n"
		"                           wait, shown as QUEUED and not counted as running\n"
		"      --admission-limit N  running queries per source (default 1)\n"
		"      --admission-retry-ms MS  waiting queries are tried again this often\n"
		"                           and after every query's end (default 2)\n"
		"      --admission-lock-wait-ms MS  the lock's tryLock wait (default 10000)\n"
		"  -s, --seed N             seed of the id suffixes and slugs (default: time)\n"
		"  -e, --environment NAME   \"environment\" in /v1/info (default lab)\n"
		"  -v, --verbose            log every request\n"
		"  -V, --version            print the version and exit\n"
		"  -h, --help               print this help and exit\n",
		SIM_LISTEN_MAX, SIM_CONNS_DEFAULT, SIM_CONNS_LIMIT, SIM_REQUEST_DEFAULT_BYTES,
		SIM_IDLE_TIMEOUT_DEFAULT_S, SIM_MAX_QUERIES_DEFAULT, SIM_HISTORY_DEFAULT,
		SIM_HISTORY_S_DEFAULT, SIM_CLIENT_TIMEOUT_DEFAULT_S, SIM_LONG_POLL_DEFAULT_MS,
		SIM_LONG_POLL_LIMIT_MS, SIM_MAX_NAMES_DEFAULT, SIM_QUERY_TEXT_DEFAULT,
		SIM_STATUS_MEMORY_DEFAULT);
}

/* Parse <text> as a decimal in [<min>, <max>] into <*value>; 0 or -EINVAL. */
static int
sim_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
	char *end = NULL;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*value = (uint64_t)v;
	return 0;
}

static int
sim_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *value)
{
	uint64_t v;

	if (sim_parse_u64(text, min, max, &v) != 0)
		return -EINVAL;
	*value = (uint32_t)v;
	return 0;
}

/* Parse "A.B.C.D:PORT" into <sa>; refuses names, IPv6 and port 0. */
static int
sim_parse_endpoint(const char *text, struct sockaddr_in *sa)
{
	char addr[INET_ADDRSTRLEN];
	const char *colon = strrchr(text, ':');
	uint32_t port;
	size_t addr_len;

	if (colon == NULL)
		return -EINVAL;
	addr_len = (size_t)(colon - text);
	if (addr_len == 0 || addr_len >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, text, addr_len);
	addr[addr_len] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1)
		return -EINVAL;
	if (sim_parse_u32(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

enum {
	SIM_OPT_HISTORY_S = 1000,
	SIM_OPT_MAX_NAMES,
	SIM_OPT_QUERY_TEXT,
	SIM_OPT_STATUS_MEMORY,
	SIM_OPT_FORWARDED,
	SIM_OPT_STORE,
	SIM_OPT_STORE_LIMIT,
	SIM_OPT_STORE_RETRY,
	SIM_OPT_STORE_LOCK_WAIT,
};

/* A numeric option: parse or explain. */
#define SIM_OPT_U32(name, field, min, max)                                               \
	do {                                                                             \
		if (sim_parse_u32(optarg, (min), (max), &opt->field) != 0) {             \
			sim_log("--%s %s: expected %lu..%lu", name, optarg,              \
				(unsigned long)(min), (unsigned long)(max));             \
			return -EINVAL;                                                  \
		}                                                                        \
	} while (0)

/* Fill <opt> from the command line. Returns 0 to run, 1 after --help or
 * --version, -EINVAL after printing why the arguments are refused. */
static int
sim_parse_options(int argc, char **argv, struct sim_options *opt)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"max-conns", required_argument, NULL, 'c'},
		{"request-max", required_argument, NULL, 'r'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"max-queries", required_argument, NULL, 'q'},
		{"history", required_argument, NULL, 'H'},
		{"history-seconds", required_argument, NULL, SIM_OPT_HISTORY_S},
		{"client-timeout", required_argument, NULL, 't'},
		{"long-poll-ms", required_argument, NULL, 'p'},
		{"max-names", required_argument, NULL, SIM_OPT_MAX_NAMES},
		{"query-text-max", required_argument, NULL, SIM_OPT_QUERY_TEXT},
		{"status-memory", required_argument, NULL, SIM_OPT_STATUS_MEMORY},
		{"forwarded", required_argument, NULL, SIM_OPT_FORWARDED},
		{"admission-store", required_argument, NULL, SIM_OPT_STORE},
		{"admission-limit", required_argument, NULL, SIM_OPT_STORE_LIMIT},
		{"admission-retry-ms", required_argument, NULL, SIM_OPT_STORE_RETRY},
		{"admission-lock-wait-ms", required_argument, NULL, SIM_OPT_STORE_LOCK_WAIT},
		{"seed", required_argument, NULL, 's'},
		{"environment", required_argument, NULL, 'e'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	unsigned int i, j;
	int ch;

	memset(opt, 0, sizeof(*opt));
	opt->conns_max = SIM_CONNS_DEFAULT;
	opt->request_max_bytes = SIM_REQUEST_DEFAULT_BYTES;
	opt->idle_timeout_s = SIM_IDLE_TIMEOUT_DEFAULT_S;
	opt->max_queries = SIM_MAX_QUERIES_DEFAULT;
	opt->history = SIM_HISTORY_DEFAULT;
	opt->history_s = SIM_HISTORY_S_DEFAULT;
	opt->client_timeout_s = SIM_CLIENT_TIMEOUT_DEFAULT_S;
	opt->long_poll_ms = SIM_LONG_POLL_DEFAULT_MS;
	opt->max_names = SIM_MAX_NAMES_DEFAULT;
	opt->query_text_max = SIM_QUERY_TEXT_DEFAULT;
	opt->status_memory = SIM_STATUS_MEMORY_DEFAULT;
	opt->forwarded = SIM_FWD_REJECT;
	opt->store_limit = 1;
	opt->store_retry_ms = 2;
	opt->store_lock_wait_ms = 10000;
	snprintf(opt->environment, sizeof(opt->environment), "lab");

	while ((ch = getopt_long(argc, argv, "l:c:r:i:q:H:t:p:s:e:vVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (opt->listen_count == SIM_LISTEN_MAX) {
				sim_log("at most %d --listen", SIM_LISTEN_MAX);
				return -EINVAL;
			}
			if (sim_parse_endpoint(optarg, &opt->listen[opt->listen_count]) != 0) {
				sim_log("--listen %s: expected IPV4:PORT", optarg);
				return -EINVAL;
			}
			opt->listen_count++;
			break;
		case 'c':
			SIM_OPT_U32("max-conns", conns_max, 1, SIM_CONNS_LIMIT);
			break;
		case 'r':
			SIM_OPT_U32("request-max", request_max_bytes, SIM_REQUEST_MIN_BYTES,
				    SIM_REQUEST_LIMIT_BYTES);
			break;
		case 'i':
			SIM_OPT_U32("idle-timeout", idle_timeout_s, 1, SIM_IDLE_TIMEOUT_LIMIT_S);
			break;
		case 'q':
			SIM_OPT_U32("max-queries", max_queries, 1, SIM_MAX_QUERIES_LIMIT);
			break;
		case 'H':
			SIM_OPT_U32("history", history, 0, SIM_HISTORY_LIMIT);
			break;
		case SIM_OPT_HISTORY_S:
			SIM_OPT_U32("history-seconds", history_s, 0, 7 * 86400);
			break;
		case 't':
			SIM_OPT_U32("client-timeout", client_timeout_s, 1, 7 * 86400);
			break;
		case 'p':
			SIM_OPT_U32("long-poll-ms", long_poll_ms, 0, SIM_LONG_POLL_LIMIT_MS);
			break;
		case SIM_OPT_MAX_NAMES:
			SIM_OPT_U32("max-names", max_names, 1, SIM_MAX_NAMES_LIMIT);
			break;
		case SIM_OPT_QUERY_TEXT:
			SIM_OPT_U32("query-text-max", query_text_max, 0, SIM_REQUEST_LIMIT_BYTES);
			break;
		case SIM_OPT_STATUS_MEMORY:
			SIM_OPT_U32("status-memory", status_memory, 1, SIM_STATUS_MEMORY_LIMIT);
			break;
		case SIM_OPT_FORWARDED:
			if (strcmp(optarg, "reject") == 0)
				opt->forwarded = SIM_FWD_REJECT;
			else if (strcmp(optarg, "ignore") == 0)
				opt->forwarded = SIM_FWD_IGNORE;
			else if (strcmp(optarg, "accept") == 0)
				opt->forwarded = SIM_FWD_ACCEPT;
			else {
				sim_log("--forwarded %s: expected reject, ignore or accept", optarg);
				return -EINVAL;
			}
			break;
		case SIM_OPT_STORE:
			if (sim_parse_endpoint(optarg, &opt->store) != 0) {
				sim_log("--admission-store %s: expected IPV4:PORT", optarg);
				return -EINVAL;
			}
			opt->store_set = true;
			break;
		case SIM_OPT_STORE_LIMIT:
			SIM_OPT_U32("admission-limit", store_limit, 1, 1000000);
			break;
		case SIM_OPT_STORE_RETRY:
			SIM_OPT_U32("admission-retry-ms", store_retry_ms, 1, 60000);
			break;
		case SIM_OPT_STORE_LOCK_WAIT:
			SIM_OPT_U32("admission-lock-wait-ms", store_lock_wait_ms, 1, 600000);
			break;
		case 's':
			if (sim_parse_u64(optarg, 0, UINT64_MAX, &opt->seed) != 0) {
				sim_log("--seed %s: expected a decimal number", optarg);
				return -EINVAL;
			}
			opt->seed_set = true;
			break;
		case 'e':
			if (strlen(optarg) == 0 || strlen(optarg) >= sizeof(opt->environment) ||
			    strpbrk(optarg, "\"\\") != NULL) {
				sim_log("--environment: 1..%zu characters, no quotes",
					sizeof(opt->environment) - 1);
				return -EINVAL;
			}
			snprintf(opt->environment, sizeof(opt->environment), "%s", optarg);
			break;
		case 'v':
			opt->verbose = true;
			break;
		case 'V':
			printf("%s\n", SIM_VERSION);
			return 1;
		case 'h':
			sim_usage(stdout);
			return 1;
		default:
			sim_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		sim_log("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (opt->listen_count == 0) {
		sim_log("at least one --listen ADDR:PORT is required (see --help)");
		return -EINVAL;
	}
	for (i = 0; i < opt->listen_count; i++)
		for (j = 0; j < i; j++)
			if (memcmp(&opt->listen[i], &opt->listen[j], sizeof(opt->listen[i])) == 0) {
				sim_log("--listen: the same address is given twice");
				return -EINVAL;
			}
	return 0;
}

/* ---- deadlines ----------------------------------------------------------- */

static bool
sim_heap_less(const struct sim *s, uint32_t a, uint32_t b)
{
	return s->heap[a]->deadline_ms < s->heap[b]->deadline_ms;
}

static void
sim_heap_swap(struct sim *s, uint32_t a, uint32_t b)
{
	struct sim_timer *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_pos = a;
	s->heap[b]->heap_pos = b;
}

static void
sim_heap_fix(struct sim *s, uint32_t i)
{
	while (i > 0 && sim_heap_less(s, i, (i - 1) / 2)) {
		sim_heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->heap_len && sim_heap_less(s, l, m))
			m = l;
		if (r < s->heap_len && sim_heap_less(s, r, m))
			m = r;
		if (m == i)
			return;
		sim_heap_swap(s, i, m);
		i = m;
	}
}

void
sim_timer_set(struct sim *s, struct sim_timer *t, uint64_t deadline_ms)
{
	t->deadline_ms = deadline_ms;
	if (t->heap_pos == SIM_NO_TIMER) {
		/* one slot per connection and query: the heap cannot overflow */
		assert(s->heap_len < s->heap_cap);
		t->heap_pos = s->heap_len;
		s->heap[s->heap_len++] = t;
	}
	sim_heap_fix(s, t->heap_pos);
}

void
sim_timer_cancel(struct sim *s, struct sim_timer *t)
{
	uint32_t pos = t->heap_pos;

	if (pos == SIM_NO_TIMER)
		return;
	t->heap_pos = SIM_NO_TIMER;
	s->heap_len--;
	if (pos == s->heap_len)
		return;
	s->heap[pos] = s->heap[s->heap_len];
	s->heap[pos]->heap_pos = pos;
	sim_heap_fix(s, pos);
}

/* ---- connections --------------------------------------------------------- */

static int
sim_epoll_set(struct sim *s, int op, int fd, uint32_t events, uint64_t tag, uint32_t index)
{
	struct epoll_event ev = {
		.events = events,
		.data.u64 = (tag << 32) | index,
	};

	return epoll_ctl(s->epoll_fd, op, fd, &ev) == 0 ? 0 : -errno;
}

/* Close <c>; with <reset>, abort it with an RST (a coordinator that died). */
static void
sim_conn_close(struct sim *s, struct sim_conn *c, bool reset)
{
	assert(c->fd >= 0);
	assert(s->free_count < s->opt.conns_max);
	if (reset) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	/* close() also removes the fd from the epoll set. */
	close(c->fd);
	c->fd = -1;
	c->waiting = false;
	sim_timer_cancel(s, &c->timer);
	sim_body_free(&c->body);
	s->free_slots[s->free_count++] = c->index;
}

static uint32_t
sim_conn_out_free(const struct sim_conn *c)
{
	return SIM_OUT_BYTES - c->out_len;
}

/* Append <len> bytes to <c>'s output; the caller checked the room. */
static void
sim_conn_put(struct sim_conn *c, const char *p, size_t len)
{
	assert(len <= sim_conn_out_free(c));
	memcpy(c->out + c->out_len, p, len);
	c->out_len += (uint32_t)len;
}

/* Split the target of <r> into path and query (origin or absolute form). */
static int
sim_request_target(const struct sim_request *r, char *path, size_t path_max, char *query,
		   size_t query_max)
{
	struct http_parser_url u;
	size_t len;

	path[0] = query[0] = '\0';
	http_parser_url_init(&u);
	if (http_parser_parse_url(r->url, r->url_len, r->method == HTTP_CONNECT, &u) != 0)
		return -EINVAL;
	if ((u.field_set & (1u << UF_PATH)) != 0) {
		len = u.field_data[UF_PATH].len;
		if (len >= path_max)
			return -EINVAL;
		memcpy(path, r->url + u.field_data[UF_PATH].off, len);
		path[len] = '\0';
	} else {
		snprintf(path, path_max, "/");
	}
	if ((u.field_set & (1u << UF_QUERY)) != 0) {
		len = u.field_data[UF_QUERY].len;
		if (len >= query_max)
			return -EINVAL;
		memcpy(query, r->url + u.field_data[UF_QUERY].off, len);
		query[len] = '\0';
	}
	return 0;
}

/* Queue the head of <resp> (its body follows from c->body). */
static void
sim_conn_head(struct sim *s, struct sim_conn *c, const struct sim_resp *resp, bool keep_alive,
	      bool head_only)
{
	char head[SIM_HEAD_MAX_OUT];
	int n;

	if (resp->status == 204 || resp->status == 304 || resp->status < 200) {
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %u %s\r\n"
			     "Connection: %s\r\n"
			     "%.*s\r\n",
			     resp->status, http_status_str((enum http_status)resp->status),
			     keep_alive ? "keep-alive" : "close", (int)resp->headers_len,
			     resp->headers);
	} else {
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %u %s\r\n"
			     "Content-Type: %s\r\n"
			     "Content-Length: %" PRIu64 "\r\n"
			     "Connection: %s\r\n"
			     "%.*s\r\n",
			     resp->status, http_status_str((enum http_status)resp->status),
			     resp->content_type != NULL ? resp->content_type : "application/json",
			     resp->body.text != NULL ? resp->body.total : 0,
			     keep_alive ? "keep-alive" : "close", (int)resp->headers_len,
			     resp->headers);
	}
	(void)head_only;
	assert(n > 0 && (size_t)n < sizeof(head));
	sim_conn_put(c, head, (size_t)n);
	if (resp->status >= 200 && resp->status < 300)
		s->io.responses_2xx++;
	else
		s->io.responses_other++;
}

int
sim_coord_find(struct sim *s, const char *ip_port)
{
	struct sockaddr_in sa;
	unsigned int i;

	if (sim_parse_endpoint(ip_port, &sa) != 0)
		return -1;
	for (i = 0; i < s->opt.listen_count; i++)
		if (s->coords[i].addr.sin_addr.s_addr == sa.sin_addr.s_addr &&
		    s->coords[i].addr.sin_port == sa.sin_port)
			return (int)i;
	return -1;
}

/* Answer the request the parser completed on <c>, or park it in a long poll
 * (<may_wait>). */
static void
sim_conn_answer(struct sim *s, struct sim_conn *c, bool may_wait)
{
	struct sim_request *rq = &c->req;
	char path[SIM_URL_MAX_BYTES + 1], query[SIM_URL_MAX_BYTES + 1];
	static struct sim_resp resp; /* big; the loop is single-threaded */
	struct sim_req_view v;
	bool keep_alive = rq->keep_alive;

	assert(rq->complete);
	if (may_wait)
		s->io.requests++;
	memset(&resp, 0, sizeof(resp));
	resp.kill_coord = -1;
	memset(&v, 0, sizeof(v));
	if (sim_request_target(rq, path, sizeof(path), query, sizeof(query)) != 0) {
		static const char bad[] = "{\"error\":{\"message\":\"Bad request target\","
					  "\"errorCode\":0,\"errorName\":\"GENERIC_USER_ERROR\","
					  "\"errorType\":\"USER_ERROR\"}}";
		char *text = strdup(bad);

		resp.status = 400;
		if (text != NULL)
			sim_body_set(&resp.body, text, strlen(text), strlen(text), 0, 0, 0);
	} else {
		v.method = rq->method;
		v.path = path;
		v.query = query;
		v.host = rq->has_host ? rq->host : s->coords[c->coord].name;
		v.user = rq->user;
		v.source = rq->source;
		v.client_tags = rq->tags;
		v.fwd_host = rq->fwd_host;
		v.fwd_proto = rq->fwd_proto;
		v.fwd_port = rq->fwd_port;
		v.body = rq->body;
		v.body_len = rq->body_len;
		v.has_user = rq->has_user;
		v.has_source = rq->has_source;
		v.forwarded = rq->forwarded;
		v.flavour = rq->presto_headers && !rq->trino_headers ? SIM_FLAVOUR_PRESTO
								     : SIM_FLAVOUR_TRINO;
		v.coord = c->coord;
		v.may_wait = may_wait;
		sim_handle(s, &v, &resp);
	}
	if (resp.wait) {
		assert(may_wait && resp.body.text == NULL);
		c->waiting = true;
		sim_timer_set(s, &c->timer, resp.wait_until_ms);
		return;
	}
	if (s->opt.verbose)
		sim_log("%s conn %u: %s %s -> %u", s->coords[c->coord].name, c->index,
			http_method_str(rq->method), rq->url, resp.status);
	if (resp.close)
		keep_alive = false;
	if (resp.kill_coord == (int)c->coord)
		keep_alive = false; /* this connection dies with its coordinator */
	sim_conn_head(s, c, &resp, keep_alive, rq->method == HTTP_HEAD);
	if (rq->method == HTTP_HEAD || resp.no_body || resp.status == 204)
		sim_body_free(&resp.body);
	c->body = resp.body; /* ownership moves to the connection */
	memset(&resp.body, 0, sizeof(resp.body));
	if (!keep_alive)
		c->close_after_write = true;
	if (resp.kill_coord >= 0)
		sim_coord_kill(s, (unsigned int)resp.kill_coord, (int)c->index);
}

/* Answer a request the parser refused, then close. */
static void
sim_conn_refuse(struct sim *s, struct sim_conn *c)
{
	char body[256];
	unsigned int status = 400;
	enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
	/* Only our callbacks set req.error; the parser's own errors are 400. */
	bool ours = err >= HPE_CB_message_begin && err <= HPE_CB_chunk_complete;
	struct sim_resp *resp = calloc(1, sizeof(*resp));
	int n;

	switch (ours ? c->req.error : SIM_REQ_OK) {
	case SIM_REQ_URL_TOO_LONG:
		status = 414;
		break;
	case SIM_REQ_HEAD_TOO_LARGE:
		status = 431;
		break;
	case SIM_REQ_BODY_TOO_LARGE:
		status = 413;
		break;
	case SIM_REQ_OK:
		break;
	}
	if (s->opt.verbose)
		sim_log("conn %u: refused: %s -> %u", c->index, http_errno_description(err),
			status);
	c->in_off = c->in_len;
	c->close_after_write = true;
	if (resp == NULL)
		return;
	n = snprintf(body, sizeof(body),
		     "{\"error\":{\"message\":\"%s\",\"errorCode\":0,"
		     "\"errorName\":\"GENERIC_USER_ERROR\",\"errorType\":\"USER_ERROR\"}}",
		     http_status_str((enum http_status)status));
	assert(n > 0 && (size_t)n < sizeof(body));
	resp->status = status;
	resp->body.text = strdup(body);
	if (resp->body.text != NULL)
		sim_body_set(&resp->body, resp->body.text, (size_t)n, (size_t)n, 0, 0, 0);
	sim_conn_head(s, c, resp, false, false);
	sim_body_free(&c->body);
	c->body = resp->body;
	free(resp);
}

/* Move as much of the body being sent as fits into the output buffer. */
static void
sim_conn_produce(struct sim_conn *c)
{
	while (sim_body_active(&c->body) && sim_conn_out_free(c) > 0) {
		size_t n = sim_body_read(&c->body, c->out + c->out_len, sim_conn_out_free(c));

		c->out_len += (uint32_t)n;
		if (n == 0)
			break;
	}
	if (c->body.text != NULL && !sim_body_active(&c->body))
		sim_body_free(&c->body);
}

/* Can the next request be parsed and answered now? */
static bool
sim_conn_can_parse(const struct sim_conn *c)
{
	return !c->close_after_write && !c->waiting && c->body.text == NULL &&
	       sim_conn_out_free(c) >= SIM_OUT_ROOM;
}

/* Parse what <c> has buffered, answering each complete request while the
 * previous answer is queued and the output has room for one more head. */
static void
sim_conn_parse(struct sim *s, struct sim_conn *c)
{
	unsigned int rounds;

	/* Each round consumes at least one byte or stops. */
	for (rounds = 0; rounds <= SIM_IN_BYTES; rounds++) {
		enum http_errno err;
		size_t n;

		if (c->in_off == c->in_len || !sim_conn_can_parse(c))
			break;
		n = http_parser_execute(&c->parser, &sim_parser_settings, c->in + c->in_off,
					c->in_len - c->in_off);
		assert(n <= c->in_len - c->in_off);
		c->in_off += (uint32_t)n;
		err = HTTP_PARSER_ERRNO(&c->parser);
		if (err == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			sim_conn_answer(s, c, true);
			sim_conn_produce(c);
			continue;
		}
		if (err != HPE_OK) {
			sim_conn_refuse(s, c);
			sim_conn_produce(c);
			break;
		}
		assert(c->in_off == c->in_len);
	}
	if (c->in_off == c->in_len) {
		c->in_off = 0;
		c->in_len = 0;
	}
}

/* Send what <c> has buffered. Returns 0, or -errno when the connection
 * failed and must be closed. */
static int
sim_conn_flush(struct sim_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->out_off += (uint32_t)n;
	}
	if (c->out_off == c->out_len) {
		c->out_off = 0;
		c->out_len = 0;
	} else if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	return 0;
}

/* Move unparsed input to the front so a read has the most room. */
static void
sim_conn_compact_in(struct sim_conn *c)
{
	if (c->in_off == 0)
		return;
	memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
	c->in_len -= c->in_off;
	c->in_off = 0;
}

/* Read once from <c>. Returns 0, or -errno to close. */
static int
sim_conn_read(struct sim_conn *c)
{
	ssize_t n;

	sim_conn_compact_in(c);
	if (c->lingering)
		c->in_off = c->in_len = 0; /* drop what a closing client still sends */
	if (c->in_len == SIM_IN_BYTES)
		return 0;
	n = recv(c->fd, c->in + c->in_len, SIM_IN_BYTES - c->in_len, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return -errno;
	}
	if (n == 0) {
		c->peer_closed = true;
		return 0;
	}
	c->in_len += (uint32_t)n;
	return 0;
}

/* Register the events <c> waits for now, or close it when it has nothing
 * left to do. Unparsed input that can be parsed now asks for EPOLLOUT, which
 * fires at once on a writable socket and resumes parsing. */
static void
sim_conn_rearm(struct sim *s, struct sim_conn *c)
{
	bool pending_out = c->out_len > c->out_off || sim_body_active(&c->body);
	bool unparsed = c->in_len > c->in_off && sim_conn_can_parse(c);
	bool can_read = !c->close_after_write && !c->peer_closed && c->in_len < SIM_IN_BYTES;
	uint32_t events = (can_read ? EPOLLIN : 0u) | (pending_out || unparsed ? EPOLLOUT : 0u);

	/* Closing with unread input would reset the connection and could
	 * destroy the answer before the client reads it: shut down our side
	 * and read to the client's EOF first, for a bounded time. */
	if (!pending_out && c->close_after_write && !c->peer_closed) {
		if (!c->lingering) {
			(void)shutdown(c->fd, SHUT_WR);
			c->lingering = true;
			c->linger_until_ms = s->now_ms + SIM_LINGER_MS;
		}
		events = EPOLLIN;
	}
	if (events == 0 && !c->waiting) {
		/* Nothing to send and nothing more to read: done, or the peer
		 * half-closed after its last request was answered. */
		sim_conn_close(s, c, false);
		return;
	}
	if (events != c->events) {
		if (sim_epoll_set(s, EPOLL_CTL_MOD, c->fd, events, SIM_TAG_CONN, c->index) != 0) {
			sim_conn_close(s, c, false);
			return;
		}
		c->events = events;
	}
}

/* Parse, produce and send until the input is used up or the socket is
 * full; bounded so one client cannot hold the loop. Then re-arm. */
static void
sim_conn_work(struct sim *s, struct sim_conn *c)
{
	unsigned int round;

	for (round = 0; round < SIM_EVENT_ROUNDS; round++) {
		uint32_t before;

		sim_conn_parse(s, c);
		sim_conn_produce(c);
		before = c->out_len;
		if (sim_conn_flush(c) != 0) {
			sim_conn_close(s, c, false);
			return;
		}
		if (c->fd < 0)
			return;
		/* stop when the socket took nothing or nothing is left */
		if (c->out_len == before && before > 0)
			break;
		if (c->out_len == 0 && !sim_body_active(&c->body) &&
		    (c->in_off == c->in_len || !sim_conn_can_parse(c)))
			break;
	}
	sim_conn_compact_in(c);
	sim_conn_rearm(s, c);
}

static void
sim_conn_event(struct sim *s, struct sim_conn *c, uint32_t events)
{
	assert(c->fd >= 0);
	c->last_active_ms = s->now_ms;
	if ((events & (EPOLLERR | EPOLLHUP)) != 0 && (events & EPOLLIN) == 0) {
		sim_conn_close(s, c, false);
		return;
	}
	if ((events & EPOLLIN) != 0 && sim_conn_read(c) != 0) {
		sim_conn_close(s, c, false);
		return;
	}
	sim_conn_work(s, c);
}

/* A long poll of <c> is over: answer now. */
static void
sim_conn_wake(struct sim *s, struct sim_conn *c)
{
	assert(c->fd >= 0 && c->waiting);
	c->waiting = false;
	c->last_active_ms = s->now_ms;
	sim_conn_answer(s, c, false);
	sim_conn_produce(c);
	if (c->fd >= 0)
		sim_conn_work(s, c);
}

static void
sim_accept(struct sim *s, unsigned int listener)
{
	unsigned int i;

	for (i = 0; i < SIM_ACCEPT_BATCH && s->coords[listener].listen_fd >= 0; i++) {
		struct sim_conn *c;
		int one = 1;
		int fd = accept4(s->coords[listener].listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				sim_log("accept: %s", strerror(errno));
			return;
		}
		if (s->free_count == 0) {
			s->io.conns_refused++;
			close(fd);
			continue;
		}
		c = &s->conns[s->free_slots[--s->free_count]];
		assert(c->fd == -1);
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->coord = listener;
		c->events = EPOLLIN;
		c->last_active_ms = s->now_ms;
		c->close_after_write = false;
		c->peer_closed = false;
		c->lingering = false;
		c->waiting = false;
		c->linger_until_ms = 0;
		c->req.error = SIM_REQ_OK;
		c->req.complete = false;
		c->in_off = c->in_len = 0;
		c->out_off = c->out_len = 0;
		memset(&c->body, 0, sizeof(c->body));
		http_parser_init(&c->parser, HTTP_REQUEST);
		c->parser.data = c;
		if (sim_epoll_set(s, EPOLL_CTL_ADD, fd, EPOLLIN, SIM_TAG_CONN, c->index) != 0) {
			sim_log("epoll add: %s", strerror(errno));
			sim_conn_close(s, c, false);
			continue;
		}
		s->io.conns_accepted++;
	}
}

/* Close connections idle for longer than the timeout and lingering ones
 * whose client did not close in time. A long poll is not idleness. */
static void
sim_sweep_idle(struct sim *s)
{
	uint64_t limit_ms = (uint64_t)s->opt.idle_timeout_s * 1000u;
	uint32_t i;

	for (i = 0; i < s->opt.conns_max; i++) {
		struct sim_conn *c = &s->conns[i];

		if (c->fd < 0 || c->waiting)
			continue;
		if (c->lingering && s->now_ms >= c->linger_until_ms) {
			sim_conn_close(s, c, false);
			continue;
		}
		if (s->now_ms - c->last_active_ms < limit_ms)
			continue;
		s->io.conns_idle_closed++;
		sim_conn_close(s, c, false);
	}
}

/* ---- parser callbacks ---------------------------------------------------- */

static struct sim_request *
sim_req_of(http_parser *p)
{
	struct sim_conn *c = p->data;

	assert(c != NULL);
	return &c->req;
}

static int
sim_on_message_begin(http_parser *p)
{
	struct sim_request *r = sim_req_of(p);

	assert(r->body != NULL && r->body_max_bytes > 0);
	r->body_len = 0;
	r->url_len = 0;
	r->field_len = 0;
	r->head_bytes = 0;
	r->headers_count = 0;
	r->value_len = 0;
	r->in_value = false;
	r->complete = false;
	r->keep_alive = false;
	r->has_host = r->has_user = r->has_source = false;
	r->trino_headers = r->presto_headers = r->forwarded = false;
	r->header = SIM_HEADER_OTHER;
	r->error = SIM_REQ_OK;
	r->url[0] = '\0';
	r->host[0] = '\0';
	r->user[0] = '\0';
	r->source[0] = '\0';
	r->tags[0] = '\0';
	r->fwd_host[0] = '\0';
	r->fwd_proto[0] = '\0';
	r->fwd_port[0] = '\0';
	r->expect[0] = '\0';
	r->field[0] = '\0';
	return 0;
}

static int
sim_on_url(http_parser *p, const char *at, size_t len)
{
	struct sim_request *r = sim_req_of(p);

	if (len > SIM_URL_MAX_BYTES - r->url_len) {
		r->error = SIM_REQ_URL_TOO_LONG;
		return -1;
	}
	memcpy(r->url + r->url_len, at, len);
	r->url_len += (uint32_t)len;
	r->url[r->url_len] = '\0';
	return 0;
}

/* Count <len> more bytes of header; refuses heads over the limit. */
static int
sim_head_account(struct sim_request *r, size_t len)
{
	if (len > SIM_HEAD_MAX_BYTES - r->head_bytes) {
		r->error = SIM_REQ_HEAD_TOO_LARGE;
		return -1;
	}
	r->head_bytes += (uint32_t)len;
	return 0;
}

static int
sim_on_header_field(http_parser *p, const char *at, size_t len)
{
	struct sim_request *r = sim_req_of(p);
	size_t keep;

	if (sim_head_account(r, len) != 0)
		return -1;
	if (r->in_value || r->headers_count == 0) {
		if (r->headers_count == SIM_HEADERS_MAX) {
			r->error = SIM_REQ_HEAD_TOO_LARGE;
			return -1;
		}
		r->headers_count++;
		r->field_len = 0;
		r->in_value = false;
	}
	keep = SIM_FIELD_MAX_BYTES - r->field_len;
	if (len < keep)
		keep = len;
	memcpy(r->field + r->field_len, at, keep);
	r->field_len += (uint32_t)keep;
	r->field[r->field_len] = '\0';
	return 0;
}

/* Classify the header whose name is in r->field. */
static enum sim_header
sim_header_kind(struct sim_request *r)
{
	const char *f = r->field;

	if (strcasecmp(f, "host") == 0) {
		r->has_host = true;
		return SIM_HEADER_HOST;
	}
	if (strncasecmp(f, "x-trino-", 8) == 0 || strncasecmp(f, "x-presto-", 9) == 0) {
		bool presto = f[2] == 'p' || f[2] == 'P';
		const char *rest = f + (presto ? 9 : 8);

		if (presto)
			r->presto_headers = true;
		else
			r->trino_headers = true;
		if (strcasecmp(rest, "user") == 0) {
			r->has_user = true;
			return SIM_HEADER_USER;
		}
		if (strcasecmp(rest, "source") == 0) {
			r->has_source = true;
			return SIM_HEADER_SOURCE;
		}
		if (strcasecmp(rest, "client-tags") == 0)
			return SIM_HEADER_TAGS;
		return SIM_HEADER_OTHER;
	}
	if (strncasecmp(f, "x-forwarded-", 12) == 0 || strcasecmp(f, "forwarded") == 0) {
		r->forwarded = true;
		if (strcasecmp(f, "x-forwarded-host") == 0)
			return SIM_HEADER_FWD_HOST;
		if (strcasecmp(f, "x-forwarded-proto") == 0)
			return SIM_HEADER_FWD_PROTO;
		if (strcasecmp(f, "x-forwarded-port") == 0)
			return SIM_HEADER_FWD_PORT;
		return SIM_HEADER_OTHER;
	}
	if (strcasecmp(f, "expect") == 0)
		return SIM_HEADER_EXPECT;
	return SIM_HEADER_OTHER;
}

static int
sim_on_header_value(http_parser *p, const char *at, size_t len)
{
	struct sim_request *r = sim_req_of(p);
	char *dst = NULL;
	size_t cap = 0;

	if (sim_head_account(r, len) != 0)
		return -1;
	if (!r->in_value) {
		r->in_value = true;
		r->value_len = 0;
		r->header = sim_header_kind(r);
	}
	switch (r->header) {
	case SIM_HEADER_OTHER:
		return 0;
	case SIM_HEADER_HOST:
		if (len > SIM_HOST_MAX_BYTES - r->value_len) {
			r->error = SIM_REQ_HEAD_TOO_LARGE;
			return -1;
		}
		dst = r->host;
		cap = sizeof(r->host);
		break;
	case SIM_HEADER_USER:
		dst = r->user;
		cap = sizeof(r->user);
		break;
	case SIM_HEADER_SOURCE:
		dst = r->source;
		cap = sizeof(r->source);
		break;
	case SIM_HEADER_TAGS:
		dst = r->tags;
		cap = sizeof(r->tags);
		break;
	case SIM_HEADER_FWD_HOST:
		dst = r->fwd_host;
		cap = sizeof(r->fwd_host);
		break;
	case SIM_HEADER_FWD_PROTO:
		dst = r->fwd_proto;
		cap = sizeof(r->fwd_proto);
		break;
	case SIM_HEADER_FWD_PORT:
		dst = r->fwd_port;
		cap = sizeof(r->fwd_port);
		break;
	case SIM_HEADER_EXPECT:
		dst = r->expect;
		cap = sizeof(r->expect);
		break;
	}
	/* a repeated header replaces the earlier one; long values are cut */
	if (r->value_len + 1 >= cap)
		return 0;
	if (len > cap - 1 - r->value_len)
		len = cap - 1 - r->value_len;
	memcpy(dst + r->value_len, at, len);
	r->value_len += (uint32_t)len;
	dst[r->value_len] = '\0';
	return 0;
}

static int
sim_on_headers_complete(http_parser *p)
{
	struct sim_conn *c = p->data;
	struct sim_request *r = &c->req;
	bool has_body = (p->flags & F_CHUNKED) != 0 ||
			((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > 0);

	r->method = (enum http_method)p->method;
	/* A declared Content-Length is refused before its body is read. */
	if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > r->body_max_bytes) {
		r->error = SIM_REQ_BODY_TOO_LARGE;
		return -1;
	}
	/* Jetty answers "Expect: 100-continue" before the body; curl waits a
	 * second for it on large bodies. There is room: parsing starts only
	 * with SIM_OUT_ROOM free. */
	if (has_body && strcasecmp(r->expect, "100-continue") == 0 && p->http_minor >= 1) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (sim_conn_out_free(c) >= sizeof(cont) - 1 + SIM_HEAD_MAX_OUT)
			sim_conn_put(c, cont, sizeof(cont) - 1);
	}
	return 0;
}

static int
sim_on_body(http_parser *p, const char *at, size_t len)
{
	struct sim_request *r = sim_req_of(p);

	/* Chunked bodies have no declared length: bound them as they come. */
	if (len > r->body_max_bytes - r->body_len) {
		r->error = SIM_REQ_BODY_TOO_LARGE;
		return -1;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += (uint32_t)len;
	return 0;
}

static int
sim_on_message_complete(http_parser *p)
{
	struct sim_request *r = sim_req_of(p);

	r->complete = true;
	r->keep_alive = http_should_keep_alive(p) != 0;
	/* Stop here: the caller answers before parsing the next request. */
	http_parser_pause(p, 1);
	return 0;
}

/* ---- listeners, kill and revive ------------------------------------------- */

static int
sim_listen_one(struct sim *s, unsigned int i)
{
	struct sim_coord *co = &s->coords[i];
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		sim_log("socket: %s", strerror(errno));
		return -errno;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&co->addr, sizeof(co->addr)) != 0 ||
	    listen(fd, SOMAXCONN) != 0) {
		int err = errno;

		sim_log("listen %s: %s", co->name, strerror(err));
		close(fd);
		return -err;
	}
	if (sim_epoll_set(s, EPOLL_CTL_ADD, fd, EPOLLIN, SIM_TAG_LISTENER, i) != 0) {
		sim_log("epoll add: %s", strerror(errno));
		close(fd);
		return -EIO;
	}
	co->listen_fd = fd;
	co->alive = true;
	sim_coord_start(s, i);
	sim_log("listening on %s (query id suffix %s)", co->name, co->suffix);
	return 0;
}

int
sim_coord_kill(struct sim *s, unsigned int coord, int keep_conn)
{
	struct sim_coord *co = &s->coords[coord];
	uint32_t i;

	if (!co->alive)
		return 0;
	close(co->listen_fd);
	co->listen_fd = -1;
	co->alive = false;
	for (i = 0; i < s->opt.conns_max; i++) {
		struct sim_conn *c = &s->conns[i];

		if (c->fd < 0 || c->coord != coord || (int)i == keep_conn)
			continue;
		sim_conn_close(s, c, true);
	}
	sim_coord_forget(s, coord);
	sim_log("killed %s", co->name);
	return 0;
}

int
sim_coord_revive(struct sim *s, unsigned int coord)
{
	if (s->coords[coord].alive)
		return 0;
	if (sim_listen_one(s, coord) != 0)
		return -EIO;
	sim_log("revived %s", s->coords[coord].name);
	return 0;
}

/* ---- set-up and main loop ------------------------------------------------ */

static int
sim_signals(struct sim *s)
{
	sigset_t mask;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		return -errno;
	s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->signal_fd < 0)
		return -errno;
	return sim_epoll_set(s, EPOLL_CTL_ADD, s->signal_fd, EPOLLIN, SIM_TAG_SIGNAL, 0);
}

/* Allocate every connection slot, body buffer, query slot and deadline up
 * front. */
static int
sim_init(struct sim *s)
{
	uint32_t i;
	int rc;

	s->epoll_fd = -1;
	s->signal_fd = -1;
	s->store.fd = -1;
	for (i = 0; i < SIM_LISTEN_MAX; i++)
		s->coords[i].listen_fd = -1;
	s->start_ms = sim_clock_ms();
	s->now_ms = s->start_ms;
	s->rng = s->opt.seed_set ? s->opt.seed : (sim_wall_ms() ^ ((uint64_t)getpid() << 32));
	s->rng = s->rng * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
	if (s->rng == 0)
		s->rng = 1;
	s->conns = calloc(s->opt.conns_max, sizeof(*s->conns));
	s->bodies = malloc((size_t)s->opt.conns_max * s->opt.request_max_bytes);
	s->free_slots = calloc(s->opt.conns_max, sizeof(*s->free_slots));
	if (s->conns == NULL || s->bodies == NULL || s->free_slots == NULL ||
	    sim_queries_init(s) != 0) {
		sim_log("out of memory for %u connections and %u queries", s->opt.conns_max,
			s->opt.max_queries);
		return -ENOMEM;
	}
	s->heap_cap = s->opt.conns_max + s->query_slots;
	s->heap = calloc(s->heap_cap, sizeof(*s->heap));
	if (s->heap == NULL) {
		sim_log("out of memory for the deadline heap");
		return -ENOMEM;
	}
	for (i = 0; i < s->opt.conns_max; i++) {
		struct sim_conn *c = &s->conns[i];

		c->fd = -1;
		c->index = i;
		c->timer.heap_pos = SIM_NO_TIMER;
		c->timer.index = i;
		c->timer.kind = SIM_TIMER_CONN;
		c->req.body = s->bodies + (size_t)i * s->opt.request_max_bytes;
		c->req.body_max_bytes = s->opt.request_max_bytes;
		/* Popped from the end: hand out low indexes first. */
		s->free_slots[s->opt.conns_max - 1 - i] = i;
	}
	s->free_count = s->opt.conns_max;

	http_parser_settings_init(&sim_parser_settings);
	sim_parser_settings.on_message_begin = sim_on_message_begin;
	sim_parser_settings.on_url = sim_on_url;
	sim_parser_settings.on_header_field = sim_on_header_field;
	sim_parser_settings.on_header_value = sim_on_header_value;
	sim_parser_settings.on_headers_complete = sim_on_headers_complete;
	sim_parser_settings.on_body = sim_on_body;
	sim_parser_settings.on_message_complete = sim_on_message_complete;

	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epoll_fd < 0) {
		sim_log("epoll_create1: %s", strerror(errno));
		return -errno;
	}
	if (sim_signals(s) != 0) {
		sim_log("signals: %s", strerror(errno));
		return -EIO;
	}
	for (i = 0; i < s->opt.listen_count; i++) {
		struct sim_coord *co = &s->coords[i];
		char addr[INET_ADDRSTRLEN];

		co->addr = s->opt.listen[i];
		inet_ntop(AF_INET, &co->addr.sin_addr, addr, sizeof(addr));
		snprintf(co->name, sizeof(co->name), "%s:%u", addr, ntohs(co->addr.sin_port));
	}
	for (i = 0; i < s->opt.listen_count; i++)
		if (sim_listen_one(s, i) != 0)
			return -EIO;
	rc = sim_store_open(s);
	if (rc != 0) {
		sim_log("--admission-store: cannot connect: %s", strerror(-rc));
		return -EIO;
	}
	return 0;
}

static void
sim_fini(struct sim *s)
{
	uint32_t i;

	for (i = 0; s->conns != NULL && i < s->opt.conns_max; i++)
		if (s->conns[i].fd >= 0)
			sim_conn_close(s, &s->conns[i], false);
	for (i = 0; i < SIM_LISTEN_MAX; i++)
		if (s->coords[i].listen_fd >= 0)
			close(s->coords[i].listen_fd);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	sim_store_close(s);
	sim_queries_fini(s);
	free(s->conns);
	free(s->bodies);
	free(s->free_slots);
	free(s->heap);
}

static void
sim_on_signal(struct sim *s)
{
	struct signalfd_siginfo si;

	while (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		sim_log("signal %u: stopping", si.ssi_signo);
		s->stop = true;
	}
}

/* Handle the deadlines that are due; returns true if some are left. */
static bool
sim_run_timers(struct sim *s)
{
	unsigned int n;

	for (n = 0; n < SIM_TIMERS_PER_LOOP; n++) {
		struct sim_timer *t;

		if (s->heap_len == 0 || s->heap[0]->deadline_ms > s->now_ms)
			return false;
		t = s->heap[0];
		sim_timer_cancel(s, t);
		if (t->kind == SIM_TIMER_CONN) {
			struct sim_conn *c = &s->conns[t->index];

			if (c->fd >= 0 && c->waiting)
				sim_conn_wake(s, c);
		} else {
			sim_query_timer(s, t->index);
		}
	}
	return s->heap_len > 0 && s->heap[0]->deadline_ms <= s->now_ms;
}

static void
sim_run(struct sim *s)
{
	struct epoll_event events[SIM_EVENTS_MAX];
	uint64_t last_sweep_ms = s->now_ms;
	bool timers_left = false;

	while (!s->stop) {
		int timeout = SIM_TICK_MS, n, i;

		if (timers_left) {
			timeout = 0;
		} else if (s->heap_len > 0) {
			uint64_t next = s->heap[0]->deadline_ms;
			uint64_t now = sim_clock_ms();

			if (next <= now)
				timeout = 0;
			else if (next - now < (uint64_t)timeout)
				timeout = (int)(next - now);
		}
		if (s->opt.store_set && s->store.wait_head != SIM_NO_TIMER && timeout > 0) {
			/* queries wait for the store: wake for its next pass */
			uint64_t now = sim_clock_ms();

			if (s->store.next_pass_ms <= now)
				timeout = 0;
			else if (s->store.next_pass_ms - now < (uint64_t)timeout)
				timeout = (int)(s->store.next_pass_ms - now);
		}
		n = epoll_wait(s->epoll_fd, events, SIM_EVENTS_MAX, timeout);
		if (n < 0 && errno != EINTR) {
			sim_log("epoll_wait: %s", strerror(errno));
			return;
		}
		s->now_ms = sim_clock_ms();
		for (i = 0; i < n; i++) {
			uint64_t tag = events[i].data.u64 >> 32;
			uint32_t index = (uint32_t)events[i].data.u64;

			if (tag == SIM_TAG_LISTENER) {
				assert(index < s->opt.listen_count);
				sim_accept(s, index);
			} else if (tag == SIM_TAG_CONN) {
				assert(index < s->opt.conns_max);
				/* An earlier event of this batch may have closed it. */
				if (s->conns[index].fd >= 0)
					sim_conn_event(s, &s->conns[index], events[i].events);
			} else {
				assert(tag == SIM_TAG_SIGNAL);
				sim_on_signal(s);
			}
		}
		timers_left = sim_run_timers(s);
		sim_store_tick(s);
		if (s->now_ms - last_sweep_ms >= SIM_TICK_MS) {
			sim_sweep_idle(s);
			last_sweep_ms = s->now_ms;
		}
	}
}

int
main(int argc, char **argv)
{
	static struct sim s;
	int rc = sim_parse_options(argc, argv, &s.opt);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (sim_init(&s) != 0) {
		sim_fini(&s);
		return 1;
	}
	sim_log("%s ready: %u coordinator address(es), %u connections, %u queries at most",
		SIM_VERSION, s.opt.listen_count, s.opt.conns_max, s.opt.max_queries);
	sim_run(&s);
	sim_log("stopped: %" PRIu64 " connections (%" PRIu64 " refused, %" PRIu64
		" idle-closed), %" PRIu64 " requests, %" PRIu64 " 2xx, %" PRIu64 " other; %" PRIu64
		" queries",
		s.io.conns_accepted, s.io.conns_refused, s.io.conns_idle_closed, s.io.requests,
		s.io.responses_2xx, s.io.responses_other, s.total.submitted);
	sim_fini(&s);
	return 0;
}
