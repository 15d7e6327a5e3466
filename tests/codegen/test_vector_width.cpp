// Results do not depend on the vector width: every reduction along a run keeps 16 partial
// results whatever the width (codegen/partials.h), so kernels built for 4, 8 (AVX2) and 16
// (AVX-512) floats per vector give the same bits. Checked here on run lengths that fill no
// vector, one, several and a ragged number of groups of 16, for every op that reduces along a
// vector axis. (Widths other than the host's run anywhere: LLVM splits or pads the vectors.)
#include <catch2/catch.hpp>

#include "codegen/jit_support.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

const std::vector<int64_t> kRunLengths = {1, 7, 17, 33, 49, 257};

/// Runs g (output "y") at widths 4, 8 and 16 and checks that they agree bit for bit, and that
/// they agree with the interpreter to `tolerance` (relative to the output's largest value).
void check_width_independent(const Graph& g, const StateMap& feeds, double tolerance) {
  StateMap none;
  const Tensor want = interpret<float>(g, feeds, none).at("y");
  double scale = FLT_MIN;
  for (float v : want) scale = std::max(scale, double(std::abs(v)));
  Tensor at_4;
  for (int width : {4, 8, 16}) {
    INFO("width " << width);
    JitOptions options;
    options.poison_arena = true;  // an element no kernel writes reads NaN
    options.vector_width = width;
    auto plan = compile_jit(g, options);
    REQUIRE(plan->vector_width() == width);
    const Tensor got = plan->run(feeds, none).at("y");
    for (size_t i = 0; i < want.size(); ++i) CHECK(std::abs(got.data()[i] - want.data()[i]) <= tolerance * scale);
    if (width == 4)
      at_4 = got;
    else
      CHECK(bitwise_equal(got, at_4));
  }
}

/// Values of both signs spread over several binades, so that a different order of additions
/// rounds differently.
Tensor spread(const Shape& shape, uint32_t seed) {
  Tensor t = uniform(shape, -1, 1, seed);
  int64_t i = 0;
  for (float& v : t) v *= float(1 << (i++ % 7));
  return t;
}

}  // namespace

TEST_CASE("reductions give the same bits at vector widths 4, 8 and 16", "[jit][width]") {
  for (int64_t n : kRunLengths) {
    for (Op op : {Op::reduce_sum, Op::reduce_mean, Op::reduce_max}) {
      // The reduced axis innermost (partial results), alone or merged with an outer one, and
      // kept innermost (one column per lane).
      for (auto [shape, axes] : std::vector<std::pair<Shape, std::vector<int64_t>>>{
               {{3, n}, {1}}, {{n}, {0}}, {{2, 3, n}, {0, 2}}, {{n, 5}, {0}}}) {
        INFO(op_info(op).name << " of " << to_string(shape));
        Graph g;
        g.set_output("y", g.add(op, {input(g, "x", shape)}, {{"axes", axes}, {"keepdims", int64_t(0)}}));
        check_width_independent(g, {{"x", spread(shape, 3)}}, 1e-5);
      }
    }
  }
}

TEST_CASE("softmax and the cross-entropy head give the same bits at vector widths 4, 8 and 16", "[jit][width]") {
  for (int64_t n : kRunLengths) {
    INFO("rows of " << n);
    const Shape shape{5, n};
    Tensor labels = make_tensor({5});
    for (int64_t i = 0; i < 5; ++i) labels(i) = static_cast<float>((i * 3) % n);
    const StateMap feeds{{"x", spread(shape, 5)}, {"labels", labels}, {"dloss", scalar_tensor(1.0f)}};
    Graph softmax;
    softmax.set_output("y", softmax.add(Op::softmax, {input(softmax, "x", shape)}));
    check_width_independent(softmax, feeds, 1e-5);
    Graph loss;
    loss.set_output("y", loss.add(Op::softmax_xent, {input(loss, "x", shape), input(loss, "labels", {5})}));
    check_width_independent(loss, feeds, 1e-5);
    Graph grad;
    grad.set_output("y", grad.add(Op::softmax_xent_grad,
                                  {input(grad, "x", shape), input(grad, "labels", {5}), input(grad, "dloss", {})}));
    check_width_independent(grad, feeds, 1e-5);
  }
}

// Their sums are in double, where a float's terms add almost exactly, so the old per-lane order
// showed in the float results only now and then; the property is checked all the same.
TEST_CASE("batch normalization and its statistics give the same bits at vector widths 4, 8 and 16", "[jit][width]") {
  for (int64_t n : kRunLengths) {
    const Shape shape{3, 4, 1, n};  // a channel's inner axis of n positions per image
    const Shape c{4};
    const StateMap feeds{{"x", spread(shape, 7)},
                         {"dy", spread(shape, 8)},
                         {"gamma", uniform(c, 0.5, 1.5, 9)},
                         {"beta", uniform(c, -1, 1, 10)}};
    for (Op op :
         {Op::channel_mean, Op::channel_var, Op::batchnorm_train, Op::batchnorm_grad_gamma, Op::batchnorm_backward}) {
      INFO(op_info(op).name << " of " << to_string(shape));
      Graph g;
      NodeId x = input(g, "x", shape);
      const Attrs eps{{"eps", 1e-5}};
      NodeId y = op == Op::batchnorm_train        ? g.add(op, {x, input(g, "gamma", c), input(g, "beta", c)}, eps)
                 : op == Op::batchnorm_grad_gamma ? g.add(op, {x, input(g, "dy", shape)}, eps)
                 : op == Op::batchnorm_backward   ? g.add(op, {x, input(g, "gamma", c), input(g, "dy", shape)}, eps)
                                                  : g.add(op, {x});
      g.set_output("y", y);
      check_width_independent(g, feeds, 1e-4);
    }
  }
}
