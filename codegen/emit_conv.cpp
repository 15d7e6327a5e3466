#include "dagger/codegen/emit_conv.h"

#include <fmt/format.h>
#include <llvm/IR/Constants.h>

#include <algorithm>
#include <array>
#include <cassert>

#include "dagger/codegen/conv_algo.h"
#include "dagger/codegen/emit_elementwise.h"
#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/emit_winograd.h"
#include "dagger/codegen/host_tuning.h"
#include "dagger/codegen/iteration.h"

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

/// The sizes of a convolution: x [n, c, h, w], filter [k, c, r, s], y [n, k, p, q]. In words:
/// n images of c channels, h rows by w columns; k filters of r rows by s columns; outputs of
/// k channels, p rows by q columns, with p = (h + 2 pad - r) / stride + 1 and q likewise.
/// Every emitter below uses these letters for these sizes.
struct Conv {
  int64_t n, c, h, w, k, r, s, p, q, stride, pad;
};

/// The three convolution products, each one implicit GEMM.
enum class ConvProduct { forward, backward_data, backward_filter };

ConvProduct conv_product(const Node& node) {
  switch (node.op) {
    case Op::conv2d:
      return ConvProduct::forward;
    case Op::conv2d_backward_data:
      return ConvProduct::backward_data;
    case Op::conv2d_backward_filter:
      return ConvProduct::backward_filter;
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::neg:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::relu:
    case Op::tanh:
    case Op::sigmoid:
    case Op::elu:
    case Op::selu:
    case Op::leaky_relu:
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow:
    case Op::relu_grad:
    case Op::elu_grad:
    case Op::selu_grad:
    case Op::leaky_relu_grad:
    case Op::dropout:
    case Op::reshape:
    case Op::transpose:
    case Op::broadcast:
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
    case Op::matmul:
    case Op::maxpool2d:
    case Op::maxpool2d_backward:
    case Op::batchnorm_train:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
    case Op::softmax:
    case Op::softmax_xent:
    case Op::softmax_xent_grad:
    case Op::assign:
      break;
  }
  throw Error(fmt::format("internal error: codegen: %{} ({}) is not a convolution", node.id, op_info(node.op).name));
}

Conv conv_of(const Graph& g, const Node& node) {
  Shape x, f;
  switch (conv_product(node)) {
    case ConvProduct::forward:
      x = g.shape(node.operands[0]);
      f = g.shape(node.operands[1]);
      break;
    case ConvProduct::backward_data:
      x = node.shape;
      f = g.shape(node.operands[1]);
      break;
    case ConvProduct::backward_filter:
      x = g.shape(node.operands[0]);
      f = node.shape;
      break;
  }
  const int64_t stride = node.attrs.i("stride"), pad = node.attrs.i("pad");
  return {x[0], x[1], x[2], x[3], f[0], f[2], f[3],
          (x[2] + 2 * pad - f[2]) / stride + 1, (x[3] + 2 * pad - f[3]) / stride + 1, stride, pad};
}

/// A 1x1 filter of stride 1 and no padding: the forward product's B (im2col of an image of x)
/// is that image, [c, h * w], and the data gradient's is the image of dy, [k, p * q], so the
/// GEMM may read them where they stand (GemmSizes::b_readable).
bool pointwise(const Conv& v) { return v.r == 1 && v.s == 1 && v.stride == 1 && v.pad == 0; }

/// Whether register_tile's wide tile (at width 16, the only one that has it: 64 columns a
/// panel) pads a product of n columns less than the usual tile (48): a 1x1 filter gradient over
/// 64 channels (64 columns computed against 96) or a product over 7x7 maps (49: 64 against 96).
/// rescnn's such 1x1 products, 7 alternating rounds: the filter gradient 0.39 -> 0.27 ms, the
/// data gradient 0.31 -> 0.27, the forward 0.20 -> 0.18.
bool wide_pads_less(int64_t n) {
  constexpr unsigned kWidth = 16;
  auto padded = [n](RegisterTile tile) {
    const int64_t panel = int64_t(tile.vectors) * kWidth;
    return (n + panel - 1) / panel * panel;
  };
  return padded(register_tile(kWidth, true)) < padded(register_tile(kWidth));
}

GemmSizes sizes_of(const Graph& g, const Node& node) {
  const Conv v = conv_of(g, node);
  GemmSizes s;
  switch (conv_product(node)) {
    case ConvProduct::forward:
      s = {v.n, v.k, v.p * v.q, {v.c, v.r, v.s}, 1};
      s.b_readable = pointwise(v);
      break;
    case ConvProduct::backward_data:
      s = {v.n, v.c, v.h * v.w, {v.k, v.r, v.s}, 1};
      s.b_readable = pointwise(v);
      break;
    case ConvProduct::backward_filter:
      s = {1, v.k, v.c * v.r * v.s, {v.p, v.q}, v.n};
      break;
  }
  s.wide_tile = wide_pads_less(s.n);
  return s;
}

