// The `dagger` binary end to end: exit codes and the dumps users read.
#include <catch2/catch.hpp>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "support.h"

namespace {

struct Outcome {
  int status;
  std::string output;
};

/// Runs the built `dagger` with `args`, capturing stdout and stderr together.
Outcome run_dagger(const std::string& args) {
  std::string command = std::string(DAGGER_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("usage errors exit with 2 and list the valid choices", "[cli]") {
  // (arguments, every text the message must hold)
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"train mlp9000", {"unknown model 'mlp9000'", "rescnn"}},
      {"ir mlp512 --stage nope", {"graph, eval, grad"}},
      {"frobnicate", {"unknown command 'frobnicate'", "gradcheck"}},
      {"train mlp512 --no-such-flag", {"--no-such-flag"}},
      {"suite --only E07,E99", {"unknown experiment 'E99'", "E01, E02", "E23"}},
      {"suite --profile medium", {"unknown profile 'medium'", "quick, full"}},
  };
  for (const auto& [args, texts] : cases) {
    Outcome out = run_dagger(args);
    INFO(args << "\n" << out.output);
    CHECK(out.status == 2);
    for (const std::string& text : texts) CHECK_THAT(out.output, Catch::Contains(text));
  }
}

TEST_CASE("dagger suite --list names every experiment with its runs", "[cli]") {
  Outcome out = run_dagger("suite --list");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("E12    12  Hypertuning an MLP") && Catch::Contains("E23") &&
                             Catch::Contains("E19,E20"));
}

TEST_CASE("dagger models lists the zoo with parameter counts", "[cli]") {
  Outcome out = run_dagger("models");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("mlp512") && Catch::Contains("407050") && Catch::Contains("390858"));
}

TEST_CASE("dagger ir prints the training step and the JIT's kernels", "[cli]") {
  Outcome grad = run_dagger("ir rescnn --stage grad --batch 2");
  CHECK(grad.status == 0);
  CHECK_THAT(grad.output, Catch::Contains("conv2d_backward_data") && Catch::Contains("grad.accumulate") &&
                              Catch::Contains("assign("));
  Outcome dot = run_dagger("ir shallow --format dot");
  CHECK_THAT(dot.output, Catch::StartsWith("digraph"));
  Outcome opt = run_dagger("ir shallow --stage opt --batch 7");
  Outcome fused = run_dagger("ir mlp512 --stage fused --batch 7");
  CHECK_THAT(fused.output, Catch::Contains("[%4 matmul, %5 add]") && Catch::Contains("ends because"));
  CHECK(opt.status == 0);
  CHECK_THAT(opt.output, Catch::Contains("==== kernel") && Catch::Contains("x float>"));
}

TEST_CASE("dagger gradcheck passes on an op and reports each tensor", "[cli]") {
  Outcome out = run_dagger("gradcheck --op conv2d");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("all gradients within tolerance"));
}

TEST_CASE("dagger train --dump-dir writes every stage with stable names", "[cli]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") &&
      !std::getenv("DAGGER_DATA")) {
    WARN("Fashion-MNIST is not installed; skipping");
    return;
  }
  dagger::testing::TempDir dir("dump");
  Outcome out = run_dagger("train shallow --epochs 1 --train-limit 100 --val-limit 50 --test-limit 50 --quiet --dump-dir " +
                       dir.path.string());
  INFO(out.output);
  REQUIRE(out.status == 0);
  for (const char* name : {"graph.txt", "graph.dot", "grad.txt", "grad.dot", "fused.txt"})
    CHECK(std::filesystem::file_size(dir.path / name) > 0);
  int ll = 0, opt = 0, s = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path / "kernels")) {
    std::string name = entry.path().filename().string();
    opt += name.ends_with(".opt.ll");
    ll += name.ends_with(".ll") && !name.ends_with(".opt.ll");
    s += name.ends_with(".s");
  }
  CHECK(ll > 0);
  CHECK(ll == opt);
  CHECK(ll == s);
}
