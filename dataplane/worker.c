/*
 * Worker lcore loop and packet input (see worker.h).
 *
 * Everything a frame needs is decided here in one pass and the frame leaves
 * the function either queued for TX or freed, with the reason counted. ARP
 * answers and ICMP echo replies are written over the request, so the common
 * path allocates nothing; only requests we originate (resolution, gratuitous
 * ARP) take an mbuf from the pool.
 */
#include "worker.h"

#include <errno.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>

#include "arp.h"
#include "ipv4.h"
#include "log.h"

static inline void
drop(struct qd_worker *w, struct rte_mbuf *m, enum qd_drop_reason reason)
{
	qd_stat_add(&w->stats.drops[reason], 1);
	rte_pktmbuf_free(m);
}

static void
txq_push(struct qd_worker *w, struct rte_mbuf *m)
{
	if (w->txq.count == QD_TXQ_MAX)
		qd_worker_flush(w);
	if (w->txq.count == QD_TXQ_MAX) {
		/* No port to drain into (unit tests): refuse rather than overrun. */
		qd_stat_add(&w->stats.tx_dropped, 1);
		rte_pktmbuf_free(m);
		return;
	}
	w->txq.pkts[w->txq.count++] = m;
}

void
qd_worker_flush(struct qd_worker *w)
{
	if (!w->has_port)
		return;
	uint16_t n = w->txq.count;
	if (unlikely(qd_fault_active(&w->fault))) {
		uint64_t now = rte_rdtsc();
		n = qd_fault_apply(&w->fault, QD_FAULT_TX, w->txq.pkts, n, QD_TXQ_MAX, now);
		n += qd_fault_release(&w->fault, QD_FAULT_TX, now, w->txq.pkts + n,
				      (uint16_t)(QD_TXQ_MAX - n));
		w->txq.count = n;
	}
	if (n == 0)
		return;
	uint64_t bytes[QD_TXQ_MAX];
	for (uint16_t i = 0; i < n; i++)
		bytes[i] = rte_pktmbuf_pkt_len(w->txq.pkts[i]);
	uint16_t sent = rte_eth_tx_burst(w->conf.port_id, w->conf.queue_id, w->txq.pkts, n);
	uint64_t sent_bytes = 0;
	for (uint16_t i = 0; i < sent; i++)
		sent_bytes += bytes[i];
	for (uint16_t i = sent; i < n; i++)
		rte_pktmbuf_free(w->txq.pkts[i]);
	qd_stat_add(&w->stats.tx_packets, sent);
	qd_stat_add(&w->stats.tx_bytes, sent_bytes);
	if (sent < n)
		qd_stat_add(&w->stats.tx_dropped, (uint64_t)(n - sent));
	w->txq.count = 0;
}

static void
report_learn(struct qd_worker *w, const struct qd_arp_view *v, bool addressed_to_us)
{
	struct qd_msg msg = {
		.type = QD_MSG_NEIGH_LEARN,
		.ip_be = v->sip_be,
		.lcore = (uint16_t)w->conf.lcore_id,
		.arg = addressed_to_us ? 1 : 0,
	};
	memcpy(msg.mac, v->sha.addr_bytes, sizeof(msg.mac));
	if (w->events == NULL || rte_ring_enqueue_elem(w->events, &msg, sizeof(msg)) != 0) {
		qd_stat_add(&w->stats.events_full, 1);
		return;
	}
	qd_stat_add(&w->stats.events_out, 1);
}

static void
arp_input(struct qd_worker *w, struct rte_mbuf *m)
{
	struct qd_arp_view v;
	enum qd_drop_reason reason;
	if (qd_arp_parse(m, &v, &reason) != 0) {
		drop(w, m, reason);
		return;
	}
	if (v.op == RTE_ARP_OP_REQUEST)
		qd_stat_add(&w->stats.arp_requests_in, 1);
	else
		qd_stat_add(&w->stats.arp_replies_in, 1);

	if (!qd_iface_owns(w->iface, v.tip_be)) {
		/* A gratuitous announcement refreshes a neighbour we already track. */
		if (v.sip_be == v.tip_be && v.sip_be != 0)
			report_learn(w, &v, false);
		drop(w, m, QD_DROP_arp_not_ours);
		return;
	}
	/* sip 0 is an RFC 5227 probe: answer it, learn nothing. */
	if (v.sip_be != 0 && !qd_iface_owns(w->iface, v.sip_be))
		report_learn(w, &v, true);
	if (v.op == RTE_ARP_OP_REQUEST) {
		qd_arp_make_reply(m, &v, &w->iface->mac);
		txq_push(w, m);
		qd_stat_add(&w->stats.arp_replies_out, 1);
		return;
	}
	rte_pktmbuf_free(m);
}

