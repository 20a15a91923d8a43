/*
 * EAL start-up arguments and the DPDK ethdev port qdispatchd owns.
 *
 * The port is any ethdev: a PCI NIC, or a virtual device (net_af_packet on a
 * veth in the lab, net_tap, net_memif for kernel-bypass benchmarks). It gets
 * one RX and one TX queue per worker lcore; when the device can hash flows
 * (RSS) the queues are spread by IP/TCP 4-tuple, and net_af_packet does the
 * same with a PACKET_FANOUT group, so both look alike to the workers.
 */
#ifndef QD_PORT_H
#define QD_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>
#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "config.h"

#define QD_EAL_ARGS_MAX 32

struct qd_eal_args {
	int argc;
	char *argv[QD_EAL_ARGS_MAX];
	char buf[2048];
	bool no_huge;
};

struct qd_port {
	uint16_t port_id;
	char name[RTE_ETH_NAME_MAX_LEN];
	char driver[64];
	struct rte_ether_addr mac;
	uint16_t queues;
	bool rss;
	uint64_t rss_hf;
	uint16_t mtu;
	bool started;
};

/* Build the EAL argument vector from <cfg>: lcores, memory (--no-huge unless hugepages
 * are wanted and free), the device, in-memory mode; then append <extra_argc> operator
 * arguments. Returns 0 or -E2BIG/-EINVAL with <err> set. */
int qd_port_eal_args(struct qd_eal_args *out, const char *prog, const struct qd_config *cfg,
		     int extra_argc, char **extra_argv, char *err, size_t err_len);

/* Free hugepages of the default size according to /proc/meminfo (0 when unreadable). */
unsigned long qd_port_hugepages_free(void);

/* Find the configured device, configure <queues> RX/TX queue pairs from <pool> and start
 * it. Returns 0 or a negative errno with <err> set. */
int qd_port_open(struct qd_port *p, const struct qd_config *cfg, struct rte_mempool *pool,
		 uint16_t queues, char *err, size_t err_len);

void qd_port_close(struct qd_port *p);

#endif /* QD_PORT_H */
