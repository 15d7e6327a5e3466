// Finite-difference gradient checks. Everything runs in double through the reference
// interpreter: the analytic side is grad()'s graph, the numeric side perturbs one parameter
// element at a time by +-h and re-runs the forward graph.
#include "dagger/runtime/gradcheck.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>

#include "dagger/autodiff/grad.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/interpreter.h"

namespace dagger {

namespace {

/// Seeded draws built from raw 64-bit outputs (std's distributions differ between standard
/// libraries; mt19937_64 does not), so a failing check reproduces everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(gen_() >> 11) * 0x1p-53; }
  uint64_t below(uint64_t n) { return gen_() % n; }

 private:
  std::mt19937_64 gen_;
};

TensorD zeros(const Shape& shape) {
  TensorD t = TensorD::from_shape(std::vector<size_t>(shape.begin(), shape.end()));
  std::fill(t.data(), t.data() + t.size(), 0.0);
  return t;
}

TensorD uniform(const Shape& shape, double lo, double hi, Rng& rng) {
  TensorD t = zeros(shape);
  for (size_t i = 0; i < t.size(); ++i) t.data()[i] = rng.uniform(lo, hi);
  return t;
}

/// Up to `count` distinct flat indices below n (all of them when n <= count), ascending.
std::vector<int64_t> sample_indices(int64_t n, int64_t count, Rng& rng) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  if (n <= count) return all;
  for (int64_t i = 0; i < count; ++i) std::swap(all[i], all[i + static_cast<int64_t>(rng.below(n - i))]);
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

double loss_of(const Graph& forward, const TensorMap<double>& feeds, TensorMap<double> state) {
  return interpret(forward, feeds, state).at("loss")();
}

/// (L(p + h e_i) - L(p - h e_i)) / 2h. Each run gets a fresh state copy, so assigns in the
/// forward graph (running statistics) cannot leak from one evaluation into the next.
double central_difference(const Graph& forward, const TensorMap<double>& feeds, const TensorMap<double>& state,
                          const std::string& name, int64_t index, double h) {
  TensorMap<double> shifted = state;
  double& p = shifted.at(name).data()[index];
  const double original = p;
  p = original + h;
  const double up = loss_of(forward, feeds, shifted);
  p = original - h;
  const double down = loss_of(forward, feeds, shifted);
  return (up - down) / (2 * h);
}

/// The rounding noise of a central difference: each loss evaluation is off by a few ulps of
/// the largest value the graph computes on the way (a sum of mixed-sign terms rounds at the
/// scale of its terms, not of its result), and the difference divides that by 2h.
double rounding_noise(const Graph& forward, const TensorMap<double>& feeds, const TensorMap<double>& state, double h) {
  double scale = 1;
  for (const TensorD& v : interpret_all(forward, feeds, state))
    for (size_t i = 0; i < v.size(); ++i) scale = std::max(scale, std::abs(v.data()[i]));
  return 32 * std::numeric_limits<double>::epsilon() * scale / (2 * h);
}

/// Compares grad() against central differences for every parameter of `forward`, whose
/// scalar output "loss" is the function being differentiated.
std::vector<GradcheckResult> compare(const Graph& forward, const TensorMap<double>& feeds,
                                     const TensorMap<double>& state, const GradcheckOptions& opts,
                                     const std::string& label) {
  const std::vector<NodeId> params = forward.nodes_of(Op::parameter);
  Graph backward = forward;
  const std::vector<NodeId> grads = grad(backward, *forward.output("loss"), params);
  for (size_t i = 0; i < params.size(); ++i) backward.set_output("grad." + forward.node(params[i]).attrs.s("name"), grads[i]);
  TensorMap<double> scratch = state;
  const TensorMap<double> analytic = interpret(backward, feeds, scratch);

  const double floor = std::max(opts.floor, rounding_noise(forward, feeds, state, opts.step) / opts.tolerance);
  Rng rng(opts.seed * 0x9E3779B97F4A7C15ull + 1);
  std::vector<GradcheckResult> results;
  for (NodeId id : params) {
    const Node& p = forward.node(id);
    const std::string& name = p.attrs.s("name");
    const TensorD& a = analytic.at("grad." + name);
    GradcheckResult r{label.empty() ? name : label + ": " + name, p.shape, 0, 0, 0};
    for (int64_t i : sample_indices(numel(p.shape), opts.max_elements, rng)) {
      const double fd = central_difference(forward, feeds, state, name, i, opts.step);
      const double err = std::abs(a.data()[i] - fd);
      r.max_abs_error = std::max(r.max_abs_error, err);
      r.max_rel_error = std::max(r.max_rel_error, err / std::max({std::abs(a.data()[i]), std::abs(fd), floor}));
      ++r.checked;
    }
    results.push_back(r);
  }
  return results;
}

// ---------------------------------------------------------------------------------------
// Single-op checks.

/// How an operand's values are drawn, chosen per op to keep finite differences away from
/// kinks and outside domains.
enum class Values {
  signed_,         ///< uniform in [-1, 1)
  positive,        ///< uniform in [0.5, 1.5): log, sqrt, pow's base, divisors
  away_from_zero,  ///< +-[0.2, 1): relu-like kinks at 0 stay >= 0.1 away after scaling
  distinct,        ///< a shuffled even grid over [-1, 1]: max ties are impossible
};

/// One small graph under test: operands, a loss accumulating sum(output * R) per observed
/// output, and the feeds and parameter values to run it with.
class Case {
 public:
  explicit Case(uint64_t seed) : model_(graph_, Mode::train), rng_(seed) {}
  Case(const Case&) = delete;

