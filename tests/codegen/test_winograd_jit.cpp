// Winograd F(2x2,3x3) and F(4x4,3x3) convolution kernels (forward and data gradient, with and
// without an epilogue) against the interpreter in double, on shapes that leave partial tiles
// and panels: maps not a multiple of the tile (7x7, 5x9, 1x1, 2x3, 6x6, 9x9), maps wider than
// one panel, small maps whose images share a panel (and a last, partial group of images, and
// panels of several groups of images), odd channel counts (1, 3, 17), batches of 1, 3, 7 and
// 13; and what chooses Winograd.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <iostream>

#include "codegen/jit_support.h"
#include "dagger/codegen/conv_algo.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/winograd_layout.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

struct Geometry {
  int64_t n, c, h, w, k;
};

const Attrs kSame{{"stride", int64_t(1)}, {"pad", int64_t(1)}};

/// conv2d (x, w) or conv2d_backward_data (dy, w) of a 3x3 same convolution, optionally
/// followed by the epilogue relu(. + bias).
Graph conv_graph(Op op, const Geometry& v, bool epilogue) {
  Graph g;
  const Shape x{v.n, v.c, v.h, v.w}, y{v.n, v.k, v.h, v.w}, f{v.k, v.c, 3, 3};
  Attrs attrs = kSame;
  if (op == Op::conv2d_backward_data) attrs.set("shape", x);
  NodeId out = g.add(op, {input(g, "a", op == Op::conv2d ? x : y), input(g, "w", f)}, attrs);
  if (epilogue) out = g.add(Op::relu, {g.add(Op::add, {out, input(g, "bias", {g.shape(out)[1], 1, 1})})});
  g.set_output("out", out);
  return g;
}

/// The JIT's output under `algo` against the interpreter in double.
Errors errors(Op op, const Geometry& v, bool epilogue, ConvAlgo algo, int width = 0, int threads = 1) {
  const Graph g = conv_graph(op, v, epilogue);
  StateMap feeds;
  TensorMap<double> exact_feeds, abs_feeds;
  uint32_t seed = 40;
  for (NodeId id : g.nodes_of(Op::input)) {
    const std::string& name = g.node(id).attrs.s("name");
    feeds[name] = uniform(g.node(id).shape, -1, 1, ++seed);
    exact_feeds[name] = xt::cast<double>(feeds[name]);
    abs_feeds[name] = xt::abs(exact_feeds[name]);
  }
  JitOptions options;
  options.poison_arena = true;  // an element no kernel writes reads NaN
  options.vector_width = width;
  options.threads = threads;
  options.conv_algo = algo;
  StateMap none;
  const Tensor got = compile_jit(g, options)->run(feeds, none).at("out");
  TensorMap<double> no_state;
  const xt::xarray<double> want = interpret<double>(g, exact_feeds, no_state).at("out");
  const Graph bare = conv_graph(op, v, false);
  xt::xarray<double> scale = interpret<double>(bare, abs_feeds, no_state).at("out");
  if (epilogue) scale += xt::abs(exact_feeds["bias"]);
  return errors_against(got, want, scale);
}

const std::vector<Geometry> kOdd = {
    {1, 1, 1, 1, 1},  {3, 3, 7, 7, 17}, {1, 17, 5, 9, 3},  {3, 17, 2, 3, 1},
    {1, 3, 1, 7, 17}, {3, 1, 9, 5, 3},  {1, 3, 4, 130, 5},  // 65 tiles across: more than one panel per tile row
    {7, 2, 5, 5, 4},                     // 9 tiles an image: 5 images share a panel, the second group only 2
    {3, 17, 6, 6, 3}, {1, 3, 9, 9, 17},  // 4x4 tiles: one partial tile row and column, or two
    {13, 5, 7, 7, 9},  // panels of several groups of images (F(4x4) at W = 16: 3 groups of 4), the last panel's
                       // first group holding one image and the others none
};

// Measured over these shapes and the cnn3 and rescnn layers (below): F(2x2,3x3) in float is
// within 7e-7 of the exact value relative to the sum of the |products| (5.4e-7 on the layers;
// direct: up to 2.4e-7 there, its sums being longer chains); the bound leaves a factor of 3.
constexpr double kWinogradScaled = 2e-6;
// F(4x4,3x3), whose transforms weigh the patch by up to 5/2 and the products by up to 8: within
// 2.0e-6 on these shapes and 0.6-1.0e-6 on the layers of 32 channels and more (6-10x
// F(2x2,3x3)'s), 1.0e-5 on the one-channel conv1 (`auto` keeps it direct), where 9 products
// are summed and no channel sum averages the transforms' rounding. The bounds leave a factor
// of 3.
constexpr double kWinograd4Scaled = 6e-6;
constexpr double kWinograd4OneChannelScaled = 4e-5;

