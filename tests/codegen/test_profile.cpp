// Profiling a JIT plan: every kernel is counted once per run.
#include <catch2/catch.hpp>
#include <chrono>

#include "dagger/autodiff/step.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/init.h"

using namespace dagger;

namespace {

Tensor filled(std::vector<size_t> shape, float value) {
  Tensor t = Tensor::from_shape(shape);
  t.fill(value);
  return t;
}

}  // namespace

TEST_CASE("a profiled plan counts each kernel once per run", "[codegen][profile]") {
  const Graph g = build_training_step(zoo::find("mlp512").build, 4, OptimizerConfig{});
  StateMap state;
  initialize_state(g, state, 1);
  const StateMap feeds = {{"x", filled({4, 1, 28, 28}, 0.5f)},
                          {"labels", filled({4}, 3)},
                          {"lr", filled({}, 1e-3f)},
                          {"dropout_key", filled({}, 7)}};
  auto exe = compile_jit(g);
  exe->run(feeds, state);
  for (const KernelProfile& k : exe->profile()) CHECK(k.calls == 0);  // off by default

  exe->set_profiling(true);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) exe->run(feeds, state);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::vector<KernelProfile> profile = exe->profile();
  REQUIRE(profile.size() == exe->kernels().size());
  size_t compiled = 0;
  for (const KernelProfile& k : profile) {
    INFO(k.name);
    CHECK(k.calls == 3);
    CHECK(k.seconds > 0);  // three timed calls of real work
    CHECK(!k.nodes.empty());
    CHECK(k.nodes.back() == k.root);
    CHECK(k.name == exe->kernels()[compiled++].name);
  }
  CHECK(compiled == exe->kernels().size());
  double timed = 0;  // the steps run one after another inside the three runs
  for (const KernelProfile& k : profile) timed += k.seconds;
  CHECK(timed <= elapsed);

  exe->set_profiling(false);
  exe->run(feeds, state);
  CHECK(exe->profile().front().calls == 3);
  exe->reset_profile();
  for (const KernelProfile& k : exe->profile()) CHECK(k.calls == 0);
}
