// What `dagger bench` prints: tables for people, JSON for scripts, baselines for --check.
#include <fmt/format.h>

#include <algorithm>

#include "dagger/graph/error.h"
#include "tools/bench.h"

namespace dagger::bench {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

nlohmann::json to_json(const Throughput& t) {
  return {{"images_per_sec_median", t.median_images_per_sec},
          {"images_per_sec_runs", t.images_per_sec},
          {"step_ms_median", t.median_step_ms},
          {"step_ms_mean", t.mean_step_ms},
          {"flops_per_step", t.flops_per_step},
          {"gflops", t.gflops}};
}

nlohmann::json to_json(const KernelRow& k) {
  return {{"name", k.name},
          {"key", k.key},
          {"ops", k.ops},
          {"contraction", k.contraction},
          {"calls", k.calls},
          {"ms_per_step", k.ms_per_step},
          {"flops", k.flops},
          {"bytes", k.bytes},
          {"gflops", k.gflops},
          {"gbps", k.gbps},
          {"ratio", k.ratio},
          {"ratio_of", k.contraction ? "sgemm_peak" : "copy_bandwidth"},
          {"ratio_of_blas_sgemm", k.ratio_blas > 0 ? nlohmann::json(k.ratio_blas) : nlohmann::json()},
          {"share", k.share}};
}

/// The BLAS's SGEMM: its figure, or why there is none.
nlohmann::json blas_json(const Machine& m) {
  if (m.blas_sgemm_gflops <= 0) return {{"gflops", nullptr}, {"not_measured", m.blas_not_measured}};
  return {{"n", m.gemm_n}, {"gflops", m.blas_sgemm_gflops}, {"library", m.blas_library}, {"rounds", m.sgemm_rounds}};
}

/// Milliseconds per step spent inside the profiled kernels.
double kernel_ms(const std::vector<KernelRow>& kernels) {
  double ms = 0;
  for (const KernelRow& k : kernels) ms += k.ms_per_step;
  return ms;
}

nlohmann::json kernels_json(const std::vector<KernelRow>& rows) {
  nlohmann::json kernels = nlohmann::json::array();
  for (const KernelRow& k : rows) kernels.push_back(to_json(k));
  return kernels;
}

/// One plan's kernels, slowest first, and what the step spent outside them.
void print_kernels(const std::string& title, const std::vector<KernelRow>& kernels, double mean_step_ms) {
  fmt::print("\n  {:<34} {:>6} {:>9} {:>6} {:>9} {:>8} {:>7} {:>7}  {}\n", title, "calls", "ms/step", "share",
             "GFLOP/s", "GB/s", "ratio", "of BLAS", "ops");
  std::vector<const KernelRow*> rows;
  for (const KernelRow& k : kernels) rows.push_back(&k);
  std::stable_sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->ms_per_step > b->ms_per_step; });
  for (const KernelRow* k : rows) {
    const std::string ratio = fmt::format("{:.1f}%{}", 100 * k->ratio, k->contraction ? "pk" : "bw");
    const std::string of_blas = k->ratio_blas > 0 ? fmt::format("{:.1f}%", 100 * k->ratio_blas) : "-";
    fmt::print("  {:<34} {:>6} {:>9.4f} {:>5.1f}% {:>9.2f} {:>8.2f} {:>7} {:>7}  {}\n", k->name, k->calls,
               k->ms_per_step, 100 * k->share, k->gflops, k->gbps, ratio, of_blas, k->ops);
  }
  const double inside = kernel_ms(kernels);
  fmt::print(
      "  kernels: {:.3f} ms/step; the rest of the mean step of {:.3f} ms ({:.3f} ms) is "
      "the plan's own work: binding feeds, copying outputs and the new state\n",
      inside, mean_step_ms, mean_step_ms - inside);
}

