// The filter gradient of a 3x3 same convolution by Winograd F(3x3,2x2) or F(3x3,4x4)
// (codegen/emit_winograd.h).
//
// Where the matrices come from: the forward's F(m,3) says y = A^T [(G g) * (B^T d)] for every
// filter g and patch d (1-D), so the trilinear form sum_i dy_i y_i equals
// sum_xi (A dy)_xi (G g)_xi (B^T d)_xi. Its derivative with respect to g_j is the filter
// gradient sum_i dy_i d_(i + j), hence dw = G^T [(A dy) * (B^T d)]: the same input transform,
// A ((m + 2) x m) on the m-element tile of dy, and G^T (3 x (m + 2)) on the products
// (codegen/winograd_transforms.h, gradient_tile and gradient_output). 2-D: G^T [...] G.
#include <llvm/IR/Constants.h>

#include <algorithm>
#include <functional>

#include "dagger/codegen/emit_winograd.h"
#include "dagger/codegen/host_tuning.h"

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

/// The transform positions of F(3x3, m x m): (m + 2)^2.
int64_t positions_of(int tile_size) { return int64_t(tile_size + 2) * (tile_size + 2); }

/// Tiles of F(3x3,2x2) transformed before each pass of the 16 GEMMs over them: the passes add
/// their sums into the scratch, so longer passes read and write those sums less often, but
/// their transformed operands (16 x tiles x (c + k) floats) must stay in L2. F(3x3,4x4) takes
/// as many positions' worth (36 per tile), 16/36 as many tiles. A pass carries each sum on from
/// the one before, so its length changes no sum's order.
constexpr int64_t kPassTiles = 128;

/// Planes of up to this many floats are staged whole (FilterEmitter::stage_planes): 14x14 maps
/// and smaller, whose rows fill few of a vector's lanes.
constexpr int64_t kWholePlane = 256;
/// Up to this many whole runs of a plane are staged unrolled (stage_planes).
constexpr int64_t kUnrolledRuns = 6;

/// Where the scratch's parts start, in floats (each on a 64-byte boundary).
struct ScratchParts {
  int64_t staged_x = 0;   // one panel's rows of x for W channels, channels in the lanes
  int64_t staged_dy = 0;  // the same of dy
  int64_t columns = 0;  // x's transformed patches for a pass: [xi][pass tiles][item columns]
  int64_t rows = 0;     // dy's transformed tiles for a pass: [xi][pass tiles][item rows]
  int64_t sums = 0;     // the item's products summed so far, [xi][k][item columns]
  int64_t total = 0;
};

/// A panel's rows staged for W channels (x's with the patches' border of one, dy's without):
/// `rows` rows per image of `vectors` x W columns, each column a vector of W channels.
struct Staged {
  int border;
  int64_t rows, vectors;
};

Staged staged_of(const WinogradLayout& l, int border, unsigned width) {
  return {border, l.tile_size * l.panel_rows + 2 * border, ceil_div(l.tile_size * l.panel_cols + 2 * border, width)};
}

/// The tiles of a panel, one after another in the pass: its images' tile rows and columns,
/// those outside the images included (their transforms are zeros). Unlike the forward's
/// panels, which are a GEMM's columns, nothing here rounds them up to whole vectors.
int64_t panel_tiles(const WinogradLayout& l) { return l.images * l.panel_rows * l.panel_cols; }

/// The most rows of k an item has: a chunk of row tiles, the last chunk with the remainder.
int64_t item_rows(const WinogradFilterGrad& v, const WinogradFilterLayout& l) {
  const int64_t per_chunk = ceil_div(l.row_tiles, l.row_chunks) * l.tile.rows;
  return std::max(std::min(per_chunk, v.k), v.k - (l.row_chunks - 1) * per_chunk);
}

/// A thread's share of the transforms per pass, in halves of a filter of dy: each of its items
/// transforms the item's channels of x and its filters of dy, and a channel of x (a 6x6 or 4x4
/// patch) weighs about 1.5 filters of dy (a 4x4 or 2x2 tile; the break-even of the split along
/// c in winograd_filter_layout), so 3 halves against 2.
int64_t transform_weight(const WinogradFilterGrad& v, const WinogradFilterLayout& l, unsigned width, int threads) {
  const int64_t per_item = 3 * std::min(l.col_vectors * width, v.c) + 2 * item_rows(v, l);
  return ceil_div(l.items, threads) * per_item;
}

