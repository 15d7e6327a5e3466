// `dagger train` and `dagger eval`.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "dagger/autodiff/model_text.h"
#include "dagger/codegen/jit.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/runtime/build_info.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/distributed.h"
#include "dagger/runtime/trainer.h"
#include "dagger/suite/analysis.h"
#include "tools/cli.h"
#include "tools/out_folder.h"
#include "tools/train_flags.h"

namespace dagger::cli {

std::vector<size_t> parse_input_shape(const std::string& text) {
  std::vector<size_t> dims;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    size_t used = 0;
    unsigned long long v = 0;
    try {
      v = std::stoull(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v == 0 || item[0] == '-' || v > (1ull << 20)) {
      throw UsageError(fmt::format("'{}': '{}' is not a positive size", text, item));
    }
    dims.push_back(v);
  }
  if (dims.size() != 3 || text.back() == ',') {
    throw UsageError(fmt::format("'{}' must be three sizes C,H,W, e.g. 3,32,32", text));
  }
  return dims;
}

namespace {


struct DataFlags {
  std::string dir = default_data_dir();
  uint64_t seed = 42;
  size_t train_limit = 0, val_limit = 0, test_limit = 0;
  bool raw = false;
  std::optional<int64_t> val_size;
  std::optional<double> val_fraction;
  std::string classes_file, input_shape;

