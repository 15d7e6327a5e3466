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
/// F(4,3), points 0, 1, -1, 1/2, -2:
///   B^T = [1 -3/2 -2    3/2  1   0]    G = [  1      0     0    ]    A^T = [1  1  1  1     1  0]
///         [0 -1    1/2  5/2  1   0]        [  1/3    1/3   1/3  ]          [0  1 -1  1/2  -2  0]
///         [0  1   -5/2  1/2  1   0]        [ -1/3    1/3  -1/3  ]          [0  1  1  1/4   4  0]
///         [0 -2   -1    2    1   0]        [-16/15 -8/15 -4/15  ]          [0  1 -1  1/8  -8  1]
///         [0  1/2 -1   -1/2  1   0]        [  1/15 -2/15  4/15  ]
///         [0  1   -3/2 -2    3/2 1]        [  0      0     1    ]
/// Why these points: simulated in float32 against double (6x6 patches, 64 channels summed, 400
/// trials; the largest error relative to the sum of the |products|), Lavin and Gray's symmetric
/// 0, +-1, +-2 gave 1.3e-6, 0, +-1, +-1/2 1.2e-6, and 0, +-1, 1/2, -2 4.5e-7; in the kernels on
/// cnn3's and rescnn's layers 1.0-1.9e-6 against 0.6-1.0e-6 (tests/codegen/test_winograd_jit.cpp).
/// The price is 16 operations per axis in the input transform instead of 12 (the symmetric
/// sets pair B^T's rows as s + t and s - t) and 12 instead of 10 in the output transform, which
/// did not show in the kernels' times under load (docs/performance.md). The input transform
/// shares the differences d4 - d2 and d3 - d1 between its rows.
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

/// B^T d along one axis of a 6-element input patch, F(4,3): with s = d4 - d2, t = d3 - d1,
/// the rows are d0 + (d4 - 2 d2) + 3/2 t, d4 + d2 / 2 + 5/2 d3 - d1, d4 + d3 / 2 - 5/2 d2 + d1,
/// s + 2 t, s - t / 2 and d5 + d1 + 3/2 s - 2 d3.
template <class Ops, class T>
std::array<T, 6> input_f4(Ops& o, const std::array<T, 6>& d) {
  const T s = o.sub(d[4], d[2]), t = o.sub(d[3], d[1]);
  return {o.add(d[0], o.fma(t, 1.5, o.fma(d[2], -2.0, d[4]))),
          o.sub(o.fma(d[3], 2.5, o.fma(d[2], 0.5, d[4])), d[1]),
          o.add(o.fma(d[2], -2.5, o.fma(d[3], 0.5, d[4])), d[1]),
          o.fma(t, 2.0, s),
          o.fma(t, -0.5, s),
          o.fma(d[3], -2.0, o.fma(s, 1.5, o.add(d[5], d[1])))};
}

/// G g along one axis of a 3x3 filter, F(4,3): g0, (g0 + g1 + g2) / 3, -(g0 - g1 + g2) / 3,
/// -4/15 (4 g0 + 2 g1 + g2), (g0 - 2 g1 + 4 g2) / 15, g2.
template <class Ops, class T>
std::array<T, 6> filter_f4(Ops& o, const std::array<T, 3>& g) {
  const T outer = o.add(g[0], g[2]);
  return {g[0],
          o.scale(o.add(outer, g[1]), 1.0 / 3.0),
          o.scale(o.sub(g[1], outer), 1.0 / 3.0),
          o.scale(o.fma(g[0], 4.0, o.fma(g[1], 2.0, g[2])), -4.0 / 15.0),
          o.scale(o.fma(g[2], 4.0, o.fma(g[1], -2.0, g[0])), 1.0 / 15.0),
          g[2]};
}

/// A^T m along one axis of a 6x6 block of products, F(4,3): 4 outputs, from the sum and the
/// difference of the pair of points +-1.
template <class Ops, class T>
std::array<T, 4> output_f4(Ops& o, const std::array<T, 6>& m) {
  const T s = o.add(m[1], m[2]), d = o.sub(m[1], m[2]);
  return {o.add(o.add(m[0], s), o.add(m[3], m[4])), o.fma(m[4], -2.0, o.fma(m[3], 0.5, d)),
          o.fma(m[4], 4.0, o.fma(m[3], 0.25, s)), o.add(o.fma(m[4], -8.0, o.fma(m[3], 0.125, d)), m[5])};
}

