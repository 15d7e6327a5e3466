#pragma once
/// Internal to codegen/: the matmul kernel, C[M,N] = op(A) op(B) (+ an elementwise epilogue),
/// specialized to its static sizes with a register-tiled microkernel.
#include <cstdint>
#include <string>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/emit_gemm.h"

namespace dagger {

/// The tiling of the group's matmul under e's width, threads and precision: its parallel items
/// and the scratch (packed panels of op(B), a packed A) each thread passes as the kernel's last
/// argument; none where B is read in place and A is not packed (GemmLayout::b_in_place).
GemmLayout matmul_layout(const Graph& g, const FusionGroup& group, const Emit& e);

/// The floats of the packed B the group's kernel keeps between calls when emitted with
/// Emit::keep_packed_parameters, or 0 when it keeps none: B must be a parameter that the graph
/// never assigns (an inference plan's weights), and the layout must have one item per group of
/// panels (kept_b_usable).
int64_t matmul_kept_b_floats(const Graph& g, const FusionGroup& group, const Emit& e);

/// Emits kernel `name` for a group anchored on a matmul. Arguments: the root's output, then
/// group.inputs (A, B, the epilogue's inputs), then the scratch where the layout has one; where
/// e.keep_packed_parameters and matmul_kept_b_floats is not 0, two more: the kept packed B
/// (GemmProblem::kept_b) and a pointer that is not null when B must be packed again. The
/// epilogue (the group's elementwise nodes) is applied to each accumulator vector before its
/// store, so the matmul's own result never goes to memory.
void emit_matmul_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

}  // namespace dagger
