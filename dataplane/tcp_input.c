/*
 * TCP input: header validation, demultiplexing and the RFC 9293 "segment
 * arrives" procedure, hardened per RFC 5961.
 *
 * The order of checks follows RFC 9293 section 3.10.7.4: sequence number
 * acceptability (with PAWS), RST, SYN, ACK, then text and FIN. Payload is
 * delivered zero-copy: the received mbuf is trimmed to the new bytes and
 * handed to on_data(); segments beyond rcv_nxt but inside the window wait in
 * a bounded, sorted out-of-order queue.
 */
#include <errno.h>
#include <string.h>

#include <rte_tcp.h>

#include "tcp_impl.h"

static bool
parse_options(const uint8_t *p, uint32_t len, struct qd_tcp_seg *seg)
{
	/* Bounded by the option space (<= 40 bytes). */
	uint32_t i = 0;
	while (i < len) {
		uint8_t kind = p[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= len || p[i + 1] < 2 || i + p[i + 1] > len)
			return false;
		uint8_t olen = p[i + 1];
		if (kind == 2 && olen == 4) {
			uint16_t v;
			memcpy(&v, p + i + 2, 2);
			seg->mss = rte_be_to_cpu_16(v);
		} else if (kind == 3 && olen == 3) {
			seg->wscale = (int8_t)u32_min(p[i + 2], TCP_WSCALE_MAX);
		} else if (kind == 8 && olen == 10) {
			uint32_t v, e;
			memcpy(&v, p + i + 2, 4);
			memcpy(&e, p + i + 6, 4);
			seg->ts = true;
			seg->tsval = rte_be_to_cpu_32(v);
			seg->tsecr = rte_be_to_cpu_32(e);
		}
		i += olen;
	}
	return true;
}

static bool
parse_segment(struct qd_tcp_stack *s, struct rte_mbuf *m, struct rte_ipv4_hdr *ip,
	      struct qd_tcp_seg *seg)
{
	uint32_t ihl = rte_ipv4_hdr_len(ip);
	uint32_t l4_off = RTE_ETHER_HDR_LEN + ihl;
	uint32_t l4_len = rte_be_to_cpu_16(ip->total_length) - ihl;
	if (l4_len < sizeof(struct rte_tcp_hdr)) {
		TCP_COUNT(s, bad_header);
		return false;
	}
	struct rte_tcp_hdr *th = rte_pktmbuf_mtod_offset(m, struct rte_tcp_hdr *, l4_off);
	uint32_t doff = (uint32_t)(th->data_off >> 4) * 4;
	if (doff < sizeof(*th) || doff > l4_len) {
		TCP_COUNT(s, bad_header);
		return false;
	}
	if ((m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) != RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
	    rte_ipv4_udptcp_cksum_verify(ip, th) != 0) {
		TCP_COUNT(s, bad_checksum);
		return false;
	}
	memset(seg, 0, sizeof(*seg));
	seg->wscale = -1;
	if (!parse_options((const uint8_t *)(th + 1), doff - sizeof(*th), seg)) {
		TCP_COUNT(s, bad_header);
		return false;
	}
	seg->seq = rte_be_to_cpu_32(th->sent_seq);
	seg->ack = rte_be_to_cpu_32(th->recv_ack);
	seg->wnd = rte_be_to_cpu_16(th->rx_win);
	seg->flags = th->tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH | TCP_ACK);
	seg->len = l4_len - doff;
	seg->payload_off = (uint16_t)(l4_off + doff);
	seg->key.local_ip = ip->dst_addr;
	seg->key.remote_ip = ip->src_addr;
	seg->key.local_port = th->dst_port;
	seg->key.remote_port = th->src_port;
	seg->src_mac = rte_pktmbuf_mtod(m, struct rte_ether_hdr *)->src_addr;
	return true;
}

/* RFC 5961 section 7: challenge ACKs are rate-limited per stack. */
static void
challenge_ack(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	uint64_t second = now_us / 1000000;
	if (second != s->ca_second) {
		s->ca_second = second;
		s->ca_count = 0;
	}
	if (s->ca_count >= s->conf.challenge_ack_per_s) {
		TCP_COUNT(s, challenge_acks_limited);
		return;
	}
	s->ca_count++;
	TCP_COUNT(s, challenge_acks);
	qd_tcp_send_ack(c, now_us);
}

