// What `dagger` does with results that are damaged or cannot be written: NaN weights are refused
// unless --allow-nonfinite says otherwise, checkpoint metadata of the wrong JSON type is one
// error naming the checkpoint, a rerun repairs a history.csv a kill left behind, and a full disk
// fails the run, naming the file, with no temporary file left.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dagger/runtime/checkpoint.h"
#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::file_bytes;
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

/// Rewrites the checkpoint with `count` values of `tensor` set to NaN, checksums and all, as a
/// run that diverged (or a hand edit) would leave it.
void poison(const std::string& folder, const std::string& tensor, size_t count) {
  Checkpoint ck = load_checkpoint(folder);
  float* values = ck.tensors.at(tensor).data();
  for (size_t i = 0; i < count; ++i) values[i] = std::nanf("");
  save_checkpoint(folder, ck.tensors, ck.meta, ck.texts);
}

/// Sets a field of the checkpoint's metadata, keeping the rest of its manifest.
void edit_meta(const std::string& folder, const nlohmann::json::json_pointer& field, const nlohmann::json& value) {
  const std::string path = folder + "/manifest.json";
  nlohmann::json manifest = nlohmann::json::parse(file_bytes(path));
  manifest["meta"][field] = value;
  std::ofstream(path) << manifest.dump(2);
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

TEST_CASE("NaN weights are refused by eval, predict and a resumed train unless --allow-nonfinite",
          "[cli][checkpoint]") {
  SmallRun run;
  REQUIRE(run_dagger("train " + run.args).status == 0);
  const std::string checkpoint = run.out() + "/checkpoint";
  poison(checkpoint, "dense1.w", 5);
  const std::string refused = "tensor 'dense1.w' holds 5 non-finite values (5 NaN, 0 infinite) of 1024";

  const auto eval = run_dagger("eval --checkpoint " + checkpoint + run.data());
  CHECK(eval.status == 1);  // it was: test accuracy 0.25 (chance) and exit 0
  CHECK_THAT(eval.output, Contains("checkpoint '" + checkpoint + "': " + refused));
  CHECK(run_dagger("eval --allow-nonfinite --checkpoint " + checkpoint + run.data()).status == 0);

  const std::string images = run.dir.file("test_x.npy");
  const auto predict = run_dagger("predict --checkpoint " + checkpoint + " " + images);
  CHECK(predict.status == 1);
  CHECK_THAT(predict.output, Contains(refused));
  CHECK(run_dagger("predict --allow-nonfinite --checkpoint " + checkpoint + " " + images).status == 0);

  poison(run.out() + "/last", "dense1.w", 5);
  const auto resume = run_dagger("train " + run.args);
  CHECK(resume.status == 1);
  CHECK_THAT(resume.output, Contains("checkpoint '" + run.out() + "/last': " + refused));
  CHECK(run_dagger("train " + run.args + " --allow-nonfinite").status == 0);
}

TEST_CASE("checkpoint metadata of the wrong JSON type is one error naming the checkpoint", "[cli][checkpoint]") {
  SmallRun run;
  REQUIRE(run_dagger("train " + run.args).status == 0);
  const std::string checkpoint = run.out() + "/checkpoint", last = run.out() + "/last";

  edit_meta(checkpoint, "/step"_json_pointer, "abc");
  const auto eval = run_dagger("eval --checkpoint " + checkpoint + run.data());
  CHECK(eval.status == 1);
  CHECK_THAT(eval.output, Contains("checkpoint '" + checkpoint + "': its manifest's metadata is malformed"));

  edit_meta(last, "/history/0"_json_pointer, "abc");
  const auto resume = run_dagger("train " + run.args);
  CHECK(resume.status == 1);
  CHECK_THAT(resume.output, Contains("checkpoint '" + last + "': its manifest's metadata is malformed"));

  edit_meta(last, "/history/0"_json_pointer, {{"epoch", "one"}});
  CHECK_THAT(run_dagger("train " + run.args).output, Contains("'" + last + "': its manifest's metadata is malformed"));
}

TEST_CASE("a rerun rewrites the history.csv a kill left one epoch behind", "[cli][resume]") {
  SmallRun run;
  REQUIRE(run_dagger("train " + run.args).status == 0);
  const std::string history = run.out() + "/history.csv";
  const std::string whole = file_bytes(history);
  REQUIRE(whole.find("\n2,") != std::string::npos);
  // last/ holds epoch 2, but the kill came before history.csv was replaced.
  std::ofstream(history) << whole.substr(0, whole.find("\n2,") + 1);
  REQUIRE(run_dagger("train " + run.args).status == 0);
  CHECK(file_bytes(history) == whole);
}

/// `dagger` run with files limited to `kib` KiB, as a disk that fills up would limit them: bash's
/// ulimit -f sets RLIMIT_FSIZE, and SIGXFSZ, which the limit also sends, is ignored so that the
/// write fails with EFBIG as it would with ENOSPC. No kernel cache: only results are written.
testing::Outcome run_with_file_limit(int kib, const std::string& args) {
  return testing::run_command(
      fmt::format("DAGGER_CACHE_DIR=off bash -c 'trap \"\" XFSZ; ulimit -f {}; exec \"$0\" \"$@\"' {} {}", kib,
                  DAGGER_BINARY, args));
}

TEST_CASE("a write that fails, as on a full disk, fails the run naming the file and leaves no temporary",
          "[cli][checkpoint]") {
  SECTION("a checkpoint") {
    SmallRun run;
    const testing::Outcome out = run_with_file_limit(2, "train " + run.args);
    CHECK(out.status == 1);
    CHECK_THAT(out.output, Contains("cannot save checkpoint '" + run.out()) && Contains("File too large"));
    CHECK(temporaries(run.out()).empty());
  }
  SECTION("metrics.json") {
    // A model of 20 weights on 2x2 images, with long class names, which metrics.json repeats
    // in each of its three reports: it is about 3.5 KiB, every other file under 3 KiB.
    TempDir dir("integrity-metrics");
    testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(160, 1, 2, 4, 1));
    testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 2, 4, 2));
    std::ofstream(dir.file("names.txt")) << "a class with quite a long name, number one\n"
                                            "a class with quite a long name, number two\n"
                                            "a class with quite a long name, number three\n"
                                            "a class with quite a long name, number four\n";
    const std::string out = dir.file("run");
    const testing::Outcome run = run_with_file_limit(3, "train shallow --epochs 1 --quiet --data " + dir.path.string() +
                                                            " --classes " + dir.file("names.txt") + " --out " + out);
    CHECK(run.status == 1);  // it was: exit 0 and a metrics.json cut at 3072 bytes
    CHECK_THAT(run.output, Contains("cannot write '" + out + "/metrics.json': File too large"));
    REQUIRE(fs::exists(out + "/checkpoint/manifest.json"));  // the limit let every other file through
    CHECK_FALSE(fs::exists(out + "/metrics.json"));
    CHECK(temporaries(out).empty());
  }
}
