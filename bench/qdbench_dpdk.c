/*
 * qdbench-dpdk: a kernel-bypass TCP load generator built on qdispatchd's own
 * data plane, for the kernel-bypass-to-kernel-bypass benchmark (bench/run memif).
 *
 * Both ends of that benchmark must bypass the kernel, or the kernel's cost is
 * what gets measured: this program is the client half. It is not a second TCP
 * implementation: it links qdispatchd's data-plane library and runs the same
 * pieces the daemon runs (EAL arguments and port bring-up from port.c, a
 * qd_worker with its packet input, ARP and user-space TCP stack, the daemon's
 * main-lcore service with the master neighbour table). What it adds is the
 * application on top of the stack's active-open path: C concurrent echo
 * connections in a closed loop (one message in flight per connection), or
 * C connections at a time that each connect, echo one message and close.
 *
 * Threads: the main lcore sleeps between passes of qd_daemon_service() (ARP
 * probes, learned neighbours to the worker's replica), so it never competes
 * for a core; the one worker lcore busy-polls the port and owns every
 * connection. Everything is sized at start-up; the data path takes mbufs from
 * the pool and nothing from malloc.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <arpa/inet.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "daemon.h"
#include "log.h"
#include "port.h"
#include "qdbench_dpdk.h"
#include "worker.h"

#define MSG_BYTES_MAX 1400u     /* --size: one segment */
#define DURATION_S_MAX 3600u
#define OPENS_PER_LOOP 64u      /* active opens per worker iteration */
#define LINK_WAIT_MS 5000u      /* memif: the server must be up by then */
#define RESOLVE_WAIT_MS 3000u   /* the server must answer ARP by then */
#define CHECK_WAIT_MS 5000u     /* query: qdispatchd must have checked our coordinators */
#define DRAIN_MS 2000u          /* graceful closes at the end, then RST */
#define MAIN_SLEEP_MS 2u        /* main lcore: one service pass per sleep */
#define TIME_WAIT_MAX 8192u     /* our TIME_WAIT; beyond it closed at once (counted) */
#define TIME_WAIT_MS 1000u

static const char *const error_names[ERR_COUNT] = {
#define QD_X(name) #name,
	BENCH_ERRORS(QD_X)
#undef QD_X
};

static volatile sig_atomic_t signal_seen;

static void
on_signal(int sig)
{
	signal_seen = sig;
}

static uint8_t
pattern_byte(const struct slot *s, uint32_t off)
{
	return (uint8_t)(s->index * 131u + s->seq * 29u + off);
}

static bool
running(const struct bench *b)
{
	return b->phase == PHASE_RUN;
}

void
qdb_count_error(struct bench *b, enum bench_error e)
{
	assert(e < ERR_COUNT);
	/* Errors after the measured window (the drain's aborts) are not the server's. */
	if (b->phase != PHASE_DRAIN && b->phase != PHASE_DONE)
		b->errors[e]++;
}

/* Queue the next message of <s>; false (connection aborted) when refused. */
static bool
send_message(struct slot *s)
{
	struct bench *b = s->b;
	struct rte_mbuf *m = rte_pktmbuf_alloc(b->w->pool);
	if (m == NULL) {
		qdb_count_error(b, ERR_send);
		qd_tcp_abort(s->conn, b->w->now_us);
		return false;
	}
	uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)b->o.size);
	assert(d != NULL); /* size <= MSG_BYTES_MAX < the data room */
	for (uint32_t i = 0; i < b->o.size; i++)
		d[i] = pattern_byte(s, i);
	s->received = 0;
	int rc = qd_tcp_send(s->conn, m, b->w->now_us);
	if (rc == 0)
		return true;
	/* One message in flight never fills the send buffer: any refusal is an error. */
	if (rc != -ENOMEM)
		rte_pktmbuf_free(m);
	qdb_count_error(b, ERR_send);
	qd_tcp_abort(s->conn, b->w->now_us);
	return false;
}

static void
on_connected(struct qd_tcp_conn *c)
{
	struct slot *s = qd_tcp_conn_app(c);
	if (s->b->phase == PHASE_DRAIN) {
		qd_tcp_shutdown(c, s->b->w->now_us);
		return;
	}
	send_message(s);
}

/* A whole message is back on <s>. */
static void
message_done(struct slot *s)
{
	struct bench *b = s->b;
	s->seq++;
	if (b->o.mode == MODE_CONNECT) {
		s->echoed = true;
		qd_tcp_shutdown(s->conn, b->w->now_us);
		return;
	}
	if (running(b)) {
		b->messages++;
		send_message(s);
	} else {
		qd_tcp_shutdown(s->conn, b->w->now_us);
	}
}

