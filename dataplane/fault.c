/*
 * Fault injection in the port I/O (see fault.h for the stages and the
 * contract).
 *
 * Frames flow through one direction's stages as a stream: qd_fault_apply()
 * feeds the burst the port gave (or the worker is about to send) into loss,
 * duplication and then either the delay FIFO or straight into reordering;
 * qd_fault_release() drains what the clock lets out. Both write into the
 * caller's array and never past <cap>: room for a frame that came in is
 * always kept, and extras (copies, set-aside frames coming back) only take
 * room that is left over, so no frame is ever lost for want of a slot.
 */
#include "fault.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include <rte_lcore.h>
#include <rte_malloc.h>

#include "config.h"
#include "lcore_stats.h"

_Static_assert(QD_FAULT_QUEUE_MAX + QD_FAULT_REORDER_MAX == QD_CONFIG_FAULT_HELD_MAX,
	       "the config's mbuf sizing must know what fault injection can hold");
_Static_assert((QD_FAULT_QUEUE_MAX & (QD_FAULT_QUEUE_MAX - 1)) == 0,
	       "delay queue size must be a power of two");
_Static_assert((QD_FAULT_REORDER_MAX & (QD_FAULT_REORDER_MAX - 1)) == 0,
	       "reorder area size must be a power of two");
_Static_assert(QD_FAULT_BURST_MAX <= UINT16_MAX, "bursts are counted in 16 bits");

/* The caller's output array as it fills. */
struct out {
	struct rte_mbuf **pkts;
	uint16_t n;
	uint16_t cap;
};

/* splitmix64 (Steele, Lea, Flood 2014): one add and two multiplies per draw,
 * any state including 0 is fine, and nearby seeds give unrelated streams. */
static inline uint64_t
rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, <bound>) by multiply-shift (Lemire); the bias, under
 * bound / 2^32, is far below what any test can see. */
static inline uint32_t
rng_below(uint64_t *state, uint32_t bound)
{
	return (uint32_t)(((rng_next(state) >> 32) * (uint64_t)bound) >> 32);
}

/* True with probability <ppm> / 10^6. */
static inline bool
roll(uint64_t *state, uint32_t ppm)
{
	return rng_below(state, QD_FAULT_PPM_MAX) < ppm;
}

static inline uint64_t
us_to_tsc(uint64_t us, uint64_t hz)
{
	/* us <= 10^6 and hz < 10^12: no overflow. */
	return us * hz / 1000000;
}

static inline void
held_add(struct qd_fault_path *p, int64_t delta)
{
	qd_stat_add(&p->stats.held, (uint64_t)delta);
}

void
qd_fault_conf_from_config(struct qd_fault_conf *conf, const struct qd_config *cfg)
{
	const struct qd_config_fault_dir *src[QD_FAULT_DIRS] = {&cfg->fault_rx, &cfg->fault_tx};
	memset(conf, 0, sizeof(*conf));
	for (int d = 0; d < QD_FAULT_DIRS; d++) {
		conf->dir[d] = (struct qd_fault_dir_conf){
			.loss_ppm = src[d]->loss_ppm,
			.dup_ppm = src[d]->dup_ppm,
			.reorder_ppm = src[d]->reorder_ppm,
			.delay_us = src[d]->delay_us,
			.jitter_us = src[d]->jitter_us,
		};
	}
	conf->seed = cfg->fault_seed;
	conf->reorder_gap = cfg->fault_reorder_gap;
	conf->reorder_hold_us = cfg->fault_reorder_hold_us;
}

static bool
dir_conf_any(const struct qd_fault_dir_conf *dc)
{
	return dc->loss_ppm != 0 || dc->dup_ppm != 0 || dc->reorder_ppm != 0 ||
	       dc->delay_us != 0 || dc->jitter_us != 0;
}

bool
qd_fault_conf_any(const struct qd_fault_conf *conf)
{
	return dir_conf_any(&conf->dir[QD_FAULT_RX]) || dir_conf_any(&conf->dir[QD_FAULT_TX]);
}

