#pragma once
/// Internal to codegen/: the one-dimensional transforms of Winograd's minimal filtering
/// F(m,3) for m = 2 and 4, written once over an arithmetic `Ops` so that the emitters run them
/// on LLVM values and tests/codegen/test_winograd_transforms.cpp in double. `Ops` provides
/// add(a, b), sub(a, b), scale(a, c) = a * c and fma(a, c, b) = a * c + b, c a constant.
///
/// Y = A^T [ (G g) * (B^T d) ] for a 3-tap correlation y_i = sum_k g_k d_{i+k}, from the
/// Toom-Cook construction at the points p_j: A^T[i][j] = p_j^i, G[j][k] = p_j^k / prod_{l != j}
/// (p_j - p_l), each with a last point "at infinity" (the row or column picking the top
/// coefficient), and B^T the matrix that makes the identity hold.
///
/// F(2,3), points 0, 1, -1:
///   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
///   A^T = [1 1 1 0; 0 1 -1 -1]
///
/// F(4,3), points 0, 1, -1, 2, -2 (Lavin and Gray's):
///   B^T = [4  0 -5  0 1 0]      G = [ 1/4     0     0  ]      A^T = [1 1  1 1  1 0]
///         [0 -4 -4  1 1 0]          [-1/6  -1/6  -1/6 ]            [0 1 -1 2 -2 0]
///         [0  4 -4 -1 1 0]          [-1/6   1/6  -1/6 ]            [0 1  1 4  4 0]
///         [0 -2 -1  2 1 0]          [ 1/24  1/12  1/6 ]            [0 1 -1 8 -8 1]
///         [0  2 -1 -2 1 0]          [ 1/24 -1/12  1/6 ]
///         [0  4  0 -5 0 1]          [ 0     0     1   ]
/// Why these points: simulated in float32 against double (6x6 patches, 64 channels summed, 400
/// trials; the largest error relative to the sum of the |products|), 0, +-1, +-2 gave 1.3e-6,
/// 0, +-1, +-1/2 1.2e-6, and the asymmetric 0, +-1, 1/2, -2 4.5e-7; but only the symmetric sets
/// pair B^T's rows as s + t and s - t, which makes the input transform (the one run per patch
/// and input channel, the costly one) 12 operations per axis against about twice that. The
/// error is the bounded one measured in docs/performance.md ("Winograd convolution").
#include <array>
#include <cstddef>

