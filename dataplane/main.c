/*
 * qdispatchd: the appliance.
 *
 * main() reads the config, starts EAL, opens the port, gives every worker
 * lcore its queue pair and mailbox, and then becomes the main lcore's loop:
 * control socket, neighbour timers, gratuitous ARP. The only file-scope
 * mutable state of the daemon is the signal flag below, as a signal handler
 * can reach nothing else.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "admission.h"
#include "daemon.h"
#include "log.h"
#include "resource_groups.h"
#include "seed_log.h"
#include "peer_sync.h"
#include "state_log.h"
#include "qd_build.h"

#define DEFAULT_CONFIG "/etc/qdispatch/qdispatchd.conf"
#define MAIN_POLL_MS 10
#define MBUF_CACHE 256u

enum exit_code {
	EXIT_OK = 0,
	EXIT_CONFIG = 1,
	EXIT_USAGE = 2,
	EXIT_START = 3,
};

static volatile sig_atomic_t signal_seen;

static void
on_signal(int sig)
{
	signal_seen = sig;
}

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: qdispatchd [-c FILE] [--check] [-- EAL-OPTIONS...]\n"
		"\n"
		"qdispatchd is a kernel-bypass query dispatcher for Trino, Presto and openLooKeng\n"
		"coordinators. It owns one DPDK port, answers ARP and ICMP echo for its\n"
		"addresses, and serves a control socket for qdctl(1).\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ");\n"
		"                      every key is described in docs/configuration.md\n"
		"      --check         validate the configuration and exit: 0 when valid,\n"
		"                      1 with 'FILE:LINE: reason' on stderr otherwise\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n"
		"\n"
		"Arguments after '--' are passed to DPDK's EAL after the ones qdispatchd derives\n"
		"from the configuration (lcores, memory, device), e.g. --log-level=qd.dp:debug.\n"
		"\n"
		"Signals: SIGTERM and SIGINT stop the daemon cleanly.\n"
		"Exit status: 0 clean stop, 1 bad configuration, 2 bad usage, 3 start-up failure.\n");
}

struct options {
	const char *config;
	bool check;
	int eal_argc;
	char **eal_argv;
};

static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'k'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	o->config = DEFAULT_CONFIG;
	int c;
	while ((c = getopt_long(argc, argv, "c:Vh", longs, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'k':
			o->check = true;
			break;
		case 'V':
			printf("qdispatchd %s\n", QD_VERSION);
			exit(EXIT_OK);
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	o->eal_argc = argc - optind;
	o->eal_argv = argv + optind;
	return 0;
}

static int
make_rings(struct qd_daemon *d, char *err, size_t err_len)
{
	d->events = rte_ring_create_elem("qd_events", sizeof(struct qd_msg), QD_EVENTS_SIZE,
					 (int)rte_socket_id(), RING_F_SC_DEQ);
	if (d->events == NULL) {
		snprintf(err, err_len, "events ring: %s", rte_strerror(rte_errno));
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < d->workers_count; i++) {
		char name[RTE_RING_NAMESIZE];
		snprintf(name, sizeof(name), "qd_mbox_%u", i);
		d->mailboxes[i] = rte_ring_create_elem(name, sizeof(struct qd_msg),
						       QD_MAILBOX_SIZE, (int)rte_socket_id(),
						       RING_F_SP_ENQ | RING_F_SC_DEQ);
		snprintf(name, sizeof(name), "qd_steer_%u", i);
		d->steer[i] = rte_ring_create(name, QD_STEER_RING_SIZE, (int)rte_socket_id(),
					      RING_F_SC_DEQ);
		if (d->mailboxes[i] == NULL || d->steer[i] == NULL) {
			snprintf(err, err_len, "mailbox or steering ring: %s",
				 rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	return 0;
}

static void
tcp_conf_from_config(struct qd_tcp_conf *t, const struct qd_config *cfg)
{
	*t = (struct qd_tcp_conf){
		.max_connections = cfg->tcp_max_connections,
		.syn_backlog = cfg->tcp_syn_backlog,
		.time_wait_max = cfg->tcp_time_wait_max,
		.time_wait_ms = cfg->tcp_time_wait_ms,
		.fin_wait2_ms = cfg->tcp_fin_wait2_ms,
		.sndbuf_bytes = cfg->tcp_sndbuf,
		.rcvbuf_bytes = cfg->tcp_rcvbuf,
		.mss = (uint16_t)(cfg->port_mtu - 40),
		.keepalive_idle_ms = cfg->tcp_keepalive_idle_s * 1000,
		.keepalive_intvl_ms = cfg->tcp_keepalive_intvl_s * 1000,
		.keepalive_probes = cfg->tcp_keepalive_probes,
		.challenge_ack_per_s = cfg->tcp_challenge_ack_per_s,
		.syn_cookies = cfg->tcp_syn_cookies,
		.local_port_min = cfg->tcp_local_port_min,
		.local_port_max = cfg->tcp_local_port_max,
		.steer_count = cfg->workers,
	};
}

/* The query proxy's settings for worker <index> of <count>. */
static void
proxy_conf_from_config(struct qd_proxy_conf *p, const struct qd_config *cfg, unsigned int index)
{
	uint32_t half = RTE_MAX(cfg->tcp_max_connections / 2, 1u);
	*p = (struct qd_proxy_conf){
		.listen_port = cfg->listen_port,
		.max_clients = cfg->proxy_max_clients ? cfg->proxy_max_clients : half,
		.max_backends = cfg->proxy_max_backends ? cfg->proxy_max_backends : half,
		.head_buffers = cfg->proxy_head_buffers,
		.max_header_bytes = cfg->http_max_header_bytes,
		.max_headers = cfg->http_max_headers,
		.max_body_bytes = cfg->http_max_body_bytes,
		.header_timeout_ms = cfg->http_header_timeout_ms,
		.keepalive_timeout_ms = cfg->http_keepalive_timeout_ms,
		.io_timeout_ms = cfg->http_io_timeout_ms,
		.connect_timeout_ms = cfg->upstream_connect_timeout_ms,
		.response_timeout_ms = cfg->upstream_response_timeout_ms,
		.pool_idle_max = cfg->upstream_pool_idle_max,
		.pool_idle_timeout_ms = cfg->upstream_pool_idle_timeout_ms,
		.down_ms = cfg->upstream_down_ms,
		.route_idle_ms = cfg->route_idle_timeout_s * 1000u,
		.route_linger_ms = cfg->route_linger_s * 1000u,
		.forwarded_for = cfg->http_forwarded_for,
		.vip_be = cfg->vips_be[0],
		.worker_index = index,
		.worker_count = cfg->workers,
		.coords_count = RTE_MIN(cfg->coordinators_count, (unsigned int)QD_PROXY_COORDS_MAX),
		.placement = cfg->placement_policy,
		.max_statement_bytes = cfg->admission_max_statement_bytes,
		.poll_wait_ms = cfg->admission_poll_wait_ms,
		.discovery_timeout_ms = cfg->route_discovery_timeout_ms,
		.discovery_max = cfg->route_discovery_max,
		.verify_after_s = cfg->route_verify_after_s,
	};
	for (unsigned int i = 0; i < p->coords_count; i++) {
		p->coords[i].ip_be = cfg->coordinators[i].addr_be;
		p->coords[i].port = cfg->coordinators[i].port;
	}
}

