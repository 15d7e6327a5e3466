// Batch normalization and its statistics. x is viewed as [batch, channels, inner]; a kernel's
// item is one channel, whose sums run over the batch and then along the inner axis in
// 8 double partial sums (codegen/partials.h), or, for x [batch, channels], W channels
// with one lane each (see Norm). Either way a channel's statistics are the same bits whichever
// thread computes them, at any vector width, and as accurate as the interpreter's double sums.
#include <fmt/format.h>
#include <llvm/IR/Constants.h>

#include <cassert>
#include <optional>

#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/partials.h"

namespace dagger {

namespace {

struct ChannelDims {
  int64_t batch, channels, inner;
  int64_t count() const { return batch * inner; }
};

ChannelDims channel_dims(const Shape& x) { return {x[0], x[1], numel(x) / std::max<int64_t>(x[0] * x[1], 1)}; }

using DoubleTerms = std::function<std::vector<llvm::Value*>(llvm::Value*, llvm::Value*)>;
using FloatTerm = std::function<llvm::Value*(llvm::Value*, llvm::Value*)>;

/// Per-channel sums of `count` terms: terms(offset, mask) gives one <W x double> per sum, its
/// masked-off lanes zero. Each sum runs over the batch and, within an image, along the inner
/// axis in 8 partial sums (codegen/partials.h). Returns the sums as double scalars, then, with
/// `float_term`, that term's float sum in 16 float partials per image run, as reduce_sum over
/// every axis but 1 sums it (codegen/emit_reduce.cpp): the run is still in L1 for it.
std::vector<llvm::Value*> channel_sums(Emit& e, const ChannelDims& d, llvm::Value* c, size_t count,
                                       const DoubleTerms& terms, const FloatTerm& float_term) {
  Partials partials(e, llvm::Type::getDoubleTy(e.ctx), Fold::sum, count);
  std::optional<Partials> floats;
  if (float_term) floats.emplace(e, e.f32, Fold::sum);
  emit_for(e, d.batch, 1, [&](llvm::Value* b) {
    llvm::Value* base = e.b.CreateMul(e.b.CreateAdd(e.b.CreateMul(b, e.i64c(d.channels)), c), e.i64c(d.inner));
    partials.add_run(d.inner, [&](llvm::Value* at, llvm::Value* mask) { return terms(e.b.CreateAdd(base, at), mask); });
    if (floats)
      floats->add_run(d.inner, [&](llvm::Value* at, llvm::Value* m) { return float_term(e.b.CreateAdd(base, at), m); });
  });
  std::vector<llvm::Value*> sums;
  for (size_t k = 0; k < count; ++k) sums.push_back(partials.result(k));
  if (floats) sums.push_back(floats->result());
  return sums;
}

/// The channels one kernel item covers and how their statistics are held. In general an item
/// is one channel: its sums are swept over the batch and the inner positions and folded into
/// double scalars. When x is [batch, channels] (a dense layer's output) there is no inner axis
/// to vectorize along, so an item is W neighbouring channels, each one's sums in its own lane of
/// a <W x double>, swept over the batch rows: every channel still adds the same terms in the same
/// order, so both forms give the same bits.
struct Norm {
  Emit& e;
  ChannelDims d;
  llvm::Type* f64;
  llvm::VectorType* vd;
  bool lanes = false;           // W channels per item, statistics in vector lanes
  llvm::Value* c = nullptr;     // the item's (first) channel
  llvm::Value* mask = nullptr;  // with lanes: the channels that exist (nullptr: all W)

  /// A double constant shaped like the statistics.
  llvm::Value* f64c(double v) {
    llvm::Value* k = llvm::ConstantFP::get(f64, v);
    return lanes ? e.b.CreateVectorSplat(e.width, k) : k;
  }
  llvm::Value* widen(llvm::Value* v) { return e.b.CreateFPExt(v, v->getType()->isVectorTy() ? vd : f64); }
  /// A statistic as the float vector elements are computed with.
  llvm::Value* to_lanes(llvm::Value* stat) {
    llvm::Value* f = e.b.CreateFPTrunc(stat, lanes ? e.vf : e.f32);
    return lanes ? f : e.b.CreateVectorSplat(e.width, f);
  }
  /// Zero in masked-off lanes (a difference of a masked load's zeros and a mean is not zero).
  llvm::Value* masked(llvm::Value* v, llvm::Value* m) {
    return m ? e.b.CreateSelect(m, v, llvm::Constant::getNullValue(v->getType())) : v;
  }
  llvm::Value* load(llvm::Value* base, llvm::Value* offset, llvm::Value* m) {
    return load_vector(e, base, offset, m, llvm::Constant::getNullValue(e.vf));
  }
  /// A per-channel operand (gamma, beta, running statistics) as a double statistic.
  llvm::Value* param(llvm::Value* base) { return widen(lanes ? load(base, c, mask) : load_scalar(e, base, c)); }

