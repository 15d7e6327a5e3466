#include "dagger/suite/schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "dagger/graph/error.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/augment.h"
#include "dagger/suite/plan.h"

namespace dagger::suite {

namespace {

bool unresolved(const std::string& value) { return value.find('@') != std::string::npos; }

/// A sketch's number matches a run's when it is a reference or the same number.
bool may_equal(const std::string& sketch, double value) {
  if (unresolved(sketch)) return true;
  try {
    return std::stod(sketch) == value;
  } catch (const std::exception&) {
    return true;  // configure() will reject it; nothing to order by
  }
}

std::string zoo_name(const std::string& model) { return model.substr(0, model.find('(')); }

/// The arguments of a call "name(a,b,c)", as written; none for a plain name.
std::vector<std::string> call_arguments(const std::string& call) {
  const size_t open = call.find('('), close = call.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  std::vector<std::string> args(1);
  for (char c : call.substr(open + 1, close - open - 1))
    if (c == ',')
      args.emplace_back();
    else
      args.back() += c;
  return args;
}

/// Whether a sketched model (some arguments "@Exx.name") may turn out to be `canonical` (a
/// zoo::canonical_call): the unknown arguments taken from `canonical`, the call must be it.
bool may_be_model(const std::string& sketch, const std::string& canonical) {
  if (!unresolved(sketch)) return zoo::canonical_call(sketch) == canonical;
  if (zoo_name(sketch) != zoo_name(canonical)) return false;
  const std::vector<std::string> mine = call_arguments(sketch), theirs = call_arguments(canonical);
  if (mine.size() != theirs.size()) return true;  // no way to line them up: it may be
  std::vector<std::string> filled;
  for (size_t i = 0; i < mine.size(); ++i) filled.push_back(unresolved(mine[i]) ? theirs[i] : mine[i]);
  try {
    return zoo::canonical_call(fmt::format("{}({})", zoo_name(sketch), fmt::join(filled, ","))) == canonical;
  } catch (const Error&) {
    return true;  // not a model this way; the suite will say so when it configures the run
  }
}

}  // namespace

void remove_ingredient(RunTemplate& t, const std::string& ingredient, const std::string& id) {
  if (ingredient == "augment") {
    t.augment.clear();
  } else if (ingredient == "cosine") {
    t.schedule.clear();
    t.warmup = 0;
  } else if (ingredient == "adamw") {
    t.optimizer = "adam";
    t.weight_decay = "0";
  } else if (ingredient == "label_smoothing") {
    t.label_smoothing = "0";
  } else if (ingredient != "nothing") {
    throw Error(fmt::format(
        "experiment {}: 'without' takes nothing, augment, cosine, adamw or label_smoothing, not '{}'", id, ingredient));
  }
}

std::string trajectory(const RunConfig& config) { return trajectory_of(config).to_json().dump(); }

RunTemplate apply_labels(RunTemplate t, const std::map<std::string, std::string>& labels, const std::string& id) {
  const std::string declared = t.model;
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
    else if (name == "weight_decay")
      t.weight_decay = value;
    else if (name == "schedule")
      t.schedule = value;
    else if (name == "augment")
      t.augment = value;
    else if (name == "label_smoothing")
      t.label_smoothing = value;
    else if (name == "without")
      remove_ingredient(t, value, id);
    else {
      const std::string hole = "{" + name + "}";
      const auto at = t.model.find(hole);
      if (at == std::string::npos)
        throw Error(fmt::format("experiment {}: grid axis '{}' is neither a run field nor a placeholder of model '{}'",
                                id, name, declared));
      t.model.replace(at, hole.size(), value);
    }
  }
  return t;
}

std::vector<std::map<std::string, std::string>> grid_combinations(const Experiment& e) {
  std::vector<std::map<std::string, std::string>> combos = {{}};
  for (const Axis& axis : e.grid) {
    std::vector<std::map<std::string, std::string>> next;
    for (const auto& c : combos)
      for (const std::string& v : axis.values) {
        auto d = c;
        d[axis.name] = v;
        next.push_back(std::move(d));
      }
    combos = std::move(next);
  }
  return combos;
}

RunConfig profile_run(const RunTemplate& t, const Profile& profile) {
  const Budget& b = profile.budget_for(t.model);
  RunConfig c;
  c.model = t.model;
  c.batch = profile.batch;
  c.train = b.train;
  c.val = b.val;
  c.test = b.test;
  c.seed = profile.seed;
  c.raw_pixels = t.raw_pixels;
  return c;
}

