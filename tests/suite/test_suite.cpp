// The experiment suite's machinery on synthetic data: the running-min table, the ensemble,
// dependency order, resuming after an interruption, and a report with every section.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "dagger/suite/analysis.h"
#include "dagger/suite/plot.h"
#include "dagger/suite/report.h"
#include "dagger/suite/schedule.h"
#include "dagger/suite/suite.h"
#include "suite/suite_support.h"
#include "support.h"

using namespace dagger;
using namespace dagger::suite;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using testing::error_of;
using testing::read;
using testing::synthetic;
using testing::TempDir;
using testing::tiny_options;

namespace {

/// The study's catalog with every layer width shrunk (2048 -> 40, ..., 32 -> 8), so that the
/// whole suite trains in seconds; ids, titles, grids, references and shows stay as declared.
std::vector<Experiment> narrow_catalog() {
  const std::vector<std::pair<std::string, std::string>> widths = {
      {"2048", "40"}, {"1024", "32"}, {"512", "24"}, {"256", "20"}, {"128", "16"}, {"64", "12"}, {"32", "8"}};
  auto narrow = [&](std::string text) {
    if (text == "mlp512") return std::string("mlp1(24,relu,0.2)");
    std::string out, token;
    auto flush = [&] {
      for (const auto& [wide, small] : widths)
        if (token == wide) {
          token = small;
          break;
        }
      out += token;
      token.clear();
    };
    for (char c : text) {
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
        token += c;
      } else {
        flush();
        out += c;
      }
    }
    flush();
    return out;
  };
  std::vector<Experiment> experiments = catalog();
  for (Experiment& e : experiments) {
    e.run.model = narrow(e.run.model);
    for (Axis& axis : e.grid)
      for (std::string& v : axis.values) v = narrow(v);
  }
  return experiments;
}

/// Runs on the reference executor, stored under `runs_dir`.
RunContext reference_context(const fs::path& runs_dir) {
  RunContext context;
  context.runs_dir = runs_dir.string();
  context.executor = ExecutorKind::reference;
  return context;
}

}  // namespace

TEST_CASE("running-min table of a hand-made loss history", "[suite]") {
  // Minima: 0.5 stands 1 epoch, 0.4 stands 3 (epochs 2-4), 0.3 stands 4 (5-8), 0.29 the last 2.
  const std::vector<double> losses = {0.5, 0.4, 0.45, 0.42, 0.3, 0.35, 0.31, 0.33, 0.29, 0.3};
  RunningMinTable t = running_min_table(losses);
  REQUIRE(t.rows.size() == 4);
  const std::vector<std::pair<double, int>> expected = {{0.3, 4}, {0.4, 3}, {0.29, 2}, {0.5, 1}};
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(t.rows[i].loss == expected[i].first);
    CHECK(t.rows[i].epochs == expected[i].second);
  }
  CHECK(t.rows[0].set_epoch == 5);
  CHECK(t.minimum == 0.29);
  CHECK(t.wait == 4);  // the last minimum's 2 epochs do not count
  CHECK(t.patience == 8);

  SECTION("ties keep epoch order and the table keeps the longest stands") {
    RunningMinTable u = running_min_table({0.9, 0.8, 0.8, 0.7, 0.7, 0.6}, 2);
    REQUIRE(u.rows.size() == 2);
    CHECK(u.rows[0].loss == 0.8);
    CHECK(u.rows[1].loss == 0.7);
    CHECK(u.wait == 2);
    CHECK(u.patience == 6);
  }
  SECTION("a history that only improves waits one epoch; none waits zero") {
    CHECK(running_min_table({3, 2, 1}).wait == 1);
    CHECK(running_min_table({}).patience == 4);
  }
}

TEST_CASE("ensemble: argmax of summed probabilities, scored", "[suite]") {
  Tensor a = {{0.6f, 0.4f}, {0.2f, 0.8f}, {0.45f, 0.55f}};
  Tensor b = {{0.3f, 0.7f}, {0.4f, 0.6f}, {0.9f, 0.1f}};
  const std::vector<int> labels = {0, 1, 0};
  EnsembleResult r = ensemble({&a, &b}, labels);
  // Sums: (0.9, 1.1) -> 1, (0.6, 1.4) -> 1, (1.35, 0.65) -> 0.
  CHECK(r.predictions == std::vector<int>{1, 1, 0});
  CHECK(r.report.accuracy == Approx(2.0 / 3.0));
  // Loss of the averaged probabilities of the true classes: 0.45, 0.7, 0.675.
  CHECK(r.report.loss == Approx(-(std::log(0.45) + std::log(0.7) + std::log(0.675)) / 3).epsilon(1e-5));
  // Each member alone gets one of three wrong as well; the sum fixes the third example for a.
  CHECK(ensemble({&a}, labels).predictions == std::vector<int>{0, 1, 1});
  // a predicts (0, 1, 1), b (1, 1, 0): they disagree on the first and third examples, and one
  // of them is right on each. The ensemble corrects a's third answer but loses its first, and
  // neither corrects nor loses any of b's.
  CHECK(r.disagreements == 2);
  CHECK(r.any_right == 3);
  REQUIRE(r.changes.size() == 2);
  CHECK(r.changes[0].corrected == 1);
  CHECK(r.changes[0].lost == 1);
  CHECK(r.changes[1].corrected == 0);
  CHECK(r.changes[1].lost == 0);

  Tensor c = {{0.5f, 0.5f}};
  CHECK_THAT(error_of([&] { ensemble({&a, &c}, labels); }), Contains("disagree in shape"));
  CHECK_THAT(error_of([&] { ensemble({}, labels); }), Contains("at least one member"));
}

