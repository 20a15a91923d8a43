/* The TCP state machine one crafted segment at a time: a table of rows (a state reached
 * by a scripted prefix, one incoming segment, what must come out), then timer scenarios.
 *
 * One stack is under test; its peer is this file, which writes every segment by hand and
 * reads every frame the stack sends. The clock is fake (now_us is passed in and timers
 * run through qd_tcp_timers), so every row replays exactly. A row checks: the segments
 * sent (flags, sequence and acknowledgment numbers relative to the state before, payload
 * length, options), the state after, the counters that changed (a watched set must not
 * move unless the row names it), and the application callbacks. After every row and
 * scenario all connections are aborted, the per-state counts must be 0 and the mbuf pool
 * full again.
 *
 * A row or scenario that shows a bug in the stack is kept with known_bug set: it is
 * skipped with the reason printed; QD_TCP_KNOWN_BUGS=1 in the environment runs it (and
 * it fails until the stack is fixed). This is a white-box test: it includes tcp_impl.h
 * to look up connections and read their sequence variables and deadlines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "ipv4.h"
#include "tcp.h"
#include "tcp_impl.h"

#define POOL_SIZE 4095
#define OUT_MAX 32
#define HELD_MAX 64
#define OUR_IP RTE_IPV4(10, 0, 0, 1)
#define PEER_IP RTE_IPV4(10, 0, 0, 2)
#define LISTEN_PORT 80
#define NO_LISTEN_PORT 81
#define PEER_PORT 5555
#define SERVER_PORT 9000        /* the peer's port when the stack opens actively */
#define PEER_ISS 0xfffffc00u    /* the peer's byte stream crosses 2^32 */
#define PEER_MSS 1460
#define PEER_WS 7
#define PEER_WND 1000u          /* window field after the SYN: 128000 bytes with PEER_WS */
#define PEER_TSVAL0 100000u
#define NO_CONN_SND 0x50000000u /* snd_* reference when no connection exists */
#define T0_US 10000000ull

static struct rte_mempool *pool;
static bool run_known_bugs;

/* ---- what the stack sent ------------------------------------------------------- */

struct out_seg {
	uint16_t sport, dport;
	uint32_t seq, ack, len;
	uint16_t wnd;
	uint8_t flags;
	uint16_t mss;   /* 0 = absent */
	int ws;         /* -1 = absent */
	bool ts;
	uint32_t tsval, tsecr;
};

enum {
	EV_ACCEPT = 1 << 0,
	EV_CONNECTED = 1 << 1,
	EV_DATA = 1 << 2,
	EV_PEER_FIN = 1 << 3,
	EV_CLOSED = 1 << 4,
	EV_WRITABLE = 1 << 5,
};

/* The harness: the stack under test, its clock, its application and the hand-driven peer. */
struct h {
	struct qd_tcp_stack *s;
	struct qd_tcp_conf conf;
	uint64_t now_us;
	struct out_seg out[OUT_MAX];
	unsigned int n_out;        /* frames sent since the last clear (all are counted) */
	/* the application */
	unsigned int ev;           /* EV_* seen since the last clear */
	unsigned int n_closed;
	unsigned int closed_unaccepted; /* on_closed through the listener's ops */
	enum qd_tcp_close_reason reason;
	uint32_t rx_bytes;         /* bytes delivered since the last clear */
	uint32_t rx_total;         /* bytes delivered in all, the peer's stream offset */
	uint32_t rx_bad;           /* delivered bytes that are not the peer's stream */
	bool hold;                 /* keep delivered data unconsumed */
	struct rte_mbuf *held[HELD_MAX];
	unsigned int n_held;
	/* the connection under test and the peer */
	uint16_t our_port, peer_port;
	bool iss_known;
	uint32_t iss;              /* the stack's ISN (its SYN or SYN-ACK) */
	uint32_t peer_iss;         /* the peer's ISN (PEER_ISS unless a test moves it) */
	uint32_t peer_nxt;         /* next sequence number the peer sends */
	uint32_t peer_tsval;
	uint32_t our_tsval;        /* last TSval the stack sent */
	bool peer_ts;              /* timestamps negotiated: every segment carries one */
};

static struct h H;
static int listener_app;

static uint8_t
stream_byte(uint32_t off)
{
	return (uint8_t)(off * 31u + 7u);
}

static void
parse_opts(const uint8_t *p, uint32_t len, struct out_seg *o)
{
	o->mss = 0;
	o->ws = -1;
	o->ts = false;
	for (uint32_t i = 0; i < len;) {
		if (p[i] == 0)
			break;
		if (p[i] == 1) {
			i++;
			continue;
		}
		assert_true(i + 1 < len && p[i + 1] >= 2 && i + p[i + 1] <= len);
		if (p[i] == 2 && p[i + 1] == 4)
			o->mss = (uint16_t)(p[i + 2] << 8 | p[i + 3]);
		else if (p[i] == 3 && p[i + 1] == 3)
			o->ws = p[i + 2];
		else if (p[i] == 8 && p[i + 1] == 10) {
			uint32_t v, e;
			memcpy(&v, p + i + 2, 4);
			memcpy(&e, p + i + 6, 4);
			o->ts = true;
			o->tsval = rte_be_to_cpu_32(v);
			o->tsecr = rte_be_to_cpu_32(e);
		}
		i += p[i + 1];
	}
}

/* Every frame the stack sends: checked (IPv4 and TCP checksums, lengths), parsed, freed. */
static void
tx(void *ctx, struct rte_mbuf *m)
{
	struct h *h = ctx;
	uint8_t buf[2048];
	uint32_t n = rte_pktmbuf_pkt_len(m);
	assert_true(n >= RTE_ETHER_HDR_LEN + 40 && n <= sizeof(buf));
	const uint8_t *p = rte_pktmbuf_read(m, 0, n, buf);
	if (p != buf)
		memcpy(buf, p, n);
	rte_pktmbuf_free(m);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(buf + RTE_ETHER_HDR_LEN);
	assert_int_equal(rte_raw_cksum(ip, sizeof(*ip)), 0xffff);
	assert_int_equal(rte_be_to_cpu_16(ip->total_length), n - RTE_ETHER_HDR_LEN);
	assert_int_equal(ip->src_addr, rte_cpu_to_be_32(OUR_IP));
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	assert_int_equal(rte_ipv4_udptcp_cksum_verify(ip, th), 0);
	uint32_t doff = (uint32_t)(th->data_off >> 4) * 4;
	assert_true(doff >= 20 && doff <= n - RTE_ETHER_HDR_LEN - 20);
	struct out_seg o = {
		.sport = rte_be_to_cpu_16(th->src_port),
		.dport = rte_be_to_cpu_16(th->dst_port),
		.seq = rte_be_to_cpu_32(th->sent_seq),
		.ack = rte_be_to_cpu_32(th->recv_ack),
		.len = n - RTE_ETHER_HDR_LEN - 20 - doff,
		.wnd = rte_be_to_cpu_16(th->rx_win),
		.flags = th->tcp_flags,
	};
	parse_opts((const uint8_t *)(th + 1), doff - 20, &o);
	if (o.ts)
		h->our_tsval = o.tsval;
	if (h->n_out < OUT_MAX)
		h->out[h->n_out] = o;
	h->n_out++;
}

static bool
resolve(void *ctx, uint32_t ip_be, struct rte_ether_addr *mac)
{
	(void)ctx;
	if (ip_be != rte_cpu_to_be_32(PEER_IP))
		return false;
	*mac = (struct rte_ether_addr){{2, 0, 0, 0, 0, 2}};
	return true;
}

/* ---- the application ------------------------------------------------------------ */

static void
app_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct h *h = &H;
	uint32_t len = rte_pktmbuf_pkt_len(m);
	uint8_t buf[4096];
	assert_true(len > 0 && len <= sizeof(buf));
	const uint8_t *p = rte_pktmbuf_read(m, 0, len, buf);
	for (uint32_t i = 0; i < len; i++) {
		if (p[i] != stream_byte(h->rx_total + i))
			h->rx_bad++;
	}
	h->ev |= EV_DATA;
	h->rx_bytes += len;
	h->rx_total += len;
	if (h->hold && h->n_held < HELD_MAX) {
		h->held[h->n_held++] = m;
		return;
	}
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, len, h->now_us);
}

static void
app_connected(struct qd_tcp_conn *c)
{
	(void)c;
	H.ev |= EV_CONNECTED;
}

static void
app_writable(struct qd_tcp_conn *c)
{
	(void)c;
	H.ev |= EV_WRITABLE;
}

static void
app_peer_fin(struct qd_tcp_conn *c)
{
	(void)c;
	H.ev |= EV_PEER_FIN;
}

/* Set by a scenario: what its application does when a connection closes. */
static void (*closed_hook)(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);

static void
app_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	if (closed_hook != NULL)
		closed_hook(c, why);
	H.ev |= EV_CLOSED;
	H.n_closed++;
	H.reason = why;
	if (qd_tcp_conn_app(c) == &listener_app)
		H.closed_unaccepted++;
}

static const struct qd_tcp_ops conn_ops = {
	.on_connected = app_connected, .on_data = app_data, .on_writable = app_writable,
	.on_peer_fin = app_peer_fin, .on_closed = app_closed,
};

static void
app_accept(void *app, struct qd_tcp_conn *c)
{
	assert_ptr_equal(app, &listener_app);
	H.ev |= EV_ACCEPT;
	qd_tcp_conn_set_app(c, &conn_ops, &H);
}

static const struct qd_tcp_ops listen_ops = {
	.on_accept = app_accept, .on_data = app_data, .on_writable = app_writable,
	.on_peer_fin = app_peer_fin, .on_closed = app_closed,
};

/* ---- the harness -------------------------------------------------------------------- */

enum conf_variant {
	CONF_DEFAULT = 0,
	CONF_COOKIES,       /* syn_backlog 0: every SYN gets a cookie */
	CONF_NO_COOKIES,    /* syn_backlog 0 and no cookies: SYNs are dropped */
	CONF_SMALL_RCVBUF,  /* rcvbuf 1000 bytes */
	CONF_RCVBUF_4K,     /* rcvbuf 4096 bytes, the smallest the config allows */
	CONF_TW0,           /* time_wait_max 0 */
	CONF_KEEPALIVE,     /* idle 1 s, interval 500 ms, 3 probes */
	CONF_CA2,           /* 2 challenge ACKs per second */
};

static struct qd_tcp_conf
make_conf(enum conf_variant v)
{
	struct qd_tcp_conf cf = {
		.max_connections = 16, .syn_backlog = 8, .time_wait_max = 8,
		.time_wait_ms = 2000, .fin_wait2_ms = 3000, .sndbuf_bytes = 64 * 1024,
		.rcvbuf_bytes = 64 * 1024, .mss = 1460, .challenge_ack_per_s = 100,
		.syn_cookies = true, .local_port_min = 40000, .local_port_max = 40999,
		.steer_index = 0, .steer_count = 1,
	};
	switch (v) {
	case CONF_COOKIES:
		cf.syn_backlog = 0;
		break;
	case CONF_NO_COOKIES:
		cf.syn_backlog = 0;
		cf.syn_cookies = false;
		break;
	case CONF_SMALL_RCVBUF:
		cf.rcvbuf_bytes = 1000;
		break;
	case CONF_RCVBUF_4K:
		cf.rcvbuf_bytes = 4096;
		break;
	case CONF_TW0:
		cf.time_wait_max = 0;
		break;
	case CONF_KEEPALIVE:
		cf.keepalive_idle_ms = 1000;
		cf.keepalive_intvl_ms = 500;
		cf.keepalive_probes = 3;
		break;
	case CONF_CA2:
		cf.challenge_ack_per_s = 2;
		break;
	case CONF_DEFAULT:
		break;
	}
	return cf;
}

static void
clear_out(struct h *h)
{
	h->n_out = 0;
	h->ev = 0;
	h->rx_bytes = 0;
}

static void
h_init(struct h *h, enum conf_variant v)
{
	memset(h, 0, sizeof(*h));
	closed_hook = NULL;
	h->conf = make_conf(v);
	h->now_us = T0_US;
	h->our_port = LISTEN_PORT;
	h->peer_port = PEER_PORT;
	h->peer_iss = PEER_ISS;
	h->peer_nxt = PEER_ISS;
	h->peer_tsval = PEER_TSVAL0;
	struct qd_siphash_key key = {0x0123456789abcdefull, 0xfedcba9876543210ull};
	struct rte_ether_addr mac = {{2, 0, 0, 0, 0, 1}};
	h->s = qd_tcp_stack_create(&h->conf, 0, pool, &mac, rte_cpu_to_be_32(OUR_IP), &key, tx,
				   resolve, h);
	assert_non_null(h->s);
	assert_int_equal(qd_tcp_listen(h->s, LISTEN_PORT, &listen_ops, &listener_app), 0);
	qd_tcp_timers(h->s, h->now_us);
}

static struct qd_tcp_conn *
h_conn(const struct h *h)
{
	struct qd_tcp_key k = {
		.local_ip = rte_cpu_to_be_32(OUR_IP), .remote_ip = rte_cpu_to_be_32(PEER_IP),
		.local_port = rte_cpu_to_be_16(h->our_port),
		.remote_port = rte_cpu_to_be_16(h->peer_port),
	};
	return qd_tcp_conn_lookup(h->s, &k);
}

