#include "codegen/emit_conv.h"

#include <fmt/format.h>
#include <llvm/IR/Constants.h>

#include <algorithm>
#include <cassert>

#include "codegen/emit_elementwise.h"
#include "codegen/iteration.h"

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

/// The sizes of a convolution: x [n, c, h, w], filter [k, c, r, s], y [n, k, p, q].
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

GemmSizes sizes_of(const Graph& g, const Node& node) {
  const Conv v = conv_of(g, node);
  switch (conv_product(node)) {
    case ConvProduct::forward:
      return {v.n, v.k, v.p * v.q, {v.c, v.r, v.s}, 1};
    case ConvProduct::backward_data:
      return {v.n, v.c, v.h * v.w, {v.k, v.r, v.s}, 1};
    case ConvProduct::backward_filter:
      break;
  }
  return {1, v.k, v.c * v.r * v.s, {v.p, v.q}, v.n};
}

/// Lane-wise helpers on <W x i32> vectors.
struct Lanes {
  Emit& e;
  llvm::Value* c(int64_t v) { return e.splat_i32(static_cast<uint32_t>(static_cast<int32_t>(v))); }
  llvm::Value* add(llvm::Value* a, llvm::Value* b) { return e.b.CreateAdd(a, b); }
  llvm::Value* mul(llvm::Value* a, int64_t b) { return b == 1 ? a : e.b.CreateMul(a, c(b)); }
  llvm::Value* div(llvm::Value* a, int64_t b) { return b == 1 ? a : e.b.CreateUDiv(a, c(b)); }
  llvm::Value* rem(llvm::Value* a, int64_t b) { return e.b.CreateURem(a, c(b)); }
  /// 0 <= a < bound, for signed lanes.
  llvm::Value* within(llvm::Value* a, int64_t bound) {
    return e.b.CreateAnd(e.b.CreateICmpSGE(a, c(0)), e.b.CreateICmpSLT(a, c(bound)));
  }
  llvm::Value* all(llvm::Value* a, llvm::Value* b) { return e.b.CreateAnd(a, b); }
  /// The i64 scalar `v` in every lane, as i32.
  llvm::Value* splat(llvm::Value* v) { return e.b.CreateVectorSplat(e.width, e.b.CreateTrunc(v, e.i32)); }
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
/// columns and transposed in registers, instead of W gathers across them.
void pack_filter_panel(Emit& e, const Conv& v, llvm::Value* x, llvm::Value* image, llvm::Value* j0, int64_t cols,
                       int64_t stride, llvm::Value* panel) {
  Lanes L{e};
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
    columns.push_back({start, L.add(L.splat(r), L.c(-v.pad)), L.add(L.splat(s), L.c(-v.pad))});
  }
  // A block of `count` rows from row j: W loads (one per column), one transpose, `count` stores.
  auto block = [&](llvm::Value* j, int64_t count) {
    llvm::Value* pos = L.add(L.splat(j), e.lane_ids());
    llvm::Value* in_rows = e.b.CreateICmpULT(e.lane_ids(), L.c(count));
    llvm::Value* oh = L.div(pos, v.q);
    llvm::Value* ow = L.rem(pos, v.q);
    for (int64_t g = 0; g < stride / w; ++g) {
      std::vector<llvm::Value*> vectors;
      for (int64_t l = g * w; l < (g + 1) * w; ++l) {
        if (l >= cols) {
          vectors.push_back(e.splat(0.0f));
          continue;
        }
        const Column& c = columns[static_cast<size_t>(l)];
        llvm::Value* mask = L.all(in_rows, L.all(L.within(L.add(oh, c.r), v.h), L.within(L.add(ow, c.s), v.w)));
        llvm::Value* at = e.b.CreateGEP(e.f32, x, e.b.CreateAdd(c.start, j));
        vectors.push_back(e.b.CreateMaskedLoad(e.vf, at, kFloatAlign, mask, llvm::Constant::getNullValue(e.vf)));
      }
      transpose(e, vectors);
      for (int64_t row = 0; row < std::min(count, w); ++row)
        store_panel(e, panel, e.b.CreateAdd(j, e.i64c(row)), stride, g, vectors[static_cast<size_t>(row)]);
    }
  };
  const int64_t full = rows / w;
  emit_for(e, full * w, w, [&](llvm::Value* j) { block(j, w); });
  if (rows % w) block(e.i64c(full * w), rows % w);
}

}  // namespace

