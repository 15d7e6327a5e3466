// Seeds as a suite dimension, the results bundle, and a suite resumed from a bundle on a machine
// without the runs/ folder, on synthetic data.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "dagger/suite/bundle.h"
#include "dagger/suite/suite.h"
#include "support.h"

using namespace dagger;
using namespace dagger::suite;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using testing::error_of;
using testing::TempDir;

// The declarations below name only the fields they set, as the catalog's do.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

/// Random images whose mean brightness depends on the class, so models learn a little.
Dataset noisy_classes(size_t n, uint32_t seed) {
  Dataset d;
  d.images = Tensor::from_shape({n, 1, 28, 28});
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; ++i) {
    d.labels.push_back(static_cast<int>(i % 10));
    for (size_t p = 0; p < 28 * 28; ++p)
      d.images.data()[i * 28 * 28 + p] =
          (static_cast<float>(rng() % 128) + 12.0f * static_cast<float>(i % 10)) / 255.0f;
  }
  return d;
}

Splits noisy_splits(const SplitOptions& o) {
  return {noisy_classes(o.train_limit, 1), noisy_classes(o.val_limit, 2), noisy_classes(o.test_limit, 3)};
}

/// The headline experiments in miniature: a single model, a grid, their ensemble, a pair
/// compared by McNemar, and a fixed-length run that a later early-stopped one carries on after.
std::vector<Experiment> small_catalog() {
  using enum Show;
  return {
      {.id = "E10",
       .title = "one",
       .what = "one",
       .run = {.model = "mlp1(12,relu,0.2)"},
       .shows = {best_splits},
       .study = {{"test accuracy", "best.test.accuracy", 0.3}}},
      {.id = "E12",
       .title = "grid",
       .what = "grid",
       .run = {.model = "mlp1(8,relu,0)"},
       .grid = {{"lr", {"0.001", "0.01"}}},
       .shows = {leaderboard, best_splits}},
      {.id = "E14",
       .title = "ensemble",
       .what = "ensemble",
       .members = {"E10", "E12"},
       .shows = {ensemble},
       .study = {{"ensemble", "ensemble.accuracy", 0.99}}},
      {.id = "E17",
       .title = "pair",
       .what = "pair",
       .run = {.model = "mlp1(6,relu,{p})"},
       .grid = {{"p", {"0", "0.5"}}},
       .shows = {run_table}},
      {.id = "E19",
       .title = "fixed",
       .what = "fixed",
       .run = {.model = "mlp1(10,relu,0)", .epochs = 2},
       .shows = {running_min}},
      {.id = "E20",
       .title = "carries on",
       .what = "carries on",
       .run = {.model = "mlp1(10,relu,0)", .patience = "5"},
       .shows = {best_splits}},
  };
}

SuiteOptions small_options(const std::string& out, const std::vector<Experiment>& experiments,
                           std::vector<std::string> only = {}) {
  SuiteOptions o;
  o.profile.name = "small";
  o.profile.dense = {.train = 120, .val = 40, .test = 50, .max_epochs = 3};
  o.profile.batch = 20;
  o.profile.seeds = {42, 7};
  o.profile.seeded = {"E10", "E12", "E14"};
  o.experiments = &experiments;
  o.only = std::move(only);
  o.out_dir = out;
  o.executor = ExecutorKind::reference;
  o.progress = false;
  o.plots = false;
  o.load_data = noisy_splits;
  o.provenance = {{"git_commit", "test"}};
  return o;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

/// What a run computed: everything of its results.json record but timings and provenance.
nlohmann::json computed(nlohmann::json run) {
  for (const char* timing : {"train_seconds", "images_per_sec", "reused", "provenance"}) run.erase(timing);
  for (auto& epoch : run["history"]) epoch.erase("seconds"), epoch.erase("images_per_sec");
  return run;
}

/// Two suites' results.json computed the same: every run, run by run, and the statistics.
void check_same_results(const nlohmann::json& a, const nlohmann::json& b) {
  REQUIRE(a.at("runs").size() == b.at("runs").size());
  for (const auto& [key, run] : a.at("runs").items()) {
    INFO(key);
    REQUIRE(b.at("runs").contains(key));
    CHECK(computed(run) == computed(b.at("runs").at(key)));
  }
  CHECK(a.at("statistics") == b.at("statistics"));
}

}  // namespace

