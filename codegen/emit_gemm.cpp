#include "dagger/codegen/emit_gemm.h"

#include <llvm/IR/Constants.h>
#include <llvm/IR/IntrinsicsX86.h>

#include <algorithm>
#include <cassert>
#include <functional>
#include <utility>

#include "dagger/codegen/host_tuning.h"
#include "dagger/codegen/iteration.h"

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

/// The largest A packed whole into each thread's scratch (8 MiB): a bound on the scratch's
/// memory, not a cache fit, so not derived from the host's caches (host_tuning.h).
constexpr int64_t kPackedAFloats = int64_t(1) << 21;

/// B is read where it stands (GemmLayout::b_in_place) by a matmul or a 1x1 convolution of
/// at most this many rows. Packing B reads and writes all of it once per call, which pays only
/// when many row tiles then read each panel. mlp512's first layer at M = 64 (784 x 512 B) ran
/// 10-14% faster in place, at M = 128 8%, mlp2048's (784 x 2048 B) at M = 64 even; at M = 256
/// in place was slower (mlp2048's first layer +10%, its B's rows 8 KiB apart read by each of
/// 43 row tiles). rescnn's 1x1 products (M 32-128, K 32-128, an image of 49 or 196 columns
/// per problem), 7 alternating rounds: the data gradient over 32 channels 0.58 -> 0.39 ms, the
/// others 10-24% faster on AVX-512, even at width 8.
constexpr int64_t kMaxRowsForBInPlace = 128;

/// The fewest row tiles in a block of A: every block packs each panel again, so a long
/// reduction gets blocks over budget rather than blocks too short to pay for their packing.
constexpr int64_t kMinBlockTiles = 16;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

class GemmEmitter {
 public:
  GemmEmitter(Emit& e, const GemmProblem& p, llvm::Value* scratch)
      : e_(e), p_(p), l_(gemm_layout(p.sizes, e.width, e.threads)), scratch_(scratch) {}

  void emit(llvm::Value* begin, llvm::Value* end) {
    if (l_.pack_a) {
      assert(p_.pack_a && "a_packable promises a pack_a");
      packed_a_ = e_.b.CreateInBoundsGEP(e_.f32, scratch_, e_.i64c(l_.a_offset));
      emit_if(e_, e_.b.CreateICmpSLT(begin, end), [&] { p_.pack_a(l_.rows, packed_a_); });
    }
    // The reduction blocks are the outer loop, around all of this range's items: a block's A
    // (a filter gradient's dy of one image) then stays in L2 across the panels, instead of
    // being streamed again from memory for every panel. Every element of C still sees the
    // blocks in order, so the sums are the same whatever the nesting. Blocks of A's rows come
    // next, for the same reason: a block then stays in L2 across the range's panels.
    emit_for(e_, p_.sizes.k_blocks, 1, [&](llvm::Value* kb) {
      auto items = [&](llvm::Value* block) {
        emit_range(e_, begin, end, [&](llvm::Value* item) { item_body(item, kb, block); });
      };
      if (l_.m_blocks == 1)
        items(nullptr);
      else
        emit_for(e_, l_.m_blocks, 1, items);
    });
  }

 private:
  /// One item (problem, group of panels, chunk of row tiles) in reduction block `kb`, limited
  /// to the row tiles of block `block` of A (nullptr: A is not blocked).
  void item_body(llvm::Value* item, llvm::Value* kb, llvm::Value* block) {
    const int64_t per_problem = l_.groups * l_.row_chunks;
    llvm::Value* b = e_.b.CreateUDiv(item, e_.i64c(per_problem));
    llvm::Value* rest = e_.b.CreateURem(item, e_.i64c(per_problem));
    llvm::Value* group = e_.b.CreateUDiv(rest, e_.i64c(l_.row_chunks));
    llvm::Value* chunk = e_.b.CreateURem(rest, e_.i64c(l_.row_chunks));
    const int64_t group_cols = l_.group * l_.panel;
    llvm::Value* j0 = e_.b.CreateMul(group, e_.i64c(group_cols));
    const int64_t tail_cols = p_.sizes.n - (l_.groups - 1) * group_cols;
    if (tail_cols == group_cols) {
      group_body(b, kb, j0, chunk, block, group_cols);
      return;
    }
    llvm::Value* is_tail = e_.b.CreateICmpEQ(group, e_.i64c(l_.groups - 1));
    emit_if(e_, is_tail, [&] { group_body(b, kb, j0, chunk, block, tail_cols); });
    emit_if(e_, e_.b.CreateNot(is_tail), [&] { group_body(b, kb, j0, chunk, block, group_cols); });
  }

