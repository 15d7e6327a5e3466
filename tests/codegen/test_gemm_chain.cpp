// The JIT's GEMM computes each element of a matmul as one chain of float FMAs over k, in order
// from zero, whatever its tiling: register tile and vector width, panels and their groups,
// slices of the reduction, blocks of A (codegen/emit_gemm.h), threads, a packed B kept
// between runs, and a B read where it stands. The checks are bit for
// bit against that chain written as a plain loop, so a tiling that reorders or splits a sum
// fails them.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "codegen/jit_support.h"
#include "dagger/codegen/host_tuning.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

bool same_bits(float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; }

/// op(A) is [m, k] and op(B) [k, n], stored transposed where `ta` / `tb` say.
struct MatmulCase {
  int64_t m, n, k;
  bool ta, tb;
  int width, threads;
};

/// The elements of `got` [m, n] that differ in any bit from the chain over k of a [m, k] b [k, n].
int64_t differing_from_chain(const Tensor& got, const Tensor& a, const Tensor& b) {
  const size_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  REQUIRE(got.shape() == std::vector<size_t>{m, n});
  int64_t differing = 0;
  std::vector<float> row(n);
  for (size_t i = 0; i < m; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (size_t r = 0; r < k; ++r)
      for (size_t j = 0; j < n; ++j) row[j] = std::fma(a(i, r), b(r, j), row[j]);
    for (size_t j = 0; j < n; ++j) differing += !same_bits(got(i, j), row[j]);
  }
  return differing;
}

/// op(A) op(B) of a case's shapes, as the graph's output "c".
Graph matmul_graph(const MatmulCase& c) {
  Graph g;
  NodeId node = g.add(Op::matmul,
                      {input(g, "a", c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k}),
                       input(g, "b", c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n})},
                      {{"trans_a", int64_t(c.ta)}, {"trans_b", int64_t(c.tb)}});
  g.set_output("c", node);
  return g;
}

std::unique_ptr<JitExecutable> compile_case(const MatmulCase& c) {
  JitOptions options;
  options.poison_arena = true;  // an element no kernel writes reads NaN
  options.vector_width = c.width;
  options.threads = c.threads;
  return compile_jit(matmul_graph(c), options);
}

/// The JIT's op(A) op(B) compared bit for bit with c[i, j] = fma(a[i, k], b[k, j], c[i, j])
/// for k = 0, 1, ... from c = 0; returns the number of elements that differ.
int64_t differing_elements(const MatmulCase& c) {
  const Tensor a = uniform({c.m, c.k}, -1, 1, 21), b = uniform({c.k, c.n}, -1, 1, 22);
  const Tensor a_in = c.ta ? Tensor(xt::transpose(a)) : a, b_in = c.tb ? Tensor(xt::transpose(b)) : b;
  StateMap state;
  const Tensor got = compile_case(c)->run({{"a", a_in}, {"b", b_in}}, state).at("c");

  return differing_from_chain(got, a, b);
}

}  // namespace

TEST_CASE("a matmul is one FMA chain over k per element bit for bit on small and odd shapes", "[jit]") {
  // Width 16 with N of 16 or less takes AVX-512's tall tile (16 x 1: full tiles and a partial
  // one, or a partial one alone), with N of 17 to 32 its 12 x 2 tile (likewise), with N of 33
  // to 63 its 8 x 3 tile, with N of 64 or more its wide one (LLVM narrows the vectors on hosts
  // without AVX-512).
  for (const MatmulCase& c : std::vector<MatmulCase>{{7, 13, 5, false, false, 0, 1},
                                                     {40, 9, 300, false, false, 16, 2},  // B in place
                                                     {35, 16, 77, true, true, 16, 3},
                                                     {16, 1, 50, false, false, 16, 1},
                                                     {40, 32, 300, false, false, 16, 2},  // 12 x 2, B in place
                                                     {35, 17, 77, true, true, 16, 3},
                                                     {7, 24, 50, false, true, 16, 1},
                                                     {7, 13, 5, false, false, 16, 1},
                                                     {33, 70, 601, true, false, 16, 2},  // partial sums in C
                                                     {128, 37, 300, true, true, 16, 1},  // a packed A
                                                     {128, 100, 300, true, false, 16, 2},
                                                     {19, 100, 64, false, true, 8, 1},
                                                     {9, 21, 600, false, false, 4, 2}}) {
    INFO("M " << c.m << " N " << c.n << " K " << c.k << " trans " << c.ta << c.tb << " width " << c.width << " threads "
              << c.threads);
    CHECK(differing_elements(c) == 0);
  }
}

