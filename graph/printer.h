#pragma once
/// The graph's two printed forms: a stable SSA text listing and Graphviz DOT.
#include <string>

#include "graph/graph.h"

namespace dagger {

/// One line per node: `%7 = matmul(%3, %6) {trans_a=0, trans_b=0} : [64,512]  # dense1 @ models/zoo.cpp:18`,
/// then the outputs. Identical graphs print identically.
std::string print_text(const Graph& g);

/// The same graph as a Graphviz digraph: sources as boxes, state updates as dashed edges.
std::string print_dot(const Graph& g, const std::string& title = "dagger");

/// A node's attributes as `{k=v, ...}` ("" when it has none).
std::string print_attrs(const Attrs& attrs);

}  // namespace dagger
