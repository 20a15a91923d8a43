/*
 * qdcoordsim: a stand-in for a Trino/Presto coordinator in the lab.
 *
 * The lab (scripts/lab) runs one qdcoordsim in its coordinator namespace,
 * listening on every coordinator address. Today it answers the load probes a
 * dispatcher uses, `GET /v1/info` and `GET /v1/cluster`, and answers 404 to
 * everything else; later issues grow it into a simulator of the client
 * protocol (POST /v1/statement, nextUri paging, cancellation).
 *
 * One thread, one level-triggered epoll loop, non-blocking sockets. Every
 * resource is bounded and allocated at start-up: a fixed table of connections,
 * each with a fixed input buffer, request buffers and an output buffer.
 * HTTP/1.1 is parsed by libhttp_parser. Pipelined requests are answered in
 * order: the parser pauses at the end of each request, the request is routed
 * to its handler, and parsing resumes only while the output buffer has room for
 * a whole response, so a client that does not read cannot make us buffer more.
 * Connections idle longer than --idle-timeout are closed.
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

#define SIM_VERSION "qdcoordsim-0.1"

#define SIM_LISTEN_MAX 64
#define SIM_CONNS_DEFAULT 256
#define SIM_CONNS_LIMIT 65536
#define SIM_REQUEST_DEFAULT_BYTES (64 * 1024)
#define SIM_REQUEST_MIN_BYTES 1024
#define SIM_REQUEST_LIMIT_BYTES (16 * 1024 * 1024)
#define SIM_IDLE_TIMEOUT_DEFAULT_S 60
#define SIM_IDLE_TIMEOUT_LIMIT_S 86400

#define SIM_IN_BYTES 16384	 /* bytes read from a socket but not parsed yet */
#define SIM_OUT_BYTES 16384	 /* bytes of responses not sent yet */
#define SIM_RESPONSE_MAX_BYTES 4096 /* one whole response: head and body */
#define SIM_RESPONSE_HEAD_MAX_BYTES 512
#define SIM_BODY_OUT_MAX_BYTES (SIM_RESPONSE_MAX_BYTES - SIM_RESPONSE_HEAD_MAX_BYTES)
#define SIM_URL_MAX_BYTES 4096
#define SIM_HOST_MAX_BYTES 256
#define SIM_FIELD_MAX_BYTES 64	 /* longer header names are kept truncated */
#define SIM_HEAD_MAX_BYTES 16384 /* header names and values of one request */
#define SIM_HEADERS_MAX 128
#define SIM_EVENTS_MAX 64
#define SIM_ACCEPT_BATCH 64
#define SIM_EVENT_ROUNDS 8	 /* parse/send rounds per connection event */
#define SIM_TICK_MS 1000
#define SIM_LINGER_MS 2000	 /* read and drop a closing client's input this long */

_Static_assert(SIM_OUT_BYTES >= 2 * SIM_RESPONSE_MAX_BYTES, "out buffer holds two responses");
_Static_assert(SIM_BODY_OUT_MAX_BYTES > 1024, "room for a response body");

/* epoll user data: the tag in the high 32 bits, an index in the low ones. */
#define SIM_TAG_LISTENER 1ull
#define SIM_TAG_CONN 2ull
#define SIM_TAG_SIGNAL 3ull

struct sim_options {
	struct sockaddr_in listen[SIM_LISTEN_MAX];
	unsigned int listen_count;
	uint32_t conns_max;
	uint32_t request_max_bytes;
	uint32_t idle_timeout_s;
	char environment[64];
	bool verbose;
};

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
};

/* One request being assembled by the parser callbacks. The buffers are reset
 * by length only; the strings are NUL-terminated as they grow. */
struct sim_request {
	char *body;		  /* body_max_bytes long, owned by the sim */
	uint32_t body_max_bytes;
	uint32_t body_len;
	uint32_t url_len;
	uint32_t host_len;
	uint32_t field_len;
	uint32_t head_bytes;
	uint32_t headers_count;
	bool in_value;		  /* the last header callback was a value */
	bool complete;
	bool keep_alive;
	enum sim_header header;	  /* header the current value belongs to */
	enum sim_req_error error;
	enum http_method method;
	char url[SIM_URL_MAX_BYTES + 1];
	char host[SIM_HOST_MAX_BYTES + 1];
	char field[SIM_FIELD_MAX_BYTES + 1];
};