TEST_CASE("the plan adds dependencies and orders them first", "[suite]") {
  std::vector<std::string> ids;
  for (const Experiment* e : plan(catalog(), {"E14"})) ids.push_back(e->id);
  CHECK(ids == std::vector<std::string>{"E06", "E10", "E12", "E14"});
  ids.clear();
  for (const Experiment* e : plan(catalog(), {"E23"})) ids.push_back(e->id);
  CHECK(ids == std::vector<std::string>{"E19", "E20", "E21", "E23"});
  CHECK(plan(catalog(), {}, Profile::Scope::study).size() == 24);  // the 23 slides and E04b
  CHECK(plan(catalog(), {}).size() == 26);                          // and E24, E24b past the study
  ids.clear();
  for (const Experiment* e : plan(catalog(), {}, Profile::Scope::beyond)) ids.push_back(e->id);
  CHECK(ids == std::vector<std::string>{"E24", "E24b"});
  CHECK(profile("full").scope == Profile::Scope::study);
  CHECK(profile("quick").scope == Profile::Scope::all);
  CHECK(profile("beyond").scope == Profile::Scope::beyond);
  CHECK(plan(catalog(), {"E24"}, Profile::Scope::study).size() == 1);  // named, it runs in any profile
  CHECK(dependencies(catalog()[5]) == std::vector<std::string>{"E04"});  // E05 (after E04b) shows E04's chosen run
  CHECK_THAT(error_of([] { plan(catalog(), {"E99"}); }), Contains("unknown experiment 'E99'") && Contains("E23"));
  CHECK_THAT(error_of([] { profile("medium"); }), Contains("unknown profile 'medium'") && Contains("quick, full"));
}

TEST_CASE("run keys follow the whole configuration", "[suite]") {
  RunConfig a;
  a.model = "mlp1(128,relu,0.2)";
  RunConfig b = a;
  b.lr = 1e-4;
  CHECK(a.key() != b.key());
  CHECK(a.key() == RunConfig(a).key());
  CHECK(a.key().starts_with("mlp1-128-relu-0.2-"));
  CHECK(RunConfig::from_json(b.to_json()) == b);

  // Scoring the last epoch rather than the best is part of the key; scoring the best keeps the
  // key runs had before the option existed (E10 of the full profile).
  RunConfig e10;
  e10.model = "mlp512";
  e10.epochs = 100;
  e10.patience = 10;
  CHECK(e10.key() == "mlp512-c296bdb6180d5a54");
  RunConfig last = e10;
  last.keep_last = true;
  CHECK(last.key() != e10.key());
  CHECK(RunConfig::from_json(last.to_json()) == last);

  // The recipe past the study is in the key only when set, and reads back.
  CHECK_FALSE(e10.to_json().contains("schedule"));
  RunConfig recipe = e10;
  recipe.weight_decay = 0.05;
  recipe.schedule = "cosine";
  recipe.warmup = 2;
  recipe.augment = "crop=2,flip,erase=0.5";
  recipe.label_smoothing = 0.1;
  CHECK(recipe.key() != e10.key());
  CHECK(RunConfig::from_json(recipe.to_json()) == recipe);
  // A cosine run's epochs depend on its length; a constant rate's do not.
  RunConfig shorter = recipe;
  shorter.epochs = 15;
  CHECK(trajectory_of(shorter) != trajectory_of(recipe));
  RunConfig e10_shorter = e10;
  e10_shorter.epochs = 15;
  CHECK(trajectory_of(e10_shorter) == trajectory_of(e10));
}

