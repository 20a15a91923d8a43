/* Data-plane packet input on crafted mbufs: ARP answers, ICMP echo, every drop reason,
 * mailbox commands, and no mbuf leaked. Runs EAL without hugepages or devices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "arp.h"
#include "ipv4.h"
#include "msg.h"
#include "worker.h"

#define POOL_SIZE 511

static struct rte_mempool *pool;
static struct rte_ring *events;
static struct rte_ring *mailbox;
static struct qd_iface iface;
static bool stop_flag;

static const struct rte_ether_addr our_mac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x11}};
static const struct rte_ether_addr peer_mac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x22}};

struct fixture {
	struct qd_worker *w;
};

static uint32_t
ip(const char *s)
{
	return inet_addr(s);
}

static int
setup(void **state)
{
	struct qd_worker_conf wc = {
		.lcore_id = 0, .burst = 32, .idle = false, .neigh_capacity = 64,
	};
	struct fixture *f = calloc(1, sizeof(*f));
	qd_worker_tcp_conf_default(&wc.tcp);
	f->w = qd_worker_create(&wc, &iface, pool, mailbox, events, NULL, &stop_flag, false);
	assert_non_null(f->w);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	qd_worker_destroy(f->w);
	struct qd_msg m;
	while (rte_ring_dequeue_elem(events, &m, sizeof(m)) == 0)
		;
	free(f);
	/* Every test must give back every mbuf it took. */
	assert_int_equal(rte_mempool_avail_count(pool), POOL_SIZE);
	return 0;
}

static struct rte_mbuf *
frame(const struct rte_ether_addr *dst, uint16_t ether_type, const void *payload, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	assert_non_null(m);
	char *p = rte_pktmbuf_append(m, (uint16_t)(sizeof(struct rte_ether_hdr) + len));
	assert_non_null(p);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	eth->dst_addr = *dst;
	eth->src_addr = peer_mac;
	eth->ether_type = rte_cpu_to_be_16(ether_type);
	memcpy(eth + 1, payload, len);
	return m;
}

static struct rte_mbuf *
arp_frame(uint16_t op, uint32_t sip, uint32_t tip, const struct rte_ether_addr *dst)
{
	struct rte_arp_hdr a;
	memset(&a, 0, sizeof(a));
	a.arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
	a.arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	a.arp_hlen = 6;
	a.arp_plen = 4;
	a.arp_opcode = rte_cpu_to_be_16(op);
	a.arp_data.arp_sha = peer_mac;
	a.arp_data.arp_sip = sip;
	a.arp_data.arp_tip = tip;
	return frame(dst, RTE_ETHER_TYPE_ARP, &a, sizeof(a));
}

static const struct rte_ether_addr bcast = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

/* An ICMP echo request of <payload_len> bytes, with knobs to break it. */
struct icmp_opts {
	uint32_t dst;
	uint8_t proto;
	uint8_t type;
	bool bad_ip_csum;
	bool bad_icmp_csum;
	bool fragment;
	bool options;
	uint16_t pad;           /* Ethernet padding bytes after the datagram */
	int16_t total_len_delta; /* lie in total_length */
};

