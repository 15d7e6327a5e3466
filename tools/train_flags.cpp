#include "tools/train_flags.h"

#include <fmt/format.h>

#include <algorithm>

namespace dagger::cli {

void RecipeFlags::add(CLI::App& cmd) {
  ScheduleConfig& s = schedule_config;
  cmd.add_option("--schedule", schedule, "learning-rate schedule: constant | step | cosine | plateau")
      ->capture_default_str();
  using Kind = ScheduleConfig::Kind;
  // Each schedule's own flags, with the schedules that read them; their ranges, some of which
  // depend on --epochs, are checked by validate(ScheduleConfig).
  schedule_flags = {
      {cmd.add_option("--step-size", s.step_size, "step: epochs between decays")->capture_default_str(), {Kind::step}},
      {cmd.add_option("--gamma", s.gamma, "step: lr factor every --step-size epochs")->capture_default_str(),
       {Kind::step}},
      {cmd.add_option("--warmup", s.warmup, "cosine: epochs of linear warmup")->capture_default_str(), {Kind::cosine}},
      {cmd.add_option("--min-lr", s.min_lr, "cosine: lr of the last epoch; plateau: lowest lr")
           ->check(number_in({.low = 0}))
           ->capture_default_str(),
       {Kind::cosine, Kind::plateau}},
      {cmd.add_option("--factor", s.factor, "plateau: lr factor when the validation loss stalls")
           ->capture_default_str(),
       {Kind::plateau}},
      {cmd.add_option("--plateau-patience", s.plateau_patience, "plateau: stalled epochs before a reduction")
           ->capture_default_str(),
       {Kind::plateau}},
  };
  cmd.add_option("--augment", augment, "training-image transforms, e.g. crop=4,flip,erase=0.25 (none: off)")
      ->capture_default_str();
  cmd.add_option("--label-smoothing", label_smoothing, "label smoothing E in [0, 1)")
      ->check(number_in({.low = 0, .high = 1, .high_open = true}))
      ->capture_default_str();
}

void RecipeFlags::apply(TrainConfig& cfg) const {
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
  for (const auto& [option, readers] : schedule_flags)
    if (option->count() > 0 && std::find(readers.begin(), readers.end(), cfg.schedule.kind) == readers.end())
      throw UsageError(fmt::format("{} does not apply to --schedule {}", option->get_name(), schedule));
  as_usage([&] { validate(cfg.schedule, cfg.epochs); }, "");
  as_usage([&] { cfg.augment = parse_augment(augment); }, "");
  cfg.label_smoothing = label_smoothing;
}

}  // namespace dagger::cli
