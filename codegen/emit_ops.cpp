#include "dagger/codegen/emit_ops.h"

#include <fmt/format.h>
#include <llvm/IR/Constants.h>

#include <algorithm>
#include <cassert>

#include "dagger/codegen/emit_elementwise.h"
#include "dagger/codegen/iteration.h"

namespace dagger {

namespace {

const llvm::Align kFloatAlign(4);

/// The error for a group whose anchor has no kernel here (lowering chose the wrong emitter).
Error no_op_kernel(const Graph& g, NodeId anchor) {
  return Error(fmt::format("internal error: codegen/emit_ops has no kernel for %{} ({})", anchor,
                           op_info(g.node(anchor).op).name));
}

/// Whether `operand` (broadcast to `out`) reads out's axes from `keep` on as one axis:
/// either all of them (then contiguously, stride 1) or none (stride 0).
enum class TailRead { whole, none, mixed };

TailRead tail_read(const Shape& operand, const Shape& out, size_t keep) {
  const std::vector<int64_t> s = broadcast_strides(operand, out);
  bool any = false, all = true;
  for (size_t d = keep; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    if (s[d] != 0)
      any = true;
    else
      all = false;
  }
  if (!any) return TailRead::none;
  return all ? TailRead::whole : TailRead::mixed;
}

}  // namespace

OpKernelLayout op_kernel_layout(const Graph& g, const FusionGroup& group, unsigned width) {
  const NodeId anchor = group.anchor;
  switch (kernel_family(g.node(anchor).op)) {
    case KernelFamily::pool:
      return pool_layout(g, group);
    case KernelFamily::norm:
      return norm_layout(g, anchor, width);
    case KernelFamily::softmax:
      return softmax_layout(g, anchor);
    case KernelFamily::reduce:
      return reduce_layout(g, anchor, width);
    case KernelFamily::layout:
      return layout_copy_layout(g, anchor);
    case KernelFamily::none:
    case KernelFamily::elementwise:
    case KernelFamily::matmul:
    case KernelFamily::conv:
      break;
  }
  throw no_op_kernel(g, anchor);
}

void emit_op_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group) {
  KernelFunction kf = begin_kernel(e, name, static_cast<int>(first_input_arg(group) + group.inputs.size()));
  switch (kernel_family(g.node(group.anchor).op)) {
    case KernelFamily::pool:
      emit_pool_kernel(e, kf, g, group);
      break;
    case KernelFamily::norm:
      emit_norm_kernel(e, kf, g, group);
      break;
    case KernelFamily::softmax:
      emit_softmax_kernel(e, kf, g, group);
      break;
    case KernelFamily::reduce:
      emit_reduce_kernel(e, kf, g, group);
      break;
    case KernelFamily::layout:
      emit_layout_kernel(e, kf, g, group);
      break;
    case KernelFamily::none:
    case KernelFamily::elementwise:
    case KernelFamily::matmul:
    case KernelFamily::conv:
      throw no_op_kernel(g, group.anchor);
  }
  end_kernel(e);
}

llvm::Value* operand_arg(const KernelFunction& kf, const Graph& g, const FusionGroup& group, size_t k) {
  return input_arg(kf, group, g.node(group.anchor).operands[k]);
}

llvm::Value* input_arg(const KernelFunction& kf, const FusionGroup& group, NodeId id) {
  const auto input = std::find(group.inputs.begin(), group.inputs.end(), id);
  assert(input != group.inputs.end());
  return kf.args[first_input_arg(group) + static_cast<size_t>(input - group.inputs.begin())];
}

llvm::Value* output_arg(const KernelFunction& kf, const FusionGroup& group, NodeId id) {
  if (id == group.root) return kf.args[0];
  const auto side = std::find(group.side_outputs.begin(), group.side_outputs.end(), id);
  assert(side != group.side_outputs.end());
  return kf.args[1 + static_cast<size_t>(side - group.side_outputs.begin())];
}

Epilogue::Epilogue(Emit& e, const Graph& g, const FusionGroup& group, const KernelFunction& kf, size_t keep,
                   ElementGen recomputed)
    : e_(e) {
  const Shape& out = g.shape(group.anchor);
  assert(g.shape(group.root) == out && keep <= out.size());
  // The values the epilogue reads: operands of its nodes computed outside the group.
  std::vector<NodeId> reads;
  for (NodeId id : group.nodes) {
    if (id == group.anchor) continue;
    for (NodeId o : g.node(id).operands)
      if (!std::binary_search(group.nodes.begin(), group.nodes.end(), o)) reads.push_back(o);
  }
  bool merge = out.size() > keep;
  for (NodeId id : reads) merge = merge && tail_read(g.shape(id), out, keep) != TailRead::mixed;

  view_.assign(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep));
  if (out.size() == keep)
    tail_ = {1};
  else if (merge)
    tail_ = {numel(Shape(out.begin() + static_cast<std::ptrdiff_t>(keep), out.end()))};
  else
    tail_.assign(out.begin() + static_cast<std::ptrdiff_t>(keep), out.end());
  view_.insert(view_.end(), tail_.begin(), tail_.end());

  auto view_strides = [&](const Shape& operand) {
    const std::vector<int64_t> s = broadcast_strides(operand, out);
    std::vector<int64_t> v(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(keep));
    if (out.size() == keep)
      v.push_back(0);
    else if (merge)
      v.push_back(tail_read(operand, out, keep) == TailRead::whole ? 1 : 0);
    else
      v.insert(v.end(), s.begin() + static_cast<std::ptrdiff_t>(keep), s.end());
    return v;
  };
  auto input = [&](NodeId id) -> ElementGen {
    if (id == group.anchor) return [this](const ElementPos&) { return current_; };
    if (!group.prologue.empty() && id == group.prologue.back()) {
      assert(recomputed);
      return recomputed;
    }
    const auto slot = std::find(group.inputs.begin(), group.inputs.end(), id);
    assert(slot != group.inputs.end());
    StridedBuffer buf{kf.args[first_input_arg(group) + static_cast<size_t>(slot - group.inputs.begin())],
                      view_strides(g.shape(id))};
    return [&e, buf](const ElementPos& pos) { return load_at(e, buf, pos); };
  };
  outputs_ = compose_group(e, g, group, input);
  for (size_t o = 0; o < outputs_.size(); ++o) out_.push_back(StridedBuffer{kf.args[o], contiguous_strides(view_)});
}

