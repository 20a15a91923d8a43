/*
 * TCP stack object, connection table, timers and the application API
 * (see tcp.h).
 *
 * Connections come from a pool allocated at start-up and are found through a
 * per-lcore rte_hash on the 4-tuple (single writer, no locks). Every
 * connection has at most four deadlines (retransmission/persist, delayed ACK,
 * keepalive, TIME_WAIT/FIN_WAIT_2) and sits in one slot of a hashed timer
 * wheel under the earliest of them. A connection released while the stack is
 * inside input or timer processing (for example aborted from a callback) is
 * only unlinked; its slot is recycled when the stack unwinds, so no caller up
 * the stack ever touches freed memory.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_hash_crc.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf_dyn.h>

#include "log.h"
#include "tcp_impl.h"

static const char *const state_names[QD_TCP_STATE_MAX] = {
	"closed", "listen", "syn_sent", "syn_rcvd", "established", "fin_wait_1",
	"fin_wait_2", "close_wait", "closing", "last_ack", "time_wait",
};

const char *
qd_tcp_state_name(enum qd_tcp_state st)
{
	return (unsigned int)st < QD_TCP_STATE_MAX ? state_names[st] : "?";
}

_Static_assert(sizeof(struct qd_tcp_key) == 12, "qd_tcp_key is three 32-bit words");

/* CRC32C over the three 32-bit words of the key: rte_hash_crc() would read 8 bytes
 * at a time from a 4-byte aligned key, which UBSan rightly refuses. */
static uint32_t
tcp_key_hash(const void *key, uint32_t len, uint32_t init)
{
	const uint32_t *w = key;
	(void)len;
	return rte_hash_crc_4byte(w[2], rte_hash_crc_4byte(w[1], rte_hash_crc_4byte(w[0], init)));
}

