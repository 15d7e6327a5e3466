#pragma once
/// Internal to codegen/: the matmul kernel, C[M,N] = op(A) op(B) (+ an elementwise epilogue),
/// specialized to its static sizes with a register-tiled microkernel.
#include <cstdint>
#include <string>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/emit_gemm.h"

namespace dagger {

/// The tiling of the group's matmul: its parallel items and the scratch (one packed panel of
/// op(B)) each thread passes as the kernel's last argument.
GemmLayout matmul_layout(const Graph& g, const FusionGroup& group, unsigned width, int threads);

/// Emits kernel `name` for a group anchored on a matmul. Arguments: the root's output, then
/// group.inputs (A, B, the epilogue's inputs), then the scratch panel. The
/// epilogue (the group's elementwise nodes) is applied to each accumulator vector before its
/// store, so the matmul's own result never goes to memory.
void emit_matmul_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

}  // namespace dagger