TEST_CASE("a matmul whose A outgrows its share of L2 runs in blocks of A with the same bits", "[jit]") {
  // Sized from this host's block (host_tuning.h) so that A is two blocks and a part: at K
  // 515 and every register tile (6 or 8 rows) the rows come to more than two blocks' tiles,
  // the last block shorter, and a leftover tile of fewer rows. N 57 and 100 are two or more
  // panels with a partial last one (on AVX-512, 57 takes the narrow tile, 48 columns a panel,
  // and 100 the wide one, 64), so each block is read by more than one panel, as blocking
  // requires.
  const int64_t k = 515;
  const int64_t m = 2 * host_tuning().a_block_floats / k + 13;
  for (const MatmulCase& c : std::vector<MatmulCase>{{m, 57, k, false, false, 16, 1},
                                                     {m, 57, k, true, false, 16, 2},
                                                     {m, 100, k, false, false, 16, 1},
                                                     {m, 100, k, true, false, 16, 1},
                                                     {m, 100, k, false, true, 16, 2},
                                                     {m, 100, k, true, true, 8, 1},
                                                     {m, 100, k, false, false, 8, 2}}) {
    INFO("M " << c.m << " N " << c.n << " K " << c.k << " trans " << c.ta << c.tb << " width " << c.width << " threads "
              << c.threads);
    CHECK(differing_elements(c) == 0);
  }
}

TEST_CASE("a matmul that packs several panels of B in one pass keeps each element's FMA chain", "[jit]") {
  // A [K, N] operand whose panels outgrow their L1 slice is packed in groups of panels
  // (emit_gemm.h): as many as fit the block budget and divide each thread's share of the
  // panels. K is sized from the host so that a panel is about two slices at every width tested
  // and the budget holds several; on a host of 32 KiB L1d and 512 KiB L2 (slice 4096 floats,
  // budget 65536) the cases make: width 8 (16-column panels), N 203 = 13 panels, the last of 11
  // columns: groups of 7 and 6 on 2 threads, 5, 5 and 3 on 3; width 16 (the wide tile, 64
  // columns): 4 panels, one group of 4 on 1 thread, two of 2 on 3; width 4 (8 columns): 26
  // panels in 13 groups of 2; M 128 with a transposed A also packs A behind the group in the
  // scratch; and a K that lets only two width-8 panels into a group, N 125: 4 groups of 2.
  const HostTuning& t = host_tuning();
  const int64_t k8 = t.slice_floats / 8 + 3, k16 = t.slice_floats / 32 + 3, k4 = t.slice_floats / 4 + 3;
  const int64_t budget_k = t.a_block_floats / 40;
  REQUIRE(t.a_block_floats >= 4 * 16 * k8);  // room for groups of several panels
  for (const MatmulCase& c : std::vector<MatmulCase>{{19, 203, k8, false, false, 8, 2},
                                                     {19, 203, k8, false, false, 8, 3},
                                                     {19, 203, k16, false, false, 16, 1},
                                                     {19, 203, k16, false, false, 16, 3},
                                                     {13, 203, k4, false, false, 4, 1},
                                                     {128, 203, k8, true, false, 8, 2},
                                                     {7, 125, budget_k, false, false, 8, 1}}) {
    INFO("M " << c.m << " N " << c.n << " K " << c.k << " trans " << c.ta << c.tb << " width " << c.width << " threads "
              << c.threads);
    CHECK(differing_elements(c) == 0);
  }
}

