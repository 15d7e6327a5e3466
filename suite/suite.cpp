#include "dagger/suite/suite.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "dagger/autodiff/step.h"
#include "dagger/graph/cost.h"
#include "dagger/graph/error.h"
#include "dagger/models/zoo.h"
#include "dagger/suite/report.h"

namespace dagger::suite {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  const long s = std::lround(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

double parse_number(const std::string& text, const std::string& what, const std::string& id) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("experiment {}: {} '{}' is not a number", id, what, text));
}

/// Training FLOPs (images times the training step's FLOPs per image): the ETA's unit of work,
/// so that one measured rate prices runs of any model. Indexed by family (0: dense models,
/// 1: CNNs) and by whether the run stops early (1) or trains a fixed number of epochs (0);
/// early-stopping runs are planned at their epoch cap.
struct Workload {
  using Table = std::array<std::array<double, 2>, 2>;
  Table planned{}, done{};
  Table reused{};  // the work of runs an earlier invocation finished: done, but not timed here
  std::array<double, 2> seconds{};
  double fastest = 0;  // the best FLOP/s of any one epoch so far
  // Per family: epochs trained and epoch caps of finished early-stopping runs.
  std::array<double, 2> stop_epochs{}, stop_caps{};

  void epoch(size_t f, bool stops, double flops, double secs) {
    done[f][stops] += flops;
    seconds[f] += secs;
    if (secs > 0) fastest = std::max(fastest, flops / secs);
  }
  /// A run ended after `done_flops` of its `planned_flops`, `reused_flops` of them by an
  /// earlier invocation: its unused work leaves the plan, and an early-stopping run tells how
  /// much of its cap such runs use.
  void finish(size_t f, bool stops, double planned_flops, double done_flops, double reused_flops, int epochs, int cap) {
    planned[f][stops] -= planned_flops - done_flops - reused_flops;
    reused[f][stops] += reused_flops;
    if (stops) {
      stop_epochs[f] += epochs;
      stop_caps[f] += cap;
    }
  }

  /// FLOP/s measured on the family's epochs so far, or 0.
  double rate(size_t f) const {
    const double d = done[f][0] + done[f][1];
    return d > 0 && seconds[f] > 0 ? d / seconds[f] : 0;
  }

  /// Time left at the measured rate of each family: expected (early-stopping runs using the
  /// share of their cap that the family's finished ones used, or all finished ones' while the
  /// family has none: shallow networks on SGD run to their cap far more often than CNNs do)
  /// and at most (every run to its cap). A family
  /// not timed yet is priced at the fastest epoch so far (small models run far below the
  /// machine's FLOP rate, so their average would overprice a CNN), and says so; "?" before any
  /// epoch has finished.
  std::string eta() const {
    static constexpr const char* kNames[] = {"MLP", "CNN"};
    const double all_epochs = stop_epochs[0] + stop_epochs[1], all_caps = stop_caps[0] + stop_caps[1];
    double expected = 0, most = 0;
    std::vector<std::string> notes;
    for (size_t f = 0; f < 2; ++f) {
      const double fixed = std::max(0.0, planned[f][0] - done[f][0] - reused[f][0]);
      const double stopping = std::max(0.0, planned[f][1] - done[f][1] - reused[f][1]);
      if (fixed + stopping <= 0) continue;
      double r = rate(f);
      if (r <= 0) {
        r = fastest;
        if (r <= 0) return "?";
        notes.push_back(
            fmt::format("{} runs priced at the fastest {}'s {:.0f} GFLOP/s", kNames[f], kNames[1 - f], r / 1e9));
      }
      const double used = stop_caps[f] > 0 ? stop_epochs[f] / stop_caps[f] : all_caps > 0 ? all_epochs / all_caps : 1.0;
      expected += (fixed + stopping * used) / r;
      most += (fixed + stopping) / r;
    }
    if (most > expected) notes.insert(notes.begin(), "at most " + format_duration(most));
    return format_duration(expected) + (notes.empty() ? "" : fmt::format(" ({})", fmt::join(notes, ", ")));
  }
  double fraction() const {
    double p = 0, d = 0;
    for (size_t f = 0; f < 2; ++f)
      for (size_t k = 0; k < 2; ++k) {
        p += planned[f][k];
        d += done[f][k] + reused[f][k];
      }
    return p > 0 ? d / p : 1.0;
  }
};

