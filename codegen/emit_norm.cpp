// Batch normalization and its statistics. x is viewed as [batch, channels, inner]; a kernel's
// item is one channel, whose sums run over the batch and then along the inner axis in
// 8 double partial sums (codegen/partials.h), or, for x [batch, channels], W channels
// with one lane each (see Norm). Either way a channel's statistics are the same bits whichever
// thread computes them, at any vector width, and as accurate as the interpreter's double sums.
//
// A kernel does its work per channel in up to three steps (ChannelWork): double sums over the
// channel's elements, per-channel results from them (stored, or factors for the third step),
// and an element pass. One item's channels are swept in blocks (sweep_blocks): for each image,
// the block's channels one after the other, each with its partial sums kept in memory between
// its runs. In NCHW a block of one image is contiguous, so the reads follow memory; a sweep of
// one channel at a time instead jumps an image ahead after every run of `inner` floats (3 KiB
// for a 28x28 map), which read from memory ran 1.2-2.3x slower (docs/performance.md, "What
// each optimization bought"). Every channel still adds the same terms in the same order, so
// the bits are those of a channel at a time.
#include <fmt/format.h>
#include <llvm/IR/Constants.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <optional>

#include "dagger/codegen/emit_elementwise.h"
#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/partials.h"

namespace dagger {

namespace {

struct ChannelDims {
  int64_t batch, channels, inner;
  int64_t count() const { return batch * inner; }
};

ChannelDims channel_dims(const Shape& x) { return {x[0], x[1], numel(x) / std::max<int64_t>(x[0] * x[1], 1)}; }

/// A block of the channel sweep is one image's run of about this many contiguous floats
/// (64 KiB), of at most kMaxBlockChannels channels (their partial sums live on the stack).
constexpr int64_t kBlockFloats = 16384;
constexpr int64_t kMaxBlockChannels = 64;

int64_t block_channels(const ChannelDims& d) {
  return std::clamp<int64_t>(kBlockFloats / std::max<int64_t>(d.inner, 1), 1, kMaxBlockChannels);
}

using DoubleTerms = std::function<std::vector<llvm::Value*>(llvm::Value*, llvm::Value*)>;
using FloatTerm = std::function<llvm::Value*(llvm::Value*, llvm::Value*)>;
/// Per-channel double values (scalars, or <W x double> with channels in lanes).
using Stats = std::vector<llvm::Value*>;

/// What a kernel computes per channel. `sums` double sums of terms(offset, mask) (one
/// <W x double> per sum, masked-off lanes zero), each over the batch and, within an image,
/// along the inner axis in 8 partial sums; then, with `float_term`, that term's float sum in
/// 16 float partials per image run, as reduce_sum over every axis but 1 sums it
/// (codegen/emit_reduce.cpp). finish(sums) stores the channel's statistics and returns the
/// factors of the element pass, which stores element(pos, factors as <W x float>) for every
/// element of the channel (no pass when `element` is empty).
struct ChannelWork {
  size_t sums = 0;
  DoubleTerms terms;
  FloatTerm float_term;
  std::function<Stats(const Stats&)> finish;
  std::function<llvm::Value*(const ElementPos&, const std::vector<llvm::Value*>&)> element;
  /// With sweep_blocks: called with the image before each of the channel's runs is summed
  /// (the channel is Norm::c), for a kernel that writes the run there (emit_grad_gamma_beside).
  std::function<void(llvm::Value*)> before_run;
  /// The buffers the sums read along each run (x, and dy where summed), for prefetch_run_ahead.
  std::vector<llvm::Value*> streams;
  /// The buffers shaped like x that the element pass reads (x, an epilogue's operands) and
  /// writes (the outputs), for prefetch_run_ahead in that pass.
  std::vector<llvm::Value*> element_reads, element_writes;
};

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
  bool lanes = false;            // W channels per item, statistics in vector lanes
  llvm::Value* c = nullptr;      // the (first) channel being worked on
  llvm::Value* mask = nullptr;   // with lanes: the channels that exist (nullptr: all W)
  llvm::Value* shift = nullptr;  // with shifted statistics: K, the channels' first element (double)

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
  llvm::Value* row_offset(llvm::Value* b) { return e.b.CreateAdd(e.b.CreateMul(b, e.i64c(d.channels)), c); }
  /// The offset of channel c's run in image b.
  llvm::Value* run_offset(llvm::Value* b) { return e.b.CreateMul(row_offset(b), e.i64c(d.inner)); }
  /// The channels' first element of x, as a double statistic.
  llvm::Value* first_of(llvm::Value* x) {
    return widen(lanes ? load(x, row_offset(e.i64c(0)), mask) : load_scalar(e, x, run_offset(e.i64c(0))));
  }

