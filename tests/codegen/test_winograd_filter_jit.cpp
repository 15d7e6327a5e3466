// Winograd F(3x3,2x2) and F(3x3,4x4) filter gradients (codegen/emit_winograd_filter.cpp): the
// F(3x3,2x2) matrices in double (F(3x3,4x4)'s: tests/codegen/test_winograd_transforms.cpp),
// then the kernels against the interpreter in double on shapes that leave partial tiles,
// panels, passes and register tiles: maps 7x7, 5x9, 1x1, 2x3 and one wider than a panel; 1, 3
// and 17 channels on either side; batches of 1, 3 and 7; every vector width; the same bits at
// any width and thread count; and what chooses it.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <iostream>
#include <random>

#include "codegen/jit_support.h"
#include "dagger/codegen/conv_algo.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/host_tuning.h"
#include "dagger/codegen/winograd_layout.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

struct Geometry {
  int64_t n, c, h, w, k;
};

/// dw = conv2d_backward_filter(x, dy) of a 3x3 same convolution.
Graph filter_graph(const Geometry& v) {
  Graph g;
  const Attrs attrs{{"stride", int64_t(1)}, {"pad", int64_t(1)}, {"shape", Shape{v.k, v.c, 3, 3}}};
  g.set_output("dw", g.add(Op::conv2d_backward_filter,
                           {input(g, "x", {v.n, v.c, v.h, v.w}), input(g, "dy", {v.n, v.k, v.h, v.w})}, attrs));
  return g;
}

StateMap feeds_of(const Graph& g, uint32_t seed) {
  StateMap feeds;
  for (NodeId id : g.nodes_of(Op::input)) feeds[g.node(id).attrs.s("name")] = uniform(g.node(id).shape, -1, 1, ++seed);
  return feeds;
}

Tensor run(const Graph& g, const StateMap& feeds, ConvAlgo algo, int width, int threads) {
  JitOptions options;
  options.poison_arena = true;  // an element no kernel writes reads NaN
  options.vector_width = width;
  options.threads = threads;
  options.conv_algo = algo;
  StateMap none;
  return compile_jit(g, options)->run(feeds, none).at("dw");
}

/// The JIT's filter gradient under `algo` against the interpreter in double.
Errors errors(const Geometry& v, ConvAlgo algo, int width = 0, int threads = 1) {
  const Graph g = filter_graph(v);
  const StateMap feeds = feeds_of(g, 70);
  TensorMap<double> exact, absolute, none;
  for (const auto& [name, t] : feeds) {
    exact[name] = xt::cast<double>(t);
    absolute[name] = xt::abs(exact[name]);
  }
  const Tensor got = run(g, feeds, algo, width, threads);
  const xt::xarray<double> want = interpret<double>(g, exact, none).at("dw");
  xt::xarray<double> scale = interpret<double>(g, absolute, none).at("dw");  // sum of |products|
  // Each tap's error is taken relative to the largest sum of |products| among its filter's 9
  // taps: Winograd mixes a tile's taps, so a tap whose every product falls in the padding (on a
  // map of one row or column) is exactly 0 only where the transforms happen to cancel exactly,
  // as F(3x3,2x2)'s halves do and F(3x3,4x4)'s thirds and fifteenths do not.
  for (size_t f = 0; f < scale.size(); f += 9) {
    const double largest = *std::max_element(scale.data() + f, scale.data() + f + 9);
    std::fill(scale.data() + f, scale.data() + f + 9, largest);
  }
  return errors_against(got, want, scale);
}

const std::vector<Geometry> kOdd = {
    {1, 1, 1, 1, 1},   {3, 3, 7, 7, 17}, {1, 17, 5, 9, 3},  {3, 17, 2, 3, 1},
    {1, 3, 1, 7, 17},  {3, 1, 9, 5, 3},  {1, 3, 4, 130, 5},  // 65 tiles across: more than one panel per tile row
    {7, 2, 5, 5, 4},    // 9 tiles an image: images share a panel, the last group partial
    {3, 40, 7, 7, 19},  // more columns than one register tile (two column panels) and a row remainder
};

