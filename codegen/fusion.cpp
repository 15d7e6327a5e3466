#include "dagger/codegen/fusion.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <string_view>

#include "dagger/codegen/conv_algo.h"
#include "dagger/codegen/iteration.h"
#include "dagger/graph/axes.h"

namespace dagger {

namespace {

bool is_elementwise(const Node& n) { return kernel_family(n.op) == KernelFamily::elementwise; }

/// A node computed by a kernel of its own, so it can anchor a group: a contraction compiled as
/// a GEMM, or pooling, normalization, a reduction, a softmax head, transpose or broadcast
/// (codegen/emit_ops.h). Like a contraction, each stores through its readers' elementwise
/// epilogue, except where `no_epilogue` says why not.
bool is_anchor(const Node& n) {
  const KernelFamily family = kernel_family(n.op);
  return family != KernelFamily::none && family != KernelFamily::elementwise;
}

/// Why an anchor of `op` takes no epilogue, or "" when it does (or is no anchor).
std::string_view no_epilogue(Op op) {
  switch (op) {
    case Op::conv2d_backward_filter:
      return "sums over the batch in its output buffer, so it takes no epilogue";
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
      return "is a reduction: it stores whole output runs of merged axes, so it takes no epilogue";
    case Op::softmax_xent:
      return "is the mean loss, one scalar folded over every row, so it takes no epilogue";
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::neg:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::relu:
    case Op::tanh:
    case Op::sigmoid:
    case Op::elu:
    case Op::selu:
    case Op::leaky_relu:
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow:
    case Op::relu_grad:
    case Op::elu_grad:
    case Op::selu_grad:
    case Op::leaky_relu_grad:
    case Op::dropout:
    case Op::reshape:
    case Op::transpose:
    case Op::broadcast:
    case Op::matmul:
    case Op::conv2d:
    case Op::conv2d_backward_data:
    case Op::maxpool2d:
    case Op::maxpool2d_backward:
    case Op::batchnorm_train:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
    case Op::softmax:
    case Op::softmax_xent_grad:
    case Op::assign:
      return "";
  }
  throw Error(fmt::format("internal error: op {} is not in the op table", static_cast<int>(op)));
}

/// How each node is read: by how many operand slots, by which node, and whether it is an output.
struct Readers {
  std::vector<int> count, assigns;  // operand slots reading the node; how many of them are assigns
  std::vector<NodeId> last;         // the last reader that is not an assign
  std::vector<bool> is_output;

  explicit Readers(const Graph& g)
      : count(g.size(), 0), assigns(g.size(), 0), last(g.size(), -1), is_output(g.size(), false) {
    const std::vector<std::vector<NodeId>> readers = readers_of(g);
    for (const Node& n : g.nodes()) {
      count[n.id] = static_cast<int>(readers[n.id].size());
      for (NodeId r : readers[n.id]) {
        if (g.node(r).op == Op::assign)
          ++assigns[n.id];
        else
          last[n.id] = r;
      }
    }
    for (const auto& [name, id] : g.outputs()) is_output[id] = true;
  }

