#include "dagger/codegen/emit_matmul.h"

#include <algorithm>
#include <cassert>
#include <functional>

#include "dagger/codegen/emit_elementwise.h"
#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/iteration.h"

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

struct MatmulDims {
  int64_t m, n, k;
  bool trans_a, trans_b;
};

MatmulDims dims_of(const Graph& g, NodeId matmul) {
  const Node& n = g.node(matmul);
  const bool ta = n.attrs.i_or("trans_a", 0) != 0, tb = n.attrs.i_or("trans_b", 0) != 0;
  const Shape& a = g.shape(n.operands[0]);
  return {n.shape[0], n.shape[1], ta ? a[0] : a[1], ta, tb};
}

/// A transposed A ([K, M]) read in place has each row tile walk down its columns, one cache
/// line per reduction step, M floats apart. When M is a multiple of 64 those lines fall in at
/// most a quarter of the 64 sets of a 32 KiB 8-way L1, evict each other within a slice and are read
/// again from L2 or L3 by the next tile and every panel (mlp2048's dW2, M = 2048: all in one
/// set). Such an A is offered for packing; other strides measured no better packed.
bool a_conflicts_in_l1(const MatmulDims& d) { return d.trans_a && d.m % 64 == 0; }

/// The wide register tile where the output has 64 columns or more (see register_tile). In
/// bfloat16 the reduction counts pairs, and A is always packed (into pairs). A [K, N] B may be
/// read in place (`b_readable`) unless the plan keeps it packed (GemmProblem::kept_b). A
/// kernel that stores an output over a buffer its epilogue reads (an optimizer's update of the
/// weight whose gradient this is) keeps no partial sums in C (`whole_k`).
GemmSizes sizes_of(const MatmulDims& d, bool bf16, bool b_kept, bool stores_in_place) {
  GemmSizes s = bf16 ? GemmSizes{1, d.m, d.n, {(d.k + 1) / 2}, 1, true, d.n >= 64, !d.trans_b, true}
                     : GemmSizes{1, d.m, d.n, {d.k}, 1, a_conflicts_in_l1(d), d.n >= 64, !d.trans_b};
  s.b_readable = !bf16 && !d.trans_b && !b_kept;
  s.whole_k = stores_in_place;
  return s;
}

/// Where A's pair (i, kp) goes when packed for bfloat16: A in its own reading order, [M][K/2]
/// for an A read along its rows, [K/2][M] for a transposed one.
void set_bf16_a_strides(const MatmulDims& d, GemmProblem& p) {
  const int64_t pairs = (d.k + 1) / 2;
  p.a_stride_i = d.trans_a ? 1 : pairs;
  p.a_stride_k = d.trans_a ? d.m : 1;
}

/// `count` floats of `base` from `at` (at most W; lanes past them, all when count <= 0, zero).
llvm::Value* load_up_to(Emit& e, llvm::Value* base, llvm::Value* at, int64_t count) {
  const int64_t w = e.width;
  if (count <= 0) return e.splat(0.0f);
  llvm::Value* mask = count < w ? e.prefix_mask(static_cast<unsigned>(count)) : nullptr;
  return load_at(e, StridedBuffer{base, {1}}, ElementPos{{at}, nullptr, mask});
}

/// The W bfloat16 pairs of the 2W floats of `base` from `at`, of which `floats` exist (zeros after).
llvm::Value* pairs_along(Emit& e, llvm::Value* base, llvm::Value* at, int64_t floats) {
  const int64_t w = e.width;
  return bf16_pairs_along(e, load_up_to(e, base, at, std::min(w, floats)),
                          load_up_to(e, base, e.b.CreateAdd(at, e.i64c(w)), std::min(w, floats - w)));
}

/// Calls fn(kp, has_odd) for every pair of rows (2kp, 2kp + 1) of a matrix of k rows, in a
/// loop; k odd, then for its last row alone (has_odd false: it pairs with zeros).
void for_each_row_pair(Emit& e, int64_t k, const std::function<void(llvm::Value*, bool)>& fn) {
  emit_for(e, k / 2, 1, [&](llvm::Value* kp) { fn(kp, true); });
  if (k % 2 != 0) fn(e.i64c(k / 2), false);
}