TEST_CASE("the grid axis 'without' removes one ingredient of the recipe", "[suite]") {
  RunTemplate t;
  t.model = "resnet(1,8)";
  t.optimizer = "adamw";
  t.weight_decay = "0.05";
  t.schedule = "cosine";
  t.warmup = 2;
  t.augment = "flip";
  t.label_smoothing = "0.1";
  CHECK(apply_labels(t, {{"without", "nothing"}}, "E").augment == "flip");
  CHECK(apply_labels(t, {{"without", "augment"}}, "E").augment.empty());
  const RunTemplate constant = apply_labels(t, {{"without", "cosine"}}, "E");
  CHECK((constant.schedule.empty() && constant.warmup == 0));
  const RunTemplate adam = apply_labels(t, {{"without", "adamw"}}, "E");
  CHECK((adam.optimizer == "adam" && adam.weight_decay == "0"));
  CHECK(apply_labels(t, {{"without", "label_smoothing"}}, "E").label_smoothing == "0");
  CHECK_THAT(error_of([&] { apply_labels(t, {{"without", "dropout"}}, "E9"); }),
             Contains("experiment E9: 'without' takes nothing, augment") && Contains("not 'dropout'"));
}

TEST_CASE("a run asked for under another spelling of its model reuses the finished one", "[suite]") {
  TempDir out("suite-same-run");
  const Dataset train = synthetic(64, 1, true), val = synthetic(32, 2, true), test = synthetic(32, 3, true);
  RunContext context = reference_context(out.path / "runs");
  RunConfig a;
  a.model = "mlp1(8,relu,0)";
  a.batch = 32;
  const RunRecord first = run_or_reuse(a, {&train, &val, &test}, context);
  CHECK_FALSE(first.reused);

  RunConfig b = a;
  b.model = "mlp1(8, relu, 0.0)";
  REQUIRE(b.key() != a.key());
  CHECK(finished_equivalent(b, context.runs_dir) == first.dir);
  CHECK(is_finished(b, context.runs_dir));
  const RunRecord same = run_or_reuse(b, {&train, &val, &test}, context);
  CHECK(same.reused);
  CHECK(same.key == a.key());           // where its files are
  CHECK(same.config.model == b.model);  // what was asked for
  CHECK(same.test.accuracy == first.test.accuracy);
  CHECK(same.history.size() == first.history.size());
  CHECK_FALSE(fs::exists(context.runs_dir + "/" + b.key()));  // nothing trained or written for it

  // Another model, or the same model trained otherwise, is another run.
  RunConfig other_model = a;
  other_model.model = "mlp1(8,relu,0.1)";
  CHECK(finished_equivalent(other_model, context.runs_dir).empty());
  RunConfig other_lr = b;
  other_lr.lr = 0.01;
  CHECK(finished_equivalent(other_lr, context.runs_dir).empty());
  CHECK_FALSE(is_finished(other_lr, context.runs_dir));
}

TEST_CASE("a finished run killed before its resume state was removed is tidied by the rerun", "[suite]") {
  TempDir out("suite-tidy");
  const Dataset train = synthetic(64, 1, true), val = synthetic(32, 2, true), test = synthetic(32, 3, true);
  RunContext context = reference_context(out.path / "runs");
  RunConfig config;
  config.model = "mlp1(8,relu,0)";
  config.batch = 32;
  config.patience = 3;
  config.keep_last = false;  // restores its best: final/ holds best/'s weights
  const RunRecord first = run_or_reuse(config, {&train, &val, &test}, context);
  // The state a kill between writing metrics.json and removing last/ and best/ leaves, with
  // the debris of interrupted saves.
  for (const char* folder : {"last", "best", "last.old", "best.tmp"})
    fs::copy(first.dir + "/final", first.dir + "/" + folder);
  // A temporary of a killed writer whose pid now names a live process (pid 1: a reused pid,
  // or a zombie no one reaps): the pid check of write_file_atomically keeps it.
  std::ofstream(first.dir + "/provenance.json.tmp-1") << "{";
  const RunRecord again = run_or_reuse(config, {&train, &val, &test}, context);
  CHECK(again.reused);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(first.dir)) left.push_back(entry.path().filename().string());
  std::sort(left.begin(), left.end());
  CHECK(left == std::vector<std::string>{"config.json", "final", "history.csv", "metrics.json", "provenance.json",
                                         "test_probs"});

  // The same debris in a run that did not finish: the rerun trains it and leaves none.
  RunConfig other = config;
  other.lr = 0.01;
  fs::create_directories(context.runs_dir + "/" + other.key());
  std::ofstream(context.runs_dir + "/" + other.key() + "/provenance.json.tmp-1") << "{";
  const RunRecord trained = run_or_reuse(other, {&train, &val, &test}, context);
  CHECK_FALSE(trained.reused);
  CHECK_FALSE(fs::exists(trained.dir + "/provenance.json.tmp-1"));
}

