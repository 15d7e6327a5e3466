// What `dagger` does with results that are damaged or cannot be written: a rerun repairs a
// history.csv a kill left behind, and a full disk fails the run, naming the file, with no
// temporary file left.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::run_dagger;
using dagger::testing::TempDir;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

/// A small run trained by `dagger train` on the synthetic quadrant task, in `dir`/run.
struct SmallRun {
  TempDir dir{"integrity"};
  std::string args;  ///< the train command's arguments after the model, --out included
  std::string out() const { return dir.file("run"); }

  explicit SmallRun(const std::string& model = "\"mlp1(16,relu,0.2)\"") {
    testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(160, 1, 8, 4, 1));
    testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 8, 4, 2));
    args = model + " --data " + dir.path.string() + " --quiet --epochs 2 --out " + out();
  }
  std::string data() const { return " --data " + dir.path.string(); }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Temporary files and folders anywhere under `dir`.
std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp") != std::string::npos || name.ends_with(".old")) found.push_back(entry.path().string());
  }
  return found;
}

}  // namespace

TEST_CASE("a rerun rewrites the history.csv a kill left one epoch behind", "[cli][resume]") {
  SmallRun run;
  REQUIRE(run_dagger("train " + run.args).status == 0);
  const std::string history = run.out() + "/history.csv";
  const std::string whole = read_text(history);
  REQUIRE(whole.find("\n2,") != std::string::npos);
  // last/ holds epoch 2, but the kill came before history.csv was replaced.
  std::ofstream(history) << whole.substr(0, whole.find("\n2,") + 1);
  REQUIRE(run_dagger("train " + run.args).status == 0);
  CHECK(read_text(history) == whole);
}

TEST_CASE("a write that fails, as on a full disk, fails the run naming the file and leaves no temporary",
          "[cli][checkpoint]") {
  SmallRun run;
  // bash's ulimit -f counts KiB; SIGXFSZ, which the limit also sends, is ignored so that the
  // write fails with EFBIG as it would with ENOSPC. No kernel cache: only results are written.
  const std::string limited = "DAGGER_CACHE_DIR=off bash -c 'trap \"\" XFSZ; ulimit -f 2; exec \"$0\" \"$@\"' ";
  const testing::Outcome out = testing::run_command(limited + DAGGER_BINARY + " train " + run.args);
  CHECK(out.status == 1);
  CHECK_THAT(out.output, Contains("cannot save checkpoint '" + run.out()) && Contains("File too large"));
  CHECK(temporaries(run.out()).empty());
}
