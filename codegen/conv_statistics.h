#pragma once
/// Batch statistics summed in a convolution's store (codegen/fusion.h: statistics in the
/// epilogue): the channel_mean and channel_var of a conv2d group's output, without reading it
/// again. No LLVM here but the emitter's declaration.
///
/// The output's channel planes are cut into *slots* of 16 positions along rows (a direct
/// convolution's plane is one row of p * q positions; Winograd's are its h rows of w). A slot
/// records three doubles: K, its first element, and the sums of d = x - K and d^2 over its
/// positions, each as two halves of 8 (the second only where the row goes on), a half folded
/// by a fixed tree. Every slot is thus the same bits whoever computes it: the store, when one
/// item stores the whole slot (the GEMM's panels and Winograd's rows are multiples of 16 or
/// whole at vector widths 8 and 16), or fill_records reading the output after the kernel
/// otherwise. finish_statistics then adds a channel's slots image by image, slot by slot,
/// rebased on the channel's first element as channel_var's kernel shifts (each d and d^2 of a
/// float is exact in double, so a mean far from zero keeps the variance's digits). No order
/// depends on the thread count or the vector width.
#include <cstdint>

#include "dagger/graph/graph.h"

namespace llvm {
class Value;
}

namespace dagger {

struct Emit;

/// Where a convolution output's slots are: images x channels planes of `rows` rows of
/// `row_length` positions.
struct SlotGrid {
  static constexpr int64_t kPositions = 16;  // per slot
  static constexpr int64_t kDoubles = 3;     // per slot: K, sum(d), sum(d^2)
  int64_t images = 0, channels = 0, rows = 0, row_length = 0;

  int64_t slots_per_row() const { return (row_length + kPositions - 1) / kPositions; }
  int64_t slots_per_plane() const { return rows * slots_per_row(); }
  int64_t doubles() const { return images * channels * slots_per_plane() * kDoubles; }
};

/// A conv2d group's statistics in its epilogue: the slots, whether its store fills them, and
/// the statistic nodes it writes (-1 for one the graph does not ask).
struct EpilogueStatistics {
  SlotGrid grid;
  bool in_store = false;  // the kernel's store fills the records; else fill_records does
  NodeId mean = -1, var = -1;
};

/// Emits the slot sums of W stored outputs `value` of image `b`, channel `c` at flat plane
/// positions [j, j + W) (the lanes in `mask`, a prefix, or all when nullptr) into `records`.
/// W >= 8; j is a multiple of 8 from its row's start, and one call, or the calls of one item in
/// position order, must cover a whole slot.
void emit_slot_sums(Emit& e, const SlotGrid& grid, llvm::Value* records, llvm::Value* b, llvm::Value* c, llvm::Value* j,
                    llvm::Value* mask, llvm::Value* value);

/// The records of channels [c0, c1), computed from the stored output x ([images, channels,
/// rows * row_length]) in the store's order, for layouts whose store cannot.
void fill_records(const SlotGrid& grid, const float* x, double* records, int64_t c0, int64_t c1);

/// The biased variance and the mean of channels [c0, c1) from their records; either output
/// may be null.
void finish_statistics(const SlotGrid& grid, const double* records, float* mean, float* var, int64_t c0, int64_t c1);

}  // namespace dagger
