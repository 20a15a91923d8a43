/*
 * Internals of the per-lcore TCP stack shared by tcp_conn.c, tcp_input.c and
 * tcp_output.c. Nothing outside those files includes this header.
 */
#ifndef QD_TCP_IMPL_H
#define QD_TCP_IMPL_H

#include <rte_hash.h>
#include <rte_mbuf_dyn.h>

#include "lcore_stats.h"
#include "tcp.h"

#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) > 0)
#define SEQ_GEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) >= 0)

/* Plain functions: DPDK's RTE_MIN/RTE_MAX shadow each other when nested. */
static inline uint32_t
u32_min(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static inline uint32_t
u32_max(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

#define TCP_FIN RTE_TCP_FIN_FLAG
#define TCP_SYN RTE_TCP_SYN_FLAG
#define TCP_RST RTE_TCP_RST_FLAG
#define TCP_PSH RTE_TCP_PSH_FLAG
#define TCP_ACK RTE_TCP_ACK_FLAG

#define TCP_HDR_ROOM (RTE_ETHER_HDR_LEN + 20 + 60)
#define TCP_WSCALE_MAX 14
#define TCP_MSS_DEFAULT 536
#define TCP_MSS_MIN 88

/* 4-tuple in network byte order, local side first. */
struct qd_tcp_key {
	uint32_t local_ip;
	uint32_t remote_ip;
	uint16_t local_port;
	uint16_t remote_port;
};

/* Per-mbuf metadata of queued segments (send queue and out-of-order queue),
 * kept in an mbuf dynamic field so chunks link without touching m->next. */
struct qd_tcp_mbuf_meta {
	struct rte_mbuf *link;
	uint32_t seq;
	uint8_t fin;
};

struct qd_tcp_seg {
	uint32_t seq;
	uint32_t ack;
	uint32_t len;     /* payload bytes */
	uint32_t wnd;     /* raw window field */
	uint8_t flags;
	uint16_t mss;     /* 0 = absent */
	int8_t wscale;    /* -1 = absent */
	bool ts;
	uint32_t tsval;
	uint32_t tsecr;
	uint16_t payload_off;
	struct qd_tcp_key key;
	struct rte_ether_addr src_mac;
};

struct qd_tcp_conn {
	struct qd_tcp_key key;
	struct qd_tcp_stack *stack;
	const struct qd_tcp_ops *ops;
	void *app;
	struct rte_ether_addr peer_mac;
	uint8_t state;
	bool passive;
	bool ws_ok;
	bool ts_ok;
	bool fin_queued;     /* the app shut down its side */
	bool fin_sent;
	bool fin_acked;
	bool peer_fin;       /* peer's FIN consumed into rcv_nxt */
	bool notified;       /* on_closed already called */
	bool want_writable;
	bool in_recovery;
	bool persist;
	bool rtt_timing;
	bool zombie;         /* released: freed when the stack unwinds */
	bool closing;        /* inside qd_tcp_conn_close: nested closes are no-ops */
	uint8_t snd_wscale;
	uint8_t rcv_wscale;
	uint8_t dupacks;
	uint8_t retries;
	uint8_t ka_probes;
	uint8_t segs_unacked;
	uint8_t acct_slot;   /* 1 + the accounting slot it is counted in; 0 = none */
	uint16_t mss;        /* payload bytes per segment we send */
	uint16_t ooo_count;
	uint32_t pool_index;

	/* Send sequence space. */
	uint32_t iss;
	uint32_t snd_una;
	uint32_t snd_nxt;
	uint32_t snd_max;
	uint32_t snd_wnd;
	uint32_t max_snd_wnd;
	uint32_t snd_wl1;
	uint32_t snd_wl2;
	uint32_t fin_seq;
	uint32_t cwnd;
	uint32_t ssthresh;
	uint32_t recover;
	uint32_t sq_bytes;          /* queued, sent or not */
	struct rte_mbuf *sq_head;   /* oldest unacknowledged chunk */
	struct rte_mbuf *sq_tail;
	struct rte_mbuf *sq_send;   /* first chunk not yet sent (NULL: all sent) */

	/* Receive sequence space. */
	uint32_t irs;
	uint32_t rcv_nxt;
	uint32_t rcv_adv;           /* right edge of the window we last advertised */
	uint32_t rcv_unconsumed;    /* delivered to the app, not yet consumed */
	uint32_t ooo_bytes;
	struct rte_mbuf *ooo_head;  /* sorted by seq */
	uint32_t ts_recent;
	uint32_t ts_offset;
	uint32_t last_ack_sent;

	/* RTT and timers (microseconds; 0 = not armed). */
	uint32_t srtt_us;
	uint32_t rttvar_us;
	uint32_t rto_us;
	uint32_t rtt_seq;
	uint64_t rtt_start_us;
	uint64_t rto_at;
	uint64_t dack_at;
	uint64_t ka_at;
	uint64_t tw_at;
	uint64_t last_rx_us;

	/* Timer wheel membership. */
	uint64_t wheel_ms;
	struct qd_tcp_conn *wheel_next;
	struct qd_tcp_conn *wheel_prev;
	bool in_wheel;
};

struct qd_tcp_listener {
	uint16_t port_be;
	const struct qd_tcp_ops *ops;
	void *app;
};

struct qd_tcp_stack {
	struct qd_tcp_conf conf;
	unsigned int lcore_id;
	struct rte_mempool *pool;
	struct rte_ether_addr our_mac;
	uint32_t src_ip;
	struct qd_siphash_key secret;
	qd_tcp_tx_fn tx;
	qd_tcp_resolve_fn resolve;
	void *io_ctx;
	int meta_off;                 /* mbuf dynfield offset of struct qd_tcp_mbuf_meta */
	struct rte_hash *table;
	struct qd_tcp_conn *conns;
	uint32_t *free_list;
	uint32_t free_count;
	struct qd_tcp_listener listeners[QD_TCP_LISTENERS_MAX];
	unsigned int listeners_count;
	uint32_t syn_rcvd_count;
	uint32_t time_wait_count;
	uint32_t state_count[QD_TCP_STATE_MAX];
	uint16_t next_port;
	uint32_t depth;               /* >0 while inside input/timers: frees are deferred */
	struct qd_tcp_conn *zombies;
	uint64_t ca_second;
	uint32_t ca_count;
	uint64_t wheel_now_ms;
	struct qd_tcp_conn *wheel[QD_TCP_WHEEL_SLOTS];
	struct qd_tcp_counters counters;
	/* Live passive connections by local address (qd_tcp_set_accounting). */
	qd_tcp_adopt_fn adopt_ok;
	void *adopt_ctx;
	qd_tcp_acct_fn acct_classify;
	void *acct_ctx;
	uint32_t *acct_counts;
	unsigned int acct_slots;
};

/* Room left in the window we last advertised (0 when nothing was advertised beyond
 * rcv_nxt): the right edge never moves left, whatever the buffer does now. */
static inline uint32_t
tcp_adv_room(const struct qd_tcp_conn *c)
{
	return SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
}

static inline struct qd_tcp_mbuf_meta *
tcp_meta(const struct qd_tcp_stack *s, struct rte_mbuf *m)
{
	return RTE_MBUF_DYNFIELD(m, s->meta_off, struct qd_tcp_mbuf_meta *);
}

#define TCP_COUNT(s, name) qd_stat_add(&(s)->counters.name, 1)
#define TCP_COUNT_N(s, name, n) qd_stat_add(&(s)->counters.name, (n))

/* tcp_conn.c */
struct qd_tcp_conn *qd_tcp_conn_lookup(struct qd_tcp_stack *s, const struct qd_tcp_key *k);
struct qd_tcp_conn *qd_tcp_conn_new(struct qd_tcp_stack *s, const struct qd_tcp_key *k);
void qd_tcp_conn_set_state(struct qd_tcp_conn *c, enum qd_tcp_state st);
void qd_tcp_conn_close(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);
void qd_tcp_conn_schedule(struct qd_tcp_conn *c);
void qd_tcp_conn_enter_time_wait(struct qd_tcp_conn *c, uint64_t now_us);
uint32_t qd_tcp_isn(struct qd_tcp_stack *s, const struct qd_tcp_key *k, uint64_t now_us);
uint32_t qd_tcp_cookie_make(struct qd_tcp_stack *s, const struct qd_tcp_key *k,
			    uint32_t peer_isn, uint16_t peer_mss, uint64_t now_us);
bool qd_tcp_cookie_check(struct qd_tcp_stack *s, const struct qd_tcp_key *k, uint32_t peer_isn,
			 uint32_t cookie, uint64_t now_us, uint16_t *mss);
void qd_tcp_stack_enter(struct qd_tcp_stack *s);
void qd_tcp_stack_leave(struct qd_tcp_stack *s);

/* tcp_output.c */
void qd_tcp_output(struct qd_tcp_conn *c, uint64_t now_us);
void qd_tcp_send_ack(struct qd_tcp_conn *c, uint64_t now_us);
void qd_tcp_send_syn(struct qd_tcp_conn *c, bool ack, bool cookie, uint64_t now_us);
void qd_tcp_send_probe(struct qd_tcp_conn *c, uint64_t now_us);
void qd_tcp_send_rst(struct qd_tcp_conn *c, uint64_t now_us);
void qd_tcp_reply_rst(struct qd_tcp_stack *s, const struct qd_tcp_seg *seg);
void qd_tcp_retransmit_head(struct qd_tcp_conn *c, uint64_t now_us);
void qd_tcp_rto_fire(struct qd_tcp_conn *c, uint64_t now_us);
uint32_t qd_tcp_rcv_window(const struct qd_tcp_conn *c);
void qd_tcp_arm_rto(struct qd_tcp_conn *c, uint64_t now_us);
void qd_tcp_sq_free(struct qd_tcp_conn *c);
void qd_tcp_ooo_free(struct qd_tcp_conn *c);
void qd_tcp_rtt_sample(struct qd_tcp_conn *c, uint32_t rtt_us);
uint32_t qd_tcp_ts_now(const struct qd_tcp_conn *c, uint64_t now_us);

#endif /* QD_TCP_IMPL_H */
