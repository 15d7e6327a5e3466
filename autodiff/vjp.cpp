// The VJP rules: one function per differentiable op, each returning dL/d(operand) given the
// node's adjoint dy. Rules build only the operand gradients that are wanted, so a frozen or
// constant operand costs nothing.
#include <fmt/format.h>

#include <set>

#include "dagger/autodiff/grad.h"

namespace dagger {

namespace {

/// What a rule sees: the forward node (copied, since adding nodes may move the node vector),
/// its adjoint, and helpers that add nodes at the forward node's source line.
class Ctx {
 public:
  Ctx(Graph& g, NodeId node, NodeId dy, const std::vector<bool>& wants)
      : g_(g), fwd_(g.node(node)), dy_(dy), wants_(wants), out_(wants.size(), -1) {}

  NodeId y() const { return fwd_.id; }
  NodeId dy() const { return dy_; }
  NodeId x(size_t k) const { return fwd_.operands[k]; }
  const Attrs& attrs() const { return fwd_.attrs; }
  /// By value: adding nodes may reallocate the graph's node vector under a reference.
  Shape shape(NodeId id) const { return g_.shape(id); }
  std::vector<NodeId> result() { return std::move(out_); }

  /// Builds operand k's gradient only when grad() asked for it.
  template <class F>
  void grad(size_t k, F&& build) {
    if (wants_[k]) out_[k] = build();
  }
  /// An operand the op is not differentiable in (labels, dropout keys): asking is an error.
  void no_grad(size_t k, std::string_view what) {
    if (wants_[k])
      throw Error(fmt::format("{}: {} is not differentiable with respect to its {}", describe(fwd_.where),
                              op_info(fwd_.op).name, what));
  }

  NodeId op(Op op, std::vector<NodeId> operands, Attrs attrs = {}) {
    return g_.add(op, std::move(operands), std::move(attrs), fwd_.where);
  }
  NodeId add(NodeId a, NodeId b) { return op(Op::add, {a, b}); }
  NodeId sub(NodeId a, NodeId b) { return op(Op::sub, {a, b}); }
  NodeId mul(NodeId a, NodeId b) { return op(Op::mul, {a, b}); }
  NodeId div(NodeId a, NodeId b) { return op(Op::div, {a, b}); }
  NodeId neg(NodeId a) { return op(Op::neg, {a}); }
  NodeId constant(double v) { return op(Op::constant, {}, {{"value", v}, {"shape", Shape{}}}); }
  NodeId reshape(NodeId a, const Shape& s) { return shape(a) == s ? a : op(Op::reshape, {a}, {{"shape", s}}); }
  NodeId broadcast(NodeId a, const Shape& s) { return shape(a) == s ? a : op(Op::broadcast, {a}, {{"shape", s}}); }
  NodeId matmul(NodeId a, NodeId b, bool ta, bool tb) {
    return op(Op::matmul, {a, b}, {{"trans_a", int64_t(ta)}, {"trans_b", int64_t(tb)}});
  }
  NodeId reduce_sum(NodeId a, std::vector<int64_t> axes, bool keepdims) {
    return op(Op::reduce_sum, {a}, {{"axes", std::move(axes)}, {"keepdims", int64_t(keepdims)}});
  }

  /// Sums a gradient of the broadcast result shape back to operand k's shape: the adjoint of
  /// NumPy broadcasting is a sum over every axis that was added or stretched from 1.
  NodeId sum_to_operand(NodeId d, size_t k) { return sum_to(d, shape(x(k))); }
  NodeId sum_to(NodeId d, const Shape& target) {
    const Shape& from = shape(d);
    if (from == target) return d;
    const size_t lead = from.size() - target.size();
    std::vector<int64_t> axes;
    for (size_t i = 0; i < from.size(); ++i)
      if (i < lead || (target[i - lead] == 1 && from[i] != 1)) axes.push_back(static_cast<int64_t>(i));
    return reshape(axes.empty() ? d : reduce_sum(d, axes, true), target);
  }