static void
on_data(struct qd_tcp_conn *c, struct rte_mbuf *m)
{
	struct slot *s = qd_tcp_conn_app(c);
	struct bench *b = s->b;
	uint32_t len = rte_pktmbuf_pkt_len(m);
	bool bad = s->received + len > b->o.size;
	uint32_t off = s->received;
	/* Bounded by the chain's segments and the message size. */
	for (struct rte_mbuf *seg = m; seg != NULL && !bad; seg = seg->next) {
		const uint8_t *d = rte_pktmbuf_mtod(seg, const uint8_t *);
		for (uint32_t i = 0; i < seg->data_len && !bad; i++, off++)
			bad = d[i] != pattern_byte(s, off);
	}
	rte_pktmbuf_free(m);
	qd_tcp_recv_consumed(c, len, b->w->now_us);
	if (bad) {
		qdb_count_error(b, ERR_mismatch);
		qd_tcp_abort(c, b->w->now_us);
		return;
	}
	s->received += len;
	if (s->received == b->o.size)
		message_done(s);
}

static void
on_peer_fin(struct qd_tcp_conn *c)
{
	struct slot *s = qd_tcp_conn_app(c);
	s->peer_fin = true;
}

void
qdb_slot_closed(struct slot *s, enum qd_tcp_close_reason why, bool complete)
{
	struct bench *b = s->b;
	assert(s->conn != NULL && b->live > 0);
	switch (why) {
	case QD_TCP_CLOSE_NORMAL:
		if (complete && b->o.mode == MODE_CONNECT && running(b))
			b->conns_ok++;
		else if (!complete && running(b))
			qdb_count_error(b, ERR_closed_early);
		break;
	case QD_TCP_CLOSE_RESET:
		qdb_count_error(b, ERR_reset);
		break;
	case QD_TCP_CLOSE_REFUSED:
		qdb_count_error(b, ERR_refused);
		break;
	case QD_TCP_CLOSE_TIMEOUT:
		qdb_count_error(b, ERR_timeout);
		break;
	case QD_TCP_CLOSE_ABORT:
		break; /* ours: counted where we decided it */
	}
	s->conn = NULL;
	b->live--;
	assert(b->free_count < CONNS_MAX);
	b->free_stack[b->free_count++] = s->index;
}

static void
on_closed(struct qd_tcp_conn *c, enum qd_tcp_close_reason why)
{
	struct slot *s = qd_tcp_conn_app(c);
	assert(s->conn == c);
	qdb_slot_closed(s, why, s->b->o.mode == MODE_CONNECT && s->echoed && s->peer_fin);
}

static const struct qd_tcp_ops client_ops = {
	.on_connected = on_connected,
	.on_data = on_data,
	.on_peer_fin = on_peer_fin,
	.on_closed = on_closed,
};

/* Open connections for free slots, at most OPENS_PER_LOOP per call. */
static void
open_some(struct bench *b)
{
	for (unsigned int n = 0; n < OPENS_PER_LOOP && b->free_count > 0; n++) {
		struct slot *s = &b->slots[b->free_stack[b->free_count - 1]];
		assert(s->conn == NULL);
		const struct qd_tcp_ops *ops = b->o.mode == MODE_QUERY ? &qdb_query_ops
									: &client_ops;
		struct qd_tcp_conn *c = qd_tcp_connect(b->w->tcp, b->o.server_ip_be,
						       b->o.server_port, ops, s, b->w->now_us);
		if (c == NULL && errno == EAGAIN) {
			/* Next hop not resolved yet, or every local port busy: next loop. */
			if (b->phase != PHASE_START)
				b->port_waits++;
			return;
		}
		if (c == NULL) {
			qdb_count_error(b, ERR_connect);
			return;
		}
		b->free_count--;
		s->conn = c;
		s->received = 0;
		s->echoed = false;
		s->peer_fin = false;
		b->live++;
		if (b->phase == PHASE_START) {
			b->phase = PHASE_RUN;
			b->run_us = b->w->now_us;
		}
	}
}

/* The end of the measured window: half-close what is open, reset what is opening. */
static void
start_drain(struct bench *b)
{
	b->end_us = b->w->now_us;
	b->phase = PHASE_DRAIN;
	b->drain_deadline_us = b->w->now_us + DRAIN_MS * 1000ull;
	for (uint32_t i = 0; i < b->o.connections; i++) {
		struct slot *s = &b->slots[i];
		if (s->conn == NULL)
			continue;
		if (qd_tcp_conn_state(s->conn) == QD_TCP_SYN_SENT)
			qd_tcp_abort(s->conn, b->w->now_us);
		else if (b->o.mode == MODE_QUERY)
			qdb_trino_drain_slot(s); /* or when its request is answered */
		else if (b->o.mode == MODE_CONNECT || s->received == 0)
			qd_tcp_shutdown(s->conn, b->w->now_us);
		/* an echo message half back closes when it is whole (message_done) */
	}
}

