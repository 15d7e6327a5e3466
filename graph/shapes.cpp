// Shape rules for every op, and the verifier of whole graphs.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "dagger/graph/graph.h"
#include "dagger/graph/random.h"

namespace dagger {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw Error(msg); }

void require(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
}

void require_same(const Shape& a, const Shape& b, std::string_view what) {
  require(a == b, fmt::format("{} must have the same shape, got {} and {}", what, to_string(a), to_string(b)));
}

Shape reshape_rule(const Shape& in, const Shape& target) {
  Shape out = target;
  int64_t known = 1;
  int unknown = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      require(unknown < 0, "reshape allows one -1 dimension");
      unknown = static_cast<int>(i);
    } else {
      require(out[i] >= 0, fmt::format("reshape target {} has a negative dimension", to_string(target)));
      require(!__builtin_mul_overflow(known, out[i], &known),
              fmt::format("reshape target {} has more elements than a 64-bit count holds", to_string(target)));
    }
  }
  if (unknown >= 0) {
    require(known > 0 && numel(in) % known == 0,
            fmt::format("cannot reshape {} into {}", to_string(in), to_string(target)));
    out[unknown] = numel(in) / known;
  }
  require(numel(out) == numel(in), fmt::format("cannot reshape {} ({} elements) into {} ({} elements)",
                                               to_string(in), numel(in), to_string(out), numel(out)));
  return out;
}

Shape transpose_rule(const Shape& in, const std::vector<int64_t>& perm) {
  require(perm.size() == in.size(), fmt::format("transpose perm has {} entries for rank {}", perm.size(), in.size()));
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    require(sorted[i] == static_cast<int64_t>(i), "transpose perm is not a permutation");
  Shape out;
  for (int64_t p : perm) out.push_back(in[p]);
  return out;
}

Shape reduce_rule(const Shape& in, const std::vector<int64_t>& axes, bool keepdims) {
  std::set<int64_t> reduced;
  const auto rank = static_cast<int64_t>(in.size());
  for (int64_t a : axes) {
    int64_t axis = a < 0 ? a + rank : a;
    require(axis >= 0 && axis < rank, fmt::format("reduction axis {} is out of range for rank {}", a, rank));
    require(reduced.insert(axis).second, fmt::format("reduction axis {} is listed twice", a));
  }
  Shape out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced.count(i))
      out.push_back(in[i]);
    else if (keepdims)
      out.push_back(1);
  }
  return out;
}

Shape matmul_rule(const Shape& a, const Shape& b, bool ta, bool tb) {
  require(a.size() == 2 && b.size() == 2,
          fmt::format("matmul needs 2-D operands, got {} and {}", to_string(a), to_string(b)));
  int64_t m = ta ? a[1] : a[0], k = ta ? a[0] : a[1];
  int64_t k2 = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
  require(k == k2, fmt::format("matmul inner dimensions differ: {} vs {}", k, k2));
  return {m, n};
}

Shape conv_rule(const Shape& x, const Shape& w, int64_t stride, int64_t pad) {
  require(x.size() == 4, fmt::format("conv2d input must be NCHW, got {}", to_string(x)));
  require(w.size() == 4, fmt::format("conv2d filter must be OIHW, got {}", to_string(w)));
  require(x[1] == w[1], fmt::format("conv2d input has {} channels but the filter expects {}", x[1], w[1]));
  require(stride >= 1 && pad >= 0, "conv2d needs stride >= 1 and pad >= 0");
  int64_t oh = (x[2] + 2 * pad - w[2]) / stride + 1, ow = (x[3] + 2 * pad - w[3]) / stride + 1;
  require(x[2] + 2 * pad >= w[2] && x[3] + 2 * pad >= w[3], "conv2d filter is larger than the padded input");
  return {x[0], w[0], oh, ow};
}

