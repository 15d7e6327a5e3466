#pragma once
/// The suite's runs as a dependency graph, so that independent runs train at the same time
/// (`dagger suite --jobs N`, or MPI ranks) and give what the one-process suite gives:
/// - an experiment's grid is expanded once the experiments it references ("@E06.patience") have
///   published their values;
/// - runs of one trajectory (the same epochs, see trajectory()) train one after another in the
///   one-process suite's order, because a later one reuses or continues an earlier one
///   (run.h: finished_equivalent, continuable_prefix), and only the earlier one may be found;
/// - an experiment is derived (its choice, ensemble, measures) once its runs are finished and
///   every experiment it depends on, members included, is derived.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dagger/runtime/distributed.h"
#include "dagger/suite/experiment.h"
#include "dagger/suite/profile.h"
#include "dagger/suite/run.h"

namespace dagger::suite {

/// What a run's epochs compute: its configuration without when it stops (patience, epoch cap,
/// which weights it ends with), its model as zoo::canonical_call spells it. Two runs with the
/// same trajectory train the same epochs bit for bit.
std::string trajectory(const RunConfig& config);
/// Removes one ingredient of the training recipe from `t` (the grid axis "without", see
/// suite/experiment.h); throws Error naming experiment `id` for an unknown one.
void remove_ingredient(RunTemplate& t, const std::string& ingredient, const std::string& id);

/// `run` with the grid values `labels` applied: an axis named like a field sets it, any other
/// fills the "{name}" placeholder of the model. Values are applied as given, references too.
/// Throws Error naming the experiment for an axis that is neither.
RunTemplate apply_labels(RunTemplate run, const std::map<std::string, std::string>& labels, const std::string& id);

/// The grid's combinations, first axis slowest, values as declared (references unresolved).
std::vector<std::map<std::string, std::string>> grid_combinations(const Experiment& experiment);

/// A run of `run` as far as the profile sets it: model, batch, data slice (by the model's
/// family), seed and pixel scale; the optimizer's fields, epochs and patience are left default.
RunConfig profile_run(const RunTemplate& run, const Profile& profile);

/// The run `run` (a template of `experiment` with its grid labels applied) stands for under
/// `profile`, each field passed through `resolve` first (references to earlier results).
/// Throws Error naming the experiment for a field that is not a number where one is needed.
RunConfig configure_run(const Experiment& experiment, const RunTemplate& run, const Profile& profile,
                        const std::function<std::string(const std::string&)>& resolve);

/// The runs of `experiment` before its references are resolved, in grid order: fields that
/// wait on another experiment still hold "@Exx.name" (in the model too).
std::vector<RunTemplate> sketch_runs(const Experiment& experiment);

/// One run of an experiment as the suite expands it: a grid combination under one training seed.
struct GridPoint {
  std::map<std::string, std::string> labels;  ///< axis name -> value as declared (references unresolved)
  uint64_t seed = 0;
};

/// Every run `experiment` trains under `profile`, in the suite's order: each grid combination
/// (grid_combinations) under each seed of Profile::seeds_of in turn, the profile's seed first.
/// Empty when it trains nothing. The suite and `--plan` both expand runs through it.
std::vector<GridPoint> grid_points(const Experiment& experiment, const Profile& profile);

/// Sets `config` to train under `seed`; a seed other than the profile's keeps the profile's data
/// split, so every seed's run sees the same train, validation and test images.
void train_under_seed(RunConfig& config, uint64_t seed, const Profile& profile);

/// Whether a sketched run (sketch_runs) may turn out to have the trajectory of `config`:
/// unresolved fields match anything; a model with unresolved arguments matches when, those
/// arguments taken from `config`'s model, it is that model.
bool may_share_trajectory(const RunTemplate& sketch, const RunConfig& config, const Profile& profile);

/// The ids whose published values the grid of `experiment` needs (its "@Exx" references; not
/// its members, which only its report needs).
std::vector<std::string> references(const Experiment& experiment);

/// A run of the graph: experiment position in the suite's order and index in its grid.
struct RunId {
  size_t experiment = 0, index = 0;
};

/// Which runs of a suite may start, given those started and finished. Experiments are given in
/// the suite's order (suite::plan), which is also the order runs of one trajectory take.
class RunGraph {
 public:
  RunGraph(std::vector<const Experiment*> order, const Profile& profile);

  /// Experiments not expanded yet whose references are all derived.
  std::vector<size_t> expandable() const;
  void expand(size_t experiment, std::vector<RunConfig> runs);
  /// The first run in the suite's order that may start now (marked started), or none.
  std::optional<RunId> start_next();
  const RunConfig& config(RunId id) const;
  void finish(RunId id);
  /// Experiments not derived yet whose runs are finished and whose dependencies are derived.
  std::vector<size_t> derivable() const;
  void derived(size_t experiment);
  bool done() const;

 private:
  enum class State { waiting, running, finished };
  struct Node {
    const Experiment* experiment = nullptr;
    std::vector<size_t> references, dependencies;  // positions in order
    std::vector<RunTemplate> sketches;             // until expanded
    bool expanded = false, derived = false;
    std::vector<RunConfig> runs;
    std::vector<std::string> trajectories;
    std::vector<State> states;
  };
  bool may_start(size_t experiment, size_t index) const;

  std::vector<Node> nodes_;
  Profile profile_;
};

/// Where runs train: slots that each train one run at a time.
class Workers {
 public:
  virtual ~Workers() = default;
  virtual size_t count() const = 0;
  /// Starts `id` on the free slot `slot` and returns at once.
  virtual void start(size_t slot, RunId id, const RunConfig& config) = 0;
  /// A run that ended: its slot, its id, and its error (null when it finished).
  struct Ended {
    size_t slot;
    RunId id;
    std::exception_ptr error;
  };
  /// Blocks until a started run ends.
  virtual Ended wait() = 0;
};

/// Runs the graph to its end on `workers`: expands experiments as their references are derived
/// (`expand`, on this thread), starts every run that may start on a free slot, and derives each
/// experiment when it can (`derive`, on this thread). After the first error nothing new starts;
/// the runs under way are waited for, then the error is rethrown. `failed`, when given, hears at
/// once of the first run that fails, with the number of runs still under way.
void run_graph(RunGraph& graph, Workers& workers, const std::function<std::vector<RunConfig>(size_t)>& expand,
               const std::function<void(size_t)>& derive, const std::function<void(RunId, size_t)>& failed = nullptr);

/// `count` threads of this process, each training its runs with `train`.
std::unique_ptr<Workers> thread_workers(size_t count, std::function<void(RunId, const RunConfig&)> train);

/// The ranks of `comm`, for rank 0: slot 0 is a thread of this process training with `train`,
/// slot r hands its runs to rank r, which trains them in serve_runs. `collect` files a run
/// another rank finished, given the outcome that rank's `train` returned, on this thread. A
/// rank's error ends its run with that error. The destructor tells every other rank to stop.
std::unique_ptr<Workers> rank_workers(const Communicator& comm, std::function<void(RunId, const RunConfig&)> train,
                                      std::function<void(RunId, const RunConfig&, const nlohmann::json&)> collect);

/// For ranks other than 0: trains each run rank 0 hands this rank with `train`, sends back its
/// outcome (what `train` returns) or its error, until rank 0 says stop.
void serve_runs(const Communicator& comm, const std::function<nlohmann::json(RunId, const RunConfig&)>& train);

}  // namespace dagger::suite
