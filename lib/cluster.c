/*
 * Membership and escrow of the dispatcher peers (cluster.h). Everything here is driven
 * by the caller's clock and the messages it hands in, so the unit tests and the
 * deterministic simulation run it exactly as qdispatchd does.
 *
 * The one safety property: the caps of all peers for a group never add up to more than
 * the group's limit. Each rule below keeps it:
 * - a lender grants only from its spare (cap - running - queued), and reserves what it
 *   grants before saying so;
 * - a lender lowers a grant only to what the borrower last asked for (and never below what
 *   the borrower says it uses);
 * - a borrower counts a grant only up to the smallest request it sent since the message
 *   the lender answered, and asks for less only once its queries no longer need it.
 * Liveness (slots flow to where queries wait) comes from requests sized by the lenders'
 * advertised spare and from recalls; its bound is a round trip plus min_gap_ms.
 */
#include "cluster.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
	[QD_CLUSTER_UNKNOWN] = "unknown",
	[QD_CLUSTER_ALIVE] = "alive",
	[QD_CLUSTER_DEAD] = "dead",
	[QD_CLUSTER_LEFT] = "left",
};

const char *
qd_cluster_state_name(enum qd_cluster_peer_state s)
{
	return (unsigned int)s <= QD_CLUSTER_LEFT ? state_names[s] : "?";
}

static uint32_t
min32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static uint32_t
max32(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

static int
cmp_id(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

struct qd_cluster_peer *
qd_cluster_peer(struct qd_cluster *c, uint16_t id)
{
	for (unsigned int i = 0; i < c->peers_count; i++) {
		if (c->peers[i].id == id)
			return &c->peers[i];
	}
	return NULL;
}

unsigned int
qd_cluster_alive(const struct qd_cluster *c)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < c->peers_count; i++)
		n += c->peers[i].state == QD_CLUSTER_ALIVE;
	return n;
}

struct qd_cluster *
qd_cluster_create(const struct qd_cluster_conf *conf, uint64_t now_us)
{
	if (conf->ids_count == 0 || conf->ids_count > QD_CLUSTER_PEERS_MAX || conf->boot == 0 ||
	    conf->heartbeat_ms == 0 || conf->dead_after_ms <= conf->heartbeat_ms) {
		errno = EINVAL;
		return NULL;
	}
	struct qd_cluster *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->conf = *conf;
	qsort(c->conf.ids, c->conf.ids_count, sizeof(c->conf.ids[0]), cmp_id);
	bool found = false;
	for (unsigned int i = 0; i < c->conf.ids_count; i++) {
		uint16_t id = c->conf.ids[i];
		if (id == 0 || id > QD_PEER_ID_MAX || (i > 0 && id == c->conf.ids[i - 1])) {
			free(c);
			errno = EINVAL;
			return NULL;
		}
		if (id == conf->self) {
			found = true;
			c->self_index = i;
			continue;
		}
		struct qd_cluster_peer *p = &c->peers[c->peers_count++];
		p->id = id;
		p->state_since_us = now_us;
		p->link = calloc(QD_PEER_GROUPS_MAX, sizeof(*p->link));
		p->hist_req = calloc((size_t)QD_CLUSTER_HISTORY * QD_PEER_GROUPS_MAX,
				     sizeof(*p->hist_req));
		if (p->link == NULL || p->hist_req == NULL) {
			qd_cluster_destroy(c);
			errno = ENOMEM;
			return NULL;
		}
	}
	if (!found) {
		qd_cluster_destroy(c);
		errno = EINVAL;
		return NULL;
	}
	c->boot_us = now_us;
	c->quarantine = c->peers_count > 0;
	c->healthy = true;
	return c;
}

void
qd_cluster_destroy(struct qd_cluster *c)
{
	if (c == NULL)
		return;
	for (unsigned int i = 0; i < c->peers_count; i++) {
		free(c->peers[i].link);
		free(c->peers[i].hist_req);
	}
	free(c);
}

