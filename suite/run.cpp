#include "dagger/suite/run.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dagger/graph/error.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/runtime/augment.h"
#include "dagger/runtime/schedule.h"
#include "dagger/runtime/checkpoint.h"

namespace dagger::suite {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMetricsFile = "metrics.json";
/// Who trained a run's epochs: one entry per invocation that trained any (its binary's commit,
/// CPU and vector width, threads, convolution algorithm, and the first epoch it trained), kept
/// here until the run finishes and then in its provenance, so a run resumed by another binary
/// or on another machine says which epochs each trained.
constexpr const char* kSessionsFile = "sessions.json";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("cannot read '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json history_json(const std::vector<EpochStats>& history) {
  nlohmann::json j = nlohmann::json::array();
  for (const EpochStats& s : history)
    j.push_back({s.epoch, s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy, s.seconds, s.images_per_sec});
  return j;
}

std::vector<EpochStats> history_from_json(const nlohmann::json& j) {
  std::vector<EpochStats> history;
  for (const auto& e : j) history.push_back({e[0], e[1], e[2], e[3], e[4], e[5], e[6]});
  return history;
}

TrainConfig train_config(const RunConfig& c, const RunContext& context, const std::string& dir) {
  TrainConfig t;
  t.model_spec = c.model;
  t.epochs = c.epochs;
  t.batch = c.batch;
  t.optimizer.kind = optimizer_kind(c.optimizer);
  t.optimizer.lr = c.lr;
  t.optimizer.momentum = c.momentum;
  t.optimizer.weight_decay = c.weight_decay;
  if (!c.schedule.empty()) t.schedule.kind = schedule_kind(c.schedule);
  t.schedule.warmup = c.warmup;
  validate(t.schedule, t.epochs);
  if (!c.augment.empty()) t.augment = parse_augment(c.augment);
  t.label_smoothing = c.label_smoothing;
  t.patience = c.patience;
  t.restore_best = !c.keep_last;
  t.seed = c.seed;
  t.executor = context.executor;
  t.threads = context.threads;
  t.conv_algo = context.conv_algo;
  t.precision = context.precision;
  t.out_dir = dir;
  t.progress = false;
  t.on_epoch = context.on_epoch;
  return t;
}

RunRecord record_from_json(const RunConfig& config, const std::string& dir, const nlohmann::json& j) {
  RunRecord r;
  r.config = config;
  r.key = fs::path(dir).filename().string();  // config.key(), or an equivalent run's
  r.dir = dir;
  r.history = history_from_json(j.at("history"));
  r.best_epoch = j.at("best_epoch");
  r.stopped_early = j.at("stopped_early");
  r.diverged = j.value("diverged", "");
  r.train = report_from_json(j.at("train"));
  r.val = report_from_json(j.at("val"));
  r.test = report_from_json(j.at("test"));
  if (j.contains("best_epoch_test")) r.best_epoch_test = report_from_json(j.at("best_epoch_test"));
  // Absent for runs finished before the suite stored them: their ensembles' best-epoch figure is.
  if (r.best_epoch_test && fs::exists(dir + "/" + kBestTestProbsFolder))
    r.best_epoch_test_probs =
        load_checkpoint(dir + "/" + kBestTestProbsFolder, {.allow_nonfinite = true}).tensors.at("probs");
  r.train_seconds = j.at("train_seconds");
  r.images_per_sec = j.at("images_per_sec");
  r.provenance = j.at("provenance");
  // Probabilities, not weights: a diverged run's may be NaN, and that is its result. A run
  // imported from a results bundle (suite/bundle.h) may carry only its predictions.
  if (fs::exists(dir + "/test_probs") || !fs::exists(dir + "/test_predictions.txt")) {
    r.test_probs = load_checkpoint(dir + "/test_probs", {.allow_nonfinite = true}).tensors.at("probs");
    r.test_predictions = argmax_rows(r.test_probs);
  } else {
    std::stringstream lines(read_text(dir + "/test_predictions.txt"));
    for (int p; lines >> p;) r.test_predictions.push_back(p);
    if (r.test_predictions.size() != r.test.count)
      throw Error(fmt::format("'{}/test_predictions.txt' holds {} predictions for {} test images", dir,
                              r.test_predictions.size(), r.test.count));
  }
  r.reused = true;
  return r;
}

RunRecord load_finished(const RunConfig& config, const std::string& dir) {
  const std::string path = dir + "/" + kMetricsFile;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is not valid JSON ({}); delete it to retrain the run", path, e.what()));
  }
  try {
    return record_from_json(config, dir, j);
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        fmt::format("'{}' lacks a field or has a wrong one ({}); delete it to retrain the run", path, e.what()));
  }
}

