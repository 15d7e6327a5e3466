#include "dagger/suite/suite.h"

#include <fmt/format.h>

#include <cassert>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <new>
#include <set>

#include "dagger/autodiff/step.h"
#include "dagger/graph/cost.h"
#include "dagger/graph/error.h"
#include "dagger/models/zoo.h"
#include "dagger/suite/bundle.h"
#include "dagger/suite/plan.h"
#include "dagger/suite/progress.h"
#include "dagger/suite/report.h"
#include "dagger/suite/schedule.h"

namespace dagger::suite {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class Runner {
 public:
  explicit Runner(const SuiteOptions& options) : options_(options) {
    if (!options_.load_data) options_.load_data = load_fashion_mnist;
  }

  SuiteResult run() {
    const auto t0 = Clock::now();
    prepare();
    if (options_.progress)
      fmt::print(stderr, "suite ({} profile): {} experiments ({}), {} runs, at most {:.0f} training images; out {}\n",
                 options_.profile.name, order_.size(), fmt::join(ids_, " "), runs_, planned_images_, options_.out_dir);
    fs::create_directories(options_.out_dir + "/runs");
    const Communicator* ranks = options_.communicator;
    work_.workers = ranks && ranks->size() > 1 ? static_cast<size_t>(ranks->size()) : static_cast<size_t>(options_.jobs);
    if (options_.jobs > 1 || (ranks && ranks->size() > 1)) {
      RunGraph graph(order_, options_.profile);
      auto train = [this](RunId id, const RunConfig& c) { file_run(id, train_named(id, c)); };
      const auto workers = ranks && ranks->size() > 1
                               ? rank_workers(*ranks, train,
                                              [this](RunId id, const RunConfig& c, const nlohmann::json& outcome) {
                                                file_run(id, train_named(id, c, &outcome));
                                              })
                               : thread_workers(static_cast<size_t>(options_.jobs), train);
      // A failed run's cause is printed when the suite stops; until then the runs under way,
      // perhaps hours long, would give no sign that nothing new starts.
      const auto failed = [&](RunId id, size_t running) {
        if (!options_.progress || running == 0) return;
        const std::lock_guard lock(mutex_);
        fmt::print(stderr, "{} failed; nothing new starts, and the suite stops when the {} run{} under way end{}\n",
                   label(id, graph.config(id)), running, running == 1 ? "" : "s", running == 1 ? "s" : "");
      };
      run_graph(
          graph, *workers, [this](size_t p) { return begin_experiment(p); }, [this](size_t p) { end_experiment(p); },
          failed);
    } else {
      for (size_t p = 0; p < order_.size(); ++p) {
        const std::vector<RunConfig> configs = begin_experiment(p);
        for (size_t i = 0; i < configs.size(); ++i) file_run({p, i}, train_named({p, i}, configs[i]));
        end_experiment(p);
      }
    }
    result_.wall_seconds = seconds_since(t0);
    return std::move(result_);
  }

  /// On a rank other than 0: trains what rank 0 hands this rank, one line per run on stderr.
  void serve() {
    const bool progress = options_.progress;
    options_.progress = false;  // this rank's ETA would see only its own runs
    prepare();
    fs::create_directories(options_.out_dir + "/runs");
    const int rank = options_.communicator->rank();
    serve_runs(*options_.communicator, [&](RunId id, const RunConfig& c) {
      const auto t0 = Clock::now();
      const RunRecord r = train_named(id, c);
      if (progress)
        fmt::print(stderr, "rank {}: {} {} in {}\n", rank, label(id, c), r.reused ? "reused" : "trained",
                   format_duration(seconds_since(t0)));
      return nlohmann::json{{"reused", r.reused}, {"rank", rank}};
    });
  }

