/*
 * Fault injection in the data plane's port I/O: loss, duplication,
 * reordering and delay (with jitter), per worker and per direction.
 *
 * This kernel has no netem, so the TCP tests impair the link here, between
 * the port and the packet path: on RX right after rte_eth_rx_burst, on TX
 * right before rte_eth_tx_burst. Everything is off by default and then costs
 * the caller one predictable branch per burst (qd_fault_active). When on,
 * every decision comes from a per-worker, per-direction PRNG seeded from
 * `fault.seed` and the lcore id, and time comes from the caller, so the same
 * seed and the same frames give the same decisions (a failing run replays,
 * and the unit tests drive a fake clock).
 *
 * Per direction a frame goes through these stages in order:
 *   1. loss:        dropped (freed) with probability loss_ppm / 10^6;
 *   2. duplication: with probability dup_ppm / 10^6 an identical copy
 *                   (rte_pktmbuf_copy from <pool>) follows the original;
 *                   each then goes on alone;
 *   3. delay:       with delay_us or jitter_us set, held in a FIFO until
 *                   arrival + delay_us + uniform[0, jitter_us]; a frame never
 *                   leaves before the one ahead of it, so jitter spreads
 *                   delays without reordering (reordering is stage 4's job);
 *   4. reordering:  with probability reorder_ppm / 10^6 a frame leaving stage
 *                   3 is set aside until <reorder_gap> later frames have
 *                   passed it or <reorder_hold_us> have elapsed, whichever
 *                   comes first, then released.
 * Held frames (stages 3 and 4) live in fixed-size per-direction queues
 * (QD_FAULT_QUEUE_MAX and QD_FAULT_REORDER_MAX frames). A frame that finds
 * its queue full is passed on unharmed and counted (`queue_full`): nothing is
 * dropped silently and nothing grows without bound. Nothing is allocated
 * except the duplicates; an empty pool skips the copy (`dup_nombuf`).
 *
 * Owned by one worker lcore (not thread-safe); the counters are written with
 * relaxed atomics so that the main lcore may read them for qdctl.
 */
#ifndef QD_FAULT_H
#define QD_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_mbuf.h>
#include <rte_mempool.h>

struct qd_config;

#define QD_FAULT_PPM_MAX 1000000u          /* probabilities in parts per million */
#define QD_FAULT_DELAY_US_MAX 1000000u     /* delay_us and jitter_us: at most 1 s */
#define QD_FAULT_QUEUE_MAX 4096u           /* frames in one direction's delay FIFO */
#define QD_FAULT_REORDER_MAX 64u           /* frames set aside in one direction */
#define QD_FAULT_REORDER_GAP_MAX 64u       /* reorder_gap: 1..this many frames */
#define QD_FAULT_REORDER_HOLD_US_MAX 1000000u
#define QD_FAULT_BURST_MAX 256u            /* frames one qd_fault_apply() call takes */

enum qd_fault_dir {
	QD_FAULT_RX = 0, /* frames just read from the port, before input */
	QD_FAULT_TX = 1, /* frames about to be sent */
	QD_FAULT_DIRS = 2,
};

/* What to do to one direction. All zero = this direction untouched. */
struct qd_fault_dir_conf {
	uint32_t loss_ppm;    /* 0..QD_FAULT_PPM_MAX */
	uint32_t dup_ppm;     /* 0..QD_FAULT_PPM_MAX */
	uint32_t reorder_ppm; /* 0..QD_FAULT_PPM_MAX */
	uint32_t delay_us;    /* 0..QD_FAULT_DELAY_US_MAX, the least delay */
	uint32_t jitter_us;   /* 0..QD_FAULT_DELAY_US_MAX, uniform extra on top */
};

struct qd_fault_conf {
	struct qd_fault_dir_conf dir[QD_FAULT_DIRS];
	uint64_t seed;            /* with the lcore id and direction: the PRNG stream */
	uint32_t reorder_gap;     /* 1..QD_FAULT_REORDER_GAP_MAX; only read if reordering */
	uint32_t reorder_hold_us; /* 1..QD_FAULT_REORDER_HOLD_US_MAX; idem */
};

/*
 * Counters of one direction: X(json_name, help). The JSON for qdctl is
 * {"fault": {"rx": {<name>: n, ...}, "tx": {...}}} per worker.
 */
#define QD_FAULT_COUNTERS(X)                                                              \
	X(dropped, "frames dropped (loss)")                                               \
	X(duplicated, "copies injected (duplication)")                                    \
	X(reordered, "frames set aside to be overtaken (reordering)")                     \
	X(delayed, "frames put in the delay queue")                                       \
	X(queue_full, "frames passed on unharmed because a hold queue was full")         \
	X(dup_nombuf, "copies skipped: mbuf pool empty")                                  \
	X(dup_noroom, "copies skipped: no room left in the caller's burst array")

struct qd_fault_stats {
#define QD_X(name, help) uint64_t name;
	QD_FAULT_COUNTERS(QD_X)
#undef QD_X
	uint64_t held; /* gauge: frames held right now (delay queue + set aside) */
};

