/*
 * Durable append-only log (write-ahead log) on io_uring.
 *
 * The seed log and the state log of qdispatchd are instances of this log:
 * records go to segment files in one directory, each record checksummed
 * (CRC32C over header and payload). Appends are staged in memory and
 * written by group commit: every record staged while the previous batch
 * was on its way to disk goes out in one write from a registered buffer,
 * linked (IOSQE_IO_LINK) to one fdatasync. The caller learns that a record
 * is durable from a completion it polls for. Snapshots let the caller fold
 * the log into one file and drop the segments it covers.
 *
 * Threading: a log is owned by one thread (the control-plane thread that
 * owns the io_uring). No function here may be called concurrently on the
 * same log; nothing here takes a lock. Data-plane lcores must hand records
 * to that thread (an rte_ring), never call this API.
 *
 * The format on disk, the recovery rules and the error behaviour are in
 * docs/wal.md.
 */
#ifndef QD_WAL_H
#define QD_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard limits: open-time options are checked against these. */
#define QD_WAL_SEGMENT_BYTES_MIN (64u * 1024)
#define QD_WAL_SEGMENT_BYTES_MAX (1024u * 1024 * 1024)
#define QD_WAL_BATCH_BYTES_MIN (4u * 1024)
#define QD_WAL_BATCH_BYTES_MAX (16u * 1024 * 1024)
#define QD_WAL_BATCHES_MIN 2u
#define QD_WAL_BATCHES_MAX 16u
#define QD_WAL_RECORDS_MAX (1u << 20)   /* records queued, in flight or unreaped */
#define QD_WAL_RECORD_BYTES_MAX (1u << 20) /* payload of one record */
#define QD_WAL_SNAPSHOT_BYTES_MAX (1024u * 1024 * 1024)
#define QD_WAL_SEGMENTS_MAX 1024u       /* segment files in one log */
#define QD_WAL_PATH_MAX 256u            /* directory path, including the NUL */
#define QD_WAL_MSG_MAX 512u             /* error and recovery messages */

/* Defaults used for an option left at 0. */
#define QD_WAL_SEGMENT_BYTES_DEFAULT (16u * 1024 * 1024)
#define QD_WAL_BATCH_BYTES_DEFAULT (256u * 1024)
#define QD_WAL_BATCHES_DEFAULT 4u
#define QD_WAL_RECORDS_DEFAULT 4096u
#define QD_WAL_RECORD_BYTES_DEFAULT (64u * 1024)
#define QD_WAL_SNAPSHOT_BYTES_DEFAULT (64u * 1024 * 1024)

/* Record types at or above this value belong to the library. */
#define QD_WAL_TYPE_RESERVED 0xff00u

/* Bytes a record takes on disk in addition to its payload. */
#define QD_WAL_RECORD_OVERHEAD 32u
/* Bytes of the header at the start of each segment file; records follow. */
#define QD_WAL_SEGMENT_OVERHEAD 32u

/* Flags for qd_wal_opts.flags. */
#define QD_WAL_F_CREATE 0x1u       /* create the directory if it does not exist */
#define QD_WAL_F_SKIP_CORRUPT 0x2u /* recovery drops damaged ranges instead of refusing */

/*
 * Options for qd_wal_open(). Zero-initialise and set what you need: a
 * field left at 0 takes its default above.
 */
struct qd_wal_opts {
	uint32_t flags;              /* QD_WAL_F_* */
	uint32_t segment_bytes;      /* size of a segment file, preallocated */
	uint32_t batch_bytes;        /* size of one registered write buffer */
	uint32_t batches;            /* number of write buffers */
	uint32_t records_max;        /* bound on records not yet reaped by qd_wal_poll() */
	uint32_t record_bytes_max;   /* largest payload qd_wal_append() accepts */
	uint64_t snapshot_bytes_max; /* largest snapshot qd_wal_snapshot() accepts */
};

/*
 * One completion from qd_wal_poll(): the fate of one appended record, in
 * append order. <status> is 0 when the record is durable (written and
 * fdatasync'ed), or a negative errno when it is not and never will be:
 * -ENOSPC (no room for a new segment; the log stays usable and the sequence
 * number is reused), or the fatal error of the log (-EIO and the like).
 */
