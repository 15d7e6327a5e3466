// The reference interpreter. Tensors are contiguous row-major xarrays used as plain
// storage: every op is a loop over raw data, so what each op computes is visible at a glance.
#include "dagger/runtime/interpreter.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "dagger/graph/random.h"

namespace dagger {

namespace {

template <class T>
using Array = xt::xarray<T>;

// ---------------------------------------------------------------------------------------
// Shapes and strided iteration.

std::vector<size_t> xshape(const Shape& shape) { return std::vector<size_t>(shape.begin(), shape.end()); }

template <class T>
Shape shape_of(const Array<T>& a) {
  return Shape(a.shape().begin(), a.shape().end());
}

template <class T>
int64_t size_of(const Array<T>& a) {
  return static_cast<int64_t>(a.size());
}

/// A tensor of the given shape filled with `value` (xarray leaves fresh storage uninitialized).
template <class T>
Array<T> filled(const Shape& shape, T value) {
  Array<T> a = Array<T>::from_shape(xshape(shape));
  std::fill(a.data(), a.data() + a.size(), value);
  return a;
}

/// The same elements under another shape of equal size.
template <class T>
Array<T> with_shape(const Array<T>& x, const Shape& shape) {
  Array<T> y = Array<T>::from_shape(xshape(shape));
  std::copy(x.data(), x.data() + x.size(), y.data());
  return y;
}

/// Row-major element strides.
std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

/// Visits every position of `shape` in row-major order as visit(flat_index, offset), where
/// offset = sum(index[d] * strides[d]). Choosing the strides turns this one walk into a
/// gather (broadcast, transpose: a stride of 0 repeats an element) or a scatter (reduce).
template <class F>
void for_each_offset(const Shape& shape, const std::vector<int64_t>& strides, F&& visit) {
  const int64_t total = numel(shape);
  std::vector<int64_t> index(shape.size(), 0);
  int64_t offset = 0;
  for (int64_t i = 0; i < total; ++i) {
    visit(i, offset);
    for (size_t d = shape.size(); d-- > 0;) {  // odometer step: carry into the next axis
      offset += strides[d];
      if (++index[d] < shape[d]) break;
      offset -= strides[d] * shape[d];
      index[d] = 0;
    }
  }
}

/// NumPy broadcasting, materialized.
template <class T>
Array<T> broadcast_to(const Array<T>& x, const Shape& out) {
  const Shape in = shape_of(x);
  const std::vector<int64_t> in_strides = strides_of(in);
  std::vector<int64_t> strides(out.size(), 0);
  const size_t lead = out.size() - in.size();
  for (size_t d = 0; d < in.size(); ++d)
    if (in[d] != 1) strides[lead + d] = in_strides[d];
  Array<T> y = Array<T>::from_shape(xshape(out));
  const T* src = x.data();
  T* dst = y.data();
  for_each_offset(out, strides, [&](int64_t i, int64_t off) { dst[i] = src[off]; });
  return y;
}

/// Output axis i is input axis perm[i].
template <class T>
Array<T> transpose(const Array<T>& x, const std::vector<int64_t>& perm) {
  const Shape in = shape_of(x);
  const std::vector<int64_t> in_strides = strides_of(in);
  Shape out;
  std::vector<int64_t> strides;
  for (int64_t p : perm) {
    out.push_back(in[p]);
    strides.push_back(in_strides[p]);
  }
  Array<T> y = Array<T>::from_shape(xshape(out));
  const T* src = x.data();
  T* dst = y.data();
  for_each_offset(out, strides, [&](int64_t i, int64_t off) { dst[i] = src[off]; });
  return y;
}

// ---------------------------------------------------------------------------------------
// Elementwise ops.

template <class T, class F>
Array<T> map(const Array<T>& x, F f) {
  Array<T> y = Array<T>::from_shape(x.shape());
  const T* a = x.data();
  T* b = y.data();
  for (int64_t i = 0; i < size_of(x); ++i) b[i] = f(a[i]);
  return y;
}

/// Applies f elementwise after broadcasting both operands to their common shape.
template <class T, class F>
Array<T> zip(const Array<T>& x, const Array<T>& y, F f) {
  const Shape out = broadcast_shapes(shape_of(x), shape_of(y));
  Array<T> xb, yb;  // broadcast copies, made only when an operand needs one
  if (shape_of(x) != out) xb = broadcast_to(x, out);
  if (shape_of(y) != out) yb = broadcast_to(y, out);
  const T* a = shape_of(x) != out ? xb.data() : x.data();
  const T* b = shape_of(y) != out ? yb.data() : y.data();
  Array<T> z = Array<T>::from_shape(xshape(out));
  T* c = z.data();
  for (int64_t i = 0; i < size_of(z); ++i) c[i] = f(a[i], b[i]);
  return z;
}

constexpr double kSeluScale = 1.0507009873554805;
constexpr double kSeluAlpha = 1.6732632423543772;

/// The `alpha` attribute of the ops that have one (required there), 0 for the rest.
template <class T>
T alpha_of(const Node& n) {
  const bool has_alpha = n.op == Op::elu || n.op == Op::leaky_relu || n.op == Op::elu_grad || n.op == Op::leaky_relu_grad;
  return has_alpha ? static_cast<T>(n.attrs.f("alpha")) : T(0);
}

/// The dropout key is a float-typed scalar holding an integer below 2^24 (exact in a float).
template <class T>
uint32_t dropout_key(const Array<T>& key) {
  const T k = key();
  if (!(k >= 0 && k < T(1 << 24) && k == std::floor(k)))
    throw Error(fmt::format("dropout key {} is not an integer in [0, 2^24)", static_cast<double>(k)));
  return static_cast<uint32_t>(k);
}

template <class T>
Array<T> dropout(const Node& n, const Array<T>& x, const Array<T>& key_tensor) {
  const uint32_t key = dropout_key(key_tensor);
  const auto salt = static_cast<uint32_t>(n.attrs.i("salt"));
  const auto p = static_cast<float>(n.attrs.f("p"));
  const int64_t offset = dropout_offset(n.attrs);
  const T keep = T(1) - static_cast<T>(p);
  Array<T> y = Array<T>::from_shape(x.shape());
  const T* a = x.data();
  T* b = y.data();
  // The index wraps at 2^32 as the JIT's i32 lanes do.
  for (int64_t i = 0; i < size_of(x); ++i)
    b[i] = dropout_keeps(key, salt, static_cast<uint32_t>(offset + i), p) ? a[i] / keep : T(0);
  return y;
}

// ---------------------------------------------------------------------------------------
// Reductions.

/// Folds every element of x into the output cell it reduces to, starting from `init`. The
/// result keeps the reduced axes as size 1; the caller reshapes it to the node's shape.
template <class T, class F>
Array<T> reduce(const Array<T>& x, const std::vector<int64_t>& axes, T init, F combine) {
  const Shape in = shape_of(x);
  std::vector<size_t> reduced;
  for (int64_t a : axes) reduced.push_back(static_cast<size_t>(a < 0 ? a + static_cast<int64_t>(in.size()) : a));
  Shape kept = in;
  for (size_t d : reduced) kept[d] = 1;
  std::vector<int64_t> strides = strides_of(kept);
  for (size_t d : reduced) strides[d] = 0;  // walking a reduced axis stays on the same output cell
  Array<T> y = filled(kept, init);
  const T* src = x.data();
  T* dst = y.data();
  for_each_offset(in, strides, [&](int64_t i, int64_t off) { dst[off] = combine(dst[off], src[i]); });
  return y;
}

template <class T>
Array<T> reduction(const Node& n, const Array<T>& x) {
  const std::vector<int64_t>& axes = n.attrs.ints("axes");
  Array<T> y;
  if (n.op == Op::reduce_max) {
    y = reduce(x, axes, -std::numeric_limits<T>::infinity(), [](T acc, T v) { return std::max(acc, v); });
  } else {
    y = reduce(x, axes, T(0), [](T acc, T v) { return acc + v; });
    if (n.op == Op::reduce_mean) {
      const T count = static_cast<T>(size_of(x) / std::max<int64_t>(size_of(y), 1));
      y = map(y, [count](T v) { return v / count; });
    }
  }
  return with_shape(y, n.shape);
}

// ---------------------------------------------------------------------------------------
// Contractions.

/// y[0, n) += a * x[0, n). Written in fixed-width chunks because GCC's -O2 cost model only
/// vectorizes loops whose trip count the vector code covers exactly.
template <class T>
void axpy(T a, const T* __restrict x, T* __restrict y, int64_t n) {
  constexpr int64_t kChunk = 8;
  int64_t j = 0;
  for (; j + kChunk <= n; j += kChunk)
    for (int64_t t = 0; t < kChunk; ++t) y[j + t] += a * x[j + t];
  for (; j < n; ++j) y[j] += a * x[j];
}

template <class T>
Array<T> transpose2d(const Array<T>& a) {
  return transpose(a, {1, 0});
}

/// op(A) [M,K] x op(B) [K,N], with op a transpose when the flag is set.
template <class T>
Array<T> matmul(const Node& n, const Array<T>& a, const Array<T>& b) {
  const bool ta = n.attrs.i_or("trans_a", 0) != 0, tb = n.attrs.i_or("trans_b", 0) != 0;
  Array<T> at, bt;  // transposed copies keep the product loop contiguous
  if (ta) at = transpose2d(a);
  if (tb) bt = transpose2d(b);
  const Array<T>& A = ta ? at : a;
  const Array<T>& B = tb ? bt : b;
  const int64_t M = n.shape[0], N = n.shape[1], K = static_cast<int64_t>(A.shape()[1]);
  Array<T> c = filled(n.shape, T(0));
  const T* pa = A.data();
  const T* pb = B.data();
  T* pc = c.data();
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) axpy(pa[i * K + k], pb + k * N, pc + i * N, N);
  return c;
}

/// Sizes of one convolution: input x [n,c,h,w], filter [o,c,kh,kw], output [n,o,oh,ow].
struct ConvGeom {
  int64_t n, c, h, w, o, kh, kw, oh, ow, stride, pad;
};

ConvGeom conv_geom(const Shape& x, const Shape& w, const Attrs& at) {
  const int64_t stride = at.i("stride"), pad = at.i("pad");
  return {x[0], x[1], x[2], x[3], w[0], w[2], w[3],
          (x[2] + 2 * pad - w[2]) / stride + 1, (x[3] + 2 * pad - w[3]) / stride + 1, stride, pad};
}

/// The output positions [lo, hi) whose input coordinate pos*stride - pad + k lies inside
/// [0, in): the rest read zero padding and contribute nothing.
std::pair<int64_t, int64_t> valid_outputs(int64_t k, int64_t stride, int64_t pad, int64_t in, int64_t out) {
  const int64_t first = pad - k, last = in - 1 + pad - k;  // bounds on pos*stride
  if (last < 0) return {0, 0};
  const int64_t lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t hi = std::min(out, last / stride + 1);
  return {lo, std::max(lo, hi)};
}

/// One output row of one filter tap: output column q (lo <= q < hi) of the row starting at
/// y pairs with input element x + q*stride, weighted by filter element w.
struct ConvRow {
  int64_t x, w, y, lo, hi;
};

/// Calls row(ConvRow) for every (image, out channel, in channel, tap, output row) that reads
/// inside the input. Forward and both backward products are this walk with a different body.
template <class F>
void for_each_conv_row(const ConvGeom& g, F&& row) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j) {
            const auto [rlo, rhi] = valid_outputs(i, g.stride, g.pad, g.h, g.oh);
            const auto [qlo, qhi] = valid_outputs(j, g.stride, g.pad, g.w, g.ow);
            const int64_t w_index = ((o * g.c + c) * g.kh + i) * g.kw + j;
            for (int64_t r = rlo; r < rhi; ++r) {
              const int64_t in_row = r * g.stride - g.pad + i;
              row(ConvRow{((n * g.c + c) * g.h + in_row) * g.w + j - g.pad, w_index,
                          ((n * g.o + o) * g.oh + r) * g.ow, qlo, qhi});
            }
          }
}

