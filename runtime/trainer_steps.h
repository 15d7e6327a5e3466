#pragma once
/// The feeds of a training step that both the one-process and the data-parallel loops build.
#include <cstdint>

#include "dagger/runtime/tensor.h"

namespace dagger {

/// A fresh dropout key per step, below 2^24 so a float holds it exactly.
float dropout_key(uint64_t seed, int64_t step);

/// A rank-0 tensor holding `v` as a float.
Tensor scalar_tensor(double v);

}  // namespace dagger
