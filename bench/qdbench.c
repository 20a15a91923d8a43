/*
 * qdbench: the load generator of qdispatch's benchmark harness.
 *
 * It plays Trino/Presto clients over kernel sockets: each query lifecycle is
 * POST /v1/statement, then a GET on every nextUri until a page has none (or a
 * DELETE on the first nextUri, for --cancel-ratio), and it measures the time
 * of every request and of every whole query. Closed loop (--clients N
 * lifecycles back to back) measures the most a target sustains; open loop
 * (--rate R) starts queries on a fixed schedule and measures each query from
 * the moment the schedule meant it to start, so a stall of the target shows
 * in the latencies of every query it delayed (no coordinated omission).
 *
 * One epoll loop per thread (--threads), non-blocking sockets, one keep-alive
 * connection per in-flight lifecycle, reused for the next one. Responses are
 * parsed by libhttp_parser and their bodies scanned as they arrive by
 * qdbench_json (no body is buffered, whatever its size). Latencies go into
 * log-linear histograms (hdr.h, < 0.4 % error), merged across threads at the
 * end. Every resource is sized at start-up from the options.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
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

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <http_parser.h>

#include "hdr.h"
#include "qdbench_json.h"
#include "tool_common.h"

const char qd_tool_prog[] = "qdbench";

#define QDB_VERSION "0.1"
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
#define QDB_CLIENTS_MAX 20000u
#define QDB_THREADS_MAX 64u
#define QDB_SQL_MAX (64u * 1024u)
#define QDB_NAME_MAX 256u	       /* user and source */
#define QDB_AUTHORITY_MAX 300u
#define QDB_HEAD_MAX 1024u	       /* request head without the target */
#define QDB_READ_BYTES (64u * 1024u)   /* one read; the parser consumes it all */
#define QDB_READS_PER_EVENT 16u	       /* reads per readiness event: fairness */
#define QDB_EVENTS_MAX 256
#define QDB_SCAN_NS (20ull * NS_PER_MS) /* how often deadlines are checked */
#define QDB_LATE_NS NS_PER_MS	       /* an open-loop start this late is "late" */

enum qdb_kind { REQ_POST, REQ_GET, REQ_DELETE, REQ_KINDS };
static const char *const kind_names[REQ_KINDS] = {"post", "get", "delete"};

/* Why a query ended without its expected outcome. */
enum qdb_err {
	E_CONNECT,	/* the connection could not be opened */
	E_CLOSED,	/* the server closed or reset it before a whole response */
	E_TIMEOUT,	/* no whole response within --timeout */
	E_STATUS,	/* an HTTP status other than the expected one */
	E_HTTP,		/* the response is not valid HTTP/1.x */
	E_JSON,		/* a 200 body that is not a QueryResults object */
	E_NEXT_URI,	/* nextUri missing on an unfinished query, too long or unusable */
	E_FOREIGN,	/* nextUri points at another host than the target */
	E_PAGES,	/* more than --max-pages pages */
	E_FAILED,	/* the query ended FAILED (an error object) */
	E_NOT_STARTED,	/* open loop: scheduled before the end but never started */
	E_UNFINISHED,	/* still running when the drain time ran out */
	E_KINDS,
};
static const char *const err_names[E_KINDS] = {
	"connect", "closed", "timeout", "http_status", "bad_http", "bad_json", "next_uri",
	"foreign_next_uri", "too_many_pages", "query_failed", "not_started", "unfinished",
};

struct qdb_options {
	char authority[QDB_AUTHORITY_MAX]; /* host:port, the Host header */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	unsigned int threads;
	unsigned int clients;
	bool clients_set;
	double rate; /* queries/s; 0 = closed loop */
	uint64_t duration_ns; /* 0 = no time limit (with --queries) */
	bool duration_set;
	uint64_t warmup_ns;
	uint64_t drain_ns;
	uint64_t timeout_ns;
	uint64_t connect_timeout_ns;
	uint64_t queries; /* 0 = no count limit */
	uint64_t max_pages;
	double cancel_ratio;
	uint64_t seed;
	char sql[QDB_SQL_MAX];
	size_t sql_len;
	char user[QDB_NAME_MAX];
	char source[QDB_NAME_MAX];
	bool presto;
	bool check_host;
	const char *json_path; /* "-" = stdout */
	bool quiet;
	const char *label;
};

struct qdb_stats {
	struct qd_hdr query;
	struct qd_hdr req[REQ_KINDS];
	uint64_t queries_started;
	uint64_t submitted;   /* POSTs answered 200 with a QueryResults body */
	uint64_t finished;    /* reached FINISHED */
	uint64_t canceled;    /* DELETE answered 204/200 */
	uint64_t failed;      /* reached FAILED */
	uint64_t deletes;     /* DELETEs sent */
	uint64_t measured_ok; /* measured queries that ended as intended */
	uint64_t measured_requests;
	uint64_t requests; /* responses received, all phases */
	uint64_t pages;
	uint64_t rows;
	uint64_t connections; /* connections opened */
	uint64_t retries;     /* requests resent after a stale keep-alive close */
	uint64_t late_starts;
	uint64_t err[E_KINDS];
	uint64_t status[600]; /* unexpected HTTP statuses by code */
	uint64_t last_end_ns; /* when the last query ended */
};

struct qdb_worker;

struct qdb_slot {
	struct qdb_worker *w;
	int fd;
	bool connecting;
	bool awaiting;	     /* a request is out, its response not complete */
	bool got_bytes;	     /* some of the current response arrived */
	bool keep_alive;     /* the connection may carry another request */
	bool interest_out;   /* EPOLLOUT is in the interest set */
	uint64_t conn_responses; /* responses on this connection so far */
	http_parser parser;
	bool message_done;
	struct qdb_json json;
	char *out;
	size_t out_cap, out_len, out_off;
	/* The query. */
	bool active;
	bool measured;
	bool cancel;
	uint64_t q_start; /* intended start (open loop) or actual start */
	uint64_t pages;
	enum qdb_kind kind;
	uint64_t req_start;
	uint64_t deadline;
	unsigned int retries;
	char path[QDB_JSON_URI_MAX];
	struct qdb_slot *next_free;
};

struct qdb_worker {
	unsigned int id;
	const struct qdb_options *o;
	int ep;
	struct qdb_slot *slots;
	unsigned int nslots;
	struct qdb_slot *free_list;
	unsigned int active;
	uint64_t quota; /* queries this thread may start; UINT64_MAX = no limit */
	/* Open loop: this thread starts global query numbers id, id+T, id+2T... */
	uint64_t next_k;
	uint64_t t0, warm_end, stop_at;
	bool stopping;
	uint64_t rng;
	struct qdb_stats st;
	char rbuf[QDB_READ_BYTES];
	pthread_t tid;
	int error; /* set when the thread could not run */
};