Shape pool_rule(const Shape& x, int64_t window, int64_t stride) {
  require(x.size() == 4, fmt::format("maxpool2d input must be NCHW, got {}", to_string(x)));
  require(window >= 1 && stride >= 1, "maxpool2d needs window >= 1 and stride >= 1");
  require(x[2] >= window && x[3] >= window,
          fmt::format("maxpool2d window {} is larger than the input {}", window, to_string(x)));
  return {x[0], x[1], (x[2] - window) / stride + 1, (x[3] - window) / stride + 1};
}

Shape channels(const Shape& x, std::string_view op) {
  require(x.size() >= 2, fmt::format("{} needs a batch and a channel axis, got {}", op, to_string(x)));
  return {x[1]};
}

/// Label smoothing, when given, must lie in [0, 1).
void check_smoothing(const Attrs& at) {
  const double e = at.f_or("smoothing", 0);
  require(e >= 0 && e < 1, fmt::format("label smoothing must be in [0, 1), got {}", e));
}

Shape class_head(const Shape& logits, const Shape& labels) {
  require(logits.size() == 2, fmt::format("logits must be [batch, classes], got {}", to_string(logits)));
  require(labels == Shape{logits[0]},
          fmt::format("labels must be [{}] to match the logits {}, got {}", logits[0], to_string(logits), to_string(labels)));
  return {};
}

/// Dropout's operands are x and a scalar key; its rate must leave something to keep, and its
/// optional index offset must not be negative.
Shape dropout_rule(const std::vector<Shape>& in, const Attrs& at) {
  require(in[1].empty(), fmt::format("dropout key must be a scalar, got {}", to_string(in[1])));
  double p = at.f("p");
  require(p >= 0 && p < 1, fmt::format("dropout rate {} is outside [0, 1)", p));
  require(dropout_offset(at) >= 0, fmt::format("dropout offset {} is negative", dropout_offset(at)));
  return in[0];
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    require(da == db || da == 1 || db == 1,
            fmt::format("shapes {} and {} do not broadcast", to_string(a), to_string(b)));
    out[i] = std::max(da, db);
  }
  return out;
}

