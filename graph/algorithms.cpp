// Reachability over Boost.Graph. The BGL adjacency list is built on demand from the
// node vector (edge operand -> user) and never escapes this file.
#include "dagger/graph/algorithms.h"

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/reverse_graph.hpp>

namespace dagger {

namespace {

using DataflowGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS>;

DataflowGraph to_bgl(const Graph& g) {
  DataflowGraph bg(g.size());
  for (const Node& n : g.nodes())
    for (NodeId o : n.operands) boost::add_edge(static_cast<size_t>(o), static_cast<size_t>(n.id), bg);
  return bg;
}

/// Marks every vertex reachable from `from` in `bg` (a BGL graph or a reversed view).
template <class BglGraph>
std::vector<bool> mark_reachable(const BglGraph& bg, size_t vertex_count, const std::vector<NodeId>& from) {
  std::vector<boost::default_color_type> color(vertex_count, boost::white_color);
  auto color_map = boost::make_iterator_property_map(color.begin(), boost::get(boost::vertex_index, bg));
  boost::queue<size_t> queue;
  for (NodeId s : from)
    if (color[static_cast<size_t>(s)] == boost::white_color)
      boost::breadth_first_visit(bg, static_cast<size_t>(s), queue, boost::default_bfs_visitor(), color_map);
  std::vector<bool> seen(vertex_count);
  for (size_t i = 0; i < vertex_count; ++i) seen[i] = color[i] != boost::white_color;
  return seen;
}

}  // namespace

std::vector<bool> reachable_from(const Graph& g, const std::vector<NodeId>& from) {
  return mark_reachable(to_bgl(g), g.size(), from);
}

std::vector<bool> reaches(const Graph& g, const std::vector<NodeId>& to) {
  DataflowGraph bg = to_bgl(g);
  return mark_reachable(boost::make_reverse_graph(bg), g.size(), to);
}

}  // namespace dagger
