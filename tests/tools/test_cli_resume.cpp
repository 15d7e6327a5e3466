// Rerunning `dagger train` into the same --out resumes only the run that was started there:
// another seed, batch, optimizer setting, data or model is refused, naming what differs.
#include <catch2/catch.hpp>

#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::run_dagger;

TEST_CASE("a rerun into the same --out with other settings or data is refused, naming the difference",
          "[cli][resume]") {
  dagger::testing::TempDir dir("resume-config");
  testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(160, 1, 8, 4, 1));
  testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 8, 4, 2));
  const std::string data = " --data " + dir.path.string() + " --quiet --epochs 2 --out " + dir.file("run");
  REQUIRE(run_dagger("train \"mlp1(16,relu,0.2)\"" + data).status == 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train \"mlp1(16,relu,0.2)\" --seed 7", "seed = 42, this run asks for 7"},
      {"train \"mlp1(16,relu,0.2)\" --batch 32", "batch = 64, this run asks for 32"},
      {"train \"mlp1(16,relu,0.2)\" --lr 0.01", "lr = 0.001, this run asks for 0.01"},
      {"train \"mlp1(16,relu,0.2)\" --optimizer sgd", "optimizer = \"adam\", this run asks for \"sgd\""},
      {"train \"mlp1(16,relu,0.2)\" --train-limit 100", "it was trained with data = \"train 128"},
      {"train \"mlp1(16,tanh,0.5)\"", "holds another model than this run's"},
  };
  for (const auto& [args, message] : cases) {
    INFO(args);
    const auto out = run_dagger(args + data);
    CHECK(out.status == 1);
    CHECK_THAT(out.output, Catch::Contains(message));
  }
  // The same command resumes (and, its epochs done, trains nothing more).
  const auto same = run_dagger("train \"mlp1(16,relu,0.2)\"" + data + " --json");
  CHECK(same.status == 0);
  CHECK(dagger::testing::last_json_line(same.output)["resumed"] == true);
}