struct qd_tcp_stack *
qd_tcp_stack_create(const struct qd_tcp_conf *conf, unsigned int lcore_id,
		    struct rte_mempool *pool, const struct rte_ether_addr *our_mac,
		    uint32_t src_ip_be, const struct qd_siphash_key *secret, qd_tcp_tx_fn tx,
		    qd_tcp_resolve_fn resolve, void *io_ctx)
{
	if (conf->max_connections == 0 || conf->steer_count == 0 ||
	    conf->steer_index >= conf->steer_count || conf->mss < 64 ||
	    conf->local_port_min == 0 || conf->local_port_min > conf->local_port_max) {
		errno = EINVAL;
		return NULL;
	}
	int socket = (int)rte_lcore_to_socket_id(lcore_id);
	struct qd_tcp_stack *s = rte_zmalloc_socket("qd_tcp_stack", sizeof(*s),
						    RTE_CACHE_LINE_SIZE, socket);
	if (s == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	s->conf = *conf;
	s->lcore_id = lcore_id;
	s->pool = pool;
	s->our_mac = *our_mac;
	s->src_ip = src_ip_be;
	s->secret = *secret;
	s->tx = tx;
	s->resolve = resolve;
	s->io_ctx = io_ctx;
	static const struct rte_mbuf_dynfield meta_desc = {
		.name = "qd_tcp_meta",
		.size = sizeof(struct qd_tcp_mbuf_meta),
		.align = __alignof__(struct qd_tcp_mbuf_meta),
	};
	s->meta_off = rte_mbuf_dynfield_register(&meta_desc);
	s->conns = rte_zmalloc_socket("qd_tcp_conns",
				      sizeof(s->conns[0]) * (size_t)conf->max_connections,
				      RTE_CACHE_LINE_SIZE, socket);
	s->free_list = rte_malloc_socket("qd_tcp_free", sizeof(uint32_t) * conf->max_connections,
					 0, socket);
	char name[RTE_HASH_NAMESIZE];
	/* Unique per stack object: tests run several stacks on one lcore. */
	snprintf(name, sizeof(name), "qdtcp_%u_%lx", lcore_id, (unsigned long)((uintptr_t)s & 0xfffffff));
	struct rte_hash_parameters hp = {
		.name = name,
		.entries = u32_max(conf->max_connections * 2u, 64u),
		.key_len = sizeof(struct qd_tcp_key),
		.hash_func = tcp_key_hash,
		.hash_func_init_val = (uint32_t)secret->k1,
		.socket_id = socket,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
	};
	s->table = rte_hash_create(&hp);
	if (s->meta_off < 0 || s->conns == NULL || s->free_list == NULL || s->table == NULL) {
		qd_tcp_stack_destroy(s);
		errno = ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < conf->max_connections; i++)
		s->free_list[i] = conf->max_connections - 1 - i;
	s->free_count = conf->max_connections;
	/* A random first port: a restarted dispatcher must not reuse the 4-tuples of the
	 * process before it, whose connections the peers may still hold (their SYNs would
	 * meet a stale connection and wait for a retransmission). */
	uint32_t span = (uint32_t)(conf->local_port_max - conf->local_port_min) + 1;
	s->next_port = (uint16_t)(conf->local_port_min +
				  qd_siphash(secret, &lcore_id, sizeof(lcore_id)) % span);
	return s;
}

static void
conn_free_buffers(struct qd_tcp_conn *c)
{
	qd_tcp_sq_free(c);
	qd_tcp_ooo_free(c);
}

void
qd_tcp_stack_destroy(struct qd_tcp_stack *s)
{
	if (s == NULL)
		return;
	if (s->conns != NULL) {
		for (uint32_t i = 0; i < s->conf.max_connections; i++) {
			if (s->conns[i].state != QD_TCP_CLOSED || s->conns[i].zombie)
				conn_free_buffers(&s->conns[i]);
		}
	}
	rte_hash_free(s->table);
	rte_free(s->free_list);
	rte_free(s->conns);
	rte_free(s);
}

struct qd_tcp_conn *
qd_tcp_conn_lookup(struct qd_tcp_stack *s, const struct qd_tcp_key *k)
{
	void *data = NULL;
	if (rte_hash_lookup_data(s->table, k, &data) < 0)
		return NULL;
	return data;
}

static bool
state_live(enum qd_tcp_state st)
{
	return st >= QD_TCP_ESTABLISHED && st < QD_TCP_TIME_WAIT;
}

/* Keep the accounting of live passive connections across a change to <st>. */
static void
acct_update(struct qd_tcp_conn *c, enum qd_tcp_state st)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->acct_slot != 0 && !state_live(st)) {
		uint32_t *n = &s->acct_counts[c->acct_slot - 1];
		RTE_ASSERT(*n > 0);
		__atomic_store_n(n, *n - 1, __ATOMIC_RELAXED);
		c->acct_slot = 0;
	} else if (c->acct_slot == 0 && c->passive && s->acct_classify != NULL &&
		   state_live(st) && !state_live((enum qd_tcp_state)c->state)) {
		int slot = s->acct_classify(s->acct_ctx, c->key.local_ip);
		if (slot < 0 || (unsigned int)slot >= s->acct_slots)
			return;
		uint32_t *n = &s->acct_counts[slot];
		__atomic_store_n(n, *n + 1, __ATOMIC_RELAXED);
		c->acct_slot = (uint8_t)(slot + 1);
	}
}

void
qd_tcp_set_adoption(struct qd_tcp_stack *s, qd_tcp_adopt_fn ok, void *ctx)
{
	s->adopt_ok = ok;
	s->adopt_ctx = ctx;
}

void
qd_tcp_set_accounting(struct qd_tcp_stack *s, qd_tcp_acct_fn classify, void *ctx,
		      uint32_t *counts, unsigned int slots)
{
	RTE_VERIFY(slots <= 255 && (classify == NULL || counts != NULL));
	RTE_VERIFY(s->state_count[QD_TCP_ESTABLISHED] == 0); /* before any connection */
	s->acct_classify = classify;
	s->acct_ctx = ctx;
	s->acct_counts = counts;
	s->acct_slots = slots;
}

