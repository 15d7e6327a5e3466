#include "dagger/runtime/augment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "dagger/graph/error.h"
#include "dagger/graph/random.h"

namespace dagger {

namespace {

/// A stream of uniform numbers for one example: the hash of (example key, draw counter).
class ExampleRandom {
 public:
  ExampleRandom(uint64_t seed, int epoch, size_t index) {
    const uint32_t run =
        dropout_hash(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(epoch));
    key_ = dropout_hash(run, 0x41554731u, static_cast<uint32_t>(index));  // salt "AUG1"
  }
  /// Uniform in [0, 1) with 24 bits.
  double uniform() { return static_cast<double>(dropout_hash(key_, 0x5EEDu, counter_++) >> 8) * 0x1p-24; }
  /// Uniform integer in [0, n).
  int below(int n) { return std::min(n - 1, static_cast<int>(uniform() * n)); }

 private:
  uint32_t key_ = 0, counter_ = 0;
};

double parse_number(const std::string& item, const std::string& value) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size()) throw Error(fmt::format("--augment: '{}' needs a number after '='", item));
  return v;
}

}  // namespace

AugmentConfig parse_augment(const std::string& text) {
  AugmentConfig cfg;
  if (text.empty() || text == "none") return cfg;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    const size_t eq = item.find('=');
    const std::string name = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (name == "flip" && eq == std::string::npos) {
      cfg.flip = true;
    } else if (name == "crop" && eq != std::string::npos) {
      const double p = parse_number(item, value);
      if (p < 1 || p > 64 || p != std::floor(p))
        throw Error(fmt::format("--augment: crop padding must be a whole number in [1, 64], got '{}'", value));
      cfg.crop_padding = static_cast<int>(p);
    } else if (name == "erase" && eq != std::string::npos) {
      const double p = parse_number(item, value);
      if (!(p > 0 && p <= 1))
        throw Error(fmt::format("--augment: erase probability must be in (0, 1], got '{}'", value));
      cfg.erase_probability = p;
    } else {
      throw Error(
          fmt::format("--augment: cannot read '{}' (expected crop=P, flip, erase=PROB, e.g. crop=4,flip)", item));
    }
  }
  if (!text.empty() && text.back() == ',') throw Error("--augment: trailing ','");
  return cfg;
}

std::string to_string(const AugmentConfig& cfg) {
  std::vector<std::string> items;
  if (cfg.crop_padding > 0) items.push_back(fmt::format("crop={}", cfg.crop_padding));
  if (cfg.flip) items.push_back("flip");
  if (cfg.erase_probability > 0) items.push_back(fmt::format("erase={}", cfg.erase_probability));
  return items.empty() ? "none" : fmt::format("{}", fmt::join(items, ","));
}

ExamplePlan plan_example(const AugmentConfig& cfg, uint64_t seed, int epoch, size_t index, int height, int width) {
  ExampleRandom rng(seed, epoch, index);
  ExamplePlan plan;
  plan.crop_y = plan.crop_x = cfg.crop_padding;
  if (cfg.crop_padding > 0) {
    plan.crop_y = rng.below(2 * cfg.crop_padding + 1);
    plan.crop_x = rng.below(2 * cfg.crop_padding + 1);
  }
  if (cfg.flip) plan.flip = rng.uniform() < 0.5;
  if (cfg.erase_probability > 0 && rng.uniform() < cfg.erase_probability) {
    const double area = static_cast<double>(height) * width;
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = area * (0.02 + (0.33 - 0.02) * rng.uniform());
      const double aspect = std::exp(std::log(0.3) + (std::log(3.3) - std::log(0.3)) * rng.uniform());
      const int h = static_cast<int>(std::lround(std::sqrt(target * aspect)));
      const int w = static_cast<int>(std::lround(std::sqrt(target / aspect)));
      if (h < 1 || w < 1 || h >= height || w >= width) continue;
      plan.erase_top = rng.below(height - h + 1);
      plan.erase_left = rng.below(width - w + 1);
      plan.erase_height = h;
      plan.erase_width = w;
      break;
    }
  }
  return plan;
}

void apply_plan(const ExamplePlan& plan, int crop_padding, float* image, int channels, int height, int width) {
  const size_t plane = static_cast<size_t>(height) * static_cast<size_t>(width);
  std::vector<float> source(plane);
  for (int c = 0; c < channels; ++c) {
    float* px = image + static_cast<size_t>(c) * plane;
    std::copy_n(px, plane, source.begin());
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        const int from_x = plan.flip ? width - 1 - x : x;
        const int sy = y + plan.crop_y - crop_padding, sx = from_x + plan.crop_x - crop_padding;
        const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
        px[y * width + x] = inside ? source[static_cast<size_t>(sy) * width + sx] : 0.0f;
      }
    }
    for (int y = plan.erase_top; y < plan.erase_top + plan.erase_height; ++y)
      std::fill_n(px + y * width + plan.erase_left, plan.erase_width, 0.0f);
  }
}

void augment_batch(const AugmentConfig& cfg, uint64_t seed, int epoch, const std::vector<size_t>& order, size_t begin,
                   Tensor& images) {
  if (!cfg.enabled()) return;
  if (images.dimension() != 4)
    throw Error(fmt::format("augmentation needs images [n, channels, height, width], got {} axes", images.dimension()));
  const size_t count = images.shape()[0];
  const int channels = static_cast<int>(images.shape()[1]), height = static_cast<int>(images.shape()[2]),
            width = static_cast<int>(images.shape()[3]);
  const size_t stride = static_cast<size_t>(channels) * height * width;
  for (size_t b = 0; b < count; ++b) {
    const ExamplePlan plan = plan_example(cfg, seed, epoch, order[begin + b], height, width);
    apply_plan(plan, cfg.crop_padding, images.data() + b * stride, channels, height, width);
  }
}

}  // namespace dagger
