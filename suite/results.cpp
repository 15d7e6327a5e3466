// results.json: every run and every experiment of a suite invocation, as data.
#include "dagger/suite/report.h"

namespace dagger::suite {

nlohmann::json results_json(const SuiteResult& result, const SuiteOptions& options) {
  nlohmann::json experiments = nlohmann::json::array(), runs = nlohmann::json::object();
  for (const ExperimentResult& e : result.experiments) {
    nlohmann::json keys = nlohmann::json::array(), study = nlohmann::json::array();
    for (const GridRun& g : e.runs) {
      keys.push_back(g.record.key);
      const RunRecord& r = g.record;
      nlohmann::json history = nlohmann::json::array();
      for (const EpochStats& s : r.history)
        history.push_back({{"epoch", s.epoch},
                           {"train_loss", s.train_loss},
                           {"train_accuracy", s.train_accuracy},
                           {"val_loss", s.val_loss},
                           {"val_accuracy", s.val_accuracy},
                           {"seconds", s.seconds},
                           {"images_per_sec", s.images_per_sec}});
      runs[r.key] = {{"experiment", e.experiment->id},
                     {"grid", g.labels},
                     {"config", r.config.to_json()},
                     {"dir", "runs/" + r.key},
                     {"history", history},
                     {"best_epoch", r.best_epoch},
                     {"stopped_early", r.stopped_early},
                     {"train", to_json(r.train)},
                     {"val", to_json(r.val)},
                     {"test", to_json(r.test)},
                     {"train_seconds", r.train_seconds},
                     {"images_per_sec", r.images_per_sec},
                     {"reused", r.reused},
                     {"provenance", r.provenance}};
      if (r.best_epoch_test) runs[r.key]["best_epoch_test"] = to_json(*r.best_epoch_test);
    }
    for (const StudyNumber& n : e.experiment->study) {
      auto it = e.measures.find(n.key);
      study.push_back({{"label", n.label},
                       {"key", n.key},
                       {"study", n.value},
                       {"ours", it == e.measures.end() ? nlohmann::json() : nlohmann::json(it->second)}});
    }
    nlohmann::json j = {{"id", e.experiment->id},
                        {"title", e.experiment->title},
                        {"runs", keys},
                        {"values", e.values},
                        {"measures", e.measures},
                        {"study", study},
                        {"wall_seconds", e.wall_seconds},
                        {"trained", e.trained},
                        {"reused", e.reused}};
    if (const GridRun* best = e.chosen_run()) j["chosen"] = best->record.key;
    if (e.seeds.size() > 1) {
      j["seeds"] = e.seeds;
      nlohmann::json chosen = nlohmann::json::array();
      for (const GridRun* g : e.chosen_runs()) chosen.push_back(g->record.key);
      j["chosen_by_seed"] = chosen;
    }
    if (e.running_min) {
      nlohmann::json rows = nlohmann::json::array();
      for (const MinimumStand& s : e.running_min->rows)
        rows.push_back({{"running_min_loss", s.loss}, {"minimum_loss_for_epochs", s.epochs}});
      j["running_min"] = {{"rows", rows},
                          {"minimum", e.running_min->minimum},
                          {"wait", e.running_min->wait},
                          {"patience", e.running_min->patience}};
    }
    if (e.ensemble) {
      j["ensemble"] = to_json(*e.ensemble);
      j["ensemble"]["members"] = e.experiment->members;
      if (e.best_epoch_ensemble) j["ensemble_best_epoch"] = to_json(*e.best_epoch_ensemble);
      if (e.ensembles.size() > 1)
        for (const auto& [seed, en] : e.ensembles) j["ensembles_by_seed"][std::to_string(seed)] = to_json(en);
    }
    experiments.push_back(j);
  }
  return {{"profile", options.profile.name},  {"executor", executor_name(options.executor)},
          {"threads", options.threads},       {"seed", options.profile.seed},
          {"provenance", options.provenance}, {"wall_seconds", result.wall_seconds},
          {"experiments", experiments},       {"runs", runs}};
}

}  // namespace dagger::suite
