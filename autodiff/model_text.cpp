#include "dagger/autodiff/model_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <map>
#include <memory>
#include <optional>

#include "dagger/graph/parser.h"
#include "dagger/graph/printer.h"

namespace dagger {

namespace {

/// Two batch sizes the model is printed at: every token that differs between the two texts must
/// be the batch size itself, which then prints as N.
constexpr int64_t kProbeBatch = 2, kOtherProbeBatch = 3;

const char* mode_name(Mode mode) { return mode == Mode::train ? "train" : "eval"; }

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

/// The model's own nodes in `full` (a build_forward graph): the input "x" up to the logits. The
/// loss or softmax head that build_forward appends is left out; a model that adds nodes after
/// its logits cannot be described and is refused.
Graph model_body(const Graph& full, Mode mode) {
  const NodeId logits = *full.output("logits");
  const size_t head = mode == Mode::train ? 2 : 1;  // labels + softmax_xent, or softmax
  if (full.size() != static_cast<size_t>(logits) + 1 + head)
    throw Error("the model adds nodes after its logits, which a model text cannot keep");
  Graph body;
  for (NodeId id = 0; id <= logits; ++id) {
    const Node& n = full.node(id);
    body.set_scope(n.scope);
    body.add(n.op, n.operands, n.attrs);
  }
  body.set_scope("");
  body.set_output("logits", logits);
  return body;
}

std::string section_text(const ModelFn& model, int64_t batch, Mode mode, const Shape& input_shape, int64_t classes) {
  return print_text(model_body(build_forward(model, batch, mode, input_shape, classes), mode), Locations::hide);
}

/// Splits a text into maximal runs of digits and runs of anything else.
std::vector<std::string_view> digit_runs(std::string_view s) {
  std::vector<std::string_view> runs;
  for (size_t start = 0; start < s.size();) {
    const bool digits = std::isdigit(static_cast<unsigned char>(s[start]));
    size_t end = start;
    while (end < s.size() && static_cast<bool>(std::isdigit(static_cast<unsigned char>(s[end]))) == digits) ++end;
    runs.push_back(s.substr(start, end - start));
    start = end;
  }
  return runs;
}

/// One line printed at the probe batch with the batch size written N, given the same line printed
/// at the other probe; nullopt when the two differ in anything but the batch size.
std::optional<std::string> symbolic_line(std::string_view at_probe, std::string_view at_other) {
  const auto a = digit_runs(at_probe), b = digit_runs(at_other);
  if (a.size() != b.size()) return std::nullopt;
  const std::string probe = std::to_string(kProbeBatch), other = std::to_string(kOtherProbeBatch);
  std::string out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i])
      out += a[i];
    else if (a[i] == probe && b[i] == other)
      out += 'N';
    else
      return std::nullopt;
  }
  return out;
}

/// `at_probe` with the batch size written N, given the same section printed at the other probe.
std::string symbolic_batch(const std::string& at_probe, const std::string& at_other) {
  const auto a = split_lines(at_probe), b = split_lines(at_other);
  std::string out;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string_view x = i < a.size() ? a[i] : "<end>", y = i < b.size() ? b[i] : "<end>";
    const std::optional<std::string> line = i < a.size() && i < b.size() ? symbolic_line(x, y) : std::nullopt;
    if (!line)
      throw Error(
          fmt::format("the model's graph depends on the batch size beyond its batch axis, so it cannot be "
                      "written as a model text: line {} is '{}' at batch {} but '{}' at batch {}",
                      i + 1, x, kProbeBatch, y, kOtherProbeBatch));
    out += *line + '\n';
  }
  return out;
}

}  // namespace

std::string first_difference(std::string_view a, std::string_view b, std::string_view name_a,
                             std::string_view name_b) {
  const auto la = split_lines(a), lb = split_lines(b);
  for (size_t i = 0; i < std::max(la.size(), lb.size()); ++i) {
    const std::string_view x = i < la.size() ? la[i] : "<end>", y = i < lb.size() ? lb[i] : "<end>";
    if (x != y) return fmt::format("line {} is '{}' in {} but '{}' in {}", i + 1, x, name_a, y, name_b);
  }
  return "";
}

