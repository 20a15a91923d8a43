/*
 * The main lcore's periodic duties (see daemon.h).
 *
 * The main lcore is the control plane's foot in the process: it owns the
 * master neighbour table and every timer that is not per-packet. It sleeps
 * in epoll on the control socket between passes, so it never competes with
 * the workers for a core.
 */
#include "daemon.h"

#include <string.h>
#include <time.h>

#include "log.h"
#include "msg.h"

uint64_t
qd_daemon_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool
send_to_worker(struct qd_daemon *d, unsigned int i, struct qd_msg *msg)
{
	if (rte_ring_enqueue_elem(d->mailboxes[i], msg, sizeof(*msg)) != 0) {
		d->stats.mailbox_full++;
		return false;
	}
	return true;
}

static void
handle_events(struct qd_daemon *d, uint64_t now_ms)
{
	struct qd_msg msgs[QD_EVENTS_BURST];
	unsigned int n = rte_ring_dequeue_burst_elem(d->events, msgs, sizeof(msgs[0]),
						     QD_EVENTS_BURST, NULL);
	for (unsigned int i = 0; i < n; i++) {
		const struct qd_msg *m = &msgs[i];
		d->stats.events_handled++;
		if (m->type != QD_MSG_NEIGH_LEARN) {
			QD_LOG(ERR, main, "unexpected event type %u from lcore %u", m->type,
			       m->lcore);
			continue;
		}
		bool create = m->arg != 0;
		if (create && qd_neigh_lookup(&d->neigh, m->ip_be) == NULL &&
		    qd_neigh_insert(&d->neigh, m->ip_be) == NULL) {
			d->stats.neigh_full++;
			continue;
		}
		if (qd_neigh_learn(&d->neigh, m->ip_be, m->mac, create, now_ms))
			d->stats.neigh_learned++;
	}
}

/* Push every changed entry to every replica; an entry stays dirty until all took it. */
static void
publish(struct qd_daemon *d)
{
	for (uint32_t i = 0; i < d->neigh.capacity; i++) {
		struct qd_neigh_entry *e = &d->neigh.entries[i];
		if (e->state == QD_NEIGH_FREE || !e->dirty)
			continue;
		struct qd_msg msg = {
			.type = QD_MSG_NEIGH_SET,
			.state = e->state,
			.ip_be = e->ip_be,
		};
		memcpy(msg.mac, e->mac, sizeof(msg.mac));
		bool all = true;
		for (unsigned int w = 0; w < d->workers_count; w++)
			all = send_to_worker(d, w, &msg) && all;
		if (all)
			e->dirty = false;
	}
}

static void
neigh_tick(struct qd_daemon *d, uint64_t now_ms)
{
	struct qd_neigh_action acts[QD_NEIGH_ACTIONS_MAX];
	unsigned int n = qd_neigh_tick(&d->neigh, &d->neigh_timing, now_ms, acts,
				       QD_NEIGH_ACTIONS_MAX);
	for (unsigned int i = 0; i < n; i++) {
		/* Probes leave through worker 0: any queue reaches the wire. */
		struct qd_msg msg = {.type = QD_MSG_TX_ARP_REQUEST, .ip_be = acts[i].ip_be};
		send_to_worker(d, 0, &msg);
	}
}

static void
send_garp(struct qd_daemon *d, uint32_t ip_be)
{
	/* Announcements leave through worker 0: any queue reaches the wire. */
	struct qd_msg msg = {.type = QD_MSG_TX_GARP, .ip_be = ip_be};
	send_to_worker(d, 0, &msg);
}

/* The periodic refresh: port.ip and every VIP we hold (ACTIVE or DRAINING). */
static void
garp(struct qd_daemon *d)
{
	send_garp(d, d->iface.ip_be);
	unsigned int n = qd_vip_count(&d->iface.vips);
	for (unsigned int i = 0; i < n; i++) {
		struct qd_vip_info vi;
		qd_vip_info(&d->iface.vips, i, &vi);
		if (vi.state != QD_VIP_ABSENT)
			send_garp(d, vi.ip_be);
	}
	d->stats.garp_rounds++;
}

void
qd_daemon_vip_conns(const struct qd_daemon *d, uint32_t conns[QD_VIP_SLOTS_MAX])
{
	memset(conns, 0, sizeof(uint32_t) * QD_VIP_SLOTS_MAX);
	for (unsigned int w = 0; w < d->workers_count; w++) {
		const struct qd_worker *wk = d->workers[w];
		if (wk == NULL)
			continue;
		for (unsigned int i = 0; i < QD_VIP_SLOTS_MAX; i++)
			conns[i] += __atomic_load_n(&wk->vip_conns[i], __ATOMIC_RELAXED);
	}
}

void
qd_daemon_vip_service(struct qd_daemon *d, uint64_t now_ms)
{
	uint32_t conns[QD_VIP_SLOTS_MAX];
	uint32_t due[QD_VIP_SLOTS_MAX];
	qd_daemon_vip_conns(d, conns);
	unsigned int n = qd_vip_poll(&d->iface.vips, now_ms, conns, due, QD_VIP_SLOTS_MAX);
	for (unsigned int i = 0; i < n; i++) {
		send_garp(d, due[i]);
		d->stats.vip_garps++;
	}
}

int
qd_daemon_vip_take(struct qd_daemon *d, uint32_t ip_be, bool *changed, char *err,
		   size_t err_len)
{
	uint64_t now = qd_daemon_now_ms();
	int rc = qd_vip_take(&d->iface.vips, ip_be, now, changed, err, err_len);
	if (rc == 0)
		qd_daemon_vip_service(d, now); /* the first announcement goes now */
	return rc;
}

int
qd_daemon_vip_release(struct qd_daemon *d, uint32_t ip_be, uint32_t drain_ms, bool *changed,
		      char *err, size_t err_len)
{
	uint64_t now = qd_daemon_now_ms();
	int rc = qd_vip_release(&d->iface.vips, ip_be, drain_ms, now, changed, err, err_len);
	if (rc == 0)
		qd_daemon_vip_service(d, now); /* no connection on it: ABSENT at once */
	return rc;
}

void
qd_daemon_service(struct qd_daemon *d, uint64_t now_ms)
{
	handle_events(d, now_ms);
	if (now_ms >= d->next_neigh_tick_ms) {
		neigh_tick(d, now_ms);
		d->next_neigh_tick_ms = now_ms + 50;
	}
	publish(d);
	qd_daemon_vip_service(d, now_ms);
	if (d->next_garp_ms != UINT64_MAX && now_ms >= d->next_garp_ms) {
		garp(d);
		d->next_garp_ms = d->cfg.garp_interval_s == 0
					  ? UINT64_MAX
					  : now_ms + (uint64_t)d->cfg.garp_interval_s * 1000;
	}
}
