#include "codegen/fallback.h"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/interpreter.h"

namespace dagger {

namespace {

std::string operand_name(size_t k) { return fmt::format("operand{}", k); }

}  // namespace

Tensor tensor_from(const float* data, const Shape& shape) {
  Tensor t = Tensor::from_shape(std::vector<size_t>(shape.begin(), shape.end()));
  std::copy(data, data + t.size(), t.data());
  return t;
}

FallbackNode::FallbackNode(const Graph& g, NodeId id) : id_(id) {
  const Node& n = g.node(id);
  std::vector<NodeId> operands;
  for (size_t k = 0; k < n.operands.size(); ++k) {
    operand_shapes_.push_back(g.shape(n.operands[k]));
    operands.push_back(
        single_.add(Op::input, {}, {{"name", operand_name(k)}, {"shape", operand_shapes_.back()}}, n.where));
  }
  single_.set_scope(n.scope);
  single_.set_output("value", single_.add(n.op, operands, n.attrs, n.where));
}

Tensor FallbackNode::run(const std::vector<const float*>& operands) const {
  std::map<std::string, Tensor> feeds, no_state;
  for (size_t k = 0; k < operands.size(); ++k) feeds[operand_name(k)] = tensor_from(operands[k], operand_shapes_[k]);
  try {
    return std::move(interpret<float>(single_, feeds, no_state).at("value"));
  } catch (const Error& e) {
    throw Error(fmt::format("%{} (run by the interpreter): {}", id_, e.what()));
  }
}

}  // namespace dagger
