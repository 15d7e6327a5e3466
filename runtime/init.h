#pragma once
/// Creating parameters and states from their declared initializers, and converting whole
/// state maps between float (training) and double (gradient checks).
#include <cstdint>

#include "dagger/graph/graph.h"
#include "dagger/runtime/interpreter.h"

namespace dagger {

/// Creates every parameter and state of `g` that `state` does not hold yet, from the node's
/// `init` attribute: "zeros", "ones", "glorot_uniform" (U(-l, l), l = sqrt(6 / (fan_in +
/// fan_out))) or "he_uniform" (l = sqrt(6 / fan_in)). Entries already present are kept, so a
/// restored checkpoint wins. Values depend only on (seed, name), identically on every platform.
void initialize_state(const Graph& g, TensorMap<float>& state, uint64_t seed);

/// Every tensor widened to double.
TensorMap<double> to_double(const TensorMap<float>& m);
/// Every tensor rounded to float.
TensorMap<float> to_float(const TensorMap<double>& m);

}  // namespace dagger
