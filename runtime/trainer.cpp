#include "dagger/runtime/trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "dagger/autodiff/model_text.h"
#include "dagger/graph/random.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/runtime/augment.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/distributed.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/trainer_steps.h"

namespace dagger {

namespace fs = std::filesystem;

/// Most parameter and state values (parameters, optimizer moments, statistics) a trainer holds.
constexpr int64_t kMaxStateElements = int64_t{1} << 30;

float dropout_key(uint64_t seed, int64_t step) {
  uint32_t h =
      dropout_hash(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(step));
  return static_cast<float>(h & 0xFFFFFFu);
}

Tensor scalar_tensor(double v) {
  Tensor t = Tensor::from_shape({});
  t() = static_cast<float>(v);
  return t;
}

EpochStats epoch_stats(int epoch, double lr, int64_t images, double loss_sum, int64_t correct, double seconds) {
  EpochStats s;
  s.epoch = epoch;
  s.lr = lr;
  s.train_loss = loss_sum / static_cast<double>(images);
  s.train_accuracy = static_cast<double>(correct) / static_cast<double>(images);
  s.seconds = seconds;
  s.images_per_sec = static_cast<double>(images) / std::max(seconds, 1e-9);
  return s;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Epoch progress: a rewritten line on a terminal, nothing per batch otherwise.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled), tty_(enabled && isatty(fileno(stderr))) {}
  void batch(int epoch, int epochs, int64_t done, int64_t total, double loss, double ips) {
    if (!tty_) return;
    double eta = ips > 0 ? static_cast<double>(total - done) / ips : 0;
    fmt::print(stderr, "\repoch {}/{}  {}/{}  loss {:.4f}  {:.0f} img/s  ETA {:.0f}s   ", epoch, epochs, done, total,
               loss, ips, eta);
  }
  void epoch(const EpochStats& s, int epochs, bool improved) {
    if (!enabled_) return;
    if (tty_) fmt::print(stderr, "\r");
    // Data-parallel, also the share of the training time spent summing gradients over the ranks.
    const std::string sum =
        s.sum_seconds > 0 ? fmt::format(" ({:.0f}% gradient sum)", 100 * s.sum_seconds / s.seconds) : "";
    fmt::print(stderr,
               "epoch {}/{}  loss {:.4f}  acc {:.4f}  val_loss {:.4f}  val_acc {:.4f}  {:.1f}s{}  {:.0f} img/s{}\n",
               s.epoch, epochs, s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy, s.seconds, sum,
               s.images_per_sec, improved ? "  *" : "");
  }

 private:
  bool enabled_, tty_;
};

nlohmann::json history_json(const std::vector<EpochStats>& h) {
  nlohmann::json j = nlohmann::json::array();
  for (const EpochStats& s : h)
    j.push_back({{"epoch", s.epoch}, {"train_loss", s.train_loss}, {"train_accuracy", s.train_accuracy},
                 {"val_loss", s.val_loss}, {"val_accuracy", s.val_accuracy}, {"seconds", s.seconds},
                 {"images_per_sec", s.images_per_sec}, {"lr", s.lr}});
  return j;
}

std::vector<EpochStats> history_from_json(const nlohmann::json& j) {
  std::vector<EpochStats> h;
  for (const auto& e : j)
    h.push_back({e.at("epoch"), e.at("train_loss"), e.at("train_accuracy"), e.at("val_loss"), e.at("val_accuracy"),
                 e.at("seconds"), e.at("images_per_sec"), e.value("lr", 0.0)});
  return h;
}

/// Returns read(), turning a metadata field of the wrong JSON type (a string for a number, a
/// history entry that is not an object) into one Error naming the checkpoint.
template <class Read>
auto read_meta(const std::string& dir, Read read) {
  try {
    return read();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("checkpoint '{}': its manifest's metadata is malformed: {}", dir, e.what()));
  }
}

