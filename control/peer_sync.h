/*
 * The peers on the main lcore: a kernel UDP socket on peer.listen (control traffic stays
 * off the data plane), the shared key, and the glue between lib/cluster.h (membership and
 * escrow, sans-I/O) and this dispatcher: the admission counters go in, the caps of the
 * resource groups come out, messages go to the configured peers' addresses.
 */
#ifndef QD_PEER_SYNC_H
#define QD_PEER_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cluster.h"
#include "peer_proto.h"

struct qd_daemon;

struct qd_peer_sync_stats {
	uint64_t sent, send_errors;
	uint64_t received, recv_errors;
	uint64_t rejected[QD_PEER_VERDICTS]; /* by decode (MAC, shape); cluster counts the rest */
	uint64_t wrong_source;               /* authenticated, but from another address */
	uint64_t caps_set;
	uint64_t last_bytes, max_bytes;      /* size of the messages we send */
	uint64_t detect_ms_last;             /* silence before the last death was declared */
	uint64_t vip_takes, vip_releases;
	uint64_t vip_still_answered;         /* takeovers held back: its home answers ARP */
};

struct qd_peer_sync {
	int fd;
	uint8_t key[QD_PEER_KEY_MAX];
	size_t key_len;
	struct qd_cluster *cluster;
	int adm_group[QD_PEER_GROUPS_MAX];   /* cluster group -> admission group */
	enum qd_cluster_peer_state seen[QD_CLUSTER_PEERS_MAX]; /* for the log */
	struct qd_peer_sync_stats stats;
	uint64_t vip_probe_ms[QD_CLUSTER_VIPS_MAX]; /* ARP probe before a takeover: sent at */
	bool vip_probe_logged[QD_CLUSTER_VIPS_MAX];
	uint64_t adopt_until_ms[QD_CLUSTER_VIPS_MAX]; /* adopting a dead peer's connections */
	uint64_t last_groups_epoch;
	struct qd_peer_msg msg;              /* scratch: large, kept off the stack */
	uint8_t buf[QD_PEER_MSG_MAX];
};

/* Start the peers when peer.id is set (no-op otherwise). Before the workers run: the caps
 * are in place before the first admission. Negative errno with <err>. */
int qd_peer_sync_open(struct qd_daemon *d, char *err, size_t err_len);

/* One pass: read messages, feed the admission numbers, set the caps, send what is due. */
void qd_peer_sync_service(struct qd_daemon *d);

/* Tell the peers we stop (they see it at once instead of after peer.dead_after_ms). */
void qd_peer_sync_close(struct qd_daemon *d);

/* Re-read the groups after an admission reload. */
void qd_peer_sync_groups_changed(struct qd_daemon *d);

/* `peers`: membership, lag, shares; `.peers` of status (null without peers). */
int qd_ctl_peers(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len);
json_t *qd_peer_sync_json(const struct qd_daemon *d);

/* Whether this dispatcher should take new work (the health endpoint): a coordinator is
 * usable. */
bool qd_peer_sync_healthy(const struct qd_daemon *d);

#endif /* QD_PEER_SYNC_H */
