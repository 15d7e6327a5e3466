// The JIT's convolution kernels (forward with an epilogue, data and filter gradients) against
// the interpreter on geometries that exercise every path: odd sizes that leave partial
// panels and row tiles, strides, no padding, 1x1 and non-square filters, batch 1, 7 and 64,
// vector widths of other hosts, and thread splits.
#include <array>
#include <catch2/catch.hpp>
#include <iostream>

#include "dagger/codegen/fusion.h"
#include "codegen/jit_support.h"
#include "op_coverage.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

const std::vector<Op> kConvOps = jit_tests({Op::conv2d, Op::conv2d_backward_data, Op::conv2d_backward_filter});

struct ConvCase {
  int64_t n, c, h, w, k, r, s, stride, pad;
};

const std::vector<ConvCase> kCases = {
    {1, 1, 5, 5, 3, 3, 3, 1, 1},     // one image, one channel, tiny
    {7, 3, 9, 11, 5, 3, 3, 1, 1},    // odd everything: partial panels and row tiles
    {2, 4, 8, 8, 6, 3, 3, 2, 1},     // stride 2
    {3, 5, 7, 7, 9, 1, 1, 1, 0},     // a 1x1 projection
    {2, 2, 10, 9, 4, 3, 2, 2, 0},    // non-square filter, stride 2, no padding
    {64, 8, 6, 6, 13, 3, 3, 1, 1},   // batch 64
    {2, 32, 14, 14, 64, 3, 3, 1, 1}, // a cnn3 layer
    // Reductions packed in several slices, the last one shorter: the forward's 40 channels, the
    // filter gradient's 23 rows of 23 (not a multiple of the vector width) and, at stride 2,
    // 20 rows of 20.
    {2, 40, 6, 6, 7, 3, 3, 1, 1},
    {1, 3, 23, 23, 5, 3, 3, 1, 1},
    {1, 2, 40, 40, 3, 3, 3, 2, 1},
};

/// The op's value on both executors, and the largest error relative to the same op applied to
/// the operands' absolute values (the scale a sum of products' rounding grows with).
double check(Op op, const ConvCase& v, bool epilogue, int width, int threads, size_t* kernels = nullptr) {
  const Shape x{v.n, v.c, v.h, v.w}, f{v.k, v.c, v.r, v.s};
  const Shape y{v.n, v.k, (v.h + 2 * v.pad - v.r) / v.stride + 1, (v.w + 2 * v.pad - v.s) / v.stride + 1};
  const Attrs geometry{{"stride", v.stride}, {"pad", v.pad}};
  Shape a_shape, b_shape;
  Attrs attrs = geometry;
  if (op == Op::conv2d) {
    a_shape = x, b_shape = f;
  } else if (op == Op::conv2d_backward_data) {
    a_shape = y, b_shape = f;
    attrs.set("shape", x);
  } else {
    REQUIRE(op == Op::conv2d_backward_filter);
    a_shape = x, b_shape = y;
    attrs.set("shape", f);
  }
  auto build = [&](bool with_epilogue) {
    Graph g;
    NodeId out = g.add(op, {input(g, "a", a_shape), input(g, "b", b_shape)}, attrs);
    if (with_epilogue) {
      const int64_t channels = g.shape(out)[1];
      out = g.add(Op::relu, {g.add(Op::add, {out, input(g, "bias", {channels, 1, 1})})});
    }
    g.set_output("out", out);
    return g;
  };
  const Graph g = build(epilogue);
  const int64_t channels = op == Op::conv2d_backward_data ? v.c : v.k;
  StateMap feeds{{"a", uniform(a_shape, -1, 1, 21)}, {"b", uniform(b_shape, -1, 1, 22)}};
  if (epilogue) feeds["bias"] = uniform({channels, 1, 1}, -1, 1, 23);
  const BothRuns r = run_both(g, feeds, {}, width, threads);
  if (kernels) *kernels = r.kernels;

  StateMap abs_feeds{{"a", xt::abs(feeds["a"])}, {"b", xt::abs(feeds["b"])}}, none;
  Tensor scale = interpret<float>(build(false), abs_feeds, none).at("out");
  if (epilogue) scale += xt::abs(feeds["bias"]);
  const Tensor& got = r.jit.at("out");
  const Tensor& want = r.ref.at("out");
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::abs(double(got.data()[i]) - want.data()[i]) / std::max(1e-30, double(scale.data()[i])));
  return worst;
}

}  // namespace

