#pragma once
/// Internal to codegen/: how a Winograd convolution product (codegen/emit_winograd.h) is cut
/// into panels of tiles and parallel items. Free of LLVM's headers, so that tests can check a
/// layout's choices.
#include <cstdint>
#include <functional>

#include "dagger/codegen/register_tile.h"

namespace llvm {
class Value;
}

namespace dagger {

/// A same-size convolution of `in` channels into `out` channels on h x w images, `n` of them,
/// in output tiles of tile_size x tile_size (2 or 4).
struct WinogradConv {
  int64_t n = 0, in = 0, out = 0, h = 0, w = 0;
  /// The flat index of the 3x3 correlation filter's tap (r, s) from input channel `i` to
  /// output channel `o` in the kernel's filter buffer: the forward product reads w[o, i, r, s],
  /// the data gradient the flipped, transposed w[i, o, 2 - r, 2 - s]. Affine in o and i: the
  /// filter transform gathers W filters at a time from its steps along each.
  std::function<llvm::Value*(llvm::Value* o, llvm::Value* i, int64_t r, int64_t s)> filter_index;
  int tile_size = 2;
};

/// How a WinogradConv is cut into parallel items, and its scratch.
struct WinogradLayout {
  RegisterTile tile;
  int tile_size = 2;                       // outputs per tile side: F(tile_size x tile_size, 3x3)
  int64_t tiles_h = 0, tiles_w = 0;        // output tiles down and across an image
  int64_t panel_rows = 0, panel_cols = 0;  // a panel: this many tile rows of this many tiles (<= 1 GEMM panel)
  int64_t images = 1;                      // images side by side in a panel (small maps)
  /// Then a panel's "images" are `images` consecutive tile rows of the batch (panel_rows 1,
  /// panels 1), which may run on from one image into the next (winograd_layout).
  bool across_images = false;
  int64_t panels = 0;      // per group of `images` images
  int64_t vectors = 0;     // of W tiles, covering a panel
  int64_t row_tiles = 0;   // full row tiles of output channels (a remainder may follow)
  int64_t row_chunks = 0;  // per panel, as GemmLayout::row_chunks
  int64_t items = 0;
  int64_t scratch_floats = 0;
};

/// With rows_across_images, panels may be whole tile rows running on from one image into the
/// next where that leaves fewer lanes idle (the forward and data-gradient products; the filter
/// gradient's staging wants a panel inside one image).
WinogradLayout winograd_layout(const WinogradConv& v, unsigned width, int threads, bool rows_across_images);

}  // namespace dagger