static uint32_t
base_share(const struct qd_cluster *c, uint32_t name_hash, uint32_t limit)
{
	uint32_t n = c->conf.ids_count;
	/* the remainder goes to different peers for different groups */
	uint32_t idx = (c->self_index + name_hash) % n;
	return limit / n + (idx < limit % n ? 1 : 0);
}

int
qd_cluster_set_groups(struct qd_cluster *c, const uint32_t *name_hash, const uint32_t *limit,
		      unsigned int n)
{
	if (n > QD_PEER_GROUPS_MAX) {
		errno = E2BIG;
		return -1;
	}
	int map[QD_PEER_GROUPS_MAX]; /* new index -> old index or -1 */
	for (unsigned int i = 0; i < n; i++) {
		map[i] = -1;
		for (unsigned int j = 0; j < c->groups_count; j++) {
			if (c->groups[j].name_hash == name_hash[i]) {
				map[i] = (int)j;
				break;
			}
		}
	}
	struct qd_cluster_group ng[QD_PEER_GROUPS_MAX];
	for (unsigned int i = 0; i < n; i++) {
		ng[i] = map[i] >= 0 ? c->groups[map[i]] : (struct qd_cluster_group){0};
		ng[i].name_hash = name_hash[i];
		ng[i].limit = limit[i];
		ng[i].base = base_share(c, name_hash[i], limit[i]);
	}
	static struct qd_cluster_link nl[QD_PEER_GROUPS_MAX]; /* main thread only */
	uint32_t *row = calloc(QD_PEER_GROUPS_MAX, sizeof(*row));
	if (row == NULL)
		return -1;
	for (unsigned int k = 0; k < c->peers_count; k++) {
		struct qd_cluster_peer *p = &c->peers[k];
		for (unsigned int i = 0; i < n; i++)
			nl[i] = map[i] >= 0 ? p->link[map[i]] : (struct qd_cluster_link){0};
		memcpy(p->link, nl, sizeof(nl[0]) * QD_PEER_GROUPS_MAX);
		for (unsigned int h = 0; h < QD_CLUSTER_HISTORY; h++) {
			uint32_t *r = p->hist_req + (size_t)h * QD_PEER_GROUPS_MAX;
			for (unsigned int i = 0; i < n; i++)
				row[i] = map[i] >= 0 ? r[map[i]] : 0;
			memcpy(r, row, sizeof(*row) * QD_PEER_GROUPS_MAX);
		}
	}
	free(row);
	memcpy(c->groups, ng, sizeof(ng[0]) * n);
	c->groups_count = n;
	uint32_t e = 2166136261u;
	for (unsigned int i = 0; i < n; i++) {
		e = (e ^ name_hash[i]) * 16777619u;
		e = (e ^ limit[i]) * 16777619u;
	}
	c->groups_epoch = e;
	return 0;
}

void
qd_cluster_set_local(struct qd_cluster *c, unsigned int g, uint32_t running, uint32_t queued,
		     int64_t mem)
{
	assert(g < c->groups_count);
	c->groups[g].running = running;
	c->groups[g].queued = queued;
	c->groups[g].mem = mem;
}

/* What we grant and what we may use from others, summed over the peers. */
static void
sums(const struct qd_cluster *c, unsigned int g, uint64_t *out, uint64_t *in)
{
	*out = *in = 0;
	for (unsigned int k = 0; k < c->peers_count; k++) {
		*out += c->peers[k].link[g].grant_out;
		*in += c->peers[k].link[g].usable_in;
	}
}

static void
recompute_cap(struct qd_cluster *c, unsigned int g)
{
	struct qd_cluster_group *gr = &c->groups[g];
	uint64_t out, in;
	sums(c, g, &out, &in);
	int64_t cap = (int64_t)gr->base - (int64_t)out + (int64_t)in;
	if (cap < 0)
		cap = 0;
	if (c->quarantine && cap > gr->running)
		cap = gr->running;
	gr->cap = (uint32_t)cap;
}

