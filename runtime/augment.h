#pragma once
/// Data augmentation of training images, applied when a batch is gathered: random crop of a
/// zero-padded image, horizontal flip, random erasing. Every random choice for an example is
/// drawn from a counter-based generator keyed by (seed, epoch, example index in the data set),
/// so the augmented batch does not depend on the thread count or on where batches begin.
#include <cstdint>
#include <string>
#include <vector>

#include "dagger/runtime/tensor.h"

namespace dagger {

/// Which transforms run, in this order: crop, flip, erase. All off = no augmentation.
struct AugmentConfig {
  int crop_padding = 0;          ///< P > 0: pad P zeros on each side, then crop back at a random offset
  bool flip = false;             ///< mirror left-right with probability 1/2
  double erase_probability = 0;  ///< erase a random rectangle (2%-33% of the area) with this probability

  bool enabled() const { return crop_padding > 0 || flip || erase_probability > 0; }
};

/// Parses "crop=4,flip,erase=0.25" (any subset, any order; "" or "none" = off). Throws
/// dagger::Error naming the bad item.
AugmentConfig parse_augment(const std::string& text);
/// The canonical text parse_augment reads back ("none" when off).
std::string to_string(const AugmentConfig& cfg);

/// One example's random choices: the crop offset into the padded image (0..2P per axis; P, P is
/// the identity), the flip, and the erased rectangle (height 0 = none).
struct ExamplePlan {
  int crop_y = 0, crop_x = 0;
  bool flip = false;
  int erase_top = 0, erase_left = 0, erase_height = 0, erase_width = 0;
};

/// The choices for example `index` of epoch `epoch` on [height, width] images. Erasing follows
/// Zhong et al.: area uniform in [0.02, 0.33] of the image, aspect ratio log-uniform in
/// [0.3, 3.3], up to 10 tries for a rectangle that fits, else nothing is erased.
ExamplePlan plan_example(const AugmentConfig& cfg, uint64_t seed, int epoch, size_t index, int height, int width);

/// Applies `plan` to one image of `channels` x `height` x `width` floats in place:
/// out(c, y, x) = padded(c, y + crop_y, x' + crop_x) with x' = width-1-x under the flip, then
/// zeros in the erased rectangle.
void apply_plan(const ExamplePlan& plan, int crop_padding, float* image, int channels, int height, int width);

/// Augments a gathered batch [count, C, H, W] whose row b holds example order[begin + b].
void augment_batch(const AugmentConfig& cfg, uint64_t seed, int epoch, const std::vector<size_t>& order, size_t begin,
                   Tensor& images);

}  // namespace dagger
