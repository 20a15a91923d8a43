/*
 * libFuzzer target for the TCP segment input path: qd_ipv4_check() and qd_tcp_input()
 * on one stack, with clock advances, qd_tcp_timers() and application calls in between,
 * and the stack's invariants checked after every step.
 *
 * Each input runs on a fresh stack (deterministic: fixed secret, fixed start time) that
 * listens on port 80; peer 0 completes a handshake before the input's steps run. The
 * input is a mode byte, then steps until the input ends (at most STEPS_MAX):
 *
 *   mode: bit 0 syn_backlog 0 (SYN cookies), bit 1 peer 0 uses timestamps, bit 2
 *         keepalive on, bit 3 time_wait_max 0, bit 4 4 KiB buffers, bit 5 an active open
 *         (peer 4) at the start, bit 6 the application holds received data, bit 7 one
 *         challenge ACK per second.
 *   step: byte op = kind << 5 | peer (peer % PEERS; peers 0-3 to port 80, 4 the active
 *         open's server, 5 a port nobody listens on)
 *     kind 0-3 a segment from that peer, 6 more bytes:
 *         flags, seq offset (int8 x {1, 64, 1448, 2^20}[kind]) from rcv_nxt,
 *         ack offset (int8), ctl (bits 0-1 ack scale as for seq, bit 2 ack from snd_una
 *         instead of snd_max, bit 3 usual options (MSS/WS/TS on a SYN, TS otherwise),
 *         bit 4 an old TSval, bit 5 bad checksum, bit 6 window 0, bit 7 raw options
 *         follow: a length byte (% 41) and that many bytes),
 *         payload length / 8, window high byte
 *     kind 4 clock: 1 byte, (b & 63) + 1 times {1, 20, 500, 15000} ms [b >> 6], timers
 *     kind 5 application: 2 bytes: action (send b2 * 6 bytes, shutdown, read what is
 *         held, abort, connect, hold on/off), argument
 *     kind 6 raw: 24 bytes: a TCP header (ports replaced by the peer's) whose data
 *         offset, flags and numbers are taken as they are, then IP total-length delta
 *         (int8), payload length / 8, ctl (bit 0 bad checksum, bit 1 IP fragment)
 *     kind 7 the same as kind 0
 *
 * Invariants after every step: snd_una <= snd_nxt <= snd_max (sequence space), the send
 * queue is contiguous and adds up to sq_bytes, the out-of-order queue is sorted, bounded
 * and adds up, per-state counts match the connection blocks, every connection with a
 * deadline is in the timer wheel and none is overdue after qd_tcp_timers(), every frame
 * sent is well formed, mbufs in use stay within what the queues and the application
 * hold; after every input the pool is full again.
 *
 * Built with clang -fsanitize=fuzzer,address,undefined by tests/fuzz/run.sh (or by meson
 * when the project's compiler is clang). FUZZ_TRACE=1 in the environment prints every
 * step with the connections' states, for reading a reproducer.
 */
#include <errno.h>
#include <stdint.h>
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
#define STEPS_MAX 512
#define HELD_MAX 64
#define PEERS 6
#define PEER_ACTIVE 4
#define PEER_NO_LISTENER 5
#define LISTEN_PORT 80
#define NO_LISTEN_PORT 81
#define SERVER_PORT 9000
#define OUR_IP RTE_IPV4(10, 0, 0, 1)
#define PEER_IP RTE_IPV4(10, 0, 0, 2)
#define T0_US 10000000ull
#define PAYLOAD_MAX 1400

/* Checked in every build type: the fuzzer is worthless with asserts compiled out. */
#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__,  \
				__LINE__);                                                 \
			abort();                                                           \
		}                                                                          \
	} while (0)

struct peer {
	uint16_t port;      /* the peer's port */
	uint16_t our_port;  /* ours */
	uint32_t rcv_ref;   /* the stack's last ACK to it: where it sends next */
	uint32_t snd_ref;   /* the end of what the stack sent it */
	uint32_t tsval;
	uint32_t ts_echo;   /* the stack's last TSval */
};

struct held {
	struct qd_tcp_conn *c;
	struct rte_mbuf *m;
};