template <class T>
Array<T> conv2d(const Node& n, const Array<T>& x, const Array<T>& w) {
  const ConvGeom g = conv_geom(shape_of(x), shape_of(w), n.attrs);
  Array<T> y = filled(n.shape, T(0));
  const T* px = x.data();
  const T* pw = w.data();
  T* py = y.data();
  for_each_conv_row(g, [&](const ConvRow& r) {
    if (g.stride == 1) {
      axpy(pw[r.w], px + r.x + r.lo, py + r.y + r.lo, r.hi - r.lo);
    } else {
      for (int64_t q = r.lo; q < r.hi; ++q) py[r.y + q] += pw[r.w] * px[r.x + q * g.stride];
    }
  });
  return y;
}

/// The adjoint of conv2d in x: scatters each dy back through the taps that produced it.
template <class T>
Array<T> conv2d_backward_data(const Node& n, const Array<T>& dy, const Array<T>& w) {
  const ConvGeom g = conv_geom(n.shape, shape_of(w), n.attrs);
  Array<T> dx = filled(n.shape, T(0));
  const T* pdy = dy.data();
  const T* pw = w.data();
  T* pdx = dx.data();
  for_each_conv_row(g, [&](const ConvRow& r) {
    for (int64_t q = r.lo; q < r.hi; ++q) pdx[r.x + q * g.stride] += pw[r.w] * pdy[r.y + q];
  });
  return dx;
}

