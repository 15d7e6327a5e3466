// The JIT against the reference interpreter: every elementwise op on shapes that do and do
// not fill a vector, broadcasting, dropout masks bit for bit, matmul in all transpose
// combinations with epilogues, fusion's kernel counts, dumps, errors and a training step.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>

#include "dagger/autodiff/step.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit.h"
#include "dagger/codegen/jit_executable.h"
#include "codegen/jit_support.h"
#include "dagger/graph/dsl.h"
#include "op_coverage.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/interpreter.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// Input ranges where each op is defined and interesting.
struct Range {
  float lo, hi;
};

/// How each elementwise op is tested: the attributes it needs (with values that exercise
/// them), the input ranges of its operands, and whether the JIT computes it exactly as the
/// interpreter does (same IEEE operations, or libm's pow) rather than within a tolerance.
struct ElementwiseCase {
  Attrs attrs = {};
  Range first{-8.0f, 8.0f}, second{-8.0f, 8.0f};
  bool exact = true;
};

ElementwiseCase elementwise_case(Op op) {
  switch (op) {
    case Op::neg:
      return {};
    case Op::exp:
      return {.first = {-30.0f, 30.0f}, .exact = false};
    case Op::log:
      return {.first = {1e-3f, 50.0f}, .exact = false};
    case Op::sqrt:
      return {.first = {0.0f, 50.0f}};
    case Op::relu:
      return {};
    case Op::tanh:
      return {.exact = false};
    case Op::sigmoid:
      return {.exact = false};
    case Op::elu:
      return {.attrs = {{"alpha", 0.7}}, .exact = false};
    case Op::selu:
      return {.exact = false};
    case Op::leaky_relu:
      return {.attrs = {{"alpha", 0.3}}};
    case Op::add:
      return {};
    case Op::sub:
      return {};
    case Op::mul:
      return {};
    case Op::div:
      return {.second = {0.5f, 2.0f}};
    case Op::pow:
      return {.first = {0.1f, 4.0f}, .second = {-3.0f, 3.0f}};
    case Op::relu_grad:
      return {};
    case Op::elu_grad:
      return {.attrs = {{"alpha", 0.7}}, .exact = false};
    case Op::selu_grad:
      return {.exact = false};
    case Op::leaky_relu_grad:
      return {.attrs = {{"alpha", 0.3}}};
    case Op::dropout:
      return {.attrs = {{"p", 0.3}, {"salt", int64_t(5)}}};
    // Not elementwise: tested in test_ops_jit.cpp and test_conv_jit.cpp.
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::reshape:
    case Op::transpose:
    case Op::broadcast:
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
    case Op::matmul:
    case Op::conv2d:
    case Op::conv2d_backward_data:
    case Op::conv2d_backward_filter:
    case Op::maxpool2d:
    case Op::maxpool2d_backward:
    case Op::batchnorm_train:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
    case Op::softmax:
    case Op::softmax_xent:
    case Op::softmax_xent_grad:
    case Op::assign:
      break;
  }
  throw Error(fmt::format("{} is not an elementwise op", op_info(op).name));
}

Attrs attrs_for(Op op) { return elementwise_case(op).attrs; }
Range first_range(Op op) { return elementwise_case(op).first; }
Range second_range(Op op) { return elementwise_case(op).second; }
bool is_exact(Op op) { return elementwise_case(op).exact; }

constexpr double kTranscendentalTolerance = 1e-6;

std::vector<Op> elementwise_ops() {
  std::vector<Op> ops;
  for (Op op : all_ops())
    if (op_info(op).category == OpCategory::Elementwise && op != Op::dropout) ops.push_back(op);
  return ops;
}

const std::vector<Op> kElementwiseOps = jit_tests(elementwise_ops());
const std::vector<Op> kDropout = jit_tests({Op::dropout});
const std::vector<Op> kMatmul = jit_tests({Op::matmul});
// The training step test: sources, and assign writing the updated state.
const std::vector<Op> kStepOps = jit_tests({Op::input, Op::parameter, Op::state, Op::constant, Op::assign});

/// Checks one op on operands of the given shapes; returns its max relative error.
double check_op(Op op, const Shape& a, const Shape& b, uint32_t seed, Range ra, Range rb, int width = 0) {
  Graph g;
  const bool binary = op_info(op).arity == 2;
  std::vector<NodeId> operands{input(g, "a", a)};
  if (binary) operands.push_back(input(g, "b", b));
  g.set_output("y", g.add(op, operands, attrs_for(op)));
  StateMap feeds{{"a", uniform(a, ra.lo, ra.hi, seed)}};
  if (binary) feeds["b"] = uniform(b, rb.lo, rb.hi, seed + 1);
  if (op == Op::div)  // divisors of both signs, away from zero
    for (size_t i = 0; i < feeds["b"].size(); ++i)
      if (i % 2) feeds["b"].data()[i] = -feeds["b"].data()[i];
  BothRuns r = run_both(g, feeds, {}, width);
  REQUIRE(r.kernels == 1);
  return max_rel_error(r.jit.at("y"), r.ref.at("y"));
}

const std::vector<Shape> kUnaryShapes = {{}, {1}, {7}, {8}, {17}, {33}, {7, 5}, {3, 4, 5, 5}, {2, 3, 64}};

/// Operand shapes for the broadcasting binary ops: equal, trailing, leading, scalar and
/// both-sided broadcasts, including a bias over rows and a conv bias over channels.
const std::vector<std::pair<Shape, Shape>> kBroadcastPairs = {{{1}, {1}},
                                                              {{7}, {7}},
                                                              {{17}, {17}},
                                                              {{33}, {33}},
                                                              {{7, 5}, {5}},
                                                              {{5}, {7, 5}},
                                                              {{3, 4, 5, 5}, {4, 1, 1}},
                                                              {{7, 5}, {}},
                                                              {{}, {7, 5}},
                                                              {{7, 1}, {1, 5}},
                                                              {{2, 3, 4}, {3, 1}},
                                                              {{64, 40}, {40}},
                                                              {{}, {}}};