TEST_CASE("an inference plan keeps its packed weights between runs with the same bits and packs again when told",
          "[jit]") {
  // B is a parameter the graph never assigns, so with keep_packed_parameters the kernel packs it
  // into the plan's buffer at the first run and reads it from there after (emit_matmul.h). Each
  // case runs three times: the first run packs, the second reuses the packs, and the third
  // follows new weights written in place after parameters_changed(). Writing new weights in
  // place without it leaves the old ones in use, which shows that the second run read the kept
  // copy. The shapes: groups of panels with a partial last one on 2 and 3 threads, a transposed
  // B, A in blocks (packed by the first block's pass), tiny and odd sizes at width 4; and a
  // 10-column layer at 2 threads, whose one panel is split into chunks of row tiles and so is
  // not kept (kept_b_usable), computed as before.
  const HostTuning& t = host_tuning();
  const int64_t k8 = t.slice_floats / 8 + 3, blocked_k = 515;
  const int64_t blocked_m = 2 * t.a_block_floats / blocked_k + 13;
  struct KeptCase {
    MatmulCase c;
    bool kept;
  };
  for (const KeptCase& kc : std::vector<KeptCase>{{{64, 203, k8, false, false, 8, 2}, true},
                                                  {{64, 203, k8, false, false, 8, 3}, true},
                                                  {{19, 100, 300, false, true, 16, 1}, true},
                                                  {{blocked_m, 100, blocked_k, false, false, 8, 2}, true},
                                                  {{7, 13, 5, false, false, 4, 1}, true},
                                                  {{9, 21, 600, false, false, 4, 2}, true},
                                                  {{64, 10, 512, false, false, 8, 2}, false}}) {
    const MatmulCase& c = kc.c;
    INFO("M " << c.m << " N " << c.n << " K " << c.k << " trans_b " << c.tb << " width " << c.width << " threads "
              << c.threads);
    Graph g;
    const Shape b_shape = c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n};
    const NodeId w = g.add(Op::parameter, {}, {{"name", "w"}, {"shape", b_shape}, {"init", "zeros"}});
    g.set_output("c", g.add(Op::matmul, {input(g, "a", {c.m, c.k}), w}, {{"trans_b", int64_t(c.tb)}}));
    JitOptions options;
    options.poison_arena = true;  // an element no kernel writes reads NaN
    options.vector_width = c.width;
    options.threads = c.threads;
    options.keep_packed_parameters = true;
    const auto plan = compile_jit(g, options);
    CHECK((plan->kept_packed_bytes() > 0) == kc.kept);

    const Tensor a = uniform({c.m, c.k}, -1, 1, 31);
    auto weights = [&](uint32_t seed) {
      const Tensor b = uniform({c.k, c.n}, -1, 1, seed);
      return std::pair{b, c.tb ? Tensor(xt::transpose(b)) : b};
    };
    auto [b1, b1_in] = weights(32);
    StateMap state{{"w", b1_in}};
    const StateMap feeds{{"a", a}};
    CHECK(differing_from_chain(plan->run(feeds, state).at("c"), a, b1) == 0);
    CHECK(differing_from_chain(plan->run(feeds, state).at("c"), a, b1) == 0);

    const auto [b2, b2_in] = weights(33);
    float* at = state.at("w").data();
    std::copy(b2_in.begin(), b2_in.end(), state.at("w").begin());  // same address, new values
    REQUIRE(state.at("w").data() == at);
    const Tensor unannounced = plan->run(feeds, state).at("c");
    CHECK(differing_from_chain(unannounced, a, kc.kept ? b1 : b2) == 0);
    plan->parameters_changed();
    CHECK(differing_from_chain(plan->run(feeds, state).at("c"), a, b2) == 0);

    // A tensor at another address (the old one still alive) is packed again without being told.
    const auto [b3, b3_in] = weights(34);
    StateMap moved{{"w", b3_in}};
    CHECK(differing_from_chain(plan->run(feeds, moved).at("c"), a, b3) == 0);
  }
}

TEST_CASE("a matmul of at most 128 rows reads B where it stands, each element one FMA chain", "[jit]") {
  // A [K, N] B is not packed where few row tiles read each panel (emit_gemm.cpp): the tiles
  // load B's rows N floats apart, the last vector of a partial panel masked at the row's end.
  // The cases: full wide panels (N 512) and a 10-column layer at width 16 on 2 threads; a
  // partial panel (N 70 = 64 + 6) on 3; reductions of several L1 slices (partial sums in C);
  // M 128 with a transposed A, which is packed alone; width 8 and 4; a single row.
  for (const MatmulCase& c : std::vector<MatmulCase>{{64, 512, 37, false, false, 16, 2},
                                                     {64, 10, 51, false, false, 16, 2},
                                                     {5, 70, 33, false, false, 16, 3},
                                                     {128, 203, 1029, false, false, 16, 2},
                                                     {128, 100, 300, true, false, 16, 2},
                                                     {61, 203, 129, false, false, 8, 2},
                                                     {13, 21, 600, false, false, 4, 1},
                                                     {1, 33, 17, false, false, 8, 1}}) {
    INFO("M " << c.m << " N " << c.n << " K " << c.k << " trans " << c.ta << c.tb << " width " << c.width << " threads "
              << c.threads);
    CHECK(differing_elements(c) == 0);
  }
  // Nothing is packed there, so such a plan needs no scratch; from 129 rows, or with a
  // transposed B, B is packed as before.
  CHECK(compile_case({64, 512, 37, false, false, 16, 2})->scratch_bytes() == 0);
  CHECK(compile_case({128, 100, 300, false, false, 8, 1})->scratch_bytes() == 0);
  CHECK(compile_case({129, 100, 300, false, false, 8, 1})->scratch_bytes() > 0);
  CHECK(compile_case({64, 100, 300, false, true, 8, 1})->scratch_bytes() > 0);
  CHECK(differing_elements({129, 100, 300, false, false, 8, 2}) == 0);
}
