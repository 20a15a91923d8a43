/*
 * Query proxy of one worker lcore (see proxy.h).
 *
 * Two kinds of connection state, both from fixed arrays with free lists
 * sized at start-up: a client (a connection accepted on the VIP) and a
 * backend (a connection we opened to a coordinator). An exchange pairs one
 * client with one backend from the request's head to the response's end;
 * then the backend goes back to its coordinator's keep-alive pool and the
 * client parses its next request.
 *
 * Every timeout in this file is a constant per kind, so each kind keeps its
 * waiting connections in a FIFO list in deadline order and the poll looks at
 * list heads only (O(1) per expiry, nothing scanned).
 *
 * Callbacks from the stack can re-enter: aborting a connection runs its
 * on_closed() before qd_tcp_abort() returns. So a side is always detached
 * from its partner before the partner is aborted, and no function touches a
 * state after a call that may have freed it.
 */
#include "proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <rte_byteorder.h>
#include <rte_malloc.h>

#include <rte_random.h>

#include "lcore_stats.h"
#include "log.h"
#include "maglev.h"
#include "mbuf_queue.h"
#include "query_info.h"
#include "reconcile.h"
#include "resource_groups.h"
#include "state_rec.h"
#include "trino_proto.h"

#define PX_HEAD_SLACK 256 /* framing we add to a rebuilt head, beyond the limit's bytes */
#define PX_FEED_MIN 512   /* parse a body only when the other side takes this much */
#define PX_SWEEP_EVERY_US 1000
#define PX_SWEEP_BUDGET 256
#define PX_EXPIRE_BUDGET 64 /* expiries handled per list per poll */
#define PX_EXPIRE_EVERY_US 200 /* timeouts are in milliseconds: look 5 times per ms */
#define PX_ADM_EXPIRE_EVERY_US 10000
#define PX_DEAD_GRACE_US 5000000u /* a coordinator down this long ends its routes */
#define PX_SUBMIT_WAIT_MS 50u /* a queued POST waits this long for a slot before QUEUED */
#define PX_ADM_EXPIRE_BUDGET 1024
#define PX_DISC_SLACK_US 1000000u /* a parked request outlives its discovery's timeout by this */
#define PX_VIP_CHECK_EVERY_US 50000 /* idle clients on a draining VIP are closed this soon */

/* ---- intrusive FIFO lists of waiting connections ------------------------ */

struct px_list;

struct px_node {
	struct px_node *prev;
	struct px_node *next;
	struct px_list *list;
	uint64_t deadline;
};

struct px_list {
	struct px_node *head;
	struct px_node *tail;
	uint32_t count;
};

static void
list_remove(struct px_node *n)
{
	struct px_list *l = n->list;
	if (l == NULL)
		return;
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	l->count--;
	n->prev = n->next = NULL;
	n->list = NULL;
}

static void
list_append(struct px_list *l, struct px_node *n, uint64_t deadline)
{
	list_remove(n);
	n->deadline = deadline;
	n->list = l;
	n->next = NULL;
	n->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
	l->count++;
}

/* ---- message heads ------------------------------------------------------- */

/* A request or response head being rebuilt. The first part of the buffer holds the
 * request target (or the reason phrase), then the header lines we keep, each as
 * "Name: value\r\n". */
struct px_head {
	char *buf;          /* from the head buffer pool, NULL between messages */
	uint32_t buf_index;
	uint32_t len;
	uint32_t first_len; /* target or reason phrase at buf[0..first_len) */
	uint32_t line_start;
	uint32_t name_len;
	uint32_t count;     /* header fields */
	uint32_t bytes;     /* target + names + values, against max_header_bytes */
	bool in_line;       /* a header line is open */
	bool in_value;
	bool in_first;      /* still receiving the target / reason */
	bool too_big;
};

enum px_framing {
	FR_NONE = 0, /* no body */
	FR_LENGTH,
	FR_CHUNKED,
	FR_EOF, /* response delimited by the backend closing */
};

enum cl_state {
	CS_HEAD = 0, /* reading a request head */
	CS_BODY,     /* request routed: body streaming (or being discarded) */
	CS_WAIT,     /* request complete: waiting for the response to finish */
	CS_CLOSING,  /* flushing, then FIN */
};

enum be_state {
	BS_FREE = 0,
	BS_CONNECTING,
	BS_BUSY,
	BS_IDLE,
	BS_CLOSING,
};

struct px_client;

struct px_backend {
	struct px_node tm;           /* connect, response or pool-idle list */
	struct qd_proxy *px;
	struct qd_tcp_conn *conn;
	struct px_client *cl;
	http_parser parser;
	struct qd_inq in;
	struct qd_outq out;
	struct px_head h;
	struct qd_json_scan scan;
	uint32_t next_free;
	uint16_t coord;
	uint8_t state;
	uint8_t framing;             /* of the response from the backend */
	bool chunk_out;              /* the client gets the body chunked */
	bool connected;
	bool reused;
	bool peer_fin;
	bool keep_alive;             /* the response allows reuse */
	bool resp_begun;             /* a response byte was parsed */
	bool head_sent;              /* the response head went to the client */
	bool resp_done;
	bool interim;                /* a 1xx response is being skipped */
	bool scan_on;
	bool route_added;
	uint16_t status;
	uint64_t sent_body;
};

struct px_client {
	struct px_node tm;           /* header-timeout or keep-alive list */
	struct qd_proxy *px;
	struct qd_tcp_conn *conn;
	struct px_backend *be;
	http_parser parser;
	struct qd_inq in;
	struct qd_outq out;
	struct px_head h;
	uint32_t next_free;
	uint8_t state;
	uint8_t framing;             /* of the request body towards the backend */
	uint8_t kind;                /* enum qd_trino_kind of the current request */
	uint8_t method;              /* enum http_method */
	bool req_done;               /* message_complete of the request parsed */
	bool resp_done;              /* its response fully queued for the client */
	bool close_after;            /* close once the current response is out */
	bool http10;
	bool peer_fin;
	bool local;                  /* the response is ours (no backend) */
	bool expect_continue;
	bool have_host;
	bool have_content_length;
	uint8_t retries;
	uint16_t coord;
	uint8_t id_len;
	char id[QD_TRINO_ID_MAX + 1];
	uint64_t body_bytes;
	uint32_t host_off;           /* the Host value in the head, for error bodies */
	uint32_t host_len;
	char host[128];              /* copy of Host for a synthesized FAILED result */
	uint32_t peer_ip_be;
	uint32_t local_ip_be;        /* the VIP it connected to */
	/* admission */
	bool collect;                /* a submission whose SQL is gathered before admission */
	bool stmt_too_big;
	bool adm_held;               /* holds slots that no route owns yet */
	int16_t adm_group;
	int64_t adm_mem;
	uint32_t park_entry;         /* the queued query this parked poll waits for */
	struct qd_outq req_head;     /* rebuilt head of the collected submission */
	struct qd_outq stmt;         /* its body */
	char alias[QD_ADM_ID_MAX];   /* placeholder id of the queued query being dispatched */
	bool submit_wait;            /* its POST is held briefly before a QUEUED answer */
};

struct px_coord_state {
	struct px_list idle;         /* pooled connections, oldest at the head */
	uint32_t conns;
};

struct qd_proxy {
	struct qd_proxy_conf conf;
	struct qd_tcp_stack *stack;
	struct rte_mempool *pool;
	struct qd_route_table *routes;
	unsigned int lcore_id;
	uint64_t now_us;
	uint32_t rr;
	uint32_t sweep_cursor;
	uint64_t next_sweep_us;
	uint64_t next_expire_us;
	/* waiting lists */
	struct px_list hdr_wait;
	struct px_list ka_wait;
	struct px_list connect_wait;
	struct px_list resp_wait;
	struct px_list io_wait;          /* clients in an exchange: body or reading stalls */
	struct px_list park_wait;        /* polls of queued queries held until admitted */
	struct px_list disc_wait;        /* requests held while their query id is discovered */
	struct qd_reconcile *disc;       /* route discovery (NULL: off) */
	struct px_coord_state coords[QD_PROXY_COORDS_MAX];
	struct qd_coord_table *ct;
	struct qd_admission *adm;
	int32_t rr_weight[QD_PROXY_COORDS_MAX]; /* smooth weighted round robin */
	struct qd_maglev maglev;         /* placement.policy client_ip: this worker's table */
	uint64_t maglev_mask;            /* usable coordinators it was built for */
	bool maglev_built;
	uint32_t rejected_seq;           /* ids of rejected submissions */
	uint32_t adm_cursor;             /* qd_admission_expire() position (worker 0) */
	char *rewrite;                   /* a request target with an alias replaced (head_size) */
	uint64_t next_adm_expire_us;
	uint64_t next_vip_check_us;
	/* states */
	struct px_client *clients;
	struct px_backend *backends;
	uint32_t client_free;
	uint32_t backend_free;
	uint32_t head_size;
	char *head_mem;
	uint32_t *head_free;
	uint32_t head_free_count;
	struct qd_proxy_gauges gauges;
	struct qd_proxy_counters counters;
	http_parser_settings req_settings;
	http_parser_settings resp_settings;
};

#define PX_COUNT(px, name) qd_stat_add(&(px)->counters.name, 1)
#define PX_ADD(px, name, n) qd_stat_add(&(px)->counters.name, (n))
#define PX_NONE UINT32_MAX

/* Whether the VIP <cl> connected to is being given up (DRAINING, or ABSENT already after a
 * drain ran out of time): its responses then say Connection: close and it closes after. */
static bool
client_vip_leaving(const struct px_client *cl)
{
	const struct qd_vip_table *t = cl->px->conf.vips;
	enum qd_vip_state st;
	return t != NULL && qd_vip_lookup(t, cl->local_ip_be, &st) >= 0 && st != QD_VIP_ACTIVE;
}

/* Before a response head is written: a leaving VIP makes it the connection's last. */
static void
client_mark_last_if_leaving(struct px_client *cl)
{
	if (!cl->close_after && client_vip_leaving(cl)) {
		cl->close_after = true;
		PX_COUNT(cl->px, vip_drain_last);
	}
}

static void client_process(struct px_client *cl);
static void backend_process(struct px_backend *be);
static void client_exchange_check(struct px_client *cl);
static void backend_release(struct px_backend *be);
static void backend_abort(struct px_backend *be);
static void client_abort(struct px_client *cl);
static void client_start_close(struct px_client *cl);

static inline void
gauge_set(uint32_t *g, uint32_t v)
{
	__atomic_store_n(g, v, __ATOMIC_RELAXED);
}

/* ---- head buffers -------------------------------------------------------- */

static bool
head_take(struct qd_proxy *px, struct px_head *h)
{
	if (h->buf == NULL) {
		if (px->head_free_count == 0) {
			PX_COUNT(px, head_buffers_empty);
			return false;
		}
		h->buf_index = px->head_free[--px->head_free_count];
		h->buf = px->head_mem + (size_t)h->buf_index * px->head_size;
		gauge_set(&px->gauges.head_buffers_free, px->head_free_count);
	}
	h->len = h->first_len = h->line_start = h->name_len = 0;
	h->count = h->bytes = 0;
	h->in_line = h->in_value = h->too_big = false;
	h->in_first = true;
	return true;
}

static void
head_release(struct qd_proxy *px, struct px_head *h)
{
	if (h->buf == NULL)
		return;
	px->head_free[px->head_free_count++] = h->buf_index;
	h->buf = NULL;
	gauge_set(&px->gauges.head_buffers_free, px->head_free_count);
}

static void
head_put(struct qd_proxy *px, struct px_head *h, const char *p, size_t n)
{
	h->bytes += (uint32_t)n;
	if (h->bytes > px->conf.max_header_bytes || h->too_big || h->len + n > px->head_size) {
		h->too_big = true;
		return;
	}
	memcpy(h->buf + h->len, p, n);
	h->len += (uint32_t)n;
}

static void
head_raw(struct px_head *h, const char *p, size_t n, uint32_t cap)
{
	if (h->too_big || h->len + n > cap) {
		h->too_big = true;
		return;
	}
	memcpy(h->buf + h->len, p, n);
	h->len += (uint32_t)n;
}

/* Header names a proxy never forwards (RFC 9110 7.6.1) or whose framing it redoes. */
static bool
hop_by_hop(const char *name, uint32_t n)
{
	static const char *const names[] = {
		"connection", "keep-alive", "proxy-connection", "te", "trailer",
		"transfer-encoding", "upgrade", "content-length", "expect", "proxy-authenticate",
	};
	for (size_t i = 0; i < RTE_DIM(names); i++)
		if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0)
			return true;
	return false;
}

