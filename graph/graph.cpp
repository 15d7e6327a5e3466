#include "dagger/graph/graph.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace dagger {

namespace {

const std::vector<OpInfo>& op_table() {
  static const std::vector<OpInfo> table = {
#define DAGGER_OP(name, arity, category) {#name, arity, OpCategory::category},
#include "dagger/graph/ops.def"
#undef DAGGER_OP
  };
  return table;
}

std::string_view trim_project_root(std::string_view file) {
#ifdef DAGGER_SOURCE_DIR
  std::string_view root = DAGGER_SOURCE_DIR;
  if (file.starts_with(root)) file.remove_prefix(root.size());
#endif
  return file;
}

}  // namespace

std::string describe(const std::source_location& where) {
  return fmt::format("{}:{}", trim_project_root(where.file_name()), where.line());
}

const OpInfo& op_info(Op op) { return op_table().at(static_cast<size_t>(op)); }

std::optional<Op> op_from_name(std::string_view name) {
  const auto& table = op_table();
  for (size_t i = 0; i < table.size(); ++i)
    if (table[i].name == name) return static_cast<Op>(i);
  return std::nullopt;
}

const std::vector<Op>& all_ops() {
  static const std::vector<Op> ops = [] {
    std::vector<Op> v;
    for (size_t i = 0; i < op_table().size(); ++i) v.push_back(static_cast<Op>(i));
    return v;
  }();
  return ops;
}

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n))
      throw Error(fmt::format("shape {} has more elements than a 64-bit count holds", to_string(shape)));
  return n;
}

std::string to_string(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

Attrs::Attrs(std::initializer_list<std::pair<std::string, AttrValue>> items) {
  for (const auto& [k, v] : items) set(k, v);
}

Attrs& Attrs::set(std::string key, AttrValue value) {
  for (auto& [k, v] : items_)
    if (k == key) {
      v = std::move(value);
      return *this;
    }
  items_.emplace_back(std::move(key), std::move(value));
  return *this;
}

bool Attrs::has(std::string_view key) const {
  return std::any_of(items_.begin(), items_.end(), [&](const auto& kv) { return kv.first == key; });
}

const AttrValue& Attrs::get(std::string_view key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return v;
  throw Error(fmt::format("missing attribute '{}'", key));
}

template <class T>
static const T& typed(const AttrValue& v, std::string_view key, const char* type) {
  if (const T* p = std::get_if<T>(&v)) return *p;
  throw Error(fmt::format("attribute '{}' is not {}", key, type));
}

int64_t Attrs::i(std::string_view key) const { return typed<int64_t>(get(key), key, "an integer"); }
double Attrs::f(std::string_view key) const {
  const AttrValue& v = get(key);
  if (const auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  return typed<double>(v, key, "a number");
}
const std::vector<int64_t>& Attrs::ints(std::string_view key) const {
  return typed<std::vector<int64_t>>(get(key), key, "an integer list");
}
const std::string& Attrs::s(std::string_view key) const { return typed<std::string>(get(key), key, "a string"); }
int64_t Attrs::i_or(std::string_view key, int64_t fallback) const { return has(key) ? i(key) : fallback; }
double Attrs::f_or(std::string_view key, double fallback) const { return has(key) ? f(key) : fallback; }

NodeId Graph::add(Op op, std::vector<NodeId> operands, Attrs attrs, std::source_location where) {
  const OpInfo& info = op_info(op);
  if (static_cast<int>(operands.size()) != info.arity)
    throw Error(fmt::format("{}: {} takes {} operands, got {}", describe(where), info.name, info.arity,
                            operands.size()));
  std::vector<Shape> shapes;
  for (NodeId id : operands) {
    if (id < 0 || static_cast<size_t>(id) >= nodes_.size())
      throw Error(fmt::format("{}: {} refers to node %{} which does not exist", describe(where), info.name, id));
    if (nodes_[id].op == Op::assign)
      throw Error(fmt::format("{}: {} uses the result of an assign, which has none", describe(where), info.name));
    shapes.push_back(nodes_[id].shape);
  }
  Node n;
  n.id = static_cast<NodeId>(nodes_.size());
  try {
    n.shape = infer_shape(op, shapes, attrs);
  } catch (const Error& e) {
    std::vector<std::string> parts;
    for (size_t k = 0; k < operands.size(); ++k)
      parts.push_back(fmt::format("%{}{}", operands[k], to_string(shapes[k])));
    throw Error(fmt::format("{}: {}{}({}): {}", describe(where), info.name, scope_.empty() ? "" : " in " + scope_,
                            fmt::join(parts, ", "), e.what()));
  }
  n.op = op;
  n.operands = std::move(operands);
  n.attrs = std::move(attrs);
  n.where = where;
  n.scope = scope_;
  nodes_.push_back(std::move(n));
  return nodes_.back().id;
}

void Graph::set_output(std::string name, NodeId id) {
  for (auto& [k, v] : outputs_)
    if (k == name) {
      v = id;
      return;
    }
  outputs_.emplace_back(std::move(name), id);
}

std::optional<NodeId> Graph::output(std::string_view name) const {
  for (const auto& [k, v] : outputs_)
    if (k == name) return v;
  return std::nullopt;
}

std::optional<NodeId> Graph::find_source(std::string_view name) const {
  for (const Node& n : nodes_)
    if (op_info(n.op).category == OpCategory::Source && n.op != Op::constant && n.attrs.s("name") == name)
      return n.id;
  return std::nullopt;
}

std::vector<NodeId> Graph::nodes_of(Op op) const {
  std::vector<NodeId> ids;
  for (const Node& n : nodes_)
    if (n.op == op) ids.push_back(n.id);
  return ids;
}

std::vector<std::vector<NodeId>> readers_of(const Graph& g) {
  std::vector<std::vector<NodeId>> readers(g.size());
  for (const Node& n : g.nodes())
    for (NodeId o : n.operands) readers[static_cast<size_t>(o)].push_back(n.id);
  return readers;
}

}  // namespace dagger
