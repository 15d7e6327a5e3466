#pragma once
/// Internal to codegen/: what every emitter shares while building one kernel. All element
/// values are <W x float> vectors (W = the host's vector width); positions are i64.
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dagger/runtime/conv_algo.h"

namespace dagger {

struct Emit {
  Emit(llvm::Module& module, unsigned width);

  llvm::Module& module;
  llvm::LLVMContext& ctx;
  llvm::IRBuilder<> b;
  unsigned width;
  /// The plan's worker threads: a kernel with too few natural items splits its work finer.
  int threads = 1;
  /// How 3x3 stride-1 same convolutions are computed (codegen/conv_algo.h).
  ConvAlgo conv_algo = ConvAlgo::automatic;
  /// Dense layers keep their weight matrix packed between calls (JitOptions::keep_packed_parameters).
  bool keep_packed_parameters = false;
  /// Dense layers' products take their operands in bfloat16 (JitOptions::precision).
  bool bf16 = false;
  /// Whether LLVM's loop unrolling may unroll this kernel's loops; false marks each loop
  /// `llvm.loop.unroll.disable`.
  bool llvm_unrolls = true;
  llvm::Type* f32;
  llvm::Type* i32;
  llvm::Type* i64;
  llvm::Type* ptr;
  llvm::VectorType* vf;  // <W x float>
  llvm::VectorType* vi;  // <W x i32>

  /// A <W x float> with every lane `v`.
  llvm::Value* splat(float v);
  /// A scalar float constant.
  llvm::Value* f32c(float v);
  /// A <W x i32> with every lane `v`.
  llvm::Value* splat_i32(uint32_t v);
  llvm::Value* i64c(int64_t v);
  /// <0, 1, ..., W-1> as i32 lanes.
  llvm::Value* lane_ids();
  /// The integer `index` (i64, or already i32) in every lane, as i32.
  llvm::Value* lanes_of(llvm::Value* index);
  /// Per lane, 0 <= a < bound, for signed i32 lanes (which lanes of an index vector are inside).
  llvm::Value* lanes_within(llvm::Value* a, int64_t bound);
  /// A <W x i1> whose first `active` lanes are set; nullptr when all W are (no mask needed).
  llvm::Value* prefix_mask(unsigned active);
  /// An overloaded intrinsic keyed on its first argument's type (exp, fma, sqrt, ...).
  llvm::Value* intrinsic(llvm::Intrinsic::ID id, std::vector<llvm::Value*> args);
  /// fma(a, b, c) = a * b + c with one rounding.
  llvm::Value* fma(llvm::Value* a, llvm::Value* b, llvm::Value* c);
  /// Lanes of `x` where `keep` is set, `other` elsewhere; NaN-preserving clamps use this.
  llvm::Value* select(llvm::Value* keep, llvm::Value* x, llvm::Value* other) { return b.CreateSelect(keep, x, other); }
};

/// A kernel's entry point: `void name(float* const* args, i64 begin, i64 end)`, so the plan
/// calls every kernel the same way. A kernel's work is a row of independent items (its
/// parallel extent, see CompiledKernel); a call computes items [begin, end), and the plan
/// hands each worker thread its own static slice. The body is an internal function taking
/// the pointers as noalias arguments (buffers never overlap), inlined into the entry.
struct KernelFunction {
  llvm::Function* body;
  std::vector<llvm::Value*> args;  // the body's pointer arguments
  llvm::Value* begin;              // i64: the first item this call computes
  llvm::Value* end;                // i64: one past the last
};

/// Declares `name` and its body with `num_args` buffer pointers and leaves the builder at
/// the start of the body.
KernelFunction begin_kernel(Emit& e, const std::string& name, int num_args);
/// Terminates the body.
void end_kernel(Emit& e);

}  // namespace dagger
