#include "dagger/suite/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <queue>
#include <set>

#include "dagger/autodiff/step.h"
#include "dagger/graph/cost.h"
#include "dagger/graph/error.h"
#include "dagger/models/zoo.h"
#include "dagger/suite/schedule.h"

namespace dagger::suite {

namespace {

constexpr std::array<const char*, 2> kFamilies = {"MLP", "CNN"};
constexpr double kWholeTrainSplit = 48000;  // images of a run whose slice is the whole train split

bool unresolved(const std::string& text) {
  return text.find('@') != std::string::npos || text.find('{') != std::string::npos;
}

/// A run of a sketch whose every field is known, as far as its trajectory goes; none otherwise.
std::optional<RunConfig> sketch_config(const Experiment& e, const RunTemplate& t, const Profile& profile) {
  for (const std::string* field : {&t.model, &t.optimizer, &t.lr, &t.momentum, &t.patience, &t.weight_decay,
                                   &t.label_smoothing})
    if (unresolved(*field)) return {};
  try {
    return configure_run(e, t, profile, [](const std::string& value) { return value; });
  } catch (const std::exception&) {
    return {};  // the suite refuses it when it configures the run
  }
}

/// "E10 seed=1": the experiment, its grid values and, when not the profile's, its seed.
std::string run_name(const std::string& id, const std::map<std::string, std::string>& labels, uint64_t seed,
                     const Profile& profile) {
  std::string name = id;
  for (const auto& [axis, value] : labels) name += fmt::format(" {}={}", axis, value);
  if (seed != profile.seed) name += fmt::format(" seed={}", seed);
  return name;
}

/// A run of the plan while it is built: what orders it after runs of its trajectory.
struct Draft {
  PlannedRun run;
  std::optional<RunConfig> config;  // none while a field waits on another experiment
  RunTemplate sketch;
  uint64_t seed = 0;  // its training seed, known even while the rest of its config is not
};

/// The experiments whose runs the runs of order[p] wait for: those its grid references, and
/// everything they depend on (an experiment publishes once its own dependencies are derived).
std::set<size_t> awaited(const std::vector<const Experiment*>& order, size_t p) {
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < order.size(); ++i) position[order[i]->id] = i;
  std::set<size_t> out;
  std::vector<size_t> todo;
  for (const std::string& id : references(*order[p])) todo.push_back(position.at(id));
  while (!todo.empty()) {
    const size_t q = todo.back();
    todo.pop_back();
    if (!out.insert(q).second) continue;
    for (const std::string& id : dependencies(*order[q])) todo.push_back(position.at(id));
  }
  return out;
}

/// Whether run `a` (earlier) and `b` may train the same epochs (suite/schedule.h: trajectory).
bool same_trajectory(const Draft& a, const Draft& b, const Profile& profile) {
  if (a.seed != b.seed) return false;  // the seed is part of a trajectory
  if (a.config && b.config) return trajectory(*a.config) == trajectory(*b.config);
  if (a.config) return may_share_trajectory(b.sketch, *a.config, profile);
  if (b.config) return may_share_trajectory(a.sketch, *b.config, profile);
  return false;  // neither known: nothing to compare by
}

/// The key in results.json of the run of grid combination `combo` under `seed` in `record` (an
/// experiment's entry, its runs each combination under each of its seeds in turn), or "" when
/// that suite did not train it.
std::string recorded_key(const nlohmann::json& record, const nlohmann::json& results, size_t combo, uint64_t seed,
                         const Profile& profile) {
  const std::vector<uint64_t> seeds = record.contains("seeds")
                                          ? record.at("seeds").get<std::vector<uint64_t>>()
                                          : std::vector<uint64_t>{results.value("seed", profile.seed)};
  const auto at = std::find(seeds.begin(), seeds.end(), seed);
  const size_t index = combo * seeds.size() + static_cast<size_t>(at - seeds.begin());
  const nlohmann::json& keys = record.at("runs");
  if (at == seeds.end() || index >= keys.size()) return "";
  return keys.at(index).get<std::string>();
}

/// Training images a recorded run (its results.json entry) went through itself: its slice times
/// its epochs, less those it continued from another run.
double self_trained_images(const nlohmann::json& run) {
  const RunConfig c = RunConfig::from_json(run.at("config"));
  int epochs = static_cast<int>(run.at("history").size());
  if (run.at("provenance").contains("continued")) epochs -= run.at("provenance").at("continued").at("epochs").get<int>();
  return (c.train ? static_cast<double>(c.train) : kWholeTrainSplit) * epochs;
}

/// The runs of e as the suite expands them (grid_points): each one's time recorded in `record`
/// (its results.json entry, or null) where that suite trained it, else estimated from its
/// sketch, or from its combination's recorded run under another seed, which knows its model.
std::vector<Draft> drafts_of(const Experiment& e, const Profile& profile, const nlohmann::json* record,
                             const nlohmann::json& results, std::set<std::string>& keys_seen) {
  const std::vector<GridPoint> points = grid_points(e, profile);
  const size_t seeds = seeds_of(e, profile).size();
  const Budget& b = profile.budget_for(e.run.model);
  const double images = b.train ? static_cast<double>(b.train) : kWholeTrainSplit;
  std::vector<Draft> drafts;
  for (size_t i = 0; i < points.size(); ++i) {
    const GridPoint& point = points[i];
    const std::string key = record ? recorded_key(*record, results, i / seeds, point.seed, profile) : "";
    const std::string sibling = record ? recorded_key(*record, results, i / seeds, profile.seed, profile) : "";
    Draft d;
    d.seed = point.seed;
    d.run.experiment = e.id;
    if (!key.empty()) {
      const nlohmann::json& r = results.at("runs").at(key);
      d.config = RunConfig::from_json(r.at("config"));
      d.sketch.model = d.config->model;
      // A run two experiments share is listed once, with the grid of the later one.
      const auto labels =
          r.at("experiment") == e.id ? r.at("grid").get<std::map<std::string, std::string>>() : point.labels;
      // A key an earlier run holds is that run, reused.
      const bool reused = !keys_seen.insert(key).second;
      d.run.name = run_name(e.id, labels, point.seed, profile);
      d.run.seconds = reused ? 0.0 : r.at("train_seconds").get<double>();
      if (!reused) d.run.flops = self_trained_images(r) * training_flops_per_image(d.config->model);
    } else {
      d.sketch = apply_labels(e.run, point.labels, e.id);
      d.config = sibling.empty() ? sketch_config(e, d.sketch, profile)
                                 : RunConfig::from_json(results.at("runs").at(sibling).at("config"));
      if (d.config) {
        train_under_seed(*d.config, point.seed, profile);
        if (!sibling.empty()) d.sketch.model = d.config->model;
      }
      d.run.flops = images * planned_epochs(e, profile) * training_flops_per_image(priced_model(d.sketch.model));
      d.run.name = run_name(e.id, point.labels, point.seed, profile);
      d.run.estimated = true;
    }
    d.run.model = d.sketch.model;
    drafts.push_back(std::move(d));
  }
  return drafts;
}

/// FLOP/s of each family over its recorded runs (the epochs each trained itself), 0 without any.
std::array<double, 2> recorded_rates(const nlohmann::json& results) {
  std::array<double, 2> flops{}, seconds{};
  if (!results.is_object() || !results.contains("runs")) return {};
  std::map<std::string, double> per_image;
  for (const auto& [key, r] : results.at("runs").items()) {
    const double s = r.at("train_seconds").get<double>();
    if (s <= 0) continue;
    const RunConfig c = RunConfig::from_json(r.at("config"));
    auto [it, fresh] = per_image.try_emplace(c.model, 0.0);
    if (fresh) it->second = training_flops_per_image(c.model);
    const size_t f = model_family(c.model);
    flops[f] += self_trained_images(r) * it->second;
    seconds[f] += s;
  }
  return {seconds[0] > 0 ? flops[0] / seconds[0] : 0, seconds[1] > 0 ? flops[1] / seconds[1] : 0};
}

/// Per run: its time plus the longest chain of runs that wait on it.
std::vector<double> path_to_end(const SuitePlan& plan, std::vector<std::vector<size_t>>& waiting) {
  const size_t n = plan.runs.size();
  waiting.assign(n, {});
  for (size_t i = 0; i < n; ++i) {
    for (size_t before : plan.runs[i].after) waiting[before].push_back(i);
    if (plan.runs[i].follows) waiting[*plan.runs[i].follows].push_back(i);
  }
  std::vector<double> level(n, 0);
  for (size_t i = n; i-- > 0;) {  // a run waits only for runs before it
    double longest = 0;
    for (size_t next : waiting[i]) longest = std::max(longest, level[next]);
    level[i] = plan.runs[i].seconds + longest;
  }
  return level;
}

std::string hours(double seconds) {
  return seconds >= 3600 ? fmt::format("{:.2f} h", seconds / 3600) : fmt::format("{:.0f} s", seconds);
}

}  // namespace