static http_parser_settings parser_settings;

/* ---- small helpers --------------------------------------------------------- */

static uint64_t
rng_next(uint64_t *s)
{
	*s += QD_TOOL_GOLDEN64;
	return qd_tool_mix64(*s);
}

static double
rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static void
copy_text(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

/* Headers must not carry CR or LF (they would end the header early). */
static bool
header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

/* ---- requests ----------------------------------------------------------------- */

static void worker_close(struct qdb_slot *s);
static void query_end(struct qdb_slot *s, int err);
static void conn_lost(struct qdb_slot *s);

static int
set_interest(struct qdb_slot *s, bool want_out)
{
	if (s->interest_out == want_out)
		return 0;
	struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.ptr = s};

	if (epoll_ctl(s->w->ep, EPOLL_CTL_MOD, s->fd, &ev) != 0)
		return -errno;
	s->interest_out = want_out;
	return 0;
}

static int
open_connection(struct qdb_slot *s)
{
	const struct qdb_options *o = s->w->o;
	int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&o->addr, o->addr_len) != 0 && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};

	if (epoll_ctl(s->w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	s->fd = fd;
	s->connecting = true;
	s->interest_out = true;
	s->keep_alive = true;
	s->conn_responses = 0;
	s->w->st.connections++;
	return 0;
}

/* Writes what is left of the request; errors are handled by the caller. */
static int
flush_out(struct qdb_slot *s)
{
	while (s->out_off < s->out_len) {
		ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);

		if (n > 0) {
			s->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return set_interest(s, true);
		return n < 0 ? -errno : -EPIPE;
	}
	return set_interest(s, false);
}

/* Builds the request of kind s->kind for s->path into s->out. */
static void
build_request(struct qdb_slot *s)
{
	const struct qdb_options *o = s->w->o;
	const char *pfx = o->presto ? "X-Presto" : "X-Trino";
	static const char *const methods[REQ_KINDS] = {"POST", "GET", "DELETE"};
	int n = snprintf(s->out, s->out_cap,
			 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: qdbench/" QDB_VERSION "\r\n"
			 "%s-User: %s\r\n",
			 methods[s->kind], s->path, o->authority, pfx, o->user);

	if (o->source[0] != '\0')
		n += snprintf(s->out + n, s->out_cap - (size_t)n, "%s-Source: %s\r\n", pfx, o->source);
	if (s->kind == REQ_POST) {
		n += snprintf(s->out + n, s->out_cap - (size_t)n,
			      "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n\r\n",
			      o->sql_len);
		memcpy(s->out + n, o->sql, o->sql_len);
		n += (int)o->sql_len;
	} else {
		n += snprintf(s->out + n, s->out_cap - (size_t)n, "\r\n");
	}
	/* out_cap was sized for the longest head, path and SQL. */
	s->out_len = (size_t)n;
	s->out_off = 0;
}

/* Sends (or resends) the current request, opening a connection if needed. */
static void
send_request(struct qdb_slot *s, uint64_t now)
{
	int rc = 0;

	if (s->fd >= 0 && !s->keep_alive)
		worker_close(s);
	if (s->fd < 0) {
		rc = open_connection(s);
		if (rc != 0) {
			query_end(s, E_CONNECT);
			return;
		}
	}
	build_request(s);
	http_parser_init(&s->parser, HTTP_RESPONSE);
	s->parser.data = s;
	s->message_done = false;
	s->got_bytes = false;
	qdb_json_init(&s->json);
	s->awaiting = true;
	s->req_start = now;
	s->deadline = now + (s->connecting ? s->w->o->connect_timeout_ns : 0) + s->w->o->timeout_ns;
	if (s->kind == REQ_DELETE)
		s->w->st.deletes++;
	if (!s->connecting && flush_out(s) != 0)
		conn_lost(s); /* a stale keep-alive connection: it may retry */
}

static void
query_start(struct qdb_slot *s, uint64_t intended, uint64_t now)
{
	struct qdb_worker *w = s->w;

	s->active = true;
	s->q_start = intended;
	s->measured = intended >= w->warm_end && intended < w->stop_at;
	s->pages = 0;
	s->retries = 0;
	s->cancel = w->o->cancel_ratio > 0.0 && rng_unit(&w->rng) < w->o->cancel_ratio;
	s->kind = REQ_POST;
	copy_text(s->path, sizeof(s->path), "/v1/statement");
	w->active++;
	w->st.queries_started++;
	send_request(s, now);
}

/* Ends the query of <s> (err < 0: as intended). The connection is kept only
 * when the last response was complete and allows keep-alive. */
static void
query_end(struct qdb_slot *s, int err)
{
	struct qdb_worker *w = s->w;
	uint64_t now = qd_tool_now_ns();

	if (!s->active)
		return;
	s->active = false;
	s->awaiting = false;
	w->active--;
	if (err >= 0) {
		w->st.err[err]++;
		if (s->fd >= 0)
			worker_close(s);
	} else if (s->measured) {
		w->st.measured_ok++;
	}
	if (s->measured && err < 0)
		qd_hdr_record(&w->st.query, now - s->q_start);
	w->st.last_end_ns = now;
	s->next_free = w->free_list;
	w->free_list = s;
}

/* A next page: GET (or DELETE, for a query chosen for cancelation) on nextUri. */
static void
follow(struct qdb_slot *s, uint64_t now)
{
	const struct qdb_options *o = s->w->o;
	const char *uri = s->json.next_uri;
	const char *path = uri;

	if (s->json.next_uri_truncated) {
		query_end(s, E_NEXT_URI);
		return;
	}
	if (strncasecmp(uri, "http://", 7) == 0) {
		const char *auth = uri + 7;
		const char *slash = strchr(auth, '/');
		size_t alen = slash != NULL ? (size_t)(slash - auth) : strlen(auth);

		if (o->check_host &&
		    (alen != strlen(o->authority) || strncasecmp(auth, o->authority, alen) != 0)) {
			query_end(s, E_FOREIGN);
			return;
		}
		path = slash != NULL ? slash : "/";
	} else if (uri[0] != '/') {
		query_end(s, E_NEXT_URI); /* https or a relative reference: not ours */
		return;
	}
	if (s->pages >= o->max_pages) {
		query_end(s, E_PAGES);
		return;
	}
	/* path points into s->json, which send_request reinitialises. */
	memmove(s->path, path, strlen(path) + 1);
	s->kind = s->cancel && s->kind == REQ_POST ? REQ_DELETE : REQ_GET;
	s->retries = 0;
	send_request(s, now);
}

static void
response_done(struct qdb_slot *s)
{
	struct qdb_worker *w = s->w;
	uint64_t now = qd_tool_now_ns();
	unsigned int status = s->parser.status_code;

	s->awaiting = false;
	s->conn_responses++;
	s->keep_alive = http_should_keep_alive(&s->parser) != 0;
	w->st.requests++;
	if (s->measured) {
		qd_hdr_record(&w->st.req[s->kind], now - s->req_start);
		w->st.measured_requests++;
	}
	if (s->kind == REQ_DELETE) {
		if (status == 204 || status == 200) {
			w->st.canceled++;
			query_end(s, -1);
		} else {
			w->st.status[status < 600 ? status : 0]++;
			query_end(s, E_STATUS);
		}
		return;
	}
	if (status != 200) {
		w->st.status[status < 600 ? status : 0]++;
		query_end(s, E_STATUS);
		return;
	}
	if (!qdb_json_finish(&s->json)) {
		query_end(s, E_JSON);
		return;
	}
	if (s->kind == REQ_POST)
		w->st.submitted++;
	s->pages++;
	w->st.pages++;
	w->st.rows += s->json.rows;
	if (s->json.has_error || strcmp(s->json.state, "FAILED") == 0) {
		w->st.failed++;
		query_end(s, E_FAILED);
		return;
	}
	if (s->json.has_next_uri) {
		follow(s, now);
		return;
	}
	if (strcmp(s->json.state, "FINISHED") == 0) {
		w->st.finished++;
		query_end(s, -1);
	} else {
		query_end(s, E_NEXT_URI); /* unfinished, yet no nextUri */
	}
}

/* ---- http_parser callbacks ---------------------------------------------------- */

static int
on_body(http_parser *p, const char *at, size_t len)
{
	struct qdb_slot *s = p->data;

	/* Only 200 pages are QueryResults; other bodies are skipped. */
	if (p->status_code == 200)
		(void)qdb_json_feed(&s->json, at, len);
	return 0;
}

static int
on_message_complete(http_parser *p)
{
	struct qdb_slot *s = p->data;

	s->message_done = true;
	http_parser_pause(p, 1);
	return 0;
}

/* ---- connection events ---------------------------------------------------------- */

static void
worker_close(struct qdb_slot *s)
{
	if (s->fd < 0)
		return;
	(void)epoll_ctl(s->w->ep, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	s->connecting = false;
	s->interest_out = false;
}

/* The connection ended (EOF, reset, write error) while a request was out. A
 * connection that had served responses before may have been closed by the
 * server's idle timer just as we reused it: a GET or DELETE is then sent
 * again once on a new connection. A POST is not: it may have been taken. */
static void
conn_lost(struct qdb_slot *s)
{
	bool stale = s->conn_responses > 0 && !s->got_bytes;

	worker_close(s);
	if (stale && s->kind != REQ_POST && s->retries == 0) {
		s->retries++;
		s->w->st.retries++;
		send_request(s, qd_tool_now_ns());
		return;
	}
	query_end(s, E_CLOSED);
}

static void
on_readable(struct qdb_slot *s)
{
	struct qdb_worker *w = s->w;

	for (unsigned int round = 0; round < QDB_READS_PER_EVENT; round++) {
		ssize_t n = recv(s->fd, w->rbuf, sizeof(w->rbuf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (!s->awaiting) {
			/* An idle keep-alive connection: the server closed it, or sent
			 * something nobody asked for. Either way it is done. */
			worker_close(s);
			return;
		}
		if (n <= 0) {
			if (n == 0 && s->got_bytes) {
				/* A response delimited by the end of the connection. */
				http_parser_execute(&s->parser, &parser_settings, NULL, 0);
				if (s->message_done) {
					s->keep_alive = false;
					response_done(s);
					return;
				}
			}
			conn_lost(s);
			return;
		}
		s->got_bytes = true;
		size_t used = http_parser_execute(&s->parser, &parser_settings, w->rbuf, (size_t)n);
		enum http_errno herr = HTTP_PARSER_ERRNO(&s->parser);

		if (s->message_done) {
			/* Bytes after a whole response: nothing was asked for them. */
			if (used < (size_t)n)
				s->keep_alive = false;
			http_parser_pause(&s->parser, 0);
			response_done(s);
			if (used < (size_t)n && s->fd >= 0 && !s->awaiting)
				worker_close(s);
			return;
		}
		if (herr != HPE_OK) {
			query_end(s, E_HTTP);
			return;
		}
	}
}

static void
on_event(struct qdb_slot *s, uint32_t events)
{
	if (s->connecting) {
		if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
			return;
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			worker_close(s);
			query_end(s, E_CONNECT);
			return;
		}
		s->connecting = false;
		/* The request waited for the connection: its time starts now. */
		s->req_start = qd_tool_now_ns();
		s->deadline = s->req_start + s->w->o->timeout_ns;
		if (flush_out(s) != 0)
			conn_lost(s);
		return;
	}
	if ((events & EPOLLOUT) && s->out_off < s->out_len) {
		if (flush_out(s) != 0) {
			conn_lost(s);
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		on_readable(s);
}

static void
check_deadlines(struct qdb_worker *w, uint64_t now)
{
	for (unsigned int i = 0; i < w->nslots; i++) {
		struct qdb_slot *s = &w->slots[i];

		if (s->active && s->awaiting && now >= s->deadline)
			query_end(s, s->connecting ? E_CONNECT : E_TIMEOUT);
	}
}

/* ---- the loop --------------------------------------------------------------------- */

static uint64_t
intended_start(const struct qdb_worker *w, uint64_t k)
{
	return w->t0 + (uint64_t)((double)k * (double)NS_PER_S / w->o->rate);
}

/* Starts what is due: closed loop, a query on every free slot; open loop, the
 * scheduled queries whose time has come, while slots are free. Returns the
 * time of the next scheduled start (open loop), or UINT64_MAX. */
static uint64_t
start_due(struct qdb_worker *w, uint64_t now)
{
	const struct qdb_options *o = w->o;

	if (w->stopping)
		return UINT64_MAX;
	if (o->rate <= 0.0) {
		/* Each slot at most once per call: a target that refuses connections
		 * at once must not make this a busy loop (the next call comes after
		 * an epoll wait). */
		for (unsigned int i = 0; i < w->nslots && w->free_list != NULL &&
					 w->st.queries_started < w->quota; i++) {
			struct qdb_slot *s = w->free_list;

			w->free_list = s->next_free;
			query_start(s, now, now);
		}
		return UINT64_MAX;
	}
	for (;;) {
		if (o->queries != 0 && w->next_k >= o->queries)
			return UINT64_MAX;
		uint64_t at = intended_start(w, w->next_k);

		if (at >= w->stop_at)
			return UINT64_MAX;
		if (at > now)
			return at;
		if (w->free_list == NULL)
			return UINT64_MAX; /* late: a slot's end starts it */
		struct qdb_slot *s = w->free_list;

		w->free_list = s->next_free;
		if (now - at > QDB_LATE_NS)
			w->st.late_starts++;
		w->next_k += o->threads;
		query_start(s, at, now);
		now = qd_tool_now_ns();
	}
}

static bool
all_started(const struct qdb_worker *w)
{
	const struct qdb_options *o = w->o;

	if (o->rate <= 0.0)
		return w->st.queries_started >= w->quota;
	return (o->queries != 0 && w->next_k >= o->queries) ||
	       intended_start(w, w->next_k) >= w->stop_at;
}

static void *
worker_main(void *arg)
{
	struct qdb_worker *w = arg;
	const struct qdb_options *o = w->o;
	struct epoll_event events[QDB_EVENTS_MAX];
	uint64_t next_scan = w->t0 + QDB_SCAN_NS;
	uint64_t drain_end = UINT64_MAX;
	struct timespec start = {.tv_sec = (time_t)(w->t0 / NS_PER_S),
				 .tv_nsec = (long)(w->t0 % NS_PER_S)};

	/* Every thread starts at t0, the start of the warm-up (or of the window). */
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &start, NULL) == EINTR)
		;
	for (;;) {
		uint64_t now = qd_tool_now_ns();

		if (!w->stopping && (now >= w->stop_at || qd_tool_stop_signal != 0 ||
				     (all_started(w) && w->active == 0))) {
			w->stopping = true;
			drain_end = now + o->drain_ns;
			/* Open loop: what the schedule held before the end, not started. */
			if (o->rate > 0.0) {
				while (intended_start(w, w->next_k) < w->stop_at &&
				       intended_start(w, w->next_k) <= now &&
				       (o->queries == 0 || w->next_k < o->queries)) {
					w->st.err[E_NOT_STARTED]++;
					w->next_k += o->threads;
				}
			}
		}
		if (w->stopping && (w->active == 0 || now >= drain_end))
			break;
		uint64_t next_start = start_due(w, now);

		now = qd_tool_now_ns();
		if (now >= next_scan) {
			check_deadlines(w, now);
			next_scan = now + QDB_SCAN_NS;
			continue; /* slots may have been freed: start again */
		}
		uint64_t wake = next_scan;

		if (next_start < wake)
			wake = next_start;
		if (!w->stopping && w->stop_at < wake)
			wake = w->stop_at;
		if (w->stopping && drain_end < wake)
			wake = drain_end;
		uint64_t wait_ns = wake > now ? wake - now : 0;
		struct timespec ts = {.tv_sec = (time_t)(wait_ns / NS_PER_S),
				      .tv_nsec = (long)(wait_ns % NS_PER_S)};
		int n = epoll_pwait2(w->ep, events, QDB_EVENTS_MAX, &ts, NULL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "qdbench: thread %u: epoll_pwait2: %s\n", w->id, strerror(errno));
			w->error = errno;
			break;
		}
		for (int i = 0; i < n; i++)
			on_event(events[i].data.ptr, events[i].events);
	}
	/* Queries still running after the drain time. */
	for (unsigned int i = 0; i < w->nslots; i++) {
		struct qdb_slot *s = &w->slots[i];

		if (s->active)
			query_end(s, E_UNFINISHED);
		worker_close(s);
	}
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------------ */

static int
worker_init(struct qdb_worker *w, const struct qdb_options *o, unsigned int id, uint64_t t0)
{
	w->id = id;
	w->o = o;
	w->t0 = t0;
	w->warm_end = t0 + o->warmup_ns;
	w->stop_at = o->duration_ns == 0 ? UINT64_MAX : w->warm_end + o->duration_ns;
	w->rng = o->seed + id * 0x100000001b3ull;
	w->next_k = id;
	qd_hdr_init(&w->st.query);
	for (unsigned int k = 0; k < REQ_KINDS; k++)
		qd_hdr_init(&w->st.req[k]);
	/* Clients and queries are shared out; the first threads take the remainder. */
	w->nslots = o->clients / o->threads + (id < o->clients % o->threads ? 1u : 0u);
	if (o->queries == 0)
		w->quota = UINT64_MAX;
	else
		w->quota = o->queries / o->threads + (id < o->queries % o->threads ? 1u : 0u);
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0)
		return -errno;
	w->slots = calloc(w->nslots, sizeof(*w->slots));
	if (w->slots == NULL)
		return -ENOMEM;
	size_t out_cap = QDB_HEAD_MAX + 2 * QDB_NAME_MAX + QDB_AUTHORITY_MAX + QDB_JSON_URI_MAX +
			 o->sql_len;

	for (unsigned int i = w->nslots; i-- > 0;) {
		struct qdb_slot *s = &w->slots[i];

		s->w = w;
		s->fd = -1;
		s->out_cap = out_cap;
		s->out = malloc(out_cap);
		if (s->out == NULL)
			return -ENOMEM;
		s->next_free = w->free_list;
		w->free_list = s;
	}
	return 0;
}

static void
worker_free(struct qdb_worker *w)
{
	for (unsigned int i = 0; w->slots != NULL && i < w->nslots; i++)
		free(w->slots[i].out);
	free(w->slots);
	if (w->ep >= 0)
		close(w->ep);
}

/* ---- reporting --------------------------------------------------------------------- */

struct qdb_total {
	struct qdb_stats st;
	struct qd_hdr request; /* POST + GET + DELETE */
	double window_s;
	double elapsed_s;
};

static void
stats_merge(struct qdb_stats *d, const struct qdb_stats *s)
{
	qd_hdr_merge(&d->query, &s->query);
	for (unsigned int k = 0; k < REQ_KINDS; k++)
		qd_hdr_merge(&d->req[k], &s->req[k]);
	d->queries_started += s->queries_started;
	d->submitted += s->submitted;
	d->finished += s->finished;
	d->canceled += s->canceled;
	d->failed += s->failed;
	d->deletes += s->deletes;
	d->measured_ok += s->measured_ok;
	d->measured_requests += s->measured_requests;
	d->requests += s->requests;
	d->pages += s->pages;
	d->rows += s->rows;
	d->connections += s->connections;
	d->retries += s->retries;
	d->late_starts += s->late_starts;
	for (unsigned int e = 0; e < E_KINDS; e++)
		d->err[e] += s->err[e];
	for (unsigned int c = 0; c < 600; c++)
		d->status[c] += s->status[c];
	if (s->last_end_ns > d->last_end_ns)
		d->last_end_ns = s->last_end_ns;
}

static uint64_t
errors_total(const struct qdb_stats *st)
{
	uint64_t n = 0;

	for (unsigned int e = 0; e < E_KINDS; e++)
		n += st->err[e];
	return n;
}

static double
us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void
json_hist(FILE *f, const char *name, const struct qd_hdr *h, bool comma)
{
	fprintf(f,
		"    \"%s\": {\"count\": %" PRIu64 ", \"min\": %.1f, \"mean\": %.1f, \"p50\": %.1f, "
		"\"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}%s\n",
		name, h->count, us(h->count ? h->min : 0), qd_hdr_mean(h) / 1000.0,
		us(qd_hdr_percentile(h, 50)), us(qd_hdr_percentile(h, 90)),
		us(qd_hdr_percentile(h, 99)), us(qd_hdr_percentile(h, 99.9)), us(h->max),
		comma ? "," : "");
}

static void
json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
report_json(FILE *f, const struct qdb_options *o, const struct qdb_total *t)
{
	const struct qdb_stats *st = &t->st;

	fprintf(f, "{\n  \"tool\": \"qdbench " QDB_VERSION "\",\n  \"target\": ");
	json_string(f, o->authority);
	if (o->label != NULL) {
		fprintf(f, ",\n  \"label\": ");
		json_string(f, o->label);
	}
	fprintf(f, ",\n  \"mode\": \"%s\",\n  \"rate\": %.3f,\n  \"clients\": %u,\n  \"threads\": %u,\n",
		o->rate > 0 ? "open" : "closed", o->rate, o->clients, o->threads);
	fprintf(f, "  \"protocol\": \"%s\",\n  \"cancel_ratio\": %.4f,\n", o->presto ? "presto" : "trino",
		o->cancel_ratio);
	fprintf(f, "  \"warmup_s\": %.3f,\n  \"window_s\": %.6f,\n  \"elapsed_s\": %.6f,\n",
		(double)o->warmup_ns / NS_PER_S, t->window_s, t->elapsed_s);
	fprintf(f,
		"  \"queries\": {\"started\": %" PRIu64 ", \"submitted\": %" PRIu64
		", \"finished\": %" PRIu64 ", \"canceled\": %" PRIu64 ", \"failed\": %" PRIu64
		", \"deletes\": %" PRIu64 ", \"measured\": %" PRIu64 ", \"per_s\": %.3f},\n",
		st->queries_started, st->submitted, st->finished, st->canceled, st->failed,
		st->deletes, st->measured_ok, t->window_s > 0 ? (double)st->measured_ok / t->window_s : 0.0);
	fprintf(f,
		"  \"requests\": {\"total\": %" PRIu64 ", \"measured\": %" PRIu64 ", \"per_s\": %.3f, "
		"\"retries\": %" PRIu64 "},\n",
		st->requests, st->measured_requests,
		t->window_s > 0 ? (double)st->measured_requests / t->window_s : 0.0, st->retries);
	fprintf(f, "  \"pages\": %" PRIu64 ",\n  \"rows\": %" PRIu64 ",\n  \"connections\": %" PRIu64
		   ",\n  \"late_starts\": %" PRIu64 ",\n",
		st->pages, st->rows, st->connections, st->late_starts);
	fprintf(f, "  \"errors\": {\"total\": %" PRIu64, errors_total(st));
	for (unsigned int e = 0; e < E_KINDS; e++)
		fprintf(f, ", \"%s\": %" PRIu64, err_names[e], st->err[e]);
	fprintf(f, "},\n  \"http_status\": {");
	bool first = true;

	for (unsigned int c = 0; c < 600; c++) {
		if (st->status[c] == 0)
			continue;
		fprintf(f, "%s\"%u\": %" PRIu64, first ? "" : ", ", c, st->status[c]);
		first = false;
	}
	fprintf(f, "},\n  \"latency_us\": {\n");
	json_hist(f, "query", &st->query, true);
	json_hist(f, "request", &t->request, true);
	for (unsigned int k = 0; k < REQ_KINDS; k++)
		json_hist(f, kind_names[k], &st->req[k], k + 1 < REQ_KINDS);
	fprintf(f, "  }\n}\n");
}

static void
text_row(FILE *f, const char *name, const struct qd_hdr *h)
{
	if (h->count == 0)
		return;
	fprintf(f, "  %-8s %9" PRIu64 " %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, h->count,
		qd_hdr_percentile(h, 50) / 1e6, qd_hdr_percentile(h, 90) / 1e6,
		qd_hdr_percentile(h, 99) / 1e6, qd_hdr_percentile(h, 99.9) / 1e6, h->max / 1e6,
		qd_hdr_mean(h) / 1e6);
}

static void
report_text(FILE *f, const struct qdb_options *o, const struct qdb_total *t)
{
	const struct qdb_stats *st = &t->st;

	if (o->rate > 0)
		fprintf(f, "qdbench: %s, open loop at %.1f queries/s (at most %u in flight), %u thread(s)\n",
			o->authority, o->rate, o->clients, o->threads);
	else
		fprintf(f, "qdbench: %s, closed loop, %u client(s), %u thread(s)\n", o->authority,
			o->clients, o->threads);
	fprintf(f, "window %.3f s after %.3f s of warm-up; %.3f s in all\n", t->window_s,
		(double)o->warmup_ns / NS_PER_S, t->elapsed_s);
	fprintf(f, "queries:  %" PRIu64 " measured, %.1f/s; in all %" PRIu64 " started, %" PRIu64
		   " submitted, %" PRIu64 " finished, %" PRIu64 " canceled, %" PRIu64 " failed\n",
		st->measured_ok, t->window_s > 0 ? (double)st->measured_ok / t->window_s : 0.0,
		st->queries_started, st->submitted, st->finished, st->canceled, st->failed);
	fprintf(f, "requests: %" PRIu64 " measured, %.1f/s; in all %" PRIu64 " (%" PRIu64
		   " pages, %" PRIu64 " rows, %" PRIu64 " connections, %" PRIu64 " retries)\n",
		st->measured_requests,
		t->window_s > 0 ? (double)st->measured_requests / t->window_s : 0.0, st->requests,
		st->pages, st->rows, st->connections, st->retries);
	if (o->rate > 0)
		fprintf(f, "late starts (> 1 ms after their time): %" PRIu64 "\n", st->late_starts);
	uint64_t errs = errors_total(st);

	fprintf(f, "errors:   %" PRIu64, errs);
	for (unsigned int e = 0; e < E_KINDS; e++)
		if (st->err[e] != 0)
			fprintf(f, ", %s %" PRIu64, err_names[e], st->err[e]);
	for (unsigned int c = 0; c < 600; c++)
		if (st->status[c] != 0)
			fprintf(f, ", HTTP %u: %" PRIu64, c, st->status[c]);
	fprintf(f, "\nlatency (ms)   count       p50       p90       p99     p99.9       max      mean\n");
	text_row(f, "query", &st->query);
	text_row(f, "request", &t->request);
	for (unsigned int k = 0; k < REQ_KINDS; k++)
		text_row(f, kind_names[k], &st->req[k]);
}

/* ---- options ----------------------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
"usage: qdbench [OPTIONS] URL\n"
"\n"
"Load generator for the Trino/Presto client protocol. Each query lifecycle is\n"
"POST /v1/statement, then GET on every nextUri until a page has none; latencies\n"
"of every request and every query go into log-linear histograms (< 0.4 %% error)\n"
"and are reported as p50/p90/p99/p99.9/max with throughput and errors by kind.\n"
"URL is http://HOST:PORT (no TLS); the Host header is HOST:PORT as written.\n"
"\n"
"Load:\n"
"  -c, --clients N       closed loop: N query lifecycles in flight, each starting\n"
"                        the next query as soon as one ends (default 10). With\n"
"                        --rate: the most queries in flight (default 256)\n"
"  -r, --rate R          open loop: start R queries/s on a fixed schedule; a query's\n"
"                        latency counts from its scheduled start, so delays of the\n"
"                        target (or of a full --clients pool) are not hidden\n"
"  -t, --threads T       threads, each with its own epoll loop and share of the\n"
"                        clients and rate (default 1)\n"
"  -d, --duration S      measure for S seconds (default 10; fractions allowed)\n"
"  -w, --warmup S        run S seconds before measuring (default 0)\n"
"  -n, --queries N       start N queries in all, then stop (with no --duration:\n"
"                        no time limit). Warm-up queries count towards N\n"
"      --drain S         after the end, wait at most S seconds for queries in\n"
"                        flight (default 10); the rest count as 'unfinished'\n"
"      --timeout S       a response must be complete within S seconds of its\n"
"                        request (default 10)\n"
"      --connect-timeout S  time allowed for a connection to open (default 3)\n"
"\n"
"Queries:\n"
"      --rows R          rows per query, the simulator's rows= (default 1)\n"
"      --page-rows P     rows per page, the simulator's page_rows= (default 1000)\n"
"      --sim TEXT        more simulator directives, e.g. 'queue_ms=5 run_ms=10'\n"
"      --sql TEXT        the statement, instead of\n"
"                        'SELECT 1 /* sim: rows=R page_rows=P TEXT */'\n"
"      --cancel-ratio F  cancel this fraction of queries (0..1, default 0): DELETE\n"
"                        on the nextUri of the first page instead of a GET\n"
"      --max-pages N     a query with more pages is an error (default 1000000)\n"
"  -u, --user NAME       X-Trino-User (default qdbench)\n"
"  -s, --source NAME     X-Trino-Source (default qdbench; '' sends none)\n"
"      --presto          X-Presto-* headers instead of X-Trino-*\n"
"      --any-host        follow a nextUri that names another host:port (on the\n"
"                        target's connection); by default that is an error\n"
"                        (foreign_next_uri): a proxy must forward Host unchanged\n"
"      --seed N          seed of the cancel choices (default 1)\n"
"\n"
"Output:\n"
"      --json FILE       write the results as JSON to FILE ('-': stdout, and the\n"
"                        text report goes to stderr)\n"
"      --label TEXT      a name for this run, copied into the JSON\n"
"  -q, --quiet           no text report\n"
"  -h, --help            this help\n"
"\n"
"What is measured. A query is measured when it starts (its scheduled start, in\n"
"open loop) inside the window [warm-up end, warm-up end + duration); its\n"
"latency runs from that start to its last response, and its requests' latencies\n"
"(send to whole response; after connecting, for a new connection) are kept by\n"
"method. Rates are measured queries (or requests) per window second. Totals\n"
"('in all') count every phase: they are what a server saw. A query that ends\n"
"in an error has its requests measured but not its query latency.\n"
"\n"
"Errors. connect, closed (connection closed or reset mid-request; a GET on a\n"
"reused connection closed by the server is sent again once, a POST never),\n"
"timeout, http_status (any status but 200, or 204/200 to DELETE; counted by code),\n"
"bad_http, bad_json (a 200 body that is not one JSON object), next_uri (missing\n"
"on an unfinished page, or unusable), foreign_next_uri, too_many_pages,\n"
"query_failed (state FAILED or an error object), not_started (open loop: due\n"
"before the end but no free client), unfinished (still running after --drain).\n"
"\n"
"Connections are kept alive and reused, one per query in flight; a response\n"
"with 'Connection: close' (or an error) closes it and the next request opens a\n"
"new one. SIGINT or SIGTERM ends the run early and reports what was measured.\n"
"\n"
"Exit status: 0 when the run completed with no error, 1 when some query ended in\n"
"an error, 2 on a usage error, 3 when the run could not start.\n");
}