// Measured over these shapes and the cnn3 and rescnn layers at batch 16 (below), relative to
// the sum of the |products| (`errors`): F(3x3,2x2) in float is within 1.6e-7 of the exact value
// (0.6-1.6e-7 on the layers, where direct reaches 1.4-2.1e-7: both sum one chain over the
// images' tiles); F(3x3,4x4), whose transforms have entries up to 8, within 5.7e-7 (1.8-5.0e-7
// on the layers). The bounds leave factors of 12 and 3.5.
constexpr double kWinogradScaled = 2e-6;
constexpr double kWinograd4Scaled = 2e-6;

/// The two Winograd forms of the filter gradient: --conv-algo winograd and winograd4.
const std::vector<ConvAlgo> kForms = {ConvAlgo::winograd, ConvAlgo::winograd4};
double bound(ConvAlgo algo) { return algo == ConvAlgo::winograd4 ? kWinograd4Scaled : kWinogradScaled; }

}  // namespace

TEST_CASE("F(3x3,2x2): G^T [(A dy A^T) * (B^T d B)] G is the 3x3 correlation of a patch with a tile", "[winograd]") {
  // The forward's F(2x2,3x3) matrices, transposed as emit_winograd_filter.cpp derives.
  const double bt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  const double a[4][2] = {{1, 0}, {1, 1}, {1, -1}, {0, -1}};
  const double gt[3][4] = {{1, 0.5, 0.5, 0}, {0, 0.5, -0.5, 0}, {0, 0.5, 0.5, 1}};
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (int trial = 0; trial < 20; ++trial) {
    double d[4][4], dy[2][2];
    for (auto& row : d)
      for (double& x : row) x = dist(rng);
    for (auto& row : dy)
      for (double& x : row) x = dist(rng);
    double u[4][4] = {}, v[4][4] = {}, dw[3][3] = {};
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j)
        for (int p = 0; p < 4; ++p)
          for (int q = 0; q < 4; ++q) {
            if (p < 2 && q < 2) u[i][j] += a[i][p] * dy[p][q] * a[j][q];
            v[i][j] += bt[i][p] * d[p][q] * bt[j][q];
          }
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s)
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) dw[r][s] += gt[r][i] * u[i][j] * v[i][j] * gt[s][j];
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s) {
        double want = 0;  // dw[r][s] = sum over the tile of dy[p][q] d[p + r][q + s]
        for (int p = 0; p < 2; ++p)
          for (int q = 0; q < 2; ++q) want += dy[p][q] * d[p + r][q + s];
        CHECK(dw[r][s] == Approx(want).margin(1e-12));
      }
  }
}

TEST_CASE("winograd filter gradients match the interpreter on odd shapes", "[jit][conv][winograd]") {
  for (ConvAlgo algo : kForms) {
    double worst = 0;
    for (const Geometry& v : kOdd) {
      INFO(conv_algo_name(algo) << ": N " << v.n << " C " << v.c << " H " << v.h << " W " << v.w << " K " << v.k);
      const Errors e = errors(v, algo);
      CHECK(e.scaled < bound(algo));
      worst = std::max(worst, e.scaled);
    }
    std::cout << conv_algo_name(algo)
              << " filter gradient, odd shapes: max error relative to the sum of |products| " << worst << "\n";
  }
}

TEST_CASE("winograd filter gradients on the cnn3 and rescnn layer shapes: error against double",
          "[jit][conv][winograd][slow]") {
  // Batch 16 of each 3x3 layer: 1->32 and 32->32 at 28x28, 32->64 and 64->64 at 14x14, 64->128
  // and 128->128 at 7x7; and rescnn's 16-channel layers.
  const std::vector<Geometry> layers = {{16, 1, 28, 28, 32},  {16, 32, 28, 28, 32}, {16, 32, 14, 14, 64},
                                        {16, 64, 14, 14, 64}, {16, 64, 7, 7, 128},  {16, 128, 7, 7, 128},
                                        {16, 16, 28, 28, 16}};
  for (const Geometry& v : layers) {
    INFO("C " << v.c << " H " << v.h << " K " << v.k);
    const Errors wino = errors(v, ConvAlgo::winograd);
    const Errors wino4 = errors(v, ConvAlgo::winograd4);
    const Errors direct = errors(v, ConvAlgo::direct);
    std::cout << fmt::format(
        "filter gradient N {} C {} HxW {}x{} K {}: max abs error direct {:.2e} F(3x3,2x2) {:.2e} F(3x3,4x4) {:.2e}; "
        "relative to sum |products| direct {:.2e} F(3x3,2x2) {:.2e} F(3x3,4x4) {:.2e}\n",
        v.n, v.c, v.h, v.w, v.k, direct.abs, wino.abs, wino4.abs, direct.scaled, wino.scaled, wino4.scaled);
    CHECK(wino.scaled < kWinogradScaled);
    CHECK(wino4.scaled < kWinograd4Scaled);
  }
}