void Epilogue::for_each(const std::vector<llvm::Value*>& outer,
                        const std::function<llvm::Value*(const ElementPos&)>& value) {
  assert(outer.size() + tail_.size() == view_.size());
  const std::vector<int64_t> strides = contiguous_strides(view_);
  llvm::Value* base = e_.i64c(0);
  for (size_t d = 0; d < outer.size(); ++d) base = e_.b.CreateAdd(base, e_.b.CreateMul(outer[d], e_.i64c(strides[d])));
  emit_vector_nest(e_, tail_, [&](const ElementPos& at) {
    ElementPos pos = at;
    pos.coords = outer;
    pos.coords.insert(pos.coords.end(), at.coords.begin(), at.coords.end());
    pos.flat = e_.b.CreateAdd(base, at.flat);
    store(pos, value(pos));
  });
}

void Epilogue::store(const ElementPos& pos, llvm::Value* value) {
  current_ = value;
  for (size_t o = 0; o < outputs_.size(); ++o) store_at(e_, out_[o], pos, outputs_[o](pos));
}

llvm::Value* load_vector(Emit& e, llvm::Value* base, llvm::Value* offset, llvm::Value* mask, llvm::Value* passthru) {
  llvm::Value* at = e.b.CreateInBoundsGEP(e.f32, base, offset);
  if (!mask) return e.b.CreateAlignedLoad(e.vf, at, kFloatAlign);
  return e.b.CreateMaskedLoad(e.vf, at, kFloatAlign, mask, passthru);
}

llvm::Value* gather_at(Emit& e, llvm::Value* base, llvm::Value* offset, llvm::Value* index, llvm::Value* mask) {
  llvm::Value* at = e.b.CreateInBoundsGEP(e.f32, base, offset);
  if (!mask) mask = llvm::ConstantInt::getTrue(llvm::FixedVectorType::get(llvm::Type::getInt1Ty(e.ctx), e.width));
  llvm::Value* safe = e.b.CreateSelect(mask, index, llvm::Constant::getNullValue(index->getType()));
  llvm::Value* pointers =
      e.b.CreateInBoundsGEP(e.f32, at, e.b.CreateSExt(safe, llvm::FixedVectorType::get(e.i64, e.width)));
  return e.b.CreateMaskedGather(e.vf, pointers, kFloatAlign, mask, llvm::Constant::getNullValue(e.vf));
}

llvm::Value* entry_slot(Emit& e, llvm::Type* type, llvm::Value* init) {
  llvm::Function* fn = e.b.GetInsertBlock()->getParent();
  llvm::IRBuilder<> at(&fn->getEntryBlock(), fn->getEntryBlock().begin());
  llvm::Value* slot = at.CreateAlloca(type);
  e.b.CreateStore(init, slot);
  return slot;
}

std::vector<llvm::Value*> unflatten(Emit& e, llvm::Value* flat, const Shape& dims) {
  std::vector<llvm::Value*> coords(dims.size());
  llvm::Value* rest = flat;
  for (size_t d = dims.size(); d-- > 0;) {
    if (d == 0) {
      coords[d] = rest;
    } else if (dims[d] == 1) {
      coords[d] = e.i64c(0);
    } else {
      coords[d] = e.b.CreateURem(rest, e.i64c(dims[d]));
      rest = e.b.CreateUDiv(rest, e.i64c(dims[d]));
    }
  }
  return coords;
}

llvm::Value* load_scalar(Emit& e, llvm::Value* base, llvm::Value* offset) {
  return e.b.CreateAlignedLoad(e.f32, e.b.CreateInBoundsGEP(e.f32, base, offset), kFloatAlign);
}

void prefetch_floats(Emit& e, llvm::Value* base, llvm::Value* start, int64_t floats, bool for_write) {
  constexpr int64_t kLineFloats = 16;
  for (int64_t f = 0; f < floats + kLineFloats - 1; f += kLineFloats)
    e.intrinsic(llvm::Intrinsic::prefetch,
                {e.b.CreateInBoundsGEP(e.f32, base, e.b.CreateAdd(start, e.i64c(std::min(f, floats - 1)))),
                 e.b.getInt32(for_write ? 1 : 0), e.b.getInt32(3), e.b.getInt32(1)});
}

unsigned active_lanes(Emit& e, llvm::Value* mask) {
  if (!mask) return e.width;
  auto* constant = llvm::cast<llvm::Constant>(mask);
  unsigned active = 0;
  for (unsigned l = 0; l < e.width; ++l) active += constant->getAggregateElement(l)->isOneValue() ? 1 : 0;
  return active;
}

}  // namespace dagger