TEST_CASE("a run that differs only in when it stops carries on after a finished one's epochs", "[suite]") {
  TempDir out("suite-prefix");
  const Dataset train = synthetic(64, 1, true), val = synthetic(32, 2, true), test = synthetic(32, 3, true);
  RunContext context = reference_context(out.path / "runs");
  int epochs_trained = 0;
  context.on_epoch = [&](const EpochStats&) { ++epochs_trained; };
  RunConfig fixed;  // like E19: a fixed number of epochs, no early stopping
  fixed.model = "mlp1(8,relu,0.2)";
  fixed.batch = 16;
  fixed.epochs = 3;
  const RunRecord first = run_or_reuse(fixed, {&train, &val, &test}, context);
  REQUIRE(epochs_trained == 3);

  RunConfig longer = fixed;  // like E20's cnn3: early stopping, a higher cap, the last epoch scored
  longer.model = "mlp1(8, relu, 0.2)";
  longer.epochs = 5;
  longer.patience = 10;
  longer.keep_last = true;
  const RunPrefix prefix = continuable_prefix(longer, context.runs_dir);
  CHECK(prefix.dir == first.dir);
  CHECK(prefix.history.size() == 3);
  const RunRecord continued = run_or_reuse(longer, {&train, &val, &test}, context);
  CHECK(epochs_trained == 3 + 2);
  CHECK_FALSE(continued.reused);
  REQUIRE(continued.history.size() == 5);
  CHECK(continued.provenance.at("continued").at("epochs") == 3);
  CHECK(continued.provenance.at("continued").at("from") == first.key);
  CHECK(continued.train_seconds == continued.history[3].seconds + continued.history[4].seconds);

  // Trained from its first epoch instead: the same bits (shuffling and dropout masks follow the
  // seed, the epoch and the step, all carried over).
  RunContext alone = context;
  alone.runs_dir = (out.path / "alone").string();
  const RunRecord whole = run_or_reuse(longer, {&train, &val, &test}, alone);
  CHECK_FALSE(whole.provenance.contains("continued"));
  CHECK(epochs_trained == 5 + 5);
  REQUIRE(whole.history.size() == 5);
  for (size_t e = 0; e < 5; ++e) {
    CHECK(whole.history[e].train_loss == continued.history[e].train_loss);
    CHECK(whole.history[e].val_loss == continued.history[e].val_loss);
  }
  CHECK(std::equal(whole.test_probs.begin(), whole.test_probs.end(), continued.test_probs.begin()));
  CHECK(whole.best_epoch == continued.best_epoch);
}

TEST_CASE("a run carries on after a fixed-length one whose best epoch came before its last", "[suite]") {
  TempDir out("suite-prefix-best");
  // Few images and a large step: the validation loss turns up well before the last epoch.
  const Dataset train = synthetic(32, 1, true), val = synthetic(32, 2, true), test = synthetic(32, 3, true);
  const RunContext context = reference_context(out.path / "runs");
  RunConfig fixed;  // like E19: a fixed number of epochs, no early stopping
  fixed.model = "mlp1(64,relu,0)";
  fixed.lr = 0.01;
  fixed.batch = 16;
  fixed.epochs = 7;
  const RunRecord first = run_or_reuse(fixed, {&train, &val, &test}, context);
  REQUIRE(first.best_epoch < 7);
  CHECK(fs::exists(first.dir + "/best/manifest.json"));  // kept: a later run needs those weights

  RunConfig longer = fixed;  // like E20's cnn3: early stopping, a higher cap, the last epoch scored
  longer.epochs = 12;
  longer.patience = 20;
  longer.keep_last = true;
  const RunRecord continued = run_or_reuse(longer, {&train, &val, &test}, context);
  REQUIRE(continued.provenance.contains("continued"));
  CHECK(continued.provenance.at("continued").at("epochs") == 7);

  RunContext alone = context;
  alone.runs_dir = (out.path / "alone").string();
  const RunRecord whole = run_or_reuse(longer, {&train, &val, &test}, alone);
  REQUIRE(whole.history.size() == continued.history.size());
  CHECK(whole.history.back().val_loss == continued.history.back().val_loss);
  CHECK(whole.best_epoch == continued.best_epoch);
  REQUIRE(whole.best_epoch < 12);
  REQUIRE(whole.best_epoch_test);
  REQUIRE(continued.best_epoch_test);
  CHECK(whole.best_epoch_test->loss == continued.best_epoch_test->loss);
}

