#pragma once
/// The convolution algorithms a caller may ask the JIT for (the choice itself is made per layer
/// in codegen/conv_algo.h). A header of its own so that the emitters need not see the runtime.
#include <string>

namespace dagger {

/// How the JIT computes a 3x3, stride-1, "same" convolution product (forward, data or filter
/// gradient): `direct` as an implicit GEMM over every product, `winograd` by minimal filtering
/// (F(2x2,3x3), for the filter gradient F(3x3,2x2): 2.25x fewer multiplications, rounded
/// differently), `winograd4` the same with F(4x4,3x3) for the forward and data gradient (4x
/// fewer, larger transforms, rounded more coarsely), `auto` by the compiler's per-layer rule
/// (codegen/conv_algo.h). Other convolutions are always direct.
enum class ConvAlgo { direct, winograd, winograd4, automatic };

/// "direct" | "winograd" | "winograd4" | "auto"; throws dagger::Error listing the valid names.
ConvAlgo conv_algo(const std::string& name);
std::string conv_algo_name(ConvAlgo algo);

}  // namespace dagger
