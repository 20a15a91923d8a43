/*
 * TCP output: building segments, the send loop, retransmission and RTT.
 *
 * A segment is a fresh header mbuf (Ethernet, IPv4 and TCP written into its
 * headroom) chained to an indirect clone of the queued payload chunk, so the
 * payload is never copied and stays queued for retransmission while the
 * frame is in flight. Checksums are computed in software over the chain.
 */
#include <errno.h>
#include <string.h>

#include <rte_tcp.h>

#include "ipv4.h"
#include "tcp_impl.h"

#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOPT_WS 3
#define TCPOPT_TS 8

uint32_t
qd_tcp_ts_now(const struct qd_tcp_conn *c, uint64_t now_us)
{
	return (uint32_t)(now_us / 1000) + c->ts_offset;
}

uint32_t
qd_tcp_rcv_window(const struct qd_tcp_conn *c)
{
	uint32_t buf = c->stack->conf.rcvbuf_bytes;
	uint32_t used = c->rcv_unconsumed + c->ooo_bytes;
	uint32_t wnd = used >= buf ? 0 : buf - used;
	/* Receiver silly-window avoidance: do not offer less than a segment. */
	if (wnd < c->mss && wnd < buf / 2)
		wnd = 0;
	uint32_t max = (uint32_t)65535 << c->rcv_wscale;
	return u32_min(wnd, max);
}

/* The window field to send, never shrinking the right edge already offered. */
static uint16_t
window_field(struct qd_tcp_conn *c, bool syn)
{
	uint32_t wnd = qd_tcp_rcv_window(c);
	if (wnd < tcp_adv_room(c))
		wnd = tcp_adv_room(c);
	uint32_t field = syn ? u32_min(wnd, 65535u) : wnd >> c->rcv_wscale;
	if (field > 65535)
		field = 65535;
	uint32_t offered = syn ? field : field << c->rcv_wscale;
	if (SEQ_GT(c->rcv_nxt + offered, c->rcv_adv))
		c->rcv_adv = c->rcv_nxt + offered;
	return (uint16_t)field;
}

static uint8_t *
put_ts(uint8_t *p, uint32_t tsval, uint32_t tsecr)
{
	*p++ = TCPOPT_NOP;
	*p++ = TCPOPT_NOP;
	*p++ = TCPOPT_TS;
	*p++ = 10;
	uint32_t v = rte_cpu_to_be_32(tsval), e = rte_cpu_to_be_32(tsecr);
	memcpy(p, &v, 4);
	memcpy(p + 4, &e, 4);
	return p + 8;
}

struct seg_out {
	uint32_t seq;
	uint8_t flags;
	bool syn_opts;     /* MSS, and WS/TS when negotiated or offered */
	bool cookie;       /* SYN-ACK of a SYN cookie: no WS, no TS */
	struct rte_mbuf *payload; /* chunk to clone, or NULL */
};

