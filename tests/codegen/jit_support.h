#pragma once
// Shared by the JIT tests: seeded inputs, error measures, and running one graph on both the
// JIT and the reference interpreter.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "codegen/jit_executable.h"
#include "runtime/interpreter.h"

namespace dagger::testing {

inline Tensor make_tensor(const Shape& shape) { return Tensor::from_shape(std::vector<size_t>(shape.begin(), shape.end())); }

/// Uniform values in [lo, hi) from a fixed seed.
inline Tensor uniform(const Shape& shape, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = make_tensor(shape);
  for (float& v : t) v = dist(rng);
  return t;
}

inline Tensor scalar_tensor(float v) {
  Tensor t = make_tensor({});
  t() = v;
  return t;
}

/// max |got - want| / |want| over all elements, with |want| floored at FLT_MIN so that
/// subnormal results count absolutely. NaN must meet NaN and infinities must match exactly.
inline double max_rel_error(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = got.data()[i], w = want.data()[i];
    if (std::isnan(w) || std::isnan(g)) {
      if (!(std::isnan(w) && std::isnan(g))) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (std::isinf(w) || std::isinf(g)) {
      if (g != w) return std::numeric_limits<double>::infinity();
      continue;
    }
    worst = std::max(worst, std::abs(g - w) / std::max(std::abs(w), double(FLT_MIN)));
  }
  return worst;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; });
}

/// Runs g with both executors from the same feeds and state; returns the JIT's outputs and
/// the interpreter's, and the JIT plan's kernel count.
struct BothRuns {
  StateMap jit, ref;
  size_t kernels = 0;
};

/// width: floats per vector in the kernels, 0 for the host's; threads: the JIT's workers.
inline BothRuns run_both(const Graph& g, const StateMap& feeds, const StateMap& state = {}, int width = 0,
                         int threads = 1) {
  BothRuns r;
  StateMap jit_state = state, ref_state = state;
  JitOptions options;
  options.vector_width = width;
  options.threads = threads;
  auto plan = compile_jit(g, options);
  r.kernels = plan->kernels().size();
  r.jit = plan->run(feeds, jit_state);
  r.ref = interpret<float>(g, feeds, ref_state);
  return r;
}

inline NodeId input(Graph& g, const std::string& name, const Shape& shape) {
  return g.add(Op::input, {}, {{"name", name}, {"shape", shape}});
}

}  // namespace dagger::testing
