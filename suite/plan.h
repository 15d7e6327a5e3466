#pragma once
/// `dagger suite --plan`: the suite's runs as a dependency graph with a time per run, its
/// critical path, and the makespan of M machines by a list-scheduling simulation, so a user can
/// see what more machines would buy before renting them.
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dagger/suite/experiment.h"
#include "dagger/suite/profile.h"

namespace dagger::suite {

/// One run of the plan.
struct PlannedRun {
  std::string experiment;         ///< its id
  std::string name;               ///< "E08 p=0.2 lr=0.001", "E10 seed=1": experiment, grid, other seed
  std::string model;              ///< as far as it is known
  double seconds = 0;             ///< recorded train_seconds, or the estimate
  bool estimated = false;         ///< no recorded time: FLOPs x epochs / throughput
  /// FLOPs of its training steps: the epochs it trained itself where recorded (0 when reused),
  /// else its planned epochs.
  double flops = 0;
  std::vector<size_t> after;      ///< runs of the experiments it waits for (indices into SuitePlan::runs)
  std::optional<size_t> follows;  ///< the run before it of its trajectory, which it waits for too
};

struct SuitePlan {
  std::vector<PlannedRun> runs;  ///< in the one-process suite's order
  /// FLOP/s each estimate was priced at, by family ("MLP", "CNN"), and where the rate came from.
  std::vector<std::string> rates;
};

/// 0 for dense models (shallow networks, MLPs), 1 for CNNs: the families whose FLOP rates
/// differ (small models run far below the machine's rate).
size_t model_family(const std::string& model);

/// The zoo model a run of `model` is priced as before it is known: `model` itself, or, while a
/// placeholder or reference is unfilled (E21's "rescnn(residual,@E20.q,@E20.h)"), the zoo model
/// of its name (rescnn), or else mlp512 or cnn3 by family.
std::string priced_model(const std::string& model);

/// Training FLOPs per image of `model` (a zoo spec): forward, backward and Adam at batch 64.
double training_flops_per_image(const std::string& model);

/// Epochs a run of `experiment` is planned at under `profile`: its fixed length (capped by the
/// profile), or the profile's cap of early-stopped runs.
int planned_epochs(const Experiment& experiment, const Profile& profile);
/// The same for a run declared with `epochs` (0: stops early) under budget `b`.
int planned_epochs(int epochs, const Budget& b);

/// The runs of `order` (suite::plan's order) and what each waits for: every run of the
/// experiments its grid references (and of theirs, transitively), and the run before it of the
/// same trajectory (suite/schedule.h). A run's time is its train_seconds in `results` (a suite's
/// results.json, or null) when that holds the experiment; else it is estimated as FLOPs x
/// planned epochs / FLOP/s, the FLOP/s measured on the family's recorded runs, or else given
/// by `measure_rate(family)` (0: dense models, 1: CNNs). A run a results.json lists under a key
/// an earlier run already holds was reused: 0 s. The runs are the suite's (grid_points): every
/// seed of a seeded experiment included, a seed `results` lacks estimated. Throws Error naming
/// `results_path` when `results` lacks a field the plan reads or names an unknown model.
SuitePlan build_plan(const std::vector<const Experiment*>& order, const Profile& profile, const nlohmann::json& results,
                     const std::string& results_path, const std::function<double(size_t family)>& measure_rate);

/// Prices every run of `plan` at `rate(model)` FLOP/s, recorded or not (seconds = flops / rate):
/// what the suite would take on this machine as it runs now, with the epochs each run recorded.
/// `rate` is asked once per priced model (priced_model); plan.rates lists each.
void price_at(SuitePlan& plan, const std::function<double(const std::string& model)>& rate);

/// The longest chain of waiting runs, by time: the makespan no number of machines goes below.
std::vector<size_t> critical_path(const SuitePlan& plan);

/// The makespan of `machines` identical machines by list scheduling: whenever a machine is free,
/// it takes the ready run with the longest path (its time plus its longest chain of waiting
/// runs) to the end, the earlier in the suite's order on a tie. A run is ready once every run
/// it waits for has finished; nothing is preempted.
double simulate_makespan(const SuitePlan& plan, int machines);

/// The graph (one line per experiment), the critical path and a table of makespans for each
/// count in `machines`.
std::string format_plan(const SuitePlan& plan, const std::vector<int>& machines);

}  // namespace dagger::suite
