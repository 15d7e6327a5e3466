#pragma once
/// Classification metrics over any number of classes: accuracy, per-class and
/// support-weighted precision, recall and F1 (as scikit-learn's average='weighted'), and the
/// confusion matrix.
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dagger/runtime/tensor.h"

namespace dagger {

struct ClassificationReport {
  double loss = 0;      ///< the mean loss handed in, kept alongside the counts it belongs to
  double accuracy = 0;  ///< fraction of predictions equal to the label
  double precision = 0, recall = 0, f1 = 0;  ///< per-class values averaged with weights = support
  std::vector<std::string> class_names;      ///< one per class; their number is the class count
  std::vector<double> class_precision, class_recall, class_f1;  ///< one per class
  std::vector<size_t> support;                                  ///< examples whose label is each class
  std::vector<std::vector<size_t>> confusion;                   ///< [true][predicted] counts
  size_t count = 0;                                             ///< examples scored

  /// Number of classes the report covers.
  size_t classes() const { return class_names.size(); }
};

/// "0", "1", ..., the names of `classes` classes that have no others.
std::vector<std::string> numbered_class_names(size_t classes);

/// Scores `predictions` against `labels` (both class ids in 0..K-1 for the K = class_names.size()
/// classes, same length). A class never predicted has precision 0, a class never present
/// recall 0, and F1 is 0 when both are. Weighted recall therefore always equals accuracy.
/// Throws Error on a length mismatch or an id outside 0..K-1.
ClassificationReport classify_report(const std::vector<int>& labels, const std::vector<int>& predictions,
                                     double mean_loss, std::vector<std::string> class_names);

/// Index of the largest score in each row of an [n, k] tensor; ties go to the lowest index.
/// Throws Error when `scores` is not two-dimensional with k > 0.
std::vector<int> argmax_rows(const Tensor& scores);

/// The report as JSON: the scalar metrics, the per-class arrays (with the class names), and
/// the confusion matrix as rows of true classes.
nlohmann::json to_json(const ClassificationReport& report);

}  // namespace dagger
