// The trainer's callbacks: on_epoch sees every epoch, stop_when ends training where it says and
// a rerun into the same folder keeps that end.
#include <catch2/catch.hpp>

#include "dagger/runtime/trainer.h"
#include "data_files.h"
#include "support.h"

using namespace dagger;

TEST_CASE("stop_when ends training after the epoch it returns true for", "[trainer][callbacks]") {
  dagger::testing::TempDir dir("callbacks");
  testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(120, 1, 8, 4, 1));
  testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(8, 1, 8, 4, 2));
  SplitOptions o;
  o.dir = dir.path.string();
  const Splits data = load_data(o);
  TrainConfig c;
  c.epochs = 6;
  c.batch = 16;
  c.progress = false;
  c.input_shape = {1, 8, 8};
  c.classes = 4;
  c.out_dir = dir.file("run");
  std::vector<int> seen;
  c.on_epoch = [&](const EpochStats& s) { seen.push_back(s.epoch); };
  c.stop_when = [](const EpochStats& s) { return s.epoch == 2; };
  const ModelFn model = [](Model& m, Value x) { return m.dense(flatten(x), m.classes()); };
  const TrainResult first = Trainer(model, c).fit(data.train, data.val);
  CHECK(first.history.size() == 2);
  CHECK(first.stopped_early);
  CHECK(seen == std::vector<int>{1, 2});
  // A rerun resumes the finished run and trains nothing more.
  c.stop_when = nullptr;
  const TrainResult again = Trainer(model, c).fit(data.train, data.val);
  CHECK(again.resumed);
  CHECK(again.history.size() == 2);
  CHECK(seen == std::vector<int>{1, 2});
}
