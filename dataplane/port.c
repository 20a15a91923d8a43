/*
 * EAL arguments and port bring-up (see port.h).
 *
 * The config names one device. A device name starting with "net_" is a
 * virtual device and goes to EAL as --vdev (and PCI scanning is turned off);
 * anything else is a PCI address and goes as -a. EAL keeps no shared files
 * (--in-memory or --no-shconf), so several dispatchers share a machine.
 */
#include "port.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>

#include "log.h"

static int
push(struct qd_eal_args *a, size_t *used, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
push(struct qd_eal_args *a, size_t *used, const char *fmt, ...)
{
	if (a->argc >= QD_EAL_ARGS_MAX - 1)
		return -E2BIG;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(a->buf + *used, sizeof(a->buf) - *used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(a->buf) - *used)
		return -E2BIG;
	a->argv[a->argc++] = a->buf + *used;
	a->argv[a->argc] = NULL;
	*used += (size_t)n + 1;
	return 0;
}

unsigned long
qd_port_hugepages_free(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (f == NULL)
		return 0;
	char line[128];
	unsigned long n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "HugePages_Free: %lu", &n) == 1)
			break;
	}
	fclose(f);
	return n;
}

static bool
is_vdev(const char *device)
{
	return strncmp(device, "net_", 4) == 0;
}

int
qd_port_eal_args(struct qd_eal_args *a, const char *prog, const struct qd_config *cfg,
		 int extra_argc, char **extra_argv, char *err, size_t err_len)
{
	size_t used = 0;
	int rc = 0;
	memset(a, 0, sizeof(*a));
	rc |= push(a, &used, "%s", prog);
	if (strpbrk(cfg->lcore_list, "@(") != NULL)
		rc |= push(a, &used, "--lcores=%s", cfg->lcore_list);
	else if (cfg->lcore_list[0] != '\0')
		rc |= push(a, &used, "-l%s", cfg->lcore_list);
	else
		rc |= push(a, &used, "-l0-%u", cfg->workers);

	bool huge = false;
	switch (cfg->hugepages) {
	case QD_HUGEPAGES_ON:
		huge = true;
		break;
	case QD_HUGEPAGES_OFF:
		break;
	case QD_HUGEPAGES_AUTO:
		huge = qd_port_hugepages_free() > 0;
		break;
	}
	a->no_huge = !huge;
	if (!huge)
		rc |= push(a, &used, "--no-huge");
	rc |= push(a, &used, "-m%u", cfg->memory_mb);
	/* No files in /var/run/dpdk, so dispatchers never collide and leave nothing behind.
	 * --in-memory implies hugepage-backed memory; without hugepages --no-shconf does the
	 * same job. */
	rc |= push(a, &used, huge ? "--in-memory" : "--no-shconf");
	rc |= push(a, &used, "--no-telemetry");

	if (is_vdev(cfg->port_device)) {
		rc |= push(a, &used, "--no-pci");
		/* One af_packet queue pair per worker unless the operator chose. */
		if (strncmp(cfg->port_device, "net_af_packet", 13) == 0 &&
		    strstr(cfg->port_device, "qpairs=") == NULL)
			rc |= push(a, &used, "--vdev=%s,qpairs=%u", cfg->port_device, cfg->workers);
		else
			rc |= push(a, &used, "--vdev=%s", cfg->port_device);
	} else {
		rc |= push(a, &used, "-a%s", cfg->port_device);
	}
	rc |= push(a, &used, "--log-level=%s", qd_config_log_level_name(cfg->log_level));
	for (int i = 0; i < extra_argc && rc == 0; i++)
		rc |= push(a, &used, "%s", extra_argv[i]);
	if (rc != 0) {
		snprintf(err, err_len, "EAL arguments longer than %d words or %zu bytes",
			 QD_EAL_ARGS_MAX, sizeof(a->buf));
		return -E2BIG;
	}
	return 0;
}

static int
find_port(const char *device, uint16_t *port_id)
{
	char name[RTE_ETH_NAME_MAX_LEN];
	size_t n = strcspn(device, ",");
	if (n >= sizeof(name))
		return -ENAMETOOLONG;
	memcpy(name, device, n);
	name[n] = '\0';
	if (rte_eth_dev_get_port_by_name(name, port_id) == 0)
		return 0;
	/* PCI devices may be registered under a normalised name: fall back to the
	 * only port there is. */
	if (rte_eth_dev_count_avail() == 1) {
		RTE_ETH_FOREACH_DEV(*port_id)
			return 0;
	}
	return -ENODEV;
}

