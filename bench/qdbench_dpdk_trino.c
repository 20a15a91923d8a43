/*
 * qdbench-dpdk's query mode: both sides of qdispatchd's query proxy over one
 * DPDK link, so that the proxy's own ceiling is measured with no kernel on
 * the path (BRIEF section 7; bench/run memif-proxy).
 *
 * Clients: every connection slot runs Trino query lifecycles on one keep-alive
 * connection to qdispatchd's VIP, one request in flight: POST /v1/statement,
 * then a GET of each nextUri until a page has none. Every response is checked:
 * status 200, a QueryResults body with the query's id, a nextUri on the same
 * authority exactly as many times as the coordinators were told (--pages), a
 * final page with our one row. Anything else is an error of its own kind.
 *
 * Coordinators: the worker also holds the coordinator addresses (they are in
 * its address table, so it answers ARP and accepts TCP on them) and listens on
 * the coordinator port. It answers like a minimal, stateless Trino
 * coordinator: a POST gets a QUEUED QueryResults with a fresh id (a counter in
 * Trino's id shape) and a nextUri built from the Host header, as Trino builds
 * it; GET of page token k < pages a RUNNING page pointing at token k + 1;
 * token = pages the FINISHED page with one row and no nextUri. /v1/info and
 * /v1/cluster answer qdispatchd's health checks. A request we cannot answer
 * gets 404 and is counted as an error: qdispatchd sent something a client
 * never asked for.
 *
 * Everything is allocated at start-up (one state per client slot, a fixed
 * pool of coordinator-side connection states); a response is built in one
 * mbuf from the pool.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <http_parser.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include "qdbench_dpdk.h"
#include "trino_proto.h"
#include "worker.h"

#define BODY_MAX 2048u      /* a response body we check; ours are under 1 KiB */
#define TARGET_MAX 256u     /* a request target, and the next GET's */
#define HOST_MAX 64u        /* a Host value */
#define FIELD_MAX 8u        /* header names we look at ("host") */
#define JSON_MAX 1200u      /* one QueryResults we write */
#define SQL "SELECT 1"
#define SLUG "yqdbench"

/* Which requests our coordinators answered (the report). */
#define COORD_REQUESTS(X) X(submit) X(page) X(info) X(cluster) X(query) X(unknown)

enum coord_request {
#define QD_X(name) CR_##name,
	COORD_REQUESTS(QD_X)
#undef QD_X
	CR_COUNT
};

static const char *const coord_request_names[CR_COUNT] = {
#define QD_X(name) #name,
	COORD_REQUESTS(QD_X)
#undef QD_X
};

/* A client slot's query in progress. */
struct qclient {
	http_parser parser;
	uint32_t step;          /* 0: the POST in flight; k: the GET of page k */
	bool in_flight;         /* a request sent, its response not complete */
	bool complete;          /* the parser saw the response's end */
	bool drain;             /* close once the query in flight is complete */
	bool closing;           /* we half-closed: a normal close is complete */
	bool body_over;
	uint32_t body_len;
	uint64_t query_tsc;     /* when the POST went out */
	char id[QD_TRINO_ID_MAX + 1];
	char target[TARGET_MAX];
	char body[BODY_MAX + 1];
};

/* One connection qdispatchd opened to one of our coordinators. */
struct qcoord {
	struct qdb_trino *t;
	struct qd_tcp_conn *conn; /* NULL when free */
	http_parser parser;
	uint32_t index;
	uint32_t coord;           /* which of --coordinator it reached */
	bool complete;
	bool shut;                /* FIN sent */
	bool in_value;            /* the last header callback was a value */
	bool is_host;             /* the header being read is Host */
	bool url_over;
	bool host_over;
	uint32_t url_len;
	uint32_t host_len;
	uint32_t field_len;
	char field[FIELD_MAX];
	char url[TARGET_MAX];
	char host[HOST_MAX];
};