size_t family(const std::string& model) { return model.starts_with("cnn") || model.starts_with("rescnn") ? 1 : 0; }

/// Training-step FLOPs per image of a model (forward, backward and Adam at batch 64).
double training_flops_per_image(const std::string& model) {
  constexpr int64_t kBatch = 64;
  return graph_cost(build_training_step(zoo::find(model).build, kBatch, OptimizerConfig{})).flops / kBatch;
}

class Runner {
 public:
  explicit Runner(const SuiteOptions& options) : options_(options) {
    if (!options_.load_data) options_.load_data = load_fashion_mnist;
  }

  SuiteResult run() {
    const auto t0 = Clock::now();
    std::vector<const Experiment*> order = plan(*options_.experiments, options_.only);
    size_t runs = 0;
    std::vector<std::string> ids;
    for (const Experiment* e : order) {
      plan_workload(*e);
      runs += grid_size(*e);
      ids.push_back(e->id);
    }
    if (options_.progress)
      fmt::print(stderr, "suite ({} profile): {} experiments ({}), {} runs, at most {:.0f} training images; out {}\n",
                 options_.profile.name, order.size(), fmt::join(ids, " "), runs, planned_images_, options_.out_dir);
    fs::create_directories(options_.out_dir + "/runs");
    result_.experiments.reserve(order.size());
    for (const Experiment* e : order) {
      result_.experiments.push_back(run_experiment(*e));
      result_.by_id[e->id] = &result_.experiments.back();
    }
    result_.wall_seconds = seconds_since(t0);
    return std::move(result_);
  }

 private:
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

  int epochs_for(const Experiment& e) const {
    const Budget& b = options_.profile.budget_for(e.run.model);
    if (e.run.epochs == 0) return b.max_epochs;
    return b.fixed_epoch_cap > 0 ? std::min(e.run.epochs, b.fixed_epoch_cap) : e.run.epochs;
  }

  void plan_workload(const Experiment& e) {
    if (e.run.model.empty()) return;
    const Budget& b = options_.profile.budget_for(e.run.model);
    const double images = (b.train ? static_cast<double>(b.train) : 48000.0) * epochs_for(e);
    const size_t seeds = options_.profile.seeds_of(e.id).size();
    planned_images_ += images * static_cast<double>(grid_size(e) * seeds);
    for (const std::string& model : planned_models(e))
      for (size_t s = 0; s < seeds; ++s) {
        const double flops = images * flops_per_image(model);
        planned_flops_[e.id].push_back(flops);
        work_.planned[family(e.run.model)][stops_early(e)] += flops;
      }
  }

  /// Whether the runs of `e` stop early (all but the fixed-length ones, E06 and E19).
  static bool stops_early(const Experiment& e) { return e.run.epochs <= 0; }

