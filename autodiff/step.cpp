#include "dagger/autodiff/step.h"

#include <fmt/format.h>

#include <map>

#include "dagger/autodiff/grad.h"
#include "dagger/graph/axes.h"

namespace dagger {

namespace {

/// A copy of `g` in which each channel_mean or channel_var is computed once per x (the running
/// averages', which Model::batchnorm makes first, serve the gradient's too), and every
/// batchnorm_train whose x has both is a batchnorm_infer on them: the batch statistics are then
/// computed once per step, not once for the running averages and again inside the
/// normalization and its gradient. Run after grad(), whose rule needs batchnorm_train itself.
/// Likewise a reduce_sum of an operand over axes another reduce_sum of it already sums is a
/// reshape of that one: where a residual add feeds a batch norm and a convolution's bias (a
/// projection skip), dbeta and the bias's gradient are the same sum of dy. The kernel of a sum
/// does not depend on keepdims, so the bits stay the same.
Graph share_batch_statistics(const Graph& g) {
  Graph out;
  std::vector<NodeId> copy(g.size());
  std::map<std::pair<NodeId, Op>, NodeId> statistic;               // (copied x, channel_mean or channel_var) -> copy
  std::map<std::pair<NodeId, std::vector<int64_t>>, NodeId> sums;  // (copied operand, axes) -> reduce_sum
  for (const Node& n : g.nodes()) {
    std::vector<NodeId> operands;
    for (NodeId o : n.operands) operands.push_back(copy[static_cast<size_t>(o)]);
    Op op = n.op;
    out.set_scope(n.scope);
    if (op == Op::reduce_sum) {
      const auto same = sums.find({operands[0], reduced_axes(g, n)});
      if (same != sums.end()) {
        const NodeId sum = same->second;
        copy[static_cast<size_t>(n.id)] =
            out.shape(sum) == n.shape ? sum : out.add(Op::reshape, {sum}, {{"shape", n.shape}}, n.where);
        continue;
      }
    }
    if (op == Op::channel_mean || op == Op::channel_var) {
      const auto same = statistic.find({operands[0], op});
      if (same != statistic.end()) {
        copy[static_cast<size_t>(n.id)] = same->second;
        continue;
      }
    }
    if (op == Op::batchnorm_train) {
      const auto mean = statistic.find({operands[0], Op::channel_mean});
      const auto var = statistic.find({operands[0], Op::channel_var});
      if (mean != statistic.end() && var != statistic.end()) {
        op = Op::batchnorm_infer;
        operands.push_back(mean->second);
        operands.push_back(var->second);
      }
    }
    const NodeId id = copy[static_cast<size_t>(n.id)] = out.add(op, std::move(operands), n.attrs, n.where);
    if (op == Op::channel_mean || op == Op::channel_var) statistic.emplace(std::pair{out.node(id).operands[0], op}, id);
    if (op == Op::reduce_sum) sums.emplace(std::pair{out.node(id).operands[0], reduced_axes(g, n)}, id);
  }
  out.set_scope(g.scope());
  for (const auto& [name, id] : g.outputs()) out.set_output(name, copy[static_cast<size_t>(id)]);
  return out;
}

/// Whether `n` is a 1x1 convolution over one channel with stride 1 and no padding: each of its
/// outputs is one term, x[i, 0, h, w] * w[f, 0, 0, 0].
bool is_one_channel_projection(const Graph& g, const Node& n) {
  if (n.op != Op::conv2d) return false;
  const Shape& w = g.shape(n.operands[1]);
  return w[1] == 1 && w[2] == 1 && w[3] == 1 && n.attrs.i("stride") == 1 && n.attrs.i("pad") == 0;
}

/// A copy of `g` in which each one-channel projection (is_one_channel_projection) is the product
/// of x [N, 1, H, W] and its filters [F, 1, 1] broadcast to [N, F, H, W], the same value (but a
/// zero product's sign, which a sum from zero drops). As an elementwise node it joins its
/// reader's kernel, so its output, as large as the layer's activations, is neither stored nor
/// read back (rescnn's first block projects the one-channel image this way). Run after grad(),
/// so that the filter's gradient keeps the convolution's rule.
Graph one_channel_projections_as_products(const Graph& g) {
  Graph out;
  std::vector<NodeId> copy(g.size());
  for (const Node& n : g.nodes()) {
    std::vector<NodeId> operands;
    for (NodeId o : n.operands) operands.push_back(copy[static_cast<size_t>(o)]);
    out.set_scope(n.scope);
    if (is_one_channel_projection(g, n)) {
      const Shape filters = {g.shape(n.operands[1])[0], 1, 1};
      operands[1] = out.add(Op::reshape, {operands[1]}, {{"shape", filters}}, n.where);
      copy[static_cast<size_t>(n.id)] = out.add(Op::mul, std::move(operands), {}, n.where);
      continue;
    }
    copy[static_cast<size_t>(n.id)] = out.add(n.op, std::move(operands), n.attrs, n.where);
  }
  out.set_scope(g.scope());
  for (const auto& [name, id] : g.outputs()) out.set_output(name, copy[static_cast<size_t>(id)]);
  return out;
}

/// build_forward of a batch that starts at example `first_example` of a larger batch.
Graph build_forward_of_shard(const ModelFn& model, int64_t batch, int64_t first_example, Mode mode,
                             const Shape& input_shape, int64_t classes, double label_smoothing) {
  if (batch < 1) throw Error(fmt::format("batch size must be at least 1, got {}", batch));
  // Also catches a label smoothing passed where the class count goes (0.1 would become 0 classes).
  if (classes < 1) throw Error(fmt::format("the number of classes must be at least 1, got {}", classes));
  Graph g;
  Model m(g, mode, classes);
  m.shard_of_batch(first_example, batch);
  Shape x_shape = {batch};
  x_shape.insert(x_shape.end(), input_shape.begin(), input_shape.end());
  Value logits = model(m, m.input("x", x_shape));
  if (logits.graph != &g) throw Error("the model returned a value from another graph");
  if (logits.shape().size() != 2 || logits.shape()[0] != batch)
    throw Error(fmt::format("{}: the model must return logits [{}, classes], got {}", describe(logits.node().where),
                            batch, to_string(logits.shape())));
  g.set_scope("head");
  g.set_output("logits", logits.id);
  if (mode == Mode::train) {
    Value labels = m.input("labels", {batch});
    Attrs attrs;
    if (label_smoothing != 0) attrs.set("smoothing", label_smoothing);
    g.set_output("loss", g.add(Op::softmax_xent, {logits.id, labels.id}, std::move(attrs)));
  } else {
    g.set_output("probs", softmax(logits).id);
  }
  g.set_scope("");
  return g;
}

}  // namespace

Graph build_forward(const ModelFn& model, int64_t batch, Mode mode, const Shape& input_shape, int64_t classes,
                    double label_smoothing) {
  return build_forward_of_shard(model, batch, 0, mode, input_shape, classes, label_smoothing);
}

Graph build_inference(const ModelFn& model, int64_t batch, const Shape& input_shape, int64_t classes) {
  Graph g = one_channel_projections_as_products(build_forward(model, batch, Mode::eval, input_shape, classes));
  verify(g);
  return g;
}

Graph build_training_step(const ModelFn& model, int64_t batch, const OptimizerConfig& opt, const Shape& input_shape,
                          int64_t classes, double label_smoothing) {
  Graph g = build_forward(model, batch, Mode::train, input_shape, classes, label_smoothing);
  const std::vector<NodeId> params = g.nodes_of(Op::parameter);
  const std::vector<NodeId> grads = grad(g, *g.output("loss"), params);
  append_optimizer(g, params, grads, opt);
  g = one_channel_projections_as_products(share_batch_statistics(g));
  verify(g);
  return g;
}

Graph build_gradient_step(const ModelFn& model, int64_t batch, const Shape& input_shape, int64_t classes,
                          double label_smoothing, int64_t first_example) {
  if (first_example < 0) throw Error(fmt::format("a shard cannot start at example {}", first_example));
  Graph g = build_forward_of_shard(model, batch, first_example, Mode::train, input_shape, classes, label_smoothing);
  const std::vector<NodeId> params = g.nodes_of(Op::parameter);
  const std::vector<NodeId> grads = grad(g, *g.output("loss"), params);
  for (size_t i = 0; i < params.size(); ++i) g.set_output(gradient_name(g.node(params[i]).attrs.s("name")), grads[i]);
  g = one_channel_projections_as_products(share_batch_statistics(g));
  verify(g);
  return g;
}

Graph build_update_step(const ModelFn& model, const OptimizerConfig& opt, const Shape& input_shape, int64_t classes) {
  // The parameters as the model declares them (names, shapes, initializers, source lines); the
  // batch size of this forward graph is irrelevant, only its parameter nodes are copied.
  const Graph forward = build_forward(model, 1, Mode::train, input_shape, classes);
  Graph g;
  std::vector<NodeId> params, grads;
  for (NodeId id : forward.nodes_of(Op::parameter)) {
    const Node& p = forward.node(id);
    params.push_back(g.add(Op::parameter, {}, p.attrs, p.where));
    grads.push_back(g.add(Op::input, {}, {{"name", gradient_name(p.attrs.s("name"))}, {"shape", p.shape}}, p.where));
  }
  append_optimizer(g, params, grads, opt);
  verify(g);
  return g;
}

}  // namespace dagger
