// Max pooling and its gradient, one (image, channel) plane per item. Vectors run along the
// output row: lane l of a vector covers window q + l, whose elements are the stride apart in x
// (a contiguous load for stride 1; for stride 2 two contiguous loads whose even elements a
// shuffle picks; a gather otherwise). A kernel with a prologue (a normalization no kernel
// stores, codegen/fusion.h) loads the normalization's x instead and computes each vector of
// the pooled value from it: the factors once per plane, then per vector as the norm kernel does.
#include <llvm/IR/Constants.h>

#include <algorithm>
#include <optional>

#include "dagger/codegen/emit_ops.h"

namespace dagger {

namespace {

struct PoolDims {
  int64_t images, channels, h, w, oh, ow, window, stride;
  int64_t planes() const { return images * channels; }
};

PoolDims pool_dims(const Graph& g, NodeId anchor) {
  const Node& n = g.node(anchor);
  const Shape& x = g.shape(n.operands[0]);
  const int64_t window = n.attrs.i("window"), stride = n.attrs.i("stride");
  return {x[0], x[1], x[2], x[3], (x[2] - window) / stride + 1, (x[3] - window) / stride + 1, window, stride};
}

/// x[at + 2l] for the `active` first lanes l (others 0): the 2 * (active - 1) + 1 floats from
/// `at` in two vector loads, masked to exactly those, then every other element picked out.
llvm::Value* load_every_other(Emit& e, llvm::Value* x, llvm::Value* at, unsigned active) {
  const int64_t span = 2 * (static_cast<int64_t>(active) - 1) + 1;
  llvm::Value* zero = llvm::Constant::getNullValue(e.vf);
  llvm::Value* halves[2];
  for (int64_t k = 0; k < 2; ++k) {
    const int64_t count = std::clamp<int64_t>(span - k * e.width, 0, e.width);
    halves[k] = count == 0 ? zero
                           : load_vector(e, x, e.b.CreateAdd(at, e.i64c(k * e.width)),
                                         count == e.width ? nullptr : e.prefix_mask(static_cast<unsigned>(count)), zero);
  }
  std::vector<int> even(e.width);
  for (unsigned l = 0; l < e.width; ++l) even[l] = static_cast<int>(2 * l);
  return e.b.CreateShuffleVector(halves[0], halves[1], even);
}

/// Where the windows of output row r, columns q, q + 1, ... (one per lane) start in the plane.
struct WindowOrigins {
  llvm::Value* origin;       // lane 0's (i64)
  llvm::Value* lanes;        // each lane's distance from it (i32 lanes)
  llvm::Value* lane_origin;  // each lane's (i32 lanes)
};

WindowOrigins window_origins(Emit& e, const PoolDims& d, llvm::Value* r, llvm::Value* q) {
  llvm::Value* origin = e.b.CreateAdd(e.b.CreateMul(r, e.i64c(d.stride * d.w)), e.b.CreateMul(q, e.i64c(d.stride)));
  llvm::Value* lanes = e.b.CreateMul(e.lane_ids(), e.splat_i32(static_cast<uint32_t>(d.stride)));
  return {origin, lanes, e.b.CreateAdd(e.lanes_of(origin), lanes)};
}

/// The first maximum, in row-major window order, of the windows of output row `r` starting
/// at column q (one per lane): its value and its offset in the plane (i32 lanes). With a
/// prologue, x holds its operand and each loaded vector goes through it first.
std::pair<llvm::Value*, llvm::Value*> window_max(Emit& e, const PoolDims& d, llvm::Value* x, llvm::Value* plane,
                                                 llvm::Value* r, llvm::Value* q, llvm::Value* mask,
                                                 NormPrologue* prologue) {
  const auto [origin, lanes, lane_origin] = window_origins(e, d, r, q);
  llvm::Value* base = e.b.CreateAdd(plane, origin);
  llvm::Value *best = nullptr, *best_at = nullptr;
  for (int64_t i = 0; i < d.window; ++i)
    for (int64_t j = 0; j < d.window; ++j) {
      llvm::Value* at = e.b.CreateAdd(base, e.i64c(i * d.w + j));
      llvm::Value* v = d.stride == 1   ? load_vector(e, x, at, mask, llvm::Constant::getNullValue(e.vf))
                       : d.stride == 2 ? load_every_other(e, x, at, active_lanes(e, mask))
                                       : gather_at(e, x, at, lanes, mask);
      if (prologue) v = prologue->apply(v);
      llvm::Value* v_at = e.b.CreateAdd(lane_origin, e.splat_i32(static_cast<uint32_t>(i * d.w + j)));
      if (!best) {
        best = v;
        best_at = v_at;
        continue;
      }
      llvm::Value* larger = e.b.CreateFCmpOGT(v, best);  // strict: a tie keeps the earlier position
      best = e.b.CreateSelect(larger, v, best);
      best_at = e.b.CreateSelect(larger, v_at, best_at);
    }
  return {best, best_at};
}

/// The pooling kernels walk their planes in memory order, and with the hardware prefetchers
/// alone they waited on x's loads (`perf annotate` with DAGGER_PERF=jitdump,
/// docs/performance.md) and on the stores of their output, whose lines must be read before
/// they are written. So they fetch into L1 what is coming: x for reading, the output for
/// writing. Planes of kMinRowPrefetchPlane floats or more a row at a time: as output row r is
/// computed, the part of the next plane that row r touches (of x the rows [r * stride,
/// (r + 1) * stride), the gradient's dx the same rows, the forward's output row r). Smaller
/// planes (a 7x7 map's 49 floats, three or four lines) whole, kSmallPlanesAhead planes ahead,
/// as each plane starts: row by row one plane ahead, the 7x7 gradient ran 5-14% slower.
constexpr int64_t kMinRowPrefetchPlane = 128;
constexpr int64_t kSmallPlanesAhead = 4;

/// The `floats` floats from offset `at` of the plane `ahead` planes after `plane` in a buffer
/// of `planes` planes of `plane_floats` each (nothing past the last).
void prefetch_plane_part(Emit& e, llvm::Value* buffer, llvm::Value* plane, int64_t ahead, int64_t plane_floats,
                         int64_t planes, llvm::Value* at, int64_t floats, bool for_write) {
  llvm::Value* next = e.b.CreateAdd(plane, e.i64c(ahead * plane_floats));
  emit_if(e, e.b.CreateICmpULT(next, e.i64c(planes * plane_floats)),
          [&] { prefetch_floats(e, buffer, e.b.CreateAdd(next, at), floats, for_write); });
}

/// A pooling kernel's prefetches: of x, and of `out` (the gradient's dx, or the forward's
/// pooled output), each given the offset of the plane being worked on.
struct PoolPrefetch {
  Emit& e;
  const PoolDims& d;
  llvm::Value *x, *out;
  bool gradient;  // out is dx, shaped like x; else the pooled output

