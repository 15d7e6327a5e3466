#include "dagger/codegen/partials.h"

#include <llvm/IR/Constants.h>

#include <algorithm>
#include <cassert>
#include <limits>

#include "dagger/codegen/emit_ops.h"

namespace dagger {

llvm::Value* fold_in(Emit& e, Fold fold, llvm::Value* acc, llvm::Value* v) {
  if (fold == Fold::sum) return e.b.CreateFAdd(acc, v);
  return e.b.CreateSelect(e.b.CreateFCmpOLT(acc, v), v, acc);
}

Partials::Partials(Emit& e, llvm::Type* lane, Fold fold, size_t reductions)
    : e_(e), fold_(fold), type_(llvm::FixedVectorType::get(lane, e.width)), slots_(reductions) {
  assert(e.width <= kPartials && kPartials % e.width == 0);
  const double identity = fold == Fold::sum ? 0.0 : -std::numeric_limits<double>::infinity();
  for (std::vector<llvm::Value*>& slots : slots_)
    for (unsigned k = 0; k < kPartials / e.width; ++k)
      slots.push_back(entry_slot(e, type_, llvm::ConstantFP::get(type_, identity)));
}

void Partials::add_run(int64_t count, const Terms& terms) {
  const int64_t w = e_.width, full = count / kPartials * kPartials, vectors = kPartials / w;
  auto add = [&](int64_t k, llvm::Value* offset, llvm::Value* mask) {
    const std::vector<llvm::Value*> t = terms(offset, mask);
    assert(t.size() == slots_.size());
    for (size_t r = 0; r < slots_.size(); ++r) {
      llvm::Value* slot = slots_[r][static_cast<size_t>(k)];
      e_.b.CreateStore(fold_in(e_, fold_, e_.b.CreateLoad(type_, slot), t[r]), slot);
    }
  };
  emit_for(e_, full, kPartials, [&](llvm::Value* p) {
    for (int64_t k = 0; k < vectors; ++k) add(k, e_.b.CreateAdd(p, e_.i64c(k * w)), nullptr);
  });
  // The last, shorter group. Partials past the run's end are left alone: at a wider width
  // their lanes would get the identity, which changes nothing (a sum's partial is never -0,
  // since it starts at +0, so adding +0 keeps its bits; -infinity never wins a maximum).
  for (int64_t k = 0; k < vectors; ++k) {
    const int64_t lanes = std::clamp<int64_t>(count - full - k * w, 0, w);
    if (lanes == 0) break;
    add(k, e_.i64c(full + k * w), lanes == w ? nullptr : e_.prefix_mask(static_cast<unsigned>(lanes)));
  }
}

void Partials::add_run(int64_t count, const std::function<llvm::Value*(llvm::Value*, llvm::Value*)>& term) {
  add_run(count, Terms([&](llvm::Value* offset, llvm::Value* mask) { return std::vector{term(offset, mask)}; }));
}

llvm::Value* Partials::result(size_t r) {
  llvm::Value* folded = nullptr;
  for (llvm::Value* slot : slots_[r]) {
    llvm::Value* v = e_.b.CreateLoad(type_, slot);
    for (unsigned l = 0; l < e_.width; ++l) {
      llvm::Value* x = e_.b.CreateExtractElement(v, uint64_t(l));
      folded = folded ? fold_in(e_, fold_, folded, x) : x;
    }
  }
  return folded;
}

}  // namespace dagger
