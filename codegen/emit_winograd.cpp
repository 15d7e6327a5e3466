#include "dagger/codegen/emit_winograd.h"

#include <llvm/IR/Constants.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <numeric>
#include <utility>

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

/// Where the scratch's parts start, in floats (each on a 64-byte boundary).
struct ScratchParts {
  int64_t u = 0;      // the transformed filters, [xi][row tile][in][rows]
  int64_t panel = 0;  // the transformed input panel, [xi][in][row_floats]
  int64_t m = 0;      // one row tile's products, [xi][rows][row_floats]
  int64_t total = 0;
};

/// The transform positions of F(tile_size x tile_size, 3x3): (tile_size + 2)^2.
int64_t positions(int tile_size) { return (tile_size + 2) * (tile_size + 2); }

/// A panel's images in groups whose code is the same, so that a loop over the groups runs one
/// group's code instead of unrolling every image. With image_tiles tiles per image, the lane
/// pattern repeats every lcm(image_tiles, W) tiles, so a panel that holds that period several
/// times over is that many groups (a 7x7 map's F(4x4) panel of 12 images at W = 16 is 3 groups
/// of 4). Each lane's arithmetic is the same either way, so the results are too.
struct ImageGroups {
  int64_t count = 1;    // groups per panel
  int64_t stride = 0;   // tiles from one group's first to the next one's, along a panel row
  bool dense = false;   // output_groups' kind: a group's vector has lanes past its tiles
  WinogradLayout each;  // the layout of a panel holding one group (its images and vectors)
};

ImageGroups image_groups(const WinogradLayout& l, unsigned width) {
  ImageGroups groups{1, 0, false, l};
  const int64_t image_tiles = l.panel_rows * l.panel_cols, tiles = l.images * image_tiles;
  const int64_t period = std::lcm(image_tiles, static_cast<int64_t>(width));
  if (tiles % period == 0 && tiles > period) {
    groups.count = tiles / period;
    groups.stride = period;
    groups.each.images = period / image_tiles;
    groups.each.vectors = period / width;
  }
  return groups;
}

/// The groups the output transform and stores loop over. A panel of tile rows across images
/// (WinogradLayout::across_images), whose lane pattern does not repeat within it, is read back
/// as groups of as many tile rows as one vector holds, one after another with no lanes between
/// them (a 28x28 map's 9 rows of 7 F(4x4) tiles at W = 16: groups of 2 rows, 14 tiles apart,
/// the last one holding a single row): one group's code in a loop instead of every row's
/// unrolled, which made those kernels about 3x the size. The input transform stays unrolled over
/// the panel's vectors (its dense groups would transform 14 tiles per vector instead of 16 and
/// were slower). Other panels: image_groups.
ImageGroups output_groups(const WinogradLayout& l, unsigned width) {
  const int64_t image_tiles = l.panel_rows * l.panel_cols, per_vector = static_cast<int64_t>(width) / image_tiles;
  if (!l.across_images || per_vector < 1 || l.images <= per_vector) return image_groups(l, width);
  ImageGroups groups{ceil_div(l.images, per_vector), per_vector * image_tiles, true, l};
  groups.each.images = per_vector;
  groups.each.vectors = 1;
  return groups;
}

/// Floats per panel row (one input channel's tiles, or one output channel's products): the
/// GEMM's vectors, and room for a dense last group's whole vector.
int64_t row_floats(const WinogradLayout& l, unsigned width) {
  const ImageGroups groups = output_groups(l, width);
  const int64_t last = (groups.count - 1) * groups.stride + groups.each.vectors * static_cast<int64_t>(width);
  return align16(std::max(l.vectors * static_cast<int64_t>(width), last));
}

/// Floats per transform position in the transformed filters, the input panel and the products.
int64_t u_step(const WinogradConv& v, const WinogradLayout& l) {
  return position_step(ceil_div(v.out, l.tile.rows) * l.tile.rows * v.in);
}
int64_t panel_step(const WinogradConv& v, const WinogradLayout& l, unsigned width) {
  return position_step(v.in * row_floats(l, width));
}
int64_t m_step(const WinogradLayout& l, unsigned width) { return position_step(l.tile.rows * row_floats(l, width)); }