/// The pairs of `count` floats (at most W) of `base` from `at` with the floats `row` further on
/// (the next row), lane by lane; zeros in the high halves when !has_odd.
llvm::Value* pairs_across(Emit& e, llvm::Value* base, llvm::Value* at, int64_t row, int64_t count, bool has_odd) {
  llvm::Value* lo = load_up_to(e, base, at, count);
  llvm::Value* hi = has_odd ? load_up_to(e, base, e.b.CreateAdd(at, e.i64c(row)), count) : e.splat(0.0f);
  return bf16_pairs_across(e, lo, hi);
}

/// Packs A into bfloat16 pairs (set_bf16_a_strides). A row of A: 2W floats at a time become W
/// pairs, the last ones masked (past K they read as zeros). A transposed A ([K, M]): rows 2kp
/// and 2kp + 1 of its storage, W columns at a time, paired lane by lane (a missing row 2kp + 1
/// pairs with zeros).
void pack_a_bf16(Emit& e, const MatmulDims& d, llvm::Value* a, llvm::Value* dst) {
  const int64_t w = e.width, pairs = (d.k + 1) / 2;
  auto store = [&](llvm::Value* at, llvm::Value* v, int64_t count) {
    llvm::Value* mask = count < w ? e.prefix_mask(static_cast<unsigned>(count)) : nullptr;
    store_at(e, StridedBuffer{dst, {1}}, ElementPos{{at}, nullptr, mask}, v);
  };
  if (!d.trans_a) {
    const int64_t full = d.k / (2 * w) * w;  // pairs in whole blocks of W; the rest in one masked block
    emit_for(e, d.m, 1, [&](llvm::Value* i) {
      llvm::Value* row = e.b.CreateMul(i, e.i64c(d.k));
      llvm::Value* out = e.b.CreateMul(i, e.i64c(pairs));
      auto block = [&](llvm::Value* kp, int64_t count, int64_t floats) {
        store(e.b.CreateAdd(out, kp), pairs_along(e, a, e.b.CreateAdd(row, e.b.CreateMul(kp, e.i64c(2))), floats),
              count);
      };
      emit_for(e, full, w, [&](llvm::Value* kp) { block(kp, w, 2 * w); });
      if (full < pairs) block(e.i64c(full), pairs - full, d.k - 2 * full);
    });
    return;
  }
  for_each_row_pair(e, d.k, [&](llvm::Value* kp, bool has_odd) {
    llvm::Value* even = e.b.CreateMul(e.b.CreateMul(kp, e.i64c(2)), e.i64c(d.m));
    llvm::Value* out = e.b.CreateMul(kp, e.i64c(d.m));
    auto block = [&](llvm::Value* i, int64_t count) {
      store(e.b.CreateAdd(out, i), pairs_across(e, a, e.b.CreateAdd(even, i), d.m, count, has_odd), count);
    };
    const int64_t full = d.m / w * w;
    emit_for(e, full, w, [&](llvm::Value* i) { block(i, w); });
    if (full < d.m) block(e.i64c(full), d.m - full);
  });
}

