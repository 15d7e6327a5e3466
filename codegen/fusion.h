#pragma once
/// Fusion: which nodes are computed together by one compiled kernel. No LLVM here.
///
/// Rules (each group records why its root ends the group):
///  - an elementwise node joins its consumer when that consumer is its only reader (assigns
///    aside: the kernel then also stores it, as a side output), is itself
///    elementwise and has the same shape (so one loop over the consumer's elements covers
///    both, and dropout's element index is the same in both); a scalar without dropout also
///    joins a larger consumer, since computing it inside the loop costs nothing once hoisted;
///  - a contraction (matmul, conv2d, conv2d_backward_data) whose only reader is such an
///    elementwise node becomes the anchor of that node's group: the group is then the
///    contraction's epilogue, applied in registers before the store;
///  - a contraction with no such reader is a group by itself, and so is every
///    conv2d_backward_filter (it sums over the batch in its output);
///  - pooling, batch normalization, softmax heads, transpose and broadcast anchor groups the
///    same way (a batchnorm and its ReLU, or its residual add and ReLU, are one kernel);
///    reductions and the scalar softmax_xent are anchors without an epilogue;
///  - an elementwise node whose group holds an anchor joins only a reader of its own shape;
///  - a per-channel statistic that needs the same read as another is computed by that one's
///    kernel and stored beside it (a sibling statistic): the channel_mean of a channel_var's x,
///    and a batchnorm_grad_gamma's dbeta (the reduce_sum of its dy), when the statistic is made
///    before the kernel's anchor and read only after it; the bits are those of its own kernel;
///  - a batchnorm_infer (with or without an elementwise epilogue of its own, a ReLU) whose
///    value is read only by pooling, as the x of a maxpool2d and of the maxpool2d_backward of its
///    gradient (and by that kernel's epilogue, relu's gradient), is stored by no kernel: each of
///    those kernels recomputes it from the normalization's operands where it would read it (a
///    prologue), with the same operations, so the same bits. It saves the normalization's pass
///    over x and the write and re-reads of its output;
///  - a batchnorm_grad_gamma (with its dbeta) whose dy is written by a maxpool2d_backward kernel
///    whose 2x2 windows tile planes of 100 floats or more is summed in that kernel, each plane
///    just after it is written, in its own kernel's order (same bits): the group is rooted at
///    the batchnorm_grad_gamma and stores dy as a side output, when every other reader of dy
///    comes after it. It saves the re-read of x and dy from memory;
///  - an elementwise group whose value R is then summed over every axis but the channels by a
///    reduce_sum kernel (a convolution's bias gradient summing batch norm's dx) is computed by
///    that kernel, run by run, each run stored and summed in the reduction's own order (same
///    bits): the group is rooted at the reduce_sum and stores R as a side output, when every
///    other reader of R comes after it and the group reads only values of R's shape, one per
///    channel, or scalars. It saves the re-read of R;
///  - a batchnorm_infer whose x is the value of a forward conv2d kernel, read by nothing else,
///    and whose statistics, gamma and beta are sources (an inference plan: the running
///    statistics), is applied in that kernel's epilogue with its own kernel's factors (double,
///    then float, per channel), so the same bits: the group is rooted where the normalization's
///    was. It saves the normalization's pass over x (its read and write).
/// Sources, reshapes (aliases of their operand) and assigns are left to the plan.
#include <string>
#include <vector>

#include "dagger/graph/graph.h"
#include "dagger/runtime/conv_algo.h"

