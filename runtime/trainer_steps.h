#pragma once
/// What the one-process and the data-parallel training loops share: a step's feeds and an
/// epoch's statistics.
#include <cstdint>

#include "dagger/runtime/tensor.h"
#include "dagger/runtime/trainer.h"

namespace dagger {

/// A fresh dropout key per step, below 2^24 so a float holds it exactly.
float dropout_key(uint64_t seed, int64_t step);

/// A rank-0 tensor holding `v` as a float.
Tensor scalar_tensor(double v);

/// An epoch's training statistics from the summed loss (loss x images of each batch), the right
/// answers and the seconds its `images` took.
EpochStats epoch_stats(int epoch, double lr, int64_t images, double loss_sum, int64_t correct, double seconds);

}  // namespace dagger
