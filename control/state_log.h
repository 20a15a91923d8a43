/*
 * The state log: the queries qdispatchd routes, durable on disk (lib/wal.h), so a
 * restarted dispatcher still sends every follow-up of a query that was running to its
 * coordinator and holds the query's admission slots exactly once.
 *
 * Workers never touch the disk: each hands fixed-size records (dataplane/state_rec.h)
 * to the main lcore over its own single-producer ring; the main lcore appends them to
 * the log (group commit: one write and one fdatasync per batch) and, every so often,
 * writes a snapshot of the live routes so the log stays small. On start, before the
 * workers run, the snapshot and the records after it are replayed into the route table,
 * and the queries still running get their admission slots back.
 */
#ifndef QD_STATE_LOG_H
#define QD_STATE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct qd_daemon;
struct rte_ring;

#define QD_SLOG_RING_SIZE 16384u   /* records per worker ring */
#define QD_SLOG_DRAIN_MAX 8192u    /* records taken from the rings per service call */

struct qd_slog_stats {
	uint64_t appended;         /* records given to the log */
	uint64_t durable;          /* completions that said durable */
	uint64_t failed;           /* completions with an error */
	uint64_t deferred;         /* the log was busy: records left in the rings for later */
	uint64_t snapshots;
	uint64_t snapshot_failures;
	uint64_t replayed;         /* records (and snapshot entries) replayed at start */
	uint64_t restored_routes;  /* queries routed again after the restart */
	uint64_t restored_aliases;
	uint64_t restored_slots;   /* of them, holding admission slots again */
	uint64_t skipped_coordinator; /* replayed routes whose coordinator is not configured */
	uint64_t skipped_group;    /* replayed routes whose group is gone: routed, no slot */
	uint64_t skipped_full;     /* the route table was full */
};

struct qd_slog;

/* Open <state.dir>/state, replay it into d->routes and d->admission, and make one ring per
 * worker (d->slog, rings in qd_slog_ring()). A no-op returning 0 without state.dir or
 * without a route table. Refuses to start (negative errno, message naming the file and
 * offset) when the log is damaged anywhere but its torn tail. Main lcore, before the
 * workers start. */
int qd_slog_open(struct qd_daemon *d, char *err, size_t err_len);
/* The ring worker <i> writes into, or NULL when there is no state log. */
struct rte_ring *qd_slog_ring(const struct qd_daemon *d, unsigned int i);
/* Drain the rings into the log, move the I/O on, snapshot when due. Main loop. */
void qd_slog_service(struct qd_daemon *d);
/* After the workers stopped: everything in the rings appended and durable, log closed. */
void qd_slog_close(struct qd_daemon *d);
/* The "state_log" object of status: null without a state log. */
json_t *qd_slog_json(const struct qd_daemon *d);

#endif /* QD_STATE_LOG_H */