  llvm::Value* mean_of(llvm::Value* sum) { return e.b.CreateFDiv(sum, f64c(double(d.count()))); }
  /// The channels' mean of x, summed unshifted.
  ChannelWork mean(llvm::Value* x) {
    ChannelWork w;
    w.sums = 1;
    w.streams = {x};
    w.terms = [this, x](llvm::Value* off, llvm::Value* m) { return std::vector<llvm::Value*>{widen(load(x, off, m))}; };
    return w;
  }
  /// Batch statistics of the channels; with dy, also the two sums the gradient needs.
  struct Moments {
    llvm::Value *mean, *var;
    llvm::Value* sum_dy = nullptr;     // sum(dy)
    llvm::Value* sum_dy_xc = nullptr;  // sum(dy * (x - mean))
    llvm::Value* sum_x = nullptr;      // with Extra::mean: sum(x), unshifted, as mean() sums it
    llvm::Value* dy_float = nullptr;   // with Extra::dbeta: sum(dy) in float, as reduce_sum sums it
  };
  /// A sibling statistic (codegen/fusion.h) summed in the same read as the others.
  enum class Extra { none, mean, dbeta };
  /// The channels' statistics in one read of x (and dy): sums of d = x - K, d^2 (and dy,
  /// dy * d) in double, K being the channel's first element (`shift`, set by the sweep).
  /// var = E[d^2] - E[d]^2 then cancels only as much as the spread of x around K, not around 0:
  /// a channel with a mean far from zero keeps its variance's digits (each d and d^2 of a float
  /// x is exact in double). Each sum has partials of its own, so `extra` leaves the others' bits
  /// as they are. Then moments() of the sums.
  ChannelWork stats(llvm::Value* x, llvm::Value* dy, Extra extra = Extra::none) {
    ChannelWork w;
    w.sums = (dy ? 4 : 2) + (extra == Extra::mean ? 1 : 0);
    w.streams = {x};
    if (dy) w.streams.push_back(dy);
    w.terms = [this, x, dy, extra](llvm::Value* off, llvm::Value* m) {
      llvm::Value* xd = widen(load(x, off, m));
      llvm::Value* xk = masked(e.b.CreateFSub(xd, lanes ? shift : e.b.CreateVectorSplat(e.width, shift)), m);
      std::vector<llvm::Value*> t{xk, e.b.CreateFMul(xk, xk)};
      if (dy) {
        llvm::Value* g = widen(load(dy, off, m));
        t.push_back(g);
        t.push_back(e.b.CreateFMul(g, xk));
      }
      if (extra == Extra::mean) t.push_back(xd);  // masked-off lanes loaded as 0
      return t;
    };
    if (extra == Extra::dbeta) w.float_term = [this, dy](llvm::Value* off, llvm::Value* m) { return load(dy, off, m); };
    return w;
  }
  Moments moments(const Stats& s, bool with_dy, Extra extra) {
    llvm::Value* count = f64c(double(d.count()));
    llvm::Value* mean_d = e.b.CreateFDiv(s[0], count);  // E[x - K]
    llvm::Value* var = e.b.CreateFSub(e.b.CreateFDiv(s[1], count), e.b.CreateFMul(mean_d, mean_d));
    Moments r{e.b.CreateFAdd(shift, mean_d), e.intrinsic(llvm::Intrinsic::maxnum, {var, f64c(0.0)})};
    if (with_dy) {  // sum(dy (x - mean)) = sum(dy (x - K)) - E[x - K] sum(dy)
      r.sum_dy = s[2];
      r.sum_dy_xc = e.b.CreateFSub(s[3], e.b.CreateFMul(mean_d, s[2]));
    }
    if (extra == Extra::mean) r.sum_x = s.back();
    if (extra == Extra::dbeta) r.dy_float = s.back();
    return r;
  }
  /// batchnorm_grad_gamma's work: sum(dy * xhat) = rstd * sum(dy * (x - mean)), the batch
  /// statistics summed again in the same read; with Extra::dbeta also sum(dy) as reduce_sum
  /// sums it. Its finish gives store() dgamma (double) and dbeta (float; nullptr without it).
  ChannelWork grad_gamma(llvm::Value* x, llvm::Value* dy, double eps, Extra extra,
                         const std::function<void(llvm::Value*, llvm::Value*)>& store) {
    ChannelWork w = stats(x, dy, extra);
    w.finish = [this, eps, extra, store](const Stats& s) {
      const Moments st = moments(s, true, extra);
      store(e.b.CreateFMul(st.sum_dy_xc, rstd(st.var, eps)), st.dy_float);
      return Stats{};
    };
    return w;
  }
  /// 1 / sqrt(var + eps) in double.
  llvm::Value* rstd(llvm::Value* var, double eps) {
    return e.b.CreateFDiv(f64c(1.0), e.intrinsic(llvm::Intrinsic::sqrt, {e.b.CreateFAdd(var, f64c(eps))}));
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
  /// y = (x - mean) * (gamma * rstd) + beta for every element of the channels: the factors
  /// mean, gamma * rstd and beta, and the element pass.
  ChannelWork normalize(ChannelWork w, llvm::Value* x, llvm::Value* gamma, llvm::Value* beta,
                        const std::function<std::pair<llvm::Value*, llvm::Value*>(const Stats&)>& mean_rstd) {
    w.finish = [this, gamma, beta, mean_rstd](const Stats& s) {
      const auto [mean, rstd] = mean_rstd(s);
      return Stats{mean, e.b.CreateFMul(param(gamma), rstd), param(beta)};  // beta widened: narrowed, the same float
    };
    w.element = [this, x](const ElementPos& pos, const std::vector<llvm::Value*>& f) {
      return e.fma(e.b.CreateFSub(load(x, pos.flat, pos.mask), f[0]), f[1], f[2]);
    };
    return w;
  }
};

/// The per-channel work of channels in lanes, on the items [begin, end) of W channels: the
/// sums over the rows in order (from 0), the results, then the element pass row by row.
void sweep_lanes(Norm& nm, Epilogue& ep, const ChannelWork& w, llvm::Value* begin, llvm::Value* end,
                 llvm::Value* shifted) {
  Emit& e = nm.e;
  emit_range(e, begin, end, [&](llvm::Value* item) {
    nm.c = e.b.CreateMul(item, e.i64c(e.width));
    if (nm.d.channels % e.width != 0) {
      llvm::Value* left = e.b.CreateTrunc(e.b.CreateSub(e.i64c(nm.d.channels), nm.c), e.i32);
      nm.mask = e.b.CreateICmpULT(e.lane_ids(), e.b.CreateVectorSplat(e.width, left));
    }
    if (shifted) nm.shift = nm.first_of(shifted);
    std::vector<llvm::Value*> zero(w.sums, llvm::ConstantFP::get(nm.vd, 0.0));
    if (w.float_term) zero.push_back(llvm::ConstantFP::get(e.vf, 0.0));
    Stats sums = zero;
    if (!zero.empty())
      sums = emit_loop(e, nm.d.batch, 1, zero, [&](llvm::Value* b, const std::vector<llvm::Value*>& in) {
        std::vector<llvm::Value*> t = w.terms ? w.terms(nm.row_offset(b), nm.mask) : std::vector<llvm::Value*>{};
        if (w.float_term) t.push_back(w.float_term(nm.row_offset(b), nm.mask));
        std::vector<llvm::Value*> out;
        for (size_t k = 0; k < in.size(); ++k) out.push_back(e.b.CreateFAdd(in[k], t[k]));
        return out;
      });
    const Stats stats = w.finish(sums);
    if (!w.element) return;
    std::vector<llvm::Value*> factors;
    for (llvm::Value* s : stats) factors.push_back(nm.to_lanes(s));
    emit_for(e, nm.d.batch, 1, [&](llvm::Value* b) {
      const ElementPos pos{{b, nm.c}, nm.row_offset(b), nm.mask};
      ep.store(pos, w.element(pos, factors));
    });
  });
}

/// A stack array of `block` values of `type` in the function's entry block: one per channel
/// of a block.
llvm::Value* per_channel_slots(Emit& e, llvm::Type* type, int64_t block) {
  llvm::Function* fn = e.b.GetInsertBlock()->getParent();
  llvm::IRBuilder<> at(&fn->getEntryBlock(), fn->getEntryBlock().begin());
  return at.CreateAlloca(llvm::ArrayType::get(type, uint64_t(block)));
}

/// Partials with a saved set per channel of a block: channel j's runs continue its own sums.
class BlockPartials {
 public:
  BlockPartials(Emit& e, llvm::Type* lane, size_t reductions, int64_t block)
      : e_(e),
        partials_(e, lane, Fold::sum, reductions),
        block_(block),
        saved_(per_channel_slots(e, partials_.state_type(), block)) {}
  /// Starts channel j's sums at zero.
  void start(llvm::Value* j) {
    partials_.reset();
    partials_.save(at(j));
  }
  /// Adds a run of channel j (Partials::add_run).
  void add_run(llvm::Value* j, int64_t count, const Partials::Terms& terms) {
    partials_.restore(at(j));
    partials_.add_run(count, terms);
    partials_.save(at(j));
  }
  /// Channel j's `count` sums, as scalars.
  std::vector<llvm::Value*> results(llvm::Value* j, size_t count) {
    partials_.restore(at(j));
    std::vector<llvm::Value*> sums;
    for (size_t r = 0; r < count; ++r) sums.push_back(partials_.result(r));
    return sums;
  }