  bool small() const { return d.h * d.w < kMinRowPrefetchPlane; }
  int64_t out_plane_floats() const { return gradient ? d.h * d.w : d.oh * d.ow; }
  /// As a plane starts: small planes, kSmallPlanesAhead on.
  void plane_start(llvm::Value* plane, llvm::Value* out_plane) {
    if (!small()) return;
    prefetch_plane_part(e, x, plane, kSmallPlanesAhead, d.h * d.w, d.planes(), e.i64c(0), d.h * d.w, false);
    prefetch_plane_part(e, out, out_plane, kSmallPlanesAhead, out_plane_floats(), d.planes(), e.i64c(0),
                        out_plane_floats(), true);
  }
  /// As output row r is computed: larger planes, the next plane's part that row touches.
  void row(llvm::Value* plane, llvm::Value* out_plane, llvm::Value* r) {
    if (small()) return;
    llvm::Value* rows = e.b.CreateMul(r, e.i64c(d.stride * d.w));
    prefetch_plane_part(e, x, plane, 1, d.h * d.w, d.planes(), rows, d.stride * d.w, false);
    if (gradient)
      prefetch_plane_part(e, out, out_plane, 1, d.h * d.w, d.planes(), rows, d.stride * d.w, true);
    else
      prefetch_plane_part(e, out, out_plane, 1, d.oh * d.ow, d.planes(), e.b.CreateMul(r, e.i64c(d.ow)), d.ow, true);
  }
};

/// maxpool2d: each window's maximum, stored through the epilogue with vectors along the
/// output row.
void emit_pool_forward(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group, const PoolDims& d,
                       NormPrologue* prologue) {
  llvm::Value* x = prologue ? prologue->x() : operand_arg(kf, g, group, 0);
  Epilogue ep(e, g, group, kf, 3);
  // The root's output: pooled planes, the epilogue being elementwise.
  PoolPrefetch prefetch{e, d, x, kf.args[0], false};
  emit_range(e, kf.begin, kf.end, [&](llvm::Value* p) {
    llvm::Value* image = e.b.CreateUDiv(p, e.i64c(d.channels));
    llvm::Value* channel = e.b.CreateURem(p, e.i64c(d.channels));
    llvm::Value* plane = e.b.CreateMul(p, e.i64c(d.h * d.w));
    llvm::Value* out_plane = e.b.CreateMul(p, e.i64c(d.oh * d.ow));
    if (prologue) prologue->enter_channel(channel);
    prefetch.plane_start(plane, out_plane);
    emit_for(e, d.oh, 1, [&](llvm::Value* r) {
      prefetch.row(plane, out_plane, r);
      ep.for_each({image, channel, r}, [&](const ElementPos& pos) {
        return window_max(e, d, x, plane, r, pos.coords[3], pos.mask, prologue).first;
      });
    });
  });
}

/// One plane of maxpool2d_backward: x, dy and dx with the plane's offsets in x (and dx) and dy.
struct PoolGradPlane {
  Emit& e;
  const PoolDims& d;
  llvm::Value *x, *dy, *dx;
  llvm::Value *plane, *dy_plane;
  NormPrologue* prologue;
  bool gated = false;  // relu's gradient of x applied at each window's maximum (relu_gated)