struct qdb_trino {
	struct bench *b;
	http_parser_settings client_settings;
	http_parser_settings coord_settings;
	struct qclient *clients;  /* one per connection slot */
	struct qcoord coords[COORD_CONNS_MAX];
	uint32_t coord_free[COORD_CONNS_MAX];
	uint32_t coord_free_count;
	uint32_t coords_live;
	bool coords_draining;
	bool failure_shown;       /* the first failed response was written to stderr */
	uint64_t id_next;
	char id_stamp[16];        /* YYYYMMDD_HHMMSS of the start: the ids' prefix */
	char host[HOST_MAX];      /* our requests' Host: the server's IP:PORT */
	uint32_t host_len;
	uint64_t queries;         /* completed in the measured window */
	uint64_t requests;        /* responses in the window, checked or not */
	uint64_t coord_requests[CR_COUNT];
	uint64_t checks[COORDS_MAX]; /* /v1/cluster answered, per coordinator */
	uint64_t tsc_per_ms;
	struct qd_hdr latency_ns; /* per query, POST to final page */
};

static bool
measuring(const struct bench *b)
{
	return b->phase == PHASE_RUN;
}

static struct qclient *
client_of(struct slot *s)
{
	assert(s->b->trino != NULL && s->index < s->b->o.connections);
	return &s->b->trino->clients[s->index];
}

/* ---- mbufs ---------------------------------------------------------------- */

/* Send <len> bytes of <data> on <c> in one mbuf. False (the connection aborted) when
 * refused: one request or response in flight never fills a send buffer. */
static bool
send_bytes(struct bench *b, struct qd_tcp_conn *c, const char *data, size_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(b->w->pool);
	char *d = m != NULL ? rte_pktmbuf_append(m, (uint16_t)len) : NULL;
	if (d == NULL) {
		if (m != NULL)
			rte_pktmbuf_free(m);
		qdb_count_error(b, ERR_send);
		qd_tcp_abort(c, b->w->now_us);
		return false;
	}
	memcpy(d, data, len);
	int rc = qd_tcp_send(c, m, b->w->now_us);
	if (rc == 0)
		return true;
	if (rc != -ENOMEM)
		rte_pktmbuf_free(m);
	qdb_count_error(b, ERR_send);
	qd_tcp_abort(c, b->w->now_us);
	return false;
}

/* ---- clients -------------------------------------------------------------- */

static int
cl_on_body(http_parser *hp, const char *at, size_t n)
{
	struct qclient *q = hp->data;
	if (q->body_len + n > BODY_MAX) {
		q->body_over = true;
		return 0;
	}
	memcpy(q->body + q->body_len, at, n);
	q->body_len += (uint32_t)n;
	return 0;
}

static int
cl_on_message_complete(http_parser *hp)
{
	struct qclient *q = hp->data;
	q->complete = true;
	http_parser_pause(hp, 1); /* bytes after the response are an error */
	return 0;
}

/* Send the request of the current step: the POST, or the GET of q->target. */
static bool
send_request(struct slot *s, struct qclient *q)
{
	struct qdb_trino *t = s->b->trino;
	char req[TARGET_MAX + 256];
	int n;
	if (q->step == 0)
		n = snprintf(req, sizeof(req),
			     "POST /v1/statement HTTP/1.1\r\nHost: %s\r\nX-Trino-User: qdbench\r\n"
			     "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s", t->host,
			     strlen(SQL), SQL);
	else
		n = snprintf(req, sizeof(req),
			     "GET %s HTTP/1.1\r\nHost: %s\r\nX-Trino-User: qdbench\r\n\r\n",
			     q->target, t->host);
	assert(n > 0 && (size_t)n < sizeof(req)); /* target < TARGET_MAX, host < HOST_MAX */
	http_parser_init(&q->parser, HTTP_RESPONSE);
	q->parser.data = q;
	q->complete = false;
	q->body_over = false;
	q->body_len = 0;
	q->in_flight = true;
	return send_bytes(s->b, s->conn, req, (size_t)n);
}

static void
start_query(struct slot *s, struct qclient *q)
{
	q->step = 0;
	q->id[0] = '\0';
	q->query_tsc = rte_rdtsc();
	send_request(s, q);
}

static void
close_client(struct slot *s, struct qclient *q)
{
	q->closing = true;
	qd_tcp_shutdown(s->conn, s->b->w->now_us);
}