std::string print_model(const ModelFn& model, const Shape& input_shape, int64_t classes) {
  std::string out = fmt::format("{} {}\ninput {}\n", kModelTextFormat, kModelTextVersion, to_string(input_shape));
  for (Mode mode : {Mode::train, Mode::eval}) {
    const std::string a = section_text(model, kProbeBatch, mode, input_shape, classes);
    const std::string symbolic = symbolic_batch(a, section_text(model, kOtherProbeBatch, mode, input_shape, classes));
    // The substitution must be exact: read back at the probe batch, the text prints as it did.
    const Graph again = parse_text(symbolic, {.source = "the printed model", .batch = kProbeBatch});
    if (print_text(again, Locations::hide) != a)
      throw Error(fmt::format("the model's {} graph does not survive its text form ({})", mode_name(mode),
                              first_difference(print_text(again, Locations::hide), a, "the text read back", "the graph")));
    out += fmt::format("mode {}\n{}", mode_name(mode), symbolic);
  }
  return out;
}

namespace {

/// One mode's lines of a model text.
struct Section {
  std::string text;
  int first_line = 0;  ///< 0: the text has no such section
};

struct ModelSections {
  std::string source;
  Shape input_shape;
  std::array<Section, 2> modes;  ///< train, eval
};

[[noreturn]] void fail_at(const std::string& source, size_t line, const std::string& what) {
  throw Error(fmt::format("{}:{}: {}", source, line, what));
}

void check_version(std::string_view line, const std::string& source) {
  const std::string prefix = std::string(kModelTextFormat) + " ";
  if (!line.starts_with(prefix))
    fail_at(source, 1,
            fmt::format("not a model text: the first line must be '{} {}'", kModelTextFormat, kModelTextVersion));
  if (line.substr(prefix.size()) != std::to_string(kModelTextVersion))
    fail_at(source, 1,
            fmt::format("unsupported model text version '{}' (this build reads version {})", line.substr(prefix.size()),
                        kModelTextVersion));
}

/// "input [1,28,28]": one example's shape, every dimension at least 1.
Shape input_line(std::string_view line, const std::string& source) {
  const std::string_view prefix = "input [";
  if (!line.starts_with(prefix) || !line.ends_with("]"))
    fail_at(source, 2, fmt::format("expected 'input [D,...]' (one example's shape), found '{}'", line));
  Shape shape;
  std::string_view dims = line.substr(prefix.size(), line.size() - prefix.size() - 1);
  int64_t elements = 1;
  while (!dims.empty()) {
    const size_t comma = std::min(dims.find(','), dims.size());
    const std::string_view item = dims.substr(0, comma);
    int64_t d = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), d);
    if (ec != std::errc() || end != item.data() + item.size() || d < 1 || d > kMaxParsedElements / elements)
      fail_at(source, 2, fmt::format("bad input shape: '{}' is not a dimension from 1 to 2^31 elements", item));
    elements *= d;
    shape.push_back(d);
    dims.remove_prefix(std::min(comma + 1, dims.size()));
  }
  return shape;
}

ModelSections split_sections(std::string_view text, const std::string& source) {
  const std::vector<std::string_view> lines = split_lines(text);
  ModelSections m;
  m.source = source;
  check_version(lines.empty() ? std::string_view() : lines[0], source);
  m.input_shape = input_line(lines.size() > 1 ? lines[1] : std::string_view(), source);
  Section* current = nullptr;
  for (size_t i = 2; i < lines.size(); ++i) {
    if (lines[i].starts_with("mode ")) {
      const std::string_view name = lines[i].substr(5);
      if (name != "train" && name != "eval")
        fail_at(source, i + 1, fmt::format("unknown mode '{}' (train or eval)", name));
      current = &m.modes[name == "train" ? 0 : 1];
      if (current->first_line) fail_at(source, i + 1, fmt::format("duplicate section 'mode {}'", name));
      current->first_line = static_cast<int>(i + 2);
    } else if (current) {
      current->text += fmt::format("{}\n", lines[i]);
    } else if (!lines[i].empty() && !lines[i].starts_with("#")) {
      fail_at(source, i + 1, fmt::format("expected 'mode train' or 'mode eval', found '{}'", lines[i]));
    }
  }
  for (Mode mode : {Mode::train, Mode::eval})
    if (!m.modes[mode == Mode::train ? 0 : 1].first_line)
      throw Error(fmt::format("{}: the model text has no 'mode {}' section", source, mode_name(mode)));
  return m;
}