TEST_CASE("winograd filter gradients: other vector widths, and the same bits at any width and thread count",
          "[jit][conv][winograd]") {
  for (ConvAlgo algo : kForms) {
    INFO(conv_algo_name(algo));
    for (int width : {4, 8, 16}) {
      INFO("width " << width);
      CHECK(errors(kOdd[1], algo, width, 2).scaled < bound(algo));
      CHECK(errors(kOdd[6], algo, width, 3).scaled < bound(algo));
      CHECK(errors(kOdd[8], algo, width, 2).scaled < bound(algo));
    }
    // Items split the filters, never the tiles, and every sum visits the tiles in one order
    // (image, tile row, tile column) whatever the panels; a padded lane adds an exact 0. So the
    // bits are the same at any thread count and vector width, as the direct product's are.
    const Graph g = filter_graph({5, 21, 9, 11, 19});
    const StateMap feeds = feeds_of(g, 60);
    const Tensor one = run(g, feeds, algo, 0, 1);
    for (const auto& [width, threads] :
         std::vector<std::pair<int, int>>{{0, 2}, {0, 3}, {0, 8}, {4, 1}, {8, 2}, {16, 3}}) {
      INFO("width " << width << " threads " << threads);
      CHECK(bitwise_equal(one, run(g, feeds, algo, width, threads)));
    }
    // 43 filters at width 16 are 5 row tiles and a remainder of 3: four threads would cut them
    // in chunks of 2 tiles, and a fourth chunk would start past the last tile; the layout
    // makes three.
    const Graph chunks = filter_graph({3, 10, 6, 6, 43});
    const StateMap chunk_feeds = feeds_of(chunks, 70);
    const Tensor chunks_one = run(chunks, chunk_feeds, algo, 16, 1);
    for (int threads : {4, 5}) {
      INFO("43 filters, threads " << threads);
      CHECK(bitwise_equal(chunks_one, run(chunks, chunk_feeds, algo, 16, threads)));
    }
    CHECK(errors({3, 10, 6, 6, 43}, algo, 16, 4).scaled < bound(algo));
    // 35 tiles across at F(3x3,2x2), 18 at F(3x3,4x4): panels split tile rows at width 4 (and 8)
    const Graph wide = filter_graph({3, 5, 6, 70, 7});
    const StateMap wide_feeds = feeds_of(wide, 80);
    const Tensor wide_one = run(wide, wide_feeds, algo, 0, 1);
    for (int width : {4, 8}) CHECK(bitwise_equal(wide_one, run(wide, wide_feeds, algo, width, 2)));
    // 128 channels at width 16: three column panels of the usual register tile on one thread,
    // two of the wide tile on two (winograd_filter_layout: even items); the same bits, and
    // within the bound.
    const Graph panels = filter_graph({2, 128, 5, 5, 20});
    const StateMap panel_feeds = feeds_of(panels, 90);
    const Tensor panels_one = run(panels, panel_feeds, algo, 16, 1);
    CHECK(bitwise_equal(panels_one, run(panels, panel_feeds, algo, 16, 2)));
    CHECK(bitwise_equal(panels_one, run(panels, panel_feeds, algo, 8, 2)));
    CHECK(errors({2, 128, 5, 5, 20}, algo, 16, 2).scaled < bound(algo));
  }
}