  /// The node's one reader that is not an assign, or -1 when it has none, several, or is also
  /// a graph output.
  NodeId sole(NodeId id) const { return count[id] - assigns[id] == 1 && !is_output[id] ? last[id] : -1; }
};

/// Why `id` cannot be computed inside its reader's loop, or "" when it can. A node of another
/// shape than its reader joins only as a scalar (computed once, hoisted out of the loop) with
/// no dropout in it (a dropout's element index is its position in its own shape).
std::string blocker(const Graph& g, const Readers& r, NodeId id, bool holds_dropout, bool holds_anchor) {
  const Node& n = g.node(id);
  if (std::string why(no_epilogue(n.op)); !why.empty()) return why;
  if (r.is_output[id]) return "is a graph output";
  if (r.count[id] == 0) return "has no reader";
  const int others = r.count[id] - r.assigns[id];
  if (others == 0) return "is read only by assigns";
  if (others > 1) return fmt::format("has {} readers", others);
  const Node& reader = g.node(r.last[id]);
  if (!is_elementwise(reader))
    return fmt::format("is read by %{} ({}), which is not elementwise", reader.id, op_info(reader.op).name);
  if (reader.shape != n.shape && (r.assigns[id] > 0 || numel(n.shape) != 1 || holds_dropout || holds_anchor))
    return fmt::format("is broadcast by its reader %{} of shape {}", reader.id, to_string(reader.shape));
  return "";
}

/// The values `group` reads from memory: the anchor's operands first, then the rest in the
/// order a depth-first walk from the root meets them; a value the prologue recomputes is
/// replaced by the values the prologue reads. `group.nodes` must be sorted.
std::vector<NodeId> inputs_of(const Graph& g, const FusionGroup& group) {
  std::vector<NodeId> inputs;
  auto add = [&](NodeId id) {
    if (std::find(inputs.begin(), inputs.end(), id) == inputs.end()) inputs.push_back(id);
  };
  const NodeId recomputed = group.prologue.empty() ? -1 : group.prologue.back();
  if (recomputed >= 0)
    for (NodeId id : inputs_of(g, FusionGroup{recomputed, group.prologue, {}, group.prologue.front(), {}, {}, {}, {}}))
      add(id);
  std::function<void(NodeId)> walk;
  if (group.anchor >= 0)
    for (NodeId o : g.node(group.anchor).operands)
      if (o != recomputed && !std::binary_search(group.nodes.begin(), group.nodes.end(), o)) add(o);
  walk = [&](NodeId id) {
    for (NodeId o : g.node(id).operands) {
      if (o == group.anchor || o == recomputed) continue;
      if (std::binary_search(group.nodes.begin(), group.nodes.end(), o))
        walk(o);
      else
        add(o);
    }
  };
  if (group.root != group.anchor) walk(group.root);
  if (group.anchor >= 0 && group.anchor == group.root) walk(group.anchor);  // a value it sums and stores
  return inputs;
}

/// Whether `stat` is a reduce_sum of `x` over every axis but 1 (keeping its dimensions or not),
/// with more than one channel: reduce_sum's own kernel then sums each channel image by image,
/// a run of inner positions at a time (codegen/emit_reduce.cpp). With one channel it merges the
/// batch and inner axes into a single run, summed in another order.
bool sums_channels(const Graph& g, const Node& stat, NodeId x) {
  if (stat.op != Op::reduce_sum || stat.operands[0] != x) return false;
  const Shape& shape = g.shape(x);
  const auto rank = static_cast<int64_t>(shape.size());
  if (rank < 2) return false;
  std::vector<int64_t> all_but_channels{0};
  for (int64_t a = 2; a < rank; ++a) all_but_channels.push_back(a);
  return shape[1] > 1 && reduced_axes(g, stat) == all_but_channels && numel(stat.shape) == shape[1];
}

/// Whether `stat` can be computed by the kernel of `anchor` in the same read of the operand they
/// share, and stored beside it (a sibling statistic): the channel_mean of the x a channel_var
/// reads, or the dbeta of a batchnorm_grad_gamma (reduce_sum of its dy over every axis but 1).
/// The norm kernel sums each term in the order the statistic's own kernel does (emit_norm.cpp),
/// so the bits stay the same (for the reduce_sum, see sums_channels).
bool is_sibling_statistic(const Graph& g, const Node& stat, const Node& anchor) {
  if (anchor.op == Op::channel_var) return stat.op == Op::channel_mean && stat.operands[0] == anchor.operands[0];
  return anchor.op == Op::batchnorm_grad_gamma && sums_channels(g, stat, anchor.operands[1]);
}

/// Moves each sibling statistic that is a kernel by itself into the kernel of its anchor, also
/// alone in its kernel, when the statistic is made before the anchor and read only after it
/// (the kernel runs where its root, the anchor, is; a reshape only renames it, so its readers
/// count instead). The statistic becomes a side output.
void merge_sibling_statistics(const Graph& g, std::vector<FusionGroup>& groups) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::function<bool(NodeId, NodeId)> read_after = [&](NodeId value, NodeId anchor) {
    return std::ranges::all_of(readers[value], [&](NodeId reader) {
      return g.node(reader).op == Op::reshape ? read_after(reader, anchor) : reader > anchor;
    });
  };
  std::vector<int> alone(g.size(), -1);  // the group a node is the only node of
  for (size_t k = 0; k < groups.size(); ++k)
    if (groups[k].nodes.size() == 1) alone[groups[k].root] = static_cast<int>(k);
  std::vector<bool> moved(groups.size(), false);
  auto movable = [&](NodeId stat, const Node& anchor) {
    if (stat >= anchor.id || alone[stat] < 0 || moved[alone[stat]]) return false;
    if (!is_sibling_statistic(g, g.node(stat), anchor)) return false;
    return read_after(stat, anchor.id);
  };
  for (FusionGroup& group : groups) {
    if (group.anchor < 0 || group.nodes.size() != 1) continue;
    const Node& anchor = g.node(group.anchor);
    for (NodeId operand : anchor.operands) {
      const auto& candidates = readers[operand];
      const auto stat = std::ranges::find_if(candidates, [&](NodeId r) { return movable(r, anchor); });
      if (stat == candidates.end()) continue;
      moved[alone[*stat]] = true;
      group.nodes.insert(group.nodes.begin(), *stat);
      break;
    }
  }
  std::vector<FusionGroup> kept;
  for (size_t k = 0; k < groups.size(); ++k)
    if (!moved[k]) kept.push_back(std::move(groups[k]));
  groups = std::move(kept);
}

/// Makes each normalization group whose value only pooling reads (see fusion.h) the prologue
/// of its readers' kernels, and drops its own kernel; marks its nodes in `recomputed`.
void recompute_normalizations(const Graph& g, const Readers& r, std::vector<FusionGroup>& groups,
                              std::vector<bool>& recomputed) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::vector<int> group_at(g.size(), -1);
  for (size_t k = 0; k < groups.size(); ++k)
    for (NodeId id : groups[k].nodes) group_at[id] = static_cast<int>(k);
  std::vector<bool> dropped(groups.size(), false);
  for (size_t k = 0; k < groups.size(); ++k) {
    const FusionGroup& norm = groups[k];
    if (norm.anchor < 0 || g.node(norm.anchor).op != Op::batchnorm_infer) continue;
    const NodeId value = norm.root;
    if (g.shape(value).size() != 4 || r.is_output[value]) continue;
    // Its epilogue, if any: elementwise nodes of x's shape reading nothing from outside the group.
    const bool pure = std::ranges::all_of(norm.nodes, [&](NodeId id) {
      if (r.assigns[id] > 0) return false;
      if (id == norm.anchor) return true;
      const Node& n = g.node(id);
      return is_elementwise(n) && n.op != Op::dropout && n.shape == g.shape(value) &&
             std::ranges::all_of(n.operands, [&](NodeId o) { return std::ranges::binary_search(norm.nodes, o); });
    });
    if (!pure) continue;
    // Every reader: a pooling anchor reading it as x (not as dy), or an elementwise node in the
    // kernel of a maxpool2d_backward reading it as x.
    std::vector<int> kernels;
    bool only_pooling = !readers[value].empty();
    for (NodeId reader : readers[value]) {
      const Node& n = g.node(reader);
      const int at = group_at[reader];
      const NodeId anchor = at < 0 ? -1 : groups[static_cast<size_t>(at)].anchor;
      const bool pooled = anchor >= 0 && kernel_family(g.node(anchor).op) == KernelFamily::pool &&
                          g.node(anchor).operands[0] == value &&
                          (g.node(anchor).op == Op::maxpool2d || g.node(anchor).operands[1] != value) &&
                          groups[static_cast<size_t>(at)].prologue.empty() &&
                          (reader == anchor || (is_elementwise(n) && g.node(anchor).op == Op::maxpool2d_backward));
      only_pooling = only_pooling && pooled;
      if (pooled && std::ranges::find(kernels, at) == kernels.end()) kernels.push_back(at);
    }
    if (!only_pooling) continue;
    for (int at : kernels) groups[static_cast<size_t>(at)].prologue = norm.nodes;
    for (NodeId id : norm.nodes) recomputed[id] = true;
    dropped[k] = true;
  }
  std::vector<FusionGroup> kept;
  for (size_t k = 0; k < groups.size(); ++k)
    if (!dropped[k]) kept.push_back(std::move(groups[k]));
  groups = std::move(kept);
}