/// Copies op(B)'s columns [j0, j0 + cols) into a panel of bfloat16 pairs, `stride` pairs per
/// pair row (pack_b's layout with pairs for floats). B [K, N]: rows 2kp and 2kp + 1 paired lane
/// by lane. B [N, K] (transposed): each panel column is a row of B whose floats pair up in
/// place, W pairs of W columns at a time transposed in registers into W pair rows.
void pack_b_bf16(Emit& e, const MatmulDims& d, llvm::Value* b, llvm::Value* j0, int64_t cols, int64_t stride,
                 llvm::Value* panel) {
  const int64_t w = e.width, pairs = (d.k + 1) / 2;
  if (d.trans_b) {
    // `count` pair rows from kp0 on, from `floats` floats of each row of B.
    auto block = [&](llvm::Value* kp0, int64_t count, int64_t floats) {
      pack_rows_transposed(e, panel, stride, kp0, count, cols, [&](int64_t c) {
        llvm::Value* row = e.b.CreateMul(e.b.CreateAdd(j0, e.i64c(c)), e.i64c(d.k));
        return pairs_along(e, b, e.b.CreateAdd(row, e.b.CreateMul(kp0, e.i64c(2))), floats);
      });
    };
    const int64_t full = d.k / (2 * w) * w;
    emit_for(e, full, w, [&](llvm::Value* kp0) { block(kp0, w, 2 * w); });
    if (full < pairs) block(e.i64c(full), pairs - full, d.k - 2 * full);
    return;
  }
  const int64_t padded = (cols + stride - 1) / stride * stride;
  for_each_row_pair(e, d.k, [&](llvm::Value* kp, bool has_odd) {
    llvm::Value* even = e.b.CreateAdd(e.b.CreateMul(e.b.CreateMul(kp, e.i64c(2)), e.i64c(d.n)), j0);
    for (int64_t c = 0; c < padded; c += w) {
      llvm::Value* v = c < cols
                           ? pairs_across(e, b, e.b.CreateAdd(even, e.i64c(c)), d.n, std::min(cols - c, w), has_odd)
                           : e.splat(0.0f);
      llvm::Value* at =
          e.b.CreateAdd(e.b.CreateMul(kp, e.i64c(stride)), e.i64c(c / stride * pairs * stride + c % stride));
      e.b.CreateAlignedStore(v, e.b.CreateInBoundsGEP(e.f32, panel, at), kFloatAlign);
    }
  });
}

/// Copies a transposed A ([K, M]) into row tiles of `rows`: for each k, each tile's rows are
/// consecutive floats of A's row k, moved by masked vectors.
void pack_a_transposed(Emit& e, const MatmulDims& d, llvm::Value* a, int rows, llvm::Value* dst) {
  const int64_t tiles = d.m / rows, leftover = d.m % rows;
  auto copy = [&](llvm::Value* k, llvm::Value* t, int64_t count) {
    llvm::Value* i0 = e.b.CreateMul(t, e.i64c(rows));
    llvm::Value* from = e.b.CreateAdd(e.b.CreateMul(k, e.i64c(d.m)), i0);
    llvm::Value* to = e.b.CreateAdd(e.b.CreateMul(i0, e.i64c(d.k)), e.b.CreateMul(k, e.i64c(rows)));
    for (int64_t r = 0; r < count; r += e.width) {
      llvm::Value* mask = r + e.width > count ? e.prefix_mask(static_cast<unsigned>(count - r)) : nullptr;
      llvm::Value* v = load_at(e, StridedBuffer{a, {1}}, ElementPos{{e.b.CreateAdd(from, e.i64c(r))}, nullptr, mask});
      store_at(e, StridedBuffer{dst, {1}}, ElementPos{{e.b.CreateAdd(to, e.i64c(r))}, nullptr, mask}, v);
    }
  };
  emit_for(e, d.k, 1, [&](llvm::Value* k) {
    emit_for(e, tiles, 1, [&](llvm::Value* t) { copy(k, t, rows); });
    if (leftover > 0) copy(k, e.i64c(tiles), leftover);
  });
}