 private:
  /// The suite's order and its planned work, the same on every rank.
  void prepare() {
    order_ = plan(*options_.experiments, options_.only, options_.profile.scope);
    for (const Experiment* e : order_) {
      plan_workload(*e);
      runs_ += grid_points(*e, options_.profile).size();
      ids_.push_back(e->id);
    }
    result_.experiments.resize(order_.size());  // filled in place: by_id points into it
    started_.resize(order_.size());
    for (const Experiment* e : order_) {
      for (const std::string& id : e->members) combined_.insert(id);
      if (e->members.empty() && std::ranges::count(e->shows, Show::ensemble)) combined_.insert(e->id);
    }
  }

  /// The data of one slice, loaded once.
  const Splits& data(size_t train, size_t val, size_t test, bool raw) {
    const std::string key = slice_key(train, val, test, raw, options_.profile.seed);
    auto& slot = result_.data[key];
    if (!slot) {
      SplitOptions o;
      o.dir = options_.data_dir;
      o.seed = options_.profile.seed;
      o.train_limit = train;
      o.val_limit = val;
      o.test_limit = test;
      o.scale = !raw;
      const auto t0 = Clock::now();
      slot = std::make_shared<Splits>(options_.load_data(o));
      if (options_.progress)
        fmt::print(stderr, "data {}: {} train / {} val / {} test images{} ({:.1f}s)\n", key, slot->train.size(),
                   slot->val.size(), slot->test.size(), raw ? ", raw pixels" : "", seconds_since(t0));
    }
    return *slot;
  }

  int epochs_for(const Experiment& e) const { return planned_epochs(e, options_.profile); }

  void plan_workload(const Experiment& e) {
    if (e.run.model.empty()) return;
    const Budget& b = options_.profile.budget_for(e.run.model);
    const double images = (b.train ? static_cast<double>(b.train) : 48000.0) * epochs_for(e);
    const size_t seeds = seeds_of(e, options_.profile).size();
    planned_images_ += images * static_cast<double>(grid_size(e) * seeds);
    for (const std::string& model : planned_models(e))
      for (size_t s = 0; s < seeds; ++s) {
        const double flops = images * flops_per_image(model);
        planned_flops_[e.id].push_back(flops);
        work_.planned[model_family(e.run.model)][stops_early(e)] += flops;
      }
  }

  /// Whether the runs of `e` stop early (all but the fixed-length ones, E06 and E19).
  static bool stops_early(const Experiment& e) { return e.run.epochs <= 0; }

  /// The model of each run of `e` as far as it is known before the suite starts (priced_model).
  static std::vector<std::string> planned_models(const Experiment& e) {
    std::vector<std::string> models;
    for (const RunTemplate& run : sketch_runs(e)) models.push_back(priced_model(run.model));
    return models;
  }

  double flops_per_image(const std::string& model) {
    auto [it, fresh] = flops_per_image_.try_emplace(model, 0.0);
    if (fresh) it->second = training_flops_per_image(model);
    return it->second;
  }

  /// A field's value with "@Exx.name" references looked up in earlier results.
  std::string resolve(const std::string& value, const Experiment& e) const {
    if (!value.starts_with('@')) return value;
    const auto dot = value.find('.');
    const std::string id = value.substr(1, dot - 1), name = dot == std::string::npos ? "" : value.substr(dot + 1);
    auto it = result_.by_id.find(id);
    if (it == result_.by_id.end())
      throw Error(fmt::format("experiment {}: '{}' refers to {}, which has not run", e.id, value, id));
    auto v = it->second->values.find(name);
    if (v == it->second->values.end())
      throw Error(fmt::format("experiment {}: '{}': {} publishes no '{}'", e.id, value, id, name));
    return v->second;
  }

  /// A grid combination with its references resolved.
  std::map<std::string, std::string> resolved(std::map<std::string, std::string> labels, const Experiment& e) const {
    for (auto& [name, value] : labels) value = resolve(value, e);
    return labels;
  }

  RunConfig configure(const Experiment& e, const std::map<std::string, std::string>& labels) const {
    return configure_run(e, apply_labels(e.run, labels, e.id), options_.profile,
                         [&](const std::string& value) { return resolve(value, e); });
  }

