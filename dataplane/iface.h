/*
 * The addresses this dispatcher answers for on its port: the interface
 * address (port.ip, used as the source of our own connections and ARP
 * requests) and the client-facing virtual IPs. mac, ip_be and prefix_len are
 * fixed at start-up; the VIPs live in a table the main lcore changes at run
 * time (vip_table.h) and every worker reads without locks.
 */
#ifndef QD_IFACE_H
#define QD_IFACE_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>

#include "vip_table.h"

struct qd_iface {
	struct rte_ether_addr mac;
	uint32_t ip_be;
	uint8_t prefix_len;
	struct qd_vip_table vips;
};

/* Whether <ip_be> is an address of <ifc> now: port.ip, or a VIP that is ACTIVE or
 * DRAINING. */
static inline bool
qd_iface_owns(const struct qd_iface *ifc, uint32_t ip_be)
{
	return ip_be == ifc->ip_be || qd_vip_held(&ifc->vips, ip_be);
}

#endif /* QD_IFACE_H */
