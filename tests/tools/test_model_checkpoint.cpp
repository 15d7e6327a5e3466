// Checkpoints carry their model: a model the `dagger` binary has never seen (declared here, not
// in the zoo) is trained through the Trainer API and scored by `dagger eval` from its checkpoint
// alone; a run refuses to resume another model's checkpoint; old checkpoints still work.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "dagger/autodiff/model_text.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/data.h"
#include "dagger/runtime/trainer.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::error_of;
using dagger::testing::last_json_line;
using dagger::testing::run_dagger;

namespace {

/// A small CNN of this test's own: valid padding, stride 2, leaky ReLU, batch norm, dropout.
Value my_cnn(Model& m, Value x) {
  x = leaky_relu(m.batchnorm(m.conv2d(x, 6, 5, Pad::valid, 2)), 0.1f);  // 28 -> 12
  x = m.dropout(maxpool(x, 2), 0.1f);                                   // 12 -> 6
  x = m.dropout(tanh(m.dense(flatten(x), 24)), 0.2f);
  return m.dense(x, 10);
}

Splits small_splits() {
  SplitOptions o;
  o.dir = default_data_dir();
  o.train_limit = 300;
  o.val_limit = 100;
  o.test_limit = 200;
  return load_fashion_mnist(o);
}

TrainConfig config(const std::string& out) {
  TrainConfig c;
  c.epochs = 1;
  c.batch = 32;
  c.progress = false;
  c.out_dir = out;
  return c;
}

}  // namespace

TEST_CASE("dagger eval scores a checkpoint of a model that is not in the zoo", "[cli][model_text]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("custom-model");
  const Splits data = small_splits();
  Trainer trainer(my_cnn, config(dir.file("run")));
  trainer.fit(data.train, data.val);
  trainer.save_state(dir.file("run/checkpoint"));
  const double accuracy = trainer.evaluate(data.test).report.accuracy;

  for (const char* folder : {"run/checkpoint", "run/last", "run/best"}) {
    INFO(folder);
    const std::string path = dir.file(folder);
    CHECK(std::filesystem::exists(path + "/" + kModelFile));
    CHECK(checkpoint_model_text(load_checkpoint(path)) == print_model(my_cnn));
  }
  const auto eval =
      run_dagger("eval --json --executor reference --test-limit 200 --checkpoint " + dir.file("run/checkpoint"));
  INFO(eval.output);
  REQUIRE(eval.status == 0);
  const nlohmann::json j = last_json_line(eval.output);
  CHECK(j["test"]["accuracy"].get<double>() == accuracy);
  CHECK(j["test"]["count"] == 200);
  CHECK(accuracy > 0.2);  // twice chance: it learned something, so the equality above is no coincidence

  // The checkpoint's text is what eval builds from: a broken text is named, not worked around.
  std::ofstream(dir.file("run/checkpoint/") + kModelFile) << "dagger-model 9\n";
  const auto broken = run_dagger("eval --test-limit 200 --checkpoint " + dir.file("run/checkpoint"));
  CHECK(broken.status == 1);
  CHECK_THAT(broken.output, Catch::Contains("model.dagger' is truncated or altered"));
}

TEST_CASE("resuming refuses a checkpoint of another model and names the difference", "[trainer][model_text]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("resume-model");
  const Splits data = small_splits();
  {
    Trainer first(my_cnn, config(dir.file("run")));
    first.fit(data.train, data.val);
  }
  // Same parameters and shapes, another dropout rate: only the model text tells them apart.
  const ModelFn other = [](Model& m, Value x) {
    x = leaky_relu(m.batchnorm(m.conv2d(x, 6, 5, Pad::valid, 2)), 0.1f);
    x = m.dropout(maxpool(x, 2), 0.1f);
    x = m.dropout(tanh(m.dense(flatten(x), 24)), 0.5f);
    return m.dense(x, 10);
  };
  TrainConfig c = config(dir.file("run"));
  c.epochs = 2;
  Trainer second(other, c);
  const std::string message = error_of([&] { second.fit(data.train, data.val); });
  CHECK_THAT(message, Catch::Contains("holds another model than this run's") && Catch::Contains("model.dagger") &&
                          Catch::Contains("p=0.20000000298023224") && Catch::Contains("p=0.5"));
  Trainer same(my_cnn, c);
  CHECK(same.fit(data.train, data.val).resumed);
}

namespace {

/// `text` with the nodes %A and %B of its training section swapped (lines and references): the
/// same model listed in another order, as a build that orders a layer's nodes otherwise prints it.
std::string swap_nodes(const std::string& text, int a, int b) {
  const size_t eval = text.find("mode eval");
  REQUIRE(eval != std::string::npos);
  std::string train = std::regex_replace(text.substr(0, eval), std::regex(fmt::format("%({}|{})\\b", a, b)), "%#$1");
  train = std::regex_replace(train, std::regex(fmt::format("%#{}\\b", a)), fmt::format("%{}", b));
  train = std::regex_replace(train, std::regex(fmt::format("%#{}\\b", b)), fmt::format("%{}", a));
  const std::string line_a = fmt::format("\n%{} = ", b), line_b = fmt::format("\n%{} = ", a);  // after renaming
  const size_t at_a = train.find(line_a), at_b = train.find(line_b);
  REQUIRE((at_a != std::string::npos && at_b != std::string::npos));
  const auto line_at = [&](size_t at) { return train.substr(at + 1, train.find('\n', at + 1) - at); };
  const std::string first = line_at(std::min(at_a, at_b)), second = line_at(std::max(at_a, at_b));
  train.replace(std::max(at_a, at_b) + 1, second.size(), first);
  train.replace(std::min(at_a, at_b) + 1, first.size(), second);
  return train + text.substr(eval);
}

}  // namespace