/// A direct product that sums at most this many terms into each output is bound by its stores,
/// not its FMAs: cnn3's and rescnn's first convolution (one channel, 9 terms) and rescnn's
/// one-channel 1x1 shortcut (1 term).
constexpr int64_t kStoreBoundTerms = 16;

/// Whether a direct forward or data-gradient product stores its output past the caches
/// (StridedBuffer::streamed). A plain store into a line that is not in cache reads the line
/// first; a streamed one does not, and a store-bound product then runs 1.4-3.1x faster (the
/// three above, batch 64, at widths 8 and 16; docs/performance.md, session 33), its reader
/// a little slower. Only where the output outgrows the threads' L2 together, so that its reader
/// would not find it there anyway, and each channel's positions fill whole vectors, so that an
/// aligned buffer's full vectors are all aligned (a streamed store must be).
bool streams_output(const GemmSizes& s, unsigned width, int threads) {
  const int64_t terms = numel(s.k_dims) * s.k_blocks;
  const int64_t bytes = s.batch * s.m * s.n * int64_t(sizeof(float));
  return terms <= kStoreBoundTerms && s.n % width == 0 && bytes > threads * host_tuning().used.l2_bytes;
}

/// Lane-wise index arithmetic on <W x i32> vectors (panel columns, image rows and columns).
struct IndexLanes {
  Emit& e;
  llvm::Value* c(int64_t v) { return e.splat_i32(static_cast<uint32_t>(static_cast<int32_t>(v))); }
  llvm::Value* add(llvm::Value* a, llvm::Value* b) { return e.b.CreateAdd(a, b); }
  llvm::Value* mul(llvm::Value* a, int64_t b) { return b == 1 ? a : e.b.CreateMul(a, c(b)); }
  llvm::Value* div(llvm::Value* a, int64_t b) { return b == 1 ? a : e.b.CreateUDiv(a, c(b)); }
  llvm::Value* rem(llvm::Value* a, int64_t b) { return e.b.CreateURem(a, c(b)); }
  /// 0 <= a < bound, for signed lanes.
  llvm::Value* within(llvm::Value* a, int64_t bound) { return e.lanes_within(a, bound); }
  llvm::Value* all(llvm::Value* a, llvm::Value* b) { return e.b.CreateAnd(a, b); }
  /// The i64 scalar `v` in every lane, as i32.
  llvm::Value* splat(llvm::Value* v) { return e.lanes_of(v); }
  /// Columns j0 + offset + lane of a panel.
  llvm::Value* columns(llvm::Value* j0, int64_t offset) { return add(splat(j0), add(e.lane_ids(), c(offset))); }
};

/// Stores `value` at panel row `row` (a flat i64), vector `v`.
void store_panel(Emit& e, llvm::Value* panel, llvm::Value* row, int64_t stride, int64_t v, llvm::Value* value) {
  llvm::Value* offset = e.b.CreateAdd(e.b.CreateMul(row, e.i64c(stride)), e.i64c(v * e.width));
  e.b.CreateAlignedStore(value, e.b.CreateInBoundsGEP(e.f32, panel, offset), kFloatAlign);
}

/// Where a vector of panel columns comes from in one reduction row: the <W x i32> indices into
/// the source and the lanes that exist (the rest read as 0). When the lanes are consecutive
/// elements of the source (a stride-1 convolution that keeps the width), `first` is lane 0's
/// i64 index and one masked vector load replaces the gather.
struct LaneSource {
  llvm::Value* index;
  llvm::Value* mask;
  llvm::Value* first = nullptr;
};

/// Fills a panel by visiting every reduction row (coordinates along `rows`) and, per vector of
/// columns, loading `source` where `lane` says.
using LaneIndex = std::function<LaneSource(int64_t v, const std::vector<llvm::Value*>& row)>;

