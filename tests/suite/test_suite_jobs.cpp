// `--jobs`: a suite whose runs train several at a time gives what the one-process suite gives,
// run by run and figure by figure, also when it is interrupted and resumed.
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "dagger/suite/suite.h"
#include "suite/suite_support.h"
#include "support.h"

using namespace dagger;
using namespace dagger::suite;
using testing::results_without_clock;
using testing::TempDir;
using testing::tiny_options;

namespace {

// E03's lr sweep, E04 on its chosen lr, E05 showing E04's choice, and E06, whose run carries
// on after E05's lr=0.001 run: references, members and a run that must wait for another.
const std::vector<std::string> kExperiments = {"E05", "E06"};

}  // namespace

TEST_CASE("a suite of three jobs gives the results of one job", "[suite][slow]") {
  TempDir one("suite-one-job"), three("suite-three-jobs");
  run_suite(tiny_options(one.path.string(), kExperiments));
  SuiteOptions o = tiny_options(three.path.string(), kExperiments);
  o.jobs = 3;
  std::mutex mutex;
  std::set<std::thread::id> threads;
  o.after_epoch = [&](const RunConfig& c, const EpochStats&) {
    {
      const std::lock_guard lock(mutex);
      threads.insert(std::this_thread::get_id());
    }
    // E05's lr=0.001 run trains slowly: were E06's run not to wait for it, it would start
    // beside it on a free job instead of carrying on after it.
    if (c.optimizer == "adam" && c.lr == 0.001 && c.patience > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
  };
  const SuiteResult r = run_suite(o);
  CHECK(threads.size() >= 3);  // E03's first three runs train at once
  CHECK(r.trained == 13);
  CHECK(r.by_id.at("E06")->runs.at(0).record.provenance.at("continued").at("epochs") == 2);
  CHECK(results_without_clock(three.file("results.json")) == results_without_clock(one.file("results.json")));
}

TEST_CASE("an interrupted suite of two jobs resumes to the results of an uninterrupted one", "[suite][slow]") {
  TempDir whole("suite-whole"), cut("suite-cut");
  run_suite(tiny_options(whole.path.string(), kExperiments));
  SuiteOptions o = tiny_options(cut.path.string(), kExperiments);
  o.jobs = 2;
  // Killed after the first epoch of E04's momentum 0.9 run, while another run trains.
  o.after_epoch = [&](const RunConfig& c, const EpochStats& s) {
    if (c.momentum == 0.9 && s.epoch == 1) throw std::runtime_error("killed");
  };
  CHECK_THROWS_WITH(run_suite(o), "[E04 3/4] shallow: killed");  // the error names the run of the two
  o.after_epoch = nullptr;
  const SuiteResult resumed = run_suite(o);
  CHECK(resumed.reused > 0);
  const ExperimentResult& e04 = *resumed.by_id.at("E04");
  CHECK(std::ranges::count_if(e04.runs, [](const GridRun& g) { return g.record.resumed; }) == 1);
  // Which runs a rerun reuses, and which it resumed in which sessions, is all that differs.
  const std::set<std::string> bookkeeping = {"trained", "reused", "resumed", "sessions"};
  CHECK(results_without_clock(cut.file("results.json"), bookkeeping) ==
        results_without_clock(whole.file("results.json"), bookkeeping));
}