bool broadcasts(Op op) { return op == Op::add || op == Op::sub || op == Op::mul || op == Op::div || op == Op::pow; }

}  // namespace

TEST_CASE("the host's CPU and vector width are reported", "[jit]") {
  CHECK(!host_cpu().empty());
  const std::vector<std::string> features = host_features();
  const bool avx512 = std::find(features.begin(), features.end(), "avx512f") != features.end();
  const bool avx2 = std::find(features.begin(), features.end(), "avx2") != features.end();
  const JitTarget host = jit_target_named("host");
  const int w = host.vector_width;
  CHECK((avx512 ? w == 16 : avx2 ? w == 8 : w <= 8));
  CHECK(host.cpu == host_cpu());
  std::cout << "jit host: " << host_cpu() << ", " << w << " floats per vector\n";
}

TEST_CASE("every elementwise op matches the interpreter on every shape", "[jit]") {
  for (Op op : kElementwiseOps) {
    double worst = 0;
    uint32_t seed = 1;
    auto record = [&](const Shape& a, const Shape& b, Range ra, Range rb) {
      INFO(op_info(op).name << " on " << to_string(a) << " and " << to_string(b));
      const double err = check_op(op, a, b, seed++, ra, rb);
      if (is_exact(op))
        CHECK(err == 0);
      else
        CHECK(err < kTranscendentalTolerance);
      worst = std::max(worst, err);
    };
    const Range ra = first_range(op), rb = second_range(op);
    if (broadcasts(op)) {
      for (const auto& [a, b] : kBroadcastPairs) record(a, b, ra, rb);
    } else {
      for (const Shape& s : kUnaryShapes) record(s, s, ra, rb);
      // Near zero, where exp(x) - 1 and tanh lose digits unless computed with care.
      if (ra.lo < 0) record({257}, {257}, {-1e-3f, 1e-3f}, rb);
    }
    std::cout << "jit " << op_info(op).name << ": max relative error " << worst << "\n";
  }
}

TEST_CASE("transcendentals handle zero, infinities, NaN, subnormals and overflow like libm", "[jit]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> specials = {0.0f,  -0.0f,  inf,      -inf,    nan,      1e-40f, -1e-40f, FLT_MIN, 88.7f,
                                       89.0f, -87.5f, -100.0f,  -104.0f, -110.0f,  1e-7f,  -1e-7f,  20.0f,   -20.0f,
                                       0.5f,  -0.5f,  0.49999f, FLT_MAX, -FLT_MAX, 1.0f,   2.0f};
  Tensor x = make_tensor({static_cast<int64_t>(specials.size())});
  std::copy(specials.begin(), specials.end(), x.begin());
  for (Op op : {Op::exp, Op::log, Op::tanh, Op::sigmoid, Op::elu, Op::selu, Op::sqrt}) {
    Graph g;
    g.set_output("y", g.add(op, {input(g, "x", {int64_t(specials.size())})}, attrs_for(op)));
    BothRuns r = run_both(g, {{"x", x}});
    INFO(op_info(op).name);
    for (size_t i = 0; i < specials.size(); ++i) {
      const float got = r.jit.at("y")(i), want = r.ref.at("y")(i);
      INFO("x = " << specials[i] << ": jit " << got << ", interpreter " << want);
      if (std::isnan(want)) {
        CHECK(std::isnan(got));
      } else if (std::isinf(want)) {
        CHECK(got == want);
      } else if (std::abs(want) < FLT_MIN) {  // subnormal: few significant bits, judge absolutely
        CHECK(std::abs(got - want) <= kTranscendentalTolerance * FLT_MIN);
      } else {
        CHECK(std::abs(got - want) <= kTranscendentalTolerance * std::abs(want));
      }
    }
  }
}

TEST_CASE("pow agrees with libm for negative bases and integer exponents", "[jit]") {
  Graph g;
  g.set_output("y", g.add(Op::pow, {input(g, "a", {9}), input(g, "b", {9})}));
  Tensor a = make_tensor({9}), b = make_tensor({9});
  const std::vector<float> av = {-2, -2, -0.5f, 0, 0, -3, 4, -1, 2}, bv = {2, 3, -2, 0, -1, 0.5f, 0.5f, 7, -0.5f};
  std::copy(av.begin(), av.end(), a.begin());
  std::copy(bv.begin(), bv.end(), b.begin());
  BothRuns r = run_both(g, {{"a", a}, {"b", b}});
  CHECK(max_rel_error(r.jit.at("y"), r.ref.at("y")) == 0);
}

TEST_CASE("dropout masks and values are identical bit for bit", "[jit]") {
  for (double p : {0.1, 0.5, 0.9})
    for (const Shape& s : std::vector<Shape>{{1}, {7}, {33}, {7, 5}, {3, 4, 5, 5}, {64, 100}}) {
      Graph g;
      g.set_output("y", g.add(Op::dropout, {input(g, "x", s), input(g, "key", {})}, {{"p", p}, {"salt", int64_t(3)}}));
      for (float key : {0.0f, 1.0f, 12345.0f, 16777215.0f}) {
        INFO("p " << p << " shape " << to_string(s) << " key " << key);
        BothRuns r = run_both(g, {{"x", uniform(s, -2, 2, 7)}, {"key", scalar_tensor(key)}});
        CHECK(bitwise_equal(r.jit.at("y"), r.ref.at("y")));
      }
    }
}

