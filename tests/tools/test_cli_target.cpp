// DAGGER_TARGET: every command compiles for the named x86-64 level, and the same seed and
// thread count give byte-identical checkpoints whichever level (and so vector width) the
// kernels were built for; and on whichever CPU they run, the bits a committed file records.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "dagger/codegen/jit.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
namespace fs = std::filesystem;
using dagger::testing::last_json_line;
using dagger::testing::Outcome;
using dagger::testing::run_dagger;

namespace {

/// The bytes of every file in `run`'s checkpoint/ and best/ folders, by relative path.
std::map<std::string, std::string> checkpoint_bytes(const std::filesystem::path& run) {
  std::map<std::string, std::string> files;
  for (const char* folder : {"checkpoint", "best"})
    for (const auto& entry : std::filesystem::directory_iterator(run / folder)) {
      if (entry.path().extension() != ".npy") continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      files[std::string(folder) + "/" + entry.path().filename().string()] = bytes.str();
    }
  return files;
}

/// Trains `model` a few steps with DAGGER_TARGET=target into dir/target; returns the vector
/// width the run reports.
int train_for(const std::string& model, const std::string& target, const testing::TempDir& dir) {
  testing::ScopedEnv env("DAGGER_TARGET", target);
  const Outcome out = run_dagger(fmt::format(
      "train {} --epochs 1 --train-limit 256 --val-limit 128 --test-limit 128 --batch 64 --threads 2 --quiet "
      "--json --out {}",
      model, dir.file(model + "-" + target)));
  INFO(out.output);
  REQUIRE(out.status == 0);
  const nlohmann::json j = last_json_line(out.output);
  CHECK(j["jit_target"] == target);
  return j["vector_width"].get<int>();
}

/// Every tensor's XXH3-64 checksum in the manifest of `run`'s checkpoint/, by tensor name.
nlohmann::json checkpoint_checksums(const std::filesystem::path& run) {
  std::ifstream in(run / "checkpoint" / "manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  nlohmann::json sums = nlohmann::json::object();
  for (const auto& tensor : manifest.at("tensors"))
    sums[tensor.at("name").get<std::string>()] = tensor.at("xxh3").get<std::string>();
  return sums;
}

}  // namespace

// The same seed and thread count give the same bits on every x86-64 CPU with AVX2 and FMA
// (docs/guarantees.md): tests/tools/bits_golden.json records the checkpoints one machine
// trained, and every machine that runs this test trains them again and compares. The file
// changes only with a commit that changes training's rounding on purpose (and says so in
// docs/performance.md); the failure prints what to put in it.
TEST_CASE("mlp512/cnn3/rescnn train to the checkpoints tests/tools/bits_golden.json records on this CPU too",
          "[cli][target][slow]") {
  testing::require_fashion_mnist(default_data_dir());
  const std::string path = std::string(DAGGER_TESTS_DIR) + "/tools/bits_golden.json";
  INFO("the committed checksums: " << path);
  std::ifstream in(path);
  REQUIRE(in);
  const nlohmann::json golden = nlohmann::json::parse(in);
  REQUIRE(golden.at("models").size() == 3);  // an emptied file must not pass
  testing::TempDir dir("golden");
  nlohmann::json trained = nlohmann::json::object();
  for (const auto& [model, sums] : golden.at("models").items()) {
    const int width = train_for(model, "host", dir);
    trained[model] = checkpoint_checksums(dir.path / (model + "-host"));
    std::vector<std::string> differ;
    for (const auto& [name, sum] : sums.items())
      if (trained[model].value(name, "") != sum) differ.push_back(name);
    INFO(fmt::format("{} at vector width {}: {} of {} tensors differ from the file's ({}), which {} made", model, width,
                     differ.size(), sums.size(), fmt::join(differ, ", "), golden.at("made_by").dump()));
    INFO("this machine's checksums, for a commit that changes the bits on purpose: " << trained.dump(2));
    CHECK(trained[model].size() == sums.size());
    CHECK(differ.empty());
  }
}

TEST_CASE("mlp512 and cnn3 checkpoints are byte-identical at every DAGGER_TARGET", "[cli][target][slow]") {
  testing::require_fashion_mnist(default_data_dir());
  testing::TempDir dir("target");
  const bool avx512 = jit_target_named("host").vector_width == 16;
  for (const std::string model : {"mlp512", "cnn3"}) {
    INFO(model);
    // The AVX2 level (8 floats per vector) runs on every host this test runs on; the host's
    // own code is AVX-512 (16) where it has it, else the same AVX2 code.
    CHECK(train_for(model, "x86-64-v3", dir) == 8);
    CHECK(train_for(model, "host", dir) == (avx512 ? 16 : 8));
    const auto v3 = checkpoint_bytes(dir.path / (model + "-x86-64-v3"));
    CHECK(v3.size() >= 4);  // parameters and optimizer moments, in checkpoint/ and best/
    CHECK(checkpoint_bytes(dir.path / (model + "-host")) == v3);
    if (avx512) {
      CHECK(train_for(model, "x86-64-v4", dir) == 16);
      CHECK(checkpoint_bytes(dir.path / (model + "-x86-64-v4")) == v3);
    } else {
      WARN(
          "this host has no AVX-512: the 16-float kernels were not run here, so only width 8 (host and "
          "x86-64-v3) was compared; tests/codegen/test_vector_width.cpp compares the widths in-process");
    }
  }
}

TEST_CASE("precision bf16 under a target without AVX512_BF16 is one error line, before any file is written",
          "[cli][target]") {
  const fs::path dir = fs::temp_directory_path() / "dagger_bf16_refused";
  fs::remove_all(dir);
  testing::ScopedEnv env("DAGGER_TARGET", "x86-64-v3");  // every x86-64 host can take it; it excludes AVX-512
  for (const std::string& args :
       {"train mlp512 --precision bf16 --out " + (dir / "run").string(), std::string("bench mlp512 --precision bf16"),
        std::string("ir mlp512 --stage asm --precision bf16")}) {
    const Outcome out = run_dagger(args);
    INFO(args);
    CHECK(out.status == 1);
    CHECK(out.output == "error: --precision bf16 needs AVX512_BF16, which DAGGER_TARGET=x86-64-v3 excludes\n");
  }
  CHECK(!fs::exists(dir));
}

TEST_CASE("an unknown DAGGER_TARGET, or a level the CPU lacks, is one error line", "[cli][target]") {
  {
    testing::ScopedEnv env("DAGGER_TARGET", "x86-64-v9");
    const Outcome out = run_dagger("models");
    CHECK(out.status == 1);
    CHECK(out.output == "error: DAGGER_TARGET=x86-64-v9: unknown target (valid: host, x86-64-v3, x86-64-v4)\n");
  }
  {
    testing::ScopedEnv env("DAGGER_TARGET", "x86-64-v4");
    const Outcome out = run_dagger("models");
    if (jit_target_named("host").vector_width == 16) {
      CHECK(out.status == 0);
    } else {
      CHECK(out.status == 1);
      CHECK_THAT(out.output,
                 Catch::StartsWith("error: DAGGER_TARGET=x86-64-v4: this CPU (") && Catch::Contains("lacks avx512"));
    }
  }
  // What an AVX2 machine (a Zen 3) gets, whatever this host is.
  const std::vector<std::string> zen3 = {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "sse4.2"};
  CHECK(jit_target_for("host", "znver3", zen3).vector_width == 8);
  const JitTarget v3 = jit_target_for("x86-64-v3", "znver3", zen3);
  CHECK(v3.cpu == "x86-64-v3");
  CHECK(v3.vector_width == 8);
  CHECK(testing::error_of([&] { jit_target_for("x86-64-v4", "znver3", zen3); }) ==
        "DAGGER_TARGET=x86-64-v4: this CPU (znver3) lacks avx512bw, avx512cd, avx512dq, avx512f, avx512vl, which "
        "that level needs");
  CHECK(testing::error_of([&] {
          jit_target_for("x86-64-v3", "core2", {"sse4.1"});
        }).starts_with("DAGGER_TARGET=x86-64-v3: this CPU (core2) lacks avx, avx2,"));
  CHECK(jit_target_for("x86-64-v4", "sapphirerapids",
                       [&] {
                         std::vector<std::string> f = zen3;
                         for (const char* a : {"avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"})
                           f.push_back(a);
                         return f;
                       }())
            .vector_width == 16);
}

TEST_CASE("a DAGGER_CACHE_MAX_MB that is no size is one error line", "[cli][cache]") {
  for (const char* bad : {"abc", "-5", "0", "1.5"}) {
    testing::ScopedEnv env("DAGGER_CACHE_MAX_MB", bad);
    const Outcome out = run_dagger("models");
    CHECK(out.status == 1);
    CHECK(out.output == fmt::format("error: DAGGER_CACHE_MAX_MB={}: not a size in MiB (a whole number from 1, e.g. "
                                    "512)\n",
                                    bad));
  }
}

TEST_CASE("a DAGGER_PERF that names no output is one error line, before a run writes anything", "[cli]") {
  testing::TempDir dir("perf");
  const std::string out_dir = dir.file("run");
  for (const char* bad : {"perf", "JITDUMP"}) {
    testing::ScopedEnv env("DAGGER_PERF", bad);
    const Outcome out = run_dagger(fmt::format("train mlp512 --epochs 1 --train-limit 64 --out {}", out_dir));
    CHECK(out.status == 1);
    CHECK(out.output == fmt::format("error: DAGGER_PERF={}: unknown output (valid: off, map, jitdump)\n", bad));
    CHECK(!std::filesystem::exists(out_dir));
  }
}
