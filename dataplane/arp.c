/*
 * ARP parse and build (see arp.h). The reply is written over the request so
 * answering costs no allocation; the frame keeps its length (Ethernet padding
 * included) which every receiver accepts.
 */
#include "arp.h"

#include <assert.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>

#define ARP_FRAME_LEN (sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr))

int
qd_arp_parse(const struct rte_mbuf *m, struct qd_arp_view *v, enum qd_drop_reason *reason)
{
	if (rte_pktmbuf_data_len(m) < ARP_FRAME_LEN) {
		*reason = QD_DROP_runt;
		return -1;
	}
	const struct rte_arp_hdr *a =
		rte_pktmbuf_mtod_offset(m, const struct rte_arp_hdr *, sizeof(struct rte_ether_hdr));
	uint16_t op = rte_be_to_cpu_16(a->arp_opcode);
	if (a->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
	    a->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
	    a->arp_hlen != RTE_ETHER_ADDR_LEN || a->arp_plen != sizeof(uint32_t) ||
	    (op != RTE_ARP_OP_REQUEST && op != RTE_ARP_OP_REPLY)) {
		*reason = QD_DROP_arp_malformed;
		return -1;
	}
	v->op = op;
	/* The ARP body is 2-byte aligned in the frame: copy, never cast to uint32_t*. */
	memcpy(&v->sip_be, &a->arp_data.arp_sip, sizeof(v->sip_be));
	memcpy(&v->tip_be, &a->arp_data.arp_tip, sizeof(v->tip_be));
	rte_ether_addr_copy(&a->arp_data.arp_sha, &v->sha);
	rte_ether_addr_copy(&a->arp_data.arp_tha, &v->tha);
	return 0;
}

void
qd_arp_make_reply(struct rte_mbuf *m, const struct qd_arp_view *v,
		  const struct rte_ether_addr *our_mac)
{
	assert(v->op == RTE_ARP_OP_REQUEST);
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	rte_ether_addr_copy(&v->sha, &eth->dst_addr);
	rte_ether_addr_copy(our_mac, &eth->src_addr);
	a->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
	rte_ether_addr_copy(our_mac, &a->arp_data.arp_sha);
	memcpy(&a->arp_data.arp_sip, &v->tip_be, sizeof(v->tip_be));
	rte_ether_addr_copy(&v->sha, &a->arp_data.arp_tha);
	memcpy(&a->arp_data.arp_tip, &v->sip_be, sizeof(v->sip_be));
}

struct rte_mbuf *
qd_arp_build_request(struct rte_mempool *pool, const struct rte_ether_addr *our_mac,
		     uint32_t sip_be, uint32_t tip_be)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	if (m == NULL)
		return NULL;
	/* Pad to the Ethernet minimum ourselves: some PMDs send short frames as is. */
	const uint16_t len = RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN;
	char *p = rte_pktmbuf_append(m, len);
	if (p == NULL) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	memset(p, 0, len);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	memset(&eth->dst_addr, 0xff, sizeof(eth->dst_addr));
	rte_ether_addr_copy(our_mac, &eth->src_addr);
	eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_ARP);
	a->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
	a->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	a->arp_hlen = RTE_ETHER_ADDR_LEN;
	a->arp_plen = sizeof(uint32_t);
	a->arp_opcode = RTE_BE16(RTE_ARP_OP_REQUEST);
	rte_ether_addr_copy(our_mac, &a->arp_data.arp_sha);
	memcpy(&a->arp_data.arp_sip, &sip_be, sizeof(sip_be));
	/* tha stays zero (RFC 5227 style for announcements too). */
	memcpy(&a->arp_data.arp_tip, &tip_be, sizeof(tip_be));
	return m;
}