/// Moves each batchnorm_grad_gamma kernel (with its dbeta sibling, if any) whose dy is the root
/// of a maxpool2d_backward kernel into that kernel (see fusion.h): the merged group is rooted at
/// the batchnorm_grad_gamma, so it runs where that one ran, and stores dy as a side output.
/// Only when every other reader of dy comes after it, no assign reads the pooling group's
/// nodes, the windows tile the plane, and a plane holds at least kMinSummedPlane floats: each
/// plane adds a fixed cost (its channel's partial sums restored and saved), and on cnn3's 7x7
/// maps (49 floats) the merged kernel ran 18-22% slower than the two apart, on its 14x14 and
/// 28x28 maps 8-24% faster (docs/performance.md, session 19).
constexpr int64_t kMinSummedPlane = 100;

/// Moves into each group the nodes of the group rooted at the value `source(group)` names (-1:
/// none), when `accept(group, that group)` allows it; `adopt(group, that group)` then takes
/// anything else the merged group needs of it. The merged group keeps its root, so it runs
/// where it ran. A group is moved at most once, and moved groups are dropped.
void merge_producers(const Graph& g, std::vector<FusionGroup>& groups,
                     const std::function<NodeId(const FusionGroup&)>& source,
                     const std::function<bool(const FusionGroup&, const FusionGroup&)>& accept,
                     const std::function<void(FusionGroup&, const FusionGroup&)>& adopt) {
  std::vector<int> rooted_at(g.size(), -1);
  for (size_t k = 0; k < groups.size(); ++k) rooted_at[groups[k].root] = static_cast<int>(k);
  std::vector<bool> moved(groups.size(), false);
  for (FusionGroup& into : groups) {
    const NodeId value = source(into);
    if (value < 0 || rooted_at[value] < 0) continue;
    const auto at = static_cast<size_t>(rooted_at[value]);
    if (moved[at] || !accept(into, groups[at])) continue;
    moved[at] = true;
    std::vector<NodeId> nodes = groups[at].nodes;
    nodes.insert(nodes.end(), into.nodes.begin(), into.nodes.end());
    std::ranges::sort(nodes);
    into.nodes = std::move(nodes);
    adopt(into, groups[at]);
  }
  std::vector<FusionGroup> kept;
  for (size_t k = 0; k < groups.size(); ++k)
    if (!moved[k]) kept.push_back(std::move(groups[k]));
  groups = std::move(kept);
}