static bool
name_is(const char *name, uint32_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Value of the open header line, with trailing whitespace cut. */
static void
line_value(const struct px_head *h, const char **v, uint32_t *vlen)
{
	uint32_t start = h->line_start + h->name_len + 2;
	uint32_t end = h->len;
	while (end > start && (h->buf[end - 1] == ' ' || h->buf[end - 1] == '\t'))
		end--;
	*v = h->buf + start;
	*vlen = start <= end ? end - start : 0;
}

static bool
value_has_token(const char *v, uint32_t n, const char *token)
{
	size_t t = strlen(token);
	for (uint32_t i = 0; i + t <= n; i++) {
		if (strncasecmp(v + i, token, t) != 0)
			continue;
		bool left = i == 0 || v[i - 1] == ',' || v[i - 1] == ' ';
		bool right = i + t == n || v[i + t] == ',' || v[i + t] == ' ';
		if (left && right)
			return true;
	}
	return false;
}

/* ---- JSON bodies of our own answers ------------------------------------ */

static int
error_json(char *out, size_t cap, const char *name, const char *type, int code, const char *msg)
{
	return snprintf(out, cap,
			"{\"error\":{\"message\":\"%s\",\"errorCode\":%d,\"errorName\":\"%s\","
			"\"errorType\":\"%s\"}}",
			msg, code, name, type);
}

static const char *
reason_phrase(unsigned int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

static void
count_local(struct qd_proxy *px, unsigned int status)
{
	switch (status) {
	case 200:
	case 204: PX_COUNT(px, local_200); break;
	case 400: PX_COUNT(px, local_400); break;
	case 404: PX_COUNT(px, local_404); break;
	case 408: PX_COUNT(px, local_408); break;
	case 413: PX_COUNT(px, local_413); break;
	case 431: PX_COUNT(px, local_431); break;
	case 502: PX_COUNT(px, local_502); break;
	case 503: PX_COUNT(px, local_503); break;
	case 504: PX_COUNT(px, local_504); break;
	default: break;
	}
}

/* ---- client output ------------------------------------------------------- */

/* The client made progress in an exchange: its stall clock starts again. */
static void
client_io_progress(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	if (cl->tm.list == &px->io_wait)
		list_append(&px->io_wait, &cl->tm,
			    px->now_us + (uint64_t)px->conf.io_timeout_ms * 1000u);
}

static void
client_flush(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	uint32_t before = cl->out.bytes;
	int rc = qd_outq_flush(&cl->out, cl->conn, px->now_us);
	PX_ADD(px, bytes_to_clients, before - cl->out.bytes);
	if (cl->out.bytes < before)
		client_io_progress(cl);
	if (rc != 0) {
		client_abort(cl);
		return;
	}
	if (cl->state == CS_CLOSING && qd_outq_empty(&cl->out))
		qd_tcp_shutdown(cl->conn, px->now_us);
}

/* Queue a complete response of ours. The exchange's response is then done. */
static void
client_local_raw(struct px_client *cl, unsigned int status, const char *body, bool close,
		 bool retry_after)
{
	struct qd_proxy *px = cl->px;
	size_t blen = body ? strlen(body) : 0;
	if (close)
		cl->close_after = true;
	client_mark_last_if_leaving(cl);
	int rc = qd_outq_printf(&cl->out, px->pool,
				"HTTP/1.1 %u %s\r\nServer: qdispatchd\r\n"
				"Content-Type: application/json\r\nContent-Length: %zu\r\n%s%s\r\n",
				status, reason_phrase(status), blen,
				cl->close_after ? "Connection: close\r\n" : "",
				retry_after ? "Retry-After: 1\r\n" : "");
	if (rc == 0 && blen > 0 && cl->method != HTTP_HEAD)
		rc = qd_outq_write(&cl->out, px->pool, body, blen);
	if (rc != 0) {
		PX_COUNT(px, no_mbuf);
		client_abort(cl);
		return;
	}
	cl->local = true;
	cl->resp_done = true;
	client_flush(cl);
}

static void
client_local(struct px_client *cl, unsigned int status, const char *body, bool close,
	     bool retry_after)
{
	count_local(cl->px, status);
	client_local_raw(cl, status, body, close, retry_after);
}

static void
client_error(struct px_client *cl, unsigned int status, const char *name, const char *msg)
{
	char body[512];
	bool internal = status >= 500;
	error_json(body, sizeof(body), name, internal ? "INTERNAL_ERROR" : "USER_ERROR",
		   internal ? 65536 : 0, msg);
	bool close = status == 400 || status == 408 || status == 413 || status == 431;
	client_local(cl, status, body, close, status == 503);
	if (close && cl->state != 0xff) {
		/* Whatever else the client sends is not read: the request ends here. */
		cl->req_done = true;
		client_start_close(cl);
	}
}

/* A poll of a query whose coordinator is gone: a final QueryResults that fails the query
 * cleanly in every client, instead of a status code some clients retry forever. */
static void
client_failed_result(struct px_client *cl, const char *why)
{
	struct qd_proxy *px = cl->px;
	const struct qd_coord *co = &px->ct->c[cl->coord];
	uint32_t ip = rte_be_to_cpu_32(co->ip_be);
	char body[1536];
	char msg[256];
	snprintf(msg, sizeof(msg),
		 "coordinator %u.%u.%u.%u:%u of query %s is unreachable (%s); the query is lost",
		 ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255, co->port, cl->id, why);
	snprintf(body, sizeof(body),
		 "{\"id\":\"%s\",\"infoUri\":\"http://%s/ui/query.html?%s\","
		 "\"stats\":{\"state\":\"FAILED\",\"queued\":false,\"scheduled\":false,\"nodes\":0,"
		 "\"totalSplits\":0,\"queuedSplits\":0,\"runningSplits\":0,\"completedSplits\":0,"
		 "\"cpuTimeMillis\":0,\"wallTimeMillis\":0,\"queuedTimeMillis\":0,"
		 "\"elapsedTimeMillis\":0,\"processedRows\":0,\"processedBytes\":0,"
		 "\"peakMemoryBytes\":0,\"spilledBytes\":0},"
		 "\"error\":{\"message\":\"%s\",\"errorCode\":65536,"
		 "\"errorName\":\"COORDINATOR_UNREACHABLE\",\"errorType\":\"EXTERNAL\","
		 "\"failureInfo\":{\"type\":\"qdispatch.CoordinatorUnreachable\",\"message\":\"%s\","
		 "\"suppressed\":[],\"stack\":[]}},\"warnings\":[]}",
		 cl->id, cl->host[0] ? cl->host : "dispatcher", cl->id, msg, msg);
	PX_COUNT(px, failed_results);
	client_local_raw(cl, 200, body, false, false);
}

/* ---- coordinators -------------------------------------------------------- */

static bool
coord_usable(const struct qd_proxy *px, unsigned int i)
{
	return qd_coord_usable(&px->ct->c[i], px->now_us);
}

/* Load of a coordinator for placement: what it reported plus what we sent since, or what
 * this dispatcher has running there, whichever is larger (the report is late by up to a
 * check interval, our own count misses the other peers' queries). */
static uint64_t
coord_load_of(const struct qd_coord *c)
{
	int64_t inflight = __atomic_load_n(&c->inflight, __ATOMIC_RELAXED);
	uint64_t reported = qd_coord_load(c);
	return inflight > 0 && (uint64_t)inflight > reported ? (uint64_t)inflight : reported;
}

/* Power of two choices: two usable coordinators at random, the less loaded per weight
 * wins. Herd-free (Mitzenmacher): every worker and peer sees the same stale loads, but
 * random pairs spread their picks. */
static int
coord_pick_p2c(struct qd_proxy *px)
{
	uint8_t ok[QD_PROXY_COORDS_MAX];
	unsigned int n = 0;
	for (unsigned int i = 0; i < qd_coord_count(px->ct); i++)
		if (coord_usable(px, i))
			ok[n++] = (uint8_t)i;
	if (n == 0)
		return -1;
	if (n == 1)
		return ok[0];
	unsigned int x = (unsigned int)rte_rand_max(n);
	unsigned int y = (unsigned int)rte_rand_max(n - 1);
	if (y >= x)
		y++;
	const struct qd_coord *a = &px->ct->c[ok[x]], *b = &px->ct->c[ok[y]];
	/* load_a / w_a < load_b / w_b without division */
	uint64_t la = (coord_load_of(a) + 1) * b->weight, lb = (coord_load_of(b) + 1) * a->weight;
	return la <= lb ? ok[x] : ok[y];
}

/* Smooth weighted round robin (nginx's): each pick adds every usable coordinator's weight
 * to its counter and takes the largest, which then pays the total back. */
static int
coord_pick_rr(struct qd_proxy *px)
{
	int best = -1;
	int32_t total = 0;
	for (unsigned int i = 0; i < qd_coord_count(px->ct); i++) {
		if (!coord_usable(px, i))
			continue;
		int32_t w = px->ct->c[i].weight;
		px->rr_weight[i] += w;
		total += w;
		if (best < 0 || px->rr_weight[i] > px->rr_weight[best])
			best = (int)i;
	}
	if (best >= 0)
		px->rr_weight[best] -= total;
	return best;
}

/* Maglev on the client address: the same client keeps its coordinator (nginx ip_hash)
 * and a coordinator going away moves only its own clients. The table is per worker and
 * rebuilt when the set of usable coordinators changes (rare: health transitions). */
static int
coord_pick_ip(struct qd_proxy *px, uint32_t ip_be)
{
	uint64_t mask = 0;
	for (unsigned int i = 0; i < qd_coord_count(px->ct); i++)
		if (coord_usable(px, i))
			mask |= 1ull << i;
	if (mask == 0)
		return -1;
	if (!px->maglev_built || mask != px->maglev_mask) {
		uint64_t keys[QD_PROXY_COORDS_MAX];
		uint16_t weights[QD_PROXY_COORDS_MAX];
		for (unsigned int i = 0; i < qd_coord_count(px->ct); i++) {
			keys[i] = (uint64_t)px->ct->c[i].ip_be << 16 | px->ct->c[i].port;
			weights[i] = px->ct->c[i].weight;
		}
		if (qd_maglev_build(&px->maglev, keys, weights, mask, qd_coord_count(px->ct)) != 0)
			return coord_pick_p2c(px);
		px->maglev_mask = mask;
		px->maglev_built = true;
	}
	uint16_t c = qd_maglev_lookup(&px->maglev, qd_maglev_flow_hash(&ip_be, sizeof(ip_be)));
	return c == QD_MAGLEV_NONE ? coord_pick_p2c(px) : (int)c;
}

static int
coord_pick(struct qd_proxy *px, uint32_t client_ip_be)
{
	switch (px->conf.placement) {
	case QD_PLACEMENT_ROUND_ROBIN:
		return coord_pick_rr(px);
	case QD_PLACEMENT_CLIENT_IP:
		return coord_pick_ip(px, client_ip_be);
	default:
		return coord_pick_p2c(px);
	}
}

static void
coord_mark_down(struct qd_proxy *px, unsigned int i)
{
	qd_coord_mark_failed(&px->ct->c[i], px->now_us + (uint64_t)px->conf.down_ms * 1000u);
}

/* A submission goes to <i>: the load estimate grows until its next report. */
static void
coord_note_dispatch(struct qd_proxy *px, unsigned int i)
{
	__atomic_fetch_add(&px->ct->c[i].dispatched, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&px->ct->c[i].since_report, 1, __ATOMIC_RELAXED);
}

/* ---- backends ------------------------------------------------------------ */

static void be_on_connected(struct qd_tcp_conn *c);
static void be_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void be_on_writable(struct qd_tcp_conn *c);
static void be_on_peer_fin(struct qd_tcp_conn *c);
static void be_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

static const struct qd_tcp_ops be_ops = {
	.on_connected = be_on_connected,
	.on_data = be_on_data,
	.on_writable = be_on_writable,
	.on_peer_fin = be_on_peer_fin,
	.on_closed = be_on_closed,
};

/* Idle pooled connections, for the control plane: derived from the pools once per expiry
 * pass (every PX_EXPIRE_EVERY_US) rather than kept up to date on every request. */
static void
backends_gauge(struct qd_proxy *px)
{
	uint32_t idle = 0;
	for (unsigned int i = 0; i < qd_coord_count(px->ct); i++)
		idle += px->coords[i].idle.count;
	gauge_set(&px->gauges.backends_idle, idle);
}

static void
backend_free(struct px_backend *be)
{
	struct qd_proxy *px = be->px;
	RTE_ASSERT(be->cl == NULL);
	list_remove(&be->tm);
	qd_inq_clear(&be->in);
	qd_outq_clear(&be->out);
	head_release(px, &be->h);
	px->coords[be->coord].conns--;
	be->state = BS_FREE;
	be->conn = NULL;
	be->next_free = px->backend_free;
	px->backend_free = (uint32_t)(be - px->backends);
	gauge_set(&px->gauges.backends, px->gauges.backends - 1);
}

/* A new backend connection to <coord>; NULL with errno (EAGAIN: next hop unknown or no
 * port, ENOSPC: a limit). */
static struct px_backend *
backend_open(struct qd_proxy *px, uint16_t coord)
{
	if (px->backend_free == PX_NONE) {
		PX_COUNT(px, backend_limit);
		errno = ENOSPC;
		return NULL;
	}
	struct px_backend *be = &px->backends[px->backend_free];
	const struct qd_coord *co = &px->ct->c[coord];
	struct qd_tcp_conn *c = qd_tcp_connect(px->stack, co->ip_be, co->port, &be_ops, be,
					       px->now_us);
	if (c == NULL)
		return NULL;
	px->backend_free = be->next_free;
	be->px = px;
	be->conn = c;
	be->cl = NULL;
	be->coord = coord;
	be->state = BS_CONNECTING;
	be->connected = be->reused = be->peer_fin = false;
	be->in = (struct qd_inq){0};
	be->out = (struct qd_outq){0};
	be->h.buf = NULL;
	px->coords[coord].conns++;
	gauge_set(&px->gauges.backends, px->gauges.backends + 1);
	PX_COUNT(px, backend_connects);
	list_append(&px->connect_wait, &be->tm,
		    px->now_us + (uint64_t)px->conf.connect_timeout_ms * 1000u);
	return be;
}

/* An idle pooled connection to <coord>, most recently used first. */
static struct px_backend *
backend_from_pool(struct qd_proxy *px, uint16_t coord)
{
	struct px_list *l = &px->coords[coord].idle;
	while (l->tail != NULL) {
		struct px_backend *be = (struct px_backend *)l->tail;
		list_remove(&be->tm);
		if (qd_tcp_conn_state(be->conn) == QD_TCP_ESTABLISHED && !be->peer_fin) {
			be->state = BS_BUSY;
			be->reused = true;
			PX_COUNT(px, backend_reused);
			return be;
		}
		backend_abort(be);
	}
	return NULL;
}

static void
backend_reset_exchange(struct px_backend *be)
{
	http_parser_init(&be->parser, HTTP_RESPONSE);
	be->parser.data = be;
	be->framing = FR_NONE;
	be->chunk_out = false;
	be->keep_alive = false;
	be->resp_begun = be->head_sent = be->resp_done = be->interim = false;
	be->scan_on = be->route_added = false;
	be->status = 0;
	be->sent_body = 0;
}

/* Close a backend that has no client; its state is freed from on_closed. */
static void
backend_abort(struct px_backend *be)
{
	be->cl = NULL;
	if (be->state == BS_FREE)
		return;
	be->state = BS_CLOSING;
	list_remove(&be->tm);
	qd_tcp_abort(be->conn, be->px->now_us); /* frees <be> via be_on_closed */
}

static void
backend_close_graceful(struct px_backend *be)
{
	be->cl = NULL;
	be->state = BS_CLOSING;
	list_remove(&be->tm);
	qd_tcp_shutdown(be->conn, be->px->now_us);
}

/* The exchange ended well: keep the connection for the next request when HTTP allows. */
static void
backend_release(struct px_backend *be)
{
	struct qd_proxy *px = be->px;
	be->cl = NULL;
	list_remove(&be->tm);
	bool reusable = be->keep_alive && be->resp_done && !be->peer_fin && qd_inq_empty(&be->in) &&
			qd_outq_empty(&be->out) &&
			qd_tcp_conn_state(be->conn) == QD_TCP_ESTABLISHED;
	head_release(px, &be->h);
	if (!reusable) {
		backend_close_graceful(be);
		return;
	}
	struct px_list *l = &px->coords[be->coord].idle;
	if (l->count >= px->conf.pool_idle_max && l->head != NULL) {
		/* Pool full: the oldest idle connection makes room. */
		struct px_backend *old = (struct px_backend *)l->head;
		list_remove(&old->tm);
		backend_close_graceful(old);
	}
	be->state = BS_IDLE;
	backend_reset_exchange(be);
	list_append(l, &be->tm, px->now_us + (uint64_t)px->conf.pool_idle_timeout_ms * 1000u);
}

static void
backend_flush(struct px_backend *be)
{
	struct qd_proxy *px = be->px;
	if (!be->connected)
		return;
	uint32_t before = be->out.bytes;
	int rc = qd_outq_flush(&be->out, be->conn, px->now_us);
	PX_ADD(px, bytes_to_backends, before - be->out.bytes);
	if (rc != 0) {
		/* The backend cannot take the request: same as losing it. */
		qd_tcp_abort(be->conn, px->now_us);
	}
}

/* ---- routes -------------------------------------------------------------- */

/* Hand a record to the main lcore for the state log. A full ring drops it (counted): the
 * query goes on, only a restart would not know it (docs/operations.md). */
static void
slog_emit(struct qd_proxy *px, uint16_t type, const char *id, size_t id_len, uint16_t coord,
	  int16_t group, int64_t mem, const char *id2, size_t id2_len)
{
	if (px->conf.state_ring == NULL)
		return;
	struct qd_slog_rec r;
	memset(&r, 0, sizeof(r));
	r.type = type;
	r.version = QD_SLOG_VERSION;
	if (coord < qd_coord_count(px->ct)) {
		r.coord_ip_be = px->ct->c[coord].ip_be;
		r.coord_port = px->ct->c[coord].port;
	}
	r.group_hash = group >= 0 && px->adm != NULL ? px->adm->name_hash[group] : 0;
	r.mem = mem;
	memcpy(r.id, id, RTE_MIN(id_len, sizeof(r.id) - 1));
	if (id2 != NULL)
		memcpy(r.id2, id2, RTE_MIN(id2_len, sizeof(r.id2) - 1));
	if (rte_ring_sp_enqueue_elem(px->conf.state_ring, &r, sizeof(r)) != 0)
		PX_COUNT(px, slog_ring_full);
	else
		PX_COUNT(px, slog_records);
}

/* A route ended (exactly once, whoever ended it): its coordinator has one query less and
 * its admission slots go back. */
static void
route_ended(struct qd_proxy *px, const struct qd_route_entry *e)
{
	if (!e->is_alias)
		slog_emit(px, QD_SLOG_END, e->id, strnlen(e->id, sizeof(e->id)), e->coord, -1, 0,
			  NULL, 0);
	if (e->coord < qd_coord_count(px->ct))
		__atomic_fetch_sub(&px->ct->c[e->coord].inflight, 1, __ATOMIC_RELAXED);
	if (e->group >= 0 && px->adm != NULL) {
		qd_admission_release(px->adm, px->conf.worker_index, e->group, e->mem);
		PX_COUNT(px, adm_released);
	}
}

static void
route_swept(void *ctx, const struct qd_route_entry *e, bool dead)
{
	(void)dead;
	route_ended(ctx, e);
}

static void
route_end(struct px_client *cl, uint64_t *counter)
{
	struct qd_proxy *px = cl->px;
	if (cl->id_len == 0)
		return;
	struct qd_route_entry e;
	if (qd_route_end_take(px->routes, cl->id, cl->id_len, px->now_us, &e) == 0) {
		qd_stat_add(counter, 1);
		memcpy(e.id, cl->id, cl->id_len);
		e.id[cl->id_len] = '\0';
		e.is_alias = 0;
		route_ended(px, &e);
	}
}

/* Slots held by the exchange itself (no route took them): back now. */
static void
client_adm_drop(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	if (!cl->adm_held)
		return;
	cl->adm_held = false;
	qd_admission_release(px->adm, px->conf.worker_index, cl->adm_group, cl->adm_mem);
	PX_COUNT(px, adm_released);
}

static bool
kind_is_statement(uint8_t kind)
{
	return kind == QD_TRINO_QUEUED || kind == QD_TRINO_EXECUTING || kind == QD_TRINO_LEGACY;
}

static bool
kind_has_id(uint8_t kind)
{
	return kind_is_statement(kind) || kind == QD_TRINO_PARTIAL_CANCEL ||
	       kind == QD_TRINO_QUERY;
}

/* ---- losing a backend mid-exchange -------------------------------------- */

static int client_attach(struct px_client *cl, uint16_t coord);
static void exchange_answer_failure(struct px_client *cl, bool begun, bool fresh,
				    const char *why, bool timeout);

/* <be> failed (closed, reset, refused, timed out) while serving <cl>. <fresh>: it never
 * connected, so nothing of the request reached a coordinator. */
static void
exchange_backend_failed(struct px_client *cl, struct px_backend *be, bool fresh,
			const char *why, bool timeout)
{
	struct qd_proxy *px = cl->px;
	uint16_t coord = be->coord;
	bool head_sent = be->head_sent;
	bool begun = be->resp_begun;
	/* Detach: <be> is being closed by the caller. */
	cl->be = NULL;
	be->cl = NULL;
	if (head_sent) {
		/* Part of the response is with the client: it cannot be completed. */
		PX_COUNT(px, client_aborted);
		client_abort(cl);
		return;
	}
	if (fresh) {
		coord_mark_down(px, coord);
		bool movable = cl->kind == QD_TRINO_SUBMIT || cl->kind == QD_TRINO_OTHER ||
			       cl->kind == QD_TRINO_UI_QUERY;
		if (movable && cl->retries + 1u < qd_coord_count(px->ct)) {
			int next = coord_pick(px, cl->peer_ip_be);
			if (next >= 0) {
				/* Nothing was sent: the rebuilt head moves to a new backend. */
				struct qd_outq pending = be->out;
				be->out = (struct qd_outq){0};
				cl->retries++;
				PX_COUNT(px, retries);
				if (client_attach(cl, (uint16_t)next) == 0) {
					qd_outq_splice(&cl->be->out, &pending);
					backend_flush(cl->be);
					/* A pooled backend is connected already: no on_connected
					 * will come to resume the body, so resume it here. */
					if (cl->be != NULL && cl->be->connected)
						client_process(cl);
					return;
				}
				qd_outq_clear(&pending);
			}
		}
	}
	if (!cl->req_done)
		cl->close_after = true; /* the rest of the body has nowhere to go */
	cl->req_done = true;
	exchange_answer_failure(cl, begun, fresh, why, timeout);
	/* Our answer completes the exchange: the connection goes on (or closes). */
	if (cl->state != 0xff && cl->state != CS_CLOSING) {
		cl->state = CS_WAIT;
		client_exchange_check(cl);
	}
}

static void
exchange_answer_failure(struct px_client *cl, bool begun, bool fresh, const char *why,
			bool timeout)
{
	struct qd_proxy *px = cl->px;
	if (kind_has_id(cl->kind) && !begun && (fresh || !timeout)) {
		route_end(cl, &px->counters.routes_ended_lost);
		if (kind_is_statement(cl->kind) && cl->method == HTTP_GET) {
			client_failed_result(cl, why);
		} else if (cl->method == HTTP_DELETE) {
			client_local(cl, 204, NULL, false, false);
		} else {
			char msg[160];
			snprintf(msg, sizeof(msg), "Query %s is lost: its coordinator is unreachable (%s)",
				 cl->id, why);
			client_error(cl, 404, "QUERY_NOT_FOUND", msg);
		}
		return;
	}
	if (timeout)
		client_error(cl, 504, "COORDINATOR_TIMEOUT", "The coordinator did not answer in time");
	else if (fresh)
		client_error(cl, 503, "NO_COORDINATOR_AVAILABLE",
			     "No coordinator accepted the connection");
	else
		client_error(cl, 502, "COORDINATOR_CONNECTION_LOST",
			     "The connection to the coordinator was lost before the response");
}

/* ---- backend callbacks --------------------------------------------------- */

static void
be_on_connected(struct qd_tcp_conn *c)
{
	struct px_backend *be = qd_tcp_conn_app(c);
	be->connected = true;
	list_remove(&be->tm);
	if (be->state != BS_CONNECTING || be->cl == NULL) {
		/* Its client left while we connected: nothing to send. */
		backend_close_graceful(be);
		return;
	}
	be->state = BS_BUSY;
	backend_flush(be);
	if (be->cl != NULL)
		client_process(be->cl);
}

static void
be_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct px_backend *be = qd_tcp_conn_app(c);
	if (be->state == BS_CLOSING) {
		uint32_t n = rte_pktmbuf_pkt_len(m);
		rte_pktmbuf_free(m);
		qd_tcp_recv_consumed(c, n, be->px->now_us);
		return;
	}
	qd_inq_append(&be->in, m);
	if (be->state == BS_IDLE) {
		/* A response nobody asked for: the connection is out of step. */
		list_remove(&be->tm);
		backend_abort(be);
		return;
	}
	backend_process(be);
}

static void
be_on_writable(struct qd_tcp_conn *c)
{
	struct px_backend *be = qd_tcp_conn_app(c);
	backend_flush(be);
	if (be->cl != NULL && qd_outq_empty(&be->out))
		client_process(be->cl);
}

static void
be_on_peer_fin(struct qd_tcp_conn *c)
{
	struct px_backend *be = qd_tcp_conn_app(c);
	struct qd_proxy *px = be->px;
	be->peer_fin = true;
	if (be->state == BS_IDLE) {
		list_remove(&be->tm);
		PX_COUNT(px, backend_idle_closed);
		backend_close_graceful(be);
		return;
	}
	/* An EOF-delimited body ends here; any other response is cut short (reported by
	 * on_closed once we close our side too). backend_process sorts out which. */
	if (be->state == BS_BUSY && be->cl != NULL)
		backend_process(be);
	else if (be->state == BS_BUSY || be->state == BS_CONNECTING)
		qd_tcp_shutdown(c, px->now_us);
}

static void
be_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct px_backend *be = qd_tcp_conn_app(c);
	struct qd_proxy *px = be->px;
	struct px_client *cl = be->cl;
	if (cl != NULL) {
		bool fresh = !be->connected;
		const char *reason = why == QD_TCP_CLOSE_REFUSED ? "connection refused"
				     : why == QD_TCP_CLOSE_TIMEOUT ? "connection timed out"
				     : why == QD_TCP_CLOSE_RESET   ? "connection reset"
								   : "connection closed";
		if (fresh)
			PX_COUNT(px, backend_connect_failed);
		else
			PX_COUNT(px, backend_lost);
		exchange_backend_failed(cl, be, fresh, reason, false);
	} else if (be->state == BS_CONNECTING) {
		PX_COUNT(px, backend_connect_failed);
		coord_mark_down(px, be->coord);
	}
	be->cl = NULL;
	backend_free(be);
}