namespace dagger::winograd {

/// B^T d along one axis of a 4-element input patch, F(2,3).
template <class Ops, class T>
std::array<T, 4> input_f2(Ops& o, const std::array<T, 4>& d) {
  return {o.sub(d[0], d[2]), o.add(d[1], d[2]), o.sub(d[2], d[1]), o.sub(d[1], d[3])};
}

/// G g along one axis of a 3x3 filter, F(2,3): (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2).
template <class Ops, class T>
std::array<T, 4> filter_f2(Ops& o, const std::array<T, 3>& g) {
  const T outer = o.add(g[0], g[2]);
  return {g[0], o.scale(o.add(outer, g[1]), 0.5), o.scale(o.sub(outer, g[1]), 0.5), g[2]};
}

/// A^T m along one axis of a 4x4 block of products, F(2,3): 2 outputs.
template <class Ops, class T>
std::array<T, 2> output_f2(Ops& o, const std::array<T, 4>& m) {
  return {o.add(o.add(m[0], m[1]), m[2]), o.sub(o.sub(m[1], m[2]), m[3])};
}

/// B^T d along one axis of a 6-element input patch, F(4,3): rows 1 and 2 are s -+ t with
/// s = d4 - 4 d2, t = d3 - 4 d1; rows 3 and 4 s' +- 2 t' with s' = d4 - d2, t' = d3 - d1.
template <class Ops, class T>
std::array<T, 6> input_f4(Ops& o, const std::array<T, 6>& d) {
  const T s = o.fma(d[2], -4.0, d[4]), t = o.fma(d[1], -4.0, d[3]);
  const T s2 = o.sub(d[4], d[2]), t2 = o.sub(d[3], d[1]);
  return {o.fma(d[0], 4.0, o.fma(d[2], -5.0, d[4])), o.add(s, t), o.sub(s, t), o.fma(t2, 2.0, s2), o.fma(t2, -2.0, s2),
          o.fma(d[1], 4.0, o.fma(d[3], -5.0, d[5]))};
}

/// G g along one axis of a 3x3 filter, F(4,3): g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6,
/// (g0 + 2 g1 + 4 g2) / 24, (g0 - 2 g1 + 4 g2) / 24, g2.
template <class Ops, class T>
std::array<T, 6> filter_f4(Ops& o, const std::array<T, 3>& g) {
  const T outer = o.add(g[0], g[2]), far = o.fma(g[2], 4.0, g[0]), twice = o.scale(g[1], 2.0);
  return {o.scale(g[0], 0.25),
          o.scale(o.add(outer, g[1]), -1.0 / 6.0),
          o.scale(o.sub(outer, g[1]), -1.0 / 6.0),
          o.scale(o.add(far, twice), 1.0 / 24.0),
          o.scale(o.sub(far, twice), 1.0 / 24.0),
          g[2]};
}

/// A^T m along one axis of a 6x6 block of products, F(4,3): 4 outputs, from the sums and
/// differences of the pairs of points +-1 and +-2.
template <class Ops, class T>
std::array<T, 4> output_f4(Ops& o, const std::array<T, 6>& m) {
  const T s1 = o.add(m[1], m[2]), d1 = o.sub(m[1], m[2]), s2 = o.add(m[3], m[4]), d2 = o.sub(m[3], m[4]);
  return {o.add(o.add(m[0], s1), s2), o.fma(d2, 2.0, d1), o.fma(s2, 4.0, s1), o.add(o.fma(d2, 8.0, d1), m[5])};
}

/// The transforms of F(m x m, 3x3) as one type: Patch = m + 2 input elements per axis.
template <int M>
struct Form;

template <>
struct Form<2> {
  static constexpr size_t Patch = 4;
  template <class Ops, class T>
  static std::array<T, 4> input(Ops& o, const std::array<T, 4>& d) {
    return input_f2(o, d);
  }
  template <class Ops, class T>
  static std::array<T, 4> filter(Ops& o, const std::array<T, 3>& g) {
    return filter_f2(o, g);
  }
  template <class Ops, class T>
  static std::array<T, 2> output(Ops& o, const std::array<T, 4>& m) {
    return output_f2(o, m);
  }
};

template <>
struct Form<4> {
  static constexpr size_t Patch = 6;
  template <class Ops, class T>
  static std::array<T, 6> input(Ops& o, const std::array<T, 6>& d) {
    return input_f4(o, d);
  }
  template <class Ops, class T>
  static std::array<T, 6> filter(Ops& o, const std::array<T, 3>& g) {
    return filter_f4(o, g);
  }
  template <class Ops, class T>
  static std::array<T, 4> output(Ops& o, const std::array<T, 6>& m) {
    return output_f4(o, m);
  }
};

/// Applies `f` (In -> Out values) along the first index of an In x In block, then along the
/// second: the 2-D transform X^T d X from the 1-D one, X^T applied to each column.
template <size_t In, size_t Out, class T, class F>
std::array<std::array<T, Out>, Out> two_d(const std::array<std::array<T, In>, In>& block, F f) {
  std::array<std::array<T, Out>, In> down{};  // f along the rows' index, per column
  for (size_t c = 0; c < In; ++c) {
    std::array<T, In> column;
    for (size_t r = 0; r < In; ++r) column[r] = block[r][c];
    const std::array<T, Out> t = f(column);
    for (size_t r = 0; r < Out; ++r) down[c][r] = t[r];
  }
  std::array<std::array<T, Out>, Out> out{};
  for (size_t r = 0; r < Out; ++r) {
    std::array<T, In> row;
    for (size_t c = 0; c < In; ++c) row[c] = down[c][r];
    out[r] = f(row);
  }
  return out;
}

}  // namespace dagger::winograd
