/*
 * The run-time VIP table (see vip_table.h): validation, the state machine of
 * each slot, the schedule of gratuitous ARPs after a take and the end of
 * drains. Only the main lcore calls these functions; each change is published
 * to the workers with one release store of the slot's word.
 */
#include "vip_table.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *
qd_vip_state_name(enum qd_vip_state st)
{
	switch (st) {
	case QD_VIP_ABSENT:
		return "absent";
	case QD_VIP_ACTIVE:
		return "active";
	case QD_VIP_DRAINING:
		return "draining";
	}
	return "?";
}

static void
addr_str(uint32_t ip_be, char *buf, size_t len)
{
	struct in_addr a = {.s_addr = ip_be};
	if (inet_ntop(AF_INET, &a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

static void
log_line(const struct qd_vip_table *t, const char *fmt, uint32_t ip_be, const char *what)
{
	if (t->log == NULL)
		return;
	char addr[INET_ADDRSTRLEN], line[256];
	addr_str(ip_be, addr, sizeof(addr));
	snprintf(line, sizeof(line), fmt, addr, what);
	t->log(t->log_ctx, line);
}

void
qd_vip_table_init(struct qd_vip_table *t, uint32_t ip_be, uint8_t prefix_len, qd_vip_log_fn log,
		  void *log_ctx)
{
	assert(prefix_len <= 32);
	memset(t, 0, sizeof(*t));
	t->ip_be = ip_be;
	t->prefix_len = prefix_len;
	t->log = log;
	t->log_ctx = log_ctx;
}

int
qd_vip_set_adopt(struct qd_vip_table *t, uint32_t ip_be, bool on)
{
	int i = qd_vip_slot_of(t, ip_be);
	if (i < 0)
		return -ENOENT;
	uint64_t w = t->slots[i];
	if ((w & 0xff) != QD_VIP_ACTIVE)
		return -EINVAL;
	w = on ? (w | QD_VIP_F_ADOPT) : (w & ~(uint64_t)QD_VIP_F_ADOPT);
	__atomic_store_n(&t->slots[i], w, __ATOMIC_RELEASE);
	return 0;
}

unsigned int
qd_vip_count(const struct qd_vip_table *t)
{
	return t->used;
}

int
qd_vip_slot_of(const struct qd_vip_table *t, uint32_t ip_be)
{
	enum qd_vip_state st;
	return qd_vip_lookup(t, ip_be, &st);
}

static enum qd_vip_state
slot_state(const struct qd_vip_table *t, unsigned int i)
{
	return (enum qd_vip_state)(t->slots[i] & 0xff);
}

static uint32_t
slot_ip(const struct qd_vip_table *t, unsigned int i)
{
	return (uint32_t)(t->slots[i] >> 32);
}

/* The one place a state changes: publish, keep the DRAINING count, stamp, log. */
static void
set_state(struct qd_vip_table *t, unsigned int i, enum qd_vip_state st, uint64_t now_ms,
	  const char *why)
{
	assert(i < t->used);
	enum qd_vip_state old = slot_state(t, i);
	struct qd_vip_meta *m = &t->meta[i];
	if (old == st)
		return;
	if (old == QD_VIP_DRAINING)
		__atomic_store_n(&t->draining, t->draining - 1, __ATOMIC_RELAXED);
	if (st == QD_VIP_DRAINING)
		__atomic_store_n(&t->draining, t->draining + 1, __ATOMIC_RELAXED);
	if (st == QD_VIP_ACTIVE)
		m->takes++;
	if (old == QD_VIP_ACTIVE)
		m->releases++;
	if (st != QD_VIP_DRAINING)
		m->drain_until_ms = 0;
	if (st == QD_VIP_ABSENT)
		m->garp_left = 0; /* never announce an address we gave up */
	m->since_ms = now_ms;
	__atomic_store_n(&t->slots[i], qd_vip_word(slot_ip(t, i), st), __ATOMIC_RELEASE);
	char what[160];
	snprintf(what, sizeof(what), "%s -> %s (%s)", qd_vip_state_name(old),
		 qd_vip_state_name(st), why);
	log_line(t, "vip %s: %s", slot_ip(t, i), what);
	assert(t->draining <= t->used);
}

int
qd_vip_check(const struct qd_vip_table *t, uint32_t ip_be, char *err, size_t err_len)
{
	char addr[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN];
	addr_str(ip_be, addr, sizeof(addr));
	uint32_t h = ntohl(ip_be);
	uint32_t mask = t->prefix_len == 0 ? 0 : ~0u << (32 - t->prefix_len);
	uint32_t port_h = ntohl(t->ip_be);
	addr_str(htonl(port_h & mask), net, sizeof(net));
	if (h == 0 || h >= 0xe0000000u || (h >> 24) == 127) {
		snprintf(err, err_len, "%s is not a unicast address", addr);
		return -EINVAL;
	}
	if (ip_be == t->ip_be) {
		snprintf(err, err_len, "%s is port.ip, not a virtual IP", addr);
		return -EINVAL;
	}
	if ((h & mask) != (port_h & mask)) {
		snprintf(err, err_len, "%s is outside port.ip's subnet %s/%u: gratuitous ARP "
			 "reaches only the local link", addr, net, (unsigned int)t->prefix_len);
		return -EINVAL;
	}
	if (t->prefix_len <= 30 && ((h & ~mask) == 0 || (h & ~mask) == ~mask)) {
		snprintf(err, err_len, "%s is the %s address of %s/%u", addr,
			 (h & ~mask) == 0 ? "network" : "broadcast", net, (unsigned int)t->prefix_len);
		return -EINVAL;
	}
	return 0;
}

int
qd_vip_add(struct qd_vip_table *t, uint32_t ip_be, enum qd_vip_state st, uint64_t now_ms,
	   char *err, size_t err_len)
{
	assert(st == QD_VIP_ABSENT || st == QD_VIP_ACTIVE);
	int rc = qd_vip_check(t, ip_be, err, err_len);
	if (rc != 0)
		return rc;
	char addr[INET_ADDRSTRLEN];
	addr_str(ip_be, addr, sizeof(addr));
	if (qd_vip_slot_of(t, ip_be) >= 0) {
		snprintf(err, err_len, "%s is already in the VIP table", addr);
		return -EEXIST;
	}
	if (t->used == QD_VIP_SLOTS_MAX) {
		snprintf(err, err_len, "cannot add %s: the VIP table holds %d addresses already "
			 "(slots are kept until a restart)", addr, QD_VIP_SLOTS_MAX);
		return -ENOSPC;
	}
	unsigned int i = t->used;
	memset(&t->meta[i], 0, sizeof(t->meta[i]));
	t->meta[i].since_ms = now_ms;
	/* The word first, then the count that makes workers look at it. */
	__atomic_store_n(&t->slots[i], qd_vip_word(ip_be, QD_VIP_ABSENT), __ATOMIC_RELEASE);
	__atomic_store_n(&t->used, i + 1, __ATOMIC_RELEASE);
	log_line(t, "vip %s: %s", ip_be, "added (absent)");
	if (st == QD_VIP_ACTIVE) {
		set_state(t, i, QD_VIP_ACTIVE, now_ms, "configured");
		t->meta[i].garp_left = QD_VIP_GARP_REPEATS;
		t->meta[i].next_garp_ms = now_ms;
	}
	return 0;
}

int
qd_vip_take(struct qd_vip_table *t, uint32_t ip_be, uint64_t now_ms, bool *changed, char *err,
	    size_t err_len)
{
	bool dummy;
	if (changed == NULL)
		changed = &dummy;
	*changed = false;
	int i = qd_vip_slot_of(t, ip_be);
	if (i < 0) {
		int rc = qd_vip_add(t, ip_be, QD_VIP_ABSENT, now_ms, err, err_len);
		if (rc != 0)
			return rc;
		i = qd_vip_slot_of(t, ip_be);
		assert(i >= 0);
	}
	enum qd_vip_state old = slot_state(t, (unsigned int)i);
	if (old != QD_VIP_ACTIVE) {
		set_state(t, (unsigned int)i, QD_VIP_ACTIVE, now_ms,
			  old == QD_VIP_DRAINING ? "taken back while draining" : "taken");
		*changed = true;
	}
	/* Announced whatever the old state: a take is also how a holder re-asserts. */
	t->meta[i].garp_left = QD_VIP_GARP_REPEATS;
	t->meta[i].next_garp_ms = now_ms;
	return 0;
}

int
qd_vip_release(struct qd_vip_table *t, uint32_t ip_be, uint32_t drain_ms, uint64_t now_ms,
	       bool *changed, char *err, size_t err_len)
{
	bool dummy;
	if (changed == NULL)
		changed = &dummy;
	*changed = false;
	char addr[INET_ADDRSTRLEN];
	addr_str(ip_be, addr, sizeof(addr));
	if (drain_ms > QD_VIP_DRAIN_MAX_MS) {
		snprintf(err, err_len, "drain time %u ms is over the limit of %u ms", drain_ms,
			 QD_VIP_DRAIN_MAX_MS);
		return -EINVAL;
	}
	int i = qd_vip_slot_of(t, ip_be);
	if (i < 0) {
		snprintf(err, err_len, "%s is not in the VIP table (never configured nor taken)",
			 addr);
		return -ENOENT;
	}
	struct qd_vip_meta *m = &t->meta[i];
	enum qd_vip_state old = slot_state(t, (unsigned int)i);
	if (old == QD_VIP_ABSENT)
		return 0;
	if (drain_ms == 0) {
		set_state(t, (unsigned int)i, QD_VIP_ABSENT, now_ms, "released, no drain");
		*changed = true;
		return 0;
	}
	uint64_t until = now_ms + drain_ms;
	if (old == QD_VIP_ACTIVE) {
		char why[64];
		snprintf(why, sizeof(why), "released, drain up to %u ms", drain_ms);
		set_state(t, (unsigned int)i, QD_VIP_DRAINING, now_ms, why);
		m->drain_until_ms = until;
		m->garp_left = 0;
		*changed = true;
	} else if (until < m->drain_until_ms) {
		m->drain_until_ms = until;
		*changed = true;
	}
	return 0;
}

unsigned int
qd_vip_poll(struct qd_vip_table *t, uint64_t now_ms, const uint32_t conns[QD_VIP_SLOTS_MAX],
	    uint32_t *garp, unsigned int max)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < t->used; i++) {
		struct qd_vip_meta *m = &t->meta[i];
		enum qd_vip_state st = slot_state(t, i);
		if (st == QD_VIP_DRAINING && conns[i] == 0) {
			set_state(t, i, QD_VIP_ABSENT, now_ms, "drained: no connection left");
		} else if (st == QD_VIP_DRAINING && now_ms >= m->drain_until_ms) {
			char why[96];
			snprintf(why, sizeof(why), "drain time over, %u connection(s) left to time "
				 "out", conns[i]);
			set_state(t, i, QD_VIP_ABSENT, now_ms, why);
		}
		if (st == QD_VIP_ACTIVE && m->garp_left > 0 && now_ms >= m->next_garp_ms &&
		    n < max) {
			garp[n++] = slot_ip(t, i);
			m->garp_left--;
			m->next_garp_ms = now_ms + QD_VIP_GARP_SPACING_MS;
		}
	}
	assert(n <= max);
	return n;
}

void
qd_vip_info(const struct qd_vip_table *t, unsigned int i, struct qd_vip_info *out)
{
	assert(i < t->used);
	const struct qd_vip_meta *m = &t->meta[i];
	*out = (struct qd_vip_info){
		.ip_be = slot_ip(t, i),
		.state = slot_state(t, i),
		.since_ms = m->since_ms,
		.drain_until_ms = m->drain_until_ms,
		.takes = m->takes,
		.releases = m->releases,
	};
}