static void
negotiate(struct qd_tcp_conn *c, const struct qd_tcp_seg *seg)
{
	const struct qd_tcp_conf *cf = &c->stack->conf;
	/* Clamp the peer's MSS (Linux: TCP_MIN_MSS 88): a tiny value would make us cut
	 * the send buffer into one mbuf per byte, and MSS - 12 with timestamps must never
	 * reach 0 (a zero cwnd divides by zero in congestion avoidance). */
	uint16_t peer_mss = seg->mss != 0 ? seg->mss : TCP_MSS_DEFAULT;
	if (peer_mss < TCP_MSS_MIN)
		peer_mss = TCP_MSS_MIN;
	c->ws_ok = seg->wscale >= 0;
	c->snd_wscale = c->ws_ok ? (uint8_t)seg->wscale : 0;
	if (!c->ws_ok)
		c->rcv_wscale = 0;
	c->ts_ok = seg->ts;
	if (c->ts_ok)
		c->ts_recent = seg->tsval;
	c->mss = (uint16_t)u32_min(peer_mss, cf->mss);
	if (c->ts_ok)
		c->mss -= 12;
	/* RFC 6928 initial window. */
	c->cwnd = 10u * c->mss;
}

static struct qd_tcp_listener *
find_listener(struct qd_tcp_stack *s, uint16_t port_be)
{
	for (unsigned int i = 0; i < s->listeners_count; i++) {
		if (s->listeners[i].port_be == port_be)
			return &s->listeners[i];
	}
	return NULL;
}

static void
passive_open(struct qd_tcp_stack *s, struct qd_tcp_listener *l, const struct qd_tcp_seg *seg,
	     uint64_t now_us)
{
	if (s->syn_rcvd_count >= s->conf.syn_backlog) {
		TCP_COUNT(s, syn_backlog_full);
		if (!s->conf.syn_cookies)
			return;
		/* Stateless answer: everything needed later is in the cookie. */
		struct qd_tcp_conn tmp;
		memset(&tmp, 0, sizeof(tmp));
		tmp.stack = s;
		tmp.key = seg->key;
		tmp.peer_mac = seg->src_mac;
		tmp.iss = qd_tcp_cookie_make(s, &seg->key, seg->seq,
					     seg->mss != 0 ? seg->mss : TCP_MSS_DEFAULT, now_us);
		tmp.rcv_nxt = seg->seq + 1;
		tmp.mss = s->conf.mss;
		qd_tcp_send_syn(&tmp, true, true, now_us);
		TCP_COUNT(s, cookies_sent);
		return;
	}
	struct qd_tcp_conn *c = qd_tcp_conn_new(s, &seg->key);
	if (c == NULL)
		return;
	c->passive = true;
	c->ops = l->ops;
	c->app = l->app;
	c->peer_mac = seg->src_mac;
	c->irs = seg->seq;
	c->rcv_nxt = seg->seq + 1;
	c->rcv_adv = c->rcv_nxt; /* nothing offered yet; the SYN-ACK offers the window */
	c->iss = qd_tcp_isn(s, &seg->key, now_us);
	c->ts_offset = (uint32_t)(qd_siphash(&s->secret, &seg->key, sizeof(seg->key)) >> 32);
	c->snd_una = c->snd_nxt = c->snd_max = c->iss;
	while (c->rcv_wscale < TCP_WSCALE_MAX && (s->conf.rcvbuf_bytes >> c->rcv_wscale) > 65535)
		c->rcv_wscale++;
	negotiate(c, seg);
	c->snd_wnd = seg->wnd; /* never scaled in a SYN */
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = seg->seq;
	c->last_rx_us = now_us;
	qd_tcp_conn_set_state(c, QD_TCP_SYN_RCVD);
	TCP_COUNT(s, passive_opens);
	qd_tcp_send_syn(c, true, false, now_us);
	qd_tcp_arm_rto(c, now_us);
	qd_tcp_conn_schedule(c);
}

static void
established(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	qd_tcp_conn_set_state(c, QD_TCP_ESTABLISHED);
	c->retries = 0;
	c->rto_at = 0;
	if (s->conf.keepalive_idle_ms > 0)
		c->ka_at = now_us + (uint64_t)s->conf.keepalive_idle_ms * 1000;
	const struct qd_tcp_ops *ops = c->ops;
	if (c->passive) {
		TCP_COUNT(s, accepted);
		if (ops != NULL && ops->on_accept != NULL)
			ops->on_accept(c->app, c);
	} else if (ops != NULL && ops->on_connected != NULL) {
		ops->on_connected(c);
	}
}