static struct rte_mbuf *
icmp_frame(const struct icmp_opts *o, uint16_t payload_len)
{
	uint8_t buf[1600];
	memset(buf, 0, sizeof(buf));
	uint16_t ihl = o->options ? 24 : 20;
	struct rte_ipv4_hdr *iph = (struct rte_ipv4_hdr *)buf;
	uint16_t l4 = (uint16_t)(sizeof(struct rte_icmp_hdr) + payload_len);
	iph->version_ihl = (uint8_t)(0x40 | (ihl / 4));
	iph->total_length = rte_cpu_to_be_16((uint16_t)(ihl + l4 + o->total_len_delta));
	iph->time_to_live = 7;
	iph->next_proto_id = o->proto != 0 ? o->proto : IPPROTO_ICMP;
	iph->src_addr = ip("10.9.0.2");
	iph->dst_addr = o->dst;
	if (o->fragment)
		iph->fragment_offset = RTE_BE16(RTE_IPV4_HDR_MF_FLAG);
	if (o->options)
		buf[20] = 1; /* NOP options */
	iph->hdr_checksum = 0;
	iph->hdr_checksum = (uint16_t)~rte_raw_cksum(iph, ihl);
	if (o->bad_ip_csum)
		iph->hdr_checksum ^= 0x0101;
	struct rte_icmp_hdr *ic = (struct rte_icmp_hdr *)(buf + ihl);
	ic->icmp_type = o->type != 0 ? o->type : RTE_IP_ICMP_ECHO_REQUEST;
	ic->icmp_ident = RTE_BE16(0x1234);
	ic->icmp_seq_nb = RTE_BE16(7);
	for (uint16_t i = 0; i < payload_len; i++)
		((uint8_t *)(ic + 1))[i] = (uint8_t)i;
	ic->icmp_cksum = (uint16_t)~rte_raw_cksum(ic, l4);
	if (o->bad_icmp_csum)
		ic->icmp_cksum ^= 0x0001;
	return frame(&our_mac, RTE_ETHER_TYPE_IPV4, buf, (uint16_t)(ihl + l4 + o->pad));
}

static void
expect_drop(struct qd_worker *w, struct rte_mbuf *m, enum qd_drop_reason reason)
{
	uint64_t before = w->stats.drops[reason];
	qd_worker_input(w, m);
	assert_int_equal(w->txq.count, 0);
	if (w->stats.drops[reason] != before + 1)
		fail_msg("expected a drop for %s", qd_drop_reason_name(reason));
}

static struct rte_mbuf *
take_tx(struct qd_worker *w)
{
	assert_int_equal(w->txq.count, 1);
	w->txq.count = 0;
	return w->txq.pkts[0];
}

static void
test_arp_request_for_vip_is_answered(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.101"), &bcast));
	struct rte_mbuf *m = take_tx(w);
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	assert_true(rte_is_same_ether_addr(&eth->dst_addr, &peer_mac));
	assert_true(rte_is_same_ether_addr(&eth->src_addr, &our_mac));
	assert_int_equal(rte_be_to_cpu_16(a->arp_opcode), RTE_ARP_OP_REPLY);
	assert_true(rte_is_same_ether_addr(&a->arp_data.arp_sha, &our_mac));
	assert_true(rte_is_same_ether_addr(&a->arp_data.arp_tha, &peer_mac));
	assert_int_equal(a->arp_data.arp_sip, ip("10.9.0.101"));
	assert_int_equal(a->arp_data.arp_tip, ip("10.9.0.2"));
	rte_pktmbuf_free(m);
	assert_int_equal(w->stats.arp_requests_in, 1);
	assert_int_equal(w->stats.arp_replies_out, 1);

	/* The sender was reported to the main lcore, which may create it. */
	struct qd_msg msg;
	assert_int_equal(rte_ring_dequeue_elem(events, &msg, sizeof(msg)), 0);
	assert_int_equal(msg.type, QD_MSG_NEIGH_LEARN);
	assert_int_equal(msg.ip_be, ip("10.9.0.2"));
	assert_memory_equal(msg.mac, peer_mac.addr_bytes, 6);
	assert_int_equal(msg.arg, 1);

	/* port.ip is ours too. */
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.11"), &bcast));
	rte_pktmbuf_free(take_tx(w));
}

static void
test_arp_probe_answered_not_learned(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, 0, ip("10.9.0.101"), &bcast));
	struct rte_mbuf *m = take_tx(w);
	struct rte_arp_hdr *a = rte_pktmbuf_mtod_offset(m, struct rte_arp_hdr *, 14);
	assert_int_equal(a->arp_data.arp_tip, 0);
	rte_pktmbuf_free(m);
	assert_int_equal(rte_ring_count(events), 0);
}

