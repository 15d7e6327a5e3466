#include "dagger/suite/headline.h"

#include <fmt/format.h>

#include <algorithm>

namespace dagger::suite {

namespace {

/// A classifier of the suite: its predictions on its test slice, under one seed.
struct Scored {
  uint64_t seed = 0;
  const std::vector<int>* predictions = nullptr;
  double accuracy = 0, f1 = 0;
};

const Dataset& test_of(const SuiteResult& result, const RunConfig& config) {
  return result.data.at(slice_key(config))->test;
}

HeadlineFigure figure(const std::string& id, const std::string& quantity, const std::vector<Scored>& scored,
                      const Dataset& test, Metric metric, std::optional<double> study, const Bootstrap& bootstrap) {
  HeadlineFigure f;
  f.experiment = id;
  f.quantity = quantity;
  f.study = study;
  std::vector<std::vector<int>> predictions;
  for (const Scored& s : scored) {
    f.seeds.push_back(s.seed);
    f.values.push_back(metric == Metric::accuracy ? s.accuracy : s.f1);
    predictions.push_back(*s.predictions);
  }
  f.spread = mean_std(f.values);
  f.interval = bootstrap_interval(predictions, test.labels, test.class_labels().size(), metric, bootstrap);
  return f;
}

std::optional<double> study_number(const Experiment& e, const std::string& key) {
  for (const StudyNumber& n : e.study)
    if (n.key == key) return n.value;
  return std::nullopt;
}

bool shows(const Experiment& e, Show s) { return std::find(e.shows.begin(), e.shows.end(), s) != e.shows.end(); }

std::string run_name(const GridRun& g) {
  if (g.labels.empty()) return g.record.config.model;
  std::string out;
  for (const auto& [k, v] : g.labels) out += (out.empty() ? "" : " ") + k + "=" + v;
  return out;
}

void headline(const SuiteResult& result, const ExperimentResult& e, SuiteStatistics& out) {
  const Experiment& x = *e.experiment;
  const Bootstrap& b = out.bootstrap;
  if (shows(x, Show::best_splits) && e.chosen_run()) {
    std::vector<Scored> scored;
    for (const GridRun* g : e.chosen_runs())
      scored.push_back(
          {g->record.config.seed, &g->record.test_predictions, g->record.test.accuracy, g->record.test.f1});
    const Dataset& test = test_of(result, e.chosen_run()->record.config);
    out.figures.push_back(
        figure(x.id, "test accuracy", scored, test, Metric::accuracy, study_number(x, "best.test.accuracy"), b));
    out.figures.push_back(
        figure(x.id, "test F1", scored, test, Metric::weighted_f1, study_number(x, "best.test.f1"), b));
  }
  if (!e.ensembles.empty()) {
    std::vector<Scored> scored;
    for (const auto& [seed, en] : e.ensembles)
      scored.push_back({seed, &en.predictions, en.report.accuracy, en.report.f1});
    // Ensembles are listed by seed number; put the profile's seed first, as runs are.
    std::stable_partition(scored.begin(), scored.end(), [&](const Scored& s) { return s.seed == e.seeds.front(); });
    const Dataset& test = test_of(result, result.by_id.at(x.members.front())->chosen_run()->record.config);
    out.figures.push_back(figure(x.id, "ensemble test accuracy", scored, test, Metric::accuracy,
                                 study_number(x, "ensemble.accuracy"), b));
    out.figures.push_back(
        figure(x.id, "ensemble test F1", scored, test, Metric::weighted_f1, study_number(x, "ensemble.f1"), b));
  } else if (e.ensemble && x.members.empty()) {
    // One ensemble of the seeds' models (E24): no spread over seeds, the test set's interval.
    const std::vector<Scored> scored = {
        {e.seeds.front(), &e.ensemble->predictions, e.ensemble->report.accuracy, e.ensemble->report.f1}};
    const Dataset& test = test_of(result, e.chosen_run()->record.config);
    out.figures.push_back(figure(x.id, "ensemble of the seeds' models, test accuracy", scored, test,
                                 Metric::accuracy, std::nullopt, b));
    out.figures.push_back(
        figure(x.id, "ensemble of the seeds' models, test F1", scored, test, Metric::weighted_f1, std::nullopt, b));
  }
}

void paired(const SuiteResult& result, const ExperimentResult& e, SuiteStatistics& out) {
  const Experiment& x = *e.experiment;
  for (const auto& [seed, en] : e.ensembles)
    for (const std::string& id : x.members)
      for (const GridRun* g : result.by_id.at(id)->chosen_runs())
        if (g->record.config.seed == seed)
          out.pairs.push_back(
              {x.id, "ensemble", id + " chosen", seed,
               mcnemar(en.predictions, g->record.test_predictions, test_of(result, g->record.config).labels)});
  if (e.ensemble && x.members.empty())
    for (const GridRun* g : e.chosen_runs())
      out.pairs.push_back({x.id, "ensemble", fmt::format("seed {} model", g->record.config.seed), g->record.config.seed,
                           mcnemar(e.ensemble->predictions, g->record.test_predictions,
                                   test_of(result, g->record.config).labels)});
  // An ablation: each run against the full recipe's.
  if (shows(x, Show::ablation))
    for (const GridRun& g : e.runs)
      for (const GridRun& full : e.runs)
        if (&g != &full && full.labels.count("without") && full.labels.at("without") == "nothing")
          out.pairs.push_back({x.id, run_name(g), run_name(full), g.record.config.seed,
                               mcnemar(g.record.test_predictions, full.record.test_predictions,
                                       test_of(result, g.record.config).labels)});
  // Two configurations (bn or not, residual or plain, raw or scaled): one against the other.
  const size_t seeds = std::max<size_t>(1, e.seeds.size());
  if (grid_size(x) != 2 || e.runs.size() != 2 * seeds) return;
  for (size_t s = 0; s < seeds; ++s) {
    const GridRun &a = e.runs[s], &b = e.runs[seeds + s];
    out.pairs.push_back(
        {x.id, run_name(a), run_name(b), a.record.config.seed,
         mcnemar(a.record.test_predictions, b.record.test_predictions, test_of(result, a.record.config).labels)});
  }
}

std::string percent(double v) { return fmt::format("{:.2f}", 100 * v); }

}  // namespace

SuiteStatistics suite_statistics(const SuiteResult& result, const Bootstrap& bootstrap) {
  SuiteStatistics out;
  out.bootstrap = bootstrap;
  for (const ExperimentResult& e : result.experiments) {
    headline(result, e, out);
    paired(result, e, out);
  }
  return out;
}

std::string statistics_markdown(const SuiteStatistics& s) {
  std::string md = "## Statistics: seeds, intervals, paired tests\n\n";
  md += fmt::format(
      "Figures in percent. *mean ± std* is over the seeds (sample standard deviation). The interval is a "
      "percentile bootstrap of that mean over the test images: {} resamples of the test set drawn with "
      "replacement (generator seed {}), every seed's predictions scored on the same resample, {:.0f}% of the "
      "resampled means inside; it measures the test set's sampling error for these trained models, the std "
      "the seeds'. The study's figure is one run; the last column says whether it lies inside our interval.\n\n",
      s.bootstrap.resamples, s.bootstrap.seed, 100 * s.bootstrap.level);
  md += "| experiment | quantity | seeds | per seed | mean ± std | 95% interval | study's | study's figure |\n";
  md += "|---|---|---|---|---|---|---|---|\n";
  for (const HeadlineFigure& f : s.figures) {
    std::vector<std::string> values;
    for (double v : f.values) values.push_back(percent(v));
    md += fmt::format("| {} | {} | {} | {} | {} ± {} | [{}, {}] | {} | {} |\n", f.experiment, f.quantity,
                      fmt::join(f.seeds, ", "), fmt::join(values, ", "), percent(f.spread.mean), percent(f.spread.std),
                      percent(f.interval.low), percent(f.interval.high), f.study ? percent(*f.study) : "—",
                      !f.study                        ? "—"
                      : f.interval.contains(*f.study) ? "within the interval"
                                                      : "**outside it**");
  }
  md +=
      "\nMcNemar's test on the same test images: *only A* counts the images A gets right and B wrong, *only B* "
      "the reverse. With fewer than 25 such images the exact two-sided binomial test, otherwise chi-square "
      "with one degree of freedom and continuity correction.\n\n";
  md += "| experiment | seed | A | B | only A | only B | test | p |\n|---|---|---|---|---|---|---|---|\n";
  for (const PairedComparison& p : s.pairs)
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", p.experiment, p.seed, p.a, p.b, p.test.only_a,
                      p.test.only_b,
                      p.test.exact ? std::string("exact binomial") : fmt::format("χ² = {:.2f}", p.test.statistic),
                      p.test.p_value < 1e-4 ? std::string("< 0.0001") : fmt::format("{:.4f}", p.test.p_value));
  return md + "\n";
}