static int
conf_check(const struct qd_fault_conf *conf, const struct rte_mempool *pool, uint64_t tsc_hz)
{
	bool reorders = false;
	if (tsc_hz == 0)
		return -EINVAL;
	for (int d = 0; d < QD_FAULT_DIRS; d++) {
		const struct qd_fault_dir_conf *dc = &conf->dir[d];
		if (dc->loss_ppm > QD_FAULT_PPM_MAX || dc->dup_ppm > QD_FAULT_PPM_MAX ||
		    dc->reorder_ppm > QD_FAULT_PPM_MAX || dc->delay_us > QD_FAULT_DELAY_US_MAX ||
		    dc->jitter_us > QD_FAULT_DELAY_US_MAX)
			return -EINVAL;
		if (dc->dup_ppm != 0 && pool == NULL)
			return -EINVAL;
		reorders = reorders || dc->reorder_ppm != 0;
	}
	if (reorders && (conf->reorder_gap == 0 || conf->reorder_gap > QD_FAULT_REORDER_GAP_MAX ||
			 conf->reorder_hold_us == 0 ||
			 conf->reorder_hold_us > QD_FAULT_REORDER_HOLD_US_MAX))
		return -EINVAL;
	return 0;
}

static int
path_init(struct qd_fault_path *p, const struct qd_fault_dir_conf *dc, uint64_t seed,
	  unsigned int lcore_id, enum qd_fault_dir dir, uint64_t tsc_hz)
{
	memset(p, 0, sizeof(*p));
	p->active = dir_conf_any(dc);
	p->delays = dc->delay_us != 0 || dc->jitter_us != 0;
	p->loss_ppm = dc->loss_ppm;
	p->dup_ppm = dc->dup_ppm;
	p->reorder_ppm = dc->reorder_ppm;
	p->jitter_us = dc->jitter_us;
	p->delay_tsc = us_to_tsc(dc->delay_us, tsc_hz);
	/* Streams per (seed, lcore, direction, stage): a direction's decisions depend
	 * only on the frames it sees, not on how the directions or calls interleave. */
	uint64_t base = seed + ((uint64_t)lcore_id * QD_FAULT_DIRS + (uint64_t)dir + 1) *
				       0xd1b54a32d192ed03ull;
	p->rng_loss = rng_next(&base);
	p->rng_dup = rng_next(&base);
	p->rng_jitter = rng_next(&base);
	p->rng_reorder = rng_next(&base);
	if (!p->delays)
		return 0;
	int socket = rte_lcore_is_enabled(lcore_id) ? (int)rte_lcore_to_socket_id(lcore_id)
						    : SOCKET_ID_ANY;
	p->delayq = rte_zmalloc_socket("qd_fault_delayq",
				       QD_FAULT_QUEUE_MAX * sizeof(p->delayq[0]),
				       RTE_CACHE_LINE_SIZE, socket);
	return p->delayq == NULL ? -ENOMEM : 0;
}

int
qd_fault_init(struct qd_fault *f, const struct qd_fault_conf *conf, unsigned int lcore_id,
	      struct rte_mempool *pool, uint64_t tsc_hz)
{
	assert(f != NULL && conf != NULL);
	memset(f, 0, sizeof(*f));
	int rc = conf_check(conf, pool, tsc_hz);
	if (rc != 0)
		return rc;
	f->pool = pool;
	f->tsc_hz = tsc_hz;
	f->reorder_gap = conf->reorder_gap;
	f->reorder_hold_tsc = us_to_tsc(conf->reorder_hold_us, tsc_hz);
	for (int d = 0; d < QD_FAULT_DIRS; d++) {
		rc = path_init(&f->path[d], &conf->dir[d], conf->seed, lcore_id,
			       (enum qd_fault_dir)d, tsc_hz);
		if (rc != 0) {
			qd_fault_fini(f);
			return rc;
		}
	}
	f->active = f->path[QD_FAULT_RX].active || f->path[QD_FAULT_TX].active;
	return 0;
}

