// The JIT's kernels for pooling, batch normalization, reductions, softmax heads, transpose and
// broadcast against the interpreter: sizes that do not fill a vector, batches of 1, 7 and 64,
// odd pooling geometries, the vector widths of other hosts, and thread splits that must give
// the same bits. Then whole training steps of the zoo.
#include <catch2/catch.hpp>
#include <iostream>
#include <tuple>

#include "dagger/codegen/fusion.h"
#include "codegen/jit_support.h"
#include "dagger/models/zoo.h"
#include "op_coverage.h"
#include "dagger/runtime/init.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// max |got - want| / max(|want|, floor): relative where values are large, absolute (in
/// units of `floor`) near zero, where a rounding in a cancelling sum shows up.
double max_floored_error(const Tensor& got, const Tensor& want, double floor) {
  REQUIRE(got.shape() == want.shape());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = got.data()[i], w = want.data()[i];
    if (std::isnan(g) != std::isnan(w)) return std::numeric_limits<double>::infinity();
    if (std::isnan(w)) continue;
    worst = std::max(worst, std::abs(g - w) / std::max(std::abs(w), floor));
  }
  return worst;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t) m = std::max(m, double(std::abs(v)));
  return m;
}

/// Runs g (one output, "y") on the JIT at the host's width with 1 and 3 threads and at widths
/// 4 and 16 (all four must agree bit for bit), against the interpreter. Returns the largest
/// error, relative to |want| floored at `floor` times the largest |want|, and checks that
/// the plan has `kernels` kernels (when given).
double check_graph(const Graph& g, const StateMap& feeds, double floor, size_t kernels = 0) {
  StateMap none;
  const Tensor want = interpret<float>(g, feeds, none).at("y");
  const double scale = std::max(floor * max_abs(want), double(FLT_MIN));
  double worst = 0;
  Tensor host;
  for (auto [width, threads] : {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 1}, std::pair{16, 3}}) {
    JitOptions options;
    options.poison_arena = true;  // an element no kernel writes reads NaN
    options.vector_width = width;
    options.threads = threads;
    auto plan = compile_jit(g, options);
    if (kernels) CHECK(plan->kernels().size() == kernels);
    StateMap state;
    const Tensor got = plan->run(feeds, state).at("y");
    worst = std::max(worst, max_floored_error(got, want, scale));
    if (width == 0 && threads == 1)
      host = got;
    else
      CHECK(bitwise_equal(got, host));
  }
  return worst;
}

void report(std::string_view what, double error) { std::cout << "jit " << what << ": max error " << error << "\n"; }

Attrs pool_attrs(int64_t window, int64_t stride) { return {{"window", window}, {"stride", stride}}; }

/// Values on a coarse grid, so that pooling windows hold ties.
Tensor coarse(const Shape& shape, uint32_t seed) {
  Tensor t = uniform(shape, 0, 4, seed);
  for (float& v : t) v = std::floor(v);
  return t;
}

const std::vector<Op> kPoolOps = jit_tests({Op::maxpool2d, Op::maxpool2d_backward});
const std::vector<Op> kNormOps = jit_tests({Op::batchnorm_train, Op::batchnorm_infer, Op::batchnorm_backward,
                                            Op::batchnorm_grad_gamma, Op::channel_mean, Op::channel_var});
const std::vector<Op> kReductions = jit_tests({Op::reduce_sum, Op::reduce_mean, Op::reduce_max});
const std::vector<Op> kHeadOps = jit_tests({Op::softmax, Op::softmax_xent, Op::softmax_xent_grad});
const std::vector<Op> kLayoutOps = jit_tests({Op::transpose, Op::broadcast, Op::reshape});

}  // namespace