  /// Packs the `cols` columns of a group from j0 on (a whole number of panels but for the last
  /// one) into the scratch, or finds them in the kept B (packing them there first when told to),
  /// and runs the item's row tiles over each of its panels in turn.
  void group_body(llvm::Value* b, llvm::Value* kb, llvm::Value* j0, llvm::Value* chunk, llvm::Value* block,
                  int64_t cols) {
    llvm::Value* packed = scratch_;
    if (l_.b_in_place) {
      // B's rows, N floats apart; problem b's B follows the previous one's.
      llvm::Value* first = e_.b.CreateAdd(e_.b.CreateMul(b, e_.i64c(l_.k * p_.sizes.n)), j0);
      packed = e_.b.CreateInBoundsGEP(e_.f32, p_.b_in_place, first);
    } else if (p_.kept_b) {
      // The group's panels in the kept B: j0 / panel panels of K rows precede them. With A in
      // blocks, the first block's pass packs them for the later ones (the same thread's items).
      packed = e_.b.CreateInBoundsGEP(e_.f32, p_.kept_b, e_.b.CreateMul(j0, e_.i64c(l_.k)));
      llvm::Value* pack_now = p_.repack;
      if (block) pack_now = e_.b.CreateAnd(pack_now, e_.b.CreateICmpEQ(block, e_.i64c(0)));
      emit_if(e_, pack_now, [&] { p_.pack_b(b, kb, j0, cols, packed); });
    } else {
      p_.pack_b(b, kb, j0, cols, scratch_);
    }
    if (l_.tiles_outer) {
      rows_body(b, kb, j0, chunk, cols, packed);
      return;
    }
    each_panel(cols, [&](llvm::Value* q, int64_t panel_cols) {
      const int64_t panel_step = l_.b_in_place ? l_.panel : l_.k * l_.panel;  // in place: the next columns
      panel_ = e_.b.CreateInBoundsGEP(e_.f32, packed, e_.b.CreateMul(q, e_.i64c(panel_step)));
      panel_body(b, kb, e_.b.CreateAdd(j0, e_.b.CreateMul(q, e_.i64c(l_.panel))), chunk, block, panel_cols);
    });
  }

  /// Calls fn(q, columns) for each panel q of a group of `cols` columns: the full ones (in a
  /// loop where there are several), then the partial last one.
  void each_panel(int64_t cols, const std::function<void(llvm::Value*, int64_t)>& fn) {
    const int64_t full = cols / l_.panel, tail = cols % l_.panel;
    if (full == 1)
      fn(e_.i64c(0), l_.panel);
    else if (full > 1)
      emit_for(e_, full, 1, [&](llvm::Value* q) { fn(q, l_.panel); });
    if (tail > 0) fn(e_.i64c(full), tail);
  }

  /// Calls fn(i0, rows) for each row tile of part `part` of `parts`, `tiles` full tiles per
  /// part, and the last part also for the leftover rows of M (fewer than a tile).
  void each_row_tile(llvm::Value* part, int64_t parts, int64_t tiles,
                     const std::function<void(llvm::Value*, int)>& fn) {
    if (l_.row_tiles > 0) {
      llvm::Value* first = e_.b.CreateMul(part, e_.i64c(tiles));
      llvm::Value* last = e_.b.CreateAdd(first, e_.i64c(tiles));
      last = e_.b.CreateSelect(e_.b.CreateICmpSLT(last, e_.i64c(l_.row_tiles)), last, e_.i64c(l_.row_tiles));
      emit_range(e_, first, last, [&](llvm::Value* t) { fn(e_.b.CreateMul(t, e_.i64c(l_.rows)), l_.rows); });
    }
    const int leftover = static_cast<int>(p_.sizes.m - l_.row_tiles * l_.rows);
    if (leftover > 0)
      emit_if(e_, e_.b.CreateICmpEQ(part, e_.i64c(parts - 1)), [&] { fn(e_.i64c(l_.row_tiles * l_.rows), leftover); });
  }

