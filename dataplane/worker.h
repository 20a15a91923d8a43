/*
 * A worker lcore: one RX/TX queue pair of the port, its own counters, its
 * own neighbour replica, a mailbox from the main lcore. The loop is DPDK
 * run-to-completion (examples/l3fwd shape): read a burst, handle every packet
 * to the end, send what was produced, drain the mailbox, and when nothing has
 * happened for a while back off into short sleeps (examples/l3fwd-power) so
 * that idle dispatchers leave the CPU to others.
 */
#ifndef QD_WORKER_H
#define QD_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "fault.h"
#include "iface.h"
#include "lcore_stats.h"
#include "msg.h"
#include "neigh.h"
#include "health_check.h"
#include "proxy.h"
#include "reconcile.h"
#include "route_table.h"
#include "tcp.h"
#include "tcp_services.h"

#define QD_BURST_MAX 64
#define QD_TXQ_MAX (2 * QD_BURST_MAX)
#define QD_IDLE_SLEEP_MIN_US 10
#define QD_SLOW_LOOP_US 1000 /* an iteration longer than this is counted as slow */

struct qd_worker_conf {
	unsigned int lcore_id;
	uint16_t port_id;
	uint16_t queue_id;
	uint16_t burst;
	bool idle;
	uint32_t idle_after_us;
	uint32_t idle_sleep_max_us;
	uint32_t neigh_capacity;
	struct qd_fault_conf fault;
	struct qd_tcp_conf tcp;        /* steer_index/steer_count: this worker among all */
	struct qd_siphash_key secret;  /* ISNs and SYN cookies */
	uint16_t echo_port;            /* 0 = off */
	uint16_t discard_port;         /* 0 = off */
	bool proxy;                    /* serve the query proxy (needs coordinators) */
	struct qd_proxy_conf proxy_conf;
	struct qd_route_table *routes; /* shared; NULL without the proxy */
	struct qd_health_conf health;  /* active checks (with the proxy; interval 0 = off) */
};

#define QD_STEER_RING_SIZE 4096 /* mbufs in flight to another worker */

/* Packets produced during one iteration, sent in one burst at its end. */
struct qd_txq {
	uint16_t count;
	struct rte_mbuf *pkts[QD_TXQ_MAX];
};

struct qd_worker {
	struct qd_worker_conf conf;
	const struct qd_iface *iface;   /* shared; its VIP table changes (atomics) */
	struct rte_mempool *pool;
	struct rte_ring *mailbox;       /* main -> this worker (SP/SC) */
	struct rte_ring *events;        /* all workers -> main (MP/SC) */
	const bool *stop;               /* set by the main lcore, read with acquire */
	bool has_port;                  /* false in unit tests: TX stays in txq */
	struct qd_neigh_table neigh;    /* replica, written only from the mailbox */
	struct qd_tcp_stack *tcp;
	struct qd_tcp_services *services;
	struct qd_proxy *proxy;         /* NULL when the proxy is off */
	struct qd_health *health;       /* NULL when checks are off */
	struct qd_reconcile *reconcile; /* restored routes (with the proxy), else NULL */
	struct rte_ring *const *steer;  /* every worker's steering ring, by worker index */
	uint64_t tsc_per_us;
	uint64_t now_us;                /* read once per loop iteration */
	struct qd_fault fault;
	struct qd_txq txq;
	/* Idle back-off state. */
	uint64_t last_work_tsc;
	uint32_t sleep_us;
	struct qd_lcore_stats stats __rte_cache_aligned;
	/* Live client connections per VIP slot (tcp accounting; the main lcore sums them). */
	uint32_t vip_conns[QD_VIP_SLOTS_MAX] __rte_cache_aligned;
} __rte_cache_aligned;

/* TCP settings for a worker that is alone (unit tests, benchmarks): small tables. */
void qd_worker_tcp_conf_default(struct qd_tcp_conf *t);

/* Allocate and initialise a worker (start-up only). NULL with errno set on failure. */
struct qd_worker *qd_worker_create(const struct qd_worker_conf *conf, const struct qd_iface *iface,
				   struct rte_mempool *pool, struct rte_ring *mailbox,
				   struct rte_ring *events, struct rte_ring *const *steer,
				   const bool *stop, bool has_port);
void qd_worker_destroy(struct qd_worker *w);

/* Handle one received frame to completion; <m> is consumed (queued for TX or freed). */
void qd_worker_input(struct qd_worker *w, struct rte_mbuf *m);

/* Handle one mailbox message. */
void qd_worker_handle_msg(struct qd_worker *w, const struct qd_msg *msg);

/* Handle up to QD_MAILBOX_BURST mailbox messages; returns how many. */
unsigned int qd_worker_drain_mailbox(struct qd_worker *w);

/* Send what txq holds; frames the port refuses are freed and counted. */
void qd_worker_flush(struct qd_worker *w);

/* The lcore entry point for rte_eal_remote_launch(); <arg> is a struct qd_worker. */
int qd_worker_main(void *arg);

#endif /* QD_WORKER_H */