/* Build and send one segment of <c>. Returns 0 or -ENOMEM. */
static int
emit(struct qd_tcp_conn *c, const struct seg_out *o, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	struct rte_mbuf *m = rte_pktmbuf_alloc(s->pool);
	struct rte_mbuf *data = NULL;
	if (m != NULL && o->payload != NULL) {
		data = rte_pktmbuf_clone(o->payload, s->pool);
		if (data == NULL) {
			rte_pktmbuf_free(m);
			m = NULL;
		}
	}
	if (m == NULL) {
		TCP_COUNT(s, no_mbuf);
		return -ENOMEM;
	}
	uint8_t opts[40];
	uint8_t *p = opts;
	bool syn = (o->flags & TCP_SYN) != 0;
	if (syn && o->syn_opts) {
		uint16_t mss = rte_cpu_to_be_16(s->conf.mss);
		*p++ = TCPOPT_MSS;
		*p++ = 4;
		memcpy(p, &mss, 2);
		p += 2;
		bool active = !(o->flags & TCP_ACK);
		if (!o->cookie && (active || c->ws_ok)) {
			*p++ = TCPOPT_NOP;
			*p++ = TCPOPT_WS;
			*p++ = 3;
			*p++ = c->rcv_wscale;
		}
		if (!o->cookie && (active || c->ts_ok))
			p = put_ts(p, qd_tcp_ts_now(c, now_us), c->ts_recent);
	} else if (c->ts_ok) {
		p = put_ts(p, qd_tcp_ts_now(c, now_us), c->ts_recent);
	}
	uint16_t opt_len = (uint16_t)(p - opts);
	uint16_t hdr_len = (uint16_t)(RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr) +
				      sizeof(struct rte_tcp_hdr) + opt_len);
	char *h = rte_pktmbuf_append(m, hdr_len);
	RTE_ASSERT(h != NULL);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)h;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	uint32_t plen = data != NULL ? data->data_len : 0;

	eth->dst_addr = c->peer_mac;
	eth->src_addr = s->our_mac;
	eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(hdr_len - RTE_ETHER_HDR_LEN + plen));
	ip->packet_id = 0;
	ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = QD_IPV4_TTL;
	ip->next_proto_id = IPPROTO_TCP;
	ip->src_addr = c->key.local_ip;
	ip->dst_addr = c->key.remote_ip;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	th->src_port = c->key.local_port;
	th->dst_port = c->key.remote_port;
	th->sent_seq = rte_cpu_to_be_32(o->seq);
	th->recv_ack = (o->flags & TCP_ACK) ? rte_cpu_to_be_32(c->rcv_nxt) : 0;
	th->data_off = (uint8_t)(((sizeof(*th) + opt_len) / 4) << 4);
	th->tcp_flags = o->flags;
	th->rx_win = (o->flags & TCP_RST) ? 0 : rte_cpu_to_be_16(window_field(c, syn));
	th->tcp_urp = 0;
	memcpy(th + 1, opts, opt_len);
	th->cksum = 0;
	if (data != NULL)
		rte_pktmbuf_chain(m, data);
	th->cksum = rte_ipv4_udptcp_cksum_mbuf(m, ip, RTE_ETHER_HDR_LEN + sizeof(*ip));
	m->ol_flags &= ~(RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_L4_MASK);

	if (o->flags & TCP_ACK) {
		c->last_ack_sent = c->rcv_nxt;
		c->dack_at = 0;
		c->segs_unacked = 0;
	}
	TCP_COUNT(s, segs_out);
	TCP_COUNT_N(s, bytes_out, plen);
	s->tx(s->io_ctx, m);
	return 0;
}

void
qd_tcp_send_ack(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct seg_out o = {.seq = c->snd_nxt, .flags = TCP_ACK};
	emit(c, &o, now_us);
}

void
qd_tcp_send_syn(struct qd_tcp_conn *c, bool ack, bool cookie, uint64_t now_us)
{
	struct seg_out o = {
		.seq = c->iss, .flags = (uint8_t)(TCP_SYN | (ack ? TCP_ACK : 0)),
		.syn_opts = true, .cookie = cookie,
	};
	if (emit(c, &o, now_us) == 0 && SEQ_LEQ(c->snd_nxt, c->iss)) {
		c->snd_nxt = c->iss + 1;
		if (SEQ_GT(c->snd_nxt, c->snd_max))
			c->snd_max = c->snd_nxt;
	}
}

/* A segment the peer must answer with an ACK: seq one below what it expects. Used for
 * zero-window probes and keepalives (no payload byte is needed). */
void
qd_tcp_send_probe(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct seg_out o = {.seq = c->snd_una - 1, .flags = TCP_ACK};
	emit(c, &o, now_us);
}

void
qd_tcp_send_rst(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct seg_out o = {.seq = c->snd_nxt, .flags = TCP_RST | TCP_ACK};
	if (emit(c, &o, now_us) == 0)
		TCP_COUNT(c->stack, resets_out);
}

/* RST for a segment that matches no connection (RFC 9293 3.10.7.1). */
void
qd_tcp_reply_rst(struct qd_tcp_stack *s, const struct qd_tcp_seg *seg)
{
	if (seg->flags & TCP_RST)
		return;
	struct qd_tcp_conn tmp;
	memset(&tmp, 0, sizeof(tmp));
	tmp.stack = s;
	tmp.key = seg->key;
	tmp.peer_mac = seg->src_mac;
	struct seg_out o;
	memset(&o, 0, sizeof(o));
	if (seg->flags & TCP_ACK) {
		o.seq = seg->ack;
		o.flags = TCP_RST;
	} else {
		o.seq = 0;
		o.flags = TCP_RST | TCP_ACK;
		tmp.rcv_nxt = seg->seq + seg->len + ((seg->flags & TCP_SYN) ? 1 : 0) +
			      ((seg->flags & TCP_FIN) ? 1 : 0);
	}
	if (emit(&tmp, &o, 0) == 0)
		TCP_COUNT(s, resets_out);
}