TEST_CASE("an offset dropout draws the interpreter's mask on odd shapes, alone and fused", "[jit]") {
  // 4294967290: the index passes 2^32 within the tensor and wraps in both.
  for (int64_t offset : {int64_t(1), int64_t(13), int64_t(4097), int64_t(4294967290)}) {
    const Attrs attrs{{"p", 0.4}, {"salt", int64_t(5)}, {"offset", offset}};
    for (const Shape& s : std::vector<Shape>{{1}, {7}, {33}, {7, 5}, {3, 5, 7}}) {
      INFO("offset " << offset << " shape " << to_string(s));
      Graph g;
      g.set_output("y", g.add(Op::dropout, {input(g, "x", s), input(g, "key", {})}, attrs));
      BothRuns r = run_both(g, {{"x", uniform(s, -2, 2, 7)}, {"key", scalar_tensor(4321)}});
      CHECK(bitwise_equal(r.jit.at("y"), r.ref.at("y")));
    }
    INFO("offset " << offset << ", in a dense layer's epilogue");
    Graph g;
    NodeId h = g.add(Op::matmul, {input(g, "x", {5, 11}), input(g, "w", {11, 13})});
    g.set_output("y", g.add(Op::dropout, {g.add(Op::relu, {h}), input(g, "key", {})}, attrs));
    BothRuns r = run_both(
        g, {{"x", uniform({5, 11}, -1, 1, 1)}, {"w", uniform({11, 13}, -1, 1, 2)}, {"key", scalar_tensor(77)}});
    CHECK(r.kernels == 1);
    CHECK(max_rel_error(r.jit.at("y"), r.ref.at("y")) < 1e-5);
    for (size_t i = 0; i < r.ref.at("y").size(); ++i)
      CHECK((r.jit.at("y").data()[i] == 0) == (r.ref.at("y").data()[i] == 0));
  }
}

TEST_CASE("a dropout fused inside a chain keeps its mask", "[jit]") {
  Graph g;
  NodeId x = input(g, "x", {9, 13}), b = input(g, "b", {13});
  NodeId h = g.add(Op::relu, {g.add(Op::add, {x, b})});
  NodeId d = g.add(Op::dropout, {h, input(g, "key", {})}, {{"p", 0.4}, {"salt", int64_t(2)}});
  g.set_output("y", g.add(Op::mul, {d, x}));
  BothRuns r =
      run_both(g, {{"x", uniform({9, 13}, -1, 1, 3)}, {"b", uniform({13}, -1, 1, 4)}, {"key", scalar_tensor(99)}});
  CHECK(r.kernels == 1);
  CHECK(bitwise_equal(r.jit.at("y"), r.ref.at("y")));
}

TEST_CASE("a chain of four elementwise nodes is one kernel", "[jit]") {
  Graph g;
  NodeId x = input(g, "x", {7, 33}), y = input(g, "y", {33});
  NodeId chain = g.add(Op::relu, {g.add(Op::add, {g.add(Op::exp, {g.add(Op::neg, {x})}), y})});
  g.set_output("z", chain);
  BothRuns r = run_both(g, {{"x", uniform({7, 33}, -3, 3, 1)}, {"y", uniform({33}, -2, 2, 2)}});
  CHECK(r.kernels == 1);
  CHECK(max_rel_error(r.jit.at("z"), r.ref.at("z")) < kTranscendentalTolerance);

  SECTION("a value read twice is stored once and read by both") {
    Graph h;
    NodeId a = h.add(Op::exp, {input(h, "x", {10})});
    h.set_output("z", h.add(Op::add, {h.add(Op::neg, {a}), h.add(Op::relu, {a})}));
    auto plan = compile_jit(h);
    CHECK(plan->kernels().size() == 2);  // exp, then neg + relu + add
  }
  SECTION("scalar arithmetic joins the loop that broadcasts it") {
    Graph h;
    NodeId s = input(h, "s", {});
    NodeId one_minus = h.add(Op::sub, {h.add(Op::constant, {}, {{"value", 1.0}, {"shape", Shape{}}}), s});
    h.set_output("z", h.add(Op::mul, {input(h, "x", {5, 9}), h.add(Op::sqrt, {one_minus})}));
    BothRuns r = run_both(h, {{"x", uniform({5, 9}, -1, 1, 3)}, {"s", scalar_tensor(0.19f)}});
    CHECK(r.kernels == 1);
    CHECK(max_rel_error(r.jit.at("z"), r.ref.at("z")) == 0);
  }
  SECTION("but a scalar dropout keeps its own kernel, where its element index is 0") {
    Graph h;
    NodeId d = h.add(Op::dropout, {input(h, "s", {}), input(h, "key", {})}, {{"p", 0.5}, {"salt", int64_t(9)}});
    h.set_output("z", h.add(Op::add, {input(h, "x", {40}), d}));
    for (float key = 0; key < 8; ++key) {
      BothRuns r = run_both(h, {{"x", uniform({40}, -1, 1, 3)}, {"s", scalar_tensor(2)}, {"key", scalar_tensor(key)}});
      CHECK(r.kernels == 2);
      CHECK(bitwise_equal(r.jit.at("z"), r.ref.at("z")));
    }
  }
}

namespace {

/// op(A) op(B) for the given sizes, optionally with a bias + relu epilogue; returns the
/// largest error relative to sum_k |a_ik b_kj| (the scale rounding errors grow with).
double check_matmul(int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool epilogue, size_t& kernels, int width = 0) {
  Graph g;
  const Shape sa = ta ? Shape{k, m} : Shape{m, k}, sb = tb ? Shape{n, k} : Shape{k, n};
  NodeId a = input(g, "a", sa), b = input(g, "b", sb);
  NodeId c = g.add(Op::matmul, {a, b}, {{"trans_a", int64_t(ta)}, {"trans_b", int64_t(tb)}});
  if (epilogue) c = g.add(Op::relu, {g.add(Op::add, {c, input(g, "bias", {n})})});
  g.set_output("c", c);
  StateMap feeds{{"a", uniform(sa, -1, 1, 11)}, {"b", uniform(sb, -1, 1, 12)}};
  if (epilogue) feeds["bias"] = uniform({n}, -1, 1, 13);
  BothRuns r = run_both(g, feeds, {}, width);
  kernels = r.kernels;

  // The scale: |op(A)| |op(B)| (+ |bias|).
  Graph s;
  NodeId abs_a = input(s, "a", sa), abs_b = input(s, "b", sb);
  s.set_output("c", s.add(Op::matmul, {abs_a, abs_b}, {{"trans_a", int64_t(ta)}, {"trans_b", int64_t(tb)}}));
  StateMap abs_feeds{{"a", xt::abs(feeds["a"])}, {"b", xt::abs(feeds["b"])}};
  StateMap none;
  Tensor scale = interpret<float>(s, abs_feeds, none).at("c");
  if (epilogue) scale += xt::abs(feeds["bias"]);

  double worst = 0;
  const Tensor& got = r.jit.at("c");
  const Tensor& want = r.ref.at("c");
  for (size_t i = 0; i < want.size(); ++i)
    worst =
        std::max(worst, std::abs(double(got.data()[i]) - want.data()[i]) / std::max(1e-30, double(scale.data()[i])));
  return worst;
}

}  // namespace