 private:
  llvm::Value* at(llvm::Value* j) {
    return e_.b.CreateInBoundsGEP(llvm::ArrayType::get(partials_.state_type(), uint64_t(block_)), saved_,
                                  {e_.i64c(0), j});
  }
  Emit& e_;
  Partials partials_;
  int64_t block_;
  llvm::Value* saved_;
};

/// The sums' sweep reads a block's runs one after another within an image, then jumps to the
/// next image's (an image's block of channels ahead in memory), and the hardware prefetchers
/// lose the stream at each jump. So each run fetches into L1 the run about this many floats
/// further on in the sweep's order (whole runs, counted in runs of `inner` floats): cnn3's
/// statistics and dgamma kernels ran 13-31% faster with it (the 7x7 and 14x14 ones most);
/// 1024 floats ahead did as well, 4096 worse.
constexpr int64_t kSweepAheadFloats = 2048;

/// Prefetches the run that the sweep reaches kSweepAheadFloats after the run of image b and
/// channel c0 + j of the block [c0, c1) (nothing past the batch): of `reads` for reading, of
/// `writes` for writing. The sums fetch what they read; the element pass also what it writes
/// (rescnn's normalization kernels ran 6-30% faster with the latter).
void prefetch_run_ahead(Norm& nm, llvm::Value* b, llvm::Value* j, llvm::Value* c0, llvm::Value* c1,
                        const std::vector<llvm::Value*>& reads, const std::vector<llvm::Value*>& writes) {
  Emit& e = nm.e;
  if (reads.empty() && writes.empty()) return;
  const int64_t inner = nm.d.inner, runs_ahead = std::max<int64_t>(1, (kSweepAheadFloats + inner - 1) / inner);
  llvm::Value* block = e.b.CreateSub(c1, c0);
  llvm::Value* ahead = e.b.CreateAdd(e.b.CreateMul(b, block), e.b.CreateAdd(j, e.i64c(runs_ahead)));
  llvm::Value* image = e.b.CreateUDiv(ahead, block);
  llvm::Value* channel = e.b.CreateAdd(c0, e.b.CreateURem(ahead, block));
  emit_if(e, e.b.CreateICmpULT(image, e.i64c(nm.d.batch)), [&] {
    llvm::Value* start =
        e.b.CreateMul(e.b.CreateAdd(e.b.CreateMul(image, e.i64c(nm.d.channels)), channel), e.i64c(inner));
    for (llvm::Value* stream : reads) prefetch_floats(e, stream, start, inner, false);
    for (llvm::Value* stream : writes) prefetch_floats(e, stream, start, inner, true);
  });
}

/// The per-channel work of one channel per item, the items [begin, end) in blocks of
/// block_channels() (see the top of the file): the sums image by image, each channel's
/// partials restored before its run and saved after it; then each channel's results, whose
/// factors are kept as floats for the element pass, again image by image.
void sweep_blocks(Norm& nm, Epilogue* ep, const ChannelWork& w, llvm::Value* begin, llvm::Value* end,
                  llvm::Value* shifted) {
  Emit& e = nm.e;
  const int64_t block = block_channels(nm.d);
  std::optional<BlockPartials> doubles, floats;
  if (w.sums > 0) doubles.emplace(e, nm.f64, w.sums, block);
  if (w.float_term) floats.emplace(e, e.f32, 1, block);
  // Enough float factors for every kernel (normalize: 3, batchnorm_backward: 4).
  llvm::ArrayType* factor_type = llvm::ArrayType::get(e.f32, 4);
  llvm::Value* factors_saved = per_channel_slots(e, factor_type, block);
  size_t factor_count = 0;
  auto factor_at = [&](llvm::Value* j, size_t f) {
    return e.b.CreateInBoundsGEP(llvm::ArrayType::get(factor_type, uint64_t(block)), factors_saved,
                                 {e.i64c(0), j, e.i64c(int64_t(f))});
  };
  // Channel c of the block starting at c0: nm.c, its shift, and its index j in the block.
  auto enter = [&](llvm::Value* c0, llvm::Value* c) {
    nm.c = c;
    if (shifted) nm.shift = nm.first_of(shifted);
    return e.b.CreateSub(c, c0);
  };

  llvm::Value* blocks = e.b.CreateSDiv(e.b.CreateAdd(e.b.CreateSub(end, begin), e.i64c(block - 1)), e.i64c(block));
  emit_range(e, e.i64c(0), blocks, [&](llvm::Value* k) {
    llvm::Value* c0 = e.b.CreateAdd(begin, e.b.CreateMul(k, e.i64c(block)));
    llvm::Value* c1 = e.b.CreateAdd(c0, e.i64c(block));
    c1 = e.b.CreateSelect(e.b.CreateICmpSLT(c1, end), c1, end);
    if (doubles || floats) {
      emit_range(e, c0, c1, [&](llvm::Value* c) {
        llvm::Value* j = enter(c0, c);
        if (doubles) doubles->start(j);
        if (floats) floats->start(j);
      });
      emit_for(e, nm.d.batch, 1, [&](llvm::Value* b) {
        emit_range(e, c0, c1, [&](llvm::Value* c) {
          llvm::Value* j = enter(c0, c);
          llvm::Value* base = nm.run_offset(b);
          // A sweep whose runs are first written (before_run): the pooling gradient fetches those
          // planes itself.
          if (!w.before_run) prefetch_run_ahead(nm, b, j, c0, c1, w.streams, {});
          if (w.before_run) w.before_run(b);
          if (doubles)
            doubles->add_run(j, nm.d.inner,
                             [&](llvm::Value* at, llvm::Value* m) { return w.terms(e.b.CreateAdd(base, at), m); });
          if (floats)
            floats->add_run(j, nm.d.inner, [&](llvm::Value* at, llvm::Value* m) {
              return std::vector{w.float_term(e.b.CreateAdd(base, at), m)};
            });
        });
      });
    }
    emit_range(e, c0, c1, [&](llvm::Value* c) {
      llvm::Value* j = enter(c0, c);
      Stats sums = doubles ? doubles->results(j, w.sums) : Stats{};
      if (floats) sums.push_back(floats->results(j, 1)[0]);
      const Stats factors = w.finish(sums);
      factor_count = factors.size();
      assert(factor_count <= factor_type->getNumElements());
      for (size_t f = 0; f < factor_count; ++f) e.b.CreateStore(nm.narrow(factors[f]), factor_at(j, f));
    });
    if (!w.element) return;
    emit_for(e, nm.d.batch, 1, [&](llvm::Value* b) {
      emit_range(e, c0, c1, [&](llvm::Value* c) {
        llvm::Value* j = enter(c0, c);
        prefetch_run_ahead(nm, b, j, c0, c1, w.element_reads, w.element_writes);
        std::vector<llvm::Value*> factors;
        for (size_t f = 0; f < factor_count; ++f)
          factors.push_back(e.b.CreateVectorSplat(e.width, e.b.CreateLoad(e.f32, factor_at(j, f))));
        ep->for_each({b, c}, [&](const ElementPos& pos) { return w.element(pos, factors); });
      });
    });
  });
}

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

NormPrologue::NormPrologue(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) : e_(e) {
  assert(!group.prologue.empty());
  const Node& n = g.node(group.prologue.front());
  assert(n.op == Op::batchnorm_infer && !channels_in_lanes(g.shape(n.operands[0])));
  x_ = input_arg(kf, group, n.operands[0]);
  gamma_ = input_arg(kf, group, n.operands[1]);
  beta_ = input_arg(kf, group, n.operands[2]);
  mean_ = input_arg(kf, group, n.operands[3]);
  var_ = input_arg(kf, group, n.operands[4]);
  eps_ = n.attrs.f("eps");
  // The prologue's epilogue, composed over the normalized value as the norm kernel composes it.
  const FusionGroup own{group.prologue.back(), group.prologue, {}, n.id, {}, {}, {}, {}};
  root_ = compose_group(e, g, own,
                        [this](NodeId) -> ElementGen { return [this](const ElementPos&) { return normalized_; }; })[0];
}

std::vector<llvm::Value*> inference_norm_factors(Emit& e, const std::array<llvm::Value*, 4>& gamma_beta_mean_var,
                                                 double eps, llvm::Value* channel) {
  // The factors as batchnorm_infer's kernel makes them (Norm::normalize): double, then float.
  const auto [gamma, beta, mean, var] = gamma_beta_mean_var;
  Norm nm{e, {1, 1, 1}, llvm::Type::getDoubleTy(e.ctx), nullptr};
  nm.vd = llvm::FixedVectorType::get(nm.f64, e.width);
  nm.c = channel;
  const Stats factors{nm.param(mean), e.b.CreateFMul(nm.param(gamma), nm.rstd(nm.param(var), eps)), nm.param(beta)};
  std::vector<llvm::Value*> out;
  for (llvm::Value* f : factors) out.push_back(e.b.CreateVectorSplat(e.width, nm.narrow(f)));
  return out;
}

llvm::Value* inference_normalize(Emit& e, llvm::Value* xv, const std::vector<llvm::Value*>& factors) {
  assert(factors.size() == 3);
  return e.fma(e.b.CreateFSub(xv, factors[0]), factors[1], factors[2]);
}

void NormPrologue::enter_channel(llvm::Value* channel) {
  factors_ = inference_norm_factors(e_, {gamma_, beta_, mean_, var_}, eps_, channel);
}

llvm::Value* NormPrologue::apply(llvm::Value* xv) {
  assert(!factors_.empty());
  normalized_ = inference_normalize(e_, xv, factors_);
  return root_(ElementPos{{}, e_.i64c(0), nullptr});
}

llvm::Value* NormPrologue::at(llvm::Value* flat, llvm::Value* mask) {
  return apply(load_vector(e_, x_, flat, mask, llvm::Constant::getNullValue(e_.vf)));
}

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