void
qd_fault_fini(struct qd_fault *f)
{
	for (int d = 0; d < QD_FAULT_DIRS; d++) {
		struct qd_fault_path *p = &f->path[d];
		for (uint32_t i = 0; i < p->delayq_count; i++)
			rte_pktmbuf_free(p->delayq[(p->delayq_head + i) % QD_FAULT_QUEUE_MAX].m);
		for (uint32_t i = 0; i < p->aside_count; i++)
			rte_pktmbuf_free(p->aside[(p->aside_head + i) % QD_FAULT_REORDER_MAX].m);
		held_add(p, -(int64_t)(p->delayq_count + p->aside_count));
		p->delayq_count = 0;
		p->aside_count = 0;
		rte_free(p->delayq);
		p->delayq = NULL;
		p->active = false;
		p->delays = false;
	}
	f->active = false;
}

/* Stage 4 and the exit: pass <m> on, or set it aside to be overtaken. After a
 * frame has passed, set-aside frames whose gap is covered follow it, as long
 * as <reserve> slots stay free for frames the caller is still owed. */
static void
reorder_and_emit(struct qd_fault *f, struct qd_fault_path *p, struct rte_mbuf *m,
		 uint64_t now_tsc, struct out *o, uint16_t reserve)
{
	if (p->reorder_ppm != 0 && roll(&p->rng_reorder, p->reorder_ppm)) {
		if (p->aside_count < QD_FAULT_REORDER_MAX) {
			uint32_t tail = (p->aside_head + p->aside_count) % QD_FAULT_REORDER_MAX;
			p->aside[tail] = (struct qd_fault_slot){
				.m = m,
				.due_tsc = now_tsc + f->reorder_hold_tsc,
				.release_seq = p->passed + f->reorder_gap,
			};
			p->aside_count++;
			held_add(p, 1);
			qd_stat_add(&p->stats.reordered, 1);
			return;
		}
		qd_stat_add(&p->stats.queue_full, 1);
	}
	assert(o->n < o->cap);
	o->pkts[o->n++] = m;
	p->passed++;
	while (p->aside_count > 0 && p->aside[p->aside_head].release_seq <= p->passed &&
	       o->n + reserve < o->cap) {
		o->pkts[o->n++] = p->aside[p->aside_head].m;
		p->aside_head = (p->aside_head + 1) % QD_FAULT_REORDER_MAX;
		p->aside_count--;
		held_add(p, -1);
	}
}

/* Stage 3: queue <m> for later, or pass it on to stage 4 now. */
static void
delay_or_emit(struct qd_fault *f, struct qd_fault_path *p, struct rte_mbuf *m,
	      uint64_t now_tsc, struct out *o, uint16_t reserve)
{
	if (!p->delays) {
		reorder_and_emit(f, p, m, now_tsc, o, reserve);
		return;
	}
	if (p->delayq_count == QD_FAULT_QUEUE_MAX) {
		qd_stat_add(&p->stats.queue_full, 1);
		reorder_and_emit(f, p, m, now_tsc, o, reserve);
		return;
	}
	uint64_t due = now_tsc + p->delay_tsc;
	if (p->jitter_us != 0)
		due += us_to_tsc(rng_below(&p->rng_jitter, p->jitter_us + 1), f->tsc_hz);
	/* FIFO: never due before the frame ahead (jitter does not reorder). */
	if (p->delayq_count > 0 && due < p->delayq_last_due_tsc)
		due = p->delayq_last_due_tsc;
	uint32_t tail = (p->delayq_head + p->delayq_count) % QD_FAULT_QUEUE_MAX;
	p->delayq[tail] = (struct qd_fault_slot){.m = m, .due_tsc = due};
	p->delayq_count++;
	p->delayq_last_due_tsc = due;
	held_add(p, 1);
	qd_stat_add(&p->stats.delayed, 1);
}

/* Stage 2: an identical copy of <m>, or NULL (counted) when the pool is empty
 * or the caller's array has no room for it. */
static struct rte_mbuf *
duplicate(struct qd_fault *f, struct qd_fault_path *p, struct rte_mbuf *m, bool room)
{
	if (!room) {
		qd_stat_add(&p->stats.dup_noroom, 1);
		return NULL;
	}
	struct rte_mbuf *c = rte_pktmbuf_copy(m, f->pool, 0, UINT32_MAX);
	if (c == NULL) {
		qd_stat_add(&p->stats.dup_nombuf, 1);
		return NULL;
	}
	qd_stat_add(&p->stats.duplicated, 1);
	return c;
}