/// An item's sums, in floats: every position's rows of k by its columns of c.
int64_t sums_floats(const WinogradFilterGrad& v, const WinogradFilterLayout& l, unsigned width) {
  return positions_of(v.tile_size) * item_rows(v, l) * l.col_vectors * width;
}

/// Tiles of a panel and of a pass, an item's columns of c, k rounded up to row tiles, an item's
/// rows of k rounded up to W (dy's transformed tiles are stored W filters at a time), and the
/// transform positions.
struct Sizes {
  int64_t panel_tiles, pass_tiles, cols, k_pad, k_stride, positions;
  // Floats from one position's part of each scratch array to the next.
  int64_t columns_step, rows_step, sums_step;
};

Sizes sizes_of(const WinogradFilterGrad& v, const WinogradFilterLayout& l, unsigned width) {
  Sizes z;
  z.panel_tiles = panel_tiles(l.tiles);
  z.pass_tiles = l.pass_panels * z.panel_tiles;
  z.cols = l.col_vectors * width;
  z.k_pad = ceil_div(v.k, l.tile.rows) * l.tile.rows;
  z.k_stride = ceil_div(item_rows(v, l), width) * width;
  z.positions = positions_of(v.tile_size);
  z.columns_step = position_step(z.pass_tiles * z.cols);
  z.rows_step = position_step(z.pass_tiles * z.k_stride);
  z.sums_step = position_step(z.k_pad * z.cols);
  return z;
}

ScratchParts scratch_parts(const WinogradFilterGrad& v, const WinogradFilterLayout& l, unsigned width) {
  const Sizes z = sizes_of(v, l, width);
  auto staged = [&](int border) {
    const Staged g = staged_of(l.tiles, border, width);
    return align16(l.tiles.images * g.rows * g.vectors * width * width);
  };
  ScratchParts s;
  s.staged_dy = staged(1);
  s.columns = s.staged_dy + staged(0);
  s.rows = s.columns + align16(z.positions * z.columns_step);
  s.sums = s.rows + align16(z.positions * z.rows_step);
  s.total = s.sums + align16(z.positions * z.sums_step);
  return s;
}

/// The kernel of F(3x3, M x M): M x M tiles of dy, (M + 2) x (M + 2) patches of x.
template <int M>
class FilterEmitter {
  using Form = winograd::Form<M>;
  static constexpr size_t P = Form::Patch;
  static constexpr int kPositions = int(P * P);

 public:
  FilterEmitter(Emit& e, const WinogradFilterGrad& v, llvm::Value* x, llvm::Value* dy, llvm::Value* dw,
                llvm::Value* scratch)
      : e_(e),
        v_(v),
        l_(winograd_filter_layout(v, e.width, e.threads)),
        z_(sizes_of(v, l_, e.width)),
        x_(x),
        dy_(dy),
        dw_(dw) {
    const ScratchParts parts = scratch_parts(v, l_, e.width);
    auto at = [&](int64_t offset) { return e_.b.CreateInBoundsGEP(e_.f32, scratch, e_.i64c(offset)); };
    staged_x_ = at(parts.staged_x);
    staged_dy_ = at(parts.staged_dy);
    staged_floats_ = parts.columns;
    columns_ = at(parts.columns);
    rows_ = at(parts.rows);
    sums_ = at(parts.sums);
  }

  void emit(llvm::Value* begin, llvm::Value* end) {
    emit_range(e_, begin, end, [&](llvm::Value* item) { item_body(item); });
  }

 private:
  /// An item's part of dw: columns [c0, c0 + cols) and rows [k0, k_end), these being the row
  /// tiles [first_tile, last_tile) and, in the last chunk, the remainder.
  struct Item {
    llvm::Value *c0, *first_tile, *last_tile, *k0, *k_end, *last_chunk;
  };