/* ---- response parsing ---------------------------------------------------- */

static int
resp_on_message_begin(http_parser *p)
{
	struct px_backend *be = p->data;
	be->resp_begun = true;
	be->interim = false;
	if (!head_take(be->px, &be->h))
		return -1;
	return 0;
}

static int
resp_on_status(http_parser *p, const char *at, size_t n)
{
	struct px_backend *be = p->data;
	head_put(be->px, &be->h, at, n);
	be->h.first_len = be->h.len;
	return 0;
}

static void
line_close(struct qd_proxy *px, struct px_head *h, bool keep)
{
	if (!keep) {
		h->len = h->line_start;
	} else {
		head_raw(h, "\r\n", 2, px->head_size);
	}
	h->in_line = false;
}

/* Headers of either side: the open line is finished before a new one starts. */
typedef bool (*px_line_fn)(void *owner, const char *name, uint32_t nlen, const char *v,
			   uint32_t vlen);

static void
head_field(struct qd_proxy *px, struct px_head *h, const char *at, size_t n, px_line_fn fn,
	   void *owner)
{
	/* Trailers of a chunked body arrive after the head was sent and its buffer
	 * released: they are dropped (we re-chunk without trailers). */
	if (h->buf == NULL)
		return;
	h->in_first = false;
	if (h->in_line && h->in_value) {
		const char *v;
		uint32_t vlen;
		line_value(h, &v, &vlen);
		bool keep = !h->too_big && fn(owner, h->buf + h->line_start, h->name_len, v, vlen);
		line_close(px, h, keep);
	}
	if (!h->in_line) {
		h->in_line = true;
		h->in_value = false;
		h->line_start = h->len;
		h->name_len = 0;
		h->count++;
	}
	uint32_t before = h->len;
	head_put(px, h, at, n);
	h->name_len += h->len - before;
}

static void
head_value(struct qd_proxy *px, struct px_head *h, const char *at, size_t n)
{
	if (h->buf == NULL)
		return; /* a trailer */
	if (!h->in_value) {
		h->in_value = true;
		head_raw(h, ": ", 2, px->head_size);
	}
	head_put(px, h, at, n);
}

static void
head_finish(struct qd_proxy *px, struct px_head *h, px_line_fn fn, void *owner)
{
	if (h->buf == NULL)
		return;
	if (h->in_line) {
		const char *v = "";
		uint32_t vlen = 0;
		if (h->in_value)
			line_value(h, &v, &vlen);
		else
			head_raw(h, ": ", 2, px->head_size);
		bool keep = !h->too_big && fn(owner, h->buf + h->line_start, h->name_len, v, vlen);
		line_close(px, h, keep);
	}
}

static bool
resp_line(void *owner, const char *name, uint32_t nlen, const char *v, uint32_t vlen)
{
	(void)owner;
	(void)v;
	(void)vlen;
	return !hop_by_hop(name, nlen);
}

static int
resp_on_header_field(http_parser *p, const char *at, size_t n)
{
	struct px_backend *be = p->data;
	head_field(be->px, &be->h, at, n, resp_line, be);
	return 0;
}

static int
resp_on_header_value(http_parser *p, const char *at, size_t n)
{
	struct px_backend *be = p->data;
	head_value(be->px, &be->h, at, n);
	return 0;
}

static int
resp_write(struct px_backend *be, struct px_client *cl, const void *p, size_t n)
{
	if (qd_outq_write(&cl->out, be->px->pool, p, n) != 0) {
		PX_COUNT(be->px, no_mbuf);
		return -1;
	}
	return 0;
}