static void
client_fail(struct slot *s, enum bench_error e)
{
	struct qclient *q = client_of(s);
	struct qdb_trino *t = s->b->trino;
	/* The first failure in full, for whoever reads the run's log (once: the worker
	 * must not spend its time writing). */
	if (!t->failure_shown && s->b->phase == PHASE_RUN) {
		t->failure_shown = true;
		q->body[q->body_len] = '\0';
		fprintf(stderr, "qdbench-dpdk: first failed response (%s, step %u, status %u): "
			"%.300s\n", e == ERR_status ? "status" : e == ERR_shape ? "shape" : "http",
			q->step, q->parser.status_code, q->body);
	}
	qdb_count_error(s->b, e);
	qd_tcp_abort(s->conn, s->b->w->now_us);
}

/* The nextUri of <q->body> as an origin-form target in q->target: it must name the
 * authority we sent as Host and a statement path. False when it does not. */
static bool
take_next_uri(struct qdb_trino *t, struct qclient *q)
{
	static const char key[] = "\"nextUri\":\"http://";
	const char *v = strstr(q->body, key);
	if (v == NULL)
		return false;
	v += sizeof(key) - 1;
	if (strncmp(v, t->host, t->host_len) != 0 || v[t->host_len] != '/')
		return false;
	v += t->host_len;
	const char *end = strchr(v, '"');
	size_t len = end != NULL ? (size_t)(end - v) : 0;
	if (len == 0 || len >= TARGET_MAX || strncmp(v, "/v1/statement/", 14) != 0)
		return false;
	memcpy(q->target, v, len);
	q->target[len] = '\0';
	return true;
}

/* The body of a complete 200 response of step q->step has the shape our coordinators
 * write: the query's id, the state of the step, a nextUri on all but the last page. */
static bool
shape_ok(struct bench *b, struct qclient *q, bool *final)
{
	struct qd_json_scan js;
	qd_json_scan_init(&js);
	qd_json_scan_feed(&js, q->body, q->body_len);
	if (q->body_over || !js.done || !js.id_found || js.id_bad || js.error)
		return false;
	if (q->step == 0) {
		memcpy(q->id, js.id, js.id_len);
		q->id[js.id_len] = '\0';
	} else if (strlen(q->id) != js.id_len || memcmp(q->id, js.id, js.id_len) != 0) {
		return false;
	}
	*final = !js.next_uri;
	if (q->step == 0)
		return js.next_uri && strstr(q->body, "\"state\":\"QUEUED\"") != NULL;
	if (q->step < b->o.pages)
		return js.next_uri && strstr(q->body, "\"state\":\"RUNNING\"") != NULL;
	return !js.next_uri && strstr(q->body, "\"state\":\"FINISHED\"") != NULL &&
	       strstr(q->body, "\"data\":[[1]]") != NULL;
}

/* The response of the request in flight is complete. */
static void
response_done(struct slot *s, struct qclient *q)
{
	struct bench *b = s->b;
	struct qdb_trino *t = b->trino;
	q->in_flight = false;
	if (measuring(b))
		t->requests++;
	if (q->parser.status_code != 200) {
		client_fail(s, ERR_status);
		return;
	}
	q->body[q->body_len] = '\0';
	bool final = false;
	if (!shape_ok(b, q, &final) || (!final && !take_next_uri(t, q))) {
		client_fail(s, ERR_shape);
		return;
	}
	if (!final) {
		/* Even after the window: a query left half-way would stay routed in
		 * qdispatchd until it checks it with its coordinator. */
		q->step++;
		send_request(s, q);
		return;
	}
	if (measuring(b)) {
		t->queries++;
		uint64_t ns = (rte_rdtsc() - q->query_tsc) * 1000000 / t->tsc_per_ms;
		qd_hdr_record(&t->latency_ns, ns);
	}
	if (measuring(b) && !q->drain)
		start_query(s, q);
	else
		close_client(s, q);
}

static void
cl_on_connected(struct qd_tcp_conn *c)
{
	struct slot *s = qd_tcp_conn_app(c);
	struct qclient *q = client_of(s);
	*q = (struct qclient){.drain = s->b->phase != PHASE_RUN};
	if (q->drain)
		close_client(s, q);
	else
		start_query(s, q);
}