/// Throws when a run resumes from a checkpoint trained with other options (older checkpoints,
/// without the record, are trusted).
void check_same_training(const nlohmann::json& meta, const nlohmann::json& now, const std::string& dir) {
  if (!meta.contains("training")) return;
  nlohmann::json then = meta.at("training");
  // Records from before the option trained every convolution directly.
  if (now.contains("conv_algo") && !then.contains("conv_algo")) then["conv_algo"] = "direct";
  // A record names its precision only when it is not float32.
  nlohmann::json asked = now;
  if (!asked.contains("precision")) asked["precision"] = "f32";
  if (!then.contains("precision")) then["precision"] = "f32";
  // A data-parallel run records its rank count; one process records none, and each refuses the other.
  if (then.contains("ranks") != now.contains("ranks"))
    throw ResumeConflict(fmt::format("cannot resume from '{}': it was trained with ranks = {}, this run asks for {}",
                                     dir, then.value("ranks", nlohmann::json("none (one process)")).dump(),
                                     now.value("ranks", nlohmann::json("none (one process)")).dump()));
  // The data last: another seed also splits the data differently, and the seed is the cause.
  for (bool data : {false, true})
    for (const auto& [key, value] : asked.items())
      if ((key == "data") == data && then.contains(key) && then.at(key) != value)
        throw ResumeConflict(fmt::format("cannot resume from '{}': it was trained with {} = {}, this run asks for {}",
                                         dir, key, then.at(key).dump(), value.dump()));
}

/// Early stopping with `patience` replayed over the epochs of `history`; throws ResumeConflict
/// with `refusal(epoch)` when it ends after an epoch before the history's last.
EarlyStopping replay_stopping(const std::vector<EpochStats>& history, int patience,
                              const std::function<std::string(int)>& refusal) {
  EarlyStopping stopping{.patience = patience};
  for (const EpochStats& s : history) {
    if (stopping.stop()) throw ResumeConflict(refusal(s.epoch - 1));
    stopping.update(s.epoch, s.val_loss);
  }
  return stopping;
}

/// A 64-bit hash of a data set's labels and pixels (their float bits, in order), so that a
/// resumed run can tell it is given the data it started with.
uint64_t fingerprint(const Dataset& data) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  const auto mix = [&h](uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xFF51AFD7ED558CCDull;
  };
  for (int label : data.labels) mix(static_cast<uint64_t>(label));
  const float* pixels = data.images.data();
  const size_t n = data.images.size();
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    uint64_t pair;
    std::memcpy(&pair, pixels + i, sizeof pair);
    mix(pair);
  }
  if (i < n) {
    uint32_t last;
    std::memcpy(&last, pixels + i, sizeof last);
    mix(last);
  }
  return h;
}

/// Reduce-on-plateau's state for the progress checkpoint; infinities and NaN are stored as null.
nlohmann::json schedule_state_json(const ScheduleState& st) {
  auto finite = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"lr", finite(st.lr)}, {"best_val_loss", finite(st.best_val_loss)}, {"wait", st.wait}};
}

ScheduleState schedule_state_from_json(const nlohmann::json& j) {
  ScheduleState st;
  if (j.is_null()) return st;
  if (!j.at("lr").is_null()) st.lr = j.at("lr");
  if (!j.at("best_val_loss").is_null()) st.best_val_loss = j.at("best_val_loss");
  st.wait = j.at("wait");
  return st;
}

}  // namespace

double mean_cross_entropy(const Tensor& logits, const std::vector<int>& labels) {
  const size_t n = logits.shape()[0], k = logits.shape()[1];
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    double mx = logits(i, 0);
    for (size_t j = 1; j < k; ++j) mx = std::max<double>(mx, logits(i, j));
    double sum = 0;
    for (size_t j = 0; j < k; ++j) sum += std::exp(logits(i, j) - mx);
    total += std::log(sum) + mx - logits(i, static_cast<size_t>(labels[i]));
  }
  return n ? total / static_cast<double>(n) : 0.0;
}