std::string throughput_line(const Throughput& t) {
  const auto [lo, hi] = std::minmax_element(t.images_per_sec.begin(), t.images_per_sec.end());
  return fmt::format("{:>10.0f} img/s  (median of {}, range {:.0f}..{:.0f}), {:.3f} ms/step, {:.1f} GFLOP/s",
                     t.median_images_per_sec, t.images_per_sec.size(), *lo, *hi, t.median_step_ms, t.gflops);
}

}  // namespace

nlohmann::json to_json(const Machine& m) {
  return {{"cpu", m.cpu},
          {"features", m.features},
          {"jit_target", m.jit_target},
          {"build", {{"commit", m.build_commit}, {"library", m.library}}},
          {"vector_width", m.vector_width},
          {"threads", m.threads},
          {"load_average", m.load_average},
          {"sgemm",
           {{"n", m.gemm_n},
            {"one_plan_gflops", m.gemm_one_plan_gflops},
            {"concurrent_one_thread_plans_gflops", m.gemm_concurrent_gflops},
            {"peak_gflops", m.sgemm_peak_gflops},
            {"rounds", m.sgemm_rounds}}},
          {"blas_sgemm", blas_json(m)},
          {"host_tuning",
           {{"l1d_bytes", m.tuning.used.l1d_bytes},
            {"l2_bytes", m.tuning.used.l2_bytes},
            {"source", m.tuning.source},
            {"gemm_slice_floats", m.tuning.slice_floats},
            {"gemm_a_block_floats", m.tuning.a_block_floats}}},
          {"fma", {{"isa", m.fma_isa}, {"peak_gflops", m.fma_peak_gflops}}},
          {"copy", {{"bytes_per_thread", m.copy_bytes_per_thread}, {"gbps", m.copy_gbps}}}};
}

nlohmann::json to_json(const ModelResult& r) {
  return {{"model", r.model},
          {"batch", r.batch},
          {"threads", r.threads},
          {"executor", r.executor},
          {"precision", r.precision},
          {"optimizer", r.optimizer},
          {"nesterov", r.nesterov},
          {"train", to_json(r.train)},
          {"inference", to_json(r.inference)},
          {"compile_seconds",
           {{"train", r.compile_train_seconds},
            {"train_from_cache", r.compile_train_cached_seconds},
            {"train_cpu", r.compile_train_cpu_seconds},
            {"train_from_cache_cpu", r.compile_train_cached_cpu_seconds},
            {"inference", r.compile_inference_seconds}}},
          {"memory",
           {{"planned_bytes", r.arena_bytes},
            {"inference_kept_packed_bytes", r.kept_packed_bytes},
            {"unplanned_upper_bound_bytes", r.unplanned_bytes},
            {"peak_rss_bytes", r.peak_rss_bytes},
            {"peak_rss_of", r.peak_rss_since_model ? "this model" : "the process"}}},
          {"kernels", kernels_json(r.kernels)},
          {"kernels_ms_per_step", kernel_ms(r.kernels)},
          {"inference_kernels", kernels_json(r.inference_kernels)},
          {"inference_kernels_ms_per_step", kernel_ms(r.inference_kernels)}};
}

