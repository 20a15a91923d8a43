/*
 * Active health checks of the coordinators (see health_check.h).
 *
 * Each worker owns the probes of its coordinators (i % workers == index), all
 * allocated at creation for every index the table can ever hold (QD_COORDS_MAX:
 * coordinators are appended at run time, and a worker allocates nothing while
 * it runs): one connection at a time per coordinator, an input and an output
 * queue, an http_parser and a body buffer of HC_BODY_MAX bytes. A probe becomes
 * active when the table's published count covers its index (checked at every
 * poll: one acquire load); its first check starts at once. A coordinator
 * removed at run time is not checked: when its next check is due the probe
 * finds the removed flag, resets its health to unknown (no transition is
 * counted: nobody watches it any more, and a removed coordinator takes no new
 * queries whatever its health) and looks again an interval later, so a
 * coordinator added back starts over like a new one (up after one pass).
 * A check walks IDLE -> CONNECT -> INFO -> CLUSTER and ends in a pass or a
 * failure; a passed check lingers (LINGER) until the coordinator closes, as
 * "Connection: close" asks it to, so the TIME_WAIT stays on its side.
 *
 * The stack calls back into us from inside qd_tcp_input()/qd_tcp_timers(), and
 * qd_tcp_abort() runs on_closed() before it returns. So a connection is always
 * detached (its callbacks pointed at detached_ops) before we shut it down or
 * abort it: nothing of a finished check can come back to a probe that may
 * already run the next one.
 *
 * qd_health_poll() costs one comparison per loop iteration unless a probe is
 * due: the earliest deadline of all probes is kept in <wake_us>.
 */
#include "health_check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <http_parser.h>
#include <jansson.h>
#include <rte_byteorder.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "lcore_stats.h"
#include "log.h"
#include "mbuf_queue.h"

#define HC_BODY_MAX 8192           /* bigger answers fail the check */
#define HC_LINGER_US 200000        /* wait this long for the coordinator's FIN */
#define HC_RESOLVE_RETRY_US 1000   /* next hop unknown: try the connect again this often */
#define HC_PARSE_ROUNDS 256        /* contiguous runs parsed per callback */

enum hc_phase {
	HP_IDLE = 0, /* waiting for next_us */
	HP_CONNECT,  /* conn NULL: next hop not resolved yet; else SYN sent */
	HP_INFO,     /* GET /v1/info sent */
	HP_CLUSTER,  /* GET /v1/cluster sent */
	HP_LINGER,   /* passed; waiting for the coordinator to close */
};

struct qd_health;

struct hc_probe {
	struct qd_health *h;
	struct qd_coord *co;
	unsigned int index;      /* in the coordinator table */
	struct qd_tcp_conn *conn;
	http_parser parser;
	struct qd_inq in;
	struct qd_outq out;
	uint64_t next_us;        /* start of the next check */
	uint64_t deadline_us;    /* of the check in flight, or the end of LINGER */
	uint32_t health;         /* our copy of co->health (we are its only writer) */
	uint32_t fails;          /* consecutive failures while up or unknown */
	uint32_t passes;         /* consecutive passes while down */
	uint8_t phase;
	uint8_t want;            /* HP_INFO or HP_CLUSTER: what to send once connected */
	bool msg_done;
	bool body_over;
	bool peer_fin;
	uint16_t status;
	uint32_t body_len;
	char addr[24];           /* "a.b.c.d:port", Host header and logs */
	char body[HC_BODY_MAX];
};

struct qd_health {
	struct qd_health_conf conf;
	struct qd_tcp_stack *stack;
	struct rte_mempool *pool;
	struct qd_coord_table *coords;
	unsigned int lcore_id;
	uint64_t now_us;
	uint64_t wake_us;        /* no probe needs the poll before this */
	bool scheduled;          /* first checks placed (needs a clock: the first poll) */
	struct qd_health_counters counters;
	http_parser_settings settings;
	unsigned int count;      /* probes allocated (every index of ours below QD_COORDS_MAX) */
	unsigned int active;     /* probes whose coordinator is in the table (a prefix) */
	struct hc_probe probes[];
};

