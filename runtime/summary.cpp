#include "dagger/runtime/summary.h"

#include <fmt/format.h>

#include "dagger/graph/cost.h"

namespace dagger {

namespace {

/// The row a node belongs to: its scope, or its op for an unscoped node.
std::string row_name(const Node& n) { return n.scope.empty() ? std::string(op_info(n.op).name) : n.scope; }

bool is_value(const Node& n) {
  const OpCategory c = op_info(n.op).category;
  return c != OpCategory::Source && c != OpCategory::Sink;
}

void add_node(LayerSummary& row, const Graph& g, const Node& n) {
  if (n.op == Op::parameter) row.parameters += numel(n.shape);
  if (n.op == Op::state) row.state += numel(n.shape);
  if (!is_value(n)) return;
  const std::string name(op_info(n.op).name);
  if (row.ops.empty())
    row.ops = name;
  else if (row.ops.find(name) == std::string::npos)
    row.ops += "+" + name;
  row.output = n.shape;
  row.flops += node_flops(g, n.id);
}

std::string shape_with_batch(const Shape& s) {
  if (s.empty()) return "[]";
  std::string text = "[N";
  for (size_t i = 1; i < s.size(); ++i) text += fmt::format(",{}", s[i]);
  return text + "]";
}

}  // namespace

ModelSummary summarize(const ModelFn& model, const Shape& input_shape, int64_t classes) {
  const Graph g = build_forward(model, 1, Mode::eval, input_shape, classes);
  ModelSummary summary;
  summary.input = input_shape;
  for (const Node& n : g.nodes()) {
    if (n.op == Op::input) continue;  // the images and the dropout key are not layers
    const bool unscoped_op = n.scope.empty() && is_value(n);
    if (summary.layers.empty() || unscoped_op || summary.layers.back().name != row_name(n))
      summary.layers.emplace_back().name = row_name(n);
    add_node(summary.layers.back(), g, n);
  }
  for (const LayerSummary& row : summary.layers) {
    summary.parameters += row.parameters;
    summary.state += row.state;
    summary.flops += row.flops;
  }
  return summary;
}

std::string format_summary(const ModelSummary& s) {
  std::string text = fmt::format("{:<14} {:<30} {:<18} {:>12} {:>14}\n", "layer", "ops", "output", "parameters",
                                 "FLOPs/example");
  Shape one_example = {1};
  one_example.insert(one_example.end(), s.input.begin(), s.input.end());
  text += fmt::format("{:<14} {:<30} {:<18}\n", "input", "", shape_with_batch(one_example));
  for (const LayerSummary& row : s.layers)
    text += fmt::format("{:<14} {:<30} {:<18} {:>12} {:>14.0f}\n", row.name, row.ops, shape_with_batch(row.output),
                        row.parameters, row.flops);
  text += fmt::format("total: {} trainable parameters, {} non-trainable state values, {:.3g} FLOPs per example "
                      "(inference)\n",
                      s.parameters, s.state, s.flops);
  return text;
}

}  // namespace dagger