/// The sessions of the run in `dir` so far (kSessionsFile), an empty array when none.
/// Throws Error naming the file when it is not such a list.
nlohmann::json read_sessions(const std::string& dir) {
  const std::string path = dir + "/" + kSessionsFile;
  if (!fs::exists(path)) return nlohmann::json::array();
  try {
    nlohmann::json sessions = nlohmann::json::parse(read_text(path));
    for (const nlohmann::json& s : sessions.get_ref<const nlohmann::json::array_t&>()) s.at("first_epoch").get<int>();
    return sessions;
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is not a list of training sessions ({}); delete it to resume the run without "
                            "the record of its earlier sessions",
                            path, e.what()));
  }
}

/// Appends this invocation to the sessions of the run in `dir`: it trains from `first_epoch` on.
/// Sessions whose epochs are trained again (a kill before the first checkpoint) are dropped.
void record_session(const std::string& dir, const RunContext& context, int first_epoch) {
  nlohmann::json sessions = nlohmann::json::array();
  for (const nlohmann::json& s : read_sessions(dir))
    if (s.at("first_epoch").get<int>() < first_epoch) sessions.push_back(s);
  nlohmann::json entry = {{"first_epoch", first_epoch},
                          {"threads", context.threads},
                          {"conv_algo", conv_algo_name(context.conv_algo)}};
  for (const char* key : {"git_commit", "jit_cpu", "vector_width"})
    if (context.provenance.contains(key)) entry[key] = context.provenance[key];
  sessions.push_back(std::move(entry));
  write_file_atomically(dir + "/" + kSessionsFile, sessions.dump(2) + "\n");
}

/// A finished run never resumes: final/ holds its weights, last/ only costs disk, and so do the
/// staging and previous folders of a save a kill interrupted. A run whose final/ is its last
/// epoch (scored there, or trained without early stopping) keeps best/, the weights of its lowest
/// validation loss: `dagger eval` scores them, and a run that carries on after its epochs
/// (continuable_prefix) needs them. A run that restored its best has them in final/.
void remove_resume_state(const RunConfig& config, const std::string& dir) {
  for (const std::string folder : {"last", "best"}) {
    if (folder == "best" && !config.restores_best()) {
      recover_checkpoint(dir + "/best");
      continue;
    }
    for (const char* suffix : {"", ".tmp", ".old"}) fs::remove_all(dir + "/" + folder + suffix);
  }
  fs::remove(dir + "/" + kSessionsFile);  // in the provenance now
}

/// The weights and history of the last epoch a diverged run finished (its last/ checkpoint),
/// or the initial weights and no history when it diverged in its first epoch.
TrainResult last_finished_epoch(Trainer& trainer, const std::string& dir) {
  const std::string last = dir + "/last";
  if (!fs::exists(last + "/manifest.json")) return {};
  return trainer.load_progress(last);
}

/// A number of a metrics file; JSON has no NaN or infinity, so they were written as null.
double number_or_nan(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = j.at(key);
  return v.is_null() ? NAN : v.get<double>();
}

/// Every finished run in runs_dir with the configuration it was trained under, its model written
/// as zoo::canonical_call spells it, in folder-name order (the same whatever order the file
/// system lists them in). Folders whose config.json this suite did not write are left out.
std::vector<std::pair<std::string, RunConfig>> finished_runs(const std::string& runs_dir) {
  std::error_code ec;
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(runs_dir, ec))
    if (fs::exists(entry.path() / kMetricsFile) && fs::exists(entry.path() / "config.json")) dirs.push_back(entry.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<std::pair<std::string, RunConfig>> runs;
  for (const fs::path& dir : dirs) {
    try {
      RunConfig c = RunConfig::from_json(nlohmann::json::parse(read_text((dir / "config.json").string())));
      c.model = zoo::canonical_call(c.model);
      runs.emplace_back(dir.string(), std::move(c));
    } catch (const std::exception&) {
      continue;  // not a configuration this suite wrote: not a candidate
    }
  }
  return runs;
}

}  // namespace

