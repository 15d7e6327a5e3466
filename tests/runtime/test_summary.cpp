// The per-layer summary: rows add up to the model's totals and carry each layer's worked values.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "dagger/graph/cost.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/summary.h"

using namespace dagger;

namespace {

const LayerSummary& row(const ModelSummary& s, const std::string& name) {
  for (const LayerSummary& r : s.layers)
    if (r.name == name) return r;
  FAIL("no layer " << name);
  throw;
}

}  // namespace

TEST_CASE("summary rows hold each layer's shape, parameters and FLOPs", "[summary]") {
  const ModelSummary s = summarize(zoo::find("cnn3").build, {1, 28, 28});
  // conv1: 32 filters of 1x3x3 + 32 biases; 2*9 FLOPs per output, plus the bias reshape-free add.
  CHECK(row(s, "conv1").parameters == 320);
  CHECK(row(s, "conv1").output == Shape{1, 32, 28, 28});
  CHECK(row(s, "conv1").flops == 2.0 * 9 * 32 * 28 * 28 + 32 * 28 * 28);
  CHECK(row(s, "conv1").ops == "conv2d+reshape+add");
  CHECK(row(s, "bn1").parameters == 64);
  CHECK(row(s, "bn1").state == 64);
  CHECK(row(s, "dense2").output == Shape{1, 10});
  CHECK(s.layers.front().name == "conv1");
  CHECK(s.layers.back().name == "head");
  // Unscoped ops are rows of their own, in order: conv1 bn1 relu maxpool2d conv2 ...
  CHECK(s.layers[2].name == "relu");
  CHECK(s.layers[3].name == "maxpool2d");
  CHECK(s.layers[3].output == Shape{1, 32, 14, 14});
}

TEST_CASE("summary totals equal the model's parameter count and graph cost", "[summary]") {
  for (const char* spec : {"shallow", "mlp2(64,32,0.1,0.2,bn)", "rescnn"}) {
    INFO(spec);
    const ModelFn model = zoo::find(spec).build;
    const ModelSummary s = summarize(model, {1, 28, 28});
    CHECK(s.parameters == zoo::parameter_count(model));
    CHECK(s.flops == graph_cost(build_forward(model, 1, Mode::eval, {1, 28, 28})).flops);
    const std::string text = format_summary(s);
    CHECK(text.find(fmt::format("total: {} trainable parameters", s.parameters)) != std::string::npos);
  }
}
