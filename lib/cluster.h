/*
 * The peers' cluster logic, sans-I/O: membership (alive/dead from authenticated messages),
 * the merged aggregates of every peer, and the escrow that keeps each resource group's
 * hardConcurrencyLimit cluster-wide. Input: messages taken off the wire (already decoded
 * and authenticated, lib/peer_proto.h), the local admission counters, the clock. Output:
 * messages to send and, per group, the cap the local admission may fill. No sockets, no
 * DPDK: the deterministic simulation in tests/ drives several of these over a lossy,
 * partitionable network.
 *
 * Escrow (docs/architecture.md, "Peers"): group g's limit L is split into base shares,
 * one per configured peer (L/N, remainder spread by the group's hash). A peer's cap is
 * its base, minus what it grants to others, plus what others grant it and it may use.
 * A borrower asks (request); the lender grants from its spare and reserves the grant; a
 * lender never takes back a grant on its own: it lowers a grant only when the borrower
 * asks for less, which the borrower does only once its queries no longer use it. So the
 * caps never add up to more than L, whatever the network does. A borrower counts a grant
 * only up to the smallest request it sent since the message the lender answered (echo),
 * which makes a delayed grant harmless. A dead or partitioned borrower keeps its grants
 * (its queries still run on the coordinators) until it comes back or
 * cluster.orphan_hold_ms passes; a borrower stops admitting into a lender's grant as soon
 * as that lender goes silent. After its own restart a peer admits nothing beyond the
 * queries it restored until it has heard from every peer (it learns what it had granted
 * from the borrowers), or the orphan hold has passed.
 */
#ifndef QD_CLUSTER_H
#define QD_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "peer_proto.h"

#define QD_CLUSTER_PEERS_MAX 16
#define QD_CLUSTER_HISTORY 64 /* requests remembered per peer, by message */
#define QD_CLUSTER_VIPS_MAX QD_PEER_VIPS_MAX

enum qd_cluster_peer_state {
	QD_CLUSTER_UNKNOWN = 0, /* never heard since we started */
	QD_CLUSTER_ALIVE,
	QD_CLUSTER_DEAD,        /* silent for dead_after_ms */
	QD_CLUSTER_LEFT,        /* said it stops */
};

struct qd_cluster_conf {
	uint16_t self;                            /* our peer id */
	uint16_t ids[QD_CLUSTER_PEERS_MAX];       /* every configured peer, self included */
	unsigned int ids_count;
	uint64_t boot;                            /* random, non-zero */
	uint32_t heartbeat_ms;                    /* a message to each peer at least this often */
	uint32_t min_gap_ms;                      /* between two messages to one peer */
	uint32_t dead_after_ms;
	uint32_t orphan_hold_ms;                  /* grants of a dead peer come back after */
	uint32_t max_skew_ms;                     /* staleness of a message's send time */
	/* virtual IPs and the peer each belongs to (its home) */
	uint32_t vip_ip_be[QD_CLUSTER_VIPS_MAX];
	uint16_t vip_home[QD_CLUSTER_VIPS_MAX];
	unsigned int vips_count;
};

/* A virtual IP as we hold it (the data plane's vip_table states). */
enum qd_cluster_vip_state {
	QD_CLUSTER_VIP_ABSENT = 0,
	QD_CLUSTER_VIP_ACTIVE = 1,
	QD_CLUSTER_VIP_DRAINING = 2,
};

/* What the caller should do with a virtual IP now. */
enum qd_cluster_vip_action {
	QD_CLUSTER_VIP_KEEP = 0, /* nothing */
	QD_CLUSTER_VIP_TAKE,     /* hold it (gratuitous ARP) */
	QD_CLUSTER_VIP_RELEASE,  /* give it up after a drain: its owner is alive elsewhere */
};

/* Per (peer, group): the escrow both ways and the peer's aggregates. */
struct qd_cluster_link {
	/* we lend */
	uint32_t grant_out;      /* reserved for the peer */
	uint32_t peer_request;   /* its latest request to us */
	uint32_t peer_using;     /* of our grant, what its queries hold */
	/* we borrow */
	uint32_t grant_in;       /* its grant in its latest message */
	uint32_t request_out;    /* what we ask of it now */
	uint32_t usable_in;      /* of grant_in, what we may count (echo rule) */
	uint32_t using_out;      /* of usable_in, what our queries hold */
	bool recall;             /* it wants its grant back */
	/* its aggregates */
	uint32_t p_limit, p_running, p_queued, p_cap, p_spare;
	int64_t p_mem;
	bool mismatch;           /* its limit for this group differs from ours */
};