TEST_CASE("matmul matches the interpreter for every transpose combination", "[jit]") {
  const std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1},     {7, 13, 5},  {6, 16, 8}, {33, 70, 19},
                                                     {64, 100, 40}, {12, 32, 3}, {5, 3, 64}, {13, 1, 9},
                                                     {9, 21, 600},   // K over one slice: partial sums in C
                                                     {7, 19, 601},   // and its last slice not whole vectors
                                                     {128, 37, 300}};  // M % 64 == 0: a transposed A is packed
  double worst = 0;
  for_each_matmul_case(sizes, [&](int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool epilogue) {
    size_t kernels = 0;
    const double err = check_matmul(m, n, k, ta, tb, epilogue, kernels);
    CHECK(kernels == 1);  // the bias add and relu ride in the matmul's epilogue
    CHECK(err < 1e-6);
    worst = std::max(worst, err);
  });
  std::cout << "jit matmul: max error relative to sum |a||b| " << worst << "\n";
}

TEST_CASE("a matmul read twice keeps its own kernel", "[jit]") {
  Graph g;
  NodeId c = g.add(Op::matmul, {input(g, "a", {4, 3}), input(g, "b", {3, 5})});
  g.set_output("c", c);
  g.set_output("r", g.add(Op::relu, {c}));
  BothRuns r = run_both(g, {{"a", uniform({4, 3}, -1, 1, 1)}, {"b", uniform({3, 5}, -1, 1, 2)}});
  CHECK(r.kernels == 2);
  CHECK(max_rel_error(r.jit.at("r"), r.ref.at("r")) < 1e-5);
}

TEST_CASE("matmul epilogues read operands of any broadcastable shape", "[jit]") {
  Graph g;
  NodeId c = g.add(Op::matmul, {input(g, "a", {11, 6}), input(g, "b", {6, 19})});
  NodeId e = g.add(Op::add, {c, input(g, "row", {11, 1})});
  e = g.add(Op::mul, {e, input(g, "residual", {11, 19})});
  e = g.add(Op::sigmoid, {g.add(Op::sub, {e, input(g, "s", {})})});
  g.set_output("y", e);
  StateMap feeds{{"a", uniform({11, 6}, -1, 1, 1)},
                 {"b", uniform({6, 19}, -1, 1, 2)},
                 {"row", uniform({11, 1}, -1, 1, 3)},
                 {"residual", uniform({11, 19}, -1, 1, 4)},
                 {"s", scalar_tensor(0.25f)}};
  BothRuns r = run_both(g, feeds);
  CHECK(r.kernels == 1);
  CHECK(max_rel_error(r.jit.at("y"), r.ref.at("y")) < 1e-5);
}

TEST_CASE("two matmuls summed: one is the epilogue's anchor, the other a kernel of its own", "[jit]") {
  Graph g;
  NodeId c1 = g.add(Op::matmul, {input(g, "a", {5, 7}), input(g, "b", {7, 9})});
  NodeId c2 = g.add(Op::matmul, {input(g, "x", {5, 3}), input(g, "y", {9, 3})}, {{"trans_b", int64_t(1)}});
  g.set_output("z", g.add(Op::relu, {g.add(Op::add, {c1, c2})}));
  const FusionPlan plan = fuse(g);
  REQUIRE(plan.groups.size() == 2);
  CHECK(describe_fusion(g, plan).find("already holds %") != std::string::npos);
  StateMap feeds{{"a", uniform({5, 7}, -1, 1, 1)},
                 {"b", uniform({7, 9}, -1, 1, 2)},
                 {"x", uniform({5, 3}, -1, 1, 3)},
                 {"y", uniform({9, 3}, -1, 1, 4)}};
  BothRuns r = run_both(g, feeds);
  CHECK(r.kernels == 2);
  CHECK(max_rel_error(r.jit.at("z"), r.ref.at("z")) < 1e-5);
}

TEST_CASE("kernels for other vector widths (SSE's 4, AVX-512's 16) are correct too", "[jit]") {
  // LLVM splits or narrows vectors the host lacks, so these shapes run anywhere.
  for (int width : {4, 16}) {
    INFO("vector width " << width);
    uint32_t seed = 100;
    for (Op op : kElementwiseOps) {
      INFO(op_info(op).name);
      const double tol = is_exact(op) ? 0 : kTranscendentalTolerance;
      const Range ra = first_range(op), rb = second_range(op);
      CHECK(check_op(op, {3, 4, 5, 5}, broadcasts(op) ? Shape{4, 1, 1} : Shape{3, 4, 5, 5}, seed++, ra, rb, width) <=
            tol);
      CHECK(check_op(op, {19}, {19}, seed++, ra, rb, width) <= tol);
    }
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const auto& [m, n, k] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {7, 13, 5}, {33, 70, 19}}) {
          INFO("M " << m << " N " << n << " K " << k << " trans_a " << ta << " trans_b " << tb);
          size_t kernels = 0;
          CHECK(check_matmul(m, n, k, ta, tb, true, kernels, width) < 1e-6);
        }
    Graph g;
    g.set_output("y",
                 g.add(Op::dropout, {input(g, "x", {9, 37}), input(g, "key", {})}, {{"p", 0.5}, {"salt", int64_t(4)}}));
    BothRuns r = run_both(g, {{"x", uniform({9, 37}, -1, 1, 8)}, {"key", scalar_tensor(4242)}}, {}, width);
    CHECK(bitwise_equal(r.jit.at("y"), r.ref.at("y")));
  }
}

