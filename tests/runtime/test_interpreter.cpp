// The reference interpreter against hand-computed values, adjoint identities and finite
// differences; the dropout mask; state initialization.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <random>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xview.hpp>

#include "dagger/graph/dsl.h"
#include "dagger/graph/random.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/interpreter.h"

using namespace dagger;

namespace {

using Ints = std::vector<int64_t>;

template <class T = float>
xt::xarray<T> tensor(const Shape& shape, std::vector<T> values) {
  xt::xarray<T> t = xt::xarray<T>::from_shape(std::vector<size_t>(shape.begin(), shape.end()));
  REQUIRE(values.size() == t.size());
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

/// 0, 1, 2, ... in the given shape.
template <class T = float>
xt::xarray<T> iota(const Shape& shape) {
  std::vector<T> v(static_cast<size_t>(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(i);
  return tensor<T>(shape, v);
}

/// Uniform(-1, 1) values from a fixed seed.
xt::xarray<double> random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<double> v(static_cast<size_t>(numel(shape)));
  for (double& x : v) x = static_cast<double>(rng()) / 4294967296.0 * 2.0 - 1.0;
  return tensor<double>(shape, v);
}

template <class T>
std::vector<T> values(const xt::xarray<T>& t) {
  return std::vector<T>(t.data(), t.data() + t.size());
}

template <class T>
Shape shape_of(const xt::xarray<T>& t) {
  return Shape(t.shape().begin(), t.shape().end());
}

template <class T>
void check_close(const xt::xarray<T>& got, const Shape& shape, const std::vector<double>& want, double tol = 1e-5) {
  REQUIRE(shape_of(got) == shape);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(static_cast<double>(got.data()[i]) == Approx(want[i]).margin(tol));
  }
}

template <class T>
double dot(const xt::xarray<T>& a, const xt::xarray<T>& b) {
  REQUIRE(a.size() == b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a.data()[i]) * static_cast<double>(b.data()[i]);
  return s;
}

NodeId input(Graph& g, const std::string& name, Shape shape) {
  return g.add(Op::input, {}, {{"name", name}, {"shape", shape}});
}

/// Builds a graph of `op` over fresh inputs a, b, c, ... fed with `args`, and evaluates it.
template <class T>
xt::xarray<T> apply(Op op, const std::vector<xt::xarray<T>>& args, Attrs attrs = {}) {
  Graph g;
  TensorMap<T> feeds;
  std::vector<NodeId> ids;
  for (size_t k = 0; k < args.size(); ++k) {
    const std::string name(1, static_cast<char>('a' + k));
    ids.push_back(input(g, name, shape_of(args[k])));
    feeds[name] = args[k];
  }
  const NodeId out = g.add(op, ids, std::move(attrs));
  return interpret_all<T>(g, feeds, {})[out];
}

xt::xarray<float> apply1(Op op, const xt::xarray<float>& x, Attrs attrs = {}) { return apply<float>(op, {x}, std::move(attrs)); }

Attrs conv_attrs(int64_t stride, int64_t pad, const Shape& shape = {}) {
  Attrs a{{"stride", stride}, {"pad", pad}};
  if (!shape.empty()) a.set("shape", shape);
  return a;
}

/// conv2d straight from its definition, bounds checked per tap.
xt::xarray<double> naive_conv(const xt::xarray<double>& x, const xt::xarray<double>& w, int64_t stride, int64_t pad) {
  const auto N = static_cast<int64_t>(x.shape()[0]), C = static_cast<int64_t>(x.shape()[1]);
  const auto H = static_cast<int64_t>(x.shape()[2]), W = static_cast<int64_t>(x.shape()[3]);
  const auto O = static_cast<int64_t>(w.shape()[0]), KH = static_cast<int64_t>(w.shape()[2]);
  const auto KW = static_cast<int64_t>(w.shape()[3]);
  const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  xt::xarray<double> y = xt::xarray<double>::from_shape({size_t(N), size_t(O), size_t(OH), size_t(OW)});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t r = 0; r < OH; ++r)
        for (int64_t q = 0; q < OW; ++q) {
          double s = 0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t h = r * stride - pad + i, v = q * stride - pad + j;
                if (h >= 0 && h < H && v >= 0 && v < W) s += x(n, c, h, v) * w(o, c, i, j);
              }
          y(n, o, r, q) = s;
        }
  return y;
}