Shape infer_shape(Op op, const std::vector<Shape>& in, const Attrs& at) {
  switch (op) {
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant: return at.ints("shape");
    case Op::neg:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::relu:
    case Op::tanh:
    case Op::sigmoid:
    case Op::elu:
    case Op::selu:
    case Op::leaky_relu: return in[0];
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow: return broadcast_shapes(in[0], in[1]);
    case Op::relu_grad:
    case Op::elu_grad:
    case Op::selu_grad:
    case Op::leaky_relu_grad:
      require_same(in[0], in[1], "an activation's input and its gradient");
      return in[0];
    case Op::dropout: return dropout_rule(in, at);
    case Op::assign: return in[0];
    case Op::reshape: return reshape_rule(in[0], at.ints("shape"));
    case Op::transpose: return transpose_rule(in[0], at.ints("perm"));
    case Op::broadcast: {
      Shape target = at.ints("shape");
      require(broadcast_shapes(in[0], target) == target,
              fmt::format("cannot broadcast {} to {}", to_string(in[0]), to_string(target)));
      return target;
    }
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max: return reduce_rule(in[0], at.ints("axes"), at.i_or("keepdims", 0) != 0);
    case Op::matmul: return matmul_rule(in[0], in[1], at.i_or("trans_a", 0), at.i_or("trans_b", 0));
    case Op::conv2d: return conv_rule(in[0], in[1], at.i("stride"), at.i("pad"));
    case Op::conv2d_backward_data: {
      Shape x = at.ints("shape");
      require_same(conv_rule(x, in[1], at.i("stride"), at.i("pad")), in[0], "conv2d_backward_data's dy and conv2d(x, w)");
      return x;
    }
    case Op::conv2d_backward_filter: {
      Shape w = at.ints("shape");
      require_same(conv_rule(in[0], w, at.i("stride"), at.i("pad")), in[1], "conv2d_backward_filter's dy and conv2d(x, w)");
      return w;
    }
    case Op::maxpool2d: return pool_rule(in[0], at.i("window"), at.i("stride"));
    case Op::maxpool2d_backward:
      require_same(pool_rule(in[0], at.i("window"), at.i("stride")), in[1], "maxpool2d_backward's dy and maxpool2d(x)");
      return in[0];
    case Op::batchnorm_train:
    case Op::batchnorm_infer: {
      Shape c = channels(in[0], op_info(op).name);
      for (size_t k = 1; k < in.size(); ++k) require_same(in[k], c, "batchnorm's per-channel operands and [channels]");
      return in[0];
    }
    case Op::batchnorm_backward:
      require_same(in[1], channels(in[0], "batchnorm_backward"), "batchnorm gamma and [channels]");
      require_same(in[0], in[2], "batchnorm_backward's x and dy");
      return in[0];
    case Op::batchnorm_grad_gamma:
      require_same(in[0], in[1], "batchnorm_grad_gamma's x and dy");
      return channels(in[0], "batchnorm_grad_gamma");
    case Op::channel_mean:
    case Op::channel_var: return channels(in[0], op_info(op).name);
    case Op::softmax:
      require(!in[0].empty(), "softmax needs at least one axis");
      return in[0];
    case Op::softmax_xent:
      check_smoothing(at);
      return class_head(in[0], in[1]);
    case Op::softmax_xent_grad:
      check_smoothing(at);
      class_head(in[0], in[1]);
      require(in[2].empty(), fmt::format("softmax_xent_grad's upstream gradient must be a scalar, got {}", to_string(in[2])));
      return in[0];
  }
  fail(fmt::format("no shape rule for op value {}: it is outside the op table", static_cast<int>(op)));
}

void verify(const Graph& g) {
  std::set<std::string> sources;
  for (const Node& n : g.nodes()) {
    const OpInfo& info = op_info(n.op);
    auto where = [&] { return fmt::format("{}: %{} = {}", describe(n.where), n.id, info.name); };
    if (static_cast<int>(n.operands.size()) != info.arity) fail(where() + ": wrong operand count");
    std::vector<Shape> shapes;
    for (NodeId o : n.operands) {
      if (o < 0 || o >= n.id) fail(fmt::format("{}: operand %{} does not precede its user", where(), o));
      if (g.node(o).op == Op::assign) fail(where() + ": uses an assign's result");
      shapes.push_back(g.node(o).shape);
    }
    Shape s;
    try {
      s = infer_shape(n.op, shapes, n.attrs);
    } catch (const Error& e) {
      fail(fmt::format("{}: {}", where(), e.what()));
    }
    if (s != n.shape)
      fail(fmt::format("{}: recorded shape {} but the rule gives {}", where(), to_string(n.shape), to_string(s)));
    if (info.category == OpCategory::Source && n.op != Op::constant && !sources.insert(n.attrs.s("name")).second)
      fail(fmt::format("{}: a second source named '{}'", where(), n.attrs.s("name")));
    if (n.op == Op::assign) {
      auto target = g.find_source(n.attrs.s("target"));
      if (!target || (g.node(*target).op != Op::state && g.node(*target).op != Op::parameter))
        fail(fmt::format("{}: target '{}' is not a parameter or state", where(), n.attrs.s("target")));
      if (g.node(*target).shape != n.shape)
        fail(fmt::format("{}: writes {} into '{}' of shape {}", where(), to_string(n.shape), n.attrs.s("target"),
                         to_string(g.node(*target).shape)));
    }
  }
  for (const auto& [name, id] : g.outputs())
    if (id < 0 || static_cast<size_t>(id) >= g.size() || g.node(id).op == Op::assign)
      fail(fmt::format("output '{}' refers to no value", name));
}

}  // namespace dagger