/// The tolerance of `algo`'s Winograd form.
double tolerance(ConvAlgo algo) { return algo == ConvAlgo::winograd4 ? kWinograd4Scaled : kWinogradScaled; }

const std::vector<ConvAlgo> kForms = {ConvAlgo::winograd, ConvAlgo::winograd4};

/// The JIT's output of conv_graph(op, v, true) under `algo` at each (vector width, threads),
/// on one set of random feeds drawn from `seed`.
std::vector<Tensor> outputs_at(Op op, const Geometry& v, ConvAlgo algo, uint32_t seed,
                               const std::vector<std::pair<int, int>>& configs) {
  const Graph g = conv_graph(op, v, true);
  StateMap feeds;
  for (NodeId id : g.nodes_of(Op::input)) feeds[g.node(id).attrs.s("name")] = uniform(g.node(id).shape, -1, 1, ++seed);
  StateMap none;
  std::vector<Tensor> outs;
  for (const auto& [width, threads] : configs) {
    JitOptions options;
    options.poison_arena = true;  // an element no kernel writes reads NaN
    options.vector_width = width;
    options.threads = threads;
    options.conv_algo = algo;
    outs.push_back(compile_jit(g, options)->run(feeds, none).at("out"));
  }
  return outs;
}

}  // namespace

TEST_CASE("winograd convolutions match the interpreter on odd shapes", "[jit][conv][winograd]") {
  for (ConvAlgo algo : kForms) {
    double worst = 0;
    for (const Geometry& v : kOdd)
      for (Op op : {Op::conv2d, Op::conv2d_backward_data})
        for (bool epilogue : {false, true}) {
          INFO(conv_algo_name(algo) << " " << op_info(op).name << " N " << v.n << " C " << v.c << " H " << v.h << " W "
                                    << v.w << " K " << v.k << (epilogue ? " with bias and relu" : ""));
          const Errors e = errors(op, v, epilogue, algo);
          CHECK(e.scaled < tolerance(algo));
          worst = std::max(worst, e.scaled);
        }
    std::cout << conv_algo_name(algo) << " conv, odd shapes: max error relative to the sum of |products| " << worst
              << "\n";
  }
}

TEST_CASE("winograd on the cnn3 and rescnn layer shapes: error against double", "[jit][conv][winograd]") {
  // Batch 2 of each 3x3 layer: 1->32 and 32->32 at 28x28, 32->64 and 64->64 at 14x14, 64->128
  // and 128->128 at 7x7.
  const std::vector<Geometry> layers = {{2, 1, 28, 28, 32},  {2, 32, 28, 28, 32}, {2, 32, 14, 14, 64},
                                        {2, 64, 14, 14, 64}, {2, 64, 7, 7, 128},  {2, 128, 7, 7, 128}};
  for (const Geometry& v : layers)
    for (Op op : {Op::conv2d, Op::conv2d_backward_data}) {
      INFO(op_info(op).name << " C " << v.c << " H " << v.h << " K " << v.k);
      const Errors wino = errors(op, v, false, ConvAlgo::winograd);
      const Errors wino4 = errors(op, v, false, ConvAlgo::winograd4);
      const Errors direct = errors(op, v, false, ConvAlgo::direct);
      std::cout << fmt::format(
          "{} C {} HxW {}x{} K {}: max abs error direct {:.2e} F(2x2) {:.2e} F(4x4) {:.2e}; relative to "
          "sum |products| direct {:.2e} F(2x2) {:.2e} F(4x4) {:.2e}\n",
          op_info(op).name, v.c, v.h, v.w, v.k, direct.abs, wino.abs, wino4.abs, direct.scaled, wino.scaled,
          wino4.scaled);
      CHECK(wino.scaled < kWinogradScaled);
      const int64_t reduced = op == Op::conv2d ? v.c : v.k;
      CHECK(wino4.scaled < (reduced == 1 ? kWinograd4OneChannelScaled : kWinograd4Scaled));
    }
}

TEST_CASE("winograd kernels: other vector widths, and the same bits at any width and thread count",
          "[jit][conv][winograd]") {
  for (ConvAlgo algo : kForms)
    for (int width : {4, 8, 16})
      for (Op op : {Op::conv2d, Op::conv2d_backward_data}) {
        INFO(conv_algo_name(algo) << " width " << width << " " << op_info(op).name);
        CHECK(errors(op, kOdd[1], true, algo, width, 2).scaled < tolerance(algo));
        CHECK(errors(op, kOdd[6], true, algo, width, 3).scaled < tolerance(algo));
        CHECK(errors(op, kOdd[9], true, algo, width, 2).scaled < tolerance(algo));
      }
  // Panels hold 2 * W tiles (W = 4, 8) or 3 * W (16), but every output sums the same terms
  // in the same order: the bits are the same at any width and thread count, as the direct
  // products' are.
  for (ConvAlgo algo : kForms)
    for (Op op : {Op::conv2d, Op::conv2d_backward_data}) {
      INFO(conv_algo_name(algo) << " " << op_info(op).name);
      const std::vector<Tensor> outs =
          outputs_at(op, {3, 5, 9, 11, 19}, algo, 60, {{0, 1}, {0, 2}, {0, 3}, {0, 8}, {4, 1}, {8, 2}, {16, 3}});
      for (size_t t = 1; t < outs.size(); ++t) CHECK(bitwise_equal(outs[0], outs[t]));
    }
}

