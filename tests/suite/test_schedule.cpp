// The sharded suite's bookkeeping without training: which runs may start given the ones
// finished (references, runs of one trajectory), and --plan's makespans on hand-made records.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "dagger/suite/plan.h"
#include "dagger/suite/schedule.h"
#include "suite/suite_support.h"

// Experiments are declared as the catalog declares them: only the fields that matter.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace dagger;
using namespace dagger::suite;

namespace {

/// A: an lr sweep; B: momentum on A's lr; C: one Adam run; D: C's run trained longer, the same
/// epochs first; E: an SGD run whose lr waits on A; F: an SGD run E's may turn out to be.
std::vector<Experiment> small_catalog() {
  return {
      {.id = "A", .run = {.model = "shallow", .optimizer = "sgd"}, .grid = {{"lr", {"0.1", "0.2"}}}},
      {.id = "B",
       .run = {.model = "shallow", .optimizer = "momentum", .lr = "@A.lr"},
       .grid = {{"momentum", {"0", "0.5"}}}},
      {.id = "C", .run = {.model = "shallow", .lr = "0.01"}},
      {.id = "D", .run = {.model = "shallow", .lr = "0.01", .epochs = 5}},
      {.id = "E", .run = {.model = "shallow", .optimizer = "sgd", .lr = "@A.lr"}},
      {.id = "F", .run = {.model = "shallow", .optimizer = "sgd", .lr = "0.1"}},
  };
}

/// A run of `e` as the suite would configure it, with the lr `lr`.
RunConfig config_of(const Experiment& e, double lr, double momentum = 0) {
  const Profile p = testing::tiny_profile();
  RunConfig c = profile_run(e.run, p);
  c.optimizer = e.run.optimizer;
  c.lr = lr;
  c.momentum = momentum;
  c.epochs = e.run.epochs ? e.run.epochs : p.dense.max_epochs;
  c.patience = e.run.epochs ? 0 : 10;
  return c;
}

std::vector<std::string> started(RunGraph& graph, const std::vector<const Experiment*>& order) {
  std::vector<std::string> ids;
  while (const auto id = graph.start_next()) ids.push_back(order[id->experiment]->id + std::to_string(id->index));
  return ids;
}

}  // namespace

TEST_CASE("runs start once the results they need are in, runs of one trajectory in suite order", "[suite]") {
  const std::vector<Experiment> catalog = small_catalog();
  const std::vector<const Experiment*> order = plan(catalog, {});
  REQUIRE(order.size() == 6);
  RunGraph graph(order, testing::tiny_profile());
  CHECK(graph.expandable() == std::vector<size_t>{0, 2, 3, 5});  // B and E wait for A's lr
  graph.expand(0, {config_of(catalog[0], 0.1), config_of(catalog[0], 0.2)});
  graph.expand(2, {config_of(catalog[2], 0.01)});
  graph.expand(3, {config_of(catalog[3], 0.01)});
  graph.expand(5, {config_of(catalog[5], 0.1)});
  // D continues C's run, so it waits for it; F may be E's run (lr unknown yet), which comes first.
  CHECK(started(graph, order) == std::vector<std::string>{"A0", "A1", "C0"});
  graph.finish({2, 0});
  CHECK(started(graph, order) == std::vector<std::string>{"D0"});
  graph.finish({0, 0});
  graph.finish({0, 1});
  graph.finish({3, 0});
  CHECK(graph.derivable() == std::vector<size_t>{0, 2, 3});
  for (size_t e : {0, 2, 3}) graph.derived(e);
  CHECK(graph.expandable() == std::vector<size_t>{1, 4});
  graph.expand(1, {config_of(catalog[1], 0.2, 0), config_of(catalog[1], 0.2, 0.5)});
  CHECK(started(graph, order) == std::vector<std::string>{"B0", "B1"});  // F waits until E is known
  SECTION("E turns out to be F's run: F waits for it") {
    graph.expand(4, {config_of(catalog[4], 0.1)});
    CHECK(started(graph, order) == std::vector<std::string>{"E0"});
    graph.finish({4, 0});
    CHECK(started(graph, order) == std::vector<std::string>{"F0"});
  }
  SECTION("E turns out to be another run: F starts at once") {
    graph.expand(4, {config_of(catalog[4], 0.2)});
    CHECK(started(graph, order) == std::vector<std::string>{"E0", "F0"});
  }
  CHECK_FALSE(graph.done());
}