  llvm::Value* i64(int64_t v) { return e_.i64c(v); }
  llvm::Value* add(llvm::Value* a, llvm::Value* b) { return e_.b.CreateAdd(a, b); }
  llvm::Value* mul(llvm::Value* a, int64_t b) { return e_.b.CreateMul(a, i64(b)); }
  llvm::Value* min(llvm::Value* a, llvm::Value* b) { return e_.b.CreateSelect(e_.b.CreateICmpSLT(a, b), a, b); }
  llvm::Value* load(llvm::Value* base, llvm::Value* index, llvm::Type* type) {
    return e_.b.CreateAlignedLoad(type, e_.b.CreateInBoundsGEP(e_.f32, base, index), kFloatAlign);
  }
  void store(llvm::Value* base, llvm::Value* index, llvm::Value* value) {
    e_.b.CreateAlignedStore(value, e_.b.CreateInBoundsGEP(e_.f32, base, index), kFloatAlign);
  }

  /// One item: its sums from zero, every pass of panels in order, then its part of dw.
  void item_body(llvm::Value* item) {
    Item it;
    llvm::Value* chunk = e_.b.CreateURem(item, i64(l_.row_chunks));
    it.c0 = mul(e_.b.CreateUDiv(item, i64(l_.row_chunks)), z_.cols);
    const int64_t per_chunk = ceil_div(l_.row_tiles, l_.row_chunks);
    it.first_tile = mul(chunk, per_chunk);
    it.last_tile = min(add(it.first_tile, i64(per_chunk)), i64(l_.row_tiles));
    it.k0 = mul(it.first_tile, l_.tile.rows);
    it.last_chunk = e_.b.CreateICmpEQ(chunk, i64(l_.row_chunks - 1));
    it.k_end = e_.b.CreateSelect(it.last_chunk, i64(v_.k), mul(it.last_tile, l_.tile.rows));

    emit_for(e_, kPositions * z_.sums_step, e_.width, [&](llvm::Value* i) { store(sums_, i, e_.splat(0.0f)); });
    // Staged plane by plane, the border and the rows and columns past the images are never
    // written: zeros from here on.
    if (whole_planes())
      emit_for(e_, staged_floats_, e_.width, [&](llvm::Value* i) { store(staged_x_, i, e_.splat(0.0f)); });
    // The panels of tiles in their fixed order, pass_panels at a time.
    const int64_t panels = ceil_div(v_.n, l_.tiles.images) * l_.tiles.panels;
    emit_for(e_, ceil_div(panels, l_.pass_panels), 1, [&](llvm::Value* pass) {
      llvm::Value* first = mul(pass, l_.pass_panels);
      llvm::Value* count = min(i64(l_.pass_panels), e_.b.CreateSub(i64(panels), first));
      emit_range(e_, i64(0), count, [&](llvm::Value* p) {
        const WinogradPanel at = winograd_panel(e_, l_.tiles, add(first, p));
        pack_patches(it, at, mul(p, z_.panel_tiles));
        pack_tiles(it, at, mul(p, z_.panel_tiles));
      });
      reduce(it, mul(count, z_.panel_tiles));
    });
    write(it);
  }

  /// Stages the panel's rows of W channels [first, first + W) of `buffer` ([n, channels, h, w];
  /// channels from `end` on, and whatever lies outside the images, read as 0): each row's runs
  /// of W columns are loaded channel by channel and transposed in registers, so that every
  /// column is one vector of the channels.
  void stage(llvm::Value* buffer, int64_t channels, llvm::Value* first, llvm::Value* end, const WinogradPanel& at,
             const Staged& g) {
    if (whole_planes()) return stage_planes(buffer, channels, first, end, at, g);
    const WinogradLayout& l = l_.tiles;
    const int64_t w = e_.width, plane = v_.h * v_.w;
    llvm::Value* top = e_.b.CreateSub(mul(at.th0, l.tile_size), i64(g.border));
    llvm::Value* left = e_.b.CreateSub(mul(at.tw0, l.tile_size), i64(g.border));
    std::vector<llvm::Value*> columns_in;  // per run of W columns: the lanes inside the image
    for (int64_t u = 0; u < g.vectors; ++u) {
      columns_in.push_back(e_.lanes_within(e_.b.CreateAdd(e_.lanes_of(add(left, i64(u * w))), e_.lane_ids()), v_.w));
    }
    emit_for(e_, l.images * g.rows, 1, [&](llvm::Value* row) {
      llvm::Value* image = add(at.b0, e_.b.CreateUDiv(row, i64(g.rows)));
      llvm::Value* ih = add(top, e_.b.CreateURem(row, i64(g.rows)));
      llvm::Value* row_in = e_.b.CreateAnd(e_.b.CreateICmpULT(ih, i64(v_.h)), e_.b.CreateICmpSLT(image, i64(v_.n)));
      // Channel `first` of the row, at column `left`; masked-off lanes are never read.
      llvm::Value* start = add(mul(add(mul(image, channels), first), plane), add(mul(ih, v_.w), left));
      for (int64_t u = 0; u < g.vectors; ++u) {
        const std::vector<llvm::Value*> lanes =
            channel_run(buffer, add(start, i64(u * w)), row_in, first, end, columns_in[static_cast<size_t>(u)]);
        llvm::Value* column0 = mul(add(mul(row, g.vectors), i64(u)), w);
        for (int64_t col = 0; col < w; ++col)
          store(area(g), mul(add(column0, i64(col)), w), lanes[static_cast<size_t>(col)]);
      }
    });
  }

