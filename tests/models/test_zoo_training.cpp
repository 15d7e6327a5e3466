// Whole models of the zoo: gradients against finite differences, and training that is
// bitwise reproducible and resumable.
#include <catch2/catch.hpp>

#include "support.h"

#include <cstring>
#include <filesystem>
#include <random>

#include "dagger/models/zoo.h"
#include "dagger/graph/error.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/gradcheck.h"
#include "dagger/runtime/trainer.h"

using namespace dagger;

namespace {

void check_model_gradients(const std::string& name, int64_t side, int64_t samples) {
  GradcheckOptions opts;
  opts.max_elements = samples;
  std::vector<GradcheckResult> results = gradcheck_model(zoo::find(name).build, 2, opts, {1, side, side});
  REQUIRE(!results.empty());
  for (const GradcheckResult& r : results) {
    INFO(name << " " << r.name << " " << to_string(r.shape) << " rel " << r.max_rel_error << " abs " << r.max_abs_error);
    CHECK(r.checked > 0);
    CHECK(r.max_rel_error <= opts.tolerance);
  }
}

TrainConfig small_config(const std::string& model) {
  TrainConfig c;
  c.model_spec = model;
  c.epochs = 2;
  c.batch = 16;  // 50 images: three full batches and a partial one of 2
  c.progress = false;
  c.eval_batch = 20;
  return c;
}

}  // namespace

TEST_CASE("zoo gradients match finite differences: shallow, mlp512", "[zoo][gradcheck]") {
  check_model_gradients("shallow", 28, 16);
  check_model_gradients("mlp512", 28, 8);
}

TEST_CASE("zoo gradients match finite differences: cnn3", "[zoo][gradcheck][slow]") {
  check_model_gradients("cnn3", 12, 6);  // 12 -> 6 -> 3 -> 1 through the three pools
}

TEST_CASE("zoo gradients match finite differences: rescnn", "[zoo][gradcheck][slow]") {
  check_model_gradients("rescnn", 8, 4);  // 8 -> 4 -> 2 -> 1
}

TEST_CASE("training is bitwise deterministic for a seed", "[zoo][trainer]") {
  Dataset train = testing::random_images(50, 1), val = testing::random_images(20, 2);
  auto weights_after = [&](uint64_t seed) {
    TrainConfig c = small_config("mlp1(32,relu,0.5)");
    c.seed = seed;
    Trainer t(zoo::find(c.model_spec).build, c);
    t.fit(train, val);
    return t.state();
  };
  StateMap a = weights_after(7), b = weights_after(7), c = weights_after(8);
  REQUIRE(a.size() == b.size());
  for (const auto& [name, tensor] : a) {
    INFO(name);
    REQUIRE(b.count(name));
    CHECK(std::memcmp(tensor.data(), b.at(name).data(), tensor.size() * sizeof(float)) == 0);
  }
  CHECK_FALSE(bool(a.at("dense1.w") == c.at("dense1.w")));
}

TEST_CASE("an interrupted run resumes to the same weights", "[zoo][trainer][slow]") {
  Dataset train = testing::random_images(50, 3), val = testing::random_images(20, 4);
  const testing::TempDir temp("resume");
  const std::filesystem::path dir = temp.path;
  TrainConfig c = small_config("cnn(1,bn,0.5)");
  c.epochs = 3;
  Trainer straight(zoo::find(c.model_spec).build, c);
  TrainResult full = straight.fit(train, val);

  c.out_dir = dir.string();
  c.epochs = 2;  // "killed" after two epochs: the checkpoint of epoch 2 is on disk
  Trainer first(zoo::find(c.model_spec).build, c);
  first.fit(train, val);
  c.epochs = 3;
  Trainer second(zoo::find(c.model_spec).build, c);
  TrainResult resumed = second.fit(train, val);
  CHECK(resumed.resumed);
  REQUIRE(resumed.history.size() == 3);
  CHECK(resumed.history[2].val_loss == full.history[2].val_loss);
  for (const auto& [name, tensor] : straight.state()) {
    INFO(name);
    CHECK(std::memcmp(tensor.data(), second.state().at(name).data(), tensor.size() * sizeof(float)) == 0);
  }
  CHECK(std::filesystem::exists(dir / "history.csv"));
}

