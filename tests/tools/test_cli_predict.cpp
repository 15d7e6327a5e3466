// Inference from a checkpoint alone: Trainer::load and predict in the API, `dagger predict` on
// PNG, .npy and IDX inputs, and its errors. The model is trained here on a small synthetic
// task (the bright quadrant of a 1x12x12 image), so no data set needs to be installed.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "dagger/runtime/data.h"
#include "dagger/runtime/image.h"
#include "dagger/runtime/trainer.h"
#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::run_dagger;

namespace {

const std::vector<std::string> kNames = {"top-left", "top-right", "bottom-left", "bottom-right"};

Value quadrant_model(Model& m, Value x) {
  x = maxpool(relu(m.conv2d(x, 8, 3)), 2);
  return m.dense(flatten(x), m.classes());
}

/// A trained checkpoint in `dir`/checkpoint, the test images it is asked about, and the
/// trainer's own predictions for them.
struct Trained {
  std::string checkpoint;
  Tensor images, probs;
};

Trained train_quadrants(const dagger::testing::TempDir& dir) {
  testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(240, 1, 12, 4, 1));
  testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 12, 4, 2));
  SplitOptions o;
  o.dir = dir.path.string();
  const Splits data = load_data(o);
  TrainConfig c;
  c.epochs = 3;
  c.batch = 16;
  c.progress = false;
  c.input_shape = {1, 12, 12};
  c.classes = 4;
  c.class_names = kNames;
  Trainer trainer(quadrant_model, c);
  trainer.fit(data.train, data.val);
  Trained t{dir.file("checkpoint"), load_images(dir.file("test_x.npy")), {}};
  trainer.save_state(t.checkpoint);
  t.probs = trainer.predict(t.images);
  REQUIRE(trainer.evaluate(data.test).report.accuracy > 0.5);  // it learned: the comparisons below mean something
  return t;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Tensor image(const Tensor& batch, size_t i) {
  Tensor one = Tensor::from_shape({1, batch.shape(2), batch.shape(3)});
  std::copy_n(batch.begin() + i * one.size(), one.size(), one.begin());
  return one;
}

}  // namespace

TEST_CASE("a checkpoint loads alone and predicts as the trainer that wrote it", "[predict]") {
  dagger::testing::TempDir dir("predict-api");
  const Trained t = train_quadrants(dir);
  Trainer loaded = Trainer::load(t.checkpoint);
  CHECK(loaded.config().input_shape == Shape{1, 12, 12});
  CHECK(loaded.config().classes == 4);
  CHECK(loaded.config().class_names == kNames);
  const Tensor probs = loaded.predict(t.images);
  REQUIRE(probs.shape() == t.probs.shape());
  CHECK(std::equal(probs.begin(), probs.end(), t.probs.begin()));
  CHECK_THROWS_WITH(loaded.predict(Tensor::from_shape({2, 1, 10, 12})), Catch::Contains("[1,12,12], not [1,10,12]"));
}

TEST_CASE("dagger predict classifies PNG, .npy and IDX inputs with the checkpoint's model", "[predict][cli]") {
  dagger::testing::TempDir dir("predict-cli");
  const Trained t = train_quadrants(dir);
  for (size_t i = 0; i < 3; ++i) write_png(dir.file("img" + std::to_string(i) + ".png"), image(t.images, i));
  testing::write_idx_set(dir.path.string(), "more", testing::quadrant_set(16, 1, 12, 4, 2), true);
  const auto out = run_dagger("predict --json --top 2 --checkpoint " + t.checkpoint + " " + dir.file("img0.png") + " " +
                              dir.file("img1.png") + " " + dir.file("img2.png") + " " + dir.file("test_x.npy") + " " +
                              dir.file("more-images-idx.gz"));
  INFO(out.output);
  REQUIRE(out.status == 0);
  const nlohmann::json predictions = dagger::testing::last_json_line(out.output)["predictions"];
  REQUIRE(predictions.size() == 3 + 16 + 16);
  const std::vector<int> best = argmax_rows(t.probs);
  for (size_t row = 0; row < predictions.size(); ++row) {
    const size_t i = row < 3 ? row : (row - 3) % 16;  // the PNGs, then the .npy and IDX copies of the same images
    const nlohmann::json& top = predictions[row]["top"];
    REQUIRE(top.size() == 2);
    CHECK(top[0]["index"] == best[i]);
    CHECK(top[0]["class"] == kNames[best[i]]);
    CHECK(top[0]["probability"].get<double>() == Approx(t.probs(i, best[i])).margin(1e-6));
    CHECK(top[0]["probability"].get<double>() >= top[1]["probability"].get<double>());
  }
  CHECK(predictions[0]["input"] == dir.file("img0.png"));
  CHECK(predictions[3]["input"] == dir.file("test_x.npy") + "[0]");
  // The table names each input and its classes.
  const auto table = run_dagger("predict --checkpoint " + t.checkpoint + " " + dir.file("img0.png"));
  CHECK(table.status == 0);
  CHECK_THAT(table.output, Catch::Contains(dir.file("img0.png") + ":  " + kNames[best[0]]));
}

