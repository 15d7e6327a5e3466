// `dagger train` and `dagger eval` on data that is not Fashion-MNIST: a learnable 4-class task
// of 3x32x32 images written here as .npy and CSV, 1x20x20 IDX files plain and gzipped, and the
// data options' usage errors.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger::testing;
using Catch::Matchers::Contains;

namespace {

/// Checks a report covers the classes `names` and scores well above chance.
void check_report(const nlohmann::json& report, const std::vector<std::string>& names, double min_accuracy) {
  CHECK(report.at("class_names") == nlohmann::json(names));
  CHECK(report.at("confusion").size() == names.size());
  CHECK(report.at("confusion")[0].size() == names.size());
  CHECK(report.at("class_f1").size() == names.size());
  CHECK(report.at("accuracy").get<double>() > min_accuracy);
}

/// 480 training and 120 test images of 3x32x32: four classes, the bright quadrant.
void write_quadrants(const TempDir& dir, bool csv) {
  const QuadrantSet train = quadrant_set(480, 3, 32, 4, 11), test = quadrant_set(120, 3, 32, 4, 12);
  if (csv) {
    write_csv_set(dir.path.string(), "train", train);
    write_csv_set(dir.path.string(), "test", test);
  } else {
    write_npy_set(dir.path.string(), "train", train);
    write_npy_set(dir.path.string(), "test", test);
  }
}

const std::string kFast = " --epochs 3 --batch 32 --threads 2 --quiet --json";

}  // namespace

TEST_CASE("dagger train learns 3x32x32 images in 4 classes from .npy with a CNN", "[cli][data]") {
  TempDir dir("cli-npy");
  write_quadrants(dir, false);
  std::ofstream(dir.file("names.txt")) << "top left\ntop right\nbottom left\nbottom right\n";
  const Outcome out = run_dagger("train \"cnn(2,bn,0.2)\" --data " + dir.path.string() + " --classes " +
                          dir.file("names.txt") + " --out " + dir.file("run") + kFast);
  INFO(out.output);
  REQUIRE(out.status == 0);
  CHECK_THAT(out.output, Contains("384 train / 96 val / 120 test images"));  // the default 20% validation
  const nlohmann::json j = last_json_line(out.output);
  check_report(j.at("test"), {"top left", "top right", "bottom left", "bottom right"}, 0.6);

  // eval rebuilds the model for the data's shape and classes.
  const Outcome eval =
      run_dagger("eval --checkpoint " + dir.file("run/checkpoint") + " --data " + dir.path.string() + " --json");
  INFO(eval.output);
  REQUIRE(eval.status == 0);
  CHECK(last_json_line(eval.output).at("test").at("accuracy") == j.at("test").at("accuracy"));
  // One line per class of the data, named "0".."3" as the data names none.
  CHECK_THAT(eval.output, Catch::Contains("class  precision    recall        f1  support"));
  for (const char* row : {"\n0 ", "\n1 ", "\n2 ", "\n3 "}) CHECK_THAT(eval.output, Catch::Contains(row));
  CHECK_THAT(eval.output, !Catch::Contains("\n4 "));

  // Data of another shape is refused by name rather than fed to the model.
  TempDir other("cli-other");
  write_idx_set(other.path.string(), "train", quadrant_set(20, 1, 20, 4, 3), false);
  write_idx_set(other.path.string(), "test", quadrant_set(8, 1, 20, 4, 4), false);
  const Outcome wrong = run_dagger("eval --checkpoint " + dir.file("run/checkpoint") + " --data " + other.path.string());
  CHECK(wrong.status == 1);
  CHECK_THAT(wrong.output, Contains("takes images of [3,32,32] but the data's are [1,20,20]"));
}