  /// The channels' sums of `count` terms: terms(offset, mask) gives one <W x double> per sum,
  /// its masked-off lanes zero; then, with `float_term`, the float sum of that term as
  /// reduce_sum computes it (in lanes: each lane's sum over the rows in order, from 0).
  std::vector<llvm::Value*> sums(size_t count, const DoubleTerms& terms, const FloatTerm& float_term = nullptr) {
    if (!lanes) return channel_sums(e, d, c, count, terms, float_term);
    std::vector<llvm::Value*> zero(count, llvm::ConstantFP::get(vd, 0.0));
    if (float_term) zero.push_back(llvm::ConstantFP::get(e.vf, 0.0));
    return emit_loop(e, d.batch, 1, zero, [&](llvm::Value* b, const std::vector<llvm::Value*>& in) {
      std::vector<llvm::Value*> t = terms(row_offset(b), mask);
      if (float_term) t.push_back(float_term(row_offset(b), mask));
      std::vector<llvm::Value*> out;
      for (size_t k = 0; k < in.size(); ++k) out.push_back(e.b.CreateFAdd(in[k], t[k]));
      return out;
    });
  }
  llvm::Value* row_offset(llvm::Value* b) { return e.b.CreateAdd(e.b.CreateMul(b, e.i64c(d.channels)), c); }

  /// The channels' mean (double) over x.
  llvm::Value* mean(llvm::Value* x) {
    auto s =
        sums(1, [&](llvm::Value* off, llvm::Value* m) { return std::vector<llvm::Value*>{widen(load(x, off, m))}; });
    return mean_of(s[0]);
  }
  llvm::Value* mean_of(llvm::Value* sum) { return e.b.CreateFDiv(sum, f64c(double(d.count()))); }
  /// Batch statistics of the channels; with dy, also the two sums the gradient needs.
  struct Stats {
    llvm::Value *mean, *var;
    llvm::Value* sum_dy = nullptr;     // sum(dy)
    llvm::Value* sum_dy_xc = nullptr;  // sum(dy * (x - mean))
    llvm::Value* sum_x = nullptr;      // with Extra::mean: sum(x), unshifted, as mean() sums it
    llvm::Value* dy_float = nullptr;   // with Extra::dbeta: sum(dy) in float, as reduce_sum sums it
  };
  /// A sibling statistic (codegen/fusion.h) summed in the same read as the others.
  enum class Extra { none, mean, dbeta };
  /// The channels' statistics in one read of x (and dy): sums of d = x - K, d^2 (and dy,
  /// dy * d) in double, K being the channel's first element. var = E[d^2] - E[d]^2 then
  /// cancels only as much as the spread of x around K, not around 0: a channel with a mean
  /// far from zero keeps its variance's digits (each d and d^2 of a float x is exact in double).
  /// Each sum has partials of its own, so `extra` leaves the others' bits as they are.
  Stats stats(llvm::Value* x, llvm::Value* dy, Extra extra = Extra::none) {
    llvm::Value* shift =
        widen(lanes ? load(x, row_offset(e.i64c(0)), mask) : load_scalar(e, x, e.b.CreateMul(c, e.i64c(d.inner))));
    llvm::Value* shift_v = lanes ? shift : e.b.CreateVectorSplat(e.width, shift);
    FloatTerm dy_term;
    if (extra == Extra::dbeta) dy_term = [&](llvm::Value* off, llvm::Value* m) { return load(dy, off, m); };
    const auto s = sums((dy ? 4 : 2) + (extra == Extra::mean ? 1 : 0),
                        [&](llvm::Value* off, llvm::Value* m) {
                          llvm::Value* xd = widen(load(x, off, m));
                          llvm::Value* xk = masked(e.b.CreateFSub(xd, shift_v), m);
                          std::vector<llvm::Value*> t{xk, e.b.CreateFMul(xk, xk)};
                          if (dy) {
                            llvm::Value* g = widen(load(dy, off, m));
                            t.push_back(g);
                            t.push_back(e.b.CreateFMul(g, xk));
                          }
                          if (extra == Extra::mean) t.push_back(xd);  // masked-off lanes loaded as 0
                          return t;
                        },
                        dy_term);
    llvm::Value* count = f64c(double(d.count()));
    llvm::Value* mean_d = e.b.CreateFDiv(s[0], count);  // E[x - K]
    llvm::Value* var = e.b.CreateFSub(e.b.CreateFDiv(s[1], count), e.b.CreateFMul(mean_d, mean_d));
    Stats r{e.b.CreateFAdd(shift, mean_d), e.intrinsic(llvm::Intrinsic::maxnum, {var, f64c(0.0)})};
    if (dy) {  // sum(dy (x - mean)) = sum(dy (x - K)) - E[x - K] sum(dy)
      r.sum_dy = s[2];
      r.sum_dy_xc = e.b.CreateFSub(s[3], e.b.CreateFMul(mean_d, s[2]));
    }
    if (extra == Extra::mean) r.sum_x = s.back();
    if (extra == Extra::dbeta) r.dy_float = s.back();
    return r;
  }
  /// 1 / sqrt(var + eps) in double.
  llvm::Value* rstd(llvm::Value* var, double eps) {
    return e.b.CreateFDiv(f64c(1.0), e.intrinsic(llvm::Intrinsic::sqrt, {e.b.CreateFAdd(var, f64c(eps))}));
  }

