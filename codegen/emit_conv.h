#pragma once
/// Internal to codegen/: the convolution products as implicit GEMMs over the generic
/// microkernel (codegen/emit_gemm.h). No im2col buffer is ever materialized: the packer
/// gathers each panel of the virtual im2col matrix straight from the image.
///
///  conv2d (x, w) -> y             per image: y[K, P*Q]   = w[K, C*R*S]  im2col(x)[C*R*S, P*Q]
///  conv2d_backward_data (dy, w)   per image: dx[C, H*W]  = w^T[C, K*R*S] col(dy)[K*R*S, H*W]
///  conv2d_backward_filter (x, dy) summed over images: dw[K, C*R*S] = dy[K, P*Q] im2col(x)^T
///
/// 3x3 stride-1 same products may instead run as Winograd: F(2x2,3x3) or F(4x4,3x3) for the
/// forward and data gradient, F(3x3,2x2) for the filter gradient (codegen/emit_winograd.h).
///
/// The first two take an elementwise epilogue (bias, residual add, activation) exactly like
/// a matmul; the filter gradient, a sum over the batch accumulated in its output, takes none.
#include <string>

#include "dagger/codegen/emit_gemm.h"
#include "dagger/codegen/fusion.h"
#include "dagger/runtime/conv_algo.h"

namespace dagger {

/// The parallel items, scratch and reduction length of the group's kernel. A product that
/// `algo` computes by Winograd (codegen/conv_algo.h) reports its own items and scratch, and
/// the direct product's reduction, in whose FLOPs its work is counted.
GemmLayout conv_layout(const Graph& g, const FusionGroup& group, unsigned width, int threads, ConvAlgo algo);

/// Emits kernel `name` for a group anchored on a convolution product, by the algorithm
/// choose_conv_algo picks under e.conv_algo. Arguments: the root's output, then group.inputs
/// (the anchor's two operands first), then the scratch panel.
void emit_conv_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

}  // namespace dagger