TEST_CASE("conv2d and both of its gradients match the interpreter", "[jit][conv]") {
  double worst = 0;
  for (const ConvCase& v : kCases)
    for (Op op : kConvOps) {
      INFO(op_info(op).name << " N " << v.n << " C " << v.c << " H " << v.h << " W " << v.w << " K " << v.k << " R "
                            << v.r << " S " << v.s << " stride " << v.stride << " pad " << v.pad);
      const bool epilogue = op != Op::conv2d_backward_filter;
      size_t kernels = 0;
      const double err = check(op, v, epilogue, 0, 1, &kernels);
      CHECK(kernels == 1);  // the bias add and relu ride in the convolution's epilogue
      CHECK(err < 1e-6);
      worst = std::max(worst, err);
    }
  std::cout << "jit conv: max error relative to the sum of |products| " << worst << "\n";
}

TEST_CASE("convolution kernels split over threads give the same bits", "[jit][conv]") {
  const ConvCase v{7, 3, 9, 11, 5, 3, 3, 1, 1};
  for (Op op : kConvOps) {
    INFO(op_info(op).name);
    Graph g;
    const Shape x{v.n, v.c, v.h, v.w}, f{v.k, v.c, v.r, v.s}, y{v.n, v.k, v.h, v.w};
    Attrs attrs{{"stride", v.stride}, {"pad", v.pad}};
    Shape a = x, b = f;
    if (op == Op::conv2d_backward_data) a = y, attrs.set("shape", x);
    if (op == Op::conv2d_backward_filter) b = y, attrs.set("shape", f);
    g.set_output("out", g.add(op, {input(g, "a", a), input(g, "b", b)}, attrs));
    const StateMap feeds{{"a", uniform(a, -1, 1, 31)}, {"b", uniform(b, -1, 1, 32)}};
    StateMap none;
    JitOptions one, three;
    three.threads = 3;
    const Tensor serial = compile_jit(g, one)->run(feeds, none).at("out");
    const Tensor split = compile_jit(g, three)->run(feeds, none).at("out");
    CHECK(bitwise_equal(serial, split));
  }
}

TEST_CASE("convolution kernels for other vector widths are correct too", "[jit][conv]") {
  for (int width : {4, 16})
    for (const ConvCase& v : {kCases[1], kCases[2], kCases[8]})
      for (Op op : kConvOps) {
        INFO("width " << width << " " << op_info(op).name << " N " << v.n << " C " << v.c << " stride " << v.stride);
        CHECK(check(op, v, op != Op::conv2d_backward_filter, width, 2) < 1e-6);
      }
}

TEST_CASE("a conv's bias and relu fuse; its filter gradient is a kernel of its own", "[jit][conv]") {
  Graph g;
  NodeId x = input(g, "x", {2, 3, 6, 6}), w = input(g, "w", {4, 3, 3, 3});
  NodeId y = g.add(Op::conv2d, {x, w}, {{"stride", int64_t(1)}, {"pad", int64_t(1)}});
  NodeId act = g.add(Op::relu, {g.add(Op::add, {y, input(g, "bias", {4, 1, 1})})});
  NodeId dw = g.add(Op::conv2d_backward_filter, {x, act}, {{"stride", int64_t(1)}, {"pad", int64_t(1)}, {"shape", Shape{4, 3, 3, 3}}});
  g.set_output("dw", g.add(Op::mul, {dw, input(g, "scale", {})}));
  const FusionPlan plan = fuse(g);
  REQUIRE(plan.groups.size() == 3);
  CHECK(plan.groups[0].nodes.size() == 3);  // conv2d, add, relu
  CHECK(plan.groups[1].nodes.size() == 1);  // the filter gradient alone
  CHECK(describe_fusion(g, plan).find("takes no epilogue") != std::string::npos);
}