  /// Stores value(pos) for every element of the channels through `ep`.
  void for_each_element(Epilogue& ep, const std::function<llvm::Value*(const ElementPos&)>& value) {
    emit_for(e, d.batch, 1, [&](llvm::Value* b) {
      if (!lanes) {
        ep.for_each({b, c}, value);
        return;
      }
      const ElementPos pos{{b, c}, row_offset(b), mask};
      ep.store(pos, value(pos));
    });
  }
  /// Stores a float statistic per channel (a scalar, or a vector with lanes) at out[c], not
  /// through the epilogue: a sibling statistic's own output.
  void store_sibling(llvm::Value* out, llvm::Value* value) {
    if (!lanes) {
      e.b.CreateAlignedStore(value, e.b.CreateInBoundsGEP(e.f32, out, c), llvm::Align(4));
      return;
    }
    store_at(e, StridedBuffer{out, {1}}, ElementPos{{c}, c, mask}, value);
  }
  /// A double statistic as a float (scalar, or vector with lanes).
  llvm::Value* narrow(llvm::Value* stat) { return e.b.CreateFPTrunc(stat, lanes ? e.vf : e.f32); }
  /// Stores one statistic per channel at [c].
  void store_channel(Epilogue& ep, llvm::Value* stat) {
    if (!lanes) {
      ep.for_each({c}, [&](const ElementPos&) { return to_lanes(stat); });
      return;
    }
    ep.store(ElementPos{{c}, c, mask}, to_lanes(stat));
  }
  /// y = (x - mean) * (gamma * rstd) + beta for every element of the channels, through `ep`.
  void normalize(Epilogue& ep, llvm::Value* x, llvm::Value* mean, llvm::Value* rstd, llvm::Value* gamma,
                 llvm::Value* beta) {
    llvm::Value* m = to_lanes(mean);
    llvm::Value* scale = to_lanes(e.b.CreateFMul(param(gamma), rstd));
    llvm::Value* shift = to_lanes(param(beta));  // widened and narrowed back: the same float
    for_each_element(
        ep, [&](const ElementPos& pos) { return e.fma(e.b.CreateFSub(load(x, pos.flat, pos.mask), m), scale, shift); });
  }
};

/// Whether the channels of x are vectorized across (x is [batch, channels]).
bool channels_in_lanes(const Shape& x) { return x.size() == 2; }

/// The group's sibling statistic (codegen/fusion.h), or -1: its only side output that is not
/// elementwise.
NodeId sibling_of(const Graph& g, const FusionGroup& group) {
  for (NodeId id : group.side_outputs)
    if (kernel_family(g.node(id).op) != KernelFamily::elementwise) return id;
  return -1;
}

}  // namespace

OpKernelLayout norm_layout(const Graph& g, NodeId anchor, unsigned width) {
  const Shape& x = g.shape(g.node(anchor).operands[0]);
  const ChannelDims d = channel_dims(x);
  // Reads of x per element: the statistics' one pass, then the normalization's or dx's.
  const Op op = g.node(anchor).op;
  const double passes = op == Op::batchnorm_train || op == Op::batchnorm_backward ? 2 : 1;
  if (channels_in_lanes(x)) {
    const int64_t items = (d.channels + width - 1) / width;
    return {items, passes * double(d.batch * width)};
  }
  return {d.channels, passes * double(d.count())};
}

void emit_norm_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) {
  const Node& n = g.node(group.anchor);
  const Shape& shape = g.shape(n.operands[0]);
  Norm nm{e, channel_dims(shape), llvm::Type::getDoubleTy(e.ctx), nullptr};
  nm.vd = llvm::FixedVectorType::get(nm.f64, e.width);
  nm.lanes = channels_in_lanes(shape);
  auto arg = [&](size_t k) { return operand_arg(kf, g, group, k); };
  const bool per_channel = n.op == Op::channel_mean || n.op == Op::channel_var || n.op == Op::batchnorm_grad_gamma;
  // The epilogue iterates what one item does not: one channel's inner positions, or W channels.
  const size_t keep = (per_channel ? 1 : 2) - (nm.lanes ? 1 : 0);
  // A sibling statistic is stored at its own argument (the first side output's); the epilogue
  // composes the rest of the group, which is then the anchor alone.
  const NodeId sibling = sibling_of(g, group);
  FusionGroup composed = group;
  if (sibling >= 0) {
    std::erase(composed.nodes, sibling);
    std::erase(composed.side_outputs, sibling);
    assert(composed.nodes.size() == 1 && composed.side_outputs.empty() && group.side_outputs.size() == 1);
  }
  Epilogue ep(e, g, composed, kf, keep);
  const double eps = n.op == Op::channel_mean || n.op == Op::channel_var ? 0.0 : n.attrs.f("eps");
  const double m = double(nm.d.count());

  emit_range(e, kf.begin, kf.end, [&](llvm::Value* item) {
    nm.c = item;
    if (nm.lanes) {
      nm.c = e.b.CreateMul(item, e.i64c(e.width));
      if (nm.d.channels % e.width != 0) {
        llvm::Value* left = e.b.CreateTrunc(e.b.CreateSub(e.i64c(nm.d.channels), nm.c), e.i32);
        nm.mask = e.b.CreateICmpULT(e.lane_ids(), e.b.CreateVectorSplat(e.width, left));
      }
    }
    llvm::Value* x = arg(0);
    switch (n.op) {
      case Op::channel_mean:
        nm.store_channel(ep, nm.mean(x));
        break;
      case Op::channel_var: {
        const Norm::Stats st = nm.stats(x, nullptr, sibling >= 0 ? Norm::Extra::mean : Norm::Extra::none);
        nm.store_channel(ep, st.var);
        if (sibling >= 0) nm.store_sibling(kf.args[1], nm.narrow(nm.mean_of(st.sum_x)));
        break;
      }
      case Op::batchnorm_train: {
        const Norm::Stats st = nm.stats(x, nullptr);
        nm.normalize(ep, x, st.mean, nm.rstd(st.var, eps), arg(1), arg(2));
        break;
      }
      case Op::batchnorm_infer:
        nm.normalize(ep, x, nm.param(arg(3)), nm.rstd(nm.param(arg(4)), eps), arg(1), arg(2));
        break;
      case Op::batchnorm_grad_gamma: {  // sum(dy * xhat) = rstd * sum(dy * (x - mean))
        const Norm::Stats st = nm.stats(x, arg(1), sibling >= 0 ? Norm::Extra::dbeta : Norm::Extra::none);
        nm.store_channel(ep, e.b.CreateFMul(st.sum_dy_xc, nm.rstd(st.var, eps)));
        if (sibling >= 0) nm.store_sibling(kf.args[1], st.dy_float);  // dbeta
        break;
      }
      case Op::batchnorm_backward: {
        // dx = gamma rstd (dy - sum(dy)/M - (x - mean) rstd^2 sum(dy (x - mean))/M)
        llvm::Value* dy = arg(2);
        const Norm::Stats st = nm.stats(x, dy);
        llvm::Value* rstd = nm.rstd(st.var, eps);
        llvm::Value* scale = nm.to_lanes(e.b.CreateFMul(nm.param(arg(1)), rstd));
        llvm::Value* mean_dy = nm.to_lanes(e.b.CreateFDiv(st.sum_dy, nm.f64c(m)));
        llvm::Value* k =
            nm.to_lanes(e.b.CreateFDiv(e.b.CreateFMul(e.b.CreateFMul(st.sum_dy_xc, rstd), rstd), nm.f64c(m)));
        llvm::Value* mf = nm.to_lanes(st.mean);
        nm.for_each_element(ep, [&](const ElementPos& pos) {
          llvm::Value* xm = e.b.CreateFSub(nm.load(x, pos.flat, pos.mask), mf);
          llvm::Value* centered = e.b.CreateFSub(nm.load(dy, pos.flat, pos.mask), mean_dy);
          return e.b.CreateFMul(scale, e.fma(e.b.CreateFNeg(xm), k, centered));
        });
        break;
      }
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
      case Op::conv2d:
      case Op::conv2d_backward_data:
      case Op::conv2d_backward_filter:
      case Op::maxpool2d:
      case Op::maxpool2d_backward:
      case Op::softmax:
      case Op::softmax_xent:
      case Op::softmax_xent_grad:
      case Op::assign:
        throw Error(
            fmt::format("internal error: codegen: %{} ({}) has no normalization kernel", n.id, op_info(n.op).name));
    }
  });
}

}  // namespace dagger