struct qd_wal_cpl {
	uint64_t seq;
	uint64_t user_data; /* as given to qd_wal_append() */
	int32_t status;
};

/* What recovery found, filled by qd_wal_open(). */
struct qd_wal_recovery {
	uint64_t snapshot_seq;    /* last record folded into the snapshot; 0 = no snapshot */
	uint64_t first_seq;       /* first record after the snapshot; 0 = none */
	uint64_t last_seq;        /* last record in the log (or the snapshot); 0 = empty */
	uint64_t records;         /* records verified (including those under the snapshot) */
	uint32_t segments;        /* segment files kept */
	uint32_t segments_obsolete; /* segments under the snapshot, deleted */
	bool clean_close;         /* the log ends with the mark of qd_wal_close() */
	uint64_t truncated_bytes; /* torn tail zeroed: bytes up to the last non-zero one */
	uint64_t truncated_off;   /* where the torn tail started, in the last segment */
	uint64_t skipped_ranges;  /* QD_WAL_F_SKIP_CORRUPT: damaged ranges dropped */
	uint64_t skipped_seqs;    /* sequence numbers missing because of them */
	uint64_t skipped_bytes;
	char msg[QD_WAL_MSG_MAX]; /* what was truncated or skipped, for the log; "" if nothing */
};

/* Counters, monotonic since qd_wal_open(). */
struct qd_wal_stats {
	uint64_t appends;          /* records accepted by qd_wal_append() */
	uint64_t appends_full;     /* refused with -EAGAIN: queue or buffers full */
	uint64_t appends_too_big;  /* refused with -EMSGSIZE */
	uint64_t records_durable;
	uint64_t records_failed;   /* completed with an error status */
	uint64_t writes;           /* batch writes submitted to the ring */
	uint64_t fsyncs;           /* batch fdatasyncs submitted to the ring */
	uint64_t bytes_written;    /* by batch writes */
	uint64_t batch_records_max; /* most records in one batch */
	uint64_t rotations;        /* segment files created */
	uint64_t enospc;           /* segment creations refused for lack of space */
	uint64_t snapshots;
	uint64_t segments_deleted; /* by compaction */
	uint32_t segments;         /* segment files now */
	bool registered_buffers;   /* false: the kernel refused them, plain writes are used */
};

/* Called by qd_wal_replay() with the snapshot; return 0 to go on. */
typedef int (*qd_wal_snapshot_fn)(void *arg, uint64_t seq, const void *data, size_t len);
/* Called by qd_wal_replay() for each record after the snapshot; return 0 to go on. */
typedef int (*qd_wal_record_fn)(void *arg, uint64_t seq, uint16_t type, const void *payload,
		uint32_t len);

struct qd_wal;

/*
 * Open the log in directory <dir>, recover it and get it ready to append.
 * <opts> may be NULL for all defaults. <rec>, if not NULL, gets what
 * recovery found. Recovery verifies every checksum; it zeroes a torn tail
 * and refuses damage anywhere else unless QD_WAL_F_SKIP_CORRUPT is set.
 * Returns the log, or NULL with errno set and a message in <msg> (which may
 * be NULL) naming the file and offset where it applies:
 * EBADMSG (damage), EBUSY (another process has the log open), EINVAL (bad
 * options), ENOSPC, EIO, ENOMEM and whatever open(2) and io_uring say.
 */
struct qd_wal *qd_wal_open(const char *dir, const struct qd_wal_opts *opts,
		struct qd_wal_recovery *rec, char *msg, size_t msg_size);

/*
 * Deliver the recovered state: the snapshot to <snap> (if there is one and
 * <snap> is not NULL), then every record after it, in order, to <record>.
 * Records of the library's own types are not delivered. Allowed once,
 * before the first qd_wal_append(). A callback returning non-zero stops the
 * replay, and its value is returned. Returns 0, -EBUSY (appends already
 * made), -EIO (a checksum that verified at open fails now) or -ENOMEM.
 */