TEST_CASE("maxpool2d and its gradient match the interpreter exactly", "[jit][ops]") {
  struct Case {
    Shape x;
    int64_t window, stride;
  };
  const std::vector<Case> cases = {
      {{1, 1, 7, 7}, 2, 2},     // odd size: the last row and column are no window's
      {{7, 3, 13, 13}, 3, 2},   // overlapping windows, a partial vector per row
      {{2, 5, 9, 9}, 3, 1},     // stride 1: contiguous loads, heavy overlap
      {{64, 4, 28, 28}, 2, 2},  // a cnn3 layer at batch 64
      {{3, 2, 1, 17}, 1, 1},    // a window of one
  };
  double worst = 0;
  for (const Case& c : cases) {
    for (bool ties : {false, true}) {
      INFO("x " << to_string(c.x) << " window " << c.window << " stride " << c.stride << " ties " << ties);
      const Tensor x = ties ? coarse(c.x, 3) : uniform(c.x, -1, 1, 3);
      Graph fwd;
      fwd.set_output("y", fwd.add(Op::maxpool2d, {input(fwd, "x", c.x)}, pool_attrs(c.window, c.stride)));
      const double e1 = check_graph(fwd, {{"x", x}}, 0, 1);
      CHECK(e1 == 0);

      Graph bwd;
      NodeId xi = input(bwd, "x", c.x);
      const Shape y = fwd.shape(*fwd.output("y"));
      bwd.set_output("y", bwd.add(Op::maxpool2d_backward, {xi, input(bwd, "dy", y)}, pool_attrs(c.window, c.stride)));
      const double e2 = check_graph(bwd, {{"x", x}, {"dy", uniform(y, -1, 1, 4)}}, 0, 1);
      CHECK(e2 == 0);
      worst = std::max({worst, e1, e2});
    }
  }
  report("maxpool2d, maxpool2d_backward", worst);
}

TEST_CASE("a maxpool's gradient and a relu_grad reading it are one kernel", "[jit][ops]") {
  const Shape x{7, 3, 9, 9};
  Graph g;
  NodeId xi = input(g, "x", x);
  NodeId dx = g.add(Op::maxpool2d_backward, {xi, input(g, "dy", {7, 3, 4, 4})}, pool_attrs(2, 2));
  g.set_output("y", g.add(Op::relu_grad, {input(g, "z", x), dx}));
  const StateMap feeds{
      {"x", uniform(x, -1, 1, 1)}, {"dy", uniform({7, 3, 4, 4}, -1, 1, 2)}, {"z", uniform(x, -1, 1, 3)}};
  CHECK(check_graph(g, feeds, 0, 1) == 0);
}

namespace {

struct NormGraph {
  Graph g;
  StateMap feeds;
};

/// `op` on x of `shape` (values offset from zero, so centering matters) with its other
/// operands; `epilogue` adds a residual and a ReLU after a forward normalization.
NormGraph norm_graph(Op op, const Shape& shape, bool epilogue) {
  NormGraph r;
  Graph& g = r.g;
  const Shape c{shape[1]};
  NodeId x = input(g, "x", shape);
  r.feeds["x"] = uniform(shape, -1, 3, 11);
  auto channel = [&](const std::string& name, float lo, float hi, uint32_t seed) {
    r.feeds[name] = uniform(c, lo, hi, seed);
    return input(g, name, c);
  };
  auto full = [&](const std::string& name, uint32_t seed) {
    r.feeds[name] = uniform(shape, -1, 1, seed);
    return input(g, name, shape);
  };
  const Attrs eps{{"eps", 1e-5}};
  NodeId y = -1;
  if (op == Op::batchnorm_train) {
    y = g.add(op, {x, channel("gamma", 0.5, 1.5, 12), channel("beta", -1, 1, 13)}, eps);
  } else if (op == Op::batchnorm_infer) {
    y = g.add(op,
              {x, channel("gamma", 0.5, 1.5, 12), channel("beta", -1, 1, 13), channel("mean", 0, 2, 14),
               channel("var", 0.5, 2, 15)},
              eps);
  } else if (op == Op::batchnorm_backward) {
    y = g.add(op, {x, channel("gamma", 0.5, 1.5, 12), full("dy", 16)}, eps);
  } else if (op == Op::batchnorm_grad_gamma) {
    y = g.add(op, {x, full("dy", 16)}, eps);
  } else {
    REQUIRE((op == Op::channel_mean || op == Op::channel_var));
    y = g.add(op, {x});
  }
  if (epilogue) y = g.add(Op::relu, {g.add(Op::add, {y, full("skip", 17)})});
  g.set_output("y", y);
  return r;
}

}  // namespace

TEST_CASE("batch normalization and its statistics match the interpreter", "[jit][ops]") {
  // [batch, channels] shapes put W channels in the lanes of one item: fewer, more and not a
  // multiple of the vector width.
  const std::vector<Shape> shapes = {{1, 3, 5, 5}, {7, 13, 3, 3}, {2, 3, 7}, {7, 13},
                                     {5, 3},       {9, 32},       {64, 37},  {64, 32, 28, 28}};
  for (Op op : kNormOps) {
    double worst = 0;
    for (const Shape& shape : shapes) {
      if (numel(shape) > 100000 && op != Op::batchnorm_train && op != Op::batchnorm_backward) continue;
      INFO(op_info(op).name << " on " << to_string(shape));
      NormGraph r = norm_graph(op, shape, false);
      // Statistics are checked relative to each value; normalized values relative to the
      // tensor's largest, since an output near zero is a difference of values near 1.
      const bool statistic = op == Op::channel_mean || op == Op::channel_var || op == Op::batchnorm_grad_gamma;
      const double error = check_graph(r.g, r.feeds, statistic ? 0 : 1, 1);
      CHECK(error < 2e-6);
      worst = std::max(worst, error);
    }
    report(op_info(op).name, worst);
  }
}

