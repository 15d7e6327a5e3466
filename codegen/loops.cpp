#include "codegen/loops.h"

#include <llvm/IR/Constants.h>

#include <cassert>

#include "codegen/iteration.h"

namespace dagger {

namespace {

/// Buffers come from xtensor and feeds: only float alignment is guaranteed.
const llvm::Align kFloatAlign(4);

/// sum(coords[d] * strides[d]), written without the multiplications by 1 and additions of 0
/// that would clutter the unoptimized IR dump.
llvm::Value* offset_of(Emit& e, const std::vector<int64_t>& strides, const ElementPos& pos) {
  llvm::Value* offset = nullptr;
  for (size_t d = 0; d < strides.size(); ++d) {
    if (strides[d] == 0) continue;
    llvm::Value* term = strides[d] == 1 ? pos.coords[d] : e.b.CreateMul(pos.coords[d], e.i64c(strides[d]));
    offset = offset ? e.b.CreateAdd(offset, term) : term;
  }
  return offset ? offset : e.i64c(0);
}

}  // namespace

std::vector<llvm::Value*> emit_loop(
    Emit& e, int64_t count, int64_t step, std::vector<llvm::Value*> carried,
    const std::function<std::vector<llvm::Value*>(llvm::Value*, const std::vector<llvm::Value*>&)>& body) {
  if (count <= 0) return carried;
  if (count <= step) return body(e.i64c(0), carried);

  llvm::Function* fn = e.b.GetInsertBlock()->getParent();
  llvm::BasicBlock* preheader = e.b.GetInsertBlock();
  llvm::BasicBlock* header = llvm::BasicBlock::Create(e.ctx, "loop", fn);
  llvm::BasicBlock* exit = llvm::BasicBlock::Create(e.ctx, "loop.end", fn);
  e.b.CreateBr(header);
  e.b.SetInsertPoint(header);

  llvm::PHINode* iv = e.b.CreatePHI(e.i64, 2, "i");
  iv->addIncoming(e.i64c(0), preheader);
  std::vector<llvm::PHINode*> phis;
  std::vector<llvm::Value*> inside;
  for (llvm::Value* v : carried) {
    phis.push_back(e.b.CreatePHI(v->getType(), 2));
    phis.back()->addIncoming(v, preheader);
    inside.push_back(phis.back());
  }

  std::vector<llvm::Value*> out = body(iv, inside);
  assert(out.size() == carried.size());
  llvm::Value* next = e.b.CreateAdd(iv, e.i64c(step), "i.next", true, true);
  llvm::BasicBlock* latch = e.b.GetInsertBlock();  // the body may have opened blocks of its own
  iv->addIncoming(next, latch);
  for (size_t k = 0; k < phis.size(); ++k) phis[k]->addIncoming(out[k], latch);
  e.b.CreateCondBr(e.b.CreateICmpSLT(next, e.i64c(count)), header, exit);
  e.b.SetInsertPoint(exit);
  return out;  // values computed in the last iteration dominate the exit
}

void emit_for(Emit& e, int64_t count, int64_t step, const std::function<void(llvm::Value*)>& body) {
  emit_loop(e, count, step, {}, [&](llvm::Value* i, const std::vector<llvm::Value*>&) {
    body(i);
    return std::vector<llvm::Value*>{};
  });
}

void emit_vector_nest(Emit& e, const Shape& dims, const std::function<void(const ElementPos&)>& body) {
  for (int64_t d : dims)
    if (d <= 0) return;
  const std::vector<int64_t> strides = contiguous_strides(dims);
  const size_t inner = dims.size() - 1;
  const int64_t w = e.width;

  std::vector<llvm::Value*> coords;
  std::function<void(size_t)> axis = [&](size_t d) {
    if (d < inner) {
      emit_for(e, dims[d], 1, [&](llvm::Value* i) {
        coords.push_back(i);
        axis(d + 1);
        coords.pop_back();
      });
      return;
    }
    auto at = [&](llvm::Value* j, llvm::Value* mask) {
      ElementPos pos;
      pos.coords = coords;
      pos.coords.push_back(j);
      pos.flat = offset_of(e, strides, pos);
      pos.mask = mask;
      body(pos);
    };
    const int64_t full = dims[inner] / w * w;
    emit_for(e, full, w, [&](llvm::Value* j) { at(j, nullptr); });
    if (full < dims[inner]) at(e.i64c(full), e.prefix_mask(static_cast<unsigned>(dims[inner] - full)));
  };
  axis(0);
}

llvm::Value* load_at(Emit& e, const StridedBuffer& buf, const ElementPos& pos) {
  llvm::Value* at = e.b.CreateInBoundsGEP(e.f32, buf.base, offset_of(e, buf.strides, pos));
  if (buf.strides.back() == 0) return e.b.CreateVectorSplat(e.width, e.b.CreateAlignedLoad(e.f32, at, kFloatAlign));
  assert(buf.strides.back() == 1);
  if (pos.mask) return e.b.CreateMaskedLoad(e.vf, at, kFloatAlign, pos.mask, llvm::Constant::getNullValue(e.vf));
  return e.b.CreateAlignedLoad(e.vf, at, kFloatAlign);
}

void store_at(Emit& e, const StridedBuffer& buf, const ElementPos& pos, llvm::Value* value) {
  assert(buf.strides.back() == 1);
  llvm::Value* at = e.b.CreateInBoundsGEP(e.f32, buf.base, offset_of(e, buf.strides, pos));
  if (pos.mask)
    e.b.CreateMaskedStore(value, at, kFloatAlign, pos.mask);
  else
    e.b.CreateAlignedStore(value, at, kFloatAlign);
}

}  // namespace dagger