TEST_CASE("kernel dumps name their nodes and source lines", "[jit]") {
  Graph g;
  NodeId h = g.add(Op::matmul, {input(g, "a", {9, 4}), input(g, "b", {4, 11})});
  g.set_output("y", g.add(Op::tanh, {h}));
  const std::string ir = dump_kernels(g, DumpStage::ir_before_opt);
  CHECK(ir.find("kernel k") != std::string::npos);
  CHECK(ir.find("test_jit.cpp:") != std::string::npos);
  CHECK(ir.find("define void @k") != std::string::npos);
  const std::string opt = dump_kernels(g, DumpStage::ir_after_opt);
  CHECK(opt.find("fma") != std::string::npos);
  const std::string asm_text = dump_kernels(g, DumpStage::assembly);
  CHECK(asm_text.find("# ==== kernel") != std::string::npos);
  CHECK(asm_text.find("ret") != std::string::npos);
  CHECK_THROWS_AS(compile_jit(g)->dump(DumpStage::assembly), Error);
}

TEST_CASE("a convolution's loops are kept from LLVM's unroller and other kernels' are not", "[jit]") {
  // Convolutions unroll their tiles themselves; LLVM's unroller only cost compile time there.
  Graph g;
  NodeId x = input(g, "x", {2, 3, 9, 9});
  NodeId conv = g.add(Op::conv2d, {x, input(g, "w", {8, 3, 3, 3})}, {{"stride", int64_t(1)}, {"pad", int64_t(1)}});
  g.set_output("c", conv);
  g.set_output("m", g.add(Op::relu, {g.add(Op::matmul, {input(g, "a", {9, 40}), input(g, "b", {40, 33})})}));
  const std::string ir = dump_kernels(g, DumpStage::ir_before_opt);
  auto count_of = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  // Each kernel's text, by its name in the "; ==== kernel NAME ====" line that opens it.
  const std::string opening = "; ==== kernel ";
  std::map<std::string, std::string> text;
  for (size_t at = ir.find(opening); at != std::string::npos;) {
    const size_t next = ir.find(opening, at + 1);
    const std::string part = ir.substr(at, next == std::string::npos ? std::string::npos : next - at);
    text[part.substr(opening.size(), part.find(' ', opening.size()) - opening.size())] = part;
    at = next;
  }
  int convs = 0, matmuls = 0;
  for (const auto& [name, part] : text) {
    INFO(name);
    const size_t loops = count_of(part, "br i1"), marked = count_of(part, "!llvm.loop !");
    if (name.find("conv2d") != std::string::npos) {
      ++convs;
      CHECK(marked > 0);
      CHECK(part.find("llvm.loop.unroll.disable") != std::string::npos);
    } else if (name.find("matmul") != std::string::npos) {
      ++matmuls;
      CHECK(loops > 0);
      CHECK(marked == 0);
    }
  }
  CHECK(convs == 1);
  CHECK(matmuls == 1);
}

TEST_CASE("run reports missing feeds and bad dropout keys like the interpreter", "[jit][errors]") {
  Graph g;
  NodeId x = input(g, "x", {4});
  g.set_output("y",
               g.add(Op::dropout, {g.add(Op::relu, {x}), input(g, "key", {})}, {{"p", 0.5}, {"salt", int64_t(1)}}));
  auto plan = compile_jit(g);
  StateMap state;
  CHECK_THROWS_WITH(plan->run({{"key", scalar_tensor(1)}}, state), Catch::Contains("missing feed 'x'"));
  CHECK_THROWS_WITH(plan->run({{"x", make_tensor({5})}, {"key", scalar_tensor(1)}}, state),
                    Catch::Contains("has shape [5]"));
  CHECK_THROWS_WITH(plan->run({{"x", make_tensor({4})}, {"key", scalar_tensor(0.5f)}}, state),
                    Catch::Contains("dropout key"));
}

TEST_CASE("layout ops and reductions run as kernels inside the plan", "[jit]") {
  Graph g;
  NodeId x = input(g, "x", {3, 4});
  NodeId t = g.add(Op::transpose, {g.add(Op::exp, {x})}, {{"perm", std::vector<int64_t>{1, 0}}});
  NodeId s = g.add(Op::reduce_sum, {t}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t(0)}});
  g.set_output("s", g.add(Op::mul, {s, g.add(Op::constant, {}, {{"value", 2.0}, {"shape", Shape{}}})}));
  auto plan = compile_jit(g);
  CHECK(plan->kernels().size() == 4);  // exp, transpose, reduce_sum (no epilogue), its scaling
  StateMap state;
  StateMap feeds{{"x", uniform({3, 4}, -1, 1, 5)}};
  CHECK(max_rel_error(plan->run(feeds, state).at("s"), interpret<float>(g, feeds, state).at("s")) < 1e-6);
}

namespace {

Value small_mlp(Model& m, Value x) {
  x = m.dropout(relu(m.dense(flatten(x), 24)), 0.25f);
  x = tanh(m.dense(x, 16));
  return m.dense(x, 10);
}

}  // namespace

TEST_CASE("a dense model's training step matches the interpreter and is deterministic", "[jit]") {
  const int64_t batch = 8;
  OptimizerConfig adam;
  adam.kind = OptimizerConfig::Kind::adam;
  const Graph g = build_training_step(small_mlp, batch, adam, {1, 6, 6});
  StateMap initial;
  initialize_state(g, initial, 42);

  auto plan = compile_jit(g);
  StateMap jit_state = initial, ref_state = initial;
  double loss_err = 0, state_err = 0;
  for (int step = 0; step < 3; ++step) {
    const StateMap feeds = training_feeds(g, batch, step);
    const StateMap got = plan->run(feeds, jit_state);
    const StateMap want = interpret<float>(g, feeds, ref_state);
    loss_err = std::max(loss_err, max_state_error(got, want));
    state_err = std::max(state_err, max_state_error(jit_state, ref_state));
  }
  CHECK(loss_err < 1e-5);
  CHECK(state_err < 1e-5);
  std::cout << "jit training step: " << plan->kernels().size() << " kernels; max error: outputs " << loss_err
            << ", state " << state_err << "\n";

  // A second plan from the same state gives the same bits.
  auto again = compile_jit(g);
  StateMap s1 = initial, s2 = initial;
  const StateMap feeds = training_feeds(g, batch, 0);
  const StateMap o1 = plan->run(feeds, s1), o2 = again->run(feeds, s2);
  for (const auto& [name, t] : o1) CHECK(bitwise_equal(t, o2.at(name)));
  for (const auto& [name, t] : s1) CHECK(bitwise_equal(t, s2.at(name)));
}