static uint32_t
spare(const struct qd_cluster *c, unsigned int g)
{
	const struct qd_cluster_group *gr = &c->groups[g];
	if (c->quarantine)
		return 0;
	int64_t s = (int64_t)gr->cap - gr->running - gr->queued;
	return s > 0 ? (uint32_t)s : 0;
}

/* Smallest request for group <g> we sent <p> since the message it answered. 0 when it
 * answered nothing of ours, or when that message is no longer remembered. */
static uint32_t
min_request_since(const struct qd_cluster_peer *p, unsigned int g, uint64_t acked)
{
	if (acked == 0 || p->send_seq < acked || p->send_seq - acked >= QD_CLUSTER_HISTORY)
		return 0;
	uint32_t m = UINT32_MAX;
	for (uint64_t s = acked; s <= p->send_seq; s++) {
		unsigned int h = (unsigned int)(s % QD_CLUSTER_HISTORY);
		if (p->hist_seq[h] != s)
			return 0;
		m = min32(m, p->hist_req[(size_t)h * QD_PEER_GROUPS_MAX + g]);
	}
	return m;
}

static int
group_index(const struct qd_cluster *c, unsigned int hint, uint32_t name_hash)
{
	if (hint < c->groups_count && c->groups[hint].name_hash == name_hash)
		return (int)hint;
	for (unsigned int j = 0; j < c->groups_count; j++) {
		if (c->groups[j].name_hash == name_hash)
			return (int)j;
	}
	return -1;
}

enum qd_peer_verdict
qd_cluster_receive(struct qd_cluster *c, const struct qd_peer_msg *m, uint64_t now_us,
		   uint64_t now_wall_ms)
{
	struct qd_cluster_peer *p = m->to == c->conf.self ? qd_cluster_peer(c, m->from) : NULL;
	if (p == NULL) {
		c->rejected[QD_PEER_WRONG_PEER]++;
		return QD_PEER_WRONG_PEER;
	}
	enum qd_peer_verdict v = qd_peer_fresh(&p->replay, m, now_wall_ms, c->conf.max_skew_ms);
	if (v != QD_PEER_OK) {
		c->rejected[v]++;
		return v;
	}
	p->msgs_in++;
	p->last_heard_us = now_us;
	p->lag_ms = now_wall_ms > m->sent_ms ? now_wall_ms - m->sent_ms : 0;
	if (m->echo_mono_us != 0 && now_us >= m->echo_mono_us)
		p->rtt_us = now_us - m->echo_mono_us;
	bool rebooted = p->boot != 0 && p->boot != m->boot;
	p->boot = m->boot;
	p->echo_seq = m->seq;
	p->echo_mono_us = m->sent_mono_us;
	p->flags = m->flags;
	p->groups_epoch = m->groups_epoch;
	p->heard_this_boot = true;
	enum qd_cluster_peer_state was = p->state;
	p->state = (m->flags & QD_PEER_F_LEAVING) ? QD_CLUSTER_LEFT : QD_CLUSTER_ALIVE;
	if (p->state != was) {
		p->state_since_us = now_us;
		if (p->state == QD_CLUSTER_LEFT)
			p->dead_since_us = now_us;
		else if (was == QD_CLUSTER_DEAD || was == QD_CLUSTER_LEFT)
			p->rejoins++;
		p->dirty = true;
	}
	if (rebooted)
		p->dirty = true;
	p->vips_count = (uint16_t)min32(m->vips_count, QD_PEER_VIPS_MAX);
	memcpy(p->vips, m->vips, sizeof(m->vips[0]) * p->vips_count);
	p->coords_count = min32(m->coords_count, QD_PEER_COORDS_MAX);
	memcpy(p->coords, m->coords, sizeof(m->coords[0]) * p->coords_count);
	for (unsigned int i = 0; i < m->groups_count; i++) {
		const struct qd_peer_group *mg = &m->groups[i];
		int g = group_index(c, i, mg->name_hash);
		if (g < 0)
			continue;
		struct qd_cluster_link *l = &p->link[g];
		l->p_limit = mg->limit;
		l->p_running = mg->running;
		l->p_queued = mg->queued;
		l->p_mem = mg->mem;
		l->p_cap = mg->cap;
		l->p_spare = mg->spare;
		l->mismatch = mg->limit != c->groups[g].limit;
		if (l->mismatch)
			continue; /* no escrow across different limits */
		/* as borrower: its grant, counted up to our requests since what it answered */
		l->grant_in = mg->grant;
		l->recall = (mg->flags & QD_PEER_G_RECALL) != 0;
		uint32_t usable = min32(l->grant_in, l->request_out);
		usable = min32(usable, min_request_since(p, (unsigned int)g, m->echo_seq));
		l->usable_in = usable;
		/* as lender: a borrower that has not heard us in its boot knows nothing of
		 * our grant yet; its numbers are not about us */
		if (m->echo_seq == 0)
			continue;
		l->peer_request = mg->request;
		l->peer_using = mg->using_;
		uint32_t before = l->grant_out;
		if (mg->request < l->grant_out) {
			l->grant_out = max32(mg->request, mg->using_);
		} else if (mg->request > l->grant_out) {
			recompute_cap(c, (unsigned int)g);
			l->grant_out += min32(mg->request - l->grant_out, spare(c, (unsigned int)g));
		}
		/* its queries hold slots of ours: they stay reserved whatever we can spare
		 * (after our restart we learn our grants this way) */
		l->grant_out = max32(l->grant_out, mg->using_);
		if (l->grant_out != before) {
			c->grants_changed++;
			p->dirty = true;
		}
		recompute_cap(c, (unsigned int)g);
	}
	return QD_PEER_OK;
}