static void
cl_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct slot *s = qd_tcp_conn_app(c);
	struct qclient *q = client_of(s);
	struct bench *b = s->b;
	uint32_t len = rte_pktmbuf_pkt_len(m);
	qd_tcp_recv_consumed(c, len, b->w->now_us);
	bool bad = !q->in_flight || q->complete;
	/* Bounded by the chain's segments. */
	for (struct rte_mbuf *seg = m; seg != NULL && !bad; seg = seg->next) {
		const char *d = rte_pktmbuf_mtod(seg, const char *);
		size_t used = http_parser_execute(&q->parser, &b->trino->client_settings, d,
						  seg->data_len);
		enum http_errno err = HTTP_PARSER_ERRNO(&q->parser);
		/* Paused at the response's end: nothing may follow it. */
		bad = (err != HPE_OK && err != HPE_PAUSED) ||
		      (q->complete && (used != seg->data_len || seg->next != NULL));
	}
	rte_pktmbuf_free(m);
	if (bad)
		client_fail(s, ERR_http);
	else if (q->complete)
		response_done(s, q);
}

static void
cl_on_peer_fin(struct qd_tcp_conn *c)
{
	struct slot *s = qd_tcp_conn_app(c);
	struct qclient *q = client_of(s);
	/* qdispatchd closed: ours follows. Complete only if we had asked for it. */
	if (!q->closing)
		qd_tcp_shutdown(c, s->b->w->now_us);
}

static void
cl_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct slot *s = qd_tcp_conn_app(c);
	assert(s->conn == c);
	qdb_slot_closed(s, why, client_of(s)->closing);
}

const struct qd_tcp_ops qdb_query_ops = {
	.on_connected = cl_on_connected,
	.on_data = cl_on_data,
	.on_peer_fin = cl_on_peer_fin,
	.on_closed = cl_on_closed,
};

bool
qdb_trino_ready(const struct bench *b)
{
	for (uint32_t i = 0; i < b->o.coords_count; i++) {
		if (b->trino->checks[i] == 0)
			return false;
	}
	return true;
}

void
qdb_trino_drain_slot(struct slot *s)
{
	struct qclient *q = client_of(s);
	q->drain = true;
	if (!q->in_flight && !q->closing)
		close_client(s, q);
}

/* ---- coordinators ---------------------------------------------------------- */

static int
co_on_url(http_parser *hp, const char *at, size_t n)
{
	struct qcoord *k = hp->data;
	if (k->url_len + n >= TARGET_MAX) {
		k->url_over = true;
		return 0;
	}
	memcpy(k->url + k->url_len, at, n);
	k->url_len += (uint32_t)n;
	k->url[k->url_len] = '\0';
	return 0;
}

static int
co_on_header_field(http_parser *hp, const char *at, size_t n)
{
	struct qcoord *k = hp->data;
	if (k->in_value) {
		k->in_value = false;
		k->field_len = 0;
	}
	/* A name longer than FIELD_MAX is not one we look at. */
	if (k->field_len + n <= FIELD_MAX)
		memcpy(k->field + k->field_len, at, n);
	k->field_len += (uint32_t)n;
	return 0;
}

static int
co_on_header_value(http_parser *hp, const char *at, size_t n)
{
	struct qcoord *k = hp->data;
	if (!k->in_value) {
		k->in_value = true;
		k->is_host = k->field_len == 4 && strncasecmp(k->field, "host", 4) == 0;
		if (k->is_host)
			k->host_len = 0;
	}
	if (!k->is_host)
		return 0;
	if (k->host_len + n >= HOST_MAX) {
		k->host_over = true;
		return 0;
	}
	memcpy(k->host + k->host_len, at, n);
	k->host_len += (uint32_t)n;
	k->host[k->host_len] = '\0';
	return 0;
}

static int
co_on_message_complete(http_parser *hp)
{
	struct qcoord *k = hp->data;
	k->complete = true;
	http_parser_pause(hp, 1); /* answer before parsing a next request */
	return 0;
}