ScratchParts scratch_parts(const WinogradConv& v, const WinogradLayout& l, unsigned width) {
  const int64_t xis = positions(l.tile_size);
  ScratchParts s;
  s.panel = align16(xis * u_step(v, l));
  s.m = s.panel + align16(xis * panel_step(v, l, width));
  s.total = s.m + align16(xis * m_step(l, width));
  return s;
}

/// The image of unit `image` of the panel at `at`, and its first tile row: image b0 + image at
/// tile row th0, or with across_images the batch's tile row b0 + image.
std::pair<llvm::Value*, llvm::Value*> unit_origin(Emit& e, const WinogradLayout& l, const WinogradPanel& at,
                                                  int64_t image) {
  llvm::Value* unit = e.b.CreateAdd(at.b0, e.i64c(image));
  if (!l.across_images) return {unit, at.th0};
  return {e.b.CreateUDiv(unit, e.i64c(l.tiles_h)), e.b.CreateURem(unit, e.i64c(l.tiles_h))};
}

/// The input patches around a panel's tiles (tile_size + 2 rows and columns from
/// tile_size * tile - 1), lane t of
/// vector u of tiles being the panel's tile u * W + t, read from an [n, channels, h, w] buffer
/// one channel at a time: the rows the patches cover are read by masked vector loads (0 outside
/// the image, which is the padding, and past the batch), and each element's vector is assembled
/// from them by shuffles, whose pattern is known when the kernel is compiled.
class WinogradPatches {
 public:
  WinogradPatches(Emit& e, const WinogradLayout& l, int64_t n, int64_t channels, int64_t h, int64_t w,
                  const WinogradPanel& at);
  /// The covered rows of channel `c` of the buffer at `base`.
  std::vector<llvm::Value*> load(llvm::Value* base, llvm::Value* c) const;
  /// Element (a, b) of the patch of each tile of vector u, from `rows` (load's); lanes past the
  /// panel's tiles are poison.
  llvm::Value* element(const std::vector<llvm::Value*>& rows, int64_t u, int a, int b) const;

 private:
  Emit& e_;
  const WinogradLayout& l_;
  int64_t channels_, plane_, rows_, vectors_;  // rows_ x vectors_ loads per image
  std::vector<llvm::Value*> offsets_, masks_;  // per (image, row, vector) from channel 0's start
};

/// A vector whose lane t is lane lanes[t].second of lanes[t].first (poison where first is
/// null), built by two-source shuffles.
llvm::Value* assemble_lanes(Emit& e, const std::vector<std::pair<llvm::Value*, int>>& lanes);

WinogradPatches::WinogradPatches(Emit& e, const WinogradLayout& l, int64_t n, int64_t channels, int64_t h, int64_t w,
                                 const WinogradPanel& at)
    : e_(e),
      l_(l),
      channels_(channels),
      plane_(h * w),
      rows_(l.tile_size * l.panel_rows + 2),
      vectors_(ceil_div(l.tile_size * l.panel_cols + 2, e.width)) {
  llvm::Value* left = e.b.CreateSub(e.b.CreateMul(at.tw0, e.i64c(l.tile_size)), e.i64c(1));
  for (int64_t image = 0; image < l.images; ++image) {
    const auto [b, th0] = unit_origin(e, l, at, image);
    llvm::Value* start = e.b.CreateMul(b, e.i64c(channels * plane_));
    for (int64_t r = 0; r < rows_; ++r) {
      llvm::Value* ih = e.b.CreateAdd(e.b.CreateMul(th0, e.i64c(l.tile_size)), e.i64c(r - 1));
      llvm::Value* row_ok = e.b.CreateAnd(e.b.CreateICmpULT(ih, e.i64c(h)), e.b.CreateICmpSLT(b, e.i64c(n)));
      for (int64_t c = 0; c < vectors_; ++c) {
        llvm::Value* iw = e.b.CreateAdd(left, e.i64c(c * e.width));
        offsets_.push_back(e.b.CreateAdd(e.b.CreateMul(ih, e.i64c(w)), e.b.CreateAdd(iw, start)));
        llvm::Value* lanes = e.b.CreateAdd(e.lanes_of(iw), e.lane_ids());
        masks_.push_back(e.b.CreateAnd(e.lanes_within(lanes, w), e.b.CreateVectorSplat(e.width, row_ok)));
      }
    }
  }
}

