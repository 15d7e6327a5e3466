// The model zoo: architectures as the study declares them, and the spec parser.
#include <catch2/catch.hpp>

#include "dagger/models/zoo.h"
#include "dagger/runtime/trainer.h"

using namespace dagger;

TEST_CASE("zoo models have the study's parameter counts", "[zoo]") {
  // shallow: 784*10 + 10
  CHECK(zoo::parameter_count(zoo::find("shallow").build) == 7850);
  // mlp512: 784*512 + 512 + 512*10 + 10
  CHECK(zoo::parameter_count(zoo::find("mlp512").build) == 407050);
  // mlp2048: 784*2048 + 2048 + 2048*512 + 512 + 512*10 + 10
  CHECK(zoo::parameter_count(zoo::find("mlp2048").build) == 2661898);
  // cnn3: convs 320 + 18496 + 73856, batchnorm gamma/beta 64 + 128 + 256,
  // head (128*3*3)*256 + 256 + 256*10 + 10 after three 2x2 pools (28 -> 14 -> 7 -> 3)
  CHECK(zoo::parameter_count(zoo::find("cnn3").build) == 390858);
  // The residual variant adds only the 1x1 projections: (1*32+32) + (32*64+64) + (64*128+128).
  CHECK(zoo::parameter_count(zoo::find("rescnn").build) -
            zoo::parameter_count(zoo::find("rescnn(plain)").build) ==
        64 + 2112 + 8320);
}

TEST_CASE("model specs parse by call syntax", "[zoo]") {
  CHECK(zoo::parameter_count(zoo::find("mlp1(512,relu,0.2)").build) == zoo::parameter_count(zoo::find("mlp512").build));
  CHECK(zoo::parameter_count(zoo::find("mlp2(2048, 512, 0.2, 0.4, nobn)").build) ==
        zoo::parameter_count(zoo::find("mlp2048").build));
  CHECK(zoo::parameter_count(zoo::find("cnn(3,bn,0.5,0.25,256)").build) ==
        zoo::parameter_count(zoo::find("cnn3").build));
  CHECK(zoo::parameter_count(zoo::find("cnn(1,nobn,0)").build) == 320 + 32 * 14 * 14 * 128 + 128 + 1290);
}

TEST_CASE("a model's canonical call spells it one way", "[zoo]") {
  // Names, omitted defaults and other spellings of numbers and flags give the same call.
  CHECK(zoo::canonical_call("rescnn") == "rescnn(residual,0.25,256)");
  CHECK(zoo::canonical_call("rescnn(residual)") == "rescnn(residual,0.25,256)");
  CHECK(zoo::canonical_call("rescnn(1, 0.250, 256)") == "rescnn(residual,0.25,256)");
  CHECK(zoo::canonical_call("cnn3") == "cnn(3,bn,0.5,0.25,256)");
  CHECK(zoo::canonical_call("cnn(3,bn,0.5)") == "cnn(3,bn,0.5,0,128)");
  CHECK(zoo::canonical_call("mlp512") == "mlp1(512,relu,0.2)");
  CHECK(zoo::canonical_call("mlp1(128, tanh, 0.0)") == "mlp1(128,tanh,0)");
  CHECK(zoo::canonical_call("mlp2(2048, 512, .2, 0.4, false)") == "mlp2(2048,512,0.2,0.4,nobn)");
  CHECK(zoo::canonical_call("shallow") == "shallow()");
  // Different models stay different.
  CHECK(zoo::canonical_call("cnn(3,bn,0.5)") != zoo::canonical_call("cnn(3,bn,0.5,0.25)"));
  CHECK(zoo::canonical_call("rescnn(plain)") != zoo::canonical_call("rescnn"));
  CHECK_THROWS_AS(zoo::canonical_call("mlp9000"), Error);
  // A named model is the model its call builds.
  for (const zoo::Entry& e : zoo::entries())
    CHECK(zoo::parameter_count(e.build) == zoo::parameter_count(zoo::find(zoo::canonical_call(e.name)).build));
}