/* An ACK for an unknown 4-tuple may complete a SYN cookie handshake. */
static struct qd_tcp_conn *
cookie_open(struct qd_tcp_stack *s, struct qd_tcp_listener *l, const struct qd_tcp_seg *seg,
	    uint64_t now_us)
{
	uint16_t mss;
	if (!qd_tcp_cookie_check(s, &seg->key, seg->seq - 1, seg->ack - 1, now_us, &mss)) {
		TCP_COUNT(s, cookies_invalid);
		return NULL;
	}
	struct qd_tcp_conn *c = qd_tcp_conn_new(s, &seg->key);
	if (c == NULL)
		return NULL;
	TCP_COUNT(s, cookies_valid);
	c->passive = true;
	c->ops = l->ops;
	c->app = l->app;
	c->peer_mac = seg->src_mac;
	c->irs = seg->seq - 1;
	c->rcv_nxt = seg->seq;
	/* The cookie SYN-ACK offered an unscaled window of at most 64 KiB. */
	c->rcv_adv = c->rcv_nxt + u32_min(qd_tcp_rcv_window(c), 65535u);
	c->iss = seg->ack - 1;
	c->snd_una = c->snd_nxt = c->snd_max = seg->ack;
	c->mss = (uint16_t)u32_min(mss, s->conf.mss);
	c->cwnd = 10u * c->mss;
	c->snd_wnd = seg->wnd;
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = seg->seq;
	c->snd_wl2 = seg->ack;
	c->last_rx_us = now_us;
	qd_tcp_conn_set_state(c, QD_TCP_SYN_RCVD);
	established(c, now_us);
	return c;
}

/* A data segment of a connection another dispatcher had (its VIP is ours now): take the
 * connection over where the client stands (tcp.h, qd_tcp_set_adoption). The client's
 * ack is exactly what it received in order (it sends a new request only after the whole
 * previous response), so our bytes continue its stream. */
static struct qd_tcp_conn *
adopt_open(struct qd_tcp_stack *s, struct qd_tcp_listener *l, const struct qd_tcp_seg *seg,
	   uint64_t now_us)
{
	if (s->adopt_ok == NULL || seg->len == 0 ||
	    (seg->flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_ACK)) != TCP_ACK ||
	    !s->adopt_ok(s->adopt_ctx, seg->key.local_ip))
		return NULL;
	struct qd_tcp_conn *c = qd_tcp_conn_new(s, &seg->key);
	if (c == NULL)
		return NULL;
	TCP_COUNT(s, adopted);
	c->passive = true;
	c->ops = l->ops;
	c->app = l->app;
	c->peer_mac = seg->src_mac;
	c->irs = seg->seq - 1;
	c->rcv_nxt = seg->seq;
	/* Our windows as any peer's stack scales them (same configuration). The client's
	 * shift is unknown. Read unscaled, a Linux client's window (raw values like 63,
	 * shift 7) would be too small for one response chunk and the connection would
	 * stall; a raw window under 1 KiB is therefore read with Linux's default shift 7
	 * (a client that truly offers under 1 KiB unscaled is not waiting for a response).
	 * Larger raw values are taken unscaled: small, never too large. */
	c->ws_ok = true;
	c->snd_wscale = seg->wnd < 1024 ? 7 : 0;
	c->rcv_wscale = 0;
	while (c->rcv_wscale < TCP_WSCALE_MAX && (s->conf.rcvbuf_bytes >> c->rcv_wscale) > 65535)
		c->rcv_wscale++;
	c->rcv_adv = c->rcv_nxt + qd_tcp_rcv_window(c);
	c->iss = seg->ack - 1;
	c->snd_una = c->snd_nxt = c->snd_max = seg->ack;
	c->ts_ok = seg->ts;
	c->mss = s->conf.mss;
	if (c->ts_ok) {
		c->ts_recent = seg->tsval;
		/* continue the dead dispatcher's clock (the client echoes its last value), or
		 * the client's PAWS check would drop what we send */
		c->ts_offset = seg->tsecr + 1 - (uint32_t)(now_us / 1000);
		c->mss -= 12;
	} else {
		c->ts_offset = 0;
	}
	c->cwnd = 10u * c->mss;
	c->snd_wnd = (uint32_t)seg->wnd << c->snd_wscale;
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = seg->seq;
	c->snd_wl2 = seg->ack;
	c->last_rx_us = now_us;
	qd_tcp_conn_set_state(c, QD_TCP_SYN_RCVD);
	established(c, now_us);
	return c;
}

static void
syn_sent(struct qd_tcp_conn *c, const struct qd_tcp_seg *seg, uint64_t now_us)
{
	bool ack_ok = false;
	if (seg->flags & TCP_ACK) {
		if (SEQ_LEQ(seg->ack, c->iss) || SEQ_GT(seg->ack, c->snd_max)) {
			if (!(seg->flags & TCP_RST))
				qd_tcp_reply_rst(c->stack, seg);
			return;
		}
		ack_ok = true;
	}
	if (seg->flags & TCP_RST) {
		if (ack_ok) {
			TCP_COUNT(c->stack, resets_in);
			qd_tcp_conn_close(c, QD_TCP_CLOSE_REFUSED);
		}
		return;
	}
	if (!(seg->flags & TCP_SYN))
		return;
	c->irs = seg->seq;
	c->rcv_nxt = seg->seq + 1;
	c->rcv_adv = c->rcv_nxt; /* what our SYN offered was relative to nothing */
	negotiate(c, seg);
	c->snd_wnd = seg->wnd;
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = seg->seq;
	c->last_rx_us = now_us;
	if (ack_ok) {
		c->snd_una = seg->ack;
		c->snd_wl2 = seg->ack;
		if (c->retries == 0)
			qd_tcp_rtt_sample(c, (uint32_t)(now_us - (c->rto_at - c->rto_us)));
		established(c, now_us);
		if (c->state != QD_TCP_CLOSED)
			qd_tcp_send_ack(c, now_us);
		return;
	}
	/* Simultaneous open: answer SYN-ACK from SYN_RCVD. */
	qd_tcp_conn_set_state(c, QD_TCP_SYN_RCVD);
	qd_tcp_send_syn(c, true, false, now_us);
}

