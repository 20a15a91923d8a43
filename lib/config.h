/*
 * qdispatchd configuration: the in-memory form of the config file.
 *
 * The file format is documented in docs/configuration.md: one `key = value`
 * per line, `#` starts a comment, list keys repeat. Parsing is sans-I/O
 * beyond reading the file, so the unit tests feed it crafted text.
 */
#ifndef QD_CONFIG_H
#define QD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QD_CONFIG_VIPS_MAX 32
#define QD_CONFIG_COORDINATORS_MAX 64
#define QD_CONFIG_WORKERS_MAX 16
#define QD_CONFIG_LINE_MAX 1024
#define QD_CONFIG_LINES_MAX 4096
#define QD_CONFIG_STR_MAX 256
#define QD_CONFIG_ERR_MAX 512
#define QD_CONFIG_PEERS_MAX 15 /* other peers; 16 with self */
#define QD_CONFIG_PEER_VIPS_MAX 4

enum qd_hugepages_mode {
	QD_HUGEPAGES_AUTO = 0, /* use hugepages when some are free, else --no-huge */
	QD_HUGEPAGES_ON,       /* require them */
	QD_HUGEPAGES_OFF,      /* always --no-huge */
};

/* An IPv4 address in network byte order with its prefix length. */
struct qd_config_ipv4 {
	uint32_t addr_be;
	uint8_t prefix_len;
};

struct qd_config_endpoint {
	uint32_t addr_be;
	uint16_t port;
	uint16_t weight; /* placement weight, 1..1000 (default 1) */
};

/* Another dispatcher peer (`peer = ID ADDR:PORT [vip=A,B]`). */
struct qd_config_peer {
	uint16_t id;
	uint32_t addr_be;            /* its control address (kernel UDP) */
	uint16_t port;
	uint32_t vips_be[QD_CONFIG_PEER_VIPS_MAX]; /* the virtual IPs it owns */
	unsigned int vips_count;
};

enum qd_placement_policy {
	QD_PLACEMENT_LEAST_LOADED = 0, /* power of two choices on load / weight */
	QD_PLACEMENT_ROUND_ROBIN,      /* weighted round robin */
	QD_PLACEMENT_CLIENT_IP,        /* Maglev consistent hash of the client address */
};

/* Fault injection on one direction of the data plane's port I/O (dataplane/fault.h). */
struct qd_config_fault_dir {
	uint32_t loss_ppm;    /* parts per million: 10000 = 1% */
	uint32_t dup_ppm;
	uint32_t reorder_ppm;
	uint32_t delay_us;
	uint32_t jitter_us;
};

/* What the held-frame queues of fault injection can pin per worker and direction
 * (QD_FAULT_QUEUE_MAX + QD_FAULT_REORDER_MAX, checked in dataplane/fault.c); the
 * automatic mbuf count makes room for it. */
#define QD_CONFIG_FAULT_HELD_MAX 4160

struct qd_config {
	/* [port] the DPDK device that carries all traffic */
	char port_device[QD_CONFIG_STR_MAX];
	struct qd_config_ipv4 port_ip;   /* interface address, source of our own connections */
	uint32_t port_gateway_be;        /* 0 = none: everything is on-link */
	uint16_t port_mtu;
	uint16_t port_rx_desc;
	uint16_t port_tx_desc;

	/* client-facing virtual IPs */
	uint32_t vips_be[QD_CONFIG_VIPS_MAX];
	unsigned int vips_count;
	bool vip_claim_at_start;         /* the vips start ACTIVE (else ABSENT until taken) */
	uint16_t listen_port;

	struct qd_config_endpoint coordinators[QD_CONFIG_COORDINATORS_MAX];
	unsigned int coordinators_count;

	/* [lcore] */
	unsigned int workers;
	char lcore_list[QD_CONFIG_STR_MAX]; /* "" = derived: main on 0, workers on 1..N */
	bool idle;
	uint32_t idle_after_us;
	uint32_t idle_sleep_max_us;
	uint16_t burst;

	/* [eal] */
	enum qd_hugepages_mode hugepages;
	uint32_t memory_mb;
	uint32_t mbufs; /* 0 until parsed: auto */

	/* [neigh] */
	uint32_t neigh_capacity;
	uint32_t neigh_reachable_s;
	uint32_t neigh_retry_ms;
	uint32_t neigh_probes;
	uint32_t garp_interval_s; /* 0 = only at start-up */

	/* [control] */
	char control_socket[QD_CONFIG_STR_MAX];
	uint32_t control_mode;      /* permission bits of the socket file */
	char control_group[64];     /* "" = root only */
	uint32_t control_clients_max;

	/* [log] */
	unsigned int log_level; /* RTE_LOG_* numbering: 1 emerg .. 8 debug */

	/* [tcp] the user-space TCP stack, per worker lcore */
	uint32_t tcp_max_connections;
	uint32_t tcp_syn_backlog;
	bool tcp_syn_cookies;
	uint32_t tcp_time_wait_max;
	uint32_t tcp_time_wait_ms;
	uint32_t tcp_fin_wait2_ms;
	uint32_t tcp_sndbuf;
	uint32_t tcp_rcvbuf;
	uint32_t tcp_keepalive_idle_s; /* 0 = off */
	uint32_t tcp_keepalive_intvl_s;
	uint32_t tcp_keepalive_probes;
	uint32_t tcp_challenge_ack_per_s;
	uint16_t tcp_local_port_min;
	uint16_t tcp_local_port_max;