TEST_CASE("seeded experiments train every configuration under every seed on one data split", "[suite][seeds]") {
  const std::vector<Experiment> experiments = small_catalog();
  TempDir out("seeds");
  const SuiteResult r = run_suite(small_options(out.path.string(), experiments, {"E14", "E17"}));
  const ExperimentResult& e10 = *r.by_id.at("E10");
  REQUIRE(e10.runs.size() == 2);
  CHECK(e10.runs[0].record.config.seed == 42);
  CHECK(e10.runs[0].record.config.split_seed == 0);  // the single-seed suite's run, same key
  CHECK(e10.runs[1].record.config.seed == 7);
  CHECK(e10.runs[1].record.config.split_seed == 42);
  CHECK(slice_key(e10.runs[1].record.config) == slice_key(e10.runs[0].record.config));
  CHECK(e10.runs[0].record.test.accuracy != e10.runs[1].record.test.accuracy);  // the seed mattered

  // E12's choice: the lr whose two seeds have the lower mean validation loss, its seed-42 run.
  const ExperimentResult& e12 = *r.by_id.at("E12");
  REQUIRE(e12.runs.size() == 4);
  auto mean = [&](size_t first) {
    return (e12.runs[first].record.lowest_val_loss() + e12.runs[first + 1].record.lowest_val_loss()) / 2;
  };
  const int expected = mean(0) <= mean(2) ? 0 : 2;
  CHECK(e12.chosen == expected);
  REQUIRE(e12.chosen_runs().size() == 2);
  CHECK(e12.chosen_runs()[1]->record.config.seed == 7);
  CHECK(e12.values.at("lr") == e12.runs[static_cast<size_t>(expected)].labels.at("lr"));

  // The ensemble per seed; E17 is not seeded: one run per configuration.
  const ExperimentResult& e14 = *r.by_id.at("E14");
  CHECK(e14.ensembles.size() == 2);
  CHECK(e14.ensemble->report.accuracy == e14.ensembles.at(42).report.accuracy);
  CHECK(r.by_id.at("E17")->runs.size() == 2);

  // results.json: mean +- std over the seeds, an interval, and the paired tests.
  const nlohmann::json stats = read_json(out.path / "results.json").at("statistics");
  const nlohmann::json& first = stats.at("figures").at(0);
  CHECK(first.at("experiment") == "E10");
  CHECK(first.at("values").size() == 2);
  CHECK(first.at("mean").get<double>() ==
        Approx((e10.runs[0].record.test.accuracy + e10.runs[1].record.test.accuracy) / 2));
  CHECK(first.at("interval")[0].get<double>() <= first.at("interval")[1].get<double>());
  CHECK(first.at("study_within") == (first.at("interval")[0] <= 0.3 && 0.3 <= first.at("interval")[1]));
  size_t ensemble_pairs = 0, e17_pairs = 0;
  for (const auto& p : stats.at("pairs")) {
    ensemble_pairs += p.at("experiment") == "E14";
    e17_pairs += p.at("experiment") == "E17";
  }
  CHECK(ensemble_pairs == 4);  // two members under two seeds
  CHECK(e17_pairs == 1);
  const std::string md = [&] {
    std::ifstream in(out.path / "report.md");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }();
  CHECK_THAT(md, Contains("## Statistics: seeds, intervals, paired tests") && Contains("p=0.5"));
  CHECK_THAT(md, Contains("within the interval") || Contains("outside it"));
}