static void
coord_reset_request(struct qcoord *k)
{
	http_parser_init(&k->parser, HTTP_REQUEST);
	k->parser.data = k;
	k->complete = k->in_value = k->is_host = k->url_over = k->host_over = false;
	k->url_len = k->host_len = k->field_len = 0;
	k->url[0] = k->host[0] = '\0';
}

/* The "stats" member of a QueryResults in <state>. */
static int
write_stats(char *p, size_t len, const char *state, unsigned int rows)
{
	bool queued = strcmp(state, "QUEUED") == 0;
	return snprintf(p, len,
			"\"stats\":{\"state\":\"%s\",\"queued\":%s,\"scheduled\":%s,\"nodes\":%u,"
			"\"totalSplits\":1,\"queuedSplits\":0,\"runningSplits\":0,"
			"\"completedSplits\":%u,\"cpuTimeMillis\":0,\"wallTimeMillis\":0,"
			"\"queuedTimeMillis\":0,\"elapsedTimeMillis\":0,\"processedRows\":%u,"
			"\"processedBytes\":%u,\"physicalInputBytes\":0,\"peakMemoryBytes\":0,"
			"\"spilledBytes\":0},\"warnings\":[]}",
			state, queued ? "true" : "false", queued ? "false" : "true", queued ? 0 : 1,
			rows, rows, rows * 4);
}

/* A QueryResults for query <id>: page <token> of <pages> (0: the POST's answer). */
static int
write_results(char *p, size_t len, const struct qcoord *k, const char *id, uint32_t token,
	      uint32_t pages)
{
	int n = snprintf(p, len, "{\"id\":\"%s\",\"infoUri\":\"http://%s/ui/query.html?%s\",", id,
			 k->host, id);
	if (n < 0 || (size_t)n >= len)
		return -1;
	int m;
	if (token == 0)
		m = snprintf(p + n, len - (size_t)n,
			     "\"nextUri\":\"http://%s/v1/statement/queued/%s/" SLUG "/1\",", k->host,
			     id);
	else if (token < pages)
		m = snprintf(p + n, len - (size_t)n,
			     "\"nextUri\":\"http://%s/v1/statement/executing/%s/" SLUG "/%u\",",
			     k->host, id, token + 1);
	else
		m = snprintf(p + n, len - (size_t)n,
			     "\"columns\":[{\"name\":\"_col0\",\"type\":\"integer\",\"typeSignature\":"
			     "{\"rawType\":\"integer\",\"arguments\":[]}}],\"data\":[[1]],");
	if (m < 0 || (size_t)(n + m) >= len)
		return -1;
	n += m;
	const char *state = token == 0 ? "QUEUED" : token < pages ? "RUNNING" : "FINISHED";
	m = write_stats(p + n, len - (size_t)n, state, token == pages ? 1 : 0);
	return m < 0 || (size_t)(n + m) >= len ? -1 : n + m;
}

/* A fresh query id in Trino's shape, YYYYMMDD_HHMMSS_NNNNN_xxxxx: the counter's low
 * decimal digits, then its high part in base 36, so ids never repeat in a run. */
static void
make_id(struct qdb_trino *t, char id[QD_TRINO_ID_MAX + 1])
{
	uint64_t v = t->id_next++;
	uint64_t hi = v / 100000;
	char tail[6];
	for (int i = 4; i >= 0; i--) {
		tail[i] = "0123456789abcdefghijklmnopqrstuvwxyz"[hi % 36];
		hi /= 36;
	}
	tail[5] = '\0';
	snprintf(id, QD_TRINO_ID_MAX + 1, "%s_%05u_%s", t->id_stamp, (unsigned int)(v % 100000),
		 tail);
}

/* The page token of a statement target: its last path segment, 1..pages; 0 if not. */
static uint32_t
page_token(const struct qd_trino_target *tg, const struct qdb_trino *t, uint32_t pages)
{
	if (tg->id == NULL || tg->id_len != strlen(t->id_stamp) + 12 ||
	    strncmp(tg->id, t->id_stamp, strlen(t->id_stamp)) != 0)
		return 0;
	const char *end = tg->path + tg->path_len;
	const char *slash = end;
	while (slash > tg->path && slash[-1] != '/')
		slash--;
	uint32_t v = 0;
	for (const char *p = slash; p < end; p++) {
		if (*p < '0' || *p > '9' || v > PAGES_MAX)
			return 0;
		v = v * 10 + (uint32_t)(*p - '0');
	}
	if (v == 0 || v > pages)
		return 0;
	/* The POST's nextUri is queued/.../1, the later ones executing/.../k. */
	return (v == 1) == (tg->kind == QD_TRINO_QUEUED) ? v : 0;
}

