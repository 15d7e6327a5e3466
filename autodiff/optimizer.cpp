#include "dagger/autodiff/optimizer.h"

#include <fmt/format.h>

#include <source_location>
#include <utility>

namespace dagger {

namespace {

const std::vector<std::pair<std::string, OptimizerConfig::Kind>>& kind_names() {
  static const std::vector<std::pair<std::string, OptimizerConfig::Kind>> names = {
      {"sgd", OptimizerConfig::Kind::sgd}, {"momentum", OptimizerConfig::Kind::momentum},
      {"adam", OptimizerConfig::Kind::adam}, {"adamw", OptimizerConfig::Kind::adamw}};
  return names;
}

/// Adds nodes at one source line (a parameter's declaration, or this file for shared ones).
class Builder {
 public:
  Builder(Graph& g, std::source_location where) : g_(g), where_(where) {}

  NodeId op(Op op, std::vector<NodeId> operands, Attrs attrs = {}) {
    return g_.add(op, std::move(operands), std::move(attrs), where_);
  }
  NodeId add(NodeId a, NodeId b) { return op(Op::add, {a, b}); }
  NodeId sub(NodeId a, NodeId b) { return op(Op::sub, {a, b}); }
  NodeId mul(NodeId a, NodeId b) { return op(Op::mul, {a, b}); }
  NodeId div(NodeId a, NodeId b) { return op(Op::div, {a, b}); }
  NodeId constant(double v) { return op(Op::constant, {}, {{"value", v}, {"shape", Shape{}}}); }
  /// A zero-initialized state, reused when the graph already has it (same shape required).
  NodeId state(const std::string& name, const Shape& shape) {
    if (auto id = g_.find_source(name)) {
      if (g_.node(*id).op != Op::state || g_.shape(*id) != shape)
        throw Error(fmt::format("optimizer state '{}' {} clashes with an existing {} of shape {}", name,
                                to_string(shape), op_info(g_.node(*id).op).name, to_string(g_.shape(*id))));
      return *id;
    }
    return op(Op::state, {}, {{"name", name}, {"shape", shape}, {"init", std::string("zeros")}});
  }
  void assign(NodeId value, const std::string& target) { op(Op::assign, {value}, {{"target", target}}); }