static void
abort_all(struct bench *b)
{
	for (uint32_t i = 0; i < b->o.connections; i++) {
		if (b->slots[i].conn != NULL)
			qd_tcp_abort(b->slots[i].conn, b->w->now_us);
	}
}

/* The application's share of one worker iteration: phase changes and opens. */
static void
bench_poll(struct bench *b)
{
	uint64_t now = b->w->now_us;
	switch (b->phase) {
	case PHASE_START:
		if (b->trino != NULL && !qdb_trino_ready(b)) {
			/* Clients before qdispatchd reaches the coordinators would only
			 * measure its 503s. */
			if (now - b->start_us > CHECK_WAIT_MS * 1000ull) {
				b->errors[ERR_unchecked]++;
				b->phase = PHASE_DONE;
			}
			return;
		}
		if (now - b->start_us > (RESOLVE_WAIT_MS + (b->trino != NULL ? CHECK_WAIT_MS : 0)) *
					1000ull) {
			b->errors[ERR_unresolved]++;
			b->phase = PHASE_DONE;
			return;
		}
		open_some(b);
		return;
	case PHASE_RUN:
		if (now - b->run_us >= b->o.duration_s * 1000000ull ||
		    __atomic_load_n(b->stop, __ATOMIC_ACQUIRE)) {
			start_drain(b);
			return;
		}
		open_some(b);
		return;
	case PHASE_DRAIN:
		if (now > b->drain_deadline_us) {
			abort_all(b);
			if (b->trino != NULL)
				qdb_trino_abort_coords(b);
			b->phase = PHASE_DONE;
		} else if (b->live == 0 && (b->trino == NULL || qdb_trino_drain_coords(b))) {
			b->phase = PHASE_DONE;
		}
		return;
	case PHASE_DONE:
		return;
	}
}

/* The worker lcore: qd_worker_main's loop with the benchmark in place of the proxy. */
static int
bench_main(void *arg)
{
	struct bench *b = arg;
	struct qd_worker *w = b->w;
	struct rte_mbuf *pkts[QD_BURST_MAX];
	w->now_us = rte_rdtsc() / w->tsc_per_us;
	b->start_us = w->now_us;
	/* Bounded by the run's duration plus RESOLVE_WAIT_MS and DRAIN_MS. */
	while (b->phase != PHASE_DONE) {
		uint64_t start = rte_rdtsc();
		w->now_us = start / w->tsc_per_us;
		uint16_t n = rte_eth_rx_burst(w->conf.port_id, w->conf.queue_id, pkts,
					      w->conf.burst);
		for (uint16_t i = 0; i < n; i++)
			qd_worker_input(w, pkts[i]);
		unsigned int msgs = qd_worker_drain_mailbox(w);
		bench_poll(b);
		qd_tcp_timers(w->tcp, w->now_us);
		bool tx = w->txq.count > 0;
		qd_worker_flush(w);
		b->loops++;
		if (n + msgs > 0 || tx) {
			b->busy_loops++;
			b->busy_cycles += rte_rdtsc() - start;
		}
		if (b->phase == PHASE_START && __atomic_load_n(b->stop, __ATOMIC_ACQUIRE))
			b->phase = PHASE_DONE;
	}
	qd_worker_flush(w);
	__atomic_store_n(&b->done, true, __ATOMIC_RELEASE);
	return 0;
}