  /// Where and how the suite's runs train (folder, executor, threads, provenance), without a
  /// progress hook.
  RunContext base_context() const {
    RunContext ctx;
    ctx.runs_dir = options_.out_dir + "/runs";
    ctx.executor = options_.executor;
    ctx.threads = options_.threads;
    ctx.conv_algo = options_.conv_algo;
    ctx.precision = options_.precision;
    ctx.provenance = options_.provenance;
    ctx.provenance["profile"] = options_.profile.name;
    return ctx;
  }

  /// How run `index` of `e` trains; its epochs add their FLOPs to `done` (guarded by mutex_).
  /// Call it holding mutex_.
  RunContext context(const Experiment& e, size_t index, size_t count, const RunConfig& c, Clock::time_point& tick,
                     double& done) {
    RunContext ctx = base_context();
    const size_t f = model_family(c.model);
    const bool stops = stops_early(e);
    const double flops =
        static_cast<double>(data(c.train, c.val, c.test, c.raw_pixels).train.size()) * flops_per_image(c.model);
    ctx.on_epoch = [this, &e, index, count, c, f, stops, flops, &tick, &done](const EpochStats& s) {
      {
        const std::lock_guard lock(mutex_);
        work_.epoch(f, stops, flops, seconds_since(tick));
        done += flops;
      }
      tick = Clock::now();
      if (options_.after_epoch) options_.after_epoch(c, s);
      if (!options_.progress) return;
      const std::lock_guard lock(mutex_);
      fmt::print(
          stderr,
          "[{} {}/{}] {} epoch {}/{}  loss {:.4f}  val_loss {:.4f}  val_acc {:.4f}  {:.0f} img/s  | suite {:.0f}%  "
          "ETA {}\n",
          e.id, index + 1, count, c.model, s.epoch, c.epochs, s.train_loss, s.val_loss, s.val_accuracy,
          s.images_per_sec, 100 * work_.fraction(), work_.eta());
    };
    return ctx;
  }

  /// The configurations of the runs of the experiment at `position` in the suite's order, its
  /// references resolved (the experiments it references are derived).
  std::vector<RunConfig> begin_experiment(size_t position) {
    const Experiment& e = *order_[position];
    const std::lock_guard lock(mutex_);
    started_[position] = Clock::now();
    ExperimentResult& r = result_.experiments[position];
    r.experiment = &e;
    if (options_.progress) fmt::print(stderr, "== {} {}\n", e.id, e.title);
    if (std::find(e.shows.begin(), e.shows.end(), Show::data_overview) != e.shows.end()) data(0, 0, 0, false);
    r.seeds = seeds_of(e, options_.profile);
    std::vector<RunConfig> configs;
    for (const GridPoint& point : grid_points(e, options_.profile)) {
      const auto labels = resolved(point.labels, e);
      RunConfig c = configure(e, labels);
      train_under_seed(c, point.seed, options_.profile);
      configs.push_back(c);
      r.runs.push_back({labels, RunRecord{}});
    }
    return configs;
  }

  /// How progress lines name run `id`: "[E03 2/5] shallow".
  std::string label(RunId id, const RunConfig& c) const {
    const Experiment& e = *order_[id.experiment];
    return fmt::format("[{} {}/{}] {}", e.id, id.index + 1, grid_size(e) * options_.profile.seeds_of(e.id).size(),
                       c.model);
  }

  /// train_run, its error naming the run: with several runs under way (--jobs, MPI ranks) the
  /// one line that ends the suite must say which failed. Out of memory stays itself.
  RunRecord train_named(RunId id, const RunConfig& c, const nlohmann::json* remote = nullptr) {
    return named(id, c, [&] { return train_run(id, c, remote); });
  }

  /// What `train` returns, its error naming run `id` (as train_named).
  template <class Train>
  RunRecord named(RunId id, const RunConfig& c, const Train& train) const {
    try {
      return train();
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(fmt::format("{}: {}", label(id, c), e.what()));
    }
  }