  Rng& rng() { return rng_; }
  Model& model() { return model_; }

  /// x * s with a random input x and a trainable s of the same shape. For `distinct` values
  /// s stays within 0.2/n of 1, less than half the grid spacing, so x * s stays tie-free.
  Value trainable(const std::string& name, const Shape& shape, Values values) {
    Value x = input(name + ".x", draw(shape, values));
    const double spread = values == Values::distinct ? 0.2 / static_cast<double>(numel(shape)) : 0.5;
    const double lo = values == Values::distinct ? 1.0 : 1.0 - spread;
    return mul(x, parameter(name + ".s", uniform(shape, lo, 1.0 + spread, rng_)));
  }
  Value parameter(const std::string& name, TensorD value) {
    Shape shape(value.shape().begin(), value.shape().end());
    state_[name] = std::move(value);
    return model_.parameter(name, shape, "zeros");
  }
  Value input(const std::string& name, TensorD value) {
    Shape shape(value.shape().begin(), value.shape().end());
    feeds_[name] = std::move(value);
    return model_.input(name, shape);
  }
  Value op(Op op, const std::vector<Value>& operands, Attrs attrs = {}) {
    std::vector<NodeId> ids;
    for (Value v : operands) ids.push_back(v.id);
    return {&graph_, graph_.add(op, ids, std::move(attrs))};
  }
  TensorD draw(const Shape& shape, Values values) {
    switch (values) {
      case Values::signed_: return uniform(shape, -1, 1, rng_);
      case Values::positive: return uniform(shape, 0.5, 1.5, rng_);
      case Values::away_from_zero: {
        TensorD t = uniform(shape, 0.2, 1, rng_);
        for (size_t i = 0; i < t.size(); ++i) t.data()[i] *= rng_.below(2) ? 1 : -1;
        return t;
      }
      case Values::distinct: {
        TensorD t = zeros(shape);
        const auto n = static_cast<int64_t>(t.size());
        for (int64_t i = 0; i < n; ++i) t.data()[i] = n == 1 ? 0.5 : -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n - 1);
        for (int64_t i = n - 1; i > 0; --i) std::swap(t.data()[i], t.data()[rng_.below(static_cast<uint64_t>(i + 1))]);
        return t;
      }
    }
    return zeros(shape);
  }

  /// Adds sum(out * R) to the loss, R random and signed so every output element is weighted differently.
  void observe(Value out) {
    const std::string name = upstreams_ == 0 ? "upstream" : fmt::format("upstream.{}", upstreams_);
    ++upstreams_;
    Value weighted = mul(out, input(name, uniform(out.shape(), -1, 1, rng_)));
    std::vector<int64_t> axes(out.shape().size());
    std::iota(axes.begin(), axes.end(), 0);
    Value term = axes.empty() ? weighted : reduce_sum(weighted, axes);
    loss_ = loss_ ? add(*loss_, term) : term;
  }

  std::vector<GradcheckResult> check(const std::string& label, const GradcheckOptions& opts) {
    graph_.set_output("loss", loss_->id);
    verify(graph_);
    return compare(graph_, feeds_, state_, opts, label);
  }

 private:
  Graph graph_;
  Model model_;
  TensorMap<double> feeds_, state_;
  Rng rng_;
  std::optional<Value> loss_;
  int upstreams_ = 0;
};

struct CaseSpec {
  std::string label;
  std::function<void(Case&)> build;
};

