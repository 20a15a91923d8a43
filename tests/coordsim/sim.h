/*
 * sim.h: the shared types of qdcoordsim, the Trino/Presto coordinator
 * simulator (see coordsim.c for the process and docs/coordsim.md for the
 * protocol it speaks).
 *
 * The program is split by job: coordsim.c owns the process (options, the
 * epoll loop, the deadline heap, connections and HTTP/1.1), sim_query.c owns
 * the coordinators' state (query table, ids, directives, page sequence,
 * counters) and writes the JSON answers, sim_body.c holds the bounded string
 * builder and the generator that streams result rows. Everything runs on one
 * thread; no function here blocks.
 */
#ifndef QD_COORDSIM_SIM_H
#define QD_COORDSIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include <http_parser.h>

#define SIM_VERSION "qdcoordsim-0.2"

#define SIM_LISTEN_MAX 64
#define SIM_USER_MAX_BYTES 128	 /* user and source names kept (longer: cut) */
#define SIM_HOST_MAX_BYTES 256
#define SIM_QUERY_ID_BYTES 27	 /* YYYYMMdd_HHmmss_NNNNN_xxxxx */
#define SIM_SLUG_BYTES 17	 /* 'y' + 16 hex digits */
#define SIM_JSON_MAX_BYTES (16u * 1024 * 1024) /* largest generated JSON text */
#define SIM_EXTRA_HEADERS_BYTES 640 /* extra response header lines */
#define SIM_NO_TIMER UINT32_MAX

/* ---- deadline heap (coordsim.c) ------------------------------------------ */

enum sim_timer_kind {
	SIM_TIMER_CONN = 1,	 /* a long poll ends */
	SIM_TIMER_QUERY = 2,	 /* a query changes phase, is abandoned or expires */
};

/* One schedulable deadline, embedded in its owner. */
struct sim_timer {
	uint64_t deadline_ms;
	uint32_t heap_pos;	 /* SIM_NO_TIMER: not scheduled */
	uint32_t index;		 /* owner: connection or query slot */
	enum sim_timer_kind kind;
};

struct sim;
void sim_timer_set(struct sim *s, struct sim_timer *t, uint64_t deadline_ms);
void sim_timer_cancel(struct sim *s, struct sim_timer *t);

/* ---- strings and bodies (sim_body.c) ------------------------------------- */

/* A growable text with a hard size limit; after an overflow every append is
 * dropped and <overflow> stays set. */
struct sim_sb {
	char *p;
	size_t len;
	size_t cap;
	size_t max;
	bool overflow;
};

