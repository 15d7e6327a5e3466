// Every command checks each option's value while parsing: a bad one is a usage error (exit 2)
// in one line naming the option, before any data, checkpoint or model is read.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using dagger::testing::run_dagger;
using dagger::testing::TempDir;

TEST_CASE("every command's numbers, choices and paths are checked while parsing, in one line", "[cli][usage]") {
  // An empty data folder: a command whose options pass fails later, on the data, with exit 1.
  const TempDir empty("options-empty");
  const TempDir scratch("options");
  std::ofstream(scratch.file("afile")) << "not a folder\n";
  const std::string file = scratch.file("afile");
  const std::string data = " --data " + empty.path.string();
  const std::string train = "train mlp512" + data, eval = "eval --checkpoint " + empty.path.string() + data;
  // (arguments, the message's text after "error: ")
  const std::vector<std::pair<std::string, std::string>> cases = {
      {train + " --epochs 0", "--epochs: '0' is not a whole number of at least 1"},
      {train + " --batch 0", "--batch: '0' is not a whole number of at least 1"},
      {train + " --threads 0", "--threads: '0' is not a whole number from 1 to 1024"},
      {train + " --threads 100000", "--threads: '100000' is not a whole number from 1 to 1024"},
      {train + " --lr -1", "--lr: '-1' is not a number greater than 0"},
      {train + " --lr nan", "--lr: 'nan' is not a number greater than 0"},
      {train + " --momentum 1", "--momentum: '1' is not a number in [0, 1)"},
      {train + " --momentum nan", "--momentum: 'nan' is not a number in [0, 1)"},
      {train + " --weight-decay inf", "--weight-decay: 'inf' is not a number of at least 0"},
      {train + " --label-smoothing 1", "--label-smoothing: '1' is not a number in [0, 1)"},
      {train + " --schedule cosine --min-lr inf", "--min-lr: 'inf' is not a number of at least 0"},
      {train + " --warmup 2 --epochs 5", "--warmup does not apply to --schedule constant"},
      {train + " --schedule step --factor 0.5", "--factor does not apply to --schedule step"},
      {train + " --train-limit -1", "--train-limit: '-1' is not a whole number of at least 0"},
      {train + " --val-limit 1.5", "--val-limit: '1.5' is not a whole number of at least 0"},
      {train + " --val-fraction 1", "--val-fraction: '1' is not a number in (0, 1)"},
      {train + " --executor gpu", "--executor: unknown executor 'gpu' (valid: jit, reference)"},
      {train + " --optimizer rmsprop", "--optimizer: unknown optimizer 'rmsprop'"},
      {train + " --out " + file, "--out: '" + file + "' is a file, not a folder"},
      {train + " --out " + file + "/run", "--out: '" + file + "/run': '" + file + "' is a file, not a folder"},
      {train + " --dump-dir " + file, "--dump-dir: '" + file + "' is a file, not a folder"},
      {"train mlp512 --data " + scratch.file("absent"), "--data: '" + scratch.file("absent") + "': no such folder"},
      {"train mlp512 --data " + file, "--data: '" + file + "' is not a folder"},
      {train + " --classes " + scratch.path.string(), "is a folder, not a file"},
      {eval + " --executor gpu", "--executor: unknown executor 'gpu'"},
      {"eval --checkpoint " + scratch.file("absent") + data,
       "--checkpoint: '" + scratch.file("absent") + "': no such folder"},
      {"predict --checkpoint " + empty.path.string() + " " + file + " --threads 0", "--threads: '0' is not a whole"},
      {"predict --checkpoint " + empty.path.string() + " " + file + " --batch 0", "--batch: '0' is not a whole"},
      {"predict --checkpoint " + empty.path.string() + " " + file + " --top 0", "--top: '0' is not a whole"},
      {"predict --checkpoint " + file + " " + file, "--checkpoint: '" + file + "' is not a folder"},
      {"ir mlp512 --batch 0", "--batch: '0' is not a whole number of at least 1"},
      {"ir mlp512 --format svg", "--format: unknown format 'svg' (valid: text, dot)"},
      {"summary mlp512 --classes 0", "--classes: '0' is not a whole number from 1 to 4096"},
      {"summary mlp512 --input-shape 1,28", "--input-shape: '1,28' must be three sizes C,H,W"},
      {"summary --checkpoint " + scratch.file("absent"), "--checkpoint: '" + scratch.file("absent") + "': no such"},
      {"gradcheck mlp512 --samples -1", "--samples: '-1' is not a whole number of at least 1"},
      {"gradcheck mlp512 --input-size 0", "--input-size: '0' is not a whole number from 1 to 1024"},
      {"gradcheck mlp512 --tolerance nan", "--tolerance: 'nan' is not a number greater than 0"},
      {"bench shallow --steps 1 --repeats 1 --warmup 0 --min-share -1", "--min-share: '-1' is not a number in [0, 1]"},
      {"bench shallow --threads 0", "--threads: '0' is not a whole number from 1 to 1024"},
      {"bench shallow --save-baseline " + scratch.path.string(),
       "--save-baseline: '" + scratch.path.string() + "' is a folder"},
      {"suite --threads 0" + data, "--threads: '0' is not a whole number from 1 to 1024"},
      {"suite --out " + file + data, "--out: '" + file + "' is a file, not a folder"},
      {"suite --data " + scratch.file("absent"), "--data: '" + scratch.file("absent") + "': no such folder"},
      {"frobnicate", "unknown command 'frobnicate' (valid: bench, eval, gradcheck"},
  };
  for (const auto& [args, message] : cases) {
    const auto out = run_dagger(args);
    INFO(args << "\n" << out.output);
    CHECK(out.status == 2);
    CHECK_THAT(out.output, Catch::StartsWith("error: "));
    CHECK_THAT(out.output, Catch::Contains(message));
    CHECK(std::count(out.output.begin(), out.output.end(), '\n') == 1);
  }
  // The options pass: the run fails on the empty data folder instead, exit 1.
  const auto valid =
      run_dagger(train + " --optimizer momentum --momentum 0.9 --threads 2 --out " + scratch.file("run"));
  CHECK(valid.status == 1);
  CHECK_THAT(valid.output, Catch::Contains("no data in"));
}

