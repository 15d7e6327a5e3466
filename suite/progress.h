#pragma once
/// The suite's progress line: how much of the planned training is done and how long the rest
/// should take, priced in training FLOPs (images times the training step's FLOPs per image) so
/// that one measured rate prices runs of any model.
#include <array>
#include <cstddef>
#include <string>

namespace dagger::suite {

/// The work of a suite, by family (0: dense models, 1: CNNs) and by whether the run stops early
/// (1) or trains a fixed number of epochs (0); early-stopping runs are planned at their epoch cap.
struct Workload {
  using Table = std::array<std::array<double, 2>, 2>;
  Table planned{}, done{};
  Table reused{};  ///< the work of runs an earlier invocation finished: done, but not timed here
  /// Seconds that `done` took, summed over the runs (one worker's time each, however many train
  /// at once), so done / seconds is one worker's rate.
  std::array<double, 2> seconds{};
  double fastest = 0;  ///< the best FLOP/s of any one epoch so far
  /// Per family: epochs trained and epoch caps of finished early-stopping runs.
  std::array<double, 2> stop_epochs{}, stop_caps{};
  /// Runs that train at once (--jobs, or MPI ranks): the rest is shared between them.
  size_t workers = 1;

  /// An epoch of `flops` trained here in `secs`.
  void epoch(size_t f, bool stops, double flops, double secs);
  /// A run ended after `done_flops` of its `planned_flops`, `reused_flops` of them by an earlier
  /// invocation: its unused work leaves the plan, and an early-stopping run tells how much of
  /// its cap such runs use.
  void finish(size_t f, bool stops, double planned_flops, double done_flops, double reused_flops, int epochs, int cap);
  /// A run another worker (an MPI rank) trained: `flops` in `secs` of that worker's time count as
  /// done and measured, like this process's own epochs (as reused when no time was recorded).
  /// Pass the same flops to finish() as done.
  void trained_elsewhere(size_t f, bool stops, double flops, double secs);

  /// FLOP/s of one worker measured on the family's epochs so far, or 0.
  double rate(size_t f) const;
  /// Time left, the rest shared by the workers at the measured rate of each family: expected
  /// (early-stopping runs using the share of their cap that the family's finished ones used, or
  /// all finished ones' while the family has none: shallow networks on SGD run to their cap far
  /// more often than CNNs do) and at most (every run to its cap). A family not timed yet is priced
  /// at the fastest epoch so far (small models run far below the machine's FLOP rate, so their
  /// average would overprice a CNN), and says so; "?" before any epoch has finished. Sharing
  /// assumes every worker stays busy, so near the end, when fewer runs than workers are left,
  /// it is optimistic.
  std::string eta() const;
  /// Done and reused work over the plan, in [0, 1].
  double fraction() const;
};

/// "1h05m", "3m07s", "42s"; "?" for a value that is not finite.
std::string format_duration(double seconds);

}  // namespace dagger::suite