/// The adjoint of conv2d in w: each filter tap correlates the input it saw with dy.
template <class T>
Array<T> conv2d_backward_filter(const Node& n, const Array<T>& x, const Array<T>& dy) {
  const ConvGeom g = conv_geom(shape_of(x), n.shape, n.attrs);
  Array<T> dw = filled(n.shape, T(0));
  const T* px = x.data();
  const T* pdy = dy.data();
  T* pdw = dw.data();
  for_each_conv_row(g, [&](const ConvRow& r) {
    T sum = 0;
    for (int64_t q = r.lo; q < r.hi; ++q) sum += px[r.x + q * g.stride] * pdy[r.y + q];
    pdw[r.w] += sum;
  });
  return dw;
}

// ---------------------------------------------------------------------------------------
// Max pooling.

/// Sizes of a valid (unpadded) pooling over `planes` = N*C images of h x w.
struct PoolGeom {
  int64_t planes, h, w, oh, ow, window, stride;
};

PoolGeom pool_geom(const Shape& x, const Attrs& at) {
  const int64_t window = at.i("window"), stride = at.i("stride");
  return {x[0] * x[1], x[2], x[3], (x[2] - window) / stride + 1, (x[3] - window) / stride + 1, window, stride};
}

/// Flat index into x of the first maximum, in row-major window order, of output (p, r, q).
template <class T>
int64_t window_argmax(const T* x, const PoolGeom& g, int64_t p, int64_t r, int64_t q) {
  const int64_t origin = (p * g.h + r * g.stride) * g.w + q * g.stride;
  int64_t best = origin;
  for (int64_t i = 0; i < g.window; ++i)
    for (int64_t j = 0; j < g.window; ++j) {
      const int64_t at = origin + i * g.w + j;
      if (x[at] > x[best]) best = at;  // strict: ties keep the earlier position
    }
  return best;
}

