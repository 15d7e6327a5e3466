#pragma once
/// Whole-graph algorithms, done with Boost.Graph behind this interface.
#include <vector>

#include "graph/graph.h"

namespace dagger {

/// Node ids in an order where every node follows its operands.
std::vector<NodeId> topological_order(const Graph& g);

/// For each node, whether it can be reached from any of `from` by following uses.
std::vector<bool> reachable_from(const Graph& g, const std::vector<NodeId>& from);

/// For each node, whether any of `to` depends on it (it can reach one of them).
std::vector<bool> reaches(const Graph& g, const std::vector<NodeId>& to);

/// The graph's roots: its outputs and its assign (state-update) nodes.
std::vector<NodeId> roots(const Graph& g);

/// A copy of `g` without the nodes no root depends on; ids are renumbered densely in the
/// same relative order. `old_to_new` (when given) receives the id map, -1 for removed nodes.
Graph eliminate_dead(const Graph& g, std::vector<NodeId>* old_to_new = nullptr);

}  // namespace dagger
