#pragma once
/// Internal to codegen/: element generators for every elementwise op of graph/ops.def, their
/// composition over a fused group, and the loop kernel that stores a group's root.
#include <functional>
#include <string>
#include <vector>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/loops.h"

namespace dagger {

/// The generator of elementwise node `n` from the generators of its operands. Throws an
/// internal dagger::Error when `n` is not elementwise or `operands` does not match its arity.
ElementGen elementwise_gen(Emit& e, const Node& n, std::vector<ElementGen> operands);

/// The generators of every value `group` writes, in buffer order (root, then side outputs):
/// its elementwise nodes composed in registers, with `input(id)` supplying every value the
/// group reads (and the anchor's result, if any).
std::vector<ElementGen> compose_group(Emit& e, const Graph& g, const FusionGroup& group,
                                      const std::function<ElementGen(NodeId)>& input);

/// The parallel items of an elementwise group's kernel (see nest_items).
int64_t elementwise_items(const Graph& g, const FusionGroup& group);

/// Drops `noalias` from each output written in place (group.in_place) and from the input it
/// shares a buffer with. Each element of such an input must be read before the same element of
/// the output is stored (every output of an element computed before any is stored).
void share_in_place_buffers(const KernelFunction& kf, const FusionGroup& group);

/// Emits kernel `name` for an elementwise group (no anchor). Arguments: the root's output
/// buffer, then group.inputs in order.
void emit_elementwise_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group);

}  // namespace dagger
