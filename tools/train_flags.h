#pragma once
/// `dagger train`'s training-recipe flags: learning-rate schedule, augmentation, label
/// smoothing, and the checks of the rates, all failing as usage errors that name the flag.
#include "dagger/runtime/trainer.h"
#include "tools/cli.h"

namespace dagger::cli {

struct RecipeFlags {
  std::string schedule = "constant", augment = "none";
  ScheduleConfig schedule_config;
  double label_smoothing = 0;
  /// Each schedule-specific flag and the schedules that read it: given with another, it is an error.
  std::vector<std::pair<CLI::Option*, std::vector<ScheduleConfig::Kind>>> schedule_flags;

  /// Registers --schedule, --step-size, --gamma, --warmup, --min-lr, --factor,
  /// --plateau-patience, --augment and --label-smoothing.
  void add(CLI::App& cmd);
  /// Validates these flags against each other and --epochs of `cfg`, then stores the recipe in
  /// it; throws UsageError naming the first bad flag.
  void apply(TrainConfig& cfg) const;
};

}  // namespace dagger::cli
