#include "dagger/runtime/image.h"

#include <fmt/format.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "dagger/graph/error.h"
#include "dagger/runtime/atomic_file.h"

namespace dagger {

namespace {

/// Largest side we accept, so a hostile header cannot drive a huge allocation.
constexpr uint32_t kMaxSide = 1 << 14;

/// Frees libpng's read state however the read ends.
struct PngImage {
  png_image image{};
  PngImage() { image.version = PNG_IMAGE_VERSION; }
  ~PngImage() { png_image_free(&image); }
};

}  // namespace

Tensor read_png(const std::string& path, int64_t channels, bool scale) {
  if (channels != 1 && channels != 3)
    throw Error(fmt::format("'{}': a model input of {} channels cannot be fed from an image (1 or 3)", path, channels));
  PngImage png;
  if (!png_image_begin_read_from_file(&png.image, path.c_str()))
    throw Error(fmt::format("'{}' is not a readable PNG: {}", path, png.image.message));
  if (png.image.width > kMaxSide || png.image.height > kMaxSide)
    throw Error(fmt::format("'{}': {}x{} pixels is larger than the {} pixels per side accepted", path,
                            png.image.width, png.image.height, kMaxSide));
  // A gray file is read as gray, a colour file as RGB; colour becomes gray below.
  const bool colour = (png.image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  png.image.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const size_t height = png.image.height, width = png.image.width, stored = colour ? 3 : 1;
  std::vector<png_byte> pixels(PNG_IMAGE_SIZE(png.image));
  const png_color black{0, 0, 0};
  if (!png_image_finish_read(&png.image, &black, pixels.data(), 0, nullptr))
    throw Error(fmt::format("'{}' is not a readable PNG: {}", path, png.image.message));
  // The 8-bit value of channel k at pixel i: gray replicated, or RGB's ITU-R 601 luma rounded
  // to 8 bits (what PIL's convert("L") gives, which is how such data sets are usually made).
  auto value = [&](size_t i, size_t k) -> float {
    const png_byte* p = &pixels[i * stored];
    if (!colour) return p[0];
    if (channels == 3) return p[k];
    return static_cast<float>((p[0] * 299 + p[1] * 587 + p[2] * 114 + 500) / 1000);
  };
  const size_t c = static_cast<size_t>(channels);
  Tensor image = Tensor::from_shape({c, height, width});
  for (size_t y = 0; y < height; ++y)
    for (size_t x = 0; x < width; ++x)
      for (size_t k = 0; k < c; ++k) {
        const float v = value(y * width + x, k);
        image(k, y, x) = scale ? v / 255.0f : v;
      }
  return image;
}

void write_png(const std::string& path, const Tensor& image) {
  if (image.dimension() != 3 || (image.shape(0) != 1 && image.shape(0) != 3))
    throw Error(fmt::format("'{}': an image to write must be [1 or 3, height, width]", path));
  const size_t c = image.shape(0), height = image.shape(1), width = image.shape(2);
  std::vector<png_byte> pixels(c * height * width);
  for (size_t y = 0; y < height; ++y)
    for (size_t x = 0; x < width; ++x)
      for (size_t k = 0; k < c; ++k)
        pixels[(y * width + x) * c + k] =
            static_cast<png_byte>(std::lround(std::clamp(image(k, y, x), 0.0f, 1.0f) * 255.0f));
  PngImage png;
  png.image.width = static_cast<png_uint_32>(width);
  png.image.height = static_cast<png_uint_32>(height);
  png.image.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  // Encoded in memory (a first call sizes it), then written as every output file is.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&png.image, nullptr, &size, 0, pixels.data(), 0, nullptr))
    throw Error(fmt::format("cannot write '{}': {}", path, png.image.message));
  std::string encoded(size, '\0');
  if (!png_image_write_to_memory(&png.image, encoded.data(), &size, 0, pixels.data(), 0, nullptr))
    throw Error(fmt::format("cannot write '{}': {}", path, png.image.message));
  encoded.resize(size);
  write_file_atomically(path, encoded);
}

Tensor resize_bilinear(const Tensor& image, int64_t height, int64_t width) {
  if (image.dimension() != 3 || height < 1 || width < 1)
    throw Error(fmt::format("cannot resize a tensor of {} dimensions to {}x{}", image.dimension(), height, width));
  const size_t c = image.shape(0), in_h = image.shape(1), in_w = image.shape(2);
  Tensor out = Tensor::from_shape({c, static_cast<size_t>(height), static_cast<size_t>(width)});
  // Source coordinate of an output pixel centre, clamped to the image.
  auto source = [](int64_t i, size_t in, int64_t out_size, size_t& lo, size_t& hi, float& frac) {
    const double s = std::clamp((i + 0.5) * static_cast<double>(in) / out_size - 0.5, 0.0, in - 1.0);
    lo = static_cast<size_t>(s);
    hi = std::min(lo + 1, in - 1);
    frac = static_cast<float>(s - lo);
  };
  for (int64_t y = 0; y < height; ++y) {
    size_t y0, y1;
    float fy;
    source(y, in_h, height, y0, y1, fy);
    for (int64_t x = 0; x < width; ++x) {
      size_t x0, x1;
      float fx;
      source(x, in_w, width, x0, x1, fx);
      for (size_t k = 0; k < c; ++k) {
        const float top = image(k, y0, x0) * (1 - fx) + image(k, y0, x1) * fx;
        const float bottom = image(k, y1, x0) * (1 - fx) + image(k, y1, x1) * fx;
        out(k, y, x) = top * (1 - fy) + bottom * fy;
      }
    }
  }
  return out;
}

}  // namespace dagger
