#include "dagger/codegen/partials.h"

#include <llvm/IR/Constants.h>

#include <algorithm>
#include <cassert>
#include <limits>
#include <numeric>

#include "dagger/codegen/emit_ops.h"

namespace dagger {

llvm::Value* fold_in(Emit& e, Fold fold, llvm::Value* acc, llvm::Value* v) {
  if (fold == Fold::sum) return e.b.CreateFAdd(acc, v);
  return e.b.CreateSelect(e.b.CreateFCmpOLT(acc, v), v, acc);
}

Partials::Partials(Emit& e, llvm::Type* lane, Fold fold, size_t reductions)
    : e_(e),
      fold_(fold),
      count_(kPartialBytes / (lane->getPrimitiveSizeInBits() / 8)),
      pieces_(std::min<int64_t>(e.width, count_)),
      type_(llvm::FixedVectorType::get(lane, static_cast<unsigned>(pieces_))),
      identity_(llvm::ConstantFP::get(type_, fold == Fold::sum ? 0.0 : -std::numeric_limits<double>::infinity())),
      slots_(reductions) {
  assert((e.width & (e.width - 1)) == 0);
  for (std::vector<llvm::Value*>& slots : slots_)
    for (int64_t k = 0; k < count_ / pieces_; ++k) slots.push_back(entry_slot(e, type_, identity_));
}

llvm::ArrayType* Partials::state_type() const {
  return llvm::ArrayType::get(type_, slots_.size() * static_cast<uint64_t>(count_ / pieces_));
}

void Partials::reset() {
  for (std::vector<llvm::Value*>& slots : slots_)
    for (llvm::Value* slot : slots) e_.b.CreateStore(identity_, slot);
}

void Partials::save(llvm::Value* at) {
  uint64_t k = 0;
  for (std::vector<llvm::Value*>& slots : slots_)
    for (llvm::Value* slot : slots)
      e_.b.CreateStore(e_.b.CreateLoad(type_, slot), e_.b.CreateConstInBoundsGEP2_64(state_type(), at, 0, k++));
}

void Partials::restore(llvm::Value* at) {
  uint64_t k = 0;
  for (std::vector<llvm::Value*>& slots : slots_)
    for (llvm::Value* slot : slots)
      e_.b.CreateStore(e_.b.CreateLoad(type_, e_.b.CreateConstInBoundsGEP2_64(state_type(), at, 0, k++)), slot);
}

void Partials::add_vector(int64_t first, llvm::Value* offset, int64_t lanes, const Terms& terms) {
  const int64_t w = e_.width;
  const std::vector<llvm::Value*> t =
      terms(offset, lanes == w ? nullptr : e_.prefix_mask(static_cast<unsigned>(lanes)));
  assert(t.size() == slots_.size());
  // Pieces of L lanes in position order; pieces past the run's end are left out: at another
  // width their lanes would get the identity, which changes nothing (a sum's partial is never
  // -0, since it starts at +0, so adding +0 keeps its bits; -infinity never wins a maximum).
  for (int64_t piece = 0; piece * pieces_ < lanes; ++piece) {
    std::vector<int> lanes_of(static_cast<size_t>(pieces_));
    std::iota(lanes_of.begin(), lanes_of.end(), static_cast<int>(piece * pieces_));
    const size_t k = static_cast<size_t>(((first + piece * pieces_) % count_) / pieces_);
    for (size_t r = 0; r < slots_.size(); ++r) {
      llvm::Value* part = pieces_ == w ? t[r] : e_.b.CreateShuffleVector(t[r], lanes_of);
      e_.b.CreateStore(fold_in(e_, fold_, e_.b.CreateLoad(type_, slots_[r][k]), part), slots_[r][k]);
    }
  }
}

void Partials::add_run(int64_t count, const Terms& terms) {
  const int64_t w = e_.width, group = std::max<int64_t>(w, count_), full = count / group * group;
  // Whole groups in a loop (a group starts at partial 0 and is a whole number of vectors),
  // then the vectors of the rest.
  emit_for(e_, full, group, [&](llvm::Value* p) {
    for (int64_t v = 0; v < group; v += w) add_vector(v, e_.b.CreateAdd(p, e_.i64c(v)), w, terms);
  });
  for (int64_t v = full; v < count; v += w) add_vector(v, e_.i64c(v), std::min(w, count - v), terms);
}

void Partials::add_run(int64_t count, const std::function<llvm::Value*(llvm::Value*, llvm::Value*)>& term) {
  add_run(count, Terms([&](llvm::Value* offset, llvm::Value* mask) { return std::vector{term(offset, mask)}; }));
}

llvm::Value* Partials::result(size_t r) {
  llvm::Value* folded = nullptr;
  for (llvm::Value* slot : slots_[r]) {
    llvm::Value* v = e_.b.CreateLoad(type_, slot);
    for (int64_t l = 0; l < pieces_; ++l) {
      llvm::Value* x = e_.b.CreateExtractElement(v, uint64_t(l));
      folded = folded ? fold_in(e_, fold_, folded, x) : x;
    }
  }
  return folded;
}

}  // namespace dagger
