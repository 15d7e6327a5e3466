#pragma once
/// Internal to codegen/: a 3x3, stride-1, pad-1 convolution product by Winograd's minimal
/// filtering F(2x2,3x3) (Lavin and Gray, 2016). Each 2x2 block of outputs ("tile") is
///
///   Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise over 4x4 positions xi)
///
/// with d the 4x4 input patch around the tile and g the 3x3 filter: 16 products per tile and
/// channel pair instead of 36. Summed over input channels, each of the 16 positions is a
/// GEMM, M[xi][o, tile] = sum_i U[xi][o, i] V[xi][i, tile], run on the GEMM's register tile
/// (codegen/emit_gemm.h). The transforms are fused around it:
///   - the filter transform U = G g G^T once per call, packed in the microkernel's row tiles;
///   - the input transform V = B^T d B while packing a panel of tiles (a gather of each patch);
///   - the output transform A^T M A and the group's epilogue in the store: the tiles' 2x2
///     outputs are reassembled into output rows by register shuffles (the lane pattern is
///     static), so the epilogue sees W consecutive positions as everywhere else.
/// A parallel item is (images, panel of tiles, chunk of output-channel row tiles); every output
/// is computed by one item in a fixed order, so the bits do not depend on the thread count.
#include <functional>

#include "dagger/codegen/emit_gemm.h"

namespace dagger {

/// A same-size convolution of `in` channels into `out` channels on h x w images, `n` of them.
struct WinogradConv {
  int64_t n = 0, in = 0, out = 0, h = 0, w = 0;
  /// The flat index of the 3x3 correlation filter's tap (r, s) from input channel `i` to
  /// output channel `o` in the kernel's filter buffer: the forward product reads w[o, i, r, s],
  /// the data gradient the flipped, transposed w[i, o, 2 - r, 2 - s].
  std::function<llvm::Value*(llvm::Value* o, llvm::Value* i, int64_t r, int64_t s)> filter_index;
};

/// How a WinogradConv is cut into parallel items, and its scratch.
struct WinogradLayout {
  RegisterTile tile;
  int64_t tiles_h = 0, tiles_w = 0;        // output tiles down and across an image
  int64_t panel_rows = 0, panel_cols = 0;  // a panel: this many tile rows of this many tiles (<= 1 GEMM panel)
  int64_t images = 1;                      // images side by side in a panel (small maps)
  int64_t panels = 0;                      // per group of `images` images
  int64_t vectors = 0;                     // of W tiles, covering a panel
  int64_t row_tiles = 0;                   // full row tiles of output channels (a remainder may follow)
  int64_t row_chunks = 0;                  // per panel, as GemmLayout::row_chunks
  int64_t items = 0;
  int64_t scratch_floats = 0;
};

WinogradLayout winograd_layout(const WinogradConv& v, unsigned width, int threads);

/// Stores the finished outputs of image `b`, channel `o`, flat positions [j, j + W) (only the
/// lanes in `mask`) through the group's epilogue.
using StoreOutput =
    std::function<void(llvm::Value* b, llvm::Value* o, llvm::Value* j, llvm::Value* mask, llvm::Value* value)>;

/// Emits items [begin, end) of the product reading `input` ([n, in, h, w]) and `filter`.
void emit_winograd(Emit& e, const WinogradConv& v, llvm::Value* input, llvm::Value* filter, llvm::Value* begin,
                   llvm::Value* end, llvm::Value* scratch, const StoreOutput& store);

}  // namespace dagger