std::string op_name(Op op) { return std::string(op_info(op).name); }

/// Alphas away from the defaults, so a rule that ignores the attribute fails.
Attrs unary_attrs(Op op) {
  if (op == Op::elu) return {{"alpha", 0.7}};
  if (op == Op::leaky_relu) return {{"alpha", 0.2}};
  return {};
}

/// `s` without its leading axis (rank broadcasting), and `s` with its last axis 1 (stretching).
Shape without_lead(const Shape& s) { return s.size() > 1 ? Shape(s.begin() + 1, s.end()) : Shape{}; }
Shape last_to_one(Shape s) {
  s.back() = 1;
  return s;
}

/// NCHW for the image ops: `s` itself when it has rank 4, else [s[0], 2, d, d] with d =
/// max(last dim, 3), so every shape yields a batch with two channels and room for 3x3 windows.
Shape nchw(const Shape& s) {
  if (s.size() == 4) return s;
  const int64_t d = std::max<int64_t>(s.back(), 3);
  return {s[0], 2, d, d};
}

/// `values` keeps the op differentiable and inside its domain.
std::vector<CaseSpec> unary_cases(Op op, const Shape& s, Values values) {
  return {{op_name(op), [=](Case& c) { c.observe(c.op(op, {c.trainable("x", s, values)}, unary_attrs(op))); }}};
}

/// Same shapes, then b broadcast by rank (s without its lead axis), then a broadcast by a
/// size-1 axis (s with its last axis 1). pow gets a positive base, div a positive divisor.
std::vector<CaseSpec> binary_cases(Op op, const Shape& s) {
  const Values va = op == Op::pow ? Values::positive : Values::signed_;
  const Values vb = op == Op::div ? Values::positive : Values::signed_;
  auto spec = [=](std::string what, Shape sa, Shape sb) {
    return CaseSpec{op_name(op) + " " + what, [=](Case& c) {
                      Value a = c.trainable("a", sa, va), b = c.trainable("b", sb, vb);
                      c.observe(c.op(op, {a, b}));
                    }};
  };
  return {spec(to_string(s) + "," + to_string(s), s, s),
          spec(to_string(s) + "," + to_string(without_lead(s)), s, without_lead(s)),
          spec(to_string(last_to_one(s)) + "," + to_string(s), last_to_one(s), s)};
}

/// Reductions over the last axis, the first axis (keepdims), every axis, and for rank >= 3
/// two non-adjacent axes, all in one graph.
std::vector<CaseSpec> reduce_cases(Op op, const Shape& s) {
  return {{op_name(op), [=](Case& c) {
             Value x = c.trainable("x", s, op == Op::reduce_max ? Values::distinct : Values::signed_);
             const auto rank = static_cast<int64_t>(s.size());
             std::vector<std::pair<std::vector<int64_t>, bool>> configs = {{{-1}, false}, {{0}, true}};
             std::vector<int64_t> all(static_cast<size_t>(rank));
             std::iota(all.begin(), all.end(), 0);
             configs.emplace_back(all, false);
             if (rank >= 3) configs.push_back({{0, 2}, false});
             for (const auto& [axes, keep] : configs) c.observe(c.op(op, {x}, {{"axes", axes}, {"keepdims", int64_t(keep)}}));
           }}};
}

/// A [m, k] x [k, n] product with m = s[0], k = last dim, n = m + 1, under all four transpose
/// flags (a transposed operand is stored transposed).
std::vector<CaseSpec> matmul_cases(const Shape& s) {
  const int64_t m = s[0], k = s.back(), n = s[0] + 1;
  std::vector<CaseSpec> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      cases.push_back({fmt::format("matmul trans_a={} trans_b={}", int(ta), int(tb)), [=](Case& c) {
                         Value a = c.trainable("a", ta ? Shape{k, m} : Shape{m, k}, Values::signed_);
                         Value b = c.trainable("b", tb ? Shape{n, k} : Shape{k, n}, Values::signed_);
                         c.observe(c.op(Op::matmul, {a, b}, {{"trans_a", int64_t(ta)}, {"trans_b", int64_t(tb)}}));
                       }});
  return cases;
}

