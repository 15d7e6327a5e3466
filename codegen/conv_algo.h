#pragma once
/// Which algorithm computes each convolution product: the compiler's per-layer choice between
/// the direct implicit GEMM (codegen/emit_conv.h) and Winograd (codegen/emit_winograd.h). No
/// LLVM here, so `dagger ir --why` can print the choice.
#include <string>

#include "dagger/graph/graph.h"
#include "dagger/runtime/conv_algo.h"

namespace dagger {

/// The algorithm a convolution product gets, and why, in a phrase `dagger ir --why` prints.
struct ConvChoice {
  bool winograd = false;
  int tile_size = 2;  // a Winograd product's tile of outputs (forward, data gradient) or of dy (filter gradient)
  std::string why;
};

/// The choice for `conv` (a conv2d, conv2d_backward_data or conv2d_backward_filter node of
/// `g`) under `requested`. Winograd applies to the three products of 3x3, stride-1, pad-1
/// convolutions (F(2x2,3x3) or F(4x4,3x3) forward and for the data gradient, F(3x3,2x2) or
/// F(3x3,4x4) for the filter gradient); `auto` takes it, and picks the tile, where the layer has enough channels
/// for the transforms to pay (see docs/performance.md for the measurements behind the rules).
ConvChoice choose_conv_algo(const Graph& g, const Node& conv, ConvAlgo requested);

}  // namespace dagger
