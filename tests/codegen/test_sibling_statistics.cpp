// Sibling statistics (codegen/fusion.h): channel_mean computed by the channel_var kernel of the
// same x, and dbeta's reduce_sum by the batchnorm_grad_gamma kernel of the same dy. Each must
// give the bits its own kernel gives, on odd shapes, at every vector width and thread count;
// so must a reduce_sum that computes and stores the elementwise chain it sums per channel (a conv
// bias's gradient beside batch norm's dx); and a training step's batch norm must read x and dy no
// more often than docs/performance.md says.
#include <catch2/catch.hpp>

#include "codegen/jit_support.h"
#include "dagger/autodiff/step.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/runtime/init.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// The axes of x but the channels' (1).
std::vector<int64_t> all_but_channels(const Shape& x) {
  std::vector<int64_t> axes{0};
  for (int64_t a = 2; a < static_cast<int64_t>(x.size()); ++a) axes.push_back(a);
  return axes;
}

/// The four statistics of x and dy, each made before its sibling's anchor as the training step
/// makes them: channel_mean before channel_var, dbeta before batchnorm_grad_gamma. With
/// `only`, the graph holds that one op (then computed by a kernel of its own).
Graph statistics_graph(const Shape& shape, std::optional<Op> only = std::nullopt) {
  Graph g;
  NodeId x = input(g, "x", shape), dy = input(g, "dy", shape);
  auto want = [&](Op op) { return !only || *only == op; };
  if (want(Op::channel_mean)) g.set_output("mean", g.add(Op::channel_mean, {x}));
  if (want(Op::channel_var)) g.set_output("var", g.add(Op::channel_var, {x}));
  if (want(Op::reduce_sum))
    g.set_output("dbeta", g.add(Op::reduce_sum, {dy}, {{"axes", all_but_channels(shape)}, {"keepdims", int64_t(0)}}));
  if (want(Op::batchnorm_grad_gamma)) g.set_output("dgamma", g.add(Op::batchnorm_grad_gamma, {x, dy}, {{"eps", 1e-5}}));
  return g;
}

StateMap run(const Graph& g, const StateMap& feeds, int width, int threads) {
  JitOptions options;
  options.vector_width = width;
  options.threads = threads;
  options.poison_arena = true;  // an element no kernel writes reads NaN
  StateMap state;
  return compile_jit(g, options)->run(feeds, state);
}

const std::vector<std::pair<std::string, Op>> kOutputs = {{"mean", Op::channel_mean},
                                                          {"var", Op::channel_var},
                                                          {"dbeta", Op::reduce_sum},
                                                          {"dgamma", Op::batchnorm_grad_gamma}};

}  // namespace

TEST_CASE("sibling statistics give the bits of their own kernels", "[jit][ops]") {
  std::vector<Shape> shapes;
  for (int64_t batch : {1, 3})
    for (int64_t channels : {1, 3, 17}) {
      shapes.push_back({batch, channels});
      for (auto [h, w] : {std::pair{1, 1}, std::pair{5, 7}}) shapes.push_back({batch, channels, h, w});
    }
  shapes.push_back({64, 32, 14, 14});
  for (const Shape& shape : shapes) {
    INFO("x and dy " << to_string(shape));
    // x away from zero, so the variance's shift matters.
    const StateMap feeds{{"x", uniform(shape, -1, 3, 31)}, {"dy", uniform(shape, -1, 1, 32)}};
    const Graph g = statistics_graph(shape);
    // channel_mean joins channel_var's kernel; dbeta joins batchnorm_grad_gamma's when there is
    // more than one channel (with one, reduce_sum sums the batch and the map as one run).
    const FusionPlan plan = fuse(g);
    CHECK(plan.groups.size() == (shape[1] > 1 ? 2u : 3u));
    TensorMap<double> none;
    const TensorMap<double> exact = interpret<double>(g, to_double(feeds), none);
    for (auto [width, threads] :
         {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 1}, std::pair{8, 2}, std::pair{16, 3}}) {
      INFO("width " << width << ", " << threads << " threads");
      const StateMap together = run(g, feeds, width, threads);
      for (const auto& [name, op] : kOutputs) {
        INFO(name);
        const Tensor alone = run(statistics_graph(shape, op), feeds, width, threads).at(name);
        CHECK(bitwise_equal(together.at(name), alone));
        // The double statistics to float rounding; dbeta, a float sum of terms in (-1, 1) that
        // cancel, to 1e-7 of its term count (a missing or doubled term would be ~0.5).
        const xt::xarray<double>& want = exact.at(name);
        const double terms = double(numel(shape) / shape[1]);
        for (size_t i = 0; i < want.size(); ++i) {
          const double error = std::abs(double(together.at(name).data()[i]) - want.data()[i]);
          CHECK(error <= (op == Op::reduce_sum ? 1e-7 * terms : 2e-6 * std::max(std::abs(want.data()[i]), 1e-3)));
        }
      }
    }
  }
}

