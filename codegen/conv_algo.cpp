#include "dagger/codegen/conv_algo.h"

#include <fmt/format.h>

namespace dagger {

namespace {

/// Below this many channels in the reduction of every per-position product, `auto` keeps the
/// direct product: the input and output transforms cost about as much per tile as the
/// products they save. Measured on 28x28 maps (docs/performance.md): break-even near 8
/// channels, 1.12x at 16, 0.76x at 1.
constexpr int64_t kMinWinogradChannels = 16;

/// `auto` computes a filter gradient by Winograd F(3x3,4x4) where it has at least this many
/// filters (k) and input channels (c), on maps of at least this many positions per image; the
/// others stay direct. F(3x3,4x4) makes 36 products per 4x4 tile of dy and (k, c) pair instead of
/// 144, after transforms of x's patches and dy's tiles that cost in proportion to k + c and are
/// not overlapped with the products. Measured at batch 64 on an AMD Zen 5 host (docs/performance.md,
/// "The filter gradient by Winograd F(3x3,4x4)"): 1.24-1.65x the direct product per layer on one
/// thread (every 3x3 layer of cnn3 and rescnn but the first); on two, 1.3-1.6x from 64 filters
/// up (7x7 and 14x14 maps), but 0.9x for 32 filters over 32 channels at 28x28, where both
/// threads' items transform all of x (one column panel, k split in two) for few products.
/// Since its scratch keeps the positions in separate cache sets and it stages x and dy with the
/// channels in the lanes (session 23, "Winograd's scratch and staging"), that layer runs 1.7x
/// the direct product on two threads too (2.0 ms against 3.5), so 32 filters are enough.
/// F(3x3,2x2) (`--conv-algo winograd`) gained 1.08-1.27x on one thread and 0.74-1.69x on two
/// there. The choice depends on the shapes only, never on the thread count, so the bits stay
/// those of any thread count.
constexpr int64_t kMinWinogradFilters = 32;
constexpr int64_t kMinWinogradFilterChannels = 32;
constexpr int64_t kMinWinogradFilterMap = 49;  // 7x7, the smallest measured

/// The filter-gradient form `auto` takes for k filters over c channels on h x w maps.
ConvChoice automatic_filter_form(int64_t k, int64_t c, int64_t h, int64_t w) {
  const std::string layer =
      fmt::format("{} filter{} over {} channel{} on {}x{} maps", k, k == 1 ? "" : "s", c, c == 1 ? "" : "s", h, w);
  if (k >= kMinWinogradFilters && c >= kMinWinogradFilterChannels && h * w >= kMinWinogradFilterMap)
    return {true, 4,
            fmt::format("winograd F(3x3,4x4) (auto): 3x3 stride 1 pad 1, {} (>= {}, >= {}, >= 7x7), 4x fewer "
                        "multiplications",
                        layer, kMinWinogradFilters, kMinWinogradFilterChannels)};
  return {false, 4,
          fmt::format("direct (auto): the Winograd filter gradient F(3x3,4x4) pays from {} filters over {} "
                      "channels on 7x7 maps up; this is {}",
                      kMinWinogradFilters, kMinWinogradFilterChannels, layer)};
}

/// `auto` takes F(4x4,3x3) over F(2x2,3x3) from this many output positions per channel (batch
/// x height x width) up. Its products cost 2.25 per output against 4, but every call (on each
/// thread) first transforms every filter into 36 positions against 16, which the positions
/// must amortize. Measured on cnn3's and rescnn's layers at 2 threads (docs/performance.md):
/// with the filter transform vectorized, 1.00-1.32x (cnn3) at 3,136 positions (7x7 maps, batch
/// 64), the fewest measured; with it scalar, 0.76-1.02x there. Smaller batches are unmeasured.
constexpr int64_t kMinF4Positions = 3136;

/// The forward or data-gradient form `auto` takes for a product reducing over `reduced`
/// channels whose output planes hold `positions` values in all (batch x height x width).
ConvChoice automatic_form(int64_t reduced, int64_t positions) {
  const std::string over = fmt::format("3x3 stride 1 pad 1 over {} channels (>= {})", reduced, kMinWinogradChannels);
  if (positions >= kMinF4Positions)
    return {true, 4,
            fmt::format("winograd F(4x4,3x3) (auto): {}, {} output positions per channel (>= {}), 4x fewer "
                        "multiplications",
                        over, positions, kMinF4Positions)};
  return {true, 2,
          fmt::format("winograd F(2x2,3x3) (auto): {}, 2.25x fewer multiplications; {} output positions per "
                      "channel (< {}) do not pay for F(4x4,3x3)'s filter transform",
                      over, positions, kMinF4Positions)};
}

}  // namespace

ConvChoice choose_conv_algo(const Graph& g, const Node& conv, ConvAlgo requested) {
  const bool filter_grad = conv.op == Op::conv2d_backward_filter;
  const int tile_size = requested == ConvAlgo::winograd4 ? 4 : 2;
  const std::string form =
      filter_grad ? fmt::format("F(3x3,{0}x{0})", tile_size) : fmt::format("F({0}x{0},3x3)", tile_size);
  const Shape& filter = filter_grad ? conv.shape : g.shape(conv.operands[1]);
  if (filter[2] != 3 || filter[3] != 3 || conv.attrs.i("stride") != 1 || conv.attrs.i("pad") != 1)
    return {false, tile_size, fmt::format("direct: Winograd {} needs a 3x3 filter, stride 1 and pad 1", form)};
  switch (requested) {
    case ConvAlgo::direct:
      return {false, tile_size, "direct: --conv-algo direct"};
    case ConvAlgo::winograd:
    case ConvAlgo::winograd4:
      return {true, tile_size, fmt::format("winograd {}: --conv-algo {}", form, conv_algo_name(requested))};
    case ConvAlgo::automatic:
      break;
  }
  if (filter_grad)
    return automatic_filter_form(filter[0], filter[1], g.shape(conv.operands[0])[2], g.shape(conv.operands[0])[3]);
  // The product's reduction: x's channels forward, dy's (the filter count) for the data gradient.
  const int64_t reduced = conv.op == Op::conv2d ? filter[1] : filter[0];
  if (reduced < kMinWinogradChannels)
    return {false, tile_size,
            fmt::format("direct (auto): a reduction over {} channel{} (< {}) does not pay for the "
                        "Winograd transforms",
                        reduced, reduced == 1 ? "" : "s", kMinWinogradChannels)};
  return automatic_form(reduced, conv.shape[0] * conv.shape[2] * conv.shape[3]);
}

}  // namespace dagger
