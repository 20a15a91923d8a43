/*
 * Peers on the main lcore (peer_sync.h). Each pass of the main loop: drain the UDP
 * socket (bounded), hand the admission counters to the cluster logic, run its timers,
 * push the resulting caps into admission, send the messages that are due. The socket is
 * watched by the control server's epoll, so a message wakes the loop at once.
 *
 * The caps are applied before the workers start (qd_peer_sync_open): right after a start
 * the cluster is in quarantine and the cap of every group is what the state log restored,
 * so a restarted peer cannot admit into slots it granted away before the crash.
 */
#include "peer_sync.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admission.h"
#include "coord_table.h"
#include "daemon.h"
#include "log.h"
#include "neigh.h"
#include "vip_table.h"

#define RECV_BUDGET 256 /* datagrams per pass */

static uint64_t
mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
ip_str(uint32_t ip_be, char *out, size_t len)
{
	struct in_addr a = {.s_addr = ip_be};
	inet_ntop(AF_INET, &a, out, (socklen_t)len);
}

static const struct qd_config_peer *
peer_conf(const struct qd_config *cfg, uint16_t id)
{
	for (unsigned int i = 0; i < cfg->peers_count; i++) {
		if (cfg->peers[i].id == id)
			return &cfg->peers[i];
	}
	return NULL;
}

static int
read_key(struct qd_peer_sync *ps, const char *path, char *err, size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_len, "peer.key_file %s: %s", path, strerror(errno));
		return -errno;
	}
	struct stat st;
	char text[2 * QD_PEER_KEY_MAX + 8];
	ssize_t n = fstat(fd, &st) == 0 ? read(fd, text, sizeof(text)) : -1;
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, err_len, "peer.key_file %s: %s", path, strerror(e));
		return -e;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, err_len, "peer.key_file %s: readable by group or others (mode %03o); "
			 "chmod 600 it", path, (unsigned int)(st.st_mode & 0777));
		return -EPERM;
	}
	if ((size_t)n == sizeof(text)) {
		snprintf(err, err_len, "peer.key_file %s: longer than a key", path);
		return -EINVAL;
	}
	char why[128];
	ps->key_len = qd_peer_key_parse(text, (size_t)n, ps->key, why, sizeof(why));
	memset(text, 0, sizeof(text));
	if (ps->key_len == 0) {
		snprintf(err, err_len, "peer.key_file %s: %s", path, why);
		return -EINVAL;
	}
	return 0;
}

/* The groups of admission, as the cluster knows them (by full-name hash). */
static int
install_groups(struct qd_daemon *d)
{
	struct qd_peer_sync *ps = d->peers;
	struct qd_admission *a = d->admission;
	uint32_t hash[QD_PEER_GROUPS_MAX], limit[QD_PEER_GROUPS_MAX];
	unsigned int n = 0;
	for (unsigned int g = 0; a != NULL && g < a->groups && n < QD_PEER_GROUPS_MAX; g++) {
		if (a->g[g].retired)
			continue;
		hash[n] = a->name_hash[g];
		limit[n] = a->info[g].hard_concurrency_limit;
		ps->adm_group[n] = (int)g;
		n++;
	}
	return qd_cluster_set_groups(ps->cluster, hash, limit, n);
}

/* Admission numbers in, caps out. */
static void
sync_admission(struct qd_daemon *d, bool caps)
{
	struct qd_peer_sync *ps = d->peers;
	struct qd_cluster *c = ps->cluster;
	for (unsigned int i = 0; i < c->groups_count; i++) {
		int g = ps->adm_group[i];
		struct qd_adm_group_stats s;
		qd_admission_group_stats(d->admission, g, &s);
		qd_cluster_set_local(c, i, s.running > 0 ? (uint32_t)s.running : 0,
				     s.subtree_queued, s.mem_in_use);
		if (!caps)
			continue;
		uint32_t cap = qd_cluster_cap(c, i);
		if (__atomic_load_n(&d->admission->g[g].limit, __ATOMIC_RELAXED) != cap) {
			qd_admission_set_cap(d->admission, g, cap);
			ps->stats.caps_set++;
		}
	}
}

