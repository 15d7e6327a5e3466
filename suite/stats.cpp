#include "dagger/suite/stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "dagger/graph/error.h"

namespace dagger::suite {

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd out;
  out.count = values.size();
  if (values.empty()) return out;
  for (double v : values) out.mean += v;
  out.mean /= static_cast<double>(values.size());
  if (values.size() < 2) return out;
  double squares = 0;
  for (double v : values) squares += (v - out.mean) * (v - out.mean);
  out.std = std::sqrt(squares / static_cast<double>(values.size() - 1));
  return out;
}

double weighted_f1(const std::vector<int>& predictions, const std::vector<int>& labels, size_t classes,
                   const std::vector<size_t>& rows) {
  // Per class: true positives, predicted count, true count; F1 = 2 tp / (predicted + true).
  std::vector<double> tp(classes), predicted(classes), support(classes);
  const size_t n = rows.empty() ? labels.size() : rows.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = rows.empty() ? k : rows[k];
    const auto p = static_cast<size_t>(predictions[i]), t = static_cast<size_t>(labels[i]);
    predicted[p] += 1;
    support[t] += 1;
    if (p == t) tp[t] += 1;
  }
  double f1 = 0;
  for (size_t c = 0; c < classes; ++c)
    if (support[c] > 0) f1 += support[c] * 2 * tp[c] / (predicted[c] + support[c]);
  return n ? f1 / static_cast<double>(n) : 0;
}

namespace {

double score(const std::vector<int>& predictions, const std::vector<int>& labels, size_t classes, Metric metric,
             const std::vector<size_t>& rows) {
  if (metric == Metric::weighted_f1) return weighted_f1(predictions, labels, classes, rows);
  size_t right = 0;
  for (size_t i : rows) right += predictions[i] == labels[i];
  return static_cast<double>(right) / static_cast<double>(rows.size());
}

}  // namespace

Interval bootstrap_interval(const std::vector<std::vector<int>>& predictions, const std::vector<int>& labels,
                            size_t classes, Metric metric, const Bootstrap& options) {
  if (predictions.empty() || labels.empty()) throw Error("bootstrap: no predictions to resample");
  for (const auto& p : predictions)
    if (p.size() != labels.size())
      throw Error(fmt::format("bootstrap: {} predictions for {} labels", p.size(), labels.size()));
  std::mt19937_64 rng(options.seed);
  const size_t n = labels.size();
  std::vector<double> stats;
  std::vector<size_t> rows(n);
  for (int b = 0; b < options.resamples; ++b) {
    for (size_t& r : rows) r = static_cast<size_t>(rng() % n);
    double sum = 0;
    for (const auto& p : predictions) sum += score(p, labels, classes, metric, rows);
    stats.push_back(sum / static_cast<double>(predictions.size()));
  }
  std::sort(stats.begin(), stats.end());
  const double tail = (1 - options.level) / 2, count = static_cast<double>(stats.size());
  const auto low = static_cast<size_t>(std::floor(tail * count));
  const auto high = static_cast<size_t>(std::ceil((1 - tail) * count)) - 1;
  return {stats[std::min(low, stats.size() - 1)], stats[std::min(high, stats.size() - 1)]};
}

McNemar mcnemar_from_counts(int64_t only_a, int64_t only_b) {
  McNemar m;
  m.only_a = only_a;
  m.only_b = only_b;
  const int64_t n = only_a + only_b;
  if (n == 0) return m;
  if (n < 25) {
    // Two-sided exact binomial: twice the lower tail of Binomial(n, 1/2) at the smaller count.
    m.exact = true;
    double tail = 0, term = std::pow(0.5, static_cast<double>(n));  // C(n, 0) / 2^n
    for (int64_t k = 0; k <= std::min(only_a, only_b); ++k) {
      tail += term;
      term = term * static_cast<double>(n - k) / static_cast<double>(k + 1);
    }
    m.p_value = std::min(1.0, 2 * tail);
    return m;
  }
  const double d = std::abs(static_cast<double>(only_a - only_b)) - 1;
  m.statistic = std::max(0.0, d) * std::max(0.0, d) / static_cast<double>(n);
  m.p_value = std::erfc(std::sqrt(m.statistic / 2));  // the chi-square(1) upper tail
  return m;
}

McNemar mcnemar(const std::vector<int>& a, const std::vector<int>& b, const std::vector<int>& labels) {
  if (a.size() != labels.size() || b.size() != labels.size())
    throw Error(fmt::format("McNemar: {} and {} predictions for {} labels", a.size(), b.size(), labels.size()));
  int64_t only_a = 0, only_b = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    only_a += a[i] == labels[i] && b[i] != labels[i];
    only_b += b[i] == labels[i] && a[i] != labels[i];
  }
  return mcnemar_from_counts(only_a, only_b);
}

}  // namespace dagger::suite