	/* [http] the query proxy's HTTP/1.1 on client and coordinator connections */
	uint32_t http_max_header_bytes;
	uint32_t http_max_headers;
	uint64_t http_max_body_bytes;
	uint32_t http_header_timeout_ms;
	uint32_t http_keepalive_timeout_ms;
	uint32_t http_io_timeout_ms;
	bool http_forwarded_for;
	/* [proxy] per worker lcore */
	uint32_t proxy_max_clients;    /* 0 = auto: half of tcp.max_connections */
	uint32_t proxy_max_backends;   /* 0 = auto: half of tcp.max_connections */
	uint32_t proxy_head_buffers;
	/* [upstream] connections to coordinators */
	uint32_t upstream_connect_timeout_ms;
	uint32_t upstream_response_timeout_ms;
	uint32_t upstream_pool_idle_max;
	uint32_t upstream_pool_idle_timeout_ms;
	uint32_t upstream_down_ms;
	/* [route] the query route table, shared by the workers */
	uint32_t route_max;
	uint32_t route_idle_timeout_s;
	uint32_t route_discovery_max;        /* per worker; 0: unknown ids are 404 at once */
	uint32_t route_discovery_timeout_ms;
	uint32_t route_verify_after_s;       /* 0: quiet routes are not verified */
	uint32_t route_linger_s;
	/* [admission] resource groups (docs/resource-groups.md) */
	char admission_resource_groups[QD_CONFIG_STR_MAX]; /* "" = no admission control */
	uint32_t admission_queued_max;        /* queued queries held by the dispatcher, all groups */
	uint32_t admission_queue_timeout_ms;  /* queued longer: ends with EXCEEDED_TIME_LIMIT */
	uint32_t admission_poll_wait_ms;      /* a queued query's poll is held this long at most */
	uint32_t admission_client_timeout_ms; /* queued query nobody polled this long: abandoned */
	uint32_t admission_max_statement_bytes; /* POST /v1/statement bodies (SQL text) */
	uint32_t admission_batch;             /* slots a worker takes at once; 0 = auto */
	/* [health] active checks of the coordinators (GET /v1/info, /v1/cluster) */
	uint32_t health_interval_ms;          /* 0 = off: passive detection only */
	uint32_t health_timeout_ms;
	uint32_t health_rise;
	uint32_t health_fall;
	/* [state] durable logs (docs/wal.md): <dir>/seed and <dir>/state; "" = none */
	char state_dir[QD_CONFIG_STR_MAX];
	uint32_t state_snapshot_every; /* state log records between snapshots */
	/* [peer] active-active peers (docs/architecture.md "Peers"); id 0 = no peers */
	uint16_t peer_id;
	uint32_t peer_listen_be;        /* our control address for peer messages */
	uint16_t peer_listen_port;
	char peer_key_file[QD_CONFIG_STR_MAX];
	struct qd_config_peer peers[QD_CONFIG_PEERS_MAX];
	unsigned int peers_count;
	uint32_t peer_heartbeat_ms;
	uint32_t peer_dead_after_ms;
	uint32_t peer_orphan_hold_ms;
	uint32_t peer_max_skew_ms;
	uint32_t peer_min_gap_ms;
	uint32_t peer_vip_drain_ms;     /* a VIP handed back drains this long at most */
	uint32_t peer_adopt_s;          /* after a takeover, adopt the dead peer's connections */
	/* [placement] */
	enum qd_placement_policy placement_policy;

	/* [service] test services on every address we own; 0 = off */
	uint16_t service_echo_port;
	uint16_t service_discard_port;

	/* [fault] fault injection in the port I/O, for tests: docs/configuration.md
	 * "Fault injection", dataplane/fault.h. Every key 0 = off (the default). */
	struct qd_config_fault_dir fault_rx; /* frames just read from the port */
	struct qd_config_fault_dir fault_tx; /* frames about to be sent */
	uint64_t fault_seed;                 /* with the lcore id: each worker's PRNG */
	uint32_t fault_reorder_gap;          /* frames that overtake a reordered one */
	uint32_t fault_reorder_hold_us;      /* longest a reordered frame is held */
};

/* Fill <cfg> with the documented defaults. */
void qd_config_defaults(struct qd_config *cfg);

/*
 * Parse <text> (<len> bytes) named <origin> into <cfg>, which must hold the
 * defaults or an earlier layer. Returns 0, or -EINVAL with a message
 * "origin:line: reason" in <err> (<err_len> bytes). Unknown keys, repeated
 * scalar keys, bad values and missing required keys are all refused.
 */
int qd_config_parse(struct qd_config *cfg, const char *origin, const char *text, size_t len,
		    char *err, size_t err_len);

/* Read the file at <path> and parse it; same contract as qd_config_parse. */
int qd_config_load(struct qd_config *cfg, const char *path, char *err, size_t err_len);

/* Name of a log level (RTE_LOG_* numbering), "?" when out of range. */
const char *qd_config_log_level_name(unsigned int level);

#endif /* QD_CONFIG_H */