static enum qd_tcp_state
h_state(const struct h *h)
{
	struct qd_tcp_conn *c = h_conn(h);
	return c == NULL ? QD_TCP_CLOSED : (enum qd_tcp_state)c->state;
}

/* The per-state counts, the SYN_RCVD and TIME_WAIT counts and the sequence variables of
 * every connection agree with the connection blocks. */
static void
check_invariants(const struct h *h)
{
	const struct qd_tcp_stack *s = h->s;
	uint32_t count[QD_TCP_STATE_MAX] = {0};
	uint32_t syn_rcvd = 0, live = 0;
	for (uint32_t i = 0; i < s->conf.max_connections; i++) {
		const struct qd_tcp_conn *c = &s->conns[i];
		if (c->state == QD_TCP_CLOSED)
			continue;
		live++;
		count[c->state]++;
		if (c->state == QD_TCP_SYN_RCVD && c->passive)
			syn_rcvd++;
		assert_true(SEQ_LEQ(c->snd_una, c->snd_nxt));
		assert_true(SEQ_LEQ(c->snd_nxt, c->snd_max));
		assert_true(c->ooo_count <= QD_TCP_OOO_MAX);
	}
	for (int st = 0; st < QD_TCP_STATE_MAX; st++)
		assert_int_equal(s->state_count[st], count[st]);
	assert_int_equal(s->syn_rcvd_count, syn_rcvd);
	assert_int_equal(s->time_wait_count, count[QD_TCP_TIME_WAIT]);
	assert_int_equal(s->free_count + live, s->conf.max_connections);
}

/* Abort what is left, then nothing may remain: no connection in any state, no mbuf. */
static void
h_fini(struct h *h)
{
	check_invariants(h);
	for (uint32_t i = 0; i < h->s->conf.max_connections; i++) {
		struct qd_tcp_conn *c = &h->s->conns[i];
		if (c->state != QD_TCP_CLOSED)
			qd_tcp_abort(c, h->now_us);
	}
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(h->s, &k, states);
	for (int st = 0; st < QD_TCP_STATE_MAX; st++)
		assert_int_equal(states[st], 0);
	qd_tcp_stack_destroy(h->s);
	h->s = NULL;
	for (unsigned int i = 0; i < h->n_held; i++)
		rte_pktmbuf_free(h->held[i]);
	h->n_held = 0;
	assert_int_equal(rte_mempool_avail_count(pool), POOL_SIZE);
}

/* cmocka teardown: after a failed test, free what it left so the next starts clean. */
static int
h_cleanup(void **state)
{
	(void)state;
	struct h *h = &H;
	if (h->s != NULL) {
		for (uint32_t i = 0; i < h->s->conf.max_connections; i++) {
			struct qd_tcp_conn *c = &h->s->conns[i];
			if (c->state != QD_TCP_CLOSED)
				qd_tcp_abort(c, h->now_us);
		}
		qd_tcp_stack_destroy(h->s);
		h->s = NULL;
	}
	for (unsigned int i = 0; i < h->n_held; i++)
		rte_pktmbuf_free(h->held[i]);
	h->n_held = 0;
	return 0;
}

/* Move the clock by <us>, one millisecond at a time, running the timers. */
static void
advance(struct h *h, uint64_t us)
{
	uint64_t end = h->now_us + us;
	while (h->now_us < end) {
		uint64_t step = end - h->now_us < 1000 ? end - h->now_us : 1000;
		h->now_us += step;
		qd_tcp_timers(h->s, h->now_us);
	}
}

enum {
	OPT_MSS = 1 << 0,
	OPT_WS = 1 << 1,
	OPT_TS = 1 << 2,        /* a timestamp even when none was negotiated */
	OPT_NOTS = 1 << 3,      /* no timestamp even when negotiated */
	OPT_TS_OLD = 1 << 4,    /* a TSval older than any the peer sent (PAWS) */
	OPT_BAD_CSUM = 1 << 5,
	OPT_DOFF_SHORT = 1 << 6,  /* data offset 4 words */
	OPT_DOFF_LONG = 1 << 7,   /* data offset beyond the segment */
	OPT_TRUNC = 1 << 8,       /* an MSS option cut by the end of the header */
	OPT_ZERO_LEN = 1 << 9,    /* an option of length 0 */
	OPT_NO_LISTENER = 1 << 10, /* to a port nobody listens on */
	OPT_WND0 = 1 << 11,        /* window 0 */
	OPT_MSS_TINY = 1 << 12,    /* MSS option of 8 bytes */
	OPT_MSS_12 = 1 << 13,      /* MSS option of 12 bytes */
	OPT_SYNOPTS = OPT_MSS | OPT_WS | OPT_TS,
};

struct seg {
	uint8_t flags;
	uint32_t seq;
	uint32_t ack;
	uint16_t wnd;   /* 0: 65535 in a SYN, PEER_WND otherwise (OPT_WND0 for a real 0) */
	uint16_t len;
	uint32_t opts;
};

/* Write the segment the peer sends, as a frame, and hand it to the stack. */
static void
inject(struct h *h, const struct seg *sg)
{
	uint8_t o[40];
	uint32_t n = 0;
	bool syn = (sg->flags & TCP_SYN) != 0;
	if (sg->opts & (OPT_MSS | OPT_MSS_TINY | OPT_MSS_12)) {
		uint16_t v = (sg->opts & OPT_MSS_TINY) ? 8
			     : (sg->opts & OPT_MSS_12) ? 12
							: PEER_MSS;
		const uint8_t mss[] = {2, 4, (uint8_t)(v >> 8), (uint8_t)(v & 0xff)};
		memcpy(o + n, mss, 4);
		n += 4;
	}
	if (sg->opts & OPT_WS) {
		const uint8_t ws[] = {1, 3, 3, PEER_WS};
		memcpy(o + n, ws, 4);
		n += 4;
	}
	bool ts = (sg->opts & (OPT_TS | OPT_TS_OLD)) ||
		  (h->peer_ts && !(sg->opts & OPT_NOTS));
	if (ts) {
		uint32_t tsval = (sg->opts & OPT_TS_OLD) ? PEER_TSVAL0 - 1000 : ++h->peer_tsval;
		uint32_t v = rte_cpu_to_be_32(tsval), e = rte_cpu_to_be_32(h->our_tsval);
		const uint8_t hd[] = {1, 1, 8, 10};
		memcpy(o + n, hd, 4);
		memcpy(o + n + 4, &v, 4);
		memcpy(o + n + 8, &e, 4);
		n += 12;
	}
	if (sg->opts & OPT_TRUNC) {
		const uint8_t t[] = {1, 1, 2, 4};
		memcpy(o + n, t, 4);
		n += 4;
	}
	if (sg->opts & OPT_ZERO_LEN) {
		const uint8_t z[] = {30, 0, 1, 1};
		memcpy(o + n, z, 4);
		n += 4;
	}
	assert_true(n % 4 == 0 && n <= 40);
	uint32_t l4 = 20 + n + sg->len;
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	assert_non_null(m);
	uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(RTE_ETHER_HDR_LEN + 20 + l4));
	assert_non_null(p);
	memset(p, 0, RTE_ETHER_HDR_LEN + 20 + l4);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	eth->dst_addr = (struct rte_ether_addr){{2, 0, 0, 0, 0, 1}};
	eth->src_addr = (struct rte_ether_addr){{2, 0, 0, 0, 0, 2}};
	eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(20 + l4));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->src_addr = rte_cpu_to_be_32(PEER_IP);
	ip->dst_addr = rte_cpu_to_be_32(OUR_IP);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	th->src_port = rte_cpu_to_be_16(h->peer_port);
	uint16_t dport = (sg->opts & OPT_NO_LISTENER) ? NO_LISTEN_PORT : h->our_port;
	th->dst_port = rte_cpu_to_be_16(dport);
	th->sent_seq = rte_cpu_to_be_32(sg->seq);
	th->recv_ack = (sg->flags & TCP_ACK) ? rte_cpu_to_be_32(sg->ack) : 0;
	uint32_t words = (20 + n) / 4;
	if (sg->opts & OPT_DOFF_SHORT)
		words = 4;
	if (sg->opts & OPT_DOFF_LONG)
		words = 15;
	th->data_off = (uint8_t)(words << 4);
	th->tcp_flags = sg->flags;
	uint16_t wnd = sg->wnd != 0 ? sg->wnd : syn ? 65535 : PEER_WND;
	th->rx_win = rte_cpu_to_be_16((sg->opts & OPT_WND0) ? 0 : wnd);
	memcpy(th + 1, o, n);
	uint8_t *payload = (uint8_t *)(th + 1) + n;
	uint32_t first = sg->seq + (syn ? 1 : 0) - (h->peer_iss + 1);
	for (uint32_t i = 0; i < sg->len; i++)
		payload[i] = stream_byte(first + i);
	th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	if (sg->opts & OPT_BAD_CSUM)
		th->cksum ^= 0x5a5a;
	struct rte_ipv4_hdr *vip;
	enum qd_drop_reason reason;
	assert_int_equal(qd_ipv4_check(m, &vip, &reason), 0);
	qd_tcp_input(h->s, m, vip, h->now_us);
	check_invariants(h);
}

/* The peer sends the next in-order segment and advances its sequence number. */
static void
peer_send(struct h *h, uint8_t flags, uint32_t ack, uint16_t len, uint32_t opts)
{
	struct seg sg = {.flags = flags, .seq = h->peer_nxt, .ack = ack, .len = len, .opts = opts};
	inject(h, &sg);
	h->peer_nxt += len + ((flags & TCP_SYN) ? 1 : 0) + ((flags & TCP_FIN) ? 1 : 0);
}

static struct qd_tcp_conn *
must_conn(const struct h *h)
{
	struct qd_tcp_conn *c = h_conn(h);
	assert_non_null(c);
	return c;
}

/* Queue <len> bytes of our own stream for sending. */
static void
app_send(struct h *h, struct qd_tcp_conn *c, uint32_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	assert_non_null(m);
	char *p = rte_pktmbuf_append(m, (uint16_t)len);
	assert_non_null(p);
	memset(p, 'x', len);
	assert_int_equal(qd_tcp_send(c, m, h->now_us), 0);
}

static void
expect_out(const struct h *h, unsigned int i, uint8_t flags, uint32_t seq, uint32_t ack,
	   uint32_t len)
{
	assert_true(i < h->n_out && i < OUT_MAX);
	const struct out_seg *o = &h->out[i];
	if (o->flags != flags || o->seq != seq || o->ack != ack || o->len != len)
		fail_msg("segment %u out: flags %#x seq %u ack %u len %u; expected flags %#x "
			 "seq %u ack %u len %u", i, o->flags, o->seq, o->ack, o->len, flags, seq,
			 ack, len);
}

/* ---- prefixes: the scripted ways into each state ------------------------------------ */

enum prefix {
	P_LISTEN = 0,     /* only the listener */
	P_SYN_SENT,       /* qd_tcp_connect(): our SYN is out */
	P_SIM_OPEN,       /* SYN_SENT, then the peer's bare SYN: SYN_RCVD (not passive) */
	P_SYN_RCVD,       /* the peer's SYN (MSS, WS, TS) answered with our SYN-ACK */
	P_EST,            /* passive open completed, timestamps and window scaling on */
	P_EST_NOTS,       /* passive open completed with MSS and WS only */
	P_EST_DATA_IN,    /* P_EST, then 100 bytes received (delayed ACK pending) */
	P_EST_OOO,        /* P_EST, then 100 bytes held at rcv_nxt + 100 */
	P_EST_OOO_FIN,    /* P_EST, then 100 bytes and FIN held at rcv_nxt + 100 */
	P_EST_DATA_OUT,   /* P_EST, then 1000 bytes sent, unacknowledged */
	P_FIN_WAIT_1,     /* P_EST, then qd_tcp_shutdown(): our FIN is out */
	P_FIN_WAIT_2,     /* P_FIN_WAIT_1, then the peer ACKs the FIN */
	P_CLOSING,        /* P_FIN_WAIT_1, then the peer's FIN that does not ACK ours */
	P_CLOSE_WAIT,     /* P_EST, then the peer's FIN */
	P_LAST_ACK,       /* P_CLOSE_WAIT, then qd_tcp_shutdown() */
	P_TIME_WAIT,      /* P_FIN_WAIT_2, then the peer's FIN */
	P_COOKIE,         /* (CONF_COOKIES) the peer's SYN answered with a cookie */
};

static void
pre_syn_rcvd(struct h *h, uint32_t opts)
{
	peer_send(h, TCP_SYN, 0, 0, opts);
	assert_int_equal(h->n_out, 1);
	assert_int_equal(h->out[0].flags, TCP_SYN | TCP_ACK);
	h->iss = h->out[0].seq;
	h->iss_known = true;
	assert_int_equal(h_state(h), QD_TCP_SYN_RCVD);
	h->peer_ts = (opts & OPT_TS) != 0;
}

static void
pre_est(struct h *h, uint32_t opts)
{
	pre_syn_rcvd(h, opts);
	clear_out(h);
	peer_send(h, TCP_ACK, h->iss + 1, 0, 0);
	assert_int_equal(h->n_out, 0);
	assert_int_equal(h->ev, EV_ACCEPT);
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->state, QD_TCP_ESTABLISHED);
	assert_int_equal(c->rcv_nxt, h->peer_nxt);
	assert_int_equal(c->ts_ok, (opts & OPT_TS) != 0);
}