  /// The vectors of a tile `cols` columns wide, and the active lanes of its last one.
  std::pair<int, unsigned> tile_vectors(int64_t cols) const {
    const int vectors = static_cast<int>(ceil_div(cols, e_.width));
    return {vectors, static_cast<unsigned>(cols - (vectors - 1) * static_cast<int64_t>(e_.width))};
  }

  /// Runs, a slice of the reduction at a time, this item's row tiles (those of `block`, unless
  /// nullptr) over the packed panel at panel_ of `cols` columns from j0 on.
  void panel_body(llvm::Value* b, llvm::Value* kb, llvm::Value* j0, llvm::Value* chunk, llvm::Value* block,
                  int64_t cols) {
    const auto [vectors, last_lanes] = tile_vectors(cols);
    const int64_t per_chunk = ceil_div(l_.row_tiles, l_.row_chunks);
    const int64_t outer = p_.sizes.k_dims[0];
    const int64_t slices = ceil_div(outer, l_.k_slice);
    emit_for(e_, slices, 1, [&](llvm::Value* slice) {
      Slice s;
      s.start = e_.b.CreateMul(slice, e_.i64c(l_.k_slice));
      s.end = e_.b.CreateAdd(s.start, e_.i64c(l_.k_slice));
      s.end = e_.b.CreateSelect(e_.b.CreateICmpSLT(s.end, e_.i64c(outer)), s.end, e_.i64c(outer));
      s.first = e_.b.CreateICmpEQ(s.start, e_.i64c(0));
      if (p_.sizes.k_blocks > 1) s.first = e_.b.CreateAnd(s.first, e_.b.CreateICmpEQ(kb, e_.i64c(0)));
      s.last = e_.b.CreateICmpEQ(s.end, e_.i64c(outer));
      if (p_.sizes.k_blocks > 1) s.last = e_.b.CreateAnd(s.last, e_.b.CreateICmpEQ(kb, e_.i64c(p_.sizes.k_blocks - 1)));
      s.one = slices == 1 && p_.sizes.k_blocks == 1;
      // The item's row tiles are a part of them: its chunk, or where A is blocked (then there
      // is one chunk, gemm_layout), the block's.
      each_row_tile(block ? block : chunk, block ? l_.m_blocks : l_.row_chunks, block ? l_.block_tiles : per_chunk,
                    [&](llvm::Value* i0, int rows) { tile(b, kb, s, i0, j0, rows, vectors, last_lanes); });
    });
  }

  /// Runs each of this item's row tiles over every panel of its group, packed at `packed`,
  /// before the next row tile (GemmLayout::tiles_outer): the whole reduction at once.
  void rows_body(llvm::Value* b, llvm::Value* kb, llvm::Value* j0, llvm::Value* chunk, int64_t cols,
                 llvm::Value* packed) {
    const Slice whole{e_.i64c(0), e_.i64c(p_.sizes.k_dims[0]), e_.b.getTrue(), e_.b.getTrue(), true};
    each_row_tile(chunk, l_.row_chunks, ceil_div(l_.row_tiles, l_.row_chunks), [&](llvm::Value* i0, int rows) {
      each_panel(cols, [&](llvm::Value* q, int64_t panel_cols) {
        panel_ = e_.b.CreateInBoundsGEP(e_.f32, packed, e_.b.CreateMul(q, e_.i64c(l_.k * l_.panel)));
        const auto [vectors, last_lanes] = tile_vectors(panel_cols);
        tile(b, kb, whole, i0, e_.b.CreateAdd(j0, e_.b.CreateMul(q, e_.i64c(l_.panel))), rows, vectors, last_lanes);
      });
    });
  }

