#pragma once
/// The report's statistics on a finished suite: the headline figures (the chosen runs' test
/// accuracy and F1 of E10, E12, E20, E21, the ensembles' of E14 and E23) with their spread over
/// seeds, a bootstrap interval over the test images and whether the study's figure lies in it;
/// and McNemar's test of every pair the report compares on the same test images (ensemble
/// against member, and the two runs of E02, E11, E17, E18).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dagger/suite/stats.h"
#include "dagger/suite/suite.h"

namespace dagger::suite {

/// One headline quantity of one experiment over its seeds.
struct HeadlineFigure {
  std::string experiment, quantity;  ///< "E10", "test accuracy"
  std::vector<uint64_t> seeds;
  std::vector<double> values;  ///< one per seed
  MeanStd spread;
  Interval interval;  ///< bootstrap over test images of the mean over seeds
  std::optional<double> study;
};

/// Two classifiers of one experiment, under one seed, on the same test images.
struct PairedComparison {
  std::string experiment, a, b;
  uint64_t seed = 0;
  McNemar test;
};

struct SuiteStatistics {
  Bootstrap bootstrap;
  std::vector<HeadlineFigure> figures;
  std::vector<PairedComparison> pairs;
};

SuiteStatistics suite_statistics(const SuiteResult& result, const Bootstrap& bootstrap = {});

/// The report's section: the headline table, then the paired tests, with how they were computed.
std::string statistics_markdown(const SuiteStatistics& statistics);

nlohmann::json to_json(const SuiteStatistics& statistics);

}  // namespace dagger::suite