namespace {

double parse_number(const std::string& text, const std::string& what, const std::string& id) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("experiment {}: {} '{}' is not a number", id, what, text));
}

/// The run's schedule as RunConfig spells it: "" for a constant learning rate.
std::string schedule_of(const RunTemplate& t) { return t.schedule == "constant" ? "" : t.schedule; }

/// The run's augmentation as RunConfig spells it: canonical (to_string), "" for none. Throws
/// Error for a spec that does not parse.
std::string augment_of(const RunTemplate& t) {
  const std::string a = t.augment.empty() ? "" : to_string(parse_augment(t.augment));
  return a == "none" ? "" : a;
}

}  // namespace

RunConfig configure_run(const Experiment& e, const RunTemplate& t, const Profile& p,
                        const std::function<std::string(const std::string&)>& resolve) {
  RunConfig c = profile_run(t, p);
  c.optimizer = resolve(t.optimizer);
  c.lr = parse_number(resolve(t.lr), "lr", e.id);
  c.momentum = parse_number(resolve(t.momentum), "momentum", e.id);
  if (t.lr_times_dampening) c.lr *= 1 - c.momentum;
  c.epochs = planned_epochs(e, p);
  // A fixed-length run stops early only when its experiment names a patience (E24's cosine).
  const bool fixed = e.run.epochs > 0;
  c.patience = fixed && t.patience.empty() ? 0
               : t.patience.empty()        ? p.default_patience
                                           : static_cast<int>(parse_number(resolve(t.patience), "patience", e.id));
  c.keep_last = p.keep_last && c.patience > 0 && !t.restore_best;
  c.weight_decay = parse_number(resolve(t.weight_decay), "weight_decay", e.id);
  c.schedule = schedule_of(t);
  c.warmup = c.schedule.empty() ? 0 : std::min(t.warmup, c.epochs - 1);
  c.augment = augment_of(t);
  c.label_smoothing = parse_number(resolve(t.label_smoothing), "label_smoothing", e.id);
  return c;
}

std::vector<RunTemplate> sketch_runs(const Experiment& e) {
  if (e.run.model.empty()) return {};
  std::vector<RunTemplate> sketches;
  for (const auto& c : grid_combinations(e)) sketches.push_back(apply_labels(e.run, c, e.id));
  return sketches;
}

std::vector<GridPoint> grid_points(const Experiment& e, const Profile& profile) {
  if (e.run.model.empty()) return {};
  std::vector<GridPoint> points;
  for (const auto& labels : grid_combinations(e))
    for (uint64_t seed : seeds_of(e, profile)) points.push_back({labels, seed});
  return points;
}

void train_under_seed(RunConfig& config, uint64_t seed, const Profile& profile) {
  config.seed = seed;
  config.split_seed = seed == profile.seed ? 0 : profile.seed;
}

bool may_share_trajectory(const RunTemplate& sketch, const RunConfig& config, const Profile& profile) {
  if (!may_be_model(sketch.model, zoo::canonical_call(config.model))) return false;
  const Budget& b = profile.budget_for(sketch.model);
  if (b.train != config.train || b.val != config.val || b.test != config.test) return false;
  if (sketch.raw_pixels != config.raw_pixels) return false;
  if (!unresolved(sketch.optimizer) && sketch.optimizer != config.optimizer) return false;
  if (schedule_of(sketch) != config.schedule) return false;
  // A cosine run's epochs depend on its length, which the sketch knows (fixed-length runs).
  if (!config.schedule.empty() && sketch.epochs > 0 && planned_epochs(sketch.epochs, b) != config.epochs) return false;
  try {
    if (augment_of(sketch) != config.augment) return false;
  } catch (const std::exception&) {
    // configure_run will reject it; nothing to order by
  }
  return may_equal(sketch.lr, config.lr) && may_equal(sketch.momentum, config.momentum) &&
         may_equal(sketch.weight_decay, config.weight_decay) && may_equal(sketch.label_smoothing, config.label_smoothing);
}

std::vector<std::string> references(const Experiment& experiment) {
  Experiment without_members = experiment;
  without_members.members.clear();
  return dependencies(without_members);
}

RunGraph::RunGraph(std::vector<const Experiment*> order, const Profile& profile) : profile_(profile) {
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < order.size(); ++i) position[order[i]->id] = i;
  for (const Experiment* e : order) {
    Node n;
    n.experiment = e;
    n.sketches = sketch_runs(*e);
    // plan() placed every dependency before `e`.
    for (const std::string& id : references(*e)) n.references.push_back(position.at(id));
    for (const std::string& id : dependencies(*e)) n.dependencies.push_back(position.at(id));
    nodes_.push_back(std::move(n));
  }
}