struct fz {
	struct qd_tcp_stack *s;
	struct qd_tcp_conf conf;
	uint64_t now_us;
	struct peer peers[PEERS];
	bool hold;
	struct held held[HELD_MAX];
	unsigned int n_held;
	const uint8_t *p;
	size_t left;
};

static struct rte_mempool *pool;
static struct fz F;
static bool trace; /* FUZZ_TRACE=1: print every step (for reading a reproducer) */

static bool
take(void *out, size_t n)
{
	if (F.left < n)
		return false;
	memcpy(out, F.p, n);
	F.p += n;
	F.left -= n;
	return true;
}

static struct peer *
peer_of_port(uint16_t port)
{
	for (unsigned int i = 0; i < PEERS; i++) {
		if (F.peers[i].port == port)
			return &F.peers[i];
	}
	return NULL;
}

/* Every frame the stack sends must be well formed; it teaches the peers their numbers. */
static void
tx(void *ctx, struct rte_mbuf *m)
{
	(void)ctx;
	uint8_t buf[2048 + 128];
	uint32_t n = rte_pktmbuf_pkt_len(m);
	CHECK(n >= RTE_ETHER_HDR_LEN + 40 && n <= sizeof(buf));
	const uint8_t *p = rte_pktmbuf_read(m, 0, n, buf);
	CHECK(p != NULL);
	if (p != buf)
		memcpy(buf, p, n);
	rte_pktmbuf_free(m);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(buf + RTE_ETHER_HDR_LEN);
	CHECK(rte_raw_cksum(ip, sizeof(*ip)) == 0xffff);
	CHECK(rte_be_to_cpu_16(ip->total_length) == n - RTE_ETHER_HDR_LEN);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	CHECK(rte_ipv4_udptcp_cksum_verify(ip, th) == 0);
	uint32_t doff = (uint32_t)(th->data_off >> 4) * 4;
	CHECK(doff >= 20 && doff <= 60 && doff <= n - RTE_ETHER_HDR_LEN - 20);
	uint32_t len = n - RTE_ETHER_HDR_LEN - 20 - doff;
	CHECK(len <= F.conf.mss);
	struct peer *pe = peer_of_port(rte_be_to_cpu_16(th->dst_port));
	if (pe == NULL)
		return;
	if ((th->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		pe->our_port = rte_be_to_cpu_16(th->src_port);
	uint32_t seq = rte_be_to_cpu_32(th->sent_seq);
	uint32_t end = seq + len + ((th->tcp_flags & TCP_SYN) ? 1 : 0) +
		       ((th->tcp_flags & TCP_FIN) ? 1 : 0);
	if ((th->tcp_flags & TCP_SYN) || SEQ_GT(end, pe->snd_ref))
		pe->snd_ref = end;
	if (th->tcp_flags & TCP_ACK)
		pe->rcv_ref = rte_be_to_cpu_32(th->recv_ack);
	const uint8_t *o = (const uint8_t *)(th + 1);
	for (uint32_t i = 0; i + 1 < doff - 20 && o[i] != 0;) {
		if (o[i] == 1) {
			i++;
			continue;
		}
		if (o[i] == 8 && o[i + 1] == 10 && i + 10 <= doff - 20) {
			uint32_t v;
			memcpy(&v, o + i + 2, 4);
			pe->ts_echo = rte_be_to_cpu_32(v);
		}
		CHECK(o[i + 1] >= 2);
		i += o[i + 1];
	}
}

static bool
resolve(void *ctx, uint32_t ip_be, struct rte_ether_addr *mac)
{
	(void)ctx;
	*mac = (struct rte_ether_addr){{2, 0, 0, 0, 0, 2}};
	return ip_be == rte_cpu_to_be_32(PEER_IP);
}

/* ---- the application ---------------------------------------------------------------- */

static void
drop_held(struct qd_tcp_conn *c, bool consume)
{
	unsigned int j = 0;
	for (unsigned int i = 0; i < F.n_held; i++) {
		if (c != NULL && F.held[i].c != c) {
			F.held[j++] = F.held[i];
			continue;
		}
		uint32_t len = rte_pktmbuf_pkt_len(F.held[i].m);
		rte_pktmbuf_free(F.held[i].m);
		if (consume)
			qd_tcp_recv_consumed(F.held[i].c, len, F.now_us);
	}
	F.n_held = j;
}

static void
app_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	uint32_t len = rte_pktmbuf_pkt_len(m);
	CHECK(len > 0);
	CHECK(c->state != QD_TCP_CLOSED);
	if (F.hold && F.n_held < HELD_MAX) {
		F.held[F.n_held++] = (struct held){c, m};
		return;
	}
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, len, F.now_us);
}

