/*
 * The client-facing virtual IPs of this dispatcher, changeable at run time.
 *
 * Peers of an active-active pair each hold some VIPs; when one dies a survivor
 * takes its VIPs over (gratuitous ARP), and gives them back later without
 * breaking the connections it holds on them: it drains them first. This table
 * is the data plane's side of that: which addresses we answer ARP for and
 * accept TCP on, and in which state. The control plane (control/peer.c, or an
 * operator with qdctl) decides who holds what and calls take/release here.
 *
 * A slot is an address and a state packed in one 64-bit word, so a worker's
 * single atomic load always sees a consistent pair. The main lcore is the only
 * writer (stores with release); workers read with acquire and never lock. A
 * slot, once given to an address, stays that address's until the process ends:
 * a worker that looked up a slot a moment ago never finds another address
 * there, and per-slot connection counts never mix two addresses. The number of
 * distinct addresses over a run is therefore bounded by QD_VIP_SLOTS_MAX.
 *
 * States:
 *   ABSENT    not ours now: no ARP answers, TCP segments dropped (counted, no
 *             RST: another peer may hold the address and its connections).
 *   ACTIVE    ARP answered, new connections accepted.
 *   DRAINING  still answered and accepted (new SYNs too, so clients that
 *             still have our MAC are served), but the proxy answers every
 *             response with Connection: close and closes idle keep-alive
 *             connections; ABSENT once no connection is left on it or the
 *             drain time is over, whichever comes first.
 *
 * The table is plain C (no EAL): the unit test drives it with a fake clock and
 * made-up connection counts. Its effects (gratuitous ARP to send, log lines)
 * leave through qd_vip_poll()'s output and the log callback.
 */
#ifndef QD_VIP_TABLE_H
#define QD_VIP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QD_VIP_SLOTS_MAX 32
#define QD_VIP_GARP_REPEATS 3         /* announcements on take: now, then spaced as below */
#define QD_VIP_GARP_SPACING_MS 500    /* so the third goes ~1 s after the take */
#define QD_VIP_DRAIN_MAX_MS 86400000u /* a day: longer is a mistake, not a drain */
#define QD_VIP_ERR_MAX 160

enum qd_vip_state {
	QD_VIP_ABSENT = 0,
	QD_VIP_ACTIVE = 1,
	QD_VIP_DRAINING = 2,
};

/* What the main lcore alone keeps about a slot. */
struct qd_vip_meta {
	uint64_t since_ms;       /* the last state change */
	uint64_t drain_until_ms; /* DRAINING: ABSENT at this time at the latest */
	uint64_t next_garp_ms;   /* the next announcement due (garp_left > 0) */
	uint8_t garp_left;
	uint64_t takes;          /* changes into ACTIVE */
	uint64_t releases;       /* changes out of ACTIVE */
};

/* Log sink for state changes (one line, no newline). */
typedef void (*qd_vip_log_fn)(void *ctx, const char *line);

struct qd_vip_table {
	/* Shared with the workers: written by the main lcore only. */
	uint64_t slots[QD_VIP_SLOTS_MAX]; /* addr_be << 32 | state; 0 = never used */
	uint32_t used;                    /* slots [0, used) have been given an address */
	uint32_t draining;                /* slots in DRAINING now (a cheap test for the proxy) */
	/* The main lcore's own. */
	uint32_t ip_be;                   /* port.ip: its subnet bounds the VIPs */
	uint8_t prefix_len;
	struct qd_vip_meta meta[QD_VIP_SLOTS_MAX];
	qd_vip_log_fn log;
	void *log_ctx;
};

/* One slot as the main lcore reports it. */
struct qd_vip_info {
	uint32_t ip_be;
	enum qd_vip_state state;
	uint64_t since_ms;
	uint64_t drain_until_ms; /* 0 unless DRAINING */
	uint64_t takes;
	uint64_t releases;
};

static inline uint64_t
qd_vip_word(uint32_t ip_be, enum qd_vip_state st)
{
	return (uint64_t)ip_be << 32 | (uint64_t)st;
}

/* Worker side: the slot of <ip_be> and its state, or -1 when the table never held it. */
static inline int
qd_vip_lookup(const struct qd_vip_table *t, uint32_t ip_be, enum qd_vip_state *st)
{
	uint32_t n = __atomic_load_n(&t->used, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < n && i < QD_VIP_SLOTS_MAX; i++) {
		uint64_t w = __atomic_load_n(&t->slots[i], __ATOMIC_ACQUIRE);
		if ((uint32_t)(w >> 32) == ip_be) {
			*st = (enum qd_vip_state)(w & 0xff);
			return (int)i;
		}
	}
	return -1;
}