static void
test_arp_other_cases(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	expect_drop(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.77"), &bcast),
		    QD_DROP_arp_not_ours);
	assert_int_equal(rte_ring_count(events), 0);

	/* A reply to us is learned and consumed. */
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REPLY, ip("10.9.0.201"), ip("10.9.0.11"), &our_mac));
	assert_int_equal(w->txq.count, 0);
	assert_int_equal(w->stats.arp_replies_in, 1);
	struct qd_msg msg;
	assert_int_equal(rte_ring_dequeue_elem(events, &msg, sizeof(msg)), 0);
	assert_int_equal(msg.ip_be, ip("10.9.0.201"));

	/* Gratuitous ARP of a stranger: reported without the right to create an entry. */
	expect_drop(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.50"), ip("10.9.0.50"), &bcast),
		    QD_DROP_arp_not_ours);
	assert_int_equal(rte_ring_dequeue_elem(events, &msg, sizeof(msg)), 0);
	assert_int_equal(msg.ip_be, ip("10.9.0.50"));
	assert_int_equal(msg.arg, 0);

	struct rte_mbuf *m = arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.101"), &bcast);
	rte_pktmbuf_mtod_offset(m, struct rte_arp_hdr *, 14)->arp_hlen = 8;
	expect_drop(w, m, QD_DROP_arp_malformed);
	m = arp_frame(9, ip("10.9.0.2"), ip("10.9.0.101"), &bcast);
	expect_drop(w, m, QD_DROP_arp_malformed);
	m = arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.101"), &bcast);
	rte_pktmbuf_trim(m, 10);
	expect_drop(w, m, QD_DROP_runt);
}

static void
test_icmp_echo_reply(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	struct icmp_opts o = {.dst = ip("10.9.0.101"), .pad = 6};
	qd_worker_input(w, icmp_frame(&o, 56));
	struct rte_mbuf *m = take_tx(w);
	/* Padding trimmed: Ethernet + IP + ICMP header + payload. */
	assert_int_equal(rte_pktmbuf_pkt_len(m), 14 + 20 + 8 + 56);
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *iph = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_icmp_hdr *ic = (struct rte_icmp_hdr *)(iph + 1);
	assert_true(rte_is_same_ether_addr(&eth->dst_addr, &peer_mac));
	assert_true(rte_is_same_ether_addr(&eth->src_addr, &our_mac));
	assert_int_equal(iph->src_addr, ip("10.9.0.101"));
	assert_int_equal(iph->dst_addr, ip("10.9.0.2"));
	assert_int_equal(iph->time_to_live, QD_IPV4_TTL);
	assert_int_equal(rte_raw_cksum(iph, 20), 0xffff);
	assert_int_equal(ic->icmp_type, RTE_IP_ICMP_ECHO_REPLY);
	assert_int_equal(ic->icmp_ident, RTE_BE16(0x1234));
	assert_int_equal(ic->icmp_seq_nb, RTE_BE16(7));
	assert_int_equal(rte_raw_cksum(ic, 8 + 56), 0xffff);
	for (int i = 0; i < 56; i++)
		assert_int_equal(((uint8_t *)(ic + 1))[i], i);
	rte_pktmbuf_free(m);
	assert_int_equal(w->stats.icmp_echo_in, 1);
	assert_int_equal(w->stats.icmp_echo_out, 1);

	/* Odd payload length exercises the checksum's trailing byte. */
	qd_worker_input(w, icmp_frame(&o, 1399));
	m = take_tx(w);
	ic = rte_pktmbuf_mtod_offset(m, struct rte_icmp_hdr *, 34);
	assert_int_equal(rte_raw_cksum(ic, 8 + 1399), 0xffff);
	rte_pktmbuf_free(m);
}

static void
test_icmp_checksum_many_sizes(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	struct icmp_opts o = {.dst = ip("10.9.0.101")};
	/* The reply's checksum is updated incrementally: check it over many messages. */
	for (uint16_t len = 0; len <= 1472; len += 13) {
		qd_worker_input(w, icmp_frame(&o, len));
		struct rte_mbuf *m = take_tx(w);
		struct rte_icmp_hdr *ic = rte_pktmbuf_mtod_offset(m, struct rte_icmp_hdr *, 34);
		assert_int_equal(ic->icmp_type, RTE_IP_ICMP_ECHO_REPLY);
		if (rte_raw_cksum(ic, 8u + len) != 0xffff)
			fail_msg("bad reply checksum for a %u-byte payload", len);
		rte_pktmbuf_free(m);
	}
}