static void
pre_syn_sent(struct h *h)
{
	h->peer_port = SERVER_PORT;
	struct qd_tcp_conn *c = qd_tcp_connect(h->s, rte_cpu_to_be_32(PEER_IP), SERVER_PORT,
					       &conn_ops, h, h->now_us);
	assert_non_null(c);
	assert_int_equal(h->n_out, 1);
	const struct out_seg *o = &h->out[0];
	assert_int_equal(o->flags, TCP_SYN);
	assert_true(o->mss == 1460 && o->ws >= 0 && o->ts);
	h->our_port = o->sport;
	h->iss = o->seq;
	h->iss_known = true;
	assert_ptr_equal(h_conn(h), c);
}

static void
run_prefix(struct h *h, enum prefix pre)
{
	switch (pre) {
	case P_LISTEN:
		break;
	case P_SYN_SENT:
		pre_syn_sent(h);
		break;
	case P_SIM_OPEN:
		pre_syn_sent(h);
		clear_out(h);
		peer_send(h, TCP_SYN, 0, 0, OPT_SYNOPTS);
		h->peer_ts = true;
		assert_int_equal(h_state(h), QD_TCP_SYN_RCVD);
		break;
	case P_SYN_RCVD:
		pre_syn_rcvd(h, OPT_SYNOPTS);
		break;
	case P_EST:
		pre_est(h, OPT_SYNOPTS);
		break;
	case P_EST_NOTS:
		pre_est(h, OPT_MSS | OPT_WS);
		break;
	case P_EST_DATA_IN:
		pre_est(h, OPT_SYNOPTS);
		peer_send(h, TCP_ACK, h->iss + 1, 100, 0);
		assert_int_equal(h->n_out, 0);
		break;
	case P_EST_OOO:
	case P_EST_OOO_FIN: {
		pre_est(h, OPT_SYNOPTS);
		uint8_t fl = TCP_ACK | (pre == P_EST_OOO_FIN ? TCP_FIN : 0);
		struct seg sg = {.flags = fl, .seq = h->peer_nxt + 100, .ack = h->iss + 1,
				 .len = 100};
		inject(h, &sg);
		assert_int_equal(h->n_out, 1);
		assert_int_equal(must_conn(h)->ooo_count, 1);
		break;
	}
	case P_EST_DATA_OUT:
		pre_est(h, OPT_SYNOPTS);
		app_send(h, must_conn(h), 1000);
		assert_int_equal(h->n_out, 1);
		assert_int_equal(h->out[0].len, 1000);
		break;
	case P_FIN_WAIT_1:
	case P_FIN_WAIT_2:
	case P_CLOSING:
	case P_TIME_WAIT:
		pre_est(h, OPT_SYNOPTS);
		assert_int_equal(qd_tcp_shutdown(must_conn(h), h->now_us), 0);
		assert_int_equal(h->n_out, 1);
		assert_int_equal(h->out[0].flags, TCP_ACK | TCP_FIN);
		assert_int_equal(h_state(h), QD_TCP_FIN_WAIT_1);
		if (pre == P_CLOSING) {
			peer_send(h, TCP_ACK | TCP_FIN, h->iss + 1, 0, 0);
			assert_int_equal(h_state(h), QD_TCP_CLOSING);
		} else if (pre != P_FIN_WAIT_1) {
			peer_send(h, TCP_ACK, h->iss + 2, 0, 0);
			assert_int_equal(h_state(h), QD_TCP_FIN_WAIT_2);
		}
		if (pre == P_TIME_WAIT) {
			peer_send(h, TCP_ACK | TCP_FIN, h->iss + 2, 0, 0);
			assert_int_equal(h_state(h), QD_TCP_TIME_WAIT);
		}
		break;
	case P_CLOSE_WAIT:
	case P_LAST_ACK:
		pre_est(h, OPT_SYNOPTS);
		peer_send(h, TCP_ACK | TCP_FIN, h->iss + 1, 0, 0);
		assert_int_equal(h_state(h), QD_TCP_CLOSE_WAIT);
		if (pre == P_LAST_ACK) {
			assert_int_equal(qd_tcp_shutdown(must_conn(h), h->now_us), 0);
			assert_int_equal(h_state(h), QD_TCP_LAST_ACK);
		}
		break;
	case P_COOKIE:
		assert_int_equal(h->conf.syn_backlog, 0);
		peer_send(h, TCP_SYN, 0, 0, OPT_SYNOPTS);
		assert_int_equal(h->n_out, 1);
		assert_int_equal(h->out[0].flags, TCP_SYN | TCP_ACK);
		assert_null(h_conn(h));
		h->iss = h->out[0].seq;
		h->iss_known = true;
		h->peer_ts = false; /* the cookie's SYN-ACK carries no timestamp */
		break;
	}
	check_invariants(h);
}

/* ---- the table ------------------------------------------------------------------------ */

/* What a sequence or acknowledgment number is relative to, taken before the segment. */
enum ref {
	R_ANY = 0,   /* not checked */
	R_ZERO,      /* the offset itself */
	R_ISS,       /* the stack's ISN */
	R_UNA,       /* snd_una (no connection: NO_CONN_SND, or ISS + 1 once a cookie was sent) */
	R_NXT,       /* snd_nxt */
	R_MAX,       /* snd_max */
	R_RCV,       /* the next sequence number the peer sends (rcv_nxt when synchronised) */
	R_SEG_SEQ,   /* the incoming segment's sequence number */
	R_SEG_ACK,   /* the incoming segment's acknowledgment number */
};

enum {
	O_CHECK = 1 << 7, /* check the SYN options below exactly */
	O_MSS = 1 << 0,
	O_WS = 1 << 1,
	O_TS = 1 << 2,
};

struct out_exp {
	uint8_t flags;
	uint8_t seq_ref;
	int32_t seq;
	uint8_t ack_ref;
	int32_t ack;
	uint16_t len;
	uint8_t opts;
};

struct cnt_exp {
	size_t off;      /* 0 ends the list (segs_in is never listed) */
	int64_t delta;
	const char *name;
};

#define CNT(name, d) {offsetof(struct qd_tcp_counters, name), (d), #name}
#define N_OUT_ANY_SAME (-1) /* one or more segments, each like out[0] */

struct row {
	const char *name;
	enum prefix pre;
	enum conf_variant conf;
	uint64_t delay_us;           /* clock advance before the segment (timers run) */
	struct {
		uint8_t flags;
		int32_t seq;             /* relative to R_RCV */
		uint8_t ack_ref;
		int32_t ack;
		uint16_t len;
		uint32_t opts;
	} in;
	int n_out;
	struct out_exp out[2];
	enum qd_tcp_state state;     /* of the tuple afterwards; CLOSED = no connection */
	struct cnt_exp cnt[4];
	unsigned int ev;
	uint32_t data;               /* bytes delivered */
	enum qd_tcp_close_reason reason; /* when ev has EV_CLOSED */
	void (*check)(struct h *h);  /* more white-box checks */
	const char *known_bug;       /* skip with this reason unless QD_TCP_KNOWN_BUGS=1 */
};

/* Counters no row may move without saying so. */
static const struct cnt_exp watched[] = {
	CNT(retransmits, 0), CNT(fast_retransmits, 0), CNT(rto_expired, 0), CNT(dup_acks, 0),
	CNT(ooo_queued, 0), CNT(ooo_dropped, 0), CNT(passive_opens, 0), CNT(active_opens, 0),
	CNT(accepted, 0), CNT(resets_in, 0), CNT(resets_out, 0), CNT(challenge_acks, 0),
	CNT(challenge_acks_limited, 0), CNT(paws_rejected, 0), CNT(cookies_sent, 0),
	CNT(cookies_valid, 0), CNT(cookies_invalid, 0), CNT(syn_backlog_full, 0),
	CNT(conn_table_full, 0), CNT(time_wait_overflow, 0), CNT(zero_window_probes, 0),
	CNT(keepalive_probes, 0), CNT(timeouts, 0), CNT(send_refused, 0), CNT(no_mbuf, 0),
	CNT(bad_checksum, 0), CNT(bad_header, 0), CNT(no_listener, 0),
};

static uint64_t
counter_at(const struct qd_tcp_counters *k, size_t off)
{
	uint64_t v;
	memcpy(&v, (const char *)k + off, sizeof(v));
	return v;
}

struct refs {
	uint32_t v[R_SEG_ACK + 1];
};

static void
take_refs(const struct h *h, struct refs *r)
{
	const struct qd_tcp_conn *c = h_conn(h);
	memset(r, 0, sizeof(*r));
	r->v[R_ISS] = h->iss;
	r->v[R_RCV] = h->peer_nxt;
	if (c != NULL) {
		r->v[R_UNA] = c->snd_una;
		r->v[R_NXT] = c->snd_nxt;
		r->v[R_MAX] = c->snd_max;
	} else {
		uint32_t snd = h->iss_known ? h->iss + 1 : NO_CONN_SND;
		r->v[R_UNA] = r->v[R_NXT] = r->v[R_MAX] = snd;
	}
}

static void
check_out(const struct row *row, const struct h *h, unsigned int i, const struct out_exp *e,
	  const struct refs *r)
{
	const struct out_seg *o = &h->out[i];
	char what[160];
	snprintf(what, sizeof(what), "%s: segment %u out (flags %#x seq %u ack %u len %u)",
		 row->name, i, o->flags, o->seq, o->ack, o->len);
	if (o->flags != e->flags)
		fail_msg("%s: flags, expected %#x", what, e->flags);
	if (e->seq_ref != R_ANY && o->seq != r->v[e->seq_ref] + (uint32_t)e->seq)
		fail_msg("%s: seq, expected %u", what, r->v[e->seq_ref] + (uint32_t)e->seq);
	if (e->ack_ref != R_ANY && o->ack != r->v[e->ack_ref] + (uint32_t)e->ack)
		fail_msg("%s: ack, expected %u", what, r->v[e->ack_ref] + (uint32_t)e->ack);
	if (o->len != e->len)
		fail_msg("%s: len, expected %u", what, e->len);
	if (e->opts & O_CHECK) {
		bool mss = o->mss != 0, ws = o->ws >= 0;
		if (mss != !!(e->opts & O_MSS) || ws != !!(e->opts & O_WS) ||
		    o->ts != !!(e->opts & O_TS))
			fail_msg("%s: options mss %u ws %d ts %d, expected %#x", what, o->mss,
				 o->ws, o->ts, e->opts);
	}
	if (o->ts)
		assert_true(o->tsecr == 0 || o->tsecr == h->peer_tsval ||
			    o->tsecr == PEER_TSVAL0 + 1 || SEQ_LEQ(o->tsecr, h->peer_tsval));
}

static void
run_row(void **state)
{
	const struct row *row = *state;
	if (row->known_bug != NULL && !run_known_bugs) {
		print_message("[  KNOWN BUG ] %s: %s\n", row->name, row->known_bug);
		skip();
	}
	struct h *h = &H;
	h_init(h, row->conf);
	run_prefix(h, row->pre);
	if (row->delay_us > 0)
		advance(h, row->delay_us);
	clear_out(h);

	struct refs r;
	take_refs(h, &r);
	struct seg sg = {
		.flags = row->in.flags, .seq = h->peer_nxt + (uint32_t)row->in.seq,
		.len = row->in.len, .opts = row->in.opts,
	};
	if (row->in.flags & TCP_ACK)
		sg.ack = r.v[row->in.ack_ref] + (uint32_t)row->in.ack;
	r.v[R_SEG_SEQ] = sg.seq;
	r.v[R_SEG_ACK] = sg.ack;
	struct qd_tcp_counters before, after;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(h->s, &before, states);
	inject(h, &sg);
	qd_tcp_stack_read(h->s, &after, states);

	/* Segments out. */
	if (row->n_out == N_OUT_ANY_SAME) {
		if (h->n_out == 0)
			fail_msg("%s: no segment out, expected at least one", row->name);
		for (unsigned int i = 0; i < h->n_out && i < OUT_MAX; i++)
			check_out(row, h, i, &row->out[0], &r);
	} else {
		if (h->n_out != (unsigned int)row->n_out)
			fail_msg("%s: %u segments out (first flags %#x), expected %d", row->name,
				 h->n_out, h->n_out > 0 ? h->out[0].flags : 0, row->n_out);
		for (int i = 0; i < row->n_out && i < 2; i++)
			check_out(row, h, (unsigned int)i, &row->out[i], &r);
	}
	/* State after. */
	enum qd_tcp_state st = h_state(h);
	if (st != row->state)
		fail_msg("%s: state %s, expected %s", row->name, qd_tcp_state_name(st),
			 qd_tcp_state_name(row->state));
	/* Counters: the listed ones moved by their delta, the other watched ones not at all. */
	for (size_t w = 0; w < RTE_DIM(watched); w++) {
		int64_t want = 0;
		for (size_t i = 0; i < RTE_DIM(row->cnt) && row->cnt[i].off != 0; i++) {
			if (row->cnt[i].off == watched[w].off)
				want = row->cnt[i].delta;
		}
		int64_t got = (int64_t)(counter_at(&after, watched[w].off) -
					counter_at(&before, watched[w].off));
		if (got != want)
			fail_msg("%s: counter %s moved by %lld, expected %lld", row->name,
				 watched[w].name, (long long)got, (long long)want);
	}
	for (size_t i = 0; i < RTE_DIM(row->cnt) && row->cnt[i].off != 0; i++) {
		bool known = false;
		for (size_t w = 0; w < RTE_DIM(watched); w++)
			known |= row->cnt[i].off == watched[w].off;
		assert_true(known);
	}
	/* Callbacks. */
	if (h->ev != row->ev)
		fail_msg("%s: callbacks %#x, expected %#x", row->name, h->ev, row->ev);
	if (h->rx_bytes != row->data)
		fail_msg("%s: %u bytes delivered, expected %u", row->name, h->rx_bytes, row->data);
	assert_int_equal(h->rx_bad, 0);
	if (row->ev & EV_CLOSED)
		assert_int_equal(h->reason, row->reason);
	if (row->check != NULL)
		row->check(h);
	h_fini(h);
}