std::vector<llvm::Value*> WinogradPatches::load(llvm::Value* base, llvm::Value* c) const {
  llvm::Value* channel = e_.b.CreateInBoundsGEP(e_.f32, base, e_.b.CreateMul(c, e_.i64c(plane_)));
  std::vector<llvm::Value*> loaded;  // masked-off lanes are never touched, even outside the buffer
  for (size_t k = 0; k < offsets_.size(); ++k)
    loaded.push_back(e_.b.CreateMaskedLoad(e_.vf, e_.b.CreateGEP(e_.f32, channel, offsets_[k]), kFloatAlign, masks_[k],
                                           llvm::Constant::getNullValue(e_.vf)));
  return loaded;
}

llvm::Value* WinogradPatches::element(const std::vector<llvm::Value*>& rows, int64_t u, int a, int b) const {
  const int64_t image_tiles = l_.panel_rows * l_.panel_cols;
  std::vector<std::pair<llvm::Value*, int>> lanes;
  for (int64_t t = 0; t < e_.width; ++t) {
    const int64_t tile = u * e_.width + t;  // image, then tile row and column in the panel
    if (tile >= l_.images * image_tiles) {
      lanes.push_back({nullptr, 0});
      continue;
    }
    const int64_t image = tile / image_tiles, p = tile % image_tiles;
    const int64_t row = l_.tile_size * (p / l_.panel_cols) + a, col = l_.tile_size * (p % l_.panel_cols) + b;
    lanes.push_back({rows[static_cast<size_t>((image * rows_ + row) * vectors_ + col / e_.width)],
                     static_cast<int>(col % e_.width)});
  }
  return assemble_lanes(e_, lanes);
}

llvm::Value* assemble_lanes(Emit& e, const std::vector<std::pair<llvm::Value*, int>>& lanes) {
  const int w = static_cast<int>(e.width);
  std::vector<llvm::Value*> sources;  // in first-use order
  for (const auto& [from, lane] : lanes)
    if (from && std::find(sources.begin(), sources.end(), from) == sources.end()) sources.push_back(from);
  llvm::Value* result = nullptr;
  std::vector<int> mask(static_cast<size_t>(w), -1);
  for (llvm::Value* from : sources) {
    std::vector<int> next = mask;
    for (int t = 0; t < w; ++t)
      if (lanes[static_cast<size_t>(t)].first == from)
        next[static_cast<size_t>(t)] = (result ? w : 0) + lanes[static_cast<size_t>(t)].second;
    result = result ? e.b.CreateShuffleVector(result, from, next) : e.b.CreateShuffleVector(from, next);
    for (int t = 0; t < w; ++t)
      if (next[static_cast<size_t>(t)] >= 0) mask[static_cast<size_t>(t)] = t;
  }
  return result ? result : llvm::PoisonValue::get(e.vf);
}

/// The emitter of F(M x M, 3x3): positions xi = P * row + column of a P x P block, P = M + 2.
template <int M>
class WinogradEmitter {
  using Form = winograd::Form<M>;
  static constexpr int P = static_cast<int>(Form::Patch);
  static constexpr int kPositions = P * P;
  using Block = std::array<std::array<llvm::Value*, P>, P>;
  using Outputs = std::array<llvm::Value*, M * M>;  // a vector of tiles' outputs, [M * i + j]

 public:
  WinogradEmitter(Emit& e, const WinogradConv& v, llvm::Value* input, llvm::Value* filter, llvm::Value* scratch,
                  const StoreOutput& store)
      : e_(e),
        v_(v),
        l_(winograd_layout(v, e.width, e.threads, true)),
        groups_(image_groups(l_, e.width)),
        out_groups_(output_groups(l_, e.width)),
        parts_(scratch_parts(v, l_, e.width)),
        input_(input),
        filter_(filter),
        store_(store) {
    auto at = [&](int64_t offset) { return e_.b.CreateInBoundsGEP(e_.f32, scratch, e_.i64c(offset)); };
    u_ = at(parts_.u);
    panel_ = at(parts_.panel);
    m_ = at(parts_.m);
    row_ = row_floats(l_, e_.width);
  }

