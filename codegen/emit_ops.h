#pragma once
/// Internal to codegen/: kernels for the ops that are neither elementwise nor contractions
/// (pooling, batch normalization, reductions, softmax heads, transpose and broadcast). Each
/// is the anchor of its fusion group, like a contraction: it computes its own op and stores
/// every value through the group's elementwise epilogue (see Epilogue).
///
/// Parallel items, chosen so that every output value is computed by one item in an order that
/// does not depend on which items a call gets (results are the same bits for any split):
///   maxpool2d, maxpool2d_backward      one (image, channel) plane; one channel when the kernel
///                                      also sums batchnorm_grad_gamma (emit_grad_gamma_beside)
///   batchnorm_*, channel_mean/var      one channel (its statistics summed in double)
///   softmax, softmax_xent_grad         one row
///   softmax_xent                       the whole batch (its mean loss is one scalar)
///   reduce_*                           one output element, or a run of output columns
///   transpose, broadcast               one index of the output's first axis
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/loops.h"

namespace dagger {

/// The op kernels here are for the anchors of kernel families pool, norm, softmax, reduce and
/// layout (kernel_family in codegen/fusion.h); other anchors throw an internal dagger::Error.
struct OpKernelLayout {
  int64_t items = 1;
  double work = 0;  // floats touched per item, roughly
};

OpKernelLayout op_kernel_layout(const Graph& g, const FusionGroup& group, unsigned width);

/// Emits kernel `name` for a group anchored on such an op. Arguments: the root's output, then
/// group.inputs (the anchor's operands first).
void emit_op_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

// ---- Shared by the emitters below (emit_ops.cpp). ----

/// Stores an anchor's values through its group's elementwise nodes. The anchor's shape is seen
/// as its first `keep` axes, then the remaining axes: merged into one when every input of
/// the epilogue reads them as one (contiguously or not at all), else as they are; a kernel
/// whose shape has no remaining axis gets one of size 1, so there is always a vector axis.
class Epilogue {
 public:
  /// `recomputed` gives the value of the group's prologue (FusionGroup::prologue) where the
  /// epilogue reads it; required when the group has one.
  Epilogue(Emit& e, const Graph& g, const FusionGroup& group, const KernelFunction& kf, size_t keep,
           ElementGen recomputed = nullptr);

  /// The remaining axes as seen (never empty).
  const Shape& tail() const { return tail_; }
  /// For every vector of the remaining axes at `outer` (the first `keep` coordinates, i64),
  /// stores value(pos) through the epilogue. pos.coords are the view's coordinates and
  /// pos.flat the row-major index in the anchor's shape, of lane 0.
  void for_each(const std::vector<llvm::Value*>& outer, const std::function<llvm::Value*(const ElementPos&)>& value);
  /// Stores one vector (the anchor's `value` at view position `pos`).
  void store(const ElementPos& pos, llvm::Value* value);

 private:
  Emit& e_;
  Shape view_;  // the first `keep` axes, then tail_
  Shape tail_;
  llvm::Value* current_ = nullptr;
  std::vector<ElementGen> outputs_;  // the root, then the side outputs
  std::vector<StridedBuffer> out_;
};

/// The kernel argument holding the anchor's operand `k` (inputs are deduplicated).
llvm::Value* operand_arg(const KernelFunction& kf, const Graph& g, const FusionGroup& group, size_t k);
/// The kernel argument holding input `id` of the group (one of group.inputs).
llvm::Value* input_arg(const KernelFunction& kf, const FusionGroup& group, NodeId id);
/// The kernel argument holding output `id` of the group (its root or a side output).
llvm::Value* output_arg(const KernelFunction& kf, const FusionGroup& group, NodeId id);

/// batchnorm_infer's factors for `channel` (i64) as its own kernel makes them, in double and
/// then rounded to float: the mean, gamma * rstd and beta, each as <W x float>.
std::vector<llvm::Value*> inference_norm_factors(Emit& e, const std::array<llvm::Value*, 4>& gamma_beta_mean_var,
                                                 double eps, llvm::Value* channel);
/// batchnorm_infer's value for x's values `xv` with `factors` (inference_norm_factors):
/// (x - mean) * (gamma * rstd) + beta, the product and sum fused.
llvm::Value* inference_normalize(Emit& e, llvm::Value* xv, const std::vector<llvm::Value*>& factors);

/// A normalization recomputed by a pooling kernel (FusionGroup::prologue): the batchnorm_infer
/// of x, (x - mean) * (gamma * rstd) + beta with the factors of its own kernel (emit_norm.cpp),
/// then its elementwise epilogue, all per element of one channel.
class NormPrologue {
 public:
  NormPrologue(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group);
  /// x, the normalization's operand: what the kernel loads in place of the prologue's value.
  llvm::Value* x() const { return x_; }
  /// Computes the factors of `channel` (i64): every apply() until the next call is in it.
  void enter_channel(llvm::Value* channel);
  /// The prologue's value for x's values `xv` (<W x float>).
  llvm::Value* apply(llvm::Value* xv);
  /// The prologue's value at x's row-major index `flat` (W contiguous elements, `mask`).
  llvm::Value* at(llvm::Value* flat, llvm::Value* mask);