/* RFC 9293 table of acceptable segments (3.10.7.4, first check). */
static bool
acceptable(const struct qd_tcp_conn *c, const struct qd_tcp_seg *seg, uint32_t rcv_wnd)
{
	uint32_t len = seg->len + ((seg->flags & TCP_SYN) ? 1 : 0) + ((seg->flags & TCP_FIN) ? 1 : 0);
	if (len == 0) {
		/* The right edge itself is accepted for a bare ACK (as Linux does): a peer
		 * that filled our window sends its ACKs from there, and refusing them would
		 * lose every acknowledgment it has for us until the window opens. */
		return SEQ_GEQ(seg->seq, c->rcv_nxt) && SEQ_LEQ(seg->seq, c->rcv_nxt + rcv_wnd);
	}
	if (rcv_wnd == 0)
		return false;
	uint32_t end = seg->seq + len - 1;
	return (SEQ_GEQ(seg->seq, c->rcv_nxt) && SEQ_LT(seg->seq, c->rcv_nxt + rcv_wnd)) ||
	       (SEQ_GEQ(end, c->rcv_nxt) && SEQ_LT(end, c->rcv_nxt + rcv_wnd));
}

static void
update_window(struct qd_tcp_conn *c, const struct qd_tcp_seg *seg)
{
	if (SEQ_LT(c->snd_wl1, seg->seq) ||
	    (c->snd_wl1 == seg->seq && SEQ_LEQ(c->snd_wl2, seg->ack))) {
		c->snd_wnd = seg->wnd << c->snd_wscale;
		c->snd_wl1 = seg->seq;
		c->snd_wl2 = seg->ack;
		if (c->snd_wnd > c->max_snd_wnd)
			c->max_snd_wnd = c->snd_wnd;
	}
}

/* Drop fully acknowledged chunks; trim a partly acknowledged head. */
static uint32_t
ack_chunks(struct qd_tcp_conn *c, uint32_t ack)
{
	struct qd_tcp_stack *s = c->stack;
	uint32_t freed = 0;
	while (c->sq_head != NULL) {
		struct rte_mbuf *m = c->sq_head;
		struct qd_tcp_mbuf_meta *meta = tcp_meta(s, m);
		uint32_t end = meta->seq + m->data_len;
		if (SEQ_LEQ(end, ack)) {
			c->sq_head = meta->link;
			if (c->sq_send == m)
				c->sq_send = meta->link;
			if (c->sq_tail == m)
				c->sq_tail = NULL;
			c->sq_bytes -= m->data_len;
			freed += m->data_len;
			rte_pktmbuf_free(m);
			continue;
		}
		if (SEQ_GT(ack, meta->seq)) {
			uint32_t cut = ack - meta->seq;
			rte_pktmbuf_adj(m, (uint16_t)cut);
			meta->seq = ack;
			c->sq_bytes -= cut;
			freed += cut;
		}
		break;
	}
	return freed;
}

static void
congestion_on_ack(struct qd_tcp_conn *c, uint32_t acked, uint64_t now_us)
{
	if (c->in_recovery) {
		if (SEQ_GEQ(c->snd_una, c->recover)) {
			/* Full acknowledgment (RFC 6582 3.2 step 3). */
			uint32_t flight = c->snd_max - c->snd_una;
			c->cwnd = u32_min(c->ssthresh, u32_max(flight, (uint32_t)c->mss) + c->mss);
			c->in_recovery = false;
			c->dupacks = 0;
		} else {
			/* Partial acknowledgment: retransmit the next hole, deflate. */
			qd_tcp_retransmit_head(c, now_us);
			c->cwnd = (c->cwnd > acked ? c->cwnd - acked : 0) + c->mss;
			qd_tcp_arm_rto(c, now_us);
		}
		return;
	}
	c->dupacks = 0;
	if (c->cwnd < c->ssthresh)
		c->cwnd += u32_min(acked, (uint32_t)c->mss);
	else
		c->cwnd += u32_max(1u, (uint32_t)c->mss * c->mss / c->cwnd);
}

