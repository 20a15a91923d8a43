/*
 * User-space TCP for the worker lcores: one stack per lcore, share-nothing.
 *
 * A stack owns its connections (a per-lcore rte_hash on the 4-tuple and a
 * fixed pool of connection blocks), its timers (a hashed wheel with 1 ms
 * slots) and its counters. Input is a validated IPv4 datagram carrying TCP;
 * output is complete Ethernet frames handed to a transmit callback. The
 * layer above (echo/discard test services now, the HTTP proxy next) sees
 * events through per-connection callbacks and pushes data with explicit
 * back-pressure: qd_tcp_send() refuses data beyond the send buffer and
 * on_writable() says when to try again; the receive window shrinks with
 * data the application has not yet consumed.
 *
 * Standards: RFC 9293 state machine (passive and active open, simultaneous
 * open and close, half-close); RFC 5961 challenge ACKs for RST, SYN and ACK
 * outside the expected range; MSS, window scaling and timestamps (RFC 7323,
 * with PAWS); RTO per RFC 6298 with Karn's rule and exponential back-off;
 * slow start, congestion avoidance, fast retransmit and NewReno recovery
 * (RFC 5681, 6582); delayed ACKs; zero-window probes; keepalive; ISNs per
 * RFC 6528; SYN cookies when the SYN backlog is full (RFC 4987);
 * TIME_WAIT bounded in count and time. Out-of-order segments inside the
 * window are kept, bounded per connection. SACK is not implemented.
 */
#ifndef QD_TCP_H
#define QD_TCP_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "siphash.h"

#define QD_TCP_LISTENERS_MAX 16
#define QD_TCP_OOO_MAX 512         /* out-of-order segments kept per connection */
#define QD_TCP_WHEEL_SLOTS 4096     /* 1 ms slots: deadlines farther out take rounds */
#define QD_TCP_WHEEL_BUDGET 4096    /* slots advanced per qd_tcp_timers() call */
#define QD_TCP_RTO_MIN_US 200000u
#define QD_TCP_RTO_MAX_US 60000000u
#define QD_TCP_RTO_INIT_US 1000000u
#define QD_TCP_DELACK_US 40000u
#define QD_TCP_SYN_RETRIES 6
#define QD_TCP_DATA_RETRIES 15

enum qd_tcp_state {
	QD_TCP_CLOSED = 0,
	QD_TCP_LISTEN,
	QD_TCP_SYN_SENT,
	QD_TCP_SYN_RCVD,
	QD_TCP_ESTABLISHED,
	QD_TCP_FIN_WAIT_1,
	QD_TCP_FIN_WAIT_2,
	QD_TCP_CLOSE_WAIT,
	QD_TCP_CLOSING,
	QD_TCP_LAST_ACK,
	QD_TCP_TIME_WAIT,
	QD_TCP_STATE_MAX
};

/* Why a connection ended, passed to on_closed(). */
enum qd_tcp_close_reason {
	QD_TCP_CLOSE_NORMAL = 0,   /* both FINs exchanged (or our close of an idle conn) */
	QD_TCP_CLOSE_RESET,        /* peer sent RST */
	QD_TCP_CLOSE_ABORT,        /* we aborted (qd_tcp_abort) */
	QD_TCP_CLOSE_TIMEOUT,      /* retransmissions or keepalive exhausted */
	QD_TCP_CLOSE_REFUSED,      /* active open answered with RST */
};

#define QD_TCP_COUNTERS(X)                                                                \
	X(segs_in)                                                                        \
	X(adopted)                                                                        \
	X(segs_out)                                                                       \
	X(bytes_in)                                                                       \
	X(bytes_out)                                                                      \
	X(retransmits)                                                                    \
	X(fast_retransmits)                                                               \
	X(rto_expired)                                                                    \
	X(dup_acks)                                                                       \
	X(ooo_queued)                                                                     \
	X(ooo_dropped)                                                                    \
	X(passive_opens)                                                                  \
	X(active_opens)                                                                   \
	X(accepted)                                                                       \
	X(resets_in)                                                                      \
	X(resets_out)                                                                     \
	X(challenge_acks)                                                                 \
	X(challenge_acks_limited)                                                         \
	X(paws_rejected)                                                                  \
	X(cookies_sent)                                                                   \
	X(cookies_valid)                                                                  \
	X(cookies_invalid)                                                                \
	X(syn_backlog_full)                                                               \
	X(conn_table_full)                                                                \
	X(time_wait_overflow)                                                             \
	X(zero_window_probes)                                                             \
	X(keepalive_probes)                                                               \
	X(timeouts)                                                                       \
	X(send_refused)                                                                   \
	X(no_mbuf)                                                                        \
	X(bad_checksum)                                                                   \
	X(bad_header)                                                                     \
	X(no_listener)