 private:
  Emit& e_;
  llvm::Value *x_, *gamma_, *beta_, *mean_, *var_;
  double eps_;
  std::vector<llvm::Value*> factors_;  // mean, gamma * rstd and beta as <W x float>
  llvm::Value* normalized_ = nullptr;
  ElementGen root_;
};
/// How many lanes a (constant) mask from emit_vector_nest sets; W for nullptr.
unsigned active_lanes(Emit& e, llvm::Value* mask);
/// W floats at base[offset ..] (only the lanes in `mask`; others hold `passthru`).
llvm::Value* load_vector(Emit& e, llvm::Value* base, llvm::Value* offset, llvm::Value* mask, llvm::Value* passthru);
/// base[offset + index[l]] for the lanes in `mask` (nullptr: all), 0 elsewhere; index is <W x i32>.
llvm::Value* gather_at(Emit& e, llvm::Value* base, llvm::Value* offset, llvm::Value* index, llvm::Value* mask);
/// A stack slot in the function's entry block (promoted to a register by the optimizer).
llvm::Value* entry_slot(Emit& e, llvm::Type* type, llvm::Value* init);
/// The coordinates of row-major index `flat` in `dims`.
std::vector<llvm::Value*> unflatten(Emit& e, llvm::Value* flat, const Shape& dims);
/// One scalar float of `base` at `offset`.
llvm::Value* load_scalar(Emit& e, llvm::Value* base, llvm::Value* offset);
/// Fetches into L1 every cache line of base[start .. start + floats), whatever its alignment
/// (one prefetch per 16 floats and one at the last float), for reading or, where the kernel
/// will store there, for writing.
void prefetch_floats(Emit& e, llvm::Value* base, llvm::Value* start, int64_t floats, bool for_write);

/// A batchnorm_grad_gamma, the group's root, and its dbeta if that is a side output, summed
/// in the kernel that writes their dy, a side output (a maxpool2d_backward group, see
/// codegen/fusion.h): the channels [kf.begin, kf.end) are swept as the norm kernel sweeps them
/// (emit_norm.cpp), and write_plane(image, channel) (i64 values) is called just before that
/// plane of dy is summed, so the sums read it from cache. The same terms in the same order as
/// the norm kernel's: the same bits.
using PlaneWriter = std::function<void(llvm::Value* image, llvm::Value* channel)>;
void emit_grad_gamma_beside(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group,
                            const PlaneWriter& write_plane);

// ---- The per-op emitters (the group's anchor decides). ----
OpKernelLayout pool_layout(const Graph& g, const FusionGroup& group);
void emit_pool_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group);
OpKernelLayout norm_layout(const Graph& g, NodeId anchor, unsigned width);
void emit_norm_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group);
OpKernelLayout softmax_layout(const Graph& g, NodeId anchor);
void emit_softmax_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group);
OpKernelLayout reduce_layout(const Graph& g, NodeId anchor, unsigned width);
void emit_reduce_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group);
OpKernelLayout layout_copy_layout(const Graph& g, NodeId anchor);
void emit_layout_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group);

}  // namespace dagger