TEST_CASE("a run scored at its last epoch also reports its best epoch's test figures", "[suite]") {
  TempDir out("suite-best-epoch");
  // Few images and a large step: the validation loss turns up well before the last epoch.
  const Dataset train = synthetic(32, 1, true), val = synthetic(32, 2, true), test = synthetic(32, 3, true);
  const RunContext context = reference_context(out.path / "runs");
  RunConfig last;
  last.model = "mlp1(64,relu,0)";
  last.lr = 0.01;
  last.batch = 16;
  last.epochs = 12;
  last.patience = 20;
  last.keep_last = true;
  const RunRecord r = run_or_reuse(last, {&train, &val, &test}, context);
  REQUIRE(r.best_epoch < static_cast<int>(r.history.size()));
  REQUIRE(r.best_epoch_test);
  // The best epoch's weights are those of the same run stopped there.
  RunConfig stopped = last;
  stopped.epochs = r.best_epoch;
  stopped.patience = 0;
  stopped.keep_last = false;
  const RunRecord there = run_or_reuse(stopped, {&train, &val, &test}, context);
  CHECK(r.best_epoch_test->loss == there.test.loss);
  CHECK(r.best_epoch_test->accuracy == there.test.accuracy);
  // Kept in metrics.json: a reused record has them too.
  const RunRecord again = run_or_reuse(last, {&train, &val, &test}, context);
  REQUIRE(again.reused);
  REQUIRE(again.best_epoch_test);
  CHECK(again.best_epoch_test->loss == r.best_epoch_test->loss);
}

TEST_CASE("which finished runs a run may carry on after", "[suite]") {
  TempDir out("suite-prefix-rules");
  const std::string runs = out.path.string();
  // A finished run as the suite leaves it, with only what the choice reads.
  auto finished = [&](const std::string& name, const RunConfig& c, const std::vector<double>& val_losses) {
    const fs::path dir = out.path / name;
    fs::create_directories(dir / "final");
    std::ofstream(dir / "final" / "manifest.json") << "{}";
    std::ofstream(dir / "config.json") << c.to_json().dump();
    nlohmann::json history = nlohmann::json::array();
    for (size_t e = 0; e < val_losses.size(); ++e) history.push_back({e + 1, 1.0, 0.5, val_losses[e], 0.5, 1.0, 10.0});
    std::ofstream(dir / "metrics.json") << nlohmann::json{{"history", history}}.dump();
    return dir.string();
  };
  RunConfig base;
  base.model = "mlp1(8,relu,0.2)";
  base.epochs = 10;
  RunConfig stopped = base;  // stopped at epoch 4: its best (0.4) at epoch 2, then two worse
  stopped.patience = 2;
  stopped.keep_last = true;
  const std::string four = finished("a-four", stopped, {0.5, 0.4, 0.45, 0.46});
  // Without best/, its best epoch's weights are gone, and a run that carries on needs them
  // (to restore, or to score beside its last epoch): not a prefix.
  RunConfig lost = base;
  lost.keep_last = true;
  lost.patience = 3;
  CHECK(continuable_prefix(lost, runs).dir.empty());
  fs::create_directories(out.path / "a-four" / "best");
  std::ofstream(out.path / "a-four" / "best" / "manifest.json") << "{}";
  RunConfig restored = stopped;  // ended with its best epoch's weights: final/ is not epoch 4's
  restored.keep_last = false;
  restored.lr = 0.01;
  finished("b-restored", restored, {0.5, 0.4, 0.45, 0.46});

  RunConfig want = base;
  want.keep_last = true;
  want.patience = 3;
  CHECK(continuable_prefix(want, runs).dir == four);
  want.patience = 2;  // stops at epoch 4 too: nothing left to train, still the same run
  CHECK(continuable_prefix(want, runs).dir == four);
  want.patience = 1;  // would have stopped at epoch 3
  CHECK(continuable_prefix(want, runs).dir.empty());
  want.patience = 3;
  want.epochs = 3;  // fewer epochs than it ran
  CHECK(continuable_prefix(want, runs).dir.empty());
  want.epochs = 10;
  want.lr = 0.01;  // another trajectory; the one with this lr restored its best
  CHECK(continuable_prefix(want, runs).dir.empty());
  want.lr = base.lr;
  want.model = "mlp1(8, relu, 0.20)";
  CHECK(continuable_prefix(want, runs).dir == four);

  // Restoring the best weights at the end takes them from best/, or final/ when the best was last.
  CHECK(continuable_prefix(want, runs).best_dir == four + "/best");
  want.keep_last = false;
  CHECK(continuable_prefix(want, runs).best_dir == four + "/best");

  // The run that trained the most of its epochs wins.
  RunConfig six = base;
  six.epochs = 6;
  const std::string longest = finished("c-six", six, {0.5, 0.4, 0.45, 0.46, 0.39, 0.38});
  const RunPrefix p = continuable_prefix(want, runs);
  CHECK(p.dir == longest);
  CHECK(p.best_dir == longest + "/final");
  CHECK(p.history.size() == 6);
}