static int
configure(struct qd_port *p, const struct qd_config *cfg, uint16_t queues, char *err,
	  size_t err_len)
{
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(p->port_id, &info);
	if (rc != 0) {
		snprintf(err, err_len, "port %s: cannot read device info: %s", p->name,
			 rte_strerror(-rc));
		return rc;
	}
	snprintf(p->driver, sizeof(p->driver), "%s", info.driver_name);
	if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
		snprintf(err, err_len, "port %s (%s) has %u RX / %u TX queues, %u workers need %u",
			 p->name, p->driver, info.max_rx_queues, info.max_tx_queues, queues,
			 queues);
		return -EINVAL;
	}
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	uint64_t want_hf = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP;
	p->rss_hf = info.flow_type_rss_offloads & want_hf;
	p->rss = queues > 1 && p->rss_hf != 0;
	if (p->rss) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = p->rss_hf;
	}
	rc = rte_eth_dev_configure(p->port_id, queues, queues, &conf);
	if (rc != 0) {
		snprintf(err, err_len, "port %s: configure %u queues: %s", p->name, queues,
			 rte_strerror(-rc));
		return rc;
	}
	/* Devices without MTU control (some vdevs) keep their own; not fatal. */
	rc = rte_eth_dev_set_mtu(p->port_id, cfg->port_mtu);
	if (rc != 0 && rc != -ENOTSUP)
		QD_LOG(WARNING, main, "port %s: cannot set MTU %u: %s", p->name, cfg->port_mtu,
		       rte_strerror(-rc));
	rte_eth_dev_get_mtu(p->port_id, &p->mtu);
	return 0;
}

int
qd_port_open(struct qd_port *p, const struct qd_config *cfg, struct rte_mempool *pool,
	     uint16_t queues, char *err, size_t err_len)
{
	memset(p, 0, sizeof(*p));
	int rc = find_port(cfg->port_device, &p->port_id);
	if (rc != 0) {
		snprintf(err, err_len, "port.device '%s': no such DPDK port (%u ports found)",
			 cfg->port_device, rte_eth_dev_count_avail());
		return rc;
	}
	rte_eth_dev_get_name_by_port(p->port_id, p->name);
	p->queues = queues;
	rc = configure(p, cfg, queues, err, err_len);
	if (rc != 0)
		return rc;
	uint16_t rx_desc = cfg->port_rx_desc, tx_desc = cfg->port_tx_desc;
	rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &rx_desc, &tx_desc);
	int socket = rte_eth_dev_socket_id(p->port_id);
	for (uint16_t q = 0; q < queues; q++) {
		rc = rte_eth_rx_queue_setup(p->port_id, q, rx_desc, (unsigned int)socket, NULL,
					    pool);
		if (rc == 0)
			rc = rte_eth_tx_queue_setup(p->port_id, q, tx_desc, (unsigned int)socket,
						    NULL);
		if (rc != 0) {
			snprintf(err, err_len, "port %s: queue %u setup: %s", p->name, q,
				 rte_strerror(-rc));
			return rc;
		}
	}
	rc = rte_eth_macaddr_get(p->port_id, &p->mac);
	if (rc == 0)
		rc = rte_eth_dev_start(p->port_id);
	if (rc != 0) {
		snprintf(err, err_len, "port %s: start: %s", p->name, rte_strerror(-rc));
		return rc;
	}
	p->started = true;
	/* No promiscuous mode: every address we own (port.ip and the VIPs) answers
	 * with the port's own MAC, so the port's unicast filter is enough. */
	QD_LOG(INFO, main, "port %s (%s) up: %u queue pair(s), rss %s, mtu %u, mac "
	       RTE_ETHER_ADDR_PRT_FMT, p->name, p->driver, queues, p->rss ? "on" : "off", p->mtu,
	       RTE_ETHER_ADDR_BYTES(&p->mac));
	return 0;
}

void
qd_port_close(struct qd_port *p)
{
	if (!p->started)
		return;
	int rc = rte_eth_dev_stop(p->port_id);
	if (rc != 0)
		QD_LOG(WARNING, main, "port %s: stop: %s", p->name, rte_strerror(-rc));
	rte_eth_dev_close(p->port_id);
	p->started = false;
}
