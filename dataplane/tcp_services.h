/*
 * Test services on the worker's TCP stack: echo (RFC 862) and discard
 * (RFC 863). They exist for tests and benchmarks of the stack against real
 * peers (service.echo_port, service.discard_port) and double as the smallest
 * example of the stack's application API with back-pressure.
 */
#ifndef QD_TCP_SERVICES_H
#define QD_TCP_SERVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "tcp.h"

struct qd_tcp_services;

/* Per-worker state for up to <max_conns> echo connections. NULL with errno on failure. */
struct qd_tcp_services *qd_tcp_services_create(struct qd_tcp_stack *s, uint32_t max_conns,
					       unsigned int lcore_id);
void qd_tcp_services_destroy(struct qd_tcp_services *svc);

/* Listen on the configured ports (0 = off). Returns 0 or a negative errno. */
int qd_tcp_services_listen(struct qd_tcp_services *svc, uint16_t echo_port,
			   uint16_t discard_port);

/*
 * TCP probe: an echo client on the stack's active-open path, started from the control
 * plane (`qdctl tcp-probe`). Each connection sends <bytes> of a deterministic stream to
 * an echo server, checks every byte that comes back, half-closes and waits for the
 * server's FIN. The worker publishes the outcome for the main lcore to read.
 */
#define QD_TCP_PROBE_CONNS_MAX 1024

struct qd_tcp_probe_stats {
	uint32_t id;          /* of the probe these numbers belong to */
	uint32_t wanted;
	uint32_t started;
	uint32_t connected;
	uint32_t ok;
	uint32_t failed;
	uint64_t bytes_verified;
	uint64_t mismatches;
	uint32_t resolve_waits; /* loops spent waiting for the next hop's MAC */
	uint32_t closed_by[5];  /* failures by enum qd_tcp_close_reason (0: normal close but
				 * bytes or FIN missing) */
	bool done;
};

/* Start probe <id>: <conns> connections to <ip_be>:<port>, <bytes> each. A probe already
 * running is abandoned (its connections are aborted). Returns 0 or -EINVAL/-EBUSY. */
int qd_tcp_probe_start(struct qd_tcp_services *svc, uint32_t id, uint32_t ip_be, uint16_t port,
		       uint32_t conns, uint64_t bytes);

/* Open the connections still to open (they wait for the next hop to resolve). */
void qd_tcp_probe_poll(struct qd_tcp_services *svc);

/* Reader side (main lcore): relaxed snapshot of the current probe's numbers. */
void qd_tcp_probe_read(const struct qd_tcp_services *svc, struct qd_tcp_probe_stats *out);

/* The services' idea of time, set by the worker before it calls into the stack. */
void qd_tcp_services_set_now(struct qd_tcp_services *svc, uint64_t now_us);

#endif /* QD_TCP_SERVICES_H */
