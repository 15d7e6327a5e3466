// An optimizer's update fused into the epilogue of its weight gradient's matmul: the fusion
// decision, the gradient never stored, the new weight and moments written in place, and the
// fused plan against the interpreter over several steps (Adam, AdamW, SGD with momentum) on a
// small MLP of odd sizes; the data-parallel gradient step keeps the gradient in memory.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "codegen/jit_support.h"
#include "dagger/autodiff/step.h"
#include "dagger/codegen/fusion.h"
#include "dagger/runtime/init.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// Weights of 17x13 and 13x10: no dimension fills a vector.
Value odd_mlp(Model& m, Value x) { return m.dense(relu(m.dense(flatten(x), 13)), 10); }
const Shape kInput{1, 17, 1};

OptimizerConfig optimizer(OptimizerConfig::Kind kind) {
  OptimizerConfig cfg;
  cfg.kind = kind;
  if (kind == OptimizerConfig::Kind::adamw) cfg.weight_decay = 0.01;
  return cfg;
}

/// The new value of each weight (a parameter of rank 2) of `g`, by its parameter's name.
std::vector<std::pair<std::string, NodeId>> weight_updates(const Graph& g) {
  std::vector<std::pair<std::string, NodeId>> updates;
  for (NodeId a : g.nodes_of(Op::assign)) {
    const std::string& target = g.node(a).attrs.s("target");
    for (NodeId p : g.nodes_of(Op::parameter))
      if (g.node(p).attrs.s("name") == target && g.shape(p).size() == 2)
        updates.emplace_back(target, g.node(a).operands[0]);
  }
  return updates;
}

}  // namespace

TEST_CASE("a weight's update is the epilogue of its gradient's matmul, which is never stored", "[jit]") {
  for (auto kind : {OptimizerConfig::Kind::adam, OptimizerConfig::Kind::adamw, OptimizerConfig::Kind::momentum,
                    OptimizerConfig::Kind::sgd}) {
    INFO(optimizer_name(kind));
    const Graph g = build_training_step(odd_mlp, 3, optimizer(kind), kInput);
    const FusionPlan plan = plan_fusion(g);
    const auto updates = weight_updates(g);
    REQUIRE(updates.size() == 2);
    for (const auto& [name, value] : updates) {
      INFO(name);
      const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[value])];
      CHECK(group.root == value);
      REQUIRE(group.anchor >= 0);
      CHECK(g.node(group.anchor).op == Op::matmul);
      CHECK(g.shape(group.anchor) == g.shape(value));
      // The gradient is read from no buffer: no group writes it and none reads it.
      for (const FusionGroup& other : plan.groups) {
        CHECK(other.root != group.anchor);
        CHECK(std::ranges::count(other.inputs, group.anchor) == 0);
      }
      // The new weight and every moment go straight into their tensors.
      CHECK(group.in_place.size() == 1 + group.side_outputs.size());
    }
  }
  const Graph g = build_training_step(odd_mlp, 3, optimizer(OptimizerConfig::Kind::adam), kInput);
  const std::string why = describe_fusion(g, plan_fusion(g), true);
  CHECK(why.find("its 3 reads are all in its epilogue") != std::string::npos);
}

TEST_CASE("a data-parallel gradient step keeps each weight's gradient in memory", "[jit]") {
  const Graph g = build_gradient_step(odd_mlp, 3, kInput);
  const FusionPlan plan = plan_fusion(g);
  int gradients = 0;
  for (const auto& [name, id] : g.outputs()) {
    if (name.rfind("grad:", 0) != 0 || g.shape(id).size() != 2) continue;
    ++gradients;
    INFO(name);
    REQUIRE(plan.group_of[id] >= 0);
    const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[id])];
    CHECK(group.root == id);
    CHECK(g.node(group.anchor).op == Op::matmul);
  }
  CHECK(gradients == 2);
}

TEST_CASE("updates fused into their gradient's matmul match the interpreter for several steps", "[jit]") {
  // Batch 200 makes the reduction longer than a slice of the panel (emit_gemm.cpp): the new
  // weight, written in place, must then not hold partial sums.
  for (int64_t batch : {3, 1, 200})
    for (auto kind : {OptimizerConfig::Kind::adam, OptimizerConfig::Kind::adamw, OptimizerConfig::Kind::momentum}) {
      INFO(optimizer_name(kind) << " at batch " << batch);
      const Graph g = build_training_step(odd_mlp, batch, optimizer(kind), kInput);
      StateMap initial;
      initialize_state(g, initial, 11);
      for (int width : {0, 8, 16}) {
        INFO("vector width " << width);
        JitOptions options;
        options.vector_width = width;
        options.threads = 2;
        auto plan = compile_jit(g, options);
        StateMap jit_state = initial, ref_state = initial;
        for (int step = 0; step < 4; ++step) {
          const StateMap feeds = training_feeds(g, batch, step);
          plan->run(feeds, jit_state);
          interpret<float>(g, feeds, ref_state);
        }
        CHECK(max_state_error(jit_state, ref_state) < 1e-5);
      }
    }
}