  /// Where in the reduction a tile starts and ends: a range of the outer reduction axis, and
  /// whether the partial sums start from zero and are final.
  struct Slice {
    llvm::Value *start, *end, *first, *last;
    bool one = false;  // the whole reduction at once: no partial sums in C at all
  };

  /// C[i, j .. j + W) of problem `b` as stored between slices.
  ElementPos c_pos(llvm::Value* b, llvm::Value* i, llvm::Value* j, llvm::Value* mask) {
    return ElementPos{{b, i, j}, nullptr, mask};
  }
  StridedBuffer c_raw() const { return StridedBuffer{p_.c, {p_.sizes.m * p_.sizes.n, p_.sizes.n, 1}}; }

  /// One rows x vectors tile at (i0, j0); the last vector has `last_lanes` active lanes.
  void tile(llvm::Value* b, llvm::Value* kb, const Slice& slice, llvm::Value* i0, llvm::Value* j0, int rows,
            int vectors, unsigned last_lanes) {
    auto mask_of = [&](int v) { return v == vectors - 1 ? e_.prefix_mask(last_lanes) : nullptr; };
    last_lanes_ = last_lanes;
    auto col = [&](int v) { return e_.b.CreateAdd(j0, e_.i64c(static_cast<int64_t>(v) * e_.width)); };
    auto row = [&](int r) { return e_.b.CreateAdd(i0, e_.i64c(r)); };

    if (p_.prefetch_c)
      emit_if(e_, slice.last,
              [&] { p_.prefetch_c(b, i0, rows, j0, static_cast<int64_t>(vectors - 1) * e_.width + last_lanes); });
    std::vector<llvm::Value*> acc(static_cast<size_t>(rows * vectors), e_.splat(0.0f));
    if (!slice.one)
      for (int r = 0; r < rows; ++r)
        for (int v = 0; v < vectors; ++v)
          acc[r * vectors + v] =
              e_.b.CreateSelect(slice.first, e_.splat(0.0f), load_at(e_, c_raw(), c_pos(b, row(r), col(v), mask_of(v))));

    const std::vector<int64_t> k_strides = contiguous_strides(p_.sizes.k_dims);
    std::vector<llvm::Value*> k_coords;
    std::function<std::vector<llvm::Value*>(size_t, std::vector<llvm::Value*>)> nest =
        [&](size_t d, std::vector<llvm::Value*> carried) -> std::vector<llvm::Value*> {
      auto body = [&](llvm::Value* k, const std::vector<llvm::Value*>& in) {
        k_coords.push_back(k);
        std::vector<llvm::Value*> out =
            d + 1 < p_.sizes.k_dims.size() ? nest(d + 1, in) : step(b, kb, i0, rows, vectors, in, k_strides, k_coords);
        k_coords.pop_back();
        return out;
      };
      if (d == 0 && !slice.one) return emit_range_loop(e_, slice.start, slice.end, std::move(carried), body);
      return emit_loop(e_, p_.sizes.k_dims[d], 1, std::move(carried), body);
    };
    acc = nest(0, acc);

    auto store_final = [&] {
      for (int r = 0; r < rows; ++r)
        for (int v = 0; v < vectors; ++v) p_.store_c(b, row(r), col(v), mask_of(v), acc[r * vectors + v]);
    };
    if (slice.one) {
      store_final();
      return;
    }
    emit_if(e_, slice.last, store_final);
    emit_if(e_, e_.b.CreateNot(slice.last), [&] {
      for (int r = 0; r < rows; ++r)
        for (int v = 0; v < vectors; ++v) store_at(e_, c_raw(), c_pos(b, row(r), col(v), mask_of(v)), acc[r * vectors + v]);
    });
  }