  void emit(llvm::Value* begin, llvm::Value* end) {
    emit_if(e_, e_.b.CreateICmpSLT(begin, end), [&] { transform_filters(); });
    emit_range(e_, begin, end, [&](llvm::Value* item) { item_body(item); });
  }

 private:
  /// Tiles per image of a panel.
  int64_t image_tiles() const { return l_.panel_rows * l_.panel_cols; }

  llvm::Value* i32s(int64_t v) { return e_.splat_i32(static_cast<uint32_t>(static_cast<int32_t>(v))); }
  llvm::Value* load(llvm::Value* base, llvm::Value* index, llvm::Type* type) {
    return e_.b.CreateAlignedLoad(type, e_.b.CreateInBoundsGEP(e_.f32, base, index), kFloatAlign);
  }
  void store(llvm::Value* base, llvm::Value* index, llvm::Value* value) {
    e_.b.CreateAlignedStore(value, e_.b.CreateInBoundsGEP(e_.f32, base, index), kFloatAlign);
  }

  /// U[xi][o, i] = (G g G^T)[xi] for every filter, into the microkernel's row tiles: per row
  /// tile, W consecutive (input channel, row) slots of its [in][rows] block at a time, so each
  /// position is one vector store; their taps are gathered (the filter index is affine in o
  /// and i). Every lane computes what one filter alone would, so the vectors change no bit.
  void transform_filters() {
    const int64_t rows = l_.tile.rows;
    auto lanes64 = [&](llvm::Value* scalar) { return e_.b.CreateVectorSplat(e_.width, scalar); };
    llvm::Value* zero = e_.i64c(0);
    std::array<std::array<llvm::Value*, 3>, 3> tap, along_o, along_i;  // index of (o, i) = tap + o along_o + i along_i
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s) {
        tap[r][s] = v_.filter_index(zero, zero, r, s);
        along_o[r][s] = e_.b.CreateSub(v_.filter_index(e_.i64c(1), zero, r, s), tap[r][s]);
        along_i[r][s] = e_.b.CreateSub(v_.filter_index(zero, e_.i64c(1), r, s), tap[r][s]);
      }
    llvm::Value* lane =
        e_.b.CreateZExt(e_.lane_ids(), llvm::FixedVectorType::get(e_.i64, static_cast<unsigned>(e_.width)));
    emit_for(e_, ceil_div(v_.out, rows), 1, [&](llvm::Value* t) {
      emit_for(e_, ceil_div(v_.in * rows, e_.width), 1, [&](llvm::Value* c) {
        llvm::Value* slot = e_.b.CreateAdd(lanes64(e_.b.CreateMul(c, e_.i64c(e_.width))), lane);  // i * rows + row
        llvm::Value* i = e_.b.CreateUDiv(slot, lanes64(e_.i64c(rows)));
        llvm::Value* o =
            e_.b.CreateAdd(lanes64(e_.b.CreateMul(t, e_.i64c(rows))), e_.b.CreateURem(slot, lanes64(e_.i64c(rows))));
        llvm::Value* mask = e_.b.CreateAnd(e_.b.CreateICmpULT(i, lanes64(e_.i64c(v_.in))),
                                           e_.b.CreateICmpULT(o, lanes64(e_.i64c(v_.out))));
        std::array<std::array<llvm::Value*, 3>, 3> g;
        for (int r = 0; r < 3; ++r)
          for (int s = 0; s < 3; ++s) {
            llvm::Value* index = e_.b.CreateAdd(
                lanes64(tap[r][s]),
                e_.b.CreateAdd(e_.b.CreateMul(o, lanes64(along_o[r][s])), e_.b.CreateMul(i, lanes64(along_i[r][s]))));
            g[r][s] = e_.b.CreateMaskedGather(e_.vf, e_.b.CreateGEP(e_.f32, filter_, index), kFloatAlign, mask,
                                              llvm::Constant::getNullValue(e_.vf));
          }
        // Down the filter's rows first (G g), then along them ((G g) G^T).
        const auto u =
            winograd::two_d<3, P>(g, [&](const std::array<llvm::Value*, 3>& x) { return Form::filter(ops_, x); });
        llvm::Value* at =
            e_.b.CreateAdd(e_.b.CreateMul(t, e_.i64c(rows * v_.in)), e_.b.CreateMul(c, e_.i64c(e_.width)));
        for (int a = 0; a < P; ++a)
          for (int b = 0; b < P; ++b)
            e_.b.CreateMaskedStore(
                u[a][b], e_.b.CreateInBoundsGEP(e_.f32, u_, e_.b.CreateAdd(at, e_.i64c((P * a + b) * u_step(v_, l_)))),
                kFloatAlign, mask);
      });
    });
  }

  /// One item: a group of images, a panel of tiles in each, a chunk of the output channels'
  /// row tiles.
  void item_body(llvm::Value* item) {
    const int64_t per_group = l_.panels * l_.row_chunks;
    llvm::Value* rest = e_.b.CreateURem(item, e_.i64c(per_group));
    llvm::Value* panel = e_.b.CreateUDiv(rest, e_.i64c(l_.row_chunks));
    llvm::Value* chunk = e_.b.CreateURem(rest, e_.i64c(l_.row_chunks));
    const WinogradPanel at = winograd_panel(
        e_, l_, e_.b.CreateAdd(e_.b.CreateMul(e_.b.CreateUDiv(item, e_.i64c(per_group)), e_.i64c(l_.panels)), panel));
    pack_panel(at);

    const int rows = l_.tile.rows;
    const int64_t per_chunk = ceil_div(l_.row_tiles, l_.row_chunks);
    if (l_.row_tiles > 0) {
      llvm::Value* first = e_.b.CreateMul(chunk, e_.i64c(per_chunk));
      llvm::Value* last = e_.b.CreateAdd(first, e_.i64c(per_chunk));
      last = e_.b.CreateSelect(e_.b.CreateICmpSLT(last, e_.i64c(l_.row_tiles)), last, e_.i64c(l_.row_tiles));
      emit_range(e_, first, last, [&](llvm::Value* t) { row_tile(at, e_.b.CreateMul(t, e_.i64c(rows)), rows); });
    }
    const int leftover = static_cast<int>(v_.out - l_.row_tiles * rows);
    if (leftover > 0)
      emit_if(e_, e_.b.CreateICmpEQ(chunk, e_.i64c(l_.row_chunks - 1)),
              [&] { row_tile(at, e_.i64c(l_.row_tiles * rows), leftover); });
  }

  /// Where group `g` of the panel at `at` starts: its first image (the tile rows and columns
  /// are the panel's).
  WinogradPanel group_panel(const ImageGroups& groups, const WinogradPanel& at, llvm::Value* g) {
    return {e_.b.CreateAdd(at.b0, e_.b.CreateMul(g, e_.i64c(groups.each.images))), at.th0, at.tw0};
  }
  /// The offset in a panel row of group g's vector u.
  llvm::Value* group_column(const ImageGroups& groups, llvm::Value* g, int64_t u) {
    return e_.b.CreateAdd(e_.b.CreateMul(g, e_.i64c(groups.stride)), e_.i64c(u * e_.width));
  }

  /// V[xi][i, tile] = (B^T d B)[xi] for every input channel i and tile of the panel, group by
  /// group of its images.
  void pack_panel(const WinogradPanel& at) {
    emit_for(e_, groups_.count, 1, [&](llvm::Value* g) {
      const WinogradPatches patches(e_, groups_.each, v_.n, v_.in, v_.h, v_.w, group_panel(groups_, at, g));
      emit_for(e_, v_.in, 1, [&](llvm::Value* i) {
        const std::vector<llvm::Value*> rows = patches.load(input_, i);
        for (int64_t u = 0; u < groups_.each.vectors; ++u) {
          Block d;
          for (int a = 0; a < P; ++a)
            for (int b = 0; b < P; ++b) d[a][b] = patches.element(rows, u, a, b);
          const auto transformed =
              winograd::two_d<P, P>(d, [&](const std::array<llvm::Value*, P>& x) { return Form::input(ops_, x); });
          llvm::Value* to = e_.b.CreateAdd(e_.b.CreateMul(i, e_.i64c(row_)), group_column(groups_, g, u));
          for (int xi = 0; xi < kPositions; ++xi)
            store(panel_, e_.b.CreateAdd(to, e_.i64c(xi * panel_step(v_, l_, e_.width))), transformed[xi / P][xi % P]);
        }
      });
    });
  }

  /// Output channels [o0, o0 + rows) of the panel: the P^2 products on the register tile, then
  /// the output transform and the store, one channel at a time.
  void row_tile(const WinogradPanel& at, llvm::Value* o0, int rows) {
    const int vectors = static_cast<int>(l_.vectors);
    const int64_t m_position = m_step(l_, e_.width);
    emit_for(e_, kPositions, 1, [&](llvm::Value* xi) {
      llvm::Value* a_base =
          e_.b.CreateAdd(e_.b.CreateMul(xi, e_.i64c(u_step(v_, l_))), e_.b.CreateMul(o0, e_.i64c(v_.in)));
      llvm::Value* b_base = e_.b.CreateMul(xi, e_.i64c(panel_step(v_, l_, e_.width)));
      std::vector<llvm::Value*> acc(static_cast<size_t>(rows * vectors), e_.splat(0.0f));
      acc = emit_loop(e_, v_.in, 1, acc, [&](llvm::Value* i, const std::vector<llvm::Value*>& in) {
        llvm::Value* a_at = e_.b.CreateAdd(a_base, e_.b.CreateMul(i, e_.i64c(l_.tile.rows)));
        llvm::Value* b_at = e_.b.CreateAdd(b_base, e_.b.CreateMul(i, e_.i64c(row_)));
        std::vector<llvm::Value*> a, bv;
        for (int r = 0; r < rows; ++r) a.push_back(load(u_, e_.b.CreateAdd(a_at, e_.i64c(r)), e_.f32));
        for (int w = 0; w < vectors; ++w)
          bv.push_back(load(panel_, e_.b.CreateAdd(b_at, e_.i64c(w * e_.width)), e_.vf));
        return tile_fmas(e_, a, bv, in);
      });
      llvm::Value* m_at = e_.b.CreateMul(xi, e_.i64c(m_position));
      for (int r = 0; r < rows; ++r)
        for (int w = 0; w < vectors; ++w)
          store(m_, e_.b.CreateAdd(m_at, e_.i64c(r * row_ + w * e_.width)), acc[static_cast<size_t>(r * vectors + w)]);
    });
    emit_for(e_, rows, 1, [&](llvm::Value* r) {
      emit_for(e_, out_groups_.count, 1, [&](llvm::Value* g) {
        store_outputs(group_panel(out_groups_, at, g), g, e_.b.CreateAdd(o0, r), transform_outputs(r, g));
      });
    });
  }

  /// Y = A^T M A for row r of the register tile and group g of the panel's images: per vector
  /// u of the group's tiles, the M x M outputs (i, j) of its tiles, at [u][M * i + j].
  std::vector<Outputs> transform_outputs(llvm::Value* r, llvm::Value* g) {
    const int64_t m_position = m_step(l_, e_.width);
    std::vector<Outputs> outputs;
    for (int64_t u = 0; u < out_groups_.each.vectors; ++u) {
      llvm::Value* at = e_.b.CreateAdd(e_.b.CreateMul(r, e_.i64c(row_)), group_column(out_groups_, g, u));
      Block m;
      for (int xi = 0; xi < kPositions; ++xi)
        m[xi / P][xi % P] = load(m_, e_.b.CreateAdd(at, e_.i64c(xi * m_position)), e_.vf);
      const auto y =
          winograd::two_d<P, M>(m, [&](const std::array<llvm::Value*, P>& x) { return Form::output(ops_, x); });
      Outputs flat;
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < M; ++j) flat[static_cast<size_t>(M * i + j)] = y[i][j];
      outputs.push_back(flat);
    }
    return outputs;
  }

  /// Lanes [c * W, c * W + W) of output row `row` of the panel in image `image` of a group
  /// (panel coordinates: M rows per tile row, M columns per tile), assembled from the group's
  /// tile outputs `y` ([vector][M * i + j]). Lanes past the panel are poison.
  llvm::Value* output_row(const std::vector<Outputs>& y, int64_t image, int64_t row, int64_t c) {
    std::vector<std::pair<llvm::Value*, int>> lanes;
    for (int64_t t = 0; t < e_.width; ++t) {
      const int64_t col = c * e_.width + t;
      if (col >= M * l_.panel_cols) {
        lanes.push_back({nullptr, 0});
        continue;
      }
      const int64_t l = image * image_tiles() + (row / M) * l_.panel_cols + col / M;
      lanes.push_back({y[static_cast<size_t>(l / e_.width)][static_cast<size_t>(M * (row % M) + col % M)],
                       static_cast<int>(l % e_.width)});
    }
    return assemble_lanes(e_, lanes);
  }

  /// Stores output channel o of group g of the panel's images (starting at `at`) through the
  /// epilogue, image by image and output row by output row, W consecutive positions at a time
  /// (what lies past the images masked off).
  void store_outputs(const WinogradPanel& at, llvm::Value* g, llvm::Value* o, const std::vector<Outputs>& y) {
    const int64_t run = M * l_.panel_cols;
    llvm::Value* ow0 = e_.b.CreateMul(at.tw0, e_.i64c(M));
    llvm::Value* cols_here = e_.b.CreateTrunc(e_.b.CreateSub(e_.i64c(v_.w), ow0), e_.i32);  // may exceed the run
    for (int64_t image = 0; image < out_groups_.each.images; ++image) {
      const auto origin = unit_origin(e_, l_, at, image);
      llvm::Value* b = origin.first;
      llvm::Value* oh0 = e_.b.CreateMul(origin.second, e_.i64c(M));
      llvm::Value* inside = e_.b.CreateICmpSLT(b, e_.i64c(v_.n));
      if (out_groups_.dense)  // a dense last group's units may lie past the panel's
        inside = e_.b.CreateAnd(
            inside,
            e_.b.CreateICmpSLT(e_.b.CreateAdd(e_.b.CreateMul(g, e_.i64c(out_groups_.each.images)), e_.i64c(image)),
                               e_.i64c(l_.images)));
      emit_if(e_, inside, [&] {
        for (int64_t row = 0; row < M * l_.panel_rows; ++row) {
          llvm::Value* oh = e_.b.CreateAdd(oh0, e_.i64c(row));
          emit_if(e_, e_.b.CreateICmpSLT(oh, e_.i64c(v_.h)), [&] {
            llvm::Value* j0 = e_.b.CreateAdd(e_.b.CreateMul(oh, e_.i64c(v_.w)), ow0);
            for (int64_t c = 0; c < ceil_div(run, e_.width); ++c) {
              const int64_t in_run = std::min<int64_t>(e_.width, run - c * e_.width);
              llvm::Value* left = e_.b.CreateSub(cols_here, e_.b.getInt32(static_cast<uint32_t>(c * e_.width)));
              llvm::Value* mask =
                  e_.b.CreateAnd(e_.b.CreateICmpSLT(e_.lane_ids(), e_.b.CreateVectorSplat(e_.width, left)),
                                 e_.b.CreateICmpULT(e_.lane_ids(), i32s(in_run)));
              store_(b, o, e_.b.CreateAdd(j0, e_.i64c(c * e_.width)), mask, output_row(y, image, row, c));
            }
          });
        }
      });
    }
  }

  Emit& e_;
  WinogradOps ops_{e_};
  const WinogradConv& v_;
  WinogradLayout l_;
  ImageGroups groups_, out_groups_;  // the input transform's, the output transform's
  ScratchParts parts_;
  llvm::Value *input_, *filter_;
  const StoreOutput& store_;
  llvm::Value *u_, *panel_, *m_;
  int64_t row_ = 0;  // floats per panel row (row_floats)
};