void
qd_tcp_arm_rto(struct qd_tcp_conn *c, uint64_t now_us)
{
	uint64_t rto = (uint64_t)c->rto_us;
	c->rto_at = now_us + u32_min(rto, (uint64_t)QD_TCP_RTO_MAX_US);
}

void
qd_tcp_rtt_sample(struct qd_tcp_conn *c, uint32_t rtt_us)
{
	/* RFC 6298 section 2, with alpha 1/8 and beta 1/4. */
	if (rtt_us == 0)
		rtt_us = 1;
	if (c->srtt_us == 0) {
		c->srtt_us = rtt_us;
		c->rttvar_us = rtt_us / 2;
	} else {
		uint32_t delta = c->srtt_us > rtt_us ? c->srtt_us - rtt_us : rtt_us - c->srtt_us;
		c->rttvar_us = (3 * c->rttvar_us + delta) / 4;
		c->srtt_us = (7 * c->srtt_us + rtt_us) / 8;
	}
	uint32_t rto = c->srtt_us + u32_max(1000u, 4 * c->rttvar_us);
	c->rto_us = u32_min(u32_max(rto, QD_TCP_RTO_MIN_US), QD_TCP_RTO_MAX_US);
}

static void
free_chain_list(struct qd_tcp_stack *s, struct rte_mbuf *m)
{
	while (m != NULL) {
		struct rte_mbuf *next = tcp_meta(s, m)->link;
		rte_pktmbuf_free(m);
		m = next;
	}
}

void
qd_tcp_sq_free(struct qd_tcp_conn *c)
{
	free_chain_list(c->stack, c->sq_head);
	c->sq_head = c->sq_tail = c->sq_send = NULL;
	c->sq_bytes = 0;
}

void
qd_tcp_ooo_free(struct qd_tcp_conn *c)
{
	free_chain_list(c->stack, c->ooo_head);
	c->ooo_head = NULL;
	c->ooo_count = 0;
	c->ooo_bytes = 0;
}

void
qd_tcp_retransmit_head(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->sq_head != NULL && c->sq_head != c->sq_send) {
		struct seg_out o = {
			.seq = tcp_meta(s, c->sq_head)->seq, .flags = TCP_ACK | TCP_PSH,
			.payload = c->sq_head,
		};
		if (emit(c, &o, now_us) == 0)
			TCP_COUNT(s, retransmits);
	} else if (c->fin_sent && !c->fin_acked) {
		struct seg_out o = {.seq = c->fin_seq, .flags = TCP_ACK | TCP_FIN};
		if (emit(c, &o, now_us) == 0)
			TCP_COUNT(s, retransmits);
	}
	c->rtt_timing = false; /* Karn */
}

static bool
can_send_data(const struct qd_tcp_conn *c)
{
	switch ((enum qd_tcp_state)c->state) {
	case QD_TCP_ESTABLISHED:
	case QD_TCP_CLOSE_WAIT:
	case QD_TCP_FIN_WAIT_1:
	case QD_TCP_CLOSING:
	case QD_TCP_LAST_ACK:
		return true;
	default:
		return false;
	}
}

