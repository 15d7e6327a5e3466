#include "dagger/graph/dsl.h"

#include <fmt/format.h>

#include <cassert>

namespace dagger {

namespace {

Value make(Graph* g, Op op, std::vector<NodeId> operands, Attrs attrs, Where w) {
  return {g, g->add(op, std::move(operands), std::move(attrs), w)};
}

Value unary(Op op, Value a, Where w, Attrs attrs = {}) { return make(a.graph, op, {a.id}, std::move(attrs), w); }

Value binary(Op op, Value a, Value b, Where w) {
  if (a.graph != b.graph) throw Error(fmt::format("{}: operands of {} belong to different graphs", describe(w), op_info(op).name));
  return make(a.graph, op, {a.id, b.id}, {}, w);
}

}  // namespace

Value add(Value a, Value b, Where w) { return binary(Op::add, a, b, w); }
Value sub(Value a, Value b, Where w) { return binary(Op::sub, a, b, w); }
Value mul(Value a, Value b, Where w) { return binary(Op::mul, a, b, w); }
Value div(Value a, Value b, Where w) { return binary(Op::div, a, b, w); }
Value neg(Value a, Where w) { return unary(Op::neg, a, w); }
Value exp(Value a, Where w) { return unary(Op::exp, a, w); }
Value log(Value a, Where w) { return unary(Op::log, a, w); }
Value sqrt(Value a, Where w) { return unary(Op::sqrt, a, w); }
Value relu(Value a, Where w) { return unary(Op::relu, a, w); }
Value tanh(Value a, Where w) { return unary(Op::tanh, a, w); }
Value sigmoid(Value a, Where w) { return unary(Op::sigmoid, a, w); }
Value elu(Value a, float alpha, Where w) { return unary(Op::elu, a, w, {{"alpha", double(alpha)}}); }
Value selu(Value a, Where w) { return unary(Op::selu, a, w); }
Value leaky_relu(Value a, float alpha, Where w) { return unary(Op::leaky_relu, a, w, {{"alpha", double(alpha)}}); }
Value reshape(Value a, Shape shape, Where w) { return unary(Op::reshape, a, w, {{"shape", shape}}); }
Value flatten(Value a, Where w) {
  if (a.shape().empty()) throw Error(fmt::format("{}: flatten needs a batch axis, got a scalar", describe(w)));
  return reshape(a, {a.shape()[0], -1}, w);
}
Value transpose(Value a, std::vector<int64_t> perm, Where w) { return unary(Op::transpose, a, w, {{"perm", perm}}); }
Value reduce_sum(Value a, std::vector<int64_t> axes, bool keepdims, Where w) {
  return unary(Op::reduce_sum, a, w, {{"axes", axes}, {"keepdims", int64_t(keepdims)}});
}
Value reduce_mean(Value a, std::vector<int64_t> axes, bool keepdims, Where w) {
  return unary(Op::reduce_mean, a, w, {{"axes", axes}, {"keepdims", int64_t(keepdims)}});
}
Value reduce_max(Value a, std::vector<int64_t> axes, bool keepdims, Where w) {
  return unary(Op::reduce_max, a, w, {{"axes", axes}, {"keepdims", int64_t(keepdims)}});
}
Value matmul(Value a, Value b, bool trans_a, bool trans_b, Where w) {
  if (a.graph != b.graph) throw Error(fmt::format("{}: operands of matmul belong to different graphs", describe(w)));
  return make(a.graph, Op::matmul, {a.id, b.id}, {{"trans_a", int64_t(trans_a)}, {"trans_b", int64_t(trans_b)}}, w);
}
Value maxpool(Value a, int window, int stride, Where w) {
  return unary(Op::maxpool2d, a, w, {{"window", int64_t(window)}, {"stride", int64_t(stride ? stride : window)}});
}
Value softmax(Value a, Where w) { return unary(Op::softmax, a, w); }
Value scalar(Value like, double value, Where w) {
  return make(like.graph, Op::constant, {}, {{"value", value}, {"shape", Shape{}}}, w);
}

Value activation(Value a, Act act, Where w) {
  switch (act) {
    case Act::relu: return relu(a, w);
    case Act::tanh: return tanh(a, w);
    case Act::sigmoid: return sigmoid(a, w);
    case Act::elu: return elu(a, 1.0f, w);
    case Act::selu: return selu(a, w);
    case Act::leaky_relu: return leaky_relu(a, 0.3f, w);
  }
  throw Error("unknown activation");
}

static const std::vector<std::pair<std::string, Act>>& act_names() {
  static const std::vector<std::pair<std::string, Act>> names = {{"relu", Act::relu}, {"tanh", Act::tanh},
                                                                 {"sigmoid", Act::sigmoid}, {"elu", Act::elu},
                                                                 {"selu", Act::selu}, {"leaky_relu", Act::leaky_relu}};
  return names;
}

Act act_from_name(const std::string& name) {
  std::vector<std::string> valid;
  for (const auto& [n, a] : act_names()) {
    if (n == name) return a;
    valid.push_back(n);
  }
  throw Error(fmt::format("unknown activation '{}' (valid: {})", name, fmt::join(valid, ", ")));
}

std::string act_name(Act act) {
  for (const auto& [n, a] : act_names())
    if (a == act) return n;
  return "?";
}

Model::Model(Graph& g, Mode mode, int64_t classes) : g_(&g), mode_(mode), classes_(classes) {}

std::string Model::layer_name(const std::string& kind) { return fmt::format("{}{}", kind, ++counters_[kind]); }

Value Model::input(const std::string& name, Shape shape, Where w) {
  return make(g_, Op::input, {}, {{"name", name}, {"shape", shape}}, w);
}

Value Model::parameter(const std::string& name, Shape shape, const std::string& init, int64_t fan_in,
                       int64_t fan_out, Where w) {
  return make(g_, Op::parameter, {},
              {{"name", name}, {"shape", shape}, {"init", init}, {"fan_in", fan_in}, {"fan_out", fan_out}}, w);
}

Value Model::state(const std::string& name, Shape shape, const std::string& init, Where w) {
  return make(g_, Op::state, {}, {{"name", name}, {"shape", shape}, {"init", init}}, w);
}

namespace {
/// Restores the graph's scope when a layer is done.
struct ScopeGuard {
  Graph& g;
  std::string saved;
  ScopeGuard(Graph& graph, std::string scope) : g(graph), saved(graph.scope()) { g.set_scope(std::move(scope)); }
  ~ScopeGuard() { g.set_scope(saved); }
};
}  // namespace

Value Model::dense(Value x, int64_t units, Where w) {
  if (x.shape().size() != 2)
    throw Error(fmt::format("{}: dense expects [batch, features], got {} (flatten first)", describe(w), to_string(x.shape())));
  std::string name = layer_name("dense");
  ScopeGuard scope(*g_, name);
  int64_t k = x.shape()[1];
  Value weight = parameter(name + ".w", {k, units}, "glorot_uniform", k, units, w);
  Value bias = parameter(name + ".b", {units}, "zeros", 0, 0, w);
  return add(matmul(x, weight, false, false, w), bias, w);
}

Value Model::conv2d(Value x, int64_t filters, int64_t kernel, Pad pad, int64_t stride, Where w) {
  if (x.shape().size() != 4)
    throw Error(fmt::format("{}: conv2d expects NCHW input, got {}", describe(w), to_string(x.shape())));
  if (pad == Pad::same && (kernel % 2 == 0 || stride != 1))
    throw Error(fmt::format("{}: 'same' padding needs an odd kernel and stride 1", describe(w)));
  std::string name = layer_name("conv");
  ScopeGuard scope(*g_, name);
  int64_t c = x.shape()[1];
  int64_t fan_in = c * kernel * kernel;
  Value weight = parameter(name + ".w", {filters, c, kernel, kernel}, "he_uniform", fan_in, filters * kernel * kernel, w);
  Value bias = parameter(name + ".b", {filters}, "zeros", 0, 0, w);
  int64_t padding = pad == Pad::same ? kernel / 2 : 0;
  Value y = make(g_, Op::conv2d, {x.id, weight.id}, {{"stride", stride}, {"pad", padding}}, w);
  return add(y, reshape(bias, {filters, 1, 1}, w), w);
}

Value Model::batchnorm(Value x, float momentum, float eps, Where w) {
  if (x.shape().size() < 2)
    throw Error(fmt::format("{}: batchnorm needs [batch, channels, ...], got {}", describe(w), to_string(x.shape())));
  std::string name = layer_name("bn");
  ScopeGuard scope(*g_, name);
  Shape c = {x.shape()[1]};
  Value gamma = parameter(name + ".gamma", c, "ones", 0, 0, w);
  Value beta = parameter(name + ".beta", c, "zeros", 0, 0, w);
  Value mean = state(name + ".running_mean", c, "zeros", w);
  Value var = state(name + ".running_var", c, "ones", w);
  Attrs eps_attr{{"eps", double(eps)}};
  if (mode_ == Mode::eval) return make(g_, Op::batchnorm_infer, {x.id, gamma.id, beta.id, mean.id, var.id}, eps_attr, w);

  Value keep = scalar(x, momentum, w), take = scalar(x, 1.0 - momentum, w);
  // Both statistics before either's reader: one kernel then computes the two in one read of x
  // (codegen/fusion.cpp, sibling statistics).
  Value batch_mean = make(g_, Op::channel_mean, {x.id}, {}, w);
  Value batch_var = make(g_, Op::channel_var, {x.id}, {}, w);
  auto running = [&](Value old, Value batch) { return add(mul(old, keep, w), mul(batch, take, w), w); };
  make(g_, Op::assign, {running(mean, batch_mean).id}, {{"target", name + ".running_mean"}}, w);
  make(g_, Op::assign, {running(var, batch_var).id}, {{"target", name + ".running_var"}}, w);
  return make(g_, Op::batchnorm_train, {x.id, gamma.id, beta.id}, eps_attr, w);
}

Value Model::dropout(Value x, float p, Where w) {
  if (p < 0 || p >= 1) throw Error(fmt::format("{}: dropout rate {} is outside [0, 1)", describe(w), p));
  if (mode_ == Mode::eval || p == 0) return x;
  ScopeGuard scope(*g_, layer_name("dropout"));
  auto key = g_->find_source(kDropoutKey);
  Value k = key ? Value{g_, *key} : input(kDropoutKey, {}, w);
  Attrs attrs{{"p", double(p)}, {"salt", ++dropout_salt_}};
  // Absent when 0, so a one-process graph is what it was before shards existed.
  if (shard_first_ > 0) {
    const int64_t elements = numel(x.shape());
    if (elements % shard_batch_ != 0)
      throw Error(fmt::format("{}: dropout of {} in a shard of {} examples: the elements do not divide by the batch",
                              describe(w), to_string(x.shape()), shard_batch_));
    attrs.set("offset", shard_first_ * (elements / shard_batch_));
  }
  return make(g_, Op::dropout, {x.id, k.id}, std::move(attrs), w);
}

void Model::shard_of_batch(int64_t first, int64_t batch) {
  assert(first >= 0 && batch >= 1);
  shard_first_ = first;
  shard_batch_ = batch;
}

}  // namespace dagger