void remove_stale_temporaries_in(const std::string& dir) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->is_regular_file() && it->path().filename().string().find(".tmp-") != std::string::npos) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
}

double RunRecord::lowest_val_loss() const {
  double lowest = INFINITY;
  for (const EpochStats& s : history)
    if (!std::isnan(s.val_loss)) lowest = std::min(lowest, s.val_loss);
  if (history.empty() && !std::isnan(val.loss)) lowest = val.loss;
  return lowest;
}

std::optional<ClassificationReport> RunRecord::best_epoch_report() const {
  if (best_epoch_test) return best_epoch_test;
  if (config.keep_last && diverged.empty() && best_epoch == static_cast<int>(history.size())) return test;
  return std::nullopt;
}

const Tensor* RunRecord::best_epoch_probs() const {
  const Tensor* probs = best_epoch_test ? &best_epoch_test_probs : best_epoch_report() ? &test_probs : nullptr;
  return probs && probs->dimension() == 2 ? probs : nullptr;
}

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

nlohmann::json RunConfig::to_json() const {
  nlohmann::json j = {{"model", model},   {"optimizer", optimizer}, {"lr", lr},       {"momentum", momentum},
                      {"epochs", epochs}, {"patience", patience},   {"batch", batch}, {"train", train},
                      {"val", val},       {"test", test},           {"seed", seed},   {"raw_pixels", raw_pixels}};
  // Only when set, so runs that restore the best weights keep the keys they had before the option.
  if (keep_last) j["keep_last"] = true;
  if (split_seed) j["split_seed"] = split_seed;  // likewise: only runs repeated under other seeds have it
  if (weight_decay != 0) j["weight_decay"] = weight_decay;
  if (!schedule.empty()) j["schedule"] = schedule;
  if (warmup != 0) j["warmup"] = warmup;
  if (!augment.empty()) j["augment"] = augment;
  if (label_smoothing != 0) j["label_smoothing"] = label_smoothing;
  return j;
}

RunConfig RunConfig::from_json(const nlohmann::json& j) {
  RunConfig c;
  c.model = j.at("model");
  c.optimizer = j.at("optimizer");
  c.lr = j.at("lr");
  c.momentum = j.at("momentum");
  c.epochs = j.at("epochs");
  c.patience = j.at("patience");
  c.batch = j.at("batch");
  c.train = j.at("train");
  c.val = j.at("val");
  c.test = j.at("test");
  c.seed = j.at("seed");
  c.raw_pixels = j.at("raw_pixels");
  c.keep_last = j.value("keep_last", false);
  c.split_seed = j.value("split_seed", uint64_t{0});
  c.weight_decay = j.value("weight_decay", 0.0);
  c.schedule = j.value("schedule", std::string());
  c.warmup = j.value("warmup", 0);
  c.augment = j.value("augment", std::string());
  c.label_smoothing = j.value("label_smoothing", 0.0);
  return c;
}

