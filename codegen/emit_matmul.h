#pragma once
/// Internal to codegen/: the matmul kernel, C[M,N] = op(A) op(B) (+ an elementwise epilogue),
/// specialized to its static sizes with a register-tiled microkernel.
#include <cstdint>
#include <string>

#include "codegen/fusion.h"
#include "codegen/loops.h"

namespace dagger {

/// Floats of scratch the group's kernel (for vectors of `width` floats) needs as its last argument; 0 when it takes
/// none. The scratch holds op(B) repacked into contiguous column panels and must be zeroed once before the first call
/// (the panels' padding is read but never written).
int64_t matmul_scratch_floats(const Graph& g, const FusionGroup& group, unsigned width);

/// Emits kernel `name` for a group anchored on a matmul. Arguments: the root's output, then
/// group.inputs (A, B, the epilogue's inputs), then the scratch buffer if it needs one. The
/// epilogue (the group's elementwise nodes) is applied to each accumulator vector before its
/// store, so the matmul's own result never goes to memory.
void emit_matmul_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

}  // namespace dagger
