#pragma once
/// Reachability over the whole graph (autodiff prunes with it), done with Boost.Graph behind
/// this interface.
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger {

/// For each node, whether it can be reached from any of `from` by following uses.
std::vector<bool> reachable_from(const Graph& g, const std::vector<NodeId>& from);

/// For each node, whether any of `to` depends on it (it can reach one of them).
std::vector<bool> reaches(const Graph& g, const std::vector<NodeId>& to);

}  // namespace dagger
