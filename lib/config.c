/*
 * Config file parser for qdispatchd.
 *
 * The format is deliberately small (one `key = value` per line) so that an
 * operator can diff two files and a parser can say exactly which line is
 * wrong. Every key is described once in a table below: its name, whether it
 * may repeat, and how its value is parsed. Anything not in the table is
 * refused, so a typo never silently falls back to a default.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define QD_CONFIG_FILE_MAX (1u << 20)

struct parse_ctx {
	struct qd_config *cfg;
	const char *origin;
	unsigned int line;
	char *err;
	size_t err_len;
};

typedef int (*key_parser_fn)(struct parse_ctx *ctx, const char *value);

struct key_desc {
	const char *name;
	key_parser_fn parse;
	bool repeatable;
};

static int
fail(struct parse_ctx *ctx, const char *fmt, ...)
{
	int n = snprintf(ctx->err, ctx->err_len, "%s:%u: ", ctx->origin, ctx->line);
	if (n < 0 || (size_t)n >= ctx->err_len)
		return -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->err + n, ctx->err_len - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Parse an unsigned decimal in [min, max]; refuses signs, spaces, overflow. */
static int
parse_u64(struct parse_ctx *ctx, const char *key, const char *value, uint64_t min, uint64_t max,
	  uint64_t *out)
{
	if (!isdigit((unsigned char)value[0]))
		return fail(ctx, "%s: '%s' is not a number", key, value);
	errno = 0;
	char *end = NULL;
	unsigned long long v = strtoull(value, &end, 10);
	if (errno != 0 || *end != '\0')
		return fail(ctx, "%s: '%s' is not a number", key, value);
	if (v < min || v > max)
		return fail(ctx, "%s: %llu is out of range [%" PRIu64 ", %" PRIu64 "]", key, v,
			    min, max);
	*out = v;
	return 0;
}

#define DEFINE_UINT_KEY(fn, field, type, key, min, max)                                   \
	static int fn(struct parse_ctx *ctx, const char *value)                           \
	{                                                                                 \
		uint64_t v;                                                               \
		int rc = parse_u64(ctx, key, value, (min), (max), &v);                    \
		if (rc == 0)                                                              \
			ctx->cfg->field = (type)v;                                        \
		return rc;                                                                \
	}