TEST_CASE("shards' gradient steps draw their parts of the whole batch's dropout masks", "[jit]") {
  // A batch of 6 split 2 + 4, as two ranks split it. The dropout precedes two dense layers, so
  // a wrong mask changes the shard's logits, while the right one leaves them the whole batch's
  // rows to rounding.
  const Shape image = {1, 6, 6};
  const Graph whole = build_gradient_step(small_mlp, 6, image);
  StateMap initial;
  initialize_state(whole, initial, 42);
  const StateMap feeds = training_feeds(whole, 6, 0);
  const auto rows = [](const Tensor& t, int64_t first, int64_t count) {
    std::vector<size_t> shape(t.shape().begin(), t.shape().end());
    const size_t per_row = t.size() / shape[0];
    shape[0] = static_cast<size_t>(count);
    Tensor part = Tensor::from_shape(shape);
    std::copy_n(t.begin() + first * static_cast<int64_t>(per_row), part.size(), part.begin());
    return part;
  };
  // The logits of examples [first, first + count) run as a shard that claims to start at `claimed`.
  const auto shard_logits = [&](int64_t first, int64_t count, int64_t claimed) {
    const Graph g = build_gradient_step(small_mlp, count, image, 10, 0, claimed);
    StateMap state = initial;
    const StateMap part{{"x", rows(feeds.at("x"), first, count)},
                        {"labels", rows(feeds.at("labels"), first, count)},
                        {Model::kDropoutKey, feeds.at(Model::kDropoutKey)}};
    return compile_jit(g)->run(part, state).at("logits");
  };
  StateMap state = initial;
  const Tensor want = compile_jit(whole)->run(feeds, state).at("logits");
  const Tensor head = shard_logits(0, 2, 0), tail = shard_logits(2, 4, 2);
  Tensor got = Tensor::from_shape(want.shape());
  std::copy(tail.begin(), tail.end(), std::copy(head.begin(), head.end(), got.begin()));
  CHECK(max_state_error({{"logits", got}}, {{"logits", want}}) < 1e-5);
  CHECK(max_state_error({{"logits", shard_logits(2, 4, 0)}}, {{"logits", rows(want, 2, 4)}}) > 1e-2);
}

TEST_CASE("identical kernels compile once, and a second plan loads them from the disk cache", "[jit][cache]") {
  testing::TempDir dir("kernel-cache");
  ::setenv("DAGGER_CACHE_DIR", dir.path.c_str(), 1);
  Graph g;
  NodeId a = input(g, "a", {13, 7}), b = input(g, "b", {13, 7});
  g.set_output("x", g.add(Op::tanh, {g.add(Op::mul, {a, b})}));
  g.set_output("y", g.add(Op::tanh, {g.add(Op::mul, {b, a})}));  // the same code on swapped buffers
  const StateMap feeds{{"a", uniform({13, 7}, -1, 1, 1)}, {"b", uniform({13, 7}, -1, 1, 2)}};
  StateMap none;

  auto cold = compile_jit(g);
  const StateMap first = cold->run(feeds, none);
  CHECK(cold->compile_stats().modules == 2);
  CHECK(cold->compile_stats().unique == 1);
  CHECK(cold->compile_stats().cache_hits == 0);

  auto warm = compile_jit(g);
  const StateMap second = warm->run(feeds, none);
  CHECK(warm->compile_stats().cache_hits == 1);
  CHECK(bitwise_equal(first.at("x"), second.at("x")));
  CHECK(bitwise_equal(first.at("y"), second.at("y")));

  // A damaged cache entry is ignored and rewritten.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path)) std::ofstream(entry.path()) << "not an object";
  auto repaired = compile_jit(g);
  CHECK(repaired->compile_stats().cache_hits == 0);
  CHECK(bitwise_equal(repaired->run(feeds, none).at("x"), first.at("x")));
  ::setenv("DAGGER_CACHE_DIR", "off", 1);
}

TEST_CASE("each Adam update is one pass over its parameter, storing the new moments beside it", "[jit]") {
  OptimizerConfig adam;
  adam.kind = OptimizerConfig::Kind::adam;
  const Graph g = build_training_step(small_mlp, 4, adam, {1, 6, 6});
  const FusionPlan plan = fuse(g);
  int updates = 0;
  for (NodeId id : g.nodes_of(Op::assign)) {
    const NodeId value = g.node(id).operands[0];
    const std::string& target = g.node(id).attrs.s("target");
    bool is_parameter = false;
    for (NodeId p : g.nodes_of(Op::parameter)) is_parameter = is_parameter || g.node(p).attrs.s("name") == target;
    if (!is_parameter) continue;
    ++updates;
    INFO("update of " << target);
    const int k = plan.group_of[value];
    REQUIRE(k >= 0);
    const FusionGroup& group = plan.groups[static_cast<size_t>(k)];
    CHECK(group.root == value);
    CHECK(group.side_outputs.size() == 2);  // the new first and second moments
    for (NodeId side : group.side_outputs) CHECK(g.shape(side) == g.shape(value));
  }
  CHECK(updates == 6);  // three dense layers, a weight and a bias each
}

