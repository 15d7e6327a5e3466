#include "dagger/graph/printer.h"

#include <fmt/format.h>

#include <sstream>

namespace dagger {

namespace {

/// A string attribute in double quotes on one line: a quote or backslash gets a backslash, a newline becomes \n.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out + '"';
}

/// The shortest text that reads back to the same double, with ".0" where it would read as an
/// integer ("1.0", not "1"), so the parser restores the attribute's type too.
std::string real(double x) {
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".ein") == std::string::npos) s += ".0";
  return s;
}

std::string print_value(const AttrValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::vector<int64_t>>)
          return fmt::format("[{}]", fmt::join(x, ","));
        else if constexpr (std::is_same_v<T, std::string>)
          return quote(x);
        else if constexpr (std::is_same_v<T, double>)
          return real(x);
        else
          return fmt::format("{}", x);
      },
      v);
}

std::string operand_list(const Node& n) {
  std::vector<std::string> ops;
  for (NodeId o : n.operands) ops.push_back(fmt::format("%{}", o));
  return fmt::format("{}", fmt::join(ops, ", "));
}

std::string dot_escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string print_attrs(const Attrs& attrs) {
  if (attrs.items().empty()) return "";
  std::vector<std::string> parts;
  for (const auto& [k, v] : attrs.items()) parts.push_back(fmt::format("{}={}", k, print_value(v)));
  return fmt::format("{{{}}}", fmt::join(parts, ", "));
}

std::string print_text(const Graph& g, Locations locations) {
  std::ostringstream out;
  for (const Node& n : g.nodes()) {
    std::string attrs = print_attrs(n.attrs);
    std::string lhs = n.op == Op::assign ? "" : fmt::format("%{} = ", n.id);
    out << fmt::format("{}{}({}){}{} : {}", lhs, op_info(n.op).name, operand_list(n), attrs.empty() ? "" : " ", attrs,
                       to_string(n.shape));
    if (locations == Locations::show)
      out << fmt::format("  # {}{}", n.scope.empty() ? "" : n.scope + " @ ", describe(n.where));
    else if (!n.scope.empty())
      out << fmt::format("  # {}", n.scope);
    out << '\n';
  }
  for (const auto& [name, id] : g.outputs()) out << fmt::format("output {} = %{}\n", name, id);
  return out.str();
}

std::string print_dot(const Graph& g, const std::string& title) {
  std::ostringstream out;
  out << fmt::format("digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n", dot_escape(title));
  for (const Node& n : g.nodes()) {
    const OpInfo& info = op_info(n.op);
    std::string label = fmt::format("%{} {}", n.id, info.name);
    if (n.attrs.has("name")) label += fmt::format(" {}", n.attrs.s("name"));
    if (n.attrs.has("target")) label += fmt::format(" -> {}", n.attrs.s("target"));
    label += "\\n" + to_string(n.shape);
    const char* shape = info.category == OpCategory::Source ? "box" : info.category == OpCategory::Sink ? "house" : "ellipse";
    const char* fill = info.category == OpCategory::Contraction ? "lightblue"
                       : n.scope.starts_with("grad")           ? "mistyrose"
                       : n.scope == "optimizer"                 ? "lightyellow"
                                                                : "white";
    out << fmt::format("  n{} [label=\"{}\", shape={}, style=filled, fillcolor={}, tooltip=\"{}\"];\n", n.id,
                       dot_escape(label), shape, fill, dot_escape(describe(n.where)));
    for (NodeId o : n.operands) out << fmt::format("  n{} -> n{};\n", o, n.id);
    if (n.op == Op::assign)
      if (auto target = g.find_source(n.attrs.s("target")))
        out << fmt::format("  n{} -> n{} [style=dashed, constraint=false];\n", n.id, *target);
  }
  for (const auto& [name, id] : g.outputs())
    out << fmt::format("  out_{0} [label=\"{0}\", shape=plaintext];\n  n{1} -> out_{0};\n", name, id);
  out << "}\n";
  return out.str();
}

}  // namespace dagger