void
qd_tcp_conn_set_state(struct qd_tcp_conn *c, enum qd_tcp_state st)
{
	struct qd_tcp_stack *s = c->stack;
	acct_update(c, st);
	RTE_ASSERT(s->state_count[c->state] > 0 || c->state == QD_TCP_CLOSED);
	if (c->state == QD_TCP_SYN_RCVD && c->passive)
		s->syn_rcvd_count--;
	if (c->state == QD_TCP_TIME_WAIT)
		s->time_wait_count--;
	s->state_count[c->state]--;
	c->state = (uint8_t)st;
	s->state_count[st]++;
	if (st == QD_TCP_SYN_RCVD && c->passive)
		s->syn_rcvd_count++;
	if (st == QD_TCP_TIME_WAIT)
		s->time_wait_count++;
}

struct qd_tcp_conn *
qd_tcp_conn_new(struct qd_tcp_stack *s, const struct qd_tcp_key *k)
{
	if (s->free_count == 0) {
		TCP_COUNT(s, conn_table_full);
		return NULL;
	}
	uint32_t idx = s->free_list[--s->free_count];
	struct qd_tcp_conn *c = &s->conns[idx];
	memset(c, 0, sizeof(*c));
	c->pool_index = idx;
	c->key = *k;
	c->stack = s;
	c->state = QD_TCP_CLOSED;
	if (rte_hash_add_key_data(s->table, k, c) != 0) {
		s->free_list[s->free_count++] = idx;
		TCP_COUNT(s, conn_table_full);
		return NULL;
	}
	s->state_count[QD_TCP_CLOSED]++;
	c->rto_us = QD_TCP_RTO_INIT_US;
	c->mss = TCP_MSS_DEFAULT;
	c->ssthresh = UINT32_MAX / 2;
	return c;
}

static void
wheel_unlink(struct qd_tcp_conn *c)
{
	if (!c->in_wheel)
		return;
	struct qd_tcp_stack *s = c->stack;
	if (c->wheel_prev != NULL)
		c->wheel_prev->wheel_next = c->wheel_next;
	else
		s->wheel[c->wheel_ms % QD_TCP_WHEEL_SLOTS] = c->wheel_next;
	if (c->wheel_next != NULL)
		c->wheel_next->wheel_prev = c->wheel_prev;
	c->wheel_next = c->wheel_prev = NULL;
	c->in_wheel = false;
}

static void
conn_recycle(struct qd_tcp_conn *c)
{
	struct qd_tcp_stack *s = c->stack;
	conn_free_buffers(c);
	s->free_list[s->free_count++] = c->pool_index;
	c->zombie = false;
}

/* Remove <c> from the table and the wheel; recycle now or when the stack unwinds. */
static void
conn_release(struct qd_tcp_conn *c)
{
	struct qd_tcp_stack *s = c->stack;
	wheel_unlink(c);
	rte_hash_del_key(s->table, &c->key);
	qd_tcp_conn_set_state(c, QD_TCP_CLOSED);
	s->state_count[QD_TCP_CLOSED]--;
	c->ops = NULL;
	if (s->depth > 0) {
		c->zombie = true;
		c->wheel_next = s->zombies;
		s->zombies = c;
	} else {
		conn_recycle(c);
	}
}

void
qd_tcp_stack_enter(struct qd_tcp_stack *s)
{
	s->depth++;
}

void
qd_tcp_stack_leave(struct qd_tcp_stack *s)
{
	RTE_ASSERT(s->depth > 0);
	if (--s->depth > 0)
		return;
	while (s->zombies != NULL) {
		struct qd_tcp_conn *c = s->zombies;
		s->zombies = c->wheel_next;
		c->wheel_next = NULL;
		conn_recycle(c);
	}
}

