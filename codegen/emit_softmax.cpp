// Softmax and the cross-entropy head over the last axis, one row per item: the row's maximum,
// then the sum of exp(x - max) in 16 partial sums (codegen/partials.h), then the output.
// Labels are class ids held as floats; a row whose label is not one gets NaN (a kernel
// cannot throw; the interpreter reports the error).
#include <llvm/IR/Constants.h>

#include <limits>

#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/partials.h"
#include "dagger/codegen/vector_math.h"

namespace dagger {

namespace {

struct Row {
  llvm::Value* top;      // float: the row's maximum
  llvm::Value* inv_sum;  // float: 1 / sum(exp(x - top))
  llvm::Value* sum;      // float
};

/// The maximum and exponential sum of `k` floats at x[base ..].
Row row_stats(Emit& e, llvm::Value* x, llvm::Value* base, int64_t k) {
  const float inf = std::numeric_limits<float>::infinity();
  Partials tops(e, e.f32, Fold::max);
  tops.add_run(k, [&](llvm::Value* at, llvm::Value* mask) {
    return load_vector(e, x, e.b.CreateAdd(base, at), mask, e.splat(-inf));
  });
  llvm::Value* top = tops.result();
  llvm::Value* top_v = e.b.CreateVectorSplat(e.width, top);
  Partials sums(e, e.f32, Fold::sum);
  sums.add_run(k, [&](llvm::Value* at, llvm::Value* mask) {
    llvm::Value* v = load_vector(e, x, e.b.CreateAdd(base, at), mask, e.splat(0.0f));
    llvm::Value* ex = emit_exp(e, e.b.CreateFSub(v, top_v));
    return mask ? e.b.CreateSelect(mask, ex, e.splat(0.0f)) : ex;
  });
  llvm::Value* sum = sums.result();
  return {top, e.b.CreateFDiv(e.f32c(1.0f), sum), sum};
}

/// softmax(x) at a vector of the row starting at x[base + j].
llvm::Value* probability(Emit& e, const Row& row, llvm::Value* x, llvm::Value* at, llvm::Value* mask) {
  llvm::Value* v = load_vector(e, x, at, mask, llvm::Constant::getNullValue(e.vf));
  llvm::Value* ex = emit_exp(e, e.b.CreateFSub(v, e.b.CreateVectorSplat(e.width, row.top)));
  return e.b.CreateFMul(ex, e.b.CreateVectorSplat(e.width, row.inv_sum));
}

/// The class id a float label holds, and whether it is one in [0, classes).
std::pair<llvm::Value*, llvm::Value*> class_of(Emit& e, llvm::Value* label, int64_t classes) {
  llvm::Value* whole = e.b.CreateFCmpOEQ(label, e.intrinsic(llvm::Intrinsic::floor, {label}));
  llvm::Value* in_range = e.b.CreateAnd(e.b.CreateFCmpOGE(label, e.f32c(0.0f)),
                                        e.b.CreateFCmpOLT(label, e.f32c(static_cast<float>(classes))));
  llvm::Value* valid = e.b.CreateAnd(whole, in_range);
  llvm::Value* id = e.b.CreateSelect(valid, e.b.CreateFPToSI(label, e.i64), e.i64c(0));
  return {id, valid};
}

}  // namespace

OpKernelLayout softmax_layout(const Graph& g, NodeId anchor) {
  const Shape& x = g.shape(g.node(anchor).operands[0]);
  const int64_t k = x.back(), rows = numel(x) / std::max<int64_t>(k, 1);
  if (g.node(anchor).op == Op::softmax_xent) return {1, 3.0 * double(numel(x))};
  return {rows, 3.0 * double(k)};
}

void emit_softmax_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) {
  const Node& n = g.node(group.anchor);
  const Shape& shape = g.shape(n.operands[0]);
  const int64_t k = shape.back(), rows = numel(shape) / std::max<int64_t>(k, 1);
  llvm::Value* x = operand_arg(kf, g, group, 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const double smoothing = n.attrs.f_or("smoothing", 0);  // label smoothing; 0 emits today's code

  if (n.op == Op::softmax_xent) {  // one item: the mean over rows of logsumexp(row) - row[label], in double
    llvm::Type* f64 = llvm::Type::getDoubleTy(e.ctx);
    llvm::Value* labels = operand_arg(kf, g, group, 1);
    emit_range(e, kf.begin, kf.end, [&](llvm::Value*) {
      llvm::Value* total = entry_slot(e, f64, llvm::ConstantFP::get(f64, 0.0));
      emit_for(e, rows, 1, [&](llvm::Value* r) {
        llvm::Value* base = e.b.CreateMul(r, e.i64c(k));
        const Row row = row_stats(e, x, base, k);
        const auto [id, valid] = class_of(e, load_scalar(e, labels, r), k);
        llvm::Value* lse = e.b.CreateFAdd(e.b.CreateFPExt(row.top, f64),
                                          e.intrinsic(llvm::Intrinsic::log, {e.b.CreateFPExt(row.sum, f64)}));
        llvm::Value* loss = e.b.CreateFSub(lse, e.b.CreateFPExt(load_scalar(e, x, e.b.CreateAdd(base, id)), f64));
        if (smoothing != 0) {  // (1-E) loss + E (lse - mean(row)), the interpreter's double steps
          llvm::Value* sum = entry_slot(e, f64, llvm::ConstantFP::get(f64, 0.0));
          e.b.CreateStore(llvm::ConstantFP::get(f64, 0.0), sum);
          emit_for(e, k, 1, [&](llvm::Value* j) {
            llvm::Value* v = e.b.CreateFPExt(load_scalar(e, x, e.b.CreateAdd(base, j)), f64);
            e.b.CreateStore(e.b.CreateFAdd(e.b.CreateLoad(f64, sum), v), sum);
          });
          llvm::Value* mean = e.b.CreateFDiv(e.b.CreateLoad(f64, sum), llvm::ConstantFP::get(f64, double(k)));
          loss = e.b.CreateFAdd(e.b.CreateFMul(llvm::ConstantFP::get(f64, 1 - smoothing), loss),
                                e.b.CreateFMul(llvm::ConstantFP::get(f64, smoothing), e.b.CreateFSub(lse, mean)));
        }
        loss = e.b.CreateSelect(valid, loss, llvm::ConstantFP::getNaN(f64));
        e.b.CreateStore(e.b.CreateFAdd(e.b.CreateLoad(f64, total), loss), total);
      });
      llvm::Value* mean = e.b.CreateFDiv(e.b.CreateLoad(f64, total), llvm::ConstantFP::get(f64, double(rows)));
      e.b.CreateAlignedStore(e.b.CreateFPTrunc(mean, e.f32), kf.args[0], llvm::Align(4));
    });
    return;
  }

  Epilogue ep(e, g, group, kf, shape.size() - 1);  // vectors along the row
  const Shape outer(shape.begin(), shape.end() - 1);
  emit_range(e, kf.begin, kf.end, [&](llvm::Value* r) {
    llvm::Value* base = e.b.CreateMul(r, e.i64c(k));
    const Row row = row_stats(e, x, base, k);
    const std::vector<llvm::Value*> coords = unflatten(e, r, outer);
    if (n.op == Op::softmax) {
      ep.for_each(coords, [&](const ElementPos& pos) { return probability(e, row, x, pos.flat, pos.mask); });
      return;
    }
    // softmax_xent_grad: dloss * (softmax - onehot(label)) / rows, the interpreter's float steps
    // (with smoothing E: softmax - E/K everywhere, then - (1-E) at the label).
    const auto [id, valid] = class_of(e, load_scalar(e, operand_arg(kf, g, group, 1), r), k);
    llvm::Value* scale =
        e.b.CreateFDiv(load_scalar(e, operand_arg(kf, g, group, 2), e.i64c(0)), e.f32c(static_cast<float>(rows)));
    llvm::Value* label = e.lanes_of(id);
    ep.for_each(coords, [&](const ElementPos& pos) {
      llvm::Value* p = probability(e, row, x, pos.flat, pos.mask);
      llvm::Value* column = e.b.CreateAdd(e.lanes_of(pos.coords.back()), e.lane_ids());
      if (smoothing != 0) p = e.b.CreateFSub(p, e.splat(static_cast<float>(smoothing) / static_cast<float>(k)));
      const float hit = 1.0f - static_cast<float>(smoothing);
      p = e.b.CreateSelect(e.b.CreateICmpEQ(column, label), e.b.CreateFSub(p, e.splat(hit)), p);
      p = e.b.CreateFMul(p, e.b.CreateVectorSplat(e.width, scale));
      return e.b.CreateSelect(valid, p, e.splat(nan));
    });
  });
}

}  // namespace dagger
