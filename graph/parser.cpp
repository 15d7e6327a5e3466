#include "dagger/graph/parser.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <map>

namespace dagger {

namespace {

/// Integers in the text stay within ±2^31, so no shape rule can overflow on them.
constexpr int64_t kMaxInteger = kMaxParsedElements;

/// A cursor over the code part of one line; every failure names the source and the line.
class Cursor {
 public:
  Cursor(std::string_view text, std::string prefix) : text_(text), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& what) const { throw Error(fmt::format("{}: {}", prefix_, what)); }

  void skip_spaces() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\r')) ++pos_;
  }
  bool done() {
    skip_spaces();
    return pos_ == text_.size();
  }
  bool peek(char c) {
    skip_spaces();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  bool eat(char c) {
    if (!peek(c)) return false;
    ++pos_;
    return true;
  }
  void expect(char c, std::string_view context) {
    if (!eat(c)) fail(fmt::format("expected '{}' {}, found {}", c, context, rest()));
  }
  /// What is left of the line, quoted, for messages.
  std::string rest() {
    skip_spaces();
    if (pos_ == text_.size()) return "the end of the line";
    std::string_view r = text_.substr(pos_, 20);
    return fmt::format("'{}{}'", r, pos_ + r.size() < text_.size() ? "..." : "");
  }

  /// A name: letters, digits, '_' and '.'.
  std::string_view word(std::string_view what) {
    skip_spaces();
    const size_t start = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_' || text_[pos_] == '.'))
      ++pos_;
    if (pos_ == start) fail(fmt::format("expected {}, found {}", what, rest()));
    return text_.substr(start, pos_ - start);
  }

  /// A number token as written: digits, letters, sign and '.'.
  std::string_view number_token(std::string_view what) {
    skip_spaces();
    const size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '-' ||
                                   text_[pos_] == '+' || text_[pos_] == '.'))
      ++pos_;
    if (pos_ == start) fail(fmt::format("expected {}, found {}", what, rest()));
    return text_.substr(start, pos_ - start);
  }

  /// An integer within ±2^31, or N when `batch` gives its value.
  int64_t integer(std::string_view what, std::optional<int64_t> batch = std::nullopt, bool allow_n = false) {
    const std::string_view token = number_token(what);
    if (allow_n && token == "N") {
      if (!batch) fail("the batch dimension N appears but no batch size was given");
      return *batch;
    }
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && (v > kMaxInteger || v < -kMaxInteger)))
      fail(fmt::format("{} {} is out of range (at most 2^31 in magnitude)", what, token));
    if (ec != std::errc() || end != token.data() + token.size())
      fail(fmt::format("expected {}, found '{}'", what, token));
    return v;
  }

  /// An integer, or a floating-point number when it has '.', an exponent, "inf" or "nan".
  AttrValue number(std::string_view key) {
    const std::string_view token = number_token(fmt::format("a value for '{}'", key));
    int64_t i = 0;
    const char* end = token.data() + token.size();
    if (auto r = std::from_chars(token.data(), end, i); r.ec == std::errc() && r.ptr == end) {
      if (i > kMaxInteger || i < -kMaxInteger)
        fail(fmt::format("attribute '{}' = {} is out of range (at most 2^31 in magnitude)", key, token));
      return i;
    }
    double d = 0;
    if (auto r = std::from_chars(token.data(), end, d); r.ec == std::errc() && r.ptr == end) return d;
    fail(fmt::format("attribute '{}' has the malformed number '{}'", key, token));
  }

  /// A double-quoted string with \" \\ and \n escapes.
  std::string quoted(std::string_view key) {
    expect('"', fmt::format("to open the string of '{}'", key));
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c == '\\') {
        if (pos_ == text_.size()) break;
        c = text_[pos_++];
        if (c == 'n')
          c = '\n';
        else if (c != '"' && c != '\\')
          fail(fmt::format("string of '{}' has the unknown escape '\\{}'", key, c));
      }
      out += c;
    }
    if (pos_ == text_.size()) fail(fmt::format("string of '{}' is not closed", key));
    ++pos_;
    return out;
  }

  /// `[a,b,...]`; dimensions N allowed when `allow_n`.
  std::vector<int64_t> list(std::string_view what, std::optional<int64_t> batch, bool allow_n) {
    expect('[', fmt::format("to open {}", what));
    std::vector<int64_t> items;
    if (eat(']')) return items;
    do {
      items.push_back(integer(fmt::format("an entry of {}", what), batch, allow_n));
    } while (eat(','));
    expect(']', fmt::format("to close {}", what));
    return items;
  }

 private:
  std::string_view text_;
  std::string prefix_;
  size_t pos_ = 0;
};