/// Copies op(B)'s columns [j0, j0 + cols) into a panel of `stride` floats per row.
void pack_b(Emit& e, const MatmulDims& d, llvm::Value* b, llvm::Value* j0, int64_t cols, int64_t stride,
            llvm::Value* panel) {
  if (d.trans_b) {
    // B is [N, K]: each panel column is a row of B. W rows of W columns at a time: one vector
    // along each of W rows of B, transposed in registers into W panel rows.
    const int64_t w = e.width;
    auto block = [&](llvm::Value* k0, int64_t count) {
      pack_rows_transposed(e, panel, stride, k0, count, cols, [&](int64_t c) {
        llvm::Value* row = e.b.CreateMul(e.b.CreateAdd(j0, e.i64c(c)), e.i64c(d.k));
        return load_at(e, StridedBuffer{b, {1}},
                       ElementPos{{e.b.CreateAdd(row, k0)}, nullptr, e.prefix_mask(static_cast<unsigned>(count))});
      });
    };
    const int64_t full = d.k / w * w;
    emit_for(e, full, w, [&](llvm::Value* k0) { block(k0, w); });
    if (full < d.k) block(e.i64c(full), d.k - full);
    return;
  }
  // B is [K, N]: vectors along each row, the last one masked; the padding is stored as zeros.
  // A group's panels are filled together, so that each row of B is read as one run.
  const int64_t padded = (cols + stride - 1) / stride * stride;
  emit_for(e, d.k, 1, [&](llvm::Value* k) {
    llvm::Value* row = e.b.CreateAdd(e.b.CreateMul(k, e.i64c(d.n)), j0);
    for (int64_t c = 0; c < padded; c += e.width) {
      llvm::Value* v = e.splat(0.0f);
      if (c < cols)
        v = load_at(e, StridedBuffer{b, {1}},
                    ElementPos{{e.b.CreateAdd(row, e.i64c(c))}, nullptr,
                               e.prefix_mask(static_cast<unsigned>(std::min<int64_t>(cols - c, e.width)))});
      llvm::Value* at = e.b.CreateAdd(e.b.CreateMul(k, e.i64c(stride)), e.i64c(c / stride * d.k * stride + c % stride));
      e.b.CreateAlignedStore(v, e.b.CreateInBoundsGEP(e.f32, panel, at), kFloatAlign);
    }
  });
}

}  // namespace

int64_t matmul_kept_b_floats(const Graph& g, const FusionGroup& group, const Emit& e) {
  const Node& matmul = g.node(group.anchor);
  const NodeId b = matmul.operands[1];
  if (g.node(b).op != Op::parameter || group.inputs.size() < 2 || group.inputs[1] != b) return 0;
  const std::string& name = g.node(b).attrs.s("name");
  for (NodeId a : g.nodes_of(Op::assign))
    if (g.node(a).attrs.s("target") == name) return 0;  // a training step's weights change every run
  const GemmSizes sizes = sizes_of(dims_of(g, group.anchor), e.bf16, true, !group.in_place.empty());
  const GemmLayout layout = gemm_layout(sizes, e.width, e.threads);
  return kept_b_usable(sizes, layout) ? layout.panels * layout.k * layout.panel : 0;
}

GemmLayout matmul_layout(const Graph& g, const FusionGroup& group, const Emit& e) {
  const bool b_kept = e.keep_packed_parameters && matmul_kept_b_floats(g, group, e) > 0;
  return gemm_layout(sizes_of(dims_of(g, group.anchor), e.bf16, b_kept, !group.in_place.empty()), e.width, e.threads);
}