static void
app_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	CHECK((unsigned int)why <= QD_TCP_CLOSE_REFUSED);
	drop_held(c, false);
}

static void
app_peer_fin(struct qd_tcp_conn *c)
{
	CHECK(c->peer_fin);
}

static void
app_connected(struct qd_tcp_conn *c)
{
	CHECK(c->state == QD_TCP_ESTABLISHED && !c->passive);
}

/* Send space came back: take it, a little, to keep the queue moving. */
static void
app_writable(struct qd_tcp_conn *c)
{
	CHECK(qd_tcp_send_space(c) > 0);
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	if (m == NULL)
		return;
	CHECK(rte_pktmbuf_append(m, 100) != NULL);
	int rc = qd_tcp_send(c, m, F.now_us);
	if (rc == -ENOMEM)
		qd_tcp_abort(c, F.now_us);
	else if (rc != 0)
		rte_pktmbuf_free(m);
}

static const struct qd_tcp_ops conn_ops = {
	.on_connected = app_connected, .on_data = app_data, .on_writable = app_writable,
	.on_peer_fin = app_peer_fin, .on_closed = app_closed,
};

static void
app_accept(void *app, struct qd_tcp_conn *c)
{
	(void)app;
	CHECK(c->state == QD_TCP_ESTABLISHED);
	qd_tcp_conn_set_app(c, &conn_ops, NULL);
}

static const struct qd_tcp_ops listen_ops = {.on_accept = app_accept};

/* ---- invariants ------------------------------------------------------------------- */

static unsigned int
check_conn(const struct qd_tcp_stack *s, const struct qd_tcp_conn *c)
{
	CHECK(SEQ_LEQ(c->snd_una, c->snd_nxt));
	CHECK(SEQ_LEQ(c->snd_nxt, c->snd_max));
	CHECK(c->mss <= s->conf.mss && c->mss >= 48);
	CHECK(SEQ_LEQ(c->rcv_adv, c->rcv_nxt + s->conf.rcvbuf_bytes));
	/* Send queue: contiguous from snd_una, sums to sq_bytes, sq_send inside it. */
	unsigned int chunks = 0;
	uint32_t bytes = 0;
	bool send_seen = c->sq_send == NULL;
	const struct rte_mbuf *prev = NULL;
	uint32_t prev_seq = 0;
	for (struct rte_mbuf *m = c->sq_head; m != NULL; m = tcp_meta(s, m)->link) {
		CHECK(++chunks <= 1u << 20);
		const struct qd_tcp_mbuf_meta *meta = tcp_meta(s, m);
		if (prev == NULL)
			CHECK(meta->seq == c->snd_una);
		else
			CHECK(meta->seq == prev_seq + prev->data_len);
		prev_seq = meta->seq;
		CHECK(m->nb_segs == 1 && m->data_len > 0);
		bytes += m->data_len;
		send_seen |= m == c->sq_send;
		prev = m;
	}
	CHECK(prev == c->sq_tail);
	CHECK(bytes == c->sq_bytes);
	CHECK(send_seen);
	/* Out-of-order queue: sorted, bounded, sums to ooo_bytes. */
	unsigned int ooo = 0;
	uint32_t ooo_bytes = 0;
	prev = NULL;
	for (struct rte_mbuf *m = c->ooo_head; m != NULL; m = tcp_meta(s, m)->link) {
		CHECK(++ooo <= QD_TCP_OOO_MAX);
		uint32_t seq = tcp_meta(s, m)->seq;
		if (prev != NULL)
			CHECK(SEQ_LEQ(prev_seq, seq));
		prev_seq = seq;
		ooo_bytes += m->pkt_len;
		prev = m;
	}
	CHECK(ooo == c->ooo_count);
	CHECK(ooo_bytes == c->ooo_bytes);
	/* Timers: armed means in the wheel. */
	if (c->rto_at != 0 || c->dack_at != 0 || c->ka_at != 0 || c->tw_at != 0)
		CHECK(c->in_wheel);
	return 2 * chunks + ooo;
}

