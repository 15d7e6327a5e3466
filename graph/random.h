#pragma once
/// Counter-based randomness for dropout. A mask element is a pure function of (key, salt,
/// index), so the interpreter, the JIT and the backward pass all draw the same mask without
/// sharing any generator state: the key changes per step, the salt per dropout layer, and
/// the index is the element's flat row-major position plus the node's "offset" attribute
/// (absent: 0), so a shard of a batch draws the elements of the whole batch's mask.
#include <cstdint>

#include "dagger/graph/graph.h"

namespace dagger {

/// A dropout node's index offset, its attribute "offset" (absent when 0): the position of its
/// first element in the tensor whose mask it draws a part of.
inline int64_t dropout_offset(const Attrs& attrs) { return attrs.i_or("offset", 0); }

namespace random_detail {

/// One bijective avalanche round (xorshift-multiply, in the style of the murmur3 and
/// splitmix finalizers): every input bit flips about half the output bits.
inline uint32_t avalanche(uint32_t h, uint32_t multiplier) {
  h ^= h >> 16;
  h *= multiplier;
  h ^= h >> 15;
  h *= 0x2C1B3C6Du;
  h ^= h >> 16;
  return h;
}

}  // namespace random_detail

/// A well-mixed 32-bit hash of (key, salt, index). Each stage is a bijection of the running
/// value, so for a fixed key and salt distinct indices never collide. Only multiplies, adds,
/// xors and shifts, so code generators can emit it as straight-line integer code.
inline uint32_t dropout_hash(uint32_t key, uint32_t salt, uint32_t index) {
  uint32_t h = random_detail::avalanche(key ^ 0x9E3779B9u, 0x85EBCA6Bu);
  h = random_detail::avalanche(h + salt * 0x27D4EB2Fu, 0xC2B2AE35u);
  return random_detail::avalanche(h ^ (index * 0x165667B1u), 0x7FEB352Du);
}

/// Whether dropout with rate `p` keeps the element: the top 24 hash bits form a uniform
/// number in [0, 1) that a float holds exactly, so every backend decides identically.
inline bool dropout_keeps(uint32_t key, uint32_t salt, uint32_t index, float p) {
  const float u = static_cast<float>(dropout_hash(key, salt, index) >> 8) * 0x1p-24f;
  return u >= p;
}

}  // namespace dagger
