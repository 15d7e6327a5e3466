#pragma once
/// Internal to codegen/: a 3x3, stride-1, pad-1 convolution product by Winograd's minimal
/// filtering F(m x m, 3x3) with m = 2 or 4 (Lavin and Gray, 2016). Each m x m block of outputs
/// ("tile") is
///
///   Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise over (m+2)^2 positions xi)
///
/// with d the (m+2)x(m+2) input patch around the tile and g the 3x3 filter: 16 products per
/// tile and channel pair instead of 36 for m = 2, 36 instead of 144 for m = 4 (the matrices:
/// codegen/winograd_transforms.h). Summed over input channels, each position is a GEMM,
/// M[xi][o, tile] = sum_i U[xi][o, i] V[xi][i, tile], run on the GEMM's register tile
/// (codegen/emit_gemm.h). The transforms are fused around it:
///   - the filter transform U = G g G^T once per call, packed in the microkernel's row tiles;
///   - the input transform V = B^T d B while packing a panel of tiles (a gather of each patch);
///   - the output transform A^T M A and the group's epilogue in the store: the tiles' m x m
///     outputs are reassembled into output rows by register shuffles (the lane pattern is
///     static), so the epilogue sees W consecutive positions as everywhere else.
/// A parallel item is (images, panel of tiles, chunk of output-channel row tiles); every output
/// is computed by one item in a fixed order, so the bits do not depend on the thread count.
#include <array>
#include <functional>
#include <vector>

#include "dagger/codegen/emit_gemm.h"
#include "dagger/codegen/winograd_layout.h"
#include "dagger/codegen/winograd_transforms.h"

namespace dagger {

/// Stores the finished outputs of image `b`, channel `o`, flat positions [j, j + W) (only the
/// lanes in `mask`) through the group's epilogue.
using StoreOutput =
    std::function<void(llvm::Value* b, llvm::Value* o, llvm::Value* j, llvm::Value* mask, llvm::Value* value)>;

/// Emits items [begin, end) of the product reading `input` ([n, in, h, w]) and `filter`.
void emit_winograd(Emit& e, const WinogradConv& v, llvm::Value* input, llvm::Value* filter, llvm::Value* begin,
                   llvm::Value* end, llvm::Value* scratch, const StoreOutput& store);

/// Emits items [begin, end) of the filter gradient (codegen/winograd_layout.h) dw ([k, c, 3, 3])
/// from `x` and `dy`.
void emit_winograd_filter(Emit& e, const WinogradFilterGrad& v, llvm::Value* x, llvm::Value* dy, llvm::Value* dw,
                          llvm::Value* begin, llvm::Value* end, llvm::Value* scratch);

// What the forward and the filter gradient (codegen/emit_winograd_filter.cpp) share.

/// The floats from one transform position's part of a scratch array to the next: `floats`
/// and one cache line more. A tile's transform stores its (m+2)^2 positions together, and
/// parts a multiple of 4 KiB apart (a panel of 48 tiles over 64 channels is 12 KiB) would all
/// fall in one set of the L1 cache, more lines than its ways; a line more puts each position
/// in a set of its own. Addresses only: no sum changes.
int64_t position_step(int64_t floats);

/// The arithmetic of codegen/winograd_transforms.h on LLVM values (scalars or vectors).
struct WinogradOps {
  Emit& e;
  llvm::Value* add(llvm::Value* a, llvm::Value* b) { return e.b.CreateFAdd(a, b); }
  llvm::Value* sub(llvm::Value* a, llvm::Value* b) { return e.b.CreateFSub(a, b); }
  llvm::Value* scale(llvm::Value* a, double c) { return e.b.CreateFMul(a, constant(a, c)); }
  llvm::Value* fma(llvm::Value* a, double c, llvm::Value* b) { return e.fma(a, constant(a, c), b); }
  static llvm::Value* constant(llvm::Value* like, double c);
};

/// Where a panel of tiles is: its first image and, in each image, its first tile row and column
/// (across_images: b0 is its first tile row of the batch, th0 and tw0 are 0).
struct WinogradPanel {
  llvm::Value *b0, *th0, *tw0;
};

/// Panel `index` of a layout's sequence: groups of `images` images in order, and within a
/// group its panels, row-major.
WinogradPanel winograd_panel(Emit& e, const WinogradLayout& l, llvm::Value* index);

}  // namespace dagger
