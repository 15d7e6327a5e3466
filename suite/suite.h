#pragma once
/// Running the experiment suite: expands each experiment's grid into runs (filling references
/// to earlier experiments' results), runs or reuses them in dependency order with progress and
/// an ETA on stderr, derives what each experiment publishes (chosen run, patience, ensemble),
/// and writes the report folder (suite/report.h).
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dagger/runtime/data.h"
#include "dagger/runtime/distributed.h"
#include "dagger/suite/analysis.h"
#include "dagger/suite/experiment.h"
#include "dagger/suite/profile.h"
#include "dagger/suite/run.h"

namespace dagger::suite {

struct SuiteOptions {
  Profile profile = suite::profile("quick");
  std::vector<std::string> only;  ///< experiment ids; empty: all (their dependencies are added)
  std::string out_dir;            ///< report, results.json and runs/<key>/ go here
  std::string data_dir = default_data_dir();
  ExecutorKind executor = ExecutorKind::jit;
  int threads = 1;  ///< JIT threads of each run
  /// Runs that train at once, each on its own thread with `threads` JIT threads (suite/schedule.h
  /// orders them); 1 trains them one after another.
  int jobs = 1;
  /// With several ranks (mpirun): rank 0 calls run_suite, which hands runs to the other ranks
  /// as well as training them itself; the others call serve_suite_runs. Null: this process only.
  const Communicator* communicator = nullptr;
  /// The JIT's 3x3 stride-1 convolutions: direct, winograd or auto (codegen/conv_algo.h).
  ConvAlgo conv_algo = ConvAlgo::automatic;
  /// The JIT's dense layers' products (runtime/precision.h).
  Precision precision = Precision::f32;
  nlohmann::json provenance;  ///< the build and machine (commit, LLVM, CPU, features), from the caller
  bool progress = true;       ///< progress lines and the ETA on stderr
  bool plots = true;          ///< draw the report's plots with gnuplot
  /// Loads the data a slice needs; defaults to Fashion-MNIST from data_dir. Tests hand in their own.
  std::function<Splits(const SplitOptions&)> load_data;
  const std::vector<Experiment>* experiments = &catalog();
  /// Called after every trained epoch, its checkpoint on disk (tests interrupt a suite here).
  std::function<void(const RunConfig&, const EpochStats&)> after_epoch;
};

/// One run of an experiment with the grid values it was made from.
struct GridRun {
  std::map<std::string, std::string> labels;  ///< axis name -> value (references resolved)
  RunRecord record;
};

struct ExperimentResult {
  const Experiment* experiment = nullptr;
  std::vector<GridRun> runs;    ///< in grid order (first axis slowest), each combination under every seed in turn
  std::vector<uint64_t> seeds;  ///< the training seeds of its runs (Profile::seeds_of), the profile's first
  /// Index of the chosen run: of the combination with the lowest validation loss (averaged over
  /// the seeds when there are several), its run under the profile's seed; -1 without runs.
  int chosen = -1;
  std::map<std::string, std::string> values;  ///< what later experiments may reference ("lr", "q", "patience", ...)
  std::map<std::string, double> measures;     ///< our numbers under the keys StudyNumber uses
  std::optional<RunningMinTable> running_min;
  std::optional<EnsembleResult> ensemble;        ///< under the profile's seed
  std::map<uint64_t, EnsembleResult> ensembles;  ///< by seed: every seed all members ran under
  /// Under the profile's seed, the ensemble of the members' weights of their lowest validation
  /// loss (RunRecord::best_epoch_probs), when every member has their test probabilities.
  std::optional<EnsembleResult> best_epoch_ensemble;
  double wall_seconds = 0;  ///< this invocation's time on the experiment
  size_t trained = 0, reused = 0;

  const GridRun* chosen_run() const { return chosen < 0 ? nullptr : &runs[static_cast<size_t>(chosen)]; }
  /// The chosen combination's run under each seed, in the order of `seeds` (empty without runs).
  std::vector<const GridRun*> chosen_runs() const;
};

struct SuiteResult {
  SuiteResult() = default;
  SuiteResult(SuiteResult&&) = default;
  SuiteResult& operator=(SuiteResult&&) = default;
  SuiteResult(const SuiteResult&) = delete;  ///< by_id points into experiments

  std::vector<ExperimentResult> experiments;  ///< in the order they ran
  std::map<std::string, const ExperimentResult*> by_id;
  /// The data of every slice used, by slice_key(): test images for error analysis, E01's counts.
  std::map<std::string, std::shared_ptr<Splits>> data;
  double wall_seconds = 0;
  size_t trained = 0, reused = 0;
};

/// Runs the suite and writes the report into options.out_dir. Throws Error for an unknown
/// experiment id, unreadable data or a run that fails.
SuiteResult run_suite(const SuiteOptions& options);

/// For ranks other than 0 of options.communicator: trains the runs rank 0's run_suite hands
/// this rank, until it says stop. Call it with the options rank 0 has.
void serve_suite_runs(const SuiteOptions& options);

/// The data slice a run of `config` uses, as a key of SuiteResult::data.
std::string slice_key(size_t train, size_t val, size_t test, bool raw_pixels, uint64_t seed);
std::string slice_key(const RunConfig& config);

/// "id  runs  title" lines for `dagger suite --list`.
std::string list_experiments(const std::vector<Experiment>& experiments = catalog());

}  // namespace dagger::suite