/// Calls visit(output flat index, argmax flat index) for every pooling window.
template <class T, class F>
void for_each_window(const Array<T>& x, const PoolGeom& g, F&& visit) {
  int64_t out = 0;
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t r = 0; r < g.oh; ++r)
      for (int64_t q = 0; q < g.ow; ++q) visit(out++, window_argmax(x.data(), g, p, r, q));
}

template <class T>
Array<T> maxpool2d(const Node& n, const Array<T>& x) {
  Array<T> y = Array<T>::from_shape(xshape(n.shape));
  for_each_window(x, pool_geom(shape_of(x), n.attrs), [&](int64_t out, int64_t at) { y.data()[out] = x.data()[at]; });
  return y;
}

template <class T>
Array<T> maxpool2d_backward(const Node& n, const Array<T>& x, const Array<T>& dy) {
  Array<T> dx = filled(n.shape, T(0));
  for_each_window(x, pool_geom(shape_of(x), n.attrs),
                  [&](int64_t out, int64_t at) { dx.data()[at] += dy.data()[out]; });
  return dx;
}

// ---------------------------------------------------------------------------------------
// Batch normalization: x viewed as [batch, channels, inner], statistics per channel.
// Sums accumulate in double so the oracle is at least as accurate as any kernel.

struct ChannelView {
  int64_t batch, channels, inner;
  int64_t count() const { return batch * inner; }
  int64_t at(int64_t b, int64_t c, int64_t k) const { return (b * channels + c) * inner + k; }
};

ChannelView channel_view(const Shape& x) { return {x[0], x[1], numel(x) / std::max<int64_t>(x[0] * x[1], 1)}; }