TEST_CASE("a statistic read before its sibling's kernel runs keeps a kernel of its own", "[jit][ops]") {
  // The mean feeds a node made before the variance: a kernel at the variance's place would
  // compute it too late. (It is also an output, so the add does not take it as an epilogue.)
  const Shape shape{3, 4, 5, 5};
  Graph g;
  NodeId x = input(g, "x", shape);
  NodeId mean = g.add(Op::channel_mean, {x});
  g.set_output("mean", mean);
  g.set_output("shifted", g.add(Op::add, {mean, input(g, "b", {4})}));
  g.set_output("var", g.add(Op::channel_var, {x}));
  const FusionPlan plan = fuse(g);
  CHECK(plan.groups.size() == 3);  // the mean, the add, the variance
  const FusionGroup& var = plan.groups.back();
  CHECK(var.nodes == std::vector<NodeId>{*g.output("var")});
  CHECK(var.side_outputs.empty());
  const StateMap feeds{{"x", uniform(shape, -1, 3, 1)}, {"b", uniform({4}, -1, 1, 2)}};
  StateMap none;
  const StateMap want = interpret<float>(g, feeds, none);
  const StateMap got = run(g, feeds, 0, 1);
  CHECK(max_rel_error(got.at("shifted"), want.at("shifted")) < 1e-6);
  CHECK(max_rel_error(got.at("var"), want.at("var")) < 1e-5);
}

TEST_CASE("a training step's batch norm reads x four times and dy twice", "[jit][ops]") {
  // conv -> batchnorm -> relu -> dense: per batch norm, x (the convolution's output) is read
  // by the statistics (mean and variance in one kernel), the normalization, dgamma with dbeta,
  // and dx; dy by dgamma with dbeta, and dx.
  ModelFn model = [](Model& m, Value x) { return m.dense(flatten(relu(m.batchnorm(m.conv2d(x, 6, 3)))), 3); };
  OptimizerConfig cfg;
  const Graph g = build_training_step(model, 5, cfg, {2, 7, 7});
  const FusionPlan plan = fuse(g);
  const std::vector<NodeId> grads = g.nodes_of(Op::batchnorm_grad_gamma);
  REQUIRE(grads.size() == 1);
  const NodeId x = g.node(grads[0]).operands[0], dy = g.node(grads[0]).operands[1];
  auto kernels_reading = [&](NodeId id) {
    return std::ranges::count_if(plan.groups,
                                 [&](const FusionGroup& k) { return std::ranges::count(k.inputs, id) > 0; });
  };
  CHECK(kernels_reading(x) == 4);
  CHECK(kernels_reading(dy) == 2);
  // The two statistics and the two gradient sums are one kernel each.
  for (Op op : {Op::channel_mean, Op::reduce_sum}) {
    INFO(op_info(op).name);
    for (NodeId id : g.nodes_of(op)) {
      if (op == Op::reduce_sum && g.node(id).operands[0] != dy) continue;  // the bias gradients
      const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[id])];
      CHECK(group.side_outputs == std::vector<NodeId>{id});
      CHECK(g.node(group.anchor).op == (op == Op::channel_mean ? Op::channel_var : Op::batchnorm_grad_gamma));
    }
  }
  CHECK(describe_fusion(g, plan, true).find("in the same read of") != std::string::npos);
  // dx is computed by the kernel of the convolution's bias gradient, which sums it per channel
  // as it stores it, and that kernel is dy's last reader: the JIT plan stores dx over dy.
  const FusionPlan jit_plan = plan_fusion(g);
  const auto dx = std::ranges::find_if(jit_plan.groups, [&](const FusionGroup& k) {
    return std::ranges::count(k.inputs, dy) > 0 && std::ranges::count(k.inputs, x) > 0 &&
           value_summed_beside(g, k) >= 0;
  });
  REQUIRE(dx != jit_plan.groups.end());
  CHECK(g.node(dx->anchor).op == Op::reduce_sum);
  const NodeId summed = value_summed_beside(g, *dx);
  CHECK(dx->side_outputs == std::vector<NodeId>{summed});
  CHECK(dx->in_place == std::vector<std::pair<NodeId, NodeId>>{{summed, dy}});
}

