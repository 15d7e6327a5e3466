#include "dagger/codegen/loops.h"

#include <llvm/IR/Constants.h>
#include <llvm/IR/IntrinsicsX86.h>
#include <llvm/IR/Metadata.h>

#include <cassert>

#include "dagger/codegen/iteration.h"

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

using LoopBody = std::function<std::vector<llvm::Value*>(llvm::Value*, const std::vector<llvm::Value*>&)>;

/// for (i = begin; i < end; i += step) carrying `carried`. With `guarded`, the loop is skipped
/// when begin >= end and the values come out unchanged; without, the caller knows it runs at
/// least once, and the last iteration's values are returned.
std::vector<llvm::Value*> build_loop(Emit& e, llvm::Value* begin, llvm::Value* end, int64_t step,
                                     const std::vector<llvm::Value*>& carried, const LoopBody& body, bool guarded) {
  llvm::Function* fn = e.b.GetInsertBlock()->getParent();
  llvm::BasicBlock* preheader = e.b.GetInsertBlock();
  llvm::BasicBlock* header = llvm::BasicBlock::Create(e.ctx, "loop", fn);
  llvm::BasicBlock* exit = llvm::BasicBlock::Create(e.ctx, "loop.end", fn);
  if (guarded)
    e.b.CreateCondBr(e.b.CreateICmpSLT(begin, end), header, exit);
  else
    e.b.CreateBr(header);
  e.b.SetInsertPoint(header);

  llvm::PHINode* iv = e.b.CreatePHI(e.i64, 2, "i");
  iv->addIncoming(begin, preheader);
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
  llvm::BranchInst* back = e.b.CreateCondBr(e.b.CreateICmpSLT(next, end), header, exit);
  if (!e.llvm_unrolls) {
    llvm::LLVMContext& ctx = e.ctx;
    llvm::MDNode* disable = llvm::MDNode::get(ctx, llvm::MDString::get(ctx, "llvm.loop.unroll.disable"));
    llvm::MDNode* loop = llvm::MDNode::getDistinct(ctx, {nullptr, disable});
    loop->replaceOperandWith(0, loop);
    back->setMetadata(llvm::LLVMContext::MD_loop, loop);
  }
  e.b.SetInsertPoint(exit);
  if (!guarded) return out;  // values computed in the last iteration dominate the exit
  std::vector<llvm::Value*> result;  // the last iteration's values, or the incoming ones
  for (size_t k = 0; k < carried.size(); ++k) {
    llvm::PHINode* merged = e.b.CreatePHI(carried[k]->getType(), 2);
    merged->addIncoming(carried[k], preheader);
    merged->addIncoming(out[k], latch);
    result.push_back(merged);
  }
  return result;
}

}  // namespace

std::vector<llvm::Value*> emit_loop(Emit& e, int64_t count, int64_t step, std::vector<llvm::Value*> carried,
                                    const LoopBody& body) {
  if (count <= 0) return carried;
  if (count <= step) return body(e.i64c(0), carried);
  return build_loop(e, e.i64c(0), e.i64c(count), step, carried, body, false);
}

void emit_for(Emit& e, int64_t count, int64_t step, const std::function<void(llvm::Value*)>& body) {
  emit_loop(e, count, step, {}, [&](llvm::Value* i, const std::vector<llvm::Value*>&) {
    body(i);
    return std::vector<llvm::Value*>{};
  });
}

std::vector<llvm::Value*> emit_range_loop(Emit& e, llvm::Value* begin, llvm::Value* end,
                                          std::vector<llvm::Value*> carried, const LoopBody& body) {
  return build_loop(e, begin, end, 1, carried, body, true);
}

void emit_range(Emit& e, llvm::Value* begin, llvm::Value* end, const std::function<void(llvm::Value*)>& body) {
  emit_range_loop(e, begin, end, {}, [&](llvm::Value* i, const std::vector<llvm::Value*>&) {
    body(i);
    return std::vector<llvm::Value*>{};
  });
}

void emit_if(Emit& e, llvm::Value* cond, const std::function<void()>& then) { emit_if_else(e, cond, then, nullptr); }

