/*
 * The one C++ file of bench/: it turns the C benchmark tables of shim.h into
 * Google Benchmark registrations, forwards the C calls to benchmark::State,
 * and owns main(). Everything it knows about a benchmark comes from the
 * tables; it knows nothing of DPDK or of what is measured.
 *
 * Besides Google Benchmark's own flags (--help lists them), main() takes
 * --qd_iterations=N: see take_own_flags().
 *
 * Benchmarks with threads share one setup per run (run_threaded()); the others
 * keep the simple path, one setup per call.
 *
 * Exit status: 0 when at least one benchmark ran and none failed; 1 when a
 * suite init, a setup or a body reported an error, when no benchmark matched
 * the filter, or on an unknown command-line flag.
 */
#include <benchmark/benchmark.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

extern "C" {
#include "shim.h"
}

struct qd_bench_state {
	benchmark::State &st;
	bool has_arg; /* State::range() asserts when there is none */
};

namespace {

enum suite_status { SUITE_NEW, SUITE_UP, SUITE_FAILED };

/* Filled by constructors before main(): plain zero-initialised arrays, so there is no
 * static-initialisation-order question. */
const qd_bench_suite *suites[QD_BENCH_SUITES_MAX];
suite_status suites_status[QD_BENCH_SUITES_MAX];
unsigned int suites_count;
std::atomic<bool> any_failed;

/* One per registered benchmark with threads: what thread 0's setup made, handed to the
 * other threads of the same run, and how many bodies have yet to return before teardown.
 * Google Benchmark joins a run's threads before it starts the next run, so one slot per
 * benchmark is enough. */
struct shared_run {
	std::mutex mu;
	std::condition_variable cv;
	bool ready = false;
	int rc = 0;
	void *ctx = nullptr;
	int remaining = 0;
};
std::vector<std::unique_ptr<shared_run>> shared_runs;

bool
suite_ready(unsigned int idx)
{
	if (suites_status[idx] == SUITE_NEW) {
		const qd_bench_suite *suite = suites[idx];
		int rc = suite->init == nullptr ? 0 : suite->init();
		suites_status[idx] = rc == 0 ? SUITE_UP : SUITE_FAILED;
		if (rc != 0)
			std::fprintf(stderr, "bench: suite %s: init failed (%d)\n", suite->name, rc);
	}
	return suites_status[idx] == SUITE_UP;
}

/* Thread 0 runs suite init and setup; the others wait for its result. Every thread then
 * runs the body with the same ctx, and the last one out runs teardown. */
void
run_threaded(qd_bench_state &s, unsigned int suite_idx, const qd_bench *b, shared_run *sh)
{
	if (s.st.thread_index() == 0) {
		int rc = suite_ready(suite_idx) ? 0 : -1;
		void *ctx = nullptr;
		if (rc == 0 && b->setup != nullptr)
			rc = b->setup(&s, &ctx);
		std::lock_guard<std::mutex> lock(sh->mu);
		sh->rc = rc;
		sh->ctx = ctx;
		sh->remaining = s.st.threads();
		sh->ready = true;
		sh->cv.notify_all();
	}
	int rc;
	void *ctx;
	{
		std::unique_lock<std::mutex> lock(sh->mu);
		sh->cv.wait(lock, [sh] { return sh->ready; });
		rc = sh->rc;
		ctx = sh->ctx;
	}
	/* All threads skip alike, so none waits in the loop's barrier for one that never
	 * comes. */
	if (rc != 0) {
		std::string why = "suite init or setup failed: " + std::to_string(rc);
		qd_bench_skip(&s, why.c_str());
	} else {
		b->fn(&s, ctx);
	}
	std::lock_guard<std::mutex> lock(sh->mu);
	if (--sh->remaining == 0) {
		if (rc == 0 && b->teardown != nullptr)
			b->teardown(ctx);
		sh->ready = false;
		sh->ctx = nullptr;
	}
}

void
run_one(benchmark::State &st, unsigned int suite_idx, const qd_bench *b, shared_run *sh)
{
	qd_bench_state s{st, b->args_count > 0};
	if (sh != nullptr) {
		run_threaded(s, suite_idx, b, sh);
		return;
	}
	if (!suite_ready(suite_idx)) {
		qd_bench_skip(&s, "suite init failed");
		return;
	}
	void *ctx = nullptr;
	if (b->setup != nullptr) {
		int rc = b->setup(&s, &ctx);
		if (rc != 0) {
			std::string why = "setup failed: " + std::to_string(rc);
			qd_bench_skip(&s, why.c_str());
			return;
		}
	}
	b->fn(&s, ctx);
	if (b->teardown != nullptr)
		b->teardown(ctx);
}

/* --qd_iterations=N: run every benchmark for exactly N iterations (0: let Google
 * Benchmark size the run by time). Google Benchmark then calls each body once, which is
 * what instruction counting under callgrind needs. Removed from argv here. */
long long fixed_iterations;

int
take_own_flags(int argc, char **argv)
{
	static const char flag[] = "--qd_iterations=";
	int out = 1;
	for (int i = 1; i < argc; i++) {
		if (std::strncmp(argv[i], flag, sizeof(flag) - 1) != 0) {
			argv[out++] = argv[i];
			continue;
		}
		char *end = nullptr;
		fixed_iterations = std::strtoll(argv[i] + sizeof(flag) - 1, &end, 10);
		if (*end != '\0' || fixed_iterations < 0) {
			std::fprintf(stderr, "bench: bad %s\n", argv[i]);
			return -1;
		}
	}
	argv[out] = nullptr;
	return out;
}

void
register_all()
{
	for (unsigned int i = 0; i < suites_count; i++) {
		const qd_bench_suite *suite = suites[i];
		for (unsigned int j = 0; j < suite->count; j++) {
			const qd_bench *b = &suite->benches[j];
			std::string name = std::string(suite->name) + "/" + b->name;
			shared_run *sh = nullptr;
			if (b->threads_count > 0) {
				shared_runs.push_back(std::make_unique<shared_run>());
				sh = shared_runs.back().get();
			}
			auto *reg = benchmark::RegisterBenchmark(name.c_str(),
				[i, b, sh](benchmark::State &st) { run_one(st, i, b, sh); });
			reg->Unit(benchmark::kNanosecond);
			if (fixed_iterations > 0)
				reg->Iterations(fixed_iterations);
			for (unsigned int k = 0; k < b->args_count && k < QD_BENCH_ARGS_MAX; k++)
				reg->Arg(b->args[k]);
			for (unsigned int k = 0; k < b->threads_count && k < QD_BENCH_THREADS_MAX; k++)
				reg->Threads(b->threads[k]);
			if (b->real_time)
				reg->UseRealTime();
		}
	}
}

void
fini_all()
{
	for (unsigned int i = suites_count; i-- > 0;) {
		if (suites_status[i] == SUITE_UP && suites[i]->fini != nullptr)
			suites[i]->fini();
	}
}

} // namespace

