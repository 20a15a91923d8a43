/*
 * The peer protocol's wire format: one authenticated UDP datagram per message between two
 * dispatcher peers. A message carries the sender's precomputed aggregates (per resource
 * group and per coordinator) and, for the one recipient it is addressed to, the escrow
 * levels of each group's concurrency limit (what the sender grants to the recipient, what
 * it asks of it, what of the recipient's grant it uses). Its size depends on the number
 * of groups and coordinators, never on the number of queries.
 *
 * Authentication is HMAC-SHA256 with a shared key over the whole datagram. Freshness: a
 * receiver keeps, per sender, the sender's boot id (random per process start), the last
 * sequence number and send time it accepted; a message is taken only if its MAC is right,
 * its send time is within max_skew of the receiver's wall clock, and it is newer than the
 * last one taken (same boot: a higher sequence; new boot: a later send time). Everything
 * else is rejected and counted by reason. Sans-I/O: no sockets here.
 */
#ifndef QD_PEER_PROTO_H
#define QD_PEER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QD_PEER_MAGIC 0x51445031u /* "QDP1" */
#define QD_PEER_VERSION 1
#define QD_PEER_MAC_LEN 32
#define QD_PEER_KEY_MIN 16
#define QD_PEER_KEY_MAX 128
#define QD_PEER_GROUPS_MAX 256
#define QD_PEER_COORDS_MAX 64
#define QD_PEER_ID_MAX 255 /* peer ids are 1..QD_PEER_ID_MAX */
#define QD_PEER_VIPS_MAX 64

enum qd_peer_msg_flags {
	QD_PEER_F_LEAVING = 1u << 0, /* the sender stops (clean shutdown) */
	QD_PEER_F_HEALTHY = 1u << 1, /* the sender has a coordinator up */
};

enum qd_peer_group_flags {
	QD_PEER_G_RECALL = 1u << 0, /* the sender needs its granted slots back */
};

/* One resource group in a message. */
struct qd_peer_group {
	uint32_t name_hash;  /* qd_admission_name_hash of the group's full name */
	uint32_t limit;      /* hardConcurrencyLimit in the sender's config */
	uint32_t running;    /* the sender's own running queries (admitted or adopted) */
	uint32_t queued;     /* waiting in the sender's queue */
	int64_t mem;         /* PEAK_MEMORY estimates of the sender's running queries */
	uint32_t cap;        /* slots the sender may hold now (its share) */
	uint32_t spare;      /* slots the sender could grant now */
	uint32_t grant;      /* to the recipient: slots reserved for it */
	uint32_t request;    /* to the recipient: slots the sender wants from it */
	uint32_t using_;     /* of the recipient's grant, slots the sender's queries hold */
	uint32_t flags;      /* enum qd_peer_group_flags */
};

/* One coordinator in a message. */
struct qd_peer_coord {
	uint32_t ip_be;
	uint16_t port;
	uint16_t up;         /* 1 when the sender's health checks say up */
	uint32_t running;    /* the sender's routes to it that are live */
};

/* A virtual IP the sender holds (vip_table.h states: 1 active, 2 draining). */
struct qd_peer_vip {
	uint32_t ip_be;
	uint32_t state;
};

struct qd_peer_msg {
	uint16_t from, to;       /* peer ids */
	uint32_t flags;          /* enum qd_peer_msg_flags */
	uint64_t boot;           /* random per process start of the sender */
	uint64_t seq;            /* per (sender boot, recipient), from 1 */
	uint64_t sent_ms;        /* sender's wall clock (staleness) */
	uint64_t sent_mono_us;   /* sender's monotonic clock (echoed back) */
	uint64_t echo_seq;       /* seq of the last message the sender took from the recipient */
	uint64_t echo_mono_us;   /* that message's sent_mono_us */
	uint32_t groups_epoch;   /* hash of the sender's resource-group limits */
	uint16_t groups_count;
	uint16_t coords_count;
	uint16_t vips_count;
	struct qd_peer_group groups[QD_PEER_GROUPS_MAX];
	struct qd_peer_coord coords[QD_PEER_COORDS_MAX];
	struct qd_peer_vip vips[QD_PEER_VIPS_MAX];
};

#define QD_PEER_HEADER_BYTES 72
#define QD_PEER_GROUP_BYTES 48
#define QD_PEER_COORD_BYTES 12
#define QD_PEER_VIP_BYTES 8
#define QD_PEER_MSG_MAX                                                                      \
	(QD_PEER_HEADER_BYTES + QD_PEER_GROUPS_MAX * QD_PEER_GROUP_BYTES +                   \
	 QD_PEER_COORDS_MAX * QD_PEER_COORD_BYTES + QD_PEER_VIPS_MAX * QD_PEER_VIP_BYTES +   \
	 QD_PEER_MAC_LEN)

/* Encoded size of <m>. */
size_t qd_peer_msg_size(const struct qd_peer_msg *m);

/* Encode and sign <m> into <buf> (at least qd_peer_msg_size bytes). Returns the size, or
 * 0 when <cap> is too small or the key is unusable. */
size_t qd_peer_encode(const struct qd_peer_msg *m, const uint8_t *key, size_t key_len,
		      uint8_t *buf, size_t cap);

enum qd_peer_verdict {
	QD_PEER_OK = 0,
	QD_PEER_MALFORMED,   /* wrong size, magic, version or counts */
	QD_PEER_BAD_MAC,     /* forged or damaged */
	QD_PEER_WRONG_PEER,  /* not addressed to us, or from an unknown/own id */
	QD_PEER_STALE,       /* send time too far from our clock */
	QD_PEER_REPLAYED,    /* not newer than what we took from that sender */
	QD_PEER_VERDICTS,
};

const char *qd_peer_verdict_name(enum qd_peer_verdict v);

/* Check the MAC and decode <buf>; no freshness check (see qd_peer_fresh). */
enum qd_peer_verdict qd_peer_decode(const uint8_t *buf, size_t len, const uint8_t *key,
				    size_t key_len, struct qd_peer_msg *out);

/* What a receiver remembers of one sender to reject replays. */
struct qd_peer_replay {
	uint64_t boot;
	uint64_t seq;
	uint64_t sent_ms;
	bool seen;
};

/* Whether <m> is fresh: within <max_skew_ms> of <now_ms> (wall clock) and newer than the
 * last message taken from its sender. Updates <r> when it is. */
enum qd_peer_verdict qd_peer_fresh(struct qd_peer_replay *r, const struct qd_peer_msg *m,
				   uint64_t now_ms, uint64_t max_skew_ms);

/* Parse a key file's content: hex (64..256 hex digits) or raw bytes, trailing newline
 * ignored. Returns the key length, or 0 with <err> set. */
size_t qd_peer_key_parse(const char *text, size_t len, uint8_t *key, char *err,
			 size_t err_len);

#endif /* QD_PEER_PROTO_H */