  /// Trains or reuses run `id`; several may train at once, each on its own thread. With
  /// `remote`, another rank trained it (that rank's outcome): its finished record is loaded.
  RunRecord train_run(RunId id, const RunConfig& c, const nlohmann::json* remote = nullptr) {
    const Experiment& e = *order_[id.experiment];
    const size_t count = grid_size(e) * seeds_of(e, options_.profile).size();
    const size_t f = model_family(c.model);
    const bool stops = stops_early(e);
    const Splits* d = nullptr;
    double planned = 0, done = 0;
    Clock::time_point tick;
    RunContext ctx;
    {
      const std::lock_guard lock(mutex_);
      d = &data(c.train, c.val, c.test, c.raw_pixels);
      planned = static_cast<double>(d->train.size()) * c.epochs * flops_per_image(c.model);
      work_.planned[f][stops] += planned - planned_flops_.at(e.id).at(id.index);  // now that the model is known
      ctx = context(e, id.index, count, c, tick, done);
    }
    tick = Clock::now();
    RunRecord record = run_or_reuse(c, {&d->train, &d->val, &d->test}, ctx);
    const std::lock_guard lock(mutex_);
    // Early stopping frees planned work; a reused run counts as done at its own length, and so
    // does one another rank trained, timed by that rank's clock; the final evaluation counts as
    // this run's time.
    const int epochs = static_cast<int>(record.history.size());
    const double length = planned / std::max(1, c.epochs) * epochs;
    if (remote) record.reused = remote->at("reused").get<bool>();
    if (remote && !record.reused) {
      work_.trained_elsewhere(f, stops, length, record.train_seconds);
      work_.finish(f, stops, planned, length, 0, epochs, c.epochs);
    } else {
      if (!record.reused) work_.seconds[f] += seconds_since(tick);
      work_.finish(f, stops, planned, done, record.reused ? length : 0, epochs, c.epochs);
    }
    if (!options_.progress) return record;
    if (remote && !record.reused)
      fmt::print(stderr, "[{} {}/{}] {}: trained by rank {}\n", e.id, id.index + 1, count, c.model,
                 remote->at("rank").get<int>());
    else if (record.reused)
      fmt::print(stderr, "[{} {}/{}] {}: reusing the finished run in runs/{}{}\n", e.id, id.index + 1, count, c.model,
                 record.key, record.key == c.key() ? "" : " (the same configuration, its model spelled another way)");
    else if (record.provenance.contains("continued"))
      fmt::print(stderr, "[{} {}/{}] {}: carried on after the first {} epochs, trained by runs/{}\n", e.id,
                 id.index + 1, count, c.model, record.provenance["continued"]["epochs"].get<int>(),
                 record.provenance["continued"]["from"].get<std::string>());
    return record;
  }

  /// Files the record of run `id` in its experiment's result.
  void file_run(RunId id, RunRecord record) {
    const std::lock_guard lock(mutex_);
    ExperimentResult& r = result_.experiments[id.experiment];
    ++(record.reused ? r.reused : r.trained);
    add_to_partial_bundle(record, options_.out_dir, combined_.contains(order_[id.experiment]->id));
    r.runs[id.index].record = std::move(record);
  }

  /// The keys of the runs whose test probabilities the partial bundle keeps: every run of a
  /// combined experiment still under way (which it chooses is not known yet), the chosen runs of
  /// one that has ended. Call it holding mutex_.
  std::set<std::string> runs_to_combine() const {
    std::set<std::string> keys;
    for (const ExperimentResult& r : result_.experiments) {
      if (!r.experiment || !combined_.contains(r.experiment->id)) continue;
      if (!result_.by_id.contains(r.experiment->id)) {
        for (const GridRun& g : r.runs)
          if (!g.record.key.empty()) keys.insert(g.record.key);
      } else {
        for (const GridRun* g : r.chosen_runs()) keys.insert(g->record.key);
      }
    }
    return keys;
  }