static void
dup_ack(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	TCP_COUNT(s, dup_acks);
	if (c->in_recovery) {
		c->cwnd += c->mss; /* inflate: a segment left the network */
		return;
	}
	if (++c->dupacks < 3) {
		/* Limited transmit (RFC 3042): a new segment for each of the first two
		 * duplicate ACKs keeps the ACK clock going in small windows, so a loss can
		 * still be repaired by fast retransmit instead of a timeout. */
		uint32_t saved = c->cwnd;
		c->cwnd += (uint32_t)c->dupacks * c->mss;
		qd_tcp_output(c, now_us);
		c->cwnd = saved;
		return;
	}
	if (c->dupacks != 3)
		return;
	/* Fast retransmit (RFC 5681 3.2), NewReno recovery point (RFC 6582). */
	uint32_t flight = c->snd_max - c->snd_una;
	c->ssthresh = u32_max(flight / 2, 2u * c->mss);
	c->recover = c->snd_max;
	c->in_recovery = true;
	TCP_COUNT(s, fast_retransmits);
	qd_tcp_retransmit_head(c, now_us);
	c->cwnd = c->ssthresh + 3u * c->mss;
}

/* Returns false when the segment must go no further. */
static bool
process_ack(struct qd_tcp_conn *c, const struct qd_tcp_seg *seg, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->state == QD_TCP_SYN_RCVD) {
		if (SEQ_LEQ(seg->ack, c->snd_una) || SEQ_GT(seg->ack, c->snd_max)) {
			qd_tcp_reply_rst(s, seg);
			return false;
		}
		c->snd_una = seg->ack;
		c->snd_wnd = seg->wnd << c->snd_wscale;
		c->snd_wl1 = seg->seq;
		c->snd_wl2 = seg->ack;
		if (c->retries == 0 && !c->ts_ok)
			qd_tcp_rtt_sample(c, (uint32_t)(now_us - (c->rto_at - c->rto_us)));
		established(c, now_us);
		if (c->state == QD_TCP_CLOSED)
			return false;
	}
	/* RFC 5961 section 5.2: the ACK must lie in [snd_una - max_snd_wnd, snd_max]. */
	if (SEQ_GT(seg->ack, c->snd_max) ||
	    SEQ_LT(seg->ack, c->snd_una - u32_max(c->max_snd_wnd, 1u))) {
		challenge_ack(c, now_us);
		return false;
	}
	/* RFC 9293 3.8.6.1: a peer that answers our zero-window probes is alive; only
	 * unanswered probes count towards giving up. */
	if (c->persist)
		c->retries = 0;
	uint32_t old_wnd = c->snd_wnd;
	if (SEQ_GT(seg->ack, c->snd_una)) {
		uint32_t acked = seg->ack - c->snd_una;
		if (c->ts_ok && seg->tsecr != 0)
			qd_tcp_rtt_sample(c, (qd_tcp_ts_now(c, now_us) - seg->tsecr) * 1000u);
		else if (c->rtt_timing && SEQ_GT(seg->ack, c->rtt_seq)) {
			c->rtt_timing = false;
			qd_tcp_rtt_sample(c, (uint32_t)(now_us - c->rtt_start_us));
		}
		c->snd_una = seg->ack;
		if (SEQ_LT(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		ack_chunks(c, seg->ack);
		if (c->fin_sent && SEQ_GT(seg->ack, c->fin_seq))
			c->fin_acked = true;
		c->retries = 0;
		c->persist = false;
		congestion_on_ack(c, acked, now_us);
		/* RFC 6298 5.2/5.3: stop when all is acknowledged, else restart. */
		if (c->snd_una == c->snd_max)
			c->rto_at = 0;
		else if (!c->in_recovery)
			qd_tcp_arm_rto(c, now_us);
		update_window(c, seg);
		if (c->want_writable && qd_tcp_send_space(c) > 0) {
			c->want_writable = false;
			const struct qd_tcp_ops *ops = c->ops;
			if (ops != NULL && ops->on_writable != NULL)
				ops->on_writable(c);
			if (c->state == QD_TCP_CLOSED)
				return false;
		}
	} else {
		update_window(c, seg);
		if (seg->ack == c->snd_una && seg->len == 0 && c->snd_wnd == old_wnd &&
		    !(seg->flags & (TCP_SYN | TCP_FIN)) && c->snd_max != c->snd_una)
			dup_ack(c, now_us);
	}
	if (c->snd_wnd > 0 && c->persist) {
		c->persist = false;
		c->rto_at = 0;
	}
	/* Our FIN acknowledged: state transitions of RFC 9293 3.10.7.4, fifth check. */
	if (c->fin_acked) {
		switch ((enum qd_tcp_state)c->state) {
		case QD_TCP_FIN_WAIT_1:
			qd_tcp_conn_set_state(c, QD_TCP_FIN_WAIT_2);
			c->tw_at = now_us + (uint64_t)s->conf.fin_wait2_ms * 1000;
			break;
		case QD_TCP_CLOSING:
			qd_tcp_conn_enter_time_wait(c, now_us);
			return false;
		case QD_TCP_LAST_ACK:
			qd_tcp_conn_close(c, QD_TCP_CLOSE_NORMAL);
			return false;
		default:
			break;
		}
	}
	return true;
}

static void
deliver(struct qd_tcp_conn *c, struct rte_mbuf *m, uint32_t len)
{
	struct qd_tcp_stack *s = c->stack;
	c->rcv_nxt += len;
	c->rcv_unconsumed += len;
	TCP_COUNT_N(s, bytes_in, len);
	const struct qd_tcp_ops *ops = c->ops;
	if (ops != NULL && ops->on_data != NULL) {
		ops->on_data(c, m);
	} else {
		/* Nobody reads (the application is gone): discard. */
		rte_pktmbuf_free(m);
		c->rcv_unconsumed -= len;
	}
}

/* Keep an out-of-window-order segment, sorted, without overlaps already held. */
static void
ooo_insert(struct qd_tcp_conn *c, struct rte_mbuf *m, uint32_t seq, uint32_t len, bool fin)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->ooo_count >= QD_TCP_OOO_MAX) {
		TCP_COUNT(s, ooo_dropped);
		rte_pktmbuf_free(m);
		return;
	}
	struct rte_mbuf **pp = &c->ooo_head;
	while (*pp != NULL) {
		struct qd_tcp_mbuf_meta *mm = tcp_meta(s, *pp);
		if (mm->seq == seq && (*pp)->pkt_len >= len) { /* duplicate */
			rte_pktmbuf_free(m);
			return;
		}
		if (SEQ_GT(mm->seq, seq))
			break;
		pp = &mm->link;
	}
	struct qd_tcp_mbuf_meta *meta = tcp_meta(s, m);
	meta->seq = seq;
	meta->fin = fin;
	meta->link = *pp;
	*pp = m;
	c->ooo_count++;
	c->ooo_bytes += len;
	TCP_COUNT(s, ooo_queued);
}