/* The slot word's bit for "adopt connections": set by the main lcore for a while after
 * it took a VIP over from a dead peer (qd_vip_set_adopt), cleared by any state change. */
#define QD_VIP_F_ADOPT 0x100u

/* Worker side: whether unknown connections to <ip_be> may be adopted now (see
 * docs/architecture.md "Peers": connections of a dead peer). */
static inline bool
qd_vip_adopting(const struct qd_vip_table *t, uint32_t ip_be)
{
	uint32_t n = __atomic_load_n(&t->used, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < n && i < QD_VIP_SLOTS_MAX; i++) {
		uint64_t w = __atomic_load_n(&t->slots[i], __ATOMIC_ACQUIRE);
		if ((uint32_t)(w >> 32) == ip_be)
			return (w & 0xff) == QD_VIP_ACTIVE && (w & QD_VIP_F_ADOPT) != 0;
	}
	return false;
}

/* Worker side: whether <ip_be> is a VIP we answer for now (ACTIVE or DRAINING). */
static inline bool
qd_vip_held(const struct qd_vip_table *t, uint32_t ip_be)
{
	enum qd_vip_state st;
	return qd_vip_lookup(t, ip_be, &st) >= 0 && st != QD_VIP_ABSENT;
}

/* Any slot DRAINING now (relaxed: a hint for periodic checks). */
static inline bool
qd_vip_any_draining(const struct qd_vip_table *t)
{
	return __atomic_load_n(&t->draining, __ATOMIC_RELAXED) != 0;
}

const char *qd_vip_state_name(enum qd_vip_state st);

/* An empty table for interface <ip_be>/<prefix_len>; <log> may be NULL. */
void qd_vip_table_init(struct qd_vip_table *t, uint32_t ip_be, uint8_t prefix_len,
		       qd_vip_log_fn log, void *log_ctx);

/* Whether <ip_be> may be a VIP of this interface: a unicast address in port.ip's subnet,
 * not port.ip, not the subnet's network or broadcast address. 0, or -EINVAL with <err>. */
int qd_vip_check(const struct qd_vip_table *t, uint32_t ip_be, char *err, size_t err_len);

/* Put a new address in the table in state <st> (start-up: the configured VIPs). -EINVAL
 * (qd_vip_check), -EEXIST (already in the table), -ENOSPC (every slot used). */
int qd_vip_add(struct qd_vip_table *t, uint32_t ip_be, enum qd_vip_state st, uint64_t now_ms,
	       char *err, size_t err_len);

/* Hold <ip_be> from now: ACTIVE, and QD_VIP_GARP_REPEATS gratuitous ARPs scheduled from
 * now (qd_vip_poll() hands them out). An address not in the table is added (validated as
 * qd_vip_add); a DRAINING one stops draining; an ACTIVE one stays so and is announced
 * again. <changed> (may be NULL) says whether the state changed. 0 or -errno with <err>. */
int qd_vip_take(struct qd_vip_table *t, uint32_t ip_be, uint64_t now_ms, bool *changed,
		char *err, size_t err_len);

/* Give <ip_be> up: DRAINING for at most <drain_ms> (0: ABSENT at once). Releasing a
 * DRAINING address again can only shorten its drain; an ABSENT one is left as it is.
 * -ENOENT when the table never held it, -EINVAL for a drain over QD_VIP_DRAIN_MAX_MS. */
int qd_vip_release(struct qd_vip_table *t, uint32_t ip_be, uint32_t drain_ms, uint64_t now_ms,
		   bool *changed, char *err, size_t err_len);

/* The main loop's tick: drains whose slot has no connection left (<conns>[slot], summed
 * over the workers) or whose time is over end in ABSENT; announcements that are due go to
 * <garp> (at most <max>). Returns how many addresses were written to <garp>. */
unsigned int qd_vip_poll(struct qd_vip_table *t, uint64_t now_ms,
			 const uint32_t conns[QD_VIP_SLOTS_MAX], uint32_t *garp, unsigned int max);

/* Main lcore: let workers adopt unknown connections to ACTIVE <ip_be> (<on>) or stop.
 * -ENOENT when the table does not hold it, -EINVAL when it is not ACTIVE. */
int qd_vip_set_adopt(struct qd_vip_table *t, uint32_t ip_be, bool on);

/* Slot <i> (below qd_vip_count()) for reports. */
void qd_vip_info(const struct qd_vip_table *t, unsigned int i, struct qd_vip_info *out);
unsigned int qd_vip_count(const struct qd_vip_table *t);

/* Main lcore: the slot of <ip_be> or -1. */
int qd_vip_slot_of(const struct qd_vip_table *t, uint32_t ip_be);

#endif /* QD_VIP_TABLE_H */