void write_history_csv(const std::string& path, const std::vector<EpochStats>& history) {
  std::string csv = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,images_per_sec,lr\n";
  for (const EpochStats& s : history)
    csv += fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.3f},{:.1f},{:.9g}\n", s.epoch, s.train_loss, s.train_accuracy,
                       s.val_loss, s.val_accuracy, s.seconds, s.images_per_sec, s.lr);
  write_file_atomically(path, csv);
}

Trainer::Trainer(ModelFn model, TrainConfig config) : model_(std::move(model)), config_(std::move(config)) {
  if (config_.batch < 1) throw Error(fmt::format("batch size must be at least 1, got {}", config_.batch));
  if (config_.epochs < 1) throw Error(fmt::format("epochs must be at least 1, got {}", config_.epochs));
  // The full-batch training step names every parameter and optimizer state; create them once
  // (compiling it waits for the first training step: evaluation alone never needs it).
  validate(config_.schedule, config_.epochs);
  if (!(config_.label_smoothing >= 0 && config_.label_smoothing < 1))
    throw Error(fmt::format("label smoothing must be in [0, 1), got {}", config_.label_smoothing));
  const Graph g = build_training_step(model_, config_.batch, config_.optimizer, config_.input_shape, config_.classes,
                                      config_.label_smoothing);
  // Checked before anything is allocated: a model too large for memory is an error, not a crash.
  int64_t elements = 0;
  for (const Node& n : g.nodes())
    if (n.op == Op::parameter || n.op == Op::state) elements += numel(n.shape);
  if (elements > kMaxStateElements)
    throw Error(fmt::format("the model's parameters and training state hold {} values ({:.1f} GiB), more than the "
                            "{} GiB a trainer allocates",
                            elements, elements * 4.0 / (1 << 30), kMaxStateElements * 4 / (int64_t{1} << 30)));
  initialize_state(g, state_, config_.seed);
  for (const Node& n : g.nodes())
    if (n.op == Op::parameter || n.op == Op::state)
      expected_shapes_[n.attrs.s("name")] = std::vector<size_t>(n.shape.begin(), n.shape.end());
}

Trainer::~Trainer() = default;
Trainer::Trainer(Trainer&&) noexcept = default;
Trainer& Trainer::operator=(Trainer&&) noexcept = default;

Trainer Trainer::load(const std::string& dir, TrainConfig config) {
  const bool allow_nonfinite = config.allow_nonfinite;
  return load(load_checkpoint(dir, {.allow_nonfinite = allow_nonfinite}), std::move(config));
}

Trainer Trainer::load(Checkpoint checkpoint, TrainConfig config) {
  const std::string dir = checkpoint.dir;
  const std::string text = checkpoint_model_text(checkpoint);
  if (text.empty())
    throw Error(fmt::format("checkpoint '{}' does not carry its model (it was written before checkpoints did): "
                            "build its model in C++ and call load_state",
                            dir));
  const std::string file = (fs::path(dir) / kModelFile).string();
  ParsedModel parsed = parse_model(text, file);
  const nlohmann::json& meta = checkpoint.meta;
  read_meta(dir, [&] {
    config.model_spec = meta.value("model", std::string());
    config.class_names = meta.value("class_names", std::vector<std::string>{});
    config.raw_pixels = meta.value("raw_pixels", false);
    config.seed = meta.value("seed", config.seed);
    config.optimizer.kind = optimizer_kind(meta.value("optimizer", optimizer_name(config.optimizer.kind)));
    // Evaluated with the convolutions it was trained with, so eval and predict give the run's own
    // figures; a record from before the option means direct (as check_same_training reads it).
    const nlohmann::json training = meta.value("training", nlohmann::json::object());
    if (training.contains("conv_algo"))
      config.conv_algo = conv_algo(training.at("conv_algo").get<std::string>());
    else if (text.find("= conv2d(") != std::string::npos && meta.contains("training"))
      config.conv_algo = ConvAlgo::direct;
  });
  if (config.model_spec.empty()) config.model_spec = file;
  config.input_shape = parsed.input_shape;
  config.classes = parsed.classes;
  Trainer trainer(std::move(parsed.build), std::move(config));
  trainer.adopt(std::move(checkpoint));
  return trainer;
}

