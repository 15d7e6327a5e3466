#include "dagger/codegen/emit_context.h"

#include <llvm/IR/Constants.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/Intrinsics.h>

namespace dagger {

Emit::Emit(llvm::Module& m, unsigned w)
    : module(m),
      ctx(m.getContext()),
      b(m.getContext()),
      width(w),
      f32(llvm::Type::getFloatTy(ctx)),
      i32(llvm::Type::getInt32Ty(ctx)),
      i64(llvm::Type::getInt64Ty(ctx)),
      ptr(llvm::PointerType::get(ctx, 0)),
      vf(llvm::FixedVectorType::get(f32, w)),
      vi(llvm::FixedVectorType::get(i32, w)) {}

llvm::Value* Emit::splat(float v) { return llvm::ConstantFP::get(vf, v); }

llvm::Value* Emit::f32c(float v) { return llvm::ConstantFP::get(f32, v); }

llvm::Value* Emit::splat_i32(uint32_t v) { return llvm::ConstantInt::get(vi, v); }

llvm::Value* Emit::i64c(int64_t v) { return llvm::ConstantInt::get(i64, v, true); }

llvm::Value* Emit::lane_ids() {
  std::vector<llvm::Constant*> lanes;
  for (unsigned l = 0; l < width; ++l) lanes.push_back(llvm::ConstantInt::get(i32, l));
  return llvm::ConstantVector::get(lanes);
}

llvm::Value* Emit::lanes_of(llvm::Value* index) { return b.CreateVectorSplat(width, b.CreateTrunc(index, i32)); }

llvm::Value* Emit::lanes_within(llvm::Value* a, int64_t bound) {
  return b.CreateAnd(b.CreateICmpSGE(a, splat_i32(0)),
                     b.CreateICmpSLT(a, splat_i32(static_cast<uint32_t>(static_cast<int32_t>(bound)))));
}

llvm::Value* Emit::prefix_mask(unsigned active) {
  if (active >= width) return nullptr;
  std::vector<llvm::Constant*> lanes;
  for (unsigned l = 0; l < width; ++l) lanes.push_back(llvm::ConstantInt::getBool(ctx, l < active));
  return llvm::ConstantVector::get(lanes);
}

llvm::Value* Emit::intrinsic(llvm::Intrinsic::ID id, std::vector<llvm::Value*> args) {
  llvm::Function* fn = llvm::Intrinsic::getDeclaration(&module, id, {args.front()->getType()});
  return b.CreateCall(fn, args);
}

llvm::Value* Emit::fma(llvm::Value* a, llvm::Value* x, llvm::Value* c) {
  return intrinsic(llvm::Intrinsic::fma, {a, x, c});
}

KernelFunction begin_kernel(Emit& e, const std::string& name, int num_args) {
  auto* void_ty = llvm::Type::getVoidTy(e.ctx);
  std::vector<llvm::Type*> params(static_cast<size_t>(num_args), e.ptr);
  params.push_back(e.i64);
  params.push_back(e.i64);
  auto* body = llvm::Function::Create(llvm::FunctionType::get(void_ty, params, false), llvm::Function::InternalLinkage,
                                      name + ".body", e.module);
  body->addFnAttr(llvm::Attribute::AlwaysInline);
  body->addFnAttr(llvm::Attribute::NoUnwind);
  for (int k = 0; k < num_args; ++k) {
    body->getArg(static_cast<unsigned>(k))->addAttr(llvm::Attribute::NoAlias);
    body->getArg(static_cast<unsigned>(k))->addAttr(llvm::Attribute::NoCapture);
  }

  // The entry point unpacks the argument array and calls the body.
  auto* entry = llvm::Function::Create(llvm::FunctionType::get(void_ty, {e.ptr, e.i64, e.i64}, false),
                                       llvm::Function::ExternalLinkage, name, e.module);
  entry->addFnAttr(llvm::Attribute::NoUnwind);
  e.b.SetInsertPoint(llvm::BasicBlock::Create(e.ctx, "entry", entry));
  std::vector<llvm::Value*> pointers;
  for (int k = 0; k < num_args; ++k) {
    llvm::Value* slot = e.b.CreateConstInBoundsGEP1_64(e.ptr, entry->getArg(0), static_cast<uint64_t>(k));
    pointers.push_back(e.b.CreateLoad(e.ptr, slot));
  }
  pointers.push_back(entry->getArg(1));
  pointers.push_back(entry->getArg(2));
  e.b.CreateCall(body, pointers);
  e.b.CreateRetVoid();

  e.b.SetInsertPoint(llvm::BasicBlock::Create(e.ctx, "entry", body));
  KernelFunction kf{body, {}, body->getArg(static_cast<unsigned>(num_args)),
                    body->getArg(static_cast<unsigned>(num_args + 1))};
  for (int k = 0; k < num_args; ++k) kf.args.push_back(body->getArg(static_cast<unsigned>(k)));
  return kf;
}

void end_kernel(Emit& e) { e.b.CreateRetVoid(); }

}  // namespace dagger
