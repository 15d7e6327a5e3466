#pragma once
/// The training loop around an executor: seeded shuffling, mini-batches (a last partial
/// batch runs through its own plan so every example counts exactly once), per-epoch
/// validation, early stopping with restore-best-weights, a history CSV and per-epoch
/// checkpoints that let an interrupted run resume where its last finished epoch left off.
#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dagger/autodiff/optimizer.h"
#include "dagger/autodiff/step.h"
#include "dagger/runtime/augment.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/data.h"
#include "dagger/runtime/executor.h"
#include "dagger/runtime/metrics.h"
#include "dagger/runtime/schedule.h"

namespace dagger {

struct EpochStats;
class Communicator;

struct TrainConfig {
  std::string model_spec;  ///< recorded in checkpoints so `dagger eval` can rebuild the model
  int epochs = 10;
  int64_t batch = 64;
  OptimizerConfig optimizer;   ///< optimizer.lr is the schedule's base rate
  ScheduleConfig schedule;     ///< the learning rate per epoch (default: constant optimizer.lr)
  AugmentConfig augment;       ///< transforms of the training images (default: none)
  double label_smoothing = 0;  ///< E in [0, 1): the training loss's label smoothing (validation loss is plain)
  int patience = 0;          ///< 0: no early stopping
  bool restore_best = true;  ///< with early stopping: end with the weights of the best validation loss
  uint64_t seed = 42;
  ExecutorKind executor = ExecutorKind::jit;  ///< the JIT (registered by codegen/); reference: the interpreter
  int threads = 1;           ///< the JIT's worker threads; results do not depend on it (docs/architecture.md)
  /// The JIT's 3x3 stride-1 convolutions: direct, winograd or auto (codegen/conv_algo.h).
  ConvAlgo conv_algo = ConvAlgo::automatic;
  /// The JIT's dense layers' products (runtime/precision.h), in training and in the trainer's
  /// evaluation plans. A checkpoint's record names bf16 (a resumed run must ask for the same);
  /// loading one for evaluation or prediction keeps the precision the caller's config asks for.
  Precision precision = Precision::f32;
  std::string out_dir;       ///< "" = keep nothing on disk; else history.csv, last/ and best/ checkpoints
  bool allow_nonfinite = false;  ///< load (resume from, evaluate) checkpoints holding NaN or infinite values
  bool progress = true;
  int64_t eval_batch = 500;
  Shape input_shape = {1, 28, 28};  ///< one image: channels, height, width
  int64_t classes = 10;             ///< the width of the model's logits
  /// The classes' names, recorded in checkpoints so predictions can be named; empty = numbered.
  std::vector<std::string> class_names;
  /// The images were fed as 0..255 rather than 0..1; recorded so new images are fed alike.
  bool raw_pixels = false;
  /// Non-null: train data-parallel over its ranks (docs/scale-out.md). Each rank computes the
  /// gradients of its shard of every batch (`batch` stays the global batch), the gradients are
  /// summed in rank order, and every rank applies the same update; evaluation is sharded too.
  /// Only rank 0 writes files and prints. The communicator must outlive the trainer.
  const Communicator* communicator = nullptr;
  /// Called after each finished epoch (its checkpoint already on disk), e.g. for a caller's own progress.
  std::function<void(const EpochStats&)> on_epoch;
  /// Called after each epoch's validation, before its checkpoint is written: true ends training
  /// there, as early stopping does (and a rerun into the same out_dir does not resume it). The
  /// weights are then the best epoch's when patience > 0 and restore_best, else the last's.
  std::function<bool(const EpochStats&)> stop_when;
};

struct EpochStats {
  int epoch = 0;  ///< 1-based
  double train_loss = 0, train_accuracy = 0, val_loss = 0, val_accuracy = 0;
  double seconds = 0, images_per_sec = 0;
  double lr = 0;           ///< the learning rate this epoch trained with
  double sum_seconds = 0;  ///< data-parallel: the time spent summing the gradients over the ranks
};

struct TrainResult {
  std::vector<EpochStats> history;
  int best_epoch = 0;
  double best_val_loss = 0;
  bool stopped_early = false;
  bool resumed = false;
  double wall_seconds = 0;    ///< this process's time in fit(), validation included (not epochs restored from disk)
  double images_per_sec = 0;  ///< training throughput: images per second of training steps, validation excluded
  double sum_seconds = 0;     ///< data-parallel: of those training seconds, the time spent summing gradients
};

/// Early stopping on the validation loss: the lowest so far, its epoch, and the epochs since.
struct EarlyStopping {
  int patience = 0;  ///< 0: never stop
  double best_val_loss = INFINITY;
  int best_epoch = 0, wait = 0;