/// The code and the comment of a line: the comment starts at the first '#' outside a string.
std::pair<std::string_view, std::string_view> split_comment(std::string_view line) {
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (in_string && line[i] == '\\')
      ++i;
    else if (line[i] == '"')
      in_string = !in_string;
    else if (!in_string && line[i] == '#')
      return {line.substr(0, i), line.substr(i + 1)};
  }
  return {line, {}};
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

/// The scope in a node's comment: "dense1 @ models/zoo.cpp:18" and "dense1" give "dense1"; a bare
/// location ("models/zoo.cpp:12", what a node without scope prints) gives "".
std::string scope_of(std::string_view comment) {
  comment = trim(comment);
  if (const size_t at = comment.find(" @ "); at != std::string_view::npos)
    return std::string(trim(comment.substr(0, at)));
  const size_t colon = comment.rfind(':');
  const bool location = colon != std::string_view::npos && colon + 1 < comment.size() &&
                        comment.find_first_not_of("0123456789", colon + 1) == std::string_view::npos;
  return location ? "" : std::string(comment);
}

/// Parses the lines of a graph into a Graph, one node per line.
class GraphParser {
 public:
  explicit GraphParser(const ParseOptions& options) : options_(options) {}

  void line(std::string_view text, int number) {
    const auto [code, comment] = split_comment(text);
    if (trim(code).empty()) return;
    Cursor c(code, fmt::format("{}:{}", options_.source, number));
    if (trim(code).starts_with("output ")) return output(c);
    node(c, scope_of(comment), number);
  }

  Graph finish() {
    g_.set_scope("");
    return std::move(g_);
  }

 private:
  void output(Cursor& c) {
    c.word("'output'");
    const std::string name(c.word("an output name"));
    c.expect('=', "after the output name");
    const NodeId id = operand(c);
    if (!c.done()) c.fail(fmt::format("unexpected {} after the output", c.rest()));
    if (g_.output(name)) c.fail(fmt::format("duplicate output '{}'", name));
    g_.set_output(name, id);
  }

  /// `%ID` naming a node defined above that has a result.
  NodeId operand(Cursor& c) {
    c.expect('%', "before a node ID");
    const int64_t id = c.integer("a node ID");
    if (id < 0 || id >= static_cast<int64_t>(g_.size()))
      c.fail(fmt::format("%{} is not defined above (forward reference or unknown node)", id));
    if (g_.node(static_cast<NodeId>(id)).op == Op::assign)
      c.fail(fmt::format("%{} is an assign, which has no result", id));
    return static_cast<NodeId>(id);
  }

  Attrs attributes(Cursor& c) {
    Attrs attrs;
    if (!c.eat('{')) return attrs;
    do {
      const std::string key(c.word("an attribute name"));
      if (attrs.has(key)) c.fail(fmt::format("duplicate attribute '{}'", key));
      c.expect('=', fmt::format("after attribute '{}'", key));
      if (c.peek('"'))
        attrs.set(key, c.quoted(key));
      else if (c.peek('['))
        attrs.set(key, c.list(fmt::format("attribute '{}'", key), options_.batch, true));
      else
        attrs.set(key, c.number(key));
    } while (c.eat(','));
    c.expect('}', "to close the attributes");
    return attrs;
  }

  Shape shape(Cursor& c) {
    Shape s = c.list("the shape", options_.batch, true);
    int64_t elements = 1;
    for (int64_t d : s) {
      if (d < 0) c.fail(fmt::format("bad shape {}: negative dimension", to_string(s)));
      if (d != 0 && elements > kMaxParsedElements / d)
        c.fail(fmt::format("bad shape {}: more than 2^31 elements", to_string(s)));
      elements *= d;
    }
    return s;
  }