/// Panels of whole tile rows that run on from one image into the next, where they leave fewer
/// lanes idle over the batch than panels inside an image: a 28x28 map's 7 x 7 F(4x4) tiles
/// fill 49 of 64 lanes per image in panels of 4 and 3 tile rows (W = 16, 48 lanes a panel),
/// 63 of 64 in panels of 9 tile rows on the wide register tile. Each tile's outputs are the
/// same sums either way; only the vectors they share change.
void run_rows_across_images(WinogradLayout& l, int64_t n, unsigned width) {
  int64_t best = n * l.panels * l.vectors;  // vectors of tiles over the batch, as laid out
  const int64_t tile_rows = n * l.tiles_h;
  for (const bool wide : {false, true}) {
    const RegisterTile tile = register_tile(width, wide);
    for (int64_t rows = 1; rows * l.tiles_w <= static_cast<int64_t>(tile.vectors) * width; ++rows) {
      const int64_t vectors = ceil_div(rows * l.tiles_w, width), cost = ceil_div(tile_rows, rows) * vectors;
      if (cost < best || (cost == best && l.across_images && rows > l.images)) {
        best = cost;
        l.across_images = true;
        l.tile = tile;
        l.images = rows;
        l.panel_rows = 1;
        l.panels = 1;
        l.vectors = vectors;
      }
    }
  }
}

}  // namespace

