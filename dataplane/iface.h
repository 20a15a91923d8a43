/*
 * The addresses this dispatcher answers for on its port: the interface
 * address (port.ip, used as the source of our own connections and ARP
 * requests) and the client-facing virtual IPs. Built at start-up and read
 * by every worker.
 */
#ifndef QD_IFACE_H
#define QD_IFACE_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>

#include "config.h"

struct qd_iface {
	struct rte_ether_addr mac;
	uint32_t ip_be;
	uint8_t prefix_len;
	uint32_t vips_be[QD_CONFIG_VIPS_MAX];
	unsigned int vips_count;
};

/* Whether <ip_be> is one of the addresses of <ifc>. */
static inline bool
qd_iface_owns(const struct qd_iface *ifc, uint32_t ip_be)
{
	if (ip_be == ifc->ip_be)
		return true;
	for (unsigned int i = 0; i < ifc->vips_count; i++) {
		if (ifc->vips_be[i] == ip_be)
			return true;
	}
	return false;
}

#endif /* QD_IFACE_H */