/* Hand a segment to the stack that owns it. Connections we opened use local ports
 * partitioned among workers, and the port may have delivered the reply to another
 * queue (af_packet's fanout hash cannot be steered): pass it over a ring. */
static void
tcp_input(struct qd_worker *w, struct rte_mbuf *m, struct rte_ipv4_hdr *ip)
{
	const struct qd_tcp_conf *tc = &w->conf.tcp;
	if (rte_pktmbuf_data_len(m) < RTE_ETHER_HDR_LEN + sizeof(*ip) + 4) {
		drop(w, m, QD_DROP_runt);
		return;
	}
	const uint16_t *ports = (const uint16_t *)((const char *)ip + sizeof(*ip));
	uint16_t dport = rte_be_to_cpu_16(ports[1]);
	if (tc->steer_count > 1 && qd_tcp_port_is_ephemeral(tc, dport)) {
		unsigned int owner = qd_tcp_port_owner(tc, dport);
		if (owner != tc->steer_index) {
			if (rte_ring_mp_enqueue(w->steer[owner], m) != 0) {
				drop(w, m, QD_DROP_steer_full);
				return;
			}
			qd_stat_add(&w->stats.steered_out, 1);
			return;
		}
	}
	qd_tcp_input(w->tcp, m, ip, w->now_us);
}

static void
ipv4_input(struct qd_worker *w, struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip;
	enum qd_drop_reason reason;
	if (qd_ipv4_check(m, &ip, &reason) != 0) {
		drop(w, m, reason);
		return;
	}
	if (ip->dst_addr != w->iface->ip_be) {
		enum qd_vip_state st;
		if (qd_vip_lookup(&w->iface->vips, ip->dst_addr, &st) < 0) {
			drop(w, m, QD_DROP_ip_not_ours);
			return;
		}
		if (st == QD_VIP_ABSENT) {
			/* Silently: no RST, the peer that holds it now may have this flow. */
			drop(w, m, QD_DROP_vip_absent);
			return;
		}
	}
	switch (ip->next_proto_id) {
	case IPPROTO_TCP:
		tcp_input(w, m, ip);
		return;
	case IPPROTO_ICMP:
		if (qd_icmp_echo_reply(m, ip, &w->iface->mac, &reason) != 0) {
			drop(w, m, reason);
			return;
		}
		qd_stat_add(&w->stats.icmp_echo_in, 1);
		txq_push(w, m);
		qd_stat_add(&w->stats.icmp_echo_out, 1);
		return;
	default:
		drop(w, m, QD_DROP_ip_proto);
		return;
	}
}

void
qd_worker_input(struct qd_worker *w, struct rte_mbuf *m)
{
	qd_stat_add(&w->stats.rx_packets, 1);
	qd_stat_add(&w->stats.rx_bytes, rte_pktmbuf_pkt_len(m));
	if (unlikely(m->nb_segs != 1)) {
		drop(w, m, QD_DROP_multiseg);
		return;
	}
	if (unlikely(rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr))) {
		drop(w, m, QD_DROP_runt);
		return;
	}
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	if (!rte_is_same_ether_addr(&eth->dst_addr, &w->iface->mac) &&
	    !rte_is_broadcast_ether_addr(&eth->dst_addr)) {
		drop(w, m, QD_DROP_other_mac);
		return;
	}
	switch (eth->ether_type) {
	case RTE_BE16(RTE_ETHER_TYPE_IPV4):
		ipv4_input(w, m);
		return;
	case RTE_BE16(RTE_ETHER_TYPE_ARP):
		arp_input(w, m);
		return;
	default:
		drop(w, m, QD_DROP_ethertype);
		return;
	}
}

static void
send_arp_request(struct qd_worker *w, uint32_t sip_be, uint32_t tip_be, uint64_t *counter)
{
	struct rte_mbuf *m = qd_arp_build_request(w->pool, &w->iface->mac, sip_be, tip_be);
	if (m == NULL) {
		qd_stat_add(&w->stats.drops[QD_DROP_no_mbuf], 1);
		return;
	}
	txq_push(w, m);
	qd_stat_add(counter, 1);
}

