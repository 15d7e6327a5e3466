// The `dagger` binary end to end: exit codes and the dumps users read.
#include <catch2/catch.hpp>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct Outcome {
  int status;
  std::string output;
};

/// Runs the built `dagger` with `args`, capturing stdout and stderr together.
Outcome dagger(const std::string& args) {
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
  Outcome model = dagger("train mlp9000");
  CHECK(model.status == 2);
  CHECK_THAT(model.output, Catch::Contains("unknown model 'mlp9000'") && Catch::Contains("rescnn"));
  Outcome stage = dagger("ir mlp512 --stage nope");
  CHECK(stage.status == 2);
  CHECK_THAT(stage.output, Catch::Contains("graph, eval, grad"));
  Outcome command = dagger("frobnicate");
  CHECK(command.status == 2);
  CHECK_THAT(command.output, Catch::Contains("unknown command 'frobnicate'") && Catch::Contains("gradcheck"));
  Outcome flag = dagger("train mlp512 --no-such-flag");
  CHECK(flag.status == 2);
  CHECK_THAT(flag.output, Catch::Contains("--no-such-flag"));
}

TEST_CASE("dagger models lists the zoo with parameter counts", "[cli]") {
  Outcome out = dagger("models");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("mlp512") && Catch::Contains("407050") && Catch::Contains("390858"));
}

TEST_CASE("dagger ir prints the training step and the JIT's kernels", "[cli]") {
  Outcome grad = dagger("ir rescnn --stage grad --batch 2");
  CHECK(grad.status == 0);
  CHECK_THAT(grad.output, Catch::Contains("conv2d_backward_data") && Catch::Contains("grad.accumulate") &&
                              Catch::Contains("assign("));
  Outcome dot = dagger("ir shallow --format dot");
  CHECK_THAT(dot.output, Catch::StartsWith("digraph"));
  Outcome opt = dagger("ir shallow --stage opt --batch 7");
  Outcome fused = dagger("ir mlp512 --stage fused --batch 7");
  CHECK_THAT(fused.output, Catch::Contains("[%4 matmul, %5 add]") && Catch::Contains("ends because"));
  CHECK(opt.status == 0);
  CHECK_THAT(opt.output, Catch::Contains("==== kernel") && Catch::Contains("x float>"));
}

TEST_CASE("dagger gradcheck passes on an op and reports each tensor", "[cli]") {
  Outcome out = dagger("gradcheck --op conv2d");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("all gradients within tolerance"));
}
