// The training recipe through the trainer: scheduled rates in the history, reduce-on-plateau
// resumed exactly, and a resume that refuses other options.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <random>

#include "dagger/models/zoo.h"
#include "dagger/runtime/trainer.h"
#include "support.h"

using namespace dagger;

namespace {

TrainConfig plateau_config() {
  TrainConfig c;
  c.model_spec = "mlp1(32,relu,0)";
  c.batch = 16;
  c.progress = false;
  c.eval_batch = 20;
  c.optimizer.lr = 1e-2;
  c.schedule.kind = ScheduleConfig::Kind::plateau;
  c.schedule.factor = 0.5;
  c.schedule.plateau_patience = 1;
  c.augment = parse_augment("crop=2,flip,erase=0.5");
  c.label_smoothing = 0.1;
  c.epochs = 5;
  return c;
}

}  // namespace

TEST_CASE("reduce-on-plateau resumes with its rate and wait, to the same weights", "[trainer][recipe]") {
  Dataset train = testing::random_images(50, 11), val = testing::random_images(20, 12);
  TrainConfig c = plateau_config();
  Trainer straight(zoo::find(c.model_spec).build, c);
  TrainResult full = straight.fit(train, val);
  REQUIRE(full.history.size() == 5);
  CHECK(full.history[0].lr == 1e-2);
  CHECK(full.history.back().lr < 1e-2);  // the noise's validation loss stalled at least once

  testing::TempDir dir("recipe-resume");
  c.out_dir = dir.path.string();
  for (int stop : {2, 3, 5}) {  // interrupted twice, each time resuming from the last checkpoint
    c.epochs = stop;
    Trainer part(zoo::find(c.model_spec).build, c);
    TrainResult r = part.fit(train, val);
    if (stop != 5) continue;
    CHECK(r.resumed);
    REQUIRE(r.history.size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      INFO("epoch " << i + 1);
      CHECK(r.history[i].lr == full.history[i].lr);
      CHECK(r.history[i].val_loss == full.history[i].val_loss);
    }
    for (const auto& [name, tensor] : straight.state()) {
      INFO(name);
      CHECK(std::memcmp(tensor.data(), part.state().at(name).data(), tensor.size() * sizeof(float)) == 0);
    }
  }
  std::ifstream csv(dir.file("history.csv"));
  std::string header;
  std::getline(csv, header);
  CHECK(header.substr(header.rfind(',')) == ",lr");

  // Resuming with another recipe is refused, naming what differs.
  c.epochs = 6;
  c.label_smoothing = 0;
  Trainer other(zoo::find(c.model_spec).build, c);
  CHECK_THAT(testing::error_of([&] { other.fit(train, val); }), Catch::Contains("label_smoothing"));
}

TEST_CASE("continuing another run's epochs replays reduce-on-plateau", "[trainer][recipe]") {
  Dataset train = testing::random_images(50, 11), val = testing::random_images(20, 12);
  TrainConfig c = plateau_config();
  Trainer straight(zoo::find(c.model_spec).build, c);
  TrainResult full = straight.fit(train, val);

  testing::TempDir dir("recipe-continue");
  c.out_dir = dir.file("first");
  c.epochs = 4;  // the validation loss stalls at epoch 4: the replay must cut the rate for epoch 5
  Trainer first(zoo::find(c.model_spec).build, c);
  TrainResult head = first.fit(train, val);
  c.out_dir = dir.file("second");
  c.epochs = 5;
  Trainer second(zoo::find(c.model_spec).build, c);
  second.continue_from(dir.file("first/last"), dir.file("first/best"), head.history);
  TrainResult rest = second.fit(train, val);
  REQUIRE(rest.history.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    INFO("epoch " << i + 1);
    CHECK(rest.history[i].lr == full.history[i].lr);
  }
  CHECK(full.history[4].lr == 0.005);
  for (const auto& [name, tensor] : straight.state()) {
    INFO(name);
    CHECK(std::memcmp(tensor.data(), second.state().at(name).data(), tensor.size() * sizeof(float)) == 0);
  }
}