std::string RunConfig::key() const {
  std::string slug;
  for (char ch : model) {
    const bool keep = std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_';
    if (keep)
      slug += ch;
    else if (!slug.empty() && slug.back() != '-')
      slug += '-';
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return fmt::format("{}-{:016x}", slug, fnv1a(to_json().dump()));
}

ClassificationReport report_from_json(const nlohmann::json& j) {
  ClassificationReport r;
  r.count = j.at("count");
  r.loss = number_or_nan(j, "loss");
  r.accuracy = j.at("accuracy");
  r.precision = j.at("precision");
  r.recall = j.at("recall");
  r.f1 = j.at("f1");
  r.class_precision = j.at("class_precision").get<std::vector<double>>();
  r.class_recall = j.at("class_recall").get<std::vector<double>>();
  r.class_f1 = j.at("class_f1").get<std::vector<double>>();
  r.support = j.at("support").get<std::vector<size_t>>();
  r.confusion = j.at("confusion").get<std::vector<std::vector<size_t>>>();
  r.class_names = j.contains("class_names") ? j.at("class_names").get<std::vector<std::string>>()
                                            : numbered_class_names(r.support.size());
  return r;
}

std::string finished_equivalent(const RunConfig& config, const std::string& runs_dir) {
  RunConfig want = config;
  want.model = zoo::canonical_call(config.model);
  for (const auto& [dir, c] : finished_runs(runs_dir))
    if (c == want) return dir;
  return "";
}

RunConfig trajectory_of(const RunConfig& config) {
  RunConfig c = config;
  c.model = zoo::canonical_call(c.model);
  c.patience = 0;
  if (c.schedule.empty()) c.epochs = 0;  // a cosine's rate at epoch e depends on the length
  c.keep_last = false;
  return c;
}

RunPrefix continuable_prefix(const RunConfig& config, const std::string& runs_dir) {
  const RunConfig want = trajectory_of(config);
  RunPrefix found;
  for (const auto& [dir, c] : finished_runs(runs_dir)) {
    // final/ holds the state after the last epoch only when the run did not restore its best.
    if (trajectory_of(c) != want || c.restores_best()) continue;
    nlohmann::json metrics;
    try {
      metrics = nlohmann::json::parse(read_text(dir + "/" + kMetricsFile));
    } catch (const std::exception&) {
      continue;
    }
    if (!metrics.value("diverged", std::string()).empty() || !fs::exists(dir + "/final/manifest.json")) continue;
    std::vector<EpochStats> history = history_from_json(metrics.at("history"));
    if (history.empty() || static_cast<int>(history.size()) > config.epochs ||
        history.size() <= found.history.size())
      continue;
    // This run must not have stopped before the other's last epoch.
    EarlyStopping stopping{.patience = config.patience};
    bool stops_sooner = false;
    for (const EpochStats& e : history) {
      stops_sooner |= stopping.stop();
      stopping.update(e.epoch, e.val_loss);
    }
    // Its weights of the lowest validation loss: best/, or final/ when that was its last epoch.
    // The run that carries on needs them whether it restores them at the end or scores them
    // beside its last epoch (Trainer::resume refuses to go on without them).
    std::string best = fs::exists(dir + "/best/manifest.json") ? dir + "/best" : "";
    if (best.empty() && stopping.best_epoch == static_cast<int>(history.size())) best = dir + "/final";
    if (stops_sooner || best.empty()) continue;
    found = {dir, best, std::move(history)};
  }
  return found;
}

bool is_finished(const RunConfig& config, const std::string& runs_dir) {
  return fs::exists(runs_dir + "/" + config.key() + "/" + kMetricsFile) ||
         !finished_equivalent(config, runs_dir).empty();
}

RunRecord run_or_reuse(const RunConfig& config, const RunData& data, const RunContext& context) {
  const std::string dir = context.runs_dir + "/" + config.key();
  if (fs::exists(dir + "/" + kMetricsFile)) {
    remove_resume_state(config, dir);  // a kill may have come between the metrics and the removal
    remove_stale_temporaries_in(dir);
    return load_finished(config, dir);
  }
  // The same run asked for under another spelling of its model (E21's rescnn(residual, 0.25,
  // 256) is E18's rescnn(residual) when E20 keeps the defaults) is the same result: reuse it.
  if (const std::string same = context.reuse_equivalent ? finished_equivalent(config, context.runs_dir) : "";
      !same.empty())
    return load_finished(config, same);

  zoo::Entry model = zoo::find(config.model);
  fs::create_directories(dir);
  remove_stale_temporaries_in(dir);
  write_file_atomically(dir + "/config.json", config.to_json().dump(2) + "\n");
  RunContext recorded = context;
  recorded.on_epoch = [&dir, &context, first = true](const EpochStats& s) mutable {
    if (first) record_session(dir, context, s.epoch);
    first = false;
    if (context.on_epoch) context.on_epoch(s);
  };
  Trainer trainer(model.build, train_config(config, recorded, dir));
  // A finished run that differs only in when it stops has already trained this run's first
  // epochs, bit for bit: carry on after them (E21's rescnn after E18's, E20's cnn3 after E19's).
  int continued_epochs = 0;
  std::string continued_from;
  if (!fs::exists(dir + "/last/manifest.json")) {
    if (RunPrefix prefix = continuable_prefix(config, context.runs_dir); !prefix.dir.empty()) {
      continued_from = fs::path(prefix.dir).filename().string();
      continued_epochs = static_cast<int>(prefix.history.size());
      // Before last/: a run killed in between finds no last/ and looks for its prefix again.
      write_file_atomically(dir + "/continued.json",
                            nlohmann::json{{"from", continued_from}, {"epochs", continued_epochs}}.dump(2) + "\n");
      trainer.continue_from(prefix.dir + "/final", prefix.best_dir, prefix.history);
    }
  } else if (fs::exists(dir + "/continued.json")) {
    const nlohmann::json j = nlohmann::json::parse(read_text(dir + "/continued.json"));
    continued_from = j.at("from");
    continued_epochs = j.at("epochs");
  }
  TrainResult fit;
  std::string diverged;
  try {
    fit = trainer.fit(*data.train, *data.val);
  } catch (const Error& e) {
    // Divergence is a result (E02's raw pixels are about it): score the last finished epoch.
    if (!std::string(e.what()).starts_with("training diverged")) throw;
    diverged = e.what();
    fit = last_finished_epoch(trainer, dir);
  }

  RunRecord r;
  r.config = config;
  r.key = config.key();
  r.dir = dir;
  r.history = fit.history;
  r.best_epoch = fit.best_epoch;
  r.stopped_early = fit.stopped_early;
  r.resumed = fit.resumed;
  r.diverged = diverged;
  r.train = trainer.evaluate(*data.train).report;
  r.val = trainer.evaluate(*data.val).report;
  Evaluation test = trainer.evaluate(*data.test);
  r.test = test.report;
  r.test_probs = test.probs;
  r.test_predictions = test.predictions;
  double images = 0;
  for (const EpochStats& s : r.history) {
    if (s.epoch <= continued_epochs) continue;  // the other run's time, counted there
    r.train_seconds += s.seconds;
    images += s.images_per_sec * s.seconds;
  }
  r.images_per_sec = r.train_seconds > 0 ? images / r.train_seconds : 0;
  r.provenance = context.provenance;
  r.provenance["executor"] = executor_name(context.executor);
  r.provenance["threads"] = context.threads;
  r.provenance["conv_algo"] = conv_algo_name(context.conv_algo);
  r.provenance["seed"] = config.seed;
  r.provenance["resumed"] = fit.resumed;
  r.provenance["sessions"] = read_sessions(dir);
  if (!continued_from.empty()) r.provenance["continued"] = {{"from", continued_from}, {"epochs", continued_epochs}};
  r.provenance["finished_at"] = fmt::format(
      "{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now())));

  // The weights the metrics belong to, the test probabilities ensembles combine, then the
  // metrics: their presence marks the run finished, so they are written last and atomically.
  trainer.save_state(dir + "/final", {{"best_epoch", r.best_epoch}});
  save_checkpoint(dir + "/test_probs", {{"probs", r.test_probs}}, {{"model", config.model}});
  // Scored at its last epoch, the run reports its best epoch's test figures too, so the two
  // protocols' numbers stand side by side without a second suite (`--restore-best`).
  if (config.keep_last && diverged.empty() && r.best_epoch != static_cast<int>(r.history.size()) &&
      fs::exists(dir + "/best/manifest.json")) {
    trainer.load_state(dir + "/best");
    Evaluation best = trainer.evaluate(*data.test);
    r.best_epoch_test = best.report;
    r.best_epoch_test_probs = best.probs;
    save_checkpoint(dir + "/" + kBestTestProbsFolder, {{"probs", r.best_epoch_test_probs}}, {{"model", config.model}});
  }
  write_file_atomically(dir + "/provenance.json", r.provenance.dump(2) + "\n");
  nlohmann::json j = {
      {"config", config.to_json()},       {"history", history_json(r.history)}, {"best_epoch", r.best_epoch},
      {"stopped_early", r.stopped_early}, {"train", to_json(r.train)},          {"val", to_json(r.val)},
      {"test", to_json(r.test)},          {"train_seconds", r.train_seconds},   {"images_per_sec", r.images_per_sec},
      {"provenance", r.provenance}};
  if (r.best_epoch_test) j["best_epoch_test"] = to_json(*r.best_epoch_test);
  write_file_atomically(dir + "/" + kMetricsFile, j.dump(1) + "\n");
  remove_resume_state(config, dir);
  return r;
}

}  // namespace dagger::suite
