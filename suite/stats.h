#pragma once
/// The statistics the report puts on its headline figures: mean and standard deviation over
/// seeds, a bootstrap interval over the test images, and McNemar's paired test of two
/// classifiers on the same test images. Everything is deterministic: the bootstrap draws from
/// its own seeded generator, so a report's intervals are the same on every machine.
#include <cstdint>
#include <string>
#include <vector>

namespace dagger::suite {

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for fewer than two values).
struct MeanStd {
  double mean = 0, std = 0;
  size_t count = 0;
};
MeanStd mean_std(const std::vector<double>& values);

/// What a bootstrap resample is scored by.
enum class Metric { accuracy, weighted_f1 };

/// A two-sided percentile interval.
struct Interval {
  double low = 0, high = 0;
  bool contains(double v) const { return v >= low && v <= high; }
};

/// The report's bootstrap: 1,000 resamples from generator seed 20260101, a 95% interval.
struct Bootstrap {
  int resamples = 1000;
  uint64_t seed = 20260101;
  double level = 0.95;
};

/// A percentile bootstrap interval of `metric` averaged over classifiers: each resample draws
/// labels.size() test images with replacement (index = generator() % n, mt19937_64 seeded with
/// options.seed, so the draw is the same with any standard library), scores every classifier's
/// `predictions` on it and averages; with B resamples sorted ascending the interval is
/// [s[floor(a B)], s[ceil((1 - a) B) - 1]], a = (1 - level) / 2, as many resamples below as above.
/// Every classifier's predictions are over the same images as `labels` (classes 0..classes-1).
/// Throws Error when a prediction vector's length differs from the labels' or there are none.
Interval bootstrap_interval(const std::vector<std::vector<int>>& predictions, const std::vector<int>& labels,
                            size_t classes, Metric metric, const Bootstrap& options = {});

/// McNemar's test of classifiers A and B on the same images.
struct McNemar {
  int64_t only_a = 0;    ///< images A gets right and B wrong
  int64_t only_b = 0;    ///< images B gets right and A wrong
  double statistic = 0;  ///< chi-square with continuity correction; 0 when the exact test is used
  double p_value = 1;
  bool exact = false;  ///< the exact binomial test (few discordant images), else chi-square
};

/// With b + c discordant images: exact two-sided binomial test (p = min(1, 2 P[X <= min(b, c)]),
/// X ~ Binomial(b + c, 1/2)) when b + c < 25, otherwise chi-square with one degree of freedom and
/// continuity correction, (|b - c| - 1)^2 / (b + c). Throws Error on a length mismatch.
McNemar mcnemar(const std::vector<int>& a, const std::vector<int>& b, const std::vector<int>& labels);
McNemar mcnemar_from_counts(int64_t only_a, int64_t only_b);

/// Support-weighted F1 of `predictions` against `labels` on the images `rows` picks (all when empty).
double weighted_f1(const std::vector<int>& predictions, const std::vector<int>& labels, size_t classes,
                   const std::vector<size_t>& rows = {});

}  // namespace dagger::suite