TEST_CASE("a winograd kernel loops over a panel's groups of images rather than unrolling every image",
          "[jit][conv][winograd]") {
  // 7x7 maps at F(4x4): 4 tiles an image, so a group (the images whose tiles fill whole vectors
  // alike) is W / 4 images, and a panel of batch 64 holds several groups. Its kernel emits one
  // group's code, as a batch of one group does; unrolled, it grew with the images (3x at W = 16).
  const int64_t width = jit_target().vector_width, group = width / 4;
  auto lines = [](int64_t batch) {
    const std::string ir = dump_kernels(conv_graph(Op::conv2d, {batch, 16, 7, 7, 16}, true), DumpStage::ir_before_opt,
                                        ConvAlgo::winograd4);
    return std::count(ir.begin(), ir.end(), '\n');
  };
  const auto one_group = lines(group), panel_of_groups = lines(64);
  INFO("IR lines: batch " << group << " " << one_group << ", batch 64 " << panel_of_groups);
  CHECK(panel_of_groups < one_group * 5 / 4);
}

TEST_CASE("the compiler says which convolutions get winograd, and why", "[jit][conv][winograd]") {
  Graph g;
  NodeId x = input(g, "x", {2, 3, 8, 8});
  NodeId wide = g.add(Op::conv2d, {x, input(g, "w1", {32, 3, 3, 3})}, kSame);
  NodeId deep = g.add(Op::conv2d, {wide, input(g, "w2", {8, 32, 3, 3})}, kSame);
  NodeId strided =
      g.add(Op::conv2d, {deep, input(g, "w3", {8, 8, 3, 3})}, {{"stride", int64_t(2)}, {"pad", int64_t(1)}});
  g.set_output("out", strided);
  CHECK_FALSE(choose_conv_algo(g, g.node(wide), ConvAlgo::automatic).winograd);  // 3 input channels
  CHECK(choose_conv_algo(g, g.node(wide), ConvAlgo::winograd).winograd);
  CHECK(choose_conv_algo(g, g.node(deep), ConvAlgo::automatic).winograd);  // 32 input channels
  CHECK_FALSE(choose_conv_algo(g, g.node(deep), ConvAlgo::direct).winograd);
  CHECK_FALSE(choose_conv_algo(g, g.node(strided), ConvAlgo::winograd).winograd);
  CHECK(choose_conv_algo(g, g.node(deep), ConvAlgo::automatic).tile_size == 2);  // 2 x 8 x 8 output positions
  CHECK(choose_conv_algo(g, g.node(deep), ConvAlgo::winograd).tile_size == 2);
  CHECK(choose_conv_algo(g, g.node(deep), ConvAlgo::winograd4).tile_size == 4);
  CHECK(describe_fusion(g, fuse(g), true, ConvAlgo::winograd4)
            .find(fmt::format("algo:  %{} winograd F(4x4,3x3): --conv-algo winograd4", deep)) != std::string::npos);
  const std::string why = describe_fusion(g, fuse(g), true, ConvAlgo::automatic);
  CHECK(why.find(fmt::format("algo:  %{} direct (auto): a reduction over 3 channels", wide)) != std::string::npos);
  CHECK(why.find(fmt::format("algo:  %{} winograd F(2x2,3x3) (auto)", deep)) != std::string::npos);
  CHECK(why.find(fmt::format("algo:  %{} direct: Winograd F(2x2,3x3) needs", strided)) != std::string::npos);
}

TEST_CASE("auto takes the 4x4 output tile from 3136 output positions per channel", "[jit][conv][winograd]") {
  for (const auto& [batch, tile_size] : std::vector<std::pair<int64_t, int>>{{63, 2}, {64, 4}}) {
    Graph g;  // 7x7 maps: 49 positions an image
    const NodeId conv = g.add(Op::conv2d, {input(g, "x", {batch, 16, 7, 7}), input(g, "w", {16, 16, 3, 3})}, kSame);
    g.set_output("out", conv);
    INFO("batch " << batch);
    const ConvChoice choice = choose_conv_algo(g, g.node(conv), ConvAlgo::automatic);
    CHECK(choice.winograd);
    CHECK(choice.tile_size == tile_size);
    CHECK_THAT(choice.why, Catch::StartsWith(fmt::format("winograd F({0}x{0},3x3) (auto)", tile_size)));
  }
}

