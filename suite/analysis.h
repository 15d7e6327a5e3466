#pragma once
/// The suite's analyses of finished runs: the running-min patience table (E06, E19) and the
/// softmax ensemble (E14, E23).
#include <cstdint>
#include <vector>

#include "dagger/runtime/metrics.h"
#include "dagger/runtime/tensor.h"

namespace dagger::suite {

/// One distinct running minimum of the validation loss and how many epochs it stood.
struct MinimumStand {
  double loss = 0;
  int epochs = 0;     ///< epochs from the one that set it until a lower loss replaced it (or the end)
  int set_epoch = 0;  ///< 1-based epoch that reached it
};

struct RunningMinTable {
  std::vector<MinimumStand> rows;  ///< the longest-standing first; ties in epoch order; at most `rows`
  double minimum = 0;              ///< the last (lowest) running minimum
  int wait = 0;                    ///< the longest stand of any minimum except the last
  int patience = 0;                ///< wait + 4, the early-stopping patience the study derives
};

/// Builds the table from a run's validation losses (epoch 1 first), keeping the `rows`
/// longest stands. An empty history gives an empty table with patience 4.
RunningMinTable running_min_table(const std::vector<double>& val_losses, size_t rows = 10);

/// What the combination did to one member's answers.
struct MemberChange {
  int64_t corrected = 0;  ///< examples the member gets wrong and the ensemble right
  int64_t lost = 0;       ///< examples the member gets right and the ensemble wrong
};

/// A combination of classifiers: the argmax of their summed softmax outputs.
struct EnsembleResult {
  std::vector<int> predictions;
  ClassificationReport report;       ///< loss: mean cross entropy of the averaged probabilities
  std::vector<MemberChange> changes;  ///< per member; corrected - lost is the ensemble's margin in examples
  int64_t disagreements = 0;          ///< examples on which the members' own predictions are not all the same
  int64_t any_right = 0;              ///< examples at least one member gets right (an oracle's count)
};

/// Combines `probs` (each [n, classes], same shape) and scores the result against `labels`,
/// reporting classes under `class_names` (numbered past their end, "0", "1", ... when empty).
/// Throws Error when there are no members or their shapes disagree with each other or the labels.
EnsembleResult ensemble(const std::vector<const Tensor*>& probs, const std::vector<int>& labels,
                        std::vector<std::string> class_names = {});

/// The result as results.json and `dagger eval --json` write it: test metrics, disagreements, the
/// oracle's count and each member's corrected / lost counts (predictions left out).
nlohmann::json to_json(const EnsembleResult& result);

}  // namespace dagger::suite
