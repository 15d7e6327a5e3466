#pragma once
/// The graph's two printed forms: a stable SSA text listing and Graphviz DOT.
#include <string>

#include "dagger/graph/graph.h"

namespace dagger {

/// Whether print_text ends each node's line with the C++ line that declared it.
enum class Locations { show, hide };

/// One line per node: `%7 = matmul(%3, %6) {trans_a=0, trans_b=0} : [64,512]  # dense1 @ models/zoo.cpp:18`,
/// then the outputs. Identical graphs print identically. With Locations::hide the comment holds only
/// the scope (`# dense1`), so the text no longer depends on where the model's source lives.
/// graph/parser.h reads both forms back.
std::string print_text(const Graph& g, Locations locations = Locations::show);

/// The same graph as a Graphviz digraph: sources as boxes, state updates as dashed edges.
std::string print_dot(const Graph& g, const std::string& title = "dagger");

/// A node's attributes as `{k=v, ...}` ("" when it has none).
std::string print_attrs(const Attrs& attrs);

}  // namespace dagger
