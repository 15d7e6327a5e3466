#include "dagger/codegen/iteration.h"

#include <cassert>

namespace dagger {

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

std::vector<int64_t> broadcast_strides(const Shape& operand, const Shape& out) {
  assert(operand.size() <= out.size());
  const std::vector<int64_t> own = contiguous_strides(operand);
  std::vector<int64_t> strides(out.size(), 0);
  const size_t lead = out.size() - operand.size();
  for (size_t d = 0; d < operand.size(); ++d)
    if (operand[d] != 1) strides[lead + d] = own[d];
  return strides;
}

IterationSpace collapse(const Shape& out, const std::vector<Shape>& operands) {
  std::vector<std::vector<int64_t>> full;
  for (const Shape& s : operands) full.push_back(broadcast_strides(s, out));

  IterationSpace space;
  space.strides.resize(operands.size());
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;  // a single position: contributes nothing to any offset
    // Axis d continues the previous kept axis when, for every operand, one step along the
    // previous axis equals a whole run along d.
    bool merges = !space.dims.empty();
    for (size_t k = 0; k < operands.size() && merges; ++k) merges = space.strides[k].back() == full[k][d] * out[d];
    if (merges) {
      space.dims.back() *= out[d];
      for (size_t k = 0; k < operands.size(); ++k) space.strides[k].back() = full[k][d];
    } else {
      space.dims.push_back(out[d]);
      for (size_t k = 0; k < operands.size(); ++k) space.strides[k].push_back(full[k][d]);
    }
  }
  if (space.dims.empty()) {
    space.dims = {1};
    for (auto& s : space.strides) s = {0};
  }
  return space;
}

}  // namespace dagger
