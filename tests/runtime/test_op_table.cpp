// The op table enforces itself: every op of graph/ops.def, walked through the X-macro (so a
// new line there is walked without touching this file), has a shape rule, an interpreter
// rule, a VJP rule or a place in the one list of non-differentiable ops below, gradcheck
// cases, and a JIT test that compares it with the interpreter (tests/op_coverage.h).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <set>

#include "dagger/autodiff/grad.h"
#include "op_coverage.h"
#include "dagger/runtime/gradcheck.h"
#include "dagger/runtime/interpreter.h"
#include "dagger/runtime/tensor.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

struct TableRow {
  Op op;
  std::string_view name;
  int arity;
  OpCategory category;
};

/// graph/ops.def read here directly, not through op_info or all_ops.
const std::vector<TableRow> kTable = {
#define DAGGER_OP(name, arity, category) {Op::name, #name, arity, OpCategory::category},
#include "dagger/graph/ops.def"
#undef DAGGER_OP
};

/// Ops gradients do not flow through: sources (gradients stop there), the derivative and
/// backward ops themselves, running statistics, inference batchnorm, the loss head's
/// gradient and assign. Every other op must have a VJP rule.
const std::set<Op> kNotDifferentiable = {
    Op::input,
    Op::parameter,
    Op::state,
    Op::constant,
    Op::relu_grad,
    Op::elu_grad,
    Op::selu_grad,
    Op::leaky_relu_grad,
    Op::conv2d_backward_data,
    Op::conv2d_backward_filter,
    Op::maxpool2d_backward,
    Op::batchnorm_infer,
    Op::batchnorm_backward,
    Op::batchnorm_grad_gamma,
    Op::channel_mean,
    Op::channel_var,
    Op::softmax_xent_grad,
    Op::assign,
};

/// A small valid use of an op: its operands' shapes and its attributes. Operand k holds
/// positive values unless `fixed` gives it one value (a dropout key, class labels).
struct Example {
  std::vector<Shape> operands = {};
  Attrs attrs = {};
  std::map<size_t, double> fixed = {};
};

const Attrs kSource{{"name", std::string("src")}, {"shape", Shape{2, 3}}, {"init", std::string("zeros")}};
const Attrs kConv{{"stride", int64_t(1)}, {"pad", int64_t(1)}};

Attrs with(Attrs attrs, std::string key, AttrValue value) { return attrs.set(std::move(key), std::move(value)); }

/// One example per op; a new op fails to compile here until it has one.
Example example_of(Op op) {
  switch (op) {
    case Op::input:
    case Op::parameter:
    case Op::state:
      return {{}, kSource};
    case Op::constant:
      return {{}, {{"value", 0.5}, {"shape", Shape{2, 3}}}};
    case Op::neg:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::relu:
    case Op::tanh:
    case Op::sigmoid:
    case Op::selu:
    case Op::softmax:
      return {{{2, 3}}};
    case Op::elu:
    case Op::leaky_relu:
      return {{{2, 3}}, {{"alpha", 0.5}}};
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow:
      return {{{2, 3}, {3}}};
    case Op::relu_grad:
    case Op::selu_grad:
      return {{{2, 3}, {2, 3}}};
    case Op::elu_grad:
    case Op::leaky_relu_grad:
      return {{{2, 3}, {2, 3}}, {{"alpha", 0.5}}};
    case Op::dropout:
      return {{{2, 3}, {}}, {{"p", 0.25}, {"salt", int64_t(1)}}, {{1, 7.0}}};
    case Op::reshape:
      return {{{2, 3}}, {{"shape", Shape{3, 2}}}};
    case Op::transpose:
      return {{{2, 3}}, {{"perm", std::vector<int64_t>{1, 0}}}};
    case Op::broadcast:
      return {{{3}}, {{"shape", Shape{2, 3}}}};
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
      return {{{2, 3}}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t(0)}}};
    case Op::matmul:
      return {{{2, 3}, {3, 4}}};
    case Op::conv2d:
      return {{{1, 2, 5, 5}, {3, 2, 3, 3}}, kConv};
    case Op::conv2d_backward_data:
      return {{{1, 3, 5, 5}, {3, 2, 3, 3}}, with(kConv, "shape", Shape{1, 2, 5, 5})};
    case Op::conv2d_backward_filter:
      return {{{1, 2, 5, 5}, {1, 3, 5, 5}}, with(kConv, "shape", Shape{3, 2, 3, 3})};
    case Op::maxpool2d:
      return {{{1, 2, 4, 4}}, {{"window", int64_t(2)}, {"stride", int64_t(2)}}};
    case Op::maxpool2d_backward:
      return {{{1, 2, 4, 4}, {1, 2, 2, 2}}, {{"window", int64_t(2)}, {"stride", int64_t(2)}}};
    case Op::batchnorm_train:
      return {{{2, 3}, {3}, {3}}, {{"eps", 1e-5}}};
    case Op::batchnorm_infer:
      return {{{2, 3}, {3}, {3}, {3}, {3}}, {{"eps", 1e-5}}};
    case Op::batchnorm_backward:
      return {{{2, 3}, {3}, {2, 3}}, {{"eps", 1e-5}}};
    case Op::batchnorm_grad_gamma:
      return {{{2, 3}, {2, 3}}, {{"eps", 1e-5}}};
    case Op::channel_mean:
    case Op::channel_var:
      return {{{2, 3}}};
    case Op::softmax_xent:
      return {{{2, 3}, {2}}, {}, {{1, 1.0}}};
    case Op::softmax_xent_grad:
      return {{{2, 3}, {2}, {}}, {}, {{1, 1.0}}};
    case Op::assign:
      return {{{2, 3}}, {{"target", std::string("src")}}};
  }
  FAIL("op value " << static_cast<int>(op) << " is outside the op table");
  return {};
}