int qd_wal_replay(struct qd_wal *w, qd_wal_snapshot_fn snap, qd_wal_record_fn record,
		void *arg);

/*
 * Stage a record of type <type> (below QD_WAL_TYPE_RESERVED) with <len>
 * bytes of <payload>; it is copied. <user_data> comes back in its
 * completion. The sequence number it gets (consecutive from 1) is stored in
 * <seq> if not NULL. Nothing is written until qd_wal_poll() or qd_wal_sync().
 * Returns 0; -EMSGSIZE when <len> exceeds record_bytes_max; -EAGAIN when
 * records_max records are unreaped or every buffer is full (poll, then
 * retry); -EINVAL for a reserved type; or the fatal error of the log.
 */
int qd_wal_append(struct qd_wal *w, uint16_t type, const void *payload, uint32_t len,
		uint64_t user_data, uint64_t *seq);

/*
 * Move the log on without blocking: reap finished I/O, submit the staged
 * records as one batch when no batch is in flight, and copy up to
 * <cpl_max> completions, oldest first, to <cpl>. Completions not copied
 * stay for the next call. Returns the number copied.
 */
unsigned int qd_wal_poll(struct qd_wal *w, struct qd_wal_cpl *cpl, unsigned int cpl_max);

/*
 * Block up to <timeout_ms> (< 0: no limit) until the batch in flight
 * finishes, submitting staged records first. Returns 0 (progress made or
 * nothing in flight), -ETIME, or the fatal error of the log.
 */
int qd_wal_wait(struct qd_wal *w, int timeout_ms);

/*
 * Block until every record appended so far is durable or failed. Their
 * completions stay queued for qd_wal_poll(). Returns 0 when all are
 * durable, else the error of the first that failed.
 */
int qd_wal_sync(struct qd_wal *w);

/*
 * Write a snapshot: <len> bytes of <data> holding the caller's state after
 * applying every record up to <seq>, which must be durable already. The
 * file is written under a temporary name, fsync'ed, renamed and the
 * directory fsync'ed; then segments holding only records up to <seq> and
 * older snapshots are deleted. Blocks for that I/O. Returns 0; -EINVAL
 * (<seq> not durable, or older than the current snapshot); -EMSGSIZE (over
 * snapshot_bytes_max); -ENOSPC and other errors of the write, after which
 * the log goes on unchanged; or the fatal error of the log (an fsync that
 * failed makes the log fail).
 */
int qd_wal_snapshot(struct qd_wal *w, uint64_t seq, const void *data, size_t len);

/*
 * Close the log: wait for appended records, then, if the log is healthy,
 * write a close mark so that damage in the last records is later told
 * apart from a torn write. Completions not reaped are lost. Returns 0 or
 * the error that made records fail. <w> is freed in every case.
 */
int qd_wal_close(struct qd_wal *w);

/* Highest sequence number known durable; 0 when none. */
uint64_t qd_wal_durable_seq(const struct qd_wal *w);

/* Sequence number the next append will get. */
uint64_t qd_wal_next_seq(const struct qd_wal *w);

/* 0 while the log is healthy, else the negative errno that made it fail. */
int qd_wal_error(const struct qd_wal *w);

/*
 * The io_uring file descriptor: readable when a completion is waiting, for
 * the owner's epoll loop. Call qd_wal_poll() when it is.
 */
int qd_wal_fd(const struct qd_wal *w);

void qd_wal_stats_get(const struct qd_wal *w, struct qd_wal_stats *stats);

/*
 * Fault injection, for tests: make the next event of kind <fault> report
 * <err> (a negative errno) instead of its real result. Write and fsync
 * faults replace the result of the next completion of that kind;
 * segment faults fail the next segment preallocation.
 */
enum qd_wal_fault {
	QD_WAL_FAULT_WRITE,
	QD_WAL_FAULT_FSYNC,
	QD_WAL_FAULT_SEGMENT,
};

void qd_wal_inject_fault(struct qd_wal *w, enum qd_wal_fault fault, int err);

#endif /* QD_WAL_H */
