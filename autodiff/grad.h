#pragma once
/// Reverse-mode differentiation as a graph transform: grad() appends the backward pass to
/// the forward graph, so the result is an ordinary graph that every later stage (printer,
/// interpreter, lowering) handles without knowing it came from autodiff.
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger {

/// Appends to g the gradient of scalar `loss` with respect to each node in `wrt` (same order).
/// Only nodes on a path from some wrt node to `loss` get adjoints; a wrt node the loss does
/// not depend on gets zeros. New nodes are in scope "grad" and carry the `where` of the
/// forward node they differentiate. Throws dagger::Error when `loss` is not a scalar or a
/// path runs through an op without a VJP rule (or through a non-differentiable operand).
std::vector<NodeId> grad(Graph& g, NodeId loss, const std::vector<NodeId>& wrt);

/// Whether `op` has a VJP rule, i.e. gradients can flow from its result to its operands.
bool has_vjp(Op op);

/// Appends the vector-Jacobian product of node `node` for upstream adjoint `dy` (the node's
/// shape): for each operand k with wants[k], a node holding dL/d(operand k) in that
/// operand's shape; -1 for operands not wanted. Nodes are added in g's current scope with
/// the forward node's `where`. This is the per-op rule table grad() is built on.
std::vector<NodeId> vjp(Graph& g, NodeId node, NodeId dy, const std::vector<bool>& wants);

}  // namespace dagger
