// The cost model: exact FLOPs and bytes for contractions, elementwise ops and fused kernels.
#include <catch2/catch.hpp>

#include "dagger/graph/cost.h"
#include "dagger/graph/dsl.h"

using namespace dagger;

namespace {

Attrs conv_attrs(int64_t stride, int64_t pad) { return {{"stride", stride}, {"pad", pad}}; }

}  // namespace

TEST_CASE("matmul costs 2*M*N*K FLOPs and reads both operands once", "[graph][cost]") {
  Graph g;
  Model m(g, Mode::train);
  Value a = m.input("a", {64, 784});
  Value b = m.input("b", {784, 512});
  Value c = matmul(a, b);
  Value bt = m.input("bt", {512, 784});
  Value ct = matmul(a, bt, false, true);
  const Cost cost = node_cost(g, c.id);
  CHECK(cost.flops == 2.0 * 64 * 512 * 784);
  CHECK(cost.bytes == 4.0 * (64 * 784 + 784 * 512 + 64 * 512));
  CHECK(node_flops(g, ct.id) == 2.0 * 64 * 512 * 784);
  Value at = m.input("at", {784, 64});
  CHECK(node_flops(g, matmul(at, b, true, false).id) == 2.0 * 64 * 512 * 784);
}

TEST_CASE("conv2d and its backward products cost 2*N*K*C*R*S*P*Q FLOPs", "[graph][cost]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.input("x", {8, 3, 10, 12});
  Value w = m.input("w", {16, 3, 3, 3});
  // pad 1, stride 2: P = (10 + 2 - 3) / 2 + 1 = 5, Q = (12 + 2 - 3) / 2 + 1 = 6
  const NodeId y = g.add(Op::conv2d, {x.id, w.id}, conv_attrs(2, 1));
  REQUIRE(g.shape(y) == Shape{8, 16, 5, 6});
  const double flops = 2.0 * 8 * 16 * 3 * 3 * 3 * 5 * 6;
  CHECK(node_flops(g, y) == flops);
  CHECK(node_cost(g, y).bytes == 4.0 * (8 * 3 * 10 * 12 + 16 * 3 * 3 * 3 + 8 * 16 * 5 * 6));

  Value dy = m.input("dy", {8, 16, 5, 6});
  Attrs data = conv_attrs(2, 1), filter = conv_attrs(2, 1);
  data.set("shape", std::vector<int64_t>{8, 3, 10, 12});
  filter.set("shape", std::vector<int64_t>{16, 3, 3, 3});
  CHECK(node_flops(g, g.add(Op::conv2d_backward_data, {dy.id, w.id}, data)) == flops);
  CHECK(node_flops(g, g.add(Op::conv2d_backward_filter, {x.id, dy.id}, filter)) == flops);
}

TEST_CASE("elementwise ops cost one FLOP per element, sources and assigns nothing", "[graph][cost]") {
  Graph g;
  Model m(g, Mode::train);
  Value x = m.input("x", {32, 100});
  Value bias = m.input("bias", {100});
  Value y = add(x, bias);
  const Cost cost = node_cost(g, y.id);
  CHECK(cost.flops == 3200);
  CHECK(cost.bytes == 4.0 * (3200 + 100 + 3200));
  CHECK(node_cost(g, mul(x, x).id).bytes == 4.0 * (3200 + 3200));  // one operand read once
  CHECK(node_cost(g, x.id).flops == 0);
  CHECK(node_cost(g, x.id).bytes == 0);
  CHECK(node_cost(g, reshape(x, {3200}).id).flops == 0);
}

TEST_CASE("a fused kernel reads its outside inputs and writes its root only", "[graph][cost]") {
  Graph g;
  Model m(g, Mode::train);
  Value a = m.input("a", {16, 64});
  Value b = m.input("b", {64, 32});
  Value bias = m.input("bias", {32});
  Value mm = matmul(a, b);
  Value biased = add(mm, bias);
  Value out = relu(biased);
  const Cost cost = kernel_cost(g, {mm.id, biased.id, out.id}, out.id);
  CHECK(cost.flops == 2.0 * 16 * 32 * 64 + 16 * 32 + 16 * 32);
  CHECK(cost.bytes == 4.0 * (16 * 64 + 64 * 32 + 32 + 16 * 32));
  CHECK(is_contraction(Op::conv2d_backward_filter));
  CHECK_FALSE(is_contraction(Op::batchnorm_train));
}