static void
test_ipv4_drops(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	const uint32_t vip = ip("10.9.0.101");
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .bad_ip_csum = true}, 8),
		    QD_DROP_ip_checksum);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .bad_icmp_csum = true}, 8),
		    QD_DROP_icmp_malformed);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .fragment = true}, 8),
		    QD_DROP_ip_fragment);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .options = true}, 8),
		    QD_DROP_ip_options);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = ip("10.9.0.99")}, 8),
		    QD_DROP_ip_not_ours);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .proto = IPPROTO_UDP}, 8),
		    QD_DROP_ip_proto);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .type = 13}, 8),
		    QD_DROP_icmp_type);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .total_len_delta = 4}, 8),
		    QD_DROP_ip_header);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .total_len_delta = -30}, 8),
		    QD_DROP_ip_header);

	struct rte_mbuf *m = icmp_frame(&(struct icmp_opts){.dst = vip}, 8);
	rte_pktmbuf_mtod(m, struct rte_ether_hdr *)->dst_addr = peer_mac;
	expect_drop(w, m, QD_DROP_other_mac);
	m = icmp_frame(&(struct icmp_opts){.dst = vip}, 8);
	rte_pktmbuf_mtod(m, struct rte_ether_hdr *)->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV6);
	expect_drop(w, m, QD_DROP_ethertype);
	m = icmp_frame(&(struct icmp_opts){.dst = vip}, 8);
	rte_pktmbuf_trim(m, rte_pktmbuf_pkt_len(m) - 10);
	expect_drop(w, m, QD_DROP_runt);
	m = icmp_frame(&(struct icmp_opts){.dst = vip}, 8);
	rte_pktmbuf_trim(m, rte_pktmbuf_pkt_len(m) - 20);
	expect_drop(w, m, QD_DROP_runt);

	uint64_t total = 0;
	for (int i = 0; i < QD_DROP_MAX; i++)
		total += w->stats.drops[i];
	assert_int_equal(total, 13);
	assert_int_equal(w->stats.rx_packets, 13);
}

/* A VIP given up (ABSENT) is silent: no ARP answer, TCP and ICMP dropped as vip_absent
 * (never a RST: another peer holds it). DRAINING still answers. */
static void
test_vip_states(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	const uint32_t vip = ip("10.9.0.102");
	char err[QD_VIP_ERR_MAX];
	assert_int_equal(qd_vip_release(&iface.vips, vip, 1000, 0, NULL, err, sizeof(err)), 0);
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), vip, &bcast));
	rte_pktmbuf_free(take_tx(w)); /* DRAINING: answered */
	qd_worker_input(w, icmp_frame(&(struct icmp_opts){.dst = vip}, 8));
	rte_pktmbuf_free(take_tx(w));

	assert_int_equal(qd_vip_release(&iface.vips, vip, 0, 0, NULL, err, sizeof(err)), 0);
	expect_drop(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), vip, &bcast),
		    QD_DROP_arp_not_ours);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip, .proto = IPPROTO_TCP}, 20),
		    QD_DROP_vip_absent);
	expect_drop(w, icmp_frame(&(struct icmp_opts){.dst = vip}, 8), QD_DROP_vip_absent);
	/* the other VIP is untouched */
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.101"), &bcast));
	rte_pktmbuf_free(take_tx(w));

	assert_int_equal(qd_vip_take(&iface.vips, vip, 0, NULL, err, sizeof(err)), 0);
	qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), vip, &bcast));
	rte_pktmbuf_free(take_tx(w)); /* ours again */
	while (rte_ring_count(events) > 0) {
		struct qd_msg msg;
		rte_ring_dequeue_elem(events, &msg, sizeof(msg));
	}
}