static void
sync_coordinators(struct qd_daemon *d)
{
	struct qd_cluster *c = d->peers->cluster;
	bool healthy = false;
	unsigned int n = d->coords != NULL ? qd_coord_count(d->coords) : 0;
	c->coords_count = 0;
	for (unsigned int i = 0; i < n && c->coords_count < QD_PEER_COORDS_MAX; i++) {
		const struct qd_coord *k = &d->coords->c[i];
		if (k->removed)
			continue;
		uint32_t h = qd_coord_load32(&k->health);
		bool up = h != QD_COORD_DOWN;
		int64_t inflight = __atomic_load_n(&k->inflight, __ATOMIC_RELAXED);
		c->coords[c->coords_count++] = (struct qd_peer_coord){
			.ip_be = k->ip_be, .port = k->port, .up = up,
			.running = inflight > 0 ? (uint32_t)inflight : 0};
		healthy |= up && !k->drained;
	}
	c->healthy = healthy;
}

int
qd_peer_sync_open(struct qd_daemon *d, char *err, size_t err_len)
{
	const struct qd_config *cfg = &d->cfg;
	if (cfg->peer_id == 0)
		return 0;
	static struct qd_peer_sync sync; /* one per process, large */
	struct qd_peer_sync *ps = &sync;
	memset(ps, 0, sizeof(*ps));
	ps->fd = -1;
	int rc = read_key(ps, cfg->peer_key_file, err, err_len);
	if (rc != 0)
		return rc;
	struct qd_cluster_conf cc = {
		.self = cfg->peer_id,
		.heartbeat_ms = cfg->peer_heartbeat_ms,
		.min_gap_ms = cfg->peer_min_gap_ms,
		.dead_after_ms = cfg->peer_dead_after_ms,
		.orphan_hold_ms = cfg->peer_orphan_hold_ms,
		.max_skew_ms = cfg->peer_max_skew_ms,
	};
	cc.ids[cc.ids_count++] = cfg->peer_id;
	for (unsigned int i = 0; i < cfg->peers_count; i++)
		cc.ids[cc.ids_count++] = cfg->peers[i].id;
	/* the VIPs: ours, then each peer's (peer = ID ADDR:PORT vip=...) */
	for (unsigned int i = 0; i < cfg->vips_count; i++) {
		cc.vip_ip_be[cc.vips_count] = cfg->vips_be[i];
		cc.vip_home[cc.vips_count++] = cfg->peer_id;
	}
	for (unsigned int k = 0; k < cfg->peers_count; k++) {
		for (unsigned int i = 0; i < cfg->peers[k].vips_count; i++) {
			uint32_t ip = cfg->peers[k].vips_be[i];
			for (unsigned int j = 0; j < cc.vips_count; j++) {
				if (cc.vip_ip_be[j] == ip) {
					char a[INET_ADDRSTRLEN];
					ip_str(ip, a, sizeof(a));
					snprintf(err, err_len, "peer %u: vip %s belongs to peer %u already",
						 cfg->peers[k].id, a, cc.vip_home[j]);
					return -EINVAL;
				}
			}
			if (cc.vips_count == QD_CLUSTER_VIPS_MAX) {
				snprintf(err, err_len, "peers: more than %d VIPs in all",
					 QD_CLUSTER_VIPS_MAX);
				return -E2BIG;
			}
			char why[QD_VIP_ERR_MAX];
			if (qd_vip_check(&d->iface.vips, ip, why, sizeof(why)) != 0) {
				snprintf(err, err_len, "peer %u: %s", cfg->peers[k].id, why);
				return -EINVAL;
			}
			cc.vip_ip_be[cc.vips_count] = ip;
			cc.vip_home[cc.vips_count++] = cfg->peers[k].id;
		}
	}
	while (cc.boot == 0) {
		if (getrandom(&cc.boot, sizeof(cc.boot), 0) != (ssize_t)sizeof(cc.boot)) {
			snprintf(err, err_len, "getrandom: %s", strerror(errno));
			return -EIO;
		}
	}
	ps->cluster = qd_cluster_create(&cc, mono_us());
	if (ps->cluster == NULL) {
		snprintf(err, err_len, "peers: %s", strerror(errno));
		return -errno;
	}
	d->peers = ps;
	if (install_groups(d) != 0) {
		snprintf(err, err_len, "peers: groups: %s", strerror(errno));
		return -EINVAL;
	}
	ps->last_groups_epoch = ps->cluster->groups_epoch;
	ps->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(cfg->peer_listen_port),
				 .sin_addr.s_addr = cfg->peer_listen_be};
	int one = 1;
	if (ps->fd < 0 || setsockopt(ps->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(ps->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		char a[INET_ADDRSTRLEN];
		ip_str(cfg->peer_listen_be, a, sizeof(a));
		snprintf(err, err_len, "peer.listen %s:%u: %s", a, cfg->peer_listen_port,
			 strerror(errno));
		return -errno;
	}
	/* the caps of the quarantine: what the state log restored, nothing more */
	if (d->admission != NULL) {
		qd_cluster_tick(ps->cluster, mono_us());
		sync_admission(d, false);
		qd_cluster_tick(ps->cluster, mono_us());
		sync_admission(d, true);
	}
	if (cfg->state_dir[0] == '\0' && d->admission != NULL)
		QD_LOG(WARNING, main, "peers without state.dir: after a restart this dispatcher "
		       "forgets the queries it admitted; until their clients poll again (and it "
		       "adopts them) the cluster may run more than a group's limit. Set state.dir");
	d->peer_health.self = cfg->peer_id;
	d->peer_health.configured = ps->cluster->peers_count;
	d->peer_health.quarantine = ps->cluster->quarantine;
	char a[INET_ADDRSTRLEN];
	ip_str(cfg->peer_listen_be, a, sizeof(a));
	QD_LOG(NOTICE, main, "peers: I am peer %u on %s:%u, %u other peer(s), %u group(s) shared; "
	       "heartbeat %u ms, dead after %u ms", cfg->peer_id, a, cfg->peer_listen_port,
	       cfg->peers_count, ps->cluster->groups_count, cfg->peer_heartbeat_ms,
	       cfg->peer_dead_after_ms);
	return 0;
}

static void
receive(struct qd_daemon *d, uint64_t now_us)
{
	struct qd_peer_sync *ps = d->peers;
	for (int i = 0; i < RECV_BUDGET; i++) {
		struct sockaddr_in from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(ps->fd, ps->buf, sizeof(ps->buf), MSG_TRUNC,
				     (struct sockaddr *)&from, &flen);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				ps->stats.recv_errors++;
			return;
		}
		ps->stats.received++;
		if ((size_t)n > sizeof(ps->buf)) {
			ps->stats.rejected[QD_PEER_MALFORMED]++;
			continue;
		}
		enum qd_peer_verdict v =
			qd_peer_decode(ps->buf, (size_t)n, ps->key, ps->key_len, &ps->msg);
		if (v != QD_PEER_OK) {
			ps->stats.rejected[v]++;
			continue;
		}
		const struct qd_config_peer *pc = peer_conf(&d->cfg, ps->msg.from);
		if (pc != NULL && (from.sin_addr.s_addr != pc->addr_be)) {
			/* the key says it is that peer; the address disagrees: count, take it
			 * (a peer may have several addresses), the MAC is what we trust */
			ps->stats.wrong_source++;
		}
		(void)qd_cluster_receive(ps->cluster, &ps->msg, now_us, wall_ms());
	}
}

