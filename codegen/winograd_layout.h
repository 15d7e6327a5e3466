#pragma once
/// Internal to codegen/: how a Winograd convolution product and filter gradient
/// (codegen/emit_winograd.h) are cut into panels of tiles and parallel items. Free of LLVM's
/// headers, so that tests can check a layout's choices.
#include <cstdint>
#include <functional>

#include "dagger/codegen/register_tile.h"

namespace llvm {
class Value;
}

namespace dagger {

/// The integer arithmetic of the layouts: a / b rounded up, and floats rounded up to a 64-byte
/// line.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t align16(int64_t floats) { return ceil_div(floats, 16) * 16; }

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

/// The filter gradient of a 3x3 same convolution of n images (x [n, c, h, w], dy [n, k, h, w])
/// by Winograd F(3x3, m x m), m = tile_size (2 or 4), in codegen/emit_winograd_filter.cpp: per
/// m x m tile of dy and its (m+2)x(m+2) input patch d,
///
///   dw[k, c] += G^T [ (A dy A^T) * (B^T d B) ] G      (* elementwise over (m+2)^2 positions xi)
///
/// with the forward F(m x m,3x3)'s matrices transposed (the gradient of its trilinear form with
/// respect to the filter): 16 products per 2x2 tile and (k, c) pair instead of 36, 36 per 4x4
/// tile instead of 144. Summed over images and tiles, each position is a GEMM [k x c] with a
/// long reduction, run on the GEMM's register tile (rows over k, vectors over c). x and dy are
/// staged a panel of rows and W channels at a time with the channels in the lanes (row runs
/// transposed in registers), so each tile's transform is plain vector arithmetic on W
/// channels and stores whole rows of the GEMM's operands; G^T M G is applied when dw is
/// written.
struct WinogradFilterGrad {
  int64_t n = 0, c = 0, k = 0, h = 0, w = 0;
  int tile_size = 2;
};

/// How a WinogradFilterGrad is cut into parallel items, and its scratch. An item is a panel of
/// c columns and a chunk of k's row tiles and runs the whole reduction. Every sum visits the
/// tiles image by image, tile row by tile row (the forward's panels never reorder them; a tile
/// of a panel outside the images adds an exact 0), so the bits depend on neither the thread
/// count nor the width.
struct WinogradFilterLayout {
  WinogradLayout tiles;     // the forward's panels of tiles, an image that fits a pass whole (vectors, items unused)
  RegisterTile tile;        // rows over k
  int64_t col_vectors = 0;  // vectors of c columns per item
  int64_t col_panels = 0;   // items across c
  int64_t row_tiles = 0;    // full row tiles of k (a remainder may follow)
  int64_t row_chunks = 0;   // items down k
  int64_t pass_panels = 0;  // panels of tiles transformed together, then reduced
  int64_t items = 0;
  int64_t scratch_floats = 0;
};

WinogradFilterLayout winograd_filter_layout(const WinogradFilterGrad& v, unsigned width, int threads);

}  // namespace dagger
