#include "tools/train_flags.h"

#include <fmt/format.h>

#include <cmath>

namespace dagger::cli {

void RecipeFlags::add(CLI::App& cmd) {
  ScheduleConfig& s = schedule_config;
  cmd.add_option("--schedule", schedule, "learning-rate schedule: constant | step | cosine | plateau")
      ->capture_default_str();
  cmd.add_option("--step-size", s.step_size, "step: epochs between decays")->capture_default_str();
  cmd.add_option("--gamma", s.gamma, "step: lr factor every --step-size epochs")->capture_default_str();
  cmd.add_option("--warmup", s.warmup, "cosine: epochs of linear warmup")->capture_default_str();
  cmd.add_option("--min-lr", s.min_lr, "cosine: lr of the last epoch; plateau: lowest lr")->capture_default_str();
  cmd.add_option("--factor", s.factor, "plateau: lr factor when the validation loss stalls")->capture_default_str();
  cmd.add_option("--plateau-patience", s.plateau_patience, "plateau: stalled epochs before a reduction")
      ->capture_default_str();
  cmd.add_option("--augment", augment, "training-image transforms, e.g. crop=4,flip,erase=0.25 (none: off)")
      ->capture_default_str();
  cmd.add_option("--label-smoothing", label_smoothing, "label smoothing E in [0, 1)")->capture_default_str();
}

void RecipeFlags::apply(TrainConfig& cfg) const {
  const OptimizerConfig& o = cfg.optimizer;
  if (!(o.lr > 0 && std::isfinite(o.lr))) throw UsageError(fmt::format("--lr must be positive, got {}", o.lr));
  if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay)))
    throw UsageError(fmt::format("--weight-decay must be at least 0, got {}", o.weight_decay));
  if (!(label_smoothing >= 0 && label_smoothing < 1))
    throw UsageError(fmt::format("--label-smoothing must be in [0, 1), got {}", label_smoothing));
  if (cfg.epochs < 1) throw UsageError(fmt::format("--epochs must be at least 1, got {}", cfg.epochs));
  // The library's messages name the flag ("--warmup must be ...", "--augment: ..."), except the kind's.
  auto as_usage = [](auto&& step, const char* prefix) {
    try {
      step();
    } catch (const Error& e) {
      throw UsageError(fmt::format("{}{}", prefix, e.what()));
    }
  };
  cfg.schedule = schedule_config;
  as_usage([&] { cfg.schedule.kind = schedule_kind(schedule); }, "--schedule: ");
  as_usage([&] { validate(cfg.schedule, cfg.epochs); }, "");
  as_usage([&] { cfg.augment = parse_augment(augment); }, "");
  cfg.label_smoothing = label_smoothing;
}

}  // namespace dagger::cli