uint16_t
qd_fault_apply(struct qd_fault *f, enum qd_fault_dir dir, struct rte_mbuf **pkts, uint16_t n,
	       uint16_t cap, uint64_t now_tsc)
{
	assert((unsigned int)dir < QD_FAULT_DIRS);
	struct qd_fault_path *p = &f->path[dir];
	if (!p->active || n == 0)
		return n;
	assert(n <= cap && n <= QD_FAULT_BURST_MAX);
	struct rte_mbuf *in[QD_FAULT_BURST_MAX];
	memcpy(in, pkts, n * sizeof(in[0]));
	struct out o = {.pkts = pkts, .n = 0, .cap = cap};
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = in[i];
		uint16_t later = (uint16_t)(n - i - 1); /* inputs still owed a slot */
		if (p->loss_ppm != 0 && roll(&p->rng_loss, p->loss_ppm)) {
			rte_pktmbuf_free(m);
			qd_stat_add(&p->stats.dropped, 1);
			continue;
		}
		struct rte_mbuf *copy = NULL;
		if (p->dup_ppm != 0 && roll(&p->rng_dup, p->dup_ppm))
			copy = duplicate(f, p, m, o.n + 2 + later <= cap);
		delay_or_emit(f, p, m, now_tsc, &o, (uint16_t)(later + (copy != NULL)));
		if (copy != NULL)
			delay_or_emit(f, p, copy, now_tsc, &o, later);
	}
	assert(o.n <= cap);
	return o.n;
}

uint16_t
qd_fault_release(struct qd_fault *f, enum qd_fault_dir dir, uint64_t now_tsc,
		 struct rte_mbuf **out, uint16_t cap)
{
	assert((unsigned int)dir < QD_FAULT_DIRS);
	struct qd_fault_path *p = &f->path[dir];
	struct out o = {.pkts = out, .n = 0, .cap = cap};
	/* Set-aside frames held long enough, or overtaken while the array was full. */
	while (p->aside_count > 0 && o.n < cap) {
		const struct qd_fault_slot *s = &p->aside[p->aside_head];
		if (s->due_tsc > now_tsc && s->release_seq > p->passed)
			break;
		o.pkts[o.n++] = s->m;
		p->aside_head = (p->aside_head + 1) % QD_FAULT_REORDER_MAX;
		p->aside_count--;
		held_add(p, -1);
	}
	/* Delayed frames that are due, in arrival order, through stage 4. */
	while (p->delayq_count > 0 && o.n < cap) {
		const struct qd_fault_slot *s = &p->delayq[p->delayq_head];
		if (s->due_tsc > now_tsc)
			break;
		struct rte_mbuf *m = s->m;
		p->delayq_head = (p->delayq_head + 1) % QD_FAULT_QUEUE_MAX;
		p->delayq_count--;
		held_add(p, -1);
		reorder_and_emit(f, p, m, now_tsc, &o, 0);
	}
	assert(o.n <= cap);
	return o.n;
}

uint32_t
qd_fault_held(const struct qd_fault *f, enum qd_fault_dir dir)
{
	assert((unsigned int)dir < QD_FAULT_DIRS);
	return f->path[dir].delayq_count + f->path[dir].aside_count;
}

void
qd_fault_stats_read(struct qd_fault_stats *dst, const struct qd_fault *f, enum qd_fault_dir dir)
{
	assert((unsigned int)dir < QD_FAULT_DIRS);
	const struct qd_fault_stats *src = &f->path[dir].stats;
#define QD_X(name, help) dst->name = qd_stat_read(&src->name);
	QD_FAULT_COUNTERS(QD_X)
#undef QD_X
	dst->held = qd_stat_read(&src->held);
}

const char *
qd_fault_dir_name(enum qd_fault_dir dir)
{
	return dir == QD_FAULT_RX ? "rx" : dir == QD_FAULT_TX ? "tx" : "?";
}