void gather_panel(Emit& e, const Shape& rows, int64_t vectors, int64_t stride, llvm::Value* source,
                  llvm::Value* panel, const LaneIndex& lane) {
  const std::vector<int64_t> strides = contiguous_strides(rows);
  std::vector<llvm::Value*> coords;
  std::function<void(size_t)> nest = [&](size_t d) {
    emit_for(e, rows[d], 1, [&](llvm::Value* i) {
      coords.push_back(i);
      if (d + 1 < rows.size()) {
        nest(d + 1);
      } else {
        llvm::Value* flat = e.i64c(0);
        for (size_t a = 0; a < coords.size(); ++a) flat = e.b.CreateAdd(flat, e.b.CreateMul(coords[a], e.i64c(strides[a])));
        for (int64_t v = 0; v < stride / e.width; ++v) {
          llvm::Value* value = e.splat(0.0f);
          if (v < vectors) {
            const LaneSource from = lane(v, coords);
            if (from.first)  // masked-off lanes are never touched, even where they fall outside the buffer
              value = e.b.CreateMaskedLoad(e.vf, e.b.CreateGEP(e.f32, source, from.first), kFloatAlign, from.mask,
                                           llvm::Constant::getNullValue(e.vf));
            else
              value = gather(e, source, from.index, from.mask);
          }
          store_panel(e, panel, flat, stride, v, value);
        }
      }
      coords.pop_back();
    });
  };
  nest(0);
}

/// The filter gradient's panel when stride 1 keeps the width: panel row j (an output position)
/// of column (c, r, s) reads x[c, j / w + r - pad, j % w + s - pad], so each column is a run of
/// consecutive input elements. W rows of W columns are read as W masked vector loads down the
/// columns and transposed in registers, instead of W gathers across them. Full blocks of W
/// rows away from the image's top and bottom are read by plain loads (see block() below):
/// masked loads and their masks took about a sixth of rescnn's 32 x 32 filter gradient at
/// 28x28.
void pack_filter_panel(Emit& e, const Conv& v, llvm::Value* x, llvm::Value* image, llvm::Value* j0, int64_t cols,
                       int64_t stride, llvm::Value* panel) {
  IndexLanes ix{e};
  const int64_t rows = v.p * v.q, w = e.width;
  // Per existing panel column: where its run starts in x, and its tap (r, s) less the padding.
  struct Column {
    llvm::Value *start, *r, *s;
  };
  std::vector<Column> columns;
  for (int64_t l = 0; l < cols; ++l) {
    llvm::Value* col = e.b.CreateAdd(j0, e.i64c(l));
    llvm::Value* channel = e.b.CreateUDiv(col, e.i64c(v.r * v.s));
    llvm::Value* tap = e.b.CreateURem(col, e.i64c(v.r * v.s));
    llvm::Value* r = e.b.CreateUDiv(tap, e.i64c(v.s));
    llvm::Value* s = e.b.CreateURem(tap, e.i64c(v.s));
    llvm::Value* start = e.b.CreateAdd(image, e.b.CreateMul(channel, e.i64c(v.h * v.w)));
    start = e.b.CreateAdd(start, e.b.CreateAdd(e.b.CreateMul(r, e.i64c(v.w)), s));
    start = e.b.CreateSub(start, e.i64c(v.pad * v.w + v.pad));
    columns.push_back({start, ix.add(ix.splat(r), ix.c(-v.pad)), ix.add(ix.splat(s), ix.c(-v.pad))});
  }
  // A block of `count` rows from row j: W loads (one per column), one transpose, `count` stores.
  auto block = [&](llvm::Value* j, int64_t count) {
    llvm::Value* pos = ix.add(ix.splat(j), e.lane_ids());
    llvm::Value* in_rows = e.b.CreateICmpULT(e.lane_ids(), ix.c(count));
    llvm::Value* oh = ix.div(pos, v.q);
    llvm::Value* ow = ix.rem(pos, v.q);
    auto masked = [&] {
      pack_rows_transposed(e, panel, stride, j, count, cols, [&](int64_t l) {
        const Column& c = columns[static_cast<size_t>(l)];
        llvm::Value* mask = ix.all(in_rows, ix.all(ix.within(ix.add(oh, c.r), v.h), ix.within(ix.add(ow, c.s), v.w)));
        llvm::Value* address = e.b.CreateGEP(e.f32, x, e.b.CreateAdd(c.start, j));
        return e.b.CreateMaskedLoad(e.vf, address, kFloatAlign, mask, llvm::Constant::getNullValue(e.vf));
      });
    };
    if (count < w) {
      masked();
      return;
    }
    // Every tap's row inside for every row of the block, with a row to spare on both sides
    // (1 <= oh + r - pad <= h - 2 for every r: the spare row is for the blocks that cross an
    // edge, below), and every tap's column inside (0 <= ow + s - pad < w for every s).
    llvm::Value* rows_inside = e.b.CreateAndReduce(ix.within(ix.add(oh, ix.c(-v.pad - 1)), v.h - (v.r - 1) - 2));
    llvm::Value* cols_inside = e.b.CreateAndReduce(ix.within(ix.add(ow, ix.c(-v.pad)), v.w - (v.s - 1)));
    auto plain = [&](bool select_columns) {
      pack_rows_transposed(e, panel, stride, j, count, cols, [&](int64_t l) {
        const Column& c = columns[static_cast<size_t>(l)];
        llvm::Value* value =
            e.b.CreateAlignedLoad(e.vf, e.b.CreateGEP(e.f32, x, e.b.CreateAdd(c.start, j)), kFloatAlign);
        if (!select_columns) return value;
        return e.b.CreateSelect(ix.within(ix.add(ow, c.s), v.w), value, llvm::Constant::getNullValue(e.vf));
      });
    };
    // Most blocks: every tap inside, plain loads. A block that crosses the left or right edge
    // (but not the top or bottom two rows) loads plainly too: a lane whose column falls
    // outside reads the element at the end of the row above or the start of the row below,
    // inside the same plane, and is then zeroed. Only blocks near the top and bottom need
    // masked loads, which read nothing outside the image.
    // (A tap's column is at most `pad` outside, so the row above or below holds it while pad < w.)
    llvm::Value* all_inside = e.b.CreateAnd(rows_inside, cols_inside);
    emit_if(e, all_inside, [&] { plain(false); });
    if (v.pad < v.w) {
      emit_if(e, e.b.CreateAnd(rows_inside, e.b.CreateNot(cols_inside)), [&] { plain(true); });
      emit_if(e, e.b.CreateNot(rows_inside), masked);
    } else {
      emit_if(e, e.b.CreateNot(all_inside), masked);
    }
  };
  const int64_t full = rows / w;
  emit_for(e, full * w, w, [&](llvm::Value* j) { block(j, w); });
  if (rows % w) block(e.i64c(full * w), rows % w);
}