static int
resp_on_headers_complete(http_parser *p)
{
	struct px_backend *be = p->data;
	struct qd_proxy *px = be->px;
	struct px_client *cl = be->cl;
	head_finish(px, &be->h, resp_line, be);
	be->status = (uint16_t)p->status_code;
	list_remove(&be->tm); /* the response timeout ends with the head */
	if (be->h.too_big || cl == NULL)
		return -1;
	if (p->status_code / 100 == 1) {
		be->interim = true; /* 1xx: we answered Expect ourselves; skip it */
		return 0;
	}
	be->keep_alive = http_should_keep_alive(p) != 0;
	bool no_body = cl->method == HTTP_HEAD || p->status_code == 204 || p->status_code == 304;
	if (no_body)
		be->framing = FR_NONE;
	else if (p->flags & F_CHUNKED)
		be->framing = FR_CHUNKED;
	else if (p->content_length != ULLONG_MAX)
		be->framing = FR_LENGTH;
	else {
		be->framing = FR_EOF;
		be->keep_alive = false;
	}
	/* Towards the client: chunked unless the length is known, and for HTTP/1.0 clients
	 * close-delimited instead of chunked. */
	bool chunk_to_client = (be->framing == FR_CHUNKED || be->framing == FR_EOF) && !cl->http10;
	if ((be->framing == FR_CHUNKED || be->framing == FR_EOF) && cl->http10)
		cl->close_after = true;
	client_mark_last_if_leaving(cl);
	char line[160];
	int n = snprintf(line, sizeof(line), "HTTP/1.1 %u ", p->status_code);
	int rc = resp_write(be, cl, line, (size_t)n);
	if (rc == 0)
		rc = resp_write(be, cl, be->h.buf, be->h.first_len);
	if (rc == 0)
		rc = resp_write(be, cl, "\r\n", 2);
	if (rc == 0)
		rc = resp_write(be, cl, be->h.buf + be->h.first_len, be->h.len - be->h.first_len);
	if (rc == 0 && p->content_length != ULLONG_MAX && !(p->flags & F_CHUNKED) &&
	    (be->framing == FR_LENGTH || cl->method == HTTP_HEAD)) {
		n = snprintf(line, sizeof(line), "Content-Length: %" PRIu64 "\r\n",
			     (uint64_t)p->content_length);
		rc = resp_write(be, cl, line, (size_t)n);
	}
	if (rc == 0 && chunk_to_client)
		rc = resp_write(be, cl, "Transfer-Encoding: chunked\r\n", 28);
	if (rc == 0 && cl->close_after)
		rc = resp_write(be, cl, "Connection: close\r\n", 19);
	if (rc == 0)
		rc = resp_write(be, cl, "\r\n", 2);
	if (rc != 0)
		return -1;
	be->head_sent = true;
	head_release(px, &be->h);
	be->chunk_out = chunk_to_client;
	be->scan_on = p->status_code == 200 && cl->method != HTTP_HEAD &&
		      (cl->kind == QD_TRINO_SUBMIT || kind_is_statement(cl->kind));
	if (be->scan_on)
		qd_json_scan_init(&be->scan);
	PX_COUNT(px, responses_forwarded);
	return no_body ? 1 : 0;
}

static int
resp_on_body(http_parser *p, const char *at, size_t n)
{
	struct px_backend *be = p->data;
	struct qd_proxy *px = be->px;
	struct px_client *cl = be->cl;
	if (cl == NULL || be->interim)
		return 0;
	if (be->scan_on) {
		qd_json_scan_feed(&be->scan, at, n);
		if (cl->kind == QD_TRINO_SUBMIT && be->scan.id_found && !be->route_added) {
			/* Before the rest of the body goes out: the client cannot follow
			 * nextUri before it has the whole document. */
			be->route_added = true;
			int rc = qd_route_insert_adm(px->routes, be->scan.id, be->scan.id_len,
						     be->coord, (uint16_t)px->conf.worker_index,
						     px->now_us, cl->adm_held ? cl->adm_group : -1,
						     cl->adm_held ? cl->adm_mem : 0);
			if (rc == 0) {
				PX_COUNT(px, routes_created);
				slog_emit(px, QD_SLOG_ROUTE, be->scan.id, be->scan.id_len, be->coord,
					  cl->adm_held ? cl->adm_group : -1,
					  cl->adm_held ? cl->adm_mem : 0, NULL, 0);
				/* the route owns the slots now: they go back when it ends */
				cl->adm_held = false;
				__atomic_fetch_add(&px->ct->c[be->coord].inflight, 1,
						   __ATOMIC_RELAXED);
				coord_note_dispatch(px, be->coord);
				/* the placeholder the client saw first names the query too */
				if (cl->alias[0] != '\0') {
					size_t al = strlen(cl->alias);
					if (qd_route_insert_alias(px->routes, cl->alias, al,
								  be->scan.id, be->scan.id_len,
								  px->now_us) != 0)
						PX_COUNT(px, routes_full);
					else
						slog_emit(px, QD_SLOG_ALIAS, cl->alias, al, be->coord,
							  -1, 0, be->scan.id, be->scan.id_len);
				}
				cl->alias[0] = '\0';
	cl->submit_wait = false;
			}
			else if (rc == -EEXIST)
				PX_COUNT(px, routes_exists);
			else
				PX_COUNT(px, routes_full);
			memcpy(cl->id, be->scan.id, be->scan.id_len + 1u);
			cl->id_len = be->scan.id_len;
		}
	}
	bool chunked = be->chunk_out;
	int rc = 0;
	if (chunked)
		rc = qd_outq_printf(&cl->out, px->pool, "%zx\r\n", n);
	if (rc == 0)
		rc = qd_outq_write(&cl->out, px->pool, at, n);
	if (rc == 0 && chunked)
		rc = qd_outq_write(&cl->out, px->pool, "\r\n", 2);
	if (rc != 0) {
		PX_COUNT(px, no_mbuf);
		return -1;
	}
	return 0;
}

static int
resp_on_message_complete(http_parser *p)
{
	struct px_backend *be = p->data;
	struct qd_proxy *px = be->px;
	struct px_client *cl = be->cl;
	if (be->interim) {
		be->interim = false;
		be->resp_begun = false;
		return 0; /* the real response follows */
	}
	if (cl == NULL)
		return -1;
	if (be->chunk_out && qd_outq_write(&cl->out, px->pool, "0\r\n\r\n", 5) != 0) {
		PX_COUNT(px, no_mbuf);
		return -1;
	}
	be->resp_done = true;
	/* Route bookkeeping: the query ends with its last page, a cancel, or "not found". */
	unsigned int st = be->status;
	if (cl->kind == QD_TRINO_SUBMIT && be->route_added && be->scan.done && !be->scan.next_uri)
		route_end(cl, be->scan.error ? &px->counters.routes_ended_failed
					     : &px->counters.routes_ended_finished);
	else if (kind_is_statement(cl->kind) && cl->method == HTTP_GET && st == 200 &&
		 be->scan.done && !be->scan.next_uri)
		route_end(cl, be->scan.error ? &px->counters.routes_ended_failed
					     : &px->counters.routes_ended_finished);
	else if ((kind_is_statement(cl->kind) || cl->kind == QD_TRINO_QUERY) &&
		 cl->method == HTTP_DELETE && st / 100 == 2)
		route_end(cl, &px->counters.routes_ended_canceled);
	else if (kind_has_id(cl->kind) && st == 404)
		route_end(cl, &px->counters.routes_ended_gone);
	cl->resp_done = true;
	http_parser_pause(p, 1);
	return 0;
}

/* Parse what the backend sent while the client can take it. */
static void
backend_process(struct px_backend *be)
{
	struct qd_proxy *px = be->px;
	struct qd_tcp_conn *bconn = be->conn;
	/* No round limit of its own: a limit would need a way to come back, and at the
	 * end of a body nothing else calls us (this stalled the last ~90 KB of large
	 * pages). Each round consumes input or stops, and the input is bounded by the
	 * receive window. */
	for (;;) {
		struct px_client *cl = be->cl;
		if (cl == NULL || be->resp_done)
			break;
		if (!qd_outq_empty(&cl->out)) {
			client_flush(cl);
			if (be->cl == NULL || !qd_outq_empty(&cl->out))
				break; /* on_writable of the client resumes us */
		}
		const char *p;
		size_t n = qd_inq_peek(&be->in, &p);
		if (n == 0) {
			if (be->peer_fin && be->framing == FR_EOF && be->head_sent) {
				http_parser_execute(&be->parser, &px->resp_settings, NULL, 0);
				if (be->resp_done)
					goto done;
			}
			if (be->peer_fin && !be->resp_done && be->cl != NULL) {
				qd_tcp_shutdown(bconn, px->now_us);
				return; /* on_closed: the response was cut short */
			}
			break;
		}
		uint32_t space = qd_tcp_send_space(cl->conn);
		if (be->head_sent && space < PX_FEED_MIN) {
			qd_tcp_want_writable(cl->conn); /* resumed from the client's on_writable */
			break;
		}
		if (be->head_sent && n > space)
			n = space;
		size_t used = http_parser_execute(&be->parser, &px->resp_settings, p, n);
		enum http_errno err = HTTP_PARSER_ERRNO(&be->parser);
		if (used == 0 && err == HPE_OK)
			break; /* cannot happen with n > 0; never spin */
		qd_inq_consume(&be->in, (uint32_t)used);
		qd_tcp_recv_consumed(bconn, (uint32_t)used, px->now_us);
		if (err != HPE_OK && err != HPE_PAUSED) {
			/* Garbage from a coordinator: the exchange cannot continue. */
			struct px_client *c2 = be->cl;
			if (c2 != NULL)
				exchange_backend_failed(c2, be, false, "bad response", false);
			backend_abort(be);
			return;
		}
		if (be->cl != NULL)
			client_flush(be->cl);
		if (be->resp_done)
			goto done;
	}
	return;
done:
	if (be->cl != NULL) {
		struct px_client *cl = be->cl;
		client_flush(cl);
		client_exchange_check(cl);
	}
}

/* ---- request parsing ----------------------------------------------------- */

static bool
req_line(void *owner, const char *name, uint32_t nlen, const char *v, uint32_t vlen)
{
	struct px_client *cl = owner;
	if (name_is(name, nlen, "host")) {
		cl->have_host = true;
		uint32_t n = RTE_MIN(vlen, (uint32_t)sizeof(cl->host) - 1);
		memcpy(cl->host, v, n);
		cl->host[n] = '\0';
		/* Our own error bodies embed it in JSON: keep it printable and quote-free. */
		for (uint32_t i = 0; i < n; i++)
			if (cl->host[i] == '"' || cl->host[i] == '\\' || (unsigned char)cl->host[i] < 32)
				cl->host[i] = '_';
		return true;
	}
	if (name_is(name, nlen, "expect")) {
		if (value_has_token(v, vlen, "100-continue"))
			cl->expect_continue = true;
		return false;
	}
	if (name_is(name, nlen, "content-length")) {
		cl->have_content_length = true;
		return false;
	}
	return !hop_by_hop(name, nlen);
}

static int
req_on_message_begin(http_parser *p)
{
	struct px_client *cl = p->data;
	struct qd_proxy *px = cl->px;
	if (!head_take(px, &cl->h))
		return -1;
	/* Idle keep-alive ends; the head must now arrive in time. */
	list_append(&px->hdr_wait, &cl->tm,
		    px->now_us + (uint64_t)px->conf.header_timeout_ms * 1000u);
	cl->have_host = cl->have_content_length = cl->expect_continue = false;
	cl->host[0] = '\0';
	return 0;
}

static int
req_on_url(http_parser *p, const char *at, size_t n)
{
	struct px_client *cl = p->data;
	head_put(cl->px, &cl->h, at, n);
	cl->h.first_len = cl->h.len;
	return 0;
}

static int
req_on_header_field(http_parser *p, const char *at, size_t n)
{
	struct px_client *cl = p->data;
	head_field(cl->px, &cl->h, at, n, req_line, cl);
	return 0;
}

static int
req_on_header_value(http_parser *p, const char *at, size_t n)
{
	struct px_client *cl = p->data;
	head_value(cl->px, &cl->h, at, n);
	return 0;
}

static int
req_on_headers_complete(http_parser *p)
{
	struct px_client *cl = p->data;
	head_finish(cl->px, &cl->h, req_line, cl);
	list_remove(&cl->tm);
	http_parser_pause(p, 1); /* route before anything of the body is read */
	return 0;
}

static int
req_on_body(http_parser *p, const char *at, size_t n)
{
	struct px_client *cl = p->data;
	struct qd_proxy *px = cl->px;
	cl->body_bytes += n;
	if (cl->body_bytes > px->conf.max_body_bytes)
		return -1; /* reported as 413 by the caller */
	client_io_progress(cl);
	struct px_backend *be = cl->be;
	if (cl->collect) {
		/* a submission's SQL, held for admission */
		if (cl->stmt.bytes + n > px->conf.max_statement_bytes) {
			cl->stmt_too_big = true;
			PX_COUNT(px, adm_statement_too_big);
			return -1;
		}
		if (qd_outq_write(&cl->stmt, px->pool, at, n) != 0) {
			PX_COUNT(px, no_mbuf);
			return -1;
		}
		return 0;
	}
	if (be == NULL)
		return 0; /* discarding the body of a request we answered ourselves */
	int rc = 0;
	if (cl->framing == FR_CHUNKED)
		rc = qd_outq_printf(&be->out, px->pool, "%zx\r\n", n);
	if (rc == 0)
		rc = qd_outq_write(&be->out, px->pool, at, n);
	if (rc == 0 && cl->framing == FR_CHUNKED)
		rc = qd_outq_write(&be->out, px->pool, "\r\n", 2);
	if (rc != 0) {
		PX_COUNT(px, no_mbuf);
		return -1;
	}
	be->sent_body += n;
	return 0;
}

static int
req_on_message_complete(http_parser *p)
{
	struct px_client *cl = p->data;
	struct qd_proxy *px = cl->px;
	struct px_backend *be = cl->be;
	if (be != NULL && cl->framing == FR_CHUNKED &&
	    qd_outq_write(&be->out, px->pool, "0\r\n\r\n", 5) != 0) {
		PX_COUNT(px, no_mbuf);
		return -1;
	}
	cl->req_done = true;
	if (be != NULL && !be->resp_done)
		list_append(&px->resp_wait, &be->tm,
			    px->now_us + (uint64_t)px->conf.response_timeout_ms * 1000u);
	http_parser_pause(p, 1); /* the next pipelined request waits for this response */
	return 0;
}

/* ---- routing a request ---------------------------------------------------- */

/* Take a backend for <coord> (pooled or new) and write the rebuilt request head into
 * its output. 0, or a negative errno (nothing attached). */
static int
client_attach(struct px_client *cl, uint16_t coord)
{
	struct qd_proxy *px = cl->px;
	struct px_backend *be = backend_from_pool(px, coord);
	if (be == NULL) {
		be = backend_open(px, coord);
		if (be == NULL)
			return -errno;
	}
	backend_reset_exchange(be);
	be->cl = cl;
	cl->be = be;
	cl->coord = coord;
	if (be->state == BS_IDLE)
		be->state = BS_BUSY;
	return 0;
}

