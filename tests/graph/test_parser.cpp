// The graph parser: it reads back what the printer writes, and refuses bad text with a message
// naming the line and the mistake, never by crashing.
#include <catch2/catch.hpp>
#include <random>

#include "dagger/autodiff/step.h"
#include "dagger/graph/parser.h"
#include "dagger/graph/printer.h"
#include "dagger/models/zoo.h"
#include "support.h"

using namespace dagger;
using dagger::testing::error_of;

namespace {

const char* const kInput = "%0 = input() {name=\"x\", shape=[2,3]} : [2,3]\n";

std::string parse_error(const std::string& text, std::optional<int64_t> batch = std::nullopt) {
  return error_of([&] { parse_text(text, {.source = "t.dagger", .batch = batch}); });
}

}  // namespace

TEST_CASE("parse_text reads back every zoo training step, with or without locations", "[graph][parser]") {
  for (const std::string spec : {"shallow", "mlp512", "cnn3", "rescnn", "mlp2(64,32,0.1,0.2,bn)"}) {
    INFO(spec);
    const Graph g = build_training_step(zoo::find(spec).build, 2, OptimizerConfig{});
    const std::string plain = print_text(g, Locations::hide);
    const Graph from_dump = parse_text(print_text(g));  // the `dagger ir` form, locations and all
    CHECK(print_text(from_dump, Locations::hide) == plain);
    CHECK(print_text(parse_text(plain), Locations::hide) == plain);
    // The parsed graph is the same graph: ops, operands, attributes, shapes, scopes and outputs.
    REQUIRE(from_dump.size() == g.size());
    for (const Node& n : g.nodes()) {
      const Node& p = from_dump.node(n.id);
      CHECK(
          (p.op == n.op && p.operands == n.operands && p.attrs == n.attrs && p.shape == n.shape && p.scope == n.scope));
    }
    CHECK(from_dump.outputs() == g.outputs());
    verify(from_dump);
  }
}

TEST_CASE("parse_text keeps numbers and strings exact", "[graph][parser]") {
  Graph g;
  g.add(Op::constant, {}, {{"value", 0.1f}, {"shape", Shape{}}});
  g.add(Op::constant, {}, {{"value", 1e-300}, {"shape", Shape{}}});
  g.add(Op::input, {}, {{"name", std::string("odd \"name\" \\ with\nnewline # and hash")}, {"shape", Shape{1}}});
  const Graph p = parse_text(print_text(g));
  CHECK(std::get<double>(p.node(0).attrs.items()[0].second) == double(0.1f));
  CHECK(std::get<double>(p.node(1).attrs.items()[0].second) == 1e-300);
  CHECK(p.node(2).attrs.s("name") == "odd \"name\" \\ with\nnewline # and hash");
  CHECK(print_text(p) != "");
}

TEST_CASE("parse_text substitutes the batch size for N", "[graph][parser]") {
  const std::string text =
      "%0 = input() {name=\"x\", shape=[N,6]} : [N,6]\n"
      "%1 = reshape(%0) {shape=[N,2,-1]} : [N,2,3]\n";
  const Graph g = parse_text(text, {.batch = 5});
  CHECK(g.shape(1) == Shape{5, 2, 3});
  CHECK(g.node(1).attrs.ints("shape") == std::vector<int64_t>{5, 2, -1});
  CHECK_THAT(parse_error(text),
             Catch::Contains("t.dagger:1: the batch dimension N appears but no batch size was given"));
}