static void
usage(FILE *out)
{
	fprintf(out,
"NAME\n"
"    qdbench-dpdk - TCP echo or Trino query load over a DPDK port, on qdispatchd's\n"
"    own stack\n"
"\n"
"SYNOPSIS\n"
"    qdbench-dpdk --socket PATH [--server IP:PORT] [--ip IP] [--mode echo|connect|query]\n"
"                 [--coordinator IP]... [--coordinator-port PORT] [--pages N]\n"
"                 [--connections N] [--size BYTES] [--duration S] [--lcores LIST]\n"
"                 [--file-prefix NAME] [--memory-mb MB] [--mbufs N] [--json FILE]\n"
"                 [-- EAL-OPTIONS...]\n"
"\n"
"DESCRIPTION\n"
"    The client half of the kernel-bypass benchmark (bench/run memif). It attaches to\n"
"    a net_memif socket as the memif client (the server, typically qdispatchd with\n"
"    service.echo_port set, creates the socket), resolves the server's address with\n"
"    ARP over the link and drives TCP echo traffic from qdispatchd's user-space TCP\n"
"    stack on one worker lcore. Every byte that comes back is checked.\n"
"\n"
"    echo     N connections stay open; each sends a message of BYTES, waits for all\n"
"             of it to come back, and sends the next (one in flight per connection).\n"
"             The figure is messages per second.\n"
"    connect  N connections at a time; each connects, sends one message, waits for\n"
"             the echo, half-closes and waits for the server's FIN; its slot then\n"
"             opens a new connection. The figure is connections per second.\n"
"    query    both sides of qdispatchd's query proxy (bench/run memif-proxy). N\n"
"             keep-alive connections to --server (qdispatchd's VIP and listen.port)\n"
"             each run Trino query lifecycles: POST /v1/statement, then a GET of each\n"
"             nextUri until none. This program also holds the --coordinator\n"
"             addresses on the link (ARP, TCP) and answers on --coordinator-port as a\n"
"             minimal Trino coordinator: QUEUED with a fresh query id and a nextUri\n"
"             built from Host, then --pages pages, the last FINISHED with one row;\n"
"             /v1/info and /v1/cluster for the health checks. Every response is\n"
"             checked (status, id, states, nextUri count, the row). The figure is\n"
"             queries per second, with query latency p50/p99.\n"
"\n"
"    Only exchanges completed inside the measured window count. It opens with the\n"
"    first connection and lasts S seconds; then open connections are half-closed\n"
"    (and reset after %u ms if they do not finish).\n"
"\n"
"OPTIONS\n"
"    --socket PATH        the memif control socket (required)\n"
"    --server IP:PORT     the echo server (default 10.214.0.1:7)\n"
"    --ip IP              this client's address on the link (default 10.214.0.2)\n"
"    --mode MODE          echo (default), connect or query\n"
"    --coordinator IP     query: a coordinator address this program holds (in\n"
"                         --ip's /24; repeat, up to %u)\n"
"    --coordinator-port P query: the coordinators' port (default 8080)\n"
"    --pages N            query: GETs per query after the POST, 1..%u (default 1)\n"
"    --connections N      concurrent connections, 1..%u (default 100)\n"
"    --size BYTES         message size, 1..%u (default 64)\n"
"    --duration S         measured seconds, 1..%u (default 5)\n"
"    --lcores LIST        EAL --lcores: the main lcore, then the worker (default\n"
"                         \"0@0,1@1\"). Give the worker a CPU of its own: it\n"
"                         busy-polls. The main lcore sleeps between passes.\n"
"    --file-prefix NAME   EAL --file-prefix (default qdbench-dpdk); two DPDK\n"
"                         processes on one machine need different ones\n"
"    --memory-mb MB       EAL memory (default 256; always --no-huge)\n"
"    --mbufs N            mbuf pool size (default 8191)\n"
"    --json FILE          write the result there instead of stdout\n"
"    -h, --help           print this help and exit\n"
"    Arguments after -- go to EAL after the derived ones.\n"
"\n"
"OUTPUT\n"
"    One JSON object: mode, connections, msg_bytes, duration_s (measured), messages\n"
"    and msgs_per_s (echo), connections_ok and conns_per_s (connect), errors and\n"
"    errors_by (connect refused, reset, timeout, closed_early, mismatch, send,\n"
"    unresolved, http, status, shape, coord_request, coord_full), busy_cycles (TSC cycles of worker iterations that did work),\n"
"    busy_cycles_per_msg / busy_cycles_per_conn, tsc_hz, port_waits (opens\n"
"    postponed for lack of a free local port) and the stack's counters tcp.*.\n"
"    query adds pages, coordinators, queries, queries_per_s, requests,\n"
"    requests_per_s, latency_us.query (p50, p99, max, mean), coordinator_requests\n"
"    (submit, page, info, cluster, unknown) and busy_cycles_per_query (this\n"
"    program's worker: clients and coordinators together).\n"
"\n"
"EXIT STATUS\n"
"    0 when something was exchanged and nothing failed; 1 when nothing was\n"
"    exchanged or any error was counted; 2 on bad usage; 3 when EAL, the port or\n"
"    the stack could not start (no memif server on the socket, for one).\n"
"\n"
"EXAMPLE\n"
"    qdbench-dpdk --socket /tmp/memif.sock --server 10.214.0.1:7 --mode connect \\\n"
"        --connections 64 --duration 5 --lcores 0@1,1@0 --file-prefix cli\n",
		DRAIN_MS, COORDS_MAX, PAGES_MAX, CONNS_MAX, MSG_BYTES_MAX, DURATION_S_MAX);
}

static int
parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int
parse_ip(const char *s, uint32_t *ip_be)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1 || a.s_addr == 0)
		return -1;
	*ip_be = a.s_addr;
	return 0;
}