/* Tell the application once, then forget it. */
static void
notify_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	if (c->notified)
		return;
	c->notified = true;
	const struct qd_tcp_ops *ops = c->ops;
	if (ops != NULL && ops->on_closed != NULL) {
		qd_tcp_stack_enter(c->stack);
		ops->on_closed(c, why);
		qd_tcp_stack_leave(c->stack);
	}
	c->ops = NULL;
}

void
qd_tcp_conn_close(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	/* on_closed() may close or abort other connections, this one included. */
	if (c->state == QD_TCP_CLOSED || c->closing)
		return;
	c->closing = true;
	qd_tcp_stack_enter(c->stack);
	notify_closed(c, why);
	conn_release(c);
	qd_tcp_stack_leave(c->stack);
}

void
qd_tcp_conn_enter_time_wait(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	qd_tcp_sq_free(c);
	qd_tcp_ooo_free(c);
	c->rto_at = c->dack_at = c->ka_at = 0;
	if (s->time_wait_count >= s->conf.time_wait_max) {
		/* Like Linux's tw bucket overflow: skip TIME_WAIT rather than grow. */
		TCP_COUNT(s, time_wait_overflow);
		qd_tcp_conn_close(c, QD_TCP_CLOSE_NORMAL);
		return;
	}
	qd_tcp_conn_set_state(c, QD_TCP_TIME_WAIT);
	c->tw_at = now_us + (uint64_t)s->conf.time_wait_ms * 1000;
	notify_closed(c, QD_TCP_CLOSE_NORMAL);
	qd_tcp_conn_schedule(c);
}

static uint64_t
earliest(const struct qd_tcp_conn *c)
{
	uint64_t t = UINT64_MAX;
	const uint64_t d[] = {c->rto_at, c->dack_at, c->ka_at, c->tw_at};
	for (size_t i = 0; i < RTE_DIM(d); i++) {
		if (d[i] != 0 && d[i] < t)
			t = d[i];
	}
	return t;
}

void
qd_tcp_conn_schedule(struct qd_tcp_conn *c)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->state == QD_TCP_CLOSED)
		return;
	uint64_t at = earliest(c);
	if (at == UINT64_MAX) {
		wheel_unlink(c);
		return;
	}
	/* Round up: a timer never fires early. Never into a slot already passed. */
	uint64_t ms = (at + 999) / 1000;
	if (ms <= s->wheel_now_ms)
		ms = s->wheel_now_ms + 1;
	if (c->in_wheel && c->wheel_ms == ms)
		return;
	wheel_unlink(c);
	struct qd_tcp_conn **slot = &s->wheel[ms % QD_TCP_WHEEL_SLOTS];
	c->wheel_ms = ms;
	c->wheel_prev = NULL;
	c->wheel_next = *slot;
	if (*slot != NULL)
		(*slot)->wheel_prev = c;
	*slot = c;
	c->in_wheel = true;
}

static void
keepalive_fire(struct qd_tcp_conn *c, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	c->ka_at = 0;
	uint64_t idle_us = (uint64_t)s->conf.keepalive_idle_ms * 1000;
	if (now_us - c->last_rx_us < idle_us) {
		c->ka_at = c->last_rx_us + idle_us;
		c->ka_probes = 0;
		return;
	}
	if (c->ka_probes >= s->conf.keepalive_probes) {
		TCP_COUNT(s, timeouts);
		qd_tcp_send_rst(c, now_us);
		qd_tcp_conn_close(c, QD_TCP_CLOSE_TIMEOUT);
		return;
	}
	c->ka_probes++;
	TCP_COUNT(s, keepalive_probes);
	qd_tcp_send_probe(c, now_us);
	c->ka_at = now_us + (uint64_t)s->conf.keepalive_intvl_ms * 1000;
}