TEST_CASE("a sketched run may share a trajectory only where its known fields agree", "[suite]") {
  const Profile p = testing::tiny_profile();
  const std::vector<Experiment> catalog = small_catalog();
  const RunTemplate e = sketch_runs(catalog[4]).at(0);
  CHECK(may_share_trajectory(e, config_of(catalog[5], 0.1), p));
  CHECK_FALSE(may_share_trajectory(e, config_of(catalog[2], 0.01), p));  // Adam, not SGD
  RunTemplate model_unknown = {.model = "rescnn(residual,@E20.q,@E20.h)"};
  RunConfig rescnn = config_of(catalog[2], 0.001);
  rescnn.model = "rescnn";  // rescnn(residual,0.25,256): E20 may choose q = 0.25, h = 256
  rescnn.train = p.conv.train;
  rescnn.val = p.conv.val;
  rescnn.test = p.conv.test;
  CHECK(may_share_trajectory(model_unknown, rescnn, p));
  rescnn.model = "rescnn(1,0.5,128)";  // residual, in another spelling
  CHECK(may_share_trajectory(model_unknown, rescnn, p));
  rescnn.model = "rescnn(plain)";  // the literal argument differs
  CHECK_FALSE(may_share_trajectory(model_unknown, rescnn, p));
  rescnn.model = "cnn3";
  CHECK_FALSE(may_share_trajectory(model_unknown, rescnn, p));
  // The stopping rule is not part of what the epochs compute.
  RunConfig longer = config_of(catalog[2], 0.01);
  longer.epochs = 50;
  longer.patience = 0;
  CHECK(trajectory(longer) == trajectory(config_of(catalog[2], 0.01)));
  CHECK(trajectory(config_of(catalog[0], 0.1)) != trajectory(config_of(catalog[0], 0.2)));
}

namespace {

/// P: three runs of 4, 3 and 2 s; Q, after P: 5 and 1 s; R: 6 s; S: R's epochs and more, 2 s.
std::vector<Experiment> timed_catalog() {
  return {
      {.id = "P", .run = {.model = "shallow", .optimizer = "sgd"}, .grid = {{"lr", {"0.1", "0.2", "0.3"}}}},
      {.id = "Q",
       .run = {.model = "shallow", .optimizer = "momentum", .lr = "@P.lr"},
       .grid = {{"momentum", {"0", "0.5"}}}},
      {.id = "R", .run = {.model = "shallow", .lr = "0.01"}},
      {.id = "S", .run = {.model = "shallow", .lr = "0.01", .epochs = 5}},
  };
}

/// results.json as a finished suite of timed_catalog() writes it, as far as the plan reads it.
nlohmann::json timed_results(const std::vector<Experiment>& catalog) {
  struct Row {
    size_t experiment;
    double lr, momentum, seconds;
    nlohmann::json grid;
  };
  const std::vector<Row> rows = {{0, 0.1, 0, 4, {{"lr", "0.1"}}},          {0, 0.2, 0, 3, {{"lr", "0.2"}}},
                                 {0, 0.3, 0, 2, {{"lr", "0.3"}}},          {1, 0.2, 0, 5, {{"momentum", "0"}}},
                                 {1, 0.2, 0.5, 1, {{"momentum", "0.5"}}},  {2, 0.01, 0, 6, nlohmann::json::object()},
                                 {3, 0.01, 0, 2, nlohmann::json::object()}};
  nlohmann::json experiments = nlohmann::json::array(), runs = nlohmann::json::object();
  for (const Experiment& e : catalog) experiments.push_back({{"id", e.id}, {"runs", nlohmann::json::array()}});
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const std::string key = "run" + std::to_string(i);
    experiments[r.experiment]["runs"].push_back(key);
    runs[key] = {{"experiment", catalog[r.experiment].id},
                 {"config", config_of(catalog[r.experiment], r.lr, r.momentum).to_json()},
                 {"grid", r.grid},
                 {"train_seconds", r.seconds},
                 {"history", nlohmann::json::array({1, 2})},
                 {"provenance", nlohmann::json::object()}};
  }
  return {{"experiments", experiments}, {"runs", runs}};
}

}  // namespace