/// Calls f(flat index) for every element of channel c.
template <class F>
void for_each_in_channel(const ChannelView& v, int64_t c, F&& f) {
  for (int64_t b = 0; b < v.batch; ++b)
    for (int64_t k = 0; k < v.inner; ++k) f(v.at(b, c, k));
}

/// Per-channel mean and biased variance (two passes, so no cancellation).
template <class T>
std::pair<std::vector<double>, std::vector<double>> channel_stats(const Array<T>& x) {
  const ChannelView v = channel_view(shape_of(x));
  const T* px = x.data();
  std::vector<double> mean(v.channels, 0.0), var(v.channels, 0.0);
  for (int64_t c = 0; c < v.channels; ++c) {
    for_each_in_channel(v, c, [&](int64_t i) { mean[c] += px[i]; });
    mean[c] /= static_cast<double>(v.count());
    for_each_in_channel(v, c, [&](int64_t i) { var[c] += (px[i] - mean[c]) * (px[i] - mean[c]); });
    var[c] /= static_cast<double>(v.count());
  }
  return {mean, var};
}

template <class T>
Array<T> to_channel_tensor(const std::vector<double>& values) {
  Array<T> y = Array<T>::from_shape(std::vector<size_t>{values.size()});
  std::transform(values.begin(), values.end(), y.data(), [](double v) { return static_cast<T>(v); });
  return y;
}

template <class T>
std::vector<double> to_doubles(const Array<T>& a) {
  return std::vector<double>(a.data(), a.data() + a.size());
}

/// gamma * (x - mean) / sqrt(var + eps) + beta, per channel.
template <class T>
Array<T> normalize(const Array<T>& x, const Array<T>& gamma, const Array<T>& beta, const std::vector<double>& mean,
                   const std::vector<double>& var, double eps) {
  const ChannelView v = channel_view(shape_of(x));
  Array<T> y = Array<T>::from_shape(x.shape());
  for (int64_t c = 0; c < v.channels; ++c) {
    const double rstd = 1.0 / std::sqrt(var[c] + eps);
    for_each_in_channel(v, c, [&](int64_t i) {
      y.data()[i] = static_cast<T>(gamma.data()[c] * (x.data()[i] - mean[c]) * rstd + beta.data()[c]);
    });
  }
  return y;
}

template <class T>
Array<T> batchnorm_train(const Node& n, const Array<T>& x, const Array<T>& gamma, const Array<T>& beta) {
  const auto [mean, var] = channel_stats(x);
  return normalize(x, gamma, beta, mean, var, n.attrs.f("eps"));
}

template <class T>
Array<T> batchnorm_infer(const Node& n, const Array<T>& x, const Array<T>& gamma, const Array<T>& beta,
                         const Array<T>& mean, const Array<T>& var) {
  return normalize(x, gamma, beta, to_doubles(mean), to_doubles(var), n.attrs.f("eps"));
}

/// Per-channel sums of dy and of dy * xhat, the two statistics the backward pass needs.
template <class T>
std::pair<std::vector<double>, std::vector<double>> grad_sums(const Array<T>& x, const Array<T>& dy,
                                                              const std::vector<double>& mean,
                                                              const std::vector<double>& var, double eps) {
  const ChannelView v = channel_view(shape_of(x));
  std::vector<double> sum_dy(v.channels, 0.0), sum_dy_xhat(v.channels, 0.0);
  for (int64_t c = 0; c < v.channels; ++c) {
    const double rstd = 1.0 / std::sqrt(var[c] + eps);
    for_each_in_channel(v, c, [&](int64_t i) {
      sum_dy[c] += dy.data()[i];
      sum_dy_xhat[c] += dy.data()[i] * (x.data()[i] - mean[c]) * rstd;
    });
  }
  return {sum_dy, sum_dy_xhat};
}

