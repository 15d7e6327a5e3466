#pragma once
/// Reading a reduction's axes the one way every pass compares them.
#include <cstdint>
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger {

/// The axes a reduction node (its "axes" attribute) sums or folds, as sorted indices into its
/// operand's shape, negative ones counted from the end.
std::vector<int64_t> reduced_axes(const Graph& g, const Node& reduction);

}  // namespace dagger
