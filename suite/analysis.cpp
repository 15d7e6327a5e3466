#include "dagger/suite/analysis.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "dagger/graph/error.h"

namespace dagger::suite {

RunningMinTable running_min_table(const std::vector<double>& val_losses, size_t rows) {
  RunningMinTable table;
  std::vector<MinimumStand> stands;
  for (size_t i = 0; i < val_losses.size(); ++i) {
    if (stands.empty() || val_losses[i] < stands.back().loss)
      stands.push_back({val_losses[i], 0, static_cast<int>(i + 1)});
    ++stands.back().epochs;
  }
  for (size_t i = 0; i + 1 < stands.size(); ++i) table.wait = std::max(table.wait, stands[i].epochs);
  table.patience = table.wait + 4;
  if (!stands.empty()) table.minimum = stands.back().loss;
  std::stable_sort(stands.begin(), stands.end(),
                   [](const MinimumStand& a, const MinimumStand& b) { return a.epochs > b.epochs; });
  if (stands.size() > rows) stands.resize(rows);
  table.rows = std::move(stands);
  return table;
}

EnsembleResult ensemble(const std::vector<const Tensor*>& probs, const std::vector<int>& labels,
                        std::vector<std::string> class_names) {
  if (probs.empty()) throw Error("an ensemble needs at least one member");
  const auto shape = probs.front()->shape();
  if (shape.size() != 2 || shape[0] != labels.size())
    throw Error(fmt::format("ensemble members must be [n, classes] with n = {} labels", labels.size()));
  Tensor sum = Tensor::from_shape({shape[0], shape[1]});
  sum.fill(0.0f);
  for (const Tensor* p : probs) {
    if (p->shape() != shape)
      throw Error(fmt::format("ensemble members disagree in shape: [{}, {}] vs [{}, {}]", shape[0], shape[1],
                              p->shape()[0], p->shape()[1]));
    sum += *p;
  }
  EnsembleResult result;
  result.predictions = argmax_rows(sum);
  double loss = 0;
  const double members = static_cast<double>(probs.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const double p = sum(i, static_cast<size_t>(labels[i])) / members;
    loss -= std::log(std::max(p, 1e-12));
  }
  for (size_t c = class_names.size(); c < shape[1]; ++c) class_names.push_back(std::to_string(c));
  result.report =
      classify_report(labels, result.predictions, labels.empty() ? 0 : loss / labels.size(), std::move(class_names));

  std::vector<std::vector<int>> member_predictions;
  for (const Tensor* p : probs) member_predictions.push_back(argmax_rows(*p));
  result.changes.resize(probs.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const bool ensemble_right = result.predictions[i] == labels[i];
    bool any_right = false, all_same = true;
    for (size_t m = 0; m < probs.size(); ++m) {
      const bool right = member_predictions[m][i] == labels[i];
      any_right |= right;
      all_same &= member_predictions[m][i] == member_predictions[0][i];
      if (ensemble_right && !right) ++result.changes[m].corrected;
      if (!ensemble_right && right) ++result.changes[m].lost;
    }
    result.any_right += any_right ? 1 : 0;
    result.disagreements += all_same ? 0 : 1;
  }
  return result;
}

nlohmann::json to_json(const EnsembleResult& result) {
  nlohmann::json changes = nlohmann::json::array();
  for (const MemberChange& c : result.changes) changes.push_back({{"corrected", c.corrected}, {"lost", c.lost}});
  return {{"test", to_json(result.report)},
          {"disagreements", result.disagreements},
          {"any_member_right", result.any_right},
          {"member_changes", changes}};
}

}  // namespace dagger::suite
