/*
 * The state of one qdispatchd process, owned by main() and handed by pointer
 * to whoever needs it (the control handlers, the main-lcore loop). Workers
 * never see this struct: they get their own qd_worker and talk to the main
 * lcore over rings.
 */
#ifndef QD_DAEMON_H
#define QD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_mempool.h>
#include <rte_ring.h>

#include "config.h"
#include "coord_table.h"
#include "ctl_server.h"
#include "iface.h"
#include "neigh.h"
#include "port.h"
#include "proxy.h"
#include "worker.h"

#define QD_NEIGH_ACTIONS_MAX 64 /* probes sent per main-lcore tick */

/* Counters of the main lcore (single writer: itself). */
struct qd_main_stats {
	uint64_t events_handled;
	uint64_t neigh_learned;
	uint64_t neigh_full;
	uint64_t mailbox_full;
	uint64_t garp_rounds;
	uint64_t vip_garps; /* announcements after a take (vip_table.h) */
};

struct qd_daemon {
	struct qd_config cfg;
	const char *config_path;
	bool no_huge;
	uint64_t start_ms;
	struct qd_port port;
	struct qd_iface iface;
	struct rte_mempool *pool;
	struct rte_ring *events;
	struct rte_ring *mailboxes[QD_CONFIG_WORKERS_MAX];
	struct rte_ring *steer[QD_CONFIG_WORKERS_MAX]; /* TCP segments for worker i */
	struct qd_worker *workers[QD_CONFIG_WORKERS_MAX];
	struct qd_route_table *routes; /* query id -> coordinator, NULL without coordinators */
	struct qd_coord_table *coords; /* shared with the workers (rte_zmalloc), NULL without */
	struct qd_admission *admission; /* NULL without admission.resource_groups */
	struct qd_seed *seed; /* the seed log (control/seed_log.h); NULL without state.dir */
	struct qd_slog *slog;          /* the state log; NULL without state.dir */
	struct qd_peer_sync *peers;    /* control/peer_sync.h; NULL without peer.id */
	struct qd_peer_health peer_health; /* published for the workers' health endpoint */
	unsigned int workers_count;
	bool stop; /* written by the main lcore with release, read by workers with acquire */
	struct qd_neigh_table neigh; /* master */
	struct qd_neigh_timing neigh_timing;
	uint64_t next_neigh_tick_ms;
	uint64_t next_garp_ms;
	struct qd_ctl_server ctl;
	struct qd_main_stats stats;
	uint32_t probe_id; /* last tcp_probe started */
};

/* Monotonic milliseconds. */
uint64_t qd_daemon_now_ms(void);

/* One pass of the main lcore's duties besides the control socket: drain worker events,
 * run neighbour timers, publish replica changes, send gratuitous ARP when due. */
void qd_daemon_service(struct qd_daemon *d, uint64_t now_ms);

/* Virtual IPs at run time (vip_table.h), main lcore only. These are the calls for the
 * control plane (control/peer.c, qdctl vip ...): */

/* Live client connections per VIP slot, summed over the workers. */
void qd_daemon_vip_conns(const struct qd_daemon *d, uint32_t conns[QD_VIP_SLOTS_MAX]);
/* Hold <ip_be> (ACTIVE); gratuitous ARP now and twice more within ~1 s. qd_vip_take(). */
int qd_daemon_vip_take(struct qd_daemon *d, uint32_t ip_be, bool *changed, char *err,
		       size_t err_len);
/* Give <ip_be> up after a drain of at most <drain_ms> (0: at once). qd_vip_release(). */
int qd_daemon_vip_release(struct qd_daemon *d, uint32_t ip_be, uint32_t drain_ms, bool *changed,
			  char *err, size_t err_len);
/* Finish drains and send due announcements (qd_daemon_service() calls it every pass). */
void qd_daemon_vip_service(struct qd_daemon *d, uint64_t now_ms);

/* The control commands qdispatchd serves. */
extern const struct qd_ctl_command qd_daemon_commands[];
extern const unsigned int qd_daemon_commands_count;

#endif /* QD_DAEMON_H */