void print_machine(const Machine& m) {
  std::vector<std::string> vector_features;
  for (const std::string& f : m.features)
    if (f.starts_with("avx") || f == "fma") vector_features.push_back(f);
  fmt::print("machine: {} ({}), {} thread{}\n", m.cpu, fmt::join(vector_features, " "), m.threads,
             m.threads == 1 ? "" : "s");
  fmt::print("  JIT target: {} ({} floats per vector)\n", m.jit_target, m.vector_width);
  fmt::print("  libdagger: {}, built from {}\n", m.library.empty() ? "(path unknown)" : m.library, m.build_commit);
  fmt::print("  load average before measuring: {:.2f} (other work on the machine disturbs every figure)\n",
             m.load_average);
  fmt::print("  SGEMM {}^3 through dagger's JIT, one plan:       {:8.1f} GFLOP/s\n", m.gemm_n, m.gemm_one_plan_gflops);
  if (m.threads > 1)
    fmt::print("  SGEMM {}^3, {} one-thread plans at once:          {:8.1f} GFLOP/s\n", m.gemm_n, m.threads,
               m.gemm_concurrent_gflops);
  fmt::print("  SGEMM peak (the better; contractions below):     {:8.1f} GFLOP/s\n", m.sgemm_peak_gflops);
  if (m.blas_sgemm_gflops > 0)
    fmt::print("  SGEMM {}^3 through PyTorch's BLAS ({}):  {:8.1f} GFLOP/s\n", m.gemm_n, m.blas_library,
               m.blas_sgemm_gflops);
  else
    fmt::print("  SGEMM through PyTorch's BLAS (OpenBLAS): not measured: {}\n", m.blas_not_measured);
  fmt::print("  (SGEMM figures: medians of {} rounds alternating the JIT and the BLAS)\n", m.sgemm_rounds);
  if (!m.fma_isa.empty())
    fmt::print("  FMA throughput in registers ({}):          {:8.1f} GFLOP/s\n", m.fma_isa, m.fma_peak_gflops);
  fmt::print(
      "  caches: L1d {} KiB, L2 {} KiB ({}); GEMM panel slice {} floats, block of A {} floats "
      "(codegen/host_tuning.h)\n",
      m.tuning.used.l1d_bytes / 1024, m.tuning.used.l2_bytes / 1024, m.tuning.source, m.tuning.slice_floats,
      m.tuning.a_block_floats);
  fmt::print("  streaming copy, {:.0f} MiB per thread (read+write): {:8.1f} GB/s\n", m.copy_bytes_per_thread / kMiB,
             m.copy_gbps);
}

void print_model(const ModelResult& r) {
  fmt::print("\n{}: batch {}, {} thread{}, {} executor, {} step{}\n", r.model, r.batch, r.threads,
             r.threads == 1 ? "" : "s", r.executor, step_name(r.optimizer, r.nesterov),
             r.precision == "f32" ? "" : fmt::format(", dense products in {}", r.precision));
  fmt::print("  train     {}\n", throughput_line(r.train));
  fmt::print("  inference {}\n", throughput_line(r.inference));
  fmt::print(
      "  compile   training plan {:.2f} s cold, {:.2f} s from the disk cache (processor time {:.2f} s and {:.2f} s); "
      "inference plan {:.2f} s cold\n",
      r.compile_train_seconds, r.compile_train_cached_seconds, r.compile_train_cpu_seconds,
      r.compile_train_cached_cpu_seconds, r.compile_inference_seconds);
  fmt::print("  memory    planned arena {:.1f} MiB (every value at once would be {:.1f} MiB), peak RSS {:.1f} MiB{}\n",
             static_cast<double>(r.arena_bytes) / kMiB, r.unplanned_bytes / kMiB,
             static_cast<double>(r.peak_rss_bytes) / kMiB, r.peak_rss_since_model ? "" : " (whole process)");
  if (r.kept_packed_bytes > 0)
    fmt::print("            inference plan: {:.1f} MiB of packed dense-layer weights kept between runs\n",
               static_cast<double>(r.kept_packed_bytes) / kMiB);
  if (!r.kernels.empty()) print_kernels("kernel (training step)", r.kernels, r.train.mean_step_ms);
  if (!r.inference_kernels.empty()) print_kernels("kernel (inference)", r.inference_kernels, r.inference.mean_step_ms);
}

std::string step_name(const std::string& optimizer, bool nesterov) {
  return nesterov ? optimizer + " (Nesterov)" : optimizer;
}

namespace {

/// Whether a baseline's run is of `model` at `batch`, `threads` and `step` (runs saved before
/// they recorded an optimizer were all Adam's, and before they recorded Nesterov's look-ahead
/// all without it).
bool run_of(const nlohmann::json& run, const std::string& model, int64_t batch, int threads, const std::string& step) {
  return run.value("model", "") == model && run.value("batch", int64_t{-1}) == batch &&
         run.value("threads", -1) == threads &&
         step_name(run.value("optimizer", std::string("adam")), run.value("nesterov", false)) == step;
}

bool same_run(const nlohmann::json& run, const ModelResult& r) {
  return run_of(run, r.model, r.batch, r.threads, step_name(r.optimizer, r.nesterov));
}

}  // namespace