/* The answer to the request in <k>: status and body into <body>. */
static unsigned int
coord_route(struct qcoord *k, char *body, size_t len, int *body_len)
{
	struct qdb_trino *t = k->t;
	uint32_t pages = t->b->o.pages;
	const char *origin;
	size_t olen;
	const char *auth;
	size_t alen;
	struct qd_trino_target tg = {.kind = QD_TRINO_OTHER};
	if (!k->url_over && qd_trino_origin_form(k->url, k->url_len, &origin, &olen, &auth,
						 &alen) == 0)
		qd_trino_classify(origin, olen, &tg);
	enum http_method method = (enum http_method)k->parser.method;
	*body_len = -1;
	if (method == HTTP_POST && tg.kind == QD_TRINO_SUBMIT) {
		char id[QD_TRINO_ID_MAX + 1];
		make_id(t, id);
		t->coord_requests[CR_submit]++;
		*body_len = write_results(body, len, k, id, 0, pages);
	} else if (method == HTTP_GET &&
		   (tg.kind == QD_TRINO_QUEUED || tg.kind == QD_TRINO_EXECUTING)) {
		uint32_t token = page_token(&tg, t, pages);
		char id[QD_TRINO_ID_MAX + 1];
		if (token > 0) {
			memcpy(id, tg.id, tg.id_len);
			id[tg.id_len] = '\0';
			t->coord_requests[CR_page]++;
			*body_len = write_results(body, len, k, id, token, pages);
		}
	} else if (method == HTTP_GET && tg.kind == QD_TRINO_QUERY) {
		/* qdispatchd verifying an idle route, or discovering an unknown one: we
		 * keep no query state, and a coordinator that forgot a query says 404.
		 * Not an error here: a client whose follow-up needed it has seen one. */
		t->coord_requests[CR_query]++;
		*body_len = snprintf(body, len, "{\"error\":\"Query not found\"}");
		return 404;
	} else if (method == HTTP_GET && tg.path_len == 8 && memcmp(tg.path, "/v1/info", 8) == 0) {
		t->coord_requests[CR_info]++;
		*body_len = snprintf(body, len, "{\"nodeVersion\":{\"version\":\"qdbench-dpdk\"},"
				     "\"environment\":\"bench\",\"coordinator\":true,"
				     "\"starting\":false,\"uptime\":\"1.00m\"}");
	} else if (method == HTTP_GET && tg.path_len == 11 &&
		   memcmp(tg.path, "/v1/cluster", 11) == 0) {
		t->coord_requests[CR_cluster]++;
		t->checks[k->coord]++;
		*body_len = snprintf(body, len, "{\"runningQueries\":0,\"blockedQueries\":0,"
				     "\"queuedQueries\":0,\"activeCoordinators\":1,"
				     "\"activeWorkers\":1,\"runningDrivers\":0}");
	}
	if (*body_len >= 0 && (size_t)*body_len < len)
		return 200;
	t->coord_requests[CR_unknown]++;
	qdb_count_error(t->b, ERR_coord_request);
	*body_len = snprintf(body, len, "{\"error\":\"qdbench-dpdk: not a request of ours\"}");
	return 404;
}

/* Answer the complete request in <k>. False when the connection is gone. */
static bool
coord_respond(struct qcoord *k)
{
	struct bench *b = k->t->b;
	char body[JSON_MAX];
	int body_len;
	unsigned int status = k->host_len == 0 || k->host_over ? 400 : 0;
	if (status == 0) {
		status = coord_route(k, body, sizeof(body), &body_len);
	} else {
		qdb_count_error(b, ERR_coord_request);
		body_len = snprintf(body, sizeof(body), "{\"error\":\"no Host\"}");
	}
	bool keep = http_should_keep_alive(&k->parser) != 0;
	char resp[JSON_MAX + 256];
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %d\r\n%s\r\n%.*s", status,
			 status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request",
			 body_len, keep ? "" : "Connection: close\r\n", body_len, body);
	assert(n > 0 && (size_t)n < sizeof(resp));
	if (!send_bytes(b, k->conn, resp, (size_t)n))
		return false;
	if (!keep && !k->shut) {
		k->shut = true;
		qd_tcp_shutdown(k->conn, b->w->now_us);
	}
	coord_reset_request(k);
	return true;
}