static int
parse_endpoint(const char *s, uint32_t *ip_be, uint16_t *port)
{
	char buf[64];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(buf))
		return -1;
	memcpy(buf, s, (size_t)(colon - s));
	buf[colon - s] = '\0';
	uint32_t p;
	if (parse_ip(buf, ip_be) != 0 || parse_u32(colon + 1, 1, 65535, &p) != 0)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

static int
copy_str(char *dst, size_t len, const char *src)
{
	return (size_t)snprintf(dst, len, "%s", src) < len ? 0 : -1;
}

static int
parse_one(struct options *o, int opt, const char *arg)
{
	switch (opt) {
	case 's': return copy_str(o->socket, sizeof(o->socket), arg);
	case 'S': return parse_endpoint(arg, &o->server_ip_be, &o->server_port);
	case 'i': return parse_ip(arg, &o->ip_be);
	case 'm':
		if (strcmp(arg, "echo") == 0)
			o->mode = MODE_ECHO;
		else if (strcmp(arg, "connect") == 0)
			o->mode = MODE_CONNECT;
		else if (strcmp(arg, "query") == 0)
			o->mode = MODE_QUERY;
		else
			return -1;
		return 0;
	case 'c': return parse_u32(arg, 1, CONNS_MAX, &o->connections);
	case 'z': return parse_u32(arg, 1, MSG_BYTES_MAX, &o->size);
	case 'd': return parse_u32(arg, 1, DURATION_S_MAX, &o->duration_s);
	case 'l': return copy_str(o->lcores, sizeof(o->lcores), arg);
	case 'f': return copy_str(o->file_prefix, sizeof(o->file_prefix), arg);
	case 'M': return parse_u32(arg, 64, 65536, &o->memory_mb);
	case 'b': return parse_u32(arg, 511, 4194303, &o->mbufs);
	case 'j': o->json = arg; return 0;
	case 'C':
		if (o->coords_count == COORDS_MAX)
			return -1;
		return parse_ip(arg, &o->coords_be[o->coords_count++]);
	case 'P': {
		uint32_t port;
		if (parse_u32(arg, 1, 65535, &port) != 0)
			return -1;
		o->coord_port = (uint16_t)port;
		return 0;
	}
	case 'p': return parse_u32(arg, 1, PAGES_MAX, &o->pages);
	}
	return -1;
}

/* The short names of parse_options()'s long options, in their order (error messages). */
#define OPT_LETTERS "sSimczdlfMbjCPp"

static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{"socket", required_argument, NULL, 's'},
		{"server", required_argument, NULL, 'S'},
		{"ip", required_argument, NULL, 'i'},
		{"mode", required_argument, NULL, 'm'},
		{"connections", required_argument, NULL, 'c'},
		{"size", required_argument, NULL, 'z'},
		{"duration", required_argument, NULL, 'd'},
		{"lcores", required_argument, NULL, 'l'},
		{"file-prefix", required_argument, NULL, 'f'},
		{"memory-mb", required_argument, NULL, 'M'},
		{"mbufs", required_argument, NULL, 'b'},
		{"json", required_argument, NULL, 'j'},
		{"coordinator", required_argument, NULL, 'C'},
		{"coordinator-port", required_argument, NULL, 'P'},
		{"pages", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	*o = (struct options){
		.mode = MODE_ECHO, .server_port = 7, .connections = 100, .size = 64,
		.duration_s = 5, .lcores = "0@0,1@1", .file_prefix = "qdbench-dpdk",
		.memory_mb = 256, .mbufs = 8191, .coord_port = 8080, .pages = 1,
	};
	parse_ip("10.214.0.1", &o->server_ip_be);
	parse_ip("10.214.0.2", &o->ip_be);
	int c;
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == '?' || parse_one(o, c, optarg) != 0) {
			if (c != '?')
				fprintf(stderr, "qdbench-dpdk: bad value '%s' for --%s\n", optarg,
					longs[strchr(OPT_LETTERS, c) - OPT_LETTERS].name);
			fprintf(stderr, "Try 'qdbench-dpdk --help'.\n");
			return -1;
		}
	}
	if (o->socket[0] == '\0') {
		fprintf(stderr, "qdbench-dpdk: --socket is required\n");
		return -1;
	}
	if (o->ip_be == o->server_ip_be) {
		fprintf(stderr, "qdbench-dpdk: --ip and --server name the same address\n");
		return -1;
	}
	if ((o->mode == MODE_QUERY) != (o->coords_count > 0)) {
		fprintf(stderr, "qdbench-dpdk: --coordinator is for --mode query, which needs one\n");
		return -1;
	}
	for (uint32_t i = 0; i < o->coords_count; i++) {
		if (o->coords_be[i] == o->ip_be || o->coords_be[i] == o->server_ip_be) {
			fprintf(stderr, "qdbench-dpdk: a --coordinator is --ip or --server\n");
			return -1;
		}
	}
	o->eal_argc = argc - optind;
	o->eal_argv = argv + optind;
	return 0;
}