TEST_CASE("runs are compared by the lowest validation loss they reached, whatever weights are scored", "[suite]") {
  RunRecord r;
  r.val.loss = 0.9;                   // the scored (last) epoch's
  CHECK(r.lowest_val_loss() == 0.9);  // no history: the scored weights'
  for (double loss : {0.5, 0.3, double(NAN), 0.4}) r.history.push_back({.val_loss = loss});
  CHECK(r.lowest_val_loss() == 0.3);
  r.history = {{.val_loss = double(NAN)}};
  CHECK(r.lowest_val_loss() == INFINITY);  // a run that never had a number never wins
}

TEST_CASE("an interrupted suite resumes: finished runs are reused, the cut run continues", "[suite][slow]") {
  TempDir out("suite");
  SuiteOptions o = tiny_options(out.path.string(), {"E03"});
  o.provenance["git_commit"] = "first binary";
  // Interrupt during the third run (lr 0.1), after its first epoch is on disk.
  int epochs_seen = 0;
  o.after_epoch = [&](const RunConfig& c, const EpochStats& s) {
    ++epochs_seen;
    if (c.lr == 0.1 && s.epoch == 1) throw std::runtime_error("killed");
  };
  // The error names the run it ended.
  CHECK_THROWS_WITH(run_suite(o), "[E03 3/5] shallow: killed");
  CHECK(epochs_seen == 5);  // two finished runs of two epochs, then one epoch

  o.after_epoch = [&](const RunConfig&, const EpochStats&) { ++epochs_seen; };
  o.provenance["git_commit"] = "second binary";
  SuiteResult second = run_suite(o);
  REQUIRE(second.experiments.size() == 1);
  const ExperimentResult& e03 = second.experiments[0];
  CHECK(e03.reused == 2);
  CHECK(e03.trained == 3);
  CHECK(epochs_seen == 5 + 1 + 2 + 2);  // the cut run trains only its second epoch
  const RunRecord& cut = e03.runs[2].record;
  CHECK(cut.config.lr == 0.1);
  CHECK(cut.resumed);
  CHECK(cut.history.size() == 2);
  // Its provenance says which binary trained which epochs; a run trained at once has one session.
  const nlohmann::json& sessions = cut.provenance.at("sessions");
  REQUIRE(sessions.size() == 2);
  CHECK(sessions[0].at("first_epoch") == 1);
  CHECK(sessions[0].at("git_commit") == "first binary");
  CHECK(sessions[1].at("first_epoch") == 2);
  CHECK(sessions[1].at("git_commit") == "second binary");
  CHECK(sessions[1].at("threads") == o.threads);
  CHECK(e03.runs[3].record.provenance.at("sessions").size() == 1);
  CHECK(e03.runs[3].record.provenance.at("sessions")[0].at("git_commit") == "second binary");
  // Finished: no resume checkpoint left; scored at its last epoch, it keeps its best epoch's weights.
  REQUIRE(cut.config.keep_last);
  CHECK_FALSE(fs::exists(cut.dir + "/last"));
  CHECK(fs::exists(cut.dir + "/best/manifest.json"));

  // The resumed run ends where an uninterrupted one does.
  TempDir fresh("suite-fresh");
  SuiteOptions f = tiny_options(fresh.path.string(), {"E03"});
  const SuiteResult uninterrupted = run_suite(f);
  const RunRecord& whole = uninterrupted.experiments[0].runs[2].record;
  CHECK(whole.val.loss == cut.val.loss);
  CHECK(whole.history.back().train_loss == cut.history.back().train_loss);

  // A third pass trains nothing and leaves every finished run's metrics untouched.
  std::vector<fs::file_time_type> stamps;
  for (const GridRun& g : e03.runs) stamps.push_back(fs::last_write_time(g.record.dir + "/metrics.json"));
  SuiteResult third = run_suite(o);
  CHECK(third.trained == 0);
  CHECK(third.reused == 5);
  for (size_t i = 0; i < e03.runs.size(); ++i)
    CHECK(fs::last_write_time(e03.runs[i].record.dir + "/metrics.json") == stamps[i]);
  CHECK(third.by_id.at("E03")->values.at("lr") == e03.values.at("lr"));
  // A damaged record is named, not trusted.
  std::ofstream(e03.runs[0].record.dir + "/metrics.json") << "{";
  CHECK_THAT(error_of([&] { run_suite(o); }), Contains(e03.runs[0].record.dir) && Contains("not valid JSON"));
  std::ofstream(e03.runs[0].record.dir + "/metrics.json") << "{}";
  CHECK_THAT(error_of([&] { run_suite(o); }), Contains("lacks a field"));

  // The report drew E03's loss curves when gnuplot is installed, and says so when it is not.
  const std::string md = read(out.file("report.md"));
  if (Plotter(out.path.string()).available()) {
    CHECK(fs::file_size(out.path / "plots" / "E03-loss.png") > 1000);
    CHECK_THAT(md, Contains("![loss curves](plots/E03-loss.png)"));
  } else {
    CHECK_THAT(md, Contains("not drawn"));
  }
}