static void
co_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct qcoord *k = qd_tcp_conn_app(c);
	struct bench *b = k->t->b;
	qd_tcp_recv_consumed(c, rte_pktmbuf_pkt_len(m), b->w->now_us);
	bool alive = true;
	/* Bounded by the chain's bytes: every pass consumes some, or stops. */
	for (struct rte_mbuf *seg = m; seg != NULL && alive; seg = seg->next) {
		const char *d = rte_pktmbuf_mtod(seg, const char *);
		size_t left = seg->data_len;
		while (left > 0 && alive) {
			size_t used = http_parser_execute(&k->parser, &k->t->coord_settings, d, left);
			enum http_errno err = HTTP_PARSER_ERRNO(&k->parser);
			if (err != HPE_OK && err != HPE_PAUSED) {
				qdb_count_error(b, ERR_coord_request);
				qd_tcp_abort(c, b->w->now_us);
				alive = false;
			} else if (k->complete) {
				alive = coord_respond(k); /* resets the parser: a next request */
			} else {
				assert(used == left);
			}
			d += used;
			left -= used;
		}
	}
	rte_pktmbuf_free(m);
}

static void
co_on_peer_fin(struct qd_tcp_conn *c)
{
	struct qcoord *k = qd_tcp_conn_app(c);
	if (!k->shut) {
		k->shut = true;
		qd_tcp_shutdown(c, k->t->b->w->now_us);
	}
}

static void
co_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)why; /* qdispatchd's pools close and reset as they see fit */
	struct qcoord *k = qd_tcp_conn_app(c);
	struct qdb_trino *t = k->t;
	assert(k->conn == c && t->coords_live > 0 && t->coord_free_count < COORD_CONNS_MAX);
	k->conn = NULL;
	t->coords_live--;
	t->coord_free[t->coord_free_count++] = k->index;
}

static const struct qd_tcp_ops coord_ops = {
	.on_data = co_on_data,
	.on_peer_fin = co_on_peer_fin,
	.on_closed = co_on_closed,
};

static void
co_on_accept(void *app, struct qd_tcp_conn *c)
{
	struct qdb_trino *t = app;
	if (t->coord_free_count == 0) {
		qdb_count_error(t->b, ERR_coord_full);
		qd_tcp_conn_set_app(c, NULL, NULL);
		qd_tcp_abort(c, t->b->w->now_us);
		return;
	}
	struct qcoord *k = &t->coords[t->coord_free[--t->coord_free_count]];
	assert(k->conn == NULL);
	struct qd_tcp_info info;
	qd_tcp_conn_info(c, &info);
	k->coord = 0;
	for (uint32_t i = 0; i < t->b->o.coords_count; i++) {
		if (t->b->o.coords_be[i] == info.local_ip_be)
			k->coord = i;
	}
	k->conn = c;
	k->shut = t->coords_draining;
	coord_reset_request(k);
	t->coords_live++;
	qd_tcp_conn_set_app(c, &coord_ops, k);
	if (k->shut)
		qd_tcp_shutdown(c, t->b->w->now_us);
}

static const struct qd_tcp_ops coord_listen_ops = {
	.on_accept = co_on_accept,
};

bool
qdb_trino_drain_coords(struct bench *b)
{
	struct qdb_trino *t = b->trino;
	t->coords_draining = true;
	for (uint32_t i = 0; i < COORD_CONNS_MAX && t->coords_live > 0; i++) {
		struct qcoord *k = &t->coords[i];
		if (k->conn != NULL && !k->shut) {
			k->shut = true;
			qd_tcp_shutdown(k->conn, b->w->now_us);
		}
	}
	return t->coords_live == 0;
}