Executable& Trainer::train_plan(int64_t batch) {
  auto& slot = train_plans_[batch];
  if (!slot) {
    slot = make_executable(build_training_step(model_, batch, config_.optimizer, config_.input_shape, config_.classes,
                                               config_.label_smoothing),
                           config_.executor, {config_.threads, config_.conv_algo, false, config_.precision});
  }
  return *slot;
}

Executable& Trainer::eval_plan(int64_t batch) {
  auto& slot = eval_plans_[batch];
  if (!slot)
    slot = make_executable(build_inference(model_, batch, config_.input_shape, config_.classes), config_.executor,
                           {config_.threads, config_.conv_algo, true, config_.precision});
  return *slot;
}

EpochStats Trainer::run_epoch(const Dataset& train, int epoch, double lr) {
  Progress progress(config_.progress);
  const auto t0 = Clock::now();
  const int64_t n = static_cast<int64_t>(train.size());
  std::vector<size_t> order = shuffled_order(train.size(), config_.seed, static_cast<uint64_t>(epoch));
  double loss_sum = 0;
  int64_t correct = 0;
  Tensor images, labels;
  for (int64_t begin = 0; begin < n; begin += config_.batch) {
    const int64_t count = std::min(config_.batch, n - begin);
    gather_batch(train, order, static_cast<size_t>(begin), static_cast<size_t>(count), images, labels);
    augment_batch(config_.augment, config_.seed, epoch, order, static_cast<size_t>(begin), images);
    StateMap feeds{{"x", images}, {"labels", labels}, {"lr", scalar_tensor(lr)},
                   {"dropout_key", scalar_tensor(dropout_key(config_.seed, step_))}};
    StateMap out = train_plan(count).run(feeds, state_);
    ++step_;
    const float loss = out.at("loss")();
    if (!std::isfinite(loss)) throw Error(fmt::format("training diverged: loss is {} at epoch {}, step {}", loss, epoch, step_));
    loss_sum += static_cast<double>(loss) * static_cast<double>(count);
    std::vector<int> pred = argmax_rows(out.at("logits"));
    for (int64_t i = 0; i < count; ++i) correct += pred[i] == static_cast<int>(labels(i));
    const double elapsed = seconds_since(t0);
    progress.batch(epoch, config_.epochs, begin + count, n, loss_sum / static_cast<double>(begin + count),
                   static_cast<double>(begin + count) / std::max(elapsed, 1e-9));
  }
  return epoch_stats(epoch, lr, n, loss_sum, correct, seconds_since(t0));
}

