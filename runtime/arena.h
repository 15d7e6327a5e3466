#pragma once
/// Buffer placement for a compiled plan: every value the plan computes gets an offset in one
/// arena, and two values share memory only when their lifetimes do not overlap. Plain
/// arithmetic, no allocation of the arena itself.
#include <cstdint>
#include <vector>

namespace dagger {

/// A value's size and the steps between which it must survive: written by step `first`,
/// last read by step `last` (inclusive).
struct BufferUse {
  int64_t floats = 0;
  int first = 0, last = 0;
};

struct ArenaPlan {
  std::vector<int64_t> offsets;  // per use, in floats, each a multiple of kArenaAlignFloats
  int64_t floats = 0;            // the arena's size
};

/// Offsets are kept to 64-byte boundaries, a cache line and an AVX-512 vector.
inline constexpr int64_t kArenaAlignFloats = 16;

/// Places the largest buffers first, each at the lowest offset where it overlaps no placed
/// buffer that is alive at the same time (first fit). Deterministic for given uses.
ArenaPlan plan_arena(const std::vector<BufferUse>& uses);

}  // namespace dagger
