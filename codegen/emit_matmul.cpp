#include "codegen/emit_matmul.h"

#include <algorithm>
#include <cassert>

#include "codegen/emit_elementwise.h"
#include "codegen/iteration.h"

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

/// The register tile: `rows` rows of A times `vectors` W-wide vectors of B's columns. The
/// accumulators plus one B vector per column vector and one broadcast of A must fit in the
/// register file: 6 x 2 on 16 registers (AVX2), 8 x 3 on 32 (AVX-512).
struct TileShape {
  int rows, vectors;
};

TileShape tile_for(unsigned width) { return width >= 16 ? TileShape{8, 3} : TileShape{6, 2}; }

/// Whether B is first copied into column panels: each panel (K rows of one tile's columns)
/// is then contiguous, so the microkernel streams it instead of striding over B's rows, which
/// maps them onto few cache sets. Always for op(B) = B^T, whose columns are B's rows; for B
/// itself when more than one block of rows will read each panel.
bool packs_b(const MatmulDims& d, TileShape t) { return d.trans_b || d.m > t.rows; }

/// Columns per panel: a tile's full width.
int64_t panel_width(unsigned width, TileShape t) { return static_cast<int64_t>(t.vectors) * width; }

/// Packed layout: the panel of columns [j0, j0 + P) is K rows of P floats at offset j0 * K;
/// the last panel is padded to P columns (the padding is never stored to C).
int64_t packed_floats(const MatmulDims& d, unsigned width, TileShape t) {
  const int64_t p = panel_width(width, t);
  return (d.n + p - 1) / p * p * d.k;
}

class MatmulEmitter {
 public:
  MatmulEmitter(Emit& e, MatmulDims d, llvm::Value* a, llvm::Value* b, bool packed, llvm::Value* c, ElementGen epilogue,
                llvm::Value** current)
      : e_(e),
        d_(d),
        t_(tile_for(e.width)),
        a_(a),
        b_(b),
        packed_(packed),
        c_{c, {d.n, 1}},
        epilogue_(std::move(epilogue)),
        current_(current) {}

  /// All of C, a panel of columns at a time (so the panel stays in cache while every block
  /// of rows reads it): full tiles in loops, the leftover rows and columns as smaller tiles.
  void emit() {
    const int64_t block = panel_width(e_.width, t_);
    const int64_t full_cols = d_.n / block * block;
    emit_for(e_, full_cols, block, [&](llvm::Value* j0) { column_panel(j0, t_.vectors, e_.width); });
    const int64_t rest = d_.n - full_cols;
    if (rest == 0) return;
    const int64_t w = e_.width;
    const int tail_vectors = static_cast<int>((rest + w - 1) / w);
    column_panel(e_.i64c(full_cols), tail_vectors, static_cast<unsigned>(rest - (tail_vectors - 1) * w));
  }

 private:
  void column_panel(llvm::Value* j0, int vectors, unsigned last_lanes) {
    const int64_t full_rows = d_.m / t_.rows * t_.rows;
    emit_for(e_, full_rows, t_.rows, [&](llvm::Value* i0) { tile(i0, j0, t_.rows, vectors, last_lanes); });
    if (full_rows < d_.m) tile(e_.i64c(full_rows), j0, static_cast<int>(d_.m - full_rows), vectors, last_lanes);
  }

  /// op(A)[i, k]: a row of A, or a column when A is transposed.
  llvm::Value* a_at(llvm::Value* i, llvm::Value* k) {
    llvm::Value* index = d_.trans_a ? e_.b.CreateAdd(e_.b.CreateMul(k, e_.i64c(d_.m)), i)
                                    : e_.b.CreateAdd(e_.b.CreateMul(i, e_.i64c(d_.k)), k);
    return e_.b.CreateAlignedLoad(e_.f32, e_.b.CreateInBoundsGEP(e_.f32, a_, index), kFloatAlign);
  }

  /// The vector op(B)[k, col .. col + W) of the panel starting at column j0.
  llvm::Value* b_at(llvm::Value* k, llvm::Value* j0, int v, llvm::Value* mask) {
    llvm::Value* col = e_.b.CreateAdd(j0, e_.i64c(static_cast<int64_t>(v) * e_.width));
    if (!packed_) return load_at(e_, StridedBuffer{b_, {d_.n, 1}}, ElementPos{{k, col}, nullptr, mask});
    // Padded panels: a full vector is always in bounds.
    llvm::Value* offset =
        e_.b.CreateAdd(e_.b.CreateMul(j0, e_.i64c(d_.k)), e_.b.CreateMul(k, e_.i64c(panel_width(e_.width, t_))));
    offset = e_.b.CreateAdd(offset, e_.i64c(static_cast<int64_t>(v) * e_.width));
    return e_.b.CreateAlignedLoad(e_.vf, e_.b.CreateInBoundsGEP(e_.f32, b_, offset), kFloatAlign);
  }