static void hc_on_connected(struct qd_tcp_conn *c);
static void hc_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void hc_on_writable(struct qd_tcp_conn *c);
static void hc_on_peer_fin(struct qd_tcp_conn *c);
static void hc_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

static const struct qd_tcp_ops probe_ops = {
	.on_connected = hc_on_connected,
	.on_data = hc_on_data,
	.on_writable = hc_on_writable,
	.on_peer_fin = hc_on_peer_fin,
	.on_closed = hc_on_closed,
};

static void dt_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void dt_on_nothing(struct qd_tcp_conn *c);
static void dt_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

/* A connection we are done with (app: the qd_health, for the clock). */
static const struct qd_tcp_ops detached_ops = {
	.on_connected = dt_on_nothing,
	.on_data = dt_on_data,
	.on_writable = dt_on_nothing,
	.on_peer_fin = dt_on_nothing,
	.on_closed = dt_on_closed,
};

/* ---- the shared table: relaxed stores, this lcore is the only writer --------- */

static void
put32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static void
put64(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Byte by byte: the control plane may read it at any moment; it sees a string that is
 * NUL terminated, at worst a mix of two reasons. */
static void
put_error(struct qd_coord *co, const char *why)
{
	size_t n = strnlen(why, sizeof(co->last_error) - 1);
	for (size_t i = 0; i < n; i++)
		__atomic_store_n(&co->last_error[i], why[i], __ATOMIC_RELAXED);
	__atomic_store_n(&co->last_error[n], '\0', __ATOMIC_RELAXED);
}

static void
wake_at(struct qd_health *h, uint64_t t)
{
	if (t < h->wake_us)
		h->wake_us = t;
}

/* ---- the state machine -------------------------------------------------------- */

static void
transition(struct hc_probe *p, uint32_t to, const char *why, uint32_t count)
{
	struct qd_health *h = p->h;
	struct qd_coord *co = p->co;
	uint32_t from = p->health;
	p->health = to;
	put32(&co->health, to);
	put64(&co->changed_us, h->now_us);
	put64(&co->transitions, qd_coord_load64(&co->transitions) + 1);
	qd_stat_add(&h->counters.transitions, 1);
	if (to == QD_COORD_DOWN)
		QD_LOG(WARNING, dp, "coordinator %s is down: %s (%u check%s failed)", p->addr, why,
		       count, count == 1 ? "" : "s");
	else if (from == QD_COORD_UNKNOWN)
		QD_LOG(INFO, dp, "coordinator %s is up", p->addr);
	else
		QD_LOG(NOTICE, dp, "coordinator %s is up again (%u checks passed)", p->addr, count);
}

static void
record_pass(struct hc_probe *p, uint32_t running, uint32_t queued)
{
	struct qd_health *h = p->h;
	struct qd_coord *co = p->co;
	put32(&co->cluster_running, running);
	put32(&co->cluster_queued, queued);
	/* The report counts what we sent before it: the estimate starts again. */
	put32(&co->since_report, 0);
	put64(&co->checks_ok, qd_coord_load64(&co->checks_ok) + 1);
	put64(&co->checked_us, h->now_us);
	qd_stat_add(&h->counters.checks, 1);
	qd_stat_add(&h->counters.passed, 1);
	p->fails = 0;
	if (p->health == QD_COORD_UNKNOWN) {
		transition(p, QD_COORD_UP, NULL, 1);
	} else if (p->health == QD_COORD_DOWN) {
		p->passes++;
		if (p->passes >= h->conf.rise) {
			uint32_t n = p->passes;
			p->passes = 0;
			transition(p, QD_COORD_UP, NULL, n);
		}
	}
	put32(&co->consecutive, p->health == QD_COORD_DOWN ? p->passes : 0);
}

static void
record_fail(struct hc_probe *p, const char *why)
{
	struct qd_health *h = p->h;
	struct qd_coord *co = p->co;
	put_error(co, why);
	put64(&co->checks_failed, qd_coord_load64(&co->checks_failed) + 1);
	put64(&co->checked_us, h->now_us);
	qd_stat_add(&h->counters.checks, 1);
	qd_stat_add(&h->counters.failed, 1);
	p->passes = 0;
	if (p->health != QD_COORD_DOWN) {
		p->fails++;
		if (p->fails >= h->conf.fall) {
			uint32_t n = p->fails;
			p->fails = 0;
			transition(p, QD_COORD_DOWN, why, n);
		}
	}
	put32(&co->consecutive, p->health == QD_COORD_DOWN ? 0 : p->fails);
}

/* ---- connections ------------------------------------------------------------- */

/* Hand the connection to detached_ops: whatever it does from now on is not ours. */
static struct qd_tcp_conn *
detach(struct hc_probe *p)
{
	struct qd_tcp_conn *c = p->conn;
	p->conn = NULL;
	qd_inq_clear(&p->in);
	qd_outq_clear(&p->out);
	if (c != NULL)
		qd_tcp_conn_set_app(c, &detached_ops, p->h);
	return c;
}

static void
close_graceful(struct hc_probe *p)
{
	struct qd_tcp_conn *c = detach(p);
	if (c != NULL)
		qd_tcp_shutdown(c, p->h->now_us);
}

static void
check_end(struct hc_probe *p)
{
	p->phase = HP_IDLE;
	wake_at(p->h, p->next_us);
}

/* The check in flight failed: reset the connection, count, maybe go down. */
static void
check_fail(struct hc_probe *p, const char *why)
{
	struct qd_tcp_conn *c = detach(p);
	if (c != NULL)
		qd_tcp_abort(c, p->h->now_us); /* on_closed goes to detached_ops */
	record_fail(p, why);
	check_end(p);
}

static void __attribute__((format(printf, 2, 3)))
check_failf(struct hc_probe *p, const char *fmt, ...)
{
	char why[sizeof(p->co->last_error)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	check_fail(p, why);
}

static const char *
phase_path(const struct hc_probe *p)
{
	return p->phase == HP_CLUSTER ? "/v1/cluster" : "/v1/info";
}

static void
connect_try(struct hc_probe *p)
{
	struct qd_health *h = p->h;
	struct qd_coord *co = p->co;
	p->in = (struct qd_inq){0};
	p->out = (struct qd_outq){0};
	p->peer_fin = false;
	struct qd_tcp_conn *c = qd_tcp_connect(h->stack, co->ip_be, co->port, &probe_ops, p,
					       h->now_us);
	if (c != NULL) {
		p->conn = c;
		return;
	}
	if (errno == EAGAIN) {
		/* Next hop not resolved yet (or no free port): again soon, until the deadline. */
		wake_at(h, RTE_MIN(p->deadline_us, h->now_us + HC_RESOLVE_RETRY_US));
		return;
	}
	check_fail(p, errno == ENOSPC ? "no connection slot" : "cannot connect");
}

static void
check_start(struct hc_probe *p)
{
	struct qd_health *h = p->h;
	p->next_us = h->now_us + (uint64_t)h->conf.interval_ms * 1000u;
	p->deadline_us = h->now_us + (uint64_t)h->conf.timeout_ms * 1000u;
	p->phase = HP_CONNECT;
	p->want = HP_INFO;
	wake_at(h, p->deadline_us);
	connect_try(p);
}

static void
send_request(struct hc_probe *p, uint8_t which)
{
	struct qd_health *h = p->h;
	http_parser_init(&p->parser, HTTP_RESPONSE);
	p->parser.data = p;
	p->msg_done = p->body_over = false;
	p->status = 0;
	p->body_len = 0;
	p->phase = which;
	int rc = qd_outq_printf(&p->out, h->pool,
				"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: qdispatch-health\r\n"
				"Accept: application/json\r\nConnection: %s\r\n\r\n",
				which == HP_INFO ? "/v1/info" : "/v1/cluster", p->addr,
				which == HP_INFO ? "keep-alive" : "close");
	if (rc != 0) {
		check_fail(p, "no mbuf for the request");
		return;
	}
	if (qd_outq_flush(&p->out, p->conn, h->now_us) != 0)
		check_fail(p, "send failed");
	/* Bytes the send buffer did not take go out from on_writable. */
}

/* ---- answers ----------------------------------------------------------------- */

/* "starting": true anywhere in the body, whitespace allowed around the colon. */
static bool
says_starting(const char *b, uint32_t n)
{
	static const char key[] = "\"starting\"";
	const uint32_t klen = sizeof(key) - 1;
	for (uint32_t i = 0; i + klen <= n; i++) {
		if (memcmp(b + i, key, klen) != 0)
			continue;
		uint32_t j = i + klen;
		while (j < n && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n'))
			j++;
		if (j >= n || b[j] != ':')
			continue;
		j++;
		while (j < n && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n'))
			j++;
		if (j + 4 <= n && memcmp(b + j, "true", 4) == 0)
			return true;
	}
	return false;
}

static int
cluster_number(const json_t *o, const char *key, uint32_t *out)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	json_int_t x = json_integer_value(v);
	*out = x > (json_int_t)UINT32_MAX ? UINT32_MAX : (uint32_t)x;
	return 0;
}

static void
cluster_done(struct hc_probe *p)
{
	/* Once per check, on the body we hold: jansson's allocations are bounded by it. */
	json_error_t err;
	json_t *o = json_loadb(p->body, p->body_len, 0, &err);
	uint32_t running = 0, queued = 0;
	const char *why = NULL;
	if (!json_is_object(o))
		why = "/v1/cluster: not a JSON object";
	else if (cluster_number(o, "runningQueries", &running) != 0)
		why = "/v1/cluster: no runningQueries";
	else if (cluster_number(o, "queuedQueries", &queued) != 0)
		why = "/v1/cluster: no queuedQueries";
	json_decref(o);
	if (why != NULL) {
		check_fail(p, why);
		return;
	}
	record_pass(p, running, queued);
	if (p->peer_fin) {
		close_graceful(p);
		check_end(p);
		return;
	}
	p->phase = HP_LINGER;
	p->deadline_us = p->h->now_us + HC_LINGER_US;
	wake_at(p->h, p->deadline_us);
}

static void
info_done(struct hc_probe *p)
{
	if (says_starting(p->body, p->body_len)) {
		check_fail(p, "/v1/info: starting");
		return;
	}
	if (http_should_keep_alive(&p->parser) && !p->peer_fin && qd_inq_empty(&p->in)) {
		send_request(p, HP_CLUSTER);
		return;
	}
	/* The coordinator will not take a second request here: a new connection. */
	close_graceful(p);
	p->phase = HP_CONNECT;
	p->want = HP_CLUSTER;
	connect_try(p);
}

/* A complete response to the request of this phase. */
static void
response_done(struct hc_probe *p)
{
	if (p->status != 200) {
		check_failf(p, "%s: %u", phase_path(p), p->status);
		return;
	}
	if (p->phase == HP_INFO)
		info_done(p);
	else
		cluster_done(p);
}

static int
hc_on_headers_complete(http_parser *hp)
{
	struct hc_probe *p = hp->data;
	p->status = (uint16_t)hp->status_code;
	return 0;
}

static int
hc_on_body(http_parser *hp, const char *at, size_t n)
{
	struct hc_probe *p = hp->data;
	if (n > HC_BODY_MAX - p->body_len) {
		p->body_over = true;
		return -1;
	}
	memcpy(p->body + p->body_len, at, n);
	p->body_len += (uint32_t)n;
	return 0;
}

static int
hc_on_message_complete(http_parser *hp)
{
	struct hc_probe *p = hp->data;
	if (hp->status_code / 100 == 1) {
		/* An interim answer: the real one follows. */
		p->body_len = 0;
		return 0;
	}
	p->msg_done = true;
	http_parser_pause(hp, 1);
	return 0;
}

/* Parse what arrived; called from on_data and on_peer_fin. */
static void
process(struct hc_probe *p)
{
	struct qd_health *h = p->h;
	/* Each round consumes one contiguous run or stops; the input is bounded by the
	 * receive window, and what is left waits for the next segment. */
	for (unsigned int round = 0; round < HC_PARSE_ROUNDS && !p->msg_done; round++) {
		const char *at;
		size_t n = qd_inq_peek(&p->in, &at);
		if (n == 0)
			break;
		size_t used = http_parser_execute(&p->parser, &h->settings, at, n);
		enum http_errno err = HTTP_PARSER_ERRNO(&p->parser);
		qd_inq_consume(&p->in, (uint32_t)used);
		qd_tcp_recv_consumed(p->conn, (uint32_t)used, h->now_us);
		if (err != HPE_OK && err != HPE_PAUSED) {
			if (p->body_over)
				check_failf(p, "%s: body over %u bytes", phase_path(p), HC_BODY_MAX);
			else
				check_failf(p, "%s: bad HTTP (%s)", phase_path(p), http_errno_name(err));
			return;
		}
		if (used == 0 && !p->msg_done)
			break; /* never spin */
	}
	if (p->msg_done)
		response_done(p);
}

/* ---- callbacks ---------------------------------------------------------------- */

static void
hc_on_connected(struct qd_tcp_conn *c)
{
	struct hc_probe *p = qd_tcp_conn_app(c);
	send_request(p, p->want);
}

static void
hc_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct hc_probe *p = qd_tcp_conn_app(c);
	if (p->phase != HP_INFO && p->phase != HP_CLUSTER) {
		/* Nothing was asked (LINGER): drop it. */
		uint32_t n = rte_pktmbuf_pkt_len(m);
		rte_pktmbuf_free(m);
		qd_tcp_recv_consumed(c, n, p->h->now_us);
		return;
	}
	qd_inq_append(&p->in, m);
	process(p);
}

static void
hc_on_writable(struct qd_tcp_conn *c)
{
	struct hc_probe *p = qd_tcp_conn_app(c);
	if (!qd_outq_empty(&p->out) && qd_outq_flush(&p->out, c, p->h->now_us) != 0)
		check_fail(p, "send failed");
}

static void
hc_on_peer_fin(struct qd_tcp_conn *c)
{
	struct hc_probe *p = qd_tcp_conn_app(c);
	p->peer_fin = true;
	if (p->phase == HP_LINGER) {
		close_graceful(p);
		check_end(p);
		return;
	}
	if (p->phase != HP_INFO && p->phase != HP_CLUSTER)
		return;
	/* A body delimited by the close ends here. */
	if (!p->msg_done && qd_inq_empty(&p->in))
		http_parser_execute(&p->parser, &p->h->settings, NULL, 0);
	if (p->msg_done) {
		response_done(p);
		return;
	}
	check_failf(p, "%s: connection closed", phase_path(p));
}

static void
hc_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct hc_probe *p = qd_tcp_conn_app(c);
	p->conn = NULL; /* gone: nothing to abort */
	if (p->phase == HP_IDLE)
		return;
	qd_inq_clear(&p->in);
	qd_outq_clear(&p->out);
	if (p->phase == HP_LINGER) {
		check_end(p);
		return;
	}
	const char *reason = why == QD_TCP_CLOSE_REFUSED ? "refused"
			     : why == QD_TCP_CLOSE_RESET ? "reset"
			     : why == QD_TCP_CLOSE_TIMEOUT ? "timed out"
			     : why == QD_TCP_CLOSE_ABORT ? "aborted"
							  : "closed";
	if (p->phase == HP_CONNECT)
		check_failf(p, "connect %s", reason);
	else
		check_failf(p, "%s: connection %s", phase_path(p), reason);
}

static void
dt_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct qd_health *h = qd_tcp_conn_app(c);
	uint32_t n = rte_pktmbuf_pkt_len(m);
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, n, h->now_us);
}