/* <after_timers>: qd_tcp_timers(now) just ran, so nothing may be overdue. */
static void
check_stack(bool after_timers)
{
	const struct qd_tcp_stack *s = F.s;
	uint32_t count[QD_TCP_STATE_MAX] = {0};
	uint32_t live = 0, syn_rcvd = 0;
	unsigned int mbufs = 0;
	CHECK(s->depth == 0 && s->zombies == NULL);
	for (uint32_t i = 0; i < s->conf.max_connections; i++) {
		const struct qd_tcp_conn *c = &s->conns[i];
		if (c->state == QD_TCP_CLOSED) {
			CHECK(!c->in_wheel);
			continue;
		}
		live++;
		count[c->state]++;
		syn_rcvd += c->state == QD_TCP_SYN_RCVD && c->passive;
		mbufs += check_conn(s, c);
		if (after_timers) {
			uint64_t floor_us = F.now_us / 1000 * 1000;
			const uint64_t d[] = {c->rto_at, c->dack_at, c->ka_at, c->tw_at};
			for (unsigned int k = 0; k < 4; k++)
				CHECK(d[k] == 0 || d[k] > floor_us);
		}
	}
	for (unsigned int st = 0; st < QD_TCP_STATE_MAX; st++)
		CHECK(s->state_count[st] == count[st]);
	CHECK(s->syn_rcvd_count == syn_rcvd);
	CHECK(s->time_wait_count == count[QD_TCP_TIME_WAIT]);
	CHECK(s->time_wait_count <= s->conf.time_wait_max);
	CHECK(s->free_count + live == s->conf.max_connections);
	unsigned int in_use = POOL_SIZE - rte_mempool_avail_count(pool);
	CHECK(in_use <= mbufs + F.n_held + 2);
}

/* ---- input ------------------------------------------------------------------------ */

struct frame {
	uint8_t flags;
	uint32_t seq, ack;
	uint16_t wnd;
	uint8_t opts[40];
	uint32_t opt_len;
	uint32_t len;
	int32_t ip_len_delta;
	uint8_t data_off;    /* 0: from opt_len */
	bool bad_csum;
	bool fragment;
};

static void
send_frame(struct peer *pe, const struct frame *fr)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	if (m == NULL)
		return;
	uint32_t l4 = 20 + fr->opt_len + fr->len;
	uint32_t frame_len = RTE_ETHER_HDR_LEN + 20 + l4;
	uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)frame_len);
	CHECK(p != NULL);
	memset(p, 0, frame_len);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	eth->src_addr = (struct rte_ether_addr){{2, 0, 0, 0, 0, 2}};
	eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(20 + l4 + fr->ip_len_delta));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->fragment_offset = fr->fragment ? RTE_BE16(RTE_IPV4_HDR_MF_FLAG) : 0;
	ip->src_addr = rte_cpu_to_be_32(PEER_IP);
	ip->dst_addr = rte_cpu_to_be_32(OUR_IP);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	th->src_port = rte_cpu_to_be_16(pe->port);
	th->dst_port = rte_cpu_to_be_16(pe->our_port);
	th->sent_seq = rte_cpu_to_be_32(fr->seq);
	th->recv_ack = rte_cpu_to_be_32(fr->ack);
	th->data_off = fr->data_off != 0 ? fr->data_off
					 : (uint8_t)(((20 + fr->opt_len) / 4) << 4);
	th->tcp_flags = fr->flags;
	th->rx_win = rte_cpu_to_be_16(fr->wnd);
	memcpy(th + 1, fr->opts, fr->opt_len);
	uint8_t *payload = (uint8_t *)(th + 1) + fr->opt_len;
	for (uint32_t i = 0; i < fr->len; i++)
		payload[i] = (uint8_t)(fr->seq + i);
	/* Over what the IP header claims, when that lies inside the frame. */
	if (fr->ip_len_delta <= 0 && (int32_t)l4 + fr->ip_len_delta >= 20)
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	if (fr->bad_csum)
		th->cksum ^= 0x1;
	struct rte_ipv4_hdr *vip;
	enum qd_drop_reason reason;
	if (qd_ipv4_check(m, &vip, &reason) != 0) {
		rte_pktmbuf_free(m);
		return;
	}
	if (vip->next_proto_id != IPPROTO_TCP) {
		rte_pktmbuf_free(m);
		return;
	}
	qd_tcp_input(F.s, m, vip, F.now_us);
}