enum {
	OPT_DRAIN = 256, OPT_TIMEOUT, OPT_CONNECT_TIMEOUT, OPT_ROWS, OPT_PAGE_ROWS, OPT_SIM,
	OPT_SQL, OPT_CANCEL, OPT_MAX_PAGES, OPT_PRESTO, OPT_ANY_HOST, OPT_SEED, OPT_JSON, OPT_LABEL,
};

static int
parse_url(const char *url, struct qdb_options *o)
{
	if (strncasecmp(url, "http://", 7) != 0) {
		fprintf(stderr, "qdbench: URL '%s': expected http://HOST:PORT%s\n", url,
			strncasecmp(url, "https://", 8) == 0 ? " (no TLS)" : "");
		return -EINVAL;
	}
	const char *auth = url + 7;
	size_t len = strcspn(auth, "/");

	if (auth[len] == '/' && auth[len + 1] != '\0') {
		fprintf(stderr, "qdbench: URL '%s': give only http://HOST:PORT; the paths are the protocol's\n",
			url);
		return -EINVAL;
	}
	if (len == 0 || len >= sizeof(o->authority) - 4) {
		fprintf(stderr, "qdbench: URL '%s': bad host\n", url);
		return -EINVAL;
	}
	memcpy(o->authority, auth, len);
	o->authority[len] = '\0';
	/* A missing port is 80; the Host header then names it too. */
	const char *rb = strrchr(o->authority, ']');
	const char *colon = strrchr(o->authority, ':');

	if (colon == NULL || (rb != NULL && colon < rb))
		strcat(o->authority, ":80");
	int rc = qd_tool_parse_hostport(o->authority, false, &o->addr, &o->addr_len);

	if (rc != 0) {
		fprintf(stderr, "qdbench: URL '%s': %s\n", url,
			rc == -EHOSTUNREACH ? "the host does not resolve" : "expected http://HOST:PORT");
		return rc;
	}
	return 0;
}