void merge_grad_gamma_sums(const Graph& g, const Readers& r, std::vector<FusionGroup>& groups) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  auto dy_of = [&](const FusionGroup& sums) -> NodeId {
    if (sums.anchor < 0 || sums.anchor != sums.root || g.node(sums.anchor).op != Op::batchnorm_grad_gamma ||
        !sums.prologue.empty())
      return -1;
    const NodeId dy = g.node(sums.anchor).operands[1];
    return g.shape(dy).size() == 4 && g.shape(dy)[2] * g.shape(dy)[3] >= kMinSummedPlane ? dy : -1;
  };
  auto accept = [&](const FusionGroup& sums, const FusionGroup& pool) {
    if (pool.anchor < 0 || g.node(pool.anchor).op != Op::maxpool2d_backward || !pool_windows_tile(g, pool.anchor))
      return false;
    if (std::ranges::any_of(pool.nodes, [&](NodeId id) { return r.assigns[id] > 0; })) return false;
    return std::ranges::all_of(readers[pool.root], [&](NodeId reader) {
      return reader >= sums.root || std::ranges::binary_search(sums.nodes, reader);
    });
  };
  merge_producers(g, groups, dy_of, accept, [](FusionGroup& sums, const FusionGroup& pool) {
    sums.anchor = pool.anchor;
    sums.prologue = pool.prologue;
  });
}

/// Moves each elementwise group into the reduce_sum kernel that sums its value R per channel
/// (sums_channels; a convolution's bias gradient summing batch norm's dx): the merged group is
/// rooted at the reduce_sum, so it runs where that one ran, and stores R as a side output; each
/// run of a channel's inner positions is computed, stored and added to the channel's partials
/// in the order of the reduction's own kernel, so the bits stay the same. Only when R's plane
/// has more than one position, every other reader of R comes after the sum, no assign reads the
/// group's nodes, and each value the group reads is of R's shape, one per channel or a scalar
/// (what the sweep indexes by position, by channel, or not at all). It saves the re-read of R.
void merge_channel_sums(const Graph& g, const Readers& r, std::vector<FusionGroup>& groups) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  auto value_of = [&](const FusionGroup& sum) -> NodeId {
    if (sum.anchor < 0 || sum.anchor != sum.root || sum.nodes.size() != 1) return -1;
    const NodeId value = g.node(sum.anchor).operands[0];
    if (!sums_channels(g, g.node(sum.anchor), value)) return -1;
    const Shape& shape = g.shape(value);
    return numel(shape) / (shape[0] * shape[1]) >= 2 ? value : -1;
  };
  auto accept = [&](const FusionGroup& sum, const FusionGroup& chain) {
    if (chain.anchor >= 0 || !chain.prologue.empty()) return false;
    if (std::ranges::any_of(chain.nodes, [&](NodeId id) { return r.assigns[id] > 0; })) return false;
    const Shape& shape = g.shape(chain.root);
    const int64_t channels = shape[1];
    const bool indexable = std::ranges::all_of(inputs_of(g, chain), [&](NodeId id) {
      const Shape& in = g.shape(id);
      if (in == shape || numel(in) == 1) return true;
      // One value per channel: [C, 1, ...] aligned with R's axis 1 (or with its leading 1s).
      const auto lead = static_cast<int64_t>(shape.size()) - static_cast<int64_t>(in.size());
      if (lead < 0 || lead > 1 || numel(in) != channels) return false;
      return in[static_cast<size_t>(1 - lead)] == channels;
    });
    return indexable && std::ranges::all_of(readers[chain.root], [&](NodeId reader) { return reader >= sum.root; });
  };
  merge_producers(g, groups, value_of, accept, [](FusionGroup&, const FusionGroup&) {});
}