static void
dt_on_nothing(struct qd_tcp_conn *c)
{
	(void)c;
}

static void
dt_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)c;
	(void)why;
}

/* ---- set-up and the poll ------------------------------------------------------ */

struct qd_health *
qd_health_create(const struct qd_health_conf *conf, struct qd_tcp_stack *stack,
		 struct qd_coord_table *coords, unsigned int lcore_id)
{
	if (conf == NULL || stack == NULL || conf->worker_count == 0 ||
	    conf->worker_index >= conf->worker_count ||
	    (conf->interval_ms > 0 && (conf->timeout_ms == 0 || conf->rise == 0 ||
				       conf->fall == 0)) ||
	    (coords != NULL && coords->count > QD_COORDS_MAX)) {
		errno = EINVAL;
		return NULL;
	}
	unsigned int owned = 0;
	if (coords != NULL && conf->interval_ms > 0)
		for (unsigned int i = conf->worker_index; i < QD_COORDS_MAX; i += conf->worker_count)
			owned++;
	size_t size = sizeof(struct qd_health) + (size_t)owned * sizeof(struct hc_probe);
	struct qd_health *h = rte_zmalloc_socket("qd_health", size, RTE_CACHE_LINE_SIZE,
						 (int)rte_lcore_to_socket_id(lcore_id));
	if (h == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	h->conf = *conf;
	h->stack = stack;
	h->pool = qd_tcp_stack_pool(stack);
	h->coords = coords;
	h->lcore_id = lcore_id;
	h->count = owned;
	h->wake_us = 0;
	http_parser_settings_init(&h->settings);
	h->settings.on_headers_complete = hc_on_headers_complete;
	h->settings.on_body = hc_on_body;
	h->settings.on_message_complete = hc_on_message_complete;
	for (unsigned int k = 0; k < owned; k++) {
		struct hc_probe *p = &h->probes[k];
		p->h = h;
		p->index = conf->worker_index + k * conf->worker_count;
		p->co = &coords->c[p->index];
	}
	return h;
}

void
qd_health_destroy(struct qd_health *h)
{
	if (h == NULL)
		return;
	/* Connections go with the stack (as the proxy's do); only our queues hold mbufs. */
	for (unsigned int k = 0; k < h->count; k++) {
		qd_inq_clear(&h->probes[k].in);
		qd_outq_clear(&h->probes[k].out);
	}
	rte_free(h);
}

void
qd_health_set_now(struct qd_health *h, uint64_t now_us)
{
	h->now_us = now_us;
}

/* Coordinator i first checks at i/count of an interval from now: the checks of a
 * dispatcher (and the lcores' bursts) do not line up. */
static void
schedule_first(struct qd_health *h)
{
	unsigned int total = RTE_MAX(qd_coord_count(h->coords), 1u);
	uint64_t interval_us = (uint64_t)h->conf.interval_ms * 1000u;
	for (unsigned int k = 0; k < h->active; k++) {
		struct hc_probe *p = &h->probes[k];
		p->next_us = h->now_us + interval_us * p->index / total;
	}
	h->scheduled = true;
}

/* Probes whose coordinator the table now holds (<n> entries, read with acquire, so
 * their fixed fields are there): ready them; once scheduled, they check at once. */
static void
activate(struct qd_health *h, unsigned int n)
{
	for (unsigned int k = h->active; k < h->count && h->probes[k].index < n; k++) {
		struct hc_probe *p = &h->probes[k];
		p->health = qd_coord_load32(&p->co->health);
		uint32_t ip = rte_be_to_cpu_32(p->co->ip_be);
		snprintf(p->addr, sizeof(p->addr), "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255,
			 (ip >> 8) & 255, ip & 255, (unsigned int)p->co->port);
		p->phase = HP_IDLE;
		p->next_us = h->now_us;
		h->active = k + 1;
		if (h->scheduled)
			QD_LOG(INFO, dp, "coordinator %s added: checking it", p->addr);
	}
	h->wake_us = 0;
}

/* A removed coordinator's check is due: no check; health back to unknown, once. */
static void
skip_removed(struct hc_probe *p)
{
	struct qd_health *h = p->h;
	p->next_us = h->now_us + (uint64_t)h->conf.interval_ms * 1000u;
	p->fails = p->passes = 0;
	if (p->health == QD_COORD_UNKNOWN)
		return;
	p->health = QD_COORD_UNKNOWN;
	put32(&p->co->health, QD_COORD_UNKNOWN);
	put32(&p->co->consecutive, 0);
	put64(&p->co->changed_us, h->now_us);
	QD_LOG(INFO, dp, "coordinator %s removed: no more checks", p->addr);
}

/* When <p> next needs the poll. */
static uint64_t
probe_wake(const struct hc_probe *p)
{
	if (p->phase == HP_IDLE)
		return p->next_us;
	if (p->phase == HP_CONNECT && p->conn == NULL)
		return RTE_MIN(p->deadline_us, p->h->now_us + HC_RESOLVE_RETRY_US);
	return p->deadline_us;
}

static void
probe_poll(struct hc_probe *p)
{
	struct qd_health *h = p->h;
	uint64_t now = h->now_us;
	switch ((enum hc_phase)p->phase) {
	case HP_IDLE:
		if (now < p->next_us)
			return;
		if (qd_coord_load32(&p->co->removed) != 0)
			skip_removed(p);
		else
			check_start(p);
		return;
	case HP_LINGER:
		if (now >= p->deadline_us) {
			/* The coordinator keeps it open: we close first (TIME_WAIT here). */
			close_graceful(p);
			check_end(p);
		}
		return;
	case HP_CONNECT:
	case HP_INFO:
	case HP_CLUSTER:
		if (now >= p->deadline_us) {
			qd_stat_add(&h->counters.timeouts, 1);
			if (p->phase != HP_CONNECT)
				check_failf(p, "%s: timeout", phase_path(p));
			else
				check_fail(p, p->conn == NULL ? "timeout (next hop unresolved)"
							      : "timeout");
		} else if (p->phase == HP_CONNECT && p->conn == NULL) {
			connect_try(p);
		}
		return;
	}
}

void
qd_health_poll(struct qd_health *h, uint64_t now_us)
{
	h->now_us = now_us;
	if (h->count == 0)
		return;
	/* Appended coordinators (qdctl coordinators add) show up here. */
	unsigned int n = qd_coord_count(h->coords);
	if (h->active < h->count && h->probes[h->active].index < n)
		activate(h, n);
	if (h->active == 0 || now_us < h->wake_us)
		return;
	if (!h->scheduled)
		schedule_first(h);
	/* Callbacks during this pass may only lower wake_us (wake_at); start from the
	 * farthest and take the minimum over every probe afterwards. */
	h->wake_us = UINT64_MAX;
	for (unsigned int k = 0; k < h->active; k++)
		probe_poll(&h->probes[k]);
	for (unsigned int k = 0; k < h->active; k++)
		wake_at(h, probe_wake(&h->probes[k]));
}

void
qd_health_read(const struct qd_health *h, struct qd_health_counters *out)
{
	out->checks = qd_stat_read(&h->counters.checks);
	out->passed = qd_stat_read(&h->counters.passed);
	out->failed = qd_stat_read(&h->counters.failed);
	out->timeouts = qd_stat_read(&h->counters.timeouts);
	out->transitions = qd_stat_read(&h->counters.transitions);
}