GemmLayout conv_layout(const Graph& g, const FusionGroup& group, unsigned width, int threads) {
  return gemm_layout(sizes_of(g, g.node(group.anchor)), width, threads);
}

void emit_conv_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group) {
  const Node& anchor = g.node(group.anchor);
  const Conv v = conv_of(g, anchor);
  const GemmSizes sizes = sizes_of(g, anchor);
  const GemmLayout layout = gemm_layout(sizes, e.width, e.threads);
  const size_t first_input = first_input_arg(group);
  const int num_args = static_cast<int>(first_input + group.inputs.size()) + 1;  // + the scratch panel
  KernelFunction kf = begin_kernel(e, name, num_args);
  llvm::Value* first = kf.args[first_input];
  llvm::Value* second = kf.args[first_input + 1];
  llvm::Value* out = kf.args[0];
  Lanes L{e};
  const int64_t chw = v.c * v.h * v.w, kpq = v.k * v.p * v.q;

  GemmProblem p;
  p.sizes = sizes;
  auto load = [&](llvm::Value* base, llvm::Value* index) {
    return e.b.CreateAlignedLoad(e.f32, e.b.CreateInBoundsGEP(e.f32, base, index), kFloatAlign);
  };
  // The flat index of w[out, in, r, s] in the [k, c, r, s] filter.
  auto filter_index = [&](llvm::Value* out, llvm::Value* in, llvm::Value* r, llvm::Value* s) {
    llvm::Value* index = e.b.CreateAdd(e.b.CreateMul(out, e.i64c(v.c)), in);
    index = e.b.CreateAdd(e.b.CreateMul(index, e.i64c(v.r)), r);
    return e.b.CreateAdd(e.b.CreateMul(index, e.i64c(v.s)), s);
  };
  // A stride-1 convolution that keeps the width maps consecutive output columns to consecutive
  // input elements (and back), so its panels are filled by masked vector loads.
  const bool contiguous = v.stride == 1 && v.q == v.w;
  // Per vector of panel columns, lane values computed once per panel and reused by every row.
  std::vector<std::vector<llvm::Value*>> lane_cache;

  switch (conv_product(anchor)) {
    case ConvProduct::forward:
      // A = w [k, (c, r, s)]; B = im2col(x_b): row (c, r, s), column (p, q).
      p.a_at = [&](llvm::Value*, llvm::Value*, llvm::Value* i, const std::vector<llvm::Value*>& k) {
        return load(second, filter_index(i, k[0], k[1], k[2]));
      };
      p.pack_b = [&](llvm::Value* b, llvm::Value*, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
        const int64_t vectors = (cols + e.width - 1) / e.width;
        lane_cache.clear();
        for (int64_t u = 0; u < vectors; ++u) {
          llvm::Value* col = L.columns(j0, u * e.width);
          llvm::Value* valid = e.b.CreateICmpULT(col, L.c(v.p * v.q));
          llvm::Value* top = L.add(L.mul(L.div(col, v.q), v.stride), L.c(-v.pad));
          llvm::Value* left = L.add(L.mul(L.rem(col, v.q), v.stride), L.c(-v.pad));
          lane_cache.push_back({valid, top, left});
        }
        llvm::Value* image = L.splat(e.b.CreateMul(b, e.i64c(chw)));
        gather_panel(e, {v.c, v.r, v.s}, vectors, layout.panel, first, panel,
                     [&](int64_t u, const std::vector<llvm::Value*>& row) {
                       llvm::Value* ih = L.add(lane_cache[u][1], L.splat(row[1]));
                       llvm::Value* iw = L.add(lane_cache[u][2], L.splat(row[2]));
                       llvm::Value* mask = L.all(lane_cache[u][0], L.all(L.within(ih, v.h), L.within(iw, v.w)));
                       llvm::Value* index = L.add(image, L.mul(L.splat(row[0]), v.h * v.w));
                       index = L.add(index, L.add(L.mul(ih, v.w), iw));
                       LaneSource from{index, mask};
                       if (contiguous) {  // column j = p*w + q reads x[c, p + r - pad, q + s - pad]
                         llvm::Value* at = e.b.CreateAdd(e.b.CreateMul(b, e.i64c(chw)), e.b.CreateMul(row[0], e.i64c(v.h * v.w)));
                         at = e.b.CreateAdd(at, e.b.CreateAdd(j0, e.i64c(u * e.width - v.pad * v.w - v.pad)));
                         from.first = e.b.CreateAdd(at, e.b.CreateAdd(e.b.CreateMul(row[1], e.i64c(v.w)), row[2]));
                       }
                       return from;
                     });
      };
      break;
    case ConvProduct::backward_data:
      // A = w viewed as [c, (k, r, s)]; B: row (k, r, s), column (h, w) holds the dy element
      // whose window tap (r, s) covered input position (h, w), or 0.
      p.a_at = [&](llvm::Value*, llvm::Value*, llvm::Value* i, const std::vector<llvm::Value*>& k) {
        return load(second, filter_index(k[0], i, k[1], k[2]));
      };
      p.pack_b = [&](llvm::Value* b, llvm::Value*, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
        const int64_t vectors = (cols + e.width - 1) / e.width;
        lane_cache.clear();
        for (int64_t u = 0; u < vectors; ++u) {
          llvm::Value* col = L.columns(j0, u * e.width);
          llvm::Value* valid = e.b.CreateICmpULT(col, L.c(v.h * v.w));
          lane_cache.push_back({valid, L.add(L.div(col, v.w), L.c(v.pad)), L.add(L.rem(col, v.w), L.c(v.pad))});
        }
        llvm::Value* image = L.splat(e.b.CreateMul(b, e.i64c(kpq)));
        gather_panel(e, {v.k, v.r, v.s}, vectors, layout.panel, first, panel,
                     [&](int64_t u, const std::vector<llvm::Value*>& row) {
                       // (h + pad - r) must be a multiple of the stride, with quotient in [0, p).
                       llvm::Value* th = e.b.CreateSub(lane_cache[u][1], L.splat(row[1]));
                       llvm::Value* tw = e.b.CreateSub(lane_cache[u][2], L.splat(row[2]));
                       llvm::Value* mask = L.all(lane_cache[u][0], L.all(L.within(th, v.p * v.stride), L.within(tw, v.q * v.stride)));
                       if (v.stride > 1)
                         mask = L.all(mask, L.all(e.b.CreateICmpEQ(L.rem(th, v.stride), L.c(0)),
                                                  e.b.CreateICmpEQ(L.rem(tw, v.stride), L.c(0))));
                       llvm::Value* oh = L.div(th, v.stride);
                       llvm::Value* ow = L.div(tw, v.stride);
                       llvm::Value* index = L.add(image, L.mul(L.splat(row[0]), v.p * v.q));
                       index = L.add(index, L.add(L.mul(oh, v.q), ow));
                       LaneSource from{index, mask};
                       if (contiguous) {  // column j = h*w + w' reads dy[k, h + pad - r, w' + pad - s]
                         llvm::Value* at = e.b.CreateAdd(e.b.CreateMul(b, e.i64c(kpq)), e.b.CreateMul(row[0], e.i64c(v.p * v.q)));
                         at = e.b.CreateAdd(at, e.b.CreateAdd(j0, e.i64c(u * e.width + v.pad * v.q + v.pad)));
                         from.first = e.b.CreateSub(at, e.b.CreateAdd(e.b.CreateMul(row[1], e.i64c(v.q)), row[2]));
                       }
                       return from;
                     });
      };
      break;
    case ConvProduct::backward_filter:
      // Summed over images kb: A = dy_kb [k, (p, q)]; B = im2col(x_kb)^T: row (p, q), column (c, r, s).
      p.a_at = [&](llvm::Value*, llvm::Value* kb, llvm::Value* i, const std::vector<llvm::Value*>& k) {
        llvm::Value* index = e.b.CreateAdd(e.b.CreateMul(kb, e.i64c(kpq)), e.b.CreateMul(i, e.i64c(v.p * v.q)));
        index = e.b.CreateAdd(index, e.b.CreateAdd(e.b.CreateMul(k[0], e.i64c(v.q)), k[1]));
        return load(second, index);
      };
      p.pack_b = [&](llvm::Value*, llvm::Value* kb, llvm::Value* j0, int64_t cols, llvm::Value* panel) {
        if (contiguous) {
          pack_filter_panel(e, v, first, e.b.CreateMul(kb, e.i64c(chw)), j0, cols, layout.panel, panel);
          return;
        }
        const int64_t vectors = (cols + e.width - 1) / e.width;
        lane_cache.clear();
        for (int64_t u = 0; u < vectors; ++u) {
          llvm::Value* col = L.columns(j0, u * e.width);
          llvm::Value* valid = e.b.CreateICmpULT(col, L.c(v.c * v.r * v.s));
          llvm::Value* channel = L.div(col, v.r * v.s);
          llvm::Value* tap = L.rem(col, v.r * v.s);
          lane_cache.push_back({valid, L.mul(channel, v.h * v.w), L.add(L.div(tap, v.s), L.c(-v.pad)),
                                L.add(L.rem(tap, v.s), L.c(-v.pad))});
        }
        llvm::Value* image = L.splat(e.b.CreateMul(kb, e.i64c(chw)));
        gather_panel(e, {v.p, v.q}, vectors, layout.panel, first, panel,
                     [&](int64_t u, const std::vector<llvm::Value*>& row) {
                       llvm::Value* ih = L.add(lane_cache[u][2], L.mul(L.splat(row[0]), v.stride));
                       llvm::Value* iw = L.add(lane_cache[u][3], L.mul(L.splat(row[1]), v.stride));
                       llvm::Value* mask = L.all(lane_cache[u][0], L.all(L.within(ih, v.h), L.within(iw, v.w)));
                       llvm::Value* index = L.add(L.add(image, lane_cache[u][1]), L.add(L.mul(ih, v.w), iw));
                       return LaneSource{index, mask};
                     });
      };
      break;
  }

  const StridedBuffer c{out, {sizes.m * sizes.n, sizes.n, 1}};
  p.c = out;
  if (anchor.op == Op::conv2d_backward_filter) {
    assert(group.nodes.size() == 1);
    const StridedBuffer dw{out, {sizes.n, 1}};
    p.store_c = [&](llvm::Value*, llvm::Value* i, llvm::Value* j, llvm::Value* mask, llvm::Value* value) {
      store_at(e, dw, ElementPos{{i, j}, nullptr, mask}, value);
    };
    emit_gemm(e, p, kf.begin, kf.end, kf.args.back());
    end_kernel(e);
    return;
  }

  // The epilogue walks the output as [images, channels, positions]: every operand it reads
  // must then walk the two spatial axes as one.
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
  const std::vector<ElementGen> epilogue = compose_group(e, g, group, input);
  p.store_c = [&](llvm::Value* b, llvm::Value* i, llvm::Value* j, llvm::Value* mask, llvm::Value* value) {
    ElementPos pos{{b, i, j}, nullptr, mask};
    pos.flat = e.b.CreateAdd(e.b.CreateAdd(e.b.CreateMul(b, e.i64c(sizes.m * sizes.n)), e.b.CreateMul(i, e.i64c(sizes.n))), j);
    current = value;
    for (size_t o = 0; o < epilogue.size(); ++o)
      store_at(e, StridedBuffer{kf.args[o], c.strides}, pos, epilogue[o](pos));
  };
  emit_gemm(e, p, kf.begin, kf.end, kf.args.back());
  end_kernel(e);
}

}  // namespace dagger
