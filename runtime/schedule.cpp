#include "dagger/runtime/schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <numbers>
#include <utility>
#include <vector>

#include "dagger/graph/error.h"

namespace dagger {

namespace {

const std::vector<std::pair<std::string, ScheduleConfig::Kind>>& kind_names() {
  static const std::vector<std::pair<std::string, ScheduleConfig::Kind>> names = {
      {"constant", ScheduleConfig::Kind::constant},
      {"step", ScheduleConfig::Kind::step},
      {"cosine", ScheduleConfig::Kind::cosine},
      {"plateau", ScheduleConfig::Kind::plateau}};
  return names;
}

}  // namespace

ScheduleConfig::Kind schedule_kind(const std::string& name) {
  std::vector<std::string> valid;
  for (const auto& [n, k] : kind_names()) {
    if (n == name) return k;
    valid.push_back(n);
  }
  throw Error(fmt::format("unknown schedule '{}' (valid: {})", name, fmt::join(valid, ", ")));
}

std::string schedule_name(ScheduleConfig::Kind kind) {
  for (const auto& [n, k] : kind_names())
    if (k == kind) return n;
  return "?";
}

double scheduled_lr(int epoch, int epochs, double base_lr, const ScheduleConfig& cfg, const ScheduleState& state) {
  switch (cfg.kind) {
    case ScheduleConfig::Kind::constant:
      return base_lr;
    case ScheduleConfig::Kind::step:
      return base_lr * std::pow(cfg.gamma, (epoch - 1) / cfg.step_size);
    case ScheduleConfig::Kind::cosine: {
      if (epoch <= cfg.warmup) return base_lr * epoch / cfg.warmup;
      // The cosine's k-th epoch (k = 0 first) runs at progress k / (epochs - warmup), as PyTorch's
      // CosineAnnealingLR with T_max = epochs - warmup: it starts at base_lr and every epoch trains,
      // the last one just above min_lr.
      const double progress = static_cast<double>(epoch - cfg.warmup - 1) / static_cast<double>(epochs - cfg.warmup);
      return cfg.min_lr + (base_lr - cfg.min_lr) * (1 + std::cos(std::numbers::pi * progress)) / 2;
    }
    case ScheduleConfig::Kind::plateau:
      return std::isnan(state.lr) ? base_lr : state.lr;
  }
  return base_lr;
}

void update_schedule(ScheduleState& state, double val_loss, double base_lr, const ScheduleConfig& cfg) {
  if (cfg.kind != ScheduleConfig::Kind::plateau) return;
  if (std::isnan(state.lr)) state.lr = base_lr;
  if (val_loss < state.best_val_loss) {
    state.best_val_loss = val_loss;
    state.wait = 0;
    return;
  }
  if (++state.wait >= cfg.plateau_patience) {
    state.lr = std::max(state.lr * cfg.factor, cfg.min_lr);
    state.wait = 0;
  }
}

std::string describe(const ScheduleConfig& cfg) {
  switch (cfg.kind) {
    case ScheduleConfig::Kind::constant:
      return "constant";
    case ScheduleConfig::Kind::step:
      return fmt::format("step(step_size={}, gamma={})", cfg.step_size, cfg.gamma);
    case ScheduleConfig::Kind::cosine:
      return fmt::format("cosine(warmup={}, min_lr={})", cfg.warmup, cfg.min_lr);
    case ScheduleConfig::Kind::plateau:
      return fmt::format("plateau(factor={}, patience={}, min_lr={})", cfg.factor, cfg.plateau_patience, cfg.min_lr);
  }
  return "?";
}

void validate(const ScheduleConfig& cfg, int epochs) {
  auto fail = [](const std::string& what) { throw Error(what); };
  if (!(cfg.min_lr >= 0)) fail(fmt::format("--min-lr must be at least 0, got {}", cfg.min_lr));
  switch (cfg.kind) {
    case ScheduleConfig::Kind::constant:
      break;
    case ScheduleConfig::Kind::step:
      if (cfg.step_size < 1) fail(fmt::format("--step-size must be at least 1, got {}", cfg.step_size));
      if (!(cfg.gamma > 0 && cfg.gamma <= 1)) fail(fmt::format("--gamma must be in (0, 1], got {}", cfg.gamma));
      break;
    case ScheduleConfig::Kind::cosine:
      if (cfg.warmup < 0 || cfg.warmup >= epochs)
        fail(fmt::format("--warmup must be in [0, epochs) = [0, {}), got {}", epochs, cfg.warmup));
      break;
    case ScheduleConfig::Kind::plateau:
      if (!(cfg.factor > 0 && cfg.factor < 1)) fail(fmt::format("--factor must be in (0, 1), got {}", cfg.factor));
      if (cfg.plateau_patience < 1)
        fail(fmt::format("--plateau-patience must be at least 1, got {}", cfg.plateau_patience));
      break;
  }
}

}  // namespace dagger