TEST_CASE("the plan: makespans of 1, 2 and 3 machines on recorded run times, worked by hand", "[suite]") {
  const std::vector<Experiment> catalog = timed_catalog();
  const auto never = [](size_t) -> double {
    FAIL("every run has a recorded time");
    return 0;
  };
  const SuitePlan timed =
      build_plan(plan(catalog, {}), testing::tiny_profile(), timed_results(catalog), "results.json", never);
  REQUIRE(timed.runs.size() == 7);
  CHECK(timed.runs[3].after == std::vector<size_t>{0, 1, 2});  // Q waits for all of P
  CHECK(timed.runs[6].follows == std::optional<size_t>(5));    // S carries on after R's epochs
  CHECK_FALSE(timed.runs[5].follows);
  for (const PlannedRun& r : timed.runs) CHECK_FALSE(r.estimated);
  // Longest path to the end: P0 9, P1 8, R 8, P2 7, Q0 5, S 2, Q1 1.
  CHECK(critical_path(timed) == std::vector<size_t>{0, 3});
  // 1: the sum. 2: P0 0-4, P1 0-3, R 3-9, P2 4-6, Q0 6-11, S 9-11, Q1 11-12.
  // 3: P0 0-4, P1 0-3, R 0-6, P2 3-5, Q0 5-10, Q1 5-6, S 6-8.
  CHECK(simulate_makespan(timed, 1) == 23);
  CHECK(simulate_makespan(timed, 2) == 12);
  CHECK(simulate_makespan(timed, 3) == 10);
  CHECK(simulate_makespan(timed, 7) == 9);  // the critical path
  const std::string text = format_plan(timed, {1, 2, 3});
  CHECK_THAT(text, Catch::Contains("Critical path (2 runs, 9 s): P lr=0.1 (4 s) -> Q momentum=0 (5 s)"));
  CHECK_THAT(text, Catch::Contains("same epochs: S after R"));
  CHECK_THAT(text, Catch::Contains("       2        12 s     1.92         96%"));
}

TEST_CASE("the plan estimates the runs no suite recorded, and says so", "[suite]") {
  const std::vector<Experiment> catalog = timed_catalog();
  nlohmann::json results = timed_results(catalog);
  results["experiments"].erase(3);  // S not run yet
  size_t asked = 0;
  const SuitePlan partial =
      build_plan(plan(catalog, {}), testing::tiny_profile(), results, "results.json", [&](size_t) {
        ++asked;
        return 1e9;
      });
  CHECK(asked == 0);  // priced at the recorded runs' rate
  REQUIRE(partial.runs.size() == 7);
  CHECK(partial.runs[6].estimated);
  CHECK_FALSE(partial.runs[5].estimated);
  // The recorded MLP rate: 7 runs of 200 images x 2 epochs in 23 s; S trains 3 epochs (the cap).
  const double rate = 7 * 200 * 2 * training_flops_per_image("shallow") / 23;
  CHECK(partial.runs[6].seconds == Approx(200 * 3 * training_flops_per_image("shallow") / rate));
  CHECK_THAT(format_plan(partial, {1}), Catch::Contains("6 recorded, 1 estimated") && Catch::Contains("MLP runs at") &&
                                            Catch::Contains("their recorded runs' rate"));
  const SuitePlan fresh = build_plan(plan(catalog, {}), testing::tiny_profile(), nullptr, "", [&](size_t) {
    ++asked;
    return 1e9;
  });
  CHECK(asked == 1);  // measured once, for the MLP family
  for (const PlannedRun& r : fresh.runs) CHECK(r.estimated);
  CHECK(fresh.runs[6].follows == std::optional<size_t>(5));
}