namespace {

/// Compiles `fused` and `stored` (the same graph with one more value an output, so one more
/// kernel) with `options`, the arena poisoned (an element no kernel writes reads NaN), checks
/// the kernel counts, and returns both plans' outputs for `feeds`.
std::pair<StateMap, StateMap> run_fused_and_stored(const Graph& fused, const Graph& stored, const StateMap& feeds,
                                                   JitOptions options) {
  options.poison_arena = true;
  auto with = compile_jit(fused, options);
  auto without = compile_jit(stored, options);
  CHECK(with->kernels().size() + 1 == without->kernels().size());
  StateMap state;
  StateMap got = with->run(feeds, state);
  return {std::move(got), without->run(feeds, state)};
}

}  // namespace

TEST_CASE("a normalization only pooling reads is recomputed by the pooling kernels to the same bits", "[jit][ops]") {
  // y = relu(batchnorm_infer(x)), or batchnorm_infer(x) alone, read only by a maxpool, its
  // gradient and a relu_grad: the plan stores no y, and the pooling kernels compute it from x
  // (FusionGroup::prologue). The same graph with y also an output stores it and reads it back:
  // every value must be the same bits. Geometries: 2x2 windows tiling the plane (a partial
  // vector per row, and rows of more than one vector), windows that leave a last row and column
  // out, overlapping windows (stride 2 and 1) and a gathered stride of 3; one image and odd
  // channel counts.
  struct Case {
    Shape x;
    int64_t window, stride;
  };
  const std::vector<Case> cases = {{{3, 5, 10, 10}, 2, 2}, {{2, 3, 4, 36}, 2, 2}, {{1, 7, 9, 9}, 2, 2},
                                   {{3, 2, 13, 13}, 3, 2}, {{2, 3, 9, 9}, 3, 1},  {{2, 3, 10, 11}, 3, 3},
                                   {{64, 3, 28, 28}, 2, 2}};
  for (const auto& [c, activated] : std::vector<std::pair<Case, bool>>{
           {cases[0], false}, {cases[1], true}, {cases[2], true}, {cases[3], false}, {cases[4], true},
           {cases[5], true}, {cases[6], true}}) {
    INFO("x " << to_string(c.x) << " window " << c.window << " stride " << c.stride << " relu " << activated);
    const Shape channels{c.x[1]};
    Graph g;
    StateMap feeds{{"x", uniform(c.x, -1, 3, 21)},
                   {"gamma", uniform(channels, 0.5, 1.5, 22)},
                   {"beta", uniform(channels, -1, 1, 23)},
                   {"mean", uniform(channels, 0, 2, 24)},
                   {"var", uniform(channels, 0.5, 2, 25)}};
    std::vector<NodeId> bn_operands;
    for (const char* name : {"x", "gamma", "beta", "mean", "var"})
      bn_operands.push_back(input(g, name, std::string(name) == "x" ? c.x : channels));
    NodeId y = g.add(Op::batchnorm_infer, bn_operands, {{"eps", 1e-5}});
    if (activated) y = g.add(Op::relu, {y});
    const NodeId pooled = g.add(Op::maxpool2d, {y}, pool_attrs(c.window, c.stride));
    feeds["dy"] = uniform(g.shape(pooled), -1, 1, 26);
    const NodeId back =
        g.add(Op::maxpool2d_backward, {y, input(g, "dy", g.shape(pooled))}, pool_attrs(c.window, c.stride));
    g.set_output("pooled", pooled);
    g.set_output("dx", g.add(Op::relu_grad, {y, back}));
    Graph stored = g;
    stored.set_output("y", y);

    const FusionPlan plan = fuse(g);
    REQUIRE(plan.recomputed[y]);
    CHECK(!fuse(stored).recomputed[y]);
    for (const FusionGroup& group : plan.groups)
      CHECK(group.prologue.size() == (group.anchor >= 0 ? (activated ? 2u : 1u) : 0u));

    StateMap none;
    const Tensor want = interpret<float>(g, feeds, none).at("pooled");
    for (auto [width, threads] : {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 1}, std::pair{16, 2}}) {
      INFO("width " << width << " threads " << threads);
      JitOptions options;
      options.vector_width = width;
      options.threads = threads;
      const auto [got, reference] = run_fused_and_stored(g, stored, feeds, options);
      CHECK(bitwise_equal(got.at("pooled"), reference.at("pooled")));
      CHECK(bitwise_equal(got.at("dx"), reference.at("dx")));
      CHECK(max_floored_error(got.at("pooled"), want, max_abs(want)) < 2e-6);
    }
  }
}

