#pragma once
/// How a fused kernel walks its output: the output shape with every operand's element strides
/// under NumPy broadcasting, simplified so that loops are as few and as long as possible.
/// Plain arithmetic on shapes, no LLVM.
#include <cstdint>
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger {

/// Row-major element strides of a contiguous tensor of `shape`.
std::vector<int64_t> contiguous_strides(const Shape& shape);

/// The element strides of an operand of shape `operand` read at each position of `out`
/// (right-aligned NumPy broadcasting): 0 along the axes the operand repeats over.
std::vector<int64_t> broadcast_strides(const Shape& operand, const Shape& out);

/// An iteration space: `dims` (row-major, never empty) and, for each operand, its strides.
struct IterationSpace {
  Shape dims;
  std::vector<std::vector<int64_t>> strides;
};

/// The iteration space of `out` read by `operands` (each broadcastable to `out`): size-1
/// axes are dropped and neighbouring axes merged wherever every operand walks them as one
/// (both contiguous or both repeated). [N,C,H,W] + [C,1,1] becomes [N, C, H*W]; a same-shape
/// chain becomes one flat axis; a scalar output becomes [1]. The innermost stride of every
/// operand is 0 or 1, so the innermost axis is loaded as vectors or as one broadcast scalar.
IterationSpace collapse(const Shape& out, const std::vector<Shape>& operands);

}  // namespace dagger