/// Per vector of W panel columns (their indices, <W x i32>), the lane values every reduction
/// row of the panel reuses; computed once per panel.
using ColumnLanes = std::function<std::vector<llvm::Value*>(llvm::Value* columns)>;
/// Where vector `u` of the panel's columns reads at reduction row `row`, given its column lanes.
using RowLanes =
    std::function<LaneSource(int64_t u, const std::vector<llvm::Value*>& column, const std::vector<llvm::Value*>& row)>;

/// The packer of every product's gathered panels: fills `panel` with columns [j0, j0 + cols)
/// of a B whose reduction rows are the coordinates of `rows`, reading `source`.
void pack_panel(Emit& e, const Shape& rows, llvm::Value* j0, int64_t cols, int64_t stride, llvm::Value* source,
                llvm::Value* panel, const ColumnLanes& column_lanes, const RowLanes& row_lanes) {
  IndexLanes ix{e};
  const int64_t vectors = (cols + e.width - 1) / e.width;
  std::vector<std::vector<llvm::Value*>> per_vector;
  for (int64_t u = 0; u < vectors; ++u) per_vector.push_back(column_lanes(ix.columns(j0, u * e.width)));
  gather_panel(e, rows, vectors, stride, source, panel, [&](int64_t u, const std::vector<llvm::Value*>& row) {
    return row_lanes(u, per_vector[static_cast<size_t>(u)], row);
  });
}

/// What the three products' GEMM problems read. It outlives the problems, whose functions
/// refer to it.
struct ConvOperands {
  Emit& e;
  Conv v;
  llvm::Value* first;   // operand 0: x (forward, filter gradient) or dy (data gradient)
  llvm::Value* second;  // operand 1: w (forward, data gradient) or dy (filter gradient)
  int64_t panel;        // floats per panel row (GemmLayout::panel)

  /// A stride-1 convolution that keeps the width maps consecutive output columns to
  /// consecutive input elements (and back), so its panels are filled by masked vector loads.
  bool contiguous() const { return v.stride == 1 && v.q == v.w; }
  llvm::Value* load(llvm::Value* base, llvm::Value* index) const {
    return e.b.CreateAlignedLoad(e.f32, e.b.CreateInBoundsGEP(e.f32, base, index), kFloatAlign);
  }
  /// The flat index of w[out, in, r, s] in the [k, c, r, s] filter.
  llvm::Value* filter_index(llvm::Value* out, llvm::Value* in, llvm::Value* r, llvm::Value* s) const {
    llvm::Value* index = e.b.CreateAdd(e.b.CreateMul(out, e.i64c(v.c)), in);
    index = e.b.CreateAdd(e.b.CreateMul(index, e.i64c(v.r)), r);
    return e.b.CreateAdd(e.b.CreateMul(index, e.i64c(v.s)), s);
  }
};