WinogradLayout winograd_layout(const WinogradConv& v, unsigned width, int threads, bool rows_across_images) {
  WinogradLayout l;
  l.tile = register_tile(width);
  const int64_t target = static_cast<int64_t>(l.tile.vectors) * width;  // tiles per panel, as a GEMM panel's columns
  l.tile_size = v.tile_size;
  l.tiles_h = ceil_div(v.h, v.tile_size);
  l.tiles_w = ceil_div(v.w, v.tile_size);
  // As few panels as fit the target, then as even as they can be: a last panel of one tile row
  // would cost as much as a full one.
  if (l.tiles_w <= target) {
    l.panel_cols = l.tiles_w;
    l.panel_rows = ceil_div(l.tiles_h, ceil_div(l.tiles_h, std::min(l.tiles_h, target / l.tiles_w)));
  } else {
    l.panel_cols = ceil_div(l.tiles_w, ceil_div(l.tiles_w, target));
    l.panel_rows = 1;
  }
  // Small images share a panel, so that its lanes are not mostly idle (a 7x7 map has 16 tiles).
  const int64_t tiles = l.tiles_h * l.tiles_w;
  l.images = tiles * 2 <= target ? std::min(v.n, target / tiles) : 1;
  l.panels = ceil_div(l.tiles_h, l.panel_rows) * ceil_div(l.tiles_w, l.panel_cols);
  l.vectors = ceil_div(l.images * l.panel_rows * l.panel_cols, width);
  if (rows_across_images && l.images == 1 && l.panel_cols == l.tiles_w) run_rows_across_images(l, v.n, width);
  l.row_tiles = v.out / l.tile.rows;
  const int64_t per_problem = ceil_div(l.across_images ? v.n * l.tiles_h : v.n, l.images) * l.panels;
  l.row_chunks = std::clamp<int64_t>(ceil_div(threads, per_problem), 1, std::max<int64_t>(1, l.row_tiles));
  l.items = v.n > 0 && v.out > 0 ? per_problem * l.row_chunks : 0;
  l.scratch_floats = scratch_parts(v, l, width).total;
  return l;
}