static int
parse_bool(struct parse_ctx *ctx, const char *key, const char *value, bool *out)
{
	static const char *const yes[] = {"on", "yes", "true", "1"};
	static const char *const no[] = {"off", "no", "false", "0"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return fail(ctx, "%s: '%s' is not on/off", key, value);
}

static int
parse_ipv4(struct parse_ctx *ctx, const char *key, const char *value, uint32_t *out_be)
{
	struct in_addr a;
	if (inet_pton(AF_INET, value, &a) != 1)
		return fail(ctx, "%s: '%s' is not an IPv4 address", key, value);
	if (a.s_addr == 0 || a.s_addr == 0xffffffffu || (ntohl(a.s_addr) >> 28) == 0xe)
		return fail(ctx, "%s: '%s' is not a unicast address", key, value);
	*out_be = a.s_addr;
	return 0;
}

static int
parse_string(struct parse_ctx *ctx, const char *key, const char *value, char *out, size_t cap)
{
	size_t n = strlen(value);
	if (n == 0)
		return fail(ctx, "%s: empty value", key);
	if (n >= cap)
		return fail(ctx, "%s: value longer than %zu bytes", key, cap - 1);
	memcpy(out, value, n + 1);
	return 0;
}

static int
key_port_device(struct parse_ctx *ctx, const char *value)
{
	return parse_string(ctx, "port.device", value, ctx->cfg->port_device,
			    sizeof(ctx->cfg->port_device));
}

static int
key_port_ip(struct parse_ctx *ctx, const char *value)
{
	char buf[64];
	const char *slash = strchr(value, '/');
	if (slash == NULL)
		return fail(ctx, "port.ip: '%s' needs a prefix length (a.b.c.d/len)", value);
	size_t n = (size_t)(slash - value);
	if (n >= sizeof(buf))
		return fail(ctx, "port.ip: '%s' is not an IPv4 address", value);
	memcpy(buf, value, n);
	buf[n] = '\0';
	uint64_t len;
	int rc = parse_ipv4(ctx, "port.ip", buf, &ctx->cfg->port_ip.addr_be);
	if (rc == 0)
		rc = parse_u64(ctx, "port.ip prefix", slash + 1, 1, 32, &len);
	if (rc == 0)
		ctx->cfg->port_ip.prefix_len = (uint8_t)len;
	return rc;
}

static int
key_port_gateway(struct parse_ctx *ctx, const char *value)
{
	return parse_ipv4(ctx, "port.gateway", value, &ctx->cfg->port_gateway_be);
}

DEFINE_UINT_KEY(key_port_mtu, port_mtu, uint16_t, "port.mtu", 576, 9000)
DEFINE_UINT_KEY(key_port_rx_desc, port_rx_desc, uint16_t, "port.rx_desc", 64, 4096)
DEFINE_UINT_KEY(key_port_tx_desc, port_tx_desc, uint16_t, "port.tx_desc", 64, 4096)
DEFINE_UINT_KEY(key_listen_port, listen_port, uint16_t, "listen.port", 1, 65535)
DEFINE_UINT_KEY(key_workers, workers, unsigned int, "lcore.workers", 1, QD_CONFIG_WORKERS_MAX)
DEFINE_UINT_KEY(key_idle_after, idle_after_us, uint32_t, "lcore.idle_after_us", 1, 10000000)
DEFINE_UINT_KEY(key_idle_sleep_max, idle_sleep_max_us, uint32_t, "lcore.idle_sleep_max_us", 1,
		100000)
DEFINE_UINT_KEY(key_burst, burst, uint16_t, "lcore.burst", 1, 64)
DEFINE_UINT_KEY(key_memory_mb, memory_mb, uint32_t, "eal.memory_mb", 64, 1048576)
DEFINE_UINT_KEY(key_mbufs, mbufs, uint32_t, "eal.mbufs", 511, 4194303)
DEFINE_UINT_KEY(key_neigh_capacity, neigh_capacity, uint32_t, "neigh.capacity", 16, 65536)
DEFINE_UINT_KEY(key_neigh_reachable, neigh_reachable_s, uint32_t, "neigh.reachable_s", 1, 86400)
DEFINE_UINT_KEY(key_neigh_retry, neigh_retry_ms, uint32_t, "neigh.retry_ms", 10, 60000)
DEFINE_UINT_KEY(key_neigh_probes, neigh_probes, uint32_t, "neigh.probes", 1, 100)
DEFINE_UINT_KEY(key_garp_interval, garp_interval_s, uint32_t, "garp.interval_s", 0, 86400)
DEFINE_UINT_KEY(key_control_clients, control_clients_max, uint32_t, "control.clients_max", 1, 1024)

DEFINE_UINT_KEY(key_tcp_max_conn, tcp_max_connections, uint32_t, "tcp.max_connections", 16,
		4194304)
DEFINE_UINT_KEY(key_tcp_syn_backlog, tcp_syn_backlog, uint32_t, "tcp.syn_backlog", 0, 1048576)
DEFINE_UINT_KEY(key_tcp_tw_max, tcp_time_wait_max, uint32_t, "tcp.time_wait_max", 0, 4194304)
DEFINE_UINT_KEY(key_tcp_tw_ms, tcp_time_wait_ms, uint32_t, "tcp.time_wait_ms", 1, 240000)
DEFINE_UINT_KEY(key_tcp_fw2_ms, tcp_fin_wait2_ms, uint32_t, "tcp.fin_wait2_ms", 1, 3600000)
DEFINE_UINT_KEY(key_tcp_sndbuf, tcp_sndbuf, uint32_t, "tcp.sndbuf_bytes", 4096, 16777216)
DEFINE_UINT_KEY(key_tcp_rcvbuf, tcp_rcvbuf, uint32_t, "tcp.rcvbuf_bytes", 4096, 16777216)
DEFINE_UINT_KEY(key_tcp_ka_idle, tcp_keepalive_idle_s, uint32_t, "tcp.keepalive_idle_s", 0, 86400)
DEFINE_UINT_KEY(key_tcp_ka_intvl, tcp_keepalive_intvl_s, uint32_t, "tcp.keepalive_intvl_s", 1,
		3600)
DEFINE_UINT_KEY(key_tcp_ka_probes, tcp_keepalive_probes, uint32_t, "tcp.keepalive_probes", 1,
		100)
DEFINE_UINT_KEY(key_tcp_ca, tcp_challenge_ack_per_s, uint32_t, "tcp.challenge_ack_per_s", 1,
		1000000)
DEFINE_UINT_KEY(key_tcp_port_min, tcp_local_port_min, uint16_t, "tcp.local_port_min", 1024, 65535)
DEFINE_UINT_KEY(key_tcp_port_max, tcp_local_port_max, uint16_t, "tcp.local_port_max", 1024, 65535)
DEFINE_UINT_KEY(key_service_echo, service_echo_port, uint16_t, "service.echo_port", 1, 65535)
DEFINE_UINT_KEY(key_service_discard, service_discard_port, uint16_t, "service.discard_port", 1,
		65535)

DEFINE_UINT_KEY(key_http_max_header, http_max_header_bytes, uint32_t, "http.max_header_bytes",
		1024, 65536)
DEFINE_UINT_KEY(key_http_max_headers, http_max_headers, uint32_t, "http.max_headers", 8, 1000)
DEFINE_UINT_KEY(key_http_max_body, http_max_body_bytes, uint64_t, "http.max_body_bytes", 0,
		1ull << 40)
DEFINE_UINT_KEY(key_http_header_to, http_header_timeout_ms, uint32_t, "http.header_timeout_ms",
		100, 3600000)
DEFINE_UINT_KEY(key_http_ka_to, http_keepalive_timeout_ms, uint32_t, "http.keepalive_timeout_ms",
		100, 86400000)
DEFINE_UINT_KEY(key_http_io_to, http_io_timeout_ms, uint32_t, "http.io_timeout_ms", 100,
		86400000)
DEFINE_UINT_KEY(key_proxy_clients, proxy_max_clients, uint32_t, "proxy.max_clients", 1, 4194304)
DEFINE_UINT_KEY(key_proxy_backends, proxy_max_backends, uint32_t, "proxy.max_backends", 1,
		4194304)
DEFINE_UINT_KEY(key_proxy_heads, proxy_head_buffers, uint32_t, "proxy.head_buffers", 16, 1048576)
DEFINE_UINT_KEY(key_up_connect_to, upstream_connect_timeout_ms, uint32_t,
		"upstream.connect_timeout_ms", 10, 600000)
DEFINE_UINT_KEY(key_up_response_to, upstream_response_timeout_ms, uint32_t,
		"upstream.response_timeout_ms", 100, 86400000)
DEFINE_UINT_KEY(key_up_pool_idle, upstream_pool_idle_max, uint32_t, "upstream.pool_idle_max", 0,
		65536)
DEFINE_UINT_KEY(key_up_pool_idle_to, upstream_pool_idle_timeout_ms, uint32_t,
		"upstream.pool_idle_timeout_ms", 100, 86400000)
DEFINE_UINT_KEY(key_up_down, upstream_down_ms, uint32_t, "upstream.down_ms", 0, 3600000)
DEFINE_UINT_KEY(key_route_max, route_max, uint32_t, "route.max", 64, 16777216)
DEFINE_UINT_KEY(key_route_idle, route_idle_timeout_s, uint32_t, "route.idle_timeout_s", 1,
		604800)
DEFINE_UINT_KEY(key_route_linger, route_linger_s, uint32_t, "route.linger_s", 0, 86400)
DEFINE_UINT_KEY(key_route_disc_max, route_discovery_max, uint32_t, "route.discovery_max", 0, 1024)
DEFINE_UINT_KEY(key_route_disc_to, route_discovery_timeout_ms, uint32_t,
		"route.discovery_timeout_ms", 10, 60000)
DEFINE_UINT_KEY(key_route_verify, route_verify_after_s, uint32_t, "route.verify_after_s", 0,
		86400)
DEFINE_UINT_KEY(key_adm_queued_max, admission_queued_max, uint32_t, "admission.queued_max", 1,
		1048576)
DEFINE_UINT_KEY(key_adm_queue_to, admission_queue_timeout_ms, uint32_t,
		"admission.queue_timeout_ms", 100, 604800000)
DEFINE_UINT_KEY(key_adm_poll_wait, admission_poll_wait_ms, uint32_t, "admission.poll_wait_ms", 0,
		60000)
DEFINE_UINT_KEY(key_adm_client_to, admission_client_timeout_ms, uint32_t,
		"admission.client_timeout_ms", 1000, 86400000)
DEFINE_UINT_KEY(key_adm_stmt_max, admission_max_statement_bytes, uint32_t,
		"admission.max_statement_bytes", 1024, 67108864)
DEFINE_UINT_KEY(key_adm_batch, admission_batch, uint32_t, "admission.batch", 0, 1024)
DEFINE_UINT_KEY(key_health_interval, health_interval_ms, uint32_t, "health.interval_ms", 0,
		3600000)
DEFINE_UINT_KEY(key_health_timeout, health_timeout_ms, uint32_t, "health.timeout_ms", 10, 600000)
DEFINE_UINT_KEY(key_state_snap, state_snapshot_every, uint32_t, "state.snapshot_every", 10,
		100000000)
DEFINE_UINT_KEY(key_health_rise, health_rise, uint32_t, "health.rise", 1, 100)
DEFINE_UINT_KEY(key_health_fall, health_fall, uint32_t, "health.fall", 1, 100)

static int
key_adm_groups(struct parse_ctx *ctx, const char *value)
{
	size_t n = strlen(value);
	if (n == 0 || n >= sizeof(ctx->cfg->admission_resource_groups))
		return fail(ctx, "admission.resource_groups: path must be 1..%zu characters",
			    sizeof(ctx->cfg->admission_resource_groups) - 1);
	memcpy(ctx->cfg->admission_resource_groups, value, n + 1);
	return 0;
}

DEFINE_UINT_KEY(key_peer_heartbeat, peer_heartbeat_ms, uint32_t, "peer.heartbeat_ms", 10, 10000)
DEFINE_UINT_KEY(key_peer_dead_after, peer_dead_after_ms, uint32_t, "peer.dead_after_ms", 30,
		600000)
DEFINE_UINT_KEY(key_peer_orphan_hold, peer_orphan_hold_ms, uint32_t, "peer.orphan_hold_ms", 1000,
		86400000)
DEFINE_UINT_KEY(key_peer_max_skew, peer_max_skew_ms, uint32_t, "peer.max_skew_ms", 100, 3600000)
DEFINE_UINT_KEY(key_peer_min_gap, peer_min_gap_ms, uint32_t, "peer.min_gap_ms", 0, 10000)
DEFINE_UINT_KEY(key_peer_vip_drain, peer_vip_drain_ms, uint32_t, "peer.vip_drain_ms", 0, 3600000)
DEFINE_UINT_KEY(key_peer_adopt, peer_adopt_s, uint32_t, "peer.adopt_connections_s", 0, 3600)

/* "ADDR:PORT" into address and port; <what> names the key in errors. */
static int
parse_addr_port(struct parse_ctx *ctx, const char *what, const char *value, size_t len,
		uint32_t *addr_be, uint16_t *port)
{
	char addr[64];
	if (len >= sizeof(addr))
		return fail(ctx, "%s: '%s' must be address:port", what, value);
	memcpy(addr, value, len);
	addr[len] = '\0';
	char *colon = strrchr(addr, ':');
	if (colon == NULL)
		return fail(ctx, "%s: '%s' must be address:port", what, value);
	*colon = '\0';
	uint64_t p;
	int rc = parse_ipv4(ctx, what, addr, addr_be);
	if (rc == 0)
		rc = parse_u64(ctx, what, colon + 1, 1, 65535, &p);
	if (rc == 0)
		*port = (uint16_t)p;
	return rc;
}

static int
key_peer_id(struct parse_ctx *ctx, const char *value)
{
	uint64_t id;
	int rc = parse_u64(ctx, "peer.id", value, 1, 255, &id);
	if (rc == 0)
		ctx->cfg->peer_id = (uint16_t)id;
	return rc;
}

static int
key_peer_listen(struct parse_ctx *ctx, const char *value)
{
	return parse_addr_port(ctx, "peer.listen", value, strlen(value), &ctx->cfg->peer_listen_be,
			       &ctx->cfg->peer_listen_port);
}

static int
key_peer_key_file(struct parse_ctx *ctx, const char *value)
{
	size_t n = strlen(value);
	if (n == 0 || n >= sizeof(ctx->cfg->peer_key_file) || value[0] != '/')
		return fail(ctx, "peer.key_file: must be an absolute path of 1..%zu characters",
			    sizeof(ctx->cfg->peer_key_file) - 1);
	memcpy(ctx->cfg->peer_key_file, value, n + 1);
	return 0;
}

/* peer = ID ADDR:PORT [vip=A[,B...]] */
static int
key_peer(struct parse_ctx *ctx, const char *value)
{
	struct qd_config *cfg = ctx->cfg;
	struct qd_config_peer pe = {0};
	const char *usage = "peer: '%s' must be ID ADDR:PORT [vip=A[,B...]]";
	char *end;
	unsigned long id = strtoul(value, &end, 10);
	if (end == value || (*end != ' ' && *end != '\t') || id < 1 || id > 255)
		return fail(ctx, usage, value);
	pe.id = (uint16_t)id;
	const char *a = end + strspn(end, " \t");
	const char *a_end = a + strcspn(a, " \t");
	int rc = parse_addr_port(ctx, "peer", a, (size_t)(a_end - a), &pe.addr_be, &pe.port);
	if (rc != 0)
		return rc;
	const char *rest = a_end + strspn(a_end, " \t");
	if (*rest != '\0') {
		if (strncmp(rest, "vip=", 4) != 0)
			return fail(ctx, usage, value);
		char list[256];
		size_t n = strlen(rest + 4);
		if (n == 0 || n >= sizeof(list))
			return fail(ctx, usage, value);
		memcpy(list, rest + 4, n + 1);
		char *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
			if (pe.vips_count == QD_CONFIG_PEER_VIPS_MAX)
				return fail(ctx, "peer %u: more than %d vips", pe.id,
					    QD_CONFIG_PEER_VIPS_MAX);
			rc = parse_ipv4(ctx, "peer vip", t, &pe.vips_be[pe.vips_count++]);
			if (rc != 0)
				return rc;
		}
	}
	if (cfg->peers_count == QD_CONFIG_PEERS_MAX)
		return fail(ctx, "peer: more than %d other peers", QD_CONFIG_PEERS_MAX);
	for (unsigned int i = 0; i < cfg->peers_count; i++) {
		if (cfg->peers[i].id == pe.id)
			return fail(ctx, "peer: id %u is listed twice", pe.id);
	}
	cfg->peers[cfg->peers_count++] = pe;
	return 0;
}