/* -- extra checks for some rows -- */

static void
chk_synack_opts(struct h *h)
{
	const struct out_seg *o = &h->out[0];
	assert_int_equal(o->mss, 1460);
	assert_int_equal(o->ws, 1); /* 64 KiB receive buffer: scale 1 */
	assert_int_equal(o->tsecr, h->peer_tsval);
	assert_int_equal(o->wnd, 65535);
	struct qd_tcp_conn *c = must_conn(h);
	assert_true(c->ws_ok && c->ts_ok);
	assert_int_equal(c->snd_wscale, PEER_WS);
	assert_int_equal(c->mss, PEER_MSS - 12);
	assert_int_equal(c->irs, h->peer_iss);
}

/* What the last segment out offers fits in the receive buffer. */
static void
chk_window_in_buffer(struct h *h)
{
	const struct out_seg *o = &h->out[h->n_out - 1];
	struct qd_tcp_conn *c = must_conn(h);
	uint32_t offered = (o->flags & TCP_SYN) ? o->wnd : (uint32_t)o->wnd << c->rcv_wscale;
	if (offered > h->conf.rcvbuf_bytes)
		fail_msg("window %u offered, receive buffer %u", offered, h->conf.rcvbuf_bytes);
	assert_true(SEQ_LEQ(c->rcv_adv, c->rcv_nxt + h->conf.rcvbuf_bytes));
}

/* Whatever MSS the peer announces, the stack's segment size stays sane. */
static void
chk_mss_sane(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	if (c->mss < 48 || c->mss > h->conf.mss)
		fail_msg("segment size %u from a peer MSS of 8", c->mss);
}

static void
chk_no_opts_mss(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->mss, 536); /* RFC 9293: no MSS option means 536 */
	assert_false(c->ws_ok);
	assert_false(c->ts_ok);
}

static void
chk_cookie_conn(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->mss, 1460);
	assert_false(c->ws_ok);
	assert_false(c->ts_ok);
	assert_int_equal(c->snd_una, h->iss + 1);
	assert_int_equal(c->rcv_nxt, h->peer_nxt);
	assert_int_equal(h->s->syn_rcvd_count, 0);
}

static void
chk_cookie_synack(struct h *h)
{
	assert_int_equal(h->out[0].mss, 1460);
	assert_int_equal(h->out[0].ack, h->peer_iss + 1);
}

static void
chk_connected(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_false(c->passive);
	assert_true(c->ws_ok && c->ts_ok);
	assert_int_equal(c->snd_wscale, PEER_WS);
	assert_int_equal(c->snd_una, h->iss + 1);
	assert_int_equal(c->snd_wnd, 65535); /* a SYN's window is never scaled */
}

static void
chk_dack_armed(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->dack_at, h->now_us + QD_TCP_DELACK_US);
	assert_int_equal(c->segs_unacked, 1);
}

static void
chk_ooo_one(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->ooo_count, 1);
	assert_int_equal(c->ooo_bytes, 100);
	assert_int_equal(c->rcv_nxt, h->peer_nxt);
}

static void
chk_ooo_trimmed(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->ooo_count, 1);
	assert_int_equal(c->ooo_bytes, 50);
}

static void
chk_small_window(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->rcv_nxt, h->peer_nxt + 1000);
}

static void
chk_all_acked(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->snd_una, c->snd_max);
	assert_int_equal(c->rto_at, 0);
	assert_int_equal(c->sq_bytes, 0);
	assert_null(c->sq_head);
}

static void
chk_half_acked(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->snd_max - c->snd_una, 500);
	assert_int_equal(c->sq_bytes, 500);
	assert_true(c->rto_at > h->now_us);
}

static void
chk_zero_wnd(struct h *h)
{
	assert_int_equal(must_conn(h)->snd_wnd, 0);
}

static void
chk_fw2_timer(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->tw_at, h->now_us + (uint64_t)h->conf.fin_wait2_ms * 1000);
}

static void
chk_tw_timer(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->tw_at, h->now_us + (uint64_t)h->conf.time_wait_ms * 1000);
	assert_int_equal(h->s->time_wait_count, 1);
	assert_null(c->sq_head);
}

static void
chk_tw_timer_kept(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_true(c->tw_at > h->now_us);
	assert_true(c->tw_at <= h->now_us + (uint64_t)h->conf.time_wait_ms * 1000);
	assert_int_equal(h->s->time_wait_count, 1);
}

static void
chk_recycled(struct h *h)
{
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->irs, h->out[0].ack - 1);
	assert_true(c->passive);
	assert_int_equal(h->s->time_wait_count, 0);
}

#define IN(fl, so, ar, ao, ln, op) {(fl), (so), (ar), (ao), (ln), (op)}
#define OUT(fl, sr, so, ar, ao) {(fl), (sr), (so), (ar), (ao), 0, 0}
/* A pure ACK from snd_nxt acknowledging rcv_nxt + <ao>. */
#define ACK_OUT(ao) OUT(TCP_ACK, R_NXT, 0, R_RCV, ao)
/* The RST answering a segment that carried an ACK (RFC 9293 3.10.7.1). */
#define RST_OUT OUT(TCP_RST, R_SEG_ACK, 0, R_ZERO, 0)
#define A TCP_ACK
#define S TCP_SYN
#define F TCP_FIN
#define R TCP_RST