/// conv2d, per image b: A = w [k, (c, r, s)]; B = im2col(x_b): row (c, r, s), column (p, q).
void set_forward(const ConvOperands& c, GemmProblem& p) {
  p.a_at = [&c](llvm::Value*, llvm::Value*, llvm::Value* i, const std::vector<llvm::Value*>& k) {
    return c.load(c.second, c.filter_index(i, k[0], k[1], k[2]));
  };
  p.pack_b = [&c](llvm::Value* b, llvm::Value*, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
    Emit& e = c.e;
    const Conv& v = c.v;
    IndexLanes ix{e};
    const int64_t chw = v.c * v.h * v.w;
    llvm::Value* image = ix.splat(e.b.CreateMul(b, e.i64c(chw)));
    // Per column (p, q): whether it exists, and its window's top row and left column.
    auto column_lanes = [&](llvm::Value* col) -> std::vector<llvm::Value*> {
      return {e.b.CreateICmpULT(col, ix.c(v.p * v.q)), ix.add(ix.mul(ix.div(col, v.q), v.stride), ix.c(-v.pad)),
              ix.add(ix.mul(ix.rem(col, v.q), v.stride), ix.c(-v.pad))};
    };
    auto row_lanes = [&](int64_t u, const std::vector<llvm::Value*>& col, const std::vector<llvm::Value*>& row) {
      llvm::Value* ih = ix.add(col[1], ix.splat(row[1]));
      llvm::Value* iw = ix.add(col[2], ix.splat(row[2]));
      llvm::Value* mask = ix.all(col[0], ix.all(ix.within(ih, v.h), ix.within(iw, v.w)));
      llvm::Value* index = ix.add(image, ix.mul(ix.splat(row[0]), v.h * v.w));
      index = ix.add(index, ix.add(ix.mul(ih, v.w), iw));
      LaneSource from{index, mask};
      if (c.contiguous()) {  // column j = p*w + q reads x[c, p + r - pad, q + s - pad]
        llvm::Value* start = e.b.CreateAdd(e.b.CreateMul(b, e.i64c(chw)), e.b.CreateMul(row[0], e.i64c(v.h * v.w)));
        start = e.b.CreateAdd(start, e.b.CreateAdd(j0, e.i64c(u * e.width - v.pad * v.w - v.pad)));
        from.first = e.b.CreateAdd(start, e.b.CreateAdd(e.b.CreateMul(row[1], e.i64c(v.w)), row[2]));
      }
      return from;
    };
    pack_panel(e, {v.c, v.r, v.s}, j0, cols, c.panel, c.first, panel, column_lanes, row_lanes);
  };
}

/// conv2d_backward_data, per image b: A = w viewed as [c, (k, r, s)]; B: row (k, r, s),
/// column (h, w) holds the dy element whose window tap (r, s) covered input position (h, w), or 0.
void set_backward_data(const ConvOperands& c, GemmProblem& p) {
  p.a_at = [&c](llvm::Value*, llvm::Value*, llvm::Value* i, const std::vector<llvm::Value*>& k) {
    return c.load(c.second, c.filter_index(k[0], i, k[1], k[2]));
  };
  p.pack_b = [&c](llvm::Value* b, llvm::Value*, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
    Emit& e = c.e;
    const Conv& v = c.v;
    IndexLanes ix{e};
    const int64_t kpq = v.k * v.p * v.q;
    llvm::Value* image = ix.splat(e.b.CreateMul(b, e.i64c(kpq)));
    // Per column (h, w): whether it exists, and h + pad, w + pad.
    auto column_lanes = [&](llvm::Value* col) -> std::vector<llvm::Value*> {
      return {e.b.CreateICmpULT(col, ix.c(v.h * v.w)), ix.add(ix.div(col, v.w), ix.c(v.pad)),
              ix.add(ix.rem(col, v.w), ix.c(v.pad))};
    };
    auto row_lanes = [&](int64_t u, const std::vector<llvm::Value*>& col, const std::vector<llvm::Value*>& row) {
      // (h + pad - r) must be a multiple of the stride, with quotient in [0, p).
      llvm::Value* th = e.b.CreateSub(col[1], ix.splat(row[1]));
      llvm::Value* tw = e.b.CreateSub(col[2], ix.splat(row[2]));
      llvm::Value* mask = ix.all(col[0], ix.all(ix.within(th, v.p * v.stride), ix.within(tw, v.q * v.stride)));
      if (v.stride > 1)
        mask = ix.all(mask, ix.all(e.b.CreateICmpEQ(ix.rem(th, v.stride), ix.c(0)),
                                   e.b.CreateICmpEQ(ix.rem(tw, v.stride), ix.c(0))));
      llvm::Value* oh = ix.div(th, v.stride);
      llvm::Value* ow = ix.div(tw, v.stride);
      llvm::Value* index = ix.add(image, ix.mul(ix.splat(row[0]), v.p * v.q));
      index = ix.add(index, ix.add(ix.mul(oh, v.q), ow));
      LaneSource from{index, mask};
      if (c.contiguous()) {  // column j = h*w + w' reads dy[k, h + pad - r, w' + pad - s]
        llvm::Value* start = e.b.CreateAdd(e.b.CreateMul(b, e.i64c(kpq)), e.b.CreateMul(row[0], e.i64c(v.p * v.q)));
        start = e.b.CreateAdd(start, e.b.CreateAdd(j0, e.i64c(u * e.width + v.pad * v.q + v.pad)));
        from.first = e.b.CreateSub(start, e.b.CreateAdd(e.b.CreateMul(row[1], e.i64c(v.q)), row[2]));
      }
      return from;
    };
    pack_panel(e, {v.k, v.r, v.s}, j0, cols, c.panel, c.first, panel, column_lanes, row_lanes);
  };
}