/* The request head for the backend: origin-form target, the headers we kept, framing. */
static int
client_write_head(struct px_client *cl, struct qd_outq *q, const char *origin, size_t olen,
		  const char *authority, size_t alen, bool open)
{
	struct qd_proxy *px = cl->px;
	struct rte_mempool *mp = px->pool;
	const char *method = http_method_str((enum http_method)cl->method);
	int rc = qd_outq_printf(q, mp, "%s ", method);
	if (rc == 0)
		rc = qd_outq_write(q, mp, origin, olen);
	if (rc == 0)
		rc = qd_outq_write(q, mp, " HTTP/1.1\r\n", 11);
	if (rc == 0)
		rc = qd_outq_write(q, mp, cl->h.buf + cl->h.first_len, cl->h.len - cl->h.first_len);
	if (rc == 0 && !cl->have_host) {
		/* HTTP/1.0 without Host: the coordinator builds nextUri from it. */
		if (alen > 0) {
			rc = qd_outq_write(q, mp, "Host: ", 6);
			if (rc == 0)
				rc = qd_outq_write(q, mp, authority, alen);
			if (rc == 0)
				rc = qd_outq_write(q, mp, "\r\n", 2);
		} else {
			/* The address the client reached us on: with VIPs moving between
			 * peers, the configured first one may not be ours any more. */
			uint32_t ip = rte_be_to_cpu_32(cl->local_ip_be != 0 ? cl->local_ip_be
									 : px->conf.vip_be);
			rc = qd_outq_printf(q, mp, "Host: %u.%u.%u.%u:%u\r\n", ip >> 24,
					    (ip >> 16) & 255, (ip >> 8) & 255, ip & 255,
					    px->conf.listen_port);
		}
	}
	if (rc == 0 && px->conf.forwarded_for) {
		uint32_t ip = rte_be_to_cpu_32(cl->peer_ip_be);
		rc = qd_outq_printf(q, mp, "X-Forwarded-For: %u.%u.%u.%u\r\n", ip >> 24,
				    (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
	}
	if (open) /* framing and the end of the head follow once the body is known */
		return rc;
	if (rc == 0 && cl->framing == FR_CHUNKED)
		rc = qd_outq_write(q, mp, "Transfer-Encoding: chunked\r\n", 28);
	else if (rc == 0 && cl->framing == FR_LENGTH)
		rc = qd_outq_printf(q, mp, "Content-Length: %" PRIu64 "\r\n",
				    (uint64_t)cl->parser.content_length);
	if (rc == 0)
		rc = qd_outq_write(q, mp, "\r\n", 2);
	return rc;
}

static void
dispatcher_endpoint(struct px_client *cl, const char *path, size_t len)
{
	struct qd_proxy *px = cl->px;
	if (len == strlen("/v1/dispatcher/health") &&
	    memcmp(path, "/v1/dispatcher/health", len) == 0 &&
	    (cl->method == HTTP_GET || cl->method == HTTP_HEAD)) {
		unsigned int usable = 0;
		for (unsigned int i = 0; i < qd_coord_count(px->ct); i++)
			usable += coord_usable(px, i);
		/* Like orchestrator's leader-check: 200 only when this dispatcher takes new
		 * queries; a restarted peer in quarantine admits none beyond what it restored,
		 * so upstream balancers should send elsewhere meanwhile. */
		const struct qd_peer_health *ph = px->conf.peer_health;
		bool quarantine = ph != NULL && __atomic_load_n(&ph->quarantine, __ATOMIC_RELAXED);
		const char *status = usable == 0 ? "no_coordinator" : quarantine ? "quarantine" : "ok";
		bool ok = usable > 0 && !quarantine;
		char peers[160] = "null";
		if (ph != NULL)
			snprintf(peers, sizeof(peers),
				 "{\"self\":%u,\"configured\":%u,\"alive\":%u,\"quarantine\":%s}",
				 __atomic_load_n(&ph->self, __ATOMIC_RELAXED),
				 __atomic_load_n(&ph->configured, __ATOMIC_RELAXED),
				 __atomic_load_n(&ph->alive, __ATOMIC_RELAXED),
				 quarantine ? "true" : "false");
		char body[384];
		snprintf(body, sizeof(body),
			 "{\"status\":\"%s\",\"server\":\"qdispatchd\",\"lcore\":%u,"
			 "\"coordinators\":{\"configured\":%u,\"usable\":%u},\"peers\":%s}",
			 status, px->lcore_id, qd_coord_count(px->ct), usable, peers);
		client_local(cl, ok ? 200 : 503, body, false, !ok);
		return;
	}
	client_error(cl, 404, "NOT_FOUND", "No such dispatcher endpoint");
}

/* ---- admission: submissions held, queued and dispatched ------------------- */

static void client_forward(struct px_client *cl, int coord, const char *origin, size_t olen,
			   const char *authority, size_t alen);
static void client_miss(struct px_client *cl);
static bool discoverable(const struct px_client *cl);
static void client_discover(struct px_client *cl);
static void client_collect_start(struct px_client *cl, const char *origin, size_t olen,
				 const char *authority, size_t alen);
static void client_admit(struct px_client *cl);
static void client_queued_poll(struct px_client *cl);
static void client_queued_answer(struct px_client *cl, uint32_t e, uint32_t park_ms);

/* Value of header <name> among the kept lines of <h> ("Name: value\r\n" each). */
static bool
head_header(const struct px_head *h, const char *name, const char **v, uint32_t *vlen)
{
	size_t nl = strlen(name);
	uint32_t i = h->first_len;
	for (unsigned int k = 0; i < h->len && k <= h->count; k++) {
		const char *line = h->buf + i;
		const char *nlp = memchr(line, '\n', h->len - i);
		uint32_t llen = nlp != NULL ? (uint32_t)(nlp - line + 1) : h->len - i;
		if (llen > nl + 1 && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
			const char *p = line + nl + 1, *e = line + llen;
			while (p < e && (*p == ' ' || *p == '\t'))
				p++;
			while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*v = p;
			*vlen = (uint32_t)(e - p);
			return true;
		}
		i += llen;
	}
	return false;
}

/* X-Trino-* or X-Presto-* (the old protocol name) */
static bool
client_header(const struct px_client *cl, const char *suffix, const char **v, uint32_t *vlen)
{
	char name[64];
	snprintf(name, sizeof(name), "X-Trino-%s", suffix);
	if (head_header(&cl->h, name, v, vlen))
		return true;
	snprintf(name, sizeof(name), "X-Presto-%s", suffix);
	return head_header(&cl->h, name, v, vlen);
}

/* PEAK_MEMORY of "X-Trino-Resource-Estimate: EXECUTION_TIME=1m, PEAK_MEMORY=8GB" in bytes,
 * 0 when absent or not a data size (Trino's units: B kB MB GB TB PB, powers of 1024). */
static int64_t
peak_memory_of(const char *v, uint32_t n)
{
	static const char key[] = "PEAK_MEMORY=";
	for (uint32_t i = 0; i + sizeof(key) - 1 <= n; i++) {
		if (strncasecmp(v + i, key, sizeof(key) - 1) != 0)
			continue;
		uint32_t j = i + (uint32_t)sizeof(key) - 1;
		double num = 0, scale = 0;
		bool digits = false;
		for (; j < n && ((v[j] >= '0' && v[j] <= '9') || v[j] == '.'); j++) {
			if (v[j] == '.') {
				scale = scale == 0 ? 0.1 : scale;
				continue;
			}
			digits = true;
			if (scale == 0) {
				num = num * 10 + (v[j] - '0');
			} else {
				num += (v[j] - '0') * scale;
				scale /= 10;
			}
		}
		static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
		uint32_t ulen = 0;
		while (j + ulen < n && v[j + ulen] != ',' && v[j + ulen] != ' ')
			ulen++;
		for (unsigned int u = 0; digits && u < RTE_DIM(units); u++) {
			if (strlen(units[u]) == ulen && strncasecmp(v + j, units[u], ulen) == 0) {
				double bytes = num;
				for (unsigned int k = 0; k < u; k++)
					bytes *= 1024;
				return bytes > 9.2e18 ? INT64_MAX : (int64_t)bytes;
			}
		}
		return 0;
	}
	return 0;
}

/* Up to <cap> bytes from the front of <q>, for the statement's first keyword. */
static size_t
outq_prefix(const struct qd_outq *q, char *out, size_t cap)
{
	size_t n = 0;
	for (const struct rte_mbuf *m = q->head; m != NULL && n < cap; m = m->next) {
		size_t k = RTE_MIN((size_t)rte_pktmbuf_data_len(m), cap - n);
		memcpy(out + n, rte_pktmbuf_mtod(m, const char *), k);
		n += k;
	}
	return n;
}

static const char *
client_host(struct px_client *cl, char *buf, size_t cap)
{
	if (cl->host[0] != '\0')
		return cl->host;
	uint32_t ip = rte_be_to_cpu_32(cl->local_ip_be != 0 ? cl->local_ip_be
							    : cl->px->conf.vip_be);
	snprintf(buf, cap, "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
		 ip & 255, cl->px->conf.listen_port);
	return buf;
}

#define PX_STATS_ZERO                                                                      \
	"\"nodes\":0,\"totalSplits\":0,\"queuedSplits\":0,\"runningSplits\":0,"               \
	"\"completedSplits\":0,\"cpuTimeMillis\":0,\"wallTimeMillis\":0,"                     \
	"\"processedRows\":0,\"processedBytes\":0,\"physicalInputBytes\":0,"                  \
	"\"peakMemoryBytes\":0,\"spilledBytes\":0"

/* A QueryResults for a query the dispatcher ends itself (never ran on a coordinator). */
static void
client_query_failed(struct px_client *cl, const char *id, const char *name, int code,
		    const char *type, const char *msg, uint64_t queued_ms)
{
	char hbuf[32], body[1536];
	const char *host = client_host(cl, hbuf, sizeof(hbuf));
	snprintf(body, sizeof(body),
		 "{\"id\":\"%s\",\"infoUri\":\"http://%s/ui/query.html?%s\","
		 "\"stats\":{\"state\":\"FAILED\",\"queued\":false,\"scheduled\":false,"
		 "\"queuedTimeMillis\":%" PRIu64 ",\"elapsedTimeMillis\":%" PRIu64 "," PX_STATS_ZERO
		 "},\"error\":{\"message\":\"%s\",\"errorCode\":%d,\"errorName\":\"%s\","
		 "\"errorType\":\"%s\",\"failureInfo\":{\"type\":\"io.trino.spi.TrinoException\","
		 "\"message\":\"%s\",\"suppressed\":[],\"stack\":[]}},\"warnings\":[]}",
		 id, host, id, queued_ms, queued_ms, msg, code, name, type, msg);
	PX_COUNT(cl->px, failed_results);
	client_local_raw(cl, 200, body, false, false);
}

/* QUEUED, with a nextUri back to us: the client polls it as it polls a coordinator. */
static void
client_queued_result(struct px_client *cl, uint32_t e)
{
	struct qd_proxy *px = cl->px;
	const struct qd_adm_entry *en = &px->adm->entries[e];
	char hbuf[32], body[1024];
	const char *host = client_host(cl, hbuf, sizeof(hbuf));
	uint64_t ms = (px->now_us - en->queued_us) / 1000u;
	snprintf(body, sizeof(body),
		 "{\"id\":\"%s\",\"infoUri\":\"http://%s/ui/query.html?%s\","
		 "\"nextUri\":\"http://%s/v1/statement/queued/%s/qd/%u\","
		 "\"stats\":{\"state\":\"QUEUED\",\"queued\":true,\"scheduled\":false,"
		 "\"queuedTimeMillis\":%" PRIu64 ",\"elapsedTimeMillis\":%" PRIu64 "," PX_STATS_ZERO
		 "},\"warnings\":[]}",
		 en->id, host, en->id, host, en->id, __atomic_load_n(&en->polls, __ATOMIC_RELAXED),
		 ms, ms);
	client_local_raw(cl, 200, body, false, false);
}

/* The final answer of a query that ended in the dispatcher's queue. */
static void
client_done_result(struct px_client *cl, uint32_t e)
{
	struct qd_proxy *px = cl->px;
	const struct qd_adm_entry *en = &px->adm->entries[e];
	uint64_t ms = ((en->done_us > en->queued_us ? en->done_us : px->now_us) - en->queued_us) /
		      1000u;
	char id[QD_ADM_ID_MAX], msg[160];
	snprintf(id, sizeof(id), "%s", en->id);
	switch (en->reason) {
	case QD_ADM_DONE_CANCELED:
		client_query_failed(cl, id, "USER_CANCELED", 3, "USER_ERROR", "Query was canceled",
				    ms);
		break;
	case QD_ADM_DONE_TIMEOUT:
		snprintf(msg, sizeof(msg),
			 "Query exceeded maximum queued time of the dispatcher (%" PRIu64 " ms)",
			 px->adm->conf.queue_timeout_us / 1000u);
		client_query_failed(cl, id, "EXCEEDED_TIME_LIMIT", 0x20003, "INSUFFICIENT_RESOURCES",
				    msg, ms);
		break;
	case QD_ADM_DONE_ABANDONED:
		client_query_failed(cl, id, "ABANDONED_QUERY", 2, "USER_ERROR",
				    "Query was abandoned by the client while queued", ms);
		break;
	default:
		client_query_failed(cl, id, "GENERIC_INTERNAL_ERROR", 65536, "INTERNAL_ERROR",
				    "Query could not be dispatched", ms);
		break;
	}
}

/* Send a complete request (head and body in <req>) to a coordinator chosen now. */
static void
client_send_request(struct px_client *cl, struct qd_outq *req)
{
	struct qd_proxy *px = cl->px;
	int coord = coord_pick(px, cl->peer_ip_be);
	int rc = coord < 0 ? -EAGAIN : client_attach(cl, (uint16_t)coord);
	while (coord >= 0 && rc != 0 && rc != -ENOSPC && cl->retries + 1u < qd_coord_count(px->ct)) {
		coord_mark_down(px, (unsigned int)coord);
		coord = coord_pick(px, cl->peer_ip_be);
		if (coord < 0)
			break;
		cl->retries++;
		rc = client_attach(cl, (uint16_t)coord);
	}
	if (coord < 0 || rc != 0) {
		qd_outq_clear(req);
		client_adm_drop(cl);
		client_error(cl, 503, rc == -ENOSPC ? "DISPATCHER_BUSY" : "NO_COORDINATOR_AVAILABLE",
			     coord < 0 ? "No healthy coordinator is available"
				       : "No coordinator is reachable");
		return;
	}
	struct px_backend *be = cl->be;
	qd_outq_splice(&be->out, req);
	if (cl->req_done && !be->resp_done)
		list_append(&px->resp_wait, &be->tm,
			    px->now_us + (uint64_t)px->conf.response_timeout_ms * 1000u);
	backend_flush(be);
}

static void
client_collect_start(struct px_client *cl, const char *origin, size_t olen, const char *authority,
		     size_t alen)
{
	struct qd_proxy *px = cl->px;
	cl->collect = true;
	if (client_write_head(cl, &cl->req_head, origin, olen, authority, alen, true) != 0) {
		PX_COUNT(px, no_mbuf);
		client_abort(cl);
		return;
	}
	if (cl->expect_continue && cl->framing != FR_NONE) {
		if (qd_outq_write(&cl->out, px->pool, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0) {
			PX_COUNT(px, no_mbuf);
			client_abort(cl);
			return;
		}
		client_flush(cl);
	}
	/* the head buffer stays: admission reads the user, source, tags and estimate */
}

/* The whole submission is here: classify it, then run it, queue it or refuse it. */
static void
client_admit(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	cl->collect = false;
	struct qd_rg_query q = {0};
	const char *v;
	uint32_t vlen;
	if (client_header(cl, "User", &v, &vlen)) {
		q.user = v;
		q.user_len = vlen;
	}
	if (client_header(cl, "Source", &v, &vlen)) {
		q.source = v;
		q.source_len = vlen;
	}
	if (client_header(cl, "Client-Tags", &v, &vlen)) {
		q.client_tags = v;
		q.client_tags_len = vlen;
	}
	int64_t mem = 0;
	if (client_header(cl, "Resource-Estimate", &v, &vlen))
		mem = peak_memory_of(v, vlen);
	char sql[512];
	q.query_type = qd_rg_query_type_of(sql, outq_prefix(&cl->stmt, sql, sizeof(sql)));
	int group = qd_admission_select(px->adm, &q);
	head_release(px, &cl->h);
	if (group < 0) {
		char id[32];
		snprintf(id, sizeof(id), "qdr_%u_%u", px->conf.worker_index, ++px->rejected_seq);
		PX_COUNT(px, adm_rejected);
		qd_outq_clear(&cl->req_head);
		qd_outq_clear(&cl->stmt);
		client_query_failed(cl, id, "QUERY_REJECTED", 0, "USER_ERROR",
				    "Query did not match any selection rule", 0);
		return;
	}
	/* the request as it will go out: head, framing for the body we hold, body */
	struct qd_outq req = cl->req_head;
	cl->req_head = (struct qd_outq){0};
	if (qd_outq_printf(&req, px->pool, "Content-Length: %u\r\n\r\n", cl->stmt.bytes) != 0) {
		PX_COUNT(px, no_mbuf);
		qd_outq_clear(&req);
		client_abort(cl);
		return;
	}
	qd_outq_splice(&req, &cl->stmt);
	uint32_t e = QD_ADM_NONE;
	enum qd_adm_result res =
		qd_admission_submit(px->adm, px->conf.worker_index, group, mem, px->now_us, &e);
	switch (res) {
	case QD_ADM_RUN:
		PX_COUNT(px, adm_admitted);
		cl->adm_held = true;
		cl->adm_group = (int16_t)group;
		cl->adm_mem = mem;
		client_send_request(cl, &req);
		return;
	case QD_ADM_QUEUED:
		PX_COUNT(px, adm_queued);
		qd_admission_attach(px->adm, e, req.head, req.bytes, cl->peer_ip_be);
		/* Often a slot is free in another worker's reserve, which that worker returns
		 * at its next loop: hold the POST a moment so the query can go straight to a
		 * coordinator, and answer with a placeholder only if it really waits. */
		cl->submit_wait = true;
		client_queued_answer(cl, e, RTE_MIN(px->conf.poll_wait_ms, PX_SUBMIT_WAIT_MS));
		if (cl->tm.list != &px->park_wait)
			cl->submit_wait = false;
		return;
	default: {
		char id[32], msg[200];
		snprintf(id, sizeof(id), "qdr_%u_%u", px->conf.worker_index, ++px->rejected_seq);
		qd_outq_clear(&req);
		PX_COUNT(px, adm_queue_full);
		snprintf(msg, sizeof(msg), "Too many queued queries for \\\"%s\\\"",
			 res == QD_ADM_QUEUE_FULL ? px->adm->info[group].name : "the dispatcher");
		client_query_failed(cl, id, "QUERY_QUEUE_FULL", 0x20002, "INSUFFICIENT_RESOURCES",
				    msg, 0);
		return;
	}
	}
}

/* A queued query was admitted: its poll becomes the submission to a coordinator, whose
 * answer (the real query id and nextUri) is this poll's response. */
static bool
client_dispatch_entry(struct px_client *cl, uint32_t e)
{
	struct qd_proxy *px = cl->px;
	struct qd_adm_entry *en = &px->adm->entries[e];
	uint32_t len = 0;
	struct rte_mbuf *m = qd_admission_claim(px->adm, e, &len);
	if (m == NULL)
		return false;
	cl->adm_held = true;
	cl->adm_group = (int16_t)en->group;
	cl->adm_mem = en->mem;
	/* the client knows the placeholder only if it got a QUEUED answer */
	if (!cl->submit_wait)
		snprintf(cl->alias, sizeof(cl->alias), "%s", en->id);
	qd_admission_dispatched(px->adm, e);
	struct qd_outq req = {.head = m, .tail = m, .bytes = len};
	for (unsigned int k = 0; req.tail->next != NULL && k < UINT16_MAX; k++)
		req.tail = req.tail->next;
	cl->local = false;
	cl->kind = QD_TRINO_SUBMIT; /* its response carries the id to route */
	PX_COUNT(px, adm_dispatched);
	/* back under the exchange's stall clock (it was parked, or just taken off) */
	if (cl->tm.list != &px->io_wait)
		list_append(&px->io_wait, &cl->tm,
			    px->now_us + (uint64_t)px->conf.io_timeout_ms * 1000u);
	client_send_request(cl, &req);
	return true;
}

/* Answer a poll of queued entry <e>, or park it up to <park_ms> while it waits. */
static void
client_queued_answer(struct px_client *cl, uint32_t e, uint32_t park_ms)
{
	struct qd_proxy *px = cl->px;
	switch (qd_admission_poll(px->adm, e, px->now_us)) {
	case QD_ADM_WAITING:
		if (park_ms > 0) {
			cl->park_entry = e;
			cl->local = true; /* its (empty) body is read and dropped meanwhile */
			list_append(&px->park_wait, &cl->tm, px->now_us + (uint64_t)park_ms * 1000u);
			return;
		}
		client_queued_result(cl, e);
		return;
	case QD_ADM_ADMITTED:
		if (client_dispatch_entry(cl, e))
			return;
		client_queued_result(cl, e);
		return;
	case QD_ADM_DONE:
		PX_COUNT(px, adm_ended_queued);
		client_done_result(cl, e);
		qd_admission_done_answered(px->adm, e);
		return;
	default:
		client_error(cl, 404, "QUERY_NOT_FOUND", "Query not found: it left the dispatcher's queue");
		return;
	}
}

static void
client_queued_poll(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	uint32_t e = qd_admission_find(px->adm, cl->id, cl->id_len);
	uint8_t kind = cl->kind;
	cl->id_len = 0; /* a placeholder has no route */
	if (e == QD_ADM_NONE) {
		PX_COUNT(px, route_misses);
		char msg[160];
		snprintf(msg, sizeof(msg), "Query %s not found in the dispatcher's queue", cl->id);
		client_error(cl, 404, "QUERY_NOT_FOUND", msg);
		return;
	}
	PX_COUNT(px, adm_polls);
	if (cl->method == HTTP_DELETE) {
		if (qd_admission_cancel(px->adm, px->conf.worker_index, e, px->now_us))
			PX_COUNT(px, adm_canceled);
		client_local(cl, 204, NULL, false, false);
		return;
	}
	if (cl->method != HTTP_GET || !kind_is_statement(kind)) {
		client_error(cl, 404, "QUERY_NOT_FOUND",
			     "A query queued at the dispatcher has no query info yet");
		return;
	}
	client_queued_answer(cl, e, px->conf.poll_wait_ms);
}

/* Parked polls whose entry moved on (admitted, ended) or whose wait is over. */
static void
park_poll(struct qd_proxy *px)
{
	struct px_node *n = px->park_wait.head;
	for (unsigned int k = 0; n != NULL && k < px->conf.max_clients; k++) {
		struct px_node *next = n->next;
		struct px_client *cl = (struct px_client *)n;
		uint32_t st = __atomic_load_n(&px->adm->entries[cl->park_entry].state,
					      __ATOMIC_ACQUIRE);
		if (st != QD_ADM_WAITING || n->deadline <= px->now_us) {
			list_remove(n);
			client_queued_answer(cl, cl->park_entry, 0);
			cl->submit_wait = false;
			if (cl->state == CS_WAIT)
				client_exchange_check(cl);
		}
		n = next;
	}
}

/* The head of a request is complete: answer it ourselves or give it a backend. */
static void
client_route(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	http_parser *p = &cl->parser;
	PX_COUNT(px, requests);
	http_parser_pause(p, 0); /* paused at the end of the head */
	/* From here the exchange's stall clock runs (the body, then reading the answer). */
	list_append(&px->io_wait, &cl->tm, px->now_us + (uint64_t)px->conf.io_timeout_ms * 1000u);
	cl->method = (uint8_t)p->method;
	cl->http10 = p->http_major == 1 && p->http_minor == 0;
	cl->close_after = !http_should_keep_alive(p) || cl->http10 || cl->peer_fin;
	cl->req_done = cl->resp_done = cl->local = false;
	cl->retries = 0;
	cl->body_bytes = 0;
	cl->id_len = 0;
	cl->collect = cl->stmt_too_big = false;
	cl->park_entry = PX_NONE;
	cl->alias[0] = '\0';
	cl->kind = QD_TRINO_OTHER;
	cl->be = NULL;
	cl->state = CS_BODY;
	if (p->flags & F_CHUNKED)
		cl->framing = FR_CHUNKED;
	else if (p->content_length != ULLONG_MAX && cl->have_content_length)
		cl->framing = FR_LENGTH;
	else
		cl->framing = FR_NONE;

	if (cl->h.too_big || cl->h.count > px->conf.max_headers) {
		client_error(cl, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
			     "The request head is larger than the dispatcher accepts");
		return;
	}
	if (p->upgrade || cl->method == HTTP_CONNECT) {
		client_error(cl, 400, "BAD_REQUEST", "CONNECT and protocol upgrades are not supported");
		return;
	}
	if (cl->framing == FR_LENGTH && p->content_length > px->conf.max_body_bytes) {
		client_error(cl, 413, "REQUEST_TOO_LARGE", "The request body is larger than the dispatcher accepts");
		return;
	}
	const char *origin, *authority;
	size_t olen, alen;
	if (qd_trino_origin_form(cl->h.buf, cl->h.first_len, &origin, &olen, &authority, &alen) != 0) {
		client_error(cl, 400, "BAD_REQUEST", "Unsupported request target");
		return;
	}
	struct qd_trino_target t;
	qd_trino_classify(origin, olen, &t);
	cl->kind = (uint8_t)t.kind;
	if (t.id_len > 0) {
		memcpy(cl->id, t.id, t.id_len);
		cl->id[t.id_len] = '\0';
		cl->id_len = (uint8_t)t.id_len;
	}
	int coord = -1;
	switch (t.kind) {
	case QD_TRINO_DISPATCHER:
		dispatcher_endpoint(cl, t.path, t.path_len);
		return;
	case QD_TRINO_SUBMIT:
		PX_COUNT(px, requests_submit);
		if (px->adm != NULL && cl->method == HTTP_POST) {
			client_collect_start(cl, origin, olen, authority, alen);
			return;
		}
		coord = coord_pick(px, cl->peer_ip_be);
		break;
	case QD_TRINO_OTHER:
		coord = coord_pick(px, cl->peer_ip_be);
		break;
	case QD_TRINO_UI_QUERY:
		coord = qd_route_lookup(px->routes, cl->id, cl->id_len, px->now_us);
		if (coord < 0)
			coord = coord_pick(px, cl->peer_ip_be);
		cl->id_len = 0; /* the UI never ends a route */
		break;
	default: /* the protocol paths that carry a query id */
		PX_COUNT(px, requests_followup);
		if (px->adm != NULL && t.id_len > 4 && memcmp(cl->id, "qdq_", 4) == 0) {
			if (qd_admission_find(px->adm, cl->id, cl->id_len) != QD_ADM_NONE) {
				client_queued_poll(cl);
				return;
			}
			/* Dispatched already: the placeholder is an alias of the query. The
			 * request goes to its coordinator under the coordinator's id. */
			char real[QD_ROUTE_KEY_LEN];
			size_t rlen = 0;
			coord = qd_route_resolve(px->routes, cl->id, cl->id_len, px->now_us, real,
						 &rlen);
			size_t pre = (size_t)(t.id - origin), post = olen - pre - t.id_len;
			if (coord >= 0 && rlen > 0 && pre + rlen + post <= px->head_size) {
				memcpy(px->rewrite, origin, pre);
				memcpy(px->rewrite + pre, real, rlen);
				memcpy(px->rewrite + pre + rlen, t.id + t.id_len, post);
				origin = px->rewrite;
				olen = pre + rlen + post;
				memcpy(cl->id, real, rlen + 1);
				cl->id_len = (uint8_t)rlen;
			} else if (coord >= 0) {
				coord = -1;
			}
		} else if (t.id_len > 0) {
			coord = qd_route_lookup(px->routes, cl->id, cl->id_len, px->now_us);
		}
		if (coord < 0 && t.id_len > 0 && discoverable(cl)) {
			client_discover(cl);
			return;
		}
		if (coord < 0) {
			if (t.id_len == 0)
				cl->id_len = 0;
			client_miss(cl);
			return;
		}
		break;
	}
	if (coord < 0) {
		client_error(cl, 503, "NO_COORDINATOR_AVAILABLE", "No healthy coordinator is available");
		return;
	}
	client_forward(cl, coord, origin, olen, authority, alen);
}

/* Send the routed request to <coord>: a backend, the rebuilt head, 100-continue. */
static void
client_forward(struct px_client *cl, int coord, const char *origin, size_t olen,
	       const char *authority, size_t alen)
{
	struct qd_proxy *px = cl->px;
	int rc = client_attach(cl, (uint16_t)coord);
	/* A coordinator we cannot even start a connection to (next hop unknown): try the
	 * others for requests that may go anywhere. */
	while (rc != 0 && rc != -ENOSPC && !kind_has_id(cl->kind) &&
	       cl->retries + 1u < qd_coord_count(px->ct)) {
		coord_mark_down(px, (unsigned int)coord);
		coord = coord_pick(px, cl->peer_ip_be);
		if (coord < 0)
			break;
		cl->retries++;
		rc = client_attach(cl, (uint16_t)coord);
	}
	if (rc != 0) {
		client_error(cl, 503, rc == -ENOSPC ? "DISPATCHER_BUSY" : "NO_COORDINATOR_AVAILABLE",
			     rc == -ENOSPC ? "The dispatcher has no connection left to a coordinator"
					   : "No coordinator is reachable");
		return;
	}
	if (client_write_head(cl, &cl->be->out, origin, olen, authority, alen, false) != 0) {
		PX_COUNT(px, no_mbuf);
		struct px_backend *be = cl->be;
		cl->be = NULL;
		backend_abort(be);
		client_abort(cl);
		return;
	}
	head_release(px, &cl->h);
	if (cl->expect_continue && cl->framing != FR_NONE) {
		if (qd_outq_write(&cl->out, px->pool, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0) {
			PX_COUNT(px, no_mbuf);
			client_abort(cl);
			return;
		}
		client_flush(cl);
	}
	/* a request that completed while it was held (discovery) waits for its answer now */
	if (cl->req_done && !cl->be->resp_done)
		list_append(&px->resp_wait, &cl->be->tm,
			    px->now_us + (uint64_t)px->conf.response_timeout_ms * 1000u);
	backend_flush(cl->be);
}

/* ---- route discovery ------------------------------------------------------ */

/* A follow-up whose query id this dispatcher does not know: 404, as ever. */
static void
client_miss(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	PX_COUNT(px, route_misses);
	char msg[160];
	snprintf(msg, sizeof(msg), "Query %s not found: no coordinator of this dispatcher runs it",
		 cl->id_len > 0 ? cl->id : "(invalid id)");
	cl->id_len = 0;
	client_error(cl, 404, "QUERY_NOT_FOUND", msg);
}

/* Worth asking the coordinators: a real query id (our own placeholders "qdq_", and the
 * rejected "qdr_", are never theirs) in a request without a body to hold. */
static bool
discoverable(const struct px_client *cl)
{
	const struct qd_proxy *px = cl->px;
	bool ours = cl->id_len >= 4 &&
		    (memcmp(cl->id, "qdq_", 4) == 0 || memcmp(cl->id, "qdr_", 4) == 0);
	bool method = cl->method == HTTP_GET || cl->method == HTTP_DELETE ||
		      cl->method == HTTP_HEAD;
	return px->disc != NULL && !ours && method && cl->framing == FR_NONE;
}

/* Hold the request while the coordinators are asked about its query id. */
static void
client_discover(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	int rc = qd_reconcile_discover(px->disc, cl->id, cl->id_len);
	if (rc == 0 || rc == -EALREADY) {
		PX_COUNT(px, disc_parked);
		cl->local = true; /* the rest of the request (its end) is read meanwhile */
		list_append(&px->disc_wait, &cl->tm,
			    px->now_us + (uint64_t)px->conf.discovery_timeout_ms * 1000u +
				    PX_DISC_SLACK_US);
		return;
	}
	if (rc == -ENOSPC) {
		PX_COUNT(px, disc_busy);
		cl->id_len = 0;
		client_error(cl, 503, "DISPATCHER_BUSY",
			     "Too many unknown query ids are being looked up: retry");
		return;
	}
	client_miss(cl); /* no coordinator to ask */
}

/* A parked request goes on: to the route found meanwhile, or 404. */
static void
client_resume(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	list_append(&px->io_wait, &cl->tm, px->now_us + (uint64_t)px->conf.io_timeout_ms * 1000u);
	cl->local = false;
	int coord = qd_route_lookup(px->routes, cl->id, cl->id_len, px->now_us);
	const char *origin, *authority;
	size_t olen, alen;
	if (coord < 0 || cl->h.buf == NULL ||
	    qd_trino_origin_form(cl->h.buf, cl->h.first_len, &origin, &olen, &authority,
				 &alen) != 0) {
		client_miss(cl);
	} else {
		PX_COUNT(px, disc_resumed);
		client_forward(cl, coord, origin, olen, authority, alen);
	}
	if (cl->state == CS_WAIT)
		client_exchange_check(cl);
}

/* The query found on <coord> becomes ours: a route marked adopted, holding a slot in the
 * group its session selects. It already runs, so the slot is taken even past the limit
 * (admission debt: nothing new is admitted there until enough queries end). A query that
 * has ended, or that no selector matches, holds no slot. */
static void
adopt(struct qd_proxy *px, const char *id, size_t id_len, uint16_t coord,
      const struct qd_qinfo *qi)
{
	int group = -1;
	if (px->adm != NULL && qd_qinfo_state_live(qi->state)) {
		struct qd_rg_query q;
		qd_qinfo_rg_query(qi, &q);
		group = qd_admission_select(px->adm, &q);
		if (group >= 0)
			qd_admission_force(px->adm, px->conf.worker_index, group, 0);
	}
	int rc = qd_route_insert_adopted(px->routes, id, id_len, coord,
					 (uint16_t)px->conf.worker_index, px->now_us,
					 (int16_t)group, 0);
	if (rc != 0) {
		/* routed meanwhile (another worker's discovery of the same id), or full */
		if (group >= 0)
			qd_admission_release(px->adm, px->conf.worker_index, group, 0);
		if (rc == -EEXIST)
			PX_COUNT(px, routes_exists);
		else
			PX_COUNT(px, routes_full);
		return;
	}
	PX_COUNT(px, routes_adopted);
	if (group >= 0)
		PX_COUNT(px, adm_adopted);
	slog_emit(px, QD_SLOG_ROUTE, id, id_len, coord, (int16_t)group, 0, NULL, 0);
	__atomic_fetch_add(&px->ct->c[coord].inflight, 1, __ATOMIC_RELAXED);
}

void
qd_proxy_set_discovery(struct qd_proxy *px, struct qd_reconcile *r)
{
	px->disc = r;
}

void
qd_proxy_discovered(struct qd_proxy *px, const char *id, size_t id_len, int coord,
		    const struct qd_qinfo *qi)
{
	RTE_ASSERT(id_len > 0 && id_len <= QD_TRINO_ID_MAX);
	if (coord >= 0 && (unsigned int)coord < qd_coord_count(px->ct) && qi != NULL)
		adopt(px, id, id_len, (uint16_t)coord, qi);
	/* Every request held for this id goes on. Resuming one touches only its own client,
	 * which may append to the list (its pipelined successor parks for a new discovery):
	 * the walk is bounded by the list as it was. */
	uint32_t n = px->disc_wait.count;
	struct px_node *node = px->disc_wait.head;
	for (uint32_t k = 0; node != NULL && k < n; k++) {
		struct px_node *next = node->next;
		struct px_client *cl = (struct px_client *)node;
		if (cl->id_len == id_len && memcmp(cl->id, id, id_len) == 0) {
			list_remove(node);
			client_resume(cl);
		}
		node = next;
	}
}

/* ---- client side --------------------------------------------------------- */

static void
client_free(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	if (cl->submit_wait && cl->tm.list == &px->park_wait) {
		/* Its client never saw the placeholder: nobody can poll it, it goes now. */
		qd_admission_cancel(px->adm, px->conf.worker_index, cl->park_entry, px->now_us);
		qd_admission_done_answered(px->adm, cl->park_entry);
		cl->submit_wait = false;
	}
	list_remove(&cl->tm);
	qd_inq_clear(&cl->in);
	qd_outq_clear(&cl->out);
	head_release(px, &cl->h);
	client_adm_drop(cl);
	qd_outq_clear(&cl->req_head);
	qd_outq_clear(&cl->stmt);
	cl->conn = NULL;
	cl->next_free = px->client_free;
	px->client_free = (uint32_t)(cl - px->clients);
	gauge_set(&px->gauges.clients, px->gauges.clients - 1);
}

static void
client_abort(struct px_client *cl)
{
	struct px_backend *be = cl->be;
	cl->be = NULL;
	if (be != NULL) {
		be->cl = NULL;
		backend_abort(be);
	}
	if (cl->conn != NULL && cl->state != 0xff) {
		cl->state = 0xff; /* re-entry guard: on_closed runs inside qd_tcp_abort */
		qd_tcp_abort(cl->conn, cl->px->now_us);
	}
}

static void
client_start_close(struct px_client *cl)
{
	cl->state = CS_CLOSING;
	list_remove(&cl->tm);
	client_flush(cl);
}

/* After a response completed: next request, or close. */
static void
client_exchange_check(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	if (!cl->req_done || !cl->resp_done || cl->state == CS_CLOSING)
		return;
	struct px_backend *be = cl->be;
	if (be != NULL) {
		cl->be = NULL;
		backend_release(be);
	}
	head_release(px, &cl->h);
	client_adm_drop(cl);
	cl->collect = false;
	qd_outq_clear(&cl->req_head);
	qd_outq_clear(&cl->stmt);
	if (cl->close_after) {
		client_start_close(cl);
		return;
	}
	cl->state = CS_HEAD;
	cl->local = false;
	cl->req_done = cl->resp_done = false;
	http_parser_pause(&cl->parser, 0);
	list_append(&px->ka_wait, &cl->tm,
		    px->now_us + (uint64_t)px->conf.keepalive_timeout_ms * 1000u);
	if (!qd_inq_empty(&cl->in))
		client_process(cl);
	else if (cl->peer_fin)
		client_start_close(cl);
}

/* Parse what the client sent, as far as the exchange allows. */
static void
client_process(struct px_client *cl)
{
	struct qd_proxy *px = cl->px;
	/* Bounded by the input queue (the receive window): each round consumes input,
	 * changes state or returns. */
	for (;;) {
		if (cl->state == CS_WAIT || cl->state == CS_CLOSING || cl->state == 0xff)
			return;
		size_t limit = SIZE_MAX;
		if (cl->state == CS_BODY) {
			if (cl->req_done) {
				cl->state = CS_WAIT;
				if (cl->collect)
					client_admit(cl);
				if (cl->state == CS_WAIT)
					client_exchange_check(cl);
				return;
			}
			struct px_backend *be = cl->be;
			if (be != NULL) {
				if (!be->connected || !qd_outq_empty(&be->out))
					return; /* on_connected / on_writable resume us */
				uint32_t space = qd_tcp_send_space(be->conn);
				if (space < PX_FEED_MIN) {
					qd_tcp_want_writable(be->conn);
					return;
				}
				limit = space;
			} else if (!cl->local && !cl->collect) {
				return;
			}
		}
		const char *p;
		size_t n = qd_inq_peek(&cl->in, &p);
		if (n == 0) {
			if (cl->peer_fin && cl->state == CS_HEAD) {
				if (cl->h.buf != NULL && cl->h.bytes > 0)
					PX_COUNT(px, local_400); /* gave up mid-head */
				client_start_close(cl);
			}
			return;
		}
		if (n > limit)
			n = limit;
		uint8_t before = cl->state;
		size_t used = http_parser_execute(&cl->parser, &px->req_settings, p, n);
		enum http_errno err = HTTP_PARSER_ERRNO(&cl->parser);
		qd_inq_consume(&cl->in, (uint32_t)used);
		qd_tcp_recv_consumed(cl->conn, (uint32_t)used, px->now_us);
		if (cl->state == 0xff)
			return;
		if (err == HPE_PAUSED && before == CS_HEAD && cl->state == CS_HEAD &&
		    !cl->req_done) {
			client_route(cl);
			continue;
		}
		if (err != HPE_OK && err != HPE_PAUSED) {
			struct px_backend *be = cl->be;
			if (be != NULL) {
				cl->be = NULL;
				be->cl = NULL;
				backend_abort(be);
			}
			cl->req_done = true;
			cl->state = CS_BODY;
			if (cl->body_bytes > px->conf.max_body_bytes || cl->stmt_too_big) {
				client_error(cl, 413, "REQUEST_TOO_LARGE",
					     "The request body is larger than the dispatcher accepts");
			} else if (err == HPE_HEADER_OVERFLOW || cl->h.too_big) {
				client_error(cl, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
					     "The request head is larger than the dispatcher accepts");
			} else {
				char msg[128];
				snprintf(msg, sizeof(msg), "Malformed HTTP request (%s)",
					 http_errno_name(err));
				client_error(cl, 400, "BAD_REQUEST", msg);
			}
			if (cl->state != 0xff)
				client_start_close(cl);
			return;
		}
		if (cl->state == CS_HEAD && cl->h.buf != NULL && cl->h.too_big) {
			/* Stop reading an oversize head at once; no need to see its end. */
			cl->req_done = true;
			cl->state = CS_BODY;
			client_error(cl, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
				     "The request head is larger than the dispatcher accepts");
			if (cl->state != 0xff)
				client_start_close(cl);
			return;
		}
		if (cl->be != NULL)
			backend_flush(cl->be);
		if (used == 0 && cl->state == before)
			return; /* no progress: never spin */
	}
}

static void cl_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m);
static void cl_on_writable(struct qd_tcp_conn *c);
static void cl_on_peer_fin(struct qd_tcp_conn *c);
static void cl_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

static const struct qd_tcp_ops client_ops = {
	.on_data = cl_on_data,
	.on_writable = cl_on_writable,
	.on_peer_fin = cl_on_peer_fin,
	.on_closed = cl_on_closed,
};

static void
cl_on_accept(void *app, struct qd_tcp_conn *c)
{
	struct qd_proxy *px = app;
	if (px->client_free == PX_NONE) {
		PX_COUNT(px, clients_refused);
		qd_tcp_conn_set_app(c, NULL, NULL);
		qd_tcp_abort(c, px->now_us);
		return;
	}
	struct px_client *cl = &px->clients[px->client_free];
	px->client_free = cl->next_free;
	memset(cl, 0, sizeof(*cl));
	cl->px = px;
	cl->conn = c;
	cl->state = CS_HEAD;
	http_parser_init(&cl->parser, HTTP_REQUEST);
	cl->parser.data = cl;
	struct qd_tcp_info info;
	qd_tcp_conn_info(c, &info);
	cl->peer_ip_be = info.remote_ip_be;
	cl->local_ip_be = info.local_ip_be;
	qd_tcp_conn_set_app(c, &client_ops, cl);
	list_append(&px->hdr_wait, &cl->tm,
		    px->now_us + (uint64_t)px->conf.header_timeout_ms * 1000u);
	PX_COUNT(px, clients_accepted);
	gauge_set(&px->gauges.clients, px->gauges.clients + 1);
}

static void
cl_on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct px_client *cl = qd_tcp_conn_app(c);
	qd_inq_append(&cl->in, m);
	client_process(cl);
}

static void
cl_on_writable(struct qd_tcp_conn *c)
{
	struct px_client *cl = qd_tcp_conn_app(c);
	client_flush(cl);
	if (cl->state == 0xff || !qd_outq_empty(&cl->out))
		return;
	if (cl->be != NULL && !cl->be->resp_done)
		backend_process(cl->be);
	else if (cl->state == CS_BODY && cl->local)
		client_process(cl);
}

static void
cl_on_peer_fin(struct qd_tcp_conn *c)
{
	struct px_client *cl = qd_tcp_conn_app(c);
	cl->peer_fin = true;
	if (cl->state == CS_HEAD)
		client_process(cl);
	/* Mid-exchange: the response still goes out, then we close. */
	cl->close_after = true;
}

static void
cl_on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)why;
	struct px_client *cl = qd_tcp_conn_app(c);
	if (cl == NULL)
		return;
	struct qd_proxy *px = cl->px;
	struct px_backend *be = cl->be;
	cl->be = NULL;
	if (be != NULL) {
		be->cl = NULL;
		if (!be->resp_done)
			PX_COUNT(px, client_aborted);
		if (be->resp_done && cl->req_done)
			backend_release(be);
		else
			backend_abort(be);
	}
	client_free(cl);
}