void emit_winograd(Emit& e, const WinogradConv& v, llvm::Value* input, llvm::Value* filter, llvm::Value* begin,
                   llvm::Value* end, llvm::Value* scratch, const StoreOutput& store) {
  assert(v.tile_size == 2 || v.tile_size == 4);
  if (v.tile_size == 4)
    WinogradEmitter<4>(e, v, input, filter, scratch, store).emit(begin, end);
  else
    WinogradEmitter<2>(e, v, input, filter, scratch, store).emit(begin, end);
}

int64_t position_step(int64_t floats) { return floats + 16; }

WinogradPanel winograd_panel(Emit& e, const WinogradLayout& l, llvm::Value* index) {
  llvm::Value* group = e.b.CreateUDiv(index, e.i64c(l.panels));
  llvm::Value* panel = e.b.CreateURem(index, e.i64c(l.panels));
  const int64_t col_blocks = ceil_div(l.tiles_w, l.panel_cols);
  return {e.b.CreateMul(group, e.i64c(l.images)),
          e.b.CreateMul(e.b.CreateUDiv(panel, e.i64c(col_blocks)), e.i64c(l.panel_rows)),
          e.b.CreateMul(e.b.CreateURem(panel, e.i64c(col_blocks)), e.i64c(l.panel_cols))};
}

llvm::Value* WinogradOps::constant(llvm::Value* like, double c) { return llvm::ConstantFP::get(like->getType(), c); }

}  // namespace dagger