void
qdb_trino_abort_coords(struct bench *b)
{
	struct qdb_trino *t = b->trino;
	for (uint32_t i = 0; i < COORD_CONNS_MAX && t->coords_live > 0; i++) {
		if (t->coords[i].conn != NULL)
			qd_tcp_abort(t->coords[i].conn, b->w->now_us);
	}
}

/* ---- set-up and report ------------------------------------------------------ */

int
qdb_trino_init(struct bench *b, char *err, size_t err_len)
{
	assert(b->o.mode == MODE_QUERY && b->w != NULL && b->trino == NULL);
	/* Start-up only: the data path allocates nothing. */
	struct qdb_trino *t = calloc(1, sizeof(*t));
	struct qclient *clients = calloc(b->o.connections, sizeof(*clients));
	if (t == NULL || clients == NULL) {
		free(t);
		free(clients);
		snprintf(err, err_len, "query state: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	t->b = b;
	t->clients = clients;
	qd_hdr_init(&t->latency_ns);
	t->tsc_per_ms = rte_get_tsc_hz() / 1000;
	for (uint32_t i = 0; i < COORD_CONNS_MAX; i++) {
		t->coords[i] = (struct qcoord){.t = t, .index = i};
		t->coord_free[COORD_CONNS_MAX - 1 - i] = i;
	}
	t->coord_free_count = COORD_CONNS_MAX;
	http_parser_settings_init(&t->client_settings);
	t->client_settings.on_body = cl_on_body;
	t->client_settings.on_message_complete = cl_on_message_complete;
	http_parser_settings_init(&t->coord_settings);
	t->coord_settings.on_url = co_on_url;
	t->coord_settings.on_header_field = co_on_header_field;
	t->coord_settings.on_header_value = co_on_header_value;
	t->coord_settings.on_message_complete = co_on_message_complete;
	uint32_t ip = rte_be_to_cpu_32(b->o.server_ip_be);
	int n = snprintf(t->host, sizeof(t->host), "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255,
			 (ip >> 8) & 255, ip & 255, b->o.server_port);
	assert(n > 0 && (size_t)n < sizeof(t->host));
	t->host_len = (uint32_t)n;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(t->id_stamp, sizeof(t->id_stamp), "%Y%m%d_%H%M%S", &tm);
	b->trino = t;
	int rc = qd_tcp_listen(b->w->tcp, b->o.coord_port, &coord_listen_ops, t);
	if (rc != 0) {
		snprintf(err, err_len, "listen on the coordinator port %u: %s", b->o.coord_port,
			 strerror(-rc));
		return rc;
	}
	return 0;
}

void
qdb_trino_free(struct bench *b)
{
	if (b->trino == NULL)
		return;
	free(b->trino->clients);
	free(b->trino);
	b->trino = NULL;
}

uint64_t
qdb_trino_queries(const struct bench *b)
{
	return b->trino != NULL ? b->trino->queries : 0;
}

void
qdb_trino_json(FILE *f, const struct bench *b, double secs)
{
	const struct qdb_trino *t = b->trino;
	if (t == NULL)
		return;
	const struct qd_hdr *h = &t->latency_ns;
	fprintf(f, " \"pages\": %u, \"coordinators\": %u, \"queries\": %" PRIu64
		", \"queries_per_s\": %.1f, \"requests\": %" PRIu64 ", \"requests_per_s\": %.1f,\n",
		b->o.pages, b->o.coords_count, t->queries,
		secs > 0 ? (double)t->queries / secs : 0.0, t->requests,
		secs > 0 ? (double)t->requests / secs : 0.0);
	fprintf(f, " \"latency_us\": {\"query\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f, "
		"\"mean\": %.1f}},\n", (double)qd_hdr_percentile(h, 50) / 1e3,
		(double)qd_hdr_percentile(h, 99) / 1e3, h->count > 0 ? (double)h->max / 1e3 : 0.0,
		qd_hdr_mean(h) / 1e3);
	fprintf(f, " \"coordinator_requests\": {");
	for (unsigned int i = 0; i < CR_COUNT; i++)
		fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", coord_request_names[i],
			t->coord_requests[i]);
	fprintf(f, "},\n");
}