/* Membership: silent peers die; dead peers' grants come back after the orphan hold. */
static void
membership(struct qd_cluster *c, uint64_t now_us)
{
	uint64_t dead_us = (uint64_t)c->conf.dead_after_ms * 1000;
	uint64_t hold_us = (uint64_t)c->conf.orphan_hold_ms * 1000;
	bool all_heard = true;
	for (unsigned int k = 0; k < c->peers_count; k++) {
		struct qd_cluster_peer *p = &c->peers[k];
		all_heard &= p->heard_this_boot;
		if (p->state == QD_CLUSTER_ALIVE && now_us - p->last_heard_us > dead_us) {
			p->state = QD_CLUSTER_DEAD;
			p->state_since_us = p->dead_since_us = now_us;
			p->deaths++;
		}
		if ((p->state == QD_CLUSTER_DEAD || p->state == QD_CLUSTER_LEFT) &&
		    now_us - p->dead_since_us > hold_us) {
			for (unsigned int g = 0; g < c->groups_count; g++) {
				if (p->link[g].grant_out != 0)
					c->grants_changed++;
				p->link[g].grant_out = 0;
				p->link[g].peer_request = p->link[g].peer_using = 0;
			}
		}
	}
	if (c->quarantine && (all_heard || now_us - c->boot_us > hold_us))
		c->quarantine = false;
}

/* Our requests for group <g>: ask lenders with spare for what waits, give back what no
 * query needs, stop using what a silent lender granted. */
