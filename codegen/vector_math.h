#pragma once
/// Internal to codegen/: transcendental functions and the dropout hash as straight-line
/// vector IR, so activations vectorize instead of calling libm once per lane. Each function
/// takes and returns <W x float> (the hash: <W x i32>) and handles inf, NaN and zero like libm.
#include <cstdint>

#include "dagger/codegen/emit_context.h"

namespace dagger {

/// e^x within about 2 ulp; overflows to inf, underflows through subnormals to 0.
llvm::Value* emit_exp(Emit& e, llvm::Value* x);
/// e^x - 1, accurate near 0 where exp(x) - 1 would cancel.
llvm::Value* emit_expm1(Emit& e, llvm::Value* x);
/// Natural log: -inf at 0, NaN below 0, subnormals handled.
llvm::Value* emit_log(Emit& e, llvm::Value* x);
/// tanh(x) = expm1(2x) / (expm1(2x) + 2), odd, accurate near 0.
llvm::Value* emit_tanh(Emit& e, llvm::Value* x);
/// 1 / (1 + e^-x), the interpreter's formula.
llvm::Value* emit_sigmoid(Emit& e, llvm::Value* x);

/// graph/random.h's dropout_hash(key, salt, index) lane by lane, in i32 arithmetic.
llvm::Value* emit_dropout_hash(Emit& e, llvm::Value* key, uint32_t salt, llvm::Value* index);
/// graph/random.h's dropout_keeps: lanes whose top 24 hash bits, as a fraction, are >= p.
llvm::Value* emit_dropout_keeps(Emit& e, llvm::Value* key, uint32_t salt, llvm::Value* index, float p);

}  // namespace dagger