static const struct row rows[] = {
	/* -- LISTEN -- */
	{"listen: SYN -> SYN-ACK with MSS, WS, TS", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS),
	 .n_out = 1, .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, O_CHECK | O_MSS | O_WS | O_TS}},
	 .state = QD_TCP_SYN_RCVD, .cnt = {CNT(passive_opens, 1)}, .check = chk_synack_opts},
	{"listen: SYN with MSS only -> SYN-ACK with MSS only", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_MSS),
	 .n_out = 1, .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, O_CHECK | O_MSS}},
	 .state = QD_TCP_SYN_RCVD, .cnt = {CNT(passive_opens, 1)}},
	{"listen: SYN without options -> MSS 536", P_LISTEN, .in = IN(S, 0, R_ZERO, 0, 0, 0),
	 .n_out = 1, .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, O_CHECK | O_MSS}},
	 .state = QD_TCP_SYN_RCVD, .cnt = {CNT(passive_opens, 1)}, .check = chk_no_opts_mss},
	{"listen: SYN-ACK window within a small receive buffer", P_LISTEN, CONF_SMALL_RCVBUF,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS),
	 .n_out = 1, .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, 0}},
	 .state = QD_TCP_SYN_RCVD, .cnt = {CNT(passive_opens, 1)}, .check = chk_window_in_buffer},
	{"listen: SYN with MSS 8 and TS -> sane segment size", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_MSS_TINY | OPT_TS), .n_out = 1,
	 .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, 0}}, .state = QD_TCP_SYN_RCVD,
	 .cnt = {CNT(passive_opens, 1)}, .check = chk_mss_sane},
	{"listen: SYN with data -> SYN-ACK, data not acknowledged", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 100, OPT_SYNOPTS),
	 .n_out = 1, .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, 0}},
	 .state = QD_TCP_SYN_RCVD, .cnt = {CNT(passive_opens, 1)}},
	{"listen: ACK without a cookie -> RST", P_LISTEN, .in = IN(A, 1, R_MAX, 0, 0, 0),
	 .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(cookies_invalid, 1), CNT(resets_out, 1)}},
	{"listen: ACK, cookies off -> RST", P_LISTEN, CONF_NO_COOKIES,
	 .in = IN(A, 1, R_MAX, 0, 0, 0), .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(resets_out, 1)}},
	{"listen: ACK with data -> RST", P_LISTEN, .in = IN(A, 1, R_MAX, 7, 100, 0),
	 .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(cookies_invalid, 1), CNT(resets_out, 1)}},
	{"listen: RST ignored", P_LISTEN, .in = IN(R, 0, R_ZERO, 0, 0, 0), .n_out = 0,
	 .state = QD_TCP_CLOSED},
	{"listen: RST+ACK ignored", P_LISTEN, .in = IN(R | A, 0, R_MAX, 0, 0, 0), .n_out = 0,
	 .state = QD_TCP_CLOSED},
	{"listen: SYN+ACK -> RST", P_LISTEN, .in = IN(S | A, 0, R_MAX, 0, 0, OPT_SYNOPTS),
	 .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED, .cnt = {CNT(resets_out, 1)}},
	{"listen: FIN without ACK dropped (RFC 9293 3.10.7.2)", P_LISTEN,
	 .in = IN(F, 1, R_ZERO, 0, 0, 0), .n_out = 0, .state = QD_TCP_CLOSED},
	{"closed port: SYN -> RST+ACK", P_LISTEN, .in = IN(S, 0, R_ZERO, 0, 0, OPT_NO_LISTENER),
	 .n_out = 1, .out = {OUT(R | A, R_ZERO, 0, R_SEG_SEQ, 1)}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(no_listener, 1), CNT(resets_out, 1)}},
	{"closed port: data+ACK -> RST from its ACK", P_LISTEN,
	 .in = IN(A, 1, R_MAX, 0, 50, OPT_NO_LISTENER), .n_out = 1, .out = {RST_OUT},
	 .state = QD_TCP_CLOSED, .cnt = {CNT(no_listener, 1), CNT(resets_out, 1)}},
	{"closed port: RST ignored", P_LISTEN, .in = IN(R, 0, R_ZERO, 0, 0, OPT_NO_LISTENER),
	 .n_out = 0, .state = QD_TCP_CLOSED, .cnt = {CNT(no_listener, 1)}},
	{"listen: SYN with a bad checksum", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS | OPT_BAD_CSUM), .n_out = 0,
	 .state = QD_TCP_CLOSED, .cnt = {CNT(bad_checksum, 1)}},
	{"listen: SYN with data offset 4", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_DOFF_SHORT), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(bad_header, 1)}},
	{"listen: SYN with data offset past the end", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_DOFF_LONG), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(bad_header, 1)}},
	{"listen: SYN with a truncated option", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_MSS | OPT_TRUNC), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(bad_header, 1)}},
	{"listen: SYN with an option of length 0", P_LISTEN,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_ZERO_LEN), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(bad_header, 1)}},
	{"listen: backlog full, cookies off -> SYN dropped", P_LISTEN, CONF_NO_COOKIES,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(syn_backlog_full, 1)}},

	/* -- SYN cookies (syn_backlog 0) -- */
	{"cookie: SYN -> SYN-ACK without WS/TS, no state", P_LISTEN, CONF_COOKIES,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS),
	 .n_out = 1, .out = {{S | A, R_ANY, 0, R_RCV, 1, 0, O_CHECK | O_MSS}},
	 .state = QD_TCP_CLOSED, .cnt = {CNT(cookies_sent, 1), CNT(syn_backlog_full, 1)},
	 .check = chk_cookie_synack},
	{"cookie: valid ACK -> ESTABLISHED", P_COOKIE, CONF_COOKIES,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .cnt = {CNT(cookies_valid, 1), CNT(accepted, 1)}, .ev = EV_ACCEPT,
	 .check = chk_cookie_conn},
	{"cookie: valid ACK with data -> ESTABLISHED, data delivered", P_COOKIE, CONF_COOKIES,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .cnt = {CNT(cookies_valid, 1), CNT(accepted, 1)}, .ev = EV_ACCEPT | EV_DATA,
	 .data = 100, .check = chk_dack_armed},
	{"cookie: forged ACK -> RST", P_COOKIE, CONF_COOKIES, .in = IN(A, 0, R_MAX, 1000, 0, 0),
	 .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(cookies_invalid, 1), CNT(resets_out, 1)}},
	{"cookie: ACK with another peer ISN -> RST", P_COOKIE, CONF_COOKIES,
	 .in = IN(A, 1, R_MAX, 0, 0, 0), .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(cookies_invalid, 1), CNT(resets_out, 1)}},
	{"cookie: ACK one period later still valid", P_COOKIE, CONF_COOKIES, 60000000,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .cnt = {CNT(cookies_valid, 1), CNT(accepted, 1)}, .ev = EV_ACCEPT},
	{"cookie: ACK after the period expired -> RST", P_COOKIE, CONF_COOKIES, 129000000,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(cookies_invalid, 1), CNT(resets_out, 1)}},

	/* -- SYN_SENT -- */
	{"syn_sent: SYN-ACK -> ESTABLISHED + ACK", P_SYN_SENT,
	 .in = IN(S | A, 0, R_MAX, 0, 0, OPT_SYNOPTS), .n_out = 1,
	 .out = {OUT(A, R_ISS, 1, R_RCV, 1)}, .state = QD_TCP_ESTABLISHED, .ev = EV_CONNECTED,
	 .check = chk_connected},
	{"syn_sent: first ACK's window within the receive buffer", P_SYN_SENT,
	 .in = IN(S | A, 0, R_MAX, 0, 0, OPT_SYNOPTS), .n_out = 1,
	 .out = {OUT(A, R_ISS, 1, R_RCV, 1)}, .state = QD_TCP_ESTABLISHED, .ev = EV_CONNECTED,
	 .check = chk_window_in_buffer},
	{"syn_sent: SYN-ACK acking the ISN -> RST", P_SYN_SENT,
	 .in = IN(S | A, 0, R_ISS, 0, 0, OPT_SYNOPTS), .n_out = 1, .out = {RST_OUT},
	 .state = QD_TCP_SYN_SENT, .cnt = {CNT(resets_out, 1)}},
	{"syn_sent: SYN-ACK acking beyond the SYN -> RST", P_SYN_SENT,
	 .in = IN(S | A, 0, R_MAX, 1, 0, OPT_SYNOPTS), .n_out = 1, .out = {RST_OUT},
	 .state = QD_TCP_SYN_SENT, .cnt = {CNT(resets_out, 1)}},
	{"syn_sent: RST with a good ACK -> closed, REFUSED", P_SYN_SENT,
	 .in = IN(R | A, 0, R_MAX, 0, 0, 0), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED, .reason = QD_TCP_CLOSE_REFUSED},
	{"syn_sent: RST without ACK ignored", P_SYN_SENT, .in = IN(R, 0, R_ZERO, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_SYN_SENT},
	{"syn_sent: RST with a bad ACK ignored", P_SYN_SENT, .in = IN(R | A, 0, R_MAX, 5, 0, 0),
	 .n_out = 0, .state = QD_TCP_SYN_SENT},
	{"syn_sent: bare SYN -> simultaneous open, SYN_RCVD", P_SYN_SENT,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS), .n_out = 1,
	 .out = {OUT(S | A, R_ISS, 0, R_RCV, 1)}, .state = QD_TCP_SYN_RCVD},
	{"syn_sent: ACK without SYN dropped", P_SYN_SENT, .in = IN(A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_SYN_SENT},
	{"syn_sent: SYN-ACK with data -> ESTABLISHED, data left for retransmission",
	 P_SYN_SENT, .in = IN(S | A, 0, R_MAX, 0, 100, OPT_SYNOPTS), .n_out = 1,
	 .out = {OUT(A, R_ISS, 1, R_RCV, 1)}, .state = QD_TCP_ESTABLISHED, .ev = EV_CONNECTED},
	{"simultaneous open: ACK -> ESTABLISHED, on_connected", P_SIM_OPEN,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .ev = EV_CONNECTED},
	{"simultaneous open: RST -> closed, REFUSED (RFC 9293 3.10.7.4)", P_SIM_OPEN,
	 .in = IN(R, 0, R_ZERO, 0, 0, 0), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED, .reason = QD_TCP_CLOSE_REFUSED},
	{"syn_sent: FIN without SYN dropped", P_SYN_SENT, .in = IN(F | A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_SYN_SENT},
	{"simultaneous open: the peer's SYN-ACK -> ACK", P_SIM_OPEN,
	 .in = IN(S | A, -1, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_SYN_RCVD},

	/* -- SYN_RCVD -- */
	{"syn_rcvd: ACK -> ESTABLISHED, on_accept", P_SYN_RCVD, .in = IN(A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED, .cnt = {CNT(accepted, 1)}, .ev = EV_ACCEPT},
	{"syn_rcvd: ACK of the ISN -> RST", P_SYN_RCVD, .in = IN(A, 0, R_UNA, 0, 0, 0),
	 .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_SYN_RCVD, .cnt = {CNT(resets_out, 1)}},
	{"syn_rcvd: ACK beyond snd_max -> RST", P_SYN_RCVD, .in = IN(A, 0, R_MAX, 4, 0, 0),
	 .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_SYN_RCVD, .cnt = {CNT(resets_out, 1)}},
	{"syn_rcvd: RST -> closed", P_SYN_RCVD, .in = IN(R, 0, R_ZERO, 0, 0, 0), .n_out = 0,
	 .state = QD_TCP_CLOSED, .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED,
	 .reason = QD_TCP_CLOSE_RESET},
	{"syn_rcvd: RST in window, not exact -> challenge ACK", P_SYN_RCVD,
	 .in = IN(R, 10, R_ZERO, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_SYN_RCVD, .cnt = {CNT(challenge_acks, 1)}},
	{"syn_rcvd: SYN retransmitted -> ACK", P_SYN_RCVD,
	 .in = IN(S, -1, R_ZERO, 0, 0, OPT_MSS | OPT_WS), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_SYN_RCVD},
	{"syn_rcvd: ACK with data -> ESTABLISHED, data delivered", P_SYN_RCVD,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .cnt = {CNT(accepted, 1)}, .ev = EV_ACCEPT | EV_DATA, .data = 100},
	{"syn_rcvd: FIN+ACK -> CLOSE_WAIT", P_SYN_RCVD, .in = IN(F | A, 0, R_MAX, 0, 0, 0),
	 .n_out = 1, .out = {ACK_OUT(1)}, .state = QD_TCP_CLOSE_WAIT,
	 .cnt = {CNT(accepted, 1)}, .ev = EV_ACCEPT | EV_PEER_FIN},

	/* -- ESTABLISHED -- */
	{"est: in-order data delivered, delayed ACK armed", P_EST,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .ev = EV_DATA, .data = 100, .check = chk_dack_armed},
	{"est: second segment -> immediate ACK", P_EST_DATA_IN,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(100)},
	 .state = QD_TCP_ESTABLISHED, .ev = EV_DATA, .data = 100},
	{"est: out of order -> duplicate ACK, queued", P_EST,
	 .in = IN(A, 100, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(ooo_queued, 1)}, .check = chk_ooo_one},
	{"est: hole filled -> both delivered, ACK", P_EST_OOO,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(200)},
	 .state = QD_TCP_ESTABLISHED, .ev = EV_DATA, .data = 200},
	{"est: old duplicate -> ACK, nothing delivered", P_EST_DATA_IN,
	 .in = IN(A, -100, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED},
	{"est: partly old segment -> the new half delivered", P_EST_DATA_IN,
	 .in = IN(A, -50, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(50)},
	 .state = QD_TCP_ESTABLISHED, .ev = EV_DATA, .data = 50},
	/* The app consumes the whole (tiny) window at once: it reopens from zero, which is
	 * announced at once (RFC 1122 4.2.3.3) rather than left to the delayed ACK. */
	{"est: data beyond the window trimmed; window reopened -> update", P_EST,
	 CONF_SMALL_RCVBUF, .in = IN(A, 0, R_MAX, 0, 1200, 0), .n_out = 1,
	 .out = {ACK_OUT(1000)}, .state = QD_TCP_ESTABLISHED,
	 .ev = EV_DATA, .data = 1000, .check = chk_small_window},
	{"est: out of order across the right edge -> trimmed, queued", P_EST,
	 .in = IN(A, 65536 - 50, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(ooo_queued, 1)}, .check = chk_ooo_trimmed},
	{"est: segment wholly beyond the window -> ACK", P_EST,
	 .in = IN(A, 200000, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED},
	{"est: RST at rcv_nxt -> closed, RESET", P_EST, .in = IN(R, 0, R_ZERO, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_CLOSED, .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED,
	 .reason = QD_TCP_CLOSE_RESET},
	{"est: RST+ACK at rcv_nxt -> closed, RESET", P_EST, .in = IN(R | A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_CLOSED, .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED,
	 .reason = QD_TCP_CLOSE_RESET},
	{"est: RST in window, not exact -> challenge ACK (RFC 5961 3.2)", P_EST,
	 .in = IN(R, 10, R_ZERO, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(challenge_acks, 1)}},
	{"est: RST outside the window dropped silently", P_EST,
	 .in = IN(R, 200000, R_ZERO, 0, 0, 0), .n_out = 0, .state = QD_TCP_ESTABLISHED},
	{"est: RST with an old timestamp still resets (RFC 7323 5.3)", P_EST,
	 .in = IN(R, 0, R_ZERO, 0, 0, OPT_TS_OLD), .n_out = 0, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED, .reason = QD_TCP_CLOSE_RESET},
	{"est: SYN -> challenge ACK (RFC 5961 4.2)", P_EST,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_MSS), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(challenge_acks, 1)}},
	{"est: SYN outside the window -> plain ACK", P_EST,
	 .in = IN(S, 300000, R_ZERO, 0, 0, OPT_MSS), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED},
	{"est: the peer's keepalive (rcv_nxt - 1, no data) -> ACK", P_EST,
	 .in = IN(A, -1, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED},
	{"est: the peer's keepalive with 1 old byte -> ACK", P_EST_DATA_IN,
	 .in = IN(A, -1, R_MAX, 0, 1, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED},
	{"est: SYN+ACK -> challenge ACK", P_EST, .in = IN(S | A, 5, R_MAX, 0, 0, 0),
	 .n_out = 1, .out = {ACK_OUT(0)}, .state = QD_TCP_ESTABLISHED,
	 .cnt = {CNT(challenge_acks, 1)}},
	{"est: ACK above snd_max -> challenge ACK", P_EST,
	 .in = IN(A, 0, R_MAX, 1000, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(challenge_acks, 1)}},
	{"est: ACK above snd_max with data -> challenge ACK, data dropped", P_EST,
	 .in = IN(A, 0, R_MAX, 1000, 100, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(challenge_acks, 1)}},
	{"est: ACK far below snd_una -> challenge ACK (RFC 5961 5.2)", P_EST,
	 .in = IN(A, 0, R_UNA, -200000, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(challenge_acks, 1)}},
	{"est: old ACK within the window ignored", P_EST, .in = IN(A, 0, R_UNA, -1000, 0, 0),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED},
	{"est: PAWS: older TSval -> dropped, ACK", P_EST,
	 .in = IN(A, 0, R_MAX, 0, 100, OPT_TS_OLD), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(paws_rejected, 1)}},
	{"est: FIN -> CLOSE_WAIT, on_peer_fin, ACK", P_EST, .in = IN(F | A, 0, R_MAX, 0, 0, 0),
	 .n_out = 1, .out = {ACK_OUT(1)}, .state = QD_TCP_CLOSE_WAIT, .ev = EV_PEER_FIN},
	{"est: FIN with data -> data, then on_peer_fin", P_EST,
	 .in = IN(F | A, 0, R_MAX, 0, 100, 0), .n_out = 1, .out = {ACK_OUT(101)},
	 .state = QD_TCP_CLOSE_WAIT, .ev = EV_DATA | EV_PEER_FIN, .data = 100},
	{"est: FIN out of order -> held, duplicate ACK", P_EST,
	 .in = IN(F | A, 100, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(ooo_queued, 1)}},
	{"est: hole before a held FIN filled -> data, FIN, CLOSE_WAIT", P_EST_OOO_FIN,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = N_OUT_ANY_SAME, .out = {ACK_OUT(201)},
	 .state = QD_TCP_CLOSE_WAIT, .ev = EV_DATA | EV_PEER_FIN, .data = 200},
	{"est: data without ACK dropped", P_EST, .in = IN(0, 0, R_ZERO, 0, 100, 0),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED},
	{"est: data with a bad checksum dropped", P_EST,
	 .in = IN(A, 0, R_MAX, 0, 100, OPT_BAD_CSUM), .n_out = 0, .state = QD_TCP_ESTABLISHED,
	 .cnt = {CNT(bad_checksum, 1)}},
	{"est: data offset 4 dropped", P_EST, .in = IN(A, 0, R_MAX, 0, 100, OPT_DOFF_SHORT),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED, .cnt = {CNT(bad_header, 1)}},
	{"est: data offset past the end dropped", P_EST,
	 .in = IN(A, 0, R_MAX, 0, 10, OPT_DOFF_LONG | OPT_NOTS), .n_out = 0,
	 .state = QD_TCP_ESTABLISHED, .cnt = {CNT(bad_header, 1)}},
	{"est: truncated option dropped", P_EST, .in = IN(A, 0, R_MAX, 0, 100, OPT_TRUNC),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED, .cnt = {CNT(bad_header, 1)}},
	{"est: ACK of everything sent", P_EST_DATA_OUT, .in = IN(A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED, .check = chk_all_acked},
	{"est: partial ACK", P_EST_DATA_OUT, .in = IN(A, 0, R_UNA, 500, 0, 0), .n_out = 0,
	 .state = QD_TCP_ESTABLISHED, .check = chk_half_acked},
	{"est: duplicate ACK counted", P_EST_DATA_OUT, .in = IN(A, 0, R_UNA, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_ESTABLISHED, .cnt = {CNT(dup_acks, 1)}},
	{"est: window update to 0", P_EST, .in = IN(A, 0, R_MAX, 0, 0, OPT_WND0), .n_out = 0,
	 .state = QD_TCP_ESTABLISHED, .check = chk_zero_wnd},

	/* -- FIN_WAIT_1 -- */
	{"fin_wait_1: ACK of our FIN -> FIN_WAIT_2", P_FIN_WAIT_1,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 0, .state = QD_TCP_FIN_WAIT_2,
	 .check = chk_fw2_timer},
	{"fin_wait_1: FIN acking ours -> TIME_WAIT", P_FIN_WAIT_1,
	 .in = IN(F | A, 0, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(1)},
	 .state = QD_TCP_TIME_WAIT, .ev = EV_PEER_FIN | EV_CLOSED,
	 .reason = QD_TCP_CLOSE_NORMAL, .check = chk_tw_timer},
	{"fin_wait_1: FIN not acking ours -> CLOSING (simultaneous close)", P_FIN_WAIT_1,
	 .in = IN(F | A, 0, R_UNA, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(1)},
	 .state = QD_TCP_CLOSING, .ev = EV_PEER_FIN},
	{"fin_wait_1: data still delivered (half-close)", P_FIN_WAIT_1,
	 .in = IN(A, 0, R_UNA, 0, 100, 0), .n_out = 0, .state = QD_TCP_FIN_WAIT_1,
	 .ev = EV_DATA, .data = 100},
	{"fin_wait_1: RST -> closed, RESET", P_FIN_WAIT_1, .in = IN(R, 0, R_ZERO, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_CLOSED, .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED,
	 .reason = QD_TCP_CLOSE_RESET},

	/* -- FIN_WAIT_2 -- */
	{"fin_wait_2: FIN -> TIME_WAIT, ACK", P_FIN_WAIT_2, .in = IN(F | A, 0, R_MAX, 0, 0, 0),
	 .n_out = 1, .out = {ACK_OUT(1)}, .state = QD_TCP_TIME_WAIT,
	 .ev = EV_PEER_FIN | EV_CLOSED, .reason = QD_TCP_CLOSE_NORMAL, .check = chk_tw_timer},
	{"fin_wait_2: data still delivered (half-close)", P_FIN_WAIT_2,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 0, .state = QD_TCP_FIN_WAIT_2,
	 .ev = EV_DATA, .data = 100},
	{"fin_wait_2: FIN, TIME_WAIT full -> closed at once", P_FIN_WAIT_2, CONF_TW0,
	 .in = IN(F | A, 0, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(1)},
	 .state = QD_TCP_CLOSED, .cnt = {CNT(time_wait_overflow, 1)},
	 .ev = EV_PEER_FIN | EV_CLOSED, .reason = QD_TCP_CLOSE_NORMAL},

	/* -- CLOSING -- */
	{"closing: ACK of our FIN -> TIME_WAIT", P_CLOSING, .in = IN(A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_TIME_WAIT, .ev = EV_CLOSED, .reason = QD_TCP_CLOSE_NORMAL,
	 .check = chk_tw_timer},
	{"closing: ACK short of our FIN -> stays, duplicate ACK", P_CLOSING,
	 .in = IN(A, 0, R_UNA, 0, 0, 0), .n_out = 0, .state = QD_TCP_CLOSING,
	 .cnt = {CNT(dup_acks, 1)}},

	/* -- CLOSE_WAIT -- */
	{"close_wait: FIN retransmitted -> ACK", P_CLOSE_WAIT,
	 .in = IN(F | A, -1, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_CLOSE_WAIT},
	{"close_wait: data after the FIN ignored", P_CLOSE_WAIT,
	 .in = IN(A, 0, R_MAX, 0, 100, 0), .n_out = 0, .state = QD_TCP_CLOSE_WAIT},

	/* -- LAST_ACK -- */
	{"last_ack: ACK of our FIN -> closed, NORMAL", P_LAST_ACK,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 0, .state = QD_TCP_CLOSED, .ev = EV_CLOSED,
	 .reason = QD_TCP_CLOSE_NORMAL},
	{"last_ack: ACK short of our FIN -> stays, duplicate ACK", P_LAST_ACK,
	 .in = IN(A, 0, R_UNA, 0, 0, 0), .n_out = 0, .state = QD_TCP_LAST_ACK,
	 .cnt = {CNT(dup_acks, 1)}},
	{"last_ack: FIN retransmitted -> ACK", P_LAST_ACK, .in = IN(F | A, -1, R_UNA, 0, 0, 0),
	 .n_out = 1, .out = {ACK_OUT(0)}, .state = QD_TCP_LAST_ACK},
	{"last_ack: RST -> closed, RESET", P_LAST_ACK, .in = IN(R, 0, R_ZERO, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_CLOSED, .cnt = {CNT(resets_in, 1)}, .ev = EV_CLOSED,
	 .reason = QD_TCP_CLOSE_RESET},

	/* -- TIME_WAIT (on_closed was called on entry) -- */
	{"time_wait: FIN retransmitted -> ACK again", P_TIME_WAIT,
	 .in = IN(F | A, -1, R_MAX, 0, 0, 0), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_TIME_WAIT},
	{"time_wait: new SYN with a higher seq -> recycled, SYN-ACK", P_TIME_WAIT,
	 .in = IN(S, 100000, R_ZERO, 0, 0, OPT_SYNOPTS), .n_out = 1,
	 .out = {OUT(S | A, R_ANY, 0, R_SEG_SEQ, 1)}, .state = QD_TCP_SYN_RCVD,
	 .cnt = {CNT(passive_opens, 1)}, .check = chk_recycled},
	{"time_wait: SYN at rcv_nxt not recycled -> challenge ACK", P_TIME_WAIT,
	 .in = IN(S, 0, R_ZERO, 0, 0, OPT_SYNOPTS), .n_out = 1, .out = {ACK_OUT(0)},
	 .state = QD_TCP_TIME_WAIT, .cnt = {CNT(challenge_acks, 1)}},
	{"time_wait: duplicate ACK ignored", P_TIME_WAIT, .in = IN(A, 0, R_MAX, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_TIME_WAIT},
	{"time_wait: RST ignored (RFC 1337)", P_TIME_WAIT, .in = IN(R, 0, R_ZERO, 0, 0, 0),
	 .n_out = 0, .state = QD_TCP_TIME_WAIT, .check = chk_tw_timer_kept},
	{"time_wait: gone after time_wait_ms; an ACK then gets RST", P_TIME_WAIT,
	 .delay_us = 2001000,
	 .in = IN(A, 0, R_MAX, 0, 0, 0), .n_out = 1, .out = {RST_OUT}, .state = QD_TCP_CLOSED,
	 .cnt = {CNT(cookies_invalid, 1), CNT(resets_out, 1)}},
};

/* ---- scenarios: timers and multi-segment exchanges ------------------------------------ */

static __rte_unused bool
known_bug(const char *name, const char *why)
{
	if (run_known_bugs)
		return false;
	print_message("[  KNOWN BUG ] %s: %s\n", name, why);
	return true;
}

static uint64_t
counter(const struct h *h, size_t off)
{
	struct qd_tcp_counters k;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(h->s, &k, states);
	return counter_at(&k, off);
}

#define COUNTER(h, name) counter((h), offsetof(struct qd_tcp_counters, name))

static void
test_delayed_ack_timer(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST);
	clear_out(h);
	peer_send(h, TCP_ACK, h->iss + 1, 100, 0);
	assert_int_equal(h->n_out, 0);
	advance(h, QD_TCP_DELACK_US - 1000);
	assert_int_equal(h->n_out, 0);
	advance(h, 1000);
	assert_int_equal(h->n_out, 1);
	expect_out(h, 0, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	advance(h, 1000000);
	assert_int_equal(h->n_out, 1);
	h_fini(h);
}

/* Peer closes its window; the stack probes with backed-off intervals; the window opens. */
static void
test_zero_window_probe(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST);
	struct qd_tcp_conn *c = must_conn(h);
	peer_send(h, TCP_ACK, h->iss + 1, 0, OPT_WND0);
	clear_out(h);
	app_send(h, c, 1000);
	assert_int_equal(h->n_out, 0);
	assert_true(c->persist);
	uint32_t rto = c->rto_us;
	advance(h, rto);
	assert_int_equal(h->n_out, 1);
	expect_out(h, 0, TCP_ACK, h->iss, h->peer_nxt, 0); /* snd_una - 1, no payload */
	assert_int_equal(COUNTER(h, zero_window_probes), 1);
	assert_int_equal(c->rto_us, 2 * rto);
	/* The answer keeps the window closed: the next probe comes after twice the time. */
	peer_send(h, TCP_ACK, h->iss + 1, 0, OPT_WND0);
	clear_out(h);
	advance(h, 2 * rto - 1000);
	assert_int_equal(h->n_out, 0);
	advance(h, 1000);
	assert_int_equal(h->n_out, 1);
	assert_int_equal(COUNTER(h, zero_window_probes), 2);
	/* The window opens: the data goes at once. */
	clear_out(h);
	peer_send(h, TCP_ACK, h->iss + 1, 0, 0);
	assert_int_equal(h->n_out, 1);
	expect_out(h, 0, TCP_ACK | TCP_PSH, h->iss + 1, h->peer_nxt, 1000);
	assert_false(c->persist);
	assert_int_equal(COUNTER(h, retransmits), 0);
	h_fini(h);
}

/* RFC 9293 3.8.6.1 (and RFC 1122 4.2.2.17): as long as the receiver answers the probes,
 * the sender MUST keep the connection open, however long the window stays closed. */
static void
test_zero_window_forever(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST);
	struct qd_tcp_conn *c = must_conn(h);
	peer_send(h, TCP_ACK, h->iss + 1, 0, OPT_WND0);
	app_send(h, c, 1000);
	/* 30 minutes; every probe answered at once with the window still closed. */
	for (unsigned int i = 0; i < 1800 && h_state(h) == QD_TCP_ESTABLISHED; i++) {
		clear_out(h);
		advance(h, 1000000);
		if (h->n_out > 0 && h_state(h) == QD_TCP_ESTABLISHED)
			peer_send(h, TCP_ACK, h->iss + 1, 0, OPT_WND0);
	}
	assert_int_equal(h_state(h), QD_TCP_ESTABLISHED);
	assert_int_equal(COUNTER(h, timeouts), 0);
	assert_true(COUNTER(h, zero_window_probes) > QD_TCP_DATA_RETRIES);
	h_fini(h);
}

static void
test_keepalive_timeout(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_KEEPALIVE);
	run_prefix(h, P_EST);
	clear_out(h);
	advance(h, 999000);
	assert_int_equal(h->n_out, 0);
	for (unsigned int probe = 1; probe <= 3; probe++) {
		advance(h, probe == 1 ? 1000 : 500000);
		assert_int_equal(h->n_out, probe);
		expect_out(h, probe - 1, TCP_ACK, h->iss, h->peer_nxt, 0);
		assert_int_equal(COUNTER(h, keepalive_probes), probe);
	}
	advance(h, 499000);
	assert_int_equal(h->n_out, 3);
	assert_int_equal(h->ev, 0);
	advance(h, 1000);
	assert_int_equal(h->n_out, 4);
	expect_out(h, 3, TCP_RST | TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	assert_int_equal(h->ev, EV_CLOSED);
	assert_int_equal(h->reason, QD_TCP_CLOSE_TIMEOUT);
	assert_int_equal(COUNTER(h, timeouts), 1);
	assert_int_equal(COUNTER(h, resets_out), 1);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	h_fini(h);
}

static void
test_keepalive_answered(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_KEEPALIVE);
	run_prefix(h, P_EST);
	clear_out(h);
	advance(h, 1000000);
	assert_int_equal(h->n_out, 1);
	/* The peer answers the probe: the next one comes a full idle time later. */
	advance(h, 100000);
	peer_send(h, TCP_ACK, h->iss + 1, 0, 0);
	assert_int_equal(must_conn(h)->ka_probes, 0);
	advance(h, 999000);
	assert_int_equal(h->n_out, 1);
	advance(h, 1000);
	assert_int_equal(h->n_out, 2);
	assert_int_equal(COUNTER(h, keepalive_probes), 2);
	assert_int_equal(h->ev, 0);
	h_fini(h);
}

/* RFC 6298: back-off doubles the RTO; Karn: no sample from a retransmitted segment, and the
 * backed-off RTO stays until a valid sample. */
static void
test_rto_backoff_karn(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST_NOTS);
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->rto_us, QD_TCP_RTO_MIN_US); /* the handshake gave a sample */
	uint32_t srtt = c->srtt_us;
	clear_out(h);
	app_send(h, c, 1000);
	assert_int_equal(h->n_out, 1);
	assert_true(c->rtt_timing);
	uint32_t rto = c->rto_us;
	for (unsigned int i = 1; i <= 3; i++) {
		advance(h, rto - 1000);
		assert_int_equal(h->n_out, i);
		advance(h, 1000);
		assert_int_equal(h->n_out, i + 1);
		expect_out(h, i, TCP_ACK | TCP_PSH, h->iss + 1, h->peer_nxt, 1000);
		rto *= 2;
		assert_int_equal(c->rto_us, rto);
		assert_false(c->rtt_timing);
	}
	assert_int_equal(COUNTER(h, rto_expired), 3);
	assert_int_equal(COUNTER(h, retransmits), 3);
	/* The ACK of the retransmission: no sample, the backed-off RTO remains. */
	advance(h, 50000);
	peer_send(h, TCP_ACK, h->iss + 1001, 0, 0);
	assert_int_equal(c->srtt_us, srtt);
	assert_int_equal(c->rto_us, rto);
	assert_int_equal(c->rto_at, 0);
	/* New data acknowledged without retransmission gives a sample. */
	clear_out(h);
	app_send(h, c, 500);
	assert_true(c->rtt_timing);
	advance(h, 30000);
	peer_send(h, TCP_ACK, h->iss + 1501, 0, 0);
	assert_int_not_equal(c->srtt_us, srtt);
	assert_int_equal(c->rto_us, QD_TCP_RTO_MIN_US);
	assert_int_equal(c->retries, 0);
	h_fini(h);
}

static void
test_rto_exhausted(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST_NOTS);
	app_send(h, must_conn(h), 100);
	clear_out(h);
	/* Bounded: 16 RTOs of at most a minute each. */
	for (unsigned int s = 0; s < 20 * 60 && h_state(h) == QD_TCP_ESTABLISHED; s++)
		advance(h, 1000000);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	assert_int_equal(h->ev, EV_CLOSED);
	assert_int_equal(h->reason, QD_TCP_CLOSE_TIMEOUT);
	assert_int_equal(COUNTER(h, rto_expired), QD_TCP_DATA_RETRIES);
	assert_int_equal(COUNTER(h, retransmits), QD_TCP_DATA_RETRIES);
	assert_int_equal(COUNTER(h, timeouts), 1);
	assert_int_equal(h->n_out, QD_TCP_DATA_RETRIES + 1);
	assert_true((h->out[h->n_out - 1].flags & TCP_RST) != 0 || h->n_out > OUT_MAX);
	h_fini(h);
}

static void
test_syn_sent_timeout(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_SYN_SENT);
	clear_out(h);
	advance(h, QD_TCP_RTO_INIT_US);
	assert_int_equal(h->n_out, 1);
	expect_out(h, 0, TCP_SYN, h->iss, 0, 0);
	for (unsigned int s = 0; s < 300 && h_state(h) == QD_TCP_SYN_SENT; s++)
		advance(h, 1000000);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	assert_int_equal(h->n_out, QD_TCP_SYN_RETRIES); /* retransmitted SYNs, no RST */
	for (unsigned int i = 0; i < h->n_out; i++)
		assert_int_equal(h->out[i].flags, TCP_SYN);
	assert_int_equal(h->reason, QD_TCP_CLOSE_TIMEOUT);
	assert_int_equal(COUNTER(h, timeouts), 1);
	h_fini(h);
}

static void
test_syn_rcvd_retransmit(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_SYN_RCVD);
	clear_out(h);
	advance(h, QD_TCP_RTO_INIT_US);
	assert_int_equal(h->n_out, 1);
	expect_out(h, 0, TCP_SYN | TCP_ACK, h->iss, h->peer_nxt, 0);
	/* The ACK of the retransmitted SYN-ACK still completes the handshake. */
	peer_send(h, TCP_ACK, h->iss + 1, 0, 0);
	assert_int_equal(h_state(h), QD_TCP_ESTABLISHED);
	assert_int_equal(h->ev, EV_ACCEPT);
	h_fini(h);
}

/* RFC 3042 limited transmit, RFC 5681 fast retransmit, RFC 6582 partial and full ACKs. */
static void
test_fast_retransmit_newreno(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST_NOTS);
	struct qd_tcp_conn *c = must_conn(h);
	const uint32_t mss = 1460;
	assert_int_equal(c->mss, mss);
	assert_int_equal(c->cwnd, 10 * mss);
	const uint32_t base = h->iss + 1;
	clear_out(h);
	for (int i = 0; i < 14; i++)
		app_send(h, c, mss);
	assert_int_equal(h->n_out, 10); /* the initial window */
	/* Segment 1 acknowledged: slow start opens two more. */
	peer_send(h, TCP_ACK, base + mss, 0, 0);
	assert_int_equal(h->n_out, 12);
	expect_out(h, 11, TCP_ACK | TCP_PSH, base + 11 * mss, h->peer_nxt, mss);
	/* Segment 2 lost: two duplicate ACKs send one new segment each (limited transmit). */
	peer_send(h, TCP_ACK, base + mss, 0, 0);
	assert_int_equal(h->n_out, 13);
	expect_out(h, 12, TCP_ACK | TCP_PSH, base + 12 * mss, h->peer_nxt, mss);
	peer_send(h, TCP_ACK, base + mss, 0, 0);
	assert_int_equal(h->n_out, 14);
	expect_out(h, 13, TCP_ACK | TCP_PSH, base + 13 * mss, h->peer_nxt, mss);
	assert_int_equal(COUNTER(h, fast_retransmits), 0);
	/* The third: fast retransmit of segment 2, recovery until snd_max. */
	peer_send(h, TCP_ACK, base + mss, 0, 0);
	assert_int_equal(h->n_out, 15);
	expect_out(h, 14, TCP_ACK | TCP_PSH, base + mss, h->peer_nxt, mss);
	assert_int_equal(COUNTER(h, fast_retransmits), 1);
	assert_int_equal(COUNTER(h, dup_acks), 3);
	assert_true(c->in_recovery);
	assert_int_equal(c->recover, base + 14 * mss);
	uint32_t ssthresh = 13 * mss / 2;
	assert_int_equal(c->ssthresh, ssthresh);
	assert_int_equal(c->cwnd, ssthresh + 3 * mss);
	/* Partial ACK (segments 2 to 4): segment 5 retransmitted at once, still in recovery. */
	peer_send(h, TCP_ACK, base + 4 * mss, 0, 0);
	assert_int_equal(h->n_out, 16);
	expect_out(h, 15, TCP_ACK | TCP_PSH, base + 4 * mss, h->peer_nxt, mss);
	assert_true(c->in_recovery);
	assert_int_equal(c->cwnd, ssthresh + 3 * mss - 3 * mss + mss);
	/* Full ACK: recovery ends, cwnd deflates to min(ssthresh, flight + mss). */
	peer_send(h, TCP_ACK, base + 14 * mss, 0, 0);
	assert_false(c->in_recovery);
	assert_int_equal(c->cwnd, 2 * mss);
	assert_int_equal(c->snd_una, c->snd_max);
	assert_int_equal(COUNTER(h, retransmits), 2);
	assert_int_equal(COUNTER(h, rto_expired), 0);
	h_fini(h);
}

static void
test_challenge_ack_limit(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_CA2);
	run_prefix(h, P_EST);
	clear_out(h);
	for (int i = 0; i < 3; i++) {
		struct seg sg = {.flags = TCP_RST, .seq = h->peer_nxt + 10 + (uint32_t)i};
		inject(h, &sg);
	}
	assert_int_equal(h->n_out, 2);
	assert_int_equal(COUNTER(h, challenge_acks), 2);
	assert_int_equal(COUNTER(h, challenge_acks_limited), 1);
	advance(h, 1000000);
	struct seg sg = {.flags = TCP_RST, .seq = h->peer_nxt + 10};
	inject(h, &sg);
	assert_int_equal(h->n_out, 3);
	assert_int_equal(h_state(h), QD_TCP_ESTABLISHED);
	h_fini(h);
}

static void
test_time_wait_expiry(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_TIME_WAIT);
	advance(h, (uint64_t)h->conf.time_wait_ms * 1000 - 1000);
	assert_int_equal(h_state(h), QD_TCP_TIME_WAIT);
	advance(h, 1000);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	assert_int_equal(h->s->time_wait_count, 0);
	assert_int_equal(h->n_closed, 1); /* once, on entering TIME_WAIT */
	h_fini(h);
}

/* An orphaned FIN_WAIT_2 is bounded by fin_wait2_ms; one whose peer never answers. */
static void
test_fin_wait2_timeout(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_FIN_WAIT_2);
	clear_out(h);
	advance(h, (uint64_t)h->conf.fin_wait2_ms * 1000 + 1000);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	assert_int_equal(h->reason, QD_TCP_CLOSE_TIMEOUT);
	assert_int_equal(COUNTER(h, timeouts), 1);
	h_fini(h);
}