TEST_CASE("the report has all 26 sections with real tables and the study's numbers labelled", "[suite][slow]") {
  TempDir out("suite-report");
  const std::vector<Experiment> experiments = narrow_catalog();
  SuiteOptions o = tiny_options(out.path.string(), {});
  o.profile.scope = Profile::Scope::all;
  o.experiments = &experiments;
  o.plots = false;
  SuiteResult r = run_suite(o);
  CHECK(r.experiments.size() == 26);
  const std::string md = read(out.file("report.md"));
  for (const Experiment& e : catalog()) CHECK_THAT(md, Contains("## " + e.id + " · " + e.title));
  CHECK_THAT(md, Contains("## Summary"));
  CHECK_THAT(md, Contains("running_min_loss\tminimum_loss_for_epochs"));
  CHECK_THAT(md, Contains("The study's table (copied from the slide, not measured)"));
  CHECK_THAT(md, Contains("| 0.8960 |"));  // E14's ensemble, the study's column
  // The summary compares E06's patience: ours is its running-min table's wait + 4.
  const ExperimentResult& e06 = *r.by_id.at("E06");
  REQUIRE(e06.running_min);
  CHECK(e06.running_min->patience == e06.running_min->wait + 4);
  CHECK(e06.runs.front().record.history.size() == 3);  // the fixed-length run, capped by the profile
  CHECK(r.by_id.at("E07")->runs.front().record.config.patience == e06.running_min->patience);
  // Early-stopped runs are scored at their last epoch; the fixed-length run has no choice to make.
  CHECK(r.by_id.at("E07")->runs.front().record.config.keep_last);
  CHECK_FALSE(e06.runs.front().record.config.keep_last);
  CHECK_THAT(md, Contains("scored at the last epoch"));
  // The chosen run reached the lowest validation loss of its grid, whatever its last epoch scored.
  const ExperimentResult& e03 = *r.by_id.at("E03");
  REQUIRE(e03.chosen_run());
  for (const GridRun& g : e03.runs) CHECK(e03.chosen_run()->record.lowest_val_loss() <= g.record.lowest_val_loss());
  CHECK_THAT(md, Contains("reached the lowest validation loss"));
  // E04b takes E03's lr times (1 - momentum); E04 the lr itself.
  const double lr = std::stod(e03.values.at("lr"));
  for (const GridRun& g : r.by_id.at("E04b")->runs) CHECK(g.record.config.lr == lr * (1 - g.record.config.momentum));
  CHECK(r.by_id.at("E04")->runs.back().record.config.lr == lr);
  // E21 takes E20's chosen q and h.
  const auto& e20 = r.by_id.at("E20")->values;
  CHECK(r.by_id.at("E21")->runs.front().record.config.model ==
        "rescnn(residual," + e20.at("q") + "," + e20.at("h") + ")");
  // E14's ensemble is scored on the same test slice as its members.
  const ExperimentResult& e14 = *r.by_id.at("E14");
  REQUIRE(e14.ensemble);
  CHECK(e14.ensemble->report.count == 60);
  CHECK(r.by_id.at("E12")->runs.back().record.config.model == "mlp2(40,32,0.3,0.3,nobn)");
  CHECK(e14.measures.at("member1.test.accuracy") == r.by_id.at("E10")->chosen_run()->record.test.accuracy);
  // The comparison says what the combination did to each member's answers, and those counts
  // add up to the accuracies in the table above them.
  CHECK_THAT(md, Contains("| member | its errors the ensemble corrects | its right answers the ensemble loses |"));
  REQUIRE(e14.ensemble->changes.size() == 2);
  for (size_t m = 0; m < 2; ++m) {
    const MemberChange& c = e14.ensemble->changes[m];
    const double member = e14.measures.at(fmt::format("member{}.test.accuracy", m + 1));
    CHECK(e14.ensemble->report.accuracy - member ==
          Approx(double(c.corrected - c.lost) / double(e14.ensemble->report.count)).margin(1e-9));
  }

  // E24 trains its model under three seeds and ensembles them: argmax of the summed softmax.
  const ExperimentResult& e24 = *r.by_id.at("E24");
  REQUIRE(e24.runs.size() == 3);
  REQUIRE(e24.ensemble);
  std::vector<uint64_t> seeds;
  for (const GridRun& g : e24.runs) seeds.push_back(g.record.config.seed);
  CHECK(seeds == std::vector<uint64_t>{42, 1, 2});
  const RunConfig& c24 = e24.runs.front().record.config;
  CHECK((c24.optimizer == "adamw" && c24.schedule == "cosine" && c24.augment == "crop=2,flip,erase=0.5"));
  CHECK((c24.weight_decay == 0.05 && c24.label_smoothing == 0.1 && c24.patience == 10 && !c24.keep_last));
  for (size_t i = 0; i < e24.ensemble->predictions.size(); ++i) {
    std::vector<double> sum(10, 0.0);
    for (const GridRun& g : e24.runs)
      for (size_t k = 0; k < 10; ++k) sum[k] += g.record.test_probs(i, k);
    CHECK(e24.ensemble->predictions[i] == std::max_element(sum.begin(), sum.end()) - sum.begin());
  }
  CHECK(e24.measures.at("ensemble.accuracy") == e24.ensemble->report.accuracy);
  // E24b: each ingredient removed in turn, one seed.
  const ExperimentResult& e24b = *r.by_id.at("E24b");
  REQUIRE(e24b.runs.size() == 5);
  CHECK(e24b.runs[1].record.config.augment.empty());
  CHECK(e24b.runs[2].record.config.schedule.empty());
  CHECK((e24b.runs[3].record.config.optimizer == "adam" && e24b.runs[3].record.config.weight_decay == 0));
  CHECK(e24b.runs[4].record.config.label_smoothing == 0);
  CHECK_THAT(md, Contains("| nothing (the full recipe) |") && Contains("| removed | epochs (best) |"));
  const double change = 100 * (e24b.runs[1].record.test.accuracy - e24b.runs[0].record.test.accuracy);
  CHECK_THAT(md, Contains(fmt::format("| augment | {} ({}) |", e24b.runs[1].record.history.size(),
                                      e24b.runs[1].record.best_epoch)) &&
                     Contains(fmt::format("| {:+.2f} |", change)));

  const std::string html = read(out.file("report.html"));
  CHECK_THAT(html, Contains("<h2>E23 · CNN Ensemble</h2>") && Contains("<table>"));
  const nlohmann::json results = nlohmann::json::parse(read(out.file("results.json")));
  CHECK(results.at("experiments").size() == 26);
  int ablation_pairs = 0;
  for (const auto& p : results.at("statistics").at("pairs"))
    ablation_pairs += p.at("experiment") == "E24b" && p.at("b") == "without=nothing";
  CHECK(ablation_pairs == 4);
  for (const auto& [key, run] : results.at("runs").items()) {
    CHECK(run.at("test").at("class_f1").size() == 10);
    CHECK(run.at("provenance").at("git_commit") == "test");
    CHECK(fs::exists(out.path / "runs" / key / "history.csv"));
  }
}

