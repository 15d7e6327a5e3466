// readers_of: each node's readers, one entry per operand slot, in id order.
#include <catch2/catch.hpp>

#include "dagger/graph/graph.h"

using namespace dagger;

TEST_CASE("readers_of lists every operand slot that reads a node, in id order", "[graph]") {
  Graph g;
  const NodeId x = g.add(Op::input, {}, {{"name", "x"}, {"shape", Shape{3}}});
  const NodeId sq = g.add(Op::mul, {x, x});  // reads x twice
  const NodeId e = g.add(Op::exp, {x});
  const NodeId sum = g.add(Op::add, {sq, e});
  g.set_output("y", sum);

  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  REQUIRE(readers.size() == g.size());
  CHECK(readers[x] == std::vector<NodeId>{sq, sq, e});
  CHECK(readers[sq] == std::vector<NodeId>{sum});
  CHECK(readers[e] == std::vector<NodeId>{sum});
  CHECK(readers[sum].empty());  // a graph output is not a reader
}