static int
seconds_opt(const char *name, const char *v, double min_s, uint64_t *out)
{
	if (qd_tool_parse_seconds(v, min_s, 86400.0 * 365, out) != 0)
		return qd_tool_bad_value(name, v, "seconds");
	return 0;
}

static int
parse_options(int argc, char **argv, struct qdb_options *o)
{
	static const struct option longopts[] = {
		{"clients", required_argument, NULL, 'c'},
		{"rate", required_argument, NULL, 'r'},
		{"threads", required_argument, NULL, 't'},
		{"duration", required_argument, NULL, 'd'},
		{"warmup", required_argument, NULL, 'w'},
		{"queries", required_argument, NULL, 'n'},
		{"drain", required_argument, NULL, OPT_DRAIN},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
		{"rows", required_argument, NULL, OPT_ROWS},
		{"page-rows", required_argument, NULL, OPT_PAGE_ROWS},
		{"sim", required_argument, NULL, OPT_SIM},
		{"sql", required_argument, NULL, OPT_SQL},
		{"cancel-ratio", required_argument, NULL, OPT_CANCEL},
		{"max-pages", required_argument, NULL, OPT_MAX_PAGES},
		{"user", required_argument, NULL, 'u'},
		{"source", required_argument, NULL, 's'},
		{"presto", no_argument, NULL, OPT_PRESTO},
		{"any-host", no_argument, NULL, OPT_ANY_HOST},
		{"seed", required_argument, NULL, OPT_SEED},
		{"json", required_argument, NULL, OPT_JSON},
		{"label", required_argument, NULL, OPT_LABEL},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t v, rows = 1, page_rows = 1000;
	const char *sim = "", *sql = NULL;
	int c;

	*o = (struct qdb_options){
		.threads = 1,
		.clients = 10,
		.duration_ns = 10 * NS_PER_S,
		.drain_ns = 10 * NS_PER_S,
		.timeout_ns = 10 * NS_PER_S,
		.connect_timeout_ns = 3 * NS_PER_S,
		.max_pages = 1000000,
		.seed = 1,
		.check_host = true,
	};
	copy_text(o->user, sizeof(o->user), "qdbench");
	copy_text(o->source, sizeof(o->source), "qdbench");
	while ((c = getopt_long(argc, argv, "c:r:t:d:w:n:u:s:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (qd_tool_parse_u64(optarg, 1, QDB_CLIENTS_MAX, &v) != 0)
				return qd_tool_bad_value("clients", optarg, "1.." "20000");
			o->clients = (unsigned int)v;
			o->clients_set = true;
			break;
		case 'r': {
			char *end;

			errno = 0;
			o->rate = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' || !(o->rate > 0.0) ||
			    o->rate > 1e7)
				return qd_tool_bad_value("rate", optarg, "queries per second, > 0");
			break;
		}
		case 't':
			if (qd_tool_parse_u64(optarg, 1, QDB_THREADS_MAX, &v) != 0)
				return qd_tool_bad_value("threads", optarg, "1..64");
			o->threads = (unsigned int)v;
			break;
		case 'd':
			if (seconds_opt("duration", optarg, 0.001, &o->duration_ns) != 0)
				return -EINVAL;
			o->duration_set = true;
			break;
		case 'w':
			if (seconds_opt("warmup", optarg, 0, &o->warmup_ns) != 0)
				return -EINVAL;
			break;
		case 'n':
			if (qd_tool_parse_u64(optarg, 1, UINT64_MAX / 2, &o->queries) != 0)
				return qd_tool_bad_value("queries", optarg, "a positive count");
			break;
		case OPT_DRAIN:
			if (seconds_opt("drain", optarg, 0, &o->drain_ns) != 0)
				return -EINVAL;
			break;
		case OPT_TIMEOUT:
			if (seconds_opt("timeout", optarg, 0.001, &o->timeout_ns) != 0)
				return -EINVAL;
			break;
		case OPT_CONNECT_TIMEOUT:
			if (seconds_opt("connect-timeout", optarg, 0.001, &o->connect_timeout_ns) != 0)
				return -EINVAL;
			break;
		case OPT_ROWS:
			if (qd_tool_parse_u64(optarg, 0, UINT64_MAX / 2, &rows) != 0)
				return qd_tool_bad_value("rows", optarg, "a count");
			break;
		case OPT_PAGE_ROWS:
			if (qd_tool_parse_u64(optarg, 1, UINT64_MAX / 2, &page_rows) != 0)
				return qd_tool_bad_value("page-rows", optarg, "a positive count");
			break;
		case OPT_SIM:
			sim = optarg;
			break;
		case OPT_SQL:
			sql = optarg;
			break;
		case OPT_CANCEL: {
			char *end;

			errno = 0;
			o->cancel_ratio = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' || !(o->cancel_ratio >= 0.0) ||
			    o->cancel_ratio > 1.0)
				return qd_tool_bad_value("cancel-ratio", optarg, "a fraction in 0..1");
			break;
		}
		case OPT_MAX_PAGES:
			if (qd_tool_parse_u64(optarg, 1, UINT64_MAX / 2, &o->max_pages) != 0)
				return qd_tool_bad_value("max-pages", optarg, "a positive count");
			break;
		case 'u':
		case 's': {
			char *dst = c == 'u' ? o->user : o->source;

			if (strlen(optarg) >= QDB_NAME_MAX || !header_safe(optarg) ||
			    (c == 'u' && optarg[0] == '\0'))
				return qd_tool_bad_value(c == 'u' ? "user" : "source", optarg,
							 "a name of at most 255 bytes, no CR/LF");
			copy_text(dst, QDB_NAME_MAX, optarg);
			break;
		}
		case OPT_PRESTO:
			o->presto = true;
			break;
		case OPT_ANY_HOST:
			o->check_host = false;
			break;
		case OPT_SEED:
			if (qd_tool_parse_u64(optarg, 0, UINT64_MAX, &o->seed) != 0)
				return qd_tool_bad_value("seed", optarg, "an integer");
			break;
		case OPT_JSON:
			o->json_path = optarg;
			break;
		case OPT_LABEL:
			o->label = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, "qdbench: try qdbench --help\n");
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "qdbench: %s (try qdbench --help)\n",
			optind >= argc ? "no URL given" : "one URL only");
		return -EINVAL;
	}
	if (parse_url(argv[optind], o) != 0)
		return -EINVAL;
	if (o->rate > 0.0 && !o->clients_set)
		o->clients = 256;
	if (o->queries != 0 && !o->duration_set)
		o->duration_ns = 0;
	if (o->clients < o->threads) {
		fprintf(stderr, "qdbench: --clients %u is less than --threads %u: each thread needs one\n",
			o->clients, o->threads);
		return -EINVAL;
	}
	int n;

	if (sql != NULL)
		n = snprintf(o->sql, sizeof(o->sql), "%s", sql);
	else
		n = snprintf(o->sql, sizeof(o->sql), "SELECT 1 /* sim: rows=%" PRIu64
			     " page_rows=%" PRIu64 "%s%s */", rows, page_rows, sim[0] ? " " : "", sim);
	if (n < 0 || (size_t)n >= sizeof(o->sql)) {
		fprintf(stderr, "qdbench: the statement is longer than %u bytes\n", QDB_SQL_MAX - 1);
		return -EINVAL;
	}
	if (strstr(sim, "*/") != NULL) {
		fprintf(stderr, "qdbench: --sim '%s': must not end the comment\n", sim);
		return -EINVAL;
	}
	o->sql_len = (size_t)n;
	return 0;
}