std::pair<Tensor, Tensor> Trainer::infer(const Tensor& images) {
  Shape expected = {static_cast<int64_t>(images.dimension() > 0 ? images.shape(0) : 0)};
  expected.insert(expected.end(), config_.input_shape.begin(), config_.input_shape.end());
  if (images.dimension() != expected.size() ||
      !std::equal(expected.begin() + 1, expected.end(), images.shape().begin() + 1))
    throw Error(fmt::format("the model takes images of shape {}, not {}", to_string(config_.input_shape),
                            to_string(Shape(images.shape().begin() + (images.dimension() > 0), images.shape().end()))));
  const int64_t n = expected[0];
  if (n == 0) throw Error("there are no images to run the model on");
  const size_t per_image = static_cast<size_t>(numel(config_.input_shape));
  // The eval plans keep their packed weights while this call runs its batches; the state may
  // have changed since the last call (training, load_state, the caller through state()).
  for (auto& [size, plan] : eval_plans_) plan->parameters_changed();
  Tensor logits_all, probs_all, batch;
  for (int64_t begin = 0; begin < n; begin += config_.eval_batch) {
    const int64_t count = std::min(config_.eval_batch, n - begin);
    std::vector<size_t> shape(images.shape().begin(), images.shape().end());
    shape[0] = static_cast<size_t>(count);
    if (batch.shape() != shape) batch = Tensor::from_shape(shape);
    std::copy_n(images.begin() + begin * per_image, count * per_image, batch.begin());
    StateMap out = eval_plan(count).run({{"x", batch}}, state_);
    const Tensor& logits = out.at("logits");
    const Tensor& probs = out.at("probs");
    const size_t classes = logits.shape()[1];
    if (begin == 0) {
      logits_all = Tensor::from_shape({static_cast<size_t>(n), classes});
      probs_all = Tensor::from_shape(logits_all.shape());
    }
    std::copy(logits.begin(), logits.end(), logits_all.begin() + begin * classes);
    std::copy(probs.begin(), probs.end(), probs_all.begin() + begin * classes);
  }
  return {std::move(logits_all), std::move(probs_all)};
}

Tensor Trainer::predict(const Tensor& images) { return infer(images).second; }

Evaluation Trainer::evaluate(const Dataset& data) {
  if (data.size() == 0) throw Error("cannot evaluate on an empty data set");
  Evaluation ev;
  Tensor logits_all;
  std::tie(logits_all, ev.probs) = config_.communicator ? infer_sharded(data.images) : infer(data.images);
  ev.predictions = argmax_rows(logits_all);
  // The data's class names, numbered past them when the model scores more classes than it names.
  std::vector<std::string> names = data.class_labels();
  for (size_t c = names.size(); c < logits_all.shape()[1]; ++c) names.push_back(std::to_string(c));
  ev.report = classify_report(data.labels, ev.predictions, mean_cross_entropy(logits_all, data.labels), names);
  return ev;
}

nlohmann::json Trainer::checkpoint_meta(const nlohmann::json& extra) const {
  nlohmann::json meta = extra;
  meta["model"] = config_.model_spec;
  meta["optimizer"] = optimizer_name(config_.optimizer.kind);
  meta["seed"] = config_.seed;
  meta["step"] = step_;
  meta["input_shape"] = config_.input_shape;
  meta["classes"] = config_.classes;
  if (!config_.class_names.empty()) meta["class_names"] = config_.class_names;
  if (config_.raw_pixels) meta["raw_pixels"] = true;
  meta["model_text"] = {{"file", kModelFile}, {"format", kModelTextFormat}, {"version", kModelTextVersion}};
  meta["training"] = training_options();
  return meta;
}

nlohmann::json Trainer::training_options() const {
  const ScheduleConfig& sc = config_.schedule;
  nlohmann::json schedule = {{"kind", schedule_name(sc.kind)}};
  switch (sc.kind) {
    case ScheduleConfig::Kind::constant: break;
    case ScheduleConfig::Kind::step: schedule.update({{"step_size", sc.step_size}, {"gamma", sc.gamma}}); break;
    case ScheduleConfig::Kind::cosine:
      schedule.update({{"warmup", sc.warmup}, {"min_lr", sc.min_lr}, {"epochs", config_.epochs}});
      break;
    case ScheduleConfig::Kind::plateau:
      schedule.update({{"factor", sc.factor}, {"patience", sc.plateau_patience}, {"min_lr", sc.min_lr}});
      break;
  }
  const OptimizerConfig& opt = config_.optimizer;
  nlohmann::json options = {{"lr", opt.lr},
                            {"weight_decay", opt.weight_decay},
                            {"schedule", schedule},
                            {"augment", to_string(config_.augment)},
                            {"label_smoothing", config_.label_smoothing},
                            {"optimizer", optimizer_name(opt.kind)},
                            {"momentum", opt.momentum},
                            {"nesterov", opt.nesterov},
                            {"batch", config_.batch},
                            {"seed", config_.seed},
                            {"executor", executor_name(config_.executor)}};
  // The algorithm changes the bits of convolutions only: a model without one may resume under any.
  if (model_text().find("= conv2d(") != std::string::npos) options["conv_algo"] = conv_algo_name(config_.conv_algo);
  // Float32 is not recorded, so that records (and checkpoints) stay as they were before the option.
  if (config_.precision != Precision::f32) options["precision"] = precision_name(config_.precision);
  if (config_.communicator) options["ranks"] = config_.communicator->size();
  if (!data_fingerprint_.empty()) options["data"] = data_fingerprint_;
  return options;
}

