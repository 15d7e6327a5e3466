#include "dagger/runtime/metrics.h"

#include <fmt/format.h>

#include "dagger/graph/error.h"

namespace dagger {

namespace {

double ratio(size_t num, size_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den); }

void check_class_ids(const std::vector<int>& ids, size_t classes, const char* what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= classes) {
      throw Error(fmt::format("{} {} at index {} is not a class id in 0..{}", what, ids[i], i,
                              static_cast<int64_t>(classes) - 1));
    }
  }
}

/// Fills the per-class metrics from the confusion matrix.
void score_classes(ClassificationReport& r) {
  const size_t k = r.classes();
  r.class_precision.assign(k, 0.0);
  r.class_recall.assign(k, 0.0);
  r.class_f1.assign(k, 0.0);
  for (size_t c = 0; c < k; ++c) {
    const size_t hits = r.confusion[c][c];
    size_t predicted = 0;
    for (size_t t = 0; t < k; ++t) predicted += r.confusion[t][c];
    const double p = ratio(hits, predicted), q = ratio(hits, r.support[c]);
    r.class_precision[c] = p;
    r.class_recall[c] = q;
    r.class_f1[c] = p + q == 0 ? 0.0 : 2 * p * q / (p + q);
  }
}

/// Support-weighted mean of a per-class metric.
double weighted(const ClassificationReport& r, const std::vector<double>& per_class) {
  if (r.count == 0) return 0;
  double sum = 0;
  for (size_t c = 0; c < r.classes(); ++c) sum += per_class[c] * static_cast<double>(r.support[c]);
  return sum / static_cast<double>(r.count);
}

}  // namespace

std::vector<std::string> numbered_class_names(size_t classes) {
  std::vector<std::string> names;
  for (size_t c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  return names;
}

ClassificationReport classify_report(const std::vector<int>& labels, const std::vector<int>& predictions,
                                     double mean_loss, std::vector<std::string> class_names) {
  if (labels.size() != predictions.size()) {
    throw Error(fmt::format("cannot score {} predictions against {} labels", predictions.size(), labels.size()));
  }
  const size_t k = class_names.size();
  check_class_ids(labels, k, "label");
  check_class_ids(predictions, k, "prediction");
  ClassificationReport r;
  r.class_names = std::move(class_names);
  r.support.assign(k, 0);
  r.confusion.assign(k, std::vector<size_t>(k, 0));
  r.loss = mean_loss;
  r.count = labels.size();
  size_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    ++r.confusion[labels[i]][predictions[i]];
    ++r.support[labels[i]];
    correct += labels[i] == predictions[i];
  }
  r.accuracy = ratio(correct, r.count);
  score_classes(r);
  r.precision = weighted(r, r.class_precision);
  r.recall = weighted(r, r.class_recall);
  r.f1 = weighted(r, r.class_f1);
  return r;
}

std::vector<int> argmax_rows(const Tensor& scores) {
  if (scores.dimension() != 2 || scores.shape()[1] == 0) {
    throw Error(fmt::format("argmax_rows needs an [n, k] tensor with k > 0, got {} dimensions", scores.dimension()));
  }
  const size_t n = scores.shape()[0], k = scores.shape()[1];
  std::vector<int> out(n);
  for (size_t i = 0; i < n; ++i) {
    size_t best = 0;
    // Strictly greater keeps the first of equal scores.
    for (size_t j = 1; j < k; ++j) {
      if (scores(i, j) > scores(i, best)) best = j;
    }
    out[i] = static_cast<int>(best);
  }
  return out;
}

nlohmann::json to_json(const ClassificationReport& r) {
  return {
      {"count", r.count},
      {"loss", r.loss},
      {"accuracy", r.accuracy},
      {"precision", r.precision},
      {"recall", r.recall},
      {"f1", r.f1},
      {"class_names", r.class_names},
      {"class_precision", r.class_precision},
      {"class_recall", r.class_recall},
      {"class_f1", r.class_f1},
      {"support", r.support},
      {"confusion", r.confusion},
  };
}

}  // namespace dagger