TEST_CASE("a bad model spec is an error listing the valid ones", "[zoo][errors]") {
  auto message = [](const std::string& spec) {
    try {
      zoo::find(spec);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(message("mlp9000"), Catch::Contains("unknown model 'mlp9000'") && Catch::Contains("mlp512"));
  CHECK_THAT(message("mlp1(128,swish,0)"), Catch::Contains("unknown activation 'swish'") && Catch::Contains("selu"));
  CHECK_THAT(message("cnn(3,maybe,0.5)"), Catch::Contains("'bn' or 'nobn'"));
  CHECK_THAT(message("mlp1(128,relu)"), Catch::Contains("takes 3 to 3 arguments"));
  CHECK_THAT(message("mlp1(x,relu,0)"), Catch::Contains("'x' is not a number"));
}

TEST_CASE("the residual model sums its skip into the block output", "[zoo]") {
  Graph g = build_forward(zoo::find("rescnn").build, 2, Mode::eval);
  int residual_adds = 0;
  for (const Node& n : g.nodes())
    if (n.op == Op::add && g.node(n.operands[0]).op == Op::batchnorm_infer) ++residual_adds;
  CHECK(residual_adds == 3);
  verify(g);
}

TEST_CASE("resnet: pre-activation blocks over three stages, global average pooling", "[zoo]") {
  // resnet(2, 32): stem 1*32*9+32; stage 1, two blocks of 2 x (BN 64 + conv 9,248); stage 2, a
  // block from 32 channels (BN 64, 1x1 projection 2,112, convs 18,496 + 36,928, BN 128) and one
  // of 2 x (128 + 36,928); stage 3 alike at 64 -> 128 (128 + 8,320 + 73,856 + 256 + 147,584,
  // then 2 x (256 + 147,584)); final BN 256 and the classifier 128*10+10.
  CHECK(zoo::parameter_count(zoo::find("resnet(2,32)").build) ==
        320 + 2 * 18624 + (64 + 2112 + 18496 + 128 + 36928) + 2 * 37056 + (128 + 8320 + 73856 + 256 + 147584) +
            2 * 147840 + 256 + 1290);
  CHECK(zoo::canonical_call("resnet(2, 32)") == "resnet(2,32,0)");
  Graph g = build_forward(zoo::find("resnet(2,32)").build, 3, Mode::eval);
  int block_sums = 0, projections = 0;
  for (const Node& n : g.nodes()) {
    block_sums += n.op == Op::add && g.node(n.operands[0]).op == Op::add;  // (conv + bias) + skip
    projections += n.op == Op::conv2d && g.shape(n.operands[1])[2] == 1;
  }
  CHECK(block_sums == 6);
  CHECK(projections == 2);  // where the width doubles, not in the first stage
  REQUIRE(g.output("logits"));
  CHECK(g.shape(*g.output("logits")) == Shape{3, 10});
  verify(g);
  CHECK_THROWS_WITH(build_forward(zoo::find("resnet(1,8)").build, 1, Mode::eval, {1, 3, 3}),
                    Catch::Contains("resnet pools 2 times and needs images of at least 4x4"));
  CHECK_THROWS_WITH(zoo::find("resnet(0,32)"), Catch::Contains("blocks per stage '0' must be a whole number from 1"));
}

TEST_CASE("model calls with arguments out of range are refused, naming the argument", "[zoo]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"mlp1(-5,relu,0)", "units '-5' must be a whole number from 1 to 65536"},
      {"mlp1(0,relu,0)", "units '0'"},
      {"mlp1(12.5,relu,0)", "units '12.5'"},
      {"mlp1(3000000000,relu,0)", "units '3000000000'"},
      {"mlp1(512,relu,nan)", "dropout rate 'nan' must be a probability in [0, 1)"},
      {"mlp1(512,relu,1)", "dropout rate '1'"},
      {"mlp2(64,32,-0.1,0.2,bn)", "p1 '-0.1'"},
      {"cnn(-1,bn,0.5)", "blocks '-1' must be a whole number from 1 to 8"},
      {"cnn(3,bn,0.5,0.25,-3)", "h '-3'"},
      {"rescnn(residual,2)", "q '2'"},
      {"mlp2(60000,60000,0.1,0.1,bn)", "3648000010 parameters on 28x28 images, more than the 268435456"},
  };
  for (const auto& [spec, message] : cases) {
    INFO(spec);
    CHECK_THROWS_WITH(zoo::find(spec), Catch::Contains(message));
  }
  // The bounds themselves are allowed.
  CHECK_NOTHROW(zoo::find("mlp1(1,relu,0)"));
  CHECK_NOTHROW(zoo::find("cnn(8,nobn,0.99)"));  // too deep for 28x28, fine for larger images
}

TEST_CASE("a model too large for memory is refused before anything is allocated", "[zoo][trainer]") {
  // 784*40000 + 40000*40000 + 40000*10 weights: 1.6e9 parameters, three copies under Adam.
  const ModelFn huge = [](Model& m, Value x) { return m.dense(m.dense(m.dense(flatten(x), 40000), 40000), m.classes()); };
  CHECK_THROWS_WITH(Trainer(huge, TrainConfig{}), Catch::Contains("more than the 4 GiB a trainer allocates"));
}
