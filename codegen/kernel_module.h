#pragma once
/// Internal to codegen/: the LLVM side of a module handed from an emitter to the Jit. Each
/// module owns its context, so kernels can be built and compiled independently.
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <memory>

#include "dagger/codegen/jit.h"

namespace dagger {

struct KernelModule {
  std::unique_ptr<llvm::LLVMContext> context;
  std::unique_ptr<llvm::Module> module;
};

}  // namespace dagger
