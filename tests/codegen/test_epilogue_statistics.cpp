// Batch statistics in a convolution's epilogue (codegen/conv_statistics.h): the channel_mean and
// channel_var of a conv2d group's output are summed as the kernel stores it, direct and Winograd,
// and must match the interpreter on odd shapes, keep their digits far from zero, and give the
// same bits at every vector width and thread count (the store's sums at widths 8 and 16, the
// plan's own from the output at width 4).
#include <catch2/catch.hpp>

#include "codegen/jit_support.h"
#include "dagger/codegen/conv_algo.h"
#include "dagger/codegen/fusion.h"
#include "dagger/runtime/init.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// What follows the batch norm in statistics_graph.
enum class After { nothing, relu, relu_maxpool };

/// y = conv2d(x, w) + bias (3x3, pad 1, `stride`), its batch mean and variance, and the batch
/// norm on them (with a ReLU, then a 2x2 maxpool, where `after` says), each an output.
Graph statistics_graph(const Shape& x, int64_t channels, int64_t stride, After after) {
  Graph g;
  NodeId conv = g.add(Op::conv2d, {input(g, "x", x), input(g, "w", {channels, x[1], 3, 3})},
                      {{"stride", stride}, {"pad", int64_t(1)}});
  NodeId y = g.add(Op::add, {conv, input(g, "bias", {1, channels, 1, 1})});
  NodeId mean = g.add(Op::channel_mean, {y});
  NodeId var = g.add(Op::channel_var, {y});
  NodeId out = g.add(Op::batchnorm_infer, {y, input(g, "gamma", {channels}), input(g, "beta", {channels}), mean, var},
                     {{"eps", 1e-5}});
  if (after != After::nothing) out = g.add(Op::relu, {out});
  if (after == After::relu_maxpool && g.shape(out)[2] >= 2 && g.shape(out)[3] >= 2)
    out = g.add(Op::maxpool2d, {out}, {{"window", int64_t(2)}, {"stride", int64_t(2)}});
  g.set_output("y", y);
  g.set_output("mean", mean);
  g.set_output("var", var);
  g.set_output("out", out);
  return g;
}

StateMap statistics_feeds(const Shape& x, int64_t channels, float offset) {
  return {{"x", uniform(x, -1, 1, 41)},
          {"w", uniform({channels, x[1], 3, 3}, -0.5, 0.5, 42)},
          {"bias", uniform({1, channels, 1, 1}, offset - 1, offset + 1, 43)},
          {"gamma", uniform({channels}, 0.5, 1.5, 44)},
          {"beta", uniform({channels}, -1, 1, 45)}};
}

StateMap run(const Graph& g, const StateMap& feeds, ConvAlgo algo, int width, int threads) {
  JitOptions options;
  options.vector_width = width;
  options.threads = threads;
  options.conv_algo = algo;
  StateMap state;
  return compile_jit(g, options)->run(feeds, state);
}

/// The batch mean and variance of `y` by the interpreter in double: the reference for the
/// statistics of a kernel's own float output, whatever its convolution's rounding.
TensorMap<double> exact_statistics(const Tensor& y) {
  Graph g;
  NodeId yi = input(g, "y", Shape(y.shape().begin(), y.shape().end()));
  g.set_output("mean", g.add(Op::channel_mean, {yi}));
  g.set_output("var", g.add(Op::channel_var, {yi}));
  TensorMap<double> none;
  return interpret<double>(g, to_double(StateMap{{"y", y}}), none);
}

/// The largest error of `got` against `want` relative to each value, floored at `floor`.
double relative_error(const Tensor& got, const xt::xarray<double>& want, double floor) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    worst =
        std::max(worst, std::abs(double(got.data()[i]) - want.data()[i]) / std::max(std::abs(want.data()[i]), floor));
  return worst;
}

}  // namespace

