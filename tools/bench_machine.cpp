// The bench's yardsticks: SGEMM through dagger's own JIT and through PyTorch's BLAS (OpenBLAS),
// FMA throughput in registers and a streaming copy, each at the bench's thread count.
#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include "dagger/codegen/jit_executable.h"
#include "dagger/graph/cost.h"
#include "dagger/graph/dsl.h"
#include "dagger/runtime/build_info.h"
#include "tools/bench.h"

namespace dagger::bench {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Runs `work(thread index)` on `threads` threads released together; returns the wall time
/// from the first thread's start to the last one's end. Each thread reads the clock itself:
/// the caller, a thread more than the work's, may be scheduled out after the release while the
/// workers run (2 workers on 2 cores), and a clock read there would start late.
double run_together(int threads, const std::function<void(int)>& work) {
  std::barrier start(threads);
  std::vector<Clock::time_point> began(static_cast<size_t>(threads)), ended(began.size());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      start.arrive_and_wait();
      began[static_cast<size_t>(t)] = Clock::now();
      work(t);
      ended[static_cast<size_t>(t)] = Clock::now();
    });
  for (std::thread& th : pool) th.join();
  return std::chrono::duration<double>(*std::max_element(ended.begin(), ended.end()) -
                                       *std::min_element(began.begin(), began.end()))
      .count();
}

constexpr int64_t kGemmN = 1024;
constexpr double kGemmBudgetSeconds = 0.4;

Graph gemm_graph(int64_t n) {
  Graph g;
  Model m(g, Mode::eval);
  g.set_output("c", matmul(m.input("a", {n, n}), m.input("b", {n, n})).id);
  return g;
}

StateMap gemm_feeds(int64_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  StateMap feeds;
  for (const char* name : {"a", "b"}) {
    Tensor t = Tensor::from_shape({static_cast<size_t>(n), static_cast<size_t>(n)});
    for (float& v : t) v = u(rng);
    feeds[name] = std::move(t);
  }
  return feeds;
}

/// Seconds per call of the GEMM kernel alone (the profile excludes the output copy run()
/// makes): the best of as many calls as fit in the budget, at least three.
double gemm_seconds(JitExecutable& exe, const StateMap& feeds) {
  StateMap state;
  exe.run(feeds, state);  // warm the caches and the pages
  double best = 1e30;
  const Clock::time_point t0 = Clock::now();
  for (int call = 0; call < 3 || (seconds_since(t0) < kGemmBudgetSeconds && call < 50); ++call) {
    exe.reset_profile();
    exe.set_profiling(true);
    exe.run(feeds, state);
    double s = 0;
    for (const KernelProfile& k : exe.profile()) s += k.seconds;
    best = std::min(best, s);
  }
  return best;
}

constexpr int kSgemmRounds = 3;

/// The JIT's SGEMM (one plan at `threads`, and `threads` one-thread plans at once) and the
/// BLAS's, in alternating rounds, so that a burst of other work on the machine hits both alike;
/// each figure is the median over rounds.
void measure_gemm(Machine& m) {
  const int64_t n = kGemmN;
  const Graph g = gemm_graph(n);
  const StateMap feeds = gemm_feeds(n);
  const double flops = graph_cost(g).flops;
  m.gemm_n = n;
  JitOptions options;
  options.threads = m.threads;
  const std::unique_ptr<JitExecutable> one_plan = compile_jit(g, options);
  std::vector<std::unique_ptr<JitExecutable>> plans;
  if (m.threads > 1)
    for (int t = 0; t < m.threads; ++t) plans.push_back(compile_jit(g));
  std::vector<double> one_plan_rounds, concurrent_rounds, blas_rounds;
  for (int round = 0; round < kSgemmRounds; ++round) {
    one_plan_rounds.push_back(flops / gemm_seconds(*one_plan, feeds) * 1e-9);
    if (m.threads > 1) {
      std::vector<double> seconds(m.threads);
      run_together(m.threads, [&](int t) { seconds[t] = gemm_seconds(*plans[t], feeds); });
      // Each thread's best call; together they are what `threads` busy cores deliver.
      double sum = 0;
      for (double s : seconds) sum += flops / s * 1e-9;
      concurrent_rounds.push_back(sum);
    }
    if (!m.blas_not_measured.empty()) continue;  // it failed once: it will fail again
    const BlasSgemm blas = measure_blas_sgemm(n, m.threads);
    m.blas_not_measured = blas.not_measured;
    m.blas_library = blas.library;
    if (blas.not_measured.empty()) blas_rounds.push_back(blas.gflops);
  }
  m.sgemm_rounds = kSgemmRounds;
  m.gemm_one_plan_gflops = median(one_plan_rounds);
  if (!concurrent_rounds.empty()) m.gemm_concurrent_gflops = median(concurrent_rounds);
  m.sgemm_peak_gflops = std::max(m.gemm_one_plan_gflops, m.gemm_concurrent_gflops);
  // A figure only from rounds that all measured it: a failure leaves none.
  if (m.blas_not_measured.empty()) m.blas_sgemm_gflops = median(blas_rounds);
}