/* ---- timers -------------------------------------------------------------- */

static void
expire(struct qd_proxy *px)
{
	uint64_t now = px->now_us;
	for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && px->hdr_wait.head != NULL &&
				 px->hdr_wait.head->deadline <= now;
	     k++) {
		struct px_client *cl = (struct px_client *)px->hdr_wait.head;
		list_remove(&cl->tm);
		cl->req_done = true;
		cl->state = CS_BODY;
		client_error(cl, 408, "REQUEST_TIMEOUT", "The request head did not arrive in time");
		if (cl->state != 0xff)
			client_start_close(cl);
	}
	for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && px->ka_wait.head != NULL &&
				 px->ka_wait.head->deadline <= now;
	     k++) {
		struct px_client *cl = (struct px_client *)px->ka_wait.head;
		PX_COUNT(px, keepalive_timeouts);
		client_start_close(cl);
	}
	for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && px->connect_wait.head != NULL &&
				 px->connect_wait.head->deadline <= now;
	     k++) {
		struct px_backend *be = (struct px_backend *)px->connect_wait.head;
		list_remove(&be->tm);
		PX_COUNT(px, backend_connect_timeouts);
		struct px_client *cl = be->cl;
		if (cl != NULL)
			exchange_backend_failed(cl, be, true, "connect timeout", false);
		else
			coord_mark_down(px, be->coord);
		backend_abort(be);
	}
	for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && px->resp_wait.head != NULL &&
				 px->resp_wait.head->deadline <= now;
	     k++) {
		struct px_backend *be = (struct px_backend *)px->resp_wait.head;
		list_remove(&be->tm);
		PX_COUNT(px, response_timeouts);
		struct px_client *cl = be->cl;
		if (cl != NULL)
			exchange_backend_failed(cl, be, false, "response timeout", true);
		backend_abort(be);
	}
	for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && px->io_wait.head != NULL &&
				 px->io_wait.head->deadline <= now;
	     k++) {
		struct px_client *cl = (struct px_client *)px->io_wait.head;
		list_remove(&cl->tm);
		struct px_backend *be = cl->be;
		bool reading_stalled = !qd_outq_empty(&cl->out) ||
				       (be != NULL && be->head_sent && !qd_inq_empty(&be->in));
		if (cl->req_done && !reading_stalled) {
			/* Waiting for the coordinator: its own timeout covers that. */
			list_append(&px->io_wait, &cl->tm,
				    now + (uint64_t)px->conf.io_timeout_ms * 1000u);
			continue;
		}
		PX_COUNT(px, client_stalls);
		if (!cl->req_done && (be == NULL || !be->head_sent)) {
			/* The body stopped coming: tell the client, drop the half request. */
			cl->be = NULL;
			if (be != NULL) {
				be->cl = NULL;
				backend_abort(be);
			}
			cl->req_done = true;
			cl->state = CS_BODY;
			client_error(cl, 408, "REQUEST_TIMEOUT", "The request body stopped arriving");
			if (cl->state != 0xff)
				client_start_close(cl);
		} else {
			client_abort(cl); /* not reading its response: nothing more to say */
		}
	}
	for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && px->disc_wait.head != NULL &&
				 px->disc_wait.head->deadline <= now;
	     k++) {
		/* the discovery always reports before this: a safety net */
		struct px_client *cl = (struct px_client *)px->disc_wait.head;
		list_remove(&cl->tm);
		client_resume(cl);
	}
	for (unsigned int i = 0; i < qd_coord_count(px->ct); i++) {
		struct px_list *l = &px->coords[i].idle;
		for (unsigned int k = 0; k < PX_EXPIRE_BUDGET && l->head != NULL &&
					 l->head->deadline <= now;
		     k++) {
			struct px_backend *be = (struct px_backend *)l->head;
			list_remove(&be->tm);
			PX_COUNT(px, backend_idle_closed);
			backend_close_graceful(be);
		}
	}
	backends_gauge(px);
}