static void
conn_timers(struct qd_tcp_conn *c, uint64_t now_us)
{
	if (c->tw_at != 0 && now_us >= c->tw_at) {
		c->tw_at = 0;
		if (c->state == QD_TCP_FIN_WAIT_2)
			TCP_COUNT(c->stack, timeouts);
		qd_tcp_conn_close(c, c->state == QD_TCP_TIME_WAIT ? QD_TCP_CLOSE_NORMAL
								  : QD_TCP_CLOSE_TIMEOUT);
		return;
	}
	if (c->rto_at != 0 && now_us >= c->rto_at) {
		c->rto_at = 0;
		qd_tcp_rto_fire(c, now_us);
		if (c->state == QD_TCP_CLOSED)
			return;
	}
	if (c->dack_at != 0 && now_us >= c->dack_at) {
		c->dack_at = 0;
		qd_tcp_send_ack(c, now_us);
	}
	if (c->ka_at != 0 && now_us >= c->ka_at)
		keepalive_fire(c, now_us);
	if (c->state != QD_TCP_CLOSED)
		qd_tcp_conn_schedule(c);
}

void
qd_tcp_timers(struct qd_tcp_stack *s, uint64_t now_us)
{
	uint64_t now_ms = now_us / 1000;
	if (s->wheel_now_ms == 0)
		s->wheel_now_ms = now_ms;
	if (now_ms <= s->wheel_now_ms)
		return;
	qd_tcp_stack_enter(s);
	/* One pass over every slot covers any gap, however long. */
	uint64_t from = s->wheel_now_ms + 1;
	uint64_t gap = now_ms - s->wheel_now_ms;
	uint64_t slots = gap < QD_TCP_WHEEL_SLOTS ? gap : QD_TCP_WHEEL_SLOTS;
	if (now_ms - s->wheel_now_ms > QD_TCP_WHEEL_SLOTS)
		from = now_ms - QD_TCP_WHEEL_SLOTS + 1;
	s->wheel_now_ms = now_ms;
	for (uint64_t t = from; t < from + slots; t++) {
		struct qd_tcp_conn **slot = &s->wheel[t % QD_TCP_WHEEL_SLOTS];
		struct qd_tcp_conn *c = *slot;
		/* A callback run by conn_timers() may release any connection, the next one in
		 * this slot included: after each firing, start the slot again. It ends: a
		 * fired connection leaves the slot or is rescheduled after now_ms, where
		 * this pass skips it. */
		while (c != NULL) {
			if (c->wheel_ms > now_ms) {
				c = c->wheel_next;
				continue;
			}
			wheel_unlink(c);
			conn_timers(c, now_us);
			c = *slot;
		}
	}
	qd_tcp_stack_leave(s);
}

uint32_t
qd_tcp_isn(struct qd_tcp_stack *s, const struct qd_tcp_key *k, uint64_t now_us)
{
	/* RFC 6528: ISN = M + F(4-tuple, secret), M a 4 microsecond clock. */
	return (uint32_t)(now_us / 4) + (uint32_t)qd_siphash(&s->secret, k, sizeof(*k));
}

static const uint16_t cookie_mss[8] = {536, 1220, 1360, 1400, 1440, 1460, 4312, 8960};
#define COOKIE_PERIOD_US (64ull * 1000000ull)

static uint32_t
cookie_hash(struct qd_tcp_stack *s, const struct qd_tcp_key *k, uint32_t peer_isn, uint32_t t)
{
	struct {
		struct qd_tcp_key k;
		uint32_t isn;
		uint32_t t;
	} in = {*k, peer_isn, t};
	return (uint32_t)qd_siphash(&s->secret, &in, sizeof(in)) & 0xffffff;
}

uint32_t
qd_tcp_cookie_make(struct qd_tcp_stack *s, const struct qd_tcp_key *k, uint32_t peer_isn,
		   uint16_t peer_mss, uint64_t now_us)
{
	uint32_t t = (uint32_t)(now_us / COOKIE_PERIOD_US) & 0x1f;
	uint32_t idx = 0;
	for (uint32_t i = 0; i < RTE_DIM(cookie_mss); i++) {
		if (cookie_mss[i] <= peer_mss)
			idx = i;
	}
	return t << 27 | idx << 24 | cookie_hash(s, k, peer_isn, t);
}

