// The graph IR: shape rules, user errors that name the culprit, the printers and the
// Boost.Graph algorithms.
#include <catch2/catch.hpp>

#include "dagger/graph/algorithms.h"
#include "dagger/graph/dsl.h"
#include "dagger/graph/printer.h"

using namespace dagger;

namespace {

/// Runs `f`, expecting a dagger::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) {
      INFO("message: " << msg);
      CHECK(msg.find(p) != std::string::npos);
    }
    return;
  }
  FAIL("no dagger::Error was thrown");
}

}  // namespace

TEST_CASE("op table round-trips names", "[graph]") {
  for (Op op : all_ops()) CHECK(op_from_name(op_info(op).name) == op);
  CHECK_FALSE(op_from_name("no_such_op").has_value());
  CHECK(op_info(Op::matmul).category == OpCategory::Contraction);
  CHECK(op_info(Op::add).arity == 2);
}

TEST_CASE("shape inference follows each op's rule", "[graph]") {
  CHECK(broadcast_shapes({3, 1}, {4}) == Shape{3, 4});
  CHECK(broadcast_shapes({2, 1, 5}, {7, 1}) == Shape{2, 7, 5});
  CHECK(infer_shape(Op::matmul, {{3, 4}, {4, 5}}, {{"trans_a", int64_t(0)}, {"trans_b", int64_t(0)}}) == Shape{3, 5});
  CHECK(infer_shape(Op::matmul, {{4, 3}, {5, 4}}, {{"trans_a", int64_t(1)}, {"trans_b", int64_t(1)}}) == Shape{3, 5});
  CHECK(infer_shape(Op::conv2d, {{2, 3, 7, 5}, {4, 3, 3, 3}}, {{"stride", int64_t(2)}, {"pad", int64_t(1)}}) ==
        Shape{2, 4, 4, 3});
  CHECK(infer_shape(Op::maxpool2d, {{2, 3, 7, 5}}, {{"window", int64_t(2)}, {"stride", int64_t(2)}}) == Shape{2, 3, 3, 2});
  CHECK(infer_shape(Op::reduce_sum, {{2, 3, 4}}, {{"axes", std::vector<int64_t>{0, -1}}, {"keepdims", int64_t(1)}}) ==
        Shape{1, 3, 1});
  CHECK(infer_shape(Op::reshape, {{2, 3, 4}}, {{"shape", std::vector<int64_t>{2, -1}}}) == Shape{2, 12});
  CHECK(infer_shape(Op::softmax_xent, {{8, 10}, {8}}, {}).empty());
  CHECK(infer_shape(Op::channel_mean, {{8, 6, 5, 5}}, {}) == Shape{6});
}

TEST_CASE("numel counts elements and refuses a count that overflows 64 bits", "[graph][errors]") {
  CHECK(numel({}) == 1);
  CHECK(numel({2, 0, 5}) == 0);
  CHECK(numel({int64_t{1} << 31, int64_t{1} << 31}) == int64_t{1} << 62);
  // 2^32 * 2^32 wraps around to 0 in 64 bits.
  expect_error([] { numel({int64_t{1} << 32, int64_t{1} << 32}); }, {"[4294967296,4294967296]", "64-bit"});
}

TEST_CASE("a shape mismatch names the op, the shapes and the declaring line", "[graph][errors]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.input("x", {8, 784});
  Value w = m.parameter("w", {100, 10}, "zeros");
  const int line = __LINE__ + 1;
  expect_error([&] { matmul(x, w); }, {"matmul", "[8,784]", "[100,10]", "test_graph.cpp:" + std::to_string(line)});
  expect_error([&] { add(x, m.input("y", {8, 5})); }, {"add", "do not broadcast"});
  expect_error([&] { m.dense(m.input("img", {8, 1, 28, 28}), 10); }, {"dense", "flatten"});
  expect_error([&] { m.conv2d(m.input("flat", {8, 784}), 4, 3); }, {"conv2d", "NCHW"});
  expect_error([&] { reshape(x, {5, -1}); }, {"reshape", "[8,784]"});
  expect_error([&] { maxpool(m.input("tiny", {1, 1, 1, 1}), 2); }, {"maxpool2d", "window"});
  expect_error([&] { m.dropout(x, 1.5f); }, {"dropout", "1.5"});
}

