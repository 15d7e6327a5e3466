// The Winograd transforms of codegen/winograd_transforms.h, run in double exactly as the
// emitters compose them (two_d of the 1-D transforms), against the direct 2-D correlation:
// F(2x2,3x3) and F(4x4,3x3) must be exact up to double rounding.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "dagger/codegen/winograd_transforms.h"

using namespace dagger::winograd;

namespace {

struct DoubleOps {
  double add(double a, double b) { return a + b; }
  double sub(double a, double b) { return a - b; }
  double scale(double a, double c) { return a * c; }
  double fma(double a, double c, double b) { return std::fma(a, c, b); }
};

template <size_t N>
using Block = std::array<std::array<double, N>, N>;

/// An N x N block of values drawn uniformly from [-1, 1), row by row.
template <size_t N>
Block<N> random_block(std::mt19937& rng) {
  std::uniform_real_distribution<double> uniform(-1, 1);
  Block<N> block;
  for (auto& row : block)
    for (double& x : row) x = uniform(rng);
  return block;
}

/// The elementwise product of two blocks: the per-position products of a Winograd form.
template <size_t N>
Block<N> times(const Block<N>& a, const Block<N>& b) {
  Block<N> m;
  for (size_t i = 0; i < N; ++i)
    for (size_t j = 0; j < N; ++j) m[i][j] = a[i][j] * b[i][j];
  return m;
}

/// The largest |Winograd - direct| over the M x M outputs of one random patch and filter, and
/// the largest |output| for scale.
template <int M>
std::pair<double, double> worst_error(uint32_t seed) {
  constexpr size_t P = Form<M>::Patch;
  std::mt19937 rng(seed);
  const Block<P> d = random_block<P>(rng);
  const Block<3> g = random_block<3>(rng);
  DoubleOps ops;
  const auto u = two_d<3, P>(g, [&](const std::array<double, 3>& x) { return Form<M>::filter(ops, x); });
  const auto v = two_d<P, P>(d, [&](const std::array<double, P>& x) { return Form<M>::input(ops, x); });
  const auto y = two_d<P, M>(times(u, v), [&](const std::array<double, P>& x) { return Form<M>::output(ops, x); });
  double worst = 0, largest = 0;
  for (size_t i = 0; i < M; ++i)
    for (size_t j = 0; j < M; ++j) {
      double direct = 0;
      for (size_t r = 0; r < 3; ++r)
        for (size_t s = 0; s < 3; ++s) direct += d[i + r][j + s] * g[r][s];
      worst = std::max(worst, std::abs(y[i][j] - direct));
      largest = std::max(largest, std::abs(direct));
    }
  return {worst, largest};
}

}  // namespace

TEST_CASE("winograd transforms compute the 3x3 correlation exactly in double", "[winograd]") {
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    INFO("seed " << seed);
    const auto [err2, scale2] = worst_error<2>(seed);
    const auto [err4, scale4] = worst_error<4>(seed);
    CHECK(scale2 > 0.01);
    CHECK(scale4 > 0.01);
    // Each output sums 9 products of numbers below 1; a wrong matrix entry errs by O(0.1).
    CHECK(err2 < 1e-14);
    CHECK(err4 < 1e-13);
  }
}

namespace {

/// The largest |Winograd - direct| over the 3x3 filter gradient of one random input patch and
/// M x M tile of the output gradient, dw[r][s] = sum_ij dy[i][j] d[i + r][j + s], and the
/// largest |dw| for scale.
template <int M>
std::pair<double, double> worst_gradient_error(uint32_t seed) {
  constexpr size_t P = Form<M>::Patch;
  std::mt19937 rng(seed);
  const Block<P> d = random_block<P>(rng);
  const Block<M> dy = random_block<M>(rng);
  DoubleOps ops;
  const auto t = two_d<M, P>(dy, [&](const std::array<double, M>& x) { return Form<M>::gradient_tile(ops, x); });
  const auto v = two_d<P, P>(d, [&](const std::array<double, P>& x) { return Form<M>::input(ops, x); });
  const auto dw =
      two_d<P, 3>(times(t, v), [&](const std::array<double, P>& x) { return Form<M>::gradient_output(ops, x); });
  double worst = 0, largest = 0;
  for (size_t r = 0; r < 3; ++r)
    for (size_t s = 0; s < 3; ++s) {
      double direct = 0;
      for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < M; ++j) direct += dy[i][j] * d[i + r][j + s];
      worst = std::max(worst, std::abs(dw[r][s] - direct));
      largest = std::max(largest, std::abs(direct));
    }
  return {worst, largest};
}

}  // namespace

TEST_CASE("winograd gradient transforms compute the 3x3 filter gradient exactly in double", "[winograd]") {
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    INFO("seed " << seed);
    const auto [err2, scale2] = worst_gradient_error<2>(seed);
    const auto [err4, scale4] = worst_gradient_error<4>(seed);
    CHECK(scale2 > 0.01);
    CHECK(scale4 > 0.01);
    // Each tap sums M^2 products of numbers below 1; a wrong matrix entry errs by O(0.1).
    CHECK(err2 < 1e-14);
    CHECK(err4 < 1e-13);
  }
}
