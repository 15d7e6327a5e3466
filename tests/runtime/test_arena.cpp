// Buffer placement by liveness: values alive at the same time never share memory, values
// that are not may, and offsets keep their alignment.
#include <catch2/catch.hpp>

#include "dagger/runtime/arena.h"

using namespace dagger;

namespace {

bool memory_overlaps(const ArenaPlan& plan, const std::vector<BufferUse>& uses, size_t a, size_t b) {
  return plan.offsets[a] < plan.offsets[b] + uses[b].floats && plan.offsets[b] < plan.offsets[a] + uses[a].floats;
}

}  // namespace

TEST_CASE("a chain of values reuses memory; values alive together never overlap", "[arena]") {
  // x0 -> x1 -> x2 -> x3: each read only by the next step, so two buffers suffice.
  const std::vector<BufferUse> chain = {{100, 0, 1}, {100, 1, 2}, {100, 2, 3}, {100, 3, 4}};
  const ArenaPlan plan = plan_arena(chain);
  CHECK(plan.floats == 2 * 112);  // 100 floats round up to 112, a multiple of 16
  CHECK(plan.offsets[0] == plan.offsets[2]);
  CHECK(plan.offsets[1] == plan.offsets[3]);
  CHECK(plan.offsets[0] != plan.offsets[1]);
}

TEST_CASE("overlapping lifetimes of mixed sizes get disjoint, aligned memory", "[arena]") {
  const std::vector<BufferUse> uses = {{7, 0, 9}, {300, 1, 3}, {50, 2, 6}, {1, 4, 4}, {300, 5, 8}, {64, 0, 2}};
  const ArenaPlan plan = plan_arena(uses);
  for (size_t a = 0; a < uses.size(); ++a) {
    CHECK(plan.offsets[a] % kArenaAlignFloats == 0);
    CHECK(plan.offsets[a] + uses[a].floats <= plan.floats);
    for (size_t b = a + 1; b < uses.size(); ++b) {
      const bool together = uses[a].first <= uses[b].last && uses[b].first <= uses[a].last;
      if (together) CHECK_FALSE(memory_overlaps(plan, uses, a, b));
    }
  }
  // The two 300-float buffers never live together, so they share one place.
  CHECK(plan.offsets[1] == plan.offsets[4]);
  int64_t sum = 0;
  for (const BufferUse& u : uses) sum += (u.floats + 15) / 16 * 16;
  CHECK(plan.floats < sum);
}