// The filter gradient by the same matrices transposed (codegen/emit_winograd_filter.cpp):
// dw = G^T [ (A dy) * (B^T d) ] along each axis, dy an m-element tile of the output gradient.

/// A y along one axis of a 2-element tile of dy, F(2,3): (y0, y0 + y1, y0 - y1, -y1).
template <class Ops, class T>
std::array<T, 4> gradient_tile_f2(Ops& o, const std::array<T, 2>& y) {
  return {y[0], o.add(y[0], y[1]), o.sub(y[0], y[1]), o.scale(y[1], -1.0)};
}

/// G^T m along one axis of a 4x4 block of products, F(2,3): 3 filter taps,
/// (m0 + (m1 + m2) / 2, (m1 - m2) / 2, (m1 + m2) / 2 + m3).
template <class Ops, class T>
std::array<T, 3> gradient_output_f2(Ops& o, const std::array<T, 4>& m) {
  const T half_sum = o.scale(o.add(m[1], m[2]), 0.5);
  return {o.add(m[0], half_sum), o.scale(o.sub(m[1], m[2]), 0.5), o.add(half_sum, m[3])};
}

/// A y along one axis of a 4-element tile of dy, F(4,3): y0, (y0 + y2) + (y1 + y3),
/// (y0 + y2) - (y1 + y3), y0 + y1 / 2 + y2 / 4 + y3 / 8, y0 - 2 y1 + 4 y2 - 8 y3, y3.
template <class Ops, class T>
std::array<T, 6> gradient_tile_f4(Ops& o, const std::array<T, 4>& y) {
  const T even = o.add(y[0], y[2]), odd = o.add(y[1], y[3]);
  return {y[0],
          o.add(even, odd),
          o.sub(even, odd),
          o.fma(y[3], 0.125, o.fma(y[2], 0.25, o.fma(y[1], 0.5, y[0]))),
          o.fma(y[3], -8.0, o.fma(y[2], 4.0, o.fma(y[1], -2.0, y[0]))),
          y[3]};
}

/// G^T m along one axis of a 6x6 block of products, F(4,3): 3 filter taps, with d = m1 - m2,
/// m0 + d / 3 - 16/15 m3 + m4 / 15, (m1 + m2) / 3 - 8/15 m3 - 2/15 m4 and
/// d / 3 - 4/15 m3 + 4/15 m4 + m5.
template <class Ops, class T>
std::array<T, 3> gradient_output_f4(Ops& o, const std::array<T, 6>& m) {
  const T s = o.add(m[1], m[2]), d = o.sub(m[1], m[2]);
  return {o.add(m[0], o.fma(d, 1.0 / 3.0, o.fma(m[3], -16.0 / 15.0, o.scale(m[4], 1.0 / 15.0)))),
          o.fma(s, 1.0 / 3.0, o.fma(m[3], -8.0 / 15.0, o.scale(m[4], -2.0 / 15.0))),
          o.add(m[5], o.fma(d, 1.0 / 3.0, o.fma(m[3], -4.0 / 15.0, o.scale(m[4], 4.0 / 15.0))))};
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
  template <class Ops, class T>
  static std::array<T, 4> gradient_tile(Ops& o, const std::array<T, 2>& y) {
    return gradient_tile_f2(o, y);
  }
  template <class Ops, class T>
  static std::array<T, 3> gradient_output(Ops& o, const std::array<T, 4>& m) {
    return gradient_output_f2(o, m);
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
  template <class Ops, class T>
  static std::array<T, 6> gradient_tile(Ops& o, const std::array<T, 4>& y) {
    return gradient_tile_f4(o, y);
  }
  template <class Ops, class T>
  static std::array<T, 3> gradient_output(Ops& o, const std::array<T, 6>& m) {
    return gradient_output_f4(o, m);
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