static void
requests(struct qd_cluster *c, unsigned int g)
{
	struct qd_cluster_group *gr = &c->groups[g];
	uint64_t out, in;
	sums(c, g, &out, &in);
	uint32_t own = gr->base > out ? (uint32_t)(gr->base - out) : 0;
	/* What of others' grants our queries hold. Sticky: a query stays on the grant it was
	 * counted on, even when that grant shrinks in our view (its lender restarted and must
	 * learn from our report that it still backs our queries) -- except that usage moves
	 * off lenders that recall, onto grants with room. Room is what the lender reserves for
	 * us: after our own restart that is where the queries we restored run. */
	uint32_t excess = gr->running > own ? gr->running - own : 0;
	uint64_t held = 0;
	for (unsigned int k = 0; k < c->peers_count; k++)
		held += c->peers[k].link[g].using_out;
	for (int pass = 0; pass < 2 && held > excess; pass++) {
		for (unsigned int k = 0; k < c->peers_count && held > excess; k++) {
			struct qd_cluster_link *l = &c->peers[k].link[g];
			if (pass == 0 && !l->recall)
				continue;
			uint32_t cut = (uint32_t)(held - excess < l->using_out ? held - excess
									 : l->using_out);
			l->using_out -= cut;
			held -= cut;
		}
	}
	uint32_t left = excess - (uint32_t)held;
	for (unsigned int k = 0; k < c->peers_count; k++) { /* off recalling lenders */
		struct qd_cluster_link *l = &c->peers[k].link[g];
		if (l->recall) {
			left += l->using_out;
			l->using_out = 0;
		}
	}
	for (int pass = 0; pass < 2 && left > 0; pass++) {
		for (unsigned int k = 0; k < c->peers_count && left > 0; k++) {
			struct qd_cluster_link *l = &c->peers[k].link[g];
			if (l->recall != (pass == 1))
				continue;
			uint32_t room = max32(l->usable_in, l->grant_in);
			uint32_t add = room > l->using_out ? room - l->using_out : 0;
			add = min32(add, left);
			l->using_out += add;
			left -= add;
		}
	}
	for (unsigned int k = 0; k < c->peers_count; k++) {
		struct qd_cluster_peer *p = &c->peers[k];
		struct qd_cluster_link *l = &p->link[g];
		uint32_t before = l->request_out;
		l->request_out = max32(l->request_out, l->using_out);
		if (p->state != QD_CLUSTER_ALIVE || l->mismatch) {
			/* no new admissions into a silent lender's grant */
			l->usable_in = l->using_out;
			l->request_out = l->using_out;
		} else if (l->recall) {
			/* Count one slot less than our queries hold: a query that ends then
			 * frees nothing here (local admission would reuse it at once) and the
			 * grant shrinks by one at the next message, until the lender stops
			 * recalling (its cap covers its own queue again). */
			l->request_out = l->using_out;
			l->usable_in = min32(l->usable_in, l->using_out > 0 ? l->using_out - 1 : 0);
		}
		if (l->request_out != before)
			p->dirty = true;
	}
	sums(c, g, &out, &in);
	uint64_t demand = (uint64_t)gr->running + gr->queued;
	uint64_t need = demand > own ? demand - own : 0;
	uint64_t asked = 0; /* usable plus what is asked and not granted yet */
	for (unsigned int k = 0; k < c->peers_count; k++)
		asked += max32(c->peers[k].link[g].request_out, c->peers[k].link[g].usable_in);
	if (need > asked) {
		uint64_t deficit = need - asked;
		/* first what a lender already reserves for us (after our restart), then
		 * what lenders say they can spare */
		for (int pass = 0; pass < 2 && deficit > 0; pass++) {
			for (unsigned int k = 0; k < c->peers_count && deficit > 0; k++) {
				struct qd_cluster_peer *p = &c->peers[k];
				struct qd_cluster_link *l = &p->link[g];
				if (p->state != QD_CLUSTER_ALIVE || l->mismatch || l->recall)
					continue;
				uint32_t room = pass == 0
							? (l->grant_in > l->request_out
								   ? l->grant_in - l->request_out
								   : 0)
							: l->p_spare;
				uint32_t add = (uint32_t)(deficit < room ? deficit : room);
				if (add == 0)
					continue;
				l->request_out += add;
				deficit -= add;
				p->dirty = true;
			}
		}
	} else if (need < asked) {
		/* give back, never below what our queries use; pending asks go first */
		uint64_t release = asked - need;
		for (int k = (int)c->peers_count - 1; k >= 0 && release > 0; k--) {
			struct qd_cluster_peer *p = &c->peers[k];
			struct qd_cluster_link *l = &p->link[g];
			uint32_t floor = l->using_out;
			if (l->request_out <= floor)
				continue;
			uint32_t cut = l->request_out - floor;
			cut = (uint32_t)(release < cut ? release : cut);
			l->request_out -= cut;
			release -= cut;
			l->usable_in = min32(l->usable_in, l->request_out);
			p->dirty = true;
		}
	}
	recompute_cap(c, g);
}