TEST_CASE("load_progress reads a run's last state with its history and best epoch", "[zoo][trainer]") {
  Dataset train = testing::random_images(50, 3), val = testing::random_images(20, 4);
  const testing::TempDir temp("progress");
  TrainConfig c = small_config("mlp1(32,relu,0)");
  c.out_dir = temp.path.string();
  Trainer first(zoo::find(c.model_spec).build, c);
  const TrainResult fit = first.fit(train, val);
  c.out_dir.clear();
  Trainer second(zoo::find(c.model_spec).build, c);
  const TrainResult progress = second.load_progress(temp.file("last"));
  REQUIRE(progress.history.size() == 2);
  CHECK(progress.history[1].val_loss == fit.history[1].val_loss);
  CHECK(progress.best_epoch == fit.best_epoch);
  CHECK(std::memcmp(second.state().at("dense1.w").data(), first.state().at("dense1.w").data(),
                    first.state().at("dense1.w").size() * sizeof(float)) == 0);
  // A record of the wrong type is one Error naming the folder, not a JSON exception.
  Checkpoint last = load_checkpoint(temp.file("last"));
  last.meta["history"] = nlohmann::json::array({"epoch one"});
  save_checkpoint(temp.file("edited"), last.tensors, last.meta, last.texts);
  const std::string message = testing::error_of([&] { second.load_progress(temp.file("edited")); });
  CHECK_THAT(message, Catch::Contains(temp.file("edited")) && Catch::Contains("malformed"));
}

TEST_CASE("early stopping restores the best epoch's weights", "[zoo][trainer]") {
  Dataset train = testing::random_images(50, 5), val = testing::random_images(20, 6);  // random labels: validation loss soon rises
  TrainConfig c = small_config("mlp1(64,relu,0)");
  c.epochs = 30;
  c.patience = 2;
  c.optimizer.lr = 1e-2;
  Trainer t(zoo::find(c.model_spec).build, c);
  TrainResult r = t.fit(train, val);
  CHECK(r.stopped_early);
  CHECK(static_cast<int>(r.history.size()) == r.best_epoch + 2);
  Evaluation ev = t.evaluate(val);
  CHECK(ev.report.loss == Approx(r.best_val_loss).epsilon(1e-9));
  // The probabilities an ensemble averages: rows sum to one and agree with the predictions.
  REQUIRE(ev.probs.shape() == std::vector<size_t>{20, 10});
  CHECK(argmax_rows(ev.probs) == ev.predictions);
  for (size_t i = 0; i < 20; ++i) {
    double sum = 0;
    for (size_t j = 0; j < 10; ++j) sum += ev.probs(i, j);
    CHECK(sum == Approx(1.0).epsilon(1e-5));
  }

  // Keeping the last epoch's weights: the same trajectory, scored at its end.
  c.restore_best = false;
  Trainer last(zoo::find(c.model_spec).build, c);
  TrainResult l = last.fit(train, val);
  REQUIRE(l.history.size() == r.history.size());
  CHECK(l.best_epoch == r.best_epoch);
  CHECK(l.history.back().val_loss > l.best_val_loss);
  CHECK(last.evaluate(val).report.loss == Approx(l.history.back().val_loss).epsilon(1e-9));
}

TEST_CASE("a rerun whose best/ was lost mid-swap restores it, and refuses when it is gone", "[zoo][trainer]") {
  // Random labels: the validation loss is lowest early, so the best epoch is not the last.
  const Dataset train = testing::random_images(50, 5), val = testing::random_images(20, 6);
  const testing::TempDir temp("lost-best");
  TrainConfig c = small_config("mlp1(16,relu,0)");
  c.epochs = 4;
  c.patience = 10;
  c.out_dir = temp.file("run");
  Trainer first(zoo::find(c.model_spec).build, c);
  const TrainResult done = first.fit(train, val);
  REQUIRE(done.best_epoch < 4);  // otherwise last/ holds the best weights and nothing is at stake
  const StateMap best = first.state();

  // Killed between the two renames that swap best/ in: only best.old is on disk.
  std::filesystem::rename(temp.file("run/best"), temp.file("run/best.old"));
  Trainer again(zoo::find(c.model_spec).build, c);
  again.fit(train, val);
  CHECK(std::filesystem::exists(temp.file("run/best/manifest.json")));
  for (const auto& [name, tensor] : best) {
    INFO(name);
    CHECK(std::memcmp(tensor.data(), again.state().at(name).data(), tensor.size() * sizeof(float)) == 0);
  }

  // Gone altogether: the run cannot end with its best weights, and says so.
  std::filesystem::remove_all(temp.file("run/best"));
  Trainer lost(zoo::find(c.model_spec).build, c);
  CHECK_THROWS_WITH(lost.fit(train, val), Catch::Contains("run/best' is missing: the weights of epoch"));
}