struct qd_cluster_peer {
	uint16_t id;
	enum qd_cluster_peer_state state;
	struct qd_peer_replay replay;
	uint64_t boot;             /* its current boot */
	uint64_t last_heard_us;
	uint64_t state_since_us;
	uint64_t dead_since_us;
	uint64_t send_seq;         /* last seq we sent it (this boot) */
	uint64_t last_sent_us;
	uint64_t echo_seq;         /* last seq we took from it, and its sent_mono_us */
	uint64_t echo_mono_us;
	uint64_t rtt_us;           /* from its echo of our messages */
	uint64_t lag_ms;           /* its send time vs our clock at receipt (skew + delay) */
	uint32_t flags;            /* of its latest message */
	uint32_t groups_epoch;
	bool heard_this_boot;      /* for our restart quarantine */
	bool dirty;                /* something to tell it before the next heartbeat */
	uint64_t msgs_in, msgs_out, deaths, rejoins;
	/* virtual IPs it holds, as it last sent them */
	uint16_t vips_count;
	struct qd_peer_vip vips[QD_PEER_VIPS_MAX];
	/* aggregates per coordinator, as it last sent them */
	uint16_t coords_count;
	struct qd_peer_coord coords[QD_PEER_COORDS_MAX];
	/* our requests by message, for the echo rule: hist_seq[i] and its row */
	uint64_t hist_seq[QD_CLUSTER_HISTORY];
	uint32_t *hist_req;        /* [QD_CLUSTER_HISTORY][groups] */
	struct qd_cluster_link *link; /* [groups] */
};

struct qd_cluster_group {
	uint32_t name_hash;
	uint32_t limit;
	uint32_t base;
	uint32_t running, queued; /* local, from admission */
	int64_t mem;
	uint32_t cap;             /* what local admission may hold now */
};

struct qd_cluster {
	struct qd_cluster_conf conf;
	unsigned int self_index;   /* position of self among the sorted ids */
	uint64_t boot_us;
	bool quarantine;           /* after start: until every peer was heard or the hold */
	unsigned int groups_count;
	struct qd_cluster_group groups[QD_PEER_GROUPS_MAX];
	uint32_t groups_epoch;
	unsigned int peers_count;  /* others */
	struct qd_cluster_peer peers[QD_CLUSTER_PEERS_MAX];
	uint16_t coords_count;
	struct qd_peer_coord coords[QD_PEER_COORDS_MAX];
	enum qd_cluster_vip_state vip_state[QD_CLUSTER_VIPS_MAX]; /* ours, from the caller */
	bool vip_contested[QD_CLUSTER_VIPS_MAX]; /* we hold it and so did another peer */
	bool leaving;
	bool healthy;
	uint64_t rejected[QD_PEER_VERDICTS];
	uint64_t grants_changed;
};

/* Create for <conf> (ids must hold self, at most QD_CLUSTER_PEERS_MAX, no duplicates) and
 * <groups> groups (name hashes and limits). NULL with errno. */
struct qd_cluster *qd_cluster_create(const struct qd_cluster_conf *conf, uint64_t now_us);
void qd_cluster_destroy(struct qd_cluster *c);

/* Install the groups (at start and after a reload; groups keep their escrow by name). */
int qd_cluster_set_groups(struct qd_cluster *c, const uint32_t *name_hash,
			  const uint32_t *limit, unsigned int n);

/* The local admission's numbers for group <g> (index as given to set_groups). */
void qd_cluster_set_local(struct qd_cluster *c, unsigned int g, uint32_t running,
			  uint32_t queued, int64_t mem);

/* Take a message that qd_peer_decode accepted. Checks address and freshness; QD_PEER_OK
 * when taken. */
enum qd_peer_verdict qd_cluster_receive(struct qd_cluster *c, const struct qd_peer_msg *m,
					uint64_t now_us, uint64_t now_wall_ms);

/* Membership timers and the escrow's requests; call often (every main-loop pass). */
void qd_cluster_tick(struct qd_cluster *c, uint64_t now_us);

/* The next message due, if any: fills <out> and returns true. Call until false. */
bool qd_cluster_next_message(struct qd_cluster *c, uint64_t now_us, uint64_t now_wall_ms,
			     struct qd_peer_msg *out);

/* Cap of group <g> for the local admission. */
static inline uint32_t
qd_cluster_cap(const struct qd_cluster *c, unsigned int g)
{
	return c->groups[g].cap;
}

/* Virtual IPs: tell the cluster how we hold VIP <i> (index in conf.vip_*), then ask what
 * to do with it. The owner of a VIP is its home peer while that peer is alive, else the
 * alive peer (us included) that ranks highest for it (rendezvous hash: a dead peer's
 * VIPs spread over the survivors, and every survivor computes the same owner). The owner
 * takes it only when no alive peer still holds it (it waits for a drain to end), and only
 * once it has heard every peer since its start or they had time to be declared dead. */
void qd_cluster_vip_set(struct qd_cluster *c, unsigned int i, enum qd_cluster_vip_state st);
enum qd_cluster_vip_action qd_cluster_vip_decide(struct qd_cluster *c, unsigned int i,
						 uint64_t now_us);
/* The owner of VIP <i> in our view (a peer id). */
uint16_t qd_cluster_vip_owner(const struct qd_cluster *c, unsigned int i);

struct qd_cluster_peer *qd_cluster_peer(struct qd_cluster *c, uint16_t id);
const char *qd_cluster_state_name(enum qd_cluster_peer_state s);

/* Peers alive (others), and whether a strict majority of all peers (self included) is. */
unsigned int qd_cluster_alive(const struct qd_cluster *c);

#endif /* QD_CLUSTER_H */
