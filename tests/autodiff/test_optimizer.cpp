// Optimizer update rules against hand-computed steps, and the training step graph end to end.
#include <catch2/catch.hpp>

#include <cmath>
#include <iomanip>
#include <limits>

#include "dagger/autodiff/optimizer.h"
#include "dagger/autodiff/step.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/interpreter.h"

using namespace dagger;

namespace {

xt::xarray<float> tensor(std::vector<float> v, std::vector<size_t> shape = {}) {
  if (shape.empty() && v.size() != 1) shape = {v.size()};
  xt::xarray<float> t = xt::xarray<float>::from_shape(shape);
  std::copy(v.begin(), v.end(), t.begin());
  return t;
}

/// A parameter w = [1, -2] whose gradient is the fixed input g = [0.5, -0.25], plus the
/// optimizer's nodes; lr = 0.1 is fed at run time.
struct Fixture {
  Graph g;
  TensorMap<float> state;
  TensorMap<float> feeds{{"g", tensor({0.5f, -0.25f})}, {"lr", tensor({0.1f})}};

  explicit Fixture(const OptimizerConfig& cfg) {
    Model m(g, Mode::train);
    Value w = m.parameter("w", {2}, "zeros");
    Value grad = m.input("g", {2});
    append_optimizer(g, {w.id}, {grad.id}, cfg);
    verify(g);
    state["w"] = tensor({1.0f, -2.0f});
    initialize_state(g, state, 1);  // optimizer slots and "step": zeros
  }
  void step() { interpret<float>(g, feeds, state); }
  void check(const std::string& name, std::vector<float> expected, double rel = 1e-6) {
    INFO(name);
    const auto& t = state.at(name);
    REQUIRE(t.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO("element " << i << ": " << std::setprecision(9) << t.data()[i] << " vs " << expected[i]);
      CHECK(t.data()[i] == Approx(expected[i]).epsilon(rel));
    }
  }
};

OptimizerConfig config(OptimizerConfig::Kind kind) {
  OptimizerConfig cfg;
  cfg.kind = kind;
  return cfg;
}

}  // namespace

TEST_CASE("optimizer names", "[autodiff][optimizer]") {
  CHECK(optimizer_kind("adam") == OptimizerConfig::Kind::adam);
  CHECK(optimizer_name(optimizer_kind("momentum")) == "momentum");
  REQUIRE_THROWS_WITH(optimizer_kind("rmsprop"), Catch::Contains("sgd, momentum, adam"));
}

TEST_CASE("one SGD step", "[autodiff][optimizer]") {
  Fixture f(config(OptimizerConfig::Kind::sgd));
  f.step();
  // w - lr g = [1 - 0.1*0.5, -2 - 0.1*(-0.25)] = [0.95, -1.975]
  f.check("w", {0.95f, -1.975f});
  f.check("step", {1.0f});
}

TEST_CASE("one SGD step with weight decay", "[autodiff][optimizer]") {
  OptimizerConfig cfg = config(OptimizerConfig::Kind::sgd);
  cfg.weight_decay = 0.01;
  Fixture f(cfg);
  f.step();
  // g + wd w = [0.5 + 0.01, -0.25 - 0.02] = [0.51, -0.27]; w - 0.1 g = [0.949, -1.973]
  f.check("w", {0.949f, -1.973f});
}

TEST_CASE("one momentum step, plain and Nesterov", "[autodiff][optimizer]") {
  OptimizerConfig cfg = config(OptimizerConfig::Kind::momentum);  // mu = 0.9
  SECTION("plain") {
    Fixture f(cfg);
    f.state["momentum.v.w"] = tensor({0.2f, -0.1f});
    f.step();
    // v = 0.9 [0.2, -0.1] - 0.1 [0.5, -0.25] = [0.18 - 0.05, -0.09 + 0.025] = [0.13, -0.065]
    // w + v = [1.13, -2.065]
    f.check("momentum.v.w", {0.13f, -0.065f});
    f.check("w", {1.13f, -2.065f});
  }
  SECTION("nesterov") {
    cfg.nesterov = true;
    Fixture f(cfg);
    f.state["momentum.v.w"] = tensor({0.2f, -0.1f});
    f.step();
    // v as above = [0.13, -0.065]; w + mu v - lr g = [1 + 0.117 - 0.05, -2 - 0.0585 + 0.025] = [1.067, -2.0335]
    f.check("momentum.v.w", {0.13f, -0.065f});
    f.check("w", {1.067f, -2.0335f});
  }
}

