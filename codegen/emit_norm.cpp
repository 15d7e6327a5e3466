// Batch normalization and its statistics. x is viewed as [batch, channels, inner]; every
// kernel's item is one channel, whose sums run over the batch and then along the inner axis
// in <W x double> partial sums folded lane 0 first, so a channel's statistics are the same
// bits whichever thread computes them and as accurate as the interpreter's double sums.
#include <llvm/IR/Constants.h>

#include "codegen/emit_ops.h"

namespace dagger {

namespace {

struct ChannelDims {
  int64_t batch, channels, inner;
  int64_t count() const { return batch * inner; }
};

ChannelDims channel_dims(const Shape& x) { return {x[0], x[1], numel(x) / std::max<int64_t>(x[0] * x[1], 1)}; }

/// Calls body(flat offset of lane 0, mask) for every vector of channel `c`.
void sweep_channel(Emit& e, const ChannelDims& d, llvm::Value* c,
                   const std::function<void(llvm::Value*, llvm::Value*)>& body) {
  emit_for(e, d.batch, 1, [&](llvm::Value* b) {
    llvm::Value* base = e.b.CreateMul(e.b.CreateAdd(e.b.CreateMul(b, e.i64c(d.channels)), c), e.i64c(d.inner));
    emit_vector_nest(e, {d.inner}, [&](const ElementPos& at) { body(e.b.CreateAdd(base, at.flat), at.mask); });
  });
}

/// Per-channel sums of `count` terms: terms(offset, mask) gives one <W x double> per sum, its
/// masked-off lanes zero. Returns the sums as double scalars.
std::vector<llvm::Value*> channel_sums(
    Emit& e, const ChannelDims& d, llvm::Value* c, size_t count,
    const std::function<std::vector<llvm::Value*>(llvm::Value*, llvm::Value*)>& terms) {
  auto* vd = llvm::FixedVectorType::get(llvm::Type::getDoubleTy(e.ctx), e.width);
  std::vector<llvm::Value*> slots;
  for (size_t k = 0; k < count; ++k) slots.push_back(entry_slot(e, vd, llvm::ConstantFP::get(vd, 0.0)));
  sweep_channel(e, d, c, [&](llvm::Value* offset, llvm::Value* mask) {
    const std::vector<llvm::Value*> t = terms(offset, mask);
    for (size_t k = 0; k < count; ++k) e.b.CreateStore(e.b.CreateFAdd(e.b.CreateLoad(vd, slots[k]), t[k]), slots[k]);
  });
  std::vector<llvm::Value*> sums;
  for (size_t k = 0; k < count; ++k) sums.push_back(horizontal_sum(e, e.b.CreateLoad(vd, slots[k])));
  return sums;
}

struct Norm {
  Emit& e;
  ChannelDims d;
  llvm::Type* f64;
  llvm::VectorType* vd;

  llvm::Value* f64c(double v) { return llvm::ConstantFP::get(f64, v); }
  llvm::Value* widen(llvm::Value* v) { return e.b.CreateFPExt(v, v->getType()->isVectorTy() ? vd : f64); }
  llvm::Value* narrow(llvm::Value* v) { return e.b.CreateFPTrunc(v, e.f32); }
  llvm::Value* splat_f(llvm::Value* scalar) { return e.b.CreateVectorSplat(e.width, scalar); }
  /// Zero in masked-off lanes (a difference of a masked load's zeros and a mean is not zero).
  llvm::Value* masked(llvm::Value* v, llvm::Value* mask) {
    return mask ? e.b.CreateSelect(mask, v, llvm::Constant::getNullValue(v->getType())) : v;
  }
  llvm::Value* load(llvm::Value* base, llvm::Value* offset, llvm::Value* mask) {
    return load_vector(e, base, offset, mask, llvm::Constant::getNullValue(e.vf));
  }