  llvm::Value* x = arg(0);
  llvm::Value* shifted = x;  // the statistics are sums around x's first element, but for these:
  if (n.op == Op::channel_mean || n.op == Op::batchnorm_infer) shifted = nullptr;
  const Norm::Extra extra = sibling < 0                        ? Norm::Extra::none
                            : n.op == Op::batchnorm_grad_gamma ? Norm::Extra::dbeta
                                                               : Norm::Extra::mean;
  ChannelWork w;
  switch (n.op) {
    case Op::channel_mean:
      w = nm.mean(x);
      w.finish = [&](const Stats& s) {
        nm.store_channel(ep, nm.mean_of(s[0]));
        return Stats{};
      };
      break;
    case Op::channel_var:
      w = nm.stats(x, nullptr, extra);
      w.finish = [&](const Stats& s) {
        const Norm::Moments st = nm.moments(s, false, extra);
        nm.store_channel(ep, st.var);
        if (sibling >= 0) nm.store_sibling(kf.args[1], nm.narrow(nm.mean_of(st.sum_x)));
        return Stats{};
      };
      break;
    case Op::batchnorm_train:
      w = nm.normalize(nm.stats(x, nullptr), x, arg(1), arg(2), [&](const Stats& s) {
        const Norm::Moments st = nm.moments(s, false, extra);
        return std::pair{st.mean, nm.rstd(st.var, eps)};
      });
      break;
    case Op::batchnorm_infer:
      w = nm.normalize(ChannelWork{}, x, arg(1), arg(2), [&](const Stats&) {
        return std::pair{nm.param(arg(3)), nm.rstd(nm.param(arg(4)), eps)};
      });
      break;
    case Op::batchnorm_grad_gamma:
      w = nm.grad_gamma(x, arg(1), eps, extra, [&](llvm::Value* dgamma, llvm::Value* dbeta) {
        nm.store_channel(ep, dgamma);
        if (dbeta) nm.store_sibling(kf.args[1], dbeta);
      });
      break;
    case Op::batchnorm_backward: {
      // dx = gamma rstd (dy - sum(dy)/M - (x - mean) rstd^2 sum(dy (x - mean))/M): the factors
      // gamma rstd, sum(dy)/M, rstd^2 sum(dy (x - mean))/M and the mean, then dx per element.
      llvm::Value* dy = arg(2);
      w = nm.stats(x, dy);
      w.finish = [&](const Stats& s) {
        const Norm::Moments st = nm.moments(s, true, extra);
        llvm::Value* rstd = nm.rstd(st.var, eps);
        return Stats{e.b.CreateFMul(nm.param(arg(1)), rstd), e.b.CreateFDiv(st.sum_dy, nm.f64c(m)),
                     e.b.CreateFDiv(e.b.CreateFMul(e.b.CreateFMul(st.sum_dy_xc, rstd), rstd), nm.f64c(m)), st.mean};
      };
      w.element = [&, dy](const ElementPos& pos, const std::vector<llvm::Value*>& f) {
        llvm::Value* xm = e.b.CreateFSub(nm.load(x, pos.flat, pos.mask), f[3]);
        llvm::Value* centered = e.b.CreateFSub(nm.load(dy, pos.flat, pos.mask), f[1]);
        return e.b.CreateFMul(f[0], e.fma(e.b.CreateFNeg(xm), f[2], centered));
      };
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
  // What the element pass streams, image by image as the sums do (prefetch_run_ahead).
  for (NodeId id : group.inputs)
    if (g.shape(id) == shape) w.element_reads.push_back(input_arg(kf, group, id));
  if (g.shape(group.root) == shape) w.element_writes.push_back(output_arg(kf, group, group.root));
  for (NodeId id : group.side_outputs)
    if (g.shape(id) == shape) w.element_writes.push_back(output_arg(kf, group, id));
  if (nm.lanes)
    sweep_lanes(nm, ep, w, kf.begin, kf.end, shifted);
  else
    sweep_blocks(nm, &ep, w, kf.begin, kf.end, shifted);
}

void emit_grad_gamma_beside(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group,
                            const PlaneWriter& write_plane) {
  const Node& n = g.node(group.root);
  assert(n.op == Op::batchnorm_grad_gamma && !channels_in_lanes(g.shape(n.operands[0])));
  Norm nm{e, channel_dims(g.shape(n.operands[0])), llvm::Type::getDoubleTy(e.ctx), nullptr};
  nm.vd = llvm::FixedVectorType::get(nm.f64, e.width);
  // dbeta: the side output that is a statistic (the others are dy and what assigns read).
  NodeId dbeta = -1;
  for (NodeId id : group.side_outputs)
    if (g.node(id).op == Op::reduce_sum) dbeta = id;
  llvm::Value* x = input_arg(kf, group, n.operands[0]);
  ChannelWork w = nm.grad_gamma(x, output_arg(kf, group, n.operands[1]), n.attrs.f("eps"),
                                dbeta >= 0 ? Norm::Extra::dbeta : Norm::Extra::none,
                                [&](llvm::Value* dgamma, llvm::Value* dbeta_sum) {
                                  nm.store_sibling(kf.args[0], nm.narrow(dgamma));
                                  if (dbeta_sum) nm.store_sibling(output_arg(kf, group, dbeta), dbeta_sum);
                                });
  w.before_run = [&](llvm::Value* image) { write_plane(image, nm.c); };
  sweep_blocks(nm, nullptr, w, kf.begin, kf.end, x);
}

}  // namespace dagger