/// conv2d_backward_filter, summed over images kb: A = dy_kb [k, (p, q)];
/// B = im2col(x_kb)^T: row (p, q), column (c, r, s).
void set_backward_filter(const ConvOperands& c, GemmProblem& p) {
  p.a_at = [&c](llvm::Value*, llvm::Value* kb, llvm::Value* i, const std::vector<llvm::Value*>& k) {
    Emit& e = c.e;
    const Conv& v = c.v;
    llvm::Value* index = e.b.CreateAdd(e.b.CreateMul(kb, e.i64c(v.k * v.p * v.q)), e.b.CreateMul(i, e.i64c(v.p * v.q)));
    index = e.b.CreateAdd(index, e.b.CreateAdd(e.b.CreateMul(k[0], e.i64c(v.q)), k[1]));
    return c.load(c.second, index);
  };
  p.pack_b = [&c](llvm::Value*, llvm::Value* kb, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
    Emit& e = c.e;
    const Conv& v = c.v;
    const int64_t chw = v.c * v.h * v.w;
    if (c.contiguous()) {
      pack_filter_panel(e, v, c.first, e.b.CreateMul(kb, e.i64c(chw)), j0, cols, c.panel, panel);
      return;
    }
    IndexLanes ix{e};
    llvm::Value* image = ix.splat(e.b.CreateMul(kb, e.i64c(chw)));
    // Per column (c, r, s): whether it exists, its channel's offset in the image, r - pad, s - pad.
    auto column_lanes = [&](llvm::Value* col) -> std::vector<llvm::Value*> {
      llvm::Value* valid = e.b.CreateICmpULT(col, ix.c(v.c * v.r * v.s));
      llvm::Value* channel = ix.div(col, v.r * v.s);
      llvm::Value* tap = ix.rem(col, v.r * v.s);
      return {valid, ix.mul(channel, v.h * v.w), ix.add(ix.div(tap, v.s), ix.c(-v.pad)),
              ix.add(ix.rem(tap, v.s), ix.c(-v.pad))};
    };
    auto row_lanes = [&](int64_t, const std::vector<llvm::Value*>& col, const std::vector<llvm::Value*>& row) {
      llvm::Value* ih = ix.add(col[2], ix.mul(ix.splat(row[0]), v.stride));
      llvm::Value* iw = ix.add(col[3], ix.mul(ix.splat(row[1]), v.stride));
      llvm::Value* mask = ix.all(col[0], ix.all(ix.within(ih, v.h), ix.within(iw, v.w)));
      llvm::Value* index = ix.add(ix.add(image, col[1]), ix.add(ix.mul(ih, v.w), iw));
      return LaneSource{index, mask};
    };
    pack_panel(e, {v.p, v.q}, j0, cols, c.panel, c.first, panel, column_lanes, row_lanes);
  };
}

