// The JIT's GEMM computes each element of a matmul as one chain of float FMAs over k, in order
// from zero, whatever its tiling: register tile and vector width, panels and their groups,
// slices of the reduction, blocks of A (codegen/emit_gemm.h) and threads. The checks are bit for
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

/// The JIT's op(A) op(B) compared bit for bit with c[i, j] = fma(a[i, k], b[k, j], c[i, j])
/// for k = 0, 1, ... from c = 0; returns the number of elements that differ.
int64_t differing_elements(const MatmulCase& c) {
  const Tensor a = uniform({c.m, c.k}, -1, 1, 21), b = uniform({c.k, c.n}, -1, 1, 22);
  const Tensor a_in = c.ta ? Tensor(xt::transpose(a)) : a, b_in = c.tb ? Tensor(xt::transpose(b)) : b;
  Graph g;
  NodeId node = g.add(Op::matmul,
                      {input(g, "a", c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k}),
                       input(g, "b", c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n})},
                      {{"trans_a", int64_t(c.ta)}, {"trans_b", int64_t(c.tb)}});
  g.set_output("c", node);
  JitOptions options;
  options.vector_width = c.width;
  options.threads = c.threads;
  StateMap state;
  const Tensor got = compile_jit(g, options)->run({{"a", a_in}, {"b", b_in}}, state).at("c");
  REQUIRE(got.shape() == std::vector<size_t>{size_t(c.m), size_t(c.n)});

  int64_t differing = 0;
  std::vector<float> row(static_cast<size_t>(c.n));
  for (int64_t i = 0; i < c.m; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (int64_t k = 0; k < c.k; ++k)
      for (int64_t j = 0; j < c.n; ++j) row[size_t(j)] = std::fma(a(i, k), b(k, j), row[size_t(j)]);
    for (int64_t j = 0; j < c.n; ++j) differing += !same_bits(got(i, j), row[size_t(j)]);
  }
  return differing;
}

}  // namespace

TEST_CASE("a matmul is one FMA chain over k per element bit for bit on small and odd shapes", "[jit]") {
  // Width 16 with N under 64 takes AVX-512's narrow tile, with N of 64 or more its wide one
  // (LLVM narrows the vectors on hosts without AVX-512).
  for (const MatmulCase& c : std::vector<MatmulCase>{{7, 13, 5, false, false, 0, 1},
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