void
qd_cluster_tick(struct qd_cluster *c, uint64_t now_us)
{
	membership(c, now_us);
	for (unsigned int g = 0; g < c->groups_count; g++)
		requests(c, g);
}

bool
qd_cluster_next_message(struct qd_cluster *c, uint64_t now_us, uint64_t now_wall_ms,
			struct qd_peer_msg *out)
{
	uint64_t hb = (uint64_t)c->conf.heartbeat_ms * 1000;
	uint64_t gap = (uint64_t)c->conf.min_gap_ms * 1000;
	for (unsigned int k = 0; k < c->peers_count; k++) {
		struct qd_cluster_peer *p = &c->peers[k];
		uint64_t since = now_us - p->last_sent_us;
		bool due = p->send_seq == 0 || since >= hb || (p->dirty && since >= gap);
		if (!due)
			continue;
		p->dirty = false;
		p->last_sent_us = now_us;
		p->msgs_out++;
		uint64_t seq = ++p->send_seq;
		out->from = c->conf.self;
		out->to = p->id;
		out->flags = (c->leaving ? QD_PEER_F_LEAVING : 0) | (c->healthy ? QD_PEER_F_HEALTHY : 0);
		out->boot = c->conf.boot;
		out->seq = seq;
		out->sent_ms = now_wall_ms;
		out->sent_mono_us = now_us;
		out->echo_seq = p->echo_seq;
		out->echo_mono_us = p->echo_mono_us;
		out->groups_epoch = c->groups_epoch;
		out->groups_count = (uint16_t)c->groups_count;
		unsigned int h = (unsigned int)(seq % QD_CLUSTER_HISTORY);
		p->hist_seq[h] = seq;
		uint32_t *row = p->hist_req + (size_t)h * QD_PEER_GROUPS_MAX;
		for (unsigned int g = 0; g < c->groups_count; g++) {
			const struct qd_cluster_group *gr = &c->groups[g];
			const struct qd_cluster_link *l = &p->link[g];
			uint64_t o, i;
			sums(c, g, &o, &i);
			struct qd_peer_group *mg = &out->groups[g];
			mg->name_hash = gr->name_hash;
			mg->limit = gr->limit;
			mg->running = gr->running;
			mg->queued = gr->queued;
			mg->mem = gr->mem;
			mg->cap = gr->cap;
			mg->spare = spare(c, g);
			mg->grant = l->grant_out;
			mg->request = l->request_out;
			mg->using_ = l->using_out;
			mg->flags = (o > 0 && (uint64_t)gr->running + gr->queued > gr->cap)
					    ? QD_PEER_G_RECALL
					    : 0;
			row[g] = l->request_out;
		}
		out->coords_count = c->coords_count;
		memcpy(out->coords, c->coords, sizeof(c->coords[0]) * c->coords_count);
		out->vips_count = 0;
		for (unsigned int v = 0; v < c->conf.vips_count; v++) {
			if (c->vip_state[v] != QD_CLUSTER_VIP_ABSENT)
				out->vips[out->vips_count++] = (struct qd_peer_vip){
					.ip_be = c->conf.vip_ip_be[v], .state = c->vip_state[v]};
		}
		return true;
	}
	return false;
}

/* ---- virtual IPs ------------------------------------------------------------------ */

