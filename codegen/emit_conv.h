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
/// The filter gradient of a 1x1 convolution over few channels is one sum per (filter,
/// channel) along the positions instead (emit_pointwise_filter_grad).
///
/// The first two take an elementwise epilogue (bias, residual add, activation) exactly like
/// a matmul; the filter gradient, a sum over the batch accumulated in its output, takes none.
#include <string>

#include "dagger/codegen/emit_gemm.h"
#include "dagger/codegen/fusion.h"
#include "dagger/runtime/conv_algo.h"

namespace dagger {

/// The filter gradient of a 1x1 convolution over at most this many input channels is summed
/// per (filter, channel) along the positions (emit_pointwise_filter_grad) rather than as a
/// GEMM, whose panels of 48 columns it would fill to at most 19%.
inline constexpr int64_t kMaxPointwiseChannels = 9;

/// The sizes of a filter gradient of stride 1 whose output positions are its input's (x and
/// dy [n, c or k, h, w], dw [k, c, r, s], `pad` on each side).
struct PointwiseFilterGrad {
  int64_t n, c, h, w, k, r, s, pad;
};

/// Whether the filter gradient is summed per (filter, channel): a 1x1 filter without padding
/// over at most kMaxPointwiseChannels channels.
bool pointwise_filter_grad_applies(const PointwiseFilterGrad& t);
/// Its parallel items: groups of filters, as many per item as keep their sums in registers.
int64_t pointwise_filter_grad_items(const PointwiseFilterGrad& t, unsigned width);
/// Emits the sums of the items [begin, end) into dw: per (filter, channel), 16 float partials
/// along each image's positions, images in order (codegen/partials.h), so the same bits at
/// every vector width and thread count.
void emit_pointwise_filter_grad(Emit& e, const PointwiseFilterGrad& t, llvm::Value* x, llvm::Value* dy, llvm::Value* dw,
                                llvm::Value* begin, llvm::Value* end);

/// The parallel items, scratch and reduction length of the group's kernel. A product that
/// `algo` computes by Winograd (codegen/conv_algo.h) reports its own items and scratch, and
/// the direct product's reduction, in whose FLOPs its work is counted.
GemmLayout conv_layout(const Graph& g, const FusionGroup& group, unsigned width, int threads, ConvAlgo algo);

/// Emits kernel `name` for a group anchored on a convolution product, by the algorithm
/// choose_conv_algo picks under e.conv_algo. Arguments: the root's output, then group.inputs
/// (the anchor's two operands first), then the scratch panel.
void emit_conv_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

}  // namespace dagger
