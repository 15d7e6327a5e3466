// `dagger bench`: throughput of the zoo's models against the machine's own yardsticks, and a
// regression guard on per-kernel ratios that does not depend on the machine's absolute speed.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "dagger/graph/error.h"
#include "dagger/runtime/atomic_file.h"
#include "tools/bench.h"
#include "tools/cli.h"

namespace dagger::cli {

namespace {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("cannot read baseline '{}'", path));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("baseline '{}' is not valid JSON: {}", path, e.what()));
  }
}

}  // namespace

Run add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench",
                                 "time models' training steps and inference, kernel by kernel, "
                                 "against this machine's SGEMM peak and copy bandwidth");
  struct Flags {
    std::vector<std::string> models;
    bench::BenchConfig config;
    std::string executor = "jit", check, save_baseline, conv_algo = "auto", precision = "f32", optimizer = "adam";
    double tolerance = 0.2, min_share = 0.01;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("models", f->models, "model names or calls, e.g. mlp512 cnn3")->required();
  cmd->add_option("--batch", f->config.batch, "mini-batch size")->check(at_least(1))->capture_default_str();
  cmd->add_option("--threads", f->config.threads, "worker threads (JIT and the machine figures)")
      ->check(kThreads)
      ->capture_default_str();
  cmd->add_option("--steps", f->config.steps, "steps per timed repeat")->check(at_least(1))->capture_default_str();
  cmd->add_option("--warmup", f->config.warmup, "untimed steps first")->check(at_least(0))->capture_default_str();
  cmd->add_option("--repeats", f->config.repeats, "timed repeats; the median is reported")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--seed", f->config.seed, "seed of the parameters and the random batch")
      ->check(kSeed)
      ->capture_default_str();
  cmd->add_option("--executor", f->executor, "jit | reference")->check(kExecutor)->capture_default_str();
  add_conv_algo(*cmd, f->conv_algo);
  add_precision(*cmd, f->precision);
  cmd->add_option("--save-baseline", f->save_baseline,
                  "store the per-kernel ratios in FILE (merged with its other runs)")
      ->check(kOutputFile);
  cmd->add_option("--check", f->check, "compare per-kernel ratios with a baseline FILE; exit 1 if any fell too far");
  cmd->add_option("--tolerance", f->tolerance, "--check: the drop that counts as a regression")
      ->check(number_in({.low = 0, .high = 1, .low_open = true, .high_open = true}))
      ->capture_default_str();
  cmd->add_option("--min-share", f->min_share, "--check: skip kernels under this share of the step in the baseline")
      ->check(number_in({.low = 0, .high = 1}))
      ->capture_default_str();
  cmd->add_option("--optimizer", f->optimizer,
                  "optimizer of the timed training step, with dagger train's defaults: sgd | momentum | adam | adamw")
      ->check(kOptimizer)
      ->capture_default_str();
  cmd->add_flag("--nesterov", f->config.nesterov, "--optimizer momentum: with Nesterov's look-ahead");
  cmd->add_flag("--json", f->json, "print everything as one JSON object");
  return [f, cmd] {
    bench::BenchConfig config = f->config;
    config.executor = executor_kind(f->executor);
    config.conv_algo = conv_algo(f->conv_algo);
    config.precision = read_precision(f->precision, config.executor);
    config.optimizer = optimizer_kind(f->optimizer);
    require_momentum_flags(*cmd, OptimizerConfig{.kind = config.optimizer});
    if ((!f->check.empty() || !f->save_baseline.empty()) && config.executor != ExecutorKind::jit)
      throw UsageError("--check and --save-baseline compare JIT kernels: use --executor jit");
    std::vector<zoo::Entry> models;
    for (const std::string& spec : f->models) models.push_back(resolve_model(spec));
    nlohmann::json baseline;
    if (!f->check.empty()) {  // fail before the long part
      baseline = read_json_file(f->check);
      bench::require_baseline_runs(baseline, f->models, config.batch, config.threads,
                                   bench::step_name(f->optimizer, config.nesterov));
    }

    const bench::Machine machine = bench::measure_machine(config.threads);
    if (!f->json) bench::print_machine(machine);
    std::vector<bench::ModelResult> results;
    for (size_t i = 0; i < models.size(); ++i) {
      if (f->json) fmt::print(stderr, "bench: {}\n", f->models[i]);
      results.push_back(bench::measure_model(f->models[i], models[i].build, config, machine));
      if (!f->json) bench::print_model(results.back());
    }

    int status = 0;
    nlohmann::json check = nullptr;
    if (!f->check.empty()) {
      std::vector<std::string> notes;
      const std::vector<std::string> regressions =
          bench::check_baseline(baseline, results, f->tolerance, f->min_share, notes);
      for (const std::string& n : notes) fmt::print(stderr, "note: {}\n", n);
      for (const std::string& r : regressions) fmt::print(stderr, "regression: {}\n", r);
      fmt::print(stderr, "check against {}: {} regression{} (tolerance {:.0f}%)\n", f->check, regressions.size(),
                 regressions.size() == 1 ? "" : "s", 100 * f->tolerance);
      check = {{"baseline", f->check}, {"tolerance", f->tolerance}, {"regressions", regressions}, {"notes", notes}};
      if (!regressions.empty()) status = 1;
    }
    if (!f->save_baseline.empty()) {
      const nlohmann::json previous =
          std::filesystem::exists(f->save_baseline) ? read_json_file(f->save_baseline) : nlohmann::json();
      write_file_atomically(f->save_baseline, {bench::make_baseline(results, previous).dump(2), "\n"});
      fmt::print(stderr, "baseline saved to {}\n", f->save_baseline);
    }
    if (f->json) {
      nlohmann::json models_json = nlohmann::json::array();
      for (const bench::ModelResult& r : results) models_json.push_back(bench::to_json(r));
      nlohmann::json j = {{"machine", bench::to_json(machine)},
                          {"config",
                           {{"batch", config.batch},
                            {"threads", config.threads},
                            {"conv_algo", conv_algo_name(config.conv_algo)},
                            {"precision", precision_name(config.precision)},
                            {"optimizer", f->optimizer},
                            {"nesterov", config.nesterov},
                            {"steps", config.steps},
                            {"warmup", config.warmup},
                            {"repeats", config.repeats},
                            {"executor", f->executor},
                            {"seed", config.seed}}},
                          {"models", models_json},
                          {"check", check}};
      fmt::print("{}\n", j.dump());
    }
    return status;
  };
}

}  // namespace dagger::cli