  /// dy at output row r, the output columns of `cols` (one per lane).
  llvm::Value* dy_vector(llvm::Value* r, const ElementPos& cols) {
    llvm::Value* offset = e.b.CreateAdd(dy_plane, e.b.CreateAdd(e.b.CreateMul(r, e.i64c(d.ow)), cols.coords[0]));
    return load_vector(e, dy, offset, cols.mask, llvm::Constant::getNullValue(e.vf));
  }

  /// 2x2 windows of stride 2 tiling the plane: every element belongs to one window, so each
  /// window row is written once, dy where the maximum is and 0 elsewhere, its two columns
  /// interleaved into contiguous vectors. `gated`: dy only where that
  /// maximum is also > 0.
  void write_tiled_windows(llvm::Value* r, const ElementPos& cols) {
    llvm::Value* q = cols.coords[0];
    const auto [best, best_at] = window_max(e, d, x, plane, r, q, cols.mask, prologue);
    llvm::Value* grad = dy_vector(r, cols);
    llvm::Value* zero = llvm::Constant::getNullValue(e.vf);
    llvm::Value* positive = gated ? e.b.CreateFCmpOGT(best, zero) : nullptr;
    const WindowOrigins w = window_origins(e, d, r, q);
    const unsigned active = active_lanes(e, cols.mask);
    std::vector<int> low(e.width), high(e.width);  // interleave (a0 b0 a1 b1 ...) over two vectors
    for (unsigned l = 0; l < e.width; ++l) {
      low[l] = static_cast<int>(l / 2 + (l % 2) * e.width);
      high[l] = static_cast<int>((l + e.width) / 2 + (l % 2) * e.width);
    }
    for (int64_t i = 0; i < 2; ++i) {
      llvm::Value* columns[2];
      for (int64_t j = 0; j < 2; ++j) {
        llvm::Value* here = e.b.CreateAdd(w.lane_origin, e.splat_i32(static_cast<uint32_t>(i * d.w + j)));
        llvm::Value* at_max = e.b.CreateICmpEQ(best_at, here);
        if (positive) at_max = e.b.CreateAnd(at_max, positive);
        // + 0 as the zero-filled sum would: a -0 gradient lands as +0.
        columns[j] = e.b.CreateFAdd(e.b.CreateSelect(at_max, grad, zero), zero);
      }
      llvm::Value* row = e.b.CreateAdd(plane, e.b.CreateAdd(w.origin, e.i64c(i * d.w)));
      llvm::Value* halves[2] = {e.b.CreateShuffleVector(columns[0], columns[1], low),
                                e.b.CreateShuffleVector(columns[0], columns[1], high)};
      for (int64_t k = 0; k < 2; ++k) {
        const int64_t count = std::clamp<int64_t>(2 * int64_t(active) - k * e.width, 0, e.width);
        if (count == 0) continue;
        store_at(e, StridedBuffer{dx, {1}},
                 ElementPos{{e.b.CreateAdd(row, e.i64c(k * e.width))},
                            nullptr,
                            count == e.width ? nullptr : e.prefix_mask(static_cast<unsigned>(count))},
                 halves[k]);
      }
    }
  }