TEST_CASE("a convolution's output normalized with fixed statistics is normalized in its epilogue to the same bits",
          "[jit][ops][conv]") {
  // y = relu(batchnorm_infer(conv2d(x, w) + bias)) with gamma, beta and the statistics given
  // (an inference plan), then optionally a residual and a second bias added and relu again: the
  // convolution's kernel applies the normalization as it stores (fusion.h), so no kernel stores
  // conv2d + bias. The same graph with conv2d + bias also an output keeps the normalization's
  // own kernel: every value must be the same bits, for each convolution algorithm.
  struct Case {
    Shape x;
    int64_t filters, kernel, stride;
    bool residual;
  };
  const std::vector<Case> cases = {{{3, 5, 9, 11}, 7, 3, 1, false},   {{1, 3, 7, 7}, 6, 3, 1, true},
                                   {{2, 4, 7, 7}, 6, 1, 1, true},     {{2, 3, 10, 10}, 5, 3, 2, false},
                                   {{4, 16, 28, 28}, 17, 3, 1, true}, {{2, 1, 28, 28}, 32, 3, 1, false}};
  for (const Case& c : cases) {
    const Shape channels{c.filters}, per_channel{c.filters, 1, 1}, filter{c.filters, c.x[1], c.kernel, c.kernel};
    Graph g;
    StateMap feeds{{"x", uniform(c.x, -1, 1, 31)},
                   {"w", uniform(filter, -0.5, 0.5, 32)},
                   {"bias", uniform(per_channel, -0.5, 0.5, 33)},
                   {"gamma", uniform(channels, 0.5, 1.5, 34)},
                   {"beta", uniform(channels, -1, 1, 35)},
                   {"mean", uniform(channels, -0.5, 0.5, 36)},
                   {"var", uniform(channels, 0.5, 2, 37)},
                   {"bias2", uniform(per_channel, -0.5, 0.5, 38)}};
    const NodeId conv =
        g.add(Op::conv2d, {input(g, "x", c.x), input(g, "w", filter)}, {{"stride", c.stride}, {"pad", c.kernel / 2}});
    const NodeId biased = g.add(Op::add, {conv, input(g, "bias", per_channel)});
    std::vector<NodeId> bn_operands{biased};
    for (const char* name : {"gamma", "beta", "mean", "var"}) bn_operands.push_back(input(g, name, channels));
    const NodeId norm = g.add(Op::batchnorm_infer, bn_operands, {{"eps", 1e-5}});
    NodeId y = g.add(Op::relu, {norm});
    if (c.residual) {
      feeds["skip"] = uniform(g.shape(conv), -1, 1, 39);
      y = g.add(Op::add, {g.add(Op::add, {y, input(g, "skip", g.shape(conv))}), input(g, "bias2", per_channel)});
      y = g.add(Op::relu, {y});
    }
    g.set_output("y", y);
    Graph stored = g;
    stored.set_output("biased", biased);
    INFO("x " << to_string(c.x) << " filters " << c.filters << " kernel " << c.kernel << " stride " << c.stride
              << " residual " << c.residual);

    const FusionPlan plan = fuse(g);
    const FusionGroup& merged = plan.groups[static_cast<size_t>(plan.group_of[y])];
    CHECK(merged.anchor == conv);
    CHECK(folded_norm(g, merged) == norm);
    CHECK(plan.group_of[biased] == plan.group_of[y]);
    CHECK(merged.side_outputs.empty());
    const FusionPlan kept = fuse(stored);
    CHECK(kept.group_of[norm] != kept.group_of[conv]);
    CHECK(folded_norm(stored, kept.groups[static_cast<size_t>(kept.group_of[conv])]) == -1);

    StateMap none;
    const Tensor want = interpret<float>(g, feeds, none).at("y");
    for (ConvAlgo algo : {ConvAlgo::direct, ConvAlgo::winograd, ConvAlgo::winograd4, ConvAlgo::automatic})
      for (auto [width, threads] :
           {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 2}, std::pair{8, 1}, std::pair{16, 2}}) {
        INFO("algo " << conv_algo_name(algo) << " width " << width << " threads " << threads);
        JitOptions options;
        options.vector_width = width;
        options.threads = threads;
        options.conv_algo = algo;
        const auto [got, reference] = run_fused_and_stored(g, stored, feeds, options);
        CHECK(bitwise_equal(got.at("y"), reference.at("y")));
        CHECK(max_floored_error(got.at("y"), want, max_abs(want)) < 1e-5);
      }
  }
  // Statistics computed from the convolution's output (a training step's) are not fixed when
  // the convolution runs: no merge.
  Graph train;
  const NodeId conv = train.add(Op::conv2d, {input(train, "x", {2, 3, 8, 8}), input(train, "w", {4, 3, 3, 3})},
                                {{"stride", int64_t(1)}, {"pad", int64_t(1)}});
  const NodeId mean = train.add(Op::channel_mean, {conv});
  const NodeId var = train.add(Op::channel_var, {conv});
  const NodeId norm = train.add(
      Op::batchnorm_infer, {conv, input(train, "gamma", {4}), input(train, "beta", {4}), mean, var}, {{"eps", 1e-5}});
  train.set_output("y", train.add(Op::relu, {norm}));
  const FusionPlan plan = fuse(train);
  CHECK(plan.group_of[norm] != plan.group_of[conv]);
}