  /// W consecutive floats of each of the W channels [first, first + W) of `buffer`, from flat
  /// index `at` in channel `first` (a plane further per channel), transposed: vector q holds
  /// position q of every channel. Only the lanes in `lanes` (nullptr: all) of the channels
  /// before `end` are read, and only where `in` holds; the rest are 0.
  std::vector<llvm::Value*> channel_run(llvm::Value* buffer, llvm::Value* at, llvm::Value* in, llvm::Value* first,
                                        llvm::Value* end, llvm::Value* lanes) {
    std::vector<llvm::Value*> runs;  // per channel, W floats
    for (int64_t ch = 0; ch < e_.width; ++ch) {
      llvm::Value* mask = e_.b.CreateVectorSplat(
          e_.width, e_.b.CreateAnd(in, e_.b.CreateICmpSLT(add(first, i64(ch)), end)));
      if (lanes) mask = e_.b.CreateAnd(lanes, mask);
      llvm::Value* from = e_.b.CreateGEP(e_.f32, buffer, add(at, i64(ch * v_.h * v_.w)));
      runs.push_back(e_.b.CreateMaskedLoad(e_.vf, from, kFloatAlign, mask, llvm::Constant::getNullValue(e_.vf)));
    }
    transpose(e_, runs);
    return runs;
  }

  /// Whether a panel is whole images (so its first tile row and column are 0) of planes small
  /// enough to stage as one run each, unrolled.
  bool whole_planes() const { return l_.tiles.panels == 1 && v_.h * v_.w <= kWholePlane; }

  /// stage() for whole_planes(): each plane's runs of W positions are loaded channel by
  /// channel and transposed, and every position stored where its row and column are staged;
  /// the rest stays 0. A 7x7 map's rows are 7 of a vector's 16 lanes, its plane 49 of 64.
  /// The plane's whole runs are a loop where there are more than kUnrolledRuns, and its last,
  /// partial one follows it (unrolled, a 14x14 plane's thirteen transposes took more of LLVM's
  /// instruction selection than the rest of the kernel; a 7x7 plane's four at W = 16 ran 5%
  /// faster unrolled than looped). A run's positions are stored at its first one's staged
  /// offset plus a constant, and a row further for each row boundary they cross: a division per
  /// position made the loop slower than the unrolled runs.
  void stage_planes(llvm::Value* buffer, int64_t channels, llvm::Value* first, llvm::Value* end,
                    const WinogradPanel& at, const Staged& g) {
    const int64_t w = e_.width, plane = v_.h * v_.w, row_floats = g.vectors * w * w, whole = plane / w;
    emit_for(e_, l_.tiles.images, 1, [&](llvm::Value* i) {
      llvm::Value* image = add(at.b0, i);
      llvm::Value* in_batch = e_.b.CreateICmpSLT(image, i64(v_.n));
      llvm::Value* start = mul(add(mul(image, channels), first), plane);
      llvm::Value* staged = mul(i, g.rows * row_floats);
      // The run of `positions` from plane position j0, `lanes` its lanes to read (nullptr: all).
      auto stage_run = [&](llvm::Value* j0, int64_t positions, llvm::Value* lanes) {
        const std::vector<llvm::Value*> runs = channel_run(buffer, add(start, j0), in_batch, first, end, lanes);
        llvm::Value* col0 = e_.b.CreateURem(j0, i64(v_.w));
        llvm::Value* row0 = e_.b.CreateUDiv(j0, i64(v_.w));
        llvm::Value* at0 =
            add(staged, add(mul(add(row0, i64(g.border)), row_floats), mul(add(col0, i64(g.border)), w)));
        for (int64_t q = 0; q < positions; ++q) {
          llvm::Value* offset = i64(q * w);
          for (int64_t wrap = 1; wrap * v_.w <= q + v_.w - 1; ++wrap) {  // col0 + q past a row's end
            llvm::Value* past = e_.b.CreateICmpUGE(add(col0, i64(q)), i64(wrap * v_.w));
            offset = add(offset, e_.b.CreateSelect(past, i64(row_floats - v_.w * w), i64(0)));
          }
          store(area(g), add(at0, offset), runs[static_cast<size_t>(q)]);
        }
      };
      if (whole > kUnrolledRuns)
        emit_for(e_, whole * w, w, [&](llvm::Value* j0) { stage_run(j0, w, nullptr); });
      else
        for (int64_t k = 0; k < whole; ++k) stage_run(i64(k * w), w, nullptr);
      if (const int64_t rest = plane - whole * w; rest > 0)
        stage_run(i64(whole * w), rest, e_.prefix_mask(static_cast<unsigned>(rest)));
    });
  }