TEST_CASE("two Adam steps", "[autodiff][optimizer]") {
  Fixture f(config(OptimizerConfig::Kind::adam));  // b1 = 0.9, b2 = 0.999, eps = 1e-7
  f.step();
  // t = 1: m = 0.1 g = [0.05, -0.025]; v = 0.001 g^2 = [0.00025, 0.0000625]
  // m / (1 - 0.9) = g, v / (1 - 0.999) = g^2, so the step is lr g / (|g| + eps):
  // 0.1 * 0.5 / 0.5000001 = 0.09999998 and 0.1 * 0.25 / 0.2500001 = 0.09999996
  f.check("adam.m.w", {0.05f, -0.025f});
  // In float 0.999 is 0.99900001287, so 1 - b2 = 0.00099998713: v is 1.3e-5 (relative) below
  // the decimal value. The bias correction uses the same float b2 and cancels it in the step.
  f.check("adam.v.w", {0.00025f, 0.0000625f}, 2e-5);
  f.check("w", {0.90000002f, -1.90000004f});
  f.step();
  // t = 2: m = 0.9 [0.05, -0.025] + 0.1 g = [0.095, -0.0475]; m / (1 - 0.81) = [0.5, -0.25] = g
  // v = 0.999 [0.00025, 0.0000625] + 0.001 g^2 = [0.00049975, 0.0001249375]; v / (1 - 0.998001) = g^2
  // so the same step again: w = [1 - 2 * 0.09999998, -2 + 2 * 0.09999996] = [0.80000004, -1.80000008]
  f.check("adam.m.w", {0.095f, -0.0475f});
  f.check("adam.v.w", {0.00049975f, 0.0001249375f}, 2e-5);
  f.check("w", {0.80000004f, -1.80000008f});
  f.check("step", {2.0f});
}

TEST_CASE("a training step graph learns a fixed batch", "[autodiff][optimizer]") {
  ModelFn tiny = [](Model& m, Value x) { return m.dense(relu(m.dense(flatten(x), 8)), 3); };
  OptimizerConfig cfg = config(OptimizerConfig::Kind::momentum);
  const Graph g = build_training_step(tiny, 6, cfg, {1, 2, 2});
  REQUIRE(g.output("loss"));
  REQUIRE(g.output("logits"));
  for (const char* name : {"momentum.v.dense1.w", "momentum.v.dense2.b", "step", "lr"}) CHECK(g.find_source(name));
  CHECK(g.nodes_of(Op::assign).size() == 4 + 4 + 1);  // each parameter, its velocity, the step counter

  TensorMap<float> state;
  initialize_state(g, state, 7);
  xt::xarray<float> x = xt::xarray<float>::from_shape({6, 1, 2, 2});
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>((i * 7) % 11) / 11.0f;
  TensorMap<float> feeds{{"x", x}, {"labels", tensor({0, 1, 2, 0, 1, 2})}, {"lr", tensor({0.1f})}};
  const float first = interpret<float>(g, feeds, state).at("loss")();
  float last = first;
  for (int i = 0; i < 30; ++i) last = interpret<float>(g, feeds, state).at("loss")();
  CHECK(last < 0.7f * first);
  CHECK(state.at("step")() == 31.0f);
}

TEST_CASE("forward graphs expose the documented inputs and outputs", "[autodiff]") {
  ModelFn tiny = [](Model& m, Value x) { return m.dense(flatten(x), 4); };
  const Graph eval = build_forward(tiny, 2, Mode::eval, {3});
  CHECK(eval.shape(*eval.find_source("x")) == Shape{2, 3});
  CHECK(eval.output("probs"));
  CHECK_FALSE(eval.output("loss"));
  const Graph train = build_forward(tiny, 2, Mode::train, {3});
  CHECK(train.shape(*train.find_source("labels")) == Shape{2});
  CHECK(train.shape(*train.output("loss")).empty());
  ModelFn bad = [](Model&, Value x) { return x; };
  CHECK_THROWS_AS(build_forward(bad, 2, Mode::eval, {3, 4}), Error);
}

