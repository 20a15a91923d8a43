/*
 * The query proxy of one worker lcore: HTTP/1.1 from clients on the VIP,
 * HTTP/1.1 to the coordinators, the Trino/Presto client protocol in between.
 *
 * Each worker owns its client connections, its backend connections (a
 * keep-alive pool per coordinator) and its timers; the only shared structure
 * is the query route table (route_table.h). A request is parsed with
 * libhttp_parser while it streams through: its head is rebuilt (origin-form
 * target, hop-by-hop headers dropped, Host unchanged, framing re-added) in a
 * head buffer, its body is copied into mbufs for the backend as fast as the
 * backend's send window takes it, and the response flows back the same way.
 * Back-pressure is the TCP windows: input is parsed only while the other
 * side's output queue is empty and its send buffer has room, so a connection
 * holds at most about one send buffer of output whatever the body's size.
 *
 * Requests on one client connection are handled one at a time, in order
 * (pipelined requests wait in the input queue, parsed once the previous
 * response is complete), which is what HTTP/1.1 requires and keeps every
 * exchange a pair of (client, backend).
 */
#ifndef QD_PROXY_H
#define QD_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ring.h>

#include "admission.h"
#include "config.h"
#include "coord_table.h"
#include "route_table.h"
#include "tcp.h"
#include "vip_table.h"

#define QD_PROXY_COORDS_MAX 64

#define QD_PROXY_COUNTERS(X)                                                              \
	X(clients_accepted)                                                               \
	X(clients_refused)       /* no client state left (proxy.max_clients) */            \
	X(requests)                                                                       \
	X(requests_submit)                                                                \
	X(requests_followup)     /* carried a query id */                                  \
	X(responses_forwarded)                                                            \
	X(local_200)             /* dispatcher endpoints */                                \
	X(local_400)                                                                      \
	X(local_404)                                                                      \
	X(local_408)                                                                      \
	X(local_413)                                                                      \
	X(local_431)                                                                      \
	X(local_502)                                                                      \
	X(local_503)                                                                      \
	X(local_504)                                                                      \
	X(failed_results)        /* FAILED QueryResults for a lost coordinator */          \
	X(backend_connects)                                                               \
	X(backend_connect_failed)                                                         \
	X(backend_connect_timeouts)                                                       \
	X(backend_reused)                                                                 \
	X(backend_lost)          /* closed or reset in the middle of an exchange */        \
	X(backend_idle_closed)                                                            \
	X(backend_limit)         /* proxy.max_backends reached */                          \
	X(response_timeouts)                                                              \
	X(retries)               /* a request sent to another coordinator */               \
	X(client_aborted)        /* client gone in the middle of an exchange */            \
	X(keepalive_timeouts)                                                             \
	X(client_stalls)         /* body or reading stalled past http.io_timeout_ms */     \
	X(head_buffers_empty)                                                             \
	X(no_mbuf)                                                                        \
	X(bytes_to_backends)                                                              \
	X(bytes_to_clients)                                                               \
	X(routes_created)                                                                 \
	X(routes_exists)                                                                  \
	X(routes_full)                                                                    \
	X(route_pressure_sweeps)                                                          \
	X(route_misses)          /* follow-up for an unknown query: 404 */                \
	X(routes_ended_finished)                                                          \
	X(routes_ended_failed)                                                            \
	X(routes_ended_canceled)                                                          \
	X(routes_ended_gone)     /* coordinator answered 404/410 */                        \
	X(routes_ended_lost)     /* coordinator unreachable */                             \
	X(routes_ended_idle)                                                               \
	X(routes_ended_dead)     /* its coordinator was declared down */                   \
	X(adm_admitted)          /* submissions sent on at once */                         \
	X(adm_queued)            /* submissions queued at the dispatcher */                \
	X(adm_dispatched)        /* queued submissions sent on from a poll */              \
	X(adm_queue_full)        /* QUERY_QUEUE_FULL answers */                            \
	X(adm_rejected)          /* no selector matched: QUERY_REJECTED */                 \
	X(adm_polls)             /* polls of queued queries */                             \
	X(adm_canceled)          /* DELETE of a queued query */                            \
	X(adm_ended_queued)      /* final answers for queued queries that ended there */   \
	X(adm_released)          /* slots given back */                                    \
	X(adm_statement_too_big) /* admission.max_statement_bytes: 413 */                \
	X(slog_records)          /* state log records handed to the main lcore */          \
	X(slog_ring_full)        /* ... dropped: the hand-off ring was full */               \
	X(routes_reconciled)     /* routes ended after asking their coordinator (restored/quiet) */ \
	X(routes_adopted)        /* routes found by discovery (queries another peer admitted) */ \
	X(adm_adopted)           /* ... that took a slot (forced: may go over the limit) */     \
	X(disc_parked)           /* requests held while their query id was discovered */       \
	X(disc_resumed)          /* ... sent on to the coordinator found */                    \
	X(disc_busy)             /* ... refused: discovery full (503 with Retry-After) */ \
	X(vip_drain_last)        /* responses sent with Connection: close: their VIP drains */ \
	X(vip_drain_idle_closed) /* idle keep-alive clients closed: their VIP drains */

struct qd_proxy_counters {
#define QD_X(name) uint64_t name;
	QD_PROXY_COUNTERS(QD_X)
#undef QD_X
};

