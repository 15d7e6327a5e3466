#pragma once
/// The graph IR: a static-shape SSA dataflow graph of f32 tensors. Nodes live in a vector
/// indexed by NodeId and are appended in a valid order (operands always precede their users).
/// Every node records the source line of the user's C++ that declared it.
#include <cstdint>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "dagger/graph/error.h"

namespace dagger {

enum class Op : uint8_t {
#define DAGGER_OP(name, arity, category) name,
#include "dagger/graph/ops.def"
#undef DAGGER_OP
};

enum class OpCategory : uint8_t { Source, Elementwise, Layout, Reduction, Contraction, Composite, Sink };

struct OpInfo {
  std::string_view name;
  int arity;
  OpCategory category;
};

/// The op table row for `op`.
const OpInfo& op_info(Op op);
/// Looks an op up by its printed name; nullopt when there is none.
std::optional<Op> op_from_name(std::string_view name);
/// Every op, in table order.
const std::vector<Op>& all_ops();

using Shape = std::vector<int64_t>;
int64_t numel(const Shape& shape);
/// "[64,1,28,28]"; a scalar prints as "[]".
std::string to_string(const Shape& shape);

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;

/// Named attributes of a node, kept in insertion order so printing is stable.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, AttrValue>> items);
  Attrs& set(std::string key, AttrValue value);
  bool has(std::string_view key) const;
  int64_t i(std::string_view key) const;
  double f(std::string_view key) const;
  const std::vector<int64_t>& ints(std::string_view key) const;
  const std::string& s(std::string_view key) const;
  int64_t i_or(std::string_view key, int64_t fallback) const;
  double f_or(std::string_view key, double fallback) const;
  const std::vector<std::pair<std::string, AttrValue>>& items() const { return items_; }
  bool operator==(const Attrs&) const = default;

 private:
  const AttrValue& get(std::string_view key) const;
  std::vector<std::pair<std::string, AttrValue>> items_;
};

using NodeId = int32_t;

struct Node {
  NodeId id = -1;
  Op op{};
  std::vector<NodeId> operands;
  Attrs attrs;
  Shape shape;
  std::source_location where;
  /// The layer or pass that made the node ("dense1", "grad", "adam"), for dumps.
  std::string scope;
};

class Graph {
 public:
  /// Appends a node after checking arity, operands and attributes and inferring its shape.
  /// A mismatch throws dagger::Error naming the op, the operand shapes and `where`.
  NodeId add(Op op, std::vector<NodeId> operands, Attrs attrs = {},
             std::source_location where = std::source_location::current());

  const Node& node(NodeId id) const { return nodes_.at(static_cast<size_t>(id)); }
  const std::vector<Node>& nodes() const { return nodes_; }
  size_t size() const { return nodes_.size(); }
  const Shape& shape(NodeId id) const { return node(id).shape; }

  /// Layer or pass name stamped on every node added from now on.
  void set_scope(std::string scope) { scope_ = std::move(scope); }
  const std::string& scope() const { return scope_; }

  /// Named results of the graph (e.g. "loss", "logits").
  void set_output(std::string name, NodeId id);
  const std::vector<std::pair<std::string, NodeId>>& outputs() const { return outputs_; }
  std::optional<NodeId> output(std::string_view name) const;

  /// The source node (input, parameter or state) called `name`, if any.
  std::optional<NodeId> find_source(std::string_view name) const;
  /// All nodes of one op, in id order.
  std::vector<NodeId> nodes_of(Op op) const;

 private:
  std::vector<Node> nodes_;
  std::vector<std::pair<std::string, NodeId>> outputs_;
  std::string scope_;
};

/// For each node, the nodes that read it, in id order: one entry per operand slot, so a node
/// reading the same value twice is listed twice. Graph outputs are not readers.
std::vector<std::vector<NodeId>> readers_of(const Graph& g);

/// Infers the result shape of `op` applied to operands of the given shapes; throws
/// dagger::Error (without location; Graph::add adds it) when they do not fit.
Shape infer_shape(Op op, const std::vector<Shape>& operands, const Attrs& attrs);

/// NumPy broadcasting of two shapes; throws dagger::Error when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);

/// Re-checks every invariant of a finished graph (operand order, arity, shapes, assign
/// targets); throws dagger::Error on the first violation.
void verify(const Graph& g);

}  // namespace dagger