bool
qd_tcp_cookie_check(struct qd_tcp_stack *s, const struct qd_tcp_key *k, uint32_t peer_isn,
		    uint32_t cookie, uint64_t now_us, uint16_t *mss)
{
	uint32_t now_t = (uint32_t)(now_us / COOKIE_PERIOD_US) & 0x1f;
	uint32_t t = cookie >> 27;
	/* Valid for the current period and the one before: 64 to 128 s. */
	if (t != now_t && t != ((now_t - 1) & 0x1f))
		return false;
	if ((cookie & 0xffffff) != cookie_hash(s, k, peer_isn, t))
		return false;
	*mss = cookie_mss[(cookie >> 24) & 7];
	return true;
}

int
qd_tcp_listen(struct qd_tcp_stack *s, uint16_t port, const struct qd_tcp_ops *ops, void *app)
{
	if (port == 0 || ops == NULL)
		return -EINVAL;
	if (qd_tcp_port_is_ephemeral(&s->conf, port))
		return -EADDRNOTAVAIL; /* steering owns that range */
	for (unsigned int i = 0; i < s->listeners_count; i++) {
		if (s->listeners[i].port_be == rte_cpu_to_be_16(port))
			return -EADDRINUSE;
	}
	if (s->listeners_count == QD_TCP_LISTENERS_MAX)
		return -ENOSPC;
	s->listeners[s->listeners_count++] = (struct qd_tcp_listener){
		.port_be = rte_cpu_to_be_16(port), .ops = ops, .app = app,
	};
	return 0;
}

struct qd_tcp_conn *
qd_tcp_connect(struct qd_tcp_stack *s, uint32_t dst_ip_be, uint16_t dst_port,
	       const struct qd_tcp_ops *ops, void *app, uint64_t now_us)
{
	struct rte_ether_addr mac;
	if (s->resolve == NULL || !s->resolve(s->io_ctx, dst_ip_be, &mac)) {
		errno = EAGAIN;
		return NULL;
	}
	const struct qd_tcp_conf *cf = &s->conf;
	uint32_t range = (uint32_t)(cf->local_port_max - cf->local_port_min) + 1;
	struct qd_tcp_key k = {
		.local_ip = s->src_ip, .remote_ip = dst_ip_be,
		.remote_port = rte_cpu_to_be_16(dst_port),
	};
	/* Only ports this stack owns, so the replies are steered back here. */
	for (uint32_t tries = 0; tries < range; tries++) {
		uint16_t p = s->next_port;
		s->next_port = (p >= cf->local_port_max) ? cf->local_port_min : (uint16_t)(p + 1);
		if (qd_tcp_port_owner(cf, p) != cf->steer_index)
			continue;
		k.local_port = rte_cpu_to_be_16(p);
		if (qd_tcp_conn_lookup(s, &k) != NULL)
			continue;
		struct qd_tcp_conn *c = qd_tcp_conn_new(s, &k);
		if (c == NULL) {
			errno = ENOSPC;
			return NULL;
		}
		c->ops = ops;
		c->app = app;
		c->peer_mac = mac;
		c->iss = qd_tcp_isn(s, &k, now_us);
		c->ts_offset = (uint32_t)(qd_siphash(&s->secret, &k, sizeof(k)) >> 32);
		c->snd_una = c->snd_nxt = c->snd_max = c->iss;
		c->mss = cf->mss;
		c->rcv_wscale = 0;
		while (c->rcv_wscale < TCP_WSCALE_MAX && (cf->rcvbuf_bytes >> c->rcv_wscale) > 65535)
			c->rcv_wscale++;
		c->last_rx_us = now_us;
		qd_tcp_conn_set_state(c, QD_TCP_SYN_SENT);
		TCP_COUNT(s, active_opens);
		qd_tcp_stack_enter(s);
		qd_tcp_send_syn(c, false, false, now_us);
		qd_tcp_arm_rto(c, now_us);
		qd_tcp_conn_schedule(c);
		qd_tcp_stack_leave(s);
		return c;
	}
	errno = EAGAIN;
	return NULL;
}

