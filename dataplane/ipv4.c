/*
 * IPv4 validation and ICMP echo (see ipv4.h). The echo reply reuses the
 * request's mbuf: swap addresses, change the type, fix both checksums.
 */
#include "ipv4.h"

#include <assert.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>

int
qd_ipv4_check(struct rte_mbuf *m, struct rte_ipv4_hdr **ip_out, enum qd_drop_reason *reason)
{
	const uint32_t l2 = sizeof(struct rte_ether_hdr);
	if (rte_pktmbuf_data_len(m) < l2 + sizeof(struct rte_ipv4_hdr)) {
		*reason = QD_DROP_runt;
		return -1;
	}
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, l2);
	uint32_t ihl = (uint32_t)(ip->version_ihl & 0x0f) * 4;
	uint32_t total = rte_be_to_cpu_16(ip->total_length);
	if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(*ip) || total < ihl ||
	    l2 + total > rte_pktmbuf_data_len(m)) {
		*reason = QD_DROP_ip_header;
		return -1;
	}
	/* The one's-complement sum of a correct header, checksum included, is 0xffff. */
	if (rte_raw_cksum(ip, ihl) != 0xffff) {
		*reason = QD_DROP_ip_checksum;
		return -1;
	}
	if ((ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0) {
		*reason = QD_DROP_ip_fragment;
		return -1;
	}
	if (ihl != sizeof(*ip)) {
		*reason = QD_DROP_ip_options;
		return -1;
	}
	uint32_t excess = rte_pktmbuf_data_len(m) - (l2 + total);
	if (excess > 0)
		rte_pktmbuf_trim(m, (uint16_t)excess);
	*ip_out = ip;
	return 0;
}

int
qd_icmp_echo_reply(struct rte_mbuf *m, struct rte_ipv4_hdr *ip,
		   const struct rte_ether_addr *our_mac, enum qd_drop_reason *reason)
{
	assert(ip->next_proto_id == IPPROTO_ICMP);
	uint32_t ihl = rte_ipv4_hdr_len(ip);
	uint32_t len = rte_be_to_cpu_16(ip->total_length) - ihl;
	if (len < sizeof(struct rte_icmp_hdr)) {
		*reason = QD_DROP_icmp_malformed;
		return -1;
	}
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)((char *)ip + ihl);
	if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0) {
		*reason = QD_DROP_icmp_type;
		return -1;
	}
	if (rte_raw_cksum(icmp, len) != 0xffff) {
		*reason = QD_DROP_icmp_malformed;
		return -1;
	}
	/* Only the type byte changes (8 -> 0), so update the checksum incrementally
	 * (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')) instead of summing the message again. */
	uint16_t old_word = rte_be_to_cpu_16(*(const uint16_t *)icmp); /* type:code */
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	uint16_t new_word = rte_be_to_cpu_16(*(const uint16_t *)icmp);
	uint32_t sum = (uint16_t)~rte_be_to_cpu_16(icmp->icmp_cksum);
	sum += (uint16_t)~old_word;
	sum += new_word;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	icmp->icmp_cksum = rte_cpu_to_be_16((uint16_t)~sum);

	uint32_t src = ip->src_addr;
	ip->src_addr = ip->dst_addr;
	ip->dst_addr = src;
	ip->time_to_live = QD_IPV4_TTL;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);

	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(our_mac, &eth->src_addr);
	/* No offload flags: both checksums are complete in software. */
	m->ol_flags &= ~(RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_L4_MASK);
	return 0;
}
