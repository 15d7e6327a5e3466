#include "dagger/suite/progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace dagger::suite {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  const long s = std::lround(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void Workload::epoch(size_t f, bool stops, double flops, double secs) {
  done[f][stops] += flops;
  seconds[f] += secs;
  if (secs > 0) fastest = std::max(fastest, flops / secs);
}

void Workload::finish(size_t f, bool stops, double planned_flops, double done_flops, double reused_flops, int epochs,
                      int cap) {
  planned[f][stops] -= planned_flops - done_flops - reused_flops;
  reused[f][stops] += reused_flops;
  if (stops) {
    stop_epochs[f] += epochs;
    stop_caps[f] += cap;
  }
}

void Workload::trained_elsewhere(size_t f, bool stops, double flops, double secs) {
  if (secs <= 0) {  // no time recorded: done, but it cannot price anything
    reused[f][stops] += flops;
    return;
  }
  done[f][stops] += flops;
  seconds[f] += secs;
}

double Workload::rate(size_t f) const {
  const double d = done[f][0] + done[f][1];
  return d > 0 && seconds[f] > 0 ? d / seconds[f] : 0;
}

std::string Workload::eta() const {
  static constexpr const char* kNames[] = {"MLP", "CNN"};
  const double all_epochs = stop_epochs[0] + stop_epochs[1], all_caps = stop_caps[0] + stop_caps[1];
  double expected = 0, most = 0;
  std::vector<std::string> notes;
  for (size_t f = 0; f < 2; ++f) {
    const double fixed = std::max(0.0, planned[f][0] - done[f][0] - reused[f][0]);
    const double stopping = std::max(0.0, planned[f][1] - done[f][1] - reused[f][1]);
    if (fixed + stopping <= 0) continue;
    double r = rate(f);
    if (r <= 0) {
      r = fastest;
      if (r <= 0) return "?";
      notes.push_back(
          fmt::format("{} runs priced at the fastest {}'s {:.0f} GFLOP/s", kNames[f], kNames[1 - f], r / 1e9));
    }
    const double used = stop_caps[f] > 0 ? stop_epochs[f] / stop_caps[f] : all_caps > 0 ? all_epochs / all_caps : 1.0;
    expected += (fixed + stopping * used) / r;
    most += (fixed + stopping) / r;
  }
  const double share = static_cast<double>(std::max<size_t>(1, workers));
  expected /= share;
  most /= share;
  if (workers > 1) notes.push_back(fmt::format("shared by {} workers", workers));
  if (most > expected) notes.insert(notes.begin(), "at most " + format_duration(most));
  return format_duration(expected) + (notes.empty() ? "" : fmt::format(" ({})", fmt::join(notes, ", ")));
}

double Workload::fraction() const {
  double p = 0, d = 0;
  for (size_t f = 0; f < 2; ++f)
    for (size_t k = 0; k < 2; ++k) {
      p += planned[f][k];
      d += done[f][k] + reused[f][k];
    }
  return p > 0 ? d / p : 1.0;
}

}  // namespace dagger::suite
