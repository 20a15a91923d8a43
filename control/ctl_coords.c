/*
 * Coordinator table commands (see ctl_coords.h).
 *
 * The main lcore reads the shared table (dataplane/coord_table.h) with relaxed
 * loads while the workers write it, so a reply is a snapshot of each field, not
 * of the table as one. The drain and removed flags are the main lcore's own
 * fields: drain, undrain and coordinator_remove store them and the workers see
 * them at their next placement; queries already routed to a drained or removed
 * coordinator go on there. coordinator_add fills the next entry and publishes
 * the count (the table is append-only: an index is never reused, so routes keep
 * theirs; a removed coordinator added back gets its old index).
 *
 * Every change is made durable in the seed log first (control/seed_log.h) and
 * applied only when that succeeded, so what qdctl reports is what a restart
 * replays. Without state.dir the changes are applied at once and the replies
 * say "durable": false.
 *
 * Times in the table are the workers' clock (TSC microseconds, the now_us of
 * worker.c), not CLOCK_MONOTONIC, so ages are computed on that clock here.
 */
#include "ctl_coords.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_common.h>
#include <rte_cycles.h>

#include "coord_table.h"
#include "ctl_tcp.h"
#include "daemon.h"
#include "seed_log.h"

/* The workers' now_us (worker.c: rdtsc / TSC ticks per microsecond). */
static uint64_t
worker_now_us(void)
{
	uint64_t per_us = RTE_MAX(rte_get_tsc_hz() / 1000000, (uint64_t)1);
	return rte_rdtsc() / per_us;
}

static void
coord_addr(const struct qd_coord *c, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = c->ip_be};
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, (unsigned int)c->port);
}

/* The checker writes last_error byte by byte: copy it the same way, NUL forced. */
static void
read_error(const struct qd_coord *c, char *out)
{
	size_t n = sizeof(c->last_error);
	for (size_t i = 0; i < n; i++)
		out[i] = __atomic_load_n(&c->last_error[i], __ATOMIC_RELAXED);
	out[n - 1] = '\0';
}

static json_t *
age_ms(uint64_t now_us, uint64_t then_us)
{
	if (then_us == 0)
		return json_null();
	return json_integer(now_us > then_us ? (json_int_t)((now_us - then_us) / 1000) : 0);
}

static json_t *
coord_json(const struct qd_coord *c, uint64_t now_us)
{
	char addr[32], err[sizeof(c->last_error)];
	char ip[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = c->ip_be};
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	coord_addr(c, addr, sizeof(addr));
	read_error(c, err);
	uint32_t health = qd_coord_load32(&c->health);
	int64_t inflight = __atomic_load_n(&c->inflight, __ATOMIC_RELAXED);
	uint64_t down_until = qd_coord_load64(&c->down_until_us);
	json_t *o = json_object();
	json_object_set_new(o, "coordinator", json_string(addr));
	json_object_set_new(o, "address", json_string(ip));
	json_object_set_new(o, "port", json_integer(c->port));
	json_object_set_new(o, "weight", json_integer(c->weight));
	json_object_set_new(o, "health", json_string(qd_coord_health_name(health)));
	json_object_set_new(o, "drained", json_boolean(qd_coord_load32(&c->drained) != 0));
	json_object_set_new(o, "removed", json_boolean(qd_coord_load32(&c->removed) != 0));
	json_object_set_new(o, "usable", json_boolean(qd_coord_usable(c, now_us)));
	json_object_set_new(o, "cluster_running",
			    json_integer(qd_coord_load32(&c->cluster_running)));
	json_object_set_new(o, "cluster_queued", json_integer(qd_coord_load32(&c->cluster_queued)));
	json_object_set_new(o, "since_report", json_integer(qd_coord_load32(&c->since_report)));
	json_object_set_new(o, "load", json_integer(qd_coord_load(c)));
	json_object_set_new(o, "inflight", json_integer((json_int_t)inflight));
	json_object_set_new(o, "dispatched",
			    json_integer((json_int_t)qd_coord_load64(&c->dispatched)));
	json_object_set_new(o, "checks_ok", json_integer((json_int_t)qd_coord_load64(&c->checks_ok)));
	json_object_set_new(o, "checks_failed",
			    json_integer((json_int_t)qd_coord_load64(&c->checks_failed)));
	json_object_set_new(o, "consecutive", json_integer(qd_coord_load32(&c->consecutive)));
	json_object_set_new(o, "transitions",
			    json_integer((json_int_t)qd_coord_load64(&c->transitions)));
	json_object_set_new(o, "last_error", json_string(err));
	json_object_set_new(o, "since_change_ms",
			    age_ms(now_us, qd_coord_load64(&c->changed_us)));
	json_object_set_new(o, "checked_ms_ago", age_ms(now_us, qd_coord_load64(&c->checked_us)));
	json_object_set_new(o, "passive_failures",
			    json_integer((json_int_t)qd_coord_load64(&c->passive_failures)));
	json_object_set_new(o, "passive_down_ms",
			    json_integer(down_until > now_us
						 ? (json_int_t)((down_until - now_us) / 1000)
						 : 0));
	return o;
}

