// grad(): every VJP rule against finite differences, plus the structure of the backward
// graph (fan-out sums, only the needed nodes, errors for rule-less ops).
#include <catch2/catch.hpp>

#include <algorithm>

#include "dagger/autodiff/grad.h"
#include "dagger/graph/dsl.h"
#include "dagger/runtime/gradcheck.h"
#include "dagger/runtime/interpreter.h"

using namespace dagger;

namespace {

void require_within_tolerance(const std::vector<GradcheckResult>& results, const GradcheckOptions& opts) {
  REQUIRE_FALSE(results.empty());
  for (const GradcheckResult& r : results) {
    INFO(r.name << " " << to_string(r.shape) << ": max rel " << r.max_rel_error << ", max abs " << r.max_abs_error
                << " over " << r.checked);
    CHECK(r.checked > 0);
    CHECK(r.max_rel_error <= opts.tolerance);
  }
}

bool is_image_op(Op op) { return op == Op::conv2d || op == Op::maxpool2d || op == Op::batchnorm_train; }

xt::xarray<float> vec(std::vector<float> v) {
  xt::xarray<float> t = xt::xarray<float>::from_shape({v.size()});
  std::copy(v.begin(), v.end(), t.begin());
  return t;
}

std::vector<float> values(const xt::xarray<float>& t) { return {t.begin(), t.end()}; }

/// Nodes scoped "grad" that read any of `ids`.
int grad_nodes_reading(const Graph& g, const std::vector<NodeId>& ids) {
  int count = 0;
  for (const Node& n : g.nodes())
    if (n.scope == "grad")
      for (NodeId o : n.operands) count += std::count(ids.begin(), ids.end(), o) > 0;
  return count;
}

}  // namespace

TEST_CASE("every VJP rule matches central differences", "[autodiff][gradcheck]") {
  GradcheckOptions opts;
  for (Op op : gradcheckable_ops()) {
    std::vector<Shape> shapes = {{3, 5}, {2, 7}, {1, 1}};
    if (is_image_op(op) || op == Op::transpose || op == Op::reduce_max || op == Op::softmax) shapes.push_back({2, 3, 5, 5});
    for (const Shape& shape : shapes) {
      INFO(op_info(op).name << " on " << to_string(shape));
      require_within_tolerance(gradcheck_op(op, shape, opts), opts);
    }
  }
}

TEST_CASE("gradcheckable ops are exactly those with a rule", "[autodiff]") {
  const std::vector<Op> ops = gradcheckable_ops();
  CHECK(std::find(ops.begin(), ops.end(), Op::matmul) != ops.end());
  CHECK(std::find(ops.begin(), ops.end(), Op::softmax_xent) != ops.end());
  for (Op op : {Op::relu_grad, Op::conv2d_backward_data, Op::batchnorm_infer, Op::channel_mean, Op::assign, Op::constant}) {
    CHECK(std::find(ops.begin(), ops.end(), op) == ops.end());
    CHECK_THROWS_AS(gradcheck_op(op, {2, 2}, {}), Error);
  }
}

TEST_CASE("a small conv-bn-relu-pool model passes gradcheck", "[autodiff][gradcheck]") {
  ModelFn plain = [](Model& m, Value x) {
    Value h = maxpool(relu(m.batchnorm(m.conv2d(x, 4, 3))));
    return m.dense(flatten(h), 10);
  };
  ModelFn residual = [](Model& m, Value x) {
    Value h = relu(m.batchnorm(m.conv2d(x, 4, 3)));
    Value branch = m.batchnorm(m.conv2d(relu(m.conv2d(h, 4, 3)), 4, 3));
    Value joined = m.dropout(maxpool(relu(add(h, branch))), 0.3f);
    return m.dense(flatten(joined), 10);
  };
  GradcheckOptions opts;
  SECTION("plain") { require_within_tolerance(gradcheck_model(plain, 3, opts, {1, 6, 6}), opts); }
  SECTION("residual with dropout") { require_within_tolerance(gradcheck_model(residual, 3, opts, {1, 6, 6}), opts); }
}