void
qd_worker_handle_msg(struct qd_worker *w, const struct qd_msg *msg)
{
	qd_stat_add(&w->stats.mailbox_in, 1);
	switch ((enum qd_msg_type)msg->type) {
	case QD_MSG_NEIGH_SET:
		if (qd_neigh_replica_set(&w->neigh, msg->ip_be, msg->mac,
					 (enum qd_neigh_state)msg->state) != 0)
			QD_LOG(WARNING, dp, "lcore %u: neighbour replica full",
				w->conf.lcore_id);
		return;
	case QD_MSG_TX_ARP_REQUEST:
		send_arp_request(w, w->iface->ip_be, msg->ip_be, &w->stats.arp_requests_out);
		return;
	case QD_MSG_TX_GARP:
		send_arp_request(w, msg->ip_be, msg->ip_be, &w->stats.garp_out);
		return;
	case QD_MSG_TCP_PROBE: {
		uint16_t port = (uint16_t)(msg->arg & 0xffff);
		uint32_t conns = (uint32_t)((msg->arg >> 16) & 0xffff);
		uint32_t id = (uint32_t)(msg->arg >> 32);
		if (qd_tcp_probe_start(w->services, id, msg->ip_be, port, conns, msg->arg2) != 0)
			QD_LOG(WARNING, dp, "lcore %u: tcp probe %u refused", w->conf.lcore_id, id);
		return;
	}
	case QD_MSG_NEIGH_LEARN:
		break;
	}
	QD_LOG(ERR, dp, "lcore %u: unexpected message type %u", w->conf.lcore_id,
		msg->type);
}

static void
tcp_tx(void *ctx, struct rte_mbuf *m)
{
	txq_push(ctx, m);
}

static bool
tcp_resolve(void *ctx, uint32_t ip_be, struct rte_ether_addr *mac)
{
	struct qd_worker *w = ctx;
	struct qd_neigh_entry *e = qd_neigh_lookup(&w->neigh, ip_be);
	if (e == NULL || !qd_neigh_state_usable((enum qd_neigh_state)e->state))
		return false;
	memcpy(mac->addr_bytes, e->mac, RTE_ETHER_ADDR_LEN);
	return true;
}

void
qd_worker_tcp_conf_default(struct qd_tcp_conf *t)
{
	*t = (struct qd_tcp_conf){
		.max_connections = 64, .syn_backlog = 16, .time_wait_max = 16,
		.time_wait_ms = 1000, .fin_wait2_ms = 1000, .sndbuf_bytes = 65536,
		.rcvbuf_bytes = 65536, .mss = 1460, .keepalive_intvl_ms = 1000,
		.keepalive_probes = 3, .challenge_ack_per_s = 100, .syn_cookies = true,
		.local_port_min = 32768, .local_port_max = 60999, .steer_index = 0,
		.steer_count = 1,
	};
}

/* Client connections are counted by the VIP slot they arrived on. */
static int
vip_classify(void *ctx, uint32_t local_ip_be)
{
	const struct qd_worker *w = ctx;
	enum qd_vip_state st;
	return qd_vip_lookup(&w->iface->vips, local_ip_be, &st);
}

/* Connections of a dead peer, on a VIP we took over a moment ago (peer_sync.c). */
static bool
vip_adopt_ok(void *ctx, uint32_t local_ip_be)
{
	const struct qd_worker *w = ctx;
	return qd_vip_adopting(&w->iface->vips, local_ip_be);
}

static int
worker_start_tcp(struct qd_worker *w)
{
	const struct qd_worker_conf *conf = &w->conf;
	w->tcp = qd_tcp_stack_create(&conf->tcp, conf->lcore_id, w->pool, &w->iface->mac,
				     w->iface->ip_be, &conf->secret, tcp_tx, tcp_resolve, w);
	if (w->tcp == NULL)
		return -errno;
	qd_tcp_set_accounting(w->tcp, vip_classify, w, w->vip_conns, QD_VIP_SLOTS_MAX);
	qd_tcp_set_adoption(w->tcp, vip_adopt_ok, w);
	w->services = qd_tcp_services_create(w->tcp, conf->tcp.max_connections, conf->lcore_id);
	if (w->services == NULL)
		return -errno;
	int rc = qd_tcp_services_listen(w->services, conf->echo_port, conf->discard_port);
	if (rc != 0 || !conf->proxy)
		return rc;
	struct qd_proxy_conf pc = conf->proxy_conf;
	pc.vips = &w->iface->vips;
	w->proxy = qd_proxy_create(&pc, w->tcp, conf->routes, conf->lcore_id);
	if (w->proxy == NULL)
		return -errno;
	if (conf->health.interval_ms > 0 && conf->proxy_conf.coord_table != NULL) {
		w->health = qd_health_create(&conf->health, w->tcp, conf->proxy_conf.coord_table,
					     conf->lcore_id);
		if (w->health == NULL)
			return -errno;
	}
	/* Routes the state log restored are checked with their coordinators once, quiet
	 * routes every route.verify_after_s, and unknown query ids are asked for. */
	const struct qd_reconcile_conf rconf = {
		.worker_index = pc.worker_index,
		.worker_count = pc.worker_count,
		.verify_after_us = (uint64_t)pc.verify_after_s * 1000000u,
		.discovery_max = pc.discovery_max,
		.discovery_timeout_ms = pc.discovery_timeout_ms,
	};
	w->reconcile = qd_reconcile_create(&rconf, w->tcp, conf->routes, pc.coord_table, w->proxy,
					   conf->lcore_id);
	if (w->reconcile == NULL)
		return -errno;
	if (pc.discovery_max > 0)
		qd_proxy_set_discovery(w->proxy, w->reconcile);
	return 0;
}