TEST_CASE("markdown becomes self-contained HTML", "[suite]") {
  const std::string html = markdown_to_html(
      "# T\n\nsome **bold** `x<y`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![plot](plots/p.png)\n- item\n", "t");
  CHECK_THAT(html, Contains("<h1>T</h1>") && Contains("<strong>bold</strong>") && Contains("<code>x&lt;y</code>"));
  CHECK_THAT(html, Contains("<tr><th>a</th><th>b</th></tr>") && Contains("<tr><td>1</td><td>2</td></tr>"));
  CHECK_THAT(html, Contains("<img src=\"plots/p.png\" alt=\"plot\">") && Contains("<li>item</li>"));
}

TEST_CASE("a damaged record of a run's sessions stops the suite with one line naming it", "[suite]") {
  TempDir out("suite-sessions");
  SuiteOptions o = tiny_options(out.path.string(), {"E05"});
  o.after_epoch = [](const RunConfig&, const EpochStats& s) {
    if (s.epoch == 1) throw std::runtime_error("killed");
  };
  CHECK_THROWS_WITH(run_suite(o), Catch::Contains("killed"));
  o.after_epoch = nullptr;
  std::string sessions;
  for (const auto& run : fs::directory_iterator(out.path / "runs"))
    if (fs::exists(run.path() / "sessions.json")) sessions = (run.path() / "sessions.json").string();
  REQUIRE_FALSE(sessions.empty());
  for (const char* damage : {"not json", "[{\"threads\": 1}]"}) {
    std::ofstream(sessions) << damage;
    CHECK_THROWS_WITH(run_suite(o), Catch::Contains("'" + sessions + "' is not a list of training sessions"));
  }
}