/// dx = gamma * rstd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat)), the gradient through
/// the normalization and the batch statistics both.
template <class T>
Array<T> batchnorm_backward(const Node& n, const Array<T>& x, const Array<T>& gamma, const Array<T>& dy) {
  const double eps = n.attrs.f("eps");
  const ChannelView v = channel_view(shape_of(x));
  const auto [mean, var] = channel_stats(x);
  const auto [sum_dy, sum_dy_xhat] = grad_sums(x, dy, mean, var, eps);
  const auto m = static_cast<double>(v.count());
  Array<T> dx = Array<T>::from_shape(x.shape());
  for (int64_t c = 0; c < v.channels; ++c) {
    const double rstd = 1.0 / std::sqrt(var[c] + eps);
    const double factor = gamma.data()[c] * rstd / m;
    for_each_in_channel(v, c, [&](int64_t i) {
      const double xhat = (x.data()[i] - mean[c]) * rstd;
      dx.data()[i] = static_cast<T>(factor * (m * dy.data()[i] - sum_dy[c] - xhat * sum_dy_xhat[c]));
    });
  }
  return dx;
}

template <class T>
Array<T> batchnorm_grad_gamma(const Node& n, const Array<T>& x, const Array<T>& dy) {
  const auto [mean, var] = channel_stats(x);
  return to_channel_tensor<T>(grad_sums(x, dy, mean, var, n.attrs.f("eps")).second);
}

template <class T>
Array<T> channel_mean(const Array<T>& x) {
  return to_channel_tensor<T>(channel_stats(x).first);
}

template <class T>
Array<T> channel_var(const Array<T>& x) {
  return to_channel_tensor<T>(channel_stats(x).second);
}

// ---------------------------------------------------------------------------------------
// Classification heads, row-wise over the last axis.

/// log(sum(exp(row))), shifted by the row's max so nothing overflows.
template <class T>
double logsumexp(const T* row, int64_t k) {
  const double top = *std::max_element(row, row + k);
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += std::exp(row[j] - top);
  return top + std::log(sum);
}

template <class T>
Array<T> softmax(const Array<T>& x) {
  const int64_t k = static_cast<int64_t>(x.shape().back());
  const int64_t rows = k > 0 ? size_of(x) / k : 0;
  Array<T> y = Array<T>::from_shape(x.shape());
  for (int64_t r = 0; r < rows; ++r) {
    const T* in = x.data() + r * k;
    const double lse = logsumexp(in, k);
    for (int64_t j = 0; j < k; ++j) y.data()[r * k + j] = static_cast<T>(std::exp(in[j] - lse));
  }
  return y;
}

/// The class id a float label holds; anything else is the user's data error.
template <class T>
int64_t class_of(T label, int64_t classes, int64_t row) {
  if (!(label >= 0 && label < static_cast<T>(classes) && label == std::floor(label)))
    throw Error(fmt::format("label {} of row {} is not a class id in [0, {})", static_cast<double>(label), row, classes));
  return static_cast<int64_t>(label);
}

/// mean over rows of -log softmax(logits)[label]; with label smoothing E > 0, of
/// (1-E) (-log softmax[label]) + E mean_k(-log softmax[k]) = lse - (1-E) x[label] - E mean_k x[k].
template <class T>
Array<T> softmax_xent(const Array<T>& logits, const Array<T>& labels, double smoothing) {
  const int64_t rows = static_cast<int64_t>(logits.shape()[0]), k = static_cast<int64_t>(logits.shape()[1]);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = logits.data() + r * k;
    const double lse = logsumexp(row, k);
    const double target = row[class_of(labels.data()[r], k, r)];
    if (smoothing == 0) {
      total += lse - target;
      continue;
    }
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += row[j];
    total += (1 - smoothing) * (lse - target) + smoothing * (lse - sum / static_cast<double>(k));
  }
  return filled<T>({}, static_cast<T>(total / static_cast<double>(rows)));
}

/// g * (softmax(logits) - onehot(labels)) / N; with smoothing E the target is (1-E) onehot + E/K.
template <class T>
Array<T> softmax_xent_grad(const Array<T>& logits, const Array<T>& labels, const Array<T>& g, double smoothing) {
  const int64_t rows = static_cast<int64_t>(logits.shape()[0]), k = static_cast<int64_t>(logits.shape()[1]);
  Array<T> dx = softmax(logits);
  const T scale = g() / static_cast<T>(rows);
  const T spread = static_cast<T>(smoothing) / static_cast<T>(k), hit = T(1) - static_cast<T>(smoothing);
  for (int64_t r = 0; r < rows; ++r) {
    T* row = dx.data() + r * k;
    if (smoothing != 0)
      for (int64_t j = 0; j < k; ++j) row[j] -= spread;
    row[class_of(labels.data()[r], k, r)] -= hit;
    for (int64_t j = 0; j < k; ++j) row[j] *= scale;
  }
  return dx;
}