  /// Any other geometry: the plane is zeroed first (zero_plane), then each window adds its dy
  /// at its maximum, lane by lane in row-major window order (overlapping windows add in the
  /// interpreter's order).
  void zero_plane() {
    emit_vector_nest(e, {d.h * d.w}, [&](const ElementPos& element) {
      ElementPos pos = element;
      pos.coords[0] = e.b.CreateAdd(plane, element.coords[0]);
      store_at(e, StridedBuffer{dx, {1}}, pos, e.splat(0.0f));
    });
  }
  void add_window_grads(llvm::Value* r, const ElementPos& cols) {
    const llvm::Align align(4);
    llvm::Value* best_at = window_max(e, d, x, plane, r, cols.coords[0], cols.mask, prologue).second;
    llvm::Value* grad = dy_vector(r, cols);
    for (unsigned l = 0; l < active_lanes(e, cols.mask); ++l) {
      llvm::Value* offset = e.b.CreateAdd(plane, e.b.CreateZExt(e.b.CreateExtractElement(best_at, uint64_t(l)), e.i64));
      llvm::Value* slot = e.b.CreateInBoundsGEP(e.f32, dx, offset);
      llvm::Value* sum =
          e.b.CreateFAdd(e.b.CreateAlignedLoad(e.f32, slot, align), e.b.CreateExtractElement(grad, uint64_t(l)));
      e.b.CreateAlignedStore(sum, slot, align);
    }
  }
};

/// Whether the group's epilogue is relu's gradient of the pooled x alone, relu_grad(x, dx):
/// dx where x > 0, else 0. Where windows tile the plane, dx is 0 but at each window's maximum,
/// whose x the window holds: there the epilogue is dy where that x > 0, and 0 elsewhere, the
/// same bits (relu_grad selects +0), with no pass over the plane after it is written.
bool relu_gated(const Graph& g, const FusionGroup& group) {
  const Node& root = g.node(group.root);
  return group.nodes.size() == 2 && root.op == Op::relu_grad && root.operands[1] == group.anchor &&
         root.operands[0] == g.node(group.anchor).operands[0] && group.side_outputs.empty();
}

/// maxpool2d_backward: each plane's gradient is written into dx, then the epilogue, if any,
/// is applied over the plane in place (or in the writes, relu_gated). The planes are the
/// items, or with `sums` (a batchnorm_grad_gamma summed beside, see emit_grad_gamma_beside:
/// `group` is then the pooling's own part and `kf` its view of the arguments) the channels,
/// each plane written where the sums read it.
void emit_pool_backward(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group, const PoolDims& d,
                        NormPrologue* prologue, const std::function<void(const PlaneWriter&)>& sums) {
  llvm::Value* x = prologue ? prologue->x() : operand_arg(kf, g, group, 0);
  ElementGen recomputed;
  if (prologue) recomputed = [prologue](const ElementPos& pos) { return prologue->at(pos.flat, pos.mask); };
  Epilogue ep(e, g, group, kf, 2, recomputed);
  llvm::Value* dy = operand_arg(kf, g, group, 1);
  llvm::Value* dx = kf.args[0];
  const bool tiled = pool_windows_tile(g, group.anchor);
  const bool gated = tiled && relu_gated(g, group);
  PoolPrefetch prefetch{e, d, x, dx, true};
  const PlaneWriter write_plane = [&](llvm::Value* image, llvm::Value* channel) {
    llvm::Value* p = e.b.CreateAdd(e.b.CreateMul(image, e.i64c(d.channels)), channel);
    PoolGradPlane pg{e, d, x, dy, dx, e.b.CreateMul(p, e.i64c(d.h * d.w)), nullptr, prologue, gated};
    pg.dy_plane = e.b.CreateMul(p, e.i64c(d.oh * d.ow));
    if (prologue) prologue->enter_channel(channel);
    prefetch.plane_start(pg.plane, pg.plane);
    if (!tiled) pg.zero_plane();
    emit_for(e, d.oh, 1, [&](llvm::Value* r) {
      prefetch.row(pg.plane, pg.plane, r);
      emit_vector_nest(e, {d.ow}, [&](const ElementPos& cols) {
        if (tiled)
          pg.write_tiled_windows(r, cols);
        else
          pg.add_window_grads(r, cols);
      });
    });
    if (group.root != group.anchor && !gated) {
      ep.for_each({image, channel}, [&](const ElementPos& pos) {
        return load_vector(e, dx, pos.flat, pos.mask, llvm::Constant::getNullValue(e.vf));
      });
    }
  };
  if (sums) {
    sums(write_plane);
    return;
  }
  emit_range(e, kf.begin, kf.end, [&](llvm::Value* p) {
    write_plane(e.b.CreateUDiv(p, e.i64c(d.channels)), e.b.CreateURem(p, e.i64c(d.channels)));
  });
}

}  // namespace

OpKernelLayout pool_layout(const Graph& g, const FusionGroup& group) {
  const PoolDims d = pool_dims(g, group.anchor);
  if (summed_dy(g, group) >= 0)  // a channel: its planes, and the sums' second read of x and dx
    return {d.channels, double(d.images * (3 * d.h * d.w + d.oh * d.ow))};
  return {d.planes(), double(d.h * d.w + d.oh * d.ow)};
}

void emit_pool_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) {
  const PoolDims d = pool_dims(g, group.anchor);
  if (const NodeId dy = summed_dy(g, group); dy >= 0) {
    // The pooling gradient's own group: dy of the sums is its root, stored at that side
    // output's argument; its inputs follow as in the whole kernel's arguments.
    FusionGroup own = group;
    own.root = dy;
    std::erase_if(own.nodes, [&](NodeId id) { return id > dy; });
    own.side_outputs.clear();
    KernelFunction own_kf = kf;
    own_kf.args = {output_arg(kf, group, dy)};
    own_kf.args.insert(own_kf.args.end(), kf.args.begin() + static_cast<std::ptrdiff_t>(first_input_arg(group)),
                       kf.args.end());
    std::optional<NormPrologue> prologue;
    if (!own.prologue.empty()) prologue.emplace(e, own_kf, g, own);
    emit_pool_backward(e, own_kf, g, own, d, prologue ? &*prologue : nullptr, [&](const PlaneWriter& write_plane) {
      emit_grad_gamma_beside(e, kf, g, group, write_plane);
    });
    return;
  }
  std::optional<NormPrologue> prologue;
  if (!group.prologue.empty()) prologue.emplace(e, kf, g, group);
  NormPrologue* recompute = prologue ? &*prologue : nullptr;
  if (g.node(group.anchor).op == Op::maxpool2d)
    emit_pool_forward(e, kf, g, group, d, recompute);
  else
    emit_pool_backward(e, kf, g, group, d, recompute, nullptr);
}

}  // namespace dagger