/* A held frame and when it may leave. */
struct qd_fault_slot {
	struct rte_mbuf *m;
	uint64_t due_tsc;     /* delay: release time; reorder: release time at the latest */
	uint64_t release_seq; /* reorder only: release once this many frames have passed */
};

/* One direction's state; see the stages in the comment at the top. */
struct qd_fault_path {
	bool active;                   /* any knob of this direction set */
	bool delays;                   /* stage 3 in use: delay_us or jitter_us set */
	uint32_t loss_ppm;
	uint32_t dup_ppm;
	uint32_t reorder_ppm;
	uint32_t jitter_us;
	uint64_t delay_tsc;
	/* splitmix64 states, one per stage, so that the k-th frame reaching a stage
	 * meets the same decision however the calls and the clock interleave. */
	uint64_t rng_loss;
	uint64_t rng_dup;
	uint64_t rng_jitter;
	uint64_t rng_reorder;
	/* Stage 3: FIFO of QD_FAULT_QUEUE_MAX slots (NULL unless <delays>). */
	struct qd_fault_slot *delayq;
	uint32_t delayq_head;
	uint32_t delayq_count;
	uint64_t delayq_last_due_tsc;  /* due time of the newest frame queued */
	/* Stage 4: FIFO of frames set aside (all share gap and hold, so the oldest is
	 * always the next to go). */
	uint64_t passed;               /* frames passed on normally, ever */
	uint32_t aside_head;
	uint32_t aside_count;
	struct qd_fault_slot aside[QD_FAULT_REORDER_MAX];
	struct qd_fault_stats stats;
};

struct qd_fault {
	bool active; /* any direction active: the caller's one branch */
	struct rte_mempool *pool;
	uint64_t tsc_hz;
	uint64_t reorder_hold_tsc;
	uint32_t reorder_gap;
	struct qd_fault_path path[QD_FAULT_DIRS];
};

/*
 * Fill <conf> from the `fault.*` keys of <cfg> (which the config parser has
 * already range-checked).
 */
void qd_fault_conf_from_config(struct qd_fault_conf *conf, const struct qd_config *cfg);

/* True when <conf> asks for any fault at all. */
bool qd_fault_conf_any(const struct qd_fault_conf *conf);

/*
 * Set up <f> (zeroed or finished: whatever it held is forgotten) for the
 * worker on <lcore_id>, at start-up only. <pool> gives the duplicates (may be
 * NULL when no dup_ppm is set); <tsc_hz> converts the microsecond settings to
 * the caller's clock. The delay queues are allocated here on the lcore's
 * socket, and only for directions that delay. Refuses
 * out-of-range settings and tsc_hz 0 with -EINVAL; -ENOMEM when the queue
 * cannot be allocated. With everything off <f> is inactive and nothing is
 * allocated. On failure <f> is left inactive and holds nothing.
 */
int qd_fault_init(struct qd_fault *f, const struct qd_fault_conf *conf, unsigned int lcore_id,
		  struct rte_mempool *pool, uint64_t tsc_hz);

/* Free every frame still held and the queues. <f> is inactive afterwards; a
 * zeroed or already finished <f> is accepted. */
void qd_fault_fini(struct qd_fault *f);

/* The caller's one branch per burst: false when every knob is 0. */
static inline bool
qd_fault_active(const struct qd_fault *f)
{
	return f->active;
}

/*
 * Apply direction <dir>'s faults to the <n> frames in <pkts> (an array of
 * <cap> >= n slots) at time <now_tsc>. On return <pkts> holds, in order, the
 * frames to pass on now, and the count is returned: dropped frames are freed,
 * duplicates inserted (only while room in <cap> is left), held frames kept
 * for qd_fault_release(). <n> is at most QD_FAULT_BURST_MAX. An inactive
 * direction returns <n> with <pkts> untouched.
 */
uint16_t qd_fault_apply(struct qd_fault *f, enum qd_fault_dir dir, struct rte_mbuf **pkts,
			uint16_t n, uint16_t cap, uint64_t now_tsc);

/*
 * Move to <out> (<cap> slots) the held frames of direction <dir> whose time
 * has come at <now_tsc>: set-aside frames past their hold time first, then
 * delayed frames that are due (which go through reordering on the way).
 * Returns how many were written; call it every loop iteration while active.
 */
uint16_t qd_fault_release(struct qd_fault *f, enum qd_fault_dir dir, uint64_t now_tsc,
			  struct rte_mbuf **out, uint16_t cap);

/* Frames held in direction <dir> right now (the owner's view; others read stats.held). */
uint32_t qd_fault_held(const struct qd_fault *f, enum qd_fault_dir dir);

/* Snapshot direction <dir>'s counters with relaxed loads (the main lcore's side). */
void qd_fault_stats_read(struct qd_fault_stats *dst, const struct qd_fault *f,
			 enum qd_fault_dir dir);

/* "rx" or "tx". */
const char *qd_fault_dir_name(enum qd_fault_dir dir);

#endif /* QD_FAULT_H */
