#include "dagger/autodiff/step.h"

#include <fmt/format.h>

#include "dagger/autodiff/grad.h"

namespace dagger {

namespace {

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

Graph build_training_step(const ModelFn& model, int64_t batch, const OptimizerConfig& opt, const Shape& input_shape,
                          int64_t classes, double label_smoothing) {
  Graph g = build_forward(model, batch, Mode::train, input_shape, classes, label_smoothing);
  const std::vector<NodeId> params = g.nodes_of(Op::parameter);
  const std::vector<NodeId> grads = grad(g, *g.output("loss"), params);
  append_optimizer(g, params, grads, opt);
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