/* The coordinators as every lcore sees them (coord_table.h). */
static int
make_coordinators(struct qd_daemon *d, char *err, size_t err_len)
{
	d->coords = rte_zmalloc("qd_coords", sizeof(*d->coords), RTE_CACHE_LINE_SIZE);
	if (d->coords == NULL) {
		snprintf(err, err_len, "coordinator table: out of memory");
		return -ENOMEM;
	}
	d->coords->count = RTE_MIN(d->cfg.coordinators_count, (unsigned int)QD_COORDS_MAX);
	for (unsigned int i = 0; i < d->coords->count; i++) {
		d->coords->c[i].ip_be = d->cfg.coordinators[i].addr_be;
		d->coords->c[i].port = d->cfg.coordinators[i].port;
		d->coords->c[i].weight = d->cfg.coordinators[i].weight ? d->cfg.coordinators[i].weight
								       : 1;
	}
	return 0;
}

/* Admission control from admission.resource_groups, when set. */
static int
make_admission(struct qd_daemon *d, char *err, size_t err_len)
{
	if (d->cfg.admission_resource_groups[0] == '\0')
		return 0;
	/* A held poll must come back well before its client counts as gone. */
	if ((uint64_t)d->cfg.admission_poll_wait_ms * 2 > d->cfg.admission_client_timeout_ms) {
		snprintf(err, err_len, "admission.poll_wait_ms (%u) must be at most half of "
			 "admission.client_timeout_ms (%u)", d->cfg.admission_poll_wait_ms,
			 d->cfg.admission_client_timeout_ms);
		return -EINVAL;
	}
	struct qd_rg_config *rg = NULL;
	char msg[QD_RG_ERR_MAX];
	int rc = qd_rg_load_file(d->cfg.admission_resource_groups, &rg, msg, sizeof(msg));
	if (rc != 0) {
		/* the message names the file already */
		snprintf(err, err_len, "%.*s", (int)RTE_MIN(err_len - 1, sizeof(msg)), msg);
		return rc;
	}
	struct qd_admission_conf ac = {
		.workers = d->cfg.workers,
		.queued_max = d->cfg.admission_queued_max,
		.batch = d->cfg.admission_batch,
		.queue_timeout_us = (uint64_t)d->cfg.admission_queue_timeout_ms * 1000u,
		.client_timeout_us = (uint64_t)d->cfg.admission_client_timeout_ms * 1000u,
		/* a query that ended in the queue answers its final poll this long */
		.done_linger_us = 60000000u,
	};
	unsigned int groups = rg->groups_count;
	d->admission = qd_admission_create(&ac, rg);
	if (d->admission == NULL) {
		rc = -errno;
		qd_rg_free(rg);
		snprintf(err, err_len, "admission control: %s", strerror(-rc));
		return rc;
	}
	QD_LOG(NOTICE, main, "admission control: %u resource group(s) from %s, %u queued at most",
	       groups, d->cfg.admission_resource_groups, ac.queued_max);
	return 0;
}