/// Positive values that differ from element to element and from operand to operand.
TensorD operand_value(const Shape& shape, size_t k, const Example& e) {
  TensorD t = TensorD::from_shape(std::vector<size_t>(shape.begin(), shape.end()));
  for (size_t i = 0; i < t.size(); ++i)
    t.data()[i] = e.fixed.count(k) ? e.fixed.at(k) : 0.25 + 0.125 * static_cast<double>((i + 2 * k) % 5);
  return t;
}

}  // namespace

TEST_CASE("the X-macro's rows are the table op_info and all_ops give", "[graph][ops]") {
  REQUIRE(kTable.size() == all_ops().size());
  for (size_t i = 0; i < kTable.size(); ++i) {
    const TableRow& row = kTable[i];
    INFO(row.name);
    CHECK(all_ops()[i] == row.op);
    CHECK(op_info(row.op).name == row.name);
    CHECK(op_info(row.op).arity == row.arity);
    CHECK(op_info(row.op).category == row.category);
    CHECK(op_from_name(row.name) == row.op);
  }
}

TEST_CASE("every op has a shape rule and an interpreter rule", "[graph][runtime][ops]") {
  for (const TableRow& row : kTable) {
    INFO(row.name);
    const Example e = example_of(row.op);
    REQUIRE(static_cast<int>(e.operands.size()) == row.arity);
    Graph g;
    TensorMap<double> feeds, state;
    state["src"] = operand_value({2, 3}, 0, e);
    feeds["src"] = state["src"];
    if (row.op == Op::assign) g.add(Op::state, {}, kSource);
    std::vector<NodeId> operands;
    for (size_t k = 0; k < e.operands.size(); ++k) {
      const std::string name = "x" + std::to_string(k);
      operands.push_back(g.add(Op::input, {}, {{"name", name}, {"shape", e.operands[k]}}));
      feeds[name] = operand_value(e.operands[k], k, e);
    }
    const NodeId id = g.add(row.op, operands, e.attrs);  // the shape rule
    verify(g);
    const TensorD value = interpret_all(g, feeds, state).at(static_cast<size_t>(id));  // the interpreter rule
    CHECK(Shape(value.shape().begin(), value.shape().end()) == g.shape(id));
    for (double v : value) CHECK(std::isfinite(v));
  }
}

TEST_CASE("every op has a VJP rule or is declared non-differentiable", "[autodiff][ops]") {
  for (const TableRow& row : kTable) {
    INFO(row.name);
    CHECK(has_vjp(row.op) == !kNotDifferentiable.count(row.op));
  }
}

TEST_CASE("every differentiable op has gradcheck cases, and they pass", "[autodiff][gradcheck][ops]") {
  const std::vector<Op> checkable = gradcheckable_ops();
  GradcheckOptions opts;
  opts.max_elements = 8;
  for (const TableRow& row : kTable) {
    if (kNotDifferentiable.count(row.op)) continue;
    INFO(row.name);
    CHECK(std::find(checkable.begin(), checkable.end(), row.op) != checkable.end());
    const std::vector<GradcheckResult> results = gradcheck_op(row.op, {2, 3}, opts);
    CHECK(!results.empty());
    for (const GradcheckResult& r : results) CHECK(r.max_rel_error <= opts.tolerance);
  }
}

TEST_CASE("every op is compared with the interpreter by a JIT test", "[codegen][ops]") {
  for (const TableRow& row : kTable) {
    INFO(row.name << " is in no JIT test's jit_tests({...}) list (tests/codegen)");
    CHECK(jit_tested_ops().count(row.op) == 1);
  }
}