Graph parse_section(const ModelSections& m, Mode mode, int64_t batch) {
  const Section& s = m.modes[mode == Mode::train ? 0 : 1];
  return parse_text(s.text, {.source = m.source, .first_line = s.first_line, .batch = batch});
}

/// Parameters and states by name, as "op shape attributes", to compare the two modes.
std::map<std::string, std::string> declared_tensors(const Graph& g) {
  std::map<std::string, std::string> declared;
  for (const Node& n : g.nodes())
    if (n.op == Op::parameter || n.op == Op::state)
      declared[n.attrs.s("name")] = fmt::format("{} {}", op_info(n.op).name, print_attrs(n.attrs));
  return declared;
}

/// Checks a section at the probe batch: it starts with the input "x" of the text's input shape,
/// ends in logits [N, classes] and names neither "labels" (the head's) nor other outputs.
void check_section(const ModelSections& m, Mode mode, const Graph& g) {
  const auto fail = [&](const std::string& what) {
    throw Error(fmt::format("{}: mode {}: {}", m.source, mode_name(mode), what));
  };
  Shape x_shape = {kProbeBatch};
  x_shape.insert(x_shape.end(), m.input_shape.begin(), m.input_shape.end());
  if (g.size() == 0 || g.node(0).op != Op::input || g.node(0).attrs.s("name") != "x" || g.shape(0) != x_shape)
    fail(fmt::format("the first node must be the input \"x\" of shape [N,{}]", fmt::join(m.input_shape, ",")));
  const auto logits = g.output("logits");
  if (!logits || g.outputs().size() != 1) fail("the section must end with exactly one output, 'output logits = %ID'");
  if (g.shape(*logits).size() != 2 || g.shape(*logits)[0] != kProbeBatch) fail("the logits must be [N, classes]");
  if (g.find_source("labels")) fail("the name \"labels\" is the training head's input and cannot be a model's");
}

/// Each node of `g` as a number that `interned` gives to every node with the same op, attributes,
/// shape and operands (by their numbers): equal numbers compute the same thing from the same named
/// sources, whatever the nodes' ids.
std::vector<size_t> structural_ids(const Graph& g, std::map<std::string, size_t>& interned) {
  std::vector<size_t> ids(g.size());
  for (const Node& n : g.nodes()) {
    std::string key = fmt::format("{} {} : {}", op_info(n.op).name, print_attrs(n.attrs), to_string(n.shape));
    for (NodeId o : n.operands) key += fmt::format(" %{}", ids[static_cast<size_t>(o)]);
    ids[static_cast<size_t>(n.id)] = interned.try_emplace(std::move(key), interned.size()).first->second;
  }
  return ids;
}

/// The index of the first node of `ids` whose number `others` lacks (each of `others` is the
/// equal of one node only); nullopt when every one has its equal.
std::optional<size_t> first_unmatched(const std::vector<size_t>& ids, std::vector<size_t> others) {
  std::sort(others.begin(), others.end());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto it = std::lower_bound(others.begin(), others.end(), ids[i]);
    if (it == others.end() || *it != ids[i]) return i;
    others.erase(it);
  }
  return std::nullopt;
}

