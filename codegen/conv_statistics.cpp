#include "dagger/codegen/conv_statistics.h"

#include <llvm/IR/Constants.h>

#include <algorithm>
#include <array>
#include <cassert>

#include "dagger/codegen/emit_context.h"
#include "dagger/codegen/loops.h"

namespace dagger {

namespace {

constexpr int64_t kHalf = SlotGrid::kPositions / 2;  // positions per folded half of a slot

/// The fixed tree that folds a half's 8 terms: lanes l and l + 4, then l and l + 2, then 0 and 1.
double fold_half(const std::array<double, kHalf>& a) {
  std::array<double, 4> t{};
  for (size_t i = 0; i < 4; ++i) t[i] = a[i] + a[i + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

/// fold_half on an <8 x double>, by the same tree.
llvm::Value* emit_fold_half(Emit& e, llvm::Value* v) {
  llvm::Value* t = e.b.CreateFAdd(e.b.CreateShuffleVector(v, {0, 1, 2, 3}), e.b.CreateShuffleVector(v, {4, 5, 6, 7}));
  llvm::Value* u = e.b.CreateFAdd(e.b.CreateShuffleVector(t, {0, 1}), e.b.CreateShuffleVector(t, {2, 3}));
  return e.b.CreateFAdd(e.b.CreateExtractElement(u, uint64_t{0}), e.b.CreateExtractElement(u, uint64_t{1}));
}

/// The first double of the record of image b, channel c, row `row`, slot `slot`.
int64_t record_at(const SlotGrid& grid, int64_t b, int64_t c, int64_t row, int64_t slot) {
  return (((b * grid.channels + c) * grid.rows + row) * grid.slots_per_row() + slot) * SlotGrid::kDoubles;
}

}  // namespace

void emit_slot_sums(Emit& e, const SlotGrid& grid, llvm::Value* records, llvm::Value* b, llvm::Value* c, llvm::Value* j,
                    llvm::Value* mask, llvm::Value* value) {
  assert(e.width >= kHalf && e.width % kHalf == 0);
  llvm::Type* f64 = e.b.getDoubleTy();
  auto vector_of = [&e](llvm::Value* v, int64_t from) {
    std::vector<int> lanes;
    for (int64_t l = 0; l < kHalf; ++l) lanes.push_back(static_cast<int>(from + l));
    return e.b.CreateShuffleVector(v, lanes);
  };
  for (int64_t from = 0; from < e.width; from += kHalf) {
    llvm::Value* exists = mask ? e.b.CreateExtractElement(mask, static_cast<uint64_t>(from)) : e.b.getTrue();
    emit_if(e, exists, [&] {
      llvm::Value* position = e.b.CreateAdd(j, e.i64c(from));
      llvm::Value* row = grid.rows == 1 ? e.i64c(0) : e.b.CreateUDiv(position, e.i64c(grid.row_length));
      llvm::Value* along = grid.rows == 1 ? position : e.b.CreateURem(position, e.i64c(grid.row_length));
      llvm::Value* slot = e.b.CreateUDiv(along, e.i64c(SlotGrid::kPositions));
      llvm::Value* first = e.b.CreateICmpEQ(e.b.CreateURem(along, e.i64c(SlotGrid::kPositions)), e.i64c(0));
      llvm::Value* plane = e.b.CreateAdd(e.b.CreateMul(b, e.i64c(grid.channels)), c);
      llvm::Value* at = e.b.CreateAdd(e.b.CreateMul(plane, e.i64c(grid.rows)), row);
      at = e.b.CreateAdd(e.b.CreateMul(at, e.i64c(grid.slots_per_row())), slot);
      at = e.b.CreateMul(at, e.i64c(SlotGrid::kDoubles));
      auto field = [&](int64_t k) { return e.b.CreateInBoundsGEP(f64, records, e.b.CreateAdd(at, e.i64c(k))); };

      llvm::Value* x =
          e.b.CreateFPExt(vector_of(value, from), llvm::FixedVectorType::get(f64, static_cast<unsigned>(kHalf)));
      // The first half starts the slot at its own first element; the second takes the first's K.
      llvm::Value* shift =
          e.b.CreateSelect(first, e.b.CreateExtractElement(x, uint64_t{0}), e.b.CreateLoad(f64, field(0)));
      llvm::Value* d = e.b.CreateFSub(x, e.b.CreateVectorSplat(static_cast<unsigned>(kHalf), shift));
      if (mask) d = e.b.CreateSelect(vector_of(mask, from), d, llvm::Constant::getNullValue(d->getType()));
      llvm::Value* sum = emit_fold_half(e, d);
      llvm::Value* squares = emit_fold_half(e, e.b.CreateFMul(d, d));
      llvm::Value* sum_before = e.b.CreateLoad(f64, field(1));
      llvm::Value* squares_before = e.b.CreateLoad(f64, field(2));
      e.b.CreateStore(shift, field(0));
      e.b.CreateStore(e.b.CreateSelect(first, sum, e.b.CreateFAdd(sum_before, sum)), field(1));
      e.b.CreateStore(e.b.CreateSelect(first, squares, e.b.CreateFAdd(squares_before, squares)), field(2));
    });
  }
}

void fill_records(const SlotGrid& grid, const float* x, double* records, int64_t c0, int64_t c1) {
  const int64_t length = grid.row_length;
  for (int64_t b = 0; b < grid.images; ++b)
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t row = 0; row < grid.rows; ++row) {
        const float* run = x + ((b * grid.channels + c) * grid.rows + row) * length;
        for (int64_t slot = 0; slot < grid.slots_per_row(); ++slot) {
          double* record = records + record_at(grid, b, c, row, slot);
          const int64_t start = slot * SlotGrid::kPositions;
          record[0] = run[start];
          for (int64_t half = start; half < std::min(start + SlotGrid::kPositions, length); half += kHalf) {
            std::array<double, kHalf> d{}, d2{};
            for (int64_t l = 0; l < kHalf && half + l < length; ++l) {
              d[l] = double(run[half + l]) - record[0];
              d2[l] = d[l] * d[l];
            }
            record[1] = half == start ? fold_half(d) : record[1] + fold_half(d);
            record[2] = half == start ? fold_half(d2) : record[2] + fold_half(d2);
          }
        }
      }
}

void finish_statistics(const SlotGrid& grid, const double* records, float* mean, float* var, int64_t c0, int64_t c1) {
  const double count = double(grid.images * grid.rows * grid.row_length);
  for (int64_t c = c0; c < c1; ++c) {
    // Sums of x - K over the channel, K its first element: each slot's sums rebased from its own
    // first element k by delta = k - K, sum(x - K) = sum(d) + n delta and
    // sum((x - K)^2) = sum(d^2) + delta (2 sum(d) + n delta).
    const double shift = records[record_at(grid, 0, c, 0, 0)];
    double sum = 0, squares = 0;
    for (int64_t b = 0; b < grid.images; ++b)
      for (int64_t row = 0; row < grid.rows; ++row)
        for (int64_t slot = 0; slot < grid.slots_per_row(); ++slot) {
          const double* record = records + record_at(grid, b, c, row, slot);
          const double n = double(std::min(SlotGrid::kPositions, grid.row_length - slot * SlotGrid::kPositions));
          const double delta = record[0] - shift;
          sum += record[1] + n * delta;
          squares += record[2] + delta * (2 * record[1] + n * delta);
        }
    const double mean_d = sum / count;  // E[x - K]
    if (mean) mean[c] = static_cast<float>(shift + mean_d);
    if (var) var[c] = static_cast<float>(std::max(squares / count - mean_d * mean_d, 0.0));
  }
}

}  // namespace dagger