/// Moves each forward conv2d group into the batchnorm_infer group that normalizes its value x
/// when nothing else reads x and the normalization's other operands are sources (fixed
/// statistics, as in an inference plan: none is computed after the convolution). The merged
/// group keeps the normalization's root and anchors on the convolution, whose epilogue then
/// applies the normalization per channel (emit_conv.cpp) and the normalization's own epilogue.
void merge_inference_norms(const Graph& g, const Readers& r, std::vector<FusionGroup>& groups) {
  auto source = [&](NodeId id) { return op_info(g.node(id).op).category == OpCategory::Source; };
  auto x_of = [&](const FusionGroup& norm) -> NodeId {
    if (norm.anchor < 0 || g.node(norm.anchor).op != Op::batchnorm_infer || !norm.prologue.empty()) return -1;
    const Node& n = g.node(norm.anchor);
    if (g.shape(n.operands[0]).size() != 4 || !std::all_of(n.operands.begin() + 1, n.operands.end(), source)) return -1;
    if (std::ranges::any_of(norm.nodes, [&](NodeId id) { return r.assigns[id] > 0; })) return -1;
    return r.sole(n.operands[0]) == norm.anchor ? n.operands[0] : -1;
  };
  auto accept = [&](const FusionGroup& norm, const FusionGroup& conv) {
    if (conv.anchor < 0 || g.node(conv.anchor).op != Op::conv2d || !conv.prologue.empty()) return false;
    if (std::ranges::any_of(conv.nodes, [&](NodeId id) { return r.assigns[id] > 0; })) return false;
    // The epilogue loads what the normalization's epilogue reads the way it loads its own
    // operands: values of the output's shape, one per channel, or scalars, each walking the
    // output row by row.
    const Shape& out = g.shape(conv.anchor);
    const std::vector<NodeId>& own = g.node(norm.anchor).operands;  // x and the per-channel values
    return std::ranges::all_of(inputs_of(g, norm), [&](NodeId id) {
      if (std::ranges::find(own, id) != own.end()) return true;
      const Shape& in = g.shape(id);
      if (in.size() > out.size()) return false;
      const std::vector<int64_t> s = broadcast_strides(in, out);
      return s[2] == s[3] * out[3];
    });
  };
  merge_producers(g, groups, x_of, accept,
                  [](FusionGroup& norm, const FusionGroup& conv) { norm.anchor = conv.anchor; });
}

/// Moves a matmul's group whose value only one elementwise group with no anchor reads, and
/// reads more than once (an optimizer's update that reads its weight's gradient twice:
/// Nesterov's momentum, for the velocity and for the step), into that group when the group
/// only adds, subtracts and multiplies: the matmul anchors the merged group, whose elementwise
/// nodes are all its epilogue, rooted where the update was, so it runs where that ran. It
/// saves the gradient's store and the update's read of it. Adam's update, whose square root and
/// division per element then run after each tile's FMAs rather than beside a stream, measured
/// even or slower so (docs/performance.md, session 28), and keeps its own kernel. Never when an
/// assign reads the product or it is a graph output.
void merge_shared_products(const Graph& g, const Readers& r, std::vector<FusionGroup>& groups) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::vector<bool> product_root(g.size(), false);
  for (const FusionGroup& group : groups)
    product_root[group.root] = group.anchor >= 0 && g.node(group.anchor).op == Op::matmul && group.prologue.empty();
  auto arithmetic = [&](NodeId id) {
    const Op op = g.node(id).op;
    return op == Op::add || op == Op::sub || op == Op::mul || op == Op::neg;
  };
  auto product_of = [&](const FusionGroup& update) -> NodeId {
    if (update.anchor >= 0 || !update.prologue.empty() || !std::ranges::all_of(update.nodes, arithmetic)) return -1;
    for (NodeId id : update.nodes)
      for (NodeId o : g.node(id).operands) {
        if (!product_root[o] || r.assigns[o] > 0 || r.is_output[o] || readers[o].size() < 2 ||
            g.shape(o) != g.shape(update.root))
          continue;
        if (std::ranges::all_of(readers[o],
                                [&](NodeId reader) { return std::ranges::binary_search(update.nodes, reader); }))
          return o;
      }
    return -1;
  };
  merge_producers(
      g, groups, product_of, [](const FusionGroup&, const FusionGroup&) { return true; },
      [](FusionGroup& update, const FusionGroup& product) { update.anchor = product.anchor; });
}

