#pragma once
/// The arithmetic a caller may ask the JIT for. A header of its own so that the emitters need
/// not see the runtime.
#include <string>

namespace dagger {

/// `f32`: every product in float32. `bf16`: the dense layers' products (forward, data and
/// weight gradients) round their two operands to bfloat16 (8 significant bits, round to
/// nearest even) and accumulate in float32 with AVX512_BF16's dot product; parameters,
/// optimizer state, activations and every other op stay float32. Only where the CPU has
/// AVX512_BF16; convolutions stay float32.
enum class Precision { f32, bf16 };

/// "f32" | "bf16"; throws dagger::Error listing the valid names.
Precision precision(const std::string& name);
std::string precision_name(Precision p);

}  // namespace dagger