TEST_CASE("batch normalization over blocks of channels matches the interpreter on odd shapes", "[jit][ops]") {
  // A kernel sweeps its channels in blocks, image by image (codegen/emit_norm.cpp): channels 1,
  // 3 and 17 over batches of 1 and 3 and maps of 1x1, 5x7 and 28x28, then shapes of several
  // blocks with a ragged last one (64 channels per block on 1x1 maps, 20 on 28x28), which
  // check_graph's 3 threads split across blocks.
  std::vector<Shape> shapes;
  for (int64_t batch : {1, 3})
    for (int64_t channels : {1, 3, 17})
      for (auto [h, w] : {std::pair{1, 1}, std::pair{5, 7}, std::pair{28, 28}})
        shapes.push_back({batch, channels, h, w});
  shapes.push_back({3, 70, 1, 1});
  shapes.push_back({2, 45, 28, 28});
  for (Op op : kNormOps) {
    for (const Shape& shape : shapes) {
      INFO(op_info(op).name << " on " << to_string(shape));
      const bool statistic = op == Op::channel_mean || op == Op::channel_var || op == Op::batchnorm_grad_gamma;
      for (bool epilogue : {false, true}) {
        if (statistic && epilogue) continue;  // the residual would be per element, not per channel
        NormGraph r = norm_graph(op, shape, epilogue);
        CHECK(check_graph(r.g, r.feeds, statistic ? 0 : 1, 1) < 2e-6);
      }
    }
  }
}

TEST_CASE("batch statistics keep their digits when the mean is far from zero", "[jit][ops]") {
  // x = offset + u: at offset 1e7 float values are whole numbers and x^2 ~ 1e14, so even in
  // double a sum of x^2 over a channel rounds by more than the variance (about 5) is worth;
  // a float E[x^2] - E[x]^2 fails already at 1e4. The kernels' sums around the channel's
  // first element keep the variance to float rounding, against the interpreter in double.
  for (double offset : {1e4, 1e7}) {
    for (const Shape& shape : {Shape{64, 17, 7, 7}, Shape{3, 5, 5, 9}, Shape{64, 37}}) {
      Tensor x = uniform(shape, -4, 4, 21);
      for (float& v : x) v = float(offset + v);
      for (Op op : {Op::channel_mean, Op::channel_var, Op::batchnorm_grad_gamma}) {
        INFO(op_info(op).name << " on " << to_string(shape) << " around " << offset);
        Graph g;
        NodeId xi = input(g, "x", shape);
        StateMap feeds{{"x", x}};
        if (op == Op::batchnorm_grad_gamma) {
          feeds["dy"] = uniform(shape, -1, 1, 22);
          g.set_output("y", g.add(op, {xi, input(g, "dy", shape)}, {{"eps", 1e-5}}));
        } else {
          g.set_output("y", g.add(op, {xi}));
        }
        TensorMap<double> none;
        const xt::xarray<double> want = interpret<double>(g, to_double(feeds), none).at("y");
        StateMap state;
        const Tensor got = compile_jit(g, JitOptions{})->run(feeds, state).at("y");
        REQUIRE(got.size() == want.size());
        // Relative to each value, floored at a hundredth of the largest: a gradient sum can be
        // near zero by chance.
        double floor = 0;
        for (double w : want) floor = std::max(floor, 1e-2 * std::abs(w));
        double worst = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          const double error = std::abs(double(got.data()[i]) - want.data()[i]);
          worst = std::max(worst, error / std::max(std::abs(want.data()[i]), floor));
        }
        CHECK(worst < 1e-6);
      }
    }
  }
}