TEST_CASE("folders this user may not read or write end in one line naming them and the option", "[cli][usage]") {
  namespace fs = std::filesystem;
  TempDir dir("options-denied");
  fs::create_directories(dir.file("data"));
  dagger::testing::write_npy_set(dir.file("data"), "train", dagger::testing::quadrant_set(40, 1, 8, 4, 1));
  dagger::testing::write_npy_set(dir.file("data"), "test", dagger::testing::quadrant_set(8, 1, 8, 4, 2));
  const std::string train = "train \"mlp1(8,relu,0)\" --epochs 1 --quiet --data " + dir.file("data");
  REQUIRE(run_dagger(train + " --out " + dir.file("run")).status == 0);
  fs::create_directories(dir.file("readonly"));
  fs::permissions(dir.file("data"), fs::perms::none);
  fs::permissions(dir.file("run/checkpoint"), fs::perms::none);
  fs::permissions(dir.file("readonly"),
                  fs::perms::owner_read | fs::perms::owner_exec | fs::perms::others_read | fs::perms::others_exec);
  // Root reads and writes anything by its capabilities: as root the commands run without the two
  // that bypass permission bits (still uid 0, so the build folder stays readable wherever it is).
  const std::string as_user =
      geteuid() == 0 ? "setpriv --bounding-set=-dac_override,-dac_read_search -- env DAGGER_CACHE_DIR=off " : "";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {train, "error: --data '" + dir.file("data") + "': cannot read '" + dir.file("data") + "': Permission denied"},
      {"train mlp512 --out " + dir.file("readonly/run"),
       "error: --out '" + dir.file("readonly/run") + "': cannot create the folder: Permission denied"},
      {"eval --checkpoint " + dir.file("run/checkpoint"), "error: '" + dir.file("run/checkpoint")},
  };
  for (const auto& [args, message] : cases) {
    const auto out = run_dagger(args, as_user);
    INFO(args << "\n" << out.output);
    CHECK(out.status == 1);
    CHECK_THAT(out.output, Catch::StartsWith(message) && Catch::Contains("Permission denied"));
    CHECK(std::count(out.output.begin(), out.output.end(), '\n') == 1);
  }
  fs::permissions(dir.file("data"), fs::perms::owner_all);  // so the folder can be removed
  fs::permissions(dir.file("run/checkpoint"), fs::perms::owner_all);
}