TEST_CASE("an AdamW step decays the weights outside the moments", "[autodiff][optimizer]") {
  OptimizerConfig cfg = config(OptimizerConfig::Kind::adamw);
  cfg.weight_decay = 0.1;
  Fixture f(cfg);
  CHECK(optimizer_kind("adamw") == OptimizerConfig::Kind::adamw);
  f.step();
  // The moments see the plain gradient, as in Adam: m = 0.1 g, v = 0.001 g^2.
  f.check("adam.m.w", {0.05f, -0.025f});
  f.check("adam.v.w", {0.00025f, 0.0000625f}, 2e-5);
  // m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps) = [0.9999998, -0.9999996]; plus wd w = [0.1, -0.2]:
  // w - lr [1.0999998, -1.1999996] = [0.89000002, -1.88000004]
  f.check("w", {0.89000002f, -1.88000004f});
  // Adam with the same weight_decay is L2: the moments see g + wd w = [0.6, -0.45].
  cfg.kind = OptimizerConfig::Kind::adam;
  Fixture l2(cfg);
  l2.step();
  l2.check("adam.m.w", {0.06f, -0.045f});
}

TEST_CASE("a training step computes each batch norm's statistics once", "[autodiff]") {
  ModelFn bn = [](Model& m, Value x) {
    Value h = relu(m.batchnorm(m.conv2d(x, 3, 3)));
    return m.dense(flatten(relu(m.batchnorm(m.dense(flatten(h), 5)))), 2);
  };
  OptimizerConfig cfg = config(OptimizerConfig::Kind::sgd);
  for (const Graph& g : {build_training_step(bn, 3, cfg, {2, 5, 5}), build_gradient_step(bn, 3, {2, 5, 5})}) {
    // Each normalization reads the channel_mean and channel_var the running averages use.
    CHECK(g.nodes_of(Op::batchnorm_train).empty());
    const std::vector<NodeId> norms = g.nodes_of(Op::batchnorm_infer);
    REQUIRE(norms.size() == 2);
    for (NodeId id : norms) {
      const Node& n = g.node(id);
      CHECK(g.node(n.operands[3]).op == Op::channel_mean);
      CHECK(g.node(n.operands[4]).op == Op::channel_var);
      CHECK(g.node(n.operands[3]).operands[0] == n.operands[0]);
      CHECK(g.node(n.operands[4]).operands[0] == n.operands[0]);
    }
    CHECK(g.nodes_of(Op::channel_mean).size() == 2);
    CHECK(g.nodes_of(Op::channel_var).size() == 2);
  }
  // The same loss as the forward graph with batchnorm_train, to double rounding.
  const Graph step = build_training_step(bn, 3, cfg, {2, 5, 5});
  const Graph forward = build_forward(bn, 3, Mode::train, {2, 5, 5});
  TensorMap<double> state;
  {
    TensorMap<float> initial;
    initialize_state(step, initial, 3);
    state = to_double(initial);
  }
  xt::xarray<double> x = xt::xarray<double>::from_shape({3, 2, 5, 5});
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<double>((i * 7) % 11) / 11.0 + 5.0;
  TensorMap<double> feeds{{"x", x}, {"labels", xt::xarray<double>{0, 1, 1}}};
  TensorMap<double> forward_state = state;
  const double want = interpret<double>(forward, feeds, forward_state).at("loss")();
  feeds["lr"] = to_double({{"lr", tensor({0.1f})}}).at("lr");
  const double got = interpret<double>(step, feeds, state).at("loss")();
  CHECK(got == Approx(want).epsilon(1e-12));
}