TEST_CASE("a checkpoint of the same model listed in another order resumes", "[trainer][model_text]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("resume-reordered");
  const Splits data = small_splits();
  {
    Trainer first(my_cnn, config(dir.file("run")));
    first.fit(data.train, data.val);
  }
  std::filesystem::copy(dir.file("run"), dir.file("copy"), std::filesystem::copy_options::recursive);
  const std::string text = print_model(my_cnn);
  // The batch norm's two statistics of the same input, in the other order.
  const std::smatch mean = [&] {
    std::smatch m;
    REQUIRE(std::regex_search(text, m, std::regex("%(\\d+) = channel_mean\\(")));
    return m;
  }();
  const int mean_id = std::stoi(mean[1]);
  REQUIRE(text.find(fmt::format("%{} = channel_var(", mean_id + 1)) != std::string::npos);
  const std::string reordered = swap_nodes(text, mean_id, mean_id + 1);
  REQUIRE(reordered.find(fmt::format("%{} = channel_var(", mean_id)) != std::string::npos);
  REQUIRE(!first_difference(text, reordered, "a", "b").empty());

  TrainConfig c = config(dir.file("run"));
  c.epochs = 2;
  Trainer reordered_model(parse_model(reordered).build, c);
  CHECK(reordered_model.fit(data.train, data.val).resumed);
  c.out_dir = dir.file("copy");
  Trainer same(my_cnn, c);
  CHECK(same.fit(data.train, data.val).resumed);
  const StateMap& a = reordered_model.state();
  const StateMap& b = same.state();
  REQUIRE(a.size() == b.size());
  for (const auto& [name, tensor] : b) {
    INFO(name);
    REQUIRE(a.count(name));
    REQUIRE(a.at(name).shape() == tensor.shape());
    CHECK(std::memcmp(a.at(name).data(), tensor.data(), tensor.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("a checkpoint without a model text is still evaluated through the zoo", "[cli][model_text]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("old-checkpoint");
  const auto train = run_dagger(
      "train shallow --epochs 1 --quiet --json --executor reference --train-limit 300 "
      "--val-limit 100 --test-limit 200 --out " +
      dir.file("run"));
  INFO(train.output);
  REQUIRE(train.status == 0);
  const double trained = last_json_line(train.output)["test"]["accuracy"].get<double>();
  // Make it look like a checkpoint from before model texts: no file, no manifest entries.
  const std::string folder = dir.file("run/checkpoint");
  nlohmann::json manifest = nlohmann::json::parse(std::ifstream(folder + "/manifest.json"));
  manifest.erase("texts");
  manifest["meta"].erase("model_text");
  std::ofstream(folder + "/manifest.json") << manifest.dump(2);
  std::filesystem::remove(folder + "/" + kModelFile);
  REQUIRE(checkpoint_model_text(load_checkpoint(folder)).empty());
  const auto eval = run_dagger("eval --json --executor reference --test-limit 200 --checkpoint " + folder);
  INFO(eval.output);
  REQUIRE(eval.status == 0);
  CHECK(last_json_line(eval.output)["test"]["accuracy"].get<double>() == trained);
  CHECK(last_json_line(eval.output)["model"] == "shallow");
}

TEST_CASE("a checkpoint whose metadata is not an object is refused by name", "[runtime][checkpoint]") {
  Checkpoint ck;
  ck.dir = "run/last";
  ck.meta = 5;  // what a manifest edited to "meta": 5 loads as
  CHECK_THAT(error_of([&] { checkpoint_model_text(ck); }), Catch::Contains("checkpoint 'run/last'") &&
                                                                 Catch::Contains("metadata is malformed"));
}

TEST_CASE("checkpoint texts are saved, listed and checked", "[runtime][checkpoint]") {
  dagger::testing::TempDir dir("texts");
  const std::string ck = dir.file("ck");
  Tensor t = Tensor::from_shape({2});
  save_checkpoint(ck, {{"w", t}},
                  {{"model_text", {{"file", "model.dagger"}, {"format", "dagger-model"}, {"version", 1}}}},
                  {{"model.dagger", "hello\n"}});
  Checkpoint loaded = load_checkpoint(ck);
  CHECK(loaded.texts.at("model.dagger") == "hello\n");
  CHECK(checkpoint_model_text(loaded) == "hello\n");
  loaded.meta["model_text"]["version"] = 2;
  CHECK_THAT(
      error_of([&] { checkpoint_model_text(loaded); }),
      Catch::Contains("stores its model as \"dagger-model\" version 2; this build reads dagger-model version 1"));
  CHECK_THAT(error_of([&] {
               save_checkpoint(ck, {}, {}, {{"../escape", "x"}});
             }),
             Catch::Contains("gives a text the file name '../escape', which is not a plain file name"));
  std::ofstream(ck + "/model.dagger") << "hello, longer\n";
  CHECK_THAT(error_of([&] { load_checkpoint(ck); }), Catch::Contains("model.dagger' is truncated or altered"));
}

TEST_CASE("dagger ir --stage model prints the text checkpoints carry", "[cli][model_text]") {
  const auto out = run_dagger("ir \"cnn(1,bn,0.5)\" --stage model");
  INFO(out.output);
  REQUIRE(out.status == 0);
  CHECK(out.output == print_model(zoo::find("cnn(1,bn,0.5)").build));
  CHECK(out.output.starts_with("dagger-model 1\ninput [1,28,28]\nmode train\n"));
}