nlohmann::json to_json(const SuiteStatistics& s) {
  nlohmann::json figures = nlohmann::json::array(), pairs = nlohmann::json::array();
  for (const HeadlineFigure& f : s.figures)
    figures.push_back({{"experiment", f.experiment},
                       {"quantity", f.quantity},
                       {"seeds", f.seeds},
                       {"values", f.values},
                       {"mean", f.spread.mean},
                       {"std", f.spread.std},
                       {"interval", {f.interval.low, f.interval.high}},
                       {"study", f.study ? nlohmann::json(*f.study) : nlohmann::json()},
                       {"study_within", f.study ? nlohmann::json(f.interval.contains(*f.study)) : nlohmann::json()}});
  for (const PairedComparison& p : s.pairs)
    pairs.push_back({{"experiment", p.experiment},
                     {"seed", p.seed},
                     {"a", p.a},
                     {"b", p.b},
                     {"only_a", p.test.only_a},
                     {"only_b", p.test.only_b},
                     {"exact", p.test.exact},
                     {"statistic", p.test.statistic},
                     {"p_value", p.test.p_value}});
  return {
      {"bootstrap", {{"resamples", s.bootstrap.resamples}, {"seed", s.bootstrap.seed}, {"level", s.bootstrap.level}}},
      {"figures", figures},
      {"pairs", pairs}};
}

}  // namespace dagger::suite
