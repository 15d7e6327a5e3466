// The training recipe's graph pieces on the JIT against the interpreter: label smoothing in the
// cross-entropy head and its gradient, and AdamW's fused update.
#include <algorithm>
#include <catch2/catch.hpp>

#include "dagger/autodiff/step.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit.h"
#include "dagger/codegen/jit_executable.h"
#include "codegen/jit_support.h"
#include "dagger/graph/dsl.h"
#include "dagger/graph/printer.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/interpreter.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

Value small_mlp(Model& m, Value x) { return m.dense(tanh(m.dense(flatten(x), 12)), 10); }

/// max |got - want| / max(1, |want|).
double error(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(
        worst, std::abs(double(got.data()[i]) - want.data()[i]) / std::max(1.0, std::abs(double(want.data()[i]))));
  return worst;
}

}  // namespace

TEST_CASE("label smoothing in softmax_xent and its grad matches the interpreter", "[jit][recipe]") {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 10}, {7, 13}, {64, 10}, {3, 37}}) {
    for (int width : {0, 4, 16}) {
      INFO("[" << n << ", " << k << "] at width " << width);
      Tensor labels = make_tensor({n});
      for (int64_t i = 0; i < n; ++i) labels(i) = static_cast<float>((i * 5 + 3) % k);
      const StateMap feeds{{"x", uniform({n, k}, -4, 4, 22)}, {"labels", labels}, {"dloss", scalar_tensor(1.5f)}};
      const Attrs smooth{{"smoothing", 0.1}};
      Graph loss;
      loss.set_output("y", loss.add(Op::softmax_xent, {input(loss, "x", {n, k}), input(loss, "labels", {n})}, smooth));
      BothRuns l = run_both(loss, feeds, {}, width, 2);
      CHECK(error(l.jit.at("y"), l.ref.at("y")) < 2e-6);
      Graph grad;
      grad.set_output(
          "y", grad.add(Op::softmax_xent_grad,
                        {input(grad, "x", {n, k}), input(grad, "labels", {n}), input(grad, "dloss", {})}, smooth));
      BothRuns g = run_both(grad, feeds, {}, width, 2);
      CHECK(error(g.jit.at("y"), g.ref.at("y")) < 2e-6);
      // The smoothing changes the values: the test would notice a kernel that ignored it.
      Graph plain;
      plain.set_output("y", plain.add(Op::softmax_xent, {input(plain, "x", {n, k}), input(plain, "labels", {n})}));
      StateMap none;
      CHECK(interpret<float>(plain, feeds, none).at("y")() != l.jit.at("y")());
    }
  }
}

TEST_CASE("label smoothing 0 builds today's graph, with no attribute", "[jit][recipe]") {
  OptimizerConfig adam;
  const Graph today = build_training_step(small_mlp, 4, adam, {1, 4, 4});
  const Graph zero = build_training_step(small_mlp, 4, adam, {1, 4, 4}, 10, 0.0);
  const Graph smoothed = build_training_step(small_mlp, 4, adam, {1, 4, 4}, 10, 0.1);
  CHECK(print_text(today) == print_text(zero));
  CHECK(print_text(today).find("smoothing") == std::string::npos);
  CHECK(print_text(smoothed).find("smoothing=0.1") != std::string::npos);
  CHECK_THROWS_WITH(build_forward(small_mlp, 4, Mode::train, {1, 4, 4}, 0), Catch::Contains("number of classes"));
}

TEST_CASE("an AdamW training step matches the interpreter, its updates fused like Adam's", "[jit][recipe]") {
  OptimizerConfig adamw;
  adamw.kind = OptimizerConfig::Kind::adamw;
  adamw.weight_decay = 0.05;
  const int64_t batch = 8;
  const Graph g = build_training_step(small_mlp, batch, adamw, {1, 6, 6}, 10, 0.1);
  StateMap initial;
  initialize_state(g, initial, 42);
  auto plan = compile_jit(g);
  StateMap jit_state = initial, ref_state = initial;
  double worst = 0;
  for (int step = 0; step < 3; ++step) {
    const StateMap feeds = training_feeds(g, batch, step);
    worst = std::max(worst, max_state_error(plan->run(feeds, jit_state), interpret<float>(g, feeds, ref_state)));
    worst = std::max(worst, max_state_error(jit_state, ref_state));
  }
  CHECK(worst < 1e-5);

  const FusionPlan fusion = fuse(g);
  for (NodeId id : g.nodes_of(Op::assign)) {
    const std::string& target = g.node(id).attrs.s("target");
    if (target.rfind("dense", 0) != 0) continue;  // parameters only
    const int k = fusion.group_of[g.node(id).operands[0]];
    REQUIRE(k >= 0);
    CHECK(fusion.groups[static_cast<size_t>(k)].side_outputs.size() == 2);  // m and v beside the new weight
  }
}