/// Whether `id` is a sibling statistic of the group's anchor (see is_sibling_statistic): the
/// only node of a group besides its anchor that is not elementwise (but a normalization folded
/// into a convolution's epilogue).
bool is_sibling(const Graph& g, const FusionGroup& group, NodeId id) {
  return id != group.anchor && is_anchor(g.node(id)) && id != folded_norm(g, group);
}

}  // namespace

NodeId folded_norm(const Graph& g, const FusionGroup& group) {
  if (group.anchor < 0 || g.node(group.anchor).op != Op::conv2d) return -1;
  for (NodeId id : group.nodes)
    if (g.node(id).op == Op::batchnorm_infer) return id;
  return -1;
}

NodeId summed_dy(const Graph& g, const FusionGroup& group) {
  const bool merged =
      group.anchor >= 0 && group.anchor != group.root && g.node(group.root).op == Op::batchnorm_grad_gamma;
  return merged ? g.node(group.root).operands[1] : -1;
}

NodeId value_summed_beside(const Graph& g, const FusionGroup& group) {
  const bool merged = group.anchor >= 0 && group.anchor == group.root && group.nodes.size() > 1 &&
                      g.node(group.anchor).op == Op::reduce_sum;
  return merged ? g.node(group.anchor).operands[0] : -1;
}

bool pool_windows_tile(const Graph& g, NodeId pool) {
  const Node& n = g.node(pool);
  const Shape& x = g.shape(n.operands[0]);
  return n.attrs.i("window") == 2 && n.attrs.i("stride") == 2 && x.size() == 4 && x[2] % 2 == 0 && x[3] % 2 == 0;
}

KernelFamily kernel_family(Op op) {
  switch (op) {
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::reshape:
    case Op::assign:
      return KernelFamily::none;
    case Op::neg:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::relu:
    case Op::tanh:
    case Op::sigmoid:
    case Op::elu:
    case Op::selu:
    case Op::leaky_relu:
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow:
    case Op::relu_grad:
    case Op::elu_grad:
    case Op::selu_grad:
    case Op::leaky_relu_grad:
    case Op::dropout:
      return KernelFamily::elementwise;
    case Op::matmul:
      return KernelFamily::matmul;
    case Op::conv2d:
    case Op::conv2d_backward_data:
    case Op::conv2d_backward_filter:
      return KernelFamily::conv;
    case Op::maxpool2d:
    case Op::maxpool2d_backward:
      return KernelFamily::pool;
    case Op::batchnorm_train:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
      return KernelFamily::norm;
    case Op::softmax:
    case Op::softmax_xent:
    case Op::softmax_xent_grad:
      return KernelFamily::softmax;
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
      return KernelFamily::reduce;
    case Op::transpose:
    case Op::broadcast:
      return KernelFamily::layout;
  }
  throw Error(fmt::format("internal error: op {} is not in the op table", static_cast<int>(op)));
}