namespace {

/// reduce_sum over every axis of x but 1 as the reduction kernels sum it (codegen/partials.h):
/// per channel 16 float partials, position q of each image's run into partial q % 16, the
/// images in order, then the partials folded partial 0 first.
std::vector<float> channel_sums(const Tensor& x) {
  const Shape shape(x.shape().begin(), x.shape().end());
  const int64_t batch = shape[0], channels = shape[1], inner = numel(shape) / (batch * channels);
  std::vector<float> sums;
  for (int64_t c = 0; c < channels; ++c) {
    float partials[16] = {};
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t q = 0; q < inner; ++q) partials[q % 16] += x.data()[(b * channels + c) * inner + q];
    float sum = partials[0];
    for (int p = 1; p < 16; ++p) sum += partials[p];
    sums.push_back(sum);
  }
  return sums;
}

}  // namespace

TEST_CASE("a reduce_sum over every axis but the channels' sums 16 float partials per image run", "[jit][ops]") {
  // The order dbeta's sibling sum in batch norm's kernel must follow (emit_norm.cpp) to give
  // its bits: each channel's sum must be the bits of the partials above at every width and
  // thread count, whether the sum keeps its dimensions or not.
  for (const Shape& shape : std::vector<Shape>{
           {1, 3, 5, 7}, {3, 17, 5, 7}, {7, 2, 1, 33}, {3, 70, 4, 4}, {2, 5, 17}, {64, 32, 28, 28}, {5, 130, 7, 7}}) {
    INFO("x " << to_string(shape));
    const Tensor x = uniform(shape, -1, 1, 41);
    const std::vector<float> want = channel_sums(x);
    for (bool keepdims : {false, true}) {
      Graph g;
      NodeId in = input(g, "x", shape);
      g.set_output("sum",
                   g.add(Op::reduce_sum, {in}, {{"axes", all_but_channels(shape)}, {"keepdims", int64_t(keepdims)}}));
      for (auto [width, threads] :
           {std::pair{0, 1}, std::pair{0, 2}, std::pair{4, 3}, std::pair{8, 2}, std::pair{16, 3}}) {
        INFO("keepdims " << keepdims << ", width " << width << ", " << threads << " threads");
        const Tensor got = run(g, {{"x", x}}, width, threads).at("sum");
        REQUIRE(got.size() == want.size());
        CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
      }
    }
  }
}

namespace {

/// How the test below varies the chain v = dropout((x - f) * y - f, key) that a reduce_sum sums per
/// channel: as it is, with a reader of v before the sum, or with f broadcast along the last
/// axis only (not one value per channel).
enum class ChainCase { summed, read_before, row_factor };

/// v, its per-channel sum ("sum") and 2 v ("out", read after the sum); v is an output too.
Graph summed_chain(const Shape& shape, ChainCase kind, bool keepdims) {
  Graph g;
  const NodeId x = input(g, "x", shape), y = input(g, "y", shape), key = input(g, "key", {});
  const Shape factor = kind == ChainCase::row_factor ? Shape{shape.back()} : Shape{shape[1], 1, 1};
  const NodeId f = input(g, "f", factor);
  // - f last: where a vector reaches past a run, x and y read 0 there but v would not be 0.
  const NodeId v = g.add(Op::dropout, {g.add(Op::sub, {g.add(Op::mul, {g.add(Op::sub, {x, f}), y}), f}), key},
                         {{"p", 0.25}, {"salt", int64_t(9)}});
  g.set_output("v", v);
  auto twice = [&] {
    g.set_output("out", g.add(Op::mul, {v, g.add(Op::constant, {}, {{"value", 2.0}, {"shape", Shape{}}})}));
  };
  if (kind == ChainCase::read_before) twice();
  g.set_output("sum", g.add(Op::reduce_sum, {v}, {{"axes", all_but_channels(shape)}, {"keepdims", int64_t(keepdims)}}));
  if (kind != ChainCase::read_before) twice();
  return g;
}

}  // namespace

