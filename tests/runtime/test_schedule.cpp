// Learning-rate schedules: worked values of the pure per-epoch rule and of reduce-on-plateau's state.
#include <catch2/catch.hpp>
#include <vector>

#include "dagger/runtime/schedule.h"
#include "support.h"

using namespace dagger;

namespace {

std::vector<double> rates(const ScheduleConfig& cfg, int epochs, double base) {
  std::vector<double> out;
  ScheduleState state;
  for (int e = 1; e <= epochs; ++e) out.push_back(scheduled_lr(e, epochs, base, cfg, state));
  return out;
}

void check_rates(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("epoch " << i + 1);
    CHECK(got[i] == Approx(want[i]).epsilon(1e-12).margin(1e-15));
  }
}

}  // namespace

TEST_CASE("constant and step schedules", "[schedule]") {
  ScheduleConfig cfg;
  check_rates(rates(cfg, 3, 0.01), {0.01, 0.01, 0.01});
  cfg.kind = ScheduleConfig::Kind::step;
  cfg.step_size = 2;
  cfg.gamma = 0.5;
  check_rates(rates(cfg, 5, 0.1), {0.1, 0.1, 0.05, 0.05, 0.025});
}

TEST_CASE("cosine with linear warmup starts at the base rate and ends just above min_lr", "[schedule]") {
  ScheduleConfig cfg;
  cfg.kind = ScheduleConfig::Kind::cosine;
  cfg.warmup = 2;
  // warmup 1e-3 * 1/2, 1e-3; then (1 + cos(0)) / 2 = 1 and (1 + cos(pi/2)) / 2 = 0.5
  check_rates(rates(cfg, 4, 1e-3), {5e-4, 1e-3, 1e-3, 5e-4});
  cfg.warmup = 0;
  cfg.min_lr = 1e-4;
  // 1e-4 + 9e-4 (1 + cos(pi (e - 1) / 3)) / 2 for e = 1, 2, 3: cos = 1, 0.5, -0.5
  check_rates(rates(cfg, 3, 1e-3), {1e-3, 7.75e-4, 3.25e-4});
}

TEST_CASE("reduce-on-plateau cuts the rate after patience stalled epochs, down to min_lr", "[schedule]") {
  ScheduleConfig cfg;
  cfg.kind = ScheduleConfig::Kind::plateau;
  cfg.factor = 0.5;
  cfg.plateau_patience = 2;
  cfg.min_lr = 0.2;
  const std::vector<double> val = {1.0, 1.1, 1.2, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99};
  const std::vector<double> want = {1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2};
  ScheduleState state;
  std::vector<double> got;
  for (int e = 1; e <= static_cast<int>(val.size()); ++e) {
    got.push_back(scheduled_lr(e, 9, 1.0, cfg, state));
    update_schedule(state, val[static_cast<size_t>(e - 1)], 1.0, cfg);
  }
  check_rates(got, want);
  CHECK(state.best_val_loss == 0.9);
  CHECK(state.wait == 1);  // 0.99 stalled once after the last cut at 0.98
}

TEST_CASE("schedule names and settings are checked", "[schedule]") {
  CHECK(schedule_kind("cosine") == ScheduleConfig::Kind::cosine);
  CHECK(schedule_name(ScheduleConfig::Kind::plateau) == "plateau");
  CHECK_THAT(testing::error_of([] { schedule_kind("linear"); }), Catch::Contains("constant, step, cosine, plateau"));
  ScheduleConfig cfg;
  cfg.kind = ScheduleConfig::Kind::cosine;
  cfg.warmup = 4;
  CHECK_THAT(testing::error_of([&] { validate(cfg, 4); }), Catch::Contains("--warmup"));
  cfg.warmup = 3;
  CHECK_NOTHROW(validate(cfg, 4));
  cfg.kind = ScheduleConfig::Kind::step;
  cfg.step_size = 0;
  CHECK_THAT(testing::error_of([&] { validate(cfg, 4); }), Catch::Contains("--step-size"));
  cfg.kind = ScheduleConfig::Kind::plateau;
  cfg.factor = 1;
  CHECK_THAT(testing::error_of([&] { validate(cfg, 4); }), Catch::Contains("--factor"));
}
