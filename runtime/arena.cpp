#include "dagger/runtime/arena.h"

#include <algorithm>
#include <numeric>

namespace dagger {

namespace {

int64_t aligned(int64_t floats) { return (floats + kArenaAlignFloats - 1) / kArenaAlignFloats * kArenaAlignFloats; }

bool overlap_in_time(const BufferUse& a, const BufferUse& b) { return a.first <= b.last && b.first <= a.last; }

}  // namespace

ArenaPlan plan_arena(const std::vector<BufferUse>& uses) {
  ArenaPlan plan;
  plan.offsets.assign(uses.size(), 0);
  std::vector<size_t> order(uses.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return uses[a].floats > uses[b].floats; });

  std::vector<size_t> placed;
  for (size_t u : order) {
    // The intervals of memory taken by placed buffers alive at the same time, by offset.
    std::vector<std::pair<int64_t, int64_t>> taken;
    for (size_t p : placed)
      if (overlap_in_time(uses[u], uses[p])) taken.emplace_back(plan.offsets[p], plan.offsets[p] + aligned(uses[p].floats));
    std::sort(taken.begin(), taken.end());
    int64_t offset = 0;
    for (const auto& [lo, hi] : taken) {
      if (offset + aligned(uses[u].floats) <= lo) break;
      offset = std::max(offset, hi);
    }
    plan.offsets[u] = offset;
    plan.floats = std::max(plan.floats, offset + aligned(uses[u].floats));
    placed.push_back(u);
  }
  return plan;
}

}  // namespace dagger
