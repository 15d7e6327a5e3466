// An optimizer's update as the epilogue of the matmul that makes its weight gradient
// (codegen/fusion.h): the gradient is never stored, and the new weight and moments go straight
// into their state tensors. The plan must give the bits of the plan that stores the gradient
// and updates in a kernel of its own, for every optimizer, odd layer sizes, batches whose
// reduction spans several of the GEMM's slices, every vector width and thread count.
#include <catch2/catch.hpp>

#include "codegen/jit_support.h"
#include "dagger/autodiff/step.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/init.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// The matmuls of `g` whose every read is in the optimizer's update (the weight gradients).
std::vector<NodeId> weight_gradients(const Graph& g) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::vector<NodeId> found;
  for (NodeId id : g.nodes_of(Op::matmul))
    if (!readers[id].empty() &&
        std::ranges::all_of(readers[id], [&](NodeId r) { return g.node(r).scope == "optimizer"; }))
      found.push_back(id);
  return found;
}

}  // namespace

TEST_CASE("an optimizer's update is its weight gradient's epilogue, in place, with the bits of the kernels apart",
          "[jit][gemm][optimizer]") {
  using Kind = OptimizerConfig::Kind;
  for (Kind kind : {Kind::sgd, Kind::momentum, Kind::adam, Kind::adamw}) {
    for (int64_t batch : {5, 300}) {  // 300: a reduction of several panel slices where the gradient is stored
      INFO(optimizer_name(kind) << " batch " << batch);
      OptimizerConfig opt;
      opt.kind = kind;
      opt.weight_decay = kind == Kind::adamw ? 0.01 : 0;
      const Graph fused = build_training_step(zoo::find("mlp1(37,relu,0)").build, batch, opt, {1, 7, 9});
      const std::vector<NodeId> gradients = weight_gradients(fused);
      REQUIRE(gradients.size() == 2);  // the hidden layer's [63, 37] and the output layer's [37, 10]
      // The same step with each gradient also a graph output: then stored, and updated apart.
      Graph apart = fused;
      for (size_t k = 0; k < gradients.size(); ++k) apart.set_output("grad" + std::to_string(k), gradients[k]);

      const FusionPlan plan = plan_fusion(fused);
      for (NodeId id : gradients) {
        const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[id])];
        CHECK(group.anchor == id);
        CHECK(group.root != id);
        // The new weight (and each moment) is stored in place: no arena buffer, no copy back.
        CHECK(group.in_place.size() == 1 + group.side_outputs.size());
      }
      for (NodeId id : gradients) {
        const FusionPlan split = plan_fusion(apart);
        CHECK(split.groups[static_cast<size_t>(split.group_of[id])].root == id);
      }

      StateMap initial;
      initialize_state(fused, initial, 7);
      JitOptions reference;
      reference.poison_arena = true;
      auto apart_plan = compile_jit(apart, reference);
      StateMap want_state = initial, ref_state = initial;
      std::vector<StateMap> feeds;
      for (int step = 0; step < 3; ++step) feeds.push_back(training_feeds(fused, batch, step));
      double state_err = 0;
      for (const StateMap& f : feeds) {
        apart_plan->run(f, want_state);
        interpret<float>(fused, f, ref_state);
        state_err = std::max(state_err, max_state_error(want_state, ref_state));
      }
      CHECK(state_err < 1e-4);
      for (auto [width, threads] :
           {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 2}, std::pair{8, 1}, std::pair{16, 3}}) {
        INFO("width " << width << " threads " << threads);
        JitOptions options;
        options.poison_arena = true;  // an element no kernel writes reads NaN
        options.vector_width = width;
        options.threads = threads;
        auto jit = compile_jit(fused, options);
        CHECK(jit->kernels().size() < apart_plan->kernels().size());
        StateMap state = initial;
        for (const StateMap& f : feeds) jit->run(f, state);
        REQUIRE(state.size() == want_state.size());
        for (const auto& [name, t] : want_state) {
          INFO(name);
          CHECK(bitwise_equal(state.at(name), t));
        }
      }
    }
  }
}
