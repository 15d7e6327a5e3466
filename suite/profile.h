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
  Budget deep;                ///< the residual networks past the study (E24)
  /// The experiments this profile runs when `--only` names none: the study's (all but those
  /// marked beyond_study), or else only those past it, or all of them.
  enum class Scope { study, beyond, all } scope = Scope::study;
  int default_patience = 10;  ///< runs whose experiment names no patience
  /// Early-stopped runs end with their last epoch's weights (the study's framework's default,
  /// which its train accuracies imply) rather than restoring the lowest validation loss's.
  bool keep_last = true;
  int64_t batch = 64;
  uint64_t seed = 42;  ///< every run's training seed, and the data split's for all runs
  /// The training seeds of the experiments in `seeded` (the "seeds" profile: 42, 1, 2). Each of
  /// their configurations trains once per seed, on the data split of `seed`; empty: `seed` only.
  std::vector<uint64_t> seeds;
  std::vector<std::string> seeded;  ///< experiment ids; ensembles of seeded members combine per seed

  /// The seeds the runs of `experiment` train under: `seed`, then, when it is seeded, the others of `seeds`.
  std::vector<uint64_t> seeds_of(const std::string& experiment) const;

  /// The budget of the family `model` (a zoo spec) belongs to.
  const Budget& budget_for(const std::string& model) const;
};

/// Whether a zoo spec is a convolutional network (the CNN family of budgets and throughputs).
bool convolutional(const std::string& model);

/// The headline experiments the "seeds" profile and `dagger suite --seeds` repeat under each seed.
std::vector<std::string> headline_experiments();

/// "quick", "full" or "seeds"; throws Error listing the valid names otherwise.
Profile profile(const std::string& name);
std::vector<std::string> profile_names();

}  // namespace dagger::suite