/// Node `i` of `m`'s section of `mode` has no equal in `other`'s: "line L 'TEXT' in M has no equal
/// in OTHER (its line L is 'TEXT')".
std::string unmatched_line(const ModelSections& m, const ModelSections& other, Mode mode, size_t i) {
  const Section &s = m.modes[mode == Mode::train ? 0 : 1], &o = other.modes[mode == Mode::train ? 0 : 1];
  const std::vector<std::string_view> lines = split_lines(s.text), other_lines = split_lines(o.text);
  const int line = s.first_line + static_cast<int>(i);
  const int there = line - o.first_line;  // the same line number in the other text, in its section
  std::string out = fmt::format("line {} '{}' in {} has no equal in {}", line, i < lines.size() ? lines[i] : "",
                                m.source, other.source);
  if (there >= 0 && static_cast<size_t>(there) < other_lines.size())
    out += fmt::format(" (its line {} is '{}')", line, other_lines[static_cast<size_t>(there)]);
  return out;
}

}  // namespace

std::string model_difference(std::string_view a, std::string_view b, std::string_view name_a,
                             std::string_view name_b) {
  if (a == b) return "";
  const std::string textual = first_difference(a, b, name_a, name_b);
  std::optional<ModelSections> ma, mb;
  try {
    ma = split_sections(a, std::string(name_a));
    mb = split_sections(b, std::string(name_b));
  } catch (const Error&) {
    return textual;
  }
  if (ma->input_shape != mb->input_shape) return textual;
  std::map<std::string, size_t> interned;
  for (Mode mode : {Mode::train, Mode::eval}) {
    std::optional<Graph> ga, gb;
    try {
      ga = parse_section(*ma, mode, kProbeBatch);
      gb = parse_section(*mb, mode, kProbeBatch);
    } catch (const Error&) {
      return textual;
    }
    const std::vector<size_t> ia = structural_ids(*ga, interned), ib = structural_ids(*gb, interned);
    if (const auto i = first_unmatched(ia, ib)) return unmatched_line(*ma, *mb, mode, *i);
    if (const auto i = first_unmatched(ib, ia)) return unmatched_line(*mb, *ma, mode, *i);
    const auto la = ga->output("logits"), lb = gb->output("logits");
    if (!la || !lb || ia[static_cast<size_t>(*la)] != ib[static_cast<size_t>(*lb)]) return textual;
  }
  return "";
}

ParsedModel parse_model(std::string_view text, const std::string& source) {
  auto m = std::make_shared<const ModelSections>(split_sections(text, source));
  const Graph train = parse_section(*m, Mode::train, kProbeBatch), eval = parse_section(*m, Mode::eval, kProbeBatch);
  check_section(*m, Mode::train, train);
  check_section(*m, Mode::eval, eval);
  if (declared_tensors(train) != declared_tensors(eval))
    throw Error(fmt::format("{}: modes train and eval declare different parameters or states", source));
  if (train.shape(*train.output("logits")) != eval.shape(*eval.output("logits")))
    throw Error(fmt::format("{}: modes train and eval give logits of different shapes", source));

  ParsedModel parsed;
  parsed.input_shape = m->input_shape;
  parsed.classes = train.shape(*train.output("logits"))[1];
  parsed.build = [m](Model& model, Value x) {
    if (x.shape().empty()) throw Error(fmt::format("{}: the model needs a batch axis", m->source));
    const Graph text = parse_section(*m, model.mode(), x.shape()[0]);
    if (text.shape(0) != x.shape())
      throw Error(fmt::format("{}: the model takes inputs {} but was given {}", m->source, to_string(text.shape(0)),
                              to_string(x.shape())));
    Graph& g = model.graph();
    const std::string saved_scope = g.scope();
    std::vector<NodeId> ids(text.size());
    ids[0] = x.id;
    for (NodeId id = 1; id < static_cast<NodeId>(text.size()); ++id) {
      const Node& n = text.node(id);
      std::vector<NodeId> operands;
      for (NodeId o : n.operands) operands.push_back(ids[o]);
      g.set_scope(n.scope);
      ids[id] = g.add(n.op, std::move(operands), n.attrs);
    }
    g.set_scope(saved_scope);
    return Value{&g, ids[*text.output("logits")]};
  };
  return parsed;
}

}  // namespace dagger