  void add(CLI::App& cmd) {
    cmd.add_option("--data", dir,
                   "data folder of IDX, .npy or CSV files, see docs/data.md (default: $DAGGER_DATA or the Debian "
                   "package's Fashion-MNIST)")
        ->check(kExistingFolder);
    cmd.add_option("--val-size", val_size,
                   "training images moved to validation (default: 12000 for Fashion-MNIST, else 20%)")
        ->check(at_least(1));
    cmd.add_option("--val-fraction", val_fraction, "share of the training images moved to validation, in (0, 1)")
        ->check(number_in({.low = 0, .high = 1, .low_open = true, .high_open = true}));
    cmd.add_option("--classes", classes_file, "file of class names, one per line")->check(kExistingFile);
    cmd.add_option("--input-shape", input_shape, "C,H,W of a CSV row's pixels (default: 1,s,s for s*s pixels)")
        ->check(kInputShape);
    cmd.add_option("--train-limit", train_limit, "use a class-balanced slice of this many training images (0: all)")
        ->check(at_least(0));
    cmd.add_option("--val-limit", val_limit, "slice of the validation set (0: all)")->check(at_least(0));
    cmd.add_option("--test-limit", test_limit, "slice of the test set (0: all)")->check(at_least(0));
    cmd.add_flag("--raw-pixels", raw, "feed pixels as 0..255 instead of scaling to 0..1");
  }
  /// Throws UsageError for flags that conflict (each flag's own value is checked while parsing).
  void validate() const {
    if (val_size && val_fraction) throw UsageError("give --val-size or --val-fraction, not both");
  }
  Splits load() const {
    validate();
    SplitOptions o;
    o.dir = dir;
    o.seed = seed;
    o.train_limit = train_limit;
    o.val_limit = val_limit;
    o.test_limit = test_limit;
    o.scale = !raw;
    o.val_size = val_size.value_or(0);
    o.val_fraction = val_fraction.value_or(0);
    o.classes_file = classes_file;
    if (!input_shape.empty()) o.input_shape = parse_input_shape(input_shape);
    try {
      return load_data(o);
    } catch (const std::filesystem::filesystem_error& e) {  // e.g. a folder this user may not read
      throw Error(fmt::format("--data '{}': cannot read '{}': {}", dir, e.path1().string(), e.code().message()));
    }
  }
};

nlohmann::json report_json(const ClassificationReport& r) { return to_json(r); }

/// Sizes the model for the data: its images' shape and its class count; and records the
/// class names and pixel scale so a checkpoint's predictions can be named and fed alike.
void take_shape_from(const Splits& data, TrainConfig& cfg) {
  const std::vector<size_t> example = data.train.example_shape();
  cfg.input_shape.assign(example.begin(), example.end());
  cfg.classes = static_cast<int64_t>(data.train.class_count());
  cfg.class_names = data.train.class_names;
}

/// One row per (name, report); `first` heads the names' column.
void print_table(const std::vector<std::pair<std::string, ClassificationReport>>& rows, const char* first = "set") {
  fmt::print("{:<6} {:>9} {:>9} {:>10} {:>9} {:>9}\n", first, "loss", "accuracy", "precision", "recall", "f1");
  for (const auto& [name, r] : rows)
    fmt::print("{:<6} {:>9.4f} {:>9.4f} {:>10.4f} {:>9.4f} {:>9.4f}\n", name, r.loss, r.accuracy, r.precision, r.recall,
               r.f1);
}

/// The trainer of a checkpoint: Trainer::load for one that carries its model's text, or, for a
/// checkpoint from before model texts, the zoo model its metadata names with the data's shape.
Trainer checkpoint_trainer(const std::string& folder, TrainConfig options) {
  Checkpoint ck = load_checkpoint(folder, {.allow_nonfinite = options.allow_nonfinite});
  if (!checkpoint_model_text(ck).empty()) return Trainer::load(std::move(ck), options);
  options.model_spec = ck.meta.value("model", "");
  if (options.model_spec.empty()) throw Error(fmt::format("checkpoint '{}' does not name its model", folder));
  options.optimizer.kind = optimizer_kind(ck.meta.value("optimizer", "adam"));
  Trainer trainer(resolve_model(options.model_spec).build, options);
  trainer.load_state(folder);  // old checkpoints: read again, through the zoo model's shapes
  return trainer;
}

/// Precision, recall, F1 and support of every class, one line each, under its name.
void print_per_class(const ClassificationReport& r) {
  size_t width = 5;
  for (const std::string& name : r.class_names) width = std::max(width, name.size());
  fmt::print("\n{:<{}} {:>10} {:>9} {:>9} {:>8}\n", "class", width, "precision", "recall", "f1", "support");
  for (size_t k = 0; k < r.classes(); ++k)
    fmt::print("{:<{}} {:>10.4f} {:>9.4f} {:>9.4f} {:>8}\n", r.class_names[k], width, r.class_precision[k],
               r.class_recall[k], r.class_f1[k], r.support[k]);
}

}  // namespace

Run add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train a model of the zoo (on Fashion-MNIST unless --data says otherwise)");
  struct Flags {
    std::string model, optimizer = "adam", executor = "jit", out, dump_dir, rank_states, conv_algo = "auto",
                       precision = "f32";
    TrainConfig config;
    DataFlags data;
    RecipeFlags recipe;
    bool nesterov = false, json = false, quiet = false, keep_last = false, restart = false, distributed = false;
    int threads = 1;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("model", f->model,
                  "model name or call, e.g. mlp512 or \"cnn(3,bn,0.5,0.25,256)\", or a model text (FILE.dagger, or a "
                  "checkpoint folder: trains or resumes a model declared elsewhere)")
      ->required();
  cmd->add_option("--epochs", f->config.epochs, "maximum number of epochs")->check(at_least(1))->capture_default_str();
  cmd->add_option("--batch", f->config.batch, "mini-batch size")->check(at_least(1))->capture_default_str();
  cmd->add_option("--optimizer", f->optimizer, "sgd | momentum | adam | adamw")
      ->check(kOptimizer)
      ->capture_default_str();
  cmd->add_option("--lr", f->config.optimizer.lr, "learning rate")
      ->check(number_in({.low = 0, .low_open = true}))
      ->capture_default_str();
  cmd->add_option("--momentum", f->config.optimizer.momentum, "momentum coefficient, in [0, 1)")
      ->check(number_in({.low = 0, .high = 1, .high_open = true}))
      ->capture_default_str();
  cmd->add_flag("--nesterov", f->nesterov, "Nesterov momentum");
  cmd->add_option("--weight-decay", f->config.optimizer.weight_decay, "L2 weight decay (adamw: decoupled decay)")
      ->check(number_in({.low = 0}))
      ->capture_default_str();
  cmd->add_option("--patience", f->config.patience, "early-stopping patience in epochs (0: off)")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_flag("--keep-last", f->keep_last,
                "with early stopping, end with the last epoch's weights rather than the best validation loss's");
  cmd->add_option("--seed", f->config.seed, "seed for initialization, split, shuffling and dropout")
      ->check(kSeed)
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "worker threads of the JIT (the reference executor uses one)")
      ->check(kThreads)
      ->capture_default_str();
  cmd->add_option("--executor", f->executor, "reference | jit")->check(kExecutor)->capture_default_str();
  add_conv_algo(*cmd, f->conv_algo);
  add_precision(*cmd, f->precision);
  CLI::Option* out =
      cmd->add_option("--out", f->out,
                      "folder for history.csv, metrics.json and checkpoints; a rerun of the same run resumes")
          ->check(kOutputFolder);
  cmd->add_flag("--restart", f->restart,
                "train from the start: the run already in --out moves to OUT/previous-N when this one begins")
      ->needs(out);
  cmd->add_option("--dump-dir", f->dump_dir,
                  "write every compiler stage of the training and inference plans into this folder")
      ->check(kOutputFolder);
  cmd->add_flag("--json", f->json, "end the output with one JSON object of the results");
  cmd->add_flag("--quiet", f->quiet, "no per-epoch progress");
  cmd->add_flag("--distributed", f->distributed,
                "data-parallel over the ranks of mpirun (docs/scale-out.md); --batch is the global batch");
  cmd->add_option("--rank-states", f->rank_states,
                  "with --distributed: every rank also saves its final state in FOLDER/rank-R, to check that the "
                  "ranks agree")
      ->check(kOutputFolder);
  add_allow_nonfinite(*cmd, f->config.allow_nonfinite);
  f->data.add(*cmd);
  f->recipe.add(*cmd);
  return [f, cmd] {
    if (!f->rank_states.empty() && !f->distributed) throw UsageError("--rank-states needs --distributed");
    if (f->distributed) {
      if (!mpi_built()) throw UsageError("--distributed: this dagger was built without MPI (see docs/scale-out.md)");
      f->config.communicator = &mpi_world();
      const int ranks = f->config.communicator->size();
      if (f->config.batch % ranks != 0)
        throw UsageError(fmt::format("--batch {} does not divide among the {} ranks: give a multiple of {}",
                                     f->config.batch, ranks, ranks));
    }
    // Data-parallel, rank 0 alone prints and writes; the other ranks still read --out to resume.
    const bool leader = !f->config.communicator || f->config.communicator->rank() == 0;
    const ModelArg model = resolve_model(f->model);
    TrainConfig cfg = f->config;
    cfg.model_spec = f->model;
    cfg.optimizer.kind = optimizer_kind(f->optimizer);
    cfg.optimizer.nesterov = f->nesterov;
    require_momentum_flags(*cmd, cfg.optimizer);
    cfg.restore_best = !f->keep_last;
    cfg.executor = executor_kind(f->executor);
    cfg.threads = f->threads;
    cfg.conv_algo = conv_algo(f->conv_algo);
    cfg.precision = read_precision(f->precision, cfg.executor);
    cfg.out_dir = f->out;
    cfg.progress = !f->quiet && leader;
    f->recipe.apply(cfg);
    cfg.raw_pixels = f->data.raw;
    f->data.seed = cfg.seed;
    f->data.validate();
    std::optional<FolderLock> lock;  // held until the run's last file is written
    if (!cfg.out_dir.empty() && leader) lock.emplace(cfg.out_dir, "--out");
    Splits data = f->data.load();
    take_shape_from(data, cfg);
    if (model.input_shape && *model.input_shape != cfg.input_shape)
      throw Error(fmt::format("{} takes images of {} but the data's are {}", f->model, to_string(*model.input_shape),
                              to_string(cfg.input_shape)));
    if (model.classes) {
      if (*model.classes < cfg.classes)
        throw Error(fmt::format("{} scores {} classes but the data has {}", f->model, *model.classes, cfg.classes));
      cfg.classes = *model.classes;
    }
    try {
      if (!f->dump_dir.empty() && leader)
        write_dump_dir(f->dump_dir, model.build, cfg.batch, cfg.optimizer, f->model, cfg.input_shape, cfg.classes,
                       cfg.label_smoothing, cfg.conv_algo, cfg.precision);
    } catch (const std::filesystem::filesystem_error& e) {
      throw Error(
          fmt::format("--dump-dir '{}': cannot write '{}': {}", f->dump_dir, e.path1().string(), e.code().message()));
    }
    if (leader)
      fmt::print(stderr, "{}: {} train / {} val / {} test images, {} parameters, {} executor{}{}\n", f->model,
                 data.train.size(), data.val.size(), data.test.size(),
                 zoo::parameter_count(model.build, cfg.input_shape, cfg.classes), executor_name(cfg.executor),
                 cfg.precision == Precision::f32 ? "" : ", dense products in bf16",
                 cfg.communicator ? fmt::format(", {} ranks", cfg.communicator->size()) : "");
    Trainer trainer(model.build, cfg);
    if (f->restart && leader)
      if (const std::string previous = set_aside_run(cfg.out_dir); !previous.empty())
        fmt::print(stderr, "--restart: the earlier run in {} is kept in {}\n", cfg.out_dir, previous);
    if (cfg.communicator) cfg.communicator->barrier();  // the folder is as rank 0 left it before any rank reads it
    TrainResult result;
    try {
      result = trainer.fit(data.train, data.val);
    } catch (const ResumeConflict& e) {
      throw Error(fmt::format("{}; --restart trains from the start, keeping the earlier run in {}/previous-N", e.what(),
                              cfg.out_dir));
    }
    std::vector<std::pair<std::string, ClassificationReport>> rows = {{"train", trainer.evaluate(data.train).report},
                                                                       {"val", trainer.evaluate(data.val).report},
                                                                       {"test", trainer.evaluate(data.test).report}};
    if (!f->rank_states.empty())
      trainer.save_state(fmt::format("{}/rank-{}", f->rank_states, cfg.communicator->rank()));
    if (!leader) return 0;
    print_table(rows);
    nlohmann::json j = {{"model", f->model},
                        {"best_epoch", result.best_epoch},
                        {"epochs_run", result.history.size()},
                        {"stopped_early", result.stopped_early},
                        {"resumed", result.resumed},
                        {"wall_seconds", result.wall_seconds},
                        {"images_per_sec", result.images_per_sec},
                        {"executor", executor_name(cfg.executor)},
                        {"threads", f->threads},
                        {"ranks", cfg.communicator ? cfg.communicator->size() : 1},
                        {"seed", cfg.seed},
                        {"build_commit", std::string(build_commit())},  // of this invocation's libdagger
                        {"training", trainer.training_options()}};
    if (cfg.executor == ExecutorKind::jit) {  // the machine the kernels were compiled for
      const JitTarget target = jit_target();
      j["jit_target"] = target.name;
      j["vector_width"] = target.vector_width;
      j["conv_algo"] = conv_algo_name(cfg.conv_algo);
      j["precision"] = precision_name(cfg.precision);
    }
    for (const auto& [name, r] : rows) j[name] = report_json(r);
    if (cfg.communicator) j["gradient_sum_seconds"] = result.sum_seconds;
    if (!cfg.out_dir.empty()) {
      trainer.save_state(cfg.out_dir + "/checkpoint", {{"best_epoch", result.best_epoch}});
      write_file_atomically(cfg.out_dir + "/metrics.json", {j.dump(2), "\n"});
    }
    if (f->json) fmt::print("{}\n", j.dump());
    return 0;
  };
}

