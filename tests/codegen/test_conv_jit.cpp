// The JIT's convolution kernels (forward with an epilogue, data and filter gradients) against
// the interpreter on geometries that exercise every path: odd sizes that leave partial
// panels and row tiles, strides, no padding, 1x1 and non-square filters, batch 1, 7 and 64,
// vector widths of other hosts, and thread splits.
#include <array>
#include <catch2/catch.hpp>
#include <iostream>

#include "codegen/jit_support.h"
#include "dagger/autodiff/step.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/host_tuning.h"
#include "dagger/runtime/init.h"
#include "op_coverage.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

const std::vector<Op> kConvOps = jit_tests({Op::conv2d, Op::conv2d_backward_data, Op::conv2d_backward_filter});

struct ConvCase {
  int64_t n, c, h, w, k, r, s, stride, pad;
};

const std::vector<ConvCase> kCases = {
    {1, 1, 5, 5, 3, 3, 3, 1, 1},      // one image, one channel, tiny
    {7, 3, 9, 11, 5, 3, 3, 1, 1},     // odd everything: partial panels and row tiles
    {2, 4, 8, 8, 6, 3, 3, 2, 1},      // stride 2
    {3, 5, 7, 7, 9, 1, 1, 1, 0},      // a 1x1 projection
    {2, 2, 10, 9, 4, 3, 2, 2, 0},     // non-square filter, stride 2, no padding
    {64, 8, 6, 6, 13, 3, 3, 1, 1},    // batch 64
    {2, 32, 14, 14, 64, 3, 3, 1, 1},  // a cnn3 layer
    // Reductions packed in several slices, the last one shorter: the forward's 40 channels, the
    // filter gradient's 23 rows of 23 (not a multiple of the vector width) and, at stride 2,
    // 20 rows of 20.
    {2, 40, 6, 6, 7, 3, 3, 1, 1},
    {1, 3, 23, 23, 5, 3, 3, 1, 1},
    {1, 2, 40, 40, 3, 3, 3, 2, 1},
    // 1x1 products reading each image of x (forward) or dy (data gradient) where it stands:
    // 99 columns (two panels of 48 and 3 at width 16), 17 and 6 rows.
    {5, 6, 9, 11, 17, 1, 1, 1, 0},
    // At width 16, products of 17-32 columns on the 12 x 2 tile: the filter gradient's 20
    // columns (one tile of 12 rows and one of 1), the forward's and data gradient's 30.
    {3, 20, 5, 6, 13, 1, 1, 1, 0},
    // At width 16, the wide 6 x 4 tile, which pads 63 columns less than the 8 x 3 tile: the
    // filter gradient's 63 (7 channels of 3 x 3), 10 rows (one tile of 6 and one of 4).
    {2, 7, 6, 5, 10, 3, 3, 1, 1},
};

/// The op's value on both executors, and the largest error relative to the same op applied to
/// the operands' absolute values (the scale a sum of products' rounding grows with).
/// Where `ir` is given, the plan's optimized IR is kept there.
double check(Op op, const ConvCase& v, bool epilogue, int width, int threads, size_t* kernels = nullptr,
             std::string* ir = nullptr) {
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
  const BothRuns r = run_both(g, feeds, {}, width, threads, ir != nullptr);
  if (kernels) *kernels = r.kernels;
  if (ir) *ir = r.ir;

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
  for (const ConvCase& v : {kCases[1], kCases[10]})
    for (Op op : kConvOps) {
      INFO(op_info(op).name << " R " << v.r);
      Graph g;
      const Shape x{v.n, v.c, v.h, v.w}, f{v.k, v.c, v.r, v.s};
      const Shape y{v.n, v.k, (v.h + 2 * v.pad - v.r) / v.stride + 1, (v.w + 2 * v.pad - v.s) / v.stride + 1};
      Attrs attrs{{"stride", v.stride}, {"pad", v.pad}};
      Shape a = x, b = f;
      if (op == Op::conv2d_backward_data) a = y, attrs.set("shape", x);
      if (op == Op::conv2d_backward_filter) b = y, attrs.set("shape", f);
      g.set_output("out", g.add(op, {input(g, "a", a), input(g, "b", b)}, attrs));
      const StateMap feeds{{"a", uniform(a, -1, 1, 31)}, {"b", uniform(b, -1, 1, 32)}};
      StateMap none;
      JitOptions one, three;
      three.threads = 3;
      three.poison_arena = true;  // an element no kernel writes reads NaN in one plan, zero in the other
      const Tensor serial = compile_jit(g, one)->run(feeds, none).at("out");
      const Tensor split = compile_jit(g, three)->run(feeds, none).at("out");
      CHECK(bitwise_equal(serial, split));
    }
}

TEST_CASE("convolution kernels for other vector widths are correct too", "[jit][conv]") {
  // The one-channel layer of 20 filters: at width 16 its filter gradient (9 columns) runs on
  // the tall register tile, one full tile of 16 rows and one of 4. The 1x1 ones read B in
  // place; the 7x7 1x1 one (49 columns) and the 63-column filter gradient take the wide tile.
  for (int width : {4, 8, 16})
    for (const ConvCase& v : {kCases[1], kCases[2], kCases[3], kCases[8], kCases[10], kCases[11], kCases[12],
                              ConvCase{3, 1, 9, 10, 20, 3, 3, 1, 1}})
      for (Op op : kConvOps) {
        INFO("width " << width << " " << op_info(op).name << " N " << v.n << " C " << v.c << " stride " << v.stride);
        CHECK(check(op, v, op != Op::conv2d_backward_filter, width, 2) < 1e-6);
      }
}