/* While a VIP drains, its idle keep-alive clients are closed gracefully (FIN): they
 * reconnect and reach whoever holds the VIP by then. Clients in an exchange close after
 * their response (client_mark_last_if_leaving); clients that have not sent a head yet
 * are left to it. Bounded by the keep-alive list (at most max_clients). */
static void
vip_drain_check(struct qd_proxy *px)
{
	if (px->conf.vips == NULL || !qd_vip_any_draining(px->conf.vips))
		return;
	struct px_node *n = px->ka_wait.head;
	for (uint32_t k = 0; n != NULL && k < px->conf.max_clients; k++) {
		struct px_node *next = n->next;
		struct px_client *cl = (struct px_client *)n;
		if (client_vip_leaving(cl)) {
			PX_COUNT(px, vip_drain_idle_closed);
			client_start_close(cl);
		}
		n = next;
	}
}

void
qd_proxy_set_now(struct qd_proxy *px, uint64_t now_us)
{
	px->now_us = now_us;
}

void
qd_proxy_poll(struct qd_proxy *px, uint64_t now_us)
{
	px->now_us = now_us;
	if (px->adm != NULL)
		qd_admission_worker_poll(px->adm, px->conf.worker_index);
	if (now_us >= px->next_expire_us) {
		px->next_expire_us = now_us + PX_EXPIRE_EVERY_US;
		expire(px);
		if (px->adm != NULL) {
			park_poll(px);
			/* queue timeouts and abandoned entries: one worker is enough */
			if (px->conf.worker_index == 0 && now_us >= px->next_adm_expire_us) {
				px->next_adm_expire_us = now_us + PX_ADM_EXPIRE_EVERY_US;
				qd_admission_expire(px->adm, &px->adm_cursor, PX_ADM_EXPIRE_BUDGET,
						    now_us);
			}
		}
	}
	if (now_us >= px->next_vip_check_us) {
		px->next_vip_check_us = now_us + PX_VIP_CHECK_EVERY_US;
		vip_drain_check(px);
	}
	if (now_us >= px->next_sweep_us) {
		px->next_sweep_us = now_us + PX_SWEEP_EVERY_US;
		uint32_t dead = 0;
		uint64_t dead_mask = 0;
		/* Routes end with their coordinator only once it has been down a while: a
		 * coordinator that misses a couple of checks (a restart of ours, a burst)
		 * still runs its queries, and ending them would free their slots early. */
		for (unsigned int i = 0; i < qd_coord_count(px->ct); i++) {
			const struct qd_coord *c = &px->ct->c[i];
			uint64_t since = qd_coord_load64(&c->changed_us);
			if (qd_coord_dead(c) && now_us > since && now_us - since >= PX_DEAD_GRACE_US)
				dead_mask |= 1ull << i;
		}
		/* Under pressure ended routes linger less: 1 s once the table is three
		 * quarters full, not at all past nine tenths. Clients fetch a query's final
		 * page at once; at thousands of queries a second route.linger_s of ended
		 * routes would fill the table and refuse the routes of new queries (their
		 * follow-ups would get 404). */
		uint64_t linger_us = (uint64_t)px->conf.route_linger_ms * 1000u;
		uint32_t used = qd_route_count(px->routes), cap = px->routes->capacity;
		if (used > cap / 10u * 9u)
			linger_us = 0;
		else if (used > cap / 4u * 3u && linger_us > 1000000u)
			linger_us = 1000000u;
		if (linger_us != (uint64_t)px->conf.route_linger_ms * 1000u)
			PX_COUNT(px, route_pressure_sweeps);
		uint32_t n = qd_route_sweep(px->routes, px->conf.worker_index, px->conf.worker_count,
					    &px->sweep_cursor, PX_SWEEP_BUDGET, now_us,
					    (uint64_t)px->conf.route_idle_ms * 1000u, linger_us, dead_mask,
					    &dead, route_swept, px);
		PX_ADD(px, routes_ended_idle, n);
		PX_ADD(px, routes_ended_dead, dead);
	}
}

