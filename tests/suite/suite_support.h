#pragma once
// What the suite's tests share: synthetic data, a profile of a few hundred images, options
// that run the reference executor quietly.
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dagger/suite/suite.h"

namespace dagger::testing {

/// Random images whose mean brightness depends on the class, so models learn a little.
inline Dataset synthetic(size_t n, uint32_t seed, bool scale) {
  Dataset d;
  d.images = Tensor::from_shape({n, 1, 28, 28});
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; ++i) {
    d.labels.push_back(static_cast<int>(i % 10));
    for (size_t p = 0; p < 28 * 28; ++p) {
      const float v = (static_cast<float>(rng() % 128) + 12.0f * static_cast<float>(i % 10)) / 255.0f;
      d.images.data()[i * 28 * 28 + p] = scale ? v : std::round(v * 255.0f);
    }
  }
  return d;
}

inline Splits synthetic_splits(const SplitOptions& o) {
  auto size = [](size_t limit, size_t all) { return limit ? limit : all; };
  return {synthetic(size(o.train_limit, 300), 1, o.scale), synthetic(size(o.val_limit, 100), 2, o.scale),
          synthetic(size(o.test_limit, 100), 3, o.scale)};
}

/// A profile small enough for a test: every run is a few hundred images for one or two epochs.
inline suite::Profile tiny_profile() {
  suite::Profile p;
  p.name = "tiny";
  p.dense = {.train = 200, .val = 60, .test = 60, .max_epochs = 2, .fixed_epoch_cap = 3};
  p.conv = {.train = 10, .val = 10, .test = 10, .max_epochs = 1, .fixed_epoch_cap = 1};
  p.deep = {.train = 10, .val = 10, .test = 10, .max_epochs = 1, .fixed_epoch_cap = 2};
  p.batch = 32;
  return p;
}

inline suite::SuiteOptions tiny_options(const std::string& out, std::vector<std::string> only) {
  suite::SuiteOptions o;
  o.profile = tiny_profile();
  o.only = std::move(only);
  o.out_dir = out;
  o.executor = ExecutorKind::reference;
  o.progress = false;
  o.load_data = synthetic_splits;
  o.provenance = {{"git_commit", "test"}};
  return o;
}

inline std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A suite's results.json without its clock: what a run of the same suite must reproduce
/// whatever the jobs, ranks or interruptions. `also` names further keys to leave out.
inline nlohmann::json results_without_clock(const std::string& path, const std::set<std::string>& also = {}) {
  std::set<std::string> drop = {"wall_seconds", "seconds", "train_seconds", "images_per_sec", "finished_at"};
  drop.insert(also.begin(), also.end());
  std::function<void(nlohmann::json&)> strip = [&](nlohmann::json& j) {
    if (j.is_object())
      for (auto it = j.begin(); it != j.end();)
        if (drop.count(it.key()))
          it = j.erase(it);
        else
          strip(*it++);
    else if (j.is_array())
      for (nlohmann::json& item : j) strip(item);
  };
  nlohmann::json j = nlohmann::json::parse(read(path));
  strip(j);
  return j;
}

}  // namespace dagger::testing
