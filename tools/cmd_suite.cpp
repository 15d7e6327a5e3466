// `dagger suite`: every experiment of the study, run or resumed, and the report.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "dagger/codegen/host_tuning.h"
#include "dagger/codegen/jit.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/runtime/build_info.h"
#include "dagger/runtime/distributed.h"
#include "dagger/suite/plan.h"
#include "dagger/suite/bundle.h"
#include "dagger/suite/run.h"
#include "dagger/suite/suite.h"
#include "tools/bench.h"
#include "tools/cli.h"
#include "tools/out_folder.h"

#ifndef DAGGER_LLVM_VERSION
#define DAGGER_LLVM_VERSION "unknown"
#endif

namespace dagger::cli {

namespace {

/// The output of a shell command, trimmed; "" when it fails.
std::string command_output(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return "";
  std::string out;
  char buffer[256];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  if (pclose(pipe) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

/// The build and the machine, recorded with every run.
nlohmann::json provenance() {
  const JitTarget target = jit_target();
  return {{"git_commit", build_commit()},  // of the library's build, not of a tree it may no longer match
          {"llvm_version", DAGGER_LLVM_VERSION},
          {"cpu", host_cpu()},
          {"cpu_features", fmt::format("{}", fmt::join(host_features(), ","))},
          {"jit_target", target.name},
          {"jit_cpu", target.cpu},
          {"vector_width", target.vector_width},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"cache_l1d_bytes", host_tuning().used.l1d_bytes},
          {"cache_l2_bytes", host_tuning().used.l2_bytes},
          {"cache_source", host_tuning().source},
          {"gemm_slice_floats", host_tuning().slice_floats},
          {"gemm_a_block_floats", host_tuning().a_block_floats},
          {"host", command_output("uname -srm 2>/dev/null")}};
}

/// The files of the data folder `dir`, each one's name, size and hash, as one hash: which data a
/// suite's runs were trained and scored on.
std::string data_identity(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::string listing;
  for (const std::filesystem::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    if (!in.good() && !in.eof()) throw Error(fmt::format("--data: cannot read '{}'", file.string()));
    listing += fmt::format("{} {} {:016x}\n", file.filename().string(), bytes.size(), suite::fnv1a(bytes));
  }
  return fmt::format("{} files, {:016x}", files.size(), suite::fnv1a(listing));
}

/// A suite.json record as read back: one from before --precision (a suite folder's or a bundle's)
/// was float32.
nlohmann::json with_old_defaults(nlohmann::json record) {
  if (record.is_object() && !record.contains("precision")) record["precision"] = "f32";
  return record;
}

/// Throws unless the suite folder `out` was started with the same `identity` (what its runs
/// depend on beyond each run's own configuration, which names its folder); records it in
/// OUT/suite.json on the first invocation. Reusing runs computed otherwise would mix results.
/// A key the record lacks (written before that key was recorded) is trusted and added.
void require_same_suite(const std::string& out, const nlohmann::json& identity) {
  const std::string path = out + "/suite.json";
  if (!std::filesystem::exists(path)) {
    write_file_atomically(path, identity.dump(2) + "\n");
    return;
  }
  std::ifstream in(path);
  const nlohmann::json read = nlohmann::json::parse(in, nullptr, false);
  if (read.is_discarded() || !read.is_object()) throw Error(fmt::format("'{}' is not valid JSON", path));
  nlohmann::json then = with_old_defaults(read);
  bool added = then != read;
  for (const auto& [key, value] : identity.items()) {
    if (!then.contains(key)) {
      then[key] = value;
      added = true;
    } else if (then.at(key) != value) {
      throw Error(fmt::format("{} holds runs trained with {} = {}, this run asks for {}; give another --out", out, key,
                              then.at(key).dump(), value.dump()));
    }
  }
  if (added) write_file_atomically(path, then.dump(2) + "\n");
}

std::vector<std::string> split_ids(const std::string& text) {
  std::vector<std::string> ids;
  std::stringstream ss(text);
  for (std::string id; std::getline(ss, id, ',');) {
    id.erase(0, id.find_first_not_of(" \t"));
    id.erase(id.find_last_not_of(" \t") + 1);
    if (!id.empty()) ids.push_back(id);
  }
  return ids;
}

/// The comma-separated whole numbers of `text`, each in [low, high], e.g. "1,2,4"; throws
/// UsageError naming `option` and what `what` means otherwise, or when there is none.
std::vector<uint64_t> parse_whole_list(const std::string& option, const std::string& text, uint64_t low,
                                       uint64_t high, const std::string& what, const std::string& example) {
  std::vector<uint64_t> values;
  for (const std::string& item : split_ids(text)) {
    size_t used = 0;
    uint64_t value = 0;
    try {
      value = std::stoull(item, &used);
    } catch (const std::exception&) {
    }
    if (used != item.size() || item[0] == '-' || value < low || value > high)
      throw UsageError(fmt::format("{}: '{}' is not {} ({} to {})", option, item, what, low, high));
    values.push_back(value);
  }
  if (values.empty()) throw UsageError(fmt::format("{} needs at least one value, e.g. {}", option, example));
  return values;
}

/// "1,2,4" as machine counts.
std::vector<int> parse_machines(const std::string& text) {
  std::vector<int> counts;
  for (uint64_t m : parse_whole_list("--machines", text, 1, 100000, "a machine count", "1,2,4"))
    counts.push_back(static_cast<int>(m));
  return counts;
}

/// FLOP/s of a training step of `model` (a zoo spec) at `threads` threads.
double measure_training_rate(const std::string& model, int threads) {
  const bench::BenchConfig config{.threads = threads, .steps = 5, .warmup = 2, .repeats = 3};
  fmt::print(stderr, "measuring {} training at {} threads for the estimates...\n", model, threads);
  const bench::ModelResult r = bench::measure_model(model, zoo::find(model).build, config, bench::Machine{});
  return r.train.gflops * 1e9;
}

/// --plan: the graph, critical path and makespans of the suite `options` describes, with the
/// run times `from`/results.json recorded where it has them.
void print_plan(const suite::SuiteOptions& options, const std::string& from, const std::vector<int>& machines,
                int threads, bool pace_now) {
  const std::string path = from + "/results.json";
  nlohmann::json results;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    results = nlohmann::json::parse(in, nullptr, false);
    if (results.is_discarded() || !results.is_object()) throw Error(fmt::format("'{}' is not valid JSON", path));
    if (results.contains("profile") && !results.at("profile").is_string())
      throw Error(fmt::format("'{}': its profile is not a name", path));
    if (results.value("profile", options.profile.name) != options.profile.name)
      throw UsageError(fmt::format("--from: '{}' is a {} profile suite, the plan asks for {}; give --profile {}", path,
                                   results.value("profile", ""), options.profile.name, results.value("profile", "")));
    fmt::print("Run times: train_seconds recorded in {}\n", path);
  } else {
    fmt::print("Run times: none recorded ({} does not exist): every run estimated\n", path);
  }
  const auto rate = [threads](const std::string& model) { return measure_training_rate(model, threads); };
  suite::SuitePlan plan = suite::build_plan(
      suite::plan(*options.experiments, options.only, options.profile.scope), options.profile, results, path,
      [&rate](size_t family) { return rate(family == 1 ? "cnn3" : "mlp512"); });
  if (pace_now) {
    fmt::print("Run times: every run priced at its model's rate measured now, with its recorded epochs\n");
    suite::price_at(plan, rate);
  }
  fmt::print("{}", suite::format_plan(plan, machines));
}

/// "42,1,2" as seeds.
std::vector<uint64_t> parse_seeds(const std::string& text) {
  return parse_whole_list("--seeds", text, 0, std::numeric_limits<uint64_t>::max(), "a seed", "42,1,2");
}

/// Imports the finished runs of a results bundle into the suite's runs/ folder, once the bundle
/// is known to come from a suite of the same data, executor, convolution algorithm and precision.
void resume_from_bundle(const std::string& bundle, const suite::SuiteOptions& o) {
  const std::string identity = bundle + "/suite.json";
  if (std::filesystem::exists(identity)) {
    std::ifstream in(identity);
    const nlohmann::json then = with_old_defaults(nlohmann::json::parse(in, nullptr, false));
    std::ifstream now_in(o.out_dir + "/suite.json");
    const nlohmann::json now = nlohmann::json::parse(now_in, nullptr, false);
    if (then.is_discarded() || !then.is_object()) throw Error(fmt::format("'{}' is not valid JSON", identity));
    if (now.is_object())
      for (const auto& [key, value] : then.items())
        if (now.contains(key) && now.at(key) != value)
          throw Error(fmt::format("--resume-from: {} holds runs trained with {} = {}, this suite has {}", bundle, key,
                                  value.dump(), now.at(key).dump()));
  }
  std::filesystem::create_directories(o.out_dir + "/runs");
  const size_t imported = suite::import_bundle(bundle, o.out_dir + "/runs");
  if (o.progress) fmt::print(stderr, "imported {} finished runs from the bundle {}\n", imported, bundle);
}

}  // namespace

Run add_suite(CLI::App& app) {
  auto* cmd = app.add_subcommand("suite", "run the study's experiments (E01-E23) and write the report");
  struct Flags {
    std::string profile = "quick", only, out, executor = "jit", data = default_data_dir(), conv_algo = "auto",
                precision = "f32";
    std::string seeds;
    std::vector<std::string> resume_from;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    int jobs = 1;
    bool list = false, json = false, quiet = false, no_plots = false, restore_best = false;
    bool plan = false, distributed = false, pace_now = false;
    std::string machines = "1,2,4,8,16", from;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_flag("--list", f->list, "list the experiments: id, runs, slide title, what each uses");
  cmd->add_option("--profile", f->profile, "quick | full")
      ->check(one_of("profile", suite::profile_names()))
      ->capture_default_str();
  CLI::Option* only =
      cmd->add_option("--only", f->only, "comma-separated experiment ids, e.g. E07,E12 (their dependencies run too)");
  cmd->add_option("--out", f->out, "output folder (default runs/suite-PROFILE); a rerun resumes")->check(kOutputFolder);
  cmd->add_option("--threads", f->threads,
                  "worker threads of the JIT (default: every core; results do not depend on it)")
      ->check(kThreads)
      ->capture_default_str();
  cmd->add_option("--jobs", f->jobs,
                  "runs that train at once in this process, each with --threads JIT threads (uses jobs x threads "
                  "cores; results do not depend on it)")
      ->check(kThreads)
      ->capture_default_str();
  cmd->add_flag("--distributed", f->distributed,
                "under mpirun: rank 0 hands runs to every rank (itself too) and writes the report; each rank trains "
                "one run at a time with --threads threads");
  cmd->add_flag("--plan", f->plan,
                "train nothing: print the runs' dependency graph, its critical path and the makespan of --machines "
                "machines, from the times a finished suite recorded (--from) or estimates");
  cmd->add_option("--machines", f->machines, "with --plan: machine counts to simulate, e.g. 1,2,4,8,16")
      ->capture_default_str();
  cmd->add_flag("--pace-now", f->pace_now,
                "with --plan: price every run, recorded ones too, at its own model's training FLOP/s measured now at "
                "--threads threads (recorded runs keep their epochs): the suite's time on this machine as it is now");
  cmd->add_option("--from", f->from,
                  "with --plan: a suite folder whose results.json has the run times (default: --out's)")
      ->check(kExistingFolder);
  cmd->add_option("--executor", f->executor, "jit | reference")->check(kExecutor)->capture_default_str();
  add_conv_algo(*cmd, f->conv_algo);
  add_precision(*cmd, f->precision);
  cmd->add_flag(
      "--restore-best", f->restore_best,
      "early-stopped runs end with the weights of their lowest validation loss instead of their last epoch's");
  CLI::Option* seeds = cmd->add_option(
      "--seeds", f->seeds,
      "comma-separated training seeds for the headline experiments (E10 E12 E14 E20 E21 E23), e.g. 42,1,2; the "
      "profile's seed 42 always runs and splits the data");
  cmd->add_option("--resume-from", f->resume_from,
                  "results bundles, comma-separated (OUT/bundle of an earlier suite, e.g. docs/results/quick, or "
                  "OUT/bundle-partial of one stopped mid-way): import their finished runs into --out before running")
      ->delimiter(',')
      ->check(kExistingFolder);
  cmd->add_option("--data", f->data, "Fashion-MNIST folder (default: $DAGGER_DATA or the Debian package's)")
      ->check(kExistingFolder);
  cmd->add_flag("--json", f->json, "end with one JSON object: the report's paths and every study comparison");
  cmd->add_flag("--quiet", f->quiet, "no progress on stderr");
  cmd->add_flag("--no-plots", f->no_plots, "skip gnuplot");
  return [f, only, seeds] {
    if (f->list) {
      fmt::print("{}", suite::list_experiments());
      return 0;
    }
    if (!f->plan && !f->from.empty()) throw UsageError("--from needs --plan");
    if (!f->plan && f->pace_now) throw UsageError("--pace-now needs --plan");
    suite::SuiteOptions o;
    o.profile = suite::profile(f->profile);
    o.profile.keep_last = !f->restore_best;
    if (only->count() > 0 && f->only.find_first_not_of(", ") == std::string::npos)
      throw UsageError("--only needs at least one experiment id, e.g. E07");
    o.only = split_ids(f->only);
    if (seeds->count() > 0) {
      o.profile.seeds = parse_seeds(f->seeds);
      if (o.profile.seeded.empty()) o.profile.seeded = suite::headline_experiments();
    }
    try {
      suite::plan(suite::catalog(), o.only, o.profile.scope);
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
    o.out_dir = f->out.empty() ? "runs/suite-" + f->profile : f->out;
    if (f->plan) {
      print_plan(o, f->from.empty() ? o.out_dir : f->from, parse_machines(f->machines), f->threads,
                 f->pace_now);
      return 0;
    }
    o.data_dir = f->data;
    o.executor = executor_kind(f->executor);
    o.threads = f->threads;
    o.jobs = f->jobs;
    o.conv_algo = conv_algo(f->conv_algo);
    o.precision = read_precision(f->precision, o.executor);
    o.provenance = provenance();
    if (o.precision != Precision::f32) o.provenance["precision"] = precision_name(o.precision);
    o.progress = !f->quiet;
    o.plots = !f->no_plots;
    if (f->distributed) {
      if (!mpi_built()) throw UsageError("--distributed: this dagger was built without MPI (see docs/scale-out.md)");
      if (f->jobs > 1) throw UsageError("--jobs and --distributed: give one; under mpirun every rank is a job");
      o.communicator = &mpi_world();
      if (o.communicator->rank() > 0) {  // rank 0 holds the lock and writes the report
        suite::serve_suite_runs(o);
        return 0;
      }
    }
    const FolderLock lock(o.out_dir, "--out");      // the runs inside train without locks of their own
    if (std::filesystem::is_directory(o.data_dir))  // else the suite says where it looked for the data
      require_same_suite(o.out_dir, {{"executor", f->executor},
                                     {"data", data_identity(o.data_dir)},
                                     {"conv_algo", conv_algo_name(o.conv_algo)},
                                     {"precision", precision_name(o.precision)}});
    for (const std::string& bundle : f->resume_from) resume_from_bundle(bundle, o);
    suite::SuiteResult result = suite::run_suite(o);
    fmt::print(stderr,
               "report: {0}/report.md, {0}/report.html, {0}/results.json ({1} runs trained, {2} reused, {3:.0f} s)\n",
               o.out_dir, result.trained, result.reused, result.wall_seconds);
    if (f->json) {
      nlohmann::json experiments = nlohmann::json::array();
      for (const suite::ExperimentResult& e : result.experiments) {
        nlohmann::json study = nlohmann::json::array();
        for (const suite::StudyNumber& n : e.experiment->study) {
          auto it = e.measures.find(n.key);
          study.push_back({{"key", n.key},
                           {"study", n.value},
                           {"ours", it == e.measures.end() ? nlohmann::json() : nlohmann::json(it->second)}});
        }
        experiments.push_back({{"id", e.experiment->id},
                               {"runs", e.runs.size()},
                               {"trained", e.trained},
                               {"reused", e.reused},
                               {"wall_seconds", e.wall_seconds},
                               {"study", study}});
      }
      fmt::print("{}\n", nlohmann::json{{"out", o.out_dir},
                                        {"report", o.out_dir + "/report.md"},
                                        {"profile", f->profile},
                                        {"wall_seconds", result.wall_seconds},
                                        {"trained", result.trained},
                                        {"reused", result.reused},
                                        {"experiments", experiments}}
                             .dump());
    }
    return 0;
  };
}

}  // namespace dagger::cli
