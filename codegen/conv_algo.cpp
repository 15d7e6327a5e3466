#include "dagger/codegen/conv_algo.h"

#include <fmt/format.h>

namespace dagger {

namespace {

/// Below this many channels in the reduction of every per-position product, `auto` keeps the
/// direct product: the input and output transforms cost about as much per tile as the
/// products they save. Measured on 28x28 maps (docs/performance.md): break-even near 8
/// channels, 1.12x at 16, 0.76x at 1.
constexpr int64_t kMinWinogradChannels = 16;

}  // namespace

ConvChoice choose_conv_algo(const Graph& g, const Node& conv, ConvAlgo requested) {
  const bool forward = conv.op == Op::conv2d;
  if (!forward && conv.op != Op::conv2d_backward_data)
    return {false, "direct: Winograd here covers the forward and data-gradient products only"};
  const Shape& filter = g.shape(conv.operands[1]);
  if (filter[2] != 3 || filter[3] != 3 || conv.attrs.i("stride") != 1 || conv.attrs.i("pad") != 1)
    return {false, "direct: Winograd F(2x2,3x3) needs a 3x3 filter, stride 1 and pad 1"};
  // The product's reduction: x's channels forward, dy's (the filter count) for the data gradient.
  const int64_t reduced = forward ? filter[1] : filter[0];
  switch (requested) {
    case ConvAlgo::direct:
      return {false, "direct: --conv-algo direct"};
    case ConvAlgo::winograd:
      return {true, "winograd F(2x2,3x3): --conv-algo winograd"};
    case ConvAlgo::automatic:
      if (reduced < kMinWinogradChannels)
        return {false, fmt::format("direct (auto): a reduction over {} channel{} (< {}) does not pay for the "
                                   "Winograd transforms",
                                   reduced, reduced == 1 ? "" : "s", kMinWinogradChannels)};
      return {true, fmt::format("winograd F(2x2,3x3) (auto): 3x3 stride 1 pad 1 over {} channels (>= {}), "
                                "2.25x fewer multiplications",
                                reduced, kMinWinogradChannels)};
  }
  return {false, "direct"};
}

}  // namespace dagger