static void handle_fin(struct qd_tcp_conn *c, uint64_t now_us);

/* Pull queued segments that became in order. */
static void
ooo_drain(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	/* Bounded by QD_TCP_OOO_MAX. */
	while (c->ooo_head != NULL && c->state != QD_TCP_CLOSED) {
		struct rte_mbuf *m = c->ooo_head;
		struct qd_tcp_mbuf_meta *meta = tcp_meta(s, m);
		if (SEQ_GT(meta->seq, c->rcv_nxt))
			return;
		c->ooo_head = meta->link;
		c->ooo_count--;
		uint32_t len = m->pkt_len;
		c->ooo_bytes -= len;
		bool fin = meta->fin;
		uint32_t end = meta->seq + len;
		if (SEQ_LEQ(end, c->rcv_nxt)) {
			rte_pktmbuf_free(m);
			if (fin && end == c->rcv_nxt)
				handle_fin(c, now_us);
			continue;
		}
		uint32_t skip = c->rcv_nxt - meta->seq;
		rte_pktmbuf_adj(m, (uint16_t)skip);
		deliver(c, m, len - skip);
		if (fin && c->state != QD_TCP_CLOSED)
			handle_fin(c, now_us);
	}
}

static void
handle_fin(struct qd_tcp_conn *c, uint64_t now_us)
{
	if (c->peer_fin)
		return;
	c->peer_fin = true;
	c->rcv_nxt++;
	qd_tcp_send_ack(c, now_us);
	bool to_time_wait = false;
	switch ((enum qd_tcp_state)c->state) {
	case QD_TCP_SYN_RCVD:
	case QD_TCP_ESTABLISHED:
		qd_tcp_conn_set_state(c, QD_TCP_CLOSE_WAIT);
		break;
	case QD_TCP_FIN_WAIT_1:
		if (c->fin_acked)
			to_time_wait = true;
		else
			qd_tcp_conn_set_state(c, QD_TCP_CLOSING);
		break;
	case QD_TCP_FIN_WAIT_2:
		c->tw_at = 0;
		to_time_wait = true;
		break;
	default:
		return;
	}
	/* The application hears of the FIN before the connection may leave it. */
	const struct qd_tcp_ops *ops = c->ops;
	if (ops != NULL && ops->on_peer_fin != NULL)
		ops->on_peer_fin(c);
	if (to_time_wait && c->state != QD_TCP_CLOSED)
		qd_tcp_conn_enter_time_wait(c, now_us);
}