static void
send_due(struct qd_daemon *d, uint64_t now_us)
{
	struct qd_peer_sync *ps = d->peers;
	while (qd_cluster_next_message(ps->cluster, now_us, wall_ms(), &ps->msg)) {
		const struct qd_config_peer *pc = peer_conf(&d->cfg, ps->msg.to);
		size_t n = qd_peer_encode(&ps->msg, ps->key, ps->key_len, ps->buf, sizeof(ps->buf));
		if (pc == NULL || n == 0) {
			ps->stats.send_errors++;
			continue;
		}
		ps->stats.last_bytes = n;
		if (n > ps->stats.max_bytes)
			ps->stats.max_bytes = n;
		struct sockaddr_in to = {.sin_family = AF_INET,
					 .sin_port = htons(pc->port),
					 .sin_addr.s_addr = pc->addr_be};
		if (sendto(ps->fd, ps->buf, n, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
			ps->stats.send_errors++; /* unreachable peers are normal: it may be down */
		else
			ps->stats.sent++;
	}
}

static void
log_changes(struct qd_daemon *d, uint64_t now_us)
{
	struct qd_peer_sync *ps = d->peers;
	struct qd_cluster *c = ps->cluster;
	for (unsigned int k = 0; k < c->peers_count; k++) {
		struct qd_cluster_peer *p = &c->peers[k];
		if (p->state == ps->seen[k])
			continue;
		if (p->state == QD_CLUSTER_DEAD) {
			uint64_t silent = (now_us - p->last_heard_us) / 1000;
			ps->stats.detect_ms_last = silent;
			QD_LOG(WARNING, main, "peers: peer %u is dead (silent for %" PRIu64 " ms)",
			       p->id, silent);
		} else {
			QD_LOG(NOTICE, main, "peers: peer %u is %s%s", p->id,
			       qd_cluster_state_name(p->state),
			       ps->seen[k] == QD_CLUSTER_DEAD ? " again (rejoined)" : "");
		}
		ps->seen[k] = p->state;
	}
}

/* Before taking over a dead peer's VIP, ask the data plane who answers for it (an ARP
 * request from our port, RFC 5227's conflict detection): a peer that our control channel
 * cannot hear but whose port still answers ARP for its VIP is alive on the network the
 * clients use (only the peers' control traffic is cut). Taking its VIP would make the
 * clients' ARP caches flap between two live dispatchers and break their connections; we
 * leave it where it is and ask again every second. No answer within VIP_PROBE_MS: take. */
#define VIP_PROBE_MS 300
#define VIP_REPROBE_MS 1000

/* Ask the data plane who answers for VIP <i> from now on: an answer after this is fresh. */
static void
vip_probe_start(struct qd_daemon *d, unsigned int i, uint64_t now_ms)
{
	struct qd_peer_sync *ps = d->peers;
	uint32_t ip = ps->cluster->conf.vip_ip_be[i];
	(void)qd_neigh_remove(&d->neigh, ip);
	if (qd_neigh_want(&d->neigh, ip, false, now_ms) == 0)
		ps->vip_probe_ms[i] = now_ms;
}

/* A home that has been silent for half the death time gets its VIP probed already, so
 * the answer is in by the time it is declared dead and the takeover does not wait. */
static void
vip_probe_early(struct qd_daemon *d, unsigned int i, uint64_t now_us, uint64_t now_ms)
{
	struct qd_peer_sync *ps = d->peers;
	struct qd_cluster *c = ps->cluster;
	struct qd_cluster_peer *home = qd_cluster_peer(c, c->conf.vip_home[i]);
	if (home == NULL || home->state != QD_CLUSTER_ALIVE ||
	    now_us - home->last_heard_us < (uint64_t)c->conf.dead_after_ms * 500u)
		return;
	if (ps->vip_probe_ms[i] == 0 || now_ms - ps->vip_probe_ms[i] > VIP_REPROBE_MS)
		vip_probe_start(d, i, now_ms);
}

static bool
data_plane_silent(struct qd_daemon *d, unsigned int i)
{
	struct qd_peer_sync *ps = d->peers;
	uint32_t ip = ps->cluster->conf.vip_ip_be[i];
	uint64_t now = qd_daemon_now_ms();
	uint64_t *started = &ps->vip_probe_ms[i];
	if (*started == 0 || now - *started > VIP_REPROBE_MS) {
		vip_probe_start(d, i, now);
		if (*started != now)
			return true; /* no room to ask: do not block the takeover on it */
		return false;
	}
	const struct qd_neigh_entry *e = qd_neigh_lookup(&d->neigh, ip);
	if (e != NULL && qd_neigh_state_usable((enum qd_neigh_state)e->state) &&
	    e->updated_ms >= *started) {
		if (!ps->vip_probe_logged[i]) {
			char a[INET_ADDRSTRLEN];
			ip_str(ip, a, sizeof(a));
			QD_LOG(WARNING, main, "peers: vip %s: its home is silent to us but "
			       "%02x:%02x:%02x:%02x:%02x:%02x still answers ARP for it: not taking "
			       "it (the peers' control traffic is cut?)", a, e->mac[0], e->mac[1],
			       e->mac[2], e->mac[3], e->mac[4], e->mac[5]);
			ps->vip_probe_logged[i] = true;
		}
		ps->stats.vip_still_answered++;
		return false;
	}
	if (now - *started < VIP_PROBE_MS)
		return false;
	*started = 0;
	ps->vip_probe_logged[i] = false;
	return true;
}

/* Who holds which VIP: ours from the VIP table in, the cluster's decisions out. */
static void
sync_vips(struct qd_daemon *d, uint64_t now_us)
{
	struct qd_peer_sync *ps = d->peers;
	struct qd_cluster *c = ps->cluster;
	uint64_t now_ms = qd_daemon_now_ms();
	for (unsigned int i = 0; i < c->conf.vips_count; i++) {
		uint32_t ip = c->conf.vip_ip_be[i];
		if (ps->adopt_until_ms[i] != 0 && now_ms >= ps->adopt_until_ms[i]) {
			(void)qd_vip_set_adopt(&d->iface.vips, ip, false);
			ps->adopt_until_ms[i] = 0;
		}
		if (c->conf.vip_home[i] != c->conf.self)
			vip_probe_early(d, i, now_us, now_ms);
		enum qd_vip_state vs = QD_VIP_ABSENT;
		(void)qd_vip_lookup(&d->iface.vips, ip, &vs);
		qd_cluster_vip_set(c, i, (enum qd_cluster_vip_state)vs);
		enum qd_cluster_vip_action act = qd_cluster_vip_decide(c, i, now_us);
		if (act == QD_CLUSTER_VIP_KEEP)
			continue;
		char why[QD_VIP_ERR_MAX], a[INET_ADDRSTRLEN];
		bool changed = false;
		int rc;
		ip_str(ip, a, sizeof(a));
		uint16_t owner = qd_cluster_vip_owner(c, i);
		if (act == QD_CLUSTER_VIP_TAKE && vs == QD_VIP_ABSENT &&
		    c->conf.vip_home[i] != c->conf.self && !data_plane_silent(d, i))
			continue; /* its home still answers for it: a control-plane split only */
		if (act == QD_CLUSTER_VIP_TAKE) {
			rc = qd_daemon_vip_take(d, ip, &changed, why, sizeof(why));
			if (rc == 0)
				ps->stats.vip_takes++;
			if (rc == 0 && changed)
				QD_LOG(NOTICE, main, "peers: vip %s is ours now (its home is peer %u)", a,
				       c->conf.vip_home[i]);
			/* its dead holder's keep-alive connections: their next request reaches
			 * us mid-stream; take them over for a while (tcp.h, adoption) */
			if (rc == 0 && changed && c->conf.vip_home[i] != c->conf.self &&
			    d->cfg.peer_adopt_s > 0 && qd_vip_set_adopt(&d->iface.vips, ip, true) == 0)
				ps->adopt_until_ms[i] = qd_daemon_now_ms() + d->cfg.peer_adopt_s * 1000ull;
		} else {
			rc = qd_daemon_vip_release(d, ip, d->cfg.peer_vip_drain_ms, &changed, why,
						   sizeof(why));
			if (rc == 0)
				ps->stats.vip_releases++;
			if (rc == 0 && changed)
				QD_LOG(NOTICE, main, "peers: vip %s goes back to peer %u (drain up to %u ms)",
				       a, owner, d->cfg.peer_vip_drain_ms);
		}
		if (rc != 0)
			QD_LOG(ERR, main, "peers: vip %s: %s", a, why);
		vs = QD_VIP_ABSENT;
		(void)qd_vip_lookup(&d->iface.vips, ip, &vs);
		qd_cluster_vip_set(c, i, (enum qd_cluster_vip_state)vs);
	}
}

void
qd_peer_sync_service(struct qd_daemon *d)
{
	struct qd_peer_sync *ps = d->peers;
	if (ps == NULL)
		return;
	uint64_t now = mono_us();
	bool quarantine = ps->cluster->quarantine;
	receive(d, now);
	sync_coordinators(d);
	if (d->admission != NULL)
		sync_admission(d, false);
	qd_cluster_tick(ps->cluster, now);
	if (d->admission != NULL)
		sync_admission(d, true);
	sync_vips(d, now);
	send_due(d, now);
	log_changes(d, now);
	struct qd_peer_health *ph = &d->peer_health;
	__atomic_store_n(&ph->self, d->cfg.peer_id, __ATOMIC_RELAXED);
	__atomic_store_n(&ph->configured, ps->cluster->peers_count, __ATOMIC_RELAXED);
	__atomic_store_n(&ph->alive, qd_cluster_alive(ps->cluster), __ATOMIC_RELAXED);
	__atomic_store_n(&ph->quarantine, ps->cluster->quarantine, __ATOMIC_RELAXED);
	if (quarantine && !ps->cluster->quarantine)
		QD_LOG(NOTICE, main, "peers: heard from every peer: admitting with our shares");
}

void
qd_peer_sync_groups_changed(struct qd_daemon *d)
{
	struct qd_peer_sync *ps = d->peers;
	if (ps == NULL)
		return;
	if (install_groups(d) != 0)
		QD_LOG(ERR, main, "peers: groups after the reload: %s", strerror(errno));
	qd_cluster_tick(ps->cluster, mono_us());
	if (d->admission != NULL)
		sync_admission(d, true);
}

void
qd_peer_sync_close(struct qd_daemon *d)
{
	struct qd_peer_sync *ps = d->peers;
	if (ps == NULL)
		return;
	ps->cluster->leaving = true;
	for (unsigned int k = 0; k < ps->cluster->peers_count; k++) {
		ps->cluster->peers[k].dirty = true;
		ps->cluster->peers[k].last_sent_us = 0;
	}
	send_due(d, mono_us());
	if (ps->fd >= 0)
		close(ps->fd);
	qd_cluster_destroy(ps->cluster);
	memset(ps->key, 0, sizeof(ps->key));
	d->peers = NULL;
}

bool
qd_peer_sync_healthy(const struct qd_daemon *d)
{
	unsigned int n = d->coords != NULL ? qd_coord_count(d->coords) : 0;
	for (unsigned int i = 0; i < n; i++) {
		const struct qd_coord *k = &d->coords->c[i];
		if (!k->removed && !k->drained && qd_coord_load32(&k->health) != QD_COORD_DOWN)
			return true;
	}
	return false;
}

/* ---- control --------------------------------------------------------------------- */

static json_t *
link_json(const struct qd_daemon *d, const struct qd_cluster_peer *p, unsigned int i)
{
	const struct qd_cluster *c = d->peers->cluster;
	const struct qd_cluster_link *l = &p->link[i];
	int g = d->peers->adm_group[i];
	return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:b}",
			 "group", d->admission->info[g].name, "limit", (int)c->groups[i].limit,
			 "running", (int)l->p_running, "queued", (int)l->p_queued, "cap",
			 (int)l->p_cap, "spare", (int)l->p_spare, "granted_to_it",
			 (int)l->grant_out, "granted_by_it", (int)l->grant_in, "usable",
			 (int)l->usable_in, "asked_of_it", (int)l->request_out, "using_of_its",
			 (int)l->using_out, "recall", l->recall, "limit_mismatch", l->mismatch);
}

