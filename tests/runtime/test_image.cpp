// PNG in and out, colour conversion and the bilinear resize, on worked values.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "dagger/graph/error.h"
#include "dagger/runtime/image.h"
#include "support.h"

using namespace dagger;

namespace {

/// A file in this test binary's own temporary folder, removed when the run ends.
std::string temp_path(const std::string& name) {
  static const dagger::testing::TempDir dir("image");
  return dir.file(name);
}

}  // namespace

TEST_CASE("a PNG written and read back keeps its 8-bit pixels", "[image]") {
  Tensor gray = Tensor::from_shape({1, 2, 3});
  for (size_t i = 0; i < 6; ++i) gray.data()[i] = static_cast<float>(i * 51) / 255.0f;  // as the data loaders scale  // 0, 51, ..., 255
  const std::string path = temp_path("gray.png");
  write_png(path, gray);
  const Tensor back = read_png(path, 1);
  REQUIRE(back.shape() == gray.shape());
  for (size_t i = 0; i < 6; ++i) CHECK(back.data()[i] == gray.data()[i]);
  const Tensor raw = read_png(path, 1, false);
  CHECK(raw(0, 1, 2) == 255.0f);
  CHECK(raw(0, 0, 1) == 51.0f);
  // Gray replicated to three channels.
  const Tensor rgb = read_png(path, 3);
  REQUIRE(rgb.shape() == std::vector<size_t>{3, 2, 3});
  CHECK(rgb(2, 1, 1) == gray(0, 1, 1));
}

TEST_CASE("an RGB PNG read as one channel becomes its luminance", "[image]") {
  Tensor rgb = Tensor::from_shape({3, 1, 2});
  rgb(0, 0, 0) = 1, rgb(1, 0, 0) = 1, rgb(2, 0, 0) = 1;  // white
  rgb(0, 0, 1) = 1, rgb(1, 0, 1) = 0, rgb(2, 0, 1) = 0;  // red
  const std::string path = temp_path("rgb.png");
  write_png(path, rgb);
  const Tensor gray = read_png(path, 1);
  CHECK(gray(0, 0, 0) == 1.0f);
  // ITU-R 601 luma of pure red: round(255 * 0.299) = 76.
  CHECK(gray(0, 0, 1) == 76 / 255.0f);
}

TEST_CASE("reading a file that is not a PNG names it", "[image]") {
  const std::string path = temp_path("not.png");
  std::ofstream(path) << "hello";
  CHECK_THROWS_WITH(read_png(path, 1), Catch::Contains(path) && Catch::Contains("not a readable PNG"));
  CHECK_THROWS_WITH(read_png(temp_path("missing.png"), 1), Catch::Contains("missing.png"));
  CHECK_THROWS_WITH(read_png(path, 2), Catch::Contains("2 channels"));
}

TEST_CASE("bilinear resize aligns pixel centres", "[image]") {
  Tensor ramp = Tensor::from_shape({1, 1, 2});
  ramp(0, 0, 0) = 0, ramp(0, 0, 1) = 1;
  const Tensor up = resize_bilinear(ramp, 1, 4);
  // Output centres 0.5,1.5,2.5,3.5 map to source -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1).
  CHECK(up(0, 0, 0) == 0.0f);
  CHECK(up(0, 0, 1) == Approx(0.25f));
  CHECK(up(0, 0, 2) == Approx(0.75f));
  CHECK(up(0, 0, 3) == 1.0f);
  // Halving a 4x4 averages each 2x2 block's centre pair.
  Tensor four = Tensor::from_shape({1, 4, 4});
  for (size_t i = 0; i < 16; ++i) four.data()[i] = static_cast<float>(i);
  const Tensor half = resize_bilinear(four, 2, 2);
  CHECK(half(0, 0, 0) == Approx((0 + 1 + 4 + 5) / 4.0f));
  CHECK(half(0, 1, 1) == Approx((10 + 11 + 14 + 15) / 4.0f));
}