struct qd_worker *
qd_worker_create(const struct qd_worker_conf *conf, const struct qd_iface *iface,
		 struct rte_mempool *pool, struct rte_ring *mailbox, struct rte_ring *events,
		 struct rte_ring *const *steer, const bool *stop, bool has_port)
{
	if (conf->burst == 0 || conf->burst > QD_BURST_MAX || iface == NULL || pool == NULL ||
	    stop == NULL) {
		errno = EINVAL;
		return NULL;
	}
	struct qd_worker *w = rte_zmalloc_socket("qd_worker", sizeof(*w), RTE_CACHE_LINE_SIZE,
						 (int)rte_lcore_to_socket_id(conf->lcore_id));
	if (w == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	w->conf = *conf;
	w->iface = iface;
	w->pool = pool;
	w->mailbox = mailbox;
	w->events = events;
	w->stop = stop;
	w->has_port = has_port;
	w->steer = steer;
	w->tsc_per_us = RTE_MAX(rte_get_tsc_hz() / 1000000, (uint64_t)1);
	w->now_us = rte_rdtsc() / w->tsc_per_us;
	int rc = qd_neigh_table_init(&w->neigh, conf->neigh_capacity);
	if (rc == 0)
		rc = qd_fault_init(&w->fault, &conf->fault, conf->lcore_id, pool, rte_get_tsc_hz());
	if (rc == 0)
		rc = worker_start_tcp(w);
	if (rc != 0) {
		qd_worker_destroy(w);
		errno = -rc;
		return NULL;
	}
	return w;
}

void
qd_worker_destroy(struct qd_worker *w)
{
	if (w == NULL)
		return;
	qd_tcp_services_destroy(w->services);
	qd_tcp_stack_destroy(w->tcp);
	qd_health_destroy(w->health);
	qd_reconcile_destroy(w->reconcile);
	qd_proxy_destroy(w->proxy);
	for (uint16_t i = 0; i < w->txq.count; i++)
		rte_pktmbuf_free(w->txq.pkts[i]);
	qd_fault_fini(&w->fault);
	qd_neigh_table_free(&w->neigh);
	rte_free(w);
}

unsigned int
qd_worker_drain_mailbox(struct qd_worker *w)
{
	struct qd_msg msgs[QD_MAILBOX_BURST];
	unsigned int n = rte_ring_dequeue_burst_elem(w->mailbox, msgs, sizeof(msgs[0]),
						     QD_MAILBOX_BURST, NULL);
	for (unsigned int i = 0; i < n; i++)
		qd_worker_handle_msg(w, &msgs[i]);
	return n;
}

static unsigned int
drain_steered(struct qd_worker *w)
{
	if (w->steer == NULL)
		return 0;
	struct rte_mbuf *pkts[QD_BURST_MAX];
	struct rte_ring *r = w->steer[w->conf.tcp.steer_index];
	unsigned int n = rte_ring_sc_dequeue_burst(r, (void **)pkts, QD_BURST_MAX, NULL);
	for (unsigned int i = 0; i < n; i++) {
		struct rte_ipv4_hdr *ip;
		enum qd_drop_reason reason;
		/* Checked by the sender already; this only recovers the header pointer. */
		if (qd_ipv4_check(pkts[i], &ip, &reason) != 0) {
			drop(w, pkts[i], reason);
			continue;
		}
		qd_tcp_input(w->tcp, pkts[i], ip, w->now_us);
	}
	qd_stat_add(&w->stats.steered_in, n);
	return n;
}

static void
idle_sleep(struct qd_worker *w)
{
	/* Exponential back-off: the first sleeps are short so a burst that
	 * arrives right after the lull waits little; a long lull costs ~nothing. */
	if (w->sleep_us == 0)
		w->sleep_us = QD_IDLE_SLEEP_MIN_US;
	else if (w->sleep_us < w->conf.idle_sleep_max_us)
		w->sleep_us = RTE_MIN(w->sleep_us * 2, w->conf.idle_sleep_max_us);
	/* Asleep, this lcore holds no route: readers that wait for it must not. */
	if (w->conf.routes != NULL)
		qd_route_thread_offline(w->conf.routes, w->conf.tcp.steer_index);
	rte_delay_us_sleep(w->sleep_us);
	if (w->conf.routes != NULL)
		qd_route_thread_online(w->conf.routes, w->conf.tcp.steer_index);
	qd_stat_add(&w->stats.idle_sleeps, 1);
	qd_stat_add(&w->stats.idle_sleep_us, w->sleep_us);
}

int
qd_worker_main(void *arg)
{
	struct qd_worker *w = arg;
	struct rte_mbuf *pkts[QD_FAULT_BURST_MAX];
	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t idle_after = hz / 1000000 * w->conf.idle_after_us;
	const uint64_t slow = hz / 1000000 * QD_SLOW_LOOP_US;

	QD_LOG(INFO, dp, "lcore %u: worker up on port %u queue %u (idle %s)",
		w->conf.lcore_id, w->conf.port_id, w->conf.queue_id, w->conf.idle ? "on" : "off");
	w->last_work_tsc = rte_rdtsc();
	struct qd_route_table *routes = w->conf.routes;
	unsigned int rcu_id = w->conf.tcp.steer_index;
	if (routes != NULL && qd_route_thread_register(routes, rcu_id) != 0) {
		QD_LOG(ERR, dp, "lcore %u: cannot register with the route table", w->conf.lcore_id);
		return -1;
	}
	while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
		uint64_t start = rte_rdtsc();
		w->now_us = start / w->tsc_per_us;
		qd_tcp_services_set_now(w->services, w->now_us);
		if (w->proxy != NULL) {
			/* Nothing from the last iteration holds a route entry any more. */
			qd_route_quiescent(routes, rcu_id);
			qd_proxy_set_now(w->proxy, w->now_us);
		}
		if (w->health != NULL)
			qd_health_set_now(w->health, w->now_us);
		if (w->reconcile != NULL)
			qd_reconcile_set_now(w->reconcile, w->now_us);
		uint16_t n = rte_eth_rx_burst(w->conf.port_id, w->conf.queue_id, pkts,
					      w->conf.burst);
		if (unlikely(qd_fault_active(&w->fault))) {
			n = qd_fault_apply(&w->fault, QD_FAULT_RX, pkts, n, RTE_DIM(pkts), start);
			n += qd_fault_release(&w->fault, QD_FAULT_RX, start, pkts + n,
					      (uint16_t)(RTE_DIM(pkts) - n));
		}
		for (uint16_t i = 0; i < n; i++) {
			if (i + 1 < n)
				rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
			qd_worker_input(w, pkts[i]);
		}
		unsigned int msgs = qd_worker_drain_mailbox(w) + drain_steered(w);
		qd_tcp_probe_poll(w->services);
		qd_tcp_timers(w->tcp, w->now_us);
		if (w->proxy != NULL)
			qd_proxy_poll(w->proxy, w->now_us);
		if (w->health != NULL)
			qd_health_poll(w->health, w->now_us);
		if (w->reconcile != NULL)
			qd_reconcile_poll(w->reconcile, w->now_us);
		qd_worker_flush(w);
		qd_stat_add(&w->stats.loops, 1);
		if (n + msgs > 0 || w->txq.count > 0) {
			uint64_t end = rte_rdtsc();
			qd_stat_add(&w->stats.busy_loops, 1);
			qd_stat_add(&w->stats.busy_cycles, end - start);
			if (end - start > slow)
				qd_stat_add(&w->stats.slow_loops, 1);
			w->last_work_tsc = end;
			w->sleep_us = 0;
		} else if (w->conf.idle && start - w->last_work_tsc > idle_after &&
			   qd_fault_held(&w->fault, QD_FAULT_RX) +
				   qd_fault_held(&w->fault, QD_FAULT_TX) == 0) {
			idle_sleep(w);
		}
	}
	qd_worker_flush(w);
	if (routes != NULL)
		qd_route_thread_unregister(routes, rcu_id);
	QD_LOG(INFO, dp, "lcore %u: worker stopped", w->conf.lcore_id);
	return 0;
}