  /// Records epoch `epoch`'s validation loss; true when it is lower than every earlier one
  /// (a NaN never is).
  bool update(int epoch, double val_loss);
  bool stop() const { return patience > 0 && wait >= patience; }
};

struct Evaluation {
  ClassificationReport report;
  Tensor probs;  ///< [n, classes] softmax outputs
  std::vector<int> predictions;
};

/// Thrown when out_dir holds a run that this configuration did not start (another model,
/// option, data set, a smaller epoch cap, a patience that would have ended it sooner) or one
/// that cannot be resumed (its best weights lost): the message names the difference.
struct ResumeConflict : Error {
  using Error::Error;
};

class Trainer {
 public:
  Trainer(ModelFn model, TrainConfig config);
  ~Trainer();
  Trainer(Trainer&&) noexcept;
  Trainer& operator=(Trainer&&) noexcept;

  /// A trainer rebuilt from a checkpoint alone: the model from the text the checkpoint carries
  /// (any model, the zoo's or a user's), its input shape, classes, class names, optimizer and
  /// seed from its metadata, and its tensors as the state. `config` supplies the rest (executor,
  /// threads, eval_batch, allow_nonfinite, ...). Throws Error naming the folder when it is not a
  /// checkpoint, fails verification (load_checkpoint) or carries no model text (one written
  /// before checkpoints carried their model).
  static Trainer load(const std::string& checkpoint_dir, TrainConfig config = {});
  /// The same from a checkpoint already read (load_checkpoint); it must carry its model text.
  static Trainer load(Checkpoint checkpoint, TrainConfig config = {});

  /// Trains on `train`, validating on `val` after each epoch. Resumes from out_dir/last when
  /// present: a run of the same model, training options and data (training_options()) whose
  /// epochs do not exceed config().epochs; more epochs carry it on. Its patience may differ when
  /// it would not have ended the run sooner (a larger one carries on a run stopped early).
  /// Throws ResumeConflict otherwise.
  TrainResult fit(const Dataset& train, const Dataset& val);
  /// Inference-mode metrics (batchnorm on running statistics, no dropout) over a whole data set.
  Evaluation evaluate(const Dataset& data);
  /// Class probabilities [n, classes] of `images` [n, input_shape...] in inference mode, run in
  /// batches of config().eval_batch. Throws Error when the images' shape is not the model's input.
  Tensor predict(const Tensor& images);

  /// Makes fit() carry on after `history`: epochs that another run of this very model, data,
  /// optimizer, batch and seed trained (its patience and epoch cap may differ: they decide only
  /// when a run ends, not what its epochs compute). `state_dir` is that run's checkpoint after the
  /// last of those epochs, `best_dir` its weights of their lowest validation loss ("" when it did
  /// not keep them); its recorded training options must be this run's (a cosine schedule's include
  /// the epoch cap). The history's rates are recomputed from this run's schedule. Writes out_dir/last (and out_dir/best) as fit() would have after training
  /// those epochs itself. Throws Error when out_dir is not set, the history is empty, or this
  /// configuration would have stopped before the history's last epoch.
  void continue_from(const std::string& state_dir, const std::string& best_dir, const std::vector<EpochStats>& history);

  /// Parameters, optimizer moments and running statistics by name.
  StateMap& state() { return state_; }
  const TrainConfig& config() const { return config_; }
  /// The model this trainer builds its plans from.
  const ModelFn& model() const { return model_; }
  /// Replaces the state with a checkpoint's tensors after checking names and shapes (and, unless
  /// config().allow_nonfinite, that every value is finite).
  void load_state(const std::string& checkpoint_dir);
  /// load_state of a state fit() saved (a run's last/), returning the history and best epoch
  /// recorded with it; a malformed record is an Error naming the folder.
  TrainResult load_progress(const std::string& state_dir);
  /// Writes the state as a checkpoint that carries the model's text (kModelFile) too.
  void save_state(const std::string& checkpoint_dir, const nlohmann::json& extra = {}) const;
  /// The options that decide what each epoch computes beyond the model: learning rate, weight
  /// decay, schedule, augmentation, label smoothing, optimizer (kind, momentum, Nesterov), batch,
  /// seed, executor (the reference interpreter rounds otherwise than the JIT), and, once fit()
  /// has seen them, the data's sizes and hashes. Recorded in every
  /// checkpoint's metadata ("training") and checked when a run resumes: a difference is an Error
  /// naming the option (the model itself is checked through its text).
  nlohmann::json training_options() const;
  /// The model as text (autodiff/model_text.h), printed on first use.
  const std::string& model_text() const;

