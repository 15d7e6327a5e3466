// `dagger train`'s training-recipe flags end to end: usage errors, the scheduled lr column,
// and augmentation that gives the same bits at any thread count.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "dagger/runtime/data.h"
#include "support.h"
#include "tools/cli_support.h"

namespace fs = std::filesystem;
using dagger::testing::Outcome;
using dagger::testing::run_dagger;

namespace {

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// Every .npy of two checkpoint folders holds the same bytes (and there are some).
void check_same_checkpoint(const fs::path& a, const fs::path& b) {
  int files = 0;
  for (const auto& entry : fs::directory_iterator(a)) {
    if (entry.path().extension() != ".npy") continue;
    ++files;
    INFO(entry.path().filename());
    CHECK(slurp(entry.path()) == slurp(b / entry.path().filename()));
  }
  CHECK(files > 0);
}

/// The lr column of a history.csv.
std::vector<double> lr_column(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  REQUIRE(line.substr(line.rfind(',') + 1) == "lr");
  std::vector<double> out;
  while (std::getline(in, line)) out.push_back(std::stod(line.substr(line.rfind(',') + 1)));
  return out;
}

const char* kSlice = " --train-limit 200 --val-limit 100 --test-limit 100 --quiet";

}  // namespace

TEST_CASE("dagger train rejects bad recipe flags as usage errors naming the flag", "[cli][recipe]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--schedule linear", "--schedule: unknown schedule 'linear'"},
      {"--schedule cosine --warmup 3 --epochs 3", "--warmup must be in [0, epochs)"},
      {"--schedule step --step-size 0", "--step-size"},
      {"--schedule plateau --factor 1.5", "--factor"},
      {"--lr -0.1", "--lr: '-0.1' is not a number greater than 0"},
      {"--weight-decay -1", "--weight-decay"},
      {"--min-lr -1", "--min-lr"},
      {"--label-smoothing 1", "--label-smoothing: '1' is not a number in [0, 1)"},
      {"--label-smoothing -0.1", "--label-smoothing"},
      {"--augment crop=4,blur", "--augment: cannot read 'blur'"},
      {"--augment crop=", "--augment: 'crop=' needs a number"},
      {"--optimizer adamx", "adamw"},
  };
  const dagger::testing::TempDir empty("recipe-no-data");  // a run that passes its flags fails on the data
  for (const auto& [args, text] : cases) {
    const Outcome out = run_dagger("train mlp512 --data " + empty.path.string() + " " + args);
    INFO(args << "\n" << out.output);
    CHECK(out.status == 2);
    CHECK_THAT(out.output, Catch::Contains(text));
  }
}

TEST_CASE("dagger train with the whole recipe: the lr column follows cosine warmup", "[cli][recipe]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("recipe");
  const Outcome out = run_dagger(
      "train cnn3 --augment crop=4,flip --schedule cosine --warmup 2 --optimizer adamw "
      "--label-smoothing 0.1 --epochs 4 --out " +
      dir.file("run") + kSlice);
  INFO(out.output);
  REQUIRE(out.status == 0);
  const std::vector<double> lr = lr_column(dir.path / "run" / "history.csv");
  REQUIRE(lr.size() == 4);
  for (int e = 1; e <= 4; ++e) {
    // warmup: 1e-3 e / 2; then 1e-3 (1 + cos(pi (e - 3) / 2)) / 2
    const double want = e <= 2 ? 1e-3 * e / 2 : 1e-3 * (1 + std::cos(std::numbers::pi * (e - 3) / 2.0)) / 2;
    INFO("epoch " << e);
    CHECK(lr[static_cast<size_t>(e - 1)] == Approx(want).margin(1e-12));
  }
  const nlohmann::json metrics = nlohmann::json::parse(slurp(dir.path / "run" / "metrics.json"));
  CHECK(metrics["training"]["augment"] == "crop=4,flip");
  CHECK(metrics["training"]["label_smoothing"] == 0.1);
  CHECK(metrics["training"]["schedule"]["kind"] == "cosine");
  const nlohmann::json manifest = nlohmann::json::parse(slurp(dir.path / "run" / "checkpoint" / "manifest.json"));
  CHECK(manifest.dump().find("\"warmup\":2") != std::string::npos);
  CHECK(manifest.dump().find("\"adamw\"") != std::string::npos);

  // The checkpoint of an AdamW run evaluates; a rerun with another recipe refuses to resume.
  CHECK(run_dagger("eval --test-limit 100 --checkpoint " + dir.file("run/checkpoint")).status == 0);
  const Outcome other = run_dagger("train cnn3 --schedule cosine --warmup 2 --optimizer adamw --epochs 5 --out " +
                                   dir.file("run") + kSlice);
  CHECK(other.status == 1);
  CHECK_THAT(other.output, Catch::Contains("cannot resume") && Catch::Contains("augment"));
}

TEST_CASE("augmented training gives the same bits at 1 and 2 threads; no augmentation is today's", "[cli][recipe]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("augment");
  const std::string common = std::string(" --epochs 1 --batch 48") + kSlice;
  for (int threads : {1, 2}) {
    const Outcome out = run_dagger("train cnn3 --augment crop=4,flip,erase=0.5 --threads " + std::to_string(threads) +
                                   " --out " + dir.file("t" + std::to_string(threads)) + common);
    INFO(out.output);
    REQUIRE(out.status == 0);
  }
  check_same_checkpoint(dir.path / "t1" / "checkpoint", dir.path / "t2" / "checkpoint");

  for (const char* flag : {"", " --augment none"}) {
    const Outcome out =
        run_dagger(std::string("train shallow") + flag + " --out " + dir.file(flag[0] ? "none" : "plain") + common);
    INFO(out.output);
    REQUIRE(out.status == 0);
  }
  check_same_checkpoint(dir.path / "plain" / "checkpoint", dir.path / "none" / "checkpoint");
  // ... and augmentation does change what is learned.
  const Outcome flipped = run_dagger("train shallow --augment flip --out " + dir.file("flip") + common);
  REQUIRE(flipped.status == 0);
  CHECK(slurp(dir.path / "plain" / "checkpoint" / "dense1.w.npy") !=
        slurp(dir.path / "flip" / "checkpoint" / "dense1.w.npy"));
}