std::vector<size_t> RunGraph::expandable() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (!nodes_[i].expanded && std::ranges::all_of(nodes_[i].references, [&](size_t r) { return nodes_[r].derived; }))
      out.push_back(i);
  return out;
}

void RunGraph::expand(size_t experiment, std::vector<RunConfig> runs) {
  Node& n = nodes_[experiment];
  assert(!n.expanded);
  n.expanded = true;
  n.sketches.clear();
  for (const RunConfig& c : runs) n.trajectories.push_back(trajectory(c));
  n.states.assign(runs.size(), State::waiting);
  n.runs = std::move(runs);
}

bool RunGraph::may_start(size_t experiment, size_t index) const {
  const std::string& mine = nodes_[experiment].trajectories[index];
  const RunConfig& config = nodes_[experiment].runs[index];
  for (size_t e = 0; e <= experiment; ++e) {
    const Node& n = nodes_[e];
    if (!n.expanded) {
      // It may yet expand into a run of this trajectory that comes first.
      for (const RunTemplate& s : n.sketches)
        if (may_share_trajectory(s, config, profile_)) return false;
      continue;
    }
    const size_t before = e == experiment ? index : n.runs.size();
    for (size_t i = 0; i < before; ++i)
      if (n.states[i] != State::finished && n.trajectories[i] == mine) return false;
  }
  return true;
}

std::optional<RunId> RunGraph::start_next() {
  for (size_t e = 0; e < nodes_.size(); ++e) {
    Node& n = nodes_[e];
    if (!n.expanded) continue;
    for (size_t i = 0; i < n.runs.size(); ++i)
      if (n.states[i] == State::waiting && may_start(e, i)) {
        n.states[i] = State::running;
        return RunId{e, i};
      }
  }
  return std::nullopt;
}

const RunConfig& RunGraph::config(RunId id) const { return nodes_[id.experiment].runs[id.index]; }

void RunGraph::finish(RunId id) {
  State& s = nodes_[id.experiment].states[id.index];
  assert(s == State::running);
  s = State::finished;
}

std::vector<size_t> RunGraph::derivable() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (n.derived || !n.expanded) continue;
    if (!std::ranges::all_of(n.states, [](State s) { return s == State::finished; })) continue;
    if (std::ranges::all_of(n.dependencies, [&](size_t d) { return nodes_[d].derived; })) out.push_back(i);
  }
  return out;
}

void RunGraph::derived(size_t experiment) { nodes_[experiment].derived = true; }

bool RunGraph::done() const {
  return std::ranges::all_of(nodes_, [](const Node& n) { return n.derived; });
}

void run_graph(RunGraph& graph, Workers& workers, const std::function<std::vector<RunConfig>(size_t)>& expand,
               const std::function<void(size_t)>& derive, const std::function<void(RunId, size_t)>& failed) {
  std::vector<bool> busy(workers.count(), false);
  size_t running = 0;
  // Derives and expands all it can (a derived experiment lets others expand, an expanded one
  // without runs derives at once), then starts a run on every free slot that has one.
  const auto advance = [&] {
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t e : graph.derivable()) {
        derive(e);
        graph.derived(e);
        changed = true;
      }
      for (size_t e : graph.expandable()) {
        graph.expand(e, expand(e));
        changed = true;
      }
    }
    for (size_t slot = 0; slot < busy.size(); ++slot) {
      if (busy[slot]) continue;
      const std::optional<RunId> id = graph.start_next();
      if (!id) break;
      workers.start(slot, *id, graph.config(*id));
      busy[slot] = true;
      ++running;
    }
  };
  std::exception_ptr error;
  for (;;) {
    if (!error) {
      try {
        advance();
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (running == 0) break;
    const Workers::Ended ended = workers.wait();
    busy[ended.slot] = false;
    --running;
    if (ended.error && !error) {
      error = ended.error;
      if (failed) failed(ended.id, running);
    }
    if (!ended.error) graph.finish(ended.id);
  }
  if (error) std::rethrow_exception(error);
  assert(graph.done() && "every experiment's dependencies come before it in the suite's order");
}

namespace {

class ThreadWorkers final : public Workers {
 public:
  ThreadWorkers(size_t count, std::function<void(RunId, const RunConfig&)> train)
      : threads_(count), train_(std::move(train)) {}
  ~ThreadWorkers() override {
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }
  size_t count() const override { return threads_.size(); }

  void start(size_t slot, RunId id, const RunConfig& config) override {
    if (threads_[slot].joinable()) threads_[slot].join();  // it ended already: wait() said so
    threads_[slot] = std::thread([this, slot, id, config] {
      std::exception_ptr error;
      try {
        train_(id, config);
      } catch (...) {
        error = std::current_exception();
      }
      const std::lock_guard lock(mutex_);
      ended_.push_back({slot, id, error});
      changed_.notify_one();
    });
  }

  Ended wait() override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !ended_.empty(); });
    return pop();
  }

  /// A run that ended within `timeout`, or none.
  std::optional<Ended> poll(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return !ended_.empty(); })) return std::nullopt;
    return pop();
  }

 private:
  std::vector<std::thread> threads_;
  std::function<void(RunId, const RunConfig&)> train_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Ended> ended_;

  Ended pop() {
    const Ended e = ended_.front();
    ended_.pop_front();
    return e;
  }
};