/* Gauges, read by the control plane. */
struct qd_proxy_gauges {
	uint32_t clients;
	uint32_t backends;
	uint32_t backends_idle;
	uint32_t head_buffers_free;
};

struct qd_proxy_coord {
	uint32_t ip_be;
	uint16_t port;
};

/* What the main lcore publishes of the peers for the health endpoint (relaxed atomics). */
struct qd_peer_health {
	uint32_t self;        /* peer.id */
	uint32_t configured;  /* other peers */
	uint32_t alive;
	uint32_t quarantine;  /* 1: restarted, has not heard from every peer yet */
};

struct qd_proxy_conf {
	uint16_t listen_port;
	uint32_t max_clients;          /* per worker */
	uint32_t max_backends;         /* per worker */
	uint32_t head_buffers;         /* per worker, shared by requests and responses */
	uint32_t max_header_bytes;     /* request line/status line + header names and values */
	uint32_t max_headers;
	uint64_t max_body_bytes;       /* request bodies */
	uint32_t header_timeout_ms;    /* from a request's first byte (or accept) to its head */
	uint32_t keepalive_timeout_ms; /* idle client between requests */
	uint32_t io_timeout_ms;        /* in an exchange: client sends no body / reads nothing */
	uint32_t connect_timeout_ms;
	uint32_t response_timeout_ms;  /* request sent -> response head */
	uint32_t pool_idle_max;        /* idle backend connections per coordinator */
	uint32_t pool_idle_timeout_ms;
	uint32_t down_ms;              /* a coordinator that refused is skipped this long */
	uint32_t route_idle_ms;        /* a route nobody used for this long ends */
	uint32_t route_linger_ms;      /* an ended query's route still works this long */
	bool forwarded_for;            /* add X-Forwarded-For (off: Trino answers 406) */
	uint32_t vip_be;               /* Host for HTTP/1.0 requests without one (fallback) */
	const struct qd_vip_table *vips; /* shared, read-only here; NULL: no drains (tests) */
	unsigned int worker_index;     /* this worker among worker_count (route sweep stripe) */
	unsigned int worker_count;
	unsigned int coords_count;
	struct qd_proxy_coord coords[QD_PROXY_COORDS_MAX];
	struct qd_coord_table *coord_table;   /* shared: health, drain, load (required) */
	struct qd_admission *admission;       /* shared; NULL: no admission control */
	enum qd_placement_policy placement;
	uint32_t max_statement_bytes;         /* SQL of a submission held for admission */
	uint32_t poll_wait_ms;                /* a queued query's poll is held this long */
	uint32_t discovery_timeout_ms;        /* route discovery of one id (route.discovery_*) */
	uint32_t discovery_max;               /* discoveries at once per worker, 0: off */
	uint32_t verify_after_s;              /* quiet routes checked after this, 0: never */
	struct rte_ring *state_ring;          /* records for the state log; NULL: none */
	const struct qd_peer_health *peer_health; /* NULL: no peers */
};

struct qd_proxy;

/* Create the proxy of one worker on its TCP stack; listens on conf->listen_port. NULL with
 * errno on failure. */
struct qd_proxy *qd_proxy_create(const struct qd_proxy_conf *conf, struct qd_tcp_stack *stack,
				 struct qd_route_table *routes, unsigned int lcore_id);
void qd_proxy_destroy(struct qd_proxy *px);

/* Once per loop iteration with the iteration's time: timeouts, pool expiry, route sweep. */
void qd_proxy_poll(struct qd_proxy *px, uint64_t now_us);
/* The time callbacks from the stack see (set before qd_tcp_input/timers). */
void qd_proxy_set_now(struct qd_proxy *px, uint64_t now_us);

enum qd_proxy_end {
	QD_PROXY_END_FINISHED,
	QD_PROXY_END_FAILED,
	QD_PROXY_END_GONE,   /* the coordinator does not know the query */
};

/* The coordinator of query <id> says it is over (the reconciliation of routes restored from
 * the state log): its route ends here, counted by <why> and as reconciled, its slots go
 * back. 0, or -ENOENT (no route) / -EALREADY (ended already). Worker lcore. */
int qd_proxy_end_route(struct qd_proxy *px, const char *id, size_t id_len, enum qd_proxy_end why);

struct qd_reconcile;
struct qd_qinfo;

/* Route discovery: requests for an unknown query id are parked and <r> asks the
 * coordinators (NULL: off, such requests are answered 404 at once). Before the first poll. */
void qd_proxy_set_discovery(struct qd_proxy *px, struct qd_reconcile *r);
/* The discovery of <id> is over (reconcile.c's found callback): <coord> >= 0 has it, with
 * its QueryInfo fields in <qi>: the route is inserted as adopted (its query takes a slot in
 * the group its session selects, even past the limit) and the parked requests go on;
 * <coord> < 0: they get 404. Worker lcore. */
void qd_proxy_discovered(struct qd_proxy *px, const char *id, size_t id_len, int coord,
			 const struct qd_qinfo *qi);

/* Reader side (main lcore): relaxed snapshots. */
void qd_proxy_read(const struct qd_proxy *px, struct qd_proxy_counters *c,
		   struct qd_proxy_gauges *g);

#endif /* QD_PROXY_H */