// Independent chains of FMAs on registers: enough of them to cover the FMA latency on every
// pipe, so the loop runs at the core's FMA throughput.
constexpr int64_t kFmaIterations = 20'000'000;

__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iterations) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(0.001f * c);
  const __m256 scale = _mm256_set1_ps(0.999999f), shift = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
#pragma GCC unroll 16  // every chain in its own register, not in memory
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], scale, shift);
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  return _mm256_cvtss_f32(sum);
}

__attribute__((target("avx512f"))) float fma_avx512(int64_t iterations) {
  constexpr int kChains = 12;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * c);
  const __m512 scale = _mm512_set1_ps(0.999999f), shift = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], scale, shift);
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  float lanes[16];
  _mm512_storeu_ps(lanes, sum);
  return lanes[0];
}

void measure_fma(Machine& m) {
  __builtin_cpu_init();
  int floats = 0;
  float (*loop)(int64_t) = nullptr;
  if (__builtin_cpu_supports("avx512f")) {
    m.fma_isa = "avx512f", floats = 16, loop = fma_avx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    m.fma_isa = "avx2+fma", floats = 8, loop = fma_avx2;
  } else {
    return;
  }
  std::vector<float> sink(m.threads);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep)
    best = std::min(best, run_together(m.threads, [&](int t) { sink[t] = loop(kFmaIterations); }));
  const double flops = 2.0 * 12 * floats * static_cast<double>(kFmaIterations) * m.threads;
  m.fma_peak_gflops = flops / best * 1e-9;
}

// Far larger than any last-level cache, so the copy streams from and to memory.
constexpr size_t kCopyFloats = size_t{32} << 20;  // 128 MiB per buffer, split among the threads

void measure_copy(Machine& m) {
  std::vector<float> from(kCopyFloats, 1.0f), to(kCopyFloats, 0.0f);
  const size_t slice = kCopyFloats / static_cast<size_t>(m.threads);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep)
    best = std::min(best, run_together(m.threads, [&](int t) {
                      std::memcpy(to.data() + t * slice, from.data() + t * slice, slice * sizeof(float));
                    }));
  m.copy_bytes_per_thread = static_cast<double>(slice * sizeof(float));
  m.copy_gbps = 2.0 * m.copy_bytes_per_thread * m.threads / best * 1e-9;
}

}  // namespace

Machine measure_machine(int threads) {
  Machine m;
  m.cpu = host_cpu();
  m.features = host_features();
  const JitTarget target = jit_target();
  m.jit_target = target.name;
  m.vector_width = target.vector_width;
  m.threads = threads;
  m.tuning = host_tuning();
  m.build_commit = build_commit();
  m.library = library_path();
  if (double load[1]; getloadavg(load, 1) == 1) m.load_average = load[0];
  measure_copy(m);
  measure_fma(m);
  measure_gemm(m);
  return m;
}

}  // namespace dagger::bench
