// Dense layers' products in bfloat16 (JitOptions::precision): refused where the JIT target
// lacks AVX512_BF16; where it has it, checked against a double reference on operands rounded
// to bfloat16 the same way, and shown to be bfloat16 (not float32) and thread-count invariant.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>

#include "codegen/jit_support.h"
#include "dagger/autodiff/step.h"
#include "dagger/codegen/host_tuning.h"
#include "dagger/codegen/jit.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/graph/dsl.h"
#include "dagger/runtime/init.h"
#include "dagger/runtime/interpreter.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

bool target_has_bf16() { return bf16_refusal(jit_target()).empty() && jit_target().vector_width == 16; }

/// x rounded to the nearest bfloat16, ties to even (what the conversion instructions do for
/// finite values).
float round_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  float r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

Graph matmul_graph(int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool epilogue) {
  Graph g;
  NodeId a = input(g, "a", ta ? Shape{k, m} : Shape{m, k}), b = input(g, "b", tb ? Shape{n, k} : Shape{k, n});
  NodeId c = g.add(Op::matmul, {a, b}, {{"trans_a", int64_t(ta)}, {"trans_b", int64_t(tb)}});
  if (epilogue) c = g.add(Op::relu, {g.add(Op::add, {c, input(g, "bias", {n})})});
  g.set_output("c", c);
  return g;
}

Tensor run_bf16(const Graph& g, const StateMap& feeds, int threads) {
  JitOptions options;
  options.precision = Precision::bf16;
  options.threads = threads;
  options.poison_arena = true;
  StateMap state;
  return compile_jit(g, options)->run(feeds, state).at("c");
}

struct Deviation {
  double rounded = 0;    // against the product of the rounded operands, relative to its scale
  double unrounded = 0;  // against the product of the float operands, relative to the same scale
};

/// The bfloat16 kernel's result against double products of the operands, rounded to bfloat16
/// and not; the scale is sum_k |a_ik b_kj| (+ |bias|) of the rounded operands.
Deviation deviation(const Tensor& got, const StateMap& feeds, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                    bool epilogue) {
  const Tensor &a = feeds.at("a"), &b = feeds.at("b");
  Deviation d;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0, rounded = 0, scale = 0;
      for (int64_t l = 0; l < k; ++l) {
        const float x = ta ? a(l, i) : a(i, l), y = tb ? b(j, l) : b(l, j);
        exact += double(x) * y;
        rounded += double(round_bf16(x)) * round_bf16(y);
        scale += std::abs(double(round_bf16(x)) * round_bf16(y));
      }
      if (epilogue) {
        const double bias = feeds.at("bias")(j);
        exact = std::max(0.0, exact + bias), rounded = std::max(0.0, rounded + bias), scale += std::abs(bias);
      }
      const double v = got(i, j), s = std::max(scale, 1e-30);
      d.rounded = std::max(d.rounded, std::abs(v - rounded) / s);
      d.unrounded = std::max(d.unrounded, std::abs(v - exact) / s);
    }
  return d;
}

}  // namespace

TEST_CASE("precision bf16 is refused where the JIT cannot use AVX512_BF16", "[jit][bf16]") {
  // What each machine is told, whichever this one is.
  CHECK(bf16_refusal(jit_target_for("host", "znver3", {"avx2", "fma"})) ==
        "needs a CPU with AVX512_BF16, which this CPU (znver3) lacks");
  CHECK(bf16_refusal(jit_target_for("host", "znver5", {"avx2", "avx512bf16", "avx512f", "fma"})).empty());
  CHECK(precision("bf16") == Precision::bf16);
  CHECK(precision_name(precision("f32")) == "f32");
  CHECK_THROWS_WITH(precision("fp16"), Catch::Contains("valid: f32, bf16"));

  const Graph g = matmul_graph(3, 5, 4, false, false, false);
  JitOptions options;
  options.precision = Precision::bf16;
  if (!target_has_bf16()) {
    WARN("this CPU lacks AVX512_BF16: only the refusal is tested here");
    CHECK_THROWS_WITH(compile_jit(g, options), Catch::Contains("AVX512_BF16"));
    return;
  }
  options.vector_width = 8;  // the instructions exist at width 16 only
  CHECK_THROWS_WITH(compile_jit(g, options), Catch::Contains("vectors of 16 floats"));
}

TEST_CASE("bfloat16 matmuls: operands rounded, float sums, every layout and odd shape", "[jit][bf16]") {
  if (!target_has_bf16()) {
    CHECK_THROWS_WITH(compile_jit(matmul_graph(3, 5, 4, false, false, false), JitOptions{.precision = Precision::bf16}),
                      Catch::Contains("AVX512_BF16"));
    return;
  }
  const std::vector<std::array<int64_t, 3>> sizes = {
      {1, 1, 1},      {7, 13, 5},   {6, 16, 8}, {33, 70, 19}, {64, 100, 40},
      {12, 32, 3},    {5, 3, 64},   {13, 1, 9}, {9, 21, 600},  // K over one slice of pairs: partial sums in C
      {7, 19, 601},                                            // K odd: the last pair's high half is zero
      {128, 37, 300}, {64, 200, 31}};                          // M % 64 == 0; a wide tile with a partial panel
  double worst = 0, least_unrounded = 1;
  uint32_t seed = 1;
  for_each_matmul_case(sizes, [&](int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool epilogue) {
    const Graph g = matmul_graph(m, n, k, ta, tb, epilogue);
    StateMap feeds{{"a", uniform(ta ? Shape{k, m} : Shape{m, k}, -1, 1, seed++)},
                   {"b", uniform(tb ? Shape{n, k} : Shape{k, n}, -1, 1, seed++)}};
    if (epilogue) feeds["bias"] = uniform({n}, -1, 1, seed++);
    const Tensor one = run_bf16(g, feeds, 1);
    const Deviation d = deviation(one, feeds, m, n, k, ta, tb, epilogue);
    CHECK(d.rounded < 2e-6);
    worst = std::max(worst, d.rounded);
    if (k >= 8) least_unrounded = std::min(least_unrounded, d.unrounded);
    CHECK(bitwise_equal(run_bf16(g, feeds, 2), one));
    CHECK(bitwise_equal(run_bf16(g, feeds, 3), one));
  });
  // Float32 operands would miss the unrounded products by about 1e-7 of the scale; bfloat16's
  // 8 significant bits miss them by about 1e-3.
  CHECK(least_unrounded > 1e-4);
  std::cout << "bf16 matmul: max error relative to sum |a||b| of the rounded operands " << worst
            << "; against the float operands at least " << least_unrounded << "\n";
}