FusionPlan fuse(const Graph& g) {
  const Readers readers(g);
  std::vector<NodeId> joins(g.size(), -1);  // the reader a node is fused into
  std::vector<std::string> why(g.size());
  std::vector<bool> holds_dropout(g.size(), false);  // the node or a node joined into it is a dropout
  std::vector<bool> holds_anchor(g.size(), false);   // ... is an anchor, whose loop covers its own shape only
  for (const Node& n : g.nodes()) {
    if (!is_elementwise(n) && !is_anchor(n)) continue;
    holds_dropout[n.id] = n.op == Op::dropout;
    holds_anchor[n.id] = is_anchor(n);
    for (NodeId o : n.operands)
      if (joins[o] == n.id) {
        holds_dropout[n.id] = holds_dropout[n.id] || holds_dropout[o];
        holds_anchor[n.id] = holds_anchor[n.id] || holds_anchor[o];
      }
    why[n.id] = blocker(g, readers, n.id, holds_dropout[n.id], holds_anchor[n.id]);
    if (why[n.id].empty()) joins[n.id] = readers.sole(n.id);
  }

  // A node's group is named by the root its joins lead to.
  auto root_of = [&](NodeId id) {
    while (joins[id] >= 0) id = joins[id];
    return id;
  };
  // A joined node that assigns also read is stored by its group as a side output, at the
  // group's own positions: only when the group's root has its shape.
  for (const Node& n : g.nodes())
    if (joins[n.id] >= 0 && readers.assigns[n.id] > 0 && g.shape(root_of(n.id)) != n.shape) {
      joins[n.id] = -1;
      why[n.id] = fmt::format("is read by assigns, and the kernel it would join writes {} elements, not its {}",
                              numel(g.shape(root_of(n.id))), numel(n.shape));
    }
  FusionPlan plan;
  plan.group_of.assign(g.size(), -1);
  std::vector<int> group_at(g.size(), -1);
  for (const Node& n : g.nodes()) {
    if (joins[n.id] >= 0 || (!is_elementwise(n) && !is_anchor(n))) continue;
    group_at[n.id] = static_cast<int>(plan.groups.size());
    plan.groups.push_back(FusionGroup{n.id, {}, {}, -1, why[n.id], {}, {}, {}});
  }
  for (const Node& n : g.nodes()) {
    if (!is_elementwise(n) && !is_anchor(n)) continue;
    FusionGroup& group = plan.groups[group_at[root_of(n.id)]];
    if (is_anchor(n)) {
      if (group.anchor >= 0) {  // a second anchor in one epilogue: it gets a kernel of its own
        joins[n.id] = -1;
        why[n.id] = fmt::format("group %{} already holds %{} ({})", group.root, group.anchor,
                                op_info(g.node(group.anchor).op).name);
        group_at[n.id] = static_cast<int>(plan.groups.size());
        plan.groups.push_back(FusionGroup{n.id, {n.id}, {}, n.id, why[n.id], {}, {}, {}});
        continue;
      }
      group.anchor = n.id;
    }
    group.nodes.push_back(n.id);
  }
  // Groups were created in root order, but a split-off contraction came later: restore the order.
  std::sort(plan.groups.begin(), plan.groups.end(), [](const auto& a, const auto& b) { return a.root < b.root; });
  merge_sibling_statistics(g, plan.groups);
  plan.recomputed.assign(g.size(), false);
  for (FusionGroup& group : plan.groups) std::sort(group.nodes.begin(), group.nodes.end());
  recompute_normalizations(g, readers, plan.groups, plan.recomputed);
  merge_grad_gamma_sums(g, readers, plan.groups);
  merge_channel_sums(g, readers, plan.groups);
  merge_inference_norms(g, readers, plan.groups);
  merge_shared_products(g, readers, plan.groups);

  for (size_t k = 0; k < plan.groups.size(); ++k) {
    FusionGroup& group = plan.groups[k];
    std::sort(group.nodes.begin(), group.nodes.end());
    const NodeId dy = summed_dy(g, group), summed = value_summed_beside(g, group);
    for (NodeId id : group.nodes) {
      plan.group_of[id] = static_cast<int>(k);
      if (id != group.root && (readers.assigns[id] > 0 || is_sibling(g, group, id) || id == dy || id == summed))
        group.side_outputs.push_back(id);
    }
    group.inputs = inputs_of(g, group);
  }
  return plan;
}

std::string kernel_name(const Graph& g, const FusionGroup& group) {
  std::string name = fmt::format("k{}", group.root);
  constexpr size_t kMaxOpsInName = 4;
  std::vector<NodeId> ops = group.prologue;  // what it computes, in order
  ops.insert(ops.end(), group.nodes.begin(), group.nodes.end());
  for (size_t k = 0; k < ops.size() && k < kMaxOpsInName; ++k)
    name += "_" + std::string(op_info(g.node(ops[k]).op).name);
  if (ops.size() > kMaxOpsInName) name += "_etc";
  return name;
}