namespace dagger {

/// Which emitter computes a node of `op`: the elementwise loop, a GEMM (matmul, convolutions)
/// or one of the op kernels of codegen/emit_ops.h. `none` for the ops no kernel computes:
/// sources (bound to tensors), reshape (an alias of its operand) and assign (a write-back).
/// An exhaustive switch, so that a new op in graph/ops.def must be given a family here.
enum class KernelFamily { none, elementwise, matmul, conv, pool, norm, softmax, reduce, layout };
KernelFamily kernel_family(Op op);

struct FusionGroup {
  NodeId root = -1;            // the node whose value the group writes to memory
  std::vector<NodeId> nodes;   // every node the group computes, ascending; root last
  std::vector<NodeId> inputs;  // values it reads from memory: the anchor's operands first (for operand 0
                               // recomputed by the prologue, the prologue's operands)
  NodeId anchor = -1;          // the node computed by a kernel of its own (a contraction or an op kernel), if any
  std::string why_root;        // why the root was not fused into a reader
  /// Nodes inside the group that assigns also read: the kernel stores them beside the root
  /// (an optimizer's new moments, next to the new parameter they produce); and a sibling
  /// statistic, summed in the anchor's read (see the rules above). Same shape as root.
  std::vector<NodeId> side_outputs;
  /// Outputs (the root or side outputs) stored straight into the parameter or state tensor
  /// they replace, or over an input of theirs that nothing reads afterwards, as (output,
  /// source) pairs. Set by the JIT plan, never by fuse(): the kernel then must not assume the
  /// two buffers are distinct.
  std::vector<std::pair<NodeId, NodeId>> in_place;
  /// A normalization this kernel recomputes where its anchor reads operand 0 (and where its
  /// epilogue reads that value): the nodes of its group, ascending, the batchnorm_infer first
  /// and the value read last. Empty for most kernels. Not in `nodes`; its operands are in `inputs`.
  std::vector<NodeId> prologue;
};

/// A kernel's buffers: its outputs (the root, then the side outputs), its inputs, and last
/// the scratch if it takes one. The index of group.inputs[0]:
inline size_t first_input_arg(const FusionGroup& group) { return 1 + group.side_outputs.size(); }

struct FusionPlan {
  std::vector<FusionGroup> groups;  // ordered by root, which is the order they can run in
  /// For each node, the index of the group that computes it, or -1.
  std::vector<int> group_of;
  /// For each node, whether kernels recompute it as their prologue instead of one storing it.
  std::vector<bool> recomputed;
};

/// Whether a maxpool2d's (or maxpool2d_backward's) 2x2 windows of stride 2 tile its input's
/// planes, every element in exactly one window: its gradient is then written in whole rows of
/// vectors, with no pass that adds into the plane (codegen/emit_pool.cpp). (Taking that path on
/// odd maps too, their last row and column zeroed apart, made cnn3's 7x7 gradient 1.8x slower.)
bool pool_windows_tile(const Graph& g, NodeId pool);

/// The dy of the batchnorm_grad_gamma a maxpool2d_backward group sums beside it (the group's
/// root, see the rules above), or -1 when the group is not such a merge.
NodeId summed_dy(const Graph& g, const FusionGroup& group);

/// The value a reduce_sum group computes from its elementwise nodes, stores and sums per channel
/// (the last rule above), or -1 when the group is not such a merge.
NodeId value_summed_beside(const Graph& g, const FusionGroup& group);

/// The batchnorm_infer a forward convolution's kernel applies in its epilogue (the last rule
/// above), or -1 when the group holds none.
NodeId folded_norm(const Graph& g, const FusionGroup& group);

/// Groups the graph's elementwise and contraction nodes into kernels.
FusionPlan fuse(const Graph& g);

/// A readable, unique symbol for the group's kernel, e.g. "k12_matmul_add_relu".
std::string kernel_name(const Graph& g, const FusionGroup& group);

/// Every group as a kernel: its name, its nodes with the model lines that declared them, what
/// it reads and writes, and the reason its root ends it; with `why`, also the decision that
/// put each other node into it and, for a convolution, the algorithm `conv_algo` gives it.
std::string describe_fusion(const Graph& g, const FusionPlan& plan, bool why = false,
                            ConvAlgo conv_algo = ConvAlgo::automatic);

}  // namespace dagger