struct sim_conn {
	int fd;			  /* -1: slot free */
	uint32_t index;
	uint32_t events;	  /* epoll interest currently registered */
	uint64_t last_active_ms;
	bool close_after_write;
	bool peer_closed;
	bool lingering;		  /* answered and shut down: reading to EOF */
	uint64_t linger_until_ms;
	http_parser parser;
	struct sim_request req;
	uint32_t in_off;
	uint32_t in_len;
	uint32_t out_off;
	uint32_t out_len;
	char in[SIM_IN_BYTES];
	char out[SIM_OUT_BYTES];
};

struct sim_stats {
	uint64_t conns_accepted;
	uint64_t conns_refused;	  /* table full */
	uint64_t conns_idle_closed;
	uint64_t requests;
	uint64_t responses_2xx;
	uint64_t responses_4xx;
};

struct sim {
	struct sim_options opt;
	int epoll_fd;
	int signal_fd;
	int listen_fds[SIM_LISTEN_MAX];
	struct sim_conn *conns;	  /* opt.conns_max slots */
	char *bodies;		  /* opt.conns_max * opt.request_max_bytes */
	uint32_t *free_slots;	  /* stack of free connection indexes */
	uint32_t free_count;
	uint64_t start_ms;
	uint64_t now_ms;
	struct sim_stats stats;
	bool stop;		  /* set by SIGTERM/SIGINT through the signalfd */
};

/* A request handler writes a JSON body of at most <body_max> bytes into <body>
 * and returns the HTTP status; <*body_len> receives the body length. */
typedef unsigned int (*sim_handler_fn)(struct sim *s, const struct sim_request *r,
				       const char *path, char *body, size_t body_max,
				       size_t *body_len);

struct sim_route {
	enum http_method method;
	const char *path;
	sim_handler_fn handler;
};

static http_parser_settings sim_parser_settings;

static void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
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
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- options ----------------------------------------------------------- */

static void
sim_usage(FILE *out)
{
	fprintf(out,
		"usage: qdcoordsim --listen ADDR:PORT [--listen ADDR:PORT ...] [options]\n"
		"\n"
		"A placeholder Trino/Presto coordinator for the qdispatch lab. Answers\n"
		"GET /v1/info and GET /v1/cluster with JSON, 404 otherwise; HTTP/1.1\n"
		"keep-alive and pipelining. Runs in the foreground, logs to stderr, and\n"
		"stops on SIGTERM or SIGINT.\n"
		"\n"
		"options:\n"
		"  -l, --listen ADDR:PORT   IPv4 address and TCP port to serve (repeatable,\n"
		"                           at most %d)\n"
		"  -c, --max-conns N        open connections at most (default %d); more are\n"
		"                           accepted and closed at once\n"
		"  -r, --request-max BYTES  largest request body (default %d); larger gets 413\n"
		"  -i, --idle-timeout S     close connections idle this long (default %d)\n"
		"  -e, --environment NAME   \"environment\" in /v1/info (default lab)\n"
		"  -v, --verbose            log every request\n"
		"  -V, --version            print the version and exit\n"
		"  -h, --help               print this help and exit\n",
		SIM_LISTEN_MAX, SIM_CONNS_DEFAULT, SIM_REQUEST_DEFAULT_BYTES,
		SIM_IDLE_TIMEOUT_DEFAULT_S);
}

