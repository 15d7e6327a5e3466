#pragma once
/// Internal to codegen/: the register tile of the GEMM microkernel (codegen/emit_gemm.h).
namespace dagger {

/// The microkernel's register tile for vectors of `width` floats: `rows` x `vectors` vector
/// accumulators, sized so that they, one B vector per column vector and one broadcast of A
/// fit in the register file. `wide` asks for more columns and fewer rows where the register
/// file allows it (AVX-512); `tall`, for a product of at most one vector of columns, more
/// rows of that one vector (AVX-512).
struct RegisterTile {
  int rows = 0, vectors = 0;
};
RegisterTile register_tile(unsigned width, bool wide = false, bool tall = false);

}  // namespace dagger