TEST_CASE("a store-bound convolution streams its output past the caches, with the same values", "[jit][conv]") {
  // A direct product of at most 16 terms per output, whose output outgrows the threads' L2 and
  // whose channels' positions fill whole vectors, stores it with non-temporal stores
  // (emit_conv.cpp). The batch is sized from this host's L2, so that the rule takes these cases
  // wherever the tests run: the forward over one channel (9 terms), the 1x1 forward (1 term,
  // B read in place) and the data gradient into 8 channels from one filter (9 terms), on 16x16
  // maps (256 positions: whole vectors at every width), each with a bias and relu epilogue.
  const int64_t l2 = host_tuning().used.l2_bytes;
  for (int threads : {1, 3}) {
    const int64_t images = threads * l2 / (8 * 256 * 4) + 1;  // 8 channels of 256 floats an image
    const std::vector<std::pair<Op, ConvCase>> streamed{{Op::conv2d, {images, 1, 16, 16, 8, 3, 3, 1, 1}},
                                                        {Op::conv2d, {images, 1, 16, 16, 8, 1, 1, 1, 0}},
                                                        {Op::conv2d_backward_data, {images, 8, 16, 16, 1, 3, 3, 1, 1}}};
    for (const auto& [op, v] : streamed)
      for (int width : {4, 8, 16}) {
        INFO(op_info(op).name << " N " << v.n << " R " << v.r << " width " << width << " threads " << threads);
        std::string ir;
        CHECK(check(op, v, true, width, threads, nullptr, &ir) < 1e-6);
        CHECK(ir.find("!nontemporal") != std::string::npos);
      }
  }
  // Stored plainly: an output the thread's L2 holds (one image), a product of 18 terms (two
  // channels), and 14x14 maps (196 positions, not whole vectors at width 16).
  const int64_t images = l2 / (8 * 256 * 4) + 1;
  for (const ConvCase& v : {ConvCase{1, 1, 16, 16, 8, 3, 3, 1, 1}, ConvCase{images, 2, 16, 16, 8, 3, 3, 1, 1},
                            ConvCase{2 * images, 1, 14, 14, 8, 3, 3, 1, 1}}) {
    INFO("N " << v.n << " C " << v.c << " H " << v.h);
    std::string ir;
    CHECK(check(Op::conv2d, v, true, 16, 1, nullptr, &ir) < 1e-6);
    CHECK(ir.find("!nontemporal") == std::string::npos);
  }
}

TEST_CASE("a 1x1 convolution over one channel is its product, computed in its reader's kernel, to the same bits",
          "[jit][conv]") {
  // rescnn's first block in small, on a one-channel image of odd size: relu(batchnorm(conv3x3(x))
  // + conv1x1(x)). Beside it, two 1x1 convolutions the rewrite leaves alone stay convolutions:
  // one of stride 2 over the image, one over six channels (six terms per output).
  ModelFn model = [](Model& m, Value x) {
    Value y = relu(add(m.batchnorm(m.conv2d(x, 6, 3)), m.conv2d(x, 6, 1)));
    Value strided = m.conv2d(x, 3, 1, Pad::valid, 2);
    Value wide = m.conv2d(y, 4, 1);
    return add(m.dense(flatten(wide), m.classes()), m.dense(flatten(strided), m.classes()));
  };
  const Shape image{1, 9, 11};
  auto projections = [](const Graph& g) {
    return std::ranges::count_if(g.nodes_of(Op::conv2d), [&](NodeId id) {
      return g.shape(g.node(id).operands[1]) == Shape{6, 1, 1, 1};
    });
  };
  // The product [5, 6, 9, 11] of the image and the filters, a node of no kernel of its own.
  auto product_in_reader = [](const Graph& g) {
    const FusionPlan plan = fuse(g);
    int found = 0;
    for (NodeId id : g.nodes_of(Op::mul)) {
      const Node& n = g.node(id);
      if (n.shape != Shape{5, 6, 9, 11} || g.node(n.operands[0]).op != Op::input) continue;
      ++found;
      CHECK(plan.groups[static_cast<size_t>(plan.group_of[id])].anchor != id);
    }
    return found;
  };
  OptimizerConfig cfg;
  const Graph step = build_training_step(model, 5, cfg, image);
  CHECK(projections(step) == 0);
  CHECK(step.nodes_of(Op::conv2d).size() == 3);
  CHECK(product_in_reader(step) == 1);
  // The filter's gradient keeps the convolution's rule: one filter gradient per convolution.
  CHECK(step.nodes_of(Op::conv2d_backward_filter).size() == 4);
  StateMap initial;
  initialize_state(step, initial, 11);
  const BothRuns trained = run_both(step, training_feeds(step, 5, 0), initial);
  CHECK(max_state_error(trained.jit, trained.ref) < 1e-5);

  // Inference: the same bits as the model's own graph, which keeps the convolution.
  const Graph declared = build_forward(model, 5, Mode::eval, image);
  const Graph inference = build_inference(model, 5, image);
  CHECK(projections(declared) == 1);
  CHECK(projections(inference) == 0);
  CHECK(product_in_reader(inference) == 1);
  StateMap state;
  initialize_state(declared, state, 12);
  const StateMap feeds{{"x", uniform({5, 1, 9, 11}, -1, 1, 13)}};
  for (int width : {4, 8, 16})
    for (int threads : {1, 3}) {
      INFO("width " << width << " threads " << threads);
      const BothRuns want = run_both(declared, feeds, state, width, threads);
      const BothRuns got = run_both(inference, feeds, state, width, threads);
      CHECK(got.kernels == want.kernels - 1);
      for (const char* name : {"logits", "probs"}) {
        CHECK(bitwise_equal(got.jit.at(name), want.jit.at(name)));
        CHECK(bitwise_equal(got.ref.at(name), want.ref.at(name)));
      }
      CHECK(max_state_error(got.jit, want.ref) < 1e-5);
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