static int
key_state_dir(struct parse_ctx *ctx, const char *value)
{
	size_t n = strlen(value);
	if (n == 0 || n >= sizeof(ctx->cfg->state_dir) || value[0] != '/')
		return fail(ctx, "state.dir: must be an absolute path of 1..%zu characters",
			    sizeof(ctx->cfg->state_dir) - 1);
	memcpy(ctx->cfg->state_dir, value, n + 1);
	return 0;
}

static int
key_placement(struct parse_ctx *ctx, const char *value)
{
	static const char *const names[] = {"least_loaded", "round_robin", "client_ip"};
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(value, names[i]) == 0) {
			ctx->cfg->placement_policy = (enum qd_placement_policy)i;
			return 0;
		}
	}
	return fail(ctx, "placement.policy: '%s' is not one of least_loaded round_robin client_ip",
		    value);
}

static int
key_http_xff(struct parse_ctx *ctx, const char *value)
{
	return parse_bool(ctx, "http.forwarded_for", value, &ctx->cfg->http_forwarded_for);
}

static int
key_vip_claim_at_start(struct parse_ctx *ctx, const char *value)
{
	return parse_bool(ctx, "vip.claim_at_start", value, &ctx->cfg->vip_claim_at_start);
}

static int
key_tcp_syn_cookies(struct parse_ctx *ctx, const char *value)
{
	return parse_bool(ctx, "tcp.syn_cookies", value, &ctx->cfg->tcp_syn_cookies);
}