void sim_sb_init(struct sim_sb *b, size_t max);
void sim_sb_free(struct sim_sb *b);
void sim_sb_add(struct sim_sb *b, const char *s, size_t n);
void sim_sb_str(struct sim_sb *b, const char *s);
void sim_sb_printf(struct sim_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append <s> as a JSON string literal, quotes included. */
void sim_sb_json(struct sim_sb *b, const char *s, size_t n);

/*
 * A response body: <text> (owned, malloc'ed) whose first <text_split> bytes
 * are sent, then <rows_count> generated rows starting at row <rows_first>,
 * then the rest of <text>. Only the position is kept while it is sent, so a
 * 128 MB page costs a few bytes of state.
 */
struct sim_body {
	char *text;
	size_t text_len;
	size_t text_split;
	uint64_t rows_first;
	uint64_t rows_count;
	uint64_t row_bytes;
	/* sending position */
	uint64_t total;		 /* bytes in the whole body */
	uint64_t sent;		 /* bytes produced so far */
	uint64_t row;		 /* row being produced, relative to rows_first */
	uint64_t row_pos;	 /* byte inside that row's JSON */
};

/* Bytes of the JSON array elements of <count> rows of <row_bytes> each
 * (`["v"]` joined by commas, no brackets around). */
uint64_t sim_rows_json_bytes(uint64_t count, uint64_t row_bytes);
/* Take ownership of <text> and set the body up; rows_count 0: text only. */
void sim_body_set(struct sim_body *b, char *text, size_t text_len, size_t text_split,
		  uint64_t rows_first, uint64_t rows_count, uint64_t row_bytes);
void sim_body_free(struct sim_body *b);
bool sim_body_active(const struct sim_body *b);
/* Produce up to <cap> more bytes of the body into <out>; returns the count. */
size_t sim_body_read(struct sim_body *b, char *out, size_t cap);
/* The value of row <row> with <row_bytes> bytes: byte k of it, for tests. */
char sim_row_byte(uint64_t row, uint64_t k);

/* ---- requests and responses ---------------------------------------------- */

enum sim_flavour {
	SIM_FLAVOUR_TRINO = 0,	 /* X-Trino-* headers (or none) */
	SIM_FLAVOUR_PRESTO,	 /* X-Presto-* headers */
};

/* What the HTTP layer hands a handler: a complete request. */
struct sim_req_view {
	enum http_method method;
	const char *path;	 /* without the query */
	const char *query;	 /* after '?', "" if none */
	const char *host;	 /* Host header, or the listener address */
	const char *user;	 /* X-Trino-User / X-Presto-User, "" if absent */
	const char *source;
	const char *client_tags; /* X-Trino-Client-Tags (comma separated), "" if absent */
	const char *fwd_host;	 /* X-Forwarded-Host, "" if absent */
	const char *fwd_proto;
	const char *fwd_port;
	const char *body;
	size_t body_len;
	bool has_user;
	bool has_source;
	bool forwarded;		 /* any X-Forwarded-* or Forwarded header */
	enum sim_flavour flavour;
	unsigned int coord;	 /* index of the address the request came to */
	bool may_wait;		 /* false when the long poll is over */
};

/* What a handler answers. */
struct sim_resp {
	unsigned int status;
	const char *content_type; /* NULL: application/json */
	char headers[SIM_EXTRA_HEADERS_BYTES]; /* extra "Name: value\r\n" lines */
	size_t headers_len;
	struct sim_body body;	 /* empty: no body */
	bool no_body;		 /* HEAD, 204: no body even if Content-Length */
	bool close;		 /* close the connection after this answer */
	/* Long poll: answer later. The HTTP layer calls the handler again at
	 * wait_until_ms with may_wait false. */
	bool wait;
	uint64_t wait_until_ms;
	/* A coordinator to kill after this answer is queued (-1: none). */
	int kill_coord;
};

/* ---- coordinators and queries (sim_query.c) ----------------------------- */

/* Counts per user or source: queries running now and the maximum seen. */
struct sim_name_count {
	char name[SIM_USER_MAX_BYTES + 1];
	uint32_t cur;
	uint32_t max;
	bool used;
};

struct sim_name_map {
	struct sim_name_count *e; /* cap slots, allocated on first use */
	uint32_t cap;		 /* power of two, > limit */
	uint32_t used;
	uint32_t limit;		 /* distinct names; then "(other)" */
};

struct sim_counters {
	uint64_t posts;		 /* POST /v1/statement received */
	uint64_t submitted;	 /* queries created */
	uint64_t finished;
	uint64_t failed;	 /* FAILED by directive (not canceled/abandoned) */
	uint64_t canceled;
	uint64_t abandoned;
	uint64_t deletes;	 /* DELETE requests that named a known query */
	uint64_t rejected;	 /* POSTs answered by status= or a full table */
	uint64_t lost;		 /* live queries forgotten by a kill */
	uint64_t running_now;	 /* from POST to a final state */
	uint64_t max_running;
	uint64_t queued_now;	 /* in state QUEUED */
	uint64_t waiting_now;	 /* waiting for the state store's admission (not running) */
	struct sim_name_map by_user;
	struct sim_name_map by_source;
};

/* One coordinator address. */
struct sim_coord {
	struct sockaddr_in addr;
	char name[32];		 /* "IP:PORT" */
	int listen_fd;		 /* -1 while killed */
	bool alive;
	char suffix[6];		 /* 5 base-32 characters of its query ids */
	uint32_t day;		 /* UTC day of <counter> */
	uint32_t counter;	 /* queries created on <day> */
	uint64_t start_ms;	 /* for /v1/info uptime; reset by a revive */
	struct sim_counters c;
};

enum sim_qstate {
	SIM_Q_QUEUED = 0,
	SIM_Q_RUNNING,		 /* data not ready yet, or pages being fetched */
	SIM_Q_FINISHED,
	SIM_Q_FAILED,		 /* by directive */
	SIM_Q_CANCELED,		 /* FAILED with USER_CANCELED */
	SIM_Q_ABANDONED,	 /* FAILED with ABANDONED_QUERY */
};

enum sim_fail_at {
	SIM_FAIL_NONE = 0,
	SIM_FAIL_SUBMIT,
	SIM_FAIL_QUEUED,
	SIM_FAIL_RUNNING,
};

/* The directives of one statement. */
struct sim_directives {
	uint64_t rows;
	uint64_t page_rows;
	uint64_t row_bytes;
	uint64_t queue_ms;
	uint64_t run_ms;
	uint64_t page_ms;
	enum sim_fail_at fail;
	int error;		 /* index in the error table, -1: default */
	unsigned int status;	 /* 0: none */
	uint64_t status_count;	 /* 0: every time */
	char bad[160];		 /* why the directives were refused, "" if fine */
};

/* Which URI family a page token belongs to. */
enum sim_uri_kind {
	SIM_URI_NONE = 0,
	SIM_URI_QUEUED,
	SIM_URI_EXECUTING,
};

/* Enough to write one QueryResults page again, identically. */
struct sim_page {
	enum sim_uri_kind kind;	 /* family of the URI that was answered */
	uint64_t token;		 /* token of the URI that was answered */
	enum sim_qstate state;	 /* state shown */
	enum sim_uri_kind next_kind; /* NONE: no nextUri (a final page) */
	uint64_t next_token;
	bool columns;
	int64_t data_page;	 /* -1: no data */
	uint64_t elapsed_ms;
	uint64_t queued_ms;
};

/* Special statements: answered with an update type and session headers. */
enum sim_stmt {
	SIM_STMT_SELECT = 0,
	SIM_STMT_USE,
	SIM_STMT_SET_SESSION,
	SIM_STMT_RESET_SESSION,
};

struct sim_query {
	bool used;
	uint32_t gen;		 /* bumped when the slot is reused */
	uint32_t hash_next;	 /* chain of the id hash, SIM_NO_TIMER ends */
	uint32_t hist_prev;	 /* list of final queries, oldest first */
	uint32_t hist_next;
	unsigned int coord;
	char id[SIM_QUERY_ID_BYTES + 1];
	char slug[SIM_SLUG_BYTES + 1];
	char user[SIM_USER_MAX_BYTES + 1];
	char source[SIM_USER_MAX_BYTES + 1];
	char tags[SIM_USER_MAX_BYTES + 1]; /* client tags, comma separated */
	uint32_t user_slot[2];	 /* in coord and total maps, SIM_NO_TIMER: none */
	uint32_t source_slot[2];
	enum sim_flavour flavour;
	enum sim_qstate state;
	bool counted;		 /* counted in running_now (all but fail=submit) */
	bool store_wait;	 /* --admission-store: not admitted yet (in waiting_now) */
	bool store_put;		 /* its record is in the store (REMOVE it at the end) */
	uint32_t wait_prev;	 /* list of store_wait queries, oldest first */
	uint32_t wait_next;
	enum sim_stmt stmt;
	char stmt_arg[192];	 /* USE catalog.schema / SET SESSION k=v argument */
	char *sql;		 /* first --query-text-max bytes of the statement */
	size_t sql_len;
	struct sim_directives d;
	uint64_t created_ms;
	uint64_t created_wall_ms;
	uint64_t dispatched_ms;	 /* end of QUEUED (planned or reached) */
	uint64_t ended_ms;	 /* reached a final state (0: not yet) */
	uint64_t last_poll_ms;
	uint64_t pages_total;	 /* data pages */
	uint64_t pages_served;	 /* data pages handed out so far */
	struct sim_page last;	 /* the page answered last */
	struct sim_timer timer;
};

/* ---- options and the process --------------------------------------------- */

enum sim_forwarded {
	SIM_FWD_REJECT = 0,	 /* stock Trino: 406 */
	SIM_FWD_IGNORE,
	SIM_FWD_ACCEPT,		 /* http-server.process-forwarded=true */
};

struct sim_options {
	struct sockaddr_in listen[SIM_LISTEN_MAX];
	unsigned int listen_count;
	uint32_t conns_max;
	uint32_t request_max_bytes;
	uint32_t idle_timeout_s;
	uint32_t max_queries;
	uint32_t history;
	uint32_t history_s;
	uint32_t client_timeout_s;
	uint32_t long_poll_ms;
	uint32_t max_names;
	uint32_t query_text_max;
	uint32_t status_memory;
	uint64_t seed;
	bool seed_set;
	enum sim_forwarded forwarded;
	char environment[64];
	bool verbose;
	/* --admission-store: the openLooKeng (pre-1.3) HA admission (sim_store.c) */
	bool store_set;
	struct sockaddr_in store;
	uint32_t store_limit;	 /* running queries per source (resource group) */
	uint32_t store_retry_ms; /* how often waiting queries are looked at again */
	uint32_t store_lock_wait_ms; /* the lock's tryLock wait */
};

/* The state store client: one blocking connection, a small read buffer. */
#define SIM_STORE_RBUF_BYTES 65536
#define SIM_STORE_GROUPS_MAX 32	 /* distinct waiting sources looked at per pass */
struct sim_store {
	int fd;			 /* -1: not connected */
	char rbuf[SIM_STORE_RBUF_BYTES];
	size_t rpos;
	size_t rlen;
	uint32_t wait_head;	 /* store_wait queries, oldest first */
	uint32_t wait_tail;
	uint64_t next_pass_ms;	 /* waiting queries are looked at again then */
	struct {
		uint64_t passes;	 /* lock round trips (submissions and retries) */
		uint64_t admitted;
		uint64_t refused;	 /* a pass that left a query waiting */
		uint64_t lock_timeouts;
		uint64_t errors;	 /* I/O or protocol errors (the connection is redone) */
		uint64_t records_read;
		uint64_t bytes_read;
		uint64_t removes;
		uint64_t pass_us_total;
		uint64_t pass_us_max;
	} c;
};

/* A remembered statement text for status=NNN status_count=N. */
struct sim_status_memo {
	uint64_t hash;
	unsigned int coord;
	uint64_t seen;
	bool used;
};

struct sim_conn;

struct sim {
	struct sim_options opt;
	int epoll_fd;
	int signal_fd;
	struct sim_coord coords[SIM_LISTEN_MAX];
	struct sim_conn *conns;	 /* opt.conns_max slots */
	char *bodies;		 /* opt.conns_max * opt.request_max_bytes */
	uint32_t *free_slots;	 /* stack of free connection indexes */
	uint32_t free_count;
	/* queries: a fixed table of max_queries + history slots */
	struct sim_query *queries;
	uint32_t query_slots;
	uint32_t *query_free;	 /* stack of free query slots */
	uint32_t query_free_count;
	uint32_t *id_hash;	 /* heads of the id chains */
	uint32_t id_hash_mask;
	uint32_t live_queries;	 /* not final */
	uint32_t hist_count;	 /* final, kept for GET /v1/query */
	uint32_t hist_head;	 /* oldest final query */
	uint32_t hist_tail;
	struct sim_status_memo *status_memo;
	struct sim_counters total;
	struct sim_store store;
	/* deadlines */
	struct sim_timer **heap;
	uint32_t heap_len;
	uint32_t heap_cap;
	uint64_t rng;
	uint64_t start_ms;
	uint64_t now_ms;
	bool stop;
	struct {
		uint64_t conns_accepted;
		uint64_t conns_refused;
		uint64_t conns_idle_closed;
		uint64_t requests;
		uint64_t responses_2xx;
		uint64_t responses_other;
	} io;
};

void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t sim_random(struct sim *s);
uint64_t sim_wall_ms(void);

/* sim_query.c */
int sim_queries_init(struct sim *s);
void sim_queries_fini(struct sim *s);
void sim_coord_start(struct sim *s, unsigned int coord);
/* Route a complete request; fills <resp>. */
void sim_handle(struct sim *s, const struct sim_req_view *r, struct sim_resp *resp);
void sim_query_timer(struct sim *s, uint32_t slot);
/* Forget every query of <coord> (a kill). */
void sim_coord_forget(struct sim *s, unsigned int coord);
/* Parse the directives of <sql>; exposed for the tests. */
void sim_parse_directives(const char *sql, size_t len, struct sim_directives *d);

/* The state store admitted <q> (sim_store.c calls it): it starts running. */
void sim_query_admitted(struct sim *s, struct sim_query *q);

/* sim_store.c: the openLooKeng (pre-1.3) HA admission path, --admission-store */
int sim_store_open(struct sim *s);
void sim_store_close(struct sim *s);
/* One admission round trip: lock, every running query's record, admit the
 * waiting queries that fit their source's limit (oldest first), unlock. */
void sim_store_pass(struct sim *s);
/* sim_store_pass() if queries wait and the retry interval is over. */
void sim_store_tick(struct sim *s);
/* <q> ended: remove its record. */
void sim_store_remove(struct sim *s, struct sim_query *q);
/* The "store" object of /v1/simulator/stats (without the key). */
void sim_store_stats(struct sim *s, struct sim_sb *b);

/* coordsim.c: kill and revive listeners, for the /v1/simulator endpoints */
int sim_coord_find(struct sim *s, const char *ip_port);
int sim_coord_kill(struct sim *s, unsigned int coord, int keep_conn);
int sim_coord_revive(struct sim *s, unsigned int coord);

#endif
