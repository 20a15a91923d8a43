/*
 * Test services on the worker's TCP stack: echo (RFC 862) and discard
 * (RFC 863). They exist for tests and benchmarks of the stack against real
 * peers (service.echo_port, service.discard_port) and double as the smallest
 * example of the stack's application API with back-pressure.
 */
#ifndef QD_TCP_SERVICES_H
#define QD_TCP_SERVICES_H

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

/* The services' idea of time, set by the worker before it calls into the stack. */
void qd_tcp_services_set_now(struct qd_tcp_services *svc, uint64_t now_us);

#endif /* QD_TCP_SERVICES_H */