static void
test_mailbox_commands(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	struct qd_msg set = {.type = QD_MSG_NEIGH_SET, .ip_be = ip("10.9.0.201"),
			     .state = QD_NEIGH_REACHABLE};
	memcpy(set.mac, peer_mac.addr_bytes, 6);
	qd_worker_handle_msg(w, &set);
	struct qd_neigh_entry *e = qd_neigh_lookup(&w->neigh, ip("10.9.0.201"));
	assert_non_null(e);
	assert_memory_equal(e->mac, peer_mac.addr_bytes, 6);
	set.state = QD_NEIGH_FAILED;
	qd_worker_handle_msg(w, &set);
	assert_null(qd_neigh_lookup(&w->neigh, ip("10.9.0.201")));

	struct qd_msg req = {.type = QD_MSG_TX_ARP_REQUEST, .ip_be = ip("10.9.0.201")};
	qd_worker_handle_msg(w, &req);
	struct rte_mbuf *m = take_tx(w);
	assert_int_equal(rte_pktmbuf_pkt_len(m), 60);
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	assert_true(rte_is_broadcast_ether_addr(&eth->dst_addr));
	assert_int_equal(rte_be_to_cpu_16(a->arp_opcode), RTE_ARP_OP_REQUEST);
	assert_int_equal(a->arp_data.arp_sip, ip("10.9.0.11"));
	assert_int_equal(a->arp_data.arp_tip, ip("10.9.0.201"));
	assert_true(rte_is_same_ether_addr(&a->arp_data.arp_sha, &our_mac));
	rte_pktmbuf_free(m);

	struct qd_msg garp = {.type = QD_MSG_TX_GARP, .ip_be = ip("10.9.0.101")};
	qd_worker_handle_msg(w, &garp);
	m = take_tx(w);
	a = rte_pktmbuf_mtod_offset(m, struct rte_arp_hdr *, 14);
	assert_int_equal(a->arp_data.arp_sip, ip("10.9.0.101"));
	assert_int_equal(a->arp_data.arp_tip, ip("10.9.0.101"));
	rte_pktmbuf_free(m);
	assert_int_equal(w->stats.arp_requests_out, 1);
	assert_int_equal(w->stats.garp_out, 1);
}

static void
test_txq_bounded(void **state)
{
	struct qd_worker *w = ((struct fixture *)*state)->w;
	/* Without a port the queue cannot drain: the overflow is refused and counted. */
	for (int i = 0; i < QD_TXQ_MAX + 5; i++)
		qd_worker_input(w, arp_frame(RTE_ARP_OP_REQUEST, ip("10.9.0.2"), ip("10.9.0.101"),
					     &bcast));
	assert_int_equal(w->txq.count, QD_TXQ_MAX);
	assert_int_equal(w->stats.tx_dropped, 5);
	/* qd_worker_destroy frees what is queued; teardown checks nothing leaked. */
}

int
main(int argc, char **argv)
{
	(void)argc;
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "128", "--no-shconf", "--no-pci",
			    "--no-telemetry", "-l", "0", "--log-level=error", NULL};
	if (rte_eal_init(10, eal_argv) < 0) {
		fprintf(stderr, "EAL init failed\n");
		return 1;
	}
	pool = rte_pktmbuf_pool_create("test", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	events = rte_ring_create_elem("ev", sizeof(struct qd_msg), 256, 0, RING_F_SC_DEQ);
	mailbox = rte_ring_create_elem("mb", sizeof(struct qd_msg), 256, 0,
				       RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (pool == NULL || events == NULL || mailbox == NULL) {
		fprintf(stderr, "allocation failed\n");
		return 1;
	}
	iface.mac = our_mac;
	iface.ip_be = ip("10.9.0.11");
	iface.prefix_len = 24;
	qd_vip_table_init(&iface.vips, iface.ip_be, iface.prefix_len, NULL, NULL);
	char err[QD_VIP_ERR_MAX];
	if (qd_vip_add(&iface.vips, ip("10.9.0.101"), QD_VIP_ACTIVE, 0, err, sizeof(err)) != 0 ||
	    qd_vip_add(&iface.vips, ip("10.9.0.102"), QD_VIP_ACTIVE, 0, err, sizeof(err)) != 0) {
		fprintf(stderr, "vip table: %s\n", err);
		return 1;
	}

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_arp_request_for_vip_is_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_arp_probe_answered_not_learned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_arp_other_cases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_icmp_echo_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_icmp_checksum_many_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv4_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vip_states, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txq_bounded, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rte_ring_free(events);
	rte_ring_free(mailbox);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return rc;
}