TEST_CASE("dagger train learns the same task from CSV with an MLP", "[cli][data]") {
  TempDir dir("cli-csv");
  write_quadrants(dir, true);
  const Outcome square = run_dagger("train \"mlp1(64,relu,0)\" --data " + dir.path.string() + kFast);
  CHECK(square.status == 1);
  CHECK_THAT(square.output, Contains("3072 pixels per row") && Contains("--input-shape"));

  const Outcome out =
      run_dagger("train \"mlp1(64,relu,0)\" --data " + dir.path.string() + " --input-shape 3,32,32 --val-size 80" + kFast);
  INFO(out.output);
  REQUIRE(out.status == 0);
  CHECK_THAT(out.output, Contains("400 train / 80 val / 120 test images"));
  check_report(last_json_line(out.output).at("test"), {"0", "1", "2", "3"}, 0.6);
}

TEST_CASE("dagger train reads 1x20x20 IDX files, plain and gzipped", "[cli][data]") {
  for (bool gzip : {false, true}) {
    TempDir dir("cli-idx");
    write_idx_set(dir.path.string(), "train", quadrant_set(300, 1, 20, 3, 21), gzip);
    write_idx_set(dir.path.string(), "t10k", quadrant_set(90, 1, 20, 3, 22), gzip);
    const Outcome out = run_dagger("train shallow --data " + dir.path.string() + " --val-fraction 0.1" + kFast);
    INFO(out.output);
    REQUIRE(out.status == 0);
    CHECK_THAT(out.output, Contains("270 train / 30 val / 90 test images"));
    check_report(last_json_line(out.output).at("test"), {"0", "1", "2"}, 0.6);
  }
}

TEST_CASE("a CNN rejects images too small for its pooling stages", "[cli][data]") {
  TempDir dir("cli-small");
  write_npy_set(dir.path.string(), "train", quadrant_set(40, 1, 6, 4, 1));
  write_npy_set(dir.path.string(), "test", quadrant_set(8, 1, 6, 4, 2));
  const Outcome out = run_dagger("train \"cnn(3,bn,0.2)\" --data " + dir.path.string() + kFast);
  CHECK(out.status == 1);
  CHECK_THAT(out.output, Contains("cnn pools 3 times and needs images of at least 8x8") && Contains("6,6"));
  const Outcome fits =
      run_dagger("train \"cnn(2,bn,0.2)\" --data " + dir.path.string() + " --dump-dir " + dir.file("dump") + kFast);
  INFO(fits.output);
  CHECK(fits.status == 0);
  std::ifstream graph(dir.file("dump/graph.txt"));
  const std::string text((std::istreambuf_iterator<char>(graph)), {});
  CHECK_THAT(text, Contains("[32,1,6,6]") && Contains("[32,4]"));
}

TEST_CASE("bad data options are usage errors, found before any data is read", "[cli][data]") {
  TempDir dir("cli-usage");
  const std::string empty = " --data " + dir.path.string();  // no data: flags that pass fail on it
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--val-size 0", "--val-size: '0' is not a whole number of at least 1"},
      {"--val-size -3", "--val-size: '-3' is not a whole number of at least 1"},
      {"--val-fraction 1.5", "--val-fraction: '1.5' is not a number in (0, 1)"},
      {"--val-fraction 0", "--val-fraction: '0' is not a number in (0, 1)"},
      {"--val-size 10 --val-fraction 0.1", "not both"},
      {"--input-shape 3,x,2", "'x' is not a positive size"},
      {"--input-shape 3,32", "must be three sizes C,H,W"},
      {"--input-shape 0,4,4", "'0' is not a positive size"},
      {"--classes " + dir.file("nope.txt"), "no such file"},
  };
  for (const auto& [flags, message] : cases) {
    for (const char* command : {"train shallow", "eval --checkpoint ."}) {
      const Outcome out = run_dagger(std::string(command) + empty + " " + flags);
      INFO(command << " " << flags << "\n" << out.output);
      CHECK(out.status == 2);
      CHECK_THAT(out.output, Contains(message));
    }
  }
  const Outcome no_data = run_dagger("train shallow" + empty);
  CHECK(no_data.status == 1);
  CHECK_THAT(no_data.output, Contains("no data in") && Contains(dir.path.string()));
  const Outcome missing = run_dagger("train shallow --data " + dir.file("absent"));
  CHECK(missing.status == 2);
  CHECK_THAT(missing.output, Contains("--data: '" + dir.file("absent") + "': no such folder"));
}
