/*
 * Micro-benchmarks of the data-plane packet functions on crafted mbufs: ARP
 * answer, IPv4 check + ICMP echo, and the whole per-frame input path of a
 * worker (qd_worker_input) on a mix of frames.
 *
 * One Google Benchmark iteration is one packet: bodies work on bursts of
 * BURST mbufs (as a worker does after rte_eth_rx_burst) and count BURST
 * iterations per burst, so "Time" is ns/packet and items_per_second is
 * packets/s.
 *
 * Every function here rewrites its frame in place (a request becomes its
 * reply), so each packet is put back before it is handled again: a 42-byte
 * memcpy of the headers the functions touch (Ethernet + ARP, or Ethernet +
 * IPv4 + ICMP; the ICMP payload is never written) and the mbuf lengths.
 * PauseTiming costs more than that, so the reset is timed with the rest;
 * packet/reset_headers measures it alone so it can be subtracted.
 *
 * The suite starts DPDK's EAL once, without hugepages, devices or shared
 * files, on lcore 0, and makes one small mbuf pool.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "arp.h"
#include "iface.h"
#include "ipv4.h"
#include "msg.h"
#include "shim.h"
#include "worker.h"

#define BURST 32
#define POOL_MBUFS 2047          /* 2^n - 1: what rte_mempool sizes best */
#define POOL_CACHE 256
#define FRAME_MIN 60             /* Ethernet minimum without FCS */
#define FRAME_MAX 1514
#define RESET_BYTES 42           /* Ethernet + ARP, or Ethernet + IPv4 + ICMP headers */
#define MIX_ARP_EVERY 8          /* answer_mix: one ARP request in 8 frames */

_Static_assert(sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr) == RESET_BYTES,
	       "ARP frame headers");
_Static_assert(sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) +
		       sizeof(struct rte_icmp_hdr) == RESET_BYTES,
	       "ICMP frame headers");
_Static_assert(BURST <= QD_BURST_MAX && BURST <= QD_TXQ_MAX, "a burst fits the worker txq");

/* Set once by the suite init, read by every benchmark. */
static struct rte_mempool *pool;
static struct rte_ring *events;
static struct qd_iface iface;
static const bool stop_flag;

static const struct rte_ether_addr our_mac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
static const struct rte_ether_addr client_mac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}};
static const struct rte_ether_addr other_mac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x03}};
#define OUR_IP "10.0.0.1"
#define VIP "10.0.0.10"
#define CLIENT_IP "10.0.0.2"
#define OTHER_IP "10.0.0.99"

/* A frame as it arrives, copied into an mbuf before each use. */
struct tmpl {
	uint16_t len;
	uint8_t bytes[FRAME_MAX];
};

/* Per-call context: BURST mbufs, each with the template it is reset from. */
struct burst_ctx {
	struct rte_mbuf *m[BURST];
	const struct tmpl *t[BURST];
	struct qd_worker *w;        /* worker_input benchmarks only */
	struct tmpl frames[4];
};

static uint32_t
ip_be(const char *s)
{
	return inet_addr(s);
}

/* ---- Crafted frames ---------------------------------------------------------------- */

static void
make_arp_request(struct tmpl *t, uint32_t tip_be)
{
	memset(t, 0, sizeof(*t));
	t->len = FRAME_MIN;
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)t->bytes;
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	memset(&eth->dst_addr, 0xff, sizeof(eth->dst_addr));
	eth->src_addr = client_mac;
	eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_ARP);
	a->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
	a->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	a->arp_hlen = RTE_ETHER_ADDR_LEN;
	a->arp_plen = sizeof(uint32_t);
	a->arp_opcode = RTE_BE16(RTE_ARP_OP_REQUEST);
	a->arp_data.arp_sha = client_mac;
	uint32_t sip = ip_be(CLIENT_IP);
	memcpy(&a->arp_data.arp_sip, &sip, sizeof(sip));
	memcpy(&a->arp_data.arp_tip, &tip_be, sizeof(tip_be));
}

/* An ICMP echo request of <len> bytes of frame (FCS excluded) from the client to
 * <dst_be> at <dst_mac>, both checksums valid. */