TEST_CASE("a batchnorm with its residual add and ReLU is one kernel", "[jit][ops]") {
  for (Op op : {Op::batchnorm_train, Op::batchnorm_infer, Op::batchnorm_backward}) {
    for (const Shape& shape : {Shape{7, 5, 6, 6}, Shape{3, 4}}) {
      INFO(op_info(op).name << " on " << to_string(shape));
      NormGraph r = norm_graph(op, shape, true);
      CHECK(check_graph(r.g, r.feeds, 1, 1) < 2e-6);
      const FusionPlan plan = fuse(r.g);
      const NodeId norm = r.g.nodes_of(op).front();
      const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[norm])];
      CHECK(group.anchor == norm);
      CHECK(group.nodes.size() == 3);  // the batchnorm, the residual add and the relu
    }
  }
  // Channel statistics feed the running averages: the update is their epilogue.
  Graph g;
  NodeId x = input(g, "x", {7, 5, 3, 3});
  NodeId old = input(g, "old", {5});
  NodeId keep = g.add(Op::constant, {}, {{"value", 0.9}, {"shape", Shape{}}});
  NodeId take = g.add(Op::constant, {}, {{"value", 0.1}, {"shape", Shape{}}});
  g.set_output("y", g.add(Op::add, {g.add(Op::mul, {old, keep}), g.add(Op::mul, {g.add(Op::channel_var, {x}), take})}));
  CHECK(check_graph(g, {{"x", uniform({7, 5, 3, 3}, -1, 3, 1)}, {"old", uniform({5}, 0, 1, 2)}}, 0, 1) < 1e-6);
}

TEST_CASE("the conv, batchnorm and ReLU work in fewer kernels than graph nodes", "[jit][ops]") {
  Graph g;
  NodeId x = input(g, "x", {7, 3, 9, 9});
  NodeId conv = g.add(Op::conv2d, {x, input(g, "w", {8, 3, 3, 3})}, {{"stride", int64_t(1)}, {"pad", int64_t(1)}});
  NodeId bn = g.add(Op::batchnorm_train, {conv, input(g, "gamma", {8}), input(g, "beta", {8})}, {{"eps", 1e-5}});
  g.set_output("y", g.add(Op::relu, {bn}));
  const StateMap feeds{{"x", uniform({7, 3, 9, 9}, -1, 1, 1)},
                       {"w", uniform({8, 3, 3, 3}, -1, 1, 2)},
                       {"gamma", uniform({8}, 0.5, 1.5, 3)},
                       {"beta", uniform({8}, -1, 1, 4)}};
  CHECK(check_graph(g, feeds, 1, 2) < 1e-5);
  const std::string why = describe_fusion(g, fuse(g));
  CHECK(why.find("which is not elementwise") != std::string::npos);  // the conv ends at the batchnorm
}

TEST_CASE("reductions match the interpreter over every kind of axis set", "[jit][ops]") {
  struct Case {
    Shape x;
    std::vector<int64_t> axes;
  };
  const std::vector<Case> cases = {
      {{7, 13}, {0}},         {{7, 13}, {1}},      {{7, 13}, {0, 1}},   {{4, 5, 6, 7}, {0, 2, 3}},
      {{4, 5, 6, 7}, {1, 3}}, {{4, 5, 6, 7}, {3}}, {{4, 5, 6, 7}, {0}}, {{1, 13}, {0}},
      {{64, 33}, {0}},        {{3, 1, 5}, {1}},    {{13}, {0}},         {{64, 100}, {-1}},
  };
  for (Op op : kReductions) {
    double worst = 0;
    for (size_t k = 0; k < cases.size(); ++k) {
      const Case& c = cases[k];
      const int64_t keepdims = int64_t(k % 2);  // either way only the output's shape differs
      {
        INFO(op_info(op).name << " of " << to_string(c.x) << " keepdims " << keepdims);
        Graph g;
        g.set_output("y", g.add(op, {input(g, "x", c.x)}, {{"axes", c.axes}, {"keepdims", keepdims}}));
        // Positive values: a sum's relative error is then bounded by its length, not its cancellation.
        const double error = check_graph(g, {{"x", uniform(c.x, 0.5, 1.5, 7)}}, 0, 1);
        CHECK(error <= (op == Op::reduce_max ? 0 : 1e-5));
        worst = std::max(worst, error);
      }
    }
    report(op_info(op).name, worst);
  }
}