static struct qd_tcp_conn *
conn_of(const struct peer *pe)
{
	struct qd_tcp_key k = {
		.local_ip = rte_cpu_to_be_32(OUR_IP), .remote_ip = rte_cpu_to_be_32(PEER_IP),
		.local_port = rte_cpu_to_be_16(pe->our_port),
		.remote_port = rte_cpu_to_be_16(pe->port),
	};
	return qd_tcp_conn_lookup(F.s, &k);
}

static void
add_ts(struct frame *fr, struct peer *pe, bool old)
{
	if (fr->opt_len + 12 > sizeof(fr->opts))
		return;
	uint32_t v = rte_cpu_to_be_32(old ? pe->tsval - 100000 : ++pe->tsval);
	uint32_t e = rte_cpu_to_be_32(pe->ts_echo);
	uint8_t *o = fr->opts + fr->opt_len;
	o[0] = 1;
	o[1] = 1;
	o[2] = 8;
	o[3] = 10;
	memcpy(o + 4, &v, 4);
	memcpy(o + 8, &e, 4);
	fr->opt_len += 12;
}

static const int32_t scales[4] = {1, 64, 1448, 1 << 20};

static bool
step_segment(struct peer *pe, unsigned int kind)
{
	uint8_t b[6];
	if (!take(b, sizeof(b)))
		return false;
	struct frame fr = {.flags = b[0]};
	struct qd_tcp_conn *c = conn_of(pe);
	uint32_t rcv = pe->rcv_ref, una = pe->snd_ref, max = pe->snd_ref;
	if (c != NULL && c->state != QD_TCP_SYN_SENT) {
		rcv = c->rcv_nxt;
		una = c->snd_una;
		max = c->snd_max;
	}
	uint8_t ctl = b[3];
	fr.seq = rcv + (uint32_t)((int8_t)b[1] * scales[kind & 3]);
	fr.ack = ((ctl & 4) ? una : max) + (uint32_t)((int8_t)b[2] * scales[ctl & 3]);
	if (ctl & 8) {
		if (fr.flags & TCP_SYN) {
			const uint8_t syn_opts[] = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};
			memcpy(fr.opts, syn_opts, sizeof(syn_opts));
			fr.opt_len = sizeof(syn_opts);
		}
		add_ts(&fr, pe, (ctl & 16) != 0);
	}
	if (ctl & 0x80) {
		uint8_t n;
		if (!take(&n, 1))
			return false;
		n = (uint8_t)(n % 41);
		if (n > sizeof(fr.opts) - fr.opt_len)
			n = (uint8_t)(sizeof(fr.opts) - fr.opt_len);
		if (!take(fr.opts + fr.opt_len, n))
			return false;
		fr.opt_len = (fr.opt_len + n + 3) & ~3u;
		if (fr.opt_len > sizeof(fr.opts))
			fr.opt_len = sizeof(fr.opts);
	}
	fr.bad_csum = (ctl & 32) != 0;
	fr.len = (uint32_t)b[4] * 8;
	if (fr.len > PAYLOAD_MAX)
		fr.len = PAYLOAD_MAX;
	fr.wnd = (ctl & 64) ? 0 : (uint16_t)(b[5] << 8 | 0xff);
	send_frame(pe, &fr);
	return true;
}

static bool
step_raw(struct peer *pe)
{
	uint8_t b[24];
	if (!take(b, sizeof(b)))
		return false;
	struct frame fr;
	memset(&fr, 0, sizeof(fr));
	memcpy(&fr.seq, b + 4, 4);
	memcpy(&fr.ack, b + 8, 4);
	fr.seq = rte_be_to_cpu_32(fr.seq);
	fr.ack = rte_be_to_cpu_32(fr.ack);
	fr.data_off = b[12];
	fr.flags = b[13];
	fr.wnd = (uint16_t)(b[14] << 8 | b[15]);
	memcpy(fr.opts, b + 16, 4); /* 4 bytes of whatever the data offset makes of them */
	fr.opt_len = 4;
	fr.ip_len_delta = (int8_t)b[20];
	fr.len = (uint32_t)b[21] * 8 > PAYLOAD_MAX ? PAYLOAD_MAX : (uint32_t)b[21] * 8;
	fr.bad_csum = b[22] & 1;
	fr.fragment = (b[22] & 2) != 0;
	if ((int32_t)(20 + 20 + fr.opt_len + fr.len) + fr.ip_len_delta < 20)
		fr.ip_len_delta = 0;
	send_frame(pe, &fr);
	return true;
}