static void
make_icmp_echo(struct tmpl *t, uint16_t len, const struct rte_ether_addr *dst_mac,
	       uint32_t dst_be)
{
	memset(t, 0, sizeof(*t));
	t->len = len;
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)t->bytes;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)(ip + 1);
	uint16_t ip_len = (uint16_t)(len - sizeof(*eth));
	eth->dst_addr = *dst_mac;
	eth->src_addr = client_mac;
	eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16(ip_len);
	ip->packet_id = RTE_BE16(0x1234);
	ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_ICMP;
	ip->src_addr = ip_be(CLIENT_IP);
	ip->dst_addr = dst_be;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REQUEST;
	icmp->icmp_ident = RTE_BE16(0x4242);
	icmp->icmp_seq_nb = RTE_BE16(1);
	uint8_t *payload = (uint8_t *)(icmp + 1);
	uint16_t payload_len = (uint16_t)(ip_len - sizeof(*ip) - sizeof(*icmp));
	for (uint16_t i = 0; i < payload_len; i++)
		payload[i] = (uint8_t)i;
	icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, (size_t)ip_len - sizeof(*ip));
}

/* Whole frame into <m>: done once per mbuf in setup, and for freshly allocated mbufs. */
static void
load(struct rte_mbuf *m, const struct tmpl *t)
{
	memcpy(rte_pktmbuf_mtod(m, void *), t->bytes, t->len);
	m->data_len = t->len;
	m->pkt_len = t->len;
}

/* The per-packet reset that precedes every timed use (see the top of the file). */
static inline void
reset(struct rte_mbuf *m, const struct tmpl *t)
{
	memcpy(rte_pktmbuf_mtod(m, void *), t->bytes, RESET_BYTES);
	m->data_len = t->len;
	m->pkt_len = t->len;
}

/* ---- Suite: EAL, pool, events ring --------------------------------------------------- */

