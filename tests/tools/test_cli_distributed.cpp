// `mpirun -np 2 dagger train --distributed`: data-parallel training equals one process up to the
// summation order of the gradients, and is bitwise the same on every rank and from run to run.
// Registered only when the build has MPI (tests/CMakeLists.txt reports them skipped otherwise).
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/data.h"
#include "suite/suite_support.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::Outcome;
using dagger::testing::run_command;
using dagger::testing::run_dagger;

namespace {

/// Runs `dagger args` under mpirun with `ranks` processes (as root too, more ranks than cores
/// allowed, without mpirun's own banners). With `limit` seconds, a job still running then is
/// ended (SIGTERM, SIGKILL 10 s later) and the status is 124 or 137: a hang fails the test.
Outcome run_mpi(int ranks, const std::string& args, int limit = 0) {
  return run_command(fmt::format("{}{} -q --allow-run-as-root --oversubscribe -np {} {} {}",
                                 limit > 0 ? fmt::format("timeout -k 10 {} ", limit) : "", DAGGER_MPIRUN, ranks,
                                 DAGGER_BINARY, args));
}

/// The largest difference between two checkpoints' tensors, each relative to the largest
/// magnitude in `expected`'s tensor (an Adam second moment is ~1e-10 where a weight is ~0.1).
double max_relative_difference(const std::string& actual_dir, const std::string& expected_dir) {
  const Checkpoint actual = load_checkpoint(actual_dir), expected = load_checkpoint(expected_dir);
  REQUIRE(actual.tensors.size() == expected.tensors.size());
  double worst = 0;
  for (const auto& [name, want] : expected.tensors) {
    const Tensor& got = actual.tensors.at(name);
    REQUIRE(got.shape() == want.shape());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      diff = std::max(diff, std::abs(double(got.data()[i]) - double(want.data()[i])));
      scale = std::max(scale, std::abs(double(want.data()[i])));
    }
    const double relative = scale > 0 ? diff / scale : diff;
    UNSCOPED_INFO(fmt::format("{}: max abs difference {:.3g}, relative {:.3g}", name, diff, relative));
    worst = std::max(worst, relative);
  }
  return worst;
}