struct qd_tcp_counters {
#define QD_X(name) uint64_t name;
	QD_TCP_COUNTERS(QD_X)
#undef QD_X
};

struct qd_tcp_conf {
	uint32_t max_connections;   /* per stack, TIME_WAIT included */
	uint32_t syn_backlog;       /* SYN_RCVD connections before SYN cookies */
	uint32_t time_wait_max;     /* TIME_WAIT connections kept; beyond, closed at once */
	uint32_t time_wait_ms;
	uint32_t fin_wait2_ms;      /* orphaned FIN_WAIT_2 lifetime */
	uint32_t sndbuf_bytes;
	uint32_t rcvbuf_bytes;
	uint16_t mss;               /* our MSS (MTU - 40) */
	uint32_t keepalive_idle_ms; /* 0 = off */
	uint32_t keepalive_intvl_ms;
	uint32_t keepalive_probes;
	uint32_t challenge_ack_per_s;
	bool syn_cookies;
	uint16_t local_port_min;    /* ephemeral range for active opens */
	uint16_t local_port_max;
	unsigned int steer_index;   /* this stack's index among steer_count workers */
	unsigned int steer_count;
};

struct qd_tcp_conn;
struct qd_tcp_stack;

/* Callbacks into the layer above. Every one runs on the owning lcore, from inside
 * qd_tcp_input() or qd_tcp_timers(); none may free the connection itself. */
struct qd_tcp_ops {
	/* A passive open completed: <c> is ESTABLISHED. Set qd_tcp_conn_set_app() here. */
	void (*on_accept)(void *listener_app, struct qd_tcp_conn *c);
	/* An active open completed. */
	void (*on_connected)(struct qd_tcp_conn *c);
	/* In-order payload <m> (payload only, maybe chained). The callee owns <m> and must
	 * report consumption with qd_tcp_recv_consumed() to reopen the receive window. */
	void (*on_data)(struct qd_tcp_conn *c, struct rte_mbuf *m);
	/* Send space freed after qd_tcp_send() refused data. */
	void (*on_writable)(struct qd_tcp_conn *c);
	/* The peer half-closed: no more data will arrive. */
	void (*on_peer_fin)(struct qd_tcp_conn *c);
	/* The connection is gone; <c> is invalid once this returns. */
	void (*on_closed)(struct qd_tcp_conn *c, enum qd_tcp_close_reason why);
};

/* Frames leave through this; the callee owns <m>. */
typedef void (*qd_tcp_tx_fn)(void *ctx, struct rte_mbuf *m);
/* Resolve the next hop MAC of <ip_be> for an active open; false when not (yet) known. */
typedef bool (*qd_tcp_resolve_fn)(void *ctx, uint32_t ip_be, struct rte_ether_addr *mac);

struct qd_tcp_stack *qd_tcp_stack_create(const struct qd_tcp_conf *conf, unsigned int lcore_id,
					 struct rte_mempool *pool,
					 const struct rte_ether_addr *our_mac, uint32_t src_ip_be,
					 const struct qd_siphash_key *secret, qd_tcp_tx_fn tx,
					 qd_tcp_resolve_fn resolve, void *io_ctx);
void qd_tcp_stack_destroy(struct qd_tcp_stack *s);

/* Listen on <port> of every address the caller delivers to the stack. */
int qd_tcp_listen(struct qd_tcp_stack *s, uint16_t port, const struct qd_tcp_ops *ops, void *app);

/* Active open from src_ip to <dst_ip_be>:<dst_port>. NULL with errno: EAGAIN (next hop not
 * resolved yet, or no free port), ENOSPC (table full), ENOMEM. */
struct qd_tcp_conn *qd_tcp_connect(struct qd_tcp_stack *s, uint32_t dst_ip_be, uint16_t dst_port,
				   const struct qd_tcp_ops *ops, void *app, uint64_t now_us);

/* Queue <m> (payload only) for sending; takes ownership on success. Returns 0, -EAGAIN
 * when the send buffer cannot take all of it (nothing taken; on_writable follows),
 * -ENOTCONN / -EPIPE when the connection cannot send (nothing taken), or -ENOMEM when the
 * pool ran dry while splitting <m> (<m> consumed, part of it queued: abort the
 * connection, its byte stream is broken). */
int qd_tcp_send(struct qd_tcp_conn *c, struct rte_mbuf *m, uint64_t now_us);

/* Bytes qd_tcp_send() would accept now. */
uint32_t qd_tcp_send_space(const struct qd_tcp_conn *c);

/* Ask for on_writable once acknowledgements free send space, without a refused send
 * (for a caller that holds off because the space is too small to be worth it). */