/* The daemon's configuration as far as EAL, the port and the worker read it. */
static int
make_config(struct qd_config *cfg, const struct options *o)
{
	qd_config_defaults(cfg);
	cfg->workers = 1;
	cfg->hugepages = QD_HUGEPAGES_OFF;
	cfg->memory_mb = o->memory_mb;
	cfg->mbufs = o->mbufs;
	cfg->port_ip.addr_be = o->ip_be;
	cfg->port_ip.prefix_len = 24;
	cfg->garp_interval_s = 0;
	cfg->log_level = RTE_LOG_WARNING;
	if (copy_str(cfg->lcore_list, sizeof(cfg->lcore_list), o->lcores) != 0)
		return -1;
	int n = snprintf(cfg->port_device, sizeof(cfg->port_device),
			 "net_memif0,role=client,socket=%s", o->socket);
	return n > 0 && (size_t)n < sizeof(cfg->port_device) ? 0 : -1;
}

static int
wait_link(uint16_t port_id)
{
	/* Bounded: LINK_WAIT_MS in MAIN_SLEEP_MS steps; the main lcore sleeps. */
	for (unsigned int t = 0; t < LINK_WAIT_MS; t += MAIN_SLEEP_MS) {
		struct rte_eth_link link;
		if (rte_eth_link_get_nowait(port_id, &link) == 0 &&
		    link.link_status == RTE_ETH_LINK_UP)
			return 0;
		if (signal_seen != 0)
			return -EINTR;
		rte_delay_us_sleep(MAIN_SLEEP_MS * 1000u);
	}
	return -ETIMEDOUT;
}

