// Reverse-mode traversal: seeds the loss with 1, walks the forward nodes from the highest id
// down (ids are a topological order), and hands each node's adjoint to its VJP rule.
#include <fmt/format.h>

#include <algorithm>

#include "dagger/autodiff/grad.h"
#include "dagger/graph/algorithms.h"

namespace dagger {

namespace {

/// Restores the graph's scope on exit, so grad() leaves the caller's scope untouched.
class ScopeRestore {
 public:
  ScopeRestore(Graph& g, std::string scope) : g_(g), saved_(g.scope()) { g_.set_scope(std::move(scope)); }
  ~ScopeRestore() { g_.set_scope(saved_); }

 private:
  Graph& g_;
  std::string saved_;
};

/// Adjoints of the forward nodes, summed where a value fans out.
class Adjoints {
 public:
  Adjoints(Graph& g, size_t forward_size) : g_(g), of_(forward_size, -1) {}

  NodeId get(NodeId id) const { return of_[static_cast<size_t>(id)]; }

  /// Adds a contribution to `id`'s adjoint: the first one is taken as is, each further one
  /// costs one add, placed at the source line of the consumer that produced it.
  void accumulate(NodeId id, NodeId contribution, const std::source_location& where) {
    NodeId& slot = of_[static_cast<size_t>(id)];
    if (slot < 0) {
      slot = contribution;
      return;
    }
    // A distinct scope makes fan-out sums (the residual skip's) easy to find in dumps.
    std::string scope = g_.scope();
    g_.set_scope("grad.accumulate");
    slot = g_.add(Op::add, {slot, contribution}, {}, where);
    g_.set_scope(scope);
  }

 private:
  Graph& g_;
  std::vector<NodeId> of_;
};

NodeId zeros_like(Graph& g, NodeId id) {
  const Node n = g.node(id);
  NodeId zero = g.add(Op::constant, {}, {{"value", 0.0}, {"shape", Shape{}}}, n.where);
  return n.shape.empty() ? zero : g.add(Op::broadcast, {zero}, {{"shape", n.shape}}, n.where);
}

/// Nodes that lie on a path from some wrt node to the loss: the only ones that need adjoints.
std::vector<bool> on_path(const Graph& g, NodeId loss, const std::vector<NodeId>& wrt) {
  std::vector<bool> from = reachable_from(g, wrt), to = reaches(g, {loss});
  std::vector<bool> both(g.size());
  for (size_t i = 0; i < g.size(); ++i) both[i] = from[i] && to[i];
  return both;
}

void check_ids(const Graph& g, NodeId loss, const std::vector<NodeId>& wrt) {
  auto valid = [&](NodeId id) { return id >= 0 && static_cast<size_t>(id) < g.size(); };
  if (!valid(loss)) throw Error(fmt::format("grad: loss %{} is not a node of the graph", loss));
  if (!g.shape(loss).empty())
    throw Error(fmt::format("{}: grad needs a scalar loss, but %{} ({}) has shape {}", describe(g.node(loss).where),
                            loss, op_info(g.node(loss).op).name, to_string(g.shape(loss))));
  for (NodeId id : wrt)
    if (!valid(id)) throw Error(fmt::format("grad: %{} (requested in wrt) is not a node of the graph", id));
}

}  // namespace

std::vector<NodeId> grad(Graph& g, NodeId loss, const std::vector<NodeId>& wrt) {
  check_ids(g, loss, wrt);
  const std::vector<bool> needed = on_path(g, loss, wrt);
  ScopeRestore scope(g, "grad");
  Adjoints adjoint(g, g.size());
  const std::source_location loss_where = g.node(loss).where;
  adjoint.accumulate(loss, g.add(Op::constant, {}, {{"value", 1.0}, {"shape", Shape{}}}, loss_where), loss_where);  // dL/dL = 1

  for (NodeId id = loss; id >= 0; --id) {
    if (!needed[static_cast<size_t>(id)] || g.node(id).operands.empty()) continue;
    const std::vector<NodeId> operands = g.node(id).operands;
    std::vector<bool> wants;
    for (NodeId o : operands) wants.push_back(needed[static_cast<size_t>(o)]);
    if (std::find(wants.begin(), wants.end(), true) == wants.end()) continue;  // a wrt node fed by constants
    const std::vector<NodeId> grads = vjp(g, id, adjoint.get(id), wants);
    const std::source_location where = g.node(id).where;
    for (size_t k = 0; k < operands.size(); ++k)
      if (wants[k]) adjoint.accumulate(operands[k], grads[k], where);
  }

  std::vector<NodeId> result;
  for (NodeId id : wrt) result.push_back(needed[static_cast<size_t>(id)] ? adjoint.get(id) : zeros_like(g, id));
  return result;
}

}  // namespace dagger