/* Parse <text> as a decimal in [<min>, <max>] into <*value>; 0 or -EINVAL. */
static int
sim_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *value)
{
	char *end = NULL;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
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
		{"environment", required_argument, NULL, 'e'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	memset(opt, 0, sizeof(*opt));
	opt->conns_max = SIM_CONNS_DEFAULT;
	opt->request_max_bytes = SIM_REQUEST_DEFAULT_BYTES;
	opt->idle_timeout_s = SIM_IDLE_TIMEOUT_DEFAULT_S;
	snprintf(opt->environment, sizeof(opt->environment), "lab");

	while ((ch = getopt_long(argc, argv, "l:c:r:i:e:vVh", longopts, NULL)) != -1) {
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
			if (sim_parse_u32(optarg, 1, SIM_CONNS_LIMIT, &opt->conns_max) != 0) {
				sim_log("--max-conns %s: expected 1..%d", optarg, SIM_CONNS_LIMIT);
				return -EINVAL;
			}
			break;
		case 'r':
			if (sim_parse_u32(optarg, SIM_REQUEST_MIN_BYTES, SIM_REQUEST_LIMIT_BYTES,
					  &opt->request_max_bytes) != 0) {
				sim_log("--request-max %s: expected %d..%d", optarg,
					SIM_REQUEST_MIN_BYTES, SIM_REQUEST_LIMIT_BYTES);
				return -EINVAL;
			}
			break;
		case 'i':
			if (sim_parse_u32(optarg, 1, SIM_IDLE_TIMEOUT_LIMIT_S,
					  &opt->idle_timeout_s) != 0) {
				sim_log("--idle-timeout %s: expected 1..%d", optarg,
					SIM_IDLE_TIMEOUT_LIMIT_S);
				return -EINVAL;
			}
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
	return 0;
}

/* ---- handlers ---------------------------------------------------------- */

/* Format <ms> the way Trino's Duration prints: the largest unit with a value
 * of at least 1, two decimals ("12.50s", "3.02m"). */
static void
sim_format_duration(uint64_t ms, char *out, size_t out_len)
{
	double v = (double)ms / 1000.0;
	const char *unit = "s";

	if (ms < 1000) {
		snprintf(out, out_len, "%" PRIu64 ".00ms", ms);
		return;
	}
	if (v >= 86400.0) {
		v /= 86400.0;
		unit = "d";
	} else if (v >= 3600.0) {
		v /= 3600.0;
		unit = "h";
	} else if (v >= 60.0) {
		v /= 60.0;
		unit = "m";
	}
	snprintf(out, out_len, "%.2f%s", v, unit);
}

static unsigned int
sim_handle_info(struct sim *s, const struct sim_request *r, const char *path, char *body,
		size_t body_max, size_t *body_len)
{
	char uptime[32];
	int n;

	(void)r;
	(void)path;
	sim_format_duration(s->now_ms - s->start_ms, uptime, sizeof(uptime));
	n = snprintf(body, body_max,
		     "{\"nodeVersion\":{\"version\":\"%s\"},\"environment\":\"%s\","
		     "\"coordinator\":true,\"starting\":false,\"uptime\":\"%s\"}",
		     SIM_VERSION, s->opt.environment, uptime);
	assert(n > 0 && (size_t)n < body_max);
	*body_len = (size_t)n;
	return 200;
}

static unsigned int
sim_handle_cluster(struct sim *s, const struct sim_request *r, const char *path, char *body,
		   size_t body_max, size_t *body_len)
{
	int n;

	(void)s;
	(void)r;
	(void)path;
	n = snprintf(body, body_max,
		     "{\"runningQueries\":0,\"queuedQueries\":0,\"blockedQueries\":0,"
		     "\"activeWorkers\":1,\"runningDrivers\":0,\"reservedMemory\":0.0,"
		     "\"totalMemory\":0}");
	assert(n > 0 && (size_t)n < body_max);
	*body_len = (size_t)n;
	return 200;
}

static const struct sim_route sim_routes[] = {
	{HTTP_GET, "/v1/info", sim_handle_info},
	{HTTP_GET, "/v1/cluster", sim_handle_cluster},
};

/* Write a Trino-style error body for <status> into <body>. */
static size_t
sim_error_body(unsigned int status, char *body, size_t body_max)
{
	int n = snprintf(body, body_max, "{\"error\":{\"code\":%u,\"message\":\"%s\"}}", status,
			 http_status_str((enum http_status)status));

	assert(n > 0 && (size_t)n < body_max);
	return (size_t)n;
}

/* Extract the path of <r>'s target (origin or absolute form) into <path>,
 * without the query. Returns 0 or -EINVAL for a target that is not a URL. */
static int
sim_request_path(const struct sim_request *r, char *path, size_t path_max)
{
	struct http_parser_url u;
	size_t len;

	http_parser_url_init(&u);
	if (http_parser_parse_url(r->url, r->url_len, r->method == HTTP_CONNECT, &u) != 0)
		return -EINVAL;
	if ((u.field_set & (1u << UF_PATH)) == 0) {
		snprintf(path, path_max, "/");
		return 0;
	}
	len = u.field_data[UF_PATH].len;
	if (len >= path_max)
		return -EINVAL;
	memcpy(path, r->url + u.field_data[UF_PATH].off, len);
	path[len] = '\0';
	return 0;
}

/* Route the complete request <r> and write its body; returns the status. */
static unsigned int
sim_route(struct sim *s, const struct sim_request *r, char *body, size_t body_max,
	  size_t *body_len)
{
	char path[SIM_URL_MAX_BYTES + 1];
	bool path_known = false;
	size_t i;

	if (sim_request_path(r, path, sizeof(path)) != 0) {
		*body_len = sim_error_body(400, body, body_max);
		return 400;
	}
	for (i = 0; i < sizeof(sim_routes) / sizeof(sim_routes[0]); i++) {
		if (strcmp(sim_routes[i].path, path) != 0)
			continue;
		path_known = true;
		if (sim_routes[i].method == r->method)
			return sim_routes[i].handler(s, r, path, body, body_max, body_len);
	}
	*body_len = sim_error_body(path_known ? 405 : 404, body, body_max);
	return path_known ? 405 : 404;
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
	r->host_len = 0;
	r->field_len = 0;
	r->head_bytes = 0;
	r->headers_count = 0;
	r->in_value = false;
	r->complete = false;
	r->keep_alive = false;
	r->header = SIM_HEADER_OTHER;
	r->error = SIM_REQ_OK;
	r->url[0] = '\0';
	r->host[0] = '\0';
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

static int
sim_on_header_value(http_parser *p, const char *at, size_t len)
{
	struct sim_request *r = sim_req_of(p);

	if (sim_head_account(r, len) != 0)
		return -1;
	if (!r->in_value) {
		r->in_value = true;
		r->header = strcasecmp(r->field, "host") == 0 ? SIM_HEADER_HOST : SIM_HEADER_OTHER;
	}
	if (r->header != SIM_HEADER_HOST)
		return 0;
	if (len > SIM_HOST_MAX_BYTES - r->host_len) {
		r->error = SIM_REQ_HEAD_TOO_LARGE;
		return -1;
	}
	memcpy(r->host + r->host_len, at, len);
	r->host_len += (uint32_t)len;
	r->host[r->host_len] = '\0';
	return 0;
}

static int
sim_on_headers_complete(http_parser *p)
{
	struct sim_request *r = sim_req_of(p);

	r->method = (enum http_method)p->method;
	/* A declared Content-Length is refused before its body is read. */
	if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > r->body_max_bytes) {
		r->error = SIM_REQ_BODY_TOO_LARGE;
		return -1;
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

static void
sim_conn_close(struct sim *s, struct sim_conn *c)
{
	assert(c->fd >= 0);
	assert(s->free_count < s->opt.conns_max);
	/* close() also removes the fd from the epoll set. */
	close(c->fd);
	c->fd = -1;
	s->free_slots[s->free_count++] = c->index;
}

static uint32_t
sim_conn_out_free(const struct sim_conn *c)
{
	return SIM_OUT_BYTES - c->out_len;
}

/* Append a response with <status> and the JSON <body> to <c>'s output. The
 * caller made sure SIM_RESPONSE_MAX_BYTES are free. */
static void
sim_conn_respond(struct sim *s, struct sim_conn *c, unsigned int status, const char *body,
		 size_t body_len, bool keep_alive)
{
	int n;

	assert(sim_conn_out_free(c) >= SIM_RESPONSE_MAX_BYTES);
	assert(body_len <= SIM_BODY_OUT_MAX_BYTES);
	n = snprintf(c->out + c->out_len, SIM_RESPONSE_HEAD_MAX_BYTES,
		     "HTTP/1.1 %u %s\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\n"
		     "Connection: %s\r\n"
		     "\r\n",
		     status, http_status_str((enum http_status)status), body_len,
		     keep_alive ? "keep-alive" : "close");
	assert(n > 0 && n < SIM_RESPONSE_HEAD_MAX_BYTES);
	c->out_len += (uint32_t)n;
	memcpy(c->out + c->out_len, body, body_len);
	c->out_len += (uint32_t)body_len;
	if (status >= 200 && status < 300)
		s->stats.responses_2xx++;
	else
		s->stats.responses_4xx++;
	if (!keep_alive)
		c->close_after_write = true;
}

/* Answer the request the parser just completed on <c>. */
static void
sim_conn_answer(struct sim *s, struct sim_conn *c)
{
	char body[SIM_BODY_OUT_MAX_BYTES];
	size_t body_len = 0;
	unsigned int status;

	assert(c->req.complete);
	s->stats.requests++;
	status = sim_route(s, &c->req, body, sizeof(body), &body_len);
	if (s->opt.verbose)
		sim_log("conn %u: %s %s -> %u", c->index, http_method_str(c->req.method),
			c->req.url, status);
	sim_conn_respond(s, c, status, body, body_len, c->req.keep_alive);
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
		sim_log("conn %u: refused: %s -> %u", c->index,
			http_errno_description(err), status);
	sim_conn_respond(s, c, status, body, sim_error_body(status, body, sizeof(body)), false);
	c->in_off = c->in_len;
}

/* Parse what <c> has buffered, answering each complete request while the
 * output has room for one more response. */
static void
sim_conn_parse(struct sim *s, struct sim_conn *c)
{
	unsigned int rounds;

	/* Each round consumes at least one byte or stops. */
	for (rounds = 0; rounds <= SIM_IN_BYTES; rounds++) {
		enum http_errno err;
		size_t n;

		if (c->close_after_write || c->in_off == c->in_len)
			break;
		if (sim_conn_out_free(c) < SIM_RESPONSE_MAX_BYTES)
			break;
		n = http_parser_execute(&c->parser, &sim_parser_settings, c->in + c->in_off,
					c->in_len - c->in_off);
		assert(n <= c->in_len - c->in_off);
		c->in_off += (uint32_t)n;
		err = HTTP_PARSER_ERRNO(&c->parser);
		if (err == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			sim_conn_answer(s, c);
			continue;
		}
		if (err != HPE_OK) {
			sim_conn_refuse(s, c);
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
	} else if (c->out_off > 0 && sim_conn_out_free(c) < SIM_RESPONSE_MAX_BYTES) {
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

/* Read once from <c>. Returns 0, or -errno / -ECONNRESET to close. */
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
 * left to do. Unparsed input left by the round limit asks for EPOLLOUT, which
 * fires at once on a writable socket and resumes parsing. */
static void
sim_conn_rearm(struct sim *s, struct sim_conn *c)
{
	bool unparsed = !c->close_after_write && c->in_len > c->in_off;
	bool pending_out = c->out_len > c->out_off;
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
	if (events == 0) {
		/* Nothing to send and nothing more to read: done, or the peer
		 * half-closed after its last request was answered. */
		sim_conn_close(s, c);
		return;
	}
	if (events != c->events) {
		if (sim_epoll_set(s, EPOLL_CTL_MOD, c->fd, events, SIM_TAG_CONN, c->index) != 0) {
			sim_conn_close(s, c);
			return;
		}
		c->events = events;
	}
}

static void
sim_conn_event(struct sim *s, struct sim_conn *c, uint32_t events)
{
	unsigned int round;

	assert(c->fd >= 0);
	c->last_active_ms = s->now_ms;
	if ((events & (EPOLLERR | EPOLLHUP)) != 0 && (events & EPOLLIN) == 0) {
		sim_conn_close(s, c);
		return;
	}
	if ((events & EPOLLIN) != 0 && sim_conn_read(c) != 0) {
		sim_conn_close(s, c);
		return;
	}
	/* Parse and send until the input is used up or the socket is full;
	 * bounded so one pipelining client cannot hold the loop. */
	for (round = 0; round < SIM_EVENT_ROUNDS; round++) {
		sim_conn_parse(s, c);
		if (sim_conn_flush(c) != 0) {
			sim_conn_close(s, c);
			return;
		}
		if (c->close_after_write || c->in_off == c->in_len ||
		    sim_conn_out_free(c) < SIM_RESPONSE_MAX_BYTES)
			break;
	}
	sim_conn_compact_in(c);
	sim_conn_rearm(s, c);
}

static void
sim_accept(struct sim *s, unsigned int listener)
{
	unsigned int i;

	for (i = 0; i < SIM_ACCEPT_BATCH; i++) {
		struct sim_conn *c;
		int one = 1;
		int fd = accept4(s->listen_fds[listener], NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				sim_log("accept: %s", strerror(errno));
			return;
		}
		if (s->free_count == 0) {
			s->stats.conns_refused++;
			close(fd);
			continue;
		}
		c = &s->conns[s->free_slots[--s->free_count]];
		assert(c->fd == -1);
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->events = EPOLLIN;
		c->last_active_ms = s->now_ms;
		c->close_after_write = false;
		c->peer_closed = false;
		c->lingering = false;
		c->linger_until_ms = 0;
		c->req.error = SIM_REQ_OK;
		c->req.complete = false;
		c->in_off = c->in_len = 0;
		c->out_off = c->out_len = 0;
		http_parser_init(&c->parser, HTTP_REQUEST);
		c->parser.data = c;
		if (sim_epoll_set(s, EPOLL_CTL_ADD, fd, EPOLLIN, SIM_TAG_CONN, c->index) != 0) {
			sim_log("epoll add: %s", strerror(errno));
			sim_conn_close(s, c);
			continue;
		}
		s->stats.conns_accepted++;
	}
}

/* Close connections idle for longer than the timeout and lingering ones
 * whose client did not close in time. */
static void
sim_sweep_idle(struct sim *s)
{
	uint64_t limit_ms = (uint64_t)s->opt.idle_timeout_s * 1000u;
	uint32_t i;

	for (i = 0; i < s->opt.conns_max; i++) {
		struct sim_conn *c = &s->conns[i];

		if (c->fd < 0)
			continue;
		if (c->lingering && s->now_ms >= c->linger_until_ms) {
			sim_conn_close(s, c);
			continue;
		}
		if (s->now_ms - c->last_active_ms < limit_ms)
			continue;
		s->stats.conns_idle_closed++;
		sim_conn_close(s, c);
	}
}

/* ---- set-up and main loop ------------------------------------------------ */

static int
sim_listen(struct sim *s)
{
	unsigned int i;

	for (i = 0; i < s->opt.listen_count; i++) {
		const struct sockaddr_in *sa = &s->opt.listen[i];
		char addr[INET_ADDRSTRLEN];
		int one = 1;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		inet_ntop(AF_INET, &sa->sin_addr, addr, sizeof(addr));
		if (fd < 0) {
			sim_log("socket: %s", strerror(errno));
			return -errno;
		}
		s->listen_fds[i] = fd;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
		    listen(fd, SOMAXCONN) != 0) {
			int err = errno;

			sim_log("listen %s:%u: %s", addr, ntohs(sa->sin_port), strerror(err));
			return -err;
		}
		if (sim_epoll_set(s, EPOLL_CTL_ADD, fd, EPOLLIN, SIM_TAG_LISTENER, i) != 0) {
			sim_log("epoll add: %s", strerror(errno));
			return -EIO;
		}
		sim_log("listening on %s:%u", addr, ntohs(sa->sin_port));
	}
	return 0;
}

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

/* Allocate every connection slot and body buffer up front. */
static int
sim_init(struct sim *s)
{
	uint32_t i;

	s->epoll_fd = -1;
	s->signal_fd = -1;
	for (i = 0; i < SIM_LISTEN_MAX; i++)
		s->listen_fds[i] = -1;
	s->conns = calloc(s->opt.conns_max, sizeof(*s->conns));
	s->bodies = malloc((size_t)s->opt.conns_max * s->opt.request_max_bytes);
	s->free_slots = calloc(s->opt.conns_max, sizeof(*s->free_slots));
	if (s->conns == NULL || s->bodies == NULL || s->free_slots == NULL) {
		sim_log("out of memory for %u connections", s->opt.conns_max);
		return -ENOMEM;
	}
	for (i = 0; i < s->opt.conns_max; i++) {
		struct sim_conn *c = &s->conns[i];

		c->fd = -1;
		c->index = i;
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
	s->start_ms = sim_clock_ms();
	s->now_ms = s->start_ms;
	return sim_listen(s);
}

static void
sim_fini(struct sim *s)
{
	uint32_t i;

	for (i = 0; s->conns != NULL && i < s->opt.conns_max; i++)
		if (s->conns[i].fd >= 0)
			sim_conn_close(s, &s->conns[i]);
	for (i = 0; i < SIM_LISTEN_MAX; i++)
		if (s->listen_fds[i] >= 0)
			close(s->listen_fds[i]);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	free(s->conns);
	free(s->bodies);
	free(s->free_slots);
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

static void
sim_run(struct sim *s)
{
	struct epoll_event events[SIM_EVENTS_MAX];
	uint64_t last_sweep_ms = s->now_ms;

	while (!s->stop) {
		int n = epoll_wait(s->epoll_fd, events, SIM_EVENTS_MAX, SIM_TICK_MS);
		int i;

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
	sim_log("%s ready: %u listener(s), %u connections at most", SIM_VERSION,
		s.opt.listen_count, s.opt.conns_max);
	sim_run(&s);
	sim_log("stopped: %" PRIu64 " connections (%" PRIu64 " refused, %" PRIu64
		" idle-closed), %" PRIu64 " requests, %" PRIu64 " 2xx, %" PRIu64 " 4xx",
		s.stats.conns_accepted, s.stats.conns_refused, s.stats.conns_idle_closed,
		s.stats.requests, s.stats.responses_2xx, s.stats.responses_4xx);
	sim_fini(&s);
	return 0;
}