TEST_CASE("softmax and the cross-entropy head match the interpreter", "[jit][ops]") {
  double worst_softmax = 0, worst_loss = 0, worst_grad = 0;
  for (const Shape& shape : {Shape{1, 1}, Shape{7, 10}, Shape{64, 10}, Shape{3, 4, 13}, Shape{5, 37}}) {
    INFO("softmax of " << to_string(shape));
    Graph g;
    g.set_output("y", g.add(Op::relu, {g.add(Op::softmax, {input(g, "x", shape)})}));
    const double error = check_graph(g, {{"x", uniform(shape, -4, 4, 21)}}, 0, 1);
    CHECK(error < 2e-6);
    worst_softmax = std::max(worst_softmax, error);
  }
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 10}, {7, 13}, {64, 10}, {7, 1}, {3, 37}}) {
    INFO("cross-entropy of [" << n << ", " << k << "]");
    Tensor labels = make_tensor({n});
    for (int64_t i = 0; i < n; ++i) labels(i) = static_cast<float>((i * 5 + 3) % k);
    const StateMap feeds{{"x", uniform({n, k}, -4, 4, 22)}, {"labels", labels}, {"dloss", scalar_tensor(1.5f)}};
    Graph loss;
    loss.set_output("y", loss.add(Op::softmax_xent, {input(loss, "x", {n, k}), input(loss, "labels", {n})}));
    const double e1 = check_graph(loss, feeds, 0, 1);
    CHECK(e1 < 2e-6);
    Graph grad;
    grad.set_output("y", grad.add(Op::softmax_xent_grad,
                                  {input(grad, "x", {n, k}), input(grad, "labels", {n}), input(grad, "dloss", {})}));
    const double e2 = check_graph(grad, feeds, 0, 1);
    CHECK(e2 < 2e-6);
    worst_loss = std::max(worst_loss, e1);
    worst_grad = std::max(worst_grad, e2);
  }
  report("softmax", worst_softmax);
  report("softmax_xent", worst_loss);
  report("softmax_xent_grad", worst_grad);

  // A label that is no class id is an error naming it, as in the interpreter; inside the
  // kernel it would give NaN rather than read outside the row.
  Graph loss;
  loss.set_output("y", loss.add(Op::softmax_xent, {input(loss, "x", {2, 3}), input(loss, "labels", {2})}));
  auto plan = compile_jit(loss);
  for (float label : {3.0f, -1.0f, 0.5f}) {
    Tensor bad = make_tensor({2});
    bad(0) = 1;
    bad(1) = label;
    StateMap state;
    const std::string message = testing::error_of([&] {
      plan->run({{"x", uniform({2, 3}, -1, 1, 1)}, {"labels", bad}}, state);
    });
    CHECK_THAT(message, Catch::Contains("softmax_xent") && Catch::Contains("of row 1 is not a class id in [0, 3)"));
  }
}

TEST_CASE("transpose, broadcast and reshape match the interpreter", "[jit][ops]") {
  struct Case {
    Shape x;
    std::vector<int64_t> perm;
  };
  for (const Case& c : std::vector<Case>{{{7, 13}, {1, 0}},
                                         {{2, 3, 4, 5}, {0, 2, 3, 1}},
                                         {{2, 3, 4, 5}, {3, 1, 0, 2}},
                                         {{13}, {0}},
                                         {{64, 9}, {1, 0}}}) {
    INFO("transpose of " << to_string(c.x));
    Graph g;
    NodeId t = g.add(Op::transpose, {input(g, "x", c.x)}, {{"perm", c.perm}});
    g.set_output("y", g.add(Op::neg, {t}));
    CHECK(check_graph(g, {{"x", uniform(c.x, -1, 1, 31)}}, 0, 1) == 0);
  }
  for (auto [from, to] : std::vector<std::pair<Shape, Shape>>{
           {{}, {7, 13}}, {{13}, {7, 13}}, {{7, 1}, {7, 13}}, {{3, 1, 5}, {2, 3, 4, 5}}, {{1}, {5}}, {{}, {3}}}) {
    INFO("broadcast of " << to_string(from) << " to " << to_string(to));
    Graph g;
    g.set_output("y", g.add(Op::broadcast, {input(g, "x", from)}, {{"shape", to}}));
    CHECK(check_graph(g, {{"x", uniform(from, -1, 1, 32)}}, 0, 1) == 0);
  }
  // A reshape is the same buffer under another shape: no kernel and no copy.
  Graph g;
  NodeId r = g.add(Op::reshape, {g.add(Op::exp, {input(g, "x", {4, 6})})}, {{"shape", Shape{2, 12}}});
  g.set_output("y", g.add(Op::reduce_sum, {r}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t(0)}}));
  CHECK(check_graph(g, {{"x", uniform({4, 6}, -1, 1, 33)}}, 0, 2) < 1e-6);
}