/* Half-close: after qd_tcp_shutdown() the application still reads; a peer that keeps
 * sending for longer than fin_wait2_ms must not be cut off. */
static void
test_fin_wait2_half_close(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_FIN_WAIT_2);
	clear_out(h);
	uint32_t sent = 0;
	for (unsigned int i = 0; i < 2 * h->conf.fin_wait2_ms / 500; i++) {
		advance(h, 500000);
		if (h_state(h) != QD_TCP_FIN_WAIT_2)
			break;
		peer_send(h, TCP_ACK, h->iss + 2, 100, 0);
		sent += 100;
	}
	assert_int_equal(h_state(h), QD_TCP_FIN_WAIT_2);
	assert_int_equal(h->rx_bytes, sent);
	assert_int_equal(COUNTER(h, timeouts), 0);
	h_fini(h);
}

/* The out-of-order queue is bounded; a filling segment drains everything it covers. */
static void
test_ooo_bound(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST);
	unsigned int avail = rte_mempool_avail_count(pool);
	for (uint32_t i = 0; i <= QD_TCP_OOO_MAX; i++) {
		struct seg sg = {.flags = TCP_ACK, .seq = h->peer_nxt + 2 + 2 * i,
				 .ack = h->iss + 1, .len = 1};
		inject(h, &sg);
	}
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->ooo_count, QD_TCP_OOO_MAX);
	assert_int_equal(COUNTER(h, ooo_queued), QD_TCP_OOO_MAX);
	assert_int_equal(COUNTER(h, ooo_dropped), 1);
	assert_int_equal(rte_mempool_avail_count(pool), avail - QD_TCP_OOO_MAX);
	clear_out(h);
	peer_send(h, TCP_ACK, h->iss + 1, 2 * QD_TCP_OOO_MAX + 2, 0);
	assert_int_equal(h->rx_bytes, 2 * QD_TCP_OOO_MAX + 2);
	assert_int_equal(c->ooo_count, 0);
	assert_int_equal(c->ooo_bytes, 0);
	assert_int_equal(rte_mempool_avail_count(pool), avail);
	assert_int_equal(h->n_out, 1);
	expect_out(h, 0, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	h_fini(h);
}

