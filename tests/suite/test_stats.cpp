// The report's statistics against values computed by hand.
#include <catch2/catch.hpp>

#include "dagger/suite/stats.h"
#include "support.h"

using namespace dagger;
using namespace dagger::suite;
using Catch::Matchers::Contains;
using testing::error_of;

TEST_CASE("mean and sample standard deviation over seeds", "[suite][stats]") {
  const MeanStd m = mean_std({0.89, 0.90, 0.91});
  CHECK(m.mean == Approx(0.90));
  CHECK(m.std == Approx(0.01));  // sqrt((0.01^2 + 0 + 0.01^2) / 2)
  CHECK(mean_std({0.5}).std == 0);
  CHECK(mean_std({}).count == 0);
}

TEST_CASE("McNemar: exact binomial for few discordant images, chi-square with correction otherwise", "[suite][stats]") {
  // A right where B is wrong on images 0-2, B right where A is wrong on 3-5 and 6; 7 both right.
  const std::vector<int> labels = {0, 1, 2, 3, 4, 5, 6, 7};
  const std::vector<int> a = {0, 1, 2, 9, 9, 9, 9, 7};
  const std::vector<int> b = {9, 9, 9, 3, 4, 5, 6, 7};
  const McNemar small = mcnemar(a, b, labels);
  CHECK(small.only_a == 3);
  CHECK(small.only_b == 4);
  CHECK(small.exact);
  // 2 * (C(7,0) + C(7,1) + C(7,2) + C(7,3)) / 2^7 = 2 * 64 / 128 = 1.
  CHECK(small.p_value == Approx(1.0));
  // b = 3, c = 9: 2 * (1 + 12 + 66 + 220) / 4096 = 0.14599609375.
  CHECK(mcnemar_from_counts(3, 9).p_value == Approx(0.14599609375).epsilon(1e-12));
  // b = 40, c = 20: (20 - 1)^2 / 60 = 6.01667; upper tail of chi-square(1) = erfc(sqrt(6.01667 / 2)).
  const McNemar large = mcnemar_from_counts(40, 20);
  CHECK_FALSE(large.exact);
  CHECK(large.statistic == Approx(361.0 / 60));
  CHECK(large.p_value == Approx(0.01417138825401233).epsilon(1e-9));
  CHECK(mcnemar_from_counts(0, 0).p_value == 1);
  CHECK_THAT(error_of([&] { mcnemar(a, {1}, labels); }), Contains("1 predictions for 8 labels"));
}

TEST_CASE("weighted F1 from predictions, on all images or a resample", "[suite][stats]") {
  // Class 0: 2 true, 3 predicted, 2 right: F1 = 4/5. Class 1: 2 true, 1 predicted, 1 right: F1 = 2/3.
  const std::vector<int> labels = {0, 0, 1, 1}, predictions = {0, 0, 0, 1};
  CHECK(weighted_f1(predictions, labels, 2) == Approx((2 * 0.8 + 2 * 2.0 / 3) / 4));
  // Rows 2, 3, 3: class 1 only, one of three wrong: class 1 F1 = 2*2/(2+3) = 0.8, weight 1.
  CHECK(weighted_f1(predictions, labels, 2, {2, 3, 3}) == Approx(0.8));
}

TEST_CASE("bootstrap interval of a tiny vector with a known answer", "[suite][stats]") {
  // Four images, three right: a resample's accuracy is k/4 with k ~ Binomial(4, 3/4), so
  // P(0) = 1/256, P(1/4) = 12/256: the 2.5% quantile is 1/4; P(k <= 3) = 175/256 < 97.5%: the top is 1.
  const std::vector<int> labels = {0, 1, 2, 3}, predictions = {0, 1, 2, 0};
  const Interval i = bootstrap_interval({predictions}, labels, 4, Metric::accuracy);
  CHECK(i.low == 0.25);
  CHECK(i.high == 1.0);
  CHECK(i.contains(0.75));
  CHECK_FALSE(i.contains(0.2));
  // Everything right: every resample scores 1. Two classifiers: the mean of their scores.
  CHECK(bootstrap_interval({labels}, labels, 4, Metric::weighted_f1).low == 1.0);
  const Interval both = bootstrap_interval({labels, {9, 9, 9, 9}}, labels, 10, Metric::accuracy);
  CHECK(both.low == 0.5);
  CHECK(both.high == 0.5);
  // The same seed gives the same interval; the draw is the generator's, not the library's.
  const Interval again = bootstrap_interval({predictions}, labels, 4, Metric::accuracy);
  CHECK(again.low == i.low);
  CHECK_THAT(error_of([&] { bootstrap_interval({{1}}, labels, 4, Metric::accuracy); }),
             Contains("1 predictions for 4 labels"));
}