nlohmann::json make_baseline(const std::vector<ModelResult>& results, const nlohmann::json& previous) {
  nlohmann::json runs = nlohmann::json::array();
  if (previous.is_object() && previous.contains("runs"))
    for (const nlohmann::json& run : previous["runs"]) {
      const bool replaced = std::any_of(results.begin(), results.end(), [&](auto& r) { return same_run(run, r); });
      if (!replaced) runs.push_back(run);
    }
  for (const ModelResult& r : results) {
    nlohmann::json kernels = nlohmann::json::object();
    for (const KernelRow& k : r.kernels) kernels[k.key] = {{"ratio", k.ratio}, {"share", k.share}, {"name", k.name}};
    runs.push_back({{"model", r.model},
                    {"batch", r.batch},
                    {"threads", r.threads},
                    {"optimizer", r.optimizer},
                    {"nesterov", r.nesterov},
                    {"kernels", kernels}});
  }
  return {{"format", "dagger bench baseline"}, {"version", 1}, {"runs", runs}};
}

namespace {

void require_baseline_format(const nlohmann::json& baseline) {
  if (!baseline.is_object() || baseline.value("format", "") != "dagger bench baseline" || !baseline.contains("runs") ||
      !baseline["runs"].is_array())
    throw Error("the baseline is not a `dagger bench --save-baseline` file");
}

/// The baseline's run of `model` at `batch`, `threads` and `step`; throws dagger::Error when it
/// has none.
const nlohmann::json& baseline_run(const nlohmann::json& baseline, const std::string& model, int64_t batch, int threads,
                                   const std::string& step) {
  for (const nlohmann::json& run : baseline["runs"])
    if (run_of(run, model, batch, threads, step) && run.contains("kernels") && run["kernels"].is_object()) return run;
  throw Error(
      fmt::format("the baseline has no run of {} at batch {} with {} thread(s) and {}; save one with --save-baseline",
                  model, batch, threads, step));
}

}  // namespace

void require_baseline_runs(const nlohmann::json& baseline, const std::vector<std::string>& models, int64_t batch,
                           int threads, const std::string& step) {
  require_baseline_format(baseline);
  for (const std::string& model : models) baseline_run(baseline, model, batch, threads, step);
}

std::vector<std::string> check_baseline(const nlohmann::json& baseline, const std::vector<ModelResult>& results,
                                        double tolerance, double min_share, std::vector<std::string>& notes) {
  require_baseline_format(baseline);
  std::vector<std::string> regressions;
  for (const ModelResult& r : results) {
    const nlohmann::json& run = baseline_run(baseline, r.model, r.batch, r.threads, step_name(r.optimizer, r.nesterov));
    int compared = 0;
    for (const auto& [key, was] : run["kernels"].items()) {
      auto now = std::find_if(r.kernels.begin(), r.kernels.end(), [&](const KernelRow& k) { return k.key == key; });
      if (now == r.kernels.end()) {
        notes.push_back(fmt::format("{}: kernel '{}' is no longer in the plan", r.model, key));
        continue;
      }
      if (was.value("share", 0.0) < min_share) continue;
      ++compared;
      const double before = was.value("ratio", 0.0);
      if (now->ratio < before * (1 - tolerance))
        regressions.push_back(
            fmt::format("{} batch {} threads {}: {} [{}] fell from {:.1f}% to {:.1f}% of {} ({:+.0f}%)", r.model,
                        r.batch, r.threads, now->name, key, 100 * before, 100 * now->ratio,
                        now->contraction ? "the SGEMM peak" : "the copy bandwidth", 100 * (now->ratio / before - 1)));
    }
    if (compared == 0)
      throw Error(
          fmt::format("no kernel of {} at batch {} with {} thread(s) matches the baseline; the plan has "
                      "changed: save a new baseline",
                      r.model, r.batch, r.threads));
  }
  return regressions;
}

}  // namespace dagger::bench