TEST_CASE("the plan paced now prices recorded runs too, by the epochs each trained itself", "[suite]") {
  const std::vector<Experiment> catalog = timed_catalog();
  nlohmann::json results = timed_results(catalog);
  results["runs"]["run6"]["provenance"]["continued"] = {{"epochs", 1}};  // S carried on after R's first epoch
  const auto never = [](size_t) -> double {
    FAIL("every run has a recorded time");
    return 0;
  };
  SuitePlan paced = build_plan(plan(catalog, {}), testing::tiny_profile(), results, "results.json", never);
  std::vector<std::string> asked;
  price_at(paced, [&](const std::string& model) {
    asked.push_back(model);
    return 2e9;
  });
  CHECK(asked == std::vector<std::string>{"shallow"});  // once per model
  const double epoch = 200 * training_flops_per_image("shallow");
  REQUIRE(paced.runs.size() == 7);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(paced.runs[i].estimated);
    CHECK(paced.runs[i].seconds == Approx(2 * epoch / 2e9));  // two epochs each, not the recorded seconds
  }
  CHECK(paced.runs[6].seconds == Approx(epoch / 2e9));  // its one epoch of its own
  CHECK(paced.rates == std::vector<std::string>{"shallow at 2.0 GFLOP/s (measured now)"});
}

TEST_CASE("the plan has every seed's run of a seeded experiment, as the suite trains them", "[suite]") {
  const std::vector<Experiment> catalog = timed_catalog();
  Profile seeded = testing::tiny_profile();
  seeded.seeds = {42, 1};
  seeded.seeded = {"P", "R"};
  const auto rate = [](size_t) { return 1e9; };
  // The times of a one-seed suite: the seed-1 runs are estimated, each beside its seed-42 twin.
  const SuitePlan plan_of = build_plan(plan(catalog, {}), seeded, timed_results(catalog), "results.json", rate);
  std::vector<std::string> names;
  for (const PlannedRun& r : plan_of.runs) names.push_back(r.name + (r.estimated ? " *" : ""));
  CHECK(names == std::vector<std::string>{"P lr=0.1", "P lr=0.1 seed=1 *", "P lr=0.2", "P lr=0.2 seed=1 *", "P lr=0.3",
                                          "P lr=0.3 seed=1 *", "Q momentum=0", "Q momentum=0.5", "R", "R seed=1 *",
                                          "S"});
  // Q waits for every seed's run of P; S carries on after R's seed-42 epochs, not seed 1's.
  CHECK(plan_of.runs[6].after == std::vector<size_t>{0, 1, 2, 3, 4, 5});
  CHECK(plan_of.runs[10].follows == std::optional<size_t>(8));
  CHECK_FALSE(plan_of.runs[9].follows);
  // Nothing recorded: the same runs, every one estimated.
  const SuitePlan fresh = build_plan(plan(catalog, {}), seeded, nullptr, "", rate);
  REQUIRE(fresh.runs.size() == 11);
  for (size_t i = 0; i < fresh.runs.size(); ++i) CHECK(fresh.runs[i].name == plan_of.runs[i].name);
  CHECK(fresh.runs[10].follows == std::optional<size_t>(8));
}

TEST_CASE("the plan's errors about a results.json name the file", "[suite]") {
  const std::vector<Experiment> catalog = timed_catalog();
  const auto never = [](size_t) -> double {
    FAIL("nothing is estimated before the error");
    return 0;
  };
  nlohmann::json results = timed_results(catalog);
  results["runs"]["run4"].erase("train_seconds");
  CHECK_THROWS_WITH(build_plan(plan(catalog, {}), testing::tiny_profile(), results, "/x/results.json", never),
                    Catch::StartsWith("'/x/results.json' lacks a field or has a wrong one"));
  results = timed_results(catalog);
  results["runs"]["run0"]["config"]["model"] = "no_such_model";
  CHECK_THROWS_WITH(build_plan(plan(catalog, {}), testing::tiny_profile(), results, "/x/results.json", never),
                    Catch::StartsWith("'/x/results.json': ") && Catch::Contains("no_such_model"));
}