TEST_CASE("statistics in a convolution's epilogue match the interpreter on odd shapes", "[jit][ops]") {
  int cases = 0;
  for (int64_t batch : {1, 3})
    for (int64_t channels : {1, 3, 17})
      for (auto [h, w] : {std::pair{1, 1}, std::pair{5, 7}, std::pair{28, 28}})
        for (int64_t stride : {1, 2})
          for (ConvAlgo algo : {ConvAlgo::direct, ConvAlgo::winograd}) {
            if (algo == ConvAlgo::winograd && stride != 1) continue;  // Winograd is for stride 1
            const After after = channels == 3 ? After::relu_maxpool : channels == 17 ? After::relu : After::nothing;
            const Shape x{batch, 2, h, w};
            INFO("x " << to_string(x) << ", " << channels << " channels, stride " << stride << ", "
                      << conv_algo_name(algo));
            const Graph g = statistics_graph(x, channels, stride, after);
            // The statistics are the convolution's side outputs, not kernels of their own.
            const FusionPlan plan = fuse(g);
            const FusionGroup& conv = plan.groups[static_cast<size_t>(plan.group_of[g.nodes_of(Op::conv2d)[0]])];
            CHECK(epilogue_statistics(g, conv) == std::vector<NodeId>{*g.output("mean"), *g.output("var")});
            CHECK(plan.group_of[*g.output("var")] == plan.group_of[g.nodes_of(Op::conv2d)[0]]);
            const StateMap feeds = statistics_feeds(x, channels, 0.5f);
            TensorMap<double> none;
            const TensorMap<double> exact = interpret<double>(g, to_double(feeds), none);
            std::optional<StateMap> first;
            for (auto [width, threads] :
                 {std::pair{0, 1}, std::pair{0, 3}, std::pair{4, 2}, std::pair{8, 3}, std::pair{16, 2}}) {
              INFO("width " << width << ", " << threads << " threads");
              const StateMap got = run(g, feeds, algo, width, threads);
              // The statistics against those of the kernel's own y: the mean relative to the
              // channel's spread (about 1), the variance to itself; the whole against the
              // interpreter's graph, Winograd's rounding included.
              const TensorMap<double> of_y = exact_statistics(got.at("y"));
              CHECK(relative_error(got.at("mean"), of_y.at("mean"), 1.0) < 1e-6);
              CHECK(relative_error(got.at("var"), of_y.at("var"), 1e-3) < 2e-6);
              CHECK(relative_error(got.at("out"), exact.at("out"), 1.0) < 1e-4);
              if (!first) {
                first = got;
                continue;
              }
              for (const char* name : {"mean", "var", "out"}) {
                INFO(name);
                CHECK(bitwise_equal(got.at(name), first->at(name)));
              }
            }
            ++cases;
          }
  CHECK(cases == 54);
}

TEST_CASE("statistics in a convolution's epilogue keep their digits when the mean is far from zero", "[jit][ops]") {
  // The bias puts each channel's outputs around 1e4 or 1e7 with a spread of about 1: each slot
  // sums around its first element and the plan rebases the slots on the channel's first, so
  // the variance keeps float accuracy against the interpreter in double.
  for (double offset : {1e4, 1e7})
    for (ConvAlgo algo : {ConvAlgo::direct, ConvAlgo::winograd})
      for (const Shape& x : {Shape{64, 3, 7, 7}, Shape{3, 2, 28, 28}}) {
        INFO(to_string(x) << " around " << offset << ", " << conv_algo_name(algo));
        const Graph g = statistics_graph(x, 5, 1, After::relu);
        const StateMap feeds = statistics_feeds(x, 5, float(offset));
        for (int width : {0, 4, 8}) {
          INFO("width " << width);
          const StateMap got = run(g, feeds, algo, width, 2);
          const TensorMap<double> exact = exact_statistics(got.at("y"));
          CHECK(relative_error(got.at("mean"), exact.at("mean"), 0) < 1e-6);
          CHECK(relative_error(got.at("var"), exact.at("var"), 0) < 1e-6);
        }
      }
}