TEST_CASE("an elementwise chain summed per channel is stored and summed by one kernel in the reduction's order",
          "[jit][ops]") {
  // The chain's kernel and the sum's become one (fusion.h's last rule) only where the sum is
  // the chain's first reader, the chain reads values of its shape, per channel or scalars, and
  // there are several channels and inner positions; the sum must keep reduce_sum's bits
  // (the partials of channel_sums above) at every width and thread count, and v its own.
  for (const Shape& shape : std::vector<Shape>{
           {3, 5, 7, 9}, {1, 3, 4, 4}, {2, 17, 5, 3}, {4, 2, 1, 3}, {2, 1, 5, 5}, {5, 4, 1, 1}, {64, 32, 28, 28}}) {
    const bool mergeable = shape[1] > 1 && shape[2] * shape[3] > 1;
    for (ChainCase kind : {ChainCase::summed, ChainCase::read_before, ChainCase::row_factor}) {
      const StateMap feeds{
          {"x", uniform(shape, -1, 1, 51)},
          {"y", uniform(shape, -2, 2, 52)},
          {"key", scalar_tensor(77)},
          {"f", uniform(kind == ChainCase::row_factor ? Shape{shape.back()} : Shape{shape[1], 1, 1}, -1, 1, 53)}};
      for (bool keepdims : {false, true}) {
        INFO("x " << to_string(shape) << ", case " << static_cast<int>(kind) << ", keepdims " << keepdims);
        const Graph g = summed_chain(shape, kind, keepdims);
        const FusionPlan plan = fuse(g);
        const bool merged =
            std::ranges::any_of(plan.groups, [&](const FusionGroup& k) { return value_summed_beside(g, k) >= 0; });
        CHECK(merged == (mergeable && kind == ChainCase::summed));
        StateMap state;
        const StateMap want = interpret<float>(g, feeds, state);
        const std::vector<float> sums = channel_sums(want.at("v"));
        for (auto [width, threads] :
             {std::pair{0, 1}, std::pair{0, 2}, std::pair{4, 3}, std::pair{8, 2}, std::pair{16, 3}}) {
          INFO("width " << width << ", " << threads << " threads");
          const StateMap got = run(g, feeds, width, threads);
          CHECK(bitwise_equal(got.at("v"), want.at("v")));
          CHECK(bitwise_equal(got.at("out"), want.at("out")));
          const Tensor& sum = got.at("sum");
          REQUIRE(sum.size() == sums.size());
          if (shape[1] > 1) CHECK(std::memcmp(sum.data(), sums.data(), sums.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("a projection skip's bias gradient is its batch norm's dbeta, summed once", "[jit][ops]") {
  // relu(batchnorm(conv(x)) + conv1x1(x)): the add's gradient dy feeds dbeta and the 1x1
  // convolution's bias gradient, one sum over the same axes; the training step keeps one
  // reduce_sum of dy (a reshape gives the bias's shape), computed beside dgamma.
  ModelFn model = [](Model& m, Value x) {
    Value y = add(m.batchnorm(m.conv2d(x, 6, 3)), m.conv2d(x, 6, 1));
    return m.dense(flatten(relu(y)), m.classes());
  };
  OptimizerConfig cfg;
  const Graph g = build_training_step(model, 5, cfg, {2, 7, 7});
  const std::vector<NodeId> grads = g.nodes_of(Op::batchnorm_grad_gamma);
  REQUIRE(grads.size() == 1);
  const NodeId dy = g.node(grads[0]).operands[1];
  const auto sums_of_dy =
      std::ranges::count_if(g.nodes_of(Op::reduce_sum), [&](NodeId id) { return g.node(id).operands[0] == dy; });
  CHECK(sums_of_dy == 1);
  const FusionPlan plan = fuse(g);
  for (NodeId id : g.nodes_of(Op::reduce_sum)) {
    if (g.node(id).operands[0] != dy) continue;
    const FusionGroup& group = plan.groups[static_cast<size_t>(plan.group_of[id])];
    CHECK(group.anchor == grads[0]);
    CHECK(group.side_outputs == std::vector<NodeId>{id});
  }
  // The step computes what the interpreter does.
  StateMap initial;
  initialize_state(g, initial, 7);
  const BothRuns both = run_both(g, training_feeds(g, 5, 0), initial);
  CHECK(max_state_error(both.jit, both.ref) < 1e-5);
}

namespace {

/// The graph of a pooled batch norm's backward pass in small: y = relu(batchnorm_infer(x)) (or y
/// = x, no normalization to recompute), pooled; dy_bn = relu_grad(y, maxpool2d_backward(y, dy))
/// (or the pooling gradient alone), its dbeta (with `dbeta`) and dgamma. With `early_reader`, a
/// node made before the sums also reads dy_bn, so they keep a kernel of their own.
struct PoolSumsCase {
  Shape x;
  int64_t window, stride;
  bool normalized, activated, dbeta;
};

Graph pool_sums_graph(const PoolSumsCase& c, bool early_reader) {
  Graph g;
  const Shape channels{c.x[1]};
  const NodeId x = input(g, "x", c.x);
  NodeId y = x;
  if (c.normalized) {
    std::vector<NodeId> operands{x};
    for (const char* name : {"gamma", "beta", "mean", "var"}) operands.push_back(input(g, name, channels));
    y = g.add(Op::batchnorm_infer, operands, {{"eps", 1e-5}});
  }
  if (c.activated) y = g.add(Op::relu, {y});
  const Attrs pool{{"window", c.window}, {"stride", c.stride}};
  const NodeId pooled = g.add(Op::maxpool2d, {y}, pool);
  g.set_output("pooled", pooled);
  NodeId dy = g.add(Op::maxpool2d_backward, {y, input(g, "dy", g.shape(pooled))}, pool);
  if (c.activated) dy = g.add(Op::relu_grad, {y, dy});
  g.set_output("dy_bn", dy);
  if (early_reader) g.set_output("early", g.add(Op::neg, {dy}));
  if (c.dbeta)
    g.set_output("dbeta", g.add(Op::reduce_sum, {dy}, {{"axes", all_but_channels(c.x)}, {"keepdims", int64_t(0)}}));
  g.set_output("dgamma", g.add(Op::batchnorm_grad_gamma, {x, dy}, {{"eps", 1e-5}}));
  return g;
}

}  // namespace

TEST_CASE("batchnorm_grad_gamma summed in the pooling gradient's kernel gives the bits of its own kernel",
          "[jit][ops]") {
  // The kernel that writes dy of a pooled batch norm also sums dgamma (and dbeta) over each
  // plane just written (codegen/fusion.h): its items become channels, swept in the norm
  // kernel's blocks. Geometries as the pooling tests': 2x2 windows tiling the plane, 2x2
  // windows leaving an odd map's last row and column out (not merged), overlapping ones, a
  // gathered stride of 3; then several blocks of channels with a ragged last one (20 per block on 28x28 maps,
  // 64 on 10x10), which 3 threads split. Every output must be the bits of the same graph whose
  // sums keep their own kernel. Where the windows do not tile the plane or the planes are
  // under 100 floats the sums stay apart (codegen/fusion.cpp). The arena starts as NaN, so an element no
  // kernel writes shows.
  const std::vector<PoolSumsCase> cases = {
      {{3, 5, 10, 10}, 2, 2, true, true, true},  {{2, 3, 4, 36}, 2, 2, true, false, true},
      {{1, 7, 12, 10}, 2, 2, false, true, true}, {{3, 2, 13, 13}, 3, 2, true, true, false},
      {{2, 3, 9, 9}, 3, 1, false, false, true},  {{2, 3, 10, 11}, 3, 3, true, true, true},
      {{2, 45, 28, 28}, 2, 2, true, true, true}, {{3, 70, 10, 10}, 2, 2, true, true, true},
      {{64, 3, 28, 28}, 2, 2, true, true, true}, {{3, 9, 7, 7}, 2, 2, true, true, true}};
  for (const PoolSumsCase& c : cases) {
    INFO("x " << to_string(c.x) << " window " << c.window << " stride " << c.stride << " normalized "
              << c.normalized << " relu " << c.activated << " dbeta " << c.dbeta);
    const Graph g = pool_sums_graph(c, false), apart = pool_sums_graph(c, true);
    const NodeId dgamma = *g.output("dgamma");
    const FusionPlan plan = fuse(g);
    const FusionGroup& merged = plan.groups[static_cast<size_t>(plan.group_of[dgamma])];
    // Merged where the windows tile planes of 100 floats or more; elsewhere the sums keep
    // their kernel.
    const bool tiled = c.window == 2 && c.stride == 2 && c.x[2] % 2 == 0 && c.x[3] % 2 == 0 && c.x[2] * c.x[3] >= 100;
    CHECK(merged.root == dgamma);
    CHECK(g.node(merged.anchor).op == (tiled ? Op::maxpool2d_backward : Op::batchnorm_grad_gamma));
    CHECK(std::ranges::count(merged.side_outputs, *g.output("dy_bn")) == (tiled ? 1 : 0));
    CHECK(merged.side_outputs.size() == (tiled ? 1u : 0u) + (c.dbeta ? 1u : 0u));
    const FusionPlan kept = fuse(apart);
    CHECK(kept.groups[static_cast<size_t>(kept.group_of[*apart.output("dgamma")])].anchor == *apart.output("dgamma"));
    CHECK((describe_fusion(g, plan, true).find("is summed where") != std::string::npos) == tiled);

    const Shape channels{c.x[1]};
    const StateMap feeds{{"x", uniform(c.x, -1, 3, 51)},
                         {"gamma", uniform(channels, 0.5, 1.5, 52)},
                         {"beta", uniform(channels, -1, 1, 53)},
                         {"mean", uniform(channels, 0, 2, 54)},
                         {"var", uniform(channels, 0.5, 2, 55)},
                         {"dy", uniform(g.shape(*g.output("pooled")), -1, 1, 56)}};
    TensorMap<double> none;
    const TensorMap<double> exact = interpret<double>(g, to_double(feeds), none);
    StateMap no_state;
    const Tensor dy_bn = interpret<float>(g, feeds, no_state).at("dy_bn");  // dy's values moved: exact
    for (auto [width, threads] :
         {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 1}, std::pair{8, 2}, std::pair{16, 3}}) {
      INFO("width " << width << ", " << threads << " threads");
      const StateMap got = run(g, feeds, width, threads), want = run(apart, feeds, width, threads);
      for (const char* name : {"pooled", "dy_bn", "dgamma", "dbeta"}) {
        if (!got.contains(name)) continue;
        INFO(name);
        CHECK(bitwise_equal(got.at(name), want.at(name)));
      }
      CHECK(bitwise_equal(got.at("dy_bn"), dy_bn));
      // dgamma against the interpreter in double: float rounding of its double sums.
      const xt::xarray<double>& exact_dgamma = exact.at("dgamma");
      double worst = 0;
      for (size_t i = 0; i < exact_dgamma.size(); ++i)
        worst = std::max(worst, std::abs(double(got.at("dgamma").data()[i]) - exact_dgamma.data()[i]) /
                                    std::max(std::abs(exact_dgamma.data()[i]), 1e-3));
      CHECK(worst < 2e-6);
    }
  }
}

TEST_CASE("a pooled batch norm's training step sums dgamma where dy is written", "[jit][ops]") {
  // conv -> batchnorm -> relu -> maxpool -> dense: the pooling gradient's kernel writes dy and
  // sums dgamma and dbeta from it, so dy is read by one kernel (dx's) and no kernel of
  // batchnorm_grad_gamma's own is left; the step computes what the interpreter does, on maps
  // of 10x10 and 12x12.
  ModelFn model = [](Model& m, Value x) {
    return m.dense(flatten(maxpool(relu(m.batchnorm(m.conv2d(x, 6, 3))), 2)), m.classes());
  };
  for (int64_t size : {10, 12}) {
    INFO("images " << size << "x" << size);
    OptimizerConfig cfg;
    const Graph g = build_training_step(model, 5, cfg, {2, size, size});
    const FusionPlan plan = fuse(g);
    const std::vector<NodeId> grads = g.nodes_of(Op::batchnorm_grad_gamma);
    REQUIRE(grads.size() == 1);
    const NodeId dy = g.node(grads[0]).operands[1];
    const FusionGroup& merged = plan.groups[static_cast<size_t>(plan.group_of[grads[0]])];
    CHECK(g.node(merged.anchor).op == Op::maxpool2d_backward);
    CHECK(merged.side_outputs.size() == 2);  // dy, dbeta
    CHECK(std::ranges::count_if(plan.groups,
                                [&](const FusionGroup& k) { return std::ranges::count(k.inputs, dy) > 0; }) == 1);
    StateMap initial;
    initialize_state(g, initial, 7);
    const BothRuns both = run_both(g, training_feeds(g, 5, 0), initial);
    CHECK(max_state_error(both.jit, both.ref) < 1e-5);
  }
}
