#pragma once
/// One training run of the suite, stored under a folder named by its full configuration: a
/// finished run (its metrics.json written) is loaded instead of retrained, an interrupted one
/// resumes from its last epoch checkpoint through the Trainer.
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dagger/runtime/data.h"
#include "dagger/runtime/executor.h"
#include "dagger/runtime/metrics.h"
#include "dagger/runtime/trainer.h"

namespace dagger::suite {

/// Everything that determines a run's result (the executor and thread count are recorded as
/// provenance but are not part of it: a run interrupted under one may finish under the other).
struct RunConfig {
  std::string model;  ///< zoo spec
  std::string optimizer = "adam";
  double lr = 1e-3, momentum = 0;
  int epochs = 1;
  int patience = 0;  ///< 0: no early stopping
  int64_t batch = 64;
  size_t train = 0, val = 0, test = 0;  ///< data slice sizes (0 = whole split)
  uint64_t seed = 42;
  /// The seed of the data split and slices when it is not `seed` (0: `seed`): a run repeated
  /// under another training seed keeps the train/validation/test images of the first.
  uint64_t split_seed = 0;
  bool raw_pixels = false;
  /// With early stopping: end with the last epoch's weights, as the study's framework does by
  /// default, rather than with those of the lowest validation loss.
  bool keep_last = false;
  /// Whether the run ends with the weights of its lowest validation loss (early stopping without
  /// keep_last): its final/ is then not its last epoch's, and it keeps no best/ apart.
  bool restores_best() const { return patience > 0 && !keep_last; }
  // The recipe past the study's (E24); defaults are the study's plain training and are left out
  // of to_json(), so the runs of the study keep their keys.
  double weight_decay = 0;
  std::string schedule;  ///< "" (constant) or "cosine"
  int warmup = 0;
  std::string augment;  ///< "" (none) or the canonical text of runtime/augment.h
  double label_smoothing = 0;

  nlohmann::json to_json() const;
  static RunConfig from_json(const nlohmann::json& j);
  /// A folder name: the model spec made file-safe plus a hash of the whole configuration.
  std::string key() const;
  bool operator==(const RunConfig&) const = default;
  /// The seed the data was split with.
  uint64_t data_seed() const { return split_seed ? split_seed : seed; }
};

/// `config` with what does not change its epochs' arithmetic cleared (patience, epoch cap,
/// which weights are scored): runs with equal trajectories compute the same epochs, bit for bit,
/// so one may carry on after another. A schedule that depends on the run's length (cosine)
/// keeps the length.
RunConfig trajectory_of(const RunConfig& config);

/// A finished run: its configuration, history and train/val/test metrics.
struct RunRecord {
  RunConfig config;
  std::string key, dir;
  std::vector<EpochStats> history;
  int best_epoch = 0;
  bool stopped_early = false;
  std::string diverged;  ///< the trainer's message when the loss became infinite; scored at the last good epoch
  ClassificationReport train, val, test;
  /// A run scored at its last epoch whose lowest validation loss came earlier: the test figures
  /// of that epoch's weights (best/), the other protocol's, beside the last epoch's.
  std::optional<ClassificationReport> best_epoch_test;
  Tensor test_probs;  ///< [test images, 10] softmax outputs of the final weights
  /// With best_epoch_test: the softmax outputs of those weights (empty for runs finished before
  /// the suite stored them, best_test_probs/ in the run's folder).
  Tensor best_epoch_test_probs;
  std::vector<int> test_predictions;
  double train_seconds = 0;   ///< training steps of every epoch, summed over sessions
  double images_per_sec = 0;  ///< training images per training second
  bool reused = false;        ///< loaded from a finished run on disk, nothing trained
  bool resumed = false;       ///< continued an interrupted run from its last checkpoint
  nlohmann::json provenance;

  /// The lowest validation loss any epoch reached (NaN epochs skipped; the final weights' when
  /// there is no history; infinity when nothing is a number). Runs are chosen by it, so the
  /// choice depends on training alone, not on which epoch's weights are scored.
  double lowest_val_loss() const;

