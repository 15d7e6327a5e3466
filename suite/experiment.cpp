#include "dagger/suite/experiment.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "dagger/graph/error.h"

namespace dagger::suite {

namespace {

/// The id of a reference "@E03.lr" -> "E03"; "" for a literal.
std::string referenced_id(const std::string& value) {
  if (!value.starts_with('@')) return "";
  return value.substr(1, value.find('.') - 1);
}

}  // namespace

std::vector<std::string> dependencies(const Experiment& e) {
  std::vector<std::string> ids;
  auto add = [&](const std::string& id) {
    if (!id.empty() && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (const std::string* v : {&e.run.lr, &e.run.momentum, &e.run.patience, &e.run.optimizer}) add(referenced_id(*v));
  for (const Axis& axis : e.grid)
    for (const std::string& v : axis.values) add(referenced_id(v));
  for (const std::string& id : e.members) add(id);
  return ids;
}

std::vector<const Experiment*> plan(const std::vector<Experiment>& experiments, const std::vector<std::string>& only,
                                    Profile::Scope scope) {
  std::map<std::string, const Experiment*> by_id;
  std::vector<std::string> ids;
  for (const Experiment& e : experiments) {
    by_id[e.id] = &e;
    ids.push_back(e.id);
  }
  auto find = [&](const std::string& id, const std::string& needed_by) {
    auto it = by_id.find(id);
    if (it != by_id.end()) return it->second;
    if (needed_by.empty()) throw Error(fmt::format("unknown experiment '{}' (valid: {})", id, fmt::join(ids, ", ")));
    throw Error(fmt::format("experiment {} depends on '{}', which is not declared", needed_by, id));
  };
  std::set<std::string> wanted;
  std::function<void(const std::string&, const std::string&)> want = [&](const std::string& id,
                                                                         const std::string& needed_by) {
    const Experiment* e = find(id, needed_by);
    if (!wanted.insert(id).second) return;
    for (const std::string& dep : dependencies(*e)) want(dep, id);
  };
  const auto in_scope = [scope](const Experiment& e) {
    return scope == Profile::Scope::all || (scope == Profile::Scope::beyond) == e.beyond_study;
  };
  if (only.empty())
    for (const Experiment& e : experiments)
      if (in_scope(e)) want(e.id, "");
  for (const std::string& id : only) want(id, "");
  // Slide order, except that an experiment waits for its dependencies (depth-first).
  std::vector<const Experiment*> order;
  std::set<std::string> placed, visiting;
  std::function<void(const Experiment*)> place = [&](const Experiment* e) {
    if (placed.count(e->id)) return;
    if (!visiting.insert(e->id).second) throw Error(fmt::format("experiment {} depends on itself", e->id));
    for (const std::string& dep : dependencies(*e)) place(by_id.at(dep));
    placed.insert(e->id);
    order.push_back(e);
  };
  for (const Experiment& e : experiments)
    if (wanted.count(e.id)) place(&e);
  return order;
}

std::vector<uint64_t> seeds_of(const Experiment& e, const Profile& profile) {
  return e.seeds.empty() ? profile.seeds_of(e.id) : e.seeds;
}

size_t grid_size(const Experiment& e) {
  if (e.run.model.empty()) return 0;
  size_t n = 1;
  for (const Axis& axis : e.grid) n *= axis.values.size();
  return n;
}

}  // namespace dagger::suite