  /// Where x (staged with a border) or dy (without) is staged.
  llvm::Value* area(const Staged& g) const { return g.border ? staged_x_ : staged_dy_; }

  /// Calls `tile(index, at)` for each of the panel's tiles (image, then tile row and column),
  /// `at` being the staged offset of its first row and column.
  void each_tile(const Staged& g, const std::function<void(llvm::Value*, llvm::Value*)>& tile) {
    const WinogradLayout& l = l_.tiles;
    const int64_t ts = l.tile_size, row_floats = g.vectors * e_.width * e_.width;
    emit_for(e_, l.images * l.panel_rows, 1, [&](llvm::Value* image_row) {
      llvm::Value* image = e_.b.CreateUDiv(image_row, i64(l.panel_rows));
      llvm::Value* tile_row = e_.b.CreateURem(image_row, i64(l.panel_rows));
      llvm::Value* row0 = add(mul(image, g.rows), mul(tile_row, ts));
      emit_for(e_, l.panel_cols, 1, [&](llvm::Value* tile_col) {
        tile(add(mul(image_row, l.panel_cols), tile_col), add(mul(row0, row_floats), mul(tile_col, ts * e_.width)));
      });
    });
  }

  /// The staged element (a, b) of the tile whose first is at `at`.
  llvm::Value* staged_at(const Staged& g, llvm::Value* at, int64_t a, int64_t b) {
    return load(area(g), add(at, i64((a * g.vectors * e_.width + b) * e_.width)), e_.vf);
  }

  /// Transforms the panel's tiles for W channels [first, first + W) of `buffer`, staged with
  /// `border`: each tile's In x In elements from its first, `transform` (1-D, In -> P values)
  /// down and across, position xi stored in `dest` at to(xi, tile).
  template <size_t In, class Transform>
  void transform_tiles(llvm::Value* buffer, int64_t channels, llvm::Value* first, llvm::Value* end,
                       const WinogradPanel& at, int border, Transform transform, llvm::Value* dest,
                       const std::function<llvm::Value*(int, llvm::Value*)>& to) {
    const Staged g = staged_of(l_.tiles, border, e_.width);
    stage(buffer, channels, first, end, at, g);
    auto put = [&](llvm::Value* tile, const std::array<std::array<llvm::Value*, In>, In>& block) {
      const auto t = winograd::two_d<In, P>(block, transform);
      for (int xi = 0; xi < kPositions; ++xi) store(dest, to(xi, tile), t[xi / P][xi % P]);
    };
    each_tile(g, [&](llvm::Value* tile, llvm::Value* first_element) {
      std::array<std::array<llvm::Value*, In>, In> block;
      for (size_t a = 0; a < In; ++a)
        for (size_t b = 0; b < In; ++b) block[a][b] = staged_at(g, first_element, int64_t(a), int64_t(b));
      put(tile, block);
    });
  }