static bool
step_clock(void)
{
	static const uint64_t units_ms[4] = {1, 20, 500, 15000};
	uint8_t b;
	if (!take(&b, 1))
		return false;
	F.now_us += ((uint64_t)(b & 63) + 1) * units_ms[b >> 6] * 1000;
	qd_tcp_timers(F.s, F.now_us);
	check_stack(true);
	return true;
}

static void
connect_active(void)
{
	struct peer *pe = &F.peers[PEER_ACTIVE];
	struct qd_tcp_conn *c = qd_tcp_connect(F.s, rte_cpu_to_be_32(PEER_IP), SERVER_PORT,
					       &conn_ops, NULL, F.now_us);
	if (c != NULL) {
		pe->our_port = rte_be_to_cpu_16(c->key.local_port);
		pe->rcv_ref = 0x7000000;
	}
}

static bool
step_app(struct peer *pe)
{
	uint8_t b[2];
	if (!take(b, sizeof(b)))
		return false;
	struct qd_tcp_conn *c = conn_of(pe);
	switch (b[0] % 8) {
	case 0:
	case 1: {
		if (c == NULL)
			break;
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		if (m == NULL)
			break;
		uint32_t len = (uint32_t)b[1] * 6 + 1;
		char *p = rte_pktmbuf_append(m, (uint16_t)len);
		CHECK(p != NULL);
		memset(p, 'q', len);
		int rc = qd_tcp_send(c, m, F.now_us);
		if (rc == -ENOMEM)
			qd_tcp_abort(c, F.now_us); /* <m> consumed, the stream broken */
		else if (rc != 0)
			rte_pktmbuf_free(m);
		break;
	}
	case 2:
		if (c != NULL)
			qd_tcp_shutdown(c, F.now_us);
		break;
	case 3:
		drop_held(NULL, true);
		break;
	case 4:
		if (c != NULL && (b[1] & 7) == 0)
			qd_tcp_abort(c, F.now_us);
		break;
	case 5:
		connect_active();
		break;
	case 6:
		F.hold = !F.hold;
		break;
	case 7:
		if (c != NULL)
			qd_tcp_recv_consumed(c, 0, F.now_us);
		break;
	}
	return true;
}

static struct qd_tcp_conf
make_conf(uint8_t mode)
{
	struct qd_tcp_conf cf = {
		.max_connections = 8, .syn_backlog = (mode & 1) ? 0 : 4,
		.time_wait_max = (mode & 8) ? 0 : 4, .time_wait_ms = 2000,
		.fin_wait2_ms = 5000, .sndbuf_bytes = (mode & 16) ? 4096 : 65536,
		.rcvbuf_bytes = (mode & 16) ? 4096 : 65536, .mss = 1460,
		.keepalive_idle_ms = (mode & 4) ? 2000 : 0, .keepalive_intvl_ms = 500,
		.keepalive_probes = 2, .challenge_ack_per_s = (mode & 128) ? 1 : 100,
		.syn_cookies = true, .local_port_min = 40000, .local_port_max = 40099,
		.steer_index = 0, .steer_count = 1,
	};
	return cf;
}

/* Connection adoption (tcp.h) on for inputs whose mode byte has bit 1 and 5 set: data
 * segments of unknown connections then open connections without a handshake. */
static bool
adopt_ok(void *ctx, uint32_t local_ip_be)
{
	(void)ctx;
	(void)local_ip_be;
	return true;
}