 private:
  Executable& train_plan(int64_t batch);
  Executable& eval_plan(int64_t batch);
  EpochStats run_epoch(const Dataset& train, int epoch, double lr);
  /// The data-parallel halves of a training step (trainer_parallel.cpp); the gradient plan for
  /// a shard of `batch` examples that starts at example `first` of its global batch.
  Executable& gradient_plan(int64_t batch, int64_t first);
  Executable& update_plan();
  /// run_epoch over config().communicator's ranks, each on its shard of every batch.
  EpochStats run_epoch_parallel(const Dataset& train, int epoch, double lr);
  /// This rank's slice [begin, end) of `n` examples: contiguous, in rank order, sizes differing by at most one.
  std::pair<int64_t, int64_t> shard(int64_t n) const;
  /// Whether this process writes files and prints: always, except on ranks other than 0.
  bool writes_files() const;
  /// Whether out_dir holds a run to resume; data-parallel, rank 0 recovers it before the others read it.
  bool find_run_to_resume(const std::string& last_dir, const std::string& best_dir) const;
  /// Logits and probabilities of `images` [n, input_shape...] through the inference plan, whose
  /// dense layers pack their weights once per call (ExecutorOptions::keep_packed_parameters).
  std::pair<Tensor, Tensor> infer(const Tensor& images);
  /// infer() with each rank running its shard of the images and every rank receiving all of them.
  std::pair<Tensor, Tensor> infer_sharded(const Tensor& images);
  nlohmann::json checkpoint_meta(const nlohmann::json& extra) const;
  void save(const std::string& dir, const StateMap& tensors, const nlohmann::json& extra) const;
  /// load_checkpoint with this trainer's allow_nonfinite.
  Checkpoint read_checkpoint(const std::string& dir) const;
  /// Takes a loaded checkpoint's tensors and step after checking names and shapes.
  void adopt(Checkpoint checkpoint);
  /// Throws when `checkpoint` carries a model text other than this trainer's model.
  void require_same_model(const Checkpoint& checkpoint) const;
  /// Takes up the run in out_dir (its last/ checkpoint `last_dir`, best/ `best_dir`): state,
  /// history, early-stopping position and best weights. Throws ResumeConflict when it is not
  /// this configuration's run or cannot be resumed.
  void resume(const std::string& last_dir, const std::string& best_dir, TrainResult& result, EarlyStopping& stopping,
              StateMap& best_state);
  /// out_dir/last and history.csv after `history`'s last epoch: the state, the history and the
  /// early-stopping position fit() resumes from; `stopped` marks the run as ended.
  void save_progress(const std::vector<EpochStats>& history, const EarlyStopping& stopping, bool stopped) const;

  ModelFn model_;
  TrainConfig config_;
  StateMap state_;
  int64_t step_ = 0;
  ScheduleState schedule_state_;
  std::map<int64_t, std::unique_ptr<Executable>> train_plans_, eval_plans_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Executable>> gradient_plans_;  ///< by (batch, first)
  std::unique_ptr<Executable> update_plan_;
  std::map<std::string, std::vector<size_t>> expected_shapes_;
  mutable std::optional<std::string> model_text_;
  std::string data_fingerprint_;  ///< the sizes and hashes of fit()'s data, recorded with the run
};

/// The file of a checkpoint that holds its model's text.
inline constexpr const char* kModelFile = "model.dagger";

/// The model text a checkpoint carries; "" for a checkpoint from before model texts (which names
/// a zoo model in its metadata instead). Throws Error when the manifest records a model text of
/// another format or version, or one whose file it does not list.
std::string checkpoint_model_text(const Checkpoint& checkpoint);

/// History as CSV: epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,images_per_sec,lr.
void write_history_csv(const std::string& path, const std::vector<EpochStats>& history);

/// Mean softmax cross-entropy of logits [n, k] against labels, in double precision.
double mean_cross_entropy(const Tensor& logits, const std::vector<int>& labels);

}  // namespace dagger