/* Receive window: held data closes it (never moving the right edge back), a segment
 * beyond it is refused, and consuming the data sends a window update. */
static void
test_receive_window(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_RCVBUF_4K);
	h->peer_iss = h->peer_nxt = 0x10000000; /* no wrap here: other rows cross 2^32 */
	run_prefix(h, P_EST);
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->mss, 1448);
	h->hold = true;
	clear_out(h);
	peer_send(h, TCP_ACK, h->iss + 1, 1448, 0);
	peer_send(h, TCP_ACK, h->iss + 1, 1448, 0);
	assert_int_equal(h->n_out, 1); /* second segment: ACK at once */
	expect_out(h, 0, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	assert_int_equal(h->out[0].wnd, 4096 - 2 * 1448); /* the edge offered, kept */
	peer_send(h, TCP_ACK, h->iss + 1, 4096 - 2 * 1448, 0);
	assert_int_equal(h->rx_bytes, 4096);
	advance(h, QD_TCP_DELACK_US);
	assert_int_equal(h->n_out, 2);
	expect_out(h, 1, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	assert_int_equal(h->out[1].wnd, 0);
	/* Anything more is outside the window: refused with an ACK. */
	struct seg sg = {.flags = TCP_ACK, .seq = h->peer_nxt, .ack = h->iss + 1, .len = 100};
	inject(h, &sg);
	assert_int_equal(h->rx_bytes, 4096);
	assert_int_equal(h->n_out, 3);
	expect_out(h, 2, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	/* The application reads segment by segment: a window update as soon as a full
	 * segment fits again, then one more when the window has grown past what the peer
	 * was told by min(2 MSS, half the buffer) (receiver SWS avoidance, RFC 1122
	 * 4.2.3.3), compared with the last advertisement, not with the previous read. */
	clear_out(h);
	for (unsigned int i = 0; i < h->n_held; i++) {
		uint32_t len = rte_pktmbuf_pkt_len(h->held[i]);
		rte_pktmbuf_free(h->held[i]);
		qd_tcp_recv_consumed(c, len, h->now_us);
	}
	h->n_held = 0;
	assert_int_equal(h->n_out, 2);
	expect_out(h, 0, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	assert_int_equal(h->out[0].wnd, 1448);
	expect_out(h, 1, TCP_ACK, h->iss + 1, h->peer_nxt, 0);
	assert_int_equal(h->out[1].wnd, 4096);
	h_fini(h);
}

/* The proxy consumes a held window in small steps (as much as the other side's send
 * buffer takes each time). The peer must learn that the window reopened, not only that
 * it grew past one segment: otherwise it sits on a small window (or a zero window, on its
 * backed-off persist timer). */
static void
test_receive_window_small_reads(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_RCVBUF_4K);
	h->peer_iss = h->peer_nxt = 0x10000000;
	run_prefix(h, P_EST);
	struct qd_tcp_conn *c = must_conn(h);
	h->hold = true;
	peer_send(h, TCP_ACK, h->iss + 1, 1448, 0);
	peer_send(h, TCP_ACK, h->iss + 1, 1448, 0);
	peer_send(h, TCP_ACK, h->iss + 1, 4096 - 2 * 1448, 0);
	advance(h, QD_TCP_DELACK_US);
	assert_int_equal(h->rx_bytes, 4096);
	clear_out(h);
	for (uint32_t done = 0; done < 4096; done += 128)
		qd_tcp_recv_consumed(c, 128, h->now_us);
	assert_true(h->n_out >= 1);
	uint32_t last = h->out[h->n_out - 1].wnd;
	/* The old rule stopped at the first segment's worth (1536 here). */
	if (last < 4096 - 2048 / 2)
		fail_msg("after reading all 4096 bytes in small steps the peer was last told a "
			 "window of %u", last);
	h_fini(h);
}

static void
test_send_backpressure(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST);
	struct qd_tcp_conn *c = must_conn(h);
	peer_send(h, TCP_ACK, h->iss + 1, 0, OPT_WND0);
	uint32_t space = qd_tcp_send_space(c);
	assert_int_equal(space, h->conf.sndbuf_bytes);
	for (uint32_t sent = 0; sent + 1400 <= space; sent += 1400)
		app_send(h, c, 1400);
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	assert_non_null(m);
	assert_non_null(rte_pktmbuf_append(m, 1400));
	assert_int_equal(qd_tcp_send(c, m, h->now_us), -EAGAIN);
	rte_pktmbuf_free(m);
	assert_int_equal(COUNTER(h, send_refused), 1);
	clear_out(h);
	peer_send(h, TCP_ACK, h->iss + 1, 0, 0); /* window opens: data goes */
	assert_true(h->n_out > 0);
	uint32_t acked = h->out[0].len;
	peer_send(h, TCP_ACK, h->iss + 1 + acked, 0, 0);
	assert_true((h->ev & EV_WRITABLE) != 0);
	h_fini(h);
}

/* RFC 9293: after a retransmission timeout the FIN keeps its sequence number; a late ACK
 * of everything, FIN included, must move FIN_WAIT_1 to FIN_WAIT_2. */
static void
test_fin_ack_after_rto(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	run_prefix(h, P_EST);
	struct qd_tcp_conn *c = must_conn(h);
	const uint32_t base = h->iss + 1;
	clear_out(h);
	app_send(h, c, 1448);
	app_send(h, c, 1448);
	app_send(h, c, 104);
	assert_int_equal(qd_tcp_shutdown(c, h->now_us), 0);
	assert_int_equal(h->n_out, 4); /* three segments and the FIN */
	expect_out(h, 3, TCP_ACK | TCP_FIN, base + 3000, h->peer_nxt, 0);
	assert_int_equal(h_state(h), QD_TCP_FIN_WAIT_1);
	/* The ACKs are late: the RTO fires and resends the first segment only. */
	advance(h, c->rto_us);
	assert_int_equal(h->n_out, 5);
	expect_out(h, 4, TCP_ACK | TCP_PSH, base, h->peer_nxt, 1448);
	/* Now the ACK of everything sent the first time, FIN included. */
	peer_send(h, TCP_ACK, base + 3001, 0, 0);
	assert_int_equal(h_state(h), QD_TCP_FIN_WAIT_2);
	assert_int_equal(c->snd_una, base + 3001);
	assert_int_equal(h->n_out, 5); /* no new FIN */
	h_fini(h);
}

/* Several connections due in one timer-wheel slot; the application, told that one timed
 * out, aborts its partner (a proxy tearing down the other leg). Every connection must
 * close then, once, with one RST each. */
#define PAIRS 2
static struct qd_tcp_conn *legs[2 * PAIRS];

static void
abort_partner(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	if (why != QD_TCP_CLOSE_TIMEOUT)
		return;
	for (unsigned int i = 0; i < 2 * PAIRS; i++) {
		if (legs[i] == c) {
			struct qd_tcp_conn *p = legs[i ^ 1];
			legs[i] = NULL;
			if (p != NULL && p->state != QD_TCP_CLOSED) {
				legs[i ^ 1] = NULL;
				qd_tcp_abort(p, H.now_us);
			}
		}
	}
}

static void
open_legs(struct h *h)
{
	for (unsigned int i = 0; i < 2 * PAIRS; i++) {
		h->peer_port = (uint16_t)(PEER_PORT + i);
		h->peer_nxt = h->peer_iss;
		h->peer_ts = false;
		pre_est(h, OPT_SYNOPTS);
		legs[i] = must_conn(h);
		clear_out(h);
	}
}

static void
test_wheel_abort_neighbour(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_KEEPALIVE);
	open_legs(h); /* all in the same millisecond: one wheel slot */
	closed_hook = abort_partner;
	/* Probes at 1, 1.5 and 2 s of idleness, the timeout at 2.5 s. */
	advance(h, 2499000);
	assert_int_equal(h->n_closed, 0);
	assert_int_equal(h->n_out, 3 * 2 * PAIRS);
	clear_out(h);
	advance(h, 1000);
	assert_int_equal(h->n_closed, 2 * PAIRS);
	assert_int_equal(h->n_out, 2 * PAIRS); /* one RST each, none twice */
	for (unsigned int i = 0; i < h->n_out; i++)
		assert_int_equal(h->out[i].flags, TCP_RST | TCP_ACK);
	for (unsigned int i = 0; i < h->n_out; i++) {
		for (unsigned int j = i + 1; j < h->n_out; j++)
			assert_int_not_equal(h->out[i].dport, h->out[j].dport);
	}
	assert_int_equal(COUNTER(h, timeouts), PAIRS);
	closed_hook = NULL;
	h_fini(h);
}