/* Fault injection (dataplane/fault.h): probabilities in ppm, times in microseconds. */
#define DEFINE_FAULT_DIR_KEYS(d)                                                          \
	DEFINE_UINT_KEY(key_fault_##d##_loss, fault_##d.loss_ppm, uint32_t,               \
			"fault." #d "_loss_ppm", 0, 1000000)                              \
	DEFINE_UINT_KEY(key_fault_##d##_dup, fault_##d.dup_ppm, uint32_t,                 \
			"fault." #d "_dup_ppm", 0, 1000000)                               \
	DEFINE_UINT_KEY(key_fault_##d##_reorder, fault_##d.reorder_ppm, uint32_t,         \
			"fault." #d "_reorder_ppm", 0, 1000000)                           \
	DEFINE_UINT_KEY(key_fault_##d##_delay, fault_##d.delay_us, uint32_t,              \
			"fault." #d "_delay_us", 0, 1000000)                              \
	DEFINE_UINT_KEY(key_fault_##d##_jitter, fault_##d.jitter_us, uint32_t,            \
			"fault." #d "_jitter_us", 0, 1000000)
DEFINE_FAULT_DIR_KEYS(rx)
DEFINE_FAULT_DIR_KEYS(tx)
DEFINE_UINT_KEY(key_fault_seed, fault_seed, uint64_t, "fault.seed", 0, UINT64_MAX)
DEFINE_UINT_KEY(key_fault_reorder_gap, fault_reorder_gap, uint32_t, "fault.reorder_gap", 1, 64)
DEFINE_UINT_KEY(key_fault_reorder_hold, fault_reorder_hold_us, uint32_t, "fault.reorder_hold_us",
		1, 1000000)

static int
key_vip(struct parse_ctx *ctx, const char *value)
{
	struct qd_config *cfg = ctx->cfg;
	uint32_t a;
	int rc = parse_ipv4(ctx, "vip", value, &a);
	if (rc != 0)
		return rc;
	if (cfg->vips_count == QD_CONFIG_VIPS_MAX)
		return fail(ctx, "vip: more than %d virtual IPs", QD_CONFIG_VIPS_MAX);
	for (unsigned int i = 0; i < cfg->vips_count; i++) {
		if (cfg->vips_be[i] == a)
			return fail(ctx, "vip: %s is listed twice", value);
	}
	cfg->vips_be[cfg->vips_count++] = a;
	return 0;
}

static int
key_coordinator(struct parse_ctx *ctx, const char *value)
{
	struct qd_config *cfg = ctx->cfg;
	char addr[64];
	/* "address:port" then optional "weight=N", blank separated */
	const char *end = value + strcspn(value, " \t");
	const char *rest = end + strspn(end, " \t");
	size_t alen = (size_t)(end - value);
	if (alen >= sizeof(addr))
		return fail(ctx, "coordinator: '%s' must be address:port [weight=N]", value);
	memcpy(addr, value, alen);
	addr[alen] = '\0';
	char *colon = strrchr(addr, ':');
	if (colon == NULL)
		return fail(ctx, "coordinator: '%s' must be address:port [weight=N]", value);
	*colon = '\0';
	struct qd_config_endpoint ep = {.weight = 1};
	uint64_t port, weight = 1;
	int rc = parse_ipv4(ctx, "coordinator", addr, &ep.addr_be);
	if (rc == 0)
		rc = parse_u64(ctx, "coordinator port", colon + 1, 1, 65535, &port);
	if (rc == 0 && *rest != '\0') {
		if (strncmp(rest, "weight=", 7) != 0)
			return fail(ctx, "coordinator: '%s': after address:port only weight=N may follow",
				    value);
		rc = parse_u64(ctx, "coordinator weight", rest + 7, 1, 1000, &weight);
	}
	if (rc != 0)
		return rc;
	ep.port = (uint16_t)port;
	ep.weight = (uint16_t)weight;
	if (cfg->coordinators_count == QD_CONFIG_COORDINATORS_MAX)
		return fail(ctx, "coordinator: more than %d coordinators",
			    QD_CONFIG_COORDINATORS_MAX);
	for (unsigned int i = 0; i < cfg->coordinators_count; i++) {
		if (cfg->coordinators[i].addr_be == ep.addr_be && cfg->coordinators[i].port == ep.port)
			return fail(ctx, "coordinator: %s is listed twice", value);
	}
	cfg->coordinators[cfg->coordinators_count++] = ep;
	return 0;
}

/* A cpu list as EAL's -l takes it (0-2, 0,2,3) or an lcore map as --lcores takes it
 * (0@0,(1,2)@1: several lcores on one cpu); nothing else reaches EAL's command line. */
static int
key_lcore_list(struct parse_ctx *ctx, const char *value)
{
	for (const char *p = value; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p) && strchr(",-@()", *p) == NULL)
			return fail(ctx, "lcore.list: '%s' is not a cpu list like 0-2 or an lcore "
					 "map like 0@0,(1,2)@1", value);
	}
	return parse_string(ctx, "lcore.list", value, ctx->cfg->lcore_list,
			    sizeof(ctx->cfg->lcore_list));
}

static int
key_idle(struct parse_ctx *ctx, const char *value)
{
	return parse_bool(ctx, "lcore.idle", value, &ctx->cfg->idle);
}

static int
key_hugepages(struct parse_ctx *ctx, const char *value)
{
	if (strcmp(value, "auto") == 0)
		ctx->cfg->hugepages = QD_HUGEPAGES_AUTO;
	else if (strcmp(value, "on") == 0)
		ctx->cfg->hugepages = QD_HUGEPAGES_ON;
	else if (strcmp(value, "off") == 0)
		ctx->cfg->hugepages = QD_HUGEPAGES_OFF;
	else
		return fail(ctx, "eal.hugepages: '%s' is not auto, on or off", value);
	return 0;
}

static int
key_control_socket(struct parse_ctx *ctx, const char *value)
{
	if (value[0] != '/')
		return fail(ctx, "control.socket: '%s' is not an absolute path", value);
	/* sun_path holds 108 bytes including the terminator. */
	if (strlen(value) >= 108)
		return fail(ctx, "control.socket: path longer than 107 bytes");
	return parse_string(ctx, "control.socket", value, ctx->cfg->control_socket,
			    sizeof(ctx->cfg->control_socket));
}

static int
key_control_mode(struct parse_ctx *ctx, const char *value)
{
	char *end = NULL;
	if (value[0] != '0')
		return fail(ctx, "control.mode: '%s' must be octal with a leading 0, e.g. 0600",
			    value);
	errno = 0;
	unsigned long m = strtoul(value, &end, 8);
	if (errno != 0 || *end != '\0' || m > 0777)
		return fail(ctx, "control.mode: '%s' is not a permission mode (0000-0777)", value);
	if ((m & 0002) != 0)
		return fail(ctx, "control.mode: %s would let any user write the socket", value);
	ctx->cfg->control_mode = (uint32_t)m;
	return 0;
}

static int
key_control_group(struct parse_ctx *ctx, const char *value)
{
	return parse_string(ctx, "control.group", value, ctx->cfg->control_group,
			    sizeof(ctx->cfg->control_group));
}

static const char *const log_level_names[] = {
	NULL, "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

const char *
qd_config_log_level_name(unsigned int level)
{
	if (level == 0 || level >= sizeof(log_level_names) / sizeof(log_level_names[0]))
		return "?";
	return log_level_names[level];
}

static int
key_log_level(struct parse_ctx *ctx, const char *value)
{
	for (unsigned int i = 1; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcmp(value, log_level_names[i]) == 0) {
			ctx->cfg->log_level = i;
			return 0;
		}
	}
	return fail(ctx, "log.level: '%s' is not one of emerg alert crit error warning notice "
			 "info debug", value);
}

static const struct key_desc keys[] = {
	{"port.device", key_port_device, false},
	{"port.ip", key_port_ip, false},
	{"port.gateway", key_port_gateway, false},
	{"port.mtu", key_port_mtu, false},
	{"port.rx_desc", key_port_rx_desc, false},
	{"port.tx_desc", key_port_tx_desc, false},
	{"vip", key_vip, true},
	{"vip.claim_at_start", key_vip_claim_at_start, false},
	{"listen.port", key_listen_port, false},
	{"coordinator", key_coordinator, true},
	{"lcore.workers", key_workers, false},
	{"lcore.list", key_lcore_list, false},
	{"lcore.idle", key_idle, false},
	{"lcore.idle_after_us", key_idle_after, false},
	{"lcore.idle_sleep_max_us", key_idle_sleep_max, false},
	{"lcore.burst", key_burst, false},
	{"eal.hugepages", key_hugepages, false},
	{"eal.memory_mb", key_memory_mb, false},
	{"eal.mbufs", key_mbufs, false},
	{"neigh.capacity", key_neigh_capacity, false},
	{"neigh.reachable_s", key_neigh_reachable, false},
	{"neigh.retry_ms", key_neigh_retry, false},
	{"neigh.probes", key_neigh_probes, false},
	{"garp.interval_s", key_garp_interval, false},
	{"control.socket", key_control_socket, false},
	{"control.mode", key_control_mode, false},
	{"control.group", key_control_group, false},
	{"control.clients_max", key_control_clients, false},
	{"log.level", key_log_level, false},
	{"tcp.max_connections", key_tcp_max_conn, false},
	{"tcp.syn_backlog", key_tcp_syn_backlog, false},
	{"tcp.syn_cookies", key_tcp_syn_cookies, false},
	{"tcp.time_wait_max", key_tcp_tw_max, false},
	{"tcp.time_wait_ms", key_tcp_tw_ms, false},
	{"tcp.fin_wait2_ms", key_tcp_fw2_ms, false},
	{"tcp.sndbuf_bytes", key_tcp_sndbuf, false},
	{"tcp.rcvbuf_bytes", key_tcp_rcvbuf, false},
	{"tcp.keepalive_idle_s", key_tcp_ka_idle, false},
	{"tcp.keepalive_intvl_s", key_tcp_ka_intvl, false},
	{"tcp.keepalive_probes", key_tcp_ka_probes, false},
	{"tcp.challenge_ack_per_s", key_tcp_ca, false},
	{"tcp.local_port_min", key_tcp_port_min, false},
	{"tcp.local_port_max", key_tcp_port_max, false},
	{"http.max_header_bytes", key_http_max_header, false},
	{"http.max_headers", key_http_max_headers, false},
	{"http.max_body_bytes", key_http_max_body, false},
	{"http.header_timeout_ms", key_http_header_to, false},
	{"http.keepalive_timeout_ms", key_http_ka_to, false},
	{"http.forwarded_for", key_http_xff, false},
	{"http.io_timeout_ms", key_http_io_to, false},
	{"proxy.max_clients", key_proxy_clients, false},
	{"proxy.max_backends", key_proxy_backends, false},
	{"proxy.head_buffers", key_proxy_heads, false},
	{"upstream.connect_timeout_ms", key_up_connect_to, false},
	{"upstream.response_timeout_ms", key_up_response_to, false},
	{"upstream.pool_idle_max", key_up_pool_idle, false},
	{"upstream.pool_idle_timeout_ms", key_up_pool_idle_to, false},
	{"upstream.down_ms", key_up_down, false},
	{"route.max", key_route_max, false},
	{"route.idle_timeout_s", key_route_idle, false},
	{"route.linger_s", key_route_linger, false},
	{"route.discovery_max", key_route_disc_max, false},
	{"route.discovery_timeout_ms", key_route_disc_to, false},
	{"route.verify_after_s", key_route_verify, false},
	{"admission.resource_groups", key_adm_groups, false},
	{"admission.queued_max", key_adm_queued_max, false},
	{"admission.queue_timeout_ms", key_adm_queue_to, false},
	{"admission.poll_wait_ms", key_adm_poll_wait, false},
	{"admission.client_timeout_ms", key_adm_client_to, false},
	{"admission.max_statement_bytes", key_adm_stmt_max, false},
	{"admission.batch", key_adm_batch, false},
	{"health.interval_ms", key_health_interval, false},
	{"health.timeout_ms", key_health_timeout, false},
	{"health.rise", key_health_rise, false},
	{"health.fall", key_health_fall, false},
	{"placement.policy", key_placement, false},
	{"state.dir", key_state_dir, false},
	{"peer", key_peer, true},
	{"peer.id", key_peer_id, false},
	{"peer.listen", key_peer_listen, false},
	{"peer.key_file", key_peer_key_file, false},
	{"peer.heartbeat_ms", key_peer_heartbeat, false},
	{"peer.dead_after_ms", key_peer_dead_after, false},
	{"peer.orphan_hold_ms", key_peer_orphan_hold, false},
	{"peer.max_skew_ms", key_peer_max_skew, false},
	{"peer.min_gap_ms", key_peer_min_gap, false},
	{"peer.vip_drain_ms", key_peer_vip_drain, false},
	{"peer.adopt_connections_s", key_peer_adopt, false},
	{"state.snapshot_every", key_state_snap, false},
	{"service.echo_port", key_service_echo, false},
	{"service.discard_port", key_service_discard, false},
	{"fault.rx_loss_ppm", key_fault_rx_loss, false},
	{"fault.rx_dup_ppm", key_fault_rx_dup, false},
	{"fault.rx_reorder_ppm", key_fault_rx_reorder, false},
	{"fault.rx_delay_us", key_fault_rx_delay, false},
	{"fault.rx_jitter_us", key_fault_rx_jitter, false},
	{"fault.tx_loss_ppm", key_fault_tx_loss, false},
	{"fault.tx_dup_ppm", key_fault_tx_dup, false},
	{"fault.tx_reorder_ppm", key_fault_tx_reorder, false},
	{"fault.tx_delay_us", key_fault_tx_delay, false},
	{"fault.tx_jitter_us", key_fault_tx_jitter, false},
	{"fault.seed", key_fault_seed, false},
	{"fault.reorder_gap", key_fault_reorder_gap, false},
	{"fault.reorder_hold_us", key_fault_reorder_hold, false},
};

#define KEYS_COUNT (sizeof(keys) / sizeof(keys[0]))

void
qd_config_defaults(struct qd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->port_mtu = 1500;
	cfg->port_rx_desc = 1024;
	cfg->port_tx_desc = 1024;
	cfg->listen_port = 8080;
	cfg->workers = 1;
	cfg->idle = true;
	cfg->idle_after_us = 200;
	cfg->idle_sleep_max_us = 1000;
	cfg->burst = 32;
	cfg->hugepages = QD_HUGEPAGES_AUTO;
	cfg->memory_mb = 256;
	cfg->mbufs = 0; /* auto, from workers and ring sizes */
	cfg->neigh_capacity = 1024;
	cfg->neigh_reachable_s = 30;
	cfg->neigh_retry_ms = 1000;
	cfg->neigh_probes = 3;
	cfg->garp_interval_s = 10;
	cfg->vip_claim_at_start = true;
	snprintf(cfg->control_socket, sizeof(cfg->control_socket), "%s",
		 "/run/qdispatch/qdispatchd.sock");
	cfg->control_mode = 0600;
	cfg->control_clients_max = 16;
	cfg->log_level = 7; /* info */
	cfg->tcp_max_connections = 16384;
	cfg->tcp_syn_backlog = 1024;
	cfg->tcp_syn_cookies = true;
	cfg->tcp_time_wait_max = 4096;
	cfg->tcp_time_wait_ms = 30000;
	cfg->tcp_fin_wait2_ms = 60000;
	cfg->tcp_sndbuf = 256 * 1024;
	cfg->tcp_rcvbuf = 256 * 1024;
	cfg->tcp_keepalive_intvl_s = 10;
	cfg->tcp_keepalive_probes = 5;
	cfg->tcp_challenge_ack_per_s = 1000;
	cfg->tcp_local_port_min = 32768;
	cfg->tcp_local_port_max = 60999;
	cfg->http_max_header_bytes = 16384;
	cfg->http_max_headers = 100;
	cfg->http_max_body_bytes = 16ull << 20;
	cfg->http_header_timeout_ms = 10000;
	cfg->http_keepalive_timeout_ms = 60000;
	cfg->http_io_timeout_ms = 60000;
	cfg->proxy_head_buffers = 1024;
	cfg->upstream_connect_timeout_ms = 2000;
	cfg->upstream_response_timeout_ms = 300000;
	cfg->upstream_pool_idle_max = 64;
	cfg->upstream_pool_idle_timeout_ms = 30000;
	cfg->upstream_down_ms = 1000;
	cfg->route_max = 262144;
	cfg->route_idle_timeout_s = 600;
	cfg->route_discovery_max = 64;
	cfg->route_discovery_timeout_ms = 1000;
	cfg->route_verify_after_s = 30;
	cfg->route_linger_s = 60;
	cfg->admission_queued_max = 4096;
	cfg->admission_queue_timeout_ms = 300000;
	cfg->admission_poll_wait_ms = 1000;
	cfg->admission_client_timeout_ms = 60000;
	cfg->admission_max_statement_bytes = 1048576;
	cfg->admission_batch = 0;
	cfg->health_interval_ms = 500;
	cfg->health_timeout_ms = 1000;
	cfg->health_rise = 2;
	cfg->health_fall = 2;
	cfg->placement_policy = QD_PLACEMENT_LEAST_LOADED;
	cfg->state_snapshot_every = 200000;
	cfg->peer_heartbeat_ms = 100;
	cfg->peer_dead_after_ms = 500;
	cfg->peer_orphan_hold_ms = 300000; /* Trino's query.client.timeout default */
	cfg->peer_max_skew_ms = 5000;
	cfg->peer_min_gap_ms = 5;
	cfg->peer_vip_drain_ms = 10000;
	cfg->peer_adopt_s = 30;
	/* fault.*: all off (zeroed above); these two only matter once reordering is on. */
	cfg->fault_reorder_gap = 3;
	cfg->fault_reorder_hold_us = 1000;
}

static char *
trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static int
parse_line(struct parse_ctx *ctx, char *line, bool *seen)
{
	/* A '#' starts a comment anywhere: no value needs one. */
	char *hash = strchr(line, '#');
	if (hash != NULL)
		*hash = '\0';
	char *s = trim(line);
	if (*s == '\0')
		return 0;
	char *eq = strchr(s, '=');
	if (eq == NULL)
		return fail(ctx, "expected 'key = value', got '%s'", s);
	*eq = '\0';
	char *key = trim(s);
	char *value = trim(eq + 1);
	if (*key == '\0')
		return fail(ctx, "missing key before '='");
	for (size_t i = 0; i < KEYS_COUNT; i++) {
		if (strcmp(keys[i].name, key) != 0)
			continue;
		if (*value == '\0')
			return fail(ctx, "%s: missing value", key);
		if (!keys[i].repeatable && seen[i])
			return fail(ctx, "%s: set twice", key);
		seen[i] = true;
		return keys[i].parse(ctx, value);
	}
	return fail(ctx, "unknown key '%s'", key);
}

/* Rules that span keys; reported against the last line of the file. */
static int
check_whole(struct parse_ctx *ctx)
{
	struct qd_config *cfg = ctx->cfg;
	if (cfg->port_device[0] == '\0')
		return fail(ctx, "port.device is required");
	if (cfg->port_ip.addr_be == 0)
		return fail(ctx, "port.ip is required");
	if (cfg->vips_count == 0)
		return fail(ctx, "at least one vip is required");
	/* The same rules as the run-time VIP table (dataplane/vip_table.c, qd_vip_check):
	 * takeover announces a VIP with gratuitous ARP, which reaches the local link only. */
	uint8_t plen = cfg->port_ip.prefix_len;
	uint32_t mask = plen == 0 ? 0 : ~0u << (32 - plen);
	uint32_t port_h = ntohl(cfg->port_ip.addr_be);
	for (unsigned int i = 0; i < cfg->vips_count; i++) {
		uint32_t h = ntohl(cfg->vips_be[i]);
		struct in_addr a = {.s_addr = cfg->vips_be[i]};
		char addr[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &a, addr, sizeof(addr));
		if (cfg->vips_be[i] == cfg->port_ip.addr_be)
			return fail(ctx, "vip: a virtual IP may not equal port.ip");
		if ((h & mask) != (port_h & mask))
			return fail(ctx, "vip: %s is outside port.ip's subnet (/%u)", addr,
				    (unsigned int)plen);
		if (plen <= 30 && ((h & ~mask) == 0 || (h & ~mask) == ~mask))
			return fail(ctx, "vip: %s is the network or broadcast address of port.ip's "
				    "subnet", addr);
	}
	if (cfg->peers_count > 0 || cfg->peer_id != 0) {
		if (cfg->peer_id == 0)
			return fail(ctx, "peer lines need peer.id (this dispatcher's id)");
		if (cfg->peer_listen_port == 0)
			return fail(ctx, "peers need peer.listen (address:port of our peer messages)");
		if (cfg->peer_key_file[0] == '\0')
			return fail(ctx, "peers need peer.key_file (the shared key of peer messages)");
		if (cfg->peer_dead_after_ms <= 2 * cfg->peer_heartbeat_ms)
			return fail(ctx, "peer.dead_after_ms (%u) must exceed twice peer.heartbeat_ms (%u)",
				    cfg->peer_dead_after_ms, cfg->peer_heartbeat_ms);
		for (unsigned int i = 0; i < cfg->peers_count; i++) {
			if (cfg->peers[i].id == cfg->peer_id)
				return fail(ctx, "peer: id %u is this dispatcher's own peer.id",
					    cfg->peer_id);
		}
	}
	if (cfg->tcp_local_port_min > cfg->tcp_local_port_max)
		return fail(ctx, "tcp.local_port_min (%u) is above tcp.local_port_max (%u)",
			    cfg->tcp_local_port_min, cfg->tcp_local_port_max);
	/* Ports we listen on must lie outside the range our own connections use, whose
	 * replies are steered to the lcore that owns the port. */
	const struct {
		const char *key;
		uint16_t port;
	} listening[] = {
		{"listen.port", cfg->listen_port},
		{"service.echo_port", cfg->service_echo_port},
		{"service.discard_port", cfg->service_discard_port},
	};
	for (size_t i = 0; i < sizeof(listening) / sizeof(listening[0]); i++) {
		uint16_t p = listening[i].port;
		if (p != 0 && p >= cfg->tcp_local_port_min && p <= cfg->tcp_local_port_max)
			return fail(ctx, "%s (%u) lies inside tcp.local_port_min..max (%u-%u)",
				    listening[i].key, p, cfg->tcp_local_port_min,
				    cfg->tcp_local_port_max);
		for (size_t j = 0; j < i; j++) {
			if (p != 0 && p == listening[j].port)
				return fail(ctx, "%s and %s are both %u", listening[j].key,
					    listening[i].key, p);
		}
	}
	if (cfg->burst > cfg->port_rx_desc)
		return fail(ctx, "lcore.burst (%u) exceeds port.rx_desc (%u)", cfg->burst,
			    cfg->port_rx_desc);
	if ((cfg->neigh_capacity & (cfg->neigh_capacity - 1)) != 0)
		return fail(ctx, "neigh.capacity (%u) must be a power of two", cfg->neigh_capacity);
	/* Every worker needs room for a full RX ring plus a TX ring in flight. */
	uint64_t need = (uint64_t)cfg->workers * (cfg->port_rx_desc + cfg->port_tx_desc + 512);
	/* Fault injection that holds frames (delay, jitter, reorder) may pin up to
	 * QD_CONFIG_FAULT_HELD_MAX mbufs per worker and direction. */
	for (int i = 0; i < 2; i++) {
		const struct qd_config_fault_dir *fd = (i == 0 ? &cfg->fault_rx : &cfg->fault_tx);
		if (fd->delay_us != 0 || fd->jitter_us != 0 || fd->reorder_ppm != 0)
			need += (uint64_t)cfg->workers * QD_CONFIG_FAULT_HELD_MAX;
	}
	if (cfg->mbufs == 0) {
		/* Auto: the smallest 2^n - 1 (mempool's sweet spot) that covers the need. */
		uint64_t n = 4096;
		while (n - 1 < need)
			n *= 2;
		ctx->cfg->mbufs = (uint32_t)(n - 1);
	}
	if (cfg->mbufs < need)
		return fail(ctx, "eal.mbufs (%u) is below the %" PRIu64
				 " that %u worker(s) with these ring sizes need",
			    cfg->mbufs, need, cfg->workers);
	/* mbufs of ~2.4 KiB each with half again for the pool's own overhead under
	 * --no-huge (measured: 65535 mbufs need between 256 and 320 MiB, 131071 between
	 * 512 and 640), plus EAL's own and each worker's TCP tables. */
	uint64_t need_mb = (uint64_t)cfg->mbufs * 2432 * 3 / 2 / (1024 * 1024) + 64 +
			   16ull * cfg->workers;
	if (cfg->memory_mb < need_mb)
		return fail(ctx, "eal.memory_mb (%u) is too small for %u mbufs (need >= %" PRIu64
				 ")", cfg->memory_mb, cfg->mbufs, need_mb);
	return 0;
}

int
qd_config_parse(struct qd_config *cfg, const char *origin, const char *text, size_t len,
		char *err, size_t err_len)
{
	assert(cfg != NULL && origin != NULL && err != NULL && err_len > 0);
	struct parse_ctx ctx = {
		.cfg = cfg, .origin = origin, .line = 0, .err = err, .err_len = err_len,
	};
	bool seen[KEYS_COUNT] = {false};
	char line[QD_CONFIG_LINE_MAX];
	size_t pos = 0;
	err[0] = '\0';

	while (pos < len) {
		ctx.line++;
		if (ctx.line > QD_CONFIG_LINES_MAX)
			return fail(&ctx, "more than %d lines", QD_CONFIG_LINES_MAX);
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = (nl != NULL ? (size_t)(nl - (text + pos)) : len - pos);
		if (n >= sizeof(line))
			return fail(&ctx, "line longer than %d bytes", QD_CONFIG_LINE_MAX - 1);
		memcpy(line, text + pos, n);
		line[n] = '\0';
		if (memchr(line, '\0', n) != NULL)
			return fail(&ctx, "NUL byte in line");
		pos += n + (nl != NULL ? 1 : 0);
		int rc = parse_line(&ctx, line, seen);
		if (rc != 0)
			return rc;
	}
	if (ctx.line == 0)
		ctx.line = 1;
	return check_whole(&ctx);
}

int
qd_config_load(struct qd_config *cfg, const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
		return -errno;
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file", path);
		fclose(f);
		return -EINVAL;
	}
	if (st.st_size > QD_CONFIG_FILE_MAX) {
		snprintf(err, err_len, "%s: larger than %u bytes", path, QD_CONFIG_FILE_MAX);
		fclose(f);
		return -EFBIG;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		fclose(f);
		snprintf(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, (size_t)st.st_size, f);
	int rd_err = ferror(f);
	fclose(f);
	if (rd_err != 0) {
		free(buf);
		snprintf(err, err_len, "%s: read error", path);
		return -EIO;
	}
	int rc = qd_config_parse(cfg, path, buf, n, err, err_len);
	free(buf);
	return rc;
}