extern "C" {

int
qd_bench_add_suite(const struct qd_bench_suite *suite)
{
	if (suites_count == QD_BENCH_SUITES_MAX)
		return -1;
	suites[suites_count++] = suite;
	return 0;
}

bool
qd_bench_keep_running(struct qd_bench_state *s)
{
	return s->st.KeepRunning();
}

bool
qd_bench_keep_running_batch(struct qd_bench_state *s, uint64_t n)
{
	return s->st.KeepRunningBatch(static_cast<benchmark::IterationCount>(n));
}

uint64_t
qd_bench_iterations(const struct qd_bench_state *s)
{
	return static_cast<uint64_t>(s->st.iterations());
}

int64_t
qd_bench_arg(const struct qd_bench_state *s)
{
	return s->has_arg ? s->st.range(0) : 0;
}

unsigned int
qd_bench_thread_index(const struct qd_bench_state *s)
{
	return static_cast<unsigned int>(s->st.thread_index());
}

unsigned int
qd_bench_threads(const struct qd_bench_state *s)
{
	return static_cast<unsigned int>(s->st.threads());
}

void
qd_bench_set_items(struct qd_bench_state *s, uint64_t items)
{
	s->st.SetItemsProcessed(static_cast<int64_t>(items));
}

void
qd_bench_set_bytes(struct qd_bench_state *s, uint64_t bytes)
{
	s->st.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void
qd_bench_set_counter(struct qd_bench_state *s, const char *name, double value)
{
	s->st.counters[name] = benchmark::Counter(value);
}

void
qd_bench_set_label(struct qd_bench_state *s, const char *label)
{
	s->st.SetLabel(label);
}

void
qd_bench_pause(struct qd_bench_state *s)
{
	s->st.PauseTiming();
}

void
qd_bench_resume(struct qd_bench_state *s)
{
	s->st.ResumeTiming();
}

void
qd_bench_skip(struct qd_bench_state *s, const char *why)
{
	any_failed = true;
	s->st.SkipWithError(why);
}

} // extern "C"

int
main(int argc, char **argv)
{
	argc = take_own_flags(argc, argv);
	if (argc < 0)
		return 1;
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	register_all();
	size_t ran = benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	fini_all();
	if (ran == 0) {
		std::fprintf(stderr, "bench: no benchmark matched the filter\n");
		return 1;
	}
	return any_failed ? 1 : 0;
}
