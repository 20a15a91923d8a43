/*
 * TCP probe commands (see ctl_tcp.h).
 *
 * The main lcore only validates, makes sure the target's MAC is being
 * resolved, and splits the connections among the workers through their
 * mailboxes; each worker runs its share on its own stack and publishes its
 * numbers, which tcp_probe_status adds up. The probe exercises exactly the
 * path coordinator connections will take: next-hop resolution, a local port
 * owned by the worker, replies steered back to it.
 */
#include "ctl_tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "msg.h"

#define PROBE_BYTES_MAX (1ull << 34) /* 16 GiB per connection */

int
qd_ctl_parse_target(const char *s, uint32_t *ip_be, uint16_t *port)
{
	char buf[32];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, (size_t)(colon - s));
	buf[colon - s] = '\0';
	struct in_addr a;
	char *end = NULL;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (inet_pton(AF_INET, buf, &a) != 1 || *end != '\0' || p == 0 || p > 65535)
		return -EINVAL;
	*ip_be = a.s_addr;
	*port = (uint16_t)p;
	return 0;
}

int
qd_ctl_tcp_probe(void *ctx, const json_t *args, json_t **data, char *err, size_t err_len)
{
	struct qd_daemon *d = ctx;
	const char *target = json_string_value(json_object_get(args, "target"));
	json_t *jc = json_object_get(args, "connections");
	json_t *jb = json_object_get(args, "bytes");
	uint32_t ip_be;
	uint16_t port;
	if (target == NULL || qd_ctl_parse_target(target, &ip_be, &port) != 0) {
		snprintf(err, err_len, "tcp_probe: \"target\" must be \"a.b.c.d:port\"");
		return -EINVAL;
	}
	json_int_t conns = jc == NULL ? 1 : json_integer_value(jc);
	json_int_t bytes = jb == NULL ? 65536 : json_integer_value(jb);
	json_int_t conns_max = (json_int_t)QD_TCP_PROBE_CONNS_MAX * d->workers_count;
	if ((jc != NULL && !json_is_integer(jc)) || conns < 1 || conns > conns_max) {
		snprintf(err, err_len, "tcp_probe: \"connections\" must be 1..%lld",
			 (long long)conns_max);
		return -EINVAL;
	}
	if ((jb != NULL && !json_is_integer(jb)) || bytes < 0 ||
	    (unsigned long long)bytes > PROBE_BYTES_MAX) {
		snprintf(err, err_len, "tcp_probe: \"bytes\" must be 0..%llu", PROBE_BYTES_MAX);
		return -EINVAL;
	}
	uint32_t prefix_mask = d->iface.prefix_len == 0 ? 0 : htonl(~0u << (32 - d->iface.prefix_len));
	if ((ip_be & prefix_mask) != (d->iface.ip_be & prefix_mask) && d->cfg.port_gateway_be == 0) {
		snprintf(err, err_len, "tcp_probe: %s is off-link and no port.gateway is set", target);
		return -EHOSTUNREACH;
	}
	uint32_t next_hop = (ip_be & prefix_mask) == (d->iface.ip_be & prefix_mask)
				    ? ip_be
				    : d->cfg.port_gateway_be;
	if (next_hop != ip_be) {
		snprintf(err, err_len, "tcp_probe: off-link targets are not supported yet");
		return -ENOTSUP;
	}
	int rc = qd_neigh_want(&d->neigh, next_hop, false, qd_daemon_now_ms());
	if (rc != 0) {
		snprintf(err, err_len, "tcp_probe: neighbour table full");
		return rc;
	}
	uint32_t id = ++d->probe_id;
	uint32_t w_count = d->workers_count;
	for (uint32_t i = 0; i < w_count; i++) {
		uint32_t share = (uint32_t)(conns / w_count) + (i < (uint32_t)(conns % w_count) ? 1 : 0);
		struct qd_msg msg = {
			.type = QD_MSG_TCP_PROBE,
			.ip_be = ip_be,
			.arg = (uint64_t)port | (uint64_t)share << 16 | (uint64_t)id << 32,
			.arg2 = (uint64_t)bytes,
		};
		if (rte_ring_enqueue_elem(d->mailboxes[i], &msg, sizeof(msg)) != 0) {
			snprintf(err, err_len, "tcp_probe: mailbox of worker %u full", i);
			return -EBUSY;
		}
	}
	*data = json_pack("{s:i, s:s, s:I, s:I}", "id", (int)id, "target", target, "connections",
			  (json_int_t)conns, "bytes", (json_int_t)bytes);
	return 0;
}

int
qd_ctl_tcp_probe_status(void *ctx, const json_t *args, json_t **data, char *err,
			size_t err_len)
{
	(void)args, (void)err, (void)err_len;
	struct qd_daemon *d = ctx;
	struct qd_tcp_probe_stats sum;
	memset(&sum, 0, sizeof(sum));
	bool done = true;
	for (unsigned int i = 0; i < d->workers_count; i++) {
		struct qd_tcp_probe_stats st;
		qd_tcp_probe_read(d->workers[i]->services, &st);
		/* A worker that has not yet seen the latest probe is not done with it. */
		done = done && st.done && st.id == d->probe_id;
		sum.wanted += st.wanted;
		sum.started += st.started;
		sum.connected += st.connected;
		sum.ok += st.ok;
		sum.failed += st.failed;
		sum.bytes_verified += st.bytes_verified;
		sum.mismatches += st.mismatches;
		sum.resolve_waits += st.resolve_waits;
		for (unsigned int r = 0; r < RTE_DIM(st.closed_by); r++)
			sum.closed_by[r] += st.closed_by[r];
	}
	*data = json_pack("{s:i, s:b, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:i}", "id",
			  (int)d->probe_id, "done", done, "wanted", (int)sum.wanted, "started",
			  (int)sum.started, "connected", (int)sum.connected, "ok", (int)sum.ok,
			  "failed", (int)sum.failed, "bytes_verified",
			  (json_int_t)sum.bytes_verified, "mismatches", (json_int_t)sum.mismatches,
			  "resolve_waits", (int)sum.resolve_waits);
	json_object_set_new(*data, "failed_by",
			    json_pack("{s:i, s:i, s:i, s:i, s:i}", "incomplete",
				      (int)sum.closed_by[QD_TCP_CLOSE_NORMAL], "reset",
				      (int)sum.closed_by[QD_TCP_CLOSE_RESET], "abort",
				      (int)sum.closed_by[QD_TCP_CLOSE_ABORT], "timeout",
				      (int)sum.closed_by[QD_TCP_CLOSE_TIMEOUT], "refused",
				      (int)sum.closed_by[QD_TCP_CLOSE_REFUSED]));
	return 0;
}