void emit_matmul_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group) {
  assert(group.anchor >= 0);
  const MatmulDims d = dims_of(g, group.anchor);
  const size_t first_input = first_input_arg(group);
  assert((!e.bf16 || e.width == 16) && "JitExecutable refuses bf16 at other widths");
  const bool keep_b = e.keep_packed_parameters && matmul_kept_b_floats(g, group, e) > 0;
  GemmProblem p;
  p.sizes = sizes_of(d, e.bf16, keep_b, !group.in_place.empty());
  const GemmLayout layout = gemm_layout(p.sizes, e.width, e.threads);
  // + the scratch, where there is one (the runtime passes it only then), and the kept B and
  // the repack pointer
  const bool has_scratch = layout.scratch_floats > 0;
  const size_t scratch_arg = first_input + group.inputs.size();
  const int num_args = static_cast<int>(scratch_arg) + (has_scratch ? 1 : 0) + (keep_b ? 2 : 0);
  KernelFunction kf = begin_kernel(e, name, num_args);
  share_in_place_buffers(kf, group);
  llvm::Value* a = kf.args[first_input];
  llvm::Value* b = kf.args[first_input + 1];
  llvm::Value* scratch = has_scratch ? kf.args[scratch_arg] : nullptr;

  llvm::Value* current = nullptr;
  const Shape out{d.m, d.n};
  auto input = [&](NodeId id) -> ElementGen {
    if (id == group.anchor) return [&current](const ElementPos&) { return current; };
    const size_t k =
        static_cast<size_t>(std::find(group.inputs.begin(), group.inputs.end(), id) - group.inputs.begin());
    assert(k < group.inputs.size());
    StridedBuffer buf{kf.args[first_input + k], broadcast_strides(g.shape(id), out)};
    return [&e, buf](const ElementPos& pos) { return load_at(e, buf, pos); };
  };
  const std::vector<ElementGen> epilogue = compose_group(e, g, group, input);

  p.c = kf.args[0];
  p.a_at = [&](llvm::Value*, llvm::Value*, llvm::Value* i, const std::vector<llvm::Value*>& k) {
    llvm::Value* index = d.trans_a ? e.b.CreateAdd(e.b.CreateMul(k[0], e.i64c(d.m)), i)
                                   : e.b.CreateAdd(e.b.CreateMul(i, e.i64c(d.k)), k[0]);
    return e.b.CreateAlignedLoad(e.f32, e.b.CreateInBoundsGEP(e.f32, a, index), kFloatAlign);
  };
  if (e.bf16) {
    set_bf16_a_strides(d, p);
    p.pack_a = [&](int, llvm::Value* dst) { pack_a_bf16(e, d, a, dst); };
    p.pack_b = [&](llvm::Value*, llvm::Value*, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
      pack_b_bf16(e, d, b, j0, cols, layout.panel, panel);
    };
  } else {
    if (p.sizes.a_packable) p.pack_a = [&](int rows, llvm::Value* dst) { pack_a_transposed(e, d, a, rows, dst); };
    p.pack_b = [&](llvm::Value*, llvm::Value*, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
      pack_b(e, d, b, j0, cols, layout.panel, panel);
    };
  }
  p.store_c = [&](llvm::Value*, llvm::Value* i, llvm::Value* j, llvm::Value* mask, llvm::Value* value) {
    ElementPos pos{{i, j}, e.b.CreateAdd(e.b.CreateMul(i, e.i64c(d.n)), j), mask};
    current = value;
    // Every output first, then the stores: an output may be stored over a value another reads.
    std::vector<llvm::Value*> values;
    for (const ElementGen& output : epilogue) values.push_back(output(pos));
    for (size_t o = 0; o < values.size(); ++o) store_at(e, StridedBuffer{kf.args[o], {d.n, 1}}, pos, values[o]);
  };
  // A kernel storing over its epilogue's operands (an optimizer's update of the weight whose
  // gradient this is) reads `rows` runs of each operand of C's shape per tile, N floats apart:
  // fetched as the tile starts, they arrive while its FMAs run. (Other epilogues' operands, a
  // ReLU's mask, measured slower fetched so.)
  std::vector<llvm::Value*> c_shaped;
  if (!group.in_place.empty())
    for (size_t k = 2; k < group.inputs.size(); ++k)
      if (g.shape(group.inputs[k]) == out) c_shaped.push_back(kf.args[first_input + k]);
  if (!c_shaped.empty())
    p.prefetch_c = [&](llvm::Value*, llvm::Value* i0, int rows, llvm::Value* j0, int64_t cols) {
      for (llvm::Value* buffer : c_shaped)
        for (int r = 0; r < rows; ++r)
          prefetch_floats(e, buffer, e.b.CreateAdd(e.b.CreateMul(e.b.CreateAdd(i0, e.i64c(r)), e.i64c(d.n)), j0), cols,
                          false);
    };
  if (layout.b_in_place) p.b_in_place = b;
  if (keep_b) {
    assert(has_scratch && "a kept B is packed, so its layout has a scratch panel");
    p.kept_b = kf.args[scratch_arg + 1];
    p.repack = e.b.CreateIsNotNull(kf.args[scratch_arg + 2]);
  }
  emit_gemm(e, p, kf.begin, kf.end, scratch);
  end_kernel(e);
}

}  // namespace dagger