namespace {

std::string value_label(const Graph& g, NodeId id) { return fmt::format("%{} {}", id, to_string(g.shape(id))); }

/// Why a non-root node is computed inside its group's kernel.
std::string join_reason(const Graph& g, const FusionGroup& group, NodeId id) {
  const Node& n = g.node(id);
  if (id == group.anchor)
    return fmt::format(
        "anchors the kernel: the elementwise nodes after it are its epilogue, applied in registers "
        "before the store");
  const NodeId dy = summed_dy(g, group);
  const NodeId summed = dy >= 0 ? group.root : group.anchor;  // what a sibling statistic is summed beside
  if (is_sibling(g, group, id))
    return fmt::format("is summed beside %{} ({}) in the same read of %{}, and stored for its {} readers", summed,
                       op_info(g.node(summed).op).name, n.operands[0], readers_of(g)[id].size());
  if (id == dy)
    return fmt::format("ends the pooling gradient ({} readers): stored, and each plane summed for %{} just after it is "
                       "written",
                       readers_of(g)[id].size(), group.root);
  if (id == value_summed_beside(g, group))
    return fmt::format(
        "ends the elementwise chain ({} readers): stored, and each run of it summed for %{} as it is "
        "stored",
        readers_of(g)[id].size(), group.root);
  if (const NodeId norm = folded_norm(g, group); norm >= 0 && id == g.node(norm).operands[0])
    return fmt::format(
        "is normalized by %{} (batchnorm_infer) in the epilogue, its only reader: fixed statistics, so its "
        "factors per channel are made as its own kernel makes them (same bits), and no kernel stores %{}",
        norm, id);
  NodeId reader = -1;
  size_t readers = 0;  // of the group's nodes
  for (NodeId other : group.nodes)
    if (std::ranges::find(g.node(other).operands, id) != g.node(other).operands.end()) {
      reader = other;
      ++readers;
    }
  if (id == folded_norm(g, group))
    return fmt::format("joins %{}: its only reader, applied element by element in the convolution's epilogue", reader);
  if (g.shape(id) != g.shape(reader))
    return fmt::format("joins %{}: a scalar computed once inside its reader's loop", reader);
  const bool side = std::find(group.side_outputs.begin(), group.side_outputs.end(), id) != group.side_outputs.end();
  if (readers > 1 && !side && group.anchor >= 0 && g.node(group.anchor).op == Op::matmul)  // merge_shared_products
    return fmt::format("joins its {} readers, all in this matmul's epilogue, elementwise over the same {} elements",
                       readers, numel(n.shape));
  return fmt::format("joins %{}: its only reader{}, elementwise over the same {} elements{}", reader,
                     side ? " besides assigns" : "", numel(n.shape), side ? "; also stored for the assigns" : "");
}

}  // namespace

std::string describe_fusion(const Graph& g, const FusionPlan& plan, bool why, ConvAlgo conv_algo) {
  std::string out;
  for (const FusionGroup& group : plan.groups) {
    out += fmt::format("kernel {}  ({} node{})\n", kernel_name(g, group), group.nodes.size(),
                       group.nodes.size() == 1 ? "" : "s");
    for (NodeId id : group.prologue) {
      const Node& n = g.node(id);
      out += fmt::format("  %{} = {} {}  # {}{}  (recomputed, not stored)\n", id, op_info(n.op).name,
                         to_string(n.shape), describe(n.where), n.scope.empty() ? "" : " in " + n.scope);
    }
    for (NodeId id : group.nodes) {
      const Node& n = g.node(id);
      out += fmt::format("  %{} = {} {}  # {}{}\n", id, op_info(n.op).name, to_string(n.shape), describe(n.where),
                         n.scope.empty() ? "" : " in " + n.scope);
    }
    std::vector<std::string> inputs;
    for (NodeId id : group.inputs) inputs.push_back(value_label(g, id));
    out += fmt::format("  reads  {}\n", inputs.empty() ? "nothing" : fmt::format("{}", fmt::join(inputs, ", ")));
    auto written = [&](NodeId id, const char* why) {
      for (const auto& [output, source] : group.in_place)
        if (output == id) return fmt::format("{} (in place, into {})", value_label(g, id), value_label(g, source));
      return value_label(g, id) + why;
    };
    std::vector<std::string> writes{written(group.root, "")};
    const NodeId dy = summed_dy(g, group);
    for (NodeId id : group.side_outputs)
      writes.push_back(written(id, is_sibling(g, group, id) ? " (beside it, in the same read)"
                                   : id == dy                ? " (for its readers)"
                                                             : " (for its assigns)"));
    out += fmt::format("  writes {}\n", fmt::join(writes, ", "));
    out += fmt::format("  ends:  %{} {}\n", group.root, group.why_root);
    if (!why) continue;
    if (!group.prologue.empty())
      out += fmt::format(
          "  why:   %{} is recomputed where %{} ({}) reads it: only pooling reads it, so no kernel stores it "
          "(normalization fused into its consumers)\n",
          group.prologue.back(), group.anchor, op_info(g.node(group.anchor).op).name);
    if (summed_dy(g, group) >= 0)
      out += fmt::format(
          "  why:   %{} ({}) is summed where %{} ({}) writes its dy %{}: each plane read again while in cache, "
          "channel by channel in its own kernel's order (same bits), so no kernel of its own reads x and dy again\n",
          group.root, op_info(g.node(group.root).op).name, group.anchor, op_info(g.node(group.anchor).op).name,
          g.node(group.root).operands[1]);
    for (NodeId id : group.nodes)
      if (id != group.root) out += fmt::format("  why:   %{} {}\n", id, join_reason(g, group, id));
    if (group.anchor >= 0 && kernel_family(g.node(group.anchor).op) == KernelFamily::conv)
      out += fmt::format("  algo:  %{} {}\n", group.anchor, choose_conv_algo(g, g.node(group.anchor), conv_algo).why);
  }
  return out;
}

}  // namespace dagger