/// Runs `f`, expecting a dagger::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
    return;
  }
  FAIL("no dagger::Error was thrown");
}

}  // namespace

TEST_CASE("binary ops broadcast NumPy-style", "[interpreter]") {
  const auto a = tensor({3, 1}, {1, 2, 3});
  const auto b = tensor({4}, {10, 20, 30, 40});
  check_close(apply<float>(Op::add, {a, b}), {3, 4}, {11, 21, 31, 41, 12, 22, 32, 42, 13, 23, 33, 43});
  check_close(apply<float>(Op::mul, {a, b}), {3, 4}, {10, 20, 30, 40, 20, 40, 60, 80, 30, 60, 90, 120});
  check_close(apply<float>(Op::sub, {b, a}), {3, 4}, {9, 19, 29, 39, 8, 18, 28, 38, 7, 17, 27, 37});
  check_close(apply<float>(Op::div, {tensor({2}, {1, 9}), tensor({}, {2})}), {2}, {0.5, 4.5});
  check_close(apply<float>(Op::pow, {tensor({2}, {2, 3}), tensor({2}, {3, 2})}), {2}, {8, 9});
}

TEST_CASE("activations and their derivatives at a few points", "[interpreter]") {
  const auto x = tensor({4}, {-2, -0.5f, 0, 1.5f});
  const auto dy = tensor({4}, {1, 2, 3, 4});
  const Attrs elu_alpha{{"alpha", 1.0}}, leaky_alpha{{"alpha", 0.3}};
  check_close(apply1(Op::neg, x), {4}, {2, 0.5, 0, -1.5});
  check_close(apply1(Op::relu, x), {4}, {0, 0, 0, 1.5});
  check_close(apply1(Op::tanh, x), {4}, {-0.9640275801, -0.4621171573, 0, 0.9051482536});
  check_close(apply1(Op::sigmoid, x), {4}, {0.1192029220, 0.3775406688, 0.5, 0.8175744762});
  check_close(apply1(Op::elu, x, elu_alpha), {4}, {-0.8646647168, -0.3934693403, 0, 1.5});
  check_close(apply1(Op::selu, x), {4}, {-1.5201664686, -0.6917581878, 0, 1.5760514810});
  check_close(apply1(Op::leaky_relu, x, leaky_alpha), {4}, {-0.6, -0.15, 0, 1.5});
  const auto pos = tensor({3}, {0.25f, 1, 4});
  check_close(apply1(Op::exp, pos), {3}, {1.2840254167, 2.7182818285, 54.5981500331}, 1e-4);
  check_close(apply1(Op::log, pos), {3}, {-1.3862943611, 0, 1.3862943611});
  check_close(apply1(Op::sqrt, pos), {3}, {0.5, 1, 2});

  check_close(apply<float>(Op::relu_grad, {x, dy}), {4}, {0, 0, 0, 4});
  check_close(apply<float>(Op::elu_grad, {x, dy}, elu_alpha), {4}, {0.1353352832, 2 * 0.6065306597, 3, 4});
  const double sa = 1.0507009873554805 * 1.6732632423543772;
  check_close(apply<float>(Op::selu_grad, {x, dy}), {4},
              {sa * 0.1353352832, 2 * sa * 0.6065306597, 3 * sa, 4 * 1.0507009873554805});
  check_close(apply<float>(Op::leaky_relu_grad, {x, dy}, leaky_alpha), {4}, {0.3, 0.6, 0.9, 4});
}