  /// One reduction step of a tile: rows x vectors FMAs on the panel row at the coordinates.
  std::vector<llvm::Value*> step(llvm::Value* b, llvm::Value* kb, llvm::Value* i0, int rows, int vectors,
                                 const std::vector<llvm::Value*>& acc, const std::vector<int64_t>& k_strides,
                                 const std::vector<llvm::Value*>& k_coords) {
    llvm::Value* kk = nullptr;
    for (size_t d = 0; d < k_coords.size(); ++d) {
      llvm::Value* term = k_strides[d] == 1 ? k_coords[d] : e_.b.CreateMul(k_coords[d], e_.i64c(k_strides[d]));
      kk = kk ? e_.b.CreateAdd(kk, term) : term;
    }
    llvm::Value* row_start = e_.b.CreateMul(kk, e_.i64c(l_.b_in_place ? p_.sizes.n : l_.panel));
    std::vector<llvm::Value*> bv;
    for (int v = 0; v < vectors; ++v) {
      llvm::Value* at = e_.b.CreateAdd(row_start, e_.i64c(static_cast<int64_t>(v) * e_.width));
      // In place, B's columns end with the row: the last vector of a partial panel is masked.
      if (l_.b_in_place && v == vectors - 1 && last_lanes_ < e_.width)
        bv.push_back(load_at(e_, StridedBuffer{panel_, {1}}, ElementPos{{at}, nullptr, e_.prefix_mask(last_lanes_)}));
      else
        bv.push_back(e_.b.CreateAlignedLoad(e_.vf, e_.b.CreateInBoundsGEP(e_.f32, panel_, at), kFloatAlign));
    }
    if (p_.sizes.bf16) return bf16_step(i0, rows, bv, acc, kk);
    // Packed A: the tile's rows for this k are consecutive, at i0 * K + k * rows.
    llvm::Value* a_row = l_.pack_a ? e_.b.CreateAdd(e_.b.CreateMul(i0, e_.i64c(l_.k)), e_.b.CreateMul(kk, e_.i64c(l_.rows)))
                                   : nullptr;
    std::vector<llvm::Value*> a;
    for (int r = 0; r < rows; ++r)
      a.push_back(l_.pack_a ? e_.b.CreateAlignedLoad(e_.f32,
                                                     e_.b.CreateInBoundsGEP(e_.f32, packed_a_, e_.b.CreateAdd(a_row, e_.i64c(r))),
                                                     kFloatAlign)
                            : p_.a_at(b, kb, e_.b.CreateAdd(i0, e_.i64c(r)), k_coords));
    return tile_fmas(e_, a, bv, acc);
  }

  /// A reduction step over the pair kp of every tile row: each accumulator gains the two
  /// products of its row's pair of A with its panel vector's pairs (AVX512_BF16's dot product).
  std::vector<llvm::Value*> bf16_step(llvm::Value* i0, int rows, const std::vector<llvm::Value*>& b,
                                      const std::vector<llvm::Value*>& acc, llvm::Value* kp) {
    llvm::Function* dot = llvm::Intrinsic::getDeclaration(&e_.module, llvm::Intrinsic::x86_avx512bf16_dpbf16ps_512);
    llvm::Type* pairs = llvm::FixedVectorType::get(e_.b.getBFloatTy(), 2 * e_.width);
    std::vector<llvm::Value*> bp;
    for (llvm::Value* v : b) bp.push_back(e_.b.CreateBitCast(v, pairs));
    llvm::Value* a_k = e_.b.CreateMul(kp, e_.i64c(p_.a_stride_k));
    std::vector<llvm::Value*> next(acc.size());
    for (int r = 0; r < rows; ++r) {
      llvm::Value* at = e_.b.CreateAdd(e_.b.CreateMul(e_.b.CreateAdd(i0, e_.i64c(r)), e_.i64c(p_.a_stride_i)), a_k);
      llvm::Value* pair = e_.b.CreateAlignedLoad(e_.i32, e_.b.CreateInBoundsGEP(e_.i32, packed_a_, at), kFloatAlign);
      llvm::Value* splat = e_.b.CreateBitCast(e_.b.CreateVectorSplat(e_.width, pair), pairs);
      for (size_t v = 0; v < bp.size(); ++v) {
        const size_t k = static_cast<size_t>(r) * bp.size() + v;
        next[k] = e_.b.CreateCall(dot, {acc[k], splat, bp[v]});
      }
    }
    return next;
  }

