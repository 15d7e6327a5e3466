// Timing one model: its training step and inference plan, and the training step kernel by kernel.
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>

#include "dagger/codegen/jit_executable.h"
#include "dagger/graph/cost.h"
#include "dagger/graph/error.h"
#include "dagger/runtime/init.h"
#include "tools/bench.h"

namespace dagger::bench {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Tensor scalar_tensor(float v) {
  Tensor t = Tensor::from_shape({});
  t() = v;
  return t;
}

/// Random images in [0, 1) and labels in 0..9 for every input the graph declares.
StateMap random_feeds(const Graph& g, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> pixel(0, 1);
  std::uniform_int_distribution<int> label(0, 9);
  StateMap feeds;
  if (auto x = g.find_source("x")) {
    const Shape& s = g.shape(*x);
    Tensor t = Tensor::from_shape(std::vector<size_t>(s.begin(), s.end()));
    for (float& v : t) v = pixel(rng);
    feeds["x"] = std::move(t);
  }
  if (g.find_source("labels")) {
    Tensor t = Tensor::from_shape({static_cast<size_t>(batch)});
    for (float& v : t) v = static_cast<float>(label(rng));
    feeds["labels"] = std::move(t);
  }
  if (g.find_source(kLearningRateInput)) feeds[kLearningRateInput] = scalar_tensor(1e-3f);
  if (g.find_source(Model::kDropoutKey)) feeds[Model::kDropoutKey] = scalar_tensor(0);
  return feeds;
}

struct Compiled {
  std::unique_ptr<Executable> exe;
  JitExecutable* jit = nullptr;  // the same object when the executor is the JIT
  double seconds = 0;            // cold: every kernel through LLVM
  double cached_seconds = 0;     // JIT only: the same plan again, its kernels from the disk cache
  // JIT only: processor time of the cold compilation and of the one from the disk cache, all threads
  double cpu_seconds = 0, cached_cpu_seconds = 0;
};

/// Processor time (user + system) this process has used so far, all its threads.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

/// Points the JIT's disk cache at a fresh folder for as long as it lives, so that the first
/// compilation is cold whatever earlier runs left in the user's cache. The folder is made by
/// mkdtemp: a name nobody else could have taken, mode 0700, as the cache requires.
class FreshKernelCache {
 public:
  FreshKernelCache() {
    std::string pattern = (std::filesystem::temp_directory_path() / "dagger-bench-cache-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      throw Error(fmt::format("cannot create a kernel cache folder like {}: {}", pattern, std::strerror(errno)));
    dir_ = pattern;
    if (const char* old = std::getenv("DAGGER_CACHE_DIR")) old_ = old;
    ::setenv("DAGGER_CACHE_DIR", dir_.c_str(), 1);
  }
  ~FreshKernelCache() {
    if (old_)
      ::setenv("DAGGER_CACHE_DIR", old_->c_str(), 1);
    else
      ::unsetenv("DAGGER_CACHE_DIR");
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

 private:
  std::filesystem::path dir_;
  std::optional<std::string> old_;
};

Compiled compile(const Graph& g, const BenchConfig& config) {
  Compiled c;
  const Clock::time_point t0 = Clock::now();
  if (config.executor == ExecutorKind::jit) {
    JitOptions options;
    options.threads = config.threads;
    options.conv_algo = config.conv_algo;
    options.precision = config.precision;
    // As the trainer's inference plans; a training step assigns every parameter, so keeps none.
    options.keep_packed_parameters = true;
    FreshKernelCache cache;
    const double cpu0 = process_cpu_seconds();
    compile_jit(g, options);
    c.seconds = seconds_since(t0);
    c.cpu_seconds = process_cpu_seconds() - cpu0;
    const Clock::time_point t1 = Clock::now();
    const double cpu1 = process_cpu_seconds();
    auto jit = compile_jit(g, options);
    c.cached_seconds = seconds_since(t1);
    c.cached_cpu_seconds = process_cpu_seconds() - cpu1;
    c.jit = jit.get();
    c.exe = std::move(jit);
    return c;
  } else {
    ExecutorOptions options;
    options.threads = config.threads;
    options.conv_algo = config.conv_algo;
    options.keep_packed_parameters = true;
    c.exe = make_executable(g, config.executor, options);
  }
  c.seconds = seconds_since(t0);
  return c;
}

/// Warmup, then `repeats` timed runs of `steps` steps, profiling those when the plan is JIT-compiled.
Throughput time_steps(const Graph& g, Compiled& c, StateMap& state, const BenchConfig& config) {
  StateMap feeds = random_feeds(g, config.batch, config.seed);
  const bool keyed = feeds.count(Model::kDropoutKey) > 0;
  int64_t step = 0;
  auto run = [&] {
    // A fresh dropout key per step, as in training (below 2^24, so exact in a float).
    if (keyed) feeds[Model::kDropoutKey]() = static_cast<float>(++step & 0xFFFFFF);
    c.exe->run(feeds, state);
  };
  for (int i = 0; i < config.warmup; ++i) run();
  if (c.jit) {
    c.jit->reset_profile();
    c.jit->set_profiling(true);
  }
  Throughput t;
  std::vector<double> step_seconds;
  for (int r = 0; r < config.repeats; ++r) {
    // Each repeat is timed as Trainer::evaluate runs a data set of `steps` batches: an inference
    // plan packs its dense layers' weights in the first run of the call and keeps them.
    c.exe->parameters_changed();
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < config.steps; ++i) run();
    const double s = seconds_since(t0) / config.steps;
    step_seconds.push_back(s);
    t.images_per_sec.push_back(static_cast<double>(config.batch) / s);
  }
  if (c.jit) c.jit->set_profiling(false);
  const double step_s = median(step_seconds);
  t.median_images_per_sec = median(t.images_per_sec);
  t.median_step_ms = step_s * 1e3;
  for (double s : step_seconds) t.mean_step_ms += s * 1e3 / static_cast<double>(step_seconds.size());
  t.flops_per_step = graph_cost(g).flops;
  t.gflops = t.flops_per_step / step_s * 1e-9;
  return t;
}

/// "matmul+add [64,784][784,10][10]->[64,10]": the ops and the shapes of what the kernel reads
/// and writes, which stay the same when node numbering changes.
std::string kernel_key(const Graph& g, const KernelProfile& k) {
  std::vector<std::string> ops;
  std::vector<NodeId> reads;
  for (NodeId id : k.nodes) {
    ops.emplace_back(op_info(g.node(id).op).name);
    for (NodeId o : g.node(id).operands)
      if (!std::binary_search(k.nodes.begin(), k.nodes.end(), o) &&
          std::find(reads.begin(), reads.end(), o) == reads.end())
        reads.push_back(o);
  }
  std::string shapes;
  for (NodeId o : reads) shapes += to_string(g.shape(o));
  return fmt::format("{} {}->{}", fmt::join(ops, "+"), shapes, to_string(g.shape(k.root)));
}

std::vector<KernelRow> kernel_rows(const Graph& g, const JitExecutable& exe, int64_t steps, const Machine& machine) {
  std::vector<KernelRow> rows;
  std::map<std::string, int> seen;  // identical kernels (say, two same-shaped updates) are numbered
  double total = 0;
  for (const KernelProfile& k : exe.profile()) {
    KernelRow row;
    row.name = k.name;
    row.key = kernel_key(g, k);
    if (const int n = ++seen[row.key]; n > 1) row.key += fmt::format(" #{}", n);
    std::vector<std::string> ops;
    for (NodeId id : k.nodes) {
      ops.emplace_back(op_info(g.node(id).op).name);
      row.contraction = row.contraction || is_contraction(g.node(id).op);
    }
    row.ops = fmt::format("{}", fmt::join(ops, " "));
    row.calls = k.calls;
    const Cost cost = kernel_cost(g, k.nodes, k.root);
    row.flops = cost.flops;
    row.bytes = cost.bytes;
    row.ms_per_step = steps > 0 ? k.seconds / static_cast<double>(steps) * 1e3 : 0;
    if (k.seconds > 0) {
      row.gflops = cost.flops * static_cast<double>(k.calls) / k.seconds * 1e-9;
      row.gbps = cost.bytes * static_cast<double>(k.calls) / k.seconds * 1e-9;
    }
    const double yardstick = row.contraction ? machine.sgemm_peak_gflops : machine.copy_gbps;
    if (yardstick > 0) row.ratio = (row.contraction ? row.gflops : row.gbps) / yardstick;
    if (row.contraction && machine.blas_sgemm_gflops > 0) row.ratio_blas = row.gflops / machine.blas_sgemm_gflops;
    total += row.ms_per_step;
    rows.push_back(std::move(row));
  }
  for (KernelRow& row : rows) row.share = total > 0 ? row.ms_per_step / total : 0;
  return rows;
}

/// Restarts the kernel's high-water mark of this process's resident set (Linux: writing 5 to
/// /proc/self/clear_refs), so each model's peak excludes the machine figures' buffers and the
/// models before it. Returns false where that is not possible.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  return clear && (clear << "5").flush();
}

/// The resident-set high-water mark (VmHWM) since the last reset, or getrusage's ru_maxrss
/// (the whole process's life) when /proc is not there.
int64_t peak_rss_bytes(bool since_reset) {
  if (since_reset) {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
      if (line.starts_with("VmHWM:")) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:  1234 kB"
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // kilobytes on Linux
}

}  // namespace

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

ModelResult measure_model(const std::string& name, const ModelFn& model, const BenchConfig& config,
                          const Machine& machine) {
  ModelResult r;
  r.model = name;
  r.batch = config.batch;
  r.threads = config.threads;
  r.executor = executor_name(config.executor);
  r.precision = precision_name(config.precision);
  r.optimizer = optimizer_name(config.optimizer);
  r.nesterov = config.nesterov;
  r.peak_rss_since_model = reset_peak_rss();

  OptimizerConfig optimizer;
  optimizer.kind = config.optimizer;
  optimizer.nesterov = config.nesterov;
  const Graph train = build_training_step(model, config.batch, optimizer);
  for (const Node& n : train.nodes())
    if (n.op != Op::assign) r.unplanned_bytes += static_cast<double>(numel(n.shape)) * kBytesPerFloat;
  StateMap state;
  initialize_state(train, state, config.seed);
  Compiled step = compile(train, config);
  r.compile_train_seconds = step.seconds;
  r.compile_train_cached_seconds = step.cached_seconds;
  r.compile_train_cpu_seconds = step.cpu_seconds;
  r.compile_train_cached_cpu_seconds = step.cached_cpu_seconds;
  if (step.jit) r.arena_bytes = step.jit->arena_bytes();
  r.train = time_steps(train, step, state, config);
  if (step.jit) r.kernels = kernel_rows(train, *step.jit, int64_t{config.repeats} * config.steps, machine);
  step = {};

  const Graph infer = build_inference(model, config.batch);
  initialize_state(infer, state, config.seed);
  Compiled forward = compile(infer, config);
  r.compile_inference_seconds = forward.seconds;
  if (forward.jit) r.kept_packed_bytes = forward.jit->kept_packed_bytes();
  r.inference = time_steps(infer, forward, state, config);
  if (forward.jit)
    r.inference_kernels = kernel_rows(infer, *forward.jit, int64_t{config.repeats} * config.steps, machine);
  r.peak_rss_bytes = peak_rss_bytes(r.peak_rss_since_model);
  return r;
}

}  // namespace dagger::bench