TEST_CASE("parse_text names the line and the mistake", "[graph][parser]") {
  const std::string in = kInput;
  // (text, expected message)
  const std::vector<std::pair<std::string, std::string>> cases = {
      // unknown op
      {in + "%1 = frobnicate(%0) : [2,3]\n", "t.dagger:2: unknown op 'frobnicate'"},
      // wrong arity
      {in + "%1 = relu(%0, %0) : [2,3]\n", "t.dagger:2: relu takes 1 operand(s), got 2"},
      {in + "%1 = add(%0) : [2,3]\n", "t.dagger:2: add takes 2 operand(s), got 1"},
      // bad shapes
      {in + "%1 = relu(%0) : [3,2]\n",
       "t.dagger:2: bad shape: relu declares [3,2] but its operands and attributes give [2,3]"},
      {in + "%1 = relu(%0) : [2,x]\n", "t.dagger:2: expected an entry of the shape, found 'x'"},
      {in + "%1 = relu(%0) : [2,-3]\n", "t.dagger:2: bad shape [2,-3]: negative dimension"},
      {"%0 = input() {name=\"x\", shape=[65536,65536]} : [65536,65536]\n",
       "t.dagger:1: bad shape [65536,65536]: more than 2^31"},
      {"%0 = input() {name=\"x\", shape=[99999999999999999999]} : [1]\n",
       "t.dagger:1: an entry of attribute 'shape' 99999999999999999999 is out of range"},
      {in + "%1 = reshape(%0) {shape=[2147483648,2147483648,2147483648,-1]} : [2,3]\n",
       "t.dagger:2: reshape: reshape target [2147483648,2147483648,2147483648,-1] has more elements than a 64-bit "
       "count holds"},
      {in + "%1 = matmul(%0, %0) {trans_a=0, trans_b=0} : [2,3]\n",
       "t.dagger:2: matmul: matmul inner dimensions differ: 3 vs 2"},
      {in + "%1 = relu(%0)\n", "t.dagger:2: expected ':' before the shape, found the end of the line"},
      // duplicate names
      {in + "%0 = relu(%0) : [2,3]\n", "t.dagger:2: duplicate node %0 (defined on line 1)"},
      {in + "%1 = input() {name=\"x\", shape=[1]} : [1]\n", "t.dagger:2: duplicate source name 'x' (first on line 1)"},
      {in + "%1 = relu(%0) : [2,3]\noutput y = %1\noutput y = %0\n", "t.dagger:4: duplicate output 'y'"},
      {in + "%1 = relu(%0) {a=1, a=2} : [2,3]\n", "t.dagger:2: duplicate attribute 'a'"},
      // forward references and out-of-sequence IDs
      {in + "%1 = relu(%2) : [2,3]\n", "t.dagger:2: %2 is not defined above (forward reference or unknown node)"},
      {in + "output y = %7\n", "t.dagger:2: %7 is not defined above"},
      {in + "%5 = relu(%0) : [2,3]\n", "t.dagger:2: node %5 is out of sequence: the next ID is %1"},
      {in + "%-1 = relu(%0) : [2,3]\n", "t.dagger:2: node %-1 is out of sequence: the next ID is %1"},
      // other syntax
      {"relu(%0) : [2]\n", "t.dagger:1: missing '%0 =' before relu"},
      {in + "%1 = assign(%0) {target=\"x\"} : [2,3]\n", "t.dagger:2: assign has no result"},
      {in + "assign(%0) {target=\"nope\"} : [2,3]\n", "t.dagger:2: assign target 'nope' is not a parameter or state"},
      {"%0 = input() {shape=[1]} : [1]\n", "t.dagger:1: input needs a string attribute 'name'"},
      {"%0 = input() {name=\"x, shape=[1]} : [1]\n", "t.dagger:1: string of 'name' is not closed"},
      {in + "%1 = elu(%0) {alpha=1.5.5} : [2,3]\n", "t.dagger:2: attribute 'alpha' has the malformed number '1.5.5'"},
      {in + "%1 = maxpool2d(%0) {window=2, stride=0} : [2,3]\n", "t.dagger:2: maxpool2d: maxpool2d input must be NCHW"},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    CHECK_THAT(parse_error(text), Catch::Contains(expected));
  }
}

TEST_CASE("parse_text throws dagger::Error, never crashes, on mangled text", "[graph][parser]") {
  const std::string good = print_text(build_training_step(zoo::find("cnn(1,bn,0.5)").build, 2, OptimizerConfig{}));
  std::mt19937 rng(1234);
  const std::string alphabet = "%=(),{}[]:#\"\\ -.0123456789Nxe\n";
  int parsed = 0, refused = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string text = good;
    for (int edit = 0; edit < 1 + static_cast<int>(rng() % 4); ++edit) {
      const size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text.erase(at, 1 + rng() % 8);
          break;
        case 1:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 2:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
        case 3:
          text.insert(at, std::to_string(rng()) + std::to_string(rng()));
          break;
      }
    }
    try {
      parse_text(text, {.batch = 2});
      ++parsed;
    } catch (const Error&) {
      ++refused;
    }
  }
  CHECK(refused > 300);  // nearly every edit breaks something the parser checks
  CHECK(parsed + refused == 400);
}