TEST_CASE("winograd filter gradients split c across the threads where k is under 1.5 c", "[jit][conv][winograd]") {
  // 32 filters over 32 channels at width 16: one column panel of the register tile would serve
  // both threads, each transforming all of x, so its two vectors of c go one to each thread
  // (winograd_filter_layout); on one thread they stay one panel.
  // Either way each element of dw is one item's sum over every tile in order: the same bits.
  for (ConvAlgo algo : kForms) {
    INFO(conv_algo_name(algo));
    const Graph g = filter_graph({3, 32, 9, 9, 32});
    const StateMap feeds = feeds_of(g, 40);
    const Tensor one = run(g, feeds, algo, 16, 1);
    for (int threads : {2, 3}) CHECK(bitwise_equal(one, run(g, feeds, algo, 16, threads)));
    CHECK(errors({3, 32, 9, 9, 32}, algo, 16, 2).scaled < bound(algo));
  }
}

TEST_CASE("winograd filter gradients take fewer, wider panels of c where a thread transforms less",
          "[jit][conv][winograd]") {
  // 61 channels and 125 filters on two threads, where that item's sums fit in the host's L2
  // (winograd_filter_layout). At width 16 the usual register tile (8 x 3) makes two panels of
  // 2 vectors of c, each transforming all 125 filters of dy; the wide one (6 x 4) one panel in
  // two chunks of 60 and 65 filters. At width 8 the register tile (6 x 2) makes four panels of
  // one tile width each; one panel of four widths in the same two chunks transforms dy once
  // (or two panels of two widths, where only their sums fit).
  // 32 channels and 64 filters at width 16 are one panel of the usual tile already and stay on
  // it. Items split the filters, never the tiles: the same bits on one thread, where the layout
  // differs, at width 8 and at width 4.
  for (ConvAlgo algo : kForms) {
    INFO(conv_algo_name(algo));
    const int tile_size = algo == ConvAlgo::winograd4 ? 4 : 2;
    const Geometry v{3, 61, 7, 7, 125};
    const WinogradFilterGrad grad{v.n, v.c, v.k, v.h, v.w, tile_size};
    // Whether an item's sums (every position's rows of k by its columns of c) fit in L2.
    auto fits = [&](int64_t rows, int64_t columns) {
      return int64_t(sizeof(float)) * (tile_size + 2) * (tile_size + 2) * rows * columns <= host_tuning().used.l2_bytes;
    };
    const WinogradFilterLayout l16 = winograd_filter_layout(grad, 16, 2);
    const WinogradFilterLayout l8 = winograd_filter_layout(grad, 8, 2);
    CHECK(l16.items == 2);
    CHECK(l16.tile.vectors == (fits(65, 64) ? 4 : 3));
    CHECK(l16.col_panels == (fits(65, 64) ? 1 : 2));
    CHECK(l16.row_chunks == (fits(65, 64) ? 2 : 1));
    CHECK(l8.tile.vectors == 2);
    CHECK(l8.col_vectors == (fits(65, 64) ? 8 : fits(125, 32) ? 4 : 2));
    CHECK(l8.items == 2);
    CHECK(winograd_filter_layout({3, 32, 64, 14, 14, tile_size}, 16, 2).tile.vectors == 3);
    const Graph g = filter_graph(v);
    const StateMap feeds = feeds_of(g, 50);
    const Tensor one = run(g, feeds, algo, 16, 1);
    for (const auto& [width, threads] : std::vector<std::pair<int, int>>{{16, 2}, {8, 1}, {8, 2}, {4, 3}}) {
      INFO("width " << width << " threads " << threads);
      CHECK(bitwise_equal(one, run(g, feeds, algo, width, threads)));
    }
    CHECK(errors(v, algo, 16, 2).scaled < bound(algo));
    CHECK(errors(v, algo, 8, 2).scaled < bound(algo));
  }
}