/* Send what the congestion and receive windows allow, then a FIN if it is due. */
void
qd_tcp_output(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	if (!can_send_data(c))
		return;
	uint32_t wnd = u32_min(c->cwnd, c->snd_wnd);
	/* Bounded: each pass sends one queued chunk or stops. */
	while (c->sq_send != NULL) {
		struct rte_mbuf *chunk = c->sq_send;
		uint32_t seq = tcp_meta(s, chunk)->seq;
		uint32_t flight = c->snd_nxt - c->snd_una;
		if (flight + chunk->data_len > wnd)
			break;
		struct seg_out o = {.seq = seq, .flags = TCP_ACK | TCP_PSH, .payload = chunk};
		if (emit(c, &o, now_us) != 0)
			break;
		if (SEQ_LT(seq, c->snd_max))
			TCP_COUNT(s, retransmits);
		else if (!c->rtt_timing && !c->ts_ok) {
			c->rtt_timing = true;
			c->rtt_seq = seq;
			c->rtt_start_us = now_us;
		}
		c->snd_nxt = seq + chunk->data_len;
		if (SEQ_GT(c->snd_nxt, c->snd_max))
			c->snd_max = c->snd_nxt;
		c->sq_send = tcp_meta(s, chunk)->link;
		if (c->rto_at == 0 || c->persist) {
			c->persist = false;
			qd_tcp_arm_rto(c, now_us);
		}
	}
	if (c->sq_send == NULL && c->fin_queued && !c->fin_sent) {
		c->fin_seq = c->snd_nxt;
		struct seg_out o = {.seq = c->fin_seq, .flags = TCP_ACK | TCP_FIN};
		if (emit(c, &o, now_us) == 0) {
			c->fin_sent = true;
			c->snd_nxt = c->fin_seq + 1;
			if (SEQ_GT(c->snd_nxt, c->snd_max))
				c->snd_max = c->snd_nxt;
			if (c->state == QD_TCP_ESTABLISHED)
				qd_tcp_conn_set_state(c, QD_TCP_FIN_WAIT_1);
			else if (c->state == QD_TCP_CLOSE_WAIT)
				qd_tcp_conn_set_state(c, QD_TCP_LAST_ACK);
			if (c->rto_at == 0)
				qd_tcp_arm_rto(c, now_us);
		}
	}
	/* After a timeout went back to the FIN's position: send the same FIN again. */
	if (c->sq_send == NULL && c->fin_sent && !c->fin_acked && c->snd_nxt == c->fin_seq) {
		struct seg_out o = {.seq = c->fin_seq, .flags = TCP_ACK | TCP_FIN};
		if (emit(c, &o, now_us) == 0) {
			TCP_COUNT(s, retransmits);
			c->snd_nxt = c->fin_seq + 1;
			if (c->rto_at == 0)
				qd_tcp_arm_rto(c, now_us);
		}
	}
	/* Zero window with data waiting and nothing in flight: probe (persist timer). */
	if (c->sq_send != NULL && c->snd_nxt == c->snd_una && c->rto_at == 0) {
		c->persist = true;
		qd_tcp_arm_rto(c, now_us);
	}
}

void
qd_tcp_rto_fire(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	uint32_t limit = (c->state == QD_TCP_SYN_SENT || c->state == QD_TCP_SYN_RCVD)
				 ? QD_TCP_SYN_RETRIES
				 : QD_TCP_DATA_RETRIES;
	if (c->retries >= limit) {
		TCP_COUNT(s, timeouts);
		if (c->state != QD_TCP_SYN_SENT)
			qd_tcp_send_rst(c, now_us);
		qd_tcp_conn_close(c, QD_TCP_CLOSE_TIMEOUT);
		return;
	}
	c->retries++;
	c->rto_us = u32_min(c->rto_us * 2, QD_TCP_RTO_MAX_US); /* back-off */
	if (c->persist) {
		TCP_COUNT(s, zero_window_probes);
		qd_tcp_send_probe(c, now_us);
		qd_tcp_arm_rto(c, now_us);
		return;
	}
	TCP_COUNT(s, rto_expired);
	if (c->state == QD_TCP_SYN_SENT || c->state == QD_TCP_SYN_RCVD) {
		qd_tcp_send_syn(c, c->state == QD_TCP_SYN_RCVD, false, now_us);
		qd_tcp_arm_rto(c, now_us);
		return;
	}
	/* RFC 5681 (4): one segment of window, half the flight as threshold; go back to
	 * the first unacknowledged byte. */
	uint32_t flight = c->snd_max - c->snd_una;
	c->ssthresh = u32_max(flight / 2, 2u * c->mss);
	c->cwnd = c->mss;
	c->in_recovery = false;
	c->dupacks = 0;
	c->rtt_timing = false;
	c->snd_nxt = c->snd_una;
	c->sq_send = c->sq_head;
	bool sent_any = false;
	if (c->sq_send != NULL || (c->fin_queued && !c->fin_acked)) {
		uint32_t before = c->snd_nxt;
		/* A zero window must not stop the retransmission of the head. */
		uint32_t saved = c->snd_wnd;
		if (c->snd_wnd == 0)
			c->snd_wnd = c->mss;
		qd_tcp_output(c, now_us);
		c->snd_wnd = saved;
		sent_any = c->snd_nxt != before;
	}
	if (!sent_any)
		qd_tcp_retransmit_head(c, now_us);
	qd_tcp_arm_rto(c, now_us);
}