 private:
  Graph& g_;
  Node fwd_;
  NodeId dy_;
  std::vector<bool> wants_;
  std::vector<NodeId> out_;
};

using Rule = void (*)(Ctx&);

/// The reduction's axes as sorted non-negative indices.
std::set<int64_t> reduced_axes(const Ctx& c) {
  const auto rank = static_cast<int64_t>(c.shape(c.x(0)).size());
  std::set<int64_t> axes;
  for (int64_t a : c.attrs().ints("axes")) axes.insert(a < 0 ? a + rank : a);
  return axes;
}

/// The reduction's result shape with the reduced axes kept as 1.
Shape kept_shape(const Ctx& c) {
  Shape s = c.shape(c.x(0));
  for (int64_t a : reduced_axes(c)) s[static_cast<size_t>(a)] = 1;
  return s;
}

/// dy of a reduction, reshaped to keepdims form so it broadcasts against the input.
NodeId kept_dy(Ctx& c) { return c.reshape(c.dy(), kept_shape(c)); }

// ---- Elementwise unary ----

void neg_rule(Ctx& c) {  // d(-x)/dx = -1
  c.grad(0, [&] { return c.neg(c.dy()); });
}
void exp_rule(Ctx& c) {  // d e^x/dx = e^x = y
  c.grad(0, [&] { return c.mul(c.dy(), c.y()); });
}
void log_rule(Ctx& c) {  // d ln x/dx = 1/x
  c.grad(0, [&] { return c.div(c.dy(), c.x(0)); });
}
void sqrt_rule(Ctx& c) {  // d sqrt(x)/dx = 1/(2 sqrt(x)) = 1/(2y)
  c.grad(0, [&] { return c.div(c.dy(), c.mul(c.y(), c.constant(2))); });
}
void tanh_rule(Ctx& c) {  // d tanh(x)/dx = 1 - tanh(x)^2 = 1 - y^2
  c.grad(0, [&] { return c.mul(c.dy(), c.sub(c.constant(1), c.mul(c.y(), c.y()))); });
}
void sigmoid_rule(Ctx& c) {  // d s(x)/dx = s(x)(1 - s(x)) = y(1 - y)
  c.grad(0, [&] { return c.mul(c.mul(c.dy(), c.y()), c.sub(c.constant(1), c.y())); });
}

/// Activations whose derivative is a first-class (x, dy) op carrying the forward attrs.
template <Op GradOp>
void activation_rule(Ctx& c) {  // dy * f'(x), f' evaluated by the *_grad op
  c.grad(0, [&] { return c.op(GradOp, {c.x(0), c.dy()}, c.attrs()); });
}

/// relu's derivative read from its output: y = relu(x) > 0 exactly where x > 0, and reading y
/// leaves x (often a batch norm's output) with the relu as its only reader, so the two fuse.
void relu_rule(Ctx& c) {  // dy * [x > 0] = dy * [y > 0]
  c.grad(0, [&] { return c.op(Op::relu_grad, {c.y(), c.dy()}); });
}

// ---- Elementwise binary (broadcasting: each gradient is summed back to its operand) ----

void add_rule(Ctx& c) {  // d(a+b)/da = d(a+b)/db = 1
  c.grad(0, [&] { return c.sum_to_operand(c.dy(), 0); });
  c.grad(1, [&] { return c.sum_to_operand(c.dy(), 1); });
}
void sub_rule(Ctx& c) {  // d(a-b)/da = 1, d(a-b)/db = -1
  c.grad(0, [&] { return c.sum_to_operand(c.dy(), 0); });
  c.grad(1, [&] { return c.neg(c.sum_to_operand(c.dy(), 1)); });
}
void mul_rule(Ctx& c) {  // d(a*b)/da = b, d(a*b)/db = a
  c.grad(0, [&] { return c.sum_to_operand(c.mul(c.dy(), c.x(1)), 0); });
  c.grad(1, [&] { return c.sum_to_operand(c.mul(c.dy(), c.x(0)), 1); });
}
void div_rule(Ctx& c) {  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -y/b
  c.grad(0, [&] { return c.sum_to_operand(c.div(c.dy(), c.x(1)), 0); });
  c.grad(1, [&] { return c.neg(c.sum_to_operand(c.div(c.mul(c.dy(), c.y()), c.x(1)), 1)); });
}
void pow_rule(Ctx& c) {  // d(a^b)/da = b a^(b-1), d(a^b)/db = a^b ln a = y ln a (needs a > 0)
  c.grad(0, [&] {
    NodeId slope = c.mul(c.x(1), c.op(Op::pow, {c.x(0), c.sub(c.x(1), c.constant(1))}));
    return c.sum_to_operand(c.mul(c.dy(), slope), 0);
  });
  c.grad(1, [&] { return c.sum_to_operand(c.mul(c.dy(), c.mul(c.y(), c.op(Op::log, {c.x(0)}))), 1); });
}

void dropout_rule(Ctx& c) {  // y = x * mask/(1-p): the same mask (same key and salt) scales dy
  c.grad(0, [&] { return c.op(Op::dropout, {c.dy(), c.x(1)}, c.attrs()); });
  c.no_grad(1, "key");
}

// ---- Layout ----

void reshape_rule(Ctx& c) {  // a reshape only renames positions: reshape dy back
  c.grad(0, [&] { return c.reshape(c.dy(), c.shape(c.x(0))); });
}
void transpose_rule(Ctx& c) {  // y[.. i ..] = x[.. perm^-1 ..]: transpose dy by the inverse permutation
  c.grad(0, [&] {
    const auto& perm = c.attrs().ints("perm");
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    return c.op(Op::transpose, {c.dy()}, {{"perm", inverse}});
  });
}
void broadcast_rule(Ctx& c) {  // each x element feeds every copy: sum dy over the copies
  c.grad(0, [&] { return c.sum_to_operand(c.dy(), 0); });
}

// ---- Reductions ----

void reduce_sum_rule(Ctx& c) {  // d(sum x)/dx_i = 1: dy broadcast back over the reduced axes
  c.grad(0, [&] { return c.broadcast(kept_dy(c), c.shape(c.x(0))); });
}
void reduce_mean_rule(Ctx& c) {  // d(mean x)/dx_i = 1/n, n = elements per reduced group
  c.grad(0, [&] {
    const double n = static_cast<double>(numel(c.shape(c.x(0))) / numel(kept_shape(c)));
    return c.broadcast(c.div(kept_dy(c), c.constant(n)), c.shape(c.x(0)));
  });
}
/// d(max x)/dx_i = [x_i == max] / (number of ties): tied maxima share dy evenly, a valid
/// subgradient that keeps the total equal to dy (as TensorFlow does). There is no comparison
/// op, so with d = x - max <= 0 the indicator [d == 0] is built as 1 - relu_grad(-d) +
/// relu_grad(d), which is right whether relu_grad passes dy at exactly 0 or not.
void reduce_max_rule(Ctx& c) {
  c.grad(0, [&] {
    const Shape& in = c.shape(c.x(0));
    NodeId d = c.sub(c.x(0), c.reshape(c.y(), kept_shape(c)));
    NodeId ones = c.broadcast(c.constant(1), in);
    NodeId below = c.op(Op::relu_grad, {c.neg(d), ones});
    NodeId above = c.op(Op::relu_grad, {d, ones});
    NodeId mask = c.add(c.sub(ones, below), above);
    const std::set<int64_t> reduced = reduced_axes(c);
    NodeId ties = c.reduce_sum(mask, {reduced.begin(), reduced.end()}, true);
    return c.mul(mask, c.div(kept_dy(c), ties));
  });
}

// ---- Contractions ----

/// C = op(A) op(B) with op = transpose when the flag is set. From dC = dA' B' + A' dB' for
/// A' = op(A), B' = op(B): dA' = dC B'^T and dB' = A'^T dC, then undo op on each side.
void matmul_rule(Ctx& c) {
  const bool ta = c.attrs().i_or("trans_a", 0), tb = c.attrs().i_or("trans_b", 0);
  NodeId a = c.x(0), b = c.x(1), dc = c.dy();
  c.grad(0, [&] {
    if (!ta) return c.matmul(dc, b, false, !tb);  // dA = dC B'^T
    return c.matmul(b, dc, tb, true);             // dA = (dC B'^T)^T = B' dC^T
  });
  c.grad(1, [&] {
    if (!tb) return c.matmul(a, dc, !ta, false);  // dB = A'^T dC
    return c.matmul(dc, a, true, ta);             // dB = (A'^T dC)^T = dC^T A'
  });
}

void conv2d_rule(Ctx& c) {  // dx and dw by the transposed convolutions, same stride and padding
  auto attrs = [&](const Shape& s) {
    return Attrs{{"stride", c.attrs().i("stride")}, {"pad", c.attrs().i("pad")}, {"shape", s}};
  };
  c.grad(0, [&] { return c.op(Op::conv2d_backward_data, {c.dy(), c.x(1)}, attrs(c.shape(c.x(0)))); });
  c.grad(1, [&] { return c.op(Op::conv2d_backward_filter, {c.x(0), c.dy()}, attrs(c.shape(c.x(1)))); });
}

void maxpool2d_rule(Ctx& c) {  // each window's dy goes to the position of its maximum
  c.grad(0, [&] { return c.op(Op::maxpool2d_backward, {c.x(0), c.dy()}, c.attrs()); });
}

// ---- Composites ----

/// y = gamma * xhat + beta with batch statistics, xhat = (x - mean) rstd, rstd = 1/sqrt(var + eps),
/// both statistics over the M elements of a channel (every axis but 1):
///   dgamma = sum(dy xhat), dbeta = sum(dy),
///   dx = gamma rstd (dy - dbeta/M - xhat dgamma/M) = a dy - b (x - mean) - k per channel, with
///   a = gamma rstd, b = a rstd dgamma / M, k = a dbeta / M.
/// dx is elementwise on x and dy once the two sums are known, so it is one pass; its mean and
/// var are channel_mean and channel_var of x, which the training step shares with the running
/// averages' (share_batch_statistics in step.cpp).
void batchnorm_train_rule(Ctx& c) {
  Attrs eps{{"eps", c.attrs().f("eps")}};
  const Shape x_shape = c.shape(c.x(0));
  std::vector<int64_t> axes;
  for (size_t i = 0; i < x_shape.size(); ++i)
    if (i != 1) axes.push_back(static_cast<int64_t>(i));
  NodeId dgamma = -1, dbeta = -1;
  auto sum_dy_xhat = [&] {
    return dgamma >= 0 ? dgamma : dgamma = c.op(Op::batchnorm_grad_gamma, {c.x(0), c.dy()}, eps);
  };
  auto sum_dy = [&] { return dbeta >= 0 ? dbeta : dbeta = c.reduce_sum(c.dy(), axes, false); };
  // dbeta first: its reduce_sum then comes before batchnorm_grad_gamma, whose kernel computes
  // it too, in the same read of dy (codegen/fusion.cpp, sibling statistics).
  c.grad(2, sum_dy);
  c.grad(1, sum_dy_xhat);
  c.grad(0, [&] {
    Shape channel(x_shape.size() - 1, 1);  // [C, 1, ...]: broadcasts over the positions of x
    channel[0] = x_shape[1];
    const double m = double(numel(x_shape) / x_shape[1]);
    NodeId mean = c.op(Op::channel_mean, {c.x(0)}), var = c.op(Op::channel_var, {c.x(0)});
    NodeId rstd = c.div(c.constant(1), c.op(Op::sqrt, {c.add(var, c.constant(c.attrs().f("eps")))}));
    NodeId a = c.mul(c.x(1), rstd);
    NodeId b = c.mul(c.mul(a, rstd), c.mul(sum_dy_xhat(), c.constant(1 / m)));
    NodeId k = c.mul(a, c.mul(sum_dy(), c.constant(1 / m)));
    NodeId centered = c.sub(c.x(0), c.reshape(mean, channel));
    return c.sub(c.sub(c.mul(c.reshape(a, channel), c.dy()), c.mul(c.reshape(b, channel), centered)),
                 c.reshape(k, channel));
  });
}

void softmax_rule(Ctx& c) {  // dy/dx = diag(y) - y y^T per row: dx = y * (dy - sum(dy * y))
  c.grad(0, [&] {
    const auto last = static_cast<int64_t>(c.shape(c.y()).size()) - 1;
    NodeId dot = c.reduce_sum(c.mul(c.dy(), c.y()), {last}, true);
    return c.mul(c.y(), c.sub(c.dy(), dot));
  });
}

// d loss/d logits = (softmax - onehot(labels)) / N, scaled by dloss; with smoothing E the target
// is (1-E) onehot + E/K, so the grad op takes the same attribute.
void softmax_xent_rule(Ctx& c) {
  c.grad(0, [&] { return c.op(Op::softmax_xent_grad, {c.x(0), c.x(1), c.dy()}, c.attrs()); });
  c.no_grad(1, "labels");
}

/// The rule table: nullptr for the ops gradients cannot flow through, listed at its end.
Rule rule_for(Op op) {
  switch (op) {
    case Op::neg: return neg_rule;
    case Op::exp: return exp_rule;
    case Op::log: return log_rule;
    case Op::sqrt: return sqrt_rule;
    case Op::relu: return relu_rule;
    case Op::tanh: return tanh_rule;
    case Op::sigmoid: return sigmoid_rule;
    case Op::elu: return activation_rule<Op::elu_grad>;
    case Op::selu: return activation_rule<Op::selu_grad>;
    case Op::leaky_relu: return activation_rule<Op::leaky_relu_grad>;
    case Op::add: return add_rule;
    case Op::sub: return sub_rule;
    case Op::mul: return mul_rule;
    case Op::div: return div_rule;
    case Op::pow: return pow_rule;
    case Op::dropout: return dropout_rule;
    case Op::reshape: return reshape_rule;
    case Op::transpose: return transpose_rule;
    case Op::broadcast: return broadcast_rule;
    case Op::reduce_sum: return reduce_sum_rule;
    case Op::reduce_mean: return reduce_mean_rule;
    case Op::reduce_max: return reduce_max_rule;
    case Op::matmul: return matmul_rule;
    case Op::conv2d: return conv2d_rule;
    case Op::maxpool2d: return maxpool2d_rule;
    case Op::batchnorm_train: return batchnorm_train_rule;
    case Op::softmax: return softmax_rule;
    case Op::softmax_xent: return softmax_xent_rule;
    // Not differentiable: sources (gradients stop there), the derivative and backward ops
    // themselves, running statistics, inference batchnorm, the loss head's gradient, assign.
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::relu_grad:
    case Op::elu_grad:
    case Op::selu_grad:
    case Op::leaky_relu_grad:
    case Op::conv2d_backward_data:
    case Op::conv2d_backward_filter:
    case Op::maxpool2d_backward:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
    case Op::softmax_xent_grad:
    case Op::assign: return nullptr;
  }
  throw Error(fmt::format("no gradient rule for op value {}: it is outside the op table", static_cast<int>(op)));
}

}  // namespace

bool has_vjp(Op op) { return rule_for(op) != nullptr; }

std::vector<NodeId> vjp(Graph& g, NodeId node, NodeId dy, const std::vector<bool>& wants) {
  const Node& n = g.node(node);
  Rule rule = rule_for(n.op);
  if (!rule)
    throw Error(fmt::format("{}: cannot differentiate through {} (%{}{}): it has no gradient rule",
                            describe(n.where), op_info(n.op).name, node, n.scope.empty() ? "" : " in " + n.scope));
  Ctx c(g, node, dy, wants);
  rule(c);
  return c.result();
}

}  // namespace dagger
