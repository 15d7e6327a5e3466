// reduce_sum, reduce_mean and reduce_max. The input's axes are merged into runs of kept and
// reduced axes (size-1 axes dropped). When the innermost run is reduced, an item is one output
// element: 16 partial results along that run, folded partial 0 first (codegen/partials.h).
// When it is kept, an item is a run of up to kColumnVectors vectors of output columns, each lane
// folding its column over the reduced positions in row-major order. Either way an output's value
// depends neither on the split nor on the vector width.
#include <llvm/IR/Constants.h>

#include <limits>

#include "dagger/codegen/emit_elementwise.h"
#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/partials.h"

namespace dagger {

namespace {

constexpr int64_t kColumnVectors = 4;

struct Run {
  int64_t size;
  bool reduced;
  int64_t stride = 0;  // in the input
};

struct ReduceDims {
  std::vector<Run> runs;
  Shape kept;           // sizes of the kept runs, in order
  int64_t reduced = 1;  // elements folded into each output
  bool inner_reduced() const { return runs.back().reduced; }
};

ReduceDims reduce_dims(const Graph& g, NodeId anchor) {
  const Node& n = g.node(anchor);
  const Shape& in = g.shape(n.operands[0]);
  std::vector<bool> reduced(in.size(), false);
  for (int64_t a : n.attrs.ints("axes")) reduced[static_cast<size_t>(a < 0 ? a + int64_t(in.size()) : a)] = true;
  ReduceDims d;
  for (size_t k = 0; k < in.size(); ++k) {
    if (in[k] == 1) continue;
    if (!d.runs.empty() && d.runs.back().reduced == reduced[k])
      d.runs.back().size *= in[k];
    else
      d.runs.push_back({in[k], reduced[k]});
  }
  if (d.runs.empty()) d.runs.push_back({1, false});
  int64_t stride = 1;
  for (size_t k = d.runs.size(); k-- > 0;) {
    d.runs[k].stride = stride;
    stride *= d.runs[k].size;
  }
  for (const Run& r : d.runs) {
    if (r.reduced)
      d.reduced *= r.size;
    else
      d.kept.push_back(r.size);
  }
  return d;
}

/// Calls body(offset) for every position of the reduced runs (except the innermost run when
/// `skip_inner`), in row-major order, with offset = base + the position's input offset.
void for_reduced(Emit& e, const ReduceDims& d, llvm::Value* base, bool skip_inner,
                 const std::function<void(llvm::Value*)>& body) {
  const size_t last = skip_inner ? d.runs.size() - 1 : d.runs.size();
  std::function<void(size_t, llvm::Value*)> run = [&](size_t k, llvm::Value* offset) {
    while (k < last && !d.runs[k].reduced) ++k;
    if (k >= last) return body(offset);
    emit_for(e, d.runs[k].size, 1,
             [&](llvm::Value* i) { run(k + 1, e.b.CreateAdd(offset, e.b.CreateMul(i, e.i64c(d.runs[k].stride)))); });
  };
  run(0, base);
}

/// The input offset of the kept coordinates `coords` (one per kept run, in order).
llvm::Value* kept_offset(Emit& e, const ReduceDims& d, const std::vector<llvm::Value*>& coords) {
  llvm::Value* offset = e.i64c(0);
  size_t c = 0;
  for (const Run& r : d.runs)
    if (!r.reduced && c < coords.size()) offset = e.b.CreateAdd(offset, e.b.CreateMul(coords[c++], e.i64c(r.stride)));
  return offset;
}

/// A reduce_sum over every axis but 1 of the value its elementwise nodes compute, which it also
/// stores (fusion.h's last rule). An item is a channel: image by image, each run of the
/// channel's inner positions is computed a vector at a time, stored, and added to the
/// channel's partials exactly as the reduction's own kernel adds what it loads (the inner run
/// of [batch (reduced), channels (kept), inner (reduced)] above), so the same bits.
void emit_sums_beside(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group, NodeId value) {
  const Shape& shape = g.shape(value);
  const int64_t batch = shape[0], channels = shape[1], inner = numel(shape) / (batch * channels);
  FusionGroup chain = group;  // the elementwise nodes, rooted at the value
  std::erase(chain.nodes, group.anchor);
  chain.root = value;
  chain.anchor = -1;
  chain.side_outputs.clear();
  share_in_place_buffers(kf, group);
  // What the group reads, by position (R's shape), by channel (pos.coords[0]) or once.
  const std::vector<ElementGen> outputs = compose_group(e, g, chain, [&](NodeId id) -> ElementGen {
    llvm::Value* buffer = input_arg(kf, group, id);
    const int64_t floats = numel(g.shape(id));
    return [&e, buffer, floats, channels, whole = numel(shape)](const ElementPos& pos) -> llvm::Value* {
      if (floats == whole) return load_vector(e, buffer, pos.flat, pos.mask, e.splat(0.0f));
      llvm::Value* at = floats == channels ? pos.coords[0] : e.i64c(0);
      return e.b.CreateVectorSplat(e.width, load_scalar(e, buffer, at));
    };
  });
  llvm::Value* stored = output_arg(kf, group, value);
  emit_range(e, kf.begin, kf.end, [&](llvm::Value* c) {
    Partials partials(e, e.f32, Fold::sum);
    emit_for(e, batch, 1, [&](llvm::Value* b) {
      llvm::Value* run = e.b.CreateMul(e.b.CreateAdd(e.b.CreateMul(b, e.i64c(channels)), c), e.i64c(inner));
      partials.add_run(inner, [&](llvm::Value* at, llvm::Value* mask) {
        const ElementPos pos{{c}, e.b.CreateAdd(run, at), mask};
        llvm::Value* v = outputs[0](pos);
        store_at(e, StridedBuffer{stored, {1}}, ElementPos{{pos.flat}, nullptr, mask}, v);
        return mask ? e.select(mask, v, e.splat(0.0f)) : v;  // masked-off lanes hold the sum's identity
      });
    });
    e.b.CreateAlignedStore(partials.result(), e.b.CreateInBoundsGEP(e.f32, kf.args[0], c), llvm::Align(4));
  });
}

}  // namespace

OpKernelLayout reduce_layout(const Graph& g, NodeId anchor, unsigned width) {
  const ReduceDims d = reduce_dims(g, anchor);
  if (d.inner_reduced()) return {numel(d.kept), double(d.reduced)};
  const int64_t columns = d.kept.back(), chunk = kColumnVectors * width;
  const int64_t chunks = (columns + chunk - 1) / chunk;
  return {numel(d.kept) / columns * chunks, double(d.reduced * std::min(chunk, columns))};
}

void emit_reduce_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) {
  if (const NodeId value = value_summed_beside(g, group); value >= 0) return emit_sums_beside(e, kf, g, group, value);
  const Node& n = g.node(group.anchor);
  const ReduceDims d = reduce_dims(g, group.anchor);
  llvm::Value* x = operand_arg(kf, g, group, 0);
  llvm::Value* out = kf.args[0];
  const Fold fold = n.op == Op::reduce_max ? Fold::max : Fold::sum;
  const float init = fold == Fold::max ? -std::numeric_limits<float>::infinity() : 0.0f;
  auto finish = [&](llvm::Value* v) {
    if (n.op != Op::reduce_mean) return v;
    llvm::Value* count = e.f32c(static_cast<float>(d.reduced));
    return e.b.CreateFDiv(v, v->getType()->isVectorTy() ? e.b.CreateVectorSplat(e.width, count) : count);
  };

  if (d.inner_reduced()) {
    const Run& inner = d.runs.back();
    emit_range(e, kf.begin, kf.end, [&](llvm::Value* o) {
      llvm::Value* base = kept_offset(e, d, unflatten(e, o, d.kept));
      Partials partials(e, e.f32, fold);
      for_reduced(e, d, base, true, [&](llvm::Value* offset) {
        partials.add_run(inner.size, [&](llvm::Value* at, llvm::Value* mask) {
          return load_vector(e, x, e.b.CreateAdd(offset, at), mask, e.splat(init));
        });
      });
      e.b.CreateAlignedStore(finish(partials.result()), e.b.CreateInBoundsGEP(e.f32, out, o), llvm::Align(4));
    });
    return;
  }

  const int64_t columns = d.kept.back(), chunk = kColumnVectors * e.width;
  const int64_t chunks = (columns + chunk - 1) / chunk;
  const Shape outer(d.kept.begin(), d.kept.end() - 1);
  emit_range(e, kf.begin, kf.end, [&](llvm::Value* item) {
    llvm::Value* row = e.b.CreateUDiv(item, e.i64c(chunks));
    llvm::Value* first = e.b.CreateMul(e.b.CreateURem(item, e.i64c(chunks)), e.i64c(chunk));
    std::vector<llvm::Value*> coords = unflatten(e, row, outer);
    coords.push_back(first);
    llvm::Value* base = kept_offset(e, d, coords);
    llvm::Value* out_base = e.b.CreateAdd(e.b.CreateMul(row, e.i64c(columns)), first);
    // `cols` output columns from `first`: the last chunk is shorter, so it has code of its own.
    auto columns_from = [&](int64_t cols) {
      std::vector<llvm::Value*> acc, masks;
      for (int64_t c = 0; c < cols; c += e.width) {
        acc.push_back(entry_slot(e, e.vf, e.splat(init)));
        masks.push_back(e.prefix_mask(static_cast<unsigned>(std::min<int64_t>(cols - c, e.width))));
      }
      for_reduced(e, d, base, false, [&](llvm::Value* offset) {
        for (size_t v = 0; v < acc.size(); ++v) {
          llvm::Value* at = e.b.CreateAdd(offset, e.i64c(int64_t(v) * e.width));
          llvm::Value* value = load_vector(e, x, at, masks[v], e.splat(init));
          e.b.CreateStore(fold_in(e, fold, e.b.CreateLoad(e.vf, acc[v]), value), acc[v]);
        }
      });
      for (size_t v = 0; v < acc.size(); ++v) {
        ElementPos pos{{e.b.CreateAdd(out_base, e.i64c(int64_t(v) * e.width))}, nullptr, masks[v]};
        store_at(e, StridedBuffer{out, {1}}, pos, finish(e.b.CreateLoad(e.vf, acc[v])));
      }
    };
    const int64_t last = columns - (chunks - 1) * chunk;
    if (last == chunk) {
      columns_from(chunk);
    } else if (chunks == 1) {
      columns_from(last);
    } else {
      llvm::Value* is_last = e.b.CreateICmpEQ(first, e.i64c((chunks - 1) * chunk));
      emit_if(e, e.b.CreateNot(is_last), [&] { columns_from(chunk); });
      emit_if(e, is_last, [&] { columns_from(last); });
    }
  });
}

}  // namespace dagger