TEST_CASE("a layer's nodes point at the model line and carry its scope", "[graph]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.input("x", {4, 6});
  const int line = __LINE__ + 1;
  Value y = m.dense(x, 3);
  CHECK(y.node().where.line() == static_cast<unsigned>(line));
  CHECK(y.node().scope == "dense1");
  CHECK(g.find_source("dense1.w").has_value());
  CHECK(g.shape(*g.find_source("dense1.w")) == Shape{6, 3});
  CHECK(g.node(*g.find_source("dense1.w")).attrs.s("init") == "glorot_uniform");
  m.dense(y, 2);
  CHECK(g.find_source("dense2.b").has_value());
}

TEST_CASE("batchnorm writes running statistics only in training mode", "[graph]") {
  for (Mode mode : {Mode::train, Mode::eval}) {
    Graph g;
    Model m(g, mode);
    Value y = m.batchnorm(m.input("x", {4, 3, 5, 5}));
    CHECK(y.shape() == Shape{4, 3, 5, 5});
    CHECK(g.nodes_of(Op::assign).size() == (mode == Mode::train ? 2u : 0u));
    CHECK(g.nodes_of(mode == Mode::train ? Op::batchnorm_train : Op::batchnorm_infer).size() == 1);
    verify(g);
  }
}

TEST_CASE("dropout is identity in eval mode and shares one key in training", "[graph]") {
  Graph train, eval;
  Model mt(train, Mode::train), me(eval, Mode::eval);
  Value a = mt.dropout(mt.dropout(mt.input("x", {2, 3}), 0.5f), 0.2f);
  CHECK(train.nodes_of(Op::dropout).size() == 2);
  CHECK(train.nodes_of(Op::input).size() == 2);  // x and the one dropout key
  CHECK(a.node().attrs.i("salt") == 2);
  Value x = me.input("x", {2, 3});
  CHECK(me.dropout(x, 0.5f).id == x.id);
}

TEST_CASE("text form is stable and complete", "[graph][printer]") {
  auto build = [] {
    Graph g;
    Model m(g, Mode::eval);
    g.set_output("y", relu(m.dense(m.input("x", {2, 3}), 4)).id);
    return g;
  };
  std::string text = print_text(build());
  CHECK(text == print_text(build()));
  CHECK(text.find("%0 = input() {name=\"x\", shape=[2,3]} : [2,3]") != std::string::npos);
  CHECK(text.find("matmul(%0, %1) {trans_a=0, trans_b=0} : [2,4]  # dense1 @ tests/graph/test_graph.cpp:") !=
        std::string::npos);
  CHECK(text.find("output y = %5") != std::string::npos);
  std::string dot = print_dot(build(), "t");
  CHECK(dot.rfind("digraph \"t\" {", 0) == 0);
  CHECK(dot.find("n3 -> n4;") != std::string::npos);
}

TEST_CASE("Boost.Graph algorithms: forward and backward reachability", "[graph][algorithms]") {
  Graph g;
  Model m(g, Mode::eval);
  Value x = m.input("x", {2, 2});
  Value a = exp(x);
  Value dead = log(x);
  Value b = add(a, x);
  neg(dead);
  g.set_output("b", b.id);

  std::vector<bool> from_a = reachable_from(g, {a.id});
  CHECK(from_a[static_cast<size_t>(b.id)]);
  CHECK_FALSE(from_a[static_cast<size_t>(dead.id)]);
  std::vector<bool> to_b = reaches(g, {b.id});
  CHECK(to_b[static_cast<size_t>(x.id)]);
  CHECK_FALSE(to_b[static_cast<size_t>(dead.id)]);
}

TEST_CASE("the verifier rejects a bad assign", "[graph][errors]") {
  Graph g;
  Model m(g, Mode::train);
  Value s = m.state("s", {3}, "zeros");
  g.add(Op::assign, {s.id}, {{"target", std::string("s")}});
  verify(g);
  g.add(Op::assign, {m.input("x", {4}).id}, {{"target", std::string("s")}});
  expect_error([&] { verify(g); }, {"assign", "'s'", "[3]"});
}