const std::string& Trainer::model_text() const {
  if (!model_text_) model_text_ = print_model(model_, config_.input_shape, config_.classes);
  return *model_text_;
}

void Trainer::save(const std::string& dir, const StateMap& tensors, const nlohmann::json& extra) const {
  save_checkpoint(dir, tensors, checkpoint_meta(extra), {{kModelFile, model_text()}});
}

void Trainer::save_state(const std::string& dir, const nlohmann::json& extra) const { save(dir, state_, extra); }

void Trainer::require_same_model(const Checkpoint& checkpoint) const {
  const std::string stored = checkpoint_model_text(checkpoint);
  if (stored.empty()) return;
  const std::string difference =
      model_difference(stored, model_text(), (fs::path(checkpoint.dir) / kModelFile).string(), "this run's model");
  if (difference.empty()) return;
  throw ResumeConflict(fmt::format(
      "checkpoint '{}' holds another model than this run's: {}; give the same model or another "
      "output folder",
      checkpoint.dir, difference));
}

std::string checkpoint_model_text(const Checkpoint& checkpoint) {
  const nlohmann::json entry =
      read_meta(checkpoint.dir, [&] { return checkpoint.meta.value("model_text", nlohmann::json()); });
  if (entry.is_null()) return "";
  const auto field = [&](const char* key) {
    if (!entry.is_object() || !entry.contains(key))
      throw Error(fmt::format("checkpoint '{}': the manifest's model_text has no '{}'", checkpoint.dir, key));
    return entry.at(key);
  };
  if (field("format") != kModelTextFormat || field("version") != kModelTextVersion)
    throw Error(fmt::format("checkpoint '{}' stores its model as {} version {}; this build reads {} version {}",
                            checkpoint.dir, field("format").dump(), field("version").dump(), kModelTextFormat,
                            kModelTextVersion));
  const nlohmann::json file = field("file");
  const auto it = file.is_string() ? checkpoint.texts.find(file.get<std::string>()) : checkpoint.texts.end();
  if (it == checkpoint.texts.end())
    throw Error(
        fmt::format("checkpoint '{}': the model text file {} is not among its files", checkpoint.dir, file.dump()));
  return it->second;
}

void Trainer::load_state(const std::string& dir) { adopt(read_checkpoint(dir)); }

TrainResult Trainer::load_progress(const std::string& dir) {
  Checkpoint state = read_checkpoint(dir);
  TrainResult progress;
  read_meta(dir, [&] {
    progress.history = history_from_json(state.meta.at("history"));
    progress.best_epoch = state.meta.at("best_epoch");
  });
  adopt(std::move(state));
  return progress;
}

Checkpoint Trainer::read_checkpoint(const std::string& dir) const {
  return load_checkpoint(dir, {.allow_nonfinite = config_.allow_nonfinite});
}

void Trainer::adopt(Checkpoint checkpoint) {
  check_compatible(checkpoint, expected_shapes_);
  step_ = read_meta(checkpoint.dir, [&] { return checkpoint.meta.value("step", int64_t{0}); });
  state_ = std::move(checkpoint.tensors);
}

