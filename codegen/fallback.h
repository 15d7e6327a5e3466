#pragma once
/// Ops without a compiled kernel yet run on the reference interpreter, one node at a time:
/// the node is copied into a graph of its own whose inputs stand for its operands.
#include <vector>

#include "graph/graph.h"
#include "runtime/tensor.h"

namespace dagger {

class FallbackNode {
 public:
  FallbackNode(const Graph& g, NodeId id);
  /// The node's value given its operands' data (contiguous, of the operands' shapes). Errors
  /// from the interpreter are rethrown naming the node of the original graph.
  Tensor run(const std::vector<const float*>& operands) const;

 private:
  NodeId id_;
  Graph single_;
  std::vector<Shape> operand_shapes_;
};

/// A contiguous copy of `count` floats at `data` shaped `shape`.
Tensor tensor_from(const float* data, const Shape& shape);

}  // namespace dagger
