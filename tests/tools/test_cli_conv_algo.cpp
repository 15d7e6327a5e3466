// --conv-algo end to end: a usage error on every command that takes it, the choice `dagger ir
// --why` prints, and a training run that records it and refuses to resume under another.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dagger/runtime/trainer.h"
#include "support.h"
#include "tools/cli_support.h"

using dagger::testing::Outcome;
using dagger::testing::run_dagger;

TEST_CASE("train, bench, ir and suite take --conv-algo direct, winograd, winograd4 or auto", "[cli][winograd]") {
  for (const std::string command : {"train mlp512", "bench mlp512", "ir mlp512", "suite --only E01"}) {
    const Outcome out = run_dagger(command + " --conv-algo fast");
    INFO(command << "\n" << out.output);
    CHECK(out.status == 2);
    CHECK_THAT(out.output,
               Catch::Contains(
                   "--conv-algo: unknown convolution algorithm 'fast' (valid: direct, winograd, winograd4, auto)"));
  }
}

TEST_CASE("dagger ir --stage fused --why names each convolution's algorithm and why", "[cli][winograd]") {
  const Outcome automatic = run_dagger("ir cnn3 --stage fused --why");  // auto is the commands' default
  REQUIRE(automatic.status == 0);
  // conv1 reads one channel; conv2 and conv3, and their data gradients, reduce over 32 or more:
  // F(4x4,3x3) at batch 64 (7x7 maps: 3136 output positions per channel), F(2x2,3x3) on the 7x7
  // maps at batch 32.
  CHECK_THAT(automatic.output, Catch::Contains("direct (auto): a reduction over 1 channel (< 16)"));
  CHECK_THAT(automatic.output,
             Catch::Contains("winograd F(4x4,3x3) (auto): 3x3 stride 1 pad 1 over 32 channels (>= 16), 12544 output "
                             "positions per channel (>= 3136)"));
  CHECK_THAT(automatic.output,
             Catch::Contains("winograd F(4x4,3x3) (auto): 3x3 stride 1 pad 1 over 64 channels (>= 16), 3136 output "
                             "positions per channel (>= 3136)"));
  const Outcome small = run_dagger("ir cnn3 --stage fused --why --batch 32");
  REQUIRE(small.status == 0);
  CHECK_THAT(small.output,
             Catch::Contains("winograd F(2x2,3x3) (auto): 3x3 stride 1 pad 1 over 64 channels (>= 16), 2.25x fewer "
                             "multiplications; 1568 output positions per channel (< 3136)"));
  // auto takes F(3x3,4x4) for conv2's and conv3's filter gradients (64 and 128 filters over 32
  // and 64 channels), not conv1's (one channel); --conv-algo winograd takes F(3x3,2x2) for all three.
  CHECK_THAT(automatic.output, Catch::Contains("winograd F(3x3,4x4) (auto): 3x3 stride 1 pad 1, 64 filters over 32 "
                                               "channels on 14x14 maps"));
  CHECK_THAT(automatic.output, Catch::Contains("winograd F(3x3,4x4) (auto): 3x3 stride 1 pad 1, 128 filters over 64 "
                                               "channels on 7x7 maps"));
  CHECK_THAT(automatic.output, Catch::Contains("direct (auto): the Winograd filter gradient F(3x3,4x4) pays from 32 "
                                               "filters over 32 channels on 7x7 maps up; this is 32 filters over 1 "
                                               "channel on 28x28 maps"));
  CHECK_THAT(automatic.output, !Catch::Contains("winograd F(3x3,2x2)"));
  const Outcome winograd = run_dagger("ir cnn3 --stage fused --why --conv-algo winograd");
  REQUIRE(winograd.status == 0);
  CHECK_THAT(winograd.output, Catch::Contains("winograd F(3x3,2x2): --conv-algo winograd"));
  CHECK_THAT(winograd.output, !Catch::Contains("F(4x4,3x3)"));
  const Outcome winograd4 = run_dagger("ir cnn3 --stage fused --why --conv-algo winograd4");
  REQUIRE(winograd4.status == 0);
  CHECK_THAT(winograd4.output, Catch::Contains("winograd F(4x4,3x3): --conv-algo winograd4"));
  CHECK_THAT(winograd4.output, Catch::Contains("winograd F(3x3,4x4): --conv-algo winograd4"));
  CHECK_THAT(winograd4.output, !Catch::Contains("F(3x3,2x2)"));
  const Outcome direct = run_dagger("ir cnn3 --stage fused --why --conv-algo direct");
  REQUIRE(direct.status == 0);
  CHECK_THAT(direct.output, Catch::Contains("direct: --conv-algo direct"));
  CHECK_THAT(direct.output, !Catch::Contains("winograd F("));
}

TEST_CASE("a winograd training run records conv_algo and resumes only with it", "[cli][winograd][slow]") {
  const dagger::testing::TempDir out("conv-algo-run");
  const std::string common =
      "train cnn3 --train-limit 128 --val-limit 64 --test-limit 64 --batch 32 --quiet --out " + out.path.string();
  const Outcome first = run_dagger(common + " --epochs 1 --conv-algo winograd");
  REQUIRE(first.status == 0);
  std::ifstream metrics(out.path / "metrics.json");
  const nlohmann::json j = nlohmann::json::parse(metrics);
  CHECK(j.at("conv_algo") == "winograd");
  CHECK(j.at("training").at("conv_algo") == "winograd");
  // Loaded for eval or predict, the checkpoint computes its convolutions as it was trained.
  CHECK(dagger::Trainer::load((out.path / "checkpoint").string()).config().conv_algo == dagger::ConvAlgo::winograd);
  const Outcome other = run_dagger(common + " --epochs 2 --conv-algo direct");
  INFO(other.output);
  CHECK(other.status == 1);
  CHECK_THAT(other.output,
             Catch::Contains("it was trained with conv_algo = \"winograd\", this run asks for \"direct\""));
}

TEST_CASE("a model without convolutions records no conv_algo and resumes under any", "[cli][winograd][slow]") {
  const dagger::testing::TempDir out("conv-algo-mlp");
  const std::string common =
      "train \"mlp1(16,relu,0)\" --train-limit 128 --val-limit 64 --test-limit 64 --batch 32 --quiet --out " +
      out.path.string();
  REQUIRE(run_dagger(common + " --epochs 1 --conv-algo winograd").status == 0);
  std::ifstream metrics(out.path / "metrics.json");
  CHECK_FALSE(nlohmann::json::parse(metrics).at("training").contains("conv_algo"));
  const Outcome resumed = run_dagger(common + " --epochs 2 --conv-algo direct");
  INFO(resumed.output);
  CHECK(resumed.status == 0);
}