/* One descriptor per client, plus a few: raise the soft limit if it is lower. */
static int
raise_fd_limit(unsigned int clients)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)clients + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	if (rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		fprintf(stderr, "qdbench: %u clients need %llu file descriptors; the hard limit is %llu\n",
			clients, (unsigned long long)want, (unsigned long long)rl.rlim_max);
		return -EMFILE;
	}
	rl.rlim_cur = want;
	return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : -errno;
}

int
main(int argc, char **argv)
{
	static struct qdb_options o;

	if (parse_options(argc, argv, &o) != 0)
		return 2;
	if (raise_fd_limit(o.clients) != 0)
		return 3;
	parser_settings.on_body = on_body;
	parser_settings.on_message_complete = on_message_complete;

	struct sigaction sa = {.sa_handler = qd_tool_on_signal};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct qdb_worker *workers = calloc(o.threads, sizeof(*workers));

	if (workers == NULL) {
		fprintf(stderr, "qdbench: out of memory\n");
		return 3;
	}
	for (unsigned int i = 0; i < o.threads; i++)
		workers[i].ep = -1;
	/* Every thread runs on the same clock from the same start. */
	uint64_t t0 = qd_tool_now_ns() + 2 * NS_PER_MS * o.threads;
	int rc = 0;

	for (unsigned int i = 0; i < o.threads && rc == 0; i++) {
		rc = worker_init(&workers[i], &o, i, t0);
		if (rc != 0)
			fprintf(stderr, "qdbench: thread %u: %s\n", i, strerror(-rc));
	}
	unsigned int started = 0;

	for (; rc == 0 && started < o.threads; started++) {
		int e = pthread_create(&workers[started].tid, NULL, worker_main, &workers[started]);

		if (e != 0) {
			fprintf(stderr, "qdbench: pthread_create: %s\n", strerror(e));
			qd_tool_stop_signal = SIGTERM;
			rc = -e;
		}
	}
	for (unsigned int i = 0; i < started; i++)
		pthread_join(workers[i].tid, NULL);
	uint64_t end = qd_tool_now_ns();
	static struct qdb_total total;

	qd_hdr_init(&total.st.query);
	for (unsigned int k = 0; k < REQ_KINDS; k++)
		qd_hdr_init(&total.st.req[k]);
	qd_hdr_init(&total.request);
	for (unsigned int i = 0; i < started; i++) {
		stats_merge(&total.st, &workers[i].st);
		if (workers[i].error != 0)
			rc = -workers[i].error;
	}
	for (unsigned int k = 0; k < REQ_KINDS; k++)
		qd_hdr_merge(&total.request, &total.st.req[k]);
	/* The window: the full duration, or less when the run ended sooner (a
	 * query count, a signal). */
	uint64_t warm_end = t0 + o.warmup_ns;
	uint64_t win_end = o.duration_ns == 0 ? end : warm_end + o.duration_ns;

	if (win_end > end)
		win_end = end;
	if (o.duration_ns == 0 || qd_tool_stop_signal != 0)
		win_end = total.st.last_end_ns > warm_end ? total.st.last_end_ns : end;
	total.window_s = win_end > warm_end ? (double)(win_end - warm_end) / NS_PER_S : 0.0;
	total.elapsed_s = end > t0 ? (double)(end - t0) / NS_PER_S : 0.0;

	bool json_stdout = o.json_path != NULL && strcmp(o.json_path, "-") == 0;

	if (!o.quiet)
		report_text(json_stdout ? stderr : stdout, &o, &total);
	if (o.json_path != NULL) {
		FILE *f = json_stdout ? stdout : fopen(o.json_path, "w");

		if (f == NULL) {
			fprintf(stderr, "qdbench: %s: %s\n", o.json_path, strerror(errno));
			rc = -EIO;
		} else {
			report_json(f, &o, &total);
			if ((f != stdout && fclose(f) != 0) || (f == stdout && fflush(f) != 0)) {
				fprintf(stderr, "qdbench: writing %s failed\n", o.json_path);
				rc = -EIO;
			}
		}
	}
	for (unsigned int i = 0; i < o.threads; i++)
		worker_free(&workers[i]);
	free(workers);
	if (rc != 0)
		return 3;
	return errors_total(&total.st) == 0 ? 0 : 1;
}