/// Whether two checkpoints hold the same tensors, bit for bit.
bool same_bits(const std::string& a_dir, const std::string& b_dir) {
  const Checkpoint a = load_checkpoint(a_dir), b = load_checkpoint(b_dir);
  if (a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, t] : a.tensors) {
    const auto it = b.tensors.find(name);
    if (it == b.tensors.end() || it->second.shape() != t.shape() ||
        std::memcmp(it->second.data(), t.data(), t.size() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

/// A few steps on a slice of Fashion-MNIST: 8 batches of 32 per epoch (the last one partial
/// when `train_limit` is below 256).
std::string slice(int epochs = 1, int batch = 32, int train_limit = 256) {
  return fmt::format(" --epochs {} --batch {} --train-limit {} --val-limit 128 --test-limit 128 --quiet", epochs, batch,
                     train_limit);
}

}  // namespace

// Models with dropout and without batch norm, whose shards compute what one process computes:
// each rank draws its part of the batch's dropout masks. 250 examples make the last batch 26,
// split 13 + 13, so a rank's shard also starts mid-batch at another offset than in the others.
// Measured on an Intel Xeon (AVX-512) after the 8 steps: at most 2.5e-6 (mlp512) and 5.7e-5
// (the cnn's dense1.w; without dropout it was 8.3e-6 on a znver4, the gap not analysed). Without
// the offsets (the second rank drawing the first rank's masks): 1.1 and 1.3. The convolutions are
// direct: Adam's first steps move each weight by +-lr whatever its gradient's size, so a gradient
// within rounding of zero whose sign the order of the sum decides moves a weight by 2 lr. With
// Winograd filter gradients (rounding about twice direct's) that happened on an AMD Zen 5:
// conv3.w differed by 2.4e-3 of its largest weight after one step under winograd4 and by 1.0e-3
// after the 8 under auto (direct: 1.1e-5 and 1.0e-4), which says nothing about the shards.
TEST_CASE("two ranks train mlp and cnn with dropout as one process does, to the rounding of the gradient sum",
          "[mpi][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("distributed");
  for (const std::string model : {"mlp512", "cnn(3,nobn,0.5,0.25,256)"}) {
    INFO(model);
    const std::string args = "train \"" + model + "\"" + slice(1, 32, 250) + " --conv-algo direct";
    const Outcome one = run_dagger(args + " --out " + dir.file("one"));
    REQUIRE(one.status == 0);
    const Outcome two =
        run_mpi(2, args + " --distributed --out " + dir.file("two") + " --rank-states " + dir.file("ranks"));
    INFO(two.output);
    REQUIRE(two.status == 0);
    CHECK(same_bits(dir.file("ranks/rank-0"), dir.file("ranks/rank-1")));
    CHECK(same_bits(dir.file("ranks/rank-0"), dir.file("two/checkpoint")));
    CHECK(max_relative_difference(dir.file("two/checkpoint"), dir.file("one/checkpoint")) < 5e-4);
    std::filesystem::remove_all(dir.path);
    std::filesystem::create_directories(dir.path);
  }
}

TEST_CASE("two ranks train mlp512 and cnn3 bitwise alike on both ranks and from run to run", "[mpi][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("distributed-repeat");
  for (const std::string model : {"mlp512", "cnn3"}) {
    INFO(model);
    for (const std::string run : {"a", "b"}) {
      const Outcome out = run_mpi(2, "train " + model + slice() + " --distributed --rank-states " + dir.file(run));
      INFO(out.output);
      REQUIRE(out.status == 0);
    }
    CHECK(same_bits(dir.file("a/rank-0"), dir.file("a/rank-1")));
    CHECK(same_bits(dir.file("a/rank-0"), dir.file("b/rank-0")));
    CHECK(same_bits(dir.file("a/rank-1"), dir.file("b/rank-1")));
    std::filesystem::remove_all(dir.path);
    std::filesystem::create_directories(dir.path);
  }
}

TEST_CASE("one process with --distributed trains bitwise as one without it", "[mpi][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("distributed-one");
  const std::string args = "train mlp512" + slice();
  REQUIRE(run_dagger(args + " --out " + dir.file("plain")).status == 0);
  REQUIRE(run_dagger(args + " --distributed --out " + dir.file("split")).status == 0);
  CHECK(same_bits(dir.file("plain/checkpoint"), dir.file("split/checkpoint")));
}

TEST_CASE("a data-parallel run resumes with its rank count only, and --batch must divide among the ranks",
          "[mpi][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("distributed-resume");
  const std::string out = " --out " + dir.file("run");
  const Outcome indivisible = run_mpi(2, "train mlp512" + slice(1, 33) + " --distributed" + out);
  CHECK(indivisible.status == 2);
  CHECK_THAT(indivisible.output, Catch::Contains("--batch 33 does not divide among the 2 ranks"));
  REQUIRE(run_mpi(2, "train mlp512" + slice() + " --distributed" + out).status == 0);
  const Outcome alone = run_dagger("train mlp512" + slice(2) + "" + out);
  CHECK(alone.status == 1);
  CHECK_THAT(alone.output, Catch::Contains("it was trained with ranks = 2, this run asks for \"none (one process)\""));
  const Outcome more = run_mpi(2, "train mlp512" + slice(2) + " --distributed --json" + out);
  INFO(more.output);
  REQUIRE(more.status == 0);
  CHECK(dagger::testing::last_json_line(more.output)["resumed"] == true);
  CHECK(dagger::testing::last_json_line(more.output)["epochs_run"] == 2);
}

TEST_CASE("mpirun -np 2 and -np 3 dagger suite --distributed give one process's results.json", "[mpi][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("distributed-suite");
  // References (E04 on E03), members (E05) and a run carrying on after another's epochs (E06).
  const std::string suite = "suite --only E05,E06 --no-plots --threads 1 --out ";
  REQUIRE(run_dagger(suite + dir.file("one") + " --quiet").status == 0);
  for (const int ranks : {2, 3}) {
    INFO(ranks << " ranks");
    const std::string out = dir.file(fmt::format("np{}", ranks));
    const Outcome many = run_mpi(ranks, suite + out + " --distributed", 600);
    INFO(many.output);
    REQUIRE(many.status == 0);
    CHECK(dagger::testing::results_without_clock(out + "/results.json") ==
          dagger::testing::results_without_clock(dir.file("one/results.json")));
    // The other ranks trained runs, which rank 0 reports as trained, not reused.
    const nlohmann::json results = nlohmann::json::parse(dagger::testing::read(out + "/results.json"));
    for (const auto& [key, run] : results.at("runs").items()) CHECK(run.at("reused") == false);
    for (int rank = 1; rank < ranks; ++rank)
      CHECK_THAT(many.output, Catch::Contains(fmt::format("rank {}: [E0", rank)) &&
                                  Catch::Contains(fmt::format(": trained by rank {}", rank)));
  }
}

// The first two runs of a suite start together, E03's first on rank 0 (which fills its own slot
// first) and its second on rank 1. A file where a run's folder goes makes that run fail on its
// rank, with no hook in dagger. Whichever rank fails, the job must end on its own (run_mpi's
// limit turns a hang into a failure) with exit 1 and one error line naming the run, write no
// report, keep the run the other rank finished meanwhile, and resume to the uninterrupted results.
TEST_CASE("a run failing on rank 0 or rank 1 ends mpirun dagger suite with one line naming it, and it resumes",
          "[mpi][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("distributed-suite-failure");
  const std::string suite = "suite --only E03 --no-plots --threads 1 --out ";
  REQUIRE(run_dagger(suite + dir.file("one") + " --quiet").status == 0);
  const nlohmann::json one = nlohmann::json::parse(dagger::testing::read(dir.file("one/results.json")));
  const std::vector<std::string> keys = one.at("experiments").at(0).at("runs");
  REQUIRE(keys.size() == 5);
  for (const int failing : {0, 1}) {
    INFO("the run of rank " << failing << " fails");
    const std::string out = dir.file(fmt::format("fails-on-rank-{}", failing));
    const std::string blocked = out + "/runs/" + keys[failing];
    std::filesystem::create_directories(out + "/runs");
    std::ofstream(blocked) << "not a run folder\n";
    const Outcome failed = run_mpi(2, suite + out + " --distributed", 300);
    INFO(failed.output);
    CHECK(failed.status == 1);
    // Said at once, while the other rank's run goes on. Under load rank 1 can reach its first
    // run only after rank 0 has trained every other one (a CI run saw runs 1, 3, 4 and 5 done
    // before run 2 failed); then nothing is under way, and the suite says nothing until it
    // stops (suite.cpp), so every other run must have finished instead.
    const std::string said = fmt::format(
        "[E03 {}/5] shallow failed; nothing new starts, and the suite stops when the 1 run under way ends",
        failing + 1);
    bool others_finished = true;
    for (int k = 1; k <= 5; ++k)
      if (k != failing + 1 && failed.output.find(fmt::format("[E03 {}/5] shallow epoch 3/3", k)) == std::string::npos)
        others_finished = false;
    CHECK((failed.output.find(said) != std::string::npos || others_finished));
    const std::string error = fmt::format("error: {}[E03 {}/5] shallow: ", failing ? "rank 1: " : "", failing + 1);
    CHECK_THAT(failed.output, Catch::Contains(error) && Catch::Contains(blocked));
    // Nothing else says "error" (MPI_Abort's banner would: "... with errorcode 1").
    std::istringstream lines(failed.output);
    int error_lines = 0;
    for (std::string line; std::getline(lines, line);) {
      std::ranges::transform(line, line.begin(), [](unsigned char c) { return std::tolower(c); });
      error_lines += line.find("error") != std::string::npos;
    }
    CHECK(error_lines == 1);
    CHECK_THAT(failed.output, !Catch::Contains("report: "));
    CHECK_FALSE(std::filesystem::exists(out + "/results.json"));
    CHECK_FALSE(std::filesystem::exists(out + "/report.md"));
    CHECK(std::filesystem::exists(out + "/runs/" + keys[1 - failing] + "/metrics.json"));

    std::filesystem::remove(blocked);
    const Outcome resumed = run_mpi(2, suite + out + " --distributed --quiet", 600);
    INFO(resumed.output);
    REQUIRE(resumed.status == 0);
    const std::set<std::string> bookkeeping = {"trained", "reused", "resumed"};
    CHECK(dagger::testing::results_without_clock(out + "/results.json", bookkeeping) ==
          dagger::testing::results_without_clock(dir.file("one/results.json"), bookkeeping));
    const nlohmann::json results = nlohmann::json::parse(dagger::testing::read(out + "/results.json"));
    CHECK(results.at("runs").at(keys[1 - failing]).at("reused") == true);
  }
}