// ---------------------------------------------------------------------------------------
// Dispatch.

template <class T>
using Operands = std::vector<const Array<T>*>;

/// Reads a source's tensor from `map`, checking it exists and has the declared shape.
template <class T>
const Array<T>& lookup(const TensorMap<T>& map, const Node& n, std::string_view what) {
  const std::string& name = n.attrs.s("name");
  auto it = map.find(name);
  if (it == map.end())
    throw Error(fmt::format("missing {} '{}' (expected shape {})", what, name, to_string(n.shape)));
  if (shape_of(it->second) != n.shape)
    throw Error(fmt::format("{} '{}' has shape {} but the graph expects {}", what, name, to_string(shape_of(it->second)),
                            to_string(n.shape)));
  return it->second;
}

/// The interpreter rule of every op: one case per op, in table order.
template <class T>
Array<T> evaluate(const Node& n, const Operands<T>& in, const TensorMap<T>& feeds, const TensorMap<T>& state) {
  auto x = [&](size_t k) -> const Array<T>& { return *in[k]; };
  const T alpha = alpha_of<T>(n);
  const T scale = static_cast<T>(kSeluScale), selu_alpha = static_cast<T>(kSeluAlpha);
  switch (n.op) {
    case Op::input: return lookup(feeds, n, "feed");
    case Op::parameter: return lookup(state, n, "parameter");
    case Op::state: return lookup(state, n, "state");
    case Op::constant: return filled(n.shape, static_cast<T>(n.attrs.f("value")));
    case Op::neg: return map(x(0), [](T v) { return -v; });
    case Op::exp: return map(x(0), [](T v) { return std::exp(v); });
    case Op::log: return map(x(0), [](T v) { return std::log(v); });
    case Op::sqrt: return map(x(0), [](T v) { return std::sqrt(v); });
    case Op::relu: return map(x(0), [](T v) { return v > 0 ? v : T(0); });
    case Op::tanh: return map(x(0), [](T v) { return std::tanh(v); });
    case Op::sigmoid: return map(x(0), [](T v) { return T(1) / (T(1) + std::exp(-v)); });
    case Op::elu: return map(x(0), [=](T v) { return v > 0 ? v : alpha * std::expm1(v); });
    case Op::selu: return map(x(0), [=](T v) { return scale * (v > 0 ? v : selu_alpha * std::expm1(v)); });
    case Op::leaky_relu: return map(x(0), [=](T v) { return v > 0 ? v : alpha * v; });
    case Op::add: return zip(x(0), x(1), [](T u, T v) { return u + v; });
    case Op::sub: return zip(x(0), x(1), [](T u, T v) { return u - v; });
    case Op::mul: return zip(x(0), x(1), [](T u, T v) { return u * v; });
    case Op::div: return zip(x(0), x(1), [](T u, T v) { return u / v; });
    case Op::pow: return zip(x(0), x(1), [](T u, T v) { return std::pow(u, v); });
    // Activation gradients take (x, dy).
    case Op::relu_grad: return zip(x(0), x(1), [](T v, T dy) { return v > 0 ? dy : T(0); });
    case Op::elu_grad: return zip(x(0), x(1), [=](T v, T dy) { return dy * (v > 0 ? T(1) : alpha * std::exp(v)); });
    case Op::selu_grad:
      return zip(x(0), x(1), [=](T v, T dy) { return dy * scale * (v > 0 ? T(1) : selu_alpha * std::exp(v)); });
    case Op::leaky_relu_grad: return zip(x(0), x(1), [=](T v, T dy) { return dy * (v > 0 ? T(1) : alpha); });
    case Op::dropout: return dropout(n, x(0), x(1));
    case Op::reshape: return with_shape(x(0), n.shape);
    case Op::transpose: return transpose(x(0), n.attrs.ints("perm"));
    case Op::broadcast: return broadcast_to(x(0), n.shape);
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max: return reduction(n, x(0));
    case Op::matmul: return matmul(n, x(0), x(1));
    case Op::conv2d: return conv2d(n, x(0), x(1));
    case Op::conv2d_backward_data: return conv2d_backward_data(n, x(0), x(1));
    case Op::conv2d_backward_filter: return conv2d_backward_filter(n, x(0), x(1));
    case Op::maxpool2d: return maxpool2d(n, x(0));
    case Op::maxpool2d_backward: return maxpool2d_backward(n, x(0), x(1));
    case Op::batchnorm_train: return batchnorm_train(n, x(0), x(1), x(2));
    case Op::batchnorm_infer: return batchnorm_infer(n, x(0), x(1), x(2), x(3), x(4));
    case Op::batchnorm_backward: return batchnorm_backward(n, x(0), x(1), x(2));
    case Op::batchnorm_grad_gamma: return batchnorm_grad_gamma(n, x(0), x(1));
    case Op::channel_mean: return channel_mean(x(0));
    case Op::channel_var: return channel_var(x(0));
    case Op::softmax: return softmax(x(0));
    case Op::softmax_xent: return softmax_xent(x(0), x(1), n.attrs.f_or("smoothing", 0));
    case Op::softmax_xent_grad: return softmax_xent_grad(x(0), x(1), x(2), n.attrs.f_or("smoothing", 0));
    case Op::assign: return x(0);  // an assign holds the value it will write
  }
  throw Error(fmt::format("the interpreter has no rule for op value {}: it is outside the op table",
                          static_cast<int>(n.op)));
}