TEST_CASE("fan-out contributions are summed: d(x*x + x)/dx = 2x + 1", "[autodiff]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.parameter("x", {4}, "zeros");
  Value loss = reduce_sum(add(mul(x, x), x), {0});
  const NodeId before = static_cast<NodeId>(g.size());
  const NodeId dx = grad(g, loss.id, {x.id})[0];
  g.set_output("dx", dx);

  // x fans out three ways (twice into the product, once into the sum): two adds join them.
  int adds = 0;
  for (NodeId id = before; id < static_cast<NodeId>(g.size()); ++id) {
    const bool sum = g.node(id).scope == "grad.accumulate";
    CHECK((sum || g.node(id).scope == "grad"));
    if (sum) CHECK(g.node(id).op == Op::add);
    adds += sum;
  }
  CHECK(adds == 2);

  // Dyadic values keep every float sum exact.
  TensorMap<float> state{{"x", vec({0.5f, -1.25f, 3.0f, 0.0f})}};
  const auto out = interpret<float>(g, {}, state);
  CHECK(values(out.at("dx")) == std::vector<float>{2.0f, -1.5f, 7.0f, 1.0f});
}

TEST_CASE("grad builds only what the loss needs", "[autodiff]") {
  Graph g;
  Model m(g, Mode::train);
  Value used = m.parameter("used", {3}, "zeros");
  Value unused = m.parameter("unused", {2, 3}, "zeros");
  Value side = m.parameter("side", {3}, "zeros");
  Value off_loss = exp(unused);            // never reaches the loss
  Value side_branch = mul(used, side);     // reachable from `used` but not feeding the loss
  g.set_output("other", off_loss.id);
  g.set_output("side", side_branch.id);
  Value loss = reduce_sum(tanh(used), {0});
  const std::vector<NodeId> grads = grad(g, loss.id, {used.id, unused.id, side.id});

  CHECK(grad_nodes_reading(g, {unused.id, off_loss.id, side.id, side_branch.id}) == 0);
  for (NodeId zero : {grads[1], grads[2]}) {
    CHECK(g.node(zero).op == Op::broadcast);
    CHECK(g.node(g.node(zero).operands[0]).op == Op::constant);
    CHECK(g.node(g.node(zero).operands[0]).attrs.f("value") == 0.0);
  }
  CHECK(g.shape(grads[1]) == Shape{2, 3});
  CHECK(g.shape(grads[0]) == Shape{3});
  verify(g);
}

TEST_CASE("grad nodes keep the forward node's source line", "[autodiff]") {
  Graph g;
  Model m(g, Mode::train);
  Value w = m.parameter("w", {2, 2}, "zeros");
  Value y = sigmoid(w);  // the backward nodes of sigmoid point here
  const NodeId dw = grad(g, reduce_sum(y, {0, 1}).id, {w.id})[0];
  CHECK(g.node(dw).where.line() == y.node().where.line());
  CHECK(g.scope().empty());
}

TEST_CASE("reduce_max splits the gradient evenly between tied maxima", "[autodiff]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.parameter("x", {4}, "zeros");
  const NodeId dx = grad(g, reduce_max(x, {0}).id, {x.id})[0];
  g.set_output("dx", dx);
  TensorMap<float> state{{"x", vec({1.0f, 3.0f, 3.0f, 2.0f})}};
  CHECK(values(interpret<float>(g, {}, state).at("dx")) == std::vector<float>{0.0f, 0.5f, 0.5f, 0.0f});
}

TEST_CASE("gradients through rule-less ops or non-differentiable operands are errors", "[autodiff]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.parameter("x", {2, 3}, "zeros");
  SECTION("channel_mean has no rule") {
    Value mean{&g, g.add(Op::channel_mean, {x.id})};
    REQUIRE_THROWS_WITH(grad(g, reduce_sum(mean, {0}).id, {x.id}), Catch::Contains("channel_mean"));
  }
  SECTION("labels of softmax_xent") {
    Value labels = reduce_sum(x, {1});
    Value loss{&g, g.add(Op::softmax_xent, {x.id, labels.id})};
    REQUIRE_THROWS_WITH(grad(g, loss.id, {x.id}), Catch::Contains("labels"));
  }
  SECTION("a loss that is not a scalar") { REQUIRE_THROWS_AS(grad(g, exp(x).id, {x.id}), Error); }
}