uint32_t
qd_tcp_send_space(const struct qd_tcp_conn *c)
{
	uint32_t buf = c->stack->conf.sndbuf_bytes;
	return c->sq_bytes >= buf ? 0 : buf - c->sq_bytes;
}

void
qd_tcp_want_writable(struct qd_tcp_conn *c)
{
	c->want_writable = true;
}

/* Append one single-segment chunk of at most mss bytes. */
static void
sq_append(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct qd_tcp_stack *s = c->stack;
	struct qd_tcp_mbuf_meta *meta = tcp_meta(s, m);
	meta->link = NULL;
	meta->fin = 0;
	meta->seq = (c->sq_tail == NULL) ? c->snd_una
					 : tcp_meta(s, c->sq_tail)->seq + c->sq_tail->data_len;
	if (c->sq_tail == NULL)
		c->sq_head = m;
	else
		tcp_meta(s, c->sq_tail)->link = m;
	c->sq_tail = m;
	if (c->sq_send == NULL)
		c->sq_send = m;
	c->sq_bytes += m->data_len;
}

int
qd_tcp_send(struct qd_tcp_conn *c, struct rte_mbuf *m, uint64_t now_us)
{
	struct qd_tcp_stack *s = c->stack;
	if (c->state != QD_TCP_ESTABLISHED && c->state != QD_TCP_CLOSE_WAIT)
		return c->state < QD_TCP_ESTABLISHED ? -ENOTCONN : -EPIPE;
	if (c->fin_queued)
		return -EPIPE;
	uint32_t len = rte_pktmbuf_pkt_len(m);
	if (len > qd_tcp_send_space(c)) {
		c->want_writable = true;
		TCP_COUNT(s, send_refused);
		return -EAGAIN;
	}
	/* Cut the chain into independent single-segment chunks of at most mss bytes;
	 * a longer segment is split by cloning, so no payload byte is copied. */
	while (m != NULL) {
		struct rte_mbuf *next = m->next;
		m->next = NULL;
		m->nb_segs = 1;
		m->pkt_len = m->data_len;
		while (m->data_len > c->mss) {
			struct rte_mbuf *rest = rte_pktmbuf_clone(m, s->pool);
			if (rest == NULL) {
				/* Keep what fits; the caller's data is never half lost: free the
				 * rest and report. Pool exhaustion is counted. */
				TCP_COUNT(s, no_mbuf);
				rte_pktmbuf_free(m);
				rte_pktmbuf_free(next);
				qd_tcp_output(c, now_us);
				return -ENOMEM;
			}
			rte_pktmbuf_trim(m, (uint16_t)(m->data_len - c->mss));
			rte_pktmbuf_adj(rest, c->mss);
			sq_append(c, m);
			m = rest;
		}
		if (m->data_len > 0)
			sq_append(c, m);
		else
			rte_pktmbuf_free(m);
		m = next;
	}
	qd_tcp_stack_enter(s);
	qd_tcp_output(c, now_us);
	qd_tcp_conn_schedule(c);
	qd_tcp_stack_leave(s);
	return 0;
}

void
qd_tcp_recv_consumed(struct qd_tcp_conn *c, uint32_t bytes, uint64_t now_us)
{
	RTE_ASSERT(bytes <= c->rcv_unconsumed);
	c->rcv_unconsumed -= u32_min(bytes, c->rcv_unconsumed);
	if (c->state == QD_TCP_CLOSED || c->state == QD_TCP_TIME_WAIT)
		return;
	/* Window update when the window grew past what the peer was last told by two
	 * segments (or half the buffer), or reopened from below a segment (RFC 1122
	 * 4.2.3.3). Compared with the last advertisement, not with the window before this
	 * call: an application that consumes in small steps must still reopen the window,
	 * or a peer facing a zero window waits for its backed-off persist probe. */
	uint32_t after = qd_tcp_rcv_window(c);
	uint32_t room = tcp_adv_room(c);
	uint32_t step = u32_min(2u * c->mss, c->stack->conf.rcvbuf_bytes / 2);
	if (after >= room + step || (room < c->mss && after >= c->mss)) {
		qd_tcp_stack_enter(c->stack);
		qd_tcp_send_ack(c, now_us);
		qd_tcp_stack_leave(c->stack);
	}
}