namespace {

/// state s [37] := s * c + c, with a reduce_sum of s either before the update (`read_after`
/// false) or after it; the sum is the output.
Graph update_with_a_reader(bool read_after) {
  Graph g;
  const NodeId s = g.add(Op::state, {}, {{"name", "s"}, {"shape", Shape{37}}, {"init", std::string("zeros")}});
  const NodeId c = input(g, "c", {37});
  auto sum = [&] {
    g.set_output("sum", g.add(Op::reduce_sum, {s}, {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t(0)}}));
  };
  if (!read_after) sum();
  const NodeId v = g.add(Op::add, {g.add(Op::mul, {s, c}), c});
  if (read_after) sum();
  g.add(Op::assign, {v}, {{"target", std::string("s")}});
  return g;
}

size_t in_place_writes(const FusionPlan& plan) {
  size_t count = 0;
  for (const FusionGroup& group : plan.groups) count += group.in_place.size();
  return count;
}

}  // namespace

TEST_CASE("updates are stored in place into their state tensors unless a later step reads the old value", "[jit]") {
  OptimizerConfig adam;
  adam.kind = OptimizerConfig::Kind::adam;
  const Graph step = build_training_step(small_mlp, 4, adam, {1, 6, 6});
  // Six parameters with two moments each, and the step count: all nineteen new values go
  // straight into their state tensors.
  CHECK(in_place_writes(plan_fusion(step)) == 19);

  // Momentum: a weight's gradient is read only by its update, so the update is the epilogue of
  // the gradient's matmul, which then keeps no partial sums in C and stores in place too: the
  // six parameters, their six velocities and the step count. Three steps match the
  // interpreter's state.
  OptimizerConfig momentum;
  momentum.kind = OptimizerConfig::Kind::momentum;
  const Graph heavy = build_training_step(small_mlp, 4, momentum, {1, 6, 6});
  CHECK(in_place_writes(plan_fusion(heavy)) == 13);
  StateMap initial;
  initialize_state(heavy, initial, 7);
  StateMap jit_state = initial, ref_state = initial;
  auto plan = compile_jit(heavy);
  for (int s = 0; s < 3; ++s) {
    const StateMap feeds = training_feeds(heavy, 4, s);
    plan->run(feeds, jit_state);
    interpret<float>(heavy, feeds, ref_state);
  }
  CHECK(max_state_error(jit_state, ref_state) < 1e-5);

  for (bool read_after : {false, true}) {
    INFO("the sum reads the state " << (read_after ? "after" : "before") << " the update's kernel");
    const Graph g = update_with_a_reader(read_after);
    CHECK(in_place_writes(plan_fusion(g)) == (read_after ? 0 : 1));
    StateMap jit_state{{"s", uniform({37}, -1, 1, 3)}}, ref_state = jit_state;
    const StateMap feeds{{"c", uniform({37}, 0.5, 2, 4)}};
    auto plan = compile_jit(g);
    for (int run = 0; run < 2; ++run) {
      const StateMap got = plan->run(feeds, jit_state), want = interpret<float>(g, feeds, ref_state);
      CHECK(max_rel_error(got.at("sum"), want.at("sum")) < 1e-6);
      CHECK(bitwise_equal(jit_state.at("s"), ref_state.at("s")));
    }
  }
}

TEST_CASE("an update in its gradient product's epilogue is stored in place, to the same bits", "[jit]") {
  // SGD's and momentum's update of a dense weight read the weight's gradient, a matmul, once:
  // the update is the product's epilogue, and the kernel stores the new weight (and velocity)
  // over the old ones (plan_in_place), keeping no partial sums in C (GemmSizes::whole_k) and
  // running each row tile across all of B's panels (GemmLayout::tiles_outer). Nesterov's
  // momentum reads the gradient twice, with additions and multiplications only: its update
  // joins the product too (merge_shared_products). Adam's and AdamW's, with a square root and a
  // division, keep kernels of their own. The
  // same step with every matmul also an output stores each product and updates in a kernel of
  // its own: the state must be the same bits after two steps, and match the interpreter.
  // Batches of 5 and 300 (the products' reduction; 300 runs in several slices at every width
  // unless the whole reduction is kept in registers, as it must be when the kernel stores over
  // what its epilogue reads), and a hidden layer of 131 (several panels and a partial one at
  // every width); float32 products at widths 4, 8 and 16, and bfloat16 ones where the host
  // has AVX512_BF16.
  auto odd_mlp = [](Model& m, Value x) { return m.dense(tanh(m.dense(flatten(x), 131)), 10); };
  std::vector<std::pair<std::string, OptimizerConfig>> optimizers;
  for (auto kind : {OptimizerConfig::Kind::sgd, OptimizerConfig::Kind::momentum, OptimizerConfig::Kind::adam,
                    OptimizerConfig::Kind::adamw}) {
    OptimizerConfig o;
    o.kind = kind;
    o.lr = 0.05;
    optimizers.emplace_back(optimizer_name(kind), o);
  }
  OptimizerConfig decayed = optimizers[1].second, nesterov = optimizers[1].second;
  decayed.weight_decay = 0.01;  // the gradient plus the L2 term, still read once
  nesterov.nesterov = true;
  optimizers.emplace_back("momentum with weight decay", decayed);
  optimizers.emplace_back("nesterov", nesterov);
  auto state_writes = [](const Graph& g, const FusionPlan& p) {
    size_t count = 0;
    for (const FusionGroup& group : p.groups)
      for (const auto& [output, source] : group.in_place)
        count += op_info(g.node(source).op).category == OpCategory::Source ? 1 : 0;
    return count;
  };
  // Images of 42 and 143 floats: the first weight's gradient has rows enough to read B in
  // place, or not (then B is packed, and with SGD and momentum the tiles run across its panels).
  for (const auto& [name, optimizer] : optimizers)
    for (const auto& [batch, image] : {std::pair<int64_t, Shape>{5, {1, 6, 7}}, {300, {1, 6, 7}}, {300, {1, 11, 13}}}) {
      INFO(name << ", batch " << batch << ", image " << to_string(image));
      const Graph fused = build_training_step(odd_mlp, batch, optimizer, image);
      Graph stored = fused;
      int products = 0;
      for (const Node& n : fused.nodes())
        if (n.op == Op::matmul) stored.set_output(fmt::format("product{}", products++), n.id);
      StateMap initial;
      initialize_state(fused, initial, 11);
      // Every parameter, moment and the step count goes in place in both plans; in the fused
      // one, SGD's and momentum's (Nesterov's too) through both weights' products.
      const FusionPlan plan = plan_fusion(fused);
      int updated_by_product = 0;
      for (const FusionGroup& group : plan.groups)
        if (group.anchor >= 0 && fused.node(group.anchor).op == Op::matmul && !group.in_place.empty())
          ++updated_by_product;
      const bool by_product =
          optimizer.kind == OptimizerConfig::Kind::sgd || optimizer.kind == OptimizerConfig::Kind::momentum;
      CHECK(updated_by_product == (by_product ? 2 : 0));
      CHECK(state_writes(fused, plan) == initial.size());
      CHECK(state_writes(stored, plan_fusion(stored)) == initial.size());
      // bfloat16 products too where the JIT target has AVX512_BF16 (width 16 only).
      std::vector<std::pair<int, Precision>> kinds{{4, Precision::f32}, {8, Precision::f32}, {16, Precision::f32}};
      if (bf16_refusal(jit_target()).empty() && jit_target().vector_width == 16)
        kinds.emplace_back(16, Precision::bf16);
      for (const auto& [width, precision] : kinds)
        for (int threads : {1, 2, 3}) {
          INFO("width " << width << ", " << precision_name(precision) << ", " << threads << " threads");
          JitOptions options;
          options.vector_width = width;
          options.threads = threads;
          options.poison_arena = true;
          options.precision = precision;
          auto with = compile_jit(fused, options);
          auto without = compile_jit(stored, options);
          StateMap got = initial, reference = initial, interpreted = initial;
          for (int step = 0; step < 2; ++step) {
            const StateMap feeds = training_feeds(fused, batch, step);
            with->run(feeds, got);
            without->run(feeds, reference);
            if (width == 16 && precision == Precision::f32 && threads == 2) interpret<float>(fused, feeds, interpreted);
          }
          for (const auto& [state, t] : got) {
            INFO(state);
            CHECK(bitwise_equal(t, reference.at(state)));
          }
          if (width == 16 && precision == Precision::f32 && threads == 2)
            CHECK(max_state_error(got, interpreted) < 1e-5);
        }
    }
}