json_t *
qd_ctl_coords_json(const struct qd_daemon *d)
{
	json_t *arr = json_array();
	if (d->coords == NULL)
		return arr;
	uint64_t now_us = worker_now_us();
	unsigned int n = RTE_MIN(qd_coord_count(d->coords), (unsigned int)QD_COORDS_MAX);
	for (unsigned int i = 0; i < n; i++)
		json_array_append_new(arr, coord_json(&d->coords->c[i], now_us));
	return arr;
}

int
qd_ctl_coordinators(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(void)args, (void)err, (void)err_len;
	const struct qd_daemon *d = ctx;
	*data = json_pack("{s:o, s:{s:i, s:i, s:i, s:i}, s:b}", "coordinators",
			  qd_ctl_coords_json(d), "health", "interval_ms",
			  (int)d->cfg.health_interval_ms, "timeout_ms", (int)d->cfg.health_timeout_ms,
			  "rise", (int)d->cfg.health_rise, "fall", (int)d->cfg.health_fall, "durable",
			  qd_seed_durable(d));
	if (*data == NULL) {
		snprintf(err, err_len, "coordinators: cannot build reply");
		return -ENOMEM;
	}
	return 0;
}

/* args "coordinator" ("a.b.c.d:port") into <ip_be>, <port>; -EINVAL with <err> set. */
static int
parse_coord(const char *cmd, const json_t *args, uint32_t *ip_be, uint16_t *port, char *err,
	    size_t err_len)
{
	const char *target = json_string_value(json_object_get(args, "coordinator"));
	if (target == NULL || qd_ctl_parse_target(target, ip_be, port) != 0 || *port == 0) {
		snprintf(err, err_len, "args \"coordinator\" must be \"a.b.c.d:port\" (%s)", cmd);
		return -EINVAL;
	}
	return 0;
}

/* The coordinator named by args "coordinator" ("a.b.c.d:port"); NULL with <err> set (qdctl
 * prints it after the command's name). */
static struct qd_coord *
find_coord(struct qd_daemon *d, const char *cmd, const json_t *args, char *err, size_t err_len,
	   int *rc)
{
	const char *target = json_string_value(json_object_get(args, "coordinator"));
	uint32_t ip_be;
	uint16_t port;
	*rc = parse_coord(cmd, args, &ip_be, &port, err, err_len);
	if (*rc != 0)
		return NULL;
	if (d->coords == NULL || qd_coord_count(d->coords) == 0) {
		snprintf(err, err_len, "no coordinators are configured");
		*rc = -ENOENT;
		return NULL;
	}
	unsigned int n = RTE_MIN(qd_coord_count(d->coords), (unsigned int)QD_COORDS_MAX);
	for (unsigned int i = 0; i < n; i++) {
		struct qd_coord *c = &d->coords->c[i];
		if (c->ip_be == ip_be && c->port == port)
			return c;
	}
	/* Name the ones there are: the usual mistake is a port or a digit. */
	int off = snprintf(err, err_len, "%s is not a configured coordinator (configured:",
			   target);
	for (unsigned int i = 0; i < n && off > 0 && (size_t)off < err_len; i++) {
		char addr[32];
		coord_addr(&d->coords->c[i], addr, sizeof(addr));
		off += snprintf(err + off, err_len - (size_t)off, " %s", addr);
	}
	if (off > 0 && (size_t)off < err_len)
		snprintf(err + off, err_len - (size_t)off, ")");
	*rc = -ENOENT;
	return NULL;
}

/* Durable first (the seed log), then applied; <err> names the command. */
static int
change(struct qd_daemon *d, const char *cmd, const struct qd_seed_rec *r, char *err,
       size_t err_len)
{
	char why[384];
	int rc = qd_seed_append(d, r, why, sizeof(why));
	if (rc != 0) {
		snprintf(err, err_len, "%s (nothing changed)", why);
		return rc;
	}
	rc = qd_seed_apply(d, r);
	if (rc != 0)
		snprintf(err, err_len, "%s: recorded but not applied: %s (a restart applies it)", cmd,
			 strerror(-rc));
	return rc;
}

static json_t *
reply_json(struct qd_daemon *d, const struct qd_coord *c, bool changed)
{
	json_t *o = coord_json(c, worker_now_us());
	json_object_set_new(o, "index", json_integer(c - d->coords->c));
	json_object_set_new(o, "changed", json_boolean(changed));
	json_object_set_new(o, "durable", json_boolean(qd_seed_durable(d)));
	return o;
}