bool EarlyStopping::update(int epoch, double val_loss) {
  const bool improved = val_loss < best_val_loss;
  if (improved) {
    best_val_loss = val_loss;
    best_epoch = epoch;
    wait = 0;
  } else {
    ++wait;
  }
  return improved;
}

void Trainer::save_progress(const std::vector<EpochStats>& history, const EarlyStopping& stopping, bool stopped) const {
  save_state(config_.out_dir + "/last", {{"history", history_json(history)},
                                         {"best_epoch", stopping.best_epoch},
                                         {"best_val_loss", stopping.best_val_loss},
                                         {"wait", stopping.wait},
                                         {"patience", config_.patience},
                                         {"epoch", history.back().epoch},
                                         {"stopped_early", stopped},
                                         {"schedule_state", schedule_state_json(schedule_state_)}});
  write_history_csv(config_.out_dir + "/history.csv", history);
}

void Trainer::continue_from(const std::string& state_dir, const std::string& best_dir,
                            const std::vector<EpochStats>& trained) {
  if (config_.out_dir.empty()) throw Error("continuing another run's epochs needs an output folder");
  if (trained.empty()) throw Error(fmt::format("'{}' comes with no epochs to continue after", state_dir));
  std::vector<EpochStats> history = trained;  // with each epoch's rate, which callers may not have kept
  const EarlyStopping stopping = replay_stopping(history, config_.patience, [&](int epoch) {
    return fmt::format("with patience {} this run stops at epoch {}, before the {} epochs of '{}'", config_.patience,
                       epoch, history.size(), state_dir);
  });
  for (EpochStats& s : history) {
    s.lr = scheduled_lr(s.epoch, config_.epochs, config_.optimizer.lr, config_.schedule, schedule_state_);
    update_schedule(schedule_state_, s.val_loss, config_.optimizer.lr, config_.schedule);
  }
  if (static_cast<int>(history.size()) > config_.epochs)
    throw Error(fmt::format("'{}' trained {} epochs, more than this run's {}", state_dir, history.size(), config_.epochs));
  Checkpoint state = read_checkpoint(state_dir);
  require_same_model(state);
  check_same_training(state.meta, training_options(), state_dir);
  adopt(std::move(state));
  fs::create_directories(config_.out_dir);
  if (!best_dir.empty()) {
    Checkpoint best = read_checkpoint(best_dir);
    check_compatible(best, expected_shapes_);
    require_same_model(best);
    save(config_.out_dir + "/best", best.tensors, {{"epoch", stopping.best_epoch}});
  }
  save_progress(history, stopping, stopping.stop());
}

void Trainer::resume(const std::string& last_dir, const std::string& best_dir, TrainResult& result,
                     EarlyStopping& stopping, StateMap& best_state) {
  Checkpoint last = read_checkpoint(last_dir);
  require_same_model(last);
  const nlohmann::json meta = last.meta;
  check_same_training(meta, training_options(), last_dir);
  read_meta(last_dir, [&] { result.history = history_from_json(meta.at("history")); });
  const int trained = static_cast<int>(result.history.size());
  if (trained > config_.epochs)
    throw ResumeConflict(fmt::format("cannot resume from '{}': it has trained {} epochs, this run asks for epochs = {}",
                                     last_dir, trained, config_.epochs));
  adopt(std::move(last));
  read_meta(last_dir, [&] {
    stopping.best_epoch = meta.at("best_epoch");
    stopping.best_val_loss = meta.at("best_val_loss");
    stopping.wait = meta.at("wait");
    result.stopped_early = meta.value("stopped_early", false);
    schedule_state_ = schedule_state_from_json(meta.value("schedule_state", nlohmann::json()));
  });
  const nlohmann::json patience = meta.value("patience", nlohmann::json());
  if (!patience.is_null() && patience != config_.patience) {
    // Patience decides only where a run ends, not what its epochs compute: another patience
    // resumes when it would not have ended the run sooner, and carries on a run the old one
    // ended early when it would not have ended it yet.
    stopping = replay_stopping(result.history, config_.patience, [&](int epoch) {
      return fmt::format(
          "cannot resume from '{}': with patience {} it would have stopped after epoch {}, but it "
          "trained {} epochs with patience {}",
          last_dir, config_.patience, epoch, trained, patience.dump());
    });
    result.stopped_early = stopping.stop();
  }
  // A kill after last/ was saved but before history.csv was replaced leaves the file one
  // epoch behind; when no epoch is left to train, nothing else would rewrite it.
  if (writes_files()) write_history_csv(config_.out_dir + "/history.csv", result.history);
  if (recover_checkpoint(best_dir)) {
    best_state = read_checkpoint(best_dir).tensors;
  } else if (stopping.best_epoch == trained) {
    best_state = state_;  // the last epoch is the best: its weights are last/'s
  } else if (stopping.best_epoch > 0) {
    throw ResumeConflict(
        fmt::format("cannot resume from '{}': '{}' is missing: the weights of epoch {}, the lowest "
                    "validation loss, are lost",
                    last_dir, best_dir, stopping.best_epoch));
  }
  result.resumed = true;
  if (config_.progress) fmt::print(stderr, "resuming after epoch {} from {}\n", trained, last_dir);
}

