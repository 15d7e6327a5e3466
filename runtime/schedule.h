#pragma once
/// Learning-rate schedules, decided once per epoch: the rate an epoch trains with is a pure
/// function of the epoch, the schedule's settings and (for reduce-on-plateau) its state, which
/// the trainer keeps in the progress checkpoint so a resumed run continues it exactly.
#include <cmath>
#include <string>

namespace dagger {

/// Which rule maps an epoch to its learning rate, and that rule's settings.
struct ScheduleConfig {
  enum class Kind { constant, step, cosine, plateau };
  Kind kind = Kind::constant;
  int step_size = 1;         ///< step: epochs between decays
  double gamma = 0.1;        ///< step: factor applied every step_size epochs
  int warmup = 0;            ///< cosine: epochs of linear warmup before the half cosine
  double min_lr = 0;         ///< cosine: the rate the half cosine falls to; plateau: the floor
  double factor = 0.1;       ///< plateau: factor applied when the validation loss stalls
  int plateau_patience = 2;  ///< plateau: epochs without improvement before a reduction
};

/// What a schedule remembers between epochs (only reduce-on-plateau remembers anything).
struct ScheduleState {
  double lr = NAN;  ///< plateau: the current rate (NaN: not started, the base rate)
  double best_val_loss = INFINITY;
  int wait = 0;  ///< epochs since the best validation loss
};

/// "constant" | "step" | "cosine" | "plateau"; throws dagger::Error listing them otherwise.
ScheduleConfig::Kind schedule_kind(const std::string& name);
std::string schedule_name(ScheduleConfig::Kind kind);

/// The learning rate of 1-based `epoch` out of `epochs`, from the base rate `base_lr`:
///   constant  base_lr
///   step      base_lr * gamma^floor((epoch - 1) / step_size)
///   cosine    epoch <= warmup: base_lr * epoch / warmup;
///             after: min_lr + (base_lr - min_lr) * (1 + cos(pi * (epoch - warmup - 1) / (epochs - warmup))) / 2,
///             so the first cosine epoch trains at base_lr and the last just above min_lr
///   plateau   state.lr (base_lr before the first reduction)
double scheduled_lr(int epoch, int epochs, double base_lr, const ScheduleConfig& cfg, const ScheduleState& state);

/// Reduce-on-plateau's bookkeeping after an epoch's validation loss: a loss below the best so
/// far resets the wait; otherwise after plateau_patience stalled epochs the rate becomes
/// max(lr * factor, min_lr) and the wait restarts. Other schedules ignore it.
void update_schedule(ScheduleState& state, double val_loss, double base_lr, const ScheduleConfig& cfg);

/// A one-line description with the settings that matter for the kind, e.g. "cosine(warmup=2, min_lr=0)".
std::string describe(const ScheduleConfig& cfg);

/// Throws dagger::Error naming the first setting out of range (epochs: the run's epoch cap).
void validate(const ScheduleConfig& cfg, int epochs);

}  // namespace dagger