TEST_CASE("dagger predict names what is wrong with its inputs", "[predict][cli]") {
  dagger::testing::TempDir dir("predict-errors");
  const Trained t = train_quadrants(dir);
  write_png(dir.file("big.png"), Tensor::from_shape({1, 20, 16}));
  const std::string base = "predict --checkpoint " + t.checkpoint + " ";
  const auto wrong_size = run_dagger(base + dir.file("big.png"));
  CHECK(wrong_size.status == 1);
  CHECK_THAT(wrong_size.output, Catch::Contains("big.png' is 16x20 pixels but the model takes 12x12; pass --resize"));
  CHECK(run_dagger(base + "--resize " + dir.file("big.png")).status == 0);
  const auto missing = run_dagger(base + dir.file("nothing.png"));
  CHECK(missing.status == 2);
  CHECK_THAT(missing.output, Catch::Contains("nothing.png': no such file"));
  CHECK(run_dagger(base + "--top 0 " + dir.file("big.png")).status == 2);
  const auto not_a_checkpoint = run_dagger("predict --checkpoint " + dir.path.string() + " " + dir.file("big.png"));
  CHECK(not_a_checkpoint.status == 1);
  CHECK_THAT(not_a_checkpoint.output, Catch::Contains(dir.path.string()));
  // A manifest field of the wrong JSON type ends in one line and exit 1, not an abort.
  std::filesystem::copy(t.checkpoint, dir.file("bad"));
  {
    nlohmann::json manifest;
    std::ifstream(dir.file("bad/manifest.json")) >> manifest;
    manifest["meta"]["step"] = "abc";
    std::ofstream(dir.file("bad/manifest.json")) << manifest.dump();
  }
  const auto wrong_type = run_dagger("predict --checkpoint " + dir.file("bad") + " " + dir.file("big.png"));
  CHECK(wrong_type.status == 1);
  CHECK_THAT(wrong_type.output, Catch::StartsWith("error: ") && !Catch::Contains("terminate"));
  std::ofstream(dir.file("text.png")) << "not an image";
  const auto garbage = run_dagger(base + dir.file("text.png"));
  CHECK(garbage.status == 1);
  CHECK_THAT(garbage.output, Catch::Contains("text.png"));
  // A file named .npy that is not one is reported as a bad .npy file, not as a bad IDX file.
  std::ofstream(dir.file("text.npy")) << "not an array, and long enough for a header";
  const auto not_npy = run_dagger(base + dir.file("text.npy"));
  CHECK(not_npy.status == 1);
  CHECK_THAT(not_npy.output, Catch::Contains("text.npy") && Catch::Contains("\\x93NUMPY") && !Catch::Contains("IDX"));
}

TEST_CASE("dagger summary describes a checkpoint's model and a call for any input", "[summary][cli]") {
  dagger::testing::TempDir dir("summary-cli");
  const Trained t = train_quadrants(dir);
  const auto out = run_dagger("summary --checkpoint " + t.checkpoint);
  INFO(out.output);
  REQUIRE(out.status == 0);
  // conv 8x1x3x3 + 8, dense (8*6*6)x4 + 4
  CHECK_THAT(out.output, Catch::Contains(fmt::format("total: {} trainable parameters", 80 + 288 * 4 + 4)));
  const auto rgb = run_dagger("summary \"cnn(2,nobn,0)\" --input-shape 3,32,32 --classes 4");
  CHECK(rgb.status == 0);
  CHECK_THAT(rgb.output, Catch::Contains("[N,4]"));
  CHECK(run_dagger("summary").status == 2);
  CHECK(run_dagger("summary mlp512 --classes 0").status == 2);
}

TEST_CASE("dagger train and ir take a model text: a checkpoint's model trains to the same bits", "[cli][model_text]") {
  dagger::testing::TempDir dir("train-text");
  testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(200, 1, 12, 4, 1));
  testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 12, 4, 2));
  const std::string common = " --data " + dir.path.string() + " --epochs 2 --batch 32 --quiet --out ";
  REQUIRE(run_dagger("train \"cnn(1,bn,0.1,0,16)\"" + common + dir.file("zoo")).status == 0);
  // The same model, from the text its checkpoint carries, with no zoo name: a fresh run.
  const auto from_text = run_dagger("train " + dir.file("zoo/checkpoint") + common + dir.file("text"));
  INFO(from_text.output);
  REQUIRE(from_text.status == 0);
  size_t compared = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("zoo/checkpoint"))) {
    if (entry.path().extension() != ".npy") continue;
    const std::string name = entry.path().filename().string();
    INFO(name);
    CHECK(file_bytes(entry.path().string()) == file_bytes(dir.file("text/checkpoint/" + name)));
    ++compared;
  }
  CHECK(compared > 10);
  // Its compiler stages print from the text too, for the shape the text was made for.
  const auto fused = run_dagger("ir " + dir.file("zoo/checkpoint") + " --stage fused --batch 8");
  CHECK(fused.status == 0);
  CHECK_THAT(fused.output, Catch::Contains("kernels for"));
  const auto graph = run_dagger("ir " + dir.file("zoo/checkpoint/model.dagger") + " --stage graph --batch 8");
  CHECK_THAT(graph.output, Catch::Contains("shape=[8,1,12,12]"));
  // A text for other images is refused, naming both shapes.
  std::filesystem::create_directories(dir.file("rgb"));
  testing::write_npy_set(dir.file("rgb"), "train", testing::quadrant_set(40, 3, 12, 4, 1));
  testing::write_npy_set(dir.file("rgb"), "test", testing::quadrant_set(8, 3, 12, 4, 2));
  const auto wrong = run_dagger("train " + dir.file("zoo/checkpoint") + " --data " + dir.file("rgb") + " --quiet");
  CHECK(wrong.status == 1);
  CHECK_THAT(wrong.output, Catch::Contains("takes images of [1,12,12] but the data's are [3,12,12]"));
}
