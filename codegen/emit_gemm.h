#pragma once
/// Internal to codegen/: the register-tiled GEMM every contraction is lowered to (dense
/// layers, both of their gradients, and the three convolution products as implicit GEMMs);
/// Winograd convolutions (codegen/emit_winograd.h) run their products on its register tile.
///
/// For each of `batch` independent problems, C[i, j] = sum over k of A[i, k] B[k, j]. A is read
/// in place through an index function, or, where the problem offers a packer and the layout
/// chooses it, copied once per call into the scratch as row tiles ([tile][k][rows]); B is
/// copied, one panel of P = tile-width columns at a time, into the caller's scratch by a
/// problem-specific packer (a plain copy for a matmul, an im2col gather for a convolution), so
/// the microkernel streams a contiguous panel; or, for a product of few rows whose B is a [K, N]
/// matrix (GemmSizes::b_readable: a matmul's, a 1x1 convolution's image), read where it stands
/// (GemmLayout::b_in_place).
///
/// Parallel items: (problem, group of panels, chunk of row tiles). A problem whose packer reads
/// B along its rows (a matmul's [K, N] operand) packs several panels in one pass where a panel
/// outgrows its L1 slice, so that each row of B is read as one run rather than one cache line
/// per panel, lines N floats apart that the caches cannot keep (GemmLayout::group). Row tiles
/// are chunked only when there are fewer problems x groups than threads, since every chunk
/// packs its group again. Every element of C is computed by one item with the same reduction
/// order whatever the grouping, the chunking and the item range, so results do not depend on
/// the thread count. Reduction blocks (see
/// GemmSizes::k_blocks) are the outermost loop of a call, around its whole range of items.
/// Where A outgrows its share of L2 (host_tuning.h), the row tiles are split into blocks of A
/// (GemmLayout::m_blocks), the next loop in: each block runs every item of the range, packing
/// each item's panels again, so that the block is read from L2 by every panel rather than all of
/// A from L3 by each. Neither loop changes any element's chain of FMAs over k.
#include <cstdint>
#include <functional>
#include <vector>

#include "dagger/codegen/loops.h"
#include "dagger/codegen/register_tile.h"