Run add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "evaluate a checkpoint on the test set; given several, also their ensemble (summed softmax outputs)");
  struct Flags {
    std::vector<std::string> checkpoints;
    std::string executor = "jit", precision = "f32";
    int threads = 1;
    DataFlags data;
    bool json = false, allow_nonfinite = false;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--checkpoint", f->checkpoints,
                  "checkpoint folder (e.g. OUT/checkpoint); repeat it to evaluate an ensemble of them")
      ->required()
      ->check(kExistingFolder);
  cmd->add_option("--executor", f->executor, "reference | jit")->check(kExecutor)->capture_default_str();
  cmd->add_option("--threads", f->threads, "worker threads of the JIT (the results do not depend on them)")
      ->check(kThreads)
      ->capture_default_str();
  add_precision(*cmd, f->precision);
  cmd->add_flag("--json", f->json, "print the metrics as one JSON object");
  add_allow_nonfinite(*cmd, f->allow_nonfinite);
  f->data.add(*cmd);
  return [f] {
    const Precision precision = read_precision(f->precision, executor_kind(f->executor));
    f->data.validate();
    Splits data = f->data.load();
    std::vector<std::pair<std::string, ClassificationReport>> rows;
    std::vector<Tensor> probs;
    nlohmann::json members = nlohmann::json::array();
    for (const std::string& folder : f->checkpoints) {
      TrainConfig options;
      options.executor = executor_kind(f->executor);
      options.threads = f->threads;
      options.precision = precision;
      options.progress = false;
      options.allow_nonfinite = f->allow_nonfinite;
      take_shape_from(data, options);
      Trainer trainer = checkpoint_trainer(folder, options);
      const TrainConfig& cfg = trainer.config();
      if (cfg.input_shape != options.input_shape) {
        throw Error(fmt::format("checkpoint '{}' takes images of {} but the data's are {}", folder,
                                to_string(cfg.input_shape), to_string(options.input_shape)));
      }
      Evaluation test = trainer.evaluate(data.test);
      rows.emplace_back(f->checkpoints.size() == 1 ? "test" : std::to_string(rows.size() + 1), test.report);
      members.push_back({{"model", cfg.model_spec}, {"checkpoint", folder}, {"test", report_json(test.report)}});
      probs.push_back(std::move(test.probs));
    }
    if (f->checkpoints.size() == 1) {
      print_table(rows);
      print_per_class(rows[0].second);
      if (f->json)
        fmt::print("{}\n", nlohmann::json{{"model", members[0]["model"]}, {"test", members[0]["test"]}}.dump());
      return 0;
    }
    std::vector<const Tensor*> inputs;
    for (const Tensor& p : probs) inputs.push_back(&p);
    suite::EnsembleResult en = suite::ensemble(inputs, data.test.labels, data.test.class_labels());
    for (size_t i = 0; i < members.size(); ++i)
      fmt::print("{}: {}\n", i + 1, members[i]["model"].get<std::string>());
    rows.emplace_back("all", en.report);
    print_table(rows, "model");
    const int64_t n = static_cast<int64_t>(data.test.labels.size());
    fmt::print("all = argmax of the summed softmax outputs. The members disagree on {} of {} test images; "
               "at least one is right on {}.\n",
               en.disagreements, n, en.any_right);
    for (size_t i = 0; i < en.changes.size(); ++i)
      fmt::print("member {}: the ensemble corrects {} of its errors and loses {} of its right answers ({:+d})\n",
                 i + 1, en.changes[i].corrected, en.changes[i].lost, en.changes[i].corrected - en.changes[i].lost);
    if (f->json) fmt::print("{}\n", nlohmann::json{{"members", members}, {"ensemble", suite::to_json(en)}}.dump());
    return 0;
  };
}

}  // namespace dagger::cli