  Emit& e_;
  const GemmProblem& p_;
  GemmLayout l_;
  llvm::Value* scratch_;
  llvm::Value* panel_ = nullptr;  // the packed panel the tiles being emitted read (in place: B's column j0)
  unsigned last_lanes_ = 0;       // the active lanes of the last vector of the tile being emitted
  llvm::Value* packed_a_ = nullptr;
};

}  // namespace

/// The accumulators plus one B vector per column vector and one broadcast of A must fit in
/// the register file: 6 x 2 on 16 registers (AVX2), 8 x 3 on 32 (AVX-512), or there 6 x 4 when
/// wide, 16 x 1 for one vector of columns and 12 x 2 for two. The wide tile's panels of 64
/// columns divide the dense layers' widths (512, 2048), so no partial panel and an even split
/// of the panels over two threads, and it loads 10 values per 24 FMAs instead of 11; a
/// convolution takes it where its columns are padded less (emit_conv.cpp). The 8 x 3 tile is
/// the one the convolutions and Winograd were tuned on. Over a product whose columns
/// fit one or two vectors it would run a third or two of its vectors empty:
///  - 16 x 1 for one vector (a one-channel convolution's filter gradient: 9 columns; a 10-class
///    layer) runs 16 FMA chains with a B load per 16 FMAs (cnn3's and rescnn's one-channel
///    filter gradients 0.38-0.39 -> 0.25-0.26 ms on the Zen 5 host; 12 rows gained less, 24
///    and 32 lost; the 10-class layers' products, 0.01 ms, even or faster);
///  - 12 x 2 for two (rescnn's 1x1 filter gradient over 32 channels, 0.54 -> 0.39 ms).
/// Every tile gives every element the same FMA chain.
RegisterTile register_tile(unsigned width, bool wide, int64_t columns) {
  if (width < 16) return RegisterTile{6, 2};
  if (columns > 0 && columns <= int64_t(width)) return RegisterTile{16, 1};
  if (columns > 0 && columns <= 2 * int64_t(width)) return RegisterTile{12, 2};
  return wide ? RegisterTile{6, 4} : RegisterTile{8, 3};
}

std::vector<llvm::Value*> tile_fmas(Emit& e, const std::vector<llvm::Value*>& a, const std::vector<llvm::Value*>& b,
                                    const std::vector<llvm::Value*>& acc) {
  std::vector<llvm::Value*> next(acc.size());
  const size_t vectors = b.size();
  for (size_t r = 0; r < a.size(); ++r) {
    llvm::Value* splat = e.b.CreateVectorSplat(e.width, a[r]);
    for (size_t v = 0; v < vectors; ++v) next[r * vectors + v] = e.fma(splat, b[v], acc[r * vectors + v]);
  }
  return next;
}

/// Panels packed together: as many as fit in the share of L2 a block of A has (host_tuning.h),
/// dividing each thread's share of the panels so that the threads' items stay as even as
/// single panels would leave them.
int64_t panel_group(int64_t panels, int64_t panel_floats, int threads) {
  const int64_t budget = host_tuning().a_block_floats;
  const int64_t share = ceil_div(panels, std::max(1, threads));
  int64_t best = 1;
  for (int64_t g = 1; g <= share && g * panel_floats <= budget; ++g)
    if (share % g == 0) best = g;
  return best;
}

