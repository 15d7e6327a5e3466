// Classification metrics against a small example worked out by hand.
#include <catch2/catch.hpp>

#include "dagger/graph/error.h"
#include "dagger/runtime/metrics.h"

using namespace dagger;
using Catch::Matchers::Contains;

namespace {

// Ten examples over classes 0..3; class 3 is never predicted.
//   true 0: predicted 0, 0, 1      true 2: predicted 2, 0
//   true 1: predicted 1, 1, 2, 1   true 3: predicted 0
const std::vector<int> kLabels = {0, 0, 0, 1, 1, 1, 1, 2, 2, 3};
const std::vector<int> kPredictions = {0, 0, 1, 1, 1, 2, 1, 2, 0, 0};

/// Ten classes named "0".."9".
const std::vector<std::string> kTen = numbered_class_names(10);

}  // namespace

TEST_CASE("classify_report matches a hand-worked example", "[metrics]") {
  const ClassificationReport r = classify_report(kLabels, kPredictions, 0.25, kTen);
  CHECK(r.count == 10);
  CHECK(r.loss == 0.25);
  CHECK(r.accuracy == Approx(0.6));

  // Column sums (predictions per class) are 4, 4, 2, 0; row sums (support) 3, 4, 2, 1.
  CHECK(r.support == std::vector<size_t>{3, 4, 2, 1, 0, 0, 0, 0, 0, 0});
  CHECK(r.class_precision[0] == Approx(0.5));
  CHECK(r.class_precision[1] == Approx(0.75));
  CHECK(r.class_precision[2] == Approx(0.5));
  CHECK(r.class_precision[3] == 0.0);  // never predicted
  CHECK(r.class_recall[0] == Approx(2.0 / 3.0));
  CHECK(r.class_recall[1] == Approx(0.75));
  CHECK(r.class_recall[2] == Approx(0.5));
  CHECK(r.class_recall[3] == 0.0);
  CHECK(r.class_f1[0] == Approx(4.0 / 7.0));  // 2 * 1/2 * 2/3 / (1/2 + 2/3)
  CHECK(r.class_f1[1] == Approx(0.75));
  CHECK(r.class_f1[2] == Approx(0.5));
  CHECK(r.class_f1[3] == 0.0);
  CHECK(r.class_f1[7] == 0.0);  // absent classes stay zero

  // Weighted by support 3, 4, 2, 1 over 10 examples.
  CHECK(r.precision == Approx((3 * 0.5 + 4 * 0.75 + 2 * 0.5) / 10));  // 0.55
  CHECK(r.recall == Approx(0.6));
  CHECK(r.f1 == Approx((3 * 4.0 / 7.0 + 4 * 0.75 + 2 * 0.5) / 10));  // 4/7
  CHECK(r.recall == Approx(r.accuracy));
}

