#pragma once
/// Internal to codegen/: the partial results of a reduction along a run of elements.
///
/// A reduction keeps P partial results whatever the vector width W, P being what one 512-bit
/// register holds: 16 floats or 8 doubles. Position q of a run goes to partial q % P. When
/// W <= P the partials are P / W vectors (float partials: one at W = 16, two at W = 8); when
/// W > P each vector of terms is split into W / P pieces added one after the other (double
/// partials at W = 16: the two registers a <16 x double> is made of anyway). The partials are
/// folded into one value partial 0 first. Every partial thus sees the same terms in the same
/// order at every width, and a reduction gives the same bits with AVX2 (W = 8) and AVX-512
/// (W = 16). (Sixteen double partials would take four AVX2 registers per sum, and batch
/// normalization's gradient, with three sums, would spill.)
#include <functional>
#include <vector>

#include "dagger/codegen/emit_context.h"

namespace dagger {

/// The bytes of partial results per reduced run: one AVX-512 register.
inline constexpr unsigned kPartialBytes = 64;

/// How a term joins a partial: added, or kept when larger (the larger of acc and v is v only
/// when acc < v, so a NaN term never wins, as with std::max(acc, v)).
enum class Fold { sum, max };

/// acc folded with v (scalars or vectors alike).
llvm::Value* fold_in(Emit& e, Fold fold, llvm::Value* acc, llvm::Value* v);

/// `reductions` reductions of the same run computed in one pass (a mean's sum, or the sums
/// of batch normalization's gradient), each with its own partials.
class Partials {
 public:
  /// Partials with lanes of `lane` (float or double), each starting at the fold's identity
  /// (0 or -infinity). Requires a power-of-two e.width.
  Partials(Emit& e, llvm::Type* lane, Fold fold, size_t reductions = 1);

  /// A run's terms: terms(offset, mask) gives, per reduction, the W terms at run positions
  /// offset .. offset + W - 1 (offset is i64; mask: the lanes inside the run, nullptr when all
  /// are). Masked-off lanes must hold the identity.
  using Terms = std::function<std::vector<llvm::Value*>(llvm::Value* offset, llvm::Value* mask)>;
  /// Folds the positions [0, count) of a run into the partials; a later run starts again at
  /// partial 0.
  void add_run(int64_t count, const Terms& terms);
  /// add_run for a single reduction.
  void add_run(int64_t count, const std::function<llvm::Value*(llvm::Value*, llvm::Value*)>& term);
  /// Reduction `r`'s partials folded into one scalar, partial 0 first.
  llvm::Value* result(size_t r = 0);

  /// Every reduction's partials as one value of this type, so that a sweep can keep a set per
  /// channel in memory and take the sets in turns (save after a run, restore before the next).
  llvm::ArrayType* state_type() const;
  /// Sets every partial to the fold's identity.
  void reset();
  /// Stores the partials at `at` (a state_type()), or loads them from there.
  void save(llvm::Value* at);
  void restore(llvm::Value* at);

 private:
  /// Adds the terms of run positions [first, first + `lanes`) (lanes <= W; first a multiple
  /// of W), which are at `offset` for `terms`.
  void add_vector(int64_t first, llvm::Value* offset, int64_t lanes, const Terms& terms);

  Emit& e_;
  Fold fold_;
  int64_t count_;           // P: partials per reduction
  int64_t pieces_;          // L = min(W, P): lanes of one accumulator vector
  llvm::VectorType* type_;  // <L x lane>
  llvm::Constant* identity_;
  // Per reduction, P / L vectors: partials [k L, (k + 1) L) in vector k.
  std::vector<std::vector<llvm::Value*>> slots_;
};

}  // namespace dagger
