// The cost model: FLOPs and compulsory bytes of nodes and of fused kernels.
#include "dagger/graph/cost.h"

#include <fmt/format.h>

#include <set>

namespace dagger {

namespace {

double elements(const Graph& g, NodeId id) { return static_cast<double>(numel(g.shape(id))); }

/// FLOPs of a convolution or either of its backward products: 2*N*K*C*R*S*P*Q, read off the
/// filter [K,C,R,S] and the output gradient or output [N,K,P,Q].
double conv_flops(const Shape& filter, const Shape& out) {
  return 2.0 * static_cast<double>(out[0]) * static_cast<double>(numel(filter)) * static_cast<double>(out[2]) *
         static_cast<double>(out[3]);
}

}  // namespace

bool is_contraction(Op op) { return op_info(op).category == OpCategory::Contraction; }

double node_flops(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  const double out = elements(g, id);
  const double in = n.operands.empty() ? 0 : elements(g, n.operands[0]);
  switch (n.op) {
    case Op::matmul: {
      const Shape& a = g.shape(n.operands[0]);
      const double k = static_cast<double>(n.attrs.i_or("trans_a", 0) ? a[0] : a[1]);
      return 2.0 * out * k;
    }
    case Op::conv2d:
      return conv_flops(g.shape(n.operands[1]), n.shape);
    case Op::conv2d_backward_data:
      return conv_flops(g.shape(n.operands[1]), g.shape(n.operands[0]));
    case Op::conv2d_backward_filter:
      return conv_flops(n.shape, g.shape(n.operands[1]));
    case Op::maxpool2d: {
      const double window = static_cast<double>(n.attrs.i("window"));
      return out * window * window;  // one comparison per window element
    }
    case Op::maxpool2d_backward: {
      const double window = static_cast<double>(n.attrs.i("window"));
      return elements(g, n.operands[1]) * window * window;  // find each window's max again
    }
    // Per element: statistics (mean 1, variance 3), then (x - mean) * rstd * gamma + beta (4).
    case Op::batchnorm_train:
      return 8 * out;
    case Op::batchnorm_infer:
      return 4 * out;
    // Per element: the statistics again (4), xhat (2), the two channel sums (4), dx (4).
    case Op::batchnorm_backward:
      return 14 * out;
    // Per element: the statistics again (4), xhat (2), sum of dy * xhat (2).
    case Op::batchnorm_grad_gamma:
      return 8 * in;
    case Op::channel_mean:
      return in;
    case Op::channel_var:
      return 3 * in;  // subtract the mean, square, accumulate
    // Per logit: max, subtract, exp, sum, divide (or the log-sum and the pick for the loss).
    case Op::softmax:
      return 5 * out;
    case Op::softmax_xent:
      return 5 * in;
    case Op::softmax_xent_grad:
      return 5 * out;
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
      return out;  // one operation per output element
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
      return in;  // one operation per input element
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::reshape:
    case Op::transpose:
    case Op::broadcast:
    case Op::assign:
      return 0;  // sources, layout, sinks compute nothing
  }
  throw Error(fmt::format("no cost rule for op value {}: it is outside the op table", static_cast<int>(n.op)));
}

Cost node_cost(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  const OpCategory category = op_info(n.op).category;
  if (category == OpCategory::Source || category == OpCategory::Sink) return {};
  Cost c{node_flops(g, id), elements(g, id) * kBytesPerFloat};
  for (NodeId o : std::set<NodeId>(n.operands.begin(), n.operands.end())) c.bytes += elements(g, o) * kBytesPerFloat;
  return c;
}

Cost kernel_cost(const Graph& g, const std::vector<NodeId>& nodes, NodeId root) {
  const std::set<NodeId> inside(nodes.begin(), nodes.end());
  std::set<NodeId> reads;
  Cost c;
  for (NodeId id : nodes) {
    c.flops += node_flops(g, id);
    for (NodeId o : g.node(id).operands)
      if (!inside.count(o)) reads.insert(o);
  }
  for (NodeId o : reads) c.bytes += elements(g, o) * kBytesPerFloat;
  c.bytes += elements(g, root) * kBytesPerFloat;
  return c;
}

Cost graph_cost(const Graph& g) {
  Cost c;
  for (const Node& n : g.nodes()) c += node_cost(g, n.id);
  return c;
}

}  // namespace dagger