TEST_CASE("a suite resumed from a bundle, without runs/, ends as an uninterrupted one", "[suite][seeds][slow]") {
  const std::vector<Experiment> experiments = small_catalog();
  TempDir whole("bundle-whole"), first("bundle-first"), moved("bundle-moved");
  run_suite(small_options(whole.path.string(), experiments));

  // The first machine ran part of the suite; its bundle is all that travels.
  run_suite(small_options(first.path.string(), experiments, {"E14", "E19"}));
  const fs::path bundle = first.path / "bundle";
  CHECK(fs::exists(bundle / "report.md"));
  CHECK(fs::exists(bundle / "report.html"));
  CHECK(fs::exists(bundle / "results.json"));
  size_t runs = 0, with_probs = 0;
  for (const auto& run : fs::directory_iterator(bundle / "runs")) {
    ++runs;
    with_probs += fs::exists(run.path() / "test_probs");
    CHECK(fs::exists(run.path() / "history.csv"));
    CHECK(fs::exists(run.path() / "test_predictions.txt"));
    CHECK_FALSE(fs::exists(run.path() / "final"));  // no checkpoints
  }
  CHECK(runs == 2 + 4 + 1);
  CHECK(with_probs == 4);  // the ensemble's members: E10's and E12's chosen runs, both seeds

  // The second machine: a fresh folder, the bundle imported, the whole suite run.
  fs::create_directories(moved.path / "runs");
  CHECK(import_bundle(bundle.string(), (moved.path / "runs").string()) == 7);
  CHECK(import_bundle(bundle.string(), (moved.path / "runs").string()) == 0);  // already there
  const SuiteResult r = run_suite(small_options(moved.path.string(), experiments));
  CHECK(r.reused == 7);
  // E20 could not carry on after E19's imported epochs (no weights travel): it trained from
  // scratch, and that gives the same bits.
  CHECK_FALSE(r.by_id.at("E20")->runs[0].record.provenance.contains("continued"));
  const nlohmann::json a = read_json(whole.path / "results.json"), b = read_json(moved.path / "results.json");
  check_same_results(a, b);
  for (size_t i = 0; i < a.at("experiments").size(); ++i) {
    nlohmann::json x = a.at("experiments")[i], y = b.at("experiments")[i];
    for (const char* timing : {"wall_seconds", "trained", "reused"}) x.erase(timing), y.erase(timing);
    CHECK(x == y);
  }

  // A chosen member imported without its probabilities (a bundle that chose another) is trained
  // again, to the same result; one trained here without them is named, not retrained.
  const std::string member = r.by_id.at("E10")->chosen_run()->record.dir;
  REQUIRE(fs::exists(member + "/" + kImportedFile));
  fs::remove_all(member + "/test_probs");
  const SuiteResult again = run_suite(small_options(moved.path.string(), experiments, {"E14"}));
  CHECK(again.by_id.at("E10")->trained == 1);
  CHECK(again.by_id.at("E10")->reused == 1);
  CHECK(fs::exists(member + "/test_probs"));
  CHECK_FALSE(fs::exists(member + "/" + kImportedFile));
  CHECK(again.by_id.at("E14")->measures == r.by_id.at("E14")->measures);
  fs::remove_all(member + "/test_probs");
  CHECK_THAT(error_of([&] { run_suite(small_options(moved.path.string(), experiments, {"E14"})); }),
             Contains("no checkpoint folder '" + member + "/test_probs'"));
  CHECK_THAT(error_of([&] { import_bundle(first.file("runs"), moved.file("runs")); }),
             Contains("is not a results bundle"));
  // A partial bundle whose index is cut short is named, not taken for an empty one.
  TempDir cut("bundle-cut");
  fs::create_directories(cut.path / "runs");
  std::ofstream(cut.path / kPartialIndexFile) << "{";
  CHECK_THAT(error_of([&] { import_bundle(cut.path.string(), moved.file("runs")); }),
             Contains("partial.json' is not a partial bundle's index"));
}

