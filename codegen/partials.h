#pragma once
/// Internal to codegen/: the partial results of a reduction along a run of elements.
///
/// A reduction keeps kPartials partial results whatever the vector width W: position p of a
/// run goes to partial p % kPartials, held as kPartials / W vectors (one at W = 16, two at
/// W = 8, four at W = 4), and the partials are folded into one value partial 0 first. Every
/// partial therefore sees the same terms in the same order at every width, and a reduction
/// gives the same bits with AVX2 (W = 8) and AVX-512 (W = 16).
#include <functional>
#include <vector>

#include "dagger/codegen/emit_context.h"

namespace dagger {

/// Partial results per reduced run; the widest vector width the kernels support.
inline constexpr unsigned kPartials = 16;

/// How a term joins a partial: added, or kept when larger (the larger of acc and v is v only
/// when acc < v, so a NaN term never wins, as with std::max(acc, v)).
enum class Fold { sum, max };

/// acc folded with v (scalars or vectors alike).
llvm::Value* fold_in(Emit& e, Fold fold, llvm::Value* acc, llvm::Value* v);

/// `reductions` reductions of the same run computed in one pass (a mean's sum, or the sums
/// of batch normalization's gradient), each with kPartials partials.
class Partials {
 public:
  /// Partials with lanes of `lane` (float or double), each starting at the fold's identity
  /// (0 or -infinity). Requires e.width to divide kPartials.
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

 private:
  Emit& e_;
  Fold fold_;
  llvm::VectorType* type_;
  // Per reduction, kPartials / W vectors: partials [k W, (k + 1) W) in vector k.
  std::vector<std::vector<llvm::Value*>> slots_;
};

}  // namespace dagger