/// On nchw(s) with C+1 filters: 3x3 "same" (pad 1, stride 1), 3x3 valid with stride 2, and
/// 2x2 with stride 2 and pad 1 (padding and striding together); cases the image cannot fit
/// are skipped.
std::vector<CaseSpec> conv_cases(const Shape& s) {
  const Shape x = nchw(s);
  std::vector<CaseSpec> cases;
  for (auto [kernel, stride, pad] : {std::tuple{3, 1, 1}, {3, 2, 0}, {2, 2, 1}}) {
    if (x[2] + 2 * pad < kernel || x[3] + 2 * pad < kernel) continue;
    cases.push_back({fmt::format("conv2d {}x{} stride {} pad {} on {}", kernel, kernel, stride, pad, to_string(x)),
                     [=](Case& c) {
                       Value in = c.trainable("x", x, Values::signed_);
                       Value w = c.parameter("w", uniform({x[1] + 1, x[1], kernel, kernel}, -1, 1, c.rng()));
                       c.observe(c.op(Op::conv2d, {in, w}, {{"stride", int64_t(stride)}, {"pad", int64_t(pad)}}));
                     }});
  }
  return cases;
}

/// On nchw(s) with tie-free values: 2x2 stride 2, 3x3 stride 1 (overlapping windows share
/// inputs) and 2x2 stride 1, when the image fits the window.
std::vector<CaseSpec> pool_cases(const Shape& s) {
  const Shape x = nchw(s);
  std::vector<CaseSpec> cases;
  for (auto [window, stride] : {std::pair{2, 2}, {3, 1}, {2, 1}}) {
    if (x[2] < window || x[3] < window) continue;
    cases.push_back({fmt::format("maxpool2d window {} stride {} on {}", window, stride, to_string(x)), [=](Case& c) {
                       Value in = c.trainable("x", x, Values::distinct);
                       c.observe(c.op(Op::maxpool2d, {in}, {{"window", int64_t(window)}, {"stride", int64_t(stride)}}));
                     }});
  }
  return cases;
}

/// On `s` (channels = axis 1); rank-1 shapes get a second axis of 2 channels.
std::vector<CaseSpec> batchnorm_cases(const Shape& s) {
  const Shape x = s.size() >= 2 ? s : Shape{s[0], 2};
  return {{"batchnorm_train on " + to_string(x), [=](Case& c) {
             Value in = c.trainable("x", x, Values::signed_);
             Value gamma = c.parameter("gamma", uniform({x[1]}, 0.5, 1.5, c.rng()));
             Value beta = c.parameter("beta", uniform({x[1]}, -1, 1, c.rng()));
             c.observe(c.op(Op::batchnorm_train, {in, gamma, beta}, {{"eps", 1e-3}}));
           }}};
}

/// Logits [s[0], numel / s[0]] with random labels, plain and with label smoothing 0.2.
std::vector<CaseSpec> xent_cases(const Shape& s) {
  const int64_t n = s[0], k = numel(s) / s[0];
  auto xent = [=](double smoothing) {
    return [=](Case& c) {
      Value logits = c.trainable("logits", {n, k}, Values::signed_);
      TensorD labels = zeros({n});
      for (int64_t i = 0; i < n; ++i) labels(i) = static_cast<double>(c.rng().below(static_cast<uint64_t>(k)));
      Attrs attrs;
      if (smoothing != 0) attrs.set("smoothing", smoothing);
      c.observe(c.op(Op::softmax_xent, {logits, c.input("labels", labels)}, attrs));
    };
  };
  return {{fmt::format("softmax_xent on [{},{}]", n, k), xent(0)},
          {fmt::format("softmax_xent smoothing=0.2 on [{},{}]", n, k), xent(0.2)}};
}

/// Layout ops: reshape to the reversed dims (flat when that is the same shape), transpose by
/// rotating the axes left (not its own inverse from rank 3), broadcast to s from s without
/// its lead axis and with its last axis 1 (rank and size-1 broadcasting at once).
std::vector<CaseSpec> layout_cases(Op op, const Shape& s) {
  Shape in = s;
  Attrs attrs;
  if (op == Op::reshape) {
    Shape target(s.rbegin(), s.rend());
    attrs.set("shape", target == s ? Shape{-1} : target);
  } else if (op == Op::transpose) {
    std::vector<int64_t> perm(s.size());
    std::iota(perm.begin(), perm.end(), 1);
    perm.back() = 0;
    attrs.set("perm", perm);
  } else {
    in = without_lead(s);
    if (in.empty()) in = {1};
    in.back() = 1;
    attrs.set("shape", s);
  }
  return {{fmt::format("{} {}", op_name(op), to_string(in)),
           [=](Case& c) { c.observe(c.op(op, {c.trainable("x", in, Values::signed_)}, attrs)); }}};
}