static int
set_drained(struct qd_daemon *d, const char *cmd, bool drained, const json_t *args,
	    json_t **data, char *err, size_t err_len)
{
	int rc = 0;
	struct qd_coord *c = find_coord(d, cmd, args, err, err_len, &rc);
	if (c == NULL)
		return rc;
	bool was = qd_coord_load32(&c->drained) != 0;
	if (was != drained) {
		struct qd_seed_rec r = {
			.type = drained ? QD_SEED_COORD_DRAIN : QD_SEED_COORD_UNDRAIN,
			.ip_be = c->ip_be,
			.port = c->port,
		};
		rc = change(d, cmd, &r, err, err_len);
		if (rc != 0)
			return rc;
	}
	*data = reply_json(d, c, was != drained);
	return 0;
}

int
qd_ctl_drain(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	return set_drained(ctx, "drain", true, args, data, err, err_len);
}

int
qd_ctl_undrain(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	return set_drained(ctx, "undrain", false, args, data, err, err_len);
}

int
qd_ctl_coordinator_add(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	struct qd_daemon *d = ctx;
	uint32_t ip_be;
	uint16_t port;
	int rc = parse_coord("coordinator_add", args, &ip_be, &port, err, err_len);
	if (rc != 0)
		return rc;
	const json_t *jw = json_object_get(args, "weight");
	if (jw != NULL && (!json_is_integer(jw) || json_integer_value(jw) < 1 ||
			   json_integer_value(jw) > 1000)) {
		snprintf(err, err_len, "args \"weight\" must be an integer 1..1000");
		return -EINVAL;
	}
	uint16_t weight = jw != NULL ? (uint16_t)json_integer_value(jw) : 1;
	if (d->coords == NULL) {
		snprintf(err, err_len, "no coordinator table");
		return -ENOENT;
	}
	char addr[32];
	struct qd_coord key = {.ip_be = ip_be, .port = port};
	coord_addr(&key, addr, sizeof(addr));
	unsigned int n = RTE_MIN(qd_coord_count(d->coords), (unsigned int)QD_COORDS_MAX);
	struct qd_coord *c = NULL;
	for (unsigned int i = 0; i < n && c == NULL; i++)
		if (d->coords->c[i].ip_be == ip_be && d->coords->c[i].port == port)
			c = &d->coords->c[i];
	if (c != NULL && qd_coord_load32(&c->removed) == 0) {
		snprintf(err, err_len, "%s is already a coordinator (index %u)", addr,
			 (unsigned int)(c - d->coords->c));
		return -EEXIST;
	}
	if (c != NULL && jw != NULL && c->weight != weight) {
		/* Placement reads the weight as fixed: it does not change at run time. */
		snprintf(err, err_len, "%s was removed with weight %u; it comes back with that "
			 "weight (leave --weight out, or change it in the config and restart)",
			 addr, (unsigned int)c->weight);
		return -EINVAL;
	}
	if (c == NULL && n >= QD_COORDS_MAX) {
		snprintf(err, err_len, "the coordinator table is full (%d entries; removed ones "
			 "keep theirs until a restart with them gone from the seed log and config)",
			 QD_COORDS_MAX);
		return -ENOSPC;
	}
	/* Its next hop must be resolved before anyone connects (start_neigh does this for
	 * the ones known at start-up); refuse before anything is written. */
	if (d->neigh.capacity > 0 && qd_neigh_want(&d->neigh, ip_be, true, qd_daemon_now_ms()) != 0) {
		snprintf(err, err_len, "neighbour table full: cannot resolve %s", addr);
		return -ENOSPC;
	}
	struct qd_seed_rec r = {.type = QD_SEED_COORD_ADD, .ip_be = ip_be, .port = port,
				.weight = c != NULL ? c->weight : weight};
	bool readd = c != NULL;
	rc = change(d, "coordinator_add", &r, err, err_len);
	if (rc != 0)
		return rc;
	if (c == NULL) {
		for (unsigned int i = 0; i < qd_coord_count(d->coords) && c == NULL; i++)
			if (d->coords->c[i].ip_be == ip_be && d->coords->c[i].port == port)
				c = &d->coords->c[i];
	}
	if (c == NULL) {
		snprintf(err, err_len, "coordinator_add: %s vanished", addr);
		return -EIO;
	}
	*data = reply_json(d, c, true);
	json_object_set_new(*data, "added_back", json_boolean(readd));
	/* Without a proxy (the dispatcher started with no coordinator) it waits for a
	 * restart to take queries. */
	json_object_set_new(*data, "proxy", json_boolean(d->routes != NULL));
	return 0;
}

int
qd_ctl_coordinator_remove(void *ctx, const json_t *args, json_t **data, char *err,
			  size_t err_len)
{
	struct qd_daemon *d = ctx;
	int rc = 0;
	struct qd_coord *c = find_coord(d, "coordinator_remove", args, err, err_len, &rc);
	if (c == NULL)
		return rc;
	bool was = qd_coord_load32(&c->removed) != 0;
	if (!was) {
		struct qd_seed_rec r = {.type = QD_SEED_COORD_REMOVE, .ip_be = c->ip_be,
					.port = c->port};
		rc = change(d, "coordinator_remove", &r, err, err_len);
		if (rc != 0)
			return rc;
	}
	*data = reply_json(d, c, !was);
	return 0;
}