void qd_tcp_want_writable(struct qd_tcp_conn *c);

/* The application consumed <bytes> of delivered payload. */
void qd_tcp_recv_consumed(struct qd_tcp_conn *c, uint32_t bytes, uint64_t now_us);

/* Send FIN after the queued data (half-close); reading continues. */
int qd_tcp_shutdown(struct qd_tcp_conn *c, uint64_t now_us);

/* Reset the connection now; on_closed(ABORT) is called before this returns. */
void qd_tcp_abort(struct qd_tcp_conn *c, uint64_t now_us);

/* A TCP segment in <m> (Ethernet frame, IPv4 header <ip> validated, addressed to us).
 * Consumes <m>. */
void qd_tcp_input(struct qd_tcp_stack *s, struct rte_mbuf *m, struct rte_ipv4_hdr *ip,
		  uint64_t now_us);

/* Run expired timers. Call once per loop iteration (cheap when nothing is due). */
void qd_tcp_timers(struct qd_tcp_stack *s, uint64_t now_us);

/* For active opens only: which stack owns local port <port> (software steering when the
 * port hashes flows unpredictably). */
static inline bool
qd_tcp_port_is_ephemeral(const struct qd_tcp_conf *conf, uint16_t port)
{
	return port >= conf->local_port_min && port <= conf->local_port_max;
}

static inline unsigned int
qd_tcp_port_owner(const struct qd_tcp_conf *conf, uint16_t port)
{
	return (unsigned int)(port - conf->local_port_min) % conf->steer_count;
}

/* A snapshot of one connection, for logs and the control plane. */
struct qd_tcp_info {
	enum qd_tcp_state state;
	uint32_t local_ip_be;
	uint32_t remote_ip_be;
	uint16_t local_port;
	uint16_t remote_port;
	uint32_t snd_una;
	uint32_t snd_nxt;
	uint32_t rcv_nxt;
	uint32_t snd_wnd;
	uint32_t cwnd;
	uint32_t ssthresh;
	uint32_t srtt_us;
	uint32_t rto_us;
	uint16_t mss;
	bool ws;
	bool ts;
};

void qd_tcp_conn_info(const struct qd_tcp_conn *c, struct qd_tcp_info *out);

void qd_tcp_conn_set_app(struct qd_tcp_conn *c, const struct qd_tcp_ops *ops, void *app);
void *qd_tcp_conn_app(const struct qd_tcp_conn *c);
enum qd_tcp_state qd_tcp_conn_state(const struct qd_tcp_conn *c);
struct qd_tcp_stack *qd_tcp_conn_stack(const struct qd_tcp_conn *c);
const char *qd_tcp_state_name(enum qd_tcp_state st);

/* Accounting of live passive connections (ESTABLISHED up to, not including, TIME_WAIT)
 * by local address, for the VIP table's drains: when one becomes live, <classify> maps
 * its local address to a slot below <slots> (or -1: not counted) and counts[slot] is
 * raised until the connection is no longer live. The slot is remembered per connection,
 * so what classify answers later does not matter. counts[] is written by the owning
 * lcore only (relaxed stores) and may be read from another. <slots> at most 255. */
typedef int (*qd_tcp_acct_fn)(void *ctx, uint32_t local_ip_be);
void qd_tcp_set_accounting(struct qd_tcp_stack *s, qd_tcp_acct_fn classify, void *ctx,
			   uint32_t *counts, unsigned int slots);

/* Connection adoption after a VIP takeover: a data segment (ACK, payload, no SYN, FIN or
 * RST) of an unknown 4-tuple to a listening port, on a local address for which <ok>
 * answers true, becomes an ESTABLISHED connection as if we had accepted it: the client's
 * seq and ack numbers are taken as they are, its timestamps echoed, our windows scaled as
 * every peer's stack scales them, its window taken unscaled (we cannot know its shift).
 * The payload is then the first data of the connection (a new request on a keep-alive
 * connection whose dispatcher died). Counted in `adopted`. */
typedef bool (*qd_tcp_adopt_fn)(void *ctx, uint32_t local_ip_be);
void qd_tcp_set_adoption(struct qd_tcp_stack *s, qd_tcp_adopt_fn ok, void *ctx);

/* Counters and connections per state (reader side: relaxed loads). */
void qd_tcp_stack_read(const struct qd_tcp_stack *s, struct qd_tcp_counters *out,
		       uint32_t states[QD_TCP_STATE_MAX]);
const struct qd_tcp_conf *qd_tcp_stack_conf(const struct qd_tcp_stack *s);
struct rte_mempool *qd_tcp_stack_pool(const struct qd_tcp_stack *s);

#endif /* QD_TCP_H */