  /// x's patches of the panel transformed (B^T d B), W channels at a time, into pass rows t0..
  /// of the columns.
  void pack_patches(const Item& it, const WinogradPanel& at, llvm::Value* t0) {
    emit_for(e_, l_.col_vectors, 1, [&](llvm::Value* group) {
      llvm::Value* column = mul(group, e_.width);
      transform_tiles<P>(
          x_, v_.c, add(it.c0, column), i64(v_.c), at, 1,
          [&](const std::array<llvm::Value*, P>& r) { return Form::input(ops_, r); }, columns_,
          [&](int xi, llvm::Value* tile) {
            return add(i64(xi * z_.columns_step), add(mul(add(t0, tile), z_.cols), column));
          });
    });
  }

  /// dy's M x M tiles of the panel transformed (A dy A^T), W filters at a time, into pass rows
  /// t0.. of the rows.
  void pack_tiles(const Item& it, const WinogradPanel& at, llvm::Value* t0) {
    llvm::Value* groups = e_.b.CreateUDiv(add(e_.b.CreateSub(it.k_end, it.k0), i64(e_.width - 1)), i64(e_.width));
    emit_range(e_, i64(0), groups, [&](llvm::Value* group) {
      llvm::Value* kl = mul(group, e_.width);
      transform_tiles<M>(
          dy_, v_.k, add(it.k0, kl), it.k_end, at, 0,
          [&](const std::array<llvm::Value*, M>& y) { return Form::gradient_tile(ops_, y); }, rows_,
          [&](int xi, llvm::Value* tile) {
            return add(i64(xi * z_.rows_step), add(mul(add(t0, tile), z_.k_stride), kl));
          });
    });
  }

  /// Adds the pass's `tiles` tiles into the sums: per position, the item's columns a register
  /// tile's vectors at a time, and under each, its row tiles.
  void reduce(const Item& it, llvm::Value* tiles) {
    const int rows = l_.tile.rows;
    const int leftover = static_cast<int>(v_.k - l_.row_tiles * rows);
    emit_for(e_, kPositions, 1, [&](llvm::Value* xi) {
      for (int64_t v0 = 0; v0 < l_.col_vectors; v0 += l_.tile.vectors) {
        const int vectors = static_cast<int>(std::min<int64_t>(l_.tile.vectors, l_.col_vectors - v0));
        if (l_.row_tiles > 0)
          emit_range(e_, it.first_tile, it.last_tile, [&](llvm::Value* t) {
            row_tile(xi, e_.b.CreateSub(mul(t, rows), it.k0), rows, v0, vectors, tiles);
          });
        if (leftover > 0)
          emit_if(e_, it.last_chunk,
                  [&] { row_tile(xi, e_.b.CreateSub(i64(l_.row_tiles * rows), it.k0), leftover, v0, vectors, tiles); });
      }
    });
  }