/* Text and FIN (RFC 9293 3.10.7.4, seventh and eighth checks). Consumes <m>. */
static void
process_data(struct qd_tcp_conn *c, struct rte_mbuf *m, const struct qd_tcp_seg *seg,
	     uint64_t now_us)
{
	bool fin = (seg->flags & TCP_FIN) != 0;
	uint32_t seq = seg->seq;
	uint32_t len = seg->len;
	bool can_receive = c->state == QD_TCP_ESTABLISHED || c->state == QD_TCP_FIN_WAIT_1 ||
			   c->state == QD_TCP_FIN_WAIT_2;
	if (len == 0 && !fin) {
		rte_pktmbuf_free(m);
		return;
	}
	if (!can_receive || c->peer_fin) {
		/* Data after the peer's FIN, or in CLOSE_WAIT/CLOSING/LAST_ACK: ignore. */
		rte_pktmbuf_free(m);
		if (c->state == QD_TCP_TIME_WAIT && fin)
			qd_tcp_send_ack(c, now_us);
		return;
	}
	rte_pktmbuf_adj(m, seg->payload_off);
	if (rte_pktmbuf_pkt_len(m) > len)
		rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_pkt_len(m) - len));
	/* Trim what we already have on the left. */
	if (SEQ_LT(seq, c->rcv_nxt)) {
		uint32_t skip = u32_min(c->rcv_nxt - seq, len);
		rte_pktmbuf_adj(m, (uint16_t)skip);
		seq += skip;
		len -= skip;
	}
	/* And what lies beyond the window on the right (a FIN there is dropped too). */
	uint32_t wnd = u32_max(qd_tcp_rcv_window(c), tcp_adv_room(c));
	if (SEQ_GT(seq + len, c->rcv_nxt + wnd)) {
		uint32_t over = seq + len - (c->rcv_nxt + wnd);
		over = u32_min(over, len);
		rte_pktmbuf_trim(m, (uint16_t)over);
		len -= over;
		fin = false;
	}
	if (seq != c->rcv_nxt) {
		/* A hole before this segment: keep it, and say what we miss at once. */
		if (len > 0 || fin)
			ooo_insert(c, m, seq, len, fin);
		else
			rte_pktmbuf_free(m);
		qd_tcp_send_ack(c, now_us);
		return;
	}
	bool had_ooo = c->ooo_head != NULL;
	if (len > 0)
		deliver(c, m, len);
	else
		rte_pktmbuf_free(m);
	if (c->state == QD_TCP_CLOSED)
		return;
	if (fin)
		handle_fin(c, now_us);
	else if (had_ooo)
		ooo_drain(c, now_us);
	if (c->state == QD_TCP_CLOSED || c->state == QD_TCP_TIME_WAIT)
		return;
	if (had_ooo) {
		qd_tcp_send_ack(c, now_us); /* a hole was filled: tell the sender now */
		return;
	}
	/* Delayed ACK: every second full segment at once, otherwise within 40 ms. */
	if (len > 0 && ++c->segs_unacked >= 2)
		qd_tcp_send_ack(c, now_us);
	else if (len > 0 && c->dack_at == 0)
		c->dack_at = now_us + QD_TCP_DELACK_US;
}

