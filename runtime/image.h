#pragma once
/// Image files for inference: PNG in (any bit depth or colour type, through libpng) as float
/// pixels, a bilinear resize, and 8-bit PNG out (for tests and examples).
#include <cstdint>
#include <string>

#include "dagger/runtime/tensor.h"

namespace dagger {

/// Reads the PNG at `path` as [channels, height, width] floats: in 0..1 when `scale`, else
/// 0..255. `channels` is 1 (colour converted to luminance) or 3 (gray replicated to RGB);
/// transparency is composited over black. Throws Error naming the file when it cannot be
/// read or is not a PNG.
Tensor read_png(const std::string& path, int64_t channels, bool scale = true);

/// Writes a [1 or 3, height, width] image with values in 0..1 (clamped) as an 8-bit PNG,
/// atomically (a temporary file renamed into place). Throws Error naming the file on failure.
void write_png(const std::string& path, const Tensor& image);

/// [channels, h, w] -> [channels, height, width] by bilinear interpolation with pixel centres
/// aligned (the convention of OpenCV's INTER_LINEAR and PyTorch's align_corners=False).
Tensor resize_bilinear(const Tensor& image, int64_t height, int64_t width);

}  // namespace dagger