int
qd_proxy_end_route(struct qd_proxy *px, const char *id, size_t id_len, enum qd_proxy_end why)
{
	struct qd_route_entry e;
	int rc = qd_route_end_take(px->routes, id, id_len, px->now_us, &e);
	if (rc != 0)
		return rc;
	qd_stat_add(why == QD_PROXY_END_FINISHED ? &px->counters.routes_ended_finished
		    : why == QD_PROXY_END_FAILED ? &px->counters.routes_ended_failed
						 : &px->counters.routes_ended_gone,
		    1);
	PX_COUNT(px, routes_reconciled);
	size_t n = RTE_MIN(id_len, sizeof(e.id) - 1);
	memcpy(e.id, id, n);
	e.id[n] = '\0';
	e.is_alias = 0;
	route_ended(px, &e);
	return 0;
}

/* ---- set-up -------------------------------------------------------------- */

struct qd_proxy *
qd_proxy_create(const struct qd_proxy_conf *conf, struct qd_tcp_stack *stack,
		struct qd_route_table *routes, unsigned int lcore_id)
{
	if (conf->coords_count > QD_PROXY_COORDS_MAX ||
	    conf->max_clients == 0 || conf->max_backends == 0 || conf->head_buffers < 2 ||
	    conf->max_header_bytes < 256 || conf->worker_count == 0 || routes == NULL ||
	    conf->coord_table == NULL || conf->coord_table->count < conf->coords_count) {
		errno = EINVAL;
		return NULL;
	}
	int socket = (int)rte_lcore_to_socket_id(lcore_id);
	struct qd_proxy *px = rte_zmalloc_socket("qd_proxy", sizeof(*px), RTE_CACHE_LINE_SIZE,
						 socket);
	if (px == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	px->conf = *conf;
	px->stack = stack;
	px->pool = qd_tcp_stack_pool(stack);
	px->routes = routes;
	px->ct = conf->coord_table;
	px->adm = conf->admission;
	px->lcore_id = lcore_id;
	px->head_size = conf->max_header_bytes + PX_HEAD_SLACK + 4 * conf->max_headers;
	px->clients = rte_zmalloc_socket("qd_px_clients", sizeof(px->clients[0]) * conf->max_clients,
					 RTE_CACHE_LINE_SIZE, socket);
	px->backends = rte_zmalloc_socket("qd_px_backends",
					  sizeof(px->backends[0]) * conf->max_backends,
					  RTE_CACHE_LINE_SIZE, socket);
	px->head_mem = rte_malloc_socket("qd_px_heads", (size_t)px->head_size * conf->head_buffers,
					 RTE_CACHE_LINE_SIZE, socket);
	px->head_free = rte_malloc_socket("qd_px_head_free",
					  sizeof(uint32_t) * conf->head_buffers, 0, socket);
	px->rewrite = rte_malloc_socket("qd_px_rewrite", px->head_size, 0, socket);
	if (px->rewrite == NULL) {
		qd_proxy_destroy(px);
		errno = ENOMEM;
		return NULL;
	}
	if (conf->placement == QD_PLACEMENT_CLIENT_IP &&
	    qd_maglev_init(&px->maglev, QD_MAGLEV_SIZE_DEFAULT) != 0) {
		qd_proxy_destroy(px);
		errno = ENOMEM;
		return NULL;
	}
	if (px->clients == NULL || px->backends == NULL || px->head_mem == NULL ||
	    px->head_free == NULL) {
		qd_proxy_destroy(px);
		errno = ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < conf->max_clients; i++)
		px->clients[i].next_free = i + 1 < conf->max_clients ? i + 1 : PX_NONE;
	px->client_free = 0;
	for (uint32_t i = 0; i < conf->max_backends; i++)
		px->backends[i].next_free = i + 1 < conf->max_backends ? i + 1 : PX_NONE;
	px->backend_free = 0;
	for (uint32_t i = 0; i < conf->head_buffers; i++)
		px->head_free[i] = conf->head_buffers - 1 - i;
	px->head_free_count = conf->head_buffers;
	px->gauges.head_buffers_free = conf->head_buffers;

	px->req_settings = (http_parser_settings){
		.on_message_begin = req_on_message_begin,
		.on_url = req_on_url,
		.on_header_field = req_on_header_field,
		.on_header_value = req_on_header_value,
		.on_headers_complete = req_on_headers_complete,
		.on_body = req_on_body,
		.on_message_complete = req_on_message_complete,
	};
	px->resp_settings = (http_parser_settings){
		.on_message_begin = resp_on_message_begin,
		.on_status = resp_on_status,
		.on_header_field = resp_on_header_field,
		.on_header_value = resp_on_header_value,
		.on_headers_complete = resp_on_headers_complete,
		.on_body = resp_on_body,
		.on_message_complete = resp_on_message_complete,
	};
	static const struct qd_tcp_ops listen_ops = {.on_accept = cl_on_accept};
	int rc = qd_tcp_listen(stack, conf->listen_port, &listen_ops, px);
	if (rc != 0) {
		qd_proxy_destroy(px);
		errno = -rc;
		return NULL;
	}
	return px;
}

void
qd_proxy_destroy(struct qd_proxy *px)
{
	if (px == NULL)
		return;
	/* Connections are torn down with the stack; only our queues hold mbufs. */
	if (px->clients != NULL)
		for (uint32_t i = 0; i < px->conf.max_clients; i++) {
			qd_inq_clear(&px->clients[i].in);
			qd_outq_clear(&px->clients[i].out);
			qd_outq_clear(&px->clients[i].req_head);
			qd_outq_clear(&px->clients[i].stmt);
			/* slots of exchanges cut by the shutdown: nobody admits any more */
		}
	if (px->conf.placement == QD_PLACEMENT_CLIENT_IP)
		qd_maglev_free(&px->maglev);
	if (px->backends != NULL)
		for (uint32_t i = 0; i < px->conf.max_backends; i++) {
			qd_inq_clear(&px->backends[i].in);
			qd_outq_clear(&px->backends[i].out);
		}
	rte_free(px->rewrite);
	rte_free(px->head_free);
	rte_free(px->head_mem);
	rte_free(px->backends);
	rte_free(px->clients);
	rte_free(px);
}

void
qd_proxy_read(const struct qd_proxy *px, struct qd_proxy_counters *c, struct qd_proxy_gauges *g)
{
#define QD_X(name) c->name = qd_stat_read(&px->counters.name);
	QD_PROXY_COUNTERS(QD_X)
#undef QD_X
	g->clients = __atomic_load_n(&px->gauges.clients, __ATOMIC_RELAXED);
	g->backends = __atomic_load_n(&px->gauges.backends, __ATOMIC_RELAXED);
	g->backends_idle = __atomic_load_n(&px->gauges.backends_idle, __ATOMIC_RELAXED);
	g->head_buffers_free = __atomic_load_n(&px->gauges.head_buffers_free, __ATOMIC_RELAXED);
}