GemmLayout gemm_layout(const GemmSizes& s, unsigned width, int threads) {
  GemmLayout l;
  const RegisterTile tile = register_tile(width, s.wide_tile, s.bf16 ? 0 : s.n);
  l.rows = tile.rows;
  l.vectors = tile.vectors;
  l.panel = static_cast<int64_t>(l.vectors) * width;
  l.panels = std::max<int64_t>(1, ceil_div(s.n, l.panel));
  l.row_tiles = s.m / l.rows;
  l.k = numel(s.k_dims);
  l.k_total = l.k * s.k_blocks;
  // Only a panel longer than its L1 slice is packed in groups: a short reduction's panel
  // stays in L1 as it is, and a group of them only takes L2 from A (measured: mlp2048's weight
  // gradients, K 64, 8-10% slower grouped).
  const int64_t slice_floats = host_tuning().slice_floats;
  l.b_in_place = s.b_readable && s.k_blocks == 1 && !s.bf16 && s.m <= kMaxRowsForBInPlace;
  // Groups are panels packed in one pass; B read in place has none.
  l.group = !l.b_in_place && s.b_groupable && l.k * l.panel > slice_floats
                ? panel_group(l.panels, l.k * l.panel, threads)
                : 1;
  // An epilogue reading operands of C's shape, stored over them (whole_k): with all of B's
  // panels packed at once, where they fit the share of L2 a block of A has, each row tile
  // runs across C's whole rows, so the epilogue reads and writes those runs in order rather
  // than a panel's width of each row, N floats apart.
  l.tiles_outer = s.whole_k && s.b_groupable && !l.b_in_place && s.batch == 1 && s.k_blocks == 1 &&
                  l.panels * l.k * l.panel <= host_tuning().a_block_floats;
  if (l.tiles_outer) l.group = l.panels;
  l.groups = ceil_div(l.panels, l.group);
  const int64_t per_problem = s.batch * l.groups;
  l.row_chunks = std::clamp<int64_t>(ceil_div(threads, per_problem), 1, std::max<int64_t>(1, l.row_tiles));
  l.items = s.m > 0 && s.n > 0 ? per_problem * l.row_chunks : 0;
  l.scratch_floats = l.b_in_place ? 0 : l.group * l.k * l.panel;
  // A is packed when its tiles are then reused by more than one panel or problem: a row tile
  // of A read in place walks K rows of memory (a transposed A: one cache line per k, lines M
  // floats apart, which for M a multiple of 1024 all fall in one L1 set), for every panel again.
  const int64_t a_floats = ceil_div(s.m, l.rows) * l.rows * l.k;
  l.pack_a = s.bf16 || (s.a_packable && s.k_blocks == 1 && s.batch * l.panels >= 2 && a_floats <= kPackedAFloats);
  if (l.pack_a) {
    l.a_offset = ceil_div(l.scratch_floats, 16) * 16;  // 64-byte aligned
    l.scratch_floats = l.a_offset + a_floats;
  }
  // Floats of one panel slice: with the tile's A values it should stay in L1 (host_tuning.h).
  const int64_t inner = s.k_dims.empty() ? 1 : l.k / std::max<int64_t>(1, s.k_dims[0]);
  l.k_slice =
      s.k_dims.empty() ? 1 : std::clamp<int64_t>(slice_floats / l.panel / std::max<int64_t>(1, inner), 1, s.k_dims[0]);
  if (s.whole_k && !s.k_dims.empty()) l.k_slice = s.k_dims[0];
  // Blocks of A (host_tuning.h) where A is larger than its share of L2 and is read by more
  // than one panel: without them, every panel streams all of A from L3.
  const int64_t a_block_floats = host_tuning().a_block_floats;
  if (s.k_blocks == 1 && l.row_chunks == 1 && !l.tiles_outer && s.batch * l.panels >= 2 && a_floats > a_block_floats) {
    l.block_tiles = std::max(kMinBlockTiles, a_block_floats / (l.rows * std::max<int64_t>(1, l.k)));
    l.m_blocks = ceil_div(l.row_tiles, l.block_tiles);
    if (l.m_blocks < 2) l.m_blocks = 1, l.block_tiles = 0;
  }
  return l;
}

bool kept_b_usable(const GemmSizes& sizes, const GemmLayout& layout) {
  return sizes.batch == 1 && sizes.k_blocks == 1 && layout.row_chunks == 1 && layout.items > 0 && !layout.b_in_place &&
         !layout.tiles_outer;
}

void emit_gemm(Emit& e, const GemmProblem& problem, llvm::Value* begin, llvm::Value* end, llvm::Value* scratch) {
  assert((!problem.kept_b || kept_b_usable(problem.sizes, gemm_layout(problem.sizes, e.width, e.threads))) &&
         "a kept B needs one item per group");
  GemmEmitter(e, problem, scratch).emit(begin, end);
}