static void
conn_input(struct qd_tcp_conn *c, struct rte_mbuf *m, const struct qd_tcp_seg *seg,
	   uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->state == QD_TCP_SYN_SENT) {
		syn_sent(c, seg, now_us);
		rte_pktmbuf_free(m);
		return;
	}
	if (c->state == QD_TCP_TIME_WAIT && (seg->flags & TCP_SYN) && !(seg->flags & TCP_ACK) &&
	    SEQ_GT(seg->seq, c->rcv_nxt)) {
		/* A new incarnation of the pair (RFC 6191 in spirit): recycle TIME_WAIT. */
		qd_tcp_conn_close(c, QD_TCP_CLOSE_NORMAL);
		struct qd_tcp_listener *l = find_listener(s, seg->key.local_port);
		if (l != NULL)
			passive_open(s, l, seg, now_us);
		rte_pktmbuf_free(m);
		return;
	}
	/* PAWS (RFC 7323 5.3). */
	if (c->ts_ok && seg->ts && !(seg->flags & TCP_RST) &&
	    (int32_t)(seg->tsval - c->ts_recent) < 0) {
		TCP_COUNT(s, paws_rejected);
		qd_tcp_send_ack(c, now_us);
		rte_pktmbuf_free(m);
		return;
	}
	uint32_t rcv_wnd = u32_max(qd_tcp_rcv_window(c), tcp_adv_room(c));
	if (!acceptable(c, seg, rcv_wnd)) {
		/* RFC 9293 3.10.7.4: with a zero receive window, still take valid ACKs, or
		 * both sides can wait on each other forever. */
		if (rcv_wnd == 0 && (seg->flags & (TCP_ACK | TCP_RST | TCP_SYN)) == TCP_ACK &&
		    c->state != QD_TCP_SYN_RCVD && c->state != QD_TCP_TIME_WAIT) {
			c->last_rx_us = now_us;
			if (process_ack(c, seg, now_us) && c->state != QD_TCP_CLOSED)
				qd_tcp_output(c, now_us);
		}
		if (c->state != QD_TCP_CLOSED && !(seg->flags & TCP_RST))
			qd_tcp_send_ack(c, now_us);
		rte_pktmbuf_free(m);
		return;
	}
	if ((seg->flags & TCP_RST) && c->state == QD_TCP_TIME_WAIT) {
		/* RFC 1337: a RST must not cut TIME_WAIT short (old duplicates would then be
		 * accepted by a new incarnation). */
		rte_pktmbuf_free(m);
		return;
	}
	if (seg->flags & TCP_RST) {
		/* RFC 5961 3.2: only an exact match resets; in-window gets a challenge. */
		if (seg->seq == c->rcv_nxt) {
			TCP_COUNT(s, resets_in);
			/* RFC 9293: in SYN_RCVD reached by an active open, "connection refused". */
			qd_tcp_conn_close(c, c->state == QD_TCP_SYN_RCVD && !c->passive
						     ? QD_TCP_CLOSE_REFUSED
						     : QD_TCP_CLOSE_RESET);
		} else {
			challenge_ack(c, now_us);
		}
		rte_pktmbuf_free(m);
		return;
	}
	if (seg->flags & TCP_SYN) {
		/* RFC 5961 4.2: any SYN in a synchronised state gets a challenge ACK. */
		challenge_ack(c, now_us);
		rte_pktmbuf_free(m);
		return;
	}
	if (!(seg->flags & TCP_ACK)) {
		rte_pktmbuf_free(m);
		return;
	}
	c->last_rx_us = now_us;
	c->ka_probes = 0;
	/* RFC 7323 4.3: remember the timestamp of the segment that covers last_ack_sent. */
	if (c->ts_ok && seg->ts && SEQ_LEQ(seg->seq, c->last_ack_sent))
		c->ts_recent = seg->tsval;
	if (c->state == QD_TCP_TIME_WAIT) {
		if (seg->flags & TCP_FIN) {
			qd_tcp_send_ack(c, now_us);
			c->tw_at = now_us + (uint64_t)s->conf.time_wait_ms * 1000;
		}
		rte_pktmbuf_free(m);
		return;
	}
	if (!process_ack(c, seg, now_us)) {
		rte_pktmbuf_free(m);
		return;
	}
	/* tcp.fin_wait2_ms bounds a silent FIN_WAIT_2, not a half-closed connection that is
	 * still receiving. */
	if (c->state == QD_TCP_FIN_WAIT_2)
		c->tw_at = now_us + (uint64_t)s->conf.fin_wait2_ms * 1000;
	process_data(c, m, seg, now_us);
	if (c->state != QD_TCP_CLOSED)
		qd_tcp_output(c, now_us);
}

void
qd_tcp_input(struct qd_tcp_stack *s, struct rte_mbuf *m, struct rte_ipv4_hdr *ip,
	     uint64_t now_us)
{
	struct qd_tcp_seg seg;
	if (!parse_segment(s, m, ip, &seg)) {
		rte_pktmbuf_free(m);
		return;
	}
	TCP_COUNT(s, segs_in);
	qd_tcp_stack_enter(s);
	struct qd_tcp_conn *c = qd_tcp_conn_lookup(s, &seg.key);
	if (c != NULL) {
		conn_input(c, m, &seg, now_us);
		if (c->state != QD_TCP_CLOSED)
			qd_tcp_conn_schedule(c);
		qd_tcp_stack_leave(s);
		return;
	}
	struct qd_tcp_listener *l = find_listener(s, seg.key.local_port);
	if (l == NULL) {
		TCP_COUNT(s, no_listener);
		qd_tcp_reply_rst(s, &seg);
	} else if ((seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN) {
		passive_open(s, l, &seg, now_us);
	} else if ((seg.flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_ACK &&
		   ((s->conf.syn_cookies && (c = cookie_open(s, l, &seg, now_us)) != NULL) ||
		    (c = adopt_open(s, l, &seg, now_us)) != NULL)) {
		if (c->state != QD_TCP_CLOSED) {
			process_data(c, m, &seg, now_us);
			m = NULL;
			if (c->state != QD_TCP_CLOSED)
				qd_tcp_conn_schedule(c);
		}
	} else if (seg.flags & TCP_ACK) {
		/* RFC 9293 3.10.7.2: an ACK to a listener gets a RST; a segment with none of
		 * SYN, ACK, RST is dropped. */
		qd_tcp_reply_rst(s, &seg);
	}
	rte_pktmbuf_free(m);
	qd_tcp_stack_leave(s);
}