static int
make_workers(struct qd_daemon *d, char *err, size_t err_len)
{
	unsigned int i = 0, lcore;
	struct qd_siphash_key secret;
	/* One secret for every stack: any of them may validate a cookie another sent. */
	if (getrandom(&secret, sizeof(secret), 0) != (ssize_t)sizeof(secret)) {
		snprintf(err, err_len, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	struct qd_fault_conf fault;
	qd_fault_conf_from_config(&fault, &d->cfg);
	if (qd_fault_conf_any(&fault))
		QD_LOG(WARNING, main, "fault injection is ON (fault.seed %" PRIu64 "): "
		       "this dispatcher drops, delays, reorders or duplicates frames on purpose",
		       d->cfg.fault_seed);
	int rc = make_coordinators(d, err, err_len);
	if (rc == 0) /* coordinators added or drained at run time, before anything uses them */
		rc = qd_seed_open(d, err, err_len);
	if (rc != 0)
		return rc;
	if (d->coords->count > 0) {
		d->routes = qd_route_table_create("qd_routes", d->cfg.route_max, d->cfg.workers,
						  (int)rte_socket_id());
		if (d->routes == NULL) {
			snprintf(err, err_len, "route table (route.max %u): %s", d->cfg.route_max,
				 strerror(errno));
			return -ENOMEM;
		}
		rc = make_admission(d, err, err_len);
		if (rc == 0)
			rc = qd_slog_open(d, err, err_len);
		if (rc != 0)
			return rc;
	}
	RTE_LCORE_FOREACH_WORKER(lcore) {
		struct qd_worker_conf wc = {
			.lcore_id = lcore,
			.port_id = d->port.port_id,
			.queue_id = (uint16_t)i,
			.burst = d->cfg.burst,
			.idle = d->cfg.idle,
			.idle_after_us = d->cfg.idle_after_us,
			.idle_sleep_max_us = d->cfg.idle_sleep_max_us,
			.neigh_capacity = d->cfg.neigh_capacity,
			.fault = fault,
			.secret = secret,
			.echo_port = d->cfg.service_echo_port,
			.discard_port = d->cfg.service_discard_port,
		};
		tcp_conf_from_config(&wc.tcp, &d->cfg);
		wc.tcp.steer_index = i;
		if (d->routes != NULL) {
			wc.proxy = true;
			wc.routes = d->routes;
			proxy_conf_from_config(&wc.proxy_conf, &d->cfg, i);
			wc.proxy_conf.coord_table = d->coords;
			wc.proxy_conf.admission = d->admission;
			wc.proxy_conf.state_ring = qd_slog_ring(d, i);
			if (d->cfg.peer_id != 0)
				wc.proxy_conf.peer_health = &d->peer_health;
			wc.health = (struct qd_health_conf){
				.interval_ms = d->cfg.health_interval_ms,
				.timeout_ms = d->cfg.health_timeout_ms,
				.rise = d->cfg.health_rise,
				.fall = d->cfg.health_fall,
				.worker_index = i,
				.worker_count = d->cfg.workers,
			};
		}
		d->workers[i] = qd_worker_create(&wc, &d->iface, d->pool, d->mailboxes[i], d->events,
						 d->steer, &d->stop, true);
		if (d->workers[i] == NULL) {
			snprintf(err, err_len, "worker on lcore %u: %s", lcore, strerror(errno));
			return -ENOMEM;
		}
		i++;
	}
	return 0;
}

static int
start_neigh(struct qd_daemon *d, char *err, size_t err_len)
{
	int rc = qd_neigh_table_init(&d->neigh, d->cfg.neigh_capacity);
	if (rc != 0) {
		snprintf(err, err_len, "neighbour table: %s", strerror(-rc));
		return rc;
	}
	d->neigh_timing = (struct qd_neigh_timing){
		.reachable_ms = (uint64_t)d->cfg.neigh_reachable_s * 1000,
		.retry_ms = d->cfg.neigh_retry_ms,
		.probes = d->cfg.neigh_probes,
	};
	uint64_t now = qd_daemon_now_ms();
	/* Next hops we will need: coordinators and the gateway, resolved up front. */
	for (unsigned int i = 0; d->coords != NULL && i < qd_coord_count(d->coords) && rc == 0; i++)
		rc = qd_neigh_want(&d->neigh, d->coords->c[i].ip_be, true, now);
	if (rc == 0 && d->cfg.port_gateway_be != 0)
		rc = qd_neigh_want(&d->neigh, d->cfg.port_gateway_be, true, now);
	if (rc != 0)
		snprintf(err, err_len, "neighbour table: %s", strerror(-rc));
	return rc;
}

static int
start_control(struct qd_daemon *d, char *err, size_t err_len)
{
	struct qd_ctl_server_conf cc = {
		.path = d->cfg.control_socket,
		.mode = d->cfg.control_mode,
		.group = d->cfg.control_group,
		.clients_max = d->cfg.control_clients_max,
		.commands = qd_daemon_commands,
		.commands_count = qd_daemon_commands_count,
		.ctx = d,
	};
	return qd_ctl_server_open(&d->ctl, &cc, err, err_len);
}

static void
vip_log(void *ctx, const char *line)
{
	(void)ctx;
	QD_LOG(NOTICE, main, "%s", line);
}

/* The configured VIPs: ACTIVE, or ABSENT until the control plane takes them
 * (vip.claim_at_start = no, for a peer that waits for its cluster to agree). */
static int
start_vips(struct qd_daemon *d, char *err, size_t err_len)
{
	_Static_assert(QD_CONFIG_VIPS_MAX <= QD_VIP_SLOTS_MAX, "every configured VIP has a slot");
	qd_vip_table_init(&d->iface.vips, d->iface.ip_be, d->iface.prefix_len, vip_log, NULL);
	uint64_t now = qd_daemon_now_ms();
	/* With peers the cluster decides who holds which VIP (control/peer_sync.c): we
	 * start holding none, as a restarted peer must not take its VIPs back from the
	 * survivor that serves them before that survivor has drained them. */
	bool claim = d->cfg.vip_claim_at_start && d->cfg.peer_id == 0;
	if (d->cfg.peer_id != 0 && d->cfg.vip_claim_at_start)
		QD_LOG(INFO, main, "peers: the VIPs start absent; the cluster hands them out");
	enum qd_vip_state st = claim ? QD_VIP_ACTIVE : QD_VIP_ABSENT;
	for (unsigned int i = 0; i < d->cfg.vips_count; i++) {
		char why[QD_VIP_ERR_MAX];
		int rc = qd_vip_add(&d->iface.vips, d->cfg.vips_be[i], st, now, why, sizeof(why));
		if (rc != 0) {
			snprintf(err, err_len, "vip: %s", why);
			return rc;
		}
	}
	return 0;
}

/* Everything after EAL, in order; qd_daemon_stop() undoes what was done. */
static int
start(struct qd_daemon *d, char *err, size_t err_len)
{
	unsigned int lcores = rte_lcore_count();
	if (lcores != d->cfg.workers + 1) {
		snprintf(err, err_len, "EAL has %u lcores; lcore.workers = %u needs %u (main + "
			 "workers): fix lcore.list", lcores, d->cfg.workers, d->cfg.workers + 1);
		return -EINVAL;
	}
	d->workers_count = d->cfg.workers;
	unsigned int cache = RTE_MIN(MBUF_CACHE, d->cfg.mbufs / 2);
	d->pool = rte_pktmbuf_pool_create("qd_mbufs", d->cfg.mbufs, cache, 0,
					  RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	if (d->pool == NULL) {
		snprintf(err, err_len, "mbuf pool of %u: %s (raise eal.memory_mb)", d->cfg.mbufs,
			 rte_strerror(rte_errno));
		return -ENOMEM;
	}
	int rc = qd_port_open(&d->port, &d->cfg, d->pool, (uint16_t)d->workers_count, err,
			      err_len);
	if (rc != 0)
		return rc;
	d->iface.mac = d->port.mac;
	d->iface.ip_be = d->cfg.port_ip.addr_be;
	d->iface.prefix_len = d->cfg.port_ip.prefix_len;
	if ((rc = start_vips(d, err, err_len)) != 0)
		return rc;
	if ((rc = make_rings(d, err, err_len)) != 0 || (rc = make_workers(d, err, err_len)) != 0 ||
	    (rc = start_neigh(d, err, err_len)) != 0 || (rc = start_control(d, err, err_len)) != 0)
		return rc;
	/* peers before the workers: the admission caps are the cluster's from the first query */
	if ((rc = qd_peer_sync_open(d, err, err_len)) != 0)
		return rc;
	if (d->peers != NULL && (rc = qd_ctl_server_watch(&d->ctl, d->peers->fd)) != 0) {
		snprintf(err, err_len, "peers: epoll: %s", strerror(-rc));
		return rc;
	}
	for (unsigned int i = 0; i < d->workers_count; i++) {
		rc = rte_eal_remote_launch(qd_worker_main, d->workers[i], d->workers[i]->conf.lcore_id);
		if (rc != 0) {
			snprintf(err, err_len, "launch lcore %u: %s", d->workers[i]->conf.lcore_id,
				 rte_strerror(-rc));
			return rc;
		}
	}
	d->next_garp_ms = 0; /* announce at once */
	return 0;
}

static void
stop(struct qd_daemon *d)
{
	qd_peer_sync_close(d); /* the peers see us go at once */
	__atomic_store_n(&d->stop, true, __ATOMIC_RELEASE);
	rte_eal_mp_wait_lcore();
	qd_ctl_server_close(&d->ctl);
	qd_port_close(&d->port);
	for (unsigned int i = 0; i < d->workers_count; i++) {
		qd_worker_destroy(d->workers[i]);
		rte_ring_free(d->mailboxes[i]);
		if (d->steer[i] != NULL) {
			void *m = NULL;
			while (rte_ring_dequeue(d->steer[i], &m) == 0)
				rte_pktmbuf_free(m);
		}
		rte_ring_free(d->steer[i]);
	}
	qd_slog_close(d); /* the workers stopped: their last records go in */
	qd_seed_close(d);
	qd_route_table_destroy(d->routes);
	qd_admission_destroy(d->admission);
	rte_free(d->coords);
	rte_ring_free(d->events);
	qd_neigh_table_free(&d->neigh);
	rte_mempool_free(d->pool);
}

static void
run(struct qd_daemon *d)
{
	QD_LOG(NOTICE, main, "qdispatchd %s running: %u worker(s), control socket %s", QD_VERSION,
	       d->workers_count, d->cfg.control_socket);
	while (signal_seen == 0) {
		uint64_t now = qd_daemon_now_ms();
		int rc = qd_ctl_server_poll(&d->ctl, MAIN_POLL_MS, now);
		if (rc < 0) {
			QD_LOG(ERR, main, "control socket: %s; stopping", strerror(-rc));
			break;
		}
		qd_daemon_service(d, qd_daemon_now_ms());
		qd_slog_service(d);
		qd_peer_sync_service(d);
	}
	if (signal_seen != 0)
		QD_LOG(NOTICE, main, "signal %d: stopping", (int)signal_seen);
}

int
main(int argc, char **argv)
{
	struct options opts = {0};
	if (parse_options(argc, argv, &opts) != 0)
		return EXIT_USAGE;

	static struct qd_daemon daemon; /* large: keep it off the stack */
	struct qd_daemon *d = &daemon;
	char err[QD_CONFIG_ERR_MAX];
	qd_config_defaults(&d->cfg);
	if (qd_config_load(&d->cfg, opts.config, err, sizeof(err)) != 0) {
		fprintf(stderr, "qdispatchd: %s\n", err);
		return EXIT_CONFIG;
	}
	if (opts.check) {
		printf("%s: OK\n", opts.config);
		return EXIT_OK;
	}
	d->config_path = opts.config;
	d->start_ms = qd_daemon_now_ms();

	struct qd_eal_args eal;
	if (qd_port_eal_args(&eal, argv[0], &d->cfg, opts.eal_argc, opts.eal_argv, err,
			     sizeof(err)) != 0) {
		fprintf(stderr, "qdispatchd: %s\n", err);
		return EXIT_USAGE;
	}
	d->no_huge = eal.no_huge;
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (rte_eal_init(eal.argc, eal.argv) < 0) {
		fprintf(stderr, "qdispatchd: EAL initialisation failed: %s\n",
			rte_strerror(rte_errno));
		return EXIT_START;
	}
	rte_log_set_level_pattern("qd.*", d->cfg.log_level);
	QD_LOG(INFO, main, "EAL up: %u lcores, %s", rte_lcore_count(),
	       d->no_huge ? "no hugepages" : "hugepages");

	int status = EXIT_OK;
	if (start(d, err, sizeof(err)) != 0) {
		QD_LOG(ERR, main, "start-up failed: %s", err);
		fprintf(stderr, "qdispatchd: %s\n", err);
		status = EXIT_START;
	} else {
		run(d);
	}
	stop(d);
	rte_eal_cleanup();
	QD_LOG(NOTICE, main, "stopped");
	return status;
}