  /// The channel's mean (double) over x.
  llvm::Value* mean(llvm::Value* x, llvm::Value* c) {
    auto sums = channel_sums(e, d, c, 1, [&](llvm::Value* off, llvm::Value* mask) {
      return std::vector<llvm::Value*>{widen(load(x, off, mask))};
    });
    return e.b.CreateFDiv(sums[0], f64c(double(d.count())));
  }
  /// sum((x - mean)^2) and, when dy is given, sum(dy) and sum(dy * (x - mean)).
  std::vector<llvm::Value*> centered_sums(llvm::Value* x, llvm::Value* dy, llvm::Value* c, llvm::Value* mean) {
    llvm::Value* m = e.b.CreateVectorSplat(e.width, mean);
    return channel_sums(e, d, c, dy ? 3 : 1, [&](llvm::Value* off, llvm::Value* mask) {
      llvm::Value* xm = masked(e.b.CreateFSub(widen(load(x, off, mask)), m), mask);
      std::vector<llvm::Value*> t{e.b.CreateFMul(xm, xm)};
      if (dy) {
        llvm::Value* g = widen(load(dy, off, mask));
        t.push_back(g);
        t.push_back(e.b.CreateFMul(g, xm));
      }
      return t;
    });
  }
  /// 1 / sqrt(var + eps) in double.
  llvm::Value* rstd(llvm::Value* var, double eps) {
    return e.b.CreateFDiv(f64c(1.0), e.intrinsic(llvm::Intrinsic::sqrt, {e.b.CreateFAdd(var, f64c(eps))}));
  }
  /// y = (x - mean) * (gamma * rstd) + beta for every element of the channel, through `ep`.
  void normalize(Epilogue& ep, llvm::Value* x, llvm::Value* c, llvm::Value* mean, llvm::Value* rstd, llvm::Value* gamma,
                 llvm::Value* beta) {
    llvm::Value* m = splat_f(narrow(mean));
    llvm::Value* scale = splat_f(narrow(e.b.CreateFMul(widen(load_scalar(e, gamma, c)), rstd)));
    llvm::Value* shift = splat_f(load_scalar(e, beta, c));
    emit_for(e, d.batch, 1, [&](llvm::Value* b) {
      ep.for_each({b, c}, [&](const ElementPos& pos) {
        return e.fma(e.b.CreateFSub(load(x, pos.flat, pos.mask), m), scale, shift);
      });
    });
  }
};

}  // namespace

OpKernelLayout norm_layout(const Graph& g, NodeId anchor) {
  const ChannelDims d = channel_dims(g.shape(g.node(anchor).operands[0]));
  const double passes = g.node(anchor).op == Op::batchnorm_infer ? 1 : 3;
  return {d.channels, passes * double(d.count())};
}

void emit_norm_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) {
  const Node& n = g.node(group.anchor);
  Norm nm{e, channel_dims(g.shape(n.operands[0])), llvm::Type::getDoubleTy(e.ctx), nullptr};
  nm.vd = llvm::FixedVectorType::get(nm.f64, e.width);
  auto arg = [&](size_t k) { return operand_arg(kf, g, group, k); };
  const bool per_channel = n.op == Op::channel_mean || n.op == Op::channel_var || n.op == Op::batchnorm_grad_gamma;
  Epilogue ep(e, g, group, kf, per_channel ? 1 : 2);
  const double eps = n.op == Op::channel_mean || n.op == Op::channel_var ? 0.0 : n.attrs.f("eps");
  const double m = double(nm.d.count());
  // Statistics are stored as one lane at [c].
  auto store_channel = [&](llvm::Value* c, llvm::Value* value) {
    ep.for_each({c}, [&](const ElementPos&) { return nm.splat_f(nm.narrow(value)); });
  };

  emit_range(e, kf.begin, kf.end, [&](llvm::Value* c) {
    llvm::Value* x = arg(0);
    switch (n.op) {
      case Op::channel_mean:
        store_channel(c, nm.mean(x, c));
        break;
      case Op::channel_var: {
        llvm::Value* var = e.b.CreateFDiv(nm.centered_sums(x, nullptr, c, nm.mean(x, c))[0], nm.f64c(m));
        store_channel(c, var);
        break;
      }
      case Op::batchnorm_train: {
        llvm::Value* mean = nm.mean(x, c);
        llvm::Value* var = e.b.CreateFDiv(nm.centered_sums(x, nullptr, c, mean)[0], nm.f64c(m));
        nm.normalize(ep, x, c, mean, nm.rstd(var, eps), arg(1), arg(2));
        break;
      }
      case Op::batchnorm_infer: {
        llvm::Value* var = nm.widen(load_scalar(e, arg(4), c));
        nm.normalize(ep, x, c, nm.widen(load_scalar(e, arg(3), c)), nm.rstd(var, eps), arg(1), arg(2));
        break;
      }
      case Op::batchnorm_grad_gamma: {  // sum(dy * xhat) = rstd * sum(dy * (x - mean))
        llvm::Value* mean = nm.mean(x, c);
        const auto sums = nm.centered_sums(x, arg(1), c, mean);
        llvm::Value* rstd = nm.rstd(e.b.CreateFDiv(sums[0], nm.f64c(m)), eps);
        store_channel(c, e.b.CreateFMul(sums[2], rstd));
        break;
      }
      case Op::batchnorm_backward: {
        // dx = gamma rstd (dy - sum(dy)/M - (x - mean) rstd^2 sum(dy (x - mean))/M)
        llvm::Value* mean = nm.mean(x, c);
        llvm::Value* dy = arg(2);
        const auto sums = nm.centered_sums(x, dy, c, mean);
        llvm::Value* rstd = nm.rstd(e.b.CreateFDiv(sums[0], nm.f64c(m)), eps);
        llvm::Value* scale = nm.splat_f(nm.narrow(e.b.CreateFMul(nm.widen(load_scalar(e, arg(1), c)), rstd)));
        llvm::Value* mean_dy = nm.splat_f(nm.narrow(e.b.CreateFDiv(sums[1], nm.f64c(m))));
        llvm::Value* k =
            nm.splat_f(nm.narrow(e.b.CreateFDiv(e.b.CreateFMul(e.b.CreateFMul(sums[2], rstd), rstd), nm.f64c(m))));
        llvm::Value* mf = nm.splat_f(nm.narrow(mean));
        emit_for(e, nm.d.batch, 1, [&](llvm::Value* b) {
          ep.for_each({b, c}, [&](const ElementPos& pos) {
            llvm::Value* xm = e.b.CreateFSub(nm.load(x, pos.flat, pos.mask), mf);
            llvm::Value* centered = e.b.CreateFSub(nm.load(dy, pos.flat, pos.mask), mean_dy);
            return e.b.CreateFMul(scale, e.fma(e.b.CreateFNeg(xm), k, centered));
          });
        });
        break;
      }
      default:
        break;
    }
  });
}

}  // namespace dagger