/// Builds the store of the forward or data-gradient product's output through the group's
/// elementwise epilogue, and hands it to `emit_body`, which emits the product. The epilogue
/// walks the output as [images, channels, positions] (`channels` x `positions` per image):
/// every operand it reads must then walk the two spatial axes as one. Where `streamed`, the
/// outputs are stored past the caches (StridedBuffer::streamed).
void emit_with_epilogue(Emit& e, const Graph& g, const FusionGroup& group, const KernelFunction& kf, int64_t channels,
                        int64_t positions, bool streamed, const std::function<void(const StoreOutput&)>& emit_body) {
  const Node& anchor = g.node(group.anchor);
  const size_t first_input = first_input_arg(group);
  llvm::Value* current = nullptr;
  const Shape& out_shape = anchor.shape;
  auto input = [&](NodeId id) -> ElementGen {
    if (id == group.anchor) return [&current](const ElementPos&) { return current; };
    const size_t k =
        static_cast<size_t>(std::find(group.inputs.begin(), group.inputs.end(), id) - group.inputs.begin());
    assert(k < group.inputs.size());
    const std::vector<int64_t> s = broadcast_strides(g.shape(id), out_shape);
    if (s[2] != s[3] * out_shape[3])
      throw Error(fmt::format("codegen: the epilogue of %{} reads %{} of shape {}, which does not walk {} row by row",
                              anchor.id, id, to_string(g.shape(id)), to_string(out_shape)));
    StridedBuffer buf{kf.args[first_input + k], {s[0], s[1], s[3]}};
    return [&e, buf](const ElementPos& pos) { return load_at(e, buf, pos); };
  };
  std::vector<ElementGen> epilogue;
  if (const NodeId norm = folded_norm(g, group); norm < 0) {
    epilogue = compose_group(e, g, group, input);
  } else {
    // A batchnorm_infer in the epilogue (fusion.h): the chain up to its x, then x normalized
    // with the factors of the channel being stored, then the normalization's own epilogue.
    const Node& n = g.node(norm);
    FusionGroup chain{n.operands[0], {}, {}, group.anchor, {}, {}, {}, {}};
    std::vector<NodeId> pending{n.operands[0]};
    while (!pending.empty()) {  // x and the group's nodes it is computed from
      const NodeId id = pending.back();
      pending.pop_back();
      if (!std::ranges::binary_search(group.nodes, id) || std::ranges::binary_search(chain.nodes, id)) continue;
      chain.nodes.insert(std::ranges::upper_bound(chain.nodes, id), id);
      for (NodeId o : g.node(id).operands) pending.push_back(o);
    }
    const ElementGen x = compose_group(e, g, chain, input)[0];
    const std::array<llvm::Value*, 4> params{input_arg(kf, group, n.operands[1]), input_arg(kf, group, n.operands[2]),
                                             input_arg(kf, group, n.operands[3]), input_arg(kf, group, n.operands[4])};
    const double eps = n.attrs.f("eps");
    const ElementGen normalized = [&e, x, params, eps](const ElementPos& pos) {
      return inference_normalize(e, x(pos), inference_norm_factors(e, params, eps, pos.coords[1]));
    };
    FusionGroup after = group;  // the rest, reading the normalization as a value from outside
    after.anchor = norm;
    std::erase_if(after.nodes, [&](NodeId id) { return std::ranges::binary_search(chain.nodes, id); });
    epilogue = compose_group(e, g, after, [&](NodeId id) { return id == norm ? normalized : input(id); });
  }
  const std::vector<int64_t> out_strides{channels * positions, positions, 1};
  emit_body([&](llvm::Value* b, llvm::Value* i, llvm::Value* j, llvm::Value* mask, llvm::Value* value) {
    ElementPos pos{{b, i, j}, nullptr, mask};
    pos.flat = e.b.CreateAdd(
        e.b.CreateAdd(e.b.CreateMul(b, e.i64c(channels * positions)), e.b.CreateMul(i, e.i64c(positions))), j);
    current = value;
    for (size_t o = 0; o < epilogue.size(); ++o)
      store_at(e, StridedBuffer{kf.args[o], out_strides, streamed}, pos, epilogue[o](pos));
  });
}

/// The filter gradient sums over the batch in its output, so its group holds it alone.
void check_no_epilogue(const Graph& g, const FusionGroup& group) {
  if (group.nodes.size() != 1)
    throw Error(fmt::format("internal error: codegen: %{} ({}) takes no epilogue but its group has {} nodes",
                            group.anchor, op_info(g.node(group.anchor).op).name, group.nodes.size()));
}

/// Emits the filter gradient's GEMM: it sums over the batch in its output, so C is stored as is.
void emit_without_epilogue(Emit& e, const Graph& g, const FusionGroup& group, const KernelFunction& kf,
                           GemmProblem& p) {
  check_no_epilogue(g, group);
  const StridedBuffer dw{kf.args[0], {p.sizes.n, 1}};
  p.store_c = [&e, dw](llvm::Value*, llvm::Value* i, llvm::Value* j, llvm::Value* mask, llvm::Value* value) {
    store_at(e, dw, ElementPos{{i, j}, nullptr, mask}, value);
  };
  emit_gemm(e, p, kf.begin, kf.end, kf.args.back());
}

/// The Winograd form of a filter-gradient product, in tiles of dy of `tile_size`.
WinogradFilterGrad winograd_filter_grad(const Graph& g, const Node& anchor, int tile_size) {
  const Conv v = conv_of(g, anchor);
  return {v.n, v.c, v.k, v.h, v.w, tile_size};
}

/// The Winograd form of a forward or data-gradient product (the data gradient is the
/// same-size convolution of dy with the flipped, transposed filters) in output tiles of
/// `tile_size`; no filter_index yet.
WinogradConv winograd_conv(const Graph& g, const Node& anchor, int tile_size) {
  const Conv v = conv_of(g, anchor);
  if (conv_product(anchor) == ConvProduct::forward) return {v.n, v.c, v.k, v.h, v.w, nullptr, tile_size};
  return {v.n, v.k, v.c, v.h, v.w, nullptr, tile_size};
}