TEST_CASE("a suite stopped mid-way carries on elsewhere from its partial bundle", "[suite][seeds][slow]") {
  const std::vector<Experiment> experiments = small_catalog();
  TempDir whole("partial-whole"), first("partial-first"), moved("partial-moved"), complete("partial-complete");
  run_suite(small_options(whole.path.string(), experiments));

  // The first machine stops in E17's first run, after E10's and E12's six runs finished.
  SuiteOptions cut = small_options(first.path.string(), experiments);
  cut.after_epoch = [](const RunConfig& c, const EpochStats&) {
    if (c.model.starts_with("mlp1(6,")) throw std::runtime_error("session over");
  };
  CHECK_THROWS_WITH(run_suite(cut), Contains("session over"));
  CHECK_FALSE(fs::exists(first.path / "bundle"));
  const fs::path partial = first.path / kPartialBundleFolder;
  const nlohmann::json index = read_json(partial / kPartialIndexFile);
  CHECK(index.at("partial") == true);
  REQUIRE(index.at("runs").size() == 6);
  size_t with_probs = 0;
  for (const auto& key : index.at("runs")) {
    const fs::path run = partial / "runs" / key.get<std::string>();
    CHECK(fs::exists(run / "metrics.json"));
    with_probs += fs::exists(run / "test_probs");
    CHECK(fs::exists(run / "test_predictions.txt"));
    CHECK_FALSE(fs::exists(run / "final"));  // no checkpoints
    CHECK_FALSE(fs::exists(run / "last"));
  }
  size_t folders = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(partial / "runs")) ++folders;
  CHECK(folders == 6);
  // E14 combines E10's and E12's chosen runs: E12's other two left once it had chosen.
  CHECK(with_probs == 4);
  CHECK_FALSE(fs::exists(partial / "staging"));  // nothing left half-copied

  // The next machine has only the partial bundle: it imports it and runs the whole suite.
  fs::create_directories(moved.path / "runs");
  CHECK(import_bundle(partial.string(), (moved.path / "runs").string()) == 6);
  const SuiteResult r = run_suite(small_options(moved.path.string(), experiments));
  CHECK(r.reused == 6);
  const nlohmann::json a = read_json(whole.path / "results.json"), b = read_json(moved.path / "results.json");
  check_same_results(a, b);
  // Its partial bundle holds every run, the imported ones too: it could be stopped again.
  CHECK(read_json(moved.path / kPartialBundleFolder / kPartialIndexFile).at("runs").size() == a.at("runs").size());

  // Runs imported from a complete bundle stay out of the partial one: they travel in that bundle.
  fs::create_directories(complete.path / "runs");
  CHECK(import_bundle((whole.path / "bundle").string(), (complete.path / "runs").string()) == a.at("runs").size());
  CHECK(run_suite(small_options(complete.path.string(), experiments)).reused == a.at("runs").size());
  CHECK_FALSE(fs::exists(complete.path / kPartialBundleFolder / kPartialIndexFile));
}

TEST_CASE("a partial bundle filed again after a kill lists the run and keeps no temporaries", "[suite]") {
  // The suite killed after a run's folder was renamed into the partial bundle but before
  // partial.json listed it, or while partial.json or suite.json was being written (their
  // temporaries left, named after a writer that may still exist, here this test's parent).
  TempDir out("partial-kill");
  const fs::path run = out.path / "runs" / "mlp-1";
  fs::create_directories(run);
  for (const char* file : {"config.json", "metrics.json", "history.csv"}) std::ofstream(run / file) << "{}\n";
  std::ofstream(out.path / "suite.json") << "{\"data\": \"x\"}\n";
  RunRecord r;
  r.key = "mlp-1";
  r.dir = run.string();
  r.test_predictions = {3, 1};
  add_to_partial_bundle(r, out.path.string(), true);
  const fs::path partial = out.path / kPartialBundleFolder;
  CHECK(read_json(partial / kPartialIndexFile).at("runs") == nlohmann::json{"mlp-1"});
  fs::remove(partial / kPartialIndexFile);  // the kill: the run is in, the index is not
  const std::string writer = std::to_string(::getppid());
  for (const char* file : {"partial.json", "suite.json"})
    std::ofstream(partial / (std::string(file) + ".tmp-" + writer)) << "{";
  add_to_partial_bundle(r, out.path.string(), true);  // the resumed suite files the run again
  CHECK(read_json(partial / kPartialIndexFile).at("runs") == nlohmann::json{"mlp-1"});
  for (const auto& entry : fs::directory_iterator(partial))
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
  CHECK(fs::exists(partial / "runs" / "mlp-1" / "test_predictions.txt"));
  CHECK_FALSE(fs::exists(partial / "staging"));
}