  /// Item rows [kl, kl + rows) and column vectors [v0, v0 + vectors) at position xi: sums +=
  /// rows' tiles x columns' tiles, one FMA chain per sum along the tiles in order.
  void row_tile(llvm::Value* xi, llvm::Value* kl, int rows, int64_t v0, int vectors, llvm::Value* tiles) {
    // `at` moved on to column vector v0 (the first adds nothing).
    auto past_v0 = [&](llvm::Value* at) { return v0 > 0 ? add(at, i64(v0 * e_.width)) : at; };
    llvm::Value* sums_at = add(mul(xi, z_.sums_step), past_v0(mul(kl, z_.cols)));
    auto sum_index = [&](int r, int v) { return add(sums_at, i64(r * z_.cols + v * e_.width)); };
    std::vector<llvm::Value*> acc;
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < vectors; ++v) acc.push_back(load(sums_, sum_index(r, v), e_.vf));
    llvm::Value* a_base = add(mul(xi, z_.rows_step), kl);
    llvm::Value* b_base = past_v0(mul(xi, z_.columns_step));
    acc = emit_range_loop(e_, i64(0), tiles, acc, [&](llvm::Value* t, const std::vector<llvm::Value*>& in) {
      std::vector<llvm::Value*> a, b;
      llvm::Value* a_at = add(a_base, mul(t, z_.k_stride));
      for (int r = 0; r < rows; ++r) a.push_back(load(rows_, add(a_at, i64(r)), e_.f32));
      llvm::Value* b_at = add(b_base, mul(t, z_.cols));
      for (int v = 0; v < vectors; ++v) b.push_back(load(columns_, add(b_at, i64(v * e_.width)), e_.vf));
      return tile_fmas(e_, a, b, in);
    });
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < vectors; ++v) store(sums_, sum_index(r, v), acc[static_cast<size_t>(r * vectors + v)]);
  }

  /// dw[k, c] = G^T M G for the item's rows and columns, W columns at a time (lanes past c
  /// masked off), scattered into the [k, c, 3, 3] filter.
  void write(const Item& it) {
    emit_range(e_, it.k0, it.k_end, [&](llvm::Value* k) {
      llvm::Value* kl = e_.b.CreateSub(k, it.k0);
      emit_for(e_, l_.col_vectors, 1, [&](llvm::Value* group) {
        std::array<std::array<llvm::Value*, P>, P> m;
        for (int xi = 0; xi < kPositions; ++xi)
          m[xi / P][xi % P] =
              load(sums_, add(add(i64(xi * z_.sums_step), mul(kl, z_.cols)), mul(group, e_.width)), e_.vf);
        const auto y = winograd::two_d<P, 3>(
            m, [&](const std::array<llvm::Value*, P>& x) { return Form::gradient_output(ops_, x); });
        llvm::Value* c = add(e_.lanes_of(add(it.c0, mul(group, e_.width))), e_.lane_ids());
        llvm::Value* mask = e_.b.CreateICmpSLT(c, e_.splat_i32(static_cast<uint32_t>(v_.c)));
        llvm::Value* first = e_.b.CreateMul(add(e_.lanes_of(mul(k, v_.c)), c), e_.splat_i32(9));  // dw[k, c, 0, 0]
        for (int r = 0; r < 3; ++r)
          for (int s = 0; s < 3; ++s) {
            llvm::Value* index = e_.b.CreateSExt(add(first, e_.splat_i32(static_cast<uint32_t>(3 * r + s))),
                                                 llvm::FixedVectorType::get(e_.i64, e_.width));
            e_.b.CreateMaskedScatter(y[r][s], e_.b.CreateInBoundsGEP(e_.f32, dw_, index), kFloatAlign, mask);
          }
      });
    });
  }

  Emit& e_;
  WinogradOps ops_{e_};
  const WinogradFilterGrad& v_;
  WinogradFilterLayout l_;
  Sizes z_;
  llvm::Value *x_, *dy_, *dw_;
  llvm::Value *staged_x_ = nullptr, *staged_dy_ = nullptr, *columns_ = nullptr, *rows_ = nullptr, *sums_ = nullptr;
  int64_t staged_floats_ = 0;  // both staged parts
};

}  // namespace