  /// For a run scored at its last epoch: the test figures of its weights of the lowest validation
  /// loss (best_epoch_test, or test when its last epoch was that one); none for a run that ended
  /// with its best weights anyway or diverged.
  std::optional<ClassificationReport> best_epoch_report() const;
  /// Their softmax outputs likewise (best_epoch_test_probs or test_probs); null also when they
  /// were not stored.
  const Tensor* best_epoch_probs() const;
};

/// The folder of a finished run holding best_epoch_test_probs, beside test_probs/.
inline constexpr const char* kBestTestProbsFolder = "best_test_probs";

/// How and where runs execute.
struct RunContext {
  std::string runs_dir;  ///< each run lives in runs_dir/<key>
  ExecutorKind executor = ExecutorKind::jit;
  int threads = 1;
  ConvAlgo conv_algo = ConvAlgo::automatic;
  Precision precision = Precision::f32;
  nlohmann::json provenance;  ///< shared part of every run's provenance (commit, LLVM, CPU, ...)
  std::function<void(const EpochStats&)> on_epoch;
  /// false: train the run rather than load an equivalent run's folder (finished_equivalent), one
  /// that lacks what the caller needs.
  bool reuse_equivalent = true;
};

/// The data `config` trains and is scored on.
struct RunData {
  const Dataset* train;
  const Dataset* val;
  const Dataset* test;
};

/// Loads the finished run of `config` when its metrics.json is present, or else an equivalent
/// finished run's (see finished_equivalent; the record's key is then that run's folder), else
/// trains it (resuming from runs_dir/<key>/last when present, or else carrying on after a
/// continuable_prefix), scores it and writes its record.
/// Throws Error for a bad model spec or an unreadable run folder.
RunRecord run_or_reuse(const RunConfig& config, const RunData& data, const RunContext& context);

/// True when runs_dir holds a finished run of `config`: under its key, or an equivalent one.
bool is_finished(const RunConfig& config, const std::string& runs_dir);

/// The folder of a finished run in runs_dir whose configuration equals `config` once both
/// models are written as zoo::canonical_call spells them (the same model under another
/// spelling, so the same run); the first by name when several are; "" when none is.
std::string finished_equivalent(const RunConfig& config, const std::string& runs_dir);

/// A finished run whose epochs are the first epochs of another configuration's run.
struct RunPrefix {
  std::string dir;       ///< "" when there is none
  std::string best_dir;  ///< its weights of the lowest validation loss, "" when it did not keep them
  std::vector<EpochStats> history;
};

/// The finished run in runs_dir that has trained the most of `config`'s first epochs: the same
/// model (once canonical), optimizer, learning rate, batch, data and seed, so every epoch it ran
/// computed what `config`'s would; its final/ weights are its last epoch's (it did not restore
/// its best), it ran no more epochs than `config` allows, and `config`'s own patience would not
/// have stopped sooner. run_or_reuse trains only the epochs after it.
RunPrefix continuable_prefix(const RunConfig& config, const std::string& runs_dir);

/// FNV-1a: a stable hash of `text`, the same on every platform and build (run keys, data identity).
uint64_t fnv1a(const std::string& text);

/// A report as to_json(report) writes it, read back.
ClassificationReport report_from_json(const nlohmann::json& j);

/// Removes the temporaries (`NAME.tmp-PID`) of atomic writes a killed process left in `dir`, a
/// folder of the suite's (a run's, or the partial bundle's). write_file_atomically removes those
/// of processes that no longer exist, but a killed rank may linger a moment, or stay a zombie no
/// one reaps, or its pid come back: here the folder is this process's alone (the suite holds
/// OUT's lock, gives each run to one rank and writes the partial bundle on rank 0 under its
/// lock), so every such file is stale.
void remove_stale_temporaries_in(const std::string& dir);

}  // namespace dagger::suite