void emit_if_else(Emit& e, llvm::Value* cond, const std::function<void()>& then,
                  const std::function<void()>& otherwise) {
  llvm::Function* fn = e.b.GetInsertBlock()->getParent();
  llvm::BasicBlock* yes = llvm::BasicBlock::Create(e.ctx, "then", fn);
  llvm::BasicBlock* no = otherwise ? llvm::BasicBlock::Create(e.ctx, "else", fn) : nullptr;
  llvm::BasicBlock* done = llvm::BasicBlock::Create(e.ctx, "endif", fn);
  e.b.CreateCondBr(cond, yes, no ? no : done);
  e.b.SetInsertPoint(yes);
  then();
  e.b.CreateBr(done);
  if (no) {
    e.b.SetInsertPoint(no);
    otherwise();
    e.b.CreateBr(done);
  }
  e.b.SetInsertPoint(done);
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

int64_t nest_items(const Shape& dims) {
  for (int64_t d : dims)
    if (d <= 0) return 0;
  if (dims.size() > 1) return dims[0];
  return (dims[0] + kChunkFloats - 1) / kChunkFloats;
}

void emit_vector_nest_items(Emit& e, const Shape& dims, llvm::Value* begin, llvm::Value* end,
                            const std::function<void(const ElementPos&)>& body) {
  if (nest_items(dims) == 0) return;
  if (dims.size() > 1) {
    const Shape inner(dims.begin() + 1, dims.end());
    const int64_t row = numel(inner);
    emit_range(e, begin, end, [&](llvm::Value* i) {
      emit_vector_nest(e, inner, [&](const ElementPos& at) {
        ElementPos pos = at;
        pos.coords.insert(pos.coords.begin(), i);
        pos.flat = e.b.CreateAdd(e.b.CreateMul(i, e.i64c(row)), at.flat);
        body(pos);
      });
    });
    return;
  }
  // A flat space: full chunks in the range loop, then the last, shorter chunk if this call owns it.
  const int64_t n = dims[0], full = n / kChunkFloats;
  auto chunk = [&](llvm::Value* c, int64_t size) {
    llvm::Value* start = e.b.CreateMul(c, e.i64c(kChunkFloats));
    emit_vector_nest(e, {size}, [&](const ElementPos& at) {
      ElementPos pos = at;
      pos.coords[0] = e.b.CreateAdd(start, at.coords[0]);
      pos.flat = pos.coords[0];
      body(pos);
    });
  };
  llvm::Value* full_end = e.b.CreateSelect(e.b.CreateICmpSLT(end, e.i64c(full)), end, e.i64c(full));
  emit_range(e, begin, full_end, [&](llvm::Value* c) { chunk(c, kChunkFloats); });
  if (n % kChunkFloats != 0) emit_if(e, e.b.CreateICmpSGT(end, e.i64c(full)), [&] { chunk(e.i64c(full), n % kChunkFloats); });
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
  if (pos.mask) {
    e.b.CreateMaskedStore(value, at, kFloatAlign, pos.mask);
  } else if (buf.streamed) {
    // Buffers are only float-aligned (kFloatAlign), so the alignment is tested where it runs.
    const int64_t bytes = e.width * 4;
    llvm::Value* aligned = e.b.CreateICmpEQ(e.b.CreateAnd(e.b.CreatePtrToInt(at, e.i64), e.i64c(bytes - 1)), e.i64c(0));
    emit_if_else(
        e, aligned,
        [&] {
          llvm::StoreInst* store = e.b.CreateAlignedStore(value, at, llvm::Align(static_cast<uint64_t>(bytes)));
          store->setMetadata(llvm::LLVMContext::MD_nontemporal,
                             llvm::MDNode::get(e.ctx, llvm::ConstantAsMetadata::get(e.b.getInt32(1))));
        },
        [&] { e.b.CreateAlignedStore(value, at, kFloatAlign); });
  } else {
    e.b.CreateAlignedStore(value, at, kFloatAlign);
  }
}

void store_fence(Emit& e) {
  e.b.CreateCall(llvm::Intrinsic::getDeclaration(&e.module, llvm::Intrinsic::x86_sse_sfence));
}

}  // namespace dagger
