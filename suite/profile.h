#pragma once
/// Profiles: how much data and how many epochs each run of the suite gets. Every profile runs
/// the same experiments through the same code; only these numbers differ.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dagger::suite {

/// The data slice and epoch budget of one family of models.
struct Budget {
  size_t train = 0, val = 0, test = 0;  ///< class-balanced slices of the splits; 0 = the whole split
  int max_epochs = 100;                 ///< epoch cap of early-stopped runs
  int fixed_epoch_cap = 0;              ///< cap of fixed-length runs (E06, E19); 0 = as declared
};

struct Profile {
  std::string name;
  Budget dense;               ///< shallow networks and MLPs
  Budget conv;                ///< CNNs: the knob to turn while their kernels are slow
  int default_patience = 10;  ///< runs whose experiment names no patience
  /// Early-stopped runs end with their last epoch's weights (the study's framework's default,
  /// which its train accuracies imply) rather than restoring the lowest validation loss's.
  bool keep_last = true;
  int64_t batch = 64;
  uint64_t seed = 42;

  /// The budget of the family `model` (a zoo spec) belongs to.
  const Budget& budget_for(const std::string& model) const;
};

/// "quick" or "full"; throws Error listing the valid names otherwise.
Profile profile(const std::string& name);
std::vector<std::string> profile_names();

}  // namespace dagger::suite