int
qd_tcp_shutdown(struct qd_tcp_conn *c, uint64_t now_us)
{
	switch ((enum qd_tcp_state)c->state) {
	case QD_TCP_ESTABLISHED:
	case QD_TCP_CLOSE_WAIT:
	case QD_TCP_SYN_RCVD:
		break;
	case QD_TCP_SYN_SENT:
		qd_tcp_conn_close(c, QD_TCP_CLOSE_NORMAL);
		return 0;
	default:
		return c->fin_queued ? 0 : -ENOTCONN;
	}
	if (c->fin_queued)
		return 0;
	c->fin_queued = true;
	qd_tcp_stack_enter(c->stack);
	qd_tcp_output(c, now_us);
	qd_tcp_conn_schedule(c);
	qd_tcp_stack_leave(c->stack);
	return 0;
}

void
qd_tcp_abort(struct qd_tcp_conn *c, uint64_t now_us)
{
	if (c->state == QD_TCP_CLOSED || c->closing)
		return;
	qd_tcp_stack_enter(c->stack);
	if (c->state != QD_TCP_SYN_SENT && c->state != QD_TCP_TIME_WAIT)
		qd_tcp_send_rst(c, now_us);
	qd_tcp_conn_close(c, QD_TCP_CLOSE_ABORT);
	qd_tcp_stack_leave(c->stack);
}

void
qd_tcp_conn_info(const struct qd_tcp_conn *c, struct qd_tcp_info *out)
{
	*out = (struct qd_tcp_info){
		.state = (enum qd_tcp_state)c->state,
		.local_ip_be = c->key.local_ip,
		.remote_ip_be = c->key.remote_ip,
		.local_port = rte_be_to_cpu_16(c->key.local_port),
		.remote_port = rte_be_to_cpu_16(c->key.remote_port),
		.snd_una = c->snd_una,
		.snd_nxt = c->snd_nxt,
		.rcv_nxt = c->rcv_nxt,
		.snd_wnd = c->snd_wnd,
		.cwnd = c->cwnd,
		.ssthresh = c->ssthresh,
		.srtt_us = c->srtt_us,
		.rto_us = c->rto_us,
		.mss = c->mss,
		.ws = c->ws_ok,
		.ts = c->ts_ok,
	};
}

void
qd_tcp_conn_set_app(struct qd_tcp_conn *c, const struct qd_tcp_ops *ops, void *app)
{
	c->ops = ops;
	c->app = app;
}

void *
qd_tcp_conn_app(const struct qd_tcp_conn *c)
{
	return c->app;
}

enum qd_tcp_state
qd_tcp_conn_state(const struct qd_tcp_conn *c)
{
	return (enum qd_tcp_state)c->state;
}

struct qd_tcp_stack *
qd_tcp_conn_stack(const struct qd_tcp_conn *c)
{
	return c->stack;
}

const struct qd_tcp_conf *
qd_tcp_stack_conf(const struct qd_tcp_stack *s)
{
	return &s->conf;
}

struct rte_mempool *
qd_tcp_stack_pool(const struct qd_tcp_stack *s)
{
	return s->pool;
}

void
qd_tcp_stack_read(const struct qd_tcp_stack *s, struct qd_tcp_counters *out,
		  uint32_t states[QD_TCP_STATE_MAX])
{
#define QD_X(name) out->name = qd_stat_read(&s->counters.name);
	QD_TCP_COUNTERS(QD_X)
#undef QD_X
	for (unsigned int i = 0; i < QD_TCP_STATE_MAX; i++)
		states[i] = __atomic_load_n(&s->state_count[i], __ATOMIC_RELAXED);
}