/// Dropout with a fixed key (p = 0.4, so some elements of even small shapes are dropped).
std::vector<CaseSpec> dropout_cases(const Shape& s) {
  return {{"dropout p=0.4", [=](Case& c) {
             Value key = c.input(Model::kDropoutKey, zeros({}) + 77.0);
             c.observe(c.op(Op::dropout, {c.trainable("x", s, Values::signed_), key}, {{"p", 0.4}, {"salt", int64_t(3)}}));
           }}};
}

std::vector<CaseSpec> cases_for(Op op, const Shape& s) {
  switch (op) {
    case Op::neg:
    case Op::exp:
    case Op::tanh:
    case Op::sigmoid:
    case Op::softmax: return unary_cases(op, s, Values::signed_);
    case Op::log:
    case Op::sqrt: return unary_cases(op, s, Values::positive);
    case Op::relu:
    case Op::elu:
    case Op::selu:
    case Op::leaky_relu: return unary_cases(op, s, Values::away_from_zero);
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow: return binary_cases(op, s);
    case Op::dropout: return dropout_cases(s);
    case Op::reshape:
    case Op::transpose:
    case Op::broadcast: return layout_cases(op, s);
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max: return reduce_cases(op, s);
    case Op::matmul: return matmul_cases(s);
    case Op::conv2d: return conv_cases(s);
    case Op::maxpool2d: return pool_cases(s);
    case Op::batchnorm_train: return batchnorm_cases(s);
    case Op::softmax_xent: return xent_cases(s);
    // Ops without a VJP rule (see autodiff/vjp.cpp): nothing to check.
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::relu_grad:
    case Op::elu_grad:
    case Op::selu_grad:
    case Op::leaky_relu_grad:
    case Op::conv2d_backward_data:
    case Op::conv2d_backward_filter:
    case Op::maxpool2d_backward:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
    case Op::softmax_xent_grad:
    case Op::assign: break;
  }
  throw Error(fmt::format("gradcheck: no cases for {}", op_info(op).name));
}

}  // namespace

std::vector<Op> gradcheckable_ops() {
  std::vector<Op> ops;
  for (Op op : all_ops())
    if (has_vjp(op)) ops.push_back(op);
  return ops;
}

std::vector<GradcheckResult> gradcheck_op(Op op, const Shape& shape, const GradcheckOptions& opts) {
  if (!has_vjp(op)) throw Error(fmt::format("gradcheck: {} has no gradient rule to check", op_info(op).name));
  if (shape.empty() || std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d < 1; }))
    throw Error(fmt::format("gradcheck: shape {} must have rank >= 1 and positive dimensions", to_string(shape)));
  std::vector<GradcheckResult> results;
  uint64_t seed = opts.seed;
  for (const CaseSpec& spec : cases_for(op, shape)) {
    Case c(seed++);
    spec.build(c);
    for (GradcheckResult& r : c.check(spec.label, opts)) results.push_back(std::move(r));
  }
  return results;
}

std::vector<GradcheckResult> gradcheck_model(const ModelFn& model, int64_t batch, const GradcheckOptions& opts,
                                             const Shape& input_shape) {
  Graph g = build_forward(model, batch, Mode::train, input_shape);
  const Value logits{&g, *g.output("logits")};
  const int64_t classes = logits.shape()[1];
  Rng rng(opts.seed);
  TensorMap<double> feeds;
  feeds["x"] = uniform(g.shape(*g.find_source("x")), 0, 1, rng);
  TensorD labels = zeros({batch});
  for (int64_t i = 0; i < batch; ++i) labels(i) = static_cast<double>(rng.below(static_cast<uint64_t>(classes)));
  feeds["labels"] = labels;
  feeds["upstream"] = uniform(logits.shape(), -1, 1, rng);
  if (g.find_source(Model::kDropoutKey)) feeds[Model::kDropoutKey] = zeros({}) + 1234.0;

  // loss = softmax_xent + sum(logits * R): the cross-entropy alone sends every row the same
  // shaped upstream, R makes it arbitrary.
  g.set_scope("gradcheck");
  Model m(g, Mode::train);
  Value upstream = m.input("upstream", logits.shape());
  Value loss{&g, *g.output("loss")};
  g.set_output("loss", add(loss, reduce_sum(mul(logits, upstream), {0, 1})).id);
  g.set_scope("");

  TensorMap<float> state;
  initialize_state(g, state, opts.seed);
  return compare(g, feeds, to_double(state), opts, "");
}

}  // namespace dagger