/// Evaluates one node, prefixing any error with the node and the model line that declared it,
/// and checking the result against the shape the graph recorded.
template <class T>
Array<T> evaluate_node(const Node& n, const std::vector<Array<T>>& values, const TensorMap<T>& feeds,
                       const TensorMap<T>& state) {
  Operands<T> in;
  for (NodeId o : n.operands) in.push_back(&values[o]);
  Array<T> result;
  try {
    result = evaluate(n, in, feeds, state);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: %{} = {}: {}", describe(n.where), n.id, op_info(n.op).name, e.what()));
  }
  if (shape_of(result) != n.shape)
    throw Error(fmt::format("{}: %{} = {}: the interpreter produced shape {} but the graph records {}",
                            describe(n.where), n.id, op_info(n.op).name, to_string(shape_of(result)),
                            to_string(n.shape)));
  return result;
}

/// For each node, the last node that reads it; outputs are read "after the end".
std::vector<NodeId> last_uses(const Graph& g) {
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::vector<NodeId> last(g.size(), -1);
  for (const Node& n : g.nodes())
    if (!readers[n.id].empty()) last[n.id] = readers[n.id].back();
  for (const auto& [name, id] : g.outputs()) last[id] = static_cast<NodeId>(g.size());
  return last;
}

/// Runs every node in order. Unless keep_all, a value is freed right after its last reader,
/// so a training step holds only the live activations.
template <class T>
std::vector<Array<T>> run(const Graph& g, const TensorMap<T>& feeds, const TensorMap<T>& state, bool keep_all) {
  const std::vector<NodeId> last = last_uses(g);
  std::vector<Array<T>> values(g.size());
  for (const Node& n : g.nodes()) {
    values[n.id] = evaluate_node(n, values, feeds, state);
    if (keep_all) continue;
    for (NodeId o : n.operands)
      if (last[o] == n.id) values[o] = Array<T>();
  }
  return values;
}

}  // namespace

template <class T>
TensorMap<T> interpret(const Graph& g, const TensorMap<T>& feeds, TensorMap<T>& state) {
  std::vector<Array<T>> values = run(g, feeds, state, false);
  TensorMap<T> outputs;
  for (const auto& [name, id] : g.outputs()) outputs[name] = values[id];
  for (NodeId id : g.nodes_of(Op::assign)) state[g.node(id).attrs.s("target")] = std::move(values[id]);
  return outputs;
}

template <class T>
std::vector<xt::xarray<T>> interpret_all(const Graph& g, const TensorMap<T>& feeds, const TensorMap<T>& state) {
  return run(g, feeds, state, true);
}

template TensorMap<float> interpret(const Graph&, const TensorMap<float>&, TensorMap<float>&);
template TensorMap<double> interpret(const Graph&, const TensorMap<double>&, TensorMap<double>&);
template std::vector<xt::xarray<float>> interpret_all(const Graph&, const TensorMap<float>&, const TensorMap<float>&);
template std::vector<xt::xarray<double>> interpret_all(const Graph&, const TensorMap<double>&, const TensorMap<double>&);

}  // namespace dagger