/* Two legs whose on_closed() each abort the other: the first abort re-enters the stack
 * for the connection that is closing. Each must close once, with one RST. */
static void
abort_other(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	(void)why;
	for (unsigned int i = 0; i < 2; i++) {
		if (legs[i] == c && legs[i ^ 1] != NULL)
			qd_tcp_abort(legs[i ^ 1], H.now_us);
	}
}

static void
test_mutual_abort_in_on_closed(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	open_legs(h);
	closed_hook = abort_other;
	qd_tcp_abort(legs[0], h->now_us);
	closed_hook = NULL;
	assert_int_equal(h->n_closed, 2);
	assert_int_equal(h->n_out, 2);
	check_invariants(h);
	assert_int_equal(h->s->free_count, h->conf.max_connections - 2 * PAIRS + 2);
	h_fini(h);
}

/* A peer announcing MSS 12 with timestamps: after a timeout and an ACK the stack must
 * still be standing (a remote peer must not be able to crash the data plane). */
static void
test_mss_12_with_timestamps(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	pre_syn_rcvd(h, OPT_MSS_12 | OPT_TS);
	peer_send(h, TCP_ACK, h->iss + 1, 0, 0);
	assert_int_equal(h_state(h), QD_TCP_ESTABLISHED);
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(qd_tcp_shutdown(c, h->now_us), 0);
	advance(h, c->rto_us);             /* the FIN again, ssthresh now 0 */
	peer_send(h, TCP_ACK, h->iss + 2, 0, 0); /* its ACK */
	assert_int_equal(h_state(h), QD_TCP_FIN_WAIT_2);
	h_fini(h);
}

/* ---- main ---------------------------------------------------------------------------- */

static bool adopt_allowed;
static bool
adopt_ok_fn(void *ctx, uint32_t local_ip_be)
{
	(void)ctx;
	return adopt_allowed && local_ip_be == rte_cpu_to_be_32(OUR_IP);
}

/* Connection adoption after a VIP takeover (tcp.h): a data segment of a connection this
 * stack never saw becomes ESTABLISHED where the client stands; the client's timestamps
 * and window scale are honoured; bare ACKs (keepalive probes) and anything while adoption
 * is off still get a RST. */
static void
test_adopt_after_takeover(void **state)
{
	(void)state;
	struct h *h = &H;
	h_init(h, CONF_DEFAULT);
	qd_tcp_set_adoption(h->s, adopt_ok_fn, NULL);
	const uint32_t their_ack = 0x12345678u; /* the dead dispatcher's next sequence */
	h->our_tsval = 777000;                   /* its last TSval, as the client echoes it */
	h->peer_ts = true;
	/* off: a RST, no connection */
	adopt_allowed = false;
	clear_out(h);
	peer_send(h, TCP_ACK | TCP_PSH, their_ack, 100, 0);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	assert_int_equal(h->n_out, 1);
	assert_true(h->out[0].flags & TCP_RST);
	/* on, a bare ACK: still a RST (a keepalive probe of a connection whose response
	 * died with its dispatcher: the client must learn at once) */
	adopt_allowed = true;
	clear_out(h);
	peer_send(h, TCP_ACK, their_ack, 0, 0);
	assert_int_equal(h_state(h), QD_TCP_CLOSED);
	assert_true(h->n_out == 1 && (h->out[0].flags & TCP_RST));
	/* on, data: adopted */
	clear_out(h);
	uint32_t seq = h->peer_nxt;
	peer_send(h, TCP_ACK | TCP_PSH, their_ack, 100, 0);
	struct qd_tcp_conn *c = must_conn(h);
	assert_int_equal(c->state, QD_TCP_ESTABLISHED);
	assert_true(h->ev & EV_ACCEPT);
	assert_true(h->ev & EV_DATA);
	assert_int_equal(h->rx_bytes, 100);
	assert_int_equal(c->rcv_nxt, seq + 100);
	assert_int_equal(c->snd_una, their_ack);
	assert_int_equal(COUNTER(h, adopted), 1);
	assert_int_equal(c->snd_wscale, 7); /* PEER_WND 1000 raw: Linux's default shift */
	assert_int_equal(c->snd_wnd, PEER_WND << 7);
	/* our answer continues the client's view of the stream and of the clock */
	clear_out(h);
	app_send(h, c, 300);
	assert_int_equal(h->n_out, 1);
	const struct out_seg *o = &h->out[0];
	assert_int_equal(o->seq, their_ack);
	assert_int_equal(o->ack, seq + 100);
	assert_int_equal(o->len, 300);
	assert_true(o->ts);
	assert_true(o->tsval > 777000); /* newer than the dead dispatcher's (PAWS) */
	assert_int_equal(o->tsecr, h->peer_tsval);
	/* the client acknowledges and the stream goes on */
	peer_send(h, TCP_ACK, their_ack + 300, 0, 0);
	assert_int_equal(c->snd_una, their_ack + 300);
	assert_int_equal(c->state, QD_TCP_ESTABLISHED);
	adopt_allowed = false;
	h_fini(h);
}

int
main(int argc, char **argv)
{
	(void)argc;
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
			    "--no-telemetry", "-l", "0", "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0)
		return 1;
	pool = rte_pktmbuf_pool_create("states", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (pool == NULL)
		return 1;
	const char *kb = getenv("QD_TCP_KNOWN_BUGS");
	run_known_bugs = kb != NULL && strcmp(kb, "1") == 0;

	static const struct CMUnitTest scenarios[] = {
		cmocka_unit_test_teardown(test_delayed_ack_timer, h_cleanup),
		cmocka_unit_test_teardown(test_zero_window_probe, h_cleanup),
		cmocka_unit_test_teardown(test_zero_window_forever, h_cleanup),
		cmocka_unit_test_teardown(test_keepalive_timeout, h_cleanup),
		cmocka_unit_test_teardown(test_keepalive_answered, h_cleanup),
		cmocka_unit_test_teardown(test_adopt_after_takeover, h_cleanup),
		cmocka_unit_test_teardown(test_rto_backoff_karn, h_cleanup),
		cmocka_unit_test_teardown(test_rto_exhausted, h_cleanup),
		cmocka_unit_test_teardown(test_syn_sent_timeout, h_cleanup),
		cmocka_unit_test_teardown(test_syn_rcvd_retransmit, h_cleanup),
		cmocka_unit_test_teardown(test_fast_retransmit_newreno, h_cleanup),
		cmocka_unit_test_teardown(test_challenge_ack_limit, h_cleanup),
		cmocka_unit_test_teardown(test_time_wait_expiry, h_cleanup),
		cmocka_unit_test_teardown(test_fin_wait2_timeout, h_cleanup),
		cmocka_unit_test_teardown(test_fin_wait2_half_close, h_cleanup),
		cmocka_unit_test_teardown(test_ooo_bound, h_cleanup),
		cmocka_unit_test_teardown(test_receive_window, h_cleanup),
		cmocka_unit_test_teardown(test_receive_window_small_reads, h_cleanup),
		cmocka_unit_test_teardown(test_send_backpressure, h_cleanup),
		cmocka_unit_test_teardown(test_fin_ack_after_rto, h_cleanup),
		cmocka_unit_test_teardown(test_wheel_abort_neighbour, h_cleanup),
		cmocka_unit_test_teardown(test_mutual_abort_in_on_closed, h_cleanup),
		cmocka_unit_test_teardown(test_mss_12_with_timestamps, h_cleanup),
	};
	static struct CMUnitTest table[RTE_DIM(rows)];
	for (size_t i = 0; i < RTE_DIM(rows); i++) {
		table[i] = (struct CMUnitTest){
			.name = rows[i].name, .test_func = run_row, .teardown_func = h_cleanup,
			.initial_state = (void *)(uintptr_t)&rows[i],
		};
	}
	int rc = _cmocka_run_group_tests("tcp_states_table", table, RTE_DIM(rows), NULL, NULL);
	rc += _cmocka_run_group_tests("tcp_states_scenarios", scenarios, RTE_DIM(scenarios), NULL,
				      NULL);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return rc == 0 ? 0 : 1;
}
