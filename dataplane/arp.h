/*
 * ARP (RFC 826) for Ethernet/IPv4: parse, answer in place, build requests
 * and gratuitous announcements. Pure packet functions: the caller decides
 * what to do with the result and owns the mbuf.
 */
#ifndef QD_ARP_H
#define QD_ARP_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "lcore_stats.h"

struct qd_arp_view {
	uint16_t op;       /* RTE_ARP_OP_REQUEST or RTE_ARP_OP_REPLY */
	uint32_t sip_be;
	uint32_t tip_be;
	struct rte_ether_addr sha;
	struct rte_ether_addr tha;
};

/* Parse the ARP packet in <m> (Ethernet header first). Returns 0, or -1 with
 * <*reason> set when it is not an Ethernet/IPv4 ARP request or reply. */
int qd_arp_parse(const struct rte_mbuf *m, struct qd_arp_view *v, enum qd_drop_reason *reason);

/* Turn the request in <m>, described by <v>, into the reply from <our_mac> for v->tip_be,
 * in place: no allocation, the mbuf goes back out as is. */
void qd_arp_make_reply(struct rte_mbuf *m, const struct qd_arp_view *v,
		       const struct rte_ether_addr *our_mac);

/* Build a broadcast request "who has <tip_be>, tell <sip_be>" in a new mbuf from <pool>.
 * With <tip_be> == <sip_be> it is a gratuitous ARP announcing <sip_be>. NULL when the pool
 * is empty. */
struct rte_mbuf *qd_arp_build_request(struct rte_mempool *pool,
				      const struct rte_ether_addr *our_mac, uint32_t sip_be,
				      uint32_t tip_be);

#endif /* QD_ARP_H */