namespace dagger {

struct GemmSizes {
  int64_t batch = 1;
  int64_t m = 0, n = 0;
  Shape k_dims;          // the reduction: a nest of axes whose product is K
  int64_t k_blocks = 1;  // the reduction repeated this many times, summed in C between blocks
  bool a_packable = false;  // A is the same for every problem and has a packer
                            // (GemmProblem::pack_a), so it may be packed once per call; the layout decides
  bool wide_tile = false;   // register_tile's wide variant (a matmul of 64 or more columns, a
                            // convolution's product whose columns it pads less)
  bool b_groupable = false;  // pack_b fills several consecutive panels in one pass (GemmLayout::group)
  /// The operands are rounded to bfloat16 and multiplied in pairs along the reduction with
  /// float accumulation (AVX512_BF16's dot product; width 16 only). k_dims is then one axis
  /// counting pairs of the reduction, a panel row and a packed A element hold a pair (the even
  /// index in the low 16 bits, the odd one in the high; a missing odd one is zero), and A is
  /// always packed (GemmProblem::pack_a, a_stride_i, a_stride_k).
  bool bf16 = false;
  /// B is a [K, N] matrix in memory, row after row (GemmProblem::b_in_place), which the
  /// tiles may read where they stand instead of from a packed panel; the layout decides.
  /// Each problem's B then follows the previous one's (K * N floats on): a 1x1 convolution's
  /// image of x or dy.
  bool b_readable = false;
  /// C holds no partial sums: the reduction's outer axis is walked in one slice, so that each
  /// element of C is stored once, finished. For a kernel that stores an output over a buffer
  /// its epilogue reads (FusionGroup::in_place), which partial sums in C would overwrite first.
  bool whole_k = false;
};

/// How a GEMM of given sizes is tiled for vectors of `width` floats.
struct GemmLayout {
  int rows = 0, vectors = 0;  // the register tile: rows x (vectors * width)
  int64_t panel = 0;          // columns per panel (vectors * width)
  int64_t panels = 0;         // panels per problem, the last one possibly partial
  int64_t group = 1;          // panels packed in one pass and run by one item (the last group may have fewer)
  int64_t groups = 0;         // groups per problem
  int64_t row_tiles = 0;      // full tiles of `rows` rows; a remainder tile follows when m % rows != 0
  int64_t row_chunks = 0;     // row tiles are split into this many items per group
  int64_t items = 0;          // parallel items: batch * groups * row_chunks
  int64_t k = 0;              // the reduction length of one block
  int64_t k_total = 0;        // of all blocks
  int64_t k_slice = 0;        // the reduction's outer axis is walked this many at a time, the
                              // panel's slice then staying in L1 across the row tiles
  int64_t m_blocks = 1;       // blocks of A's row tiles, each run over all of a call's items
  int64_t block_tiles = 0;    // full row tiles per block (the last block may have fewer)
  bool b_in_place = false;    // the tiles read B where it stands (GemmProblem::b_in_place): nothing packed
  bool tiles_outer = false;   // one group of all the panels; each row tile runs over all of them in turn
  bool pack_a = false;         // A is packed once per call into the scratch, at a_offset
  int64_t a_offset = 0;        // floats from the scratch's start to the packed A
  int64_t scratch_floats = 0;  // one group of packed panels (and the packed A), per thread
};

GemmLayout gemm_layout(const GemmSizes& sizes, unsigned width, int threads);

/// One reduction step of a register tile: returns acc[r * b.size() + v] + a[r] * b[v] as fused
/// multiply-adds, `a` holding one float per tile row and `b` one vector per column vector.
std::vector<llvm::Value*> tile_fmas(Emit& e, const std::vector<llvm::Value*>& a, const std::vector<llvm::Value*>& b,
                                    const std::vector<llvm::Value*>& acc);

struct GemmProblem {
  GemmSizes sizes;
  /// A[i, k] (one float) of problem `b` in reduction block `kb` at reduction coordinates `k`.
  std::function<llvm::Value*(llvm::Value* b, llvm::Value* kb, llvm::Value* i, const std::vector<llvm::Value*>& k)> a_at;
  /// Fills `panel` with B's columns [j0, j0 + cols) as K rows of layout.panel floats each,
  /// columns from cols to layout.panel zeroed; `cols` is static (the last panel is shorter).
  /// Where sizes.b_groupable, `cols` may span up to layout.group panels: panel q of them is
  /// then K rows from panel + q * K * layout.panel on, the last one's columns past `cols` zeroed.
  std::function<void(llvm::Value* b, llvm::Value* kb, llvm::Value* j0, int64_t cols, llvm::Value* panel)> pack_b;
  /// Where sizes.a_packable: copies A into `dst` as row tiles of `rows`: A[i, k] at
  /// (i / rows) * rows * K + k * rows + i % rows (k the flat reduction index); places past M are
  /// never read.
  std::function<void(int rows, llvm::Value* dst)> pack_a;
  /// Where sizes.bf16: pack_a stores pair (i, kp) of A at i * a_stride_i + kp * a_stride_k
  /// (in 32-bit units), in whichever order its A is read contiguously.
  int64_t a_stride_i = 0, a_stride_k = 0;
  /// Stores the finished C[i, j .. j + W) of problem `b` (only the lanes in `mask`; nullptr
  /// means all), through the epilogue if there is one.
  std::function<void(llvm::Value* b, llvm::Value* i, llvm::Value* j, llvm::Value* mask, llvm::Value* value)> store_c;
  /// Where set, called as a tile's last slice starts, before its reduction, for the tile's
  /// rows [i, i + rows) and columns [j, j + cols) of problem `b`: fetches what store_c will
  /// read there, so that it arrives while the tile's FMAs run.
  std::function<void(llvm::Value* b, llvm::Value* i, int rows, llvm::Value* j, int64_t cols)> prefetch_c;
  /// C itself, [batch, m, n] contiguous: partial sums are kept there between reduction slices
  /// and blocks. A kernel whose epilogue is not the identity therefore writes its output
  /// buffer twice, but only ever reads back what it wrote.
  llvm::Value* c = nullptr;
  /// Where set, B is packed whole into this buffer and kept there between calls: panel q of B
  /// K rows from kept_b + q * K * layout.panel on (the concatenation of the groups pack_b
  /// fills). An item packs its group there only when `repack` (an i1) is true, and reads it
  /// from there in any case. Only for one problem of one reduction block whose layout has one
  /// chunk of row tiles per group (kept_b_usable), so that each group is packed by the item
  /// that reads it.
  llvm::Value* kept_b = nullptr;
  llvm::Value* repack = nullptr;
  /// Where sizes.b_readable: B itself, [K, N] with rows N floats apart (problem b's from
  /// b * K * N on).
  llvm::Value* b_in_place = nullptr;
};

/// Whether a GEMM of this layout may keep its packed B between calls (GemmProblem::kept_b).
bool kept_b_usable(const GemmSizes& sizes, const GemmLayout& layout);

/// Emits the GEMM's items [begin, end), packing into `scratch` (layout.scratch_floats floats).
void emit_gemm(Emit& e, const GemmProblem& problem, llvm::Value* begin, llvm::Value* end, llvm::Value* scratch);

/// bfloat16 pairs (sizes.bf16), as <W x float> vectors whose lanes hold two bfloat16 each:
/// lane l pairs lo[l] (low half) with hi[l] (high half), both rounded to nearest even.
llvm::Value* bf16_pairs_across(Emit& e, llvm::Value* lo, llvm::Value* hi);
/// The same for 2W consecutive floats, `first` the W lower ones: lane l pairs elements 2l and 2l + 1.
llvm::Value* bf16_pairs_along(Emit& e, llvm::Value* first, llvm::Value* second);

/// Transposes W vectors of W lanes in registers: afterwards rows[i] lane l holds what rows[l]
/// lane i held. Packers use it to turn runs down a matrix's columns into rows of a panel.
void transpose(Emit& e, std::vector<llvm::Value*>& rows);

/// Fills `count` (at most W) rows of a panel of `stride` floats per row, from row `row0` on,
/// by transposing in registers: for each group of W panel columns, column(c) gives column c's
/// W elements from row `row0` on (its lanes from `count` on unused), and one transpose turns
/// the group into panel rows. Columns from `cols` on are stored as zeros. The packers of a
/// B read along its columns (a transposed matmul operand, a convolution's filter gradient)
/// share it.
void pack_rows_transposed(Emit& e, llvm::Value* panel, int64_t stride, llvm::Value* row0, int64_t count, int64_t cols,
                          const std::function<llvm::Value*(int64_t c)>& column);

/// A W-lane gather of base[index] for the lanes in `mask` (others read nothing and hold 0);
/// `index` is a <W x i32> vector, its masked-off lanes may hold anything.
llvm::Value* gather(Emit& e, llvm::Value* base, llvm::Value* index, llvm::Value* mask);

}  // namespace dagger
