#pragma once
/// Lowering: each fusion group becomes one LLVM module holding one kernel, compiled by the Jit.
#include <cstdint>
#include <string>
#include <vector>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit.h"
#include "dagger/runtime/precision.h"

namespace dagger {

/// Every kernel has this entry: its buffers, outputs first (see the emitters for the order),
/// and the range [begin, end) of its parallel items to compute.
using KernelEntry = void (*)(float* const* args, int64_t begin, int64_t end);

struct CompiledKernel {
  std::string name;
  FusionGroup group;
  KernelEntry entry = nullptr;
  int64_t items = 1;           // parallel items; any split of [0, items) gives the same result
  int64_t scratch_floats = 0;  // when nonzero the kernel takes one more buffer of this size, one per thread
  double work = 0;             // a rough cost per item (floats touched or FLOPs), to decide whether to split
  /// When nonzero, two more arguments after the scratch: the plan's buffer of this many floats
  /// holding the kernel's packed B between runs, and a pointer that is not null when the
  /// kernel must pack B there again (emit_matmul.h).
  int64_t kept_b_floats = 0;
};

/// Emits, optimizes and compiles a kernel for every group of `plan`, with vectors of `width` floats,
/// for a plan that runs on `threads` workers, computing 3x3 stride-1 same convolutions as
/// `conv_algo` says (codegen/conv_algo.h), dense layers keeping their packed weights between
/// runs where `keep_packed_parameters`, their products in `precision` (JitOptions).
std::vector<CompiledKernel> compile_groups(Jit& jit, const Graph& g, const FusionPlan& plan, unsigned width,
                                           int threads, ConvAlgo conv_algo, bool keep_packed_parameters,
                                           Precision precision);

}  // namespace dagger