json_t *
qd_peer_sync_json(const struct qd_daemon *d)
{
	const struct qd_peer_sync *ps = d->peers;
	if (ps == NULL)
		return json_null();
	const struct qd_cluster *c = ps->cluster;
	uint64_t now = mono_us();
	char a[INET_ADDRSTRLEN];
	json_t *peers = json_array();
	for (unsigned int k = 0; k < c->peers_count; k++) {
		const struct qd_cluster_peer *p = &c->peers[k];
		const struct qd_config_peer *pc = peer_conf(&d->cfg, p->id);
		ip_str(pc->addr_be, a, sizeof(a));
		json_t *groups = json_array();
		for (unsigned int i = 0; i < c->groups_count; i++)
			json_array_append_new(groups, link_json(d, p, i));
		json_t *vips = json_array();
		for (unsigned int v = 0; v < pc->vips_count; v++) {
			char vb[INET_ADDRSTRLEN];
			ip_str(pc->vips_be[v], vb, sizeof(vb));
			json_array_append_new(vips, json_string(vb));
		}
		json_t *o = json_pack(
			"{s:i, s:s, s:i, s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o}",
			"id", p->id, "address", a, "port", pc->port, "state",
			qd_cluster_state_name(p->state), "state_for_ms",
			(json_int_t)((now - p->state_since_us) / 1000), "last_heard_ms_ago",
			p->last_heard_us ? json_integer((json_int_t)((now - p->last_heard_us) / 1000))
					 : json_null(),
			"rtt_us", (json_int_t)p->rtt_us, "lag_ms", (json_int_t)p->lag_ms, "messages_in",
			(json_int_t)p->msgs_in, "messages_out", (json_int_t)p->msgs_out, "deaths",
			(json_int_t)p->deaths, "rejoins", (json_int_t)p->rejoins, "healthy",
			(p->flags & QD_PEER_F_HEALTHY) != 0, "vips", vips, "groups", groups);
		json_array_append_new(peers, o);
	}
	json_t *groups = json_array();
	for (unsigned int i = 0; i < c->groups_count; i++) {
		const struct qd_cluster_group *gr = &c->groups[i];
		uint64_t cl_running = gr->running, cl_queued = gr->queued;
		for (unsigned int k = 0; k < c->peers_count; k++) {
			if (c->peers[k].state != QD_CLUSTER_ALIVE)
				continue; /* a dead peer's numbers are stale: not merged */
			cl_running += c->peers[k].link[i].p_running;
			cl_queued += c->peers[k].link[i].p_queued;
		}
		json_array_append_new(
			groups,
			json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:I, s:I}", "group",
				  d->admission->info[ps->adm_group[i]].name, "limit", (int)gr->limit,
				  "base", (int)gr->base, "cap", (int)gr->cap, "running",
				  (int)gr->running, "queued", (int)gr->queued, "cluster_running",
				  (json_int_t)cl_running, "cluster_queued", (json_int_t)cl_queued));
	}
	/* per coordinator: ours plus the latest of each alive peer (each counts only the
	 * queries it routes, so the sum counts every query once) */
	json_t *coords = json_array();
	for (unsigned int i = 0; i < c->coords_count; i++) {
		const struct qd_peer_coord *mine = &c->coords[i];
		uint64_t running = mine->running;
		unsigned int up = mine->up, seen = 1;
		for (unsigned int k = 0; k < c->peers_count; k++) {
			const struct qd_cluster_peer *p = &c->peers[k];
			if (p->state != QD_CLUSTER_ALIVE)
				continue;
			for (unsigned int j = 0; j < p->coords_count; j++) {
				if (p->coords[j].ip_be == mine->ip_be && p->coords[j].port == mine->port) {
					running += p->coords[j].running;
					up += p->coords[j].up != 0;
					seen++;
				}
			}
		}
		char ca[INET_ADDRSTRLEN];
		ip_str(mine->ip_be, ca, sizeof(ca));
		json_array_append_new(
			coords, json_pack("{s:s, s:i, s:b, s:i, s:I, s:i, s:i}", "address", ca, "port",
					  (int)mine->port, "up_here", mine->up != 0, "running_here",
					  (int)mine->running, "cluster_running", (json_int_t)running,
					  "peers_seeing_it_up", (int)up, "peers_reporting", (int)seen));
	}
	json_t *vips = json_array();
	for (unsigned int i = 0; i < c->conf.vips_count; i++) {
		char v[INET_ADDRSTRLEN];
		ip_str(c->conf.vip_ip_be[i], v, sizeof(v));
		json_array_append_new(
			vips, json_pack("{s:s, s:i, s:i, s:s}", "address", v, "home",
					(int)c->conf.vip_home[i], "owner",
					(int)qd_cluster_vip_owner(c, i), "held_here",
					qd_vip_state_name((enum qd_vip_state)c->vip_state[i])));
	}
	json_t *rej = json_object();
	for (int v = 1; v < QD_PEER_VERDICTS; v++)
		json_object_set_new(rej, qd_peer_verdict_name((enum qd_peer_verdict)v),
				    json_integer((json_int_t)(ps->stats.rejected[v] + c->rejected[v])));
	ip_str(d->cfg.peer_listen_be, a, sizeof(a));
	char boot[20];
	snprintf(boot, sizeof(boot), "%016" PRIx64, c->conf.boot);
	return json_pack(
		"{s:i, s:s, s:i, s:s, s:b, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
		"self", d->cfg.peer_id, "address", a, "port", d->cfg.peer_listen_port, "boot",
		boot, "quarantine", c->quarantine, "alive", (int)qd_cluster_alive(c), "configured",
		(int)c->peers_count, "peers", peers, "groups", groups, "coordinators", coords, "vips", vips, "rejected", rej,
		"counters",
		"sent", (json_int_t)ps->stats.sent, "send_errors", (json_int_t)ps->stats.send_errors,
		"received", (json_int_t)ps->stats.received, "recv_errors",
		(json_int_t)ps->stats.recv_errors, "wrong_source", (json_int_t)ps->stats.wrong_source,
		"caps_set", (json_int_t)ps->stats.caps_set, "grants_changed",
		(json_int_t)c->grants_changed, "message_bytes", (json_int_t)ps->stats.last_bytes,
		"detect_ms_last", (json_int_t)ps->stats.detect_ms_last, "vip_still_answered",
		(json_int_t)ps->stats.vip_still_answered, "vip_takes",
		(json_int_t)ps->stats.vip_takes, "vip_releases", (json_int_t)ps->stats.vip_releases);
}

int
qd_ctl_peers(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(void)args;
	struct qd_daemon *d = ctx;
	if (d->peers == NULL) {
		snprintf(err, err_len, "no peers: this dispatcher runs alone (set peer.id and peer "
			 "lines, docs/configuration.md)");
		return -ENOENT;
	}
	*data = qd_peer_sync_json(d);
	return *data != NULL ? 0 : -ENOMEM;
}