static void
setup(uint8_t mode)
{
	memset(&F.peers, 0, sizeof(F.peers));
	F.n_held = 0;
	F.hold = (mode & 64) != 0;
	F.now_us = T0_US;
	F.conf = make_conf(mode);
	struct qd_siphash_key key = {0x1122334455667788ull, 0x99aabbccddeeff00ull};
	struct rte_ether_addr mac = {{2, 0, 0, 0, 0, 1}};
	F.s = qd_tcp_stack_create(&F.conf, 0, pool, &mac, rte_cpu_to_be_32(OUR_IP), &key, tx,
				  resolve, NULL);
	CHECK(F.s != NULL);
	CHECK(qd_tcp_listen(F.s, LISTEN_PORT, &listen_ops, NULL) == 0);
	if ((mode & 0x22) == 0x22)
		qd_tcp_set_adoption(F.s, adopt_ok, NULL);
	qd_tcp_timers(F.s, F.now_us);
	for (unsigned int i = 0; i < PEERS; i++) {
		struct peer *pe = &F.peers[i];
		pe->port = (uint16_t)(5000 + i);
		pe->our_port = i == PEER_NO_LISTENER ? NO_LISTEN_PORT : LISTEN_PORT;
		pe->rcv_ref = 0xfffff000u + i * 0x10000000u; /* the peers' ISNs */
		pe->snd_ref = 0x12345678u;
		pe->tsval = 1000;
	}
	F.peers[PEER_ACTIVE].port = SERVER_PORT;
	/* Peer 0: a complete handshake. */
	struct peer *pe = &F.peers[0];
	struct frame syn = {.flags = TCP_SYN, .seq = pe->rcv_ref, .wnd = 65535};
	const uint8_t syn_opts[] = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};
	memcpy(syn.opts, syn_opts, sizeof(syn_opts));
	syn.opt_len = sizeof(syn_opts);
	if (mode & 2)
		add_ts(&syn, pe, false);
	send_frame(pe, &syn);
	struct frame ack = {.flags = TCP_ACK, .seq = pe->rcv_ref, .ack = pe->snd_ref, .wnd = 1000};
	if (mode & 2)
		add_ts(&ack, pe, false);
	send_frame(pe, &ack);
	struct qd_tcp_conn *c = conn_of(pe);
	CHECK(c != NULL && c->state == QD_TCP_ESTABLISHED);
	if (mode & 32)
		connect_active();
	check_stack(false);
}

static void
teardown(void)
{
	drop_held(NULL, false);
	qd_tcp_stack_destroy(F.s);
	F.s = NULL;
	CHECK(rte_mempool_avail_count(pool) == POOL_SIZE);
}

static void
trace_step(unsigned int n, uint8_t op)
{
	static const char *const kinds[8] = {"seg", "seg", "seg", "seg", "clock", "app", "raw",
					     "seg"};
	fprintf(stderr, "step %3u %-5s peer %u t=%llu ms:", n, kinds[op >> 5], (op & 31) % PEERS,
		(unsigned long long)(F.now_us / 1000));
	for (unsigned int i = 0; i < PEERS; i++) {
		struct qd_tcp_conn *c = conn_of(&F.peers[i]);
		if (c != NULL)
			fprintf(stderr, " %u:%s", i,
				qd_tcp_state_name((enum qd_tcp_state)c->state));
	}
	fprintf(stderr, "\n");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* libFuzzer's own arguments are not EAL's. */
	char *eal_argv[] = {"fuzz_tcp_input", "--no-huge", "-m", "256", "--no-shconf",
			    "--no-pci", "--no-telemetry", "-l", "0", "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0) {
		fprintf(stderr, "fuzz_tcp_input: EAL init failed\n");
		abort();
	}
	pool = rte_pktmbuf_pool_create("fuzz", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	CHECK(pool != NULL);
	const char *t = getenv("FUZZ_TRACE");
	trace = t != NULL && strcmp(t, "1") == 0;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	F.p = data + 1;
	F.left = size - 1;
	setup(data[0]);
	for (unsigned int n = 0; n < STEPS_MAX; n++) {
		uint8_t op;
		if (!take(&op, 1))
			break;
		struct peer *pe = &F.peers[(op & 31) % PEERS];
		unsigned int kind = op >> 5;
		bool ok;
		switch (kind) {
		case 4:
			ok = step_clock();
			break;
		case 5:
			ok = step_app(pe);
			break;
		case 6:
			ok = step_raw(pe);
			break;
		default:
			ok = step_segment(pe, kind);
			break;
		}
		if (!ok)
			break;
		check_stack(false);
		if (trace)
			trace_step(n, op);
	}
	teardown();
	return 0;
}
