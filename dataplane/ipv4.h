/*
 * IPv4 input validation and ICMP echo.
 *
 * Every IPv4 packet is checked here before anything reads it: version,
 * header length, total length against the frame, header checksum. Fragments
 * are dropped and counted (qdispatch's peers are TCP stacks that send
 * MSS-sized segments with DF set; reassembly is not worth its memory here),
 * and so are packets with IP options.
 */
#ifndef QD_IPV4_H
#define QD_IPV4_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "lcore_stats.h"

#define QD_IPV4_TTL 64

/* Validate the IPv4 header that follows the Ethernet header of <m>. On success returns
 * 0, stores the header in <*ip> and trims Ethernet padding so pkt_len covers exactly the
 * IP datagram after the Ethernet header. Otherwise returns -1 with <*reason>. */
int qd_ipv4_check(struct rte_mbuf *m, struct rte_ipv4_hdr **ip, enum qd_drop_reason *reason);

/* <m> holds a checked IPv4 datagram <ip> carrying ICMP addressed to us. When it is a valid
 * echo request, rewrite it in place into the echo reply from <our_mac> and return 0;
 * otherwise return -1 with <*reason>. */
int qd_icmp_echo_reply(struct rte_mbuf *m, struct rte_ipv4_hdr *ip,
		       const struct rte_ether_addr *our_mac, enum qd_drop_reason *reason);

#endif /* QD_IPV4_H */