WinogradFilterLayout winograd_filter_layout(const WinogradFilterGrad& v, unsigned width, int threads) {
  WinogradFilterLayout l;
  l.tiles = winograd_layout(WinogradConv{v.n, v.c, v.k, v.h, v.w, nullptr, v.tile_size}, width, threads, false);
  // As few column panels as the register tile allows, then as even as they can be; k split in
  // chunks where there are fewer panels than threads. Each chunk of k transforms all of the
  // panel's x, each panel all of its chunk's dy: where k is under 1.5 c, c is split across the
  // threads instead (narrower panels), because a channel of x costs more to transform than a
  // filter of dy (6x6 patches against 4x4 tiles). Measured in rescnn on the Zen 5 host
  // (docs/performance.md, "Winograd's scratch and staging"): 32 filters over 32 channels at
  // 28x28 ran 4-6% faster split along c, 64 over 32 at 14x14 up to 12% slower, so the
  // break-even lies between k = c and k = 2c. The split is of dw's columns, never of the
  // tiles, so it changes no bits.
  const int64_t c_vectors = ceil_div(v.c, width);
  // `panels` panels of c over `tile`, each an item per chunk of k.
  auto cut = [&](RegisterTile tile, int64_t panels) {
    WinogradFilterLayout c = l;
    c.tile = tile;
    c.col_vectors = ceil_div(c_vectors, panels);
    c.col_panels = ceil_div(c_vectors, c.col_vectors);
    c.row_tiles = v.k / c.tile.rows;
    c.row_chunks = std::clamp<int64_t>(ceil_div(threads, c.col_panels), 1, std::max<int64_t>(1, c.row_tiles));
    // Chunks of ceil(row_tiles / row_chunks) tiles: as many as it takes, so that none starts
    // past the last tile (5 row tiles for 4 threads are 3 chunks of 2, 2 and 1).
    if (c.row_tiles > 0) c.row_chunks = ceil_div(c.row_tiles, ceil_div(c.row_tiles, c.row_chunks));
    c.items = v.n > 0 && v.k > 0 && v.c > 0 ? c.col_panels * c.row_chunks : 0;
    return c;
  };
  // One register tile's width of c per panel, or split across the threads (above).
  auto tile_panels = [&](RegisterTile tile) {
    const int64_t panels = ceil_div(c_vectors, tile.vectors);
    return panels < threads && 2 * v.k < 3 * v.c ? std::min<int64_t>(c_vectors, threads) : panels;
  };
  // Whether `c` serves the threads better than `best`: even items first; then, its item's sums
  // fitting in L2, less for a thread to transform (transform_weight).
  auto better = [&](const WinogradFilterLayout& c, const WinogradFilterLayout& best) {
    const bool even = c.items % threads == 0, best_even = best.items % threads == 0;
    if (even != best_even) return even;
    return 4 * sums_floats(v, c, width) <= host_tuning().used.l2_bytes &&
           transform_weight(v, c, width, threads) < transform_weight(v, best, width, threads);
  };
  // The candidates, the first kept on a tie: the usual register tile, one width of it per panel;
  // at width 16 the wide one (4 vectors of c); and panels of several whole widths of either,
  // whose items run the register tile across them. Each item transforms all of its panel's x
  // and its chunk's dy, so fewer, wider panels transform dy fewer times. 128 channels at width
  // 16 are 3 panels of the usual tile (one thread would run two of them, the other one) but 2
  // of the wide one. 64 channels and 128 filters on two threads are two panels of 32 channels
  // on the usual tile, each transforming all 128 filters of dy, but one panel of 64 channels in
  // two chunks of about 64 filters on the wide one, or at width 8 on four widths of the usual
  // one. Measured on the Zen 5 host (docs/performance.md, "A thread's share of the
  // transforms"): the filter gradients whose layout this changes in cnn3 and rescnn 8-10%
  // faster at width 16, 8-25% at width 8. Items split the filters, never the tiles, so the
  // choice changes no bits.
  std::vector<RegisterTile> tiles{register_tile(width)};
  if (width >= 16) tiles.push_back(register_tile(width, true));
  l = cut(tiles[0], tile_panels(tiles[0]));
  for (const RegisterTile& tile : tiles) {
    const int64_t most = tile_panels(tile);
    for (int64_t panels = most; panels >= 1; --panels) {
      const WinogradFilterLayout c = cut(tile, panels);
      if (panels < most && (c.col_panels != panels || c.col_vectors % tile.vectors != 0)) continue;
      if (better(c, l)) l = c;
    }
  }
  const int64_t pass_tiles = kPassTiles * positions_of(2) / positions_of(v.tile_size);
  // Here a panel's tiles are rows of the reduction, not a GEMM's columns: an image whose tiles
  // fit in a pass is one panel, where the forward cuts it to fit its register tile (a 28x28
  // map's 7 x 7 F(3x3,4x4) tiles: panels of 4 and 3 tile rows, the second with a row of zero
  // tiles outside the image; 8% faster as one panel in rescnn on the Zen 5 host). The tiles
  // keep their order, so no sum changes.
  if (l.tiles.images == 1 && l.tiles.panel_cols == l.tiles.tiles_w && l.tiles.tiles_h * l.tiles.tiles_w <= pass_tiles) {
    l.tiles.panel_rows = l.tiles.tiles_h;
    l.tiles.panels = 1;
  }
  l.pass_panels = std::max<int64_t>(1, pass_tiles / panel_tiles(l.tiles));
  l.scratch_floats = scratch_parts(v, l, width).total;
  return l;
}

void emit_winograd_filter(Emit& e, const WinogradFilterGrad& v, llvm::Value* x, llvm::Value* dy, llvm::Value* dw,
                          llvm::Value* begin, llvm::Value* end, llvm::Value* scratch) {
  if (v.tile_size == 4)
    FilterEmitter<4>(e, v, x, dy, dw, scratch).emit(begin, end);
  else
    FilterEmitter<2>(e, v, x, dy, dw, scratch).emit(begin, end);
}

}  // namespace dagger
