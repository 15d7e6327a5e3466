// The suite's progress line: its share of the work done and its ETA.
#include <catch2/catch.hpp>

#include "dagger/suite/progress.h"

using dagger::suite::format_duration;
using dagger::suite::Workload;

namespace {

/// One fixed-length CNN family run of 4 units, one unit done in 1 s: 3 s left for one worker.
Workload one_cnn_run() {
  Workload w;
  w.planned[1][0] = 4e9;
  w.epoch(1, false, 1e9, 1.0);
  return w;
}

}  // namespace

TEST_CASE("the suite's ETA shares the rest between the workers") {
  Workload w = one_cnn_run();
  CHECK(w.eta() == "3s");
  w.workers = 3;
  CHECK(w.eta() == "1s (shared by 3 workers)");
}

TEST_CASE("a run another rank trained counts as done and prices the rest at its rate") {
  Workload w;
  w.planned[1][1] = 10e9;  // two early-stopping CNN runs of 5e9 each at their caps
  w.workers = 2;
  CHECK(w.eta() == "?");  // nothing timed yet
  // The other rank trained the first run to 4 of its 5 epochs in 8 s: 0.5 GFLOP/s per worker.
  w.trained_elsewhere(1, true, 4e9, 8.0);
  w.finish(1, true, 5e9, 4e9, 0, 4, 5);
  CHECK(w.rate(1) == 0.5e9);
  CHECK(w.fraction() == 4.0 / 9.0);
  // Left: the second run, 5e9 at its cap and 4e9 expected (4 of 5 epochs), over 2 workers.
  CHECK(w.eta() == "4s (at most 5s, shared by 2 workers)");
  // Without a recorded time the run is done but prices nothing.
  Workload u;
  u.planned[0][0] = 1e9;
  u.trained_elsewhere(0, false, 1e9, 0.0);
  u.finish(0, false, 1e9, 1e9, 0, 1, 1);
  CHECK(u.rate(0) == 0);
  CHECK(u.fraction() == 1.0);
}

TEST_CASE("durations print as the suite's progress lines show them") {
  CHECK(format_duration(42.4) == "42s");
  CHECK(format_duration(187) == "3m07s");
  CHECK(format_duration(3900) == "1h05m");
  CHECK(format_duration(1.0 / 0.0) == "?");
}