TEST_CASE("winograd filter gradients take an image whose tiles fit a pass as one panel", "[jit][conv][winograd]") {
  // 27x26 maps at F(3x3,4x4) (7 x 7 tiles, partial at the edges) and 18x17 maps at F(3x3,2x2)
  // (9 x 9 tiles): the forward's panels cut such an image in two or more at W = 8 and 16, the
  // filter gradient keeps it whole (its tiles are rows of the reduction), in the same order of
  // tiles: the same bits at every width and thread count, and within the bound.
  for (const auto& [v, algo] : std::vector<std::pair<Geometry, ConvAlgo>>{{{3, 5, 27, 26, 7}, ConvAlgo::winograd4},
                                                                          {{3, 5, 18, 17, 7}, ConvAlgo::winograd}}) {
    INFO(conv_algo_name(algo) << " H " << v.h << " W " << v.w);
    const WinogradFilterGrad grad{v.n, v.c, v.k, v.h, v.w, algo == ConvAlgo::winograd4 ? 4 : 2};
    for (unsigned width : {8u, 16u}) {
      const WinogradLayout& tiles = winograd_filter_layout(grad, width, 2).tiles;
      INFO("width " << width);
      CHECK(winograd_layout(WinogradConv{v.n, v.c, v.k, v.h, v.w, nullptr, grad.tile_size}, width, 2, false).panels >
            1);
      CHECK(tiles.panels == 1);
      CHECK(tiles.panel_rows == tiles.tiles_h);
      CHECK(tiles.panel_cols == tiles.tiles_w);
    }
    const Graph g = filter_graph(v);
    const StateMap feeds = feeds_of(g, 70);
    const Tensor one = run(g, feeds, algo, 4, 1);
    for (const auto& [width, threads] : std::vector<std::pair<int, int>>{{8, 1}, {8, 3}, {16, 1}, {16, 2}})
      CHECK(bitwise_equal(one, run(g, feeds, algo, width, threads)));
    CHECK(errors(v, algo, 16, 2).scaled < bound(algo));
  }
}

TEST_CASE("the compiler says which filter gradients get winograd, and why", "[jit][conv][winograd]") {
  // auto takes F(3x3,4x4) from 32 filters over 32 channels on 7x7 maps up, and keeps the rest
  // direct; winograd and winograd4 force every eligible one.
  const Graph thin = filter_graph({2, 3, 8, 8, 64});
  const Graph few_filters = filter_graph({2, 32, 8, 8, 31});
  const Graph small_map = filter_graph({2, 64, 6, 8, 128});
  const Graph deep = filter_graph({2, 32, 7, 7, 64});
  for (const Graph* g : {&thin, &few_filters, &small_map, &deep}) {
    const Node& grad = g->node(g->outputs()[0].second);
    const ConvChoice automatic = choose_conv_algo(*g, grad, ConvAlgo::automatic);
    if (g == &deep) {
      CHECK(automatic.winograd);
      CHECK(automatic.tile_size == 4);
      CHECK_THAT(automatic.why, Catch::Contains("winograd F(3x3,4x4) (auto): 3x3 stride 1 pad 1, 64 filters over 32 "
                                                "channels on 7x7 maps"));
    } else {
      CHECK_FALSE(automatic.winograd);
      CHECK_THAT(automatic.why, Catch::Contains("direct (auto): the Winograd filter gradient F(3x3,4x4) pays from 32 "
                                                "filters over 32 channels on 7x7 maps up"));
    }
    CHECK(choose_conv_algo(*g, grad, ConvAlgo::winograd).winograd);
    CHECK(choose_conv_algo(*g, grad, ConvAlgo::winograd).tile_size == 2);
    CHECK(choose_conv_algo(*g, grad, ConvAlgo::winograd4).winograd);
    CHECK(choose_conv_algo(*g, grad, ConvAlgo::winograd4).tile_size == 4);
    CHECK_FALSE(choose_conv_algo(*g, grad, ConvAlgo::direct).winograd);
  }
  CHECK_THAT(describe_fusion(deep, fuse(deep), true, ConvAlgo::winograd),
             Catch::Contains("winograd F(3x3,2x2): --conv-algo winograd"));
  CHECK_THAT(describe_fusion(deep, fuse(deep), true, ConvAlgo::automatic),
             Catch::Contains("winograd F(3x3,4x4) (auto)"));
  CHECK_THAT(describe_fusion(deep, fuse(deep), true, ConvAlgo::winograd4),
             Catch::Contains("winograd F(3x3,4x4): --conv-algo winograd4"));
}
