#pragma once
/// `dagger bench`: the machine's own yardsticks (SGEMM through the JIT, FMA throughput, a
/// streaming copy) and an external one (OpenBLAS's SGEMM through PyTorch), per-model training
/// and inference throughput, and a per-kernel table measured against those yardsticks; plus
/// baselines of per-kernel ratios for `--check`.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dagger/autodiff/optimizer.h"
#include "dagger/autodiff/step.h"
#include "dagger/codegen/host_tuning.h"
#include "dagger/runtime/executor.h"

namespace dagger::bench {

struct BenchConfig {
  int64_t batch = 64;
  int threads = 1;
  int steps = 20;   // per timed repeat
  int warmup = 3;   // untimed steps before the repeats
  int repeats = 5;  // the median of these is reported
  ExecutorKind executor = ExecutorKind::jit;
  ConvAlgo conv_algo = ConvAlgo::automatic;  // the JIT's 3x3 convolutions (codegen/conv_algo.h)
  Precision precision = Precision::f32;      // the JIT's dense layers' products (runtime/precision.h)
  OptimizerConfig::Kind optimizer = OptimizerConfig::Kind::adam;  // the training step's, with its defaults
  bool nesterov = false;  // momentum only: Nesterov's look-ahead (dagger train --nesterov)
  uint64_t seed = 42;
};

/// What this machine can do at the bench's thread count, measured by the bench itself.
struct Machine {
  std::string cpu;
  std::vector<std::string> features;
  std::string jit_target;  // what the JIT compiles for (DAGGER_TARGET), and its vector width
  int vector_width = 0;
  int threads = 1;
  int64_t gemm_n = 0;                 // the GEMM is gemm_n^3
  double gemm_one_plan_gflops = 0;    // one JIT plan compiled with `threads`
  double gemm_concurrent_gflops = 0;  // `threads` 1-thread plans at once (0 when threads == 1)
  double sgemm_peak_gflops = 0;       // the better of the two: what kernels are measured against
  int sgemm_rounds = 0;               // rounds alternating the JIT's SGEMMs and the BLAS's; figures are medians
  double blas_sgemm_gflops = 0;       // PyTorch's BLAS (OpenBLAS on Debian), gemm_n^3 at `threads`; 0: not measured
  std::string blas_library;           // "torch 1.13.0a0, BLAS libopenblasp-r0.3.21.so"
  std::string blas_not_measured;      // why there is no BLAS figure ("" when there is one)
  std::string fma_isa;                // "avx512f", "avx2+fma" or "" when neither is present
  double fma_peak_gflops = 0;         // independent FMA chains in registers, on `threads` threads
  double copy_bytes_per_thread = 0;   // buffer each thread copies
  double copy_gbps = 0;               // bytes read + written per second, on `threads` threads
  double load_average = -1;           // the system's 1-minute load average before measuring
  HostTuning tuning;                  // the caches the JIT's blocking sizes were derived from
  std::string build_commit;           // the running libdagger's commit (runtime/build_info.h)
  std::string library;                // the file it was loaded from
};

/// One SGEMM figure of the BLAS PyTorch uses, from `bench/torch_bench.py --sgemm` run as a child
/// by $DAGGER_PYTHON (python3 from PATH when unset), without OPENBLAS_CORETYPE.
struct BlasSgemm {
  double gflops = 0;         // 0 when not measured
  std::string library;       // what the child reported: torch's version and BLAS
  std::string not_measured;  // why there is no figure: no Python, no PyTorch, no script, bad output
};

/// Times n^3 SGEMM through PyTorch at `threads` threads (a few seconds, most of it importing torch).
BlasSgemm measure_blas_sgemm(int64_t n, int threads);

/// The median of `values` (the mean of the middle two of an even count); `values` not empty.
double median(std::vector<double> values);

/// Measures the machine at `threads` threads (a few seconds, most of it importing PyTorch
/// for the BLAS yardstick).
Machine measure_machine(int threads);

/// One row of the per-kernel table: a compiled kernel.
struct KernelRow {
  std::string name;  // the kernel's name
  std::string key;   // stable across runs and builds of the same plan: ops, input and output shapes
  std::string ops;   // "matmul add relu"
  bool contraction = false;  // of the matmul family: measured against the SGEMM peak
  int64_t calls = 0;
  double ms_per_step = 0;
  double flops = 0, bytes = 0;  // per call
  double gflops = 0, gbps = 0;
  double ratio = 0;  // GFLOP/s over the SGEMM peak (contractions) or GB/s over the copy bandwidth
  double ratio_blas = 0;  // contractions: GFLOP/s over the BLAS's SGEMM (0 when not measured)
  double share = 0;  // of the step's summed kernel time
};

struct Throughput {
  std::vector<double> images_per_sec;  // one per repeat
  double median_images_per_sec = 0;
  double median_step_ms = 0;
  double mean_step_ms = 0;  // over every timed step, as the per-kernel times are
  double flops_per_step = 0;
  double gflops = 0;  // flops_per_step over the median step time
};

struct ModelResult {
  std::string model;
  int64_t batch = 0;
  int threads = 1;
  std::string executor;
  std::string precision = "f32";  // the dense layers' products (runtime/precision.h)
  std::string optimizer = "adam";  // the training step's (optimizer_name)
  bool nesterov = false;           // momentum with Nesterov's look-ahead
  Throughput train, inference;
  double compile_train_seconds = 0, compile_inference_seconds = 0;  // cold
  double compile_train_cached_seconds = 0;  // the training plan again, kernels from the disk cache (JIT)
  // Processor time of the two (JIT, all threads): what they take on a quiet machine, spread
  // over the cores they use.
  double compile_train_cpu_seconds = 0, compile_train_cached_cpu_seconds = 0;
  int64_t arena_bytes = 0;                  // the training plan's planned arena (JIT)
  int64_t kept_packed_bytes = 0;            // the inference plan's packed weights, kept between runs (JIT)
  double unplanned_bytes = 0;         // every value of the training graph held at once
  int64_t peak_rss_bytes = 0;         // resident-set high-water mark while this model ran...
  bool peak_rss_since_model = false;  // ...or, when false, of the whole process so far
  std::vector<KernelRow> kernels;     // training step, JIT only, in plan order
  std::vector<KernelRow> inference_kernels;  // the inference plan's, likewise
};

/// Compiles and times `model`'s training step and inference plan.
ModelResult measure_model(const std::string& name, const ModelFn& model, const BenchConfig& config,
                          const Machine& machine);

nlohmann::json to_json(const Machine& m);
nlohmann::json to_json(const ModelResult& r);
void print_machine(const Machine& m);
void print_model(const ModelResult& r);

/// What a run's training step uses: the optimizer's name, "momentum (Nesterov)" with the look-ahead.
std::string step_name(const std::string& optimizer, bool nesterov);

/// The per-kernel ratios of `results`, merged into `previous` (an earlier baseline or null):
/// runs of the same model, batch, threads and step (step_name) are replaced, others kept. (A
/// run saved without an optimizer is Adam's, the only step earlier versions timed.)
nlohmann::json make_baseline(const std::vector<ModelResult>& results, const nlohmann::json& previous);

/// Throws dagger::Error unless `baseline` is a baseline file with a run of every model at `batch`,
/// `threads` and `step` (step_name; checked before the long measurements).
void require_baseline_runs(const nlohmann::json& baseline, const std::vector<std::string>& models, int64_t batch,
                           int threads, const std::string& step);

/// Compares `results` with `baseline`; returns one line per kernel whose ratio fell by more than
/// `tolerance` (0.2: 20%). Kernels under `min_share` of their step's time in the baseline are
/// skipped, since their timings are too short to compare. Throws dagger::Error when a result
/// has no run in the baseline or none of its kernels could be compared.
std::vector<std::string> check_baseline(const nlohmann::json& baseline, const std::vector<ModelResult>& results,
                                        double tolerance, double min_share, std::vector<std::string>& notes);

}  // namespace dagger::bench