/// Emits the forward or data-gradient product by Winograd F(m x m,3x3), m = `tile_size`,
/// storing through the group's epilogue.
void emit_by_winograd(Emit& e, const Graph& g, const FusionGroup& group, const KernelFunction& kf,
                      const ConvOperands& operands, int tile_size) {
  const Node& anchor = g.node(group.anchor);
  WinogradConv w = winograd_conv(g, anchor, tile_size);
  if (conv_product(anchor) == ConvProduct::forward)
    w.filter_index = [&](llvm::Value* o, llvm::Value* i, int64_t r, int64_t s) {
      return operands.filter_index(o, i, e.i64c(r), e.i64c(s));
    };
  else  // dx = dy correlated with w[k, c, 2 - r, 2 - s], from dy's channel k into dx's c
    w.filter_index = [&](llvm::Value* o, llvm::Value* i, int64_t r, int64_t s) {
      return operands.filter_index(i, o, e.i64c(operands.v.r - 1 - r), e.i64c(operands.v.s - 1 - s));
    };
  emit_with_epilogue(e, g, group, kf, w.out, w.h * w.w, false, [&](const StoreOutput& store) {
    emit_winograd(e, w, operands.first, operands.second, kf.begin, kf.end, kf.args.back(), store);
  });
}

}  // namespace

GemmLayout conv_layout(const Graph& g, const FusionGroup& group, unsigned width, int threads, ConvAlgo algo) {
  const Node& anchor = g.node(group.anchor);
  GemmLayout layout = gemm_layout(sizes_of(g, anchor), width, threads);
  const ConvChoice choice = choose_conv_algo(g, anchor, algo);
  if (!choice.winograd) return layout;
  if (conv_product(anchor) == ConvProduct::backward_filter) {
    const WinogradFilterLayout w =
        winograd_filter_layout(winograd_filter_grad(g, anchor, choice.tile_size), width, threads);
    layout.items = w.items;
    layout.scratch_floats = w.scratch_floats;
    return layout;
  }
  const WinogradLayout w = winograd_layout(winograd_conv(g, anchor, choice.tile_size), width, threads, true);
  layout.items = w.items;  // k_total stays the direct product's, the FLOPs its work is counted in
  layout.scratch_floats = w.scratch_floats;
  return layout;
}

void emit_conv_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group) {
  const Node& anchor = g.node(group.anchor);
  GemmProblem p;
  p.sizes = sizes_of(g, anchor);
  const size_t first_input = first_input_arg(group);
  const int num_args = static_cast<int>(first_input + group.inputs.size()) + 1;  // + the scratch panel
  KernelFunction kf = begin_kernel(e, name, num_args);
  const GemmLayout layout = gemm_layout(p.sizes, e.width, e.threads);
  const ConvOperands operands{e, conv_of(g, anchor), kf.args[first_input], kf.args[first_input + 1], layout.panel};
  p.c = kf.args[0];
  if (const ConvChoice choice = choose_conv_algo(g, anchor, e.conv_algo); choice.winograd) {
    if (conv_product(anchor) == ConvProduct::backward_filter) {
      check_no_epilogue(g, group);
      emit_winograd_filter(e, winograd_filter_grad(g, anchor, choice.tile_size), operands.first, operands.second,
                           kf.args[0], kf.begin, kf.end, kf.args.back());
    } else {
      emit_by_winograd(e, g, group, kf, operands, choice.tile_size);
    }
    end_kernel(e);
    return;
  }
  if (layout.b_in_place) p.b_in_place = operands.first;
  const bool streamed =
      conv_product(anchor) != ConvProduct::backward_filter && streams_output(p.sizes, e.width, e.threads);
  auto emit_direct = [&](const StoreOutput& store) {
    p.store_c = store;
    emit_gemm(e, p, kf.begin, kf.end, kf.args.back());
  };
  switch (conv_product(anchor)) {
    case ConvProduct::forward:
      set_forward(operands, p);
      emit_with_epilogue(e, g, group, kf, p.sizes.m, p.sizes.n, streamed, emit_direct);
      break;
    case ConvProduct::backward_data:
      set_backward_data(operands, p);
      emit_with_epilogue(e, g, group, kf, p.sizes.m, p.sizes.n, streamed, emit_direct);
      break;
    case ConvProduct::backward_filter:
      set_backward_filter(operands, p);
      emit_without_epilogue(e, g, group, kf, p);
      break;
  }
  if (streamed) store_fence(e);
  end_kernel(e);
}

}  // namespace dagger