static uint64_t
rank(uint32_t ip_be, uint16_t id)
{
	/* splitmix64 of the pair: any peer computes the same order */
	uint64_t z = ((uint64_t)ip_be << 16 | id) + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
qd_cluster_vip_set(struct qd_cluster *c, unsigned int i, enum qd_cluster_vip_state st)
{
	assert(i < c->conf.vips_count);
	if (c->vip_state[i] == st)
		return;
	c->vip_state[i] = st;
	for (unsigned int k = 0; k < c->peers_count; k++)
		c->peers[k].dirty = true; /* tell them now: a handback waits for it */
}

uint16_t
qd_cluster_vip_owner(const struct qd_cluster *c, unsigned int i)
{
	uint16_t home = c->conf.vip_home[i];
	if (home == c->conf.self)
		return home;
	for (unsigned int k = 0; k < c->peers_count; k++) {
		if (c->peers[k].id == home && c->peers[k].state == QD_CLUSTER_ALIVE)
			return home;
	}
	uint32_t ip = c->conf.vip_ip_be[i];
	uint16_t best = c->conf.self;
	uint64_t best_rank = rank(ip, best);
	for (unsigned int k = 0; k < c->peers_count; k++) {
		const struct qd_cluster_peer *p = &c->peers[k];
		if (p->state != QD_CLUSTER_ALIVE || p->id == home)
			continue;
		uint64_t r = rank(ip, p->id);
		if (r > best_rank) {
			best_rank = r;
			best = p->id;
		}
	}
	return best;
}

/* Whether an alive peer other than us says it holds VIP <i>. */
static bool
held_elsewhere(const struct qd_cluster *c, unsigned int i)
{
	uint32_t ip = c->conf.vip_ip_be[i];
	for (unsigned int k = 0; k < c->peers_count; k++) {
		const struct qd_cluster_peer *p = &c->peers[k];
		if (p->state != QD_CLUSTER_ALIVE)
			continue;
		for (unsigned int v = 0; v < p->vips_count; v++) {
			if (p->vips[v].ip_be == ip && p->vips[v].state != QD_CLUSTER_VIP_ABSENT)
				return true;
		}
	}
	return false;
}

enum qd_cluster_vip_action
qd_cluster_vip_decide(struct qd_cluster *c, unsigned int i, uint64_t now_us)
{
	enum qd_cluster_vip_state st = c->vip_state[i];
	uint16_t owner = qd_cluster_vip_owner(c, i);
	if (owner != c->conf.self) {
		/* its owner is alive elsewhere: hand it back, without breaking connections */
		c->vip_contested[i] = false;
		return st == QD_CLUSTER_VIP_ACTIVE ? QD_CLUSTER_VIP_RELEASE : QD_CLUSTER_VIP_KEEP;
	}
	if (st == QD_CLUSTER_VIP_ACTIVE) {
		/* Both held it (a partition healed): the other side drains it and its clients
		 * stay there until then; once it has let go, announce it again, or the
		 * clients' ARP caches keep pointing at the other side. */
		if (held_elsewhere(c, i)) {
			c->vip_contested[i] = true;
			return QD_CLUSTER_VIP_KEEP;
		}
		if (c->vip_contested[i]) {
			c->vip_contested[i] = false;
			return QD_CLUSTER_VIP_TAKE;
		}
		return QD_CLUSTER_VIP_KEEP;
	}
	/* We own it. A peer we have not heard since our start may hold it: wait until we
	 * hear it, or until it would have been declared dead. */
	bool settled = now_us - c->boot_us > (uint64_t)c->conf.dead_after_ms * 1000;
	for (unsigned int k = 0; k < c->peers_count && !settled; k++) {
		const struct qd_cluster_peer *p = &c->peers[k];
		if (p->state == QD_CLUSTER_ALIVE && !p->heard_this_boot)
			return QD_CLUSTER_VIP_KEEP;
	}
	if (!settled) {
		for (unsigned int k = 0; k < c->peers_count; k++) {
			if (!c->peers[k].heard_this_boot)
				return QD_CLUSTER_VIP_KEEP;
		}
	}
	return held_elsewhere(c, i) ? QD_CLUSTER_VIP_KEEP : QD_CLUSTER_VIP_TAKE;
}