  /// Trains again each chosen run of a combined experiment that was imported from a bundle
  /// without its test probabilities (a complete bundle keeps only its own choices' ones, and a
  /// suite averaging over seeds may choose another combination), on this thread. The same
  /// configuration trains to the same result, now with its probabilities.
  void retrain_chosen_without_probabilities(size_t position) {
    const Experiment& e = *order_[position];
    ExperimentResult& r = result_.experiments[position];
    std::vector<size_t> stale;
    {
      const std::lock_guard lock(mutex_);
      if (!combined_.contains(e.id) || r.runs.empty()) return;
      const size_t first = chosen_combination(r), seeds = std::max<size_t>(1, r.seeds.size());
      for (size_t i = first; i < first + seeds; ++i)
        if (const RunRecord& m = r.runs[i].record;
            m.test_probs.dimension() != 2 && fs::exists(fs::path(m.dir) / kImportedFile))
          stale.push_back(i);
    }
    for (const size_t i : stale) {
      const RunConfig c = r.runs[i].record.config;
      if (options_.progress)
        fmt::print(stderr, "{}: chosen, but imported without its test probabilities: trained again\n",
                   label({position, i}, c));
      RunContext ctx = base_context();  // no progress hook: its work was counted when it was imported
      const Splits* d = nullptr;
      {
        const std::lock_guard lock(mutex_);
        d = &data(c.train, c.val, c.test, c.raw_pixels);
      }
      // An equivalent run's folder (another experiment's, under another spelling) stays for that
      // experiment; this one trains in its own.
      if (r.runs[i].record.key == c.key())
        fs::remove_all(r.runs[i].record.dir);
      else
        ctx.reuse_equivalent = false;
      RunRecord record = named({position, i}, c, [&] { return run_or_reuse(c, {&d->train, &d->val, &d->test}, ctx); });
      const std::lock_guard lock(mutex_);
      --r.reused;
      ++r.trained;
      add_to_partial_bundle(record, options_.out_dir, true);
      r.runs[i].record = std::move(record);
    }
  }

  /// Derives what the experiment at `position` publishes, its runs finished and the experiments
  /// it depends on derived.
  void end_experiment(size_t position) {
    const Experiment& e = *order_[position];
    retrain_chosen_without_probabilities(position);
    const std::lock_guard lock(mutex_);
    ExperimentResult& r = result_.experiments[position];
    derive(e, r);
    r.wall_seconds = seconds_since(started_[position]);
    result_.trained += r.trained;
    result_.reused += r.reused;
    result_.by_id[e.id] = &r;
    if (combined_.contains(e.id)) prune_partial_bundle(options_.out_dir, runs_to_combine());
    if (options_.progress)
      fmt::print(stderr, "== {} done in {}: {} runs trained, {} reused\n", e.id, format_duration(r.wall_seconds),
                 r.trained, r.reused);
  }

  /// The first run of the combination with the lowest validation loss reached, averaged over the
  /// seeds of a combination (its runs are consecutive, the profile's seed first): a diverged
  /// run's NaN epochs never win. `r` has runs.
  static size_t chosen_combination(const ExperimentResult& r) {
    const size_t seeds = std::max<size_t>(1, r.seeds.size());
    auto loss = [&](size_t first) {
      double sum = 0;
      for (size_t s = 0; s < seeds; ++s) sum += r.runs[first + s].record.lowest_val_loss();
      return sum / static_cast<double>(seeds);
    };
    size_t chosen = 0;
    for (size_t i = seeds; i < r.runs.size(); i += seeds)
      if (loss(i) < loss(chosen)) chosen = i;
    return chosen;
  }