  void node(Cursor& c, std::string scope, int number) {
    std::optional<int64_t> id;
    if (c.eat('%')) {
      id = c.integer("a node ID");
      c.expect('=', "after the node ID");
    }
    const std::string_view name = c.word("an op name");
    const std::optional<Op> op = op_from_name(name);
    if (!op) c.fail(fmt::format("unknown op '{}'", name));
    check_id(c, *op, id);
    c.expect('(', fmt::format("after '{}'", name));
    std::vector<NodeId> operands;
    if (!c.eat(')')) {
      do operands.push_back(operand(c));
      while (c.eat(','));
      c.expect(')', "to close the operands");
    }
    const OpInfo& info = op_info(*op);
    if (static_cast<int>(operands.size()) != info.arity)
      c.fail(fmt::format("{} takes {} operand(s), got {}", name, info.arity, operands.size()));
    const Attrs attrs = attributes(c);
    c.expect(':', "before the shape");
    const Shape declared = shape(c);
    if (!c.done()) c.fail(fmt::format("unexpected {} after the shape", c.rest()));
    check_names(c, *op, attrs, number);
    check_shape(c, *op, operands, attrs, declared);
    g_.set_scope(std::move(scope));
    try {
      g_.add(*op, std::move(operands), attrs);
    } catch (const Error& e) {
      c.fail(e.what());
    }
  }

  /// Node IDs count up from 0 in order; an assign has none.
  void check_id(Cursor& c, Op op, std::optional<int64_t> id) {
    const auto next = static_cast<int64_t>(g_.size());
    if (op == Op::assign && id) c.fail("assign has no result: write it without '%ID ='");
    if (op == Op::assign) return;
    if (!id) c.fail(fmt::format("missing '%{} =' before {}", next, op_info(op).name));
    if (const auto earlier = lines_.find(*id); earlier != lines_.end())
      c.fail(fmt::format("duplicate node %{} (defined on line {})", *id, earlier->second));
    if (*id != next) c.fail(fmt::format("node %{} is out of sequence: the next ID is %{}", *id, next));
  }

  /// Sources carry unique names; an assign's target is a parameter or state defined above.
  void check_names(Cursor& c, Op op, const Attrs& attrs, int number) {
    lines_[static_cast<int64_t>(g_.size())] = number;
    const auto string_attr = [&](std::string_view key) -> const std::string& {
      for (const auto& [k, v] : attrs.items())
        if (const std::string* s = std::get_if<std::string>(&v); k == key && s) return *s;
      c.fail(fmt::format("{} needs a string attribute '{}'", op_info(op).name, key));
    };
    if (op_info(op).category == OpCategory::Source && op != Op::constant) {
      const std::string& name = string_attr("name");
      if (auto [it, fresh] = source_lines_.emplace(name, number); !fresh)
        c.fail(fmt::format("duplicate source name '{}' (first on line {})", name, it->second));
    }
    if (op == Op::assign) {
      const std::string& target = string_attr("target");
      const std::optional<NodeId> t = g_.find_source(target);
      if (!t || (g_.node(*t).op != Op::state && g_.node(*t).op != Op::parameter))
        c.fail(fmt::format("assign target '{}' is not a parameter or state defined above", target));
    }
  }

  /// The declared shape must be the one the op's shape rule gives.
  void check_shape(Cursor& c, Op op, const std::vector<NodeId>& operands, const Attrs& attrs, const Shape& declared) {
    std::vector<Shape> shapes;
    for (NodeId o : operands) shapes.push_back(g_.shape(o));
    Shape inferred;
    try {
      inferred = infer_shape(op, shapes, attrs);
    } catch (const Error& e) {
      c.fail(fmt::format("{}: {}", op_info(op).name, e.what()));
    }
    if (inferred != declared)
      c.fail(fmt::format("bad shape: {} declares {} but its operands and attributes give {}{}", op_info(op).name,
                         to_string(declared), to_string(inferred),
                         options_.batch ? fmt::format(" (with N = {})", *options_.batch) : ""));
    if (op == Op::assign) {
      const NodeId target = *g_.find_source(attrs.s("target"));
      if (g_.shape(target) != declared)
        c.fail(fmt::format("bad shape: assign writes {} into '{}' of shape {}", to_string(declared), attrs.s("target"),
                           to_string(g_.shape(target))));
    }
  }

  const ParseOptions& options_;
  Graph g_;
  std::map<int64_t, int> lines_;  ///< node ID -> line that defined it
  std::map<std::string, int> source_lines_;
};

}  // namespace

Graph parse_text(std::string_view text, const ParseOptions& options) {
  GraphParser parser(options);
  int number = options.first_line;
  for (size_t start = 0; start < text.size(); ++number) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    parser.line(text.substr(start, end - start), number);
    start = end + 1;
  }
  return parser.finish();
}

}  // namespace dagger