/// Transposes W vectors of W lanes in registers: afterwards rows[i] lane l holds what rows[l]
/// lane i held. Block by block: swap the off-diagonal halves of the whole matrix, then of
/// each half, down to single elements (log2 W rounds of W shuffles).
void transpose(Emit& e, std::vector<llvm::Value*>& rows) {
  const unsigned w = e.width;
  for (unsigned s = w / 2; s >= 1; s /= 2) {
    std::vector<int> low(w), high(w);  // shuffle masks over (a, b), b's lanes numbered from w
    for (unsigned l = 0; l < w; ++l) {
      low[l] = static_cast<int>((l & s) ? w + l - s : l);
      high[l] = static_cast<int>((l & s) ? w + l : l + s);
    }
    for (unsigned i = 0; i < w; ++i) {
      if (i & s) continue;
      llvm::Value* a = rows[i];
      llvm::Value* b = rows[i + s];
      rows[i] = e.b.CreateShuffleVector(a, b, low);
      rows[i + s] = e.b.CreateShuffleVector(a, b, high);
    }
  }
}

void pack_rows_transposed(Emit& e, llvm::Value* panel, int64_t stride, llvm::Value* row0, int64_t count, int64_t cols,
                          const std::function<llvm::Value*(int64_t c)>& column) {
  const int64_t w = e.width;
  for (int64_t g = 0; g < stride / w; ++g) {
    std::vector<llvm::Value*> vectors;
    for (int64_t c = g * w; c < (g + 1) * w; ++c) vectors.push_back(c < cols ? column(c) : e.splat(0.0f));
    transpose(e, vectors);
    for (int64_t r = 0; r < std::min(count, w); ++r) {
      llvm::Value* offset = e.b.CreateAdd(e.b.CreateMul(e.b.CreateAdd(row0, e.i64c(r)), e.i64c(stride)), e.i64c(g * w));
      e.b.CreateAlignedStore(vectors[static_cast<size_t>(r)], e.b.CreateInBoundsGEP(e.f32, panel, offset), kFloatAlign);
    }
  }
}

llvm::Value* bf16_pairs_across(Emit& e, llvm::Value* lo, llvm::Value* hi) {
  assert(e.width == 16 && "bfloat16 pairs need AVX-512 vectors");
  llvm::Function* round = llvm::Intrinsic::getDeclaration(&e.module, llvm::Intrinsic::x86_avx512bf16_cvtneps2bf16_512);
  llvm::Type* halves = llvm::FixedVectorType::get(e.b.getInt16Ty(), e.width);
  llvm::Type* lanes = llvm::FixedVectorType::get(e.i32, e.width);
  auto rounded = [&](llvm::Value* v) {
    return e.b.CreateZExt(e.b.CreateBitCast(e.b.CreateCall(round, {v}), halves), lanes);
  };
  llvm::Value* low = rounded(lo);
  llvm::Value* high = e.b.CreateShl(rounded(hi), 16);
  return e.b.CreateBitCast(e.b.CreateOr(low, high), e.vf);
}

llvm::Value* bf16_pairs_along(Emit& e, llvm::Value* first, llvm::Value* second) {
  assert(e.width == 16 && "bfloat16 pairs need AVX-512 vectors");
  // The instruction takes the upper half's source first: lanes 0-15 of its result are `first`'s.
  llvm::Function* round = llvm::Intrinsic::getDeclaration(&e.module, llvm::Intrinsic::x86_avx512bf16_cvtne2ps2bf16_512);
  return e.b.CreateBitCast(e.b.CreateCall(round, {second, first}), e.vf);
}

llvm::Value* gather(Emit& e, llvm::Value* base, llvm::Value* index, llvm::Value* mask) {
  llvm::Value* safe = e.b.CreateSelect(mask, index, llvm::Constant::getNullValue(index->getType()));
  llvm::Value* pointers = e.b.CreateInBoundsGEP(e.f32, base, e.b.CreateSExt(safe, llvm::FixedVectorType::get(e.i64, e.width)));
  return e.b.CreateMaskedGather(e.vf, pointers, kFloatAlign, mask, llvm::Constant::getNullValue(e.vf));
}

}  // namespace dagger