namespace {

/// Runs `steps` steps of Adam or AdamW, interpreted as T, on a parameter of `n` elements whose
/// gradient at step t is 10^-(i % 9) sin(1.3 i + 0.7 t), so eps outweighs sqrt(v_hat) for some
/// elements. Each step's new p is checked against the textbook update in double from p before the
/// step and the new moments the graph stored (their update is the same in either form):
/// m_hat = m / (1-b1^t), v_hat = v / (1-b2^t), p - lr (m_hat / (sqrt(v_hat) + eps) + wd p) (wd p
/// for AdamW only). Returns the worst error of the new p beyond rounding it to T (half a unit in
/// its last place), relative to the textbook step.
template <typename T>
double worst_step_error(const OptimizerConfig& cfg, size_t n, int steps) {
  Graph g;
  Model model(g, Mode::train);
  Value w = model.parameter("w", {static_cast<int64_t>(n)}, "zeros");
  Value grad = model.input("g", {static_cast<int64_t>(n)});
  append_optimizer(g, {w.id}, {grad.id}, cfg);
  verify(g);
  TensorMap<T> state;
  {
    TensorMap<float> initial;
    initialize_state(g, initial, 1);
    for (const auto& [name, t] : initial) state[name] = xt::xarray<T>(t);
  }
  for (size_t i = 0; i < n; ++i) state.at("w").data()[i] = static_cast<T>(1.0 - 0.03 * static_cast<double>(i));
  // The graph's constants are T, so the reference takes them rounded to T as well, and the bias
  // corrections 1 - b^t as the graph computes them in T (in float, 1 - b2^t loses up to 3e-5 of
  // itself to cancellation, in either form of the update).
  auto as_t = [](double x) { return static_cast<double>(static_cast<T>(x)); };
  auto correction = [](double b, int t) {
    return static_cast<double>(T(1) - static_cast<T>(std::pow(static_cast<T>(b), static_cast<T>(t))));
  };
  const double lr = as_t(0.01), b1 = as_t(cfg.beta1), b2 = as_t(cfg.beta2), eps = as_t(cfg.eps);
  const double wd = cfg.kind == OptimizerConfig::Kind::adamw ? as_t(cfg.weight_decay) : 0.0;
  xt::xarray<T> rate = xt::xarray<T>::from_shape({});
  rate() = static_cast<T>(lr);
  double worst = 0;
  for (int t = 1; t <= steps; ++t) {
    xt::xarray<T> gt = xt::xarray<T>::from_shape({n});
    for (size_t i = 0; i < n; ++i)
      gt.data()[i] = static_cast<T>(std::pow(10.0, -static_cast<double>(i % 9)) * std::sin(1.3 * i + 0.7 * t));
    const TensorMap<T> before = state;
    TensorMap<T> feeds{{"g", gt}, {"lr", rate}};
    interpret<T>(g, feeds, state);
    for (size_t i = 0; i < n; ++i) {
      const double p = static_cast<double>(before.at("w").data()[i]);
      const double m = static_cast<double>(state.at("adam.m.w").data()[i]);
      const double v = static_cast<double>(state.at("adam.v.w").data()[i]);
      const double m_hat = m / correction(b1, t);
      const double v_hat = v / correction(b2, t);
      const double step = lr * (m_hat / (std::sqrt(v_hat) + eps) + wd * p);
      const double want = p - step;
      const double got = static_cast<double>(state.at("w").data()[i]);
      const double rounding = 0.5 * std::numeric_limits<T>::epsilon() * std::abs(want);
      worst = std::max(worst, std::max(std::abs(got - want) - rounding, 0.0) / std::abs(step));
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("Adam and AdamW's per-step scalars give the textbook update", "[autodiff][optimizer]") {
  // The graph computes p - (lr / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps), one division per
  // element; the reference is the textbook form above. Equal in exact arithmetic, so each step
  // agrees to rounding: measured worst 7.6e-15 of the step in double, 3.5e-8 in float (under one
  // float ulp); the bounds leave a margin of ten to thirty. The "epsilon hat" variant, p - (lr
  // sqrt(1-b2^t) / (1-b1^t)) m / (sqrt(v) + eps), misses both by orders of magnitude (on the
  // elements whose gradient is below eps).
  OptimizerConfig cfg = config(GENERATE(OptimizerConfig::Kind::adam, OptimizerConfig::Kind::adamw));
  cfg.weight_decay = cfg.kind == OptimizerConfig::Kind::adamw ? 0.1 : 0.0;  // Adam's would be L2
  const size_t n = GENERATE(size_t{37}, size_t{9});
  INFO(optimizer_name(cfg.kind) << ", " << n << " elements");
  const double in_double = worst_step_error<double>(cfg, n, 6);
  INFO("double: " << in_double);
  CHECK(in_double < 1e-13);
  const double in_float = worst_step_error<float>(cfg, n, 6);
  INFO("float: " << in_float);
  CHECK(in_float < 1e-6);
}
