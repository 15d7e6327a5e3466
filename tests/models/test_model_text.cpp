// Model texts: every zoo model survives print -> parse -> print, and a model rebuilt from its
// text trains to the same bits as the C++ that declared it.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstring>
#include <random>

#include "dagger/autodiff/model_text.h"
#include "dagger/graph/printer.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/trainer.h"
#include "support.h"

using namespace dagger;
using dagger::testing::error_of;

namespace {

/// Every named model and a few calls with other arguments.
std::vector<std::string> specs() {
  std::vector<std::string> s;
  for (const zoo::Entry& e : zoo::entries()) s.push_back(e.name);
  for (const char* call : {"cnn(2,nobn,0.3)", "mlp2(64,32,0.1,0.2,bn)", "rescnn(plain)", "mlp1(128,tanh,0)",
                           "mlp1(16,elu,0.1)", "mlp1(16,leaky_relu,0.1)", "mlp1(16,selu,0.1)"})
    s.push_back(call);
  return s;
}

StateMap trained_state(const ModelFn& model, const Dataset& train, const Dataset& val) {
  TrainConfig c;
  c.epochs = 1;
  c.batch = 4;  // 6 images: a full batch and a partial one of 2
  c.eval_batch = 4;
  c.progress = false;
  Trainer t(model, c);
  t.fit(train, val);
  return t.state();
}

const char* const kTinyModel =
    "dagger-model 1\n"
    "input [4]\n"
    "mode train\n"
    "%0 = input() {name=\"x\", shape=[N,4]} : [N,4]\n"
    "%1 = parameter() {name=\"w\", shape=[4,3], init=\"zeros\", fan_in=0, fan_out=0} : [4,3]\n"
    "%2 = matmul(%0, %1) {trans_a=0, trans_b=0} : [N,3]\n"
    "output logits = %2\n"
    "mode eval\n"
    "%0 = input() {name=\"x\", shape=[N,4]} : [N,4]\n"
    "%1 = parameter() {name=\"w\", shape=[4,3], init=\"zeros\", fan_in=0, fan_out=0} : [4,3]\n"
    "%2 = matmul(%0, %1) {trans_a=0, trans_b=0} : [N,3]\n"
    "output logits = %2\n";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("model text round trip: print -> parse -> print is exact for the zoo", "[models][model_text]") {
  for (const std::string& spec : specs()) {
    INFO(spec);
    const ModelFn model = zoo::find(spec).build;
    const std::string text = print_model(model);
    CHECK(text.starts_with("dagger-model 1\ninput [1,28,28]\nmode train\n"));
    const ParsedModel parsed = parse_model(text, spec);
    CHECK(parsed.input_shape == Shape{1, 28, 28});
    CHECK(print_model(parsed.build) == text);
    // The parsed model builds the same training step and evaluation graph at any batch size.
    for (int64_t batch : {1, 7}) {
      CHECK(print_text(build_training_step(parsed.build, batch, OptimizerConfig{}), Locations::hide) ==
            print_text(build_training_step(model, batch, OptimizerConfig{}), Locations::hide));
      CHECK(print_text(build_forward(parsed.build, batch, Mode::eval), Locations::hide) ==
            print_text(build_forward(model, batch, Mode::eval), Locations::hide));
    }
  }
}

TEST_CASE("a model rebuilt from its text trains to the same bits", "[models][model_text][trainer]") {
  const Dataset train = testing::random_images(6, 3), val = testing::random_images(4, 4);
  for (const std::string& spec : specs()) {
    INFO(spec);
    const ModelFn model = zoo::find(spec).build;
    const StateMap cpp = trained_state(model, train, val);
    const StateMap text = trained_state(parse_model(print_model(model)).build, train, val);
    REQUIRE(cpp.size() == text.size());
    for (const auto& [name, tensor] : cpp) {
      INFO(name);
      REQUIRE(text.count(name));
      REQUIRE(text.at(name).shape() == tensor.shape());
      CHECK(std::memcmp(tensor.data(), text.at(name).data(), tensor.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("a model whose graph depends on the batch beyond its batch axis has no text", "[models][model_text]") {
  const ModelFn per_row = [](Model& m, Value x) {
    const int64_t n = x.shape()[0];
    Value rows = reshape(x, {n * 28, 28});  // 28 * batch rows: not the batch size itself
    return m.dense(reshape(m.dense(rows, 2), {n, 56}), 10);
  };
  CHECK_THAT(error_of([&] { print_model(per_row); }),
             Catch::Contains("depends on the batch size beyond its batch axis") &&
                 Catch::Contains("line 2 is '%1 = reshape(%0) {shape=[56,28]} : [56,28]' at batch 2 but "
                                 "'%1 = reshape(%0) {shape=[84,28]} : [84,28]' at batch 3"));
  const ModelFn after_logits = [](Model& m, Value x) {
    Value logits = m.dense(flatten(x), 10);
    relu(logits);
    return logits;
  };
  CHECK_THAT(error_of([&] { print_model(after_logits); }), Catch::Contains("adds nodes after its logits"));
}

TEST_CASE("parse_model names the line and what is wrong", "[models][model_text]") {
  const std::string tiny = kTinyModel;
  CHECK(print_model(parse_model(tiny).build, {4}) == tiny);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {replaced(tiny, "dagger-model 1", "dagger-model 2"),
       "m:1: unsupported model text version '2' (this build reads version 1)"},
      {replaced(tiny, "dagger-model 1", "hello"), "m:1: not a model text: the first line must be 'dagger-model 1'"},
      {"", "m:1: not a model text"},
      {replaced(tiny, "input [4]", "input [4,x]"), "m:2: bad input shape: 'x'"},
      {replaced(tiny, "input [4]", "input [0]"), "m:2: bad input shape: '0'"},
      {replaced(tiny, "mode eval", "mode test"), "m:8: unknown mode 'test' (train or eval)"},
      {replaced(tiny, "mode eval", "mode train"), "m:8: duplicate section 'mode train'"},
      {tiny.substr(0, tiny.find("mode eval")), "m: the model text has no 'mode eval' section"},
      {replaced(tiny, "%2 = matmul", "%2 = matmull"), "m:6: unknown op 'matmull'"},
      {replaced(tiny, "matmul(%0, %1)", "matmul(%0)"), "m:6: matmul takes 2 operand(s), got 1"},
      {replaced(tiny, "matmul(%0, %1)", "matmul(%0, %3)"), "m:6: %3 is not defined above"},
      {replaced(tiny, ": [N,3]", ": [N,4]"),
       "m:6: bad shape: matmul declares [2,4] but its operands and attributes give [2,3] (with N = 2)"},
      {replaced(tiny, "%1 = parameter() {name=\"w\"", "%1 = parameter() {name=\"x\""),
       "m:5: duplicate source name 'x'"},
      {replaced(tiny, "{name=\"x\", shape=[N,4]}", "{name=\"y\", shape=[N,4]}"),
       "m: mode train: the first node must be the input \"x\" of shape [N,4]"},
      {replaced(tiny, "output logits = %2\nmode", "output probs = %2\nmode"),
       "m: mode train: the section must end with exactly one output"},
      {replaced(tiny, "init=\"zeros\"", "init=\"ones\""),
       "m: modes train and eval declare different parameters or states"},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    CHECK_THAT(error_of([&] { parse_model(text, "m"); }), Catch::Contains(expected));
  }
}

TEST_CASE("parse_model never crashes on mangled text", "[models][model_text]") {
  const std::string good = print_model(zoo::find("mlp2(8,8,0.1,0.2,bn)").build);
  std::mt19937 rng(99);
  const std::string alphabet = "%=(),{}[]:#\"\\ -.0123456789Nxe\n";
  int outcomes = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string text = good;
    const size_t at = rng() % text.size();
    if (rng() % 2)
      text[at] = alphabet[rng() % alphabet.size()];
    else
      text.insert(at, std::to_string(rng()));
    try {
      const ParsedModel parsed = parse_model(text);
      build_forward(parsed.build, 3, Mode::train, parsed.input_shape);
    } catch (const Error&) {
    }
    ++outcomes;
  }
  CHECK(outcomes == 300);
}

namespace {

/// A model text whose two parameters are listed weight first, or bias first (ids swapped), in
/// both modes: the same model.
std::string two_parameter_text(bool bias_first) {
  const std::string w = "parameter() {name=\"w\", shape=[4,3], init=\"zeros\", fan_in=0, fan_out=0} : [4,3]";
  const std::string b = "parameter() {name=\"b\", shape=[3], init=\"ones\", fan_in=0, fan_out=0} : [3]";
  const std::string section = fmt::format(
      "%0 = input() {{name=\"x\", shape=[N,4]}} : [N,4]\n"
      "%1 = {}\n"
      "%2 = {}\n"
      "%3 = matmul(%0, %{}) {{trans_a=0, trans_b=0}} : [N,3]\n"
      "%4 = add(%3, %{}) : [N,3]\n"
      "output logits = %4\n",
      bias_first ? b : w, bias_first ? w : b, bias_first ? 2 : 1, bias_first ? 1 : 2);
  return "dagger-model 1\ninput [4]\nmode train\n" + section + "mode eval\n" + section;
}

}  // namespace

TEST_CASE("model_difference sees one model in another order and names a real difference", "[models][model_text]") {
  const std::string a = two_parameter_text(false), b = two_parameter_text(true);
  REQUIRE(!first_difference(a, b, "A", "B").empty());
  CHECK(model_difference(a, b, "A", "B").empty());
  CHECK(model_difference(a, a, "A", "B").empty());
  // Both are models of their own, each printed in its own order.
  CHECK(print_model(parse_model(b).build, {4}) == b);

  // Another initializer for the bias in B's training section: A's bias has no equal in B.
  const std::string other_init = replaced(b, "init=\"ones\"", "init=\"zeros\"");
  CHECK(model_difference(a, other_init, "A", "B") ==
        "line 6 '%2 = parameter() {name=\"b\", shape=[3], init=\"ones\", fan_in=0, fan_out=0} : [3]' in A has no "
        "equal in B (its line 6 is '%2 = parameter() {name=\"w\", shape=[4,3], init=\"zeros\", fan_in=0, "
        "fan_out=0} : [4,3]')");
  // A node B has twice: each node needs an equal of its own.
  const std::string twice =
      replaced(b, "output logits = %4\nmode", "%5 = add(%3, %1) : [N,3]\noutput logits = %4\nmode");
  CHECK(model_difference(a, twice, "A", "B") ==
        "line 9 '%5 = add(%3, %1) : [N,3]' in B has no equal in A (its line 9 is 'output logits = %4')");
  // The same nodes but another one is the logits: the texts' first difference.
  const std::string other_output = replaced(b, "output logits = %4\nmode", "output logits = %3\nmode");
  CHECK(model_difference(a, other_output, "A", "B") == first_difference(a, other_output, "A", "B"));
  // A text that does not parse: the first difference too.
  CHECK(model_difference(a, "dagger-model 9\n", "A", "B") == first_difference(a, "dagger-model 9\n", "A", "B"));
  CHECK(model_difference(a, replaced(b, "input [4]", "input [4,1]"), "A", "B") ==
        "line 2 is 'input [4]' in A but 'input [4,1]' in B");
}