  /// The model of each run of `e` as far as it is known before the suite starts: the grid's
  /// placeholders filled with its literal values. A run whose model waits on another
  /// experiment's result (E21's block dropout and head width) is priced as the zoo model of
  /// its name (rescnn), or as mlp512 or cnn3.
  std::vector<std::string> planned_models(const Experiment& e) const {
    std::vector<std::string> models = {e.run.model};
    for (const Axis& axis : e.grid) {
      std::vector<std::string> next;
      for (const std::string& m : models)
        for (const std::string& v : axis.values) {
          std::string filled = m;
          const std::string hole = "{" + axis.name + "}";
          if (const auto at = filled.find(hole); at != std::string::npos && !v.starts_with('@'))
            filled.replace(at, hole.size(), v);
          next.push_back(filled);
        }
      models = std::move(next);
    }
    for (std::string& m : models)
      if (m.find('{') != std::string::npos) {
        const std::string name = m.substr(0, m.find('('));
        const bool named = std::ranges::any_of(zoo::entries(), [&](const zoo::Entry& z) { return z.name == name; });
        m = named ? name : family(m) == 1 ? "cnn3" : "mlp512";
      }
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

  /// The grid's combinations, first axis slowest, with references resolved.
  std::vector<std::map<std::string, std::string>> expand(const Experiment& e) const {
    std::vector<std::map<std::string, std::string>> combos = {{}};
    for (const Axis& axis : e.grid) {
      std::vector<std::map<std::string, std::string>> next;
      for (const auto& c : combos)
        for (const std::string& v : axis.values) {
          auto d = c;
          d[axis.name] = resolve(v, e);
          next.push_back(std::move(d));
        }
      combos = std::move(next);
    }
    return combos;
  }

  RunConfig configure(const Experiment& e, const std::map<std::string, std::string>& labels) const {
    RunTemplate t = e.run;
    for (const auto& [name, value] : labels) {
      if (name == "optimizer")
        t.optimizer = value;
      else if (name == "lr")
        t.lr = value;
      else if (name == "momentum")
        t.momentum = value;
      else if (name == "patience")
        t.patience = value;
      else if (name == "pixels")
        t.raw_pixels = value == "raw";
      else {
        const std::string hole = "{" + name + "}";
        const auto at = t.model.find(hole);
        if (at == std::string::npos)
          throw Error(
              fmt::format("experiment {}: grid axis '{}' is neither a run field nor a placeholder of model '{}'", e.id,
                          name, e.run.model));
        t.model.replace(at, hole.size(), value);
      }
    }
    const Profile& p = options_.profile;
    const Budget& b = p.budget_for(t.model);
    RunConfig c;
    c.model = t.model;
    c.optimizer = resolve(t.optimizer, e);
    c.lr = parse_number(resolve(t.lr, e), "lr", e.id);
    c.momentum = parse_number(resolve(t.momentum, e), "momentum", e.id);
    if (t.lr_times_dampening) c.lr *= 1 - c.momentum;
    c.epochs = epochs_for(e);
    c.patience = e.run.epochs > 0     ? 0
                 : t.patience.empty() ? p.default_patience
                                      : static_cast<int>(parse_number(resolve(t.patience, e), "patience", e.id));
    c.batch = p.batch;
    c.train = b.train;
    c.val = b.val;
    c.test = b.test;
    c.seed = p.seed;
    c.raw_pixels = t.raw_pixels;
    c.keep_last = p.keep_last && c.patience > 0;
    return c;
  }

  RunContext context(const Experiment& e, size_t index, size_t count, const RunConfig& c, Clock::time_point& tick) {
    RunContext ctx;
    ctx.runs_dir = options_.out_dir + "/runs";
    ctx.executor = options_.executor;
    ctx.threads = options_.threads;
    ctx.provenance = options_.provenance;
    ctx.provenance["profile"] = options_.profile.name;
    const size_t f = family(c.model);
    const bool stops = stops_early(e);
    const double flops =
        static_cast<double>(data(c.train, c.val, c.test, c.raw_pixels).train.size()) * flops_per_image(c.model);
    ctx.on_epoch = [this, &e, index, count, c, f, stops, flops, &tick](const EpochStats& s) {
      work_.epoch(f, stops, flops, seconds_since(tick));
      tick = Clock::now();
      if (options_.after_epoch) options_.after_epoch(c, s);
      if (!options_.progress) return;
      fmt::print(
          stderr,
          "[{} {}/{}] {} epoch {}/{}  loss {:.4f}  val_loss {:.4f}  val_acc {:.4f}  {:.0f} img/s  | suite {:.0f}%  "
          "ETA {}\n",
          e.id, index + 1, count, c.model, s.epoch, c.epochs, s.train_loss, s.val_loss, s.val_accuracy,
          s.images_per_sec, 100 * work_.fraction(), work_.eta());
    };
    return ctx;
  }

  ExperimentResult run_experiment(const Experiment& e) {
    const auto t0 = Clock::now();
    ExperimentResult r;
    r.experiment = &e;
    if (options_.progress) fmt::print(stderr, "== {} {}\n", e.id, e.title);
    if (std::find(e.shows.begin(), e.shows.end(), Show::data_overview) != e.shows.end()) data(0, 0, 0, false);
    r.seeds = options_.profile.seeds_of(e.id);
    if (!e.run.model.empty()) {
      // Every combination under every seed, the seeds innermost; the data split stays the profile's.
      std::vector<std::map<std::string, std::string>> combos;
      for (const auto& combo : expand(e)) combos.insert(combos.end(), r.seeds.size(), combo);
      for (size_t i = 0; i < combos.size(); ++i) {
        RunConfig c = configure(e, combos[i]);
        c.seed = r.seeds[i % r.seeds.size()];
        if (c.seed != options_.profile.seed) c.split_seed = options_.profile.seed;
        const Splits& d = data(c.train, c.val, c.test, c.raw_pixels);
        const double planned = static_cast<double>(d.train.size()) * c.epochs * flops_per_image(c.model);
        const size_t f = family(c.model);
        const bool stops = stops_early(e);
        work_.planned[f][stops] += planned - planned_flops_.at(e.id).at(i);  // now that the model is known
        const double done_before = work_.done[f][stops];
        auto tick = Clock::now();
        RunRecord record = run_or_reuse(c, {&d.train, &d.val, &d.test}, context(e, i, combos.size(), c, tick));
        // Early stopping frees planned work; a reused run counts as done at its own length; the
        // final evaluation counts as this run's time.
        const int epochs = static_cast<int>(record.history.size());
        const double reused = record.reused ? planned / std::max(1, c.epochs) * epochs : 0;
        work_.finish(f, stops, planned, work_.done[f][stops] - done_before, reused, epochs, c.epochs);
        if (!record.reused) work_.seconds[f] += seconds_since(tick);
        if (record.reused) {
          ++r.reused;
          if (options_.progress)
            fmt::print(stderr, "[{} {}/{}] {}: reusing the finished run in runs/{}{}\n", e.id, i + 1, combos.size(),
                       c.model, record.key,
                       record.key == c.key() ? "" : " (the same configuration, its model spelled another way)");
        } else {
          ++r.trained;
          if (options_.progress && record.provenance.contains("continued"))
            fmt::print(stderr, "[{} {}/{}] {}: carried on after the first {} epochs, trained by runs/{}\n", e.id, i + 1,
                       combos.size(), c.model, record.provenance["continued"]["epochs"].get<int>(),
                       record.provenance["continued"]["from"].get<std::string>());
        }
        r.runs.push_back({combos[i], std::move(record)});
      }
    }
    derive(e, r);
    r.wall_seconds = seconds_since(t0);
    result_.trained += r.trained;
    result_.reused += r.reused;
    if (options_.progress)
      fmt::print(stderr, "== {} done in {}: {} runs trained, {} reused\n", e.id, format_duration(r.wall_seconds),
                 r.trained, r.reused);
    return r;
  }

  /// What an experiment publishes and measures once its runs are done.
  void derive(const Experiment& e, ExperimentResult& r) const {
    // The lowest validation loss reached, averaged over the seeds of a combination (its runs are
    // consecutive, the profile's seed first): a diverged run's NaN epochs never win.
    const size_t seeds = std::max<size_t>(1, r.seeds.size());
    auto loss = [&](size_t first) {
      double sum = 0;
      for (size_t s = 0; s < seeds; ++s) sum += r.runs[first + s].record.lowest_val_loss();
      return sum / static_cast<double>(seeds);
    };
    for (size_t i = 0; i < r.runs.size(); i += seeds)
      if (r.chosen < 0 || loss(i) < loss(static_cast<size_t>(r.chosen))) r.chosen = static_cast<int>(i);
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
    }
    if (shows(Show::ensemble) && !members.empty()) {
      for (uint64_t seed : r.seeds)
        if (auto seed_members = members_under(e, seed)) r.ensembles[seed] = combine(e, *seed_members);
      r.ensemble = r.ensembles.at(r.seeds.front());
      r.measures["ensemble.accuracy"] = r.ensemble->report.accuracy;
      r.measures["ensemble.f1"] = r.ensemble->report.f1;
      r.measures["ensemble.loss"] = r.ensemble->report.loss;
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

  /// The ensemble of `members`, scored on their common test slice.
  EnsembleResult combine(const Experiment& e, const std::vector<const RunRecord*>& members) const {
    std::vector<const Tensor*> probs;
    for (const RunRecord* m : members) {
      if (slice_key(m->config) != slice_key(members.front()->config))
        throw Error(fmt::format("experiment {}: ensemble members were tested on different slices", e.id));
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
  SuiteResult result_;
  Workload work_;
  double planned_images_ = 0;
  std::map<std::string, std::vector<double>> planned_flops_;  // per experiment, per run: the plan's price
  std::map<std::string, double> flops_per_image_;             // per model
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
    out += fmt::format("{:<4} {:>4}  {:<45} {}\n", e.id, grid_size(e), e.title, fmt::join(dependencies(e), ","));
  return out;
}

}  // namespace dagger::suite