TEST_CASE("the kernel cache tells the two winograd forms apart", "[jit][conv][winograd][cache]") {
  TempDir dir("kernel-cache-winograd");
  ScopedEnv cache("DAGGER_CACHE_DIR", dir.path.string());
  const Graph g = conv_graph(Op::conv2d, {2, 17, 9, 9, 5}, false);  // one kernel
  auto cache_hits = [&](ConvAlgo algo) {
    JitOptions options;
    options.poison_arena = true;  // an element no kernel writes reads NaN
    options.conv_algo = algo;
    return compile_jit(g, options)->compile_stats().cache_hits;
  };
  CHECK(cache_hits(ConvAlgo::winograd) == 0);
  CHECK(cache_hits(ConvAlgo::winograd4) == 0);  // another kernel, not F(2x2)'s from the cache
  CHECK(cache_hits(ConvAlgo::winograd) == 1);
  CHECK(cache_hits(ConvAlgo::winograd4) == 1);
}

TEST_CASE("winograd panels of whole tile rows run on from one image into the next, with the same bits",
          "[jit][conv][winograd]") {
  // 28x28 maps at F(4x4) (7 x 7 tiles: 49 of an image's 64 lanes filled at W = 16 inside each
  // image), 27x25 maps (a partial last tile row and column; at F(2x2) 14 x 13 tiles), batches
  // whose tile rows leave the last panel partial. Their panels cross image boundaries at the
  // widths listed (W = 4 leaves them inside: 7 tiles fill 2 vectors either way); each output is
  // the same sum in the same order, so every width and thread count gives W = 4's bits.
  struct Case {
    Geometry v;
    ConvAlgo algo;
    std::vector<unsigned> across;  // the widths whose panels cross images
  };
  const std::vector<Case> cases = {{{5, 3, 28, 28, 7}, ConvAlgo::winograd4, {8, 16}},
                                   {{3, 5, 27, 25, 9}, ConvAlgo::winograd4, {8, 16}},
                                   {{3, 5, 27, 25, 9}, ConvAlgo::winograd, {16}}};  // 13 tiles fill 2 x 8 lanes
  for (const auto& [v, algo, across] : cases) {
    const int tile_size = algo == ConvAlgo::winograd4 ? 4 : 2;
    const WinogradConv conv{v.n, v.c, v.k, v.h, v.w, nullptr, tile_size};
    CHECK_FALSE(winograd_layout(conv, 4, 1, true).across_images);
    CHECK_FALSE(winograd_layout(conv, 16, 1, false).across_images);  // the filter gradient's
    for (unsigned width : across) {
      const WinogradLayout l = winograd_layout(conv, width, 2, true);
      INFO(conv_algo_name(algo) << " N " << v.n << " H " << v.h << " W " << v.w << " width " << width);
      CHECK(l.across_images);
      CHECK(l.images * l.panel_cols <= l.vectors * static_cast<int64_t>(width));
      CHECK(ceil_div(v.n * l.tiles_h, l.images) * l.vectors <
            v.n * winograd_layout(conv, width, 2, false).panels * winograd_layout(conv, width, 2, false).vectors);
    }
    for (Op op : {Op::conv2d, Op::conv2d_backward_data}) {
      INFO(conv_algo_name(algo) << " " << op_info(op).name << " N " << v.n << " H " << v.h << " W " << v.w);
      const std::vector<Tensor> outs = outputs_at(op, v, algo, 80, {{4, 1}, {8, 1}, {8, 3}, {16, 1}, {16, 2}});
      for (size_t t = 1; t < outs.size(); ++t) CHECK(bitwise_equal(outs[0], outs[t]));
      for (int width : {8, 16}) CHECK(errors(op, v, true, algo, width, 2).scaled < tolerance(algo));
    }
  }
}

TEST_CASE("a winograd kernel whose panels cross images loops over their output groups", "[jit][conv][winograd]") {
  // 28x28 maps at F(4x4): one image's panels (batch 1) against panels of 9 tile rows across
  // images (batch 64 at W = 16, 2 rows at W = 8). The input transform is unrolled over the
  // panel's vectors either way; the output transform and stores run one group's code (one
  // vector of tile rows) in a loop. Unrolled over the 9 rows, the kernel was about 3x batch 1's.
  auto lines = [](int64_t batch) {
    const std::string ir = dump_kernels(conv_graph(Op::conv2d, {batch, 32, 28, 28, 32}, true), DumpStage::ir_before_opt,
                                        ConvAlgo::winograd4);
    return std::count(ir.begin(), ir.end(), '\n');
  };
  const auto one_image = lines(1), across = lines(64);
  INFO("IR lines: batch 1 " << one_image << ", batch 64 " << across);
  CHECK(across < one_image * 2);
}