TEST_CASE("the confusion matrix counts [true][predicted]", "[metrics]") {
  const ClassificationReport r = classify_report(kLabels, kPredictions, 0, kTen);
  using Row = std::vector<size_t>;
  CHECK(r.confusion[0] == Row{2, 1, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(r.confusion[1] == Row{0, 3, 1, 0, 0, 0, 0, 0, 0, 0});
  CHECK(r.confusion[2] == Row{1, 0, 1, 0, 0, 0, 0, 0, 0, 0});
  CHECK(r.confusion[3] == Row{1, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(r.confusion[9] == Row(10, 0));
}

TEST_CASE("weighted recall equals accuracy on any data", "[metrics]") {
  std::vector<int> labels, predictions;
  for (int i = 0; i < 997; ++i) {
    labels.push_back((i * 7) % 10);
    predictions.push_back(i % 3 == 0 ? labels.back() : (i * i) % 10);
  }
  const ClassificationReport r = classify_report(labels, predictions, 0, kTen);
  CHECK(r.accuracy > 0.3);
  CHECK(r.recall == Approx(r.accuracy).epsilon(1e-12));
  CHECK(r.precision != Approx(r.accuracy));
}

TEST_CASE("perfect and empty predictions", "[metrics]") {
  const ClassificationReport perfect = classify_report({0, 1, 9, 9}, {0, 1, 9, 9}, 0, kTen);
  CHECK(perfect.accuracy == 1.0);
  CHECK(perfect.precision == 1.0);
  CHECK(perfect.f1 == 1.0);
  const ClassificationReport empty = classify_report({}, {}, 0, kTen);
  CHECK(empty.count == 0);
  CHECK(empty.accuracy == 0.0);
  CHECK(empty.f1 == 0.0);
}

TEST_CASE("classify_report rejects mismatched or out-of-range ids", "[metrics]") {
  CHECK_THROWS_AS(classify_report({0, 1}, {0}, 0, kTen), Error);
  CHECK_THROWS_WITH(classify_report({0, 1}, {0}, 0, kTen), Contains("1 predictions") && Contains("2 labels"));
  CHECK_THROWS_WITH(classify_report({0, 10}, {0, 1}, 0, kTen), Contains("label 10"));
  CHECK_THROWS_WITH(classify_report({0, 1}, {-1, 1}, 0, kTen), Contains("prediction -1"));
}

TEST_CASE("argmax_rows picks the first of equal maxima", "[metrics]") {
  const Tensor scores = {{1.0f, 3.0f, 3.0f}, {5.0f, 5.0f, 1.0f}, {-1.0f, -2.0f, -0.5f}, {0.0f, 0.0f, 0.0f}};
  CHECK(argmax_rows(scores) == std::vector<int>{1, 0, 2, 0});
  CHECK(argmax_rows(Tensor::from_shape({0, 10})).empty());
  CHECK_THROWS_AS(argmax_rows(Tensor{1.0f, 2.0f}), Error);
}

TEST_CASE("to_json carries the metrics, per-class arrays and confusion matrix", "[metrics]") {
  const nlohmann::json j = to_json(classify_report(kLabels, kPredictions, 0.5, kTen));
  CHECK(j.at("count") == 10);
  CHECK(j.at("loss") == 0.5);
  CHECK(j.at("accuracy").get<double>() == Approx(0.6));
  CHECK(j.at("precision").get<double>() == Approx(0.55));
  CHECK(j.at("f1").get<double>() == Approx(4.0 / 7.0));
  CHECK(j.at("class_recall").size() == 10);
  CHECK(j.at("class_recall")[0].get<double>() == Approx(2.0 / 3.0));
  CHECK(j.at("class_precision")[1].get<double>() == Approx(0.75));
  CHECK(j.at("class_f1")[3] == 0.0);
  CHECK(j.at("support")[1] == 4);
  CHECK(j.at("confusion")[1][2] == 1);
  CHECK(j.at("confusion")[0][0] == 2);
  CHECK(j.at("class_names")[9] == "9");
}

TEST_CASE("reports cover as many classes as they are given names", "[metrics]") {
  const std::vector<std::string> four = {"up-left", "up-right", "down-left", "down-right"};
  const ClassificationReport r = classify_report(kLabels, kPredictions, 0, four);
  CHECK(r.classes() == 4);
  CHECK(r.support == std::vector<size_t>{3, 4, 2, 1});
  CHECK(r.confusion == std::vector<std::vector<size_t>>{{2, 1, 0, 0}, {0, 3, 1, 0}, {1, 0, 1, 0}, {1, 0, 0, 0}});
  CHECK(r.accuracy == Approx(0.6));
  CHECK(r.precision == Approx(0.55));  // the same weighted values as over ten classes
  const nlohmann::json j = to_json(r);
  CHECK(j.at("class_names") == nlohmann::json(four));
  CHECK(j.at("class_f1").size() == 4);
  // Three classes cannot hold label 3.
  CHECK_THROWS_WITH(classify_report(kLabels, kPredictions, 0, numbered_class_names(3)),
                    Contains("label 3 at index 9") && Contains("0..2"));
  const ClassificationReport two = classify_report({1, 0, 1}, {1, 1, 1}, 0, numbered_class_names(2));
  CHECK(two.confusion == std::vector<std::vector<size_t>>{{0, 1}, {0, 2}});
}
