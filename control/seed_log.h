/*
 * The seed log: the changes an operator makes through qdctl that must
 * survive a restart (coordinators added and removed at run time, drained
 * flags, the resource-groups file and its content hash, the "config epoch"),
 * kept in a durable log (lib/wal.h) in <state.dir>/seed.
 *
 * It belongs to the main lcore (the control plane): the data plane never
 * sees it. At start-up qd_seed_open() replays it onto the coordinator table
 * the config filled, before the workers start. At run time a control command
 * first makes its change durable with qd_seed_append() (which blocks until
 * the record is fdatasync'ed, at most QD_SEED_WAIT_MS), and only then applies
 * it with qd_seed_apply(), the same function replay uses, so memory and disk
 * cannot tell two stories. Without a state directory every call succeeds and
 * nothing is kept (qd_seed_durable() says so, and the replies carry
 * "durable": false).
 *
 * Record payloads and the snapshot are small versioned binary structures,
 * described in docs/wal.md ("The seed log of qdispatchd").
 */
#ifndef QD_SEED_LOG_H
#define QD_SEED_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qd_daemon;
struct qd_wal;

#define QD_SEED_WAIT_MS 5000        /* an append not durable by then fails */
#define QD_SEED_COMPACT_RECORDS 256 /* records after the snapshot that trigger a new one */
#define QD_SEED_PATH_MAX 256        /* groups file path, including the NUL */
#define QD_SEED_VERSION 1           /* of every payload and of the snapshot */

/* WAL record types of the seed log. */
enum qd_seed_type {
	QD_SEED_COORD_ADD = 1,     /* ip, port, weight: append (or un-remove) */
	QD_SEED_COORD_REMOVE = 2,  /* ip, port: removed flag */
	QD_SEED_COORD_DRAIN = 3,   /* ip, port: drained flag set */
	QD_SEED_COORD_UNDRAIN = 4, /* ip, port: drained flag cleared */
	QD_SEED_GROUPS = 5,        /* path + content hash of the resource-groups file */
	/* 6..15 reserved for the peers of active-active */
};

/* One change, decoded. */
struct qd_seed_rec {
	uint16_t type;           /* enum qd_seed_type */
	uint16_t port;           /* coordinator records */
	uint32_t ip_be;
	uint16_t weight;         /* QD_SEED_COORD_ADD: 1..1000 */
	uint64_t hash;           /* QD_SEED_GROUPS: qd_seed_file_hash() of the file */
	char path[QD_SEED_PATH_MAX]; /* QD_SEED_GROUPS */
};

/*
 * Open (create) <state.dir>/seed, recover it and replay it onto d->coords
 * and d->cfg. Call after the coordinator table is filled from the config and
 * before the workers start. Returns 0 (also without a state directory), or a
 * negative errno with a message naming the file and offset of damage.
 */
int qd_seed_open(struct qd_daemon *d, char *err, size_t err_len);

/* Make <r> durable; returns 0 once it is (or at once without a state
 * directory), else a negative errno and a message; then the change must not
 * be applied. May block up to QD_SEED_WAIT_MS. */
int qd_seed_append(struct qd_daemon *d, const struct qd_seed_rec *r, char *err, size_t err_len);

/* Apply a change to d->coords / d->cfg, as replay does (main lcore only).
 * Returns 0, or -ENOENT (the coordinator is not in the table), -ENOSPC
 * (table full) or -EINVAL (malformed). */
int qd_seed_apply(struct qd_daemon *d, const struct qd_seed_rec *r);

/* Record the resource-groups file <path> as the configured one (after a
 * successful reload): hashes it and appends a QD_SEED_GROUPS record. */
int qd_seed_record_groups(struct qd_daemon *d, const char *path, char *err, size_t err_len);

/* True when changes are kept across restarts (a state directory is set). */
bool qd_seed_durable(const struct qd_daemon *d);

/* FNV-1a 64 of the file's content: the config epoch of a groups file. */
int qd_seed_file_hash(const char *path, uint64_t *hash);

/* Records after the last snapshot; for tests and the docs' numbers. */
uint64_t qd_seed_records(const struct qd_daemon *d);

/* The underlying log, for tests (fault injection); NULL without one. */
struct qd_wal *qd_seed_wal(struct qd_daemon *d);

/* Close the log at shutdown (d->seed becomes NULL). */
void qd_seed_close(struct qd_daemon *d);

#endif /* QD_SEED_LOG_H */