TEST_CASE("a partial bundle keeps test probabilities only for the runs it is told to", "[suite]") {
  TempDir out("partial-probs");
  const fs::path run = out.path / "runs" / "mlp-2";
  fs::create_directories(run);
  for (const char* file : {"config.json", "metrics.json", "history.csv"}) std::ofstream(run / file) << "{}\n";
  for (const std::string folder : {"test_probs", kBestTestProbsFolder}) {
    fs::create_directories(run / folder);
    std::ofstream(run / folder / "probs.npy") << folder;
  }
  RunRecord r;
  r.key = "mlp-2";
  r.dir = run.string();
  r.test_predictions = {0, 2};
  const fs::path in = out.path / kPartialBundleFolder / "runs" / "mlp-2";
  const auto probs_in = [&] {
    return static_cast<int>(fs::exists(in / "test_probs" / "probs.npy")) +
           static_cast<int>(fs::exists(in / kBestTestProbsFolder / "probs.npy"));
  };
  // Filed by an experiment nothing combines: its predictions alone.
  add_to_partial_bundle(r, out.path.string(), false);
  CHECK(fs::exists(in / "metrics.json"));
  CHECK(probs_in() == 0);
  add_to_partial_bundle(r, out.path.string(), false);
  CHECK(probs_in() == 0);
  // Filed again by one that may combine it: the probabilities of both epochs come in.
  add_to_partial_bundle(r, out.path.string(), true);
  CHECK(probs_in() == 2);
  CHECK(fs::exists(in / "test_predictions.txt"));
  // Kept while wanted, dropped when not.
  prune_partial_bundle(out.path.string(), {"mlp-2"});
  CHECK(probs_in() == 2);
  prune_partial_bundle(out.path.string(), {"other"});
  CHECK(probs_in() == 0);
  CHECK(fs::exists(in / "metrics.json"));
  CHECK(fs::exists(in / "test_predictions.txt"));
  CHECK(read_json(out.path / kPartialBundleFolder / kPartialIndexFile).at("runs") == nlohmann::json{"mlp-2"});
  CHECK_FALSE(fs::exists(out.path / kPartialBundleFolder / "staging"));
  CHECK(fs::exists(run / "test_probs" / "probs.npy"));  // the run's own folder keeps them
}

TEST_CASE("embedded plots: an <img> of a file beside the page becomes a data: URI", "[suite]") {
  TempDir dir("embed");
  fs::create_directories(dir.path / "plots");
  std::ofstream(dir.path / "plots" / "a.png", std::ios::binary) << "abcd";  // base64 "YWJjZA=="
  const std::string html = "<p><img src=\"plots/a.png\" alt=\"a\"><img src=\"plots/missing.png\" alt=\"m\"></p>";
  CHECK(embed_images(html, dir.path.string()) ==
        "<p><img src=\"data:image/png;base64,YWJjZA==\" alt=\"a\"><img src=\"plots/missing.png\" alt=\"m\"></p>");
}

namespace {

/// Two members that overfit a few images and are scored at their last epoch, and their ensemble.
std::vector<Experiment> overfitting_pair() {
  using enum Show;
  return {
      {.id = "A", .title = "a", .what = "a", .run = {.model = "mlp1(64,relu,0)", .lr = "0.01", .patience = "20"}},
      {.id = "B", .title = "b", .what = "b", .run = {.model = "mlp1(48,relu,0)", .lr = "0.01", .patience = "20"}},
      {.id = "C", .title = "ensemble", .what = "ensemble", .members = {"A", "B"}, .shows = {ensemble}},
  };
}

}  // namespace