  /// What an experiment publishes and measures once its runs are done.
  void derive(const Experiment& e, ExperimentResult& r) const {
    if (!r.runs.empty()) r.chosen = static_cast<int>(chosen_combination(r));
    if (const GridRun* best = r.chosen_run()) {
      const RunConfig& c = best->record.config;
      r.values = best->labels;
      r.values["model"] = c.model;
      r.values["optimizer"] = c.optimizer;
      r.values["lr"] = fmt::format("{}", c.lr);
      r.values["momentum"] = fmt::format("{}", c.momentum);
      const std::pair<const char*, const ClassificationReport*> sets[] = {
          {"train", &best->record.train}, {"val", &best->record.val}, {"test", &best->record.test}};
      for (const auto& [set, rep] : sets) {
        const std::string k = std::string("best.") + set + ".";
        r.measures[k + "loss"] = rep->loss;
        r.measures[k + "accuracy"] = rep->accuracy;
        r.measures[k + "precision"] = rep->precision;
        r.measures[k + "recall"] = rep->recall;
        r.measures[k + "f1"] = rep->f1;
      }
    }
    const auto shows = [&](Show s) { return std::find(e.shows.begin(), e.shows.end(), s) != e.shows.end(); };
    if (shows(Show::running_min) && r.chosen_run()) {
      std::vector<double> losses;
      for (const EpochStats& s : r.chosen_run()->record.history) losses.push_back(s.val_loss);
      RunningMinTable t = running_min_table(losses);
      r.values["patience"] = std::to_string(t.patience);
      r.measures["running_min.minimum"] = t.minimum;
      r.measures["running_min.wait"] = t.wait;
      r.measures["running_min.patience"] = t.patience;
      for (size_t i = 0; i < t.rows.size(); ++i) {
        r.measures[fmt::format("running_min.{}.loss", i + 1)] = t.rows[i].loss;
        r.measures[fmt::format("running_min.{}.epochs", i + 1)] = t.rows[i].epochs;
      }
      r.running_min = std::move(t);
    }
    std::vector<const RunRecord*> members;
    for (const std::string& id : e.members) {
      const GridRun* chosen = result_.by_id.at(id)->chosen_run();
      if (!chosen) throw Error(fmt::format("experiment {}: member {} has no runs to choose from", e.id, id));
      members.push_back(&chosen->record);
    }
    for (size_t i = 0; i < members.size(); ++i) {
      r.measures[fmt::format("member{}.test.accuracy", i + 1)] = members[i]->test.accuracy;
      r.measures[fmt::format("member{}.test.f1", i + 1)] = members[i]->test.f1;
      if (const auto best = members[i]->best_epoch_report()) {
        r.measures[fmt::format("member{}.best_epoch.accuracy", i + 1)] = best->accuracy;
        r.measures[fmt::format("member{}.best_epoch.f1", i + 1)] = best->f1;
      }
    }
    if (shows(Show::ensemble) && members.empty() && r.chosen_run()) {
      // No members: the chosen configuration's runs under each seed are the ensemble (E24).
      for (size_t s = 0; s < r.seeds.size(); ++s) members.push_back(&r.runs[r.chosen + s].record);
      r.ensemble = combine(e, members);
      r.measures["ensemble.accuracy"] = r.ensemble->report.accuracy;
      r.measures["ensemble.f1"] = r.ensemble->report.f1;
      r.measures["ensemble.loss"] = r.ensemble->report.loss;
    } else if (shows(Show::ensemble) && !members.empty()) {
      for (uint64_t seed : r.seeds)
        if (auto seed_members = members_under(e, seed)) r.ensembles[seed] = *combine(e, *seed_members);
      r.ensemble = r.ensembles.at(r.seeds.front());
      r.measures["ensemble.accuracy"] = r.ensemble->report.accuracy;
      r.measures["ensemble.f1"] = r.ensemble->report.f1;
      r.measures["ensemble.loss"] = r.ensemble->report.loss;
      r.best_epoch_ensemble = combine(e, members, /*best_epoch=*/true);
      if (const auto& best = r.best_epoch_ensemble) {
        r.measures["ensemble.best_epoch.accuracy"] = best->report.accuracy;
        r.measures["ensemble.best_epoch.f1"] = best->report.f1;
        r.measures["ensemble.best_epoch.loss"] = best->report.loss;
      }
    }
  }

