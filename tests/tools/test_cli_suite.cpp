// A suite folder's runs are reused by a rerun only when they were computed alike: the run
// configuration names each run's folder, and OUT/suite.json records the rest (executor, data).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "dagger/runtime/data.h"
#include "support.h"
#include "tools/cli_support.h"

using dagger::testing::run_dagger;

TEST_CASE("a suite rerun with another executor or other data is refused, naming the difference", "[cli][suite]") {
  namespace fs = std::filesystem;
  const fs::path fashion = dagger::default_data_dir();
  dagger::testing::require_fashion_mnist(fashion);
  dagger::testing::TempDir dir("suite-identity");
  // The same files under another folder are the same data; one file changed is other data.
  fs::create_directories(dir.path / "same");
  fs::create_directories(dir.path / "other");
  for (const auto& entry : fs::directory_iterator(fashion)) {
    fs::create_symlink(entry.path(), dir.path / "same" / entry.path().filename());
    if (entry.path().filename() != "t10k-labels-idx1-ubyte.gz")
      fs::create_symlink(entry.path(), dir.path / "other" / entry.path().filename());
  }
  std::ofstream(dir.path / "other" / "t10k-labels-idx1-ubyte.gz") << "other labels";
  const std::string suite = "suite --only E01 --no-plots --quiet --out " + dir.file("out");
  REQUIRE(run_dagger(suite).status == 0);
  CHECK(run_dagger(suite + " --data " + dir.file("same")).status == 0);
  const auto executor = run_dagger(suite + " --executor reference");
  CHECK(executor.status == 1);
  CHECK_THAT(executor.output, Catch::Contains(dir.file("out") + " holds runs trained with executor = \"jit\", this "
                                                                "run asks for \"reference\"; give another --out"));
  const auto data = run_dagger(suite + " --data " + dir.file("other"));
  CHECK(data.status == 1);
  CHECK_THAT(data.output, Catch::Contains("holds runs trained with data = \"4 files, "));
}
