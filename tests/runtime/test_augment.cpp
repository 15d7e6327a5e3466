// Image augmentation: worked crops, flips and erasures on a tiny image, the parser, and
// independence from batch boundaries.
#include <catch2/catch.hpp>
#include <cstring>
#include <numeric>
#include <vector>
#include <xtensor/xview.hpp>

#include "dagger/runtime/augment.h"
#include "support.h"

using namespace dagger;

namespace {

/// The 3x3 image 1..9, one channel.
std::vector<float> tiny() {
  std::vector<float> v(9);
  std::iota(v.begin(), v.end(), 1.0f);
  return v;
}

}  // namespace

TEST_CASE("crop offsets and the flip on a tiny image", "[augment]") {
  ExamplePlan plan;
  plan.crop_y = 0;  // with padding 1: out(y, x) = in(y - 1, x + 1)
  plan.crop_x = 2;
  std::vector<float> img = tiny();
  apply_plan(plan, 1, img.data(), 1, 3, 3);
  CHECK(img == std::vector<float>{0, 0, 0, 2, 3, 0, 5, 6, 0});

  plan.flip = true;  // out(y, x) = in(y - 1, 3 - x)
  img = tiny();
  apply_plan(plan, 1, img.data(), 1, 3, 3);
  CHECK(img == std::vector<float>{0, 0, 0, 0, 3, 2, 0, 6, 5});

  ExamplePlan identity;
  identity.crop_y = identity.crop_x = 1;
  identity.erase_top = 1;  // then zeros at row 1, columns 1..2
  identity.erase_left = 1;
  identity.erase_height = 1;
  identity.erase_width = 2;
  img = tiny();
  apply_plan(identity, 1, img.data(), 1, 3, 3);
  CHECK(img == std::vector<float>{1, 2, 3, 4, 0, 0, 7, 8, 9});
}

TEST_CASE("augmentation settings parse and print back", "[augment]") {
  AugmentConfig cfg = parse_augment("crop=4,flip,erase=0.25");
  CHECK(cfg.crop_padding == 4);
  CHECK(cfg.flip);
  CHECK(cfg.erase_probability == 0.25);
  CHECK(to_string(cfg) == "crop=4,flip,erase=0.25");
  CHECK_FALSE(parse_augment("none").enabled());
  CHECK(to_string(parse_augment("")) == "none");
  for (const char* bad :
       {"crop", "crop=-1", "crop=2.5", "flip=1", "erase=0", "erase=1.5", "blur", "flip,", "crop=4,,flip"}) {
    INFO(bad);
    CHECK_THAT(testing::error_of([&] { parse_augment(bad); }), Catch::Contains("--augment"));
  }
}

TEST_CASE("plans are a function of (seed, epoch, index) and stay in range", "[augment]") {
  const AugmentConfig cfg = parse_augment("crop=4,flip,erase=0.5");
  int flips = 0, erased = 0, distinct_crops = 0;
  for (size_t i = 0; i < 2000; ++i) {
    const ExamplePlan p = plan_example(cfg, 42, 3, i, 28, 28);
    const ExamplePlan again = plan_example(cfg, 42, 3, i, 28, 28);
    REQUIRE(std::memcmp(&p, &again, sizeof p) == 0);
    CHECK((p.crop_y >= 0 && p.crop_y <= 8 && p.crop_x >= 0 && p.crop_x <= 8));
    flips += p.flip;
    distinct_crops += p.crop_y != 4 || p.crop_x != 4;
    if (p.erase_height > 0) {
      ++erased;
      CHECK(p.erase_top + p.erase_height <= 28);
      CHECK(p.erase_left + p.erase_width <= 28);
      const double area = double(p.erase_height) * p.erase_width / (28.0 * 28.0);
      CHECK((area > 0.01 && area < 0.4));  // 2%-33% before rounding each side
    }
  }
  CHECK((flips > 900 && flips < 1100));
  CHECK((erased > 850 && erased < 1150));
  CHECK(distinct_crops > 1900);
  const ExamplePlan other_epoch = plan_example(cfg, 42, 4, 0, 28, 28), first = plan_example(cfg, 42, 3, 0, 28, 28);
  const ExamplePlan other_seed = plan_example(cfg, 43, 3, 0, 28, 28);
  CHECK((std::memcmp(&other_epoch, &first, sizeof first) != 0 || std::memcmp(&other_seed, &first, sizeof first) != 0));
}

TEST_CASE("an augmented batch does not depend on where batches begin", "[augment]") {
  const AugmentConfig cfg = parse_augment("crop=2,flip,erase=0.5");
  const std::vector<size_t> order = {5, 2, 7, 0, 3, 1};
  Tensor whole = Tensor::from_shape({6, 2, 5, 5});
  std::iota(whole.begin(), whole.end(), 1.0f);
  const Tensor original = whole;
  Tensor head = xt::view(whole, xt::range(0, 4)), tail = xt::view(whole, xt::range(4, 6));
  augment_batch(cfg, 7, 1, order, 0, whole);
  augment_batch(cfg, 7, 1, order, 0, head);
  augment_batch(cfg, 7, 1, order, 4, tail);
  CHECK(std::memcmp(whole.data(), head.data(), head.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(whole.data() + head.size(), tail.data(), tail.size() * sizeof(float)) == 0);
  CHECK_FALSE(bool(whole == original));

  Tensor untouched = original;  // no augmentation leaves the batch's bits alone
  augment_batch(AugmentConfig{}, 7, 1, order, 0, untouched);
  CHECK(std::memcmp(untouched.data(), original.data(), original.size() * sizeof(float)) == 0);
}