/// Rank 0's slots: a thread of its own (slot 0) and the other ranks (slot r is rank r).
class RankWorkers final : public Workers {
 public:
  RankWorkers(const Communicator& comm, std::function<void(RunId, const RunConfig&)> train,
              std::function<void(RunId, const RunConfig&, const nlohmann::json&)> collect)
      : comm_(comm),
        here_(1, std::move(train)),
        collect_(std::move(collect)),
        given_(static_cast<size_t>(comm.size())) {}
  ~RankWorkers() override {
    for (int r = 1; r < comm_.size(); ++r) comm_.send(nlohmann::json{{"stop", true}}.dump(), r);
  }
  size_t count() const override { return static_cast<size_t>(comm_.size()); }

  void start(size_t slot, RunId id, const RunConfig& config) override {
    if (slot == 0) return here_.start(0, id, config);
    given_[slot] = {id, config};
    comm_.send(nlohmann::json{{"experiment", id.experiment}, {"index", id.index}, {"config", config.to_json()}}.dump(),
               static_cast<int>(slot));
  }

  Ended wait() override {
    // Only this thread calls MPI (MPI_THREAD_FUNNELED): poll the ranks and the local thread.
    for (;;) {
      if (std::optional<Ended> local = here_.poll(std::chrono::milliseconds(20))) return *local;
      const auto message = comm_.try_receive();
      if (!message) continue;
      const auto slot = static_cast<size_t>(message->first);
      const auto& [id, config] = given_[slot];
      try {
        const nlohmann::json outcome = nlohmann::json::parse(message->second);
        if (outcome.contains("error"))
          throw Error(fmt::format("rank {}: {}", slot, outcome.at("error").get<std::string>()));
        collect_(id, config, outcome);
        return {slot, id, nullptr};
      } catch (...) {
        return {slot, id, std::current_exception()};
      }
    }
  }

 private:
  const Communicator& comm_;
  ThreadWorkers here_;
  std::function<void(RunId, const RunConfig&, const nlohmann::json&)> collect_;
  std::vector<std::pair<RunId, RunConfig>> given_;  // per rank: the run it trains
};

}  // namespace

std::unique_ptr<Workers> thread_workers(size_t count, std::function<void(RunId, const RunConfig&)> train) {
  return std::make_unique<ThreadWorkers>(count, std::move(train));
}

std::unique_ptr<Workers> rank_workers(const Communicator& comm, std::function<void(RunId, const RunConfig&)> train,
                                      std::function<void(RunId, const RunConfig&, const nlohmann::json&)> collect) {
  return std::make_unique<RankWorkers>(comm, std::move(train), std::move(collect));
}

void serve_runs(const Communicator& comm, const std::function<nlohmann::json(RunId, const RunConfig&)>& train) {
  for (;;) {
    // Polled: a blocking MPI receive spins, taking a core from the ranks that train.
    std::optional<std::pair<int, std::string>> message;
    while (!(message = comm.try_receive())) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const nlohmann::json order = nlohmann::json::parse(message->second);
    if (order.contains("stop")) return;
    nlohmann::json outcome;
    try {
      outcome = train({order.at("experiment"), order.at("index")}, RunConfig::from_json(order.at("config")));
    } catch (const std::exception& e) {
      outcome = {{"error", e.what()}};  // rank 0 reports it once the runs under way have ended
    }
    comm.send(outcome.dump(), 0);
  }
}

}  // namespace dagger::suite
