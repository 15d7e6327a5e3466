#pragma once
/// Internal to codegen/: the register tile of the GEMM microkernel (codegen/emit_gemm.h).
#include <cstdint>

namespace dagger {

/// The microkernel's register tile for vectors of `width` floats: `rows` x `vectors` vector
/// accumulators, sized so that they, one B vector per column vector and one broadcast of A
/// fit in the register file. `wide` asks for more columns and fewer rows where the register
/// file allows it (AVX-512). `columns`, where given (> 0), is the product's N: one or two
/// vectors of them get a tile of that many vectors and more rows (AVX-512).
struct RegisterTile {
  int rows = 0, vectors = 0;
};
RegisterTile register_tile(unsigned width, bool wide = false, int64_t columns = 0);

}  // namespace dagger