static int
make_worker(struct qd_daemon *d, const struct options *o, char *err, size_t err_len)
{
	d->events = rte_ring_create_elem("qd_events", sizeof(struct qd_msg), QD_EVENTS_SIZE,
					 (int)rte_socket_id(), RING_F_SC_DEQ);
	d->mailboxes[0] = rte_ring_create_elem("qd_mbox_0", sizeof(struct qd_msg), QD_MAILBOX_SIZE,
					       (int)rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (d->events == NULL || d->mailboxes[0] == NULL) {
		snprintf(err, err_len, "rings: %s", rte_strerror(rte_errno));
		return -ENOMEM;
	}
	struct qd_worker_conf wc = {
		.lcore_id = rte_get_next_lcore(rte_get_main_lcore(), 1, 0),
		.port_id = d->port.port_id,
		.burst = 32,
		.neigh_capacity = 16,
	};
	qd_fault_conf_from_config(&wc.fault, &d->cfg);
	if (getrandom(&wc.secret, sizeof(wc.secret), 0) != (ssize_t)sizeof(wc.secret)) {
		snprintf(err, err_len, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	qd_worker_tcp_conf_default(&wc.tcp);
	wc.tcp.max_connections = o->connections + TIME_WAIT_MAX;
	wc.tcp.syn_backlog = 0; /* no passive opens but the query mode's */
	if (o->mode == MODE_QUERY) {
		wc.tcp.max_connections += COORD_CONNS_MAX;
		wc.tcp.syn_backlog = COORD_CONNS_MAX;
	}
	wc.tcp.time_wait_max = TIME_WAIT_MAX;
	wc.tcp.time_wait_ms = TIME_WAIT_MS;
	wc.tcp.mss = (uint16_t)(d->cfg.port_mtu - 40);
	d->workers[0] = qd_worker_create(&wc, &d->iface, d->pool, d->mailboxes[0], d->events,
					 NULL, &d->stop, true);
	if (d->workers[0] == NULL) {
		snprintf(err, err_len, "worker on lcore %u: %s", wc.lcore_id, strerror(errno));
		return -ENOMEM;
	}
	d->workers_count = 1;
	return 0;
}

/* EAL is up: pool, port, link, worker, master neighbour table wanting the server. */
static int
start(struct qd_daemon *d, const struct options *o, char *err, size_t err_len)
{
	if (rte_lcore_count() != 2) {
		snprintf(err, err_len, "EAL has %u lcores; --lcores must name two (main, worker)",
			 rte_lcore_count());
		return -EINVAL;
	}
	d->pool = rte_pktmbuf_pool_create("qd_mbufs", d->cfg.mbufs, 256, 0,
					  RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	if (d->pool == NULL) {
		snprintf(err, err_len, "mbuf pool of %u: %s (raise --memory-mb)", d->cfg.mbufs,
			 rte_strerror(rte_errno));
		return -ENOMEM;
	}
	int rc = qd_port_open(&d->port, &d->cfg, d->pool, 1, err, err_len);
	if (rc != 0)
		return rc;
	rc = wait_link(d->port.port_id);
	if (rc != 0) {
		snprintf(err, err_len, "memif link to %s not up within %u ms (is the server up?)",
			 o->socket, LINK_WAIT_MS);
		return rc;
	}
	d->iface.mac = d->port.mac;
	d->iface.ip_be = o->ip_be;
	d->iface.prefix_len = 24;
	qd_vip_table_init(&d->iface.vips, o->ip_be, 24, NULL, NULL);
	/* Our coordinators' addresses: the worker answers ARP and accepts TCP on them as
	 * qdispatchd does on its VIPs, and they are announced with ours at the start. */
	for (uint32_t i = 0; i < o->coords_count; i++) {
		rc = qd_vip_add(&d->iface.vips, o->coords_be[i], QD_VIP_ACTIVE, qd_daemon_now_ms(),
				err, err_len);
		if (rc != 0)
			return rc;
	}
	rc = make_worker(d, o, err, err_len);
	if (rc == 0)
		rc = qd_neigh_table_init(&d->neigh, 16);
	if (rc == 0)
		rc = qd_neigh_want(&d->neigh, o->server_ip_be, true, qd_daemon_now_ms());
	if (rc != 0 && err[0] == '\0')
		snprintf(err, err_len, "neighbour table: %s", strerror(-rc));
	d->neigh_timing = (struct qd_neigh_timing){
		.reachable_ms = (uint64_t)d->cfg.neigh_reachable_s * 1000,
		.retry_ms = 100,
		.probes = d->cfg.neigh_probes,
	};
	d->next_garp_ms = 0; /* announce ourselves, as qdispatchd does */
	return rc;
}

static void
stop(struct qd_daemon *d)
{
	qd_port_close(&d->port);
	qd_worker_destroy(d->workers[0]);
	rte_ring_free(d->mailboxes[0]);
	rte_ring_free(d->events);
	qd_neigh_table_free(&d->neigh);
	rte_mempool_free(d->pool);
}

static uint64_t
sum_errors(const struct bench *b)
{
	uint64_t n = 0;
	for (unsigned int i = 0; i < ERR_COUNT; i++)
		n += b->errors[i];
	return n;
}

/* What the mode counts: messages, connections or queries. */
static uint64_t
work_done(const struct bench *b)
{
	switch (b->o.mode) {
	case MODE_ECHO: return b->messages;
	case MODE_CONNECT: return b->conns_ok;
	case MODE_QUERY: return qdb_trino_queries(b);
	}
	return 0;
}

static void
print_json(FILE *f, const struct bench *b)
{
	static const char *const mode_names[] = {"echo", "connect", "query"};
	static const char *const work_names[] = {"msg", "conn", "query"};
	const struct options *o = &b->o;
	double secs = b->end_us > b->run_us ? (double)(b->end_us - b->run_us) / 1e6 : 0.0;
	uint64_t work = work_done(b);
	struct qd_tcp_counters tc;
	uint32_t states[QD_TCP_STATE_MAX];
	qd_tcp_stack_read(b->w->tcp, &tc, states);
	fprintf(f, "{\"mode\": \"%s\", \"connections\": %u, \"msg_bytes\": %u, "
		"\"duration_s\": %.6f,\n", mode_names[o->mode], o->connections, o->size, secs);
	if (o->mode == MODE_QUERY)
		qdb_trino_json(f, b, secs);
	fprintf(f, " \"messages\": %" PRIu64 ", \"msgs_per_s\": %.1f, \"connections_ok\": %"
		PRIu64 ", \"conns_per_s\": %.1f,\n", b->messages,
		secs > 0 ? (double)b->messages / secs : 0.0, b->conns_ok,
		secs > 0 ? (double)b->conns_ok / secs : 0.0);
	fprintf(f, " \"errors\": %" PRIu64 ", \"errors_by\": {", sum_errors(b));
	for (unsigned int i = 0; i < ERR_COUNT; i++)
		fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", error_names[i], b->errors[i]);
	fprintf(f, "},\n \"busy_cycles\": %" PRIu64 ", \"busy_cycles_per_%s\": %.0f, "
		"\"busy_loops\": %" PRIu64 ", \"loops\": %" PRIu64 ", \"tsc_hz\": %" PRIu64
		", \"port_waits\": %" PRIu64 ",\n", b->busy_cycles,
		work_names[o->mode],
		work > 0 ? (double)b->busy_cycles / (double)work : 0.0, b->busy_loops, b->loops,
		rte_get_tsc_hz(), b->port_waits);
	fprintf(f, " \"tcp\": {");
	const char *sep = "";
#define QD_X(name)                                                                        \
	fprintf(f, "%s\"" #name "\": %" PRIu64, sep, tc.name);                              \
	sep = ", ";
	QD_TCP_COUNTERS(QD_X)
#undef QD_X
	fprintf(f, "}}\n");
}

/* Main lcore: service passes between sleeps until the worker is done. */
static void
run(struct qd_daemon *d, struct bench *b)
{
	/* Bounded by the worker's own bounds; a signal only shortens it. */
	while (!__atomic_load_n(&b->done, __ATOMIC_ACQUIRE)) {
		if (signal_seen != 0)
			__atomic_store_n(&d->stop, true, __ATOMIC_RELEASE);
		qd_daemon_service(d, qd_daemon_now_ms());
		rte_delay_us_sleep(MAIN_SLEEP_MS * 1000u);
	}
	rte_eal_mp_wait_lcore();
}

int
main(int argc, char **argv)
{
	static struct qd_daemon daemon; /* large: keep them off the stack */
	static struct bench bench;
	struct qd_daemon *d = &daemon;
	struct bench *b = &bench;
	if (parse_options(argc, argv, &b->o) != 0)
		return 2;
	char err[QD_CONFIG_ERR_MAX] = "";
	if (make_config(&d->cfg, &b->o) != 0) {
		fprintf(stderr, "qdbench-dpdk: --socket or --lcores too long\n");
		return 2;
	}
	/* EAL args: the derived ones (port.c), the file prefix, then the operator's. */
	char prefix_arg[96];
	snprintf(prefix_arg, sizeof(prefix_arg), "--file-prefix=%s", b->o.file_prefix);
	char *extra[QD_EAL_ARGS_MAX];
	int extra_argc = 0;
	extra[extra_argc++] = prefix_arg;
	for (int i = 0; i < b->o.eal_argc && extra_argc < QD_EAL_ARGS_MAX; i++)
		extra[extra_argc++] = b->o.eal_argv[i];
	struct qd_eal_args eal;
	if (qd_port_eal_args(&eal, argv[0], &d->cfg, extra_argc, extra, err, sizeof(err)) != 0) {
		fprintf(stderr, "qdbench-dpdk: %s\n", err);
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (rte_eal_init(eal.argc, eal.argv) < 0) {
		fprintf(stderr, "qdbench-dpdk: EAL initialisation failed: %s\n",
			rte_strerror(rte_errno));
		return 3;
	}
	rte_log_set_level_pattern("qd.*", RTE_LOG_WARNING);
	int status = 3;
	if (start(d, &b->o, err, sizeof(err)) != 0) {
		fprintf(stderr, "qdbench-dpdk: %s\n", err);
	} else {
		b->w = d->workers[0];
		b->stop = &d->stop;
		for (uint32_t i = 0; i < b->o.connections; i++) {
			b->slots[i] = (struct slot){.b = b, .index = i};
			/* popped from the top: slot 0 opens first */
			b->free_stack[b->o.connections - 1 - i] = i;
		}
		b->free_count = b->o.connections;
		int rc = b->o.mode == MODE_QUERY ? qdb_trino_init(b, err, sizeof(err)) : 0;
		if (rc != 0)
			fprintf(stderr, "qdbench-dpdk: %s\n", err);
		else
			rc = rte_eal_remote_launch(bench_main, b, b->w->conf.lcore_id);
		if (rc != 0 && err[0] == '\0') {
			fprintf(stderr, "qdbench-dpdk: launch: %s\n", rte_strerror(-rc));
		} else if (rc == 0) {
			run(d, b);
			FILE *f = b->o.json != NULL ? fopen(b->o.json, "we") : stdout;
			if (f == NULL) {
				fprintf(stderr, "qdbench-dpdk: %s: %s\n", b->o.json, strerror(errno));
				f = stdout;
			}
			print_json(f, b);
			if (f != stdout)
				fclose(f);
			status = work_done(b) > 0 && sum_errors(b) == 0 ? 0 : 1;
			if (b->errors[ERR_unresolved] > 0)
				fprintf(stderr, "qdbench-dpdk: no ARP answer from the server within "
					"%u ms\n", RESOLVE_WAIT_MS);
			if (b->errors[ERR_unchecked] > 0)
				fprintf(stderr, "qdbench-dpdk: qdispatchd did not health-check every "
					"--coordinator within %u ms (its coordinator lines, "
					"health.interval_ms?)\n", CHECK_WAIT_MS);
		}
	}
	qdb_trino_free(b);
	stop(d);
	rte_eal_cleanup();
	return status;
}