TEST_CASE("layout ops move elements as documented", "[interpreter]") {
  const auto x = iota({2, 3});
  check_close(apply1(Op::reshape, x, {{"shape", Ints{3, -1}}}), {3, 2}, {0, 1, 2, 3, 4, 5});
  check_close(apply1(Op::transpose, x, {{"perm", Ints{1, 0}}}), {3, 2}, {0, 3, 1, 4, 2, 5});
  // out axis i = in axis perm[i]: [2,3,4] with perm {2,0,1} is [4,2,3], out(k,i,j) = in(i,j,k).
  const auto y = apply1(Op::transpose, iota({2, 3, 4}), {{"perm", Ints{2, 0, 1}}});
  REQUIRE(shape_of(y) == Shape{4, 2, 3});
  CHECK(y(3, 1, 2) == 12 * 1 + 4 * 2 + 3);
  check_close(apply1(Op::broadcast, tensor({3, 1}, {1, 2, 3}), {{"shape", Ints{2, 3, 2}}}), {2, 3, 2},
              {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
}

TEST_CASE("reductions honour negative axes and keepdims", "[interpreter]") {
  const auto x = iota({2, 3, 4});  // x(i,j,k) = 12i + 4j + k
  check_close(apply1(Op::reduce_sum, x, {{"axes", Ints{0, -1}}, {"keepdims", int64_t(1)}}), {1, 3, 1}, {60, 92, 124});
  check_close(apply1(Op::reduce_sum, x, {{"axes", Ints{0, 1, 2}}, {"keepdims", int64_t(0)}}), {}, {276});
  check_close(apply1(Op::reduce_mean, x, {{"axes", Ints{1}}, {"keepdims", int64_t(0)}}), {2, 4},
              {4, 5, 6, 7, 16, 17, 18, 19});
  check_close(apply1(Op::reduce_max, x, {{"axes", Ints{-2}}, {"keepdims", int64_t(1)}}), {2, 1, 4},
              {8, 9, 10, 11, 20, 21, 22, 23});
  check_close(apply1(Op::reduce_max, tensor({2, 2}, {-5, -7, -9, -1}), {{"axes", Ints{1}}}), {2}, {-5, -1});
}

TEST_CASE("matmul with every transpose flag", "[interpreter]") {
  const auto a = tensor({2, 3}, {1, 2, 3, 4, 5, 6});
  const xt::xarray<float> b = iota({3, 4}) + 1.0f;
  const xt::xarray<float> at = xt::transpose(a), bt = xt::transpose(b);
  const std::vector<double> want{38, 44, 50, 56, 83, 98, 113, 128};
  auto flags = [](int64_t ta, int64_t tb) { return Attrs{{"trans_a", ta}, {"trans_b", tb}}; };
  check_close(apply<float>(Op::matmul, {a, b}, flags(0, 0)), {2, 4}, want);
  check_close(apply<float>(Op::matmul, {at, b}, flags(1, 0)), {2, 4}, want);
  check_close(apply<float>(Op::matmul, {a, bt}, flags(0, 1)), {2, 4}, want);
  check_close(apply<float>(Op::matmul, {at, bt}, flags(1, 1)), {2, 4}, want);
}

TEST_CASE("matmul agrees with a dot product per cell on a size past the vector width", "[interpreter]") {
  const auto a = random_tensor({5, 19}, 1), b = random_tensor({19, 13}, 2);
  const auto c = apply<double>(Op::matmul, {a, b});
  for (size_t i = 0; i < 5; ++i)
    for (size_t j = 0; j < 13; ++j) {
      double s = 0;
      for (size_t k = 0; k < 19; ++k) s += a(i, k) * b(k, j);
      CHECK(c(i, j) == Approx(s).margin(1e-12));
    }
}

TEST_CASE("conv2d with padding and stride matches hand values", "[interpreter]") {
  const xt::xarray<float> x = iota({1, 1, 4, 4}) + 1.0f;
  const xt::xarray<float> w = iota({1, 1, 3, 3}) + 1.0f;
  check_close(apply<float>(Op::conv2d, {x, w}, conv_attrs(2, 1)), {1, 1, 2, 2}, {111, 217, 363, 573});
}

TEST_CASE("conv2d matches its definition and its backward ops are its exact adjoints", "[interpreter]") {
  const Shape xs{2, 3, 7, 5}, ws{4, 3, 3, 3};
  for (int64_t stride : {1, 2}) {
    for (int64_t pad : {0, 1}) {
      INFO("stride " << stride << " pad " << pad);
      const auto x = random_tensor(xs, 10), w = random_tensor(ws, 11);
      const auto y = apply<double>(Op::conv2d, {x, w}, conv_attrs(stride, pad));
      const auto want = naive_conv(x, w, stride, pad);
      REQUIRE(shape_of(y) == shape_of(want));
      for (size_t i = 0; i < y.size(); ++i) CHECK(y.data()[i] == Approx(want.data()[i]).margin(1e-12));

      const auto dy = random_tensor(shape_of(y), 12);
      const auto dx = apply<double>(Op::conv2d_backward_data, {dy, w}, conv_attrs(stride, pad, xs));
      const auto dw = apply<double>(Op::conv2d_backward_filter, {x, dy}, conv_attrs(stride, pad, ws));
      const double forward = dot(y, dy);
      CHECK(dot(x, dx) == Approx(forward).epsilon(1e-12));
      CHECK(dot(w, dw) == Approx(forward).epsilon(1e-12));
    }
  }
}

TEST_CASE("maxpool picks each window's max and its backward routes dy to the first max", "[interpreter]") {
  // The top-left window ties at 5 (positions 1 and 4); the bottom-right one has its max last.
  const auto x = tensor({1, 1, 4, 4}, {1, 5, 2, 0,  //
                                       5, 3, 7, 1,  //
                                       0, 2, 1, 1,  //
                                       4, 3, 1, 9});
  const Attrs pool{{"window", int64_t(2)}, {"stride", int64_t(2)}};
  check_close(apply1(Op::maxpool2d, x, pool), {1, 1, 2, 2}, {5, 7, 4, 9});
  const auto dy = tensor({1, 1, 2, 2}, {10, 20, 30, 40});
  check_close(apply<float>(Op::maxpool2d_backward, {x, dy}, pool), {1, 1, 4, 4},
              {0, 10, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 30, 0, 0, 40});
  // Overlapping windows (stride 1) accumulate into a shared maximum.
  const Attrs overlap{{"window", int64_t(2)}, {"stride", int64_t(1)}};
  const auto x3 = tensor({1, 1, 3, 3}, {0, 0, 0, 0, 9, 0, 0, 0, 0});
  check_close(apply<float>(Op::maxpool2d_backward, {x3, tensor({1, 1, 2, 2}, {1, 2, 3, 4})}, overlap), {1, 1, 3, 3},
              {0, 0, 0, 0, 10, 0, 0, 0, 0});
}

TEST_CASE("batchnorm_train normalizes every channel", "[interpreter]") {
  for (const Shape& xs : {Shape{6, 3}, Shape{4, 3, 2, 5}}) {
    const xt::xarray<double> x = random_tensor(xs, 3) * 4.0 + 2.0;
    const auto ones = tensor<double>({3}, {1, 1, 1}), zeros = tensor<double>({3}, {0, 0, 0});
    const auto y = apply<double>(Op::batchnorm_train, {x, ones, zeros}, {{"eps", 1e-8}});
    const auto mean = apply<double>(Op::channel_mean, {y});
    const auto var = apply<double>(Op::channel_var, {y});
    check_close(mean, {3}, {0, 0, 0}, 1e-9);
    check_close(var, {3}, {1, 1, 1}, 1e-6);
  }
}

TEST_CASE("channel statistics and batchnorm_infer follow their formulas", "[interpreter]") {
  // Channel 0 holds 1, 3, 5, 7; channel 1 holds 2, 2, 4, 4.
  const auto x = tensor({2, 2, 2}, {1, 3, 2, 2, 5, 7, 4, 4});
  check_close(apply1(Op::channel_mean, x), {2}, {4, 3});
  check_close(apply1(Op::channel_var, x), {2}, {5, 1});
  const auto gamma = tensor({2}, {2, 3}), beta = tensor({2}, {1, -1});
  const auto mean = tensor({2}, {1, 2}), var = tensor({2}, {4, 0.25f});
  const double eps = 0.01;
  auto bn = [&](double v, int c) {
    const double m[] = {1, 2}, s2[] = {4, 0.25}, g[] = {2, 3}, b[] = {1, -1};
    return g[c] * (v - m[c]) / std::sqrt(s2[c] + eps) + b[c];
  };
  check_close(apply<float>(Op::batchnorm_infer, {x, gamma, beta, mean, var}, {{"eps", eps}}), {2, 2, 2},
              {bn(1, 0), bn(3, 0), bn(2, 1), bn(2, 1), bn(5, 0), bn(7, 0), bn(4, 1), bn(4, 1)});
}

TEST_CASE("batchnorm_backward and grad_gamma match finite differences", "[interpreter]") {
  const Shape xs{3, 2, 2, 2};
  const auto x = random_tensor(xs, 4), dy = random_tensor(xs, 5);
  const auto gamma = tensor<double>({2}, {1.5, -0.7}), beta = tensor<double>({2}, {0.2, 0.1});
  const Attrs eps{{"eps", 1e-3}};
  // The loss sum(batchnorm_train(x) * dy) has gradient dx in x and grad_gamma in gamma.
  auto loss = [&](const xt::xarray<double>& xv, const xt::xarray<double>& g) {
    return dot(apply<double>(Op::batchnorm_train, {xv, g, beta}, eps), dy);
  };
  const auto dx = apply<double>(Op::batchnorm_backward, {x, gamma, dy}, eps);
  const auto dgamma = apply<double>(Op::batchnorm_grad_gamma, {x, dy}, eps);
  const double h = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    xt::xarray<double> up = x, down = x;
    up.data()[i] += h;
    down.data()[i] -= h;
    CHECK(dx.data()[i] == Approx((loss(up, gamma) - loss(down, gamma)) / (2 * h)).margin(1e-6));
  }
  for (size_t c = 0; c < 2; ++c) {
    xt::xarray<double> up = gamma, down = gamma;
    up(c) += h;
    down(c) -= h;
    CHECK(dgamma(c) == Approx((loss(x, up) - loss(x, down)) / (2 * h)).margin(1e-6));
  }
}

TEST_CASE("softmax rows sum to one, even for huge logits", "[interpreter]") {
  const auto x = tensor({2, 3}, {1, 2, 3, 1000, 1000, 999});
  const auto y = apply1(Op::softmax, x);
  CHECK(y(0, 0) + y(0, 1) + y(0, 2) == Approx(1));
  CHECK(y(1, 0) + y(1, 1) + y(1, 2) == Approx(1));
  CHECK(y(0, 2) == Approx(0.6652409558));
  CHECK(y(1, 0) == Approx(y(1, 1)));
}

TEST_CASE("softmax cross-entropy and its gradient", "[interpreter]") {
  const auto logits = tensor({2, 3}, {1, 2, 3, 1, 1, 1});
  const auto labels = tensor({2}, {2, 0});
  check_close(apply<float>(Op::softmax_xent, {logits, labels}), {}, {0.7531091266});
  check_close(apply<float>(Op::softmax_xent, {logits + 1000.0f, labels}), {}, {0.7531091266}, 1e-4);

  const auto g = tensor({}, {3});
  const auto grad = apply<float>(Op::softmax_xent_grad, {logits, labels, g});
  const double p0 = 0.0900305732, p1 = 0.2447284711, p2 = 0.6652409558, third = 1.0 / 3;
  check_close(grad, {2, 3},
              {1.5 * p0, 1.5 * p1, 1.5 * (p2 - 1), 1.5 * (third - 1), 1.5 * third, 1.5 * third});

  expect_error([&] { apply<float>(Op::softmax_xent, {logits, tensor({2}, {2, 3})}); }, {"label 3", "row 1"});
  expect_error([&] { apply<float>(Op::softmax_xent, {logits, tensor({2}, {0.5f, 1})}); }, {"label 0.5", "row 0"});

  // Label smoothing E = 0.3: row loss lse - 0.7 x[label] - 0.3 mean(x); lse = 3.4076059644, 2.0986122887.
  const Attrs smooth{{"smoothing", 0.3}};
  check_close(apply<float>(Op::softmax_xent, {logits, labels}, smooth), {}, {(0.7076059644 + 1.0986122887) / 2});
  // Its gradient: (softmax - 0.1 - 0.7 onehot) * 3 / 2.
  check_close(apply<float>(Op::softmax_xent_grad, {logits, labels, g}, smooth), {2, 3},
              {1.5 * (p0 - 0.1), 1.5 * (p1 - 0.1), 1.5 * (p2 - 0.8), 1.5 * (third - 0.8), 1.5 * (third - 0.1),
               1.5 * (third - 0.1)});
  const Attrs too_much{{"smoothing", 1.0}};
  expect_error([&] { apply<float>(Op::softmax_xent, {logits, labels}, too_much); }, {"smoothing", "[0, 1)"});
}

TEST_CASE("dropout keeps about 1-p of the elements, scaled, with a mask fixed by key and salt", "[interpreter]") {
  const size_t n = 20000;
  const auto x = tensor({int64_t(n)}, std::vector<float>(n, 1.0f));
  auto run = [&](float key, int64_t salt) {
    return apply<float>(Op::dropout, {x, tensor({}, {key})}, {{"p", 0.3}, {"salt", salt}});
  };
  const auto y = run(12345, 1);
  size_t kept = 0;
  for (float v : values(y)) {
    if (v != 0) {
      ++kept;
      CHECK(v == Approx(1 / 0.7));
    }
  }
  CHECK(static_cast<double>(kept) / n == Approx(0.7).margin(0.03));
  CHECK(values(run(12345, 1)) == values(y));
  for (const auto& other : {run(12346, 1), run(12345, 2)}) {
    size_t differ = 0;
    for (size_t i = 0; i < n; ++i) differ += (other.data()[i] == 0) != (y.data()[i] == 0);
    CHECK(differ > n / 4);  // independent masks disagree on 2 * 0.3 * 0.7 = 42% of elements
  }
  // The mask is the shared hash, element by element.
  for (uint32_t i : {0u, 1u, 777u}) CHECK((y.data()[i] != 0) == dropout_keeps(12345, 1, i, 0.3f));
  expect_error([&] { run(1.5f, 1); }, {"dropout key 1.5"});
}

TEST_CASE("two shards' dropouts, offset by the first shard's elements, draw the whole batch's mask", "[interpreter]") {
  // A batch of 5 examples of 7 elements, split 2 + 3 as two ranks split it.
  const auto whole_x = iota({5, 7}) + 1.0f;
  const auto key = tensor({}, {4242});
  const auto drop = [&](const xt::xarray<float>& x, int64_t offset) {
    Attrs attrs{{"p", 0.5}, {"salt", int64_t(2)}};
    if (offset != 0) attrs.set("offset", offset);
    return values(apply<float>(Op::dropout, {x, key}, attrs));
  };
  const std::vector<float> whole = drop(whole_x, 0);
  const xt::xarray<float> first = xt::view(whole_x, xt::range(0, 2)), second = xt::view(whole_x, xt::range(2, 5));
  std::vector<float> shards = drop(first, 0);
  const std::vector<float> rest = drop(second, 2 * 7);
  shards.insert(shards.end(), rest.begin(), rest.end());
  CHECK(shards == whole);
  // Without the offset the second shard repeats the first rows' mask instead.
  CHECK(drop(second, 0) != rest);
  expect_error([&] { drop(second, -1); }, {"dropout offset -1 is negative"});
}

TEST_CASE("assigns write state after the step, all from pre-step values", "[interpreter]") {
  Graph g;
  const NodeId s = g.add(Op::state, {}, {{"name", "s"}, {"shape", Shape{2}}, {"init", "zeros"}});
  const NodeId u = g.add(Op::state, {}, {{"name", "u"}, {"shape", Shape{2}}, {"init", "zeros"}});
  const NodeId one = g.add(Op::constant, {}, {{"value", 1.0}, {"shape", Shape{}}});
  const NodeId next = g.add(Op::add, {s, one});
  g.add(Op::assign, {next}, {{"target", "s"}});
  const NodeId assign_u = g.add(Op::assign, {s}, {{"target", "u"}});  // sees s before the increment
  g.set_output("next", next);
  g.set_output("u_before", u);
  verify(g);

  TensorMap<float> state{{"s", tensor({2}, {1, 2})}, {"u", tensor({2}, {0, 0})}};
  const auto all = interpret_all<float>(g, {}, state);
  check_close(all[assign_u], {2}, {1, 2});
  check_close(state.at("s"), {2}, {1, 2});  // interpret_all leaves state alone

  const TensorMap<float> out = interpret<float>(g, {}, state);
  check_close(out.at("next"), {2}, {2, 3});
  check_close(out.at("u_before"), {2}, {0, 0});
  check_close(state.at("s"), {2}, {2, 3});
  check_close(state.at("u"), {2}, {1, 2});
  interpret<float>(g, {}, state);
  check_close(state.at("s"), {2}, {3, 4});
}

TEST_CASE("missing or mis-shaped feeds and state are errors naming them", "[interpreter]") {
  Graph g;
  const NodeId x = input(g, "images", {2, 3});
  const NodeId w = g.add(Op::parameter, {}, {{"name", "dense.w"}, {"shape", Shape{3, 4}}, {"init", "zeros"}});
  g.set_output("y", g.add(Op::matmul, {x, w}));
  TensorMap<float> state{{"dense.w", iota({3, 4})}};
  expect_error([&] { interpret<float>(g, {}, state); }, {"images", "[2,3]"});
  expect_error([&] { interpret<float>(g, {{"images", iota({3, 2})}}, state); }, {"images", "[3,2]", "[2,3]"});
  TensorMap<float> empty;
  expect_error([&] { interpret<float>(g, {{"images", iota({2, 3})}}, empty); }, {"dense.w"});
  CHECK(interpret<float>(g, {{"images", iota({2, 3})}}, state).at("y")(1, 3) == 3 * 3 + 4 * 7 + 5 * 11);
}

TEST_CASE("a model's training graph runs in float and double", "[interpreter]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.input("x", {4, 1, 6, 6});
  Value labels = m.input("labels", {4});
  Value h = relu(m.batchnorm(m.conv2d(x, 3, 3)));
  h = m.dropout(flatten(maxpool(h)), 0.25f);
  Value logits = m.dense(h, 5);
  g.set_output("loss", g.add(Op::softmax_xent, {logits.id, labels.id}));
  verify(g);

  TensorMap<float> state;
  initialize_state(g, state, 7);
  const TensorMap<float> feeds{{"x", iota({4, 1, 6, 6}) / 100.0f},
                               {"labels", tensor({4}, {0, 1, 4, 2})},
                               {"dropout_key", tensor({}, {99})}};
  TensorMap<double> state_d = to_double(state);
  const float loss = interpret<float>(g, feeds, state).at("loss")();
  const double loss_d = interpret<double>(g, to_double(feeds), state_d).at("loss")();
  CHECK(std::isfinite(loss));
  CHECK(loss == Approx(loss_d).epsilon(1e-5));
  CHECK(state.at("bn1.running_var")(0) != 1.0f);  // the running statistics moved
}

TEST_CASE("initialize_state is deterministic per seed and respects each initializer", "[interpreter]") {
  Graph g;
  Model m(g, Mode::train);
  m.batchnorm(m.dense(m.input("x", {2, 30}), 20));
  TensorMap<float> a, b, c;
  initialize_state(g, a, 1);
  initialize_state(g, b, 1);
  initialize_state(g, c, 2);
  CHECK(values(a.at("dense1.w")) == values(b.at("dense1.w")));
  CHECK(values(a.at("dense1.w")) != values(c.at("dense1.w")));

  const auto& w = a.at("dense1.w");
  REQUIRE(shape_of(w) == Shape{30, 20});
  const float limit = std::sqrt(6.0f / 50.0f);
  float lo = 0, hi = 0;
  for (float v : values(w)) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo >= -limit);
  CHECK(hi <= limit);
  CHECK(lo < -0.8f * limit);  // 600 draws reach near both ends
  CHECK(hi > 0.8f * limit);
  CHECK(values(a.at("dense1.b")) == std::vector<float>(20, 0.0f));
  CHECK(values(a.at("bn1.gamma")) == std::vector<float>(20, 1.0f));
  CHECK(values(a.at("bn1.running_var")) == std::vector<float>(20, 1.0f));

  TensorMap<float> kept{{"dense1.b", tensor({20}, std::vector<float>(20, 5.0f))}};
  initialize_state(g, kept, 1);
  CHECK(kept.at("dense1.b")(0) == 5.0f);  // existing entries win
  CHECK(values(kept.at("dense1.w")) == values(a.at("dense1.w")));

  const auto d = to_double(a);
  CHECK(values(to_float(d).at("dense1.w")) == values(w));
}

TEST_CASE("the dropout hash is stable and spreads neighbouring inputs", "[interpreter]") {
  CHECK(dropout_hash(1, 2, 3) == dropout_hash(1, 2, 3));
  CHECK(dropout_hash(1, 2, 3) != dropout_hash(1, 2, 4));
  CHECK(dropout_hash(1, 2, 3) != dropout_hash(1, 3, 3));
  CHECK(dropout_hash(1, 2, 3) != dropout_hash(2, 2, 3));
  // Consecutive indices flip about half of the output bits on average.
  int flipped = 0;
  for (uint32_t i = 0; i < 1000; ++i) flipped += std::popcount(dropout_hash(5, 1, i) ^ dropout_hash(5, 1, i + 1));
  CHECK(flipped / 1000.0 == Approx(16).margin(1));
}
