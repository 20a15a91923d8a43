/*
 * qdbench-dpdk's parts shared by its two files: qdbench_dpdk.c (options, the
 * worker loop, connection slots, the echo and connect modes, the report) and
 * qdbench_dpdk_trino.c (the query mode: Trino clients towards qdispatchd's VIP
 * and the minimal coordinators behind it, on the same stack and link).
 *
 * A slot is one client connection of any mode; qdbench_dpdk.c owns their
 * free stack, opens and drains them. The query mode keeps its per-slot
 * protocol state in arrays of its own, indexed by the slot's index, and
 * hands every close back through qdb_slot_closed().
 */
#ifndef QD_BENCH_QDBENCH_DPDK_H
#define QD_BENCH_QDBENCH_DPDK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hdr.h"
#include "tcp.h"

#define CONNS_MAX 4096u         /* --connections */
#define COORDS_MAX 8u           /* --coordinator */
#define PAGES_MAX 100u          /* --pages */
#define COORD_CONNS_MAX 1024u   /* query: connections qdispatchd opens to our coordinators */

enum mode {
	MODE_ECHO,    /* closed loop of messages on long-lived connections */
	MODE_CONNECT, /* connect, one message, close; again */
	MODE_QUERY,   /* Trino query lifecycles through qdispatchd's proxy */
};

enum phase {
	PHASE_START,  /* waiting for the first connection to open (ARP) */
	PHASE_RUN,    /* measuring */
	PHASE_DRAIN,  /* closing everything */
	PHASE_DONE,
};

/* Why a run counted an error; the JSON names them. */
#define BENCH_ERRORS(X)                                                                   \
	X(connect)      /* qd_tcp_connect refused (table full, no memory) */                \
	X(refused)      /* the server answered the SYN with RST */                          \
	X(reset)        /* the server reset an open connection */                           \
	X(timeout)      /* retransmissions exhausted */                                     \
	X(closed_early) /* closed before the exchange was complete */                       \
	X(mismatch)     /* an echoed byte differed from the byte sent */                    \
	X(send)         /* the stack or the pool refused a message */                       \
	X(unresolved)   /* the server's MAC never resolved */                               \
	X(unchecked)    /* query: qdispatchd never health-checked every coordinator */     \
	X(http)         /* query: a response that is not HTTP/1.1 as sent (parser error) */ \
	X(status)       /* query: a response status other than 200 */                       \
	X(shape)        /* query: a QueryResults body not as our coordinators wrote it */   \
	X(coord_request) /* query: our coordinator got a request it cannot answer */       \
	X(coord_full)   /* query: no coordinator connection slot left for an accept */

enum bench_error {
#define QD_X(name) ERR_##name,
	BENCH_ERRORS(QD_X)
#undef QD_X
	ERR_COUNT
};

struct options {
	enum mode mode;
	char socket[200];
	uint32_t server_ip_be;
	uint16_t server_port;
	uint32_t ip_be;
	uint32_t connections;
	uint32_t size;
	uint32_t duration_s;
	uint32_t coords_be[COORDS_MAX]; /* query: coordinator addresses we own */
	uint32_t coords_count;
	uint16_t coord_port;
	uint32_t pages;                 /* query: GETs per query after the POST */
	char lcores[64];
	char file_prefix[64];
	uint32_t memory_mb;
	uint32_t mbufs;
	const char *json;
	int eal_argc;
	char **eal_argv;
};

struct bench;
struct qdb_trino;

/* One client connection slot; a slot without a connection waits on the free stack. */
struct slot {
	struct bench *b;
	struct qd_tcp_conn *conn; /* NULL when free */
	uint32_t index;
	uint32_t seq;             /* messages completed on this connection */
	uint32_t received;        /* bytes of the current message back */
	bool echoed;              /* connect mode: the message came back, FIN sent */
	bool peer_fin;
};

struct bench {
	struct options o;
	struct qd_worker *w;
	const bool *stop;
	enum phase phase;
	uint64_t start_us;          /* PHASE_START entered */
	uint64_t run_us;            /* PHASE_RUN entered */
	uint64_t end_us;            /* PHASE_RUN left */
	uint64_t drain_deadline_us;
	uint32_t live;              /* slots with a connection */
	uint32_t free_count;
	uint32_t free_stack[CONNS_MAX];
	uint64_t messages;
	uint64_t conns_ok;
	uint64_t port_waits;        /* opens postponed: no free local port */
	uint64_t errors[ERR_COUNT];
	uint64_t loops;
	uint64_t busy_loops;
	uint64_t busy_cycles;
	struct qdb_trino *trino;    /* query mode, else NULL */
	bool done;                  /* written last by the worker, read by main */
	struct slot slots[CONNS_MAX];
};

/* qdbench_dpdk.c */
void qdb_count_error(struct bench *b, enum bench_error e);
/* The slot bookkeeping of a closed client connection, for every mode. <complete>: the
 * connection did all it had to (not an early close when it closed normally). */
void qdb_slot_closed(struct slot *s, enum qd_tcp_close_reason why, bool complete);

/* qdbench_dpdk_trino.c: the query mode. */
extern const struct qd_tcp_ops qdb_query_ops;
/* Allocate the per-slot and coordinator state and listen on the coordinator port
 * (start-up, before the worker runs). 0, or -errno with <err>. */
int qdb_trino_init(struct bench *b, char *err, size_t err_len);
void qdb_trino_free(struct bench *b);
/* Every coordinator has answered a health check (/v1/cluster) of qdispatchd: it
 * reaches them all, and the clients may start. */
bool qdb_trino_ready(const struct bench *b);
/* The measured window ended: close <s> once its query is complete (now if none is). */
void qdb_trino_drain_slot(struct slot *s);
/* Client connections are all gone: half-close the coordinators' connections, so
 * qdispatchd drops them from its pools instead of reusing them after we exit. True
 * once none is left. */
bool qdb_trino_drain_coords(struct bench *b);
/* Abort what is left of the coordinators' connections. */
void qdb_trino_abort_coords(struct bench *b);
/* Queries done in the measured window (the exit status). */
uint64_t qdb_trino_queries(const struct bench *b);
/* The query mode's members of the JSON report (each line starts with " \""). */
void qdb_trino_json(FILE *f, const struct bench *b, double secs);

#endif /* QD_BENCH_QDBENCH_DPDK_H */