size_t model_family(const std::string& model) {
  return convolutional(model) ? 1 : 0;
}

std::string priced_model(const std::string& model) {
  if (!unresolved(model)) return model;
  const std::string name = model.substr(0, model.find('('));
  const bool named = std::ranges::any_of(zoo::entries(), [&](const zoo::Entry& z) { return z.name == name; });
  return named ? name : model_family(model) == 1 ? "cnn3" : "mlp512";
}

double training_flops_per_image(const std::string& model) {
  constexpr int64_t kBatch = 64;
  return graph_cost(build_training_step(zoo::find(model).build, kBatch, OptimizerConfig{})).flops / kBatch;
}

int planned_epochs(const Experiment& e, const Profile& profile) {
  return planned_epochs(e.run.epochs, profile.budget_for(e.run.model));
}

int planned_epochs(int epochs, const Budget& b) {
  if (epochs == 0) return b.max_epochs;
  return b.fixed_epoch_cap > 0 ? std::min(epochs, b.fixed_epoch_cap) : epochs;
}

SuitePlan build_plan(const std::vector<const Experiment*>& order, const Profile& profile, const nlohmann::json& results,
                     const std::string& results_path, const std::function<double(size_t family)>& measure_rate) {
  std::vector<Draft> drafts;
  std::vector<std::vector<size_t>> runs_of(order.size());
  std::set<std::string> keys_seen;
  std::array<double, 2> rates{};
  try {
    std::map<std::string, const nlohmann::json*> recorded;
    if (results.is_object() && results.contains("experiments"))
      for (const nlohmann::json& e : results.at("experiments")) recorded[e.at("id").get<std::string>()] = &e;
    rates = recorded_rates(results);
    for (size_t p = 0; p < order.size(); ++p) {
      const auto it = recorded.find(order[p]->id);
      for (Draft& d : drafts_of(*order[p], profile, it == recorded.end() ? nullptr : it->second, results, keys_seen)) {
        for (size_t q : awaited(order, p)) d.run.after.insert(d.run.after.end(), runs_of[q].begin(), runs_of[q].end());
        for (size_t k = drafts.size(); k-- > 0;)
          if (same_trajectory(drafts[k], d, profile)) {
            d.run.follows = k;
            break;
          }
        runs_of[p].push_back(drafts.size());
        drafts.push_back(std::move(d));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' lacks a field or has a wrong one ({})", results_path, e.what()));
  } catch (const Error& e) {
    if (!results.is_object()) throw;                               // nothing was read from a file
    throw Error(fmt::format("'{}': {}", results_path, e.what()));  // e.g. a model this dagger does not know
  }
  SuitePlan plan;
  std::array<bool, 2> used{};
  for (Draft& d : drafts) {
    if (d.run.estimated) used[model_family(d.run.model)] = true;
    plan.runs.push_back(std::move(d.run));
  }
  for (size_t f = 0; f < 2; ++f) {
    if (!used[f]) continue;
    const bool measured = rates[f] <= 0;
    if (measured) rates[f] = measure_rate(f);
    plan.rates.push_back(fmt::format("{} runs at {:.1f} GFLOP/s ({})", kFamilies[f], rates[f] / 1e9,
                                     measured ? "measured now" : "their recorded runs' rate"));
  }
  for (size_t i = 0; i < drafts.size(); ++i)
    if (plan.runs[i].estimated) plan.runs[i].seconds = plan.runs[i].flops / rates[model_family(plan.runs[i].model)];
  return plan;
}

void price_at(SuitePlan& plan, const std::function<double(const std::string& model)>& rate) {
  std::map<std::string, double> rates;
  for (PlannedRun& r : plan.runs) {
    const std::string model = priced_model(r.model);
    auto [it, fresh] = rates.try_emplace(model, 0.0);
    if (fresh) it->second = rate(model);
    r.seconds = r.flops / it->second;
    r.estimated = true;
  }
  plan.rates.clear();
  for (const auto& [model, r] : rates) plan.rates.push_back(fmt::format("{} at {:.1f} GFLOP/s (measured now)", model, r / 1e9));
}

std::vector<size_t> critical_path(const SuitePlan& plan) {
  std::vector<std::vector<size_t>> waiting;
  const std::vector<double> level = path_to_end(plan, waiting);
  std::vector<size_t> path;
  if (level.empty()) return path;
  // Runs that wait for nothing start paths; every chain starts at one, so the longest does.
  size_t at = static_cast<size_t>(std::max_element(level.begin(), level.end()) - level.begin());
  for (;;) {
    path.push_back(at);
    if (waiting[at].empty()) return path;
    at = *std::ranges::max_element(waiting[at], [&](size_t a, size_t b) { return level[a] < level[b]; });
  }
}

double simulate_makespan(const SuitePlan& plan, int machines) {
  std::vector<std::vector<size_t>> waiting;
  const std::vector<double> level = path_to_end(plan, waiting);
  const size_t n = plan.runs.size();
  std::vector<size_t> blocking(n);
  for (size_t i = 0; i < n; ++i) blocking[i] = plan.runs[i].after.size() + (plan.runs[i].follows ? 1 : 0);
  // Ready runs, the longest path first, then the suite's order.
  auto later = [&](size_t a, size_t b) { return level[a] != level[b] ? level[a] < level[b] : a > b; };
  std::priority_queue<size_t, std::vector<size_t>, decltype(later)> ready(later);
  for (size_t i = 0; i < n; ++i)
    if (blocking[i] == 0) ready.push(i);
  using Finish = std::pair<double, size_t>;
  std::priority_queue<Finish, std::vector<Finish>, std::greater<>> running;
  double now = 0;
  int free = machines;
  for (;;) {
    for (; free > 0 && !ready.empty(); --free) {
      running.push({now + plan.runs[ready.top()].seconds, ready.top()});
      ready.pop();
    }
    if (running.empty()) break;
    now = running.top().first;
    // Everything that ends now frees its machine before the next choice.
    while (!running.empty() && running.top().first == now) {
      const size_t done = running.top().second;
      running.pop();
      ++free;
      for (size_t next : waiting[done])
        if (--blocking[next] == 0) ready.push(next);
    }
  }
  return now;
}

std::string format_plan(const SuitePlan& plan, const std::vector<int>& machines) {
  size_t estimated = 0;
  double total = 0;
  for (const PlannedRun& r : plan.runs) {
    estimated += r.estimated;
    total += r.seconds;
  }
  std::string out = fmt::format("Run graph: {} runs, {} of training ({} recorded, {} estimated *)\n", plan.runs.size(),
                                hours(total), plan.runs.size() - estimated, estimated);
  for (const std::string& rate : plan.rates) out += "  estimates: " + rate + "\n";
  // One line per experiment: its runs' time, the experiments it waits for, and runs that wait
  // for a run of their trajectory in another experiment.
  for (size_t i = 0; i < plan.runs.size();) {
    const std::string& id = plan.runs[i].experiment;
    std::set<std::string> after;
    std::vector<std::string> follows;
    double seconds = 0;
    size_t count = 0;
    bool guess = false;
    for (; i < plan.runs.size() && plan.runs[i].experiment == id; ++i, ++count) {
      const PlannedRun& r = plan.runs[i];
      seconds += r.seconds;
      guess |= r.estimated;
      for (size_t b : r.after) after.insert(plan.runs[b].experiment);
      if (r.follows) follows.push_back(fmt::format("{} after {}", r.name, plan.runs[*r.follows].name));
    }
    after.erase(id);
    std::vector<std::string> waits;
    if (!after.empty()) waits.push_back(fmt::format("after {}", fmt::join(after, " ")));
    if (!follows.empty()) waits.push_back(fmt::format("same epochs: {}", fmt::join(follows, ", ")));
    const std::string line = fmt::format("  {:<4} {:>3} run{} {:>10}{}  {}", id, count, count == 1 ? " " : "s",
                                         hours(seconds), guess ? "*" : " ", fmt::join(waits, "; "));
    out += line.substr(0, line.find_last_not_of(' ') + 1) + "\n";
  }
  const std::vector<size_t> path = critical_path(plan);
  double longest = 0;
  std::vector<std::string> steps;
  for (size_t r : path) {
    longest += plan.runs[r].seconds;
    steps.push_back(
        fmt::format("{} ({}{})", plan.runs[r].name, hours(plan.runs[r].seconds), plan.runs[r].estimated ? "*" : ""));
  }
  out += fmt::format("Critical path ({} runs, {}): {}\n", path.size(), hours(longest), fmt::join(steps, " -> "));
  out += fmt::format("{:>8}  {:>10}  {:>7}  {:>10}\n", "machines", "makespan", "speedup", "busy");
  for (int m : machines) {
    const double makespan = simulate_makespan(plan, m);
    out += fmt::format("{:>8}  {:>10}  {:>7.2f}  {:>9.0f}%\n", m, hours(makespan),
                       makespan > 0 ? total / makespan : 1.0, makespan > 0 ? 100 * total / (makespan * m) : 100.0);
  }
  return out;
}

}  // namespace dagger::suite