namespace {

/// The plan's writes over an input the arena holds (plan_overwrites), as (output, input) pairs:
/// in-place pairs whose source is computed, not a parameter or state tensor.
std::vector<std::pair<NodeId, NodeId>> overwrites(const Graph& g, const FusionPlan& plan) {
  std::vector<std::pair<NodeId, NodeId>> pairs;
  for (const FusionGroup& group : plan.groups)
    for (const auto& pair : group.in_place)
      if (op_info(g.node(pair.second).op).category != OpCategory::Source) pairs.push_back(pair);
  return pairs;
}

/// How the test graph below reads the stored value a = neg(x) besides b's kernel.
enum class OtherReader { before, after, output, reshape_before };

/// a = neg(x) [17, 29] is stored (a reduction reads it); b = a * y + y and c = b - y are
/// elementwise (c and b one kernel, run where c is), and out = c's value. `other` places the
/// reduction of a before that kernel or after it, makes a an output too, or reduces a reshape of
/// a before the kernel.
Graph overwrite_graph(OtherReader other) {
  Graph g;
  const Shape shape{17, 29};
  const NodeId x = input(g, "x", shape), y = input(g, "y", shape);
  const NodeId a = g.add(Op::neg, {x});
  auto sum_of = [&](NodeId v) {
    g.set_output("sum", g.add(Op::reduce_sum, {v}, {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t(0)}}));
  };
  if (other == OtherReader::before || other == OtherReader::output) sum_of(a);
  if (other == OtherReader::reshape_before) sum_of(g.add(Op::reshape, {a}, {{"shape", Shape{29, 17}}}));
  if (other == OtherReader::output) g.set_output("a", a);
  const NodeId b = g.add(Op::add, {g.add(Op::mul, {a, y}), y});
  g.set_output("out", g.add(Op::sub, {b, y}));
  if (other == OtherReader::after) sum_of(a);  // its kernel runs after out's
  return g;
}

}  // namespace

TEST_CASE("an elementwise kernel stores over an input it is the last reader of and nowhere else", "[jit]") {
  const StateMap feeds{{"x", uniform({17, 29}, -2, 2, 31)}, {"y", uniform({17, 29}, -2, 2, 32)}};
  for (OtherReader other :
       {OtherReader::before, OtherReader::after, OtherReader::output, OtherReader::reshape_before}) {
    INFO("other reader " << static_cast<int>(other));
    const Graph g = overwrite_graph(other);
    const FusionPlan plan = plan_fusion(g);
    const auto pairs = overwrites(g, plan);
    if (other == OtherReader::before) {
      REQUIRE(pairs.size() == 1);
      CHECK(g.node(pairs[0].first).op == Op::sub);
      CHECK(g.node(pairs[0].second).op == Op::neg);
      CHECK(describe_fusion(g, plan).find("(in place, into %") != std::string::npos);
    } else {
      CHECK(pairs.empty());
    }
    // a's and out's 493 floats each take 496 in the arena (64-byte steps), the sum's 29 or 17
    // take 32: where out overwrites a, one such buffer fewer.
    CHECK(planned_arena_bytes(g) == (other == OtherReader::before ? 496 + 32 : 2 * 496 + 32) * 4);
    for (int width : {4, 8, 16})
      for (int threads : {1, 2, 3}) {
        INFO("width " << width << ", " << threads << " threads");
        JitOptions options;
        options.poison_arena = true;
        options.vector_width = width;
        options.threads = threads;
        auto jit = compile_jit(g, options);
        StateMap state;
        for (int run = 0; run < 2; ++run) {  // the second run reuses the arena the first overwrote
          const StateMap got = jit->run(feeds, state), want = interpret<float>(g, feeds, state);
          for (const auto& [name, tensor] : want) {
            INFO(name << ", run " << run);
            CHECK(bitwise_equal(got.at(name), tensor));
          }
        }
      }
  }
}