TEST_CASE("a bf16 training step follows the float32 one and keeps its bits across thread counts", "[jit][bf16]") {
  auto mlp = [](Model& m, Value x) { return m.dense(relu(m.dense(flatten(x), 40)), 10); };
  const int64_t batch = 16;
  const Graph g = build_training_step(mlp, batch, OptimizerConfig{}, {1, 7, 9});
  if (!target_has_bf16()) {
    CHECK_THROWS_WITH(compile_jit(g, JitOptions{.precision = Precision::bf16}), Catch::Contains("AVX512_BF16"));
    return;
  }
  StateMap initial;
  initialize_state(g, initial, 7);
  StateMap f32 = initial, one = initial, two = initial;
  auto plan_f32 = compile_jit(g);
  auto plan_one = compile_jit(g, JitOptions{.threads = 1, .precision = Precision::bf16});
  auto plan_two = compile_jit(g, JitOptions{.threads = 2, .precision = Precision::bf16});
  double loss_f32 = 0, loss_bf16 = 0;
  for (int step = 0; step < 5; ++step) {
    const StateMap feeds = training_feeds(g, batch, step);
    loss_f32 = plan_f32->run(feeds, f32).at("loss")();
    const Tensor loss_one = plan_one->run(feeds, one).at("loss");
    CHECK(bitwise_equal(plan_two->run(feeds, two).at("loss"), loss_one));
    loss_bf16 = loss_one();
  }
  CHECK(std::abs(loss_bf16 - loss_f32) < 2e-2 * std::max(1.0, std::abs(loss_f32)));
  CHECK(max_state_error(two, one) == 0);
  CHECK(max_state_error(one, f32) > 0);
}

TEST_CASE("a bf16 inference plan keeps its packed pairs between runs and packs again when told", "[jit][bf16]") {
  Graph g0 = matmul_graph(3, 5, 4, false, false, false);
  if (!target_has_bf16()) {
    CHECK_THROWS_WITH(compile_jit(g0, JitOptions{.keep_packed_parameters = true, .precision = Precision::bf16}),
                      Catch::Contains("AVX512_BF16"));
    return;
  }
  // A parameter B is packed into the plan's buffer at the first run and read from there after
  // (as in float32); the kept plan must give the bits of a plan that packs every run. Shapes:
  // groups of panels with a partial last one, odd K (a last pair with a zero half), a transposed
  // B, A in blocks (its first block's pass packs for the others), 1 and 2 threads.
  const int64_t blocked_k = 515, blocked_m = 2 * host_tuning().a_block_floats / ((blocked_k + 1) / 2) + 13;
  struct Case {
    int64_t m, n, k;
    bool tb;
    int threads;
  };
  for (const Case& c : std::vector<Case>{{64, 203, 301, false, 2},
                                         {64, 203, 301, false, 1},
                                         {19, 100, 300, true, 1},
                                         {19, 100, 37, true, 2},
                                         {blocked_m, 100, blocked_k, false, 2},
                                         {7, 13, 5, false, 1}}) {
    INFO("M " << c.m << " N " << c.n << " K " << c.k << " trans_b " << c.tb << " threads " << c.threads);
    Graph g;
    const Shape b_shape = c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n};
    const NodeId w = g.add(Op::parameter, {}, {{"name", "w"}, {"shape", b_shape}, {"init", "zeros"}});
    g.set_output("c", g.add(Op::matmul, {input(g, "a", {c.m, c.k}), w}, {{"trans_b", int64_t(c.tb)}}));
    JitOptions plain{.threads = c.threads, .precision = Precision::bf16, .poison_arena = true};
    JitOptions kept = plain;
    kept.keep_packed_parameters = true;
    const auto reference = compile_jit(g, plain), plan = compile_jit(g, kept);
    CHECK(plan->kept_packed_bytes() > 0);
    const StateMap feeds{{"a", uniform({c.m, c.k}, -1, 1, 41)}};
    StateMap first{{"w", uniform(b_shape, -1, 1, 42)}}, second{{"w", uniform(b_shape, -1, 1, 43)}};
    const Tensor want1 = reference->run(feeds, first).at("c"), want2 = reference->run(feeds, second).at("c");
    StateMap state = first;
    CHECK(bitwise_equal(plan->run(feeds, state).at("c"), want1));
    CHECK(bitwise_equal(plan->run(feeds, state).at("c"), want1));
    std::copy(second.at("w").begin(), second.at("w").end(), state.at("w").begin());  // same address
    CHECK(bitwise_equal(plan->run(feeds, state).at("c"), want1));                    // not announced: kept
    plan->parameters_changed();
    CHECK(bitwise_equal(plan->run(feeds, state).at("c"), want2));
  }
}