  /// The chosen runs of e's members under `seed`, or nothing when a member has no run under it.
  std::optional<std::vector<const RunRecord*>> members_under(const Experiment& e, uint64_t seed) const {
    std::vector<const RunRecord*> members;
    for (const std::string& id : e.members)
      for (const GridRun* g : result_.by_id.at(id)->chosen_runs())
        if (g->record.config.seed == seed) members.push_back(&g->record);
    if (members.size() != e.members.size()) return std::nullopt;
    return members;
  }

  /// The ensemble of `members`' final weights, scored on their common test slice; with
  /// `best_epoch`, of their best-epoch weights, none when a member lacks those probabilities.
  std::optional<EnsembleResult> combine(const Experiment& e, const std::vector<const RunRecord*>& members,
                                        bool best_epoch = false) const {
    std::vector<const Tensor*> probs;
    for (const RunRecord* m : members) {
      if (slice_key(m->config) != slice_key(members.front()->config))
        throw Error(fmt::format("experiment {}: ensemble members were tested on different slices", e.id));
      if (best_epoch) {
        if (!m->best_epoch_probs()) return std::nullopt;
        probs.push_back(m->best_epoch_probs());
        continue;
      }
      if (m->test_probs.dimension() != 2)
        throw Error(
            fmt::format("experiment {}: member run {} has no test probabilities (imported from a bundle "
                        "without them); delete it to retrain it",
                        e.id, m->dir));
      probs.push_back(&m->test_probs);
    }
    const Dataset& test = result_.data.at(slice_key(members.front()->config))->test;
    return ensemble(probs, test.labels, test.class_labels());
  }

  SuiteOptions options_;
  std::vector<const Experiment*> order_;    // the suite's order (plan())
  std::vector<std::string> ids_;            // of order_
  size_t runs_ = 0;                         // of every experiment of order_, seeds included
  std::vector<Clock::time_point> started_;  // per experiment: when it expanded
  // Guards what runs training at once share: the result, the data, the workload and stderr.
  std::mutex mutex_;
  SuiteResult result_;
  Workload work_;
  double planned_images_ = 0;
  std::map<std::string, std::vector<double>> planned_flops_;  // per experiment, per run: the plan's price
  std::map<std::string, double> flops_per_image_;             // per model
  std::set<std::string> combined_;  // experiments whose chosen runs an ensemble or analysis combines
};

}  // namespace

std::vector<const GridRun*> ExperimentResult::chosen_runs() const {
  std::vector<const GridRun*> out;
  if (chosen < 0) return out;
  const auto first = static_cast<size_t>(chosen);
  for (size_t s = 0; s < std::max<size_t>(1, seeds.size()) && first + s < runs.size(); ++s)
    out.push_back(&runs[first + s]);
  return out;
}

std::string slice_key(size_t train, size_t val, size_t test, bool raw_pixels, uint64_t seed) {
  auto size = [](size_t n) { return n ? std::to_string(n) : std::string("all"); };
  return fmt::format("{}-{}-{}{}-seed{}", size(train), size(val), size(test), raw_pixels ? "-raw" : "", seed);
}

std::string slice_key(const RunConfig& c) { return slice_key(c.train, c.val, c.test, c.raw_pixels, c.data_seed()); }

void serve_suite_runs(const SuiteOptions& options) {
  assert(options.communicator && options.communicator->rank() > 0);
  Runner(options).serve();
}

SuiteResult run_suite(const SuiteOptions& options) {
  if (options.out_dir.empty()) throw Error("the suite needs an output folder");
  try {
    SuiteResult result = Runner(options).run();
    write_report(result, options);
    return result;
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("cannot use the output folder '{}': {}", options.out_dir, e.what()));
  }
}

std::string list_experiments(const std::vector<Experiment>& experiments) {
  std::string out = fmt::format("{:<4} {:>4}  {:<45} {}\n", "id", "runs", "title", "uses");
  for (const Experiment& e : experiments)
    out += fmt::format("{:<4} {:>4}  {:<45} {}\n", e.id, grid_size(e) * std::max<size_t>(1, e.seeds.size()), e.title,
                       fmt::join(dependencies(e), ","));
  return out;
}

}  // namespace dagger::suite
