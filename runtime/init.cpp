#include "dagger/runtime/init.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string_view>

namespace dagger {

namespace {

/// 64-bit FNV-1a: a fixed, platform-independent hash of a parameter's name.
uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

/// The generator seed of one named tensor. The run seed goes through a multiply by an odd
/// constant so that nearby seeds move every bit of the name's hash.
uint64_t tensor_seed(uint64_t seed, std::string_view name) { return fnv1a(name) ^ (seed * 0x9E3779B97F4A7C15ull); }

/// Uniform in [-limit, limit). Built from the raw 64-bit draws because std's distributions
/// may produce different numbers on different standard libraries; mt19937_64 itself may not.
void fill_uniform(float* out, int64_t count, double limit, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < count; ++i) {
    const double u = static_cast<double>(rng() >> 11) * 0x1p-53;  // [0, 1) from the top 53 bits
    out[i] = static_cast<float>(limit * (2.0 * u - 1.0));
  }
}

/// The bound of a scaled uniform initializer, checking its fans make sense.
double uniform_limit(const Node& n, const std::string& init) {
  const int64_t fan_in = n.attrs.i_or("fan_in", 0), fan_out = n.attrs.i_or("fan_out", 0);
  const int64_t fans = init == "glorot_uniform" ? fan_in + fan_out : fan_in;
  if (fans <= 0 || fan_in < 0 || fan_out < 0)
    throw Error(fmt::format("{}: {} '{}' uses {} but has fan_in {} and fan_out {}", describe(n.where),
                            op_info(n.op).name, n.attrs.s("name"), init, fan_in, fan_out));
  return std::sqrt(6.0 / static_cast<double>(fans));
}

Tensor create(const Node& n, uint64_t seed) {
  const std::string& init = n.attrs.s("init");
  Tensor t = Tensor::from_shape(std::vector<size_t>(n.shape.begin(), n.shape.end()));
  const int64_t count = static_cast<int64_t>(t.size());
  if (init == "zeros" || init == "ones") {
    std::fill(t.data(), t.data() + count, init == "ones" ? 1.0f : 0.0f);
  } else if (init == "glorot_uniform" || init == "he_uniform") {
    fill_uniform(t.data(), count, uniform_limit(n, init), tensor_seed(seed, n.attrs.s("name")));
  } else {
    throw Error(fmt::format("{}: {} '{}' has unknown init '{}' (valid: zeros, ones, glorot_uniform, he_uniform)",
                            describe(n.where), op_info(n.op).name, n.attrs.s("name"), init));
  }
  return t;
}

template <class To, class From>
TensorMap<To> convert(const TensorMap<From>& m) {
  TensorMap<To> out;
  for (const auto& [name, t] : m) {
    xt::xarray<To> c = xt::xarray<To>::from_shape(t.shape());
    std::transform(t.data(), t.data() + t.size(), c.data(), [](From v) { return static_cast<To>(v); });
    out.emplace(name, std::move(c));
  }
  return out;
}

}  // namespace

void initialize_state(const Graph& g, TensorMap<float>& state, uint64_t seed) {
  for (const Node& n : g.nodes()) {
    if (n.op != Op::parameter && n.op != Op::state) continue;
    const std::string& name = n.attrs.s("name");
    if (!state.count(name)) state.emplace(name, create(n, seed));
  }
}

TensorMap<double> to_double(const TensorMap<float>& m) { return convert<double>(m); }
TensorMap<float> to_float(const TensorMap<double>& m) { return convert<float>(m); }

}  // namespace dagger