// (cnn3 and rescnn: see the next test.)
// Compiling throws when a node is left without a kernel (plan_steps).
TEST_CASE("the dense zoo models' training steps compile", "[jit][ops][zoo][slow]") {
  for (auto [name, side] :
       std::vector<std::pair<std::string, int64_t>>{{"shallow", 28}, {"mlp512", 28}, {"mlp2048", 28}}) {
    INFO(name);
    const Graph g = build_training_step(zoo::find(name).build, 2, OptimizerConfig{}, {1, side, side});
    auto plan = compile_jit(g);
    std::cout << "jit " << name << " training step: " << g.size() << " nodes, " << plan->kernels().size()
              << " kernels\n";
  }
}

TEST_CASE(
    "shallow, mlp512, cnn3 and rescnn training steps match the interpreter and depend neither on threads nor on the "
    "vector width",
    "[jit][ops][zoo][slow]") {
  for (auto [name, side, batch] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
           {"shallow", 28, 7}, {"mlp512", 28, 7}, {"cnn3", 12, 7}, {"rescnn", 8, 4}}) {
    INFO(name);
    // Plain SGD: the conv biases before a batchnorm have gradients that are zero but for
    // rounding, which Adam would scale up to full steps of either sign.
    OptimizerConfig sgd;
    sgd.kind = OptimizerConfig::Kind::sgd;
    const Graph g = build_training_step(zoo::find(name).build, batch, sgd, {1, side, side});
    StateMap initial;
    initialize_state(g, initial, 42);
    JitOptions two, other_width;
    two.threads = 2;
    two.poison_arena = true;  // an element no kernel writes reads NaN in one plan, zero in the other
    // AVX-512's width on an AVX2 host, and AVX2's on an AVX-512 one.
    auto plan = compile_jit(g), plan2 = compile_jit(g, two);
    other_width.vector_width = plan->vector_width() == 16 ? 8 : 16;
    auto plan_w = compile_jit(g, other_width);
    bool batchnorm_with_relu = false;  // the backward pass reads the ReLU's output, not its input
    for (const KernelInfo& k : plan->kernels()) {
      bool bn = false, relu = false;
      for (NodeId id : k.nodes) {
        bn = bn || g.node(id).op == Op::batchnorm_infer;  // a training step's, on its batch statistics
        relu = relu || g.node(id).op == Op::relu;
      }
      batchnorm_with_relu = batchnorm_with_relu || (bn && relu);
    }
    if (name != "shallow" && name != "mlp512") CHECK(batchnorm_with_relu);
    std::cout << "jit " << name << " training step: " << g.size() << " nodes, " << plan->kernels().size()
              << " kernels\n";
    StateMap jit_state = initial, jit2_state = initial, jit_w_state = initial, ref_state = initial;
    double loss_err = 0, state_err = 0;
    for (int step = 0; step < 2; ++step) {
      const StateMap feeds = training_feeds(g, batch, step);
      const StateMap got = plan->run(feeds, jit_state);
      const StateMap got2 = plan2->run(feeds, jit2_state);
      const StateMap got_w = plan_w->run(feeds, jit_w_state);
      const StateMap want = interpret<float>(g, feeds, ref_state);
      loss_err = std::max(loss_err, max_state_error(got, want));
      state_err = std::max(state_err, max_state_error(jit_state, ref_state));
      for (const auto& [out, t] : got) CHECK(bitwise_equal(t, got2.at(out)));
      for (const auto& [out, t] : got) CHECK(bitwise_equal(t, got_w.at(out)));
    }
    for (const auto& [s, t] : jit_state) CHECK(bitwise_equal(t, jit2_state.at(s)));
    for (const auto& [s, t] : jit_state) CHECK(bitwise_equal(t, jit_w_state.at(s)));
    CHECK(loss_err < 1e-4);
    CHECK(state_err < 1e-4);
    std::cout << "jit " << name << " training step: max error: outputs " << loss_err << ", state " << state_err << "\n";
  }
}
