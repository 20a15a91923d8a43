/*
 * The C face of Google Benchmark: every benchmark body in bench/ is plain C
 * and reaches the library only through this header; bench/shim.cc is the one
 * C++ file, and it also holds main().
 *
 * How a benchmark file is written:
 *
 *   static void bm_parse(struct qd_bench_state *s, void *ctx)
 *   {
 *           struct my_ctx *c = ctx;
 *           while (qd_bench_keep_running_batch(s, BURST))
 *                   for (unsigned int i = 0; i < BURST; i++)
 *                           parse(c->pkts[i]);
 *           qd_bench_set_items(s, qd_bench_iterations(s));
 *   }
 *
 *   static const struct qd_bench packet_benches[] = {
 *           { .name = "parse", .fn = bm_parse, .setup = ctx_new, .teardown = ctx_free },
 *   };
 *   static const struct qd_bench_suite packet_suite = {
 *           .name = "packet", .init = eal_up, .fini = eal_down,
 *           .benches = packet_benches, .count = QD_BENCH_COUNT(packet_benches),
 *   };
 *   QD_BENCH_SUITE(packet_suite);
 *
 * The model is Google Benchmark's own: a static table per file, registered by
 * a constructor before main() runs, so adding a file to bench/meson.build is
 * all it takes to add benchmarks. A benchmark is named "<suite>/<name>", with
 * "/<arg>" appended once per value of <args> when it has some.
 *
 * Lifetimes, from longest to shortest:
 *   - suite init runs once, the first time one of the suite's benchmarks is
 *     about to run (so a --benchmark_filter that excludes the suite never pays
 *     for it: the packet suite starts DPDK's EAL there). Suite fini runs at
 *     exit when init succeeded. A failing init marks every benchmark of the
 *     suite as skipped with an error, and the run exits non-zero.
 *   - bench setup/teardown run around every call of <fn>. Google Benchmark
 *     calls a benchmark several times while it sizes the iteration count, so
 *     setup must be cheap (build packets, fill a table); anything expensive
 *     belongs in the suite init. Neither is timed.
 *
 * Threads: a benchmark with <threads> runs once per listed count (Google
 * Benchmark's Threads(n); names get "/threads:<n>"), every thread calling the
 * same body. setup then runs once per run, on thread 0, before any body; every
 * thread gets the same <ctx>, and teardown runs once, after the last body has
 * returned. Bodies tell themselves apart with qd_bench_thread_index(); the
 * first qd_bench_keep_running*() call is a barrier, so the timed loops start
 * together. With <real_time> (UseRealTime; "/real_time") the Time column is
 * wall time divided by the iterations of all threads together: the inverse
 * of the aggregate rate, so a perfectly parallel body shows half the time at
 * 2 threads on 2 free cores; per-thread latency is Time x threads.
 *
 * Timing: the clock runs from the first qd_bench_keep_running*() call to the
 * one that returns false. Crossing from C into the shim costs a function
 * call, ~1-2 ns; benchmarks of functions that take a few ns should use
 * qd_bench_keep_running_batch() and do <n> operations per call, so that the
 * reported time per iteration is the time per operation (per packet here).
 */
#ifndef QD_BENCH_SHIM_H
#define QD_BENCH_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QD_BENCH_ARGS_MAX 8
#define QD_BENCH_THREADS_MAX 4
#define QD_BENCH_SUITES_MAX 32

/* Wraps one benchmark::State; valid only during the call of the bench function. */
struct qd_bench_state;

/* The body: loops on qd_bench_keep_running*(s). <ctx> is what setup returned. */
typedef void qd_bench_fn(struct qd_bench_state *s, void *ctx);
/* Per-call setup: returns 0 with <*ctx> set, or a negative errno (the benchmark is then
 * skipped with an error). qd_bench_arg(s) gives the argument of this instance. */
typedef int qd_bench_setup_fn(struct qd_bench_state *s, void **ctx);
typedef void qd_bench_teardown_fn(void *ctx);
/* Suite init: 0 or a negative errno. */
typedef int qd_bench_suite_init_fn(void);
typedef void qd_bench_suite_fini_fn(void);

struct qd_bench {
	const char *name;
	qd_bench_fn *fn;
	qd_bench_setup_fn *setup;       /* optional */
	qd_bench_teardown_fn *teardown; /* optional */
	/* One instance per value, named "<name>/<value>"; no instance suffix when 0. */
	unsigned int args_count;
	int64_t args[QD_BENCH_ARGS_MAX];
	/* One run per thread count listed (all of them for every arg); none: one thread. */
	unsigned int threads_count;
	int threads[QD_BENCH_THREADS_MAX];
	bool real_time;                 /* time by the wall clock, not the CPU of thread 0 */
};

struct qd_bench_suite {
	const char *name;
	qd_bench_suite_init_fn *init;   /* optional */
	qd_bench_suite_fini_fn *fini;   /* optional */
	const struct qd_bench *benches;
	unsigned int count;
};

#define QD_BENCH_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Register <suite> (which must outlive the program, i.e. be static). Called by
 * QD_BENCH_SUITE before main(); refuses (returns -1) past QD_BENCH_SUITES_MAX. */
int qd_bench_add_suite(const struct qd_bench_suite *suite);

#define QD_BENCH_SUITE(var)                                                               \
	__attribute__((constructor)) static void qd_bench_register_##var(void)            \
	{                                                                                 \
		qd_bench_add_suite(&(var));                                               \
	}

/* Start or continue the timed loop: true while one more iteration must run. */
bool qd_bench_keep_running(struct qd_bench_state *s);
/* Same, counting <n> iterations per call (<n> > 0); may overshoot by up to n - 1. */
bool qd_bench_keep_running_batch(struct qd_bench_state *s, uint64_t n);
/* Iterations done so far (after the loop: all of them, overshoot included). */
uint64_t qd_bench_iterations(const struct qd_bench_state *s);
/* The argument of this instance (0 when the benchmark has none). */
int64_t qd_bench_arg(const struct qd_bench_state *s);
/* This thread's index (0 .. threads - 1) and the number of threads of this run. */
unsigned int qd_bench_thread_index(const struct qd_bench_state *s);
unsigned int qd_bench_threads(const struct qd_bench_state *s);

/* Report <items> units of work (packets) and <bytes> over the whole run: they become
 * items_per_second / bytes_per_second. */
void qd_bench_set_items(struct qd_bench_state *s, uint64_t items);
void qd_bench_set_bytes(struct qd_bench_state *s, uint64_t bytes);
/* A user counter reported as is (<value> over the whole run divided by nothing). */
void qd_bench_set_counter(struct qd_bench_state *s, const char *name, double value);
void qd_bench_set_label(struct qd_bench_state *s, const char *label);

/* Stop/restart the clock inside the loop. Each pair costs two clock reads (~100 ns and
 * far more under valgrind): only for work much longer than that. */
void qd_bench_pause(struct qd_bench_state *s);
void qd_bench_resume(struct qd_bench_state *s);

/* Mark the run failed: the loop must not be entered (or must be left) after this. */
void qd_bench_skip(struct qd_bench_state *s, const char *why);

/* Compiler barriers, as benchmark::DoNotOptimize / ClobberMemory: make <p> (and what it
 * points to) look used, and make all memory look read and written. */
static inline void
qd_bench_escape(const void *p)
{
	__asm__ volatile("" : : "g"(p) : "memory");
}

static inline void
qd_bench_clobber(void)
{
	__asm__ volatile("" : : : "memory");
}

#ifdef __cplusplus
}
#endif

#endif /* QD_BENCH_SHIM_H */
