/*
 * VIP table commands (see ctl_vips.h).
 *
 * They run on the main lcore, the table's only writer, so a reply is a
 * consistent view of the states; the connection counts are the workers'
 * (relaxed loads, summed), a moment's snapshot. A take or release returns
 * once the change is published to the workers: the first gratuitous ARP of a
 * take is in worker 0's mailbox by then, and a release without drain (or of an
 * address without connections) has already made it ABSENT.
 */
#include "ctl_vips.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

static json_t *
vip_json(const struct qd_vip_info *vi, uint32_t conns, uint64_t now_ms)
{
	char addr[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = vi->ip_be};
	inet_ntop(AF_INET, &a, addr, sizeof(addr));
	uint64_t age_ms = now_ms > vi->since_ms ? now_ms - vi->since_ms : 0;
	/* "since" in wall-clock time for people; for_ms for scripts (no clock skew). */
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	time_t since = rt.tv_sec - (time_t)(age_ms / 1000);
	struct tm tm;
	char when[32] = "";
	if (gmtime_r(&since, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *o = json_object();
	json_object_set_new(o, "address", json_string(addr));
	json_object_set_new(o, "state", json_string(qd_vip_state_name(vi->state)));
	json_object_set_new(o, "connections", json_integer(conns));
	json_object_set_new(o, "since", json_string(when));
	json_object_set_new(o, "for_ms", json_integer((json_int_t)age_ms));
	json_object_set_new(o, "drain_left_ms",
			    vi->state == QD_VIP_DRAINING && vi->drain_until_ms > now_ms
				    ? json_integer((json_int_t)(vi->drain_until_ms - now_ms))
				    : json_null());
	json_object_set_new(o, "takes", json_integer((json_int_t)vi->takes));
	json_object_set_new(o, "releases", json_integer((json_int_t)vi->releases));
	return o;
}

json_t *
qd_ctl_vips_json(const struct qd_daemon *d)
{
	uint32_t conns[QD_VIP_SLOTS_MAX];
	qd_daemon_vip_conns(d, conns);
	uint64_t now = qd_daemon_now_ms();
	json_t *arr = json_array();
	unsigned int n = qd_vip_count(&d->iface.vips);
	for (unsigned int i = 0; i < n && i < QD_VIP_SLOTS_MAX; i++) {
		struct qd_vip_info vi;
		qd_vip_info(&d->iface.vips, i, &vi);
		json_array_append_new(arr, vip_json(&vi, conns[i], now));
	}
	return arr;
}

int
qd_ctl_vips(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	(void)args;
	const struct qd_daemon *d = ctx;
	*data = json_pack("{s:o, s:i, s:i}", "vips", qd_ctl_vips_json(d), "slots",
			  QD_VIP_SLOTS_MAX, "garp_interval_s", (int)d->cfg.garp_interval_s);
	if (*data == NULL) {
		snprintf(err, err_len, "vips: cannot build reply");
		return -ENOMEM;
	}
	return 0;
}

/* args "address" into <ip_be>; -EINVAL with <err>. */
static int
parse_address(const char *cmd, const json_t *args, uint32_t *ip_be, char *err, size_t err_len)
{
	const char *s = json_string_value(json_object_get(args, "address"));
	struct in_addr a;
	if (s == NULL || inet_pton(AF_INET, s, &a) != 1) {
		snprintf(err, err_len, "%s: args \"address\" must be an IPv4 address \"a.b.c.d\"",
			 cmd);
		return -EINVAL;
	}
	*ip_be = a.s_addr;
	return 0;
}

/* The reply of a change: the slot as it is now, and whether it changed. */
static int
reply(struct qd_daemon *d, const char *cmd, uint32_t ip_be, bool changed, json_t **data,
      char *err, size_t err_len)
{
	int slot = qd_vip_slot_of(&d->iface.vips, ip_be);
	if (slot < 0) {
		snprintf(err, err_len, "%s: the address vanished from the table", cmd);
		return -EIO;
	}
	uint32_t conns[QD_VIP_SLOTS_MAX];
	qd_daemon_vip_conns(d, conns);
	struct qd_vip_info vi;
	qd_vip_info(&d->iface.vips, (unsigned int)slot, &vi);
	*data = vip_json(&vi, conns[slot], qd_daemon_now_ms());
	json_object_set_new(*data, "changed", json_boolean(changed));
	return 0;
}

int
qd_ctl_vip_take(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	struct qd_daemon *d = ctx;
	uint32_t ip_be;
	int rc = parse_address("vip_take", args, &ip_be, err, err_len);
	if (rc != 0)
		return rc;
	bool changed = false;
	char why[QD_VIP_ERR_MAX];
	rc = qd_daemon_vip_take(d, ip_be, &changed, why, sizeof(why));
	if (rc != 0) {
		snprintf(err, err_len, "vip take: %s", why);
		return rc;
	}
	return reply(d, "vip_take", ip_be, changed, data, err, err_len);
}

int
qd_ctl_vip_release(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	struct qd_daemon *d = ctx;
	uint32_t ip_be;
	int rc = parse_address("vip_release", args, &ip_be, err, err_len);
	if (rc != 0)
		return rc;
	const json_t *jd = json_object_get(args, "drain_ms");
	if (jd != NULL && (!json_is_integer(jd) || json_integer_value(jd) < 0 ||
			   json_integer_value(jd) > QD_VIP_DRAIN_MAX_MS)) {
		snprintf(err, err_len, "vip release: args \"drain_ms\" must be an integer 0..%u",
			 QD_VIP_DRAIN_MAX_MS);
		return -EINVAL;
	}
	uint32_t drain_ms = jd != NULL ? (uint32_t)json_integer_value(jd) : 0;
	bool changed = false;
	char why[QD_VIP_ERR_MAX];
	rc = qd_daemon_vip_release(d, ip_be, drain_ms, &changed, why, sizeof(why));
	if (rc != 0) {
		snprintf(err, err_len, "vip release: %s", why);
		return rc;
	}
	return reply(d, "vip_release", ip_be, changed, data, err, err_len);
}
