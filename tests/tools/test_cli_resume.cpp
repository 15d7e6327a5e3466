// Rerunning `dagger train` into the same --out resumes only the run that was started there:
// another seed, batch, optimizer setting, data or model is refused, naming what differs.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "dagger/codegen/jit.h"
#include "dagger/runtime/data.h"
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
  // Another precision: refused both ways where the CPU can take bf16 (elsewhere bf16 itself is).
  const auto bf16 = run_dagger("train \"mlp1(16,relu,0.2)\" --precision bf16" + data);
  CHECK(bf16.status == 1);
  if (bf16_refusal(jit_target()).empty()) {
    CHECK_THAT(bf16.output, Catch::Contains("precision = \"f32\", this run asks for \"bf16\""));
    const std::string other = " --data " + dir.path.string() + " --quiet --epochs 1 --out " + dir.file("bf16");
    REQUIRE(run_dagger("train \"mlp1(16,relu,0.2)\" --precision bf16" + other).status == 0);
    const auto f32 = run_dagger("train \"mlp1(16,relu,0.2)\"" + other);
    CHECK(f32.status == 1);
    CHECK_THAT(f32.output, Catch::Contains("precision = \"bf16\", this run asks for \"f32\""));
  } else {
    CHECK_THAT(bf16.output, Catch::Contains("needs a CPU with AVX512_BF16"));
  }
  // The same command resumes (and, its epochs done, trains nothing more).
  const auto same = run_dagger("train \"mlp1(16,relu,0.2)\"" + data + " --json");
  CHECK(same.status == 0);
  CHECK(dagger::testing::last_json_line(same.output)["resumed"] == true);
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace

TEST_CASE("a rerun asking for fewer epochs or another executor is refused and --restart keeps the earlier run aside",
          "[cli][resume]") {
  dagger::testing::TempDir dir("restart");
  testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(160, 1, 8, 4, 1));
  testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 8, 4, 2));
  const std::string run = dir.file("run");
  const std::string train = "train \"mlp1(16,relu,0.2)\" --data " + dir.path.string() + " --quiet --out " + run;
  REQUIRE(run_dagger(train + " --epochs 2").status == 0);
  const std::string metrics = read_file(run + "/metrics.json"), history = read_file(run + "/history.csv");
  const std::vector<std::pair<std::string, std::string>> refused = {
      {" --epochs 1", "it has trained 2 epochs, this run asks for epochs = 1"},
      {" --epochs 2 --executor reference", "executor = \"jit\", this run asks for \"reference\""},
      {" --epochs 2 --seed 7", "seed = 42, this run asks for 7"},
  };
  for (const auto& [args, message] : refused) {
    INFO(args);
    const auto out = run_dagger(train + args);
    CHECK(out.status == 1);
    CHECK_THAT(out.output, Catch::Contains(message) && Catch::Contains("--restart trains from the start"));
    CHECK(read_file(run + "/metrics.json") == metrics);  // nothing written
  }
  // --restart trains the new configuration from the start; the earlier run moves aside whole.
  const auto restarted = run_dagger(train + " --epochs 2 --seed 7 --restart --json");
  INFO(restarted.output);
  REQUIRE(restarted.status == 0);
  const nlohmann::json j = dagger::testing::last_json_line(restarted.output);
  CHECK(j["resumed"] == false);
  CHECK(j["seed"] == 7);
  CHECK(read_file(run + "/previous-1/metrics.json") == metrics);
  CHECK(read_file(run + "/previous-1/history.csv") == history);
  CHECK(std::filesystem::is_regular_file(run + "/previous-1/last/manifest.json"));
  CHECK(read_file(run + "/metrics.json") != metrics);
  // Again: the run just trained goes to previous-2, the first stays in previous-1.
  REQUIRE(run_dagger(train + " --epochs 2 --restart").status == 0);
  CHECK(read_file(run + "/previous-1/metrics.json") == metrics);
  CHECK(std::filesystem::is_regular_file(run + "/previous-2/metrics.json"));
  CHECK(run_dagger("train mlp512 --restart").status == 2);  // --restart needs --out
}

TEST_CASE("a rerun with another patience resumes only when that patience would not have stopped sooner",
          "[cli][resume]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("patience");
  // So few images overfit within a few epochs: the validation loss turns up after epoch 5.
  const std::string train =
      "train mlp512 --train-limit 200 --val-limit 200 --test-limit 100 --epochs 8 --json "
      "--quiet --out ";
  // Patience 1 ends this run early; a rerun with patience 8 carries it on to the end, bit for
  // bit as a run with patience 8 from the start.
  const auto stopped = run_dagger(train + dir.file("run") + " --patience 1");
  REQUIRE(stopped.status == 0);
  const nlohmann::json early = dagger::testing::last_json_line(stopped.output);
  REQUIRE(early["stopped_early"] == true);
  const auto carried = run_dagger(train + dir.file("run") + " --patience 8");
  const auto whole = run_dagger(train + dir.file("whole") + " --patience 8");
  REQUIRE(carried.status == 0);
  REQUIRE(whole.status == 0);
  const nlohmann::json c = dagger::testing::last_json_line(carried.output),
                       w = dagger::testing::last_json_line(whole.output);
  CHECK(c["resumed"] == true);
  CHECK(c["epochs_run"] == 8);
  CHECK(c["epochs_run"] > early["epochs_run"]);
  CHECK(c["test"] == w["test"]);
  for (const char* folder : {"checkpoint", "best", "last"})
    for (const auto& entry : std::filesystem::directory_iterator(dir.file("whole/") + folder))
      if (entry.path().extension() == ".npy") {
        INFO(entry.path());
        CHECK(read_file(dir.file("run/") + folder + "/" + entry.path().filename().string()) ==
              read_file(entry.path().string()));
      }
  // Patience 1 would have ended the 8-epoch run sooner: refused, naming it.
  const auto sooner = run_dagger(train + dir.file("whole") + " --patience 1");
  CHECK(sooner.status == 1);
  CHECK_THAT(sooner.output, Catch::Contains("with patience 1 it would have stopped after epoch"));
}