TrainResult Trainer::fit(const Dataset& train, const Dataset& val) {
  if (train.size() == 0 || val.size() == 0) throw Error("training needs non-empty train and validation sets");
  data_fingerprint_ = fmt::format("train {} x {:016x}, val {} x {:016x}", train.size(), fingerprint(train), val.size(),
                                  fingerprint(val));
  TrainResult result;
  const bool on_disk = !config_.out_dir.empty();
  const bool writes = on_disk && writes_files();
  const std::string last_dir = config_.out_dir + "/last", best_dir = config_.out_dir + "/best";
  StateMap best_state = state_;
  EarlyStopping stopping{.patience = config_.patience};
  if (writes) fs::create_directories(config_.out_dir);
  if (on_disk && find_run_to_resume(last_dir, best_dir)) resume(last_dir, best_dir, result, stopping, best_state);
  Progress progress(config_.progress);
  const auto t0 = Clock::now();
  int64_t trained_images = 0;
  double training_seconds = 0;  // training steps only; validation is timed apart
  for (int epoch = static_cast<int>(result.history.size()) + 1; epoch <= config_.epochs && !result.stopped_early; ++epoch) {
    const double lr = scheduled_lr(epoch, config_.epochs, config_.optimizer.lr, config_.schedule, schedule_state_);
    EpochStats s = config_.communicator ? run_epoch_parallel(train, epoch, lr) : run_epoch(train, epoch, lr);
    trained_images += static_cast<int64_t>(train.size());
    training_seconds += s.seconds;
    result.sum_seconds += s.sum_seconds;
    Evaluation v = evaluate(val);
    s.val_loss = v.report.loss;
    s.val_accuracy = v.report.accuracy;
    result.history.push_back(s);
    const bool improved = stopping.update(epoch, s.val_loss);
    update_schedule(schedule_state_, s.val_loss, config_.optimizer.lr, config_.schedule);
    if (improved) best_state = state_;
    progress.epoch(s, config_.epochs, improved);
    result.stopped_early = stopping.stop() || (config_.stop_when && config_.stop_when(s));
    if (writes) {
      if (improved) save(best_dir, best_state, {{"epoch", epoch}});
      save_progress(result.history, stopping, result.stopped_early);
    }
    if (config_.on_epoch) config_.on_epoch(s);
  }
  result.best_epoch = stopping.best_epoch;
  result.best_val_loss = stopping.best_val_loss;
  result.wall_seconds = seconds_since(t0);
  result.images_per_sec = static_cast<double>(trained_images) / std::max(training_seconds, 1e-9);
  if (config_.patience > 0 && config_.restore_best && result.best_epoch > 0) state_ = best_state;
  return result;
}

}  // namespace dagger
