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
garp(struct qd_daemon *d)
{
	struct qd_msg msg = {.type = QD_MSG_TX_GARP, .ip_be = d->iface.ip_be};
	send_to_worker(d, 0, &msg);
	for (unsigned int i = 0; i < d->iface.vips_count; i++) {
		msg.ip_be = d->iface.vips_be[i];
		send_to_worker(d, 0, &msg);
	}
	d->stats.garp_rounds++;
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
	if (d->next_garp_ms != UINT64_MAX && now_ms >= d->next_garp_ms) {
		garp(d);
		d->next_garp_ms = d->cfg.garp_interval_s == 0
					  ? UINT64_MAX
					  : now_ms + (uint64_t)d->cfg.garp_interval_s * 1000;
	}
}