 private:
  Graph& g_;
  std::source_location where_;
};

/// Values every parameter's update shares: lr and, for Adam, the betas and the bias corrections
/// folded into two scalars. 1 - beta is computed in the graph from the same (float-rounded) beta
/// node, so the moments' weights and their bias corrections agree for a constant gradient.
struct Shared {
  NodeId lr = -1;
  NodeId beta1 = -1, beta2 = -1;
  NodeId rest1 = -1, rest2 = -1;  ///< 1 - beta1, 1 - beta2
  NodeId step_size = -1;          ///< lr / (1 - beta1^t)
  NodeId root_scale = -1;         ///< 1 / sqrt(1 - beta2^t)
};

NodeId learning_rate(Graph& g, Builder& b) {
  if (auto id = g.find_source(kLearningRateInput)) {
    if (g.node(*id).op != Op::input || !g.shape(*id).empty())
      throw Error(fmt::format("'{}' must be a scalar input to serve as the learning rate", kLearningRateInput));
    return *id;
  }
  return b.op(Op::input, {}, {{"name", std::string(kLearningRateInput)}, {"shape", Shape{}}});
}

/// The step counter, its increment, and Adam's bias corrections for t = step + 1.
Shared shared_nodes(Graph& g, const OptimizerConfig& cfg) {
  Builder b(g, std::source_location::current());
  Shared s;
  s.lr = learning_rate(g, b);
  NodeId step = b.state(kStepState, {});
  NodeId t = b.add(step, b.constant(1));
  b.assign(t, kStepState);
  if (cfg.kind == OptimizerConfig::Kind::adam || cfg.kind == OptimizerConfig::Kind::adamw) {
    s.beta1 = b.constant(cfg.beta1);
    s.beta2 = b.constant(cfg.beta2);
    s.rest1 = b.sub(b.constant(1), s.beta1);
    s.rest2 = b.sub(b.constant(1), s.beta2);
    NodeId correction1 = b.sub(b.constant(1), b.op(Op::pow, {s.beta1, t}));
    NodeId correction2 = b.sub(b.constant(1), b.op(Op::pow, {s.beta2, t}));
    s.step_size = b.div(s.lr, correction1);
    s.root_scale = b.div(b.constant(1), b.op(Op::sqrt, {correction2}));
  }
  return s;
}

/// p - lr g.
NodeId sgd_update(Builder& b, NodeId p, NodeId g, const Shared& s) { return b.sub(p, b.mul(s.lr, g)); }

/// v = mu v - lr g; p + v, or with Nesterov p + mu v - lr g (the gradient step taken from the look-ahead).
NodeId momentum_update(Builder& b, const std::string& name, const Shape& shape, NodeId p, NodeId g, const Shared& s,
                       const OptimizerConfig& cfg) {
  const std::string slot = "momentum.v." + name;
  NodeId mu = b.constant(cfg.momentum);
  NodeId step = b.mul(s.lr, g);
  NodeId v = b.sub(b.mul(mu, b.state(slot, shape)), step);
  b.assign(v, slot);
  return cfg.nesterov ? b.sub(b.add(p, b.mul(mu, v)), step) : b.add(p, v);
}

/// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p - (lr / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps),
/// for AdamW minus lr wd p as well. This is the textbook lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
/// with the bias corrections moved into two per-step scalars, so each element costs one division and
/// one square root instead of three divisions and a square root; the float results differ in the
/// last bits. eps keeps its meaning: it is added to the bias-corrected sqrt(v), outside the root.
NodeId adam_update(Builder& b, const std::string& name, const Shape& shape, NodeId p, NodeId g, const Shared& s,
                   const OptimizerConfig& cfg) {
  auto moment = [&](const std::string& slot, NodeId beta, NodeId rest, NodeId value) {
    NodeId next = b.add(b.mul(beta, b.state(slot, shape)), b.mul(rest, value));
    b.assign(next, slot);
    return next;
  };
  NodeId m = moment("adam.m." + name, s.beta1, s.rest1, g);
  NodeId v = moment("adam.v." + name, s.beta2, s.rest2, b.mul(g, g));
  NodeId denom = b.add(b.mul(b.op(Op::sqrt, {v}), s.root_scale), b.constant(cfg.eps));
  NodeId step = b.div(b.mul(s.step_size, m), denom);
  // AdamW: the decay joins the step, not the gradient, so the moments never see it.
  if (cfg.kind == OptimizerConfig::Kind::adamw && cfg.weight_decay != 0)
    step = b.add(step, b.mul(s.lr, b.mul(b.constant(cfg.weight_decay), p)));
  return b.sub(p, step);
}

void check_inputs(const Graph& g, const std::vector<NodeId>& params, const std::vector<NodeId>& grads) {
  if (params.size() != grads.size())
    throw Error(fmt::format("append_optimizer: {} parameters but {} gradients", params.size(), grads.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const Node& p = g.node(params[i]);
    if (p.op != Op::parameter)
      throw Error(fmt::format("append_optimizer: %{} is a {}, not a parameter", p.id, op_info(p.op).name));
    if (g.shape(grads[i]) != p.shape)
      throw Error(fmt::format("append_optimizer: gradient %{} of '{}' has shape {}, the parameter {}", grads[i],
                              p.attrs.s("name"), to_string(g.shape(grads[i])), to_string(p.shape)));
  }
}

}  // namespace

OptimizerConfig::Kind optimizer_kind(const std::string& name) {
  std::vector<std::string> valid;
  for (const auto& [n, k] : kind_names()) {
    if (n == name) return k;
    valid.push_back(n);
  }
  throw Error(fmt::format("unknown optimizer '{}' (valid: {})", name, fmt::join(valid, ", ")));
}

std::string optimizer_name(OptimizerConfig::Kind kind) {
  for (const auto& [n, k] : kind_names())
    if (k == kind) return n;
  return "?";
}

void append_optimizer(Graph& g, const std::vector<NodeId>& params, const std::vector<NodeId>& grads,
                      const OptimizerConfig& cfg) {
  check_inputs(g, params, grads);
  struct ScopeRestore {
    Graph& g;
    std::string saved;
    ~ScopeRestore() { g.set_scope(saved); }
  } restore{g, g.scope()};
  g.set_scope("optimizer");
  const Shared shared = shared_nodes(g, cfg);
  for (size_t i = 0; i < params.size(); ++i) {
    const Node p = g.node(params[i]);
    const std::string& name = p.attrs.s("name");
    Builder b(g, p.where);
    NodeId grad = grads[i];
    if (cfg.weight_decay != 0 && cfg.kind != OptimizerConfig::Kind::adamw)
      grad = b.add(grad, b.mul(b.constant(cfg.weight_decay), p.id));  // d(wd/2 |p|^2)/dp
    NodeId next = -1;
    switch (cfg.kind) {
      case OptimizerConfig::Kind::sgd: next = sgd_update(b, p.id, grad, shared); break;
      case OptimizerConfig::Kind::momentum: next = momentum_update(b, name, p.shape, p.id, grad, shared, cfg); break;
      case OptimizerConfig::Kind::adam:
      case OptimizerConfig::Kind::adamw: next = adam_update(b, name, p.shape, p.id, grad, shared, cfg); break;
    }
    b.assign(next, name);
  }
}

}  // namespace dagger
