#pragma once
/// The experiment suite as data: each slide of the Fashion-MNIST study is one Experiment
/// declaration (its runs as a sweep grid, what the report shows, the study's numbers), and the
/// catalog is the list of them. Nothing here trains; suite/suite.h runs a catalog.
///
/// A field of a run may name a result of an earlier experiment instead of a literal:
/// "@E03.lr" is the learning rate of E03's chosen run (lowest validation loss), "@E20.q" the
/// grid value q of E20's chosen run, "@E19.patience" the patience E19's running-min table
/// gives. Such references, and `members`, are an experiment's dependencies.
#include <cstdint>
#include <string>
#include <vector>

#include "dagger/suite/profile.h"

namespace dagger::suite {

/// One training run before the grid, the profile and the references are applied.
struct RunTemplate {
  std::string model;  ///< zoo spec; "{name}" is replaced by the grid axis `name`
  std::string optimizer = "adam";
  std::string lr = "0.001";
  std::string momentum = "0";
  /// Early-stopping patience: a number, a reference, or "" for the profile's default.
  std::string patience;
  int epochs = 0;  ///< 0: the profile's epoch budget; otherwise a fixed length without early stopping
  bool raw_pixels = false;
  /// The learning rate is multiplied by (1 - momentum), so that momentum's steady-state step
  /// lr / (1 - momentum) stays the plain SGD step lr (E04b).
  bool lr_times_dampening = false;
  // The training recipe past the study's (E24); the defaults are the study's plain training.
  std::string weight_decay = "0";     ///< adamw: decoupled decay; the others: L2
  std::string schedule;               ///< "" (constant) or a runtime/schedule.h kind, e.g. "cosine"
  int warmup = 0;                     ///< cosine: epochs of linear warmup
  std::string augment;                ///< "" (none) or runtime/augment.h's text, e.g. "crop=2,flip,erase=0.5"
  std::string label_smoothing = "0";  ///< the training loss's label smoothing
  /// Score the weights of the lowest validation loss even where the profile scores the last
  /// epoch's (the study's protocol): E24 is ours, early-stopped the usual way.
  bool restore_best = false;
};

/// One dimension of a sweep. An axis named like a RunTemplate field (optimizer, lr, momentum,
/// patience, weight_decay, schedule, augment, label_smoothing) sets that field; the axis
/// "without" removes one ingredient of the recipe in turn (an ablation: "nothing", "augment",
/// "cosine", "adamw" (plain Adam, no decay), "label_smoothing"); any other name fills the
/// "{name}" placeholder of the model.
struct Axis {
  std::string name;
  std::vector<std::string> values;
};

/// What a section of the report shows.
enum class Show {
  data_overview,   ///< per-class counts per split (bars) and a grid of sample images per class
  loss_curves,     ///< train and validation loss per epoch of every run
  run_table,       ///< validation (and train/test) metrics of every run, in grid order
  leaderboard,     ///< runs sorted by validation loss
  best_splits,     ///< train/val/test accuracy, precision, recall, F1 of the chosen run
  running_min,     ///< the running-min patience table of the (single) run
  metric_vs_axis,  ///< validation accuracy and F1 against the first grid axis
  class_f1,        ///< per-class test F1 of every member, as bars
  confusion,       ///< a test confusion matrix per member
  misclassified,   ///< a grid of misclassified test images per member
  ablation,        ///< a "without" grid: each run's test figures and their change from the full
                   ///< recipe's run (without=nothing), with McNemar's test against it
  ensemble,        ///< argmax of summed softmax of the members (without members: of the chosen
                   ///< configuration's runs under each seed), against each member, on test
};

/// A number the study reports, compared with ours under `key` (see suite/suite.h, Measures).
struct StudyNumber {
  std::string label;  ///< e.g. "test accuracy"
  std::string key;    ///< e.g. "best.test.accuracy", "ensemble.accuracy", "running_min.patience"
  double value = 0;
};

struct Experiment {
  std::string id;     ///< "E01".."E23", "E04b"
  std::string title;  ///< the slide's title
  std::string what;   ///< one sentence: what runs
  RunTemplate run;    ///< with an empty model, the experiment trains nothing
  std::vector<Axis> grid;
  /// Training seeds of every run whatever the profile's (E24's three models); empty: the profile's.
  std::vector<uint64_t> seeds;
  /// Not part of the study: run by the "beyond" and "quick" profiles, or when `--only` names it.
  bool beyond_study = false;
  std::vector<std::string> members;  ///< chosen runs of other experiments shown here, by id
  bool members_first = false;        ///< list members before this experiment's own runs
  std::vector<Show> shows;
  std::vector<StudyNumber> study;
  std::string study_note;  ///< what the study's slide says that is not a number
};

/// The study's 23 experiments in slide order, and E04b beside E04.
const std::vector<Experiment>& catalog();

/// The ids `experiment` depends on: every "@Exx" reference in its run and grid, and its members.
std::vector<std::string> dependencies(const Experiment& experiment);

/// The experiments to run for `only` (empty: those of `scope`) with everything they depend on,
/// in an order where each comes after its dependencies (slide order otherwise). Throws Error
/// naming an unknown id and listing the valid ones.
std::vector<const Experiment*> plan(const std::vector<Experiment>& experiments, const std::vector<std::string>& only,
                                    Profile::Scope scope = Profile::Scope::all);

/// The seeds each configuration of `experiment` trains under: its own when it declares them,
/// else the profile's (Profile::seeds_of); the first is the one a single-seed suite has.
std::vector<uint64_t> seeds_of(const Experiment& experiment, const Profile& profile);
/// Number of runs the grid of `experiment` expands to (0 when it trains nothing).
size_t grid_size(const Experiment& experiment);

}  // namespace dagger::suite
