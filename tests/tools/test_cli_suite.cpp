// A suite folder's runs are reused by a rerun only when they were computed alike: the run
// configuration names each run's folder, and OUT/suite.json records the rest (executor, data,
// convolution algorithm).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dagger/runtime/data.h"
#include "suite/suite_support.h"
#include "support.h"
#include "tools/cli_support.h"

using dagger::testing::run_dagger;

TEST_CASE("a suite rerun with another executor, other data or another --conv-algo is refused, naming the difference",
          "[cli][suite]") {
  namespace fs = std::filesystem;
  const fs::path fashion = dagger::default_data_dir();
  dagger::testing::require_fashion_mnist(fashion);
  dagger::testing::TempDir dir("suite-identity");
  // The same files under another folder are the same data; one file changed is other data.
  fs::create_directories(dir.path / "same");
  fs::create_directories(dir.path / "other");
  for (const auto& entry : fs::directory_iterator(fashion)) {
    fs::create_symlink(entry.path(), dir.path / "same" / entry.path().filename());
    if (entry.path().filename() != "t10k-labels-idx1-ubyte.gz")
      fs::create_symlink(entry.path(), dir.path / "other" / entry.path().filename());
  }
  std::ofstream(dir.path / "other" / "t10k-labels-idx1-ubyte.gz") << "other labels";
  const std::string suite = "suite --only E01 --no-plots --quiet --out " + dir.file("out");
  REQUIRE(run_dagger(suite).status == 0);
  CHECK(run_dagger(suite + " --data " + dir.file("same")).status == 0);
  const auto executor = run_dagger(suite + " --executor reference");
  CHECK(executor.status == 1);
  CHECK_THAT(executor.output, Catch::Contains(dir.file("out") + " holds runs trained with executor = \"jit\", this "
                                                                "run asks for \"reference\"; give another --out"));
  const auto data = run_dagger(suite + " --data " + dir.file("other"));
  CHECK(data.status == 1);
  CHECK_THAT(data.output, Catch::Contains("holds runs trained with data = \"4 files, "));
  // The convolution algorithm is not in a run's folder name either: its finished runs would be
  // reported as another algorithm's.
  const auto algo = run_dagger(suite + " --conv-algo direct");
  CHECK(algo.status == 1);
  CHECK_THAT(algo.output,
             Catch::Contains("holds runs trained with conv_algo = \"auto\", this run asks for \"direct\""));
  // Nor is the precision: refused where the CPU can take bf16 (elsewhere bf16 itself is).
  const auto bf16 = run_dagger(suite + " --precision bf16");
  CHECK(bf16.status == 1);
  CHECK_THAT(bf16.output, Catch::Contains("holds runs trained with precision = \"f32\", this run asks for \"bf16\"") ||
                              Catch::Contains("--precision bf16 needs a CPU with AVX512_BF16"));
  // A record from before conv_algo was kept is trusted, and completed by the next rerun.
  const std::string identity = dir.file("out/suite.json");
  nlohmann::json record = nlohmann::json::parse(std::ifstream(identity));
  CHECK(record.at("conv_algo") == "auto");
  record.erase("conv_algo");
  std::ofstream(identity) << record.dump(2);
  CHECK(run_dagger(suite).status == 0);
  const nlohmann::json completed = nlohmann::json::parse(std::ifstream(identity));
  CHECK(completed.at("conv_algo") == "auto");
  CHECK(completed.at("precision") == "f32");
}

// Experiments with references (E04 on E03's lr), members (E05) and a run that carries on after
// another's epochs (E06 after E05's): the quick profile on Fashion-MNIST.
TEST_CASE("dagger suite --jobs 2 gives one job's results.json, and --plan reads its times", "[cli][suite][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("suite-jobs");
  const std::string suite = "suite --only E05,E06 --no-plots --quiet --threads 1 --out ";
  const auto one = run_dagger(suite + dir.file("one"));
  REQUIRE(one.status == 0);
  const auto two = run_dagger(suite + dir.file("two") + " --jobs 2");
  INFO(two.output);
  REQUIRE(two.status == 0);
  CHECK(dagger::testing::results_without_clock(dir.file("two/results.json")) ==
        dagger::testing::results_without_clock(dir.file("one/results.json")));

  const auto plan = run_dagger("suite --plan --only E05,E06 --machines 1,2,13 --from " + dir.file("two"));
  INFO(plan.output);
  REQUIRE(plan.status == 0);
  CHECK_THAT(plan.output, Catch::Contains("Run graph: 13 runs") && Catch::Contains("(13 recorded, 0 estimated *)"));
  CHECK_THAT(plan.output, Catch::Contains("E04    4 runs") && Catch::Contains("after E03"));
  CHECK_THAT(plan.output, Catch::Contains("same epochs: E06 after E05 lr=0.001"));
  // An E03 run then an E04 run, or E05's lr=0.001 run then E06's, whichever took longer.
  CHECK_THAT(plan.output, Catch::Contains("Critical path (2 runs") && Catch::Contains(" -> "));
  const auto bad = run_dagger("suite --plan --machines 2,x");
  CHECK(bad.status == 2);
  CHECK_THAT(bad.output, Catch::Contains("--machines: 'x' is not a machine count"));
}

TEST_CASE("dagger suite --plan plans every seed's runs, and names a results.json it cannot read", "[cli][suite]") {
  const std::string plan = "suite --plan --profile quick --only E10 --machines 1 --threads 1";
  const auto one_seed = run_dagger(plan);
  INFO(one_seed.output);
  REQUIRE(one_seed.status == 0);
  CHECK_THAT(one_seed.output, Catch::Contains("E10    1 run "));
  const auto seeds = run_dagger(plan + " --seeds 42,1");
  INFO(seeds.output);
  REQUIRE(seeds.status == 0);
  CHECK_THAT(seeds.output, Catch::Contains("E10    2 runs"));  // E10 is seeded; E05 and E06 are not
  CHECK_THAT(seeds.output, Catch::Contains("E06    1 run "));
  const auto paced = run_dagger(plan + " --pace-now");
  INFO(paced.output);
  REQUIRE(paced.status == 0);
  CHECK_THAT(paced.output, Catch::Contains("priced at its model's rate measured now") &&
                               Catch::Contains("mlp512 at ") && Catch::Contains("E10    1 run "));
  const auto unplanned = run_dagger("suite --pace-now --only E10");
  CHECK(unplanned.status == 2);
  CHECK_THAT(unplanned.output, Catch::Contains("--pace-now needs --plan"));

  dagger::testing::TempDir dir("suite-plan-from");
  std::ofstream(dir.file("results.json")) << R"({"profile": "quick", "experiments": [{"id": "E05"}]})";
  const auto bad = run_dagger("suite --plan --profile quick --only E05 --from " + dir.path.string());
  CHECK(bad.status == 1);
  CHECK_THAT(bad.output, Catch::Contains("'" + dir.file("results.json") + "' lacks a field or has a wrong one"));
}