namespace {

/// dw[f, c] of a 1x1 filter as emit_pointwise_filter_grad sums it (codegen/partials.h): per
/// (filter, channel) 16 float partials, position j of each image's plane into partial j % 16,
/// images in order, then the partials folded partial 0 first.
Tensor pointwise_sums(const Tensor& x, const Tensor& dy, const ConvCase& v) {
  Tensor dw = make_tensor({v.k, v.c, 1, 1});
  const int64_t positions = v.h * v.w;
  for (int64_t f = 0; f < v.k; ++f)
    for (int64_t c = 0; c < v.c; ++c) {
      float partials[16] = {};
      for (int64_t n = 0; n < v.n; ++n)
        for (int64_t j = 0; j < positions; ++j) {
          const float product = dy.data()[(n * v.k + f) * positions + j] * x.data()[(n * v.c + c) * positions + j];
          partials[j % 16] += product;
        }
      float sum = partials[0];
      for (int p = 1; p < 16; ++p) sum += partials[p];
      dw.data()[f * v.c + c] = sum;
    }
  return dw;
}

}  // namespace

TEST_CASE("a 1x1 filter gradient over few channels is summed per (filter, channel)", "[jit][conv]") {
  // c <= 9 (rescnn's first projection skip reads one channel): the kernel sums each (filter,
  // channel) along the positions. Its bits must be those of the order above at every vector
  // width and thread count, within the GEMM's error of the interpreter; with 10 channels, or a
  // 3x3 filter, the GEMM computes it (within the same error).
  for (const ConvCase& v : std::vector<ConvCase>{{64, 1, 28, 28, 32, 1, 1, 1, 0},  // rescnn's first skip
                                                 {3, 1, 5, 7, 5, 1, 1, 1, 0},
                                                 {7, 9, 3, 17, 13, 1, 1, 1, 0},
                                                 {2, 1, 1, 1, 3, 1, 1, 1, 0},
                                                 {5, 2, 4, 9, 50, 1, 1, 1, 0},
                                                 {1, 3, 2, 33, 1, 1, 1, 1, 0}}) {
    INFO("N " << v.n << " C " << v.c << " H " << v.h << " W " << v.w << " K " << v.k);
    const Shape x{v.n, v.c, v.h, v.w}, y{v.n, v.k, v.h, v.w};
    Graph g;
    g.set_output("dw", g.add(Op::conv2d_backward_filter, {input(g, "x", x), input(g, "dy", y)},
                             {{"stride", v.stride}, {"pad", v.pad}, {"shape", Shape{v.k, v.c, 1, 1}}}));
    const StateMap feeds{{"x", uniform(x, -1, 1, 51)}, {"dy", uniform(y, -1, 1, 52)}};
    const Tensor want = pointwise_sums(feeds.at("x"), feeds.at("dy"), v);
    for (auto [width, threads] :
         {std::pair{0, 1}, std::pair{0, 2}, std::pair{4, 3}, std::pair{8, 2}, std::pair{16, 3}}) {
      INFO("width " << width << ", " << threads << " threads");
      JitOptions options;
      options.vector_width = width;
      options.threads = threads;
      StateMap none;
      CHECK(bitwise_equal(compile_jit(g, options)->run(feeds, none).at("dw"), want));
    }
    CHECK(check(Op::conv2d_backward_filter, v, false, 0, 2) < 1e-6);
  }
  for (const ConvCase& v : std::vector<ConvCase>{{3, 10, 5, 7, 5, 1, 1, 1, 0}, {3, 1, 5, 7, 5, 3, 3, 1, 1}})
    CHECK(check(Op::conv2d_backward_filter, v, false, 0, 2) < 1e-6);
}