static int
packet_suite_init(void)
{
	char *eal_argv[] = {"qd-microbench", "-l", "0", "--no-huge", "-m", "256",
			    "--no-shconf", "--no-pci", "--no-telemetry", "--log-level=error",
			    NULL};
	int eal_argc = (int)(sizeof(eal_argv) / sizeof(eal_argv[0])) - 1;
	if (rte_eal_init(eal_argc, eal_argv) < 0)
		return -rte_errno;
	pool = rte_pktmbuf_pool_create("qdbench", POOL_MBUFS, POOL_CACHE, 0,
				       RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	/* The worker reports ARP senders to the main lcore; here nobody reads the ring but
	 * the benchmark itself, which empties it after every burst. */
	events = rte_ring_create_elem("qdbench_ev", sizeof(struct qd_msg), QD_EVENTS_SIZE,
				      (int)rte_socket_id(), RING_F_SC_DEQ);
	if (pool == NULL || events == NULL) {
		/* fini runs only after a successful init: undo here. */
		rte_ring_free(events);
		rte_mempool_free(pool);
		rte_eal_cleanup();
		return -ENOMEM;
	}
	iface.mac = our_mac;
	iface.ip_be = ip_be(OUR_IP);
	iface.prefix_len = 24;
	qd_vip_table_init(&iface.vips, iface.ip_be, iface.prefix_len, NULL, NULL);
	char err[QD_VIP_ERR_MAX];
	if (qd_vip_add(&iface.vips, ip_be(VIP), QD_VIP_ACTIVE, 0, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_packet: vip: %s\n", err);
		rte_ring_free(events);
		rte_mempool_free(pool);
		rte_eal_cleanup();
		return -EINVAL;
	}
	return 0;
}

static void
packet_suite_fini(void)
{
	rte_ring_free(events);
	rte_mempool_free(pool);
	rte_eal_cleanup();
}

/* ---- Per-call context -------------------------------------------------------------- */

static void
burst_ctx_free(void *arg)
{
	struct burst_ctx *c = arg;
	if (c == NULL)
		return;
	qd_worker_destroy(c->w); /* frees what its txq still holds */
	for (unsigned int i = 0; i < BURST; i++)
		rte_pktmbuf_free(c->m[i]);
	free(c);
}

/* <kinds> templates of <c->frames>; slot i of the burst uses <pick(i)>. */
static int
burst_ctx_fill(struct burst_ctx *c, unsigned int (*pick)(unsigned int))
{
	if (rte_pktmbuf_alloc_bulk(pool, c->m, BURST) != 0) {
		memset(c->m, 0, sizeof(c->m));
		return -ENOBUFS;
	}
	for (unsigned int i = 0; i < BURST; i++) {
		c->t[i] = &c->frames[pick(i)];
		load(c->m[i], c->t[i]);
	}
	return 0;
}

static unsigned int
pick_first(unsigned int i)
{
	(void)i;
	return 0;
}

static unsigned int
pick_answer_mix(unsigned int i)
{
	return i % MIX_ARP_EVERY == 0 ? 1 : 0;
}

static unsigned int
pick_drop_mix(unsigned int i)
{
	return i % 4;
}

static int
setup_arp(struct qd_bench_state *s, void **ctx)
{
	(void)s;
	struct burst_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	make_arp_request(&c->frames[0], ip_be(VIP));
	int rc = burst_ctx_fill(c, pick_first);
	if (rc != 0) {
		burst_ctx_free(c);
		return rc;
	}
	*ctx = c;
	return 0;
}

static int
setup_icmp(struct qd_bench_state *s, void **ctx)
{
	int64_t len = qd_bench_arg(s);
	if (len < FRAME_MIN || len > FRAME_MAX || len > RTE_MBUF_DEFAULT_DATAROOM)
		return -EINVAL;
	struct burst_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	make_icmp_echo(&c->frames[0], (uint16_t)len, &our_mac, ip_be(VIP));
	int rc = burst_ctx_fill(c, pick_first);
	if (rc != 0) {
		burst_ctx_free(c);
		return rc;
	}
	*ctx = c;
	return 0;
}

static struct qd_worker *
bench_worker(void)
{
	struct qd_worker_conf wc = {
		.lcore_id = rte_lcore_id(),
		.burst = BURST,
		.idle = false,
		.neigh_capacity = 1024,
	};
	qd_worker_tcp_conf_default(&wc.tcp);
	return qd_worker_create(&wc, &iface, pool, NULL, events, NULL, &stop_flag, false);
}

/* answer_mix: 7 ICMP echo requests (64 bytes) to the VIP for 1 ARP request for it. */
static int
setup_answer_mix(struct qd_bench_state *s, void **ctx)
{
	(void)s;
	struct burst_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	make_icmp_echo(&c->frames[0], 64, &our_mac, ip_be(VIP));
	make_arp_request(&c->frames[1], ip_be(VIP));
	c->w = bench_worker();
	int rc = c->w == NULL ? -errno : burst_ctx_fill(c, pick_answer_mix);
	if (rc != 0) {
		burst_ctx_free(c);
		return rc;
	}
	*ctx = c;
	return 0;
}

/* drop_mix: frames a worker refuses, one of each kind in turn: unicast to another MAC,
 * echo to an address we do not own, ARP for an address we do not own, bad IP checksum. */
static int
setup_drop_mix(struct qd_bench_state *s, void **ctx)
{
	(void)s;
	struct burst_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	make_icmp_echo(&c->frames[0], 64, &other_mac, ip_be(VIP));
	make_icmp_echo(&c->frames[1], 64, &our_mac, ip_be(OTHER_IP));
	make_arp_request(&c->frames[2], ip_be(OTHER_IP));
	make_icmp_echo(&c->frames[3], 64, &our_mac, ip_be(VIP));
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(c->frames[3].bytes +
							   sizeof(struct rte_ether_hdr));
	ip->hdr_checksum = (uint16_t)(ip->hdr_checksum + 1);
	c->w = bench_worker();
	int rc = c->w == NULL ? -errno : burst_ctx_fill(c, pick_drop_mix);
	if (rc != 0) {
		burst_ctx_free(c);
		return rc;
	}
	*ctx = c;
	return 0;
}

/* ---- Bodies ------------------------------------------------------------------------ */

static void
bm_reset_headers(struct qd_bench_state *s, void *ctx)
{
	struct burst_ctx *c = ctx;
	while (qd_bench_keep_running_batch(s, BURST)) {
		for (unsigned int i = 0; i < BURST; i++)
			reset(c->m[i], c->t[i]);
		qd_bench_clobber();
	}
	qd_bench_set_items(s, qd_bench_iterations(s));
}

static void
bm_arp_reply(struct qd_bench_state *s, void *ctx)
{
	struct burst_ctx *c = ctx;
	int bad = 0;
	while (qd_bench_keep_running_batch(s, BURST)) {
		for (unsigned int i = 0; i < BURST; i++) {
			struct qd_arp_view v;
			enum qd_drop_reason reason;
			reset(c->m[i], c->t[i]);
			int rc = qd_arp_parse(c->m[i], &v, &reason);
			bad |= rc;
			if (likely(rc == 0))
				qd_arp_make_reply(c->m[i], &v, &our_mac);
		}
	}
	if (bad != 0)
		qd_bench_skip(s, "qd_arp_parse refused the request");
	qd_bench_set_items(s, qd_bench_iterations(s));
}

static void
bm_icmp_echo(struct qd_bench_state *s, void *ctx)
{
	struct burst_ctx *c = ctx;
	int bad = 0;
	while (qd_bench_keep_running_batch(s, BURST)) {
		for (unsigned int i = 0; i < BURST; i++) {
			struct rte_ipv4_hdr *ip;
			enum qd_drop_reason reason;
			reset(c->m[i], c->t[i]);
			int rc = qd_ipv4_check(c->m[i], &ip, &reason);
			if (likely(rc == 0))
				rc = qd_icmp_echo_reply(c->m[i], ip, &our_mac, &reason);
			bad |= rc;
		}
	}
	if (bad != 0)
		qd_bench_skip(s, "the echo request was refused");
	qd_bench_set_items(s, qd_bench_iterations(s));
	qd_bench_set_bytes(s, qd_bench_iterations(s) * c->t[0]->len);
}

/* Empty the events ring as the main lcore would (timed: a burst dequeue per burst). */
static void
drain_events(void)
{
	struct qd_msg msgs[BURST];
	while (rte_ring_dequeue_burst_elem(events, msgs, sizeof(msgs[0]), BURST, NULL) == BURST)
		;
}

static void
bm_worker_answer_mix(struct qd_bench_state *s, void *ctx)
{
	struct burst_ctx *c = ctx;
	struct qd_worker *w = c->w;
	while (qd_bench_keep_running_batch(s, BURST)) {
		for (unsigned int i = 0; i < BURST; i++) {
			reset(c->m[i], c->t[i]);
			qd_worker_input(w, c->m[i]);
		}
		/* Every frame was answered in place: txq holds our BURST mbufs, which the
		 * next burst reuses (nothing to free). */
		if (unlikely(w->txq.count != BURST)) {
			/* Some frame was dropped, hence freed: what txq holds is all we own,
			 * and qd_worker_destroy() frees it. */
			memset(c->m, 0, sizeof(c->m));
			qd_bench_skip(s, "a frame of the mix was not answered");
			break;
		}
		w->txq.count = 0;
		drain_events();
	}
	qd_bench_set_items(s, qd_bench_iterations(s));
}

static void
bm_worker_drop_mix(struct qd_bench_state *s, void *ctx)
{
	struct burst_ctx *c = ctx;
	struct qd_worker *w = c->w;
	int bad = 0;
	while (qd_bench_keep_running_batch(s, BURST)) {
		for (unsigned int i = 0; i < BURST; i++)
			qd_worker_input(w, c->m[i]);
		/* Every frame was freed: refill as a PMD refills its RX ring (timed). */
		bad |= rte_pktmbuf_alloc_bulk(pool, c->m, BURST);
		if (unlikely(bad != 0))
			break;
		for (unsigned int i = 0; i < BURST; i++)
			load(c->m[i], c->t[i]);
	}
	if (bad != 0 || w->txq.count != 0) {
		memset(c->m, 0, sizeof(c->m));
		qd_bench_skip(s, "mbuf refill failed or a frame of the mix was answered");
	}
	qd_bench_set_items(s, qd_bench_iterations(s));
}

static const struct qd_bench packet_benches[] = {
	{
		.name = "reset_headers",
		.fn = bm_reset_headers,
		.setup = setup_arp,
		.teardown = burst_ctx_free,
	},
	{
		.name = "arp_reply",
		.fn = bm_arp_reply,
		.setup = setup_arp,
		.teardown = burst_ctx_free,
	},
	{
		.name = "icmp_echo",
		.fn = bm_icmp_echo,
		.setup = setup_icmp,
		.teardown = burst_ctx_free,
		.args_count = 2,
		.args = {64, 1400},
	},
	{
		.name = "worker_input_answer_mix",
		.fn = bm_worker_answer_mix,
		.setup = setup_answer_mix,
		.teardown = burst_ctx_free,
	},
	{
		.name = "worker_input_drop_mix",
		.fn = bm_worker_drop_mix,
		.setup = setup_drop_mix,
		.teardown = burst_ctx_free,
	},
};

static const struct qd_bench_suite packet_suite = {
	.name = "packet",
	.init = packet_suite_init,
	.fini = packet_suite_fini,
	.benches = packet_benches,
	.count = QD_BENCH_COUNT(packet_benches),
};
QD_BENCH_SUITE(packet_suite);
