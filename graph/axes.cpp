#include "dagger/graph/axes.h"

#include <algorithm>

namespace dagger {

std::vector<int64_t> reduced_axes(const Graph& g, const Node& reduction) {
  const auto rank = static_cast<int64_t>(g.shape(reduction.operands[0]).size());
  std::vector<int64_t> axes;
  for (int64_t a : reduction.attrs.ints("axes")) axes.push_back(a < 0 ? a + rank : a);
  std::sort(axes.begin(), axes.end());
  return axes;
}

}  // namespace dagger