  /// One rows x vectors tile at (i0, j0); the last vector has `last_lanes` active lanes.
  void tile(llvm::Value* i0, llvm::Value* j0, int rows, int vectors, unsigned last_lanes) {
    auto mask_of = [&](int v) { return v == vectors - 1 ? e_.prefix_mask(last_lanes) : nullptr; };
    auto col = [&](int v) { return e_.b.CreateAdd(j0, e_.i64c(static_cast<int64_t>(v) * e_.width)); };
    auto row = [&](int r) { return e_.b.CreateAdd(i0, e_.i64c(r)); };

    std::vector<llvm::Value*> zeros(static_cast<size_t>(rows * vectors), e_.splat(0.0f));
    auto sums = emit_loop(e_, d_.k, 1, zeros, [&](llvm::Value* k, const std::vector<llvm::Value*>& acc) {
      std::vector<llvm::Value*> bv;
      for (int v = 0; v < vectors; ++v) bv.push_back(b_at(k, j0, v, mask_of(v)));
      std::vector<llvm::Value*> next(acc.size());
      for (int r = 0; r < rows; ++r) {
        llvm::Value* a = e_.b.CreateVectorSplat(e_.width, a_at(row(r), k));
        for (int v = 0; v < vectors; ++v) next[r * vectors + v] = e_.fma(a, bv[v], acc[r * vectors + v]);
      }
      return next;
    });

    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < vectors; ++v) {
        ElementPos pos{{row(r), col(v)}, nullptr, mask_of(v)};
        pos.flat = e_.b.CreateAdd(e_.b.CreateMul(pos.coords[0], e_.i64c(d_.n)), pos.coords[1]);
        *current_ = sums[r * vectors + v];
        store_at(e_, c_, pos, epilogue_(pos));
      }
  }

  Emit& e_;
  MatmulDims d_;
  TileShape t_;
  llvm::Value* a_;
  llvm::Value* b_;  // B, or its packed panels
  bool packed_;
  StridedBuffer c_;
  ElementGen epilogue_;
  llvm::Value** current_;  // the accumulator the epilogue's matmul input stands for
};

/// Copies op(B) into panels (see packed_floats). The padding columns are left alone: the
/// plan zeroes the scratch once and they are never written.
void emit_pack_b(Emit& e, const MatmulDims& d, llvm::Value* b, llvm::Value* packed) {
  const int64_t p = panel_width(e.width, tile_for(e.width));
  auto packed_at = [&](llvm::Value* k, llvm::Value* col) {
    // Column col sits in the panel starting at col - col % p, at position col % p.
    llvm::Value* panel_start = e.b.CreateMul(e.b.CreateUDiv(col, e.i64c(p)), e.i64c(p));
    llvm::Value* offset = e.b.CreateAdd(e.b.CreateMul(panel_start, e.i64c(d.k)), e.b.CreateMul(k, e.i64c(p)));
    return e.b.CreateInBoundsGEP(e.f32, packed, e.b.CreateAdd(offset, e.b.CreateURem(col, e.i64c(p))));
  };
  if (d.trans_b) {
    // B is [N, K]: read each row once, contiguously; write it down a panel column.
    emit_for(e, d.n, 1, [&](llvm::Value* n) {
      emit_for(e, d.k, 1, [&](llvm::Value* k) {
        llvm::Value* from = e.b.CreateInBoundsGEP(e.f32, b, e.b.CreateAdd(e.b.CreateMul(n, e.i64c(d.k)), k));
        e.b.CreateAlignedStore(e.b.CreateAlignedLoad(e.f32, from, kFloatAlign), packed_at(k, n), kFloatAlign);
      });
    });
    return;
  }
  // B is [K, N]: vectors along each row, the last one masked.
  emit_for(e, d.k, 1, [&](llvm::Value* k) {
    emit_vector_nest(e, {d.n}, [&](const ElementPos& pos) {
      llvm::Value* v =
          load_at(e, StridedBuffer{b, {1}},
                  ElementPos{{e.b.CreateAdd(e.b.CreateMul(k, e.i64c(d.n)), pos.coords[0])}, nullptr, pos.mask});
      if (pos.mask)
        e.b.CreateMaskedStore(v, packed_at(k, pos.coords[0]), kFloatAlign, pos.mask);
      else
        e.b.CreateAlignedStore(v, packed_at(k, pos.coords[0]), kFloatAlign);
    });
  });
}

}  // namespace

int64_t matmul_scratch_floats(const Graph& g, const FusionGroup& group, unsigned width) {
  const MatmulDims d = dims_of(g, group.anchor);
  return packs_b(d, tile_for(width)) ? packed_floats(d, width, tile_for(width)) : 0;
}

void emit_matmul_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group) {
  assert(group.anchor >= 0);
  const MatmulDims d = dims_of(g, group.anchor);
  const bool packed = packs_b(d, tile_for(e.width));
  const int num_args = static_cast<int>(group.inputs.size()) + 1 + (packed ? 1 : 0);
  KernelFunction kf = begin_kernel(e, name, num_args);

  llvm::Value* b = kf.args[2];
  if (packed) {
    b = kf.args.back();
    emit_pack_b(e, d, kf.args[2], b);
  }

  llvm::Value* current = nullptr;
  const Shape out{d.m, d.n};
  auto input = [&](NodeId id) -> ElementGen {
    if (id == group.anchor) return [&current](const ElementPos&) { return current; };
    const size_t k =
        static_cast<size_t>(std::find(group.inputs.begin(), group.inputs.end(), id) - group.inputs.begin());
    assert(k < group.inputs.size());
    StridedBuffer buf{kf.args[k + 1], broadcast_strides(g.shape(id), out)};
    return [&e, buf](const ElementPos& pos) { return load_at(e, buf, pos); };
  };
  const ElementGen epilogue = compose_group(e, g, group, input);
  MatmulEmitter(e, d, kf.args[1], b, packed, kf.args[0], epilogue, &current).emit();
  end_kernel(e);
}

}  // namespace dagger
