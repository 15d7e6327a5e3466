#pragma once
// Shared by the JIT tests: seeded inputs, error measures, and running one graph on both the
// JIT and the reference interpreter.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

#include "dagger/autodiff/optimizer.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/graph/dsl.h"
#include "dagger/runtime/interpreter.h"

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

/// A contraction's float result against its exact value: the largest |got - want|, and the
/// largest |got - want| / scale, scale being the sum of the |products| its rounding grows with.
struct Errors {
  double abs = 0;
  double scaled = 0;
};

inline Errors errors_against(const Tensor& got, const xt::xarray<double>& want, const xt::xarray<double>& scale) {
  Errors e;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(double(got.data()[i]) - want.data()[i]);
    e.abs = std::max(e.abs, d);
    e.scaled = std::max(e.scaled, d / std::max(1e-30, scale.data()[i]));
  }
  return e;
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
  std::string ir;  // the plan's optimized LLVM IR, where asked for
};

/// width: floats per vector in the kernels, 0 for the host's; threads: the JIT's workers;
/// keep_ir: keep the plan's optimized IR in BothRuns::ir.
inline BothRuns run_both(const Graph& g, const StateMap& feeds, const StateMap& state = {}, int width = 0,
                         int threads = 1, bool keep_ir = false) {
  BothRuns r;
  StateMap jit_state = state, ref_state = state;
  JitOptions options;
  options.poison_arena = true;  // an element no kernel writes reads NaN
  options.vector_width = width;
  options.threads = threads;
  options.keep_dumps = keep_ir;
  auto plan = compile_jit(g, options);
  r.kernels = plan->kernels().size();
  if (keep_ir) r.ir = plan->dump(DumpStage::ir_after_opt);
  r.jit = plan->run(feeds, jit_state);
  r.ref = interpret<float>(g, feeds, ref_state);
  return r;
}

/// Calls fn(m, n, k, trans_a, trans_b, epilogue) for every size [m, n, k] and every
/// combination of the three flags, each under an INFO naming them.
inline void for_each_matmul_case(const std::vector<std::array<int64_t, 3>>& sizes,
                                 const std::function<void(int64_t, int64_t, int64_t, bool, bool, bool)>& fn) {
  for (const auto& [m, n, k] : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool epilogue : {false, true}) {
          INFO("M " << m << " N " << n << " K " << k << " trans_a " << ta << " trans_b " << tb << " epilogue "
                    << epilogue);
          fn(m, n, k, ta, tb, epilogue);
        }
}

inline NodeId input(Graph& g, const std::string& name, const Shape& shape) {
  return g.add(Op::input, {}, {{"name", name}, {"shape", shape}});
}

/// Feeds for one training step of `g`: labels cycling through the classes, lr 0.01, a dropout
/// key and uniform [0, 1) images, all functions of `step`.
inline StateMap training_feeds(const Graph& g, int64_t batch, int step) {
  StateMap feeds;
  for (NodeId id : g.nodes_of(Op::input)) {
    const Node& n = g.node(id);
    const std::string& name = n.attrs.s("name");
    if (name == "labels") {
      Tensor labels = make_tensor(n.shape);
      for (int64_t i = 0; i < batch; ++i) labels(i) = static_cast<float>((i * 7 + step) % 10);
      feeds[name] = labels;
    } else if (name == kLearningRateInput) {
      feeds[name] = scalar_tensor(0.01f);
    } else if (name == Model::kDropoutKey) {
      feeds[name] = scalar_tensor(static_cast<float>(1000 + step));
    } else {
      feeds[name] = uniform(n.shape, 0, 1, static_cast<uint32_t>(step + 100));
    }
  }
  return feeds;
}

/// max |a - b| / max(1, |b|) over every tensor both maps hold.
inline double max_state_error(const StateMap& a, const StateMap& b) {
  double worst = 0;
  for (const auto& [name, want] : b) {
    const Tensor& got = a.at(name);
    REQUIRE(got.shape() == want.shape());
    for (size_t i = 0; i < want.size(); ++i)
      worst = std::max(
          worst, std::abs(double(got.data()[i]) - want.data()[i]) / std::max(1.0, std::abs(double(want.data()[i]))));
  }
  return worst;
}

}  // namespace dagger::testing