TEST_CASE("an ensemble of runs scored at their last epoch also combines their best epochs' weights", "[suite]") {
  const std::vector<Experiment> experiments = overfitting_pair();
  TempDir out("best-epoch-ensemble");
  SuiteOptions o = small_options(out.path.string(), experiments);
  o.profile.dense = {.train = 32, .val = 32, .test = 32, .max_epochs = 12};
  o.profile.batch = 16;  // a large step on few images: the validation loss turns up early
  o.profile.seeds.clear();
  o.profile.seeded.clear();
  const SuiteResult r = run_suite(o);
  const ExperimentResult& c = *r.by_id.at("C");
  REQUIRE(c.ensemble);
  REQUIRE(c.best_epoch_ensemble);

  // Each member's best-epoch test probabilities, computed apart: the same run stopped at its best
  // epoch. Their sum's argmax is the best-epoch ensemble.
  REQUIRE(r.data.size() == 1);
  const Splits& data = *r.data.begin()->second;
  RunContext stopped_context;
  stopped_context.runs_dir = (out.path / "stopped").string();
  stopped_context.executor = ExecutorKind::reference;
  Tensor sum = Tensor::from_shape({32, 10});
  sum.fill(0.0f);
  for (const char* id : {"A", "B"}) {
    const RunRecord& member = r.by_id.at(id)->chosen_run()->record;
    REQUIRE(member.best_epoch < static_cast<int>(member.history.size()));
    RunConfig stopped = member.config;
    stopped.epochs = member.best_epoch;
    stopped.patience = 0;
    stopped.keep_last = false;
    const RunRecord there = run_or_reuse(stopped, {&data.train, &data.val, &data.test}, stopped_context);
    CHECK(there.test.accuracy == member.best_epoch_test->accuracy);
    CHECK(there.test_probs != member.test_probs);  // the last epoch's weights answer otherwise
    sum += there.test_probs;
  }
  const std::vector<int> expected = argmax_rows(sum);
  CHECK(c.best_epoch_ensemble->predictions == expected);
  size_t right = 0;
  for (size_t i = 0; i < expected.size(); ++i) right += expected[i] == data.test.labels[i] ? 1 : 0;
  CHECK(c.best_epoch_ensemble->report.accuracy == Approx(static_cast<double>(right) / 32).epsilon(1e-12));
  const Tensor last =
      r.by_id.at("A")->chosen_run()->record.test_probs + r.by_id.at("B")->chosen_run()->record.test_probs;
  CHECK(c.ensemble->predictions == argmax_rows(last));

  // results.json and the report carry it beside the last epoch's; the bundle carries what it needs.
  const nlohmann::json results = read_json(out.path / "results.json");
  const nlohmann::json& measures = results.at("experiments").at(2).at("measures");
  CHECK(measures.at("ensemble.best_epoch.accuracy").get<double>() == c.best_epoch_ensemble->report.accuracy);
  CHECK(measures.at("ensemble.best_epoch.f1").get<double>() == c.best_epoch_ensemble->report.f1);
  CHECK(measures.at("member1.best_epoch.accuracy").get<double>() ==
        r.by_id.at("A")->chosen_run()->record.best_epoch_test->accuracy);
  std::ifstream report(out.path / "report.md");
  const std::string md((std::istreambuf_iterator<char>(report)), {});
  CHECK_THAT(md, Contains("| model | test accuracy | test F1 | test loss | best epoch: accuracy | best epoch: F1 |"));
  for (const char* id : {"A", "B"})
    CHECK(fs::exists(out.path / "bundle/runs" / r.by_id.at(id)->chosen_run()->record.key / "best_test_probs"));

  // A member finished before runs stored those probabilities: the figure is absent, not wrong.
  fs::remove_all(fs::path(r.by_id.at("A")->chosen_run()->record.dir) / "best_test_probs");
  const SuiteResult older = run_suite(o);
  CHECK(older.reused == 2);
  const ExperimentResult& c_older = *older.by_id.at("C");
  CHECK_FALSE(c_older.best_epoch_ensemble);
  CHECK(c_older.ensemble->predictions == c.ensemble->predictions);
  const nlohmann::json older_results = read_json(out.path / "results.json");
  const nlohmann::json& older_measures = older_results.at("experiments").at(2).at("measures");
  CHECK_FALSE(older_measures.contains("ensemble.best_epoch.accuracy"));
  CHECK(older_measures.contains("member1.best_epoch.accuracy"));  // in metrics.json all along
}
