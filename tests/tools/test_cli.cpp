// The `dagger` binary end to end: exit codes and the dumps users read.
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "dagger/runtime/build_info.h"
#include "dagger/runtime/data.h"
#include "support.h"
#include "tools/cli_support.h"

using dagger::testing::last_json_line;
using dagger::testing::Outcome;
using dagger::testing::run_dagger;

TEST_CASE("usage errors exit with 2 and list the valid choices", "[cli]") {
  // (arguments, every text the message must hold)
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"train mlp9000", {"unknown model 'mlp9000'", "rescnn"}},
      {"ir mlp512 --stage nope", {"graph, eval, grad"}},
      {"ir cnn3 --stage fused --kernel k6_matmul_add_relu",
       {"--kernel applies to --stage llvm, opt or asm, not fused"}},
      {"ir mlp512 --stage grad --why", {"--why applies to --stage fused, not grad"}},
      {"ir mlp512 --stage asm --format dot", {"--format dot applies to --stage graph, eval or grad, not asm"}},
      {"ir mlp512 --stage eval --optimizer sgd", {"--optimizer applies to the training step's stages", "not eval"}},
      {"ir cnn3 --stage grad --conv-algo direct",
       {"--conv-algo applies to --stage fused, llvm, opt or asm", "not grad"}},
      {"ir mlp512 --stage graph --weight-decay 0.1",
       {"--weight-decay applies to the training step's stages", "not graph"}},
      {"ir mlp512 --stage grad --nesterov", {"--nesterov applies to --optimizer momentum, not adam"}},
      {"train mlp512 --optimizer sgd --momentum 0.5", {"--momentum applies to --optimizer momentum, not sgd"}},
      {"train mlp512 --nesterov", {"--nesterov applies to --optimizer momentum, not adam"}},
      {"bench shallow --optimizer sgd --nesterov", {"--nesterov applies to --optimizer momentum, not sgd"}},
      {"train mlp512 --precision bf16 --executor reference", {"--precision bf16 applies to --executor jit"}},
      {"bench shallow --precision fp16", {"unknown precision 'fp16'", "f32, bf16"}},
      {"ir mlp512 --stage fused --precision bf16", {"--precision applies to --stage llvm, opt or asm", "not fused"}},
      {"ir mlp512 --stage grad --plan eval", {"--plan applies to --stage fused, llvm, opt or asm", "not grad"}},
      {"ir mlp512 --stage fused --plan test", {"--plan", "train, eval"}},
      {"ir mlp512 --stage fused --plan eval --optimizer sgd",
       {"--optimizer applies to the training step's stages", "not --plan eval"}},
      {"frobnicate", {"unknown command 'frobnicate'", "gradcheck"}},
      {"train mlp512 --no-such-flag", {"--no-such-flag"}},
      {"bench mlp9000", {"unknown model 'mlp9000'", "rescnn"}},
      {"bench shallow --executor nope", {"unknown executor 'nope'", "jit, reference"}},
      {"bench shallow --executor reference --check baseline.json", {"--executor jit"}},
      {"suite --only E07,E99", {"unknown experiment 'E99'", "E01, E02", "E23"}},
      {"suite --profile medium", {"unknown profile 'medium'", "quick, full, seeds"}},
      {"suite --seeds 42,x", {"--seeds: 'x' is not a seed (0 to"}},
      {"suite --seeds 42,-1", {"--seeds: '-1' is not a seed (0 to"}},
      {"suite --seeds ,", {"--seeds needs at least one value, e.g. 42,1,2"}},
      {"suite --resume-from /no/such/bundle", {"--resume-from", "/no/such/bundle"}},
      {"suite --resume-from /tmp,/no/such/partial", {"--resume-from", "/no/such/partial"}},
  };
  for (const auto& [args, texts] : cases) {
    Outcome out = run_dagger(args);
    INFO(args << "\n" << out.output);
    CHECK(out.status == 2);
    for (const std::string& text : texts) CHECK_THAT(out.output, Catch::Contains(text));
  }
}

TEST_CASE("dagger suite --list names every experiment with its runs", "[cli]") {
  Outcome out = run_dagger("suite --list");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("E12    12  Hypertuning an MLP") && Catch::Contains("E23") &&
                             Catch::Contains("E19,E20"));
}

TEST_CASE("dagger models lists the zoo with parameter counts", "[cli]") {
  Outcome out = run_dagger("models");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("mlp512") && Catch::Contains("407050") && Catch::Contains("390858"));
}

TEST_CASE("dagger ir prints the training step and the JIT's kernels", "[cli][slow]") {
  Outcome grad = run_dagger("ir rescnn --stage grad --batch 2");
  CHECK(grad.status == 0);
  CHECK_THAT(grad.output, Catch::Contains("conv2d_backward_data") && Catch::Contains("grad.accumulate") &&
                              Catch::Contains("assign("));
  Outcome dot = run_dagger("ir shallow --format dot");
  CHECK_THAT(dot.output, Catch::StartsWith("digraph"));
  Outcome opt = run_dagger("ir shallow --stage opt --batch 7");
  Outcome fused = run_dagger("ir mlp512 --stage fused --batch 7 --why");
  // The dense layer, its bias and its relu are one kernel.
  CHECK_THAT(fused.output, Catch::Contains("kernel k6_matmul_add_relu") && Catch::Contains("ends:  %6 has 2 readers") &&
                               Catch::Contains("why:   %4 anchors the kernel") &&
                               Catch::Contains("why:   %5 joins %6") && Catch::Contains("arena:"));
  // Nesterov's update reads its weight's gradient (times lr) twice: the product's epilogue.
  Outcome nesterov = run_dagger("ir mlp512 --stage fused --batch 7 --why --optimizer momentum --nesterov");
  CHECK(nesterov.status == 0);
  CHECK_THAT(nesterov.output,
             Catch::Contains("kernel k39_matmul_mul_mul_sub_etc") &&
                 Catch::Contains("why:   %32 joins its 2 readers, all in this matmul's epilogue, elementwise over the "
                                 "same 401408 elements") &&
                 Catch::Contains("writes %39 [784,512] (in place, into %2 [784,512])"));
  Outcome one = run_dagger("ir mlp512 --stage asm --batch 7 --kernel k6_matmul_add_relu");
  CHECK(one.status == 0);
  CHECK_THAT(one.output, Catch::StartsWith("# ==== kernel k6_matmul_add_relu") && !Catch::Contains("kernel k8_"));
  Outcome unknown = run_dagger("ir mlp512 --stage asm --batch 7 --kernel k999");
  CHECK(unknown.status == 2);
  CHECK_THAT(unknown.output, Catch::Contains("unknown kernel 'k999'") && Catch::Contains("k6_matmul_add_relu"));
  CHECK(opt.status == 0);
  CHECK_THAT(opt.output, Catch::Contains("==== kernel") && Catch::Contains("x float>"));
}

TEST_CASE("dagger ir --plan eval shows the inference plan's kernels and fusion", "[cli]") {
  // rescnn's first convolution, its bias and its batch norm on the running statistics are one
  // kernel in the inference plan; in the training step the statistics come from the batch.
  Outcome eval = run_dagger("ir rescnn --stage fused --plan eval --why --batch 3");
  INFO(eval.output);
  CHECK(eval.status == 0);
  CHECK_THAT(eval.output, Catch::Contains("kernel k11_conv2d_add_batchnorm_infer_relu") &&
                              Catch::Contains("why:   %5 is normalized by %10 (batchnorm_infer) in the epilogue") &&
                              !Catch::Contains("channel_mean") && Catch::Contains("arena:"));
  Outcome train = run_dagger("ir rescnn --stage fused --batch 3");
  CHECK(train.status == 0);
  CHECK_THAT(train.output, Catch::Contains("channel_mean") && !Catch::Contains("conv2d_add_batchnorm_infer"));
  Outcome kernel =
      run_dagger("ir rescnn --stage llvm --plan eval --batch 3 --kernel k11_conv2d_add_batchnorm_infer_relu");
  CHECK(kernel.status == 0);
  CHECK_THAT(kernel.output,
             Catch::StartsWith("; ==== kernel k11_conv2d_add_batchnorm_infer_relu") && Catch::Contains("sqrt"));
}

TEST_CASE("dagger gradcheck passes on an op and reports each tensor", "[cli]") {
  Outcome out = run_dagger("gradcheck --op conv2d");
  CHECK(out.status == 0);
  CHECK_THAT(out.output, Catch::Contains("all gradients within tolerance"));
}

TEST_CASE("dagger train --dump-dir writes every stage with stable names", "[cli][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("dump");
  Outcome out = run_dagger("train shallow --epochs 1 --train-limit 100 --val-limit 50 --test-limit 50 --quiet --dump-dir " +
                       dir.path.string());
  INFO(out.output);
  REQUIRE(out.status == 0);
  for (const char* name :
       {"graph.txt", "graph.dot", "grad.txt", "grad.dot", "eval.txt", "eval.dot", "fused.txt", "fused-eval.txt"})
    CHECK(std::filesystem::file_size(dir.path / name) > 0);
  for (const char* kernels : {"kernels", "kernels-eval"}) {
    INFO(kernels);
    int ll = 0, opt = 0, s = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path / kernels)) {
      std::string name = entry.path().filename().string();
      opt += name.ends_with(".opt.ll");
      ll += name.ends_with(".ll") && !name.ends_with(".opt.ll");
      s += name.ends_with(".s");
    }
    CHECK(ll > 0);
    CHECK(ll == opt);
    CHECK(ll == s);
  }
  // The training step ends in the loss's gradient; the inference plan in the probabilities.
  auto holds = [&](const char* kernels, const std::string& suffix) {
    for (const auto& entry : std::filesystem::directory_iterator(dir.path / kernels))
      if (entry.path().filename().string().ends_with(suffix)) return true;
    return false;
  };
  CHECK(holds("kernels", "_softmax_xent_grad.ll"));
  CHECK(!holds("kernels-eval", "_softmax_xent_grad.ll"));
  CHECK(holds("kernels-eval", "_softmax.ll"));
}

namespace {

void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

}  // namespace

TEST_CASE("dagger eval scores a checkpoint, and several as an ensemble", "[cli][slow]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("eval");
  const std::string slice = " --train-limit 300 --val-limit 100 --test-limit 200";
  // Two members that differ: another seed, another learning rate.
  Outcome a = run_dagger("train shallow --epochs 2 --quiet --json --out " + dir.file("a") + slice);
  Outcome b = run_dagger("train shallow --epochs 1 --lr 0.01 --seed 7 --quiet --out " + dir.file("b") + slice);
  INFO(a.output << b.output);
  REQUIRE(a.status == 0);
  REQUIRE(b.status == 0);
  const double trained = last_json_line(a.output)["test"]["accuracy"].get<double>();
  CHECK(last_json_line(a.output)["build_commit"] == std::string(dagger::build_commit()));

  // The checkpoint alone scores what training reported on the same (seed-42) test slice.
  Outcome one = run_dagger("eval --json --test-limit 200 --checkpoint " + dir.file("a/checkpoint"));
  INFO(one.output);
  REQUIRE(one.status == 0);
  CHECK(last_json_line(one.output)["test"]["accuracy"].get<double>() == trained);
  // The same figures on two threads: the JIT's results do not depend on its thread count.
  Outcome two = run_dagger("eval --json --threads 2 --test-limit 200 --checkpoint " + dir.file("a/checkpoint"));
  INFO(two.output);
  REQUIRE(two.status == 0);
  CHECK(last_json_line(two.output)["test"] == last_json_line(one.output)["test"]);
  Outcome zero = run_dagger("eval --threads 0 --checkpoint " + dir.file("a/checkpoint"));
  CHECK(zero.status == 2);
  CHECK_THAT(zero.output, Catch::Contains("--threads"));

  Outcome both = run_dagger("eval --json --test-limit 200 --checkpoint " + dir.file("a/checkpoint") +
                            " --checkpoint " + dir.file("b/checkpoint"));
  INFO(both.output);
  REQUIRE(both.status == 0);
  CHECK_THAT(both.output, Catch::Contains("member 2: the ensemble corrects"));
  const nlohmann::json j = last_json_line(both.output);
  REQUIRE(j["members"].size() == 2);
  CHECK(j["members"][0]["test"]["accuracy"].get<double>() == trained);
  const auto right = [](const nlohmann::json& test) {
    return static_cast<int64_t>(std::lround(test["accuracy"].get<double>() * test["count"].get<double>()));
  };
  const int64_t ensemble_right = right(j["ensemble"]["test"]);
  CHECK(j["ensemble"]["test"]["count"] == 200);
  for (int m = 0; m < 2; ++m) {
    // What the ensemble gains over a member is what it corrects minus what it loses.
    const nlohmann::json& change = j["ensemble"]["member_changes"][m];
    CHECK(ensemble_right - right(j["members"][m]["test"]) ==
          change["corrected"].get<int64_t>() - change["lost"].get<int64_t>());
    CHECK(j["ensemble"]["any_member_right"].get<int64_t>() >= right(j["members"][m]["test"]));
  }
  CHECK(j["ensemble"]["disagreements"].get<int64_t>() > 0);

  Outcome missing = run_dagger("eval --checkpoint " + dir.file("a/checkpoint") + " --checkpoint " + dir.file("nope"));
  CHECK(missing.status == 2);
  CHECK_THAT(missing.output, Catch::Contains("--checkpoint: '" + dir.file("nope") + "': no such folder"));
}

TEST_CASE("dagger bench reports throughput, machine figures and kernels, and --check flags a drop", "[cli][bench][slow]") {
  dagger::testing::TempDir dir("bench");
  const std::string baseline = dir.file("baseline.json");
  const std::string quick = "bench shallow --steps 2 --repeats 1 --warmup 1 ";
  Outcome out = run_dagger(quick + "--json --save-baseline " + baseline);
  INFO(out.output);
  REQUIRE(out.status == 0);
  const nlohmann::json j = last_json_line(out.output);
  CHECK(j["machine"]["sgemm"]["peak_gflops"].get<double>() > 0);
  CHECK(j["machine"]["copy"]["gbps"].get<double>() > 0);
  // The CLI runs the library this test links: the build folder's.
  CHECK(j["machine"]["build"]["library"] == dagger::library_path());
  CHECK(j["machine"]["build"]["commit"] == std::string(dagger::build_commit()));
  REQUIRE(j["models"].size() == 1);
  const nlohmann::json& model = j["models"][0];
  CHECK(model["model"] == "shallow");
  CHECK(model["batch"] == 64);
  for (const char* phase : {"train", "inference"}) {
    CHECK(model[phase]["images_per_sec_median"].get<double>() > 0);
    CHECK(model[phase]["flops_per_step"].get<double>() > 0);
  }
  CHECK(model["compile_seconds"]["train"].get<double>() > 0);
  CHECK(model["compile_seconds"]["train_cpu"].get<double>() > 0);
  CHECK(model["memory"]["unplanned_upper_bound_bytes"].get<double>() > 0);
  CHECK(model["memory"]["peak_rss_bytes"].get<double>() > 0);
  REQUIRE(!model["kernels"].empty());
  bool contraction = false;
  for (const nlohmann::json& k : model["kernels"]) {
    CHECK(k["calls"].get<int64_t>() == 2);
    CHECK(!k["key"].get<std::string>().empty());
    contraction = contraction || k["contraction"].get<bool>();
  }
  CHECK(contraction);
  CHECK(j["config"]["optimizer"] == "adam");
  CHECK(model["optimizer"] == "adam");
  auto updated_by_product = [](const nlohmann::json& kernels) {  // momentum's update in the gradient's matmul
    return std::ranges::any_of(kernels, [](const nlohmann::json& k) {
      return k["name"].get<std::string>().find("matmul_mul_mul_sub") != std::string::npos;
    });
  };
  CHECK_FALSE(updated_by_product(model["kernels"]));

  // A baseline whose every kernel did a thousand times better than now: each is a regression.
  // Timings never enter the assertions, so the test cannot flake.
  nlohmann::json stored;
  std::ifstream(baseline) >> stored;
  REQUIRE(stored["runs"].size() == 1);
  nlohmann::json inflated = stored, deflated = stored;
  std::string some_kernel;
  for (auto& [key, k] : inflated["runs"][0]["kernels"].items()) {
    k["ratio"] = k["ratio"].get<double>() * 1000 + 1;
    k["share"] = 1.0;
    some_kernel = k["name"];
  }
  for (auto& [key, k] : deflated["runs"][0]["kernels"].items()) {
    k["ratio"] = 1e-12;
    k["share"] = 1.0;
  }
  write_json(dir.file("inflated.json"), inflated);
  write_json(dir.file("deflated.json"), deflated);
  Outcome worse = run_dagger(quick + "--check " + dir.file("inflated.json"));
  INFO(worse.output);
  CHECK(worse.status == 1);
  CHECK_THAT(worse.output, Catch::Contains("regression: shallow batch 64 threads 1: " + some_kernel));
  Outcome fine = run_dagger(quick + "--check " + dir.file("deflated.json"));
  INFO(fine.output);
  CHECK(fine.status == 0);
  CHECK_THAT(fine.output, Catch::Contains("0 regressions"));

  Outcome other = run_dagger(quick + "--batch 8 --check " + baseline);
  CHECK(other.status == 1);
  CHECK_THAT(other.output, Catch::Contains("no run of shallow at batch 8"));
  Outcome missing = run_dagger(quick + "--check " + dir.file("nope.json"));
  CHECK(missing.status == 1);
  CHECK_THAT(missing.output, Catch::Contains("cannot read baseline"));
  write_json(dir.file("other.json"), {{"runs", nlohmann::json::array()}});
  Outcome other_file = run_dagger(quick + "--check " + dir.file("other.json"));
  CHECK(other_file.status == 1);
  CHECK_THAT(other_file.output, Catch::Contains("is not a `dagger bench --save-baseline` file"));

  // Another optimizer's step: its own kernels, its own baseline runs beside Adam's.
  Outcome momentum = run_dagger(quick + "--optimizer momentum --json --save-baseline " + baseline);
  INFO(momentum.output);
  REQUIRE(momentum.status == 0);
  const nlohmann::json m = last_json_line(momentum.output);
  CHECK(m["config"]["optimizer"] == "momentum");
  CHECK(m["models"][0]["optimizer"] == "momentum");
  CHECK(updated_by_product(m["models"][0]["kernels"]));
  nlohmann::json both;
  std::ifstream(baseline) >> both;
  CHECK(both["runs"].size() == 2);
  // Nesterov's look-ahead: a step of its own, a third run (the momentum run above stays).
  Outcome nesterov = run_dagger(quick + "--optimizer momentum --nesterov --json --save-baseline " + baseline);
  INFO(nesterov.output);
  REQUIRE(nesterov.status == 0);
  const nlohmann::json n = last_json_line(nesterov.output);
  CHECK(n["config"]["nesterov"] == true);
  CHECK(n["models"][0]["nesterov"] == true);
  CHECK(updated_by_product(n["models"][0]["kernels"]));
  std::ifstream(baseline) >> both;
  CHECK(both["runs"].size() == 3);
  CHECK(run_dagger(quick + "--optimizer momentum --nesterov --check " + baseline + " --tolerance 0.99").status == 0);
  Outcome sgd = run_dagger(quick + "--optimizer sgd --check " + baseline);
  CHECK(sgd.status == 1);
  CHECK_THAT(sgd.output, Catch::Contains("no run of shallow at batch 64 with 1 thread(s) and sgd"));
  Outcome text = run_dagger(quick + "--optimizer sgd");
  CHECK(text.status == 0);
  CHECK_THAT(text.output, Catch::Contains("shallow: batch 64, 1 thread, jit executor, sgd step"));
  CHECK_THAT(run_dagger(quick + "--optimizer momentum --nesterov").output,
             Catch::Contains("shallow: batch 64, 1 thread, jit executor, momentum (Nesterov) step"));
  Outcome bogus = run_dagger(quick + "--optimizer rmsprop");
  CHECK(bogus.status == 2);
  CHECK_THAT(bogus.output,
             Catch::Contains("--optimizer: unknown optimizer 'rmsprop' (valid: sgd, momentum, adam, adamw)"));
}

TEST_CASE("out-of-range counts, seeds and empty selections are usage errors before any data is read", "[cli][usage]") {
  // --data names an empty folder: each case must fail on its flag (exit 2), not on the data (exit 1).
  const dagger::testing::TempDir data("no-data");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train mlp512 --patience -1", "--patience: '-1' is not a whole number of at least 0"},
      {"train mlp512 --batch 0", "--batch: '0' is not a whole number of at least 1"},
      {"train mlp512 --threads 0", "--threads: '0' is not a whole number from 1 to 1024"},
      {"train mlp512 --seed -1", "--seed: '-1' is not a whole number from 0 to 18446744073709551615"},
      {"train mlp512 --seed 18446744073709551616", "'18446744073709551616' is not a whole number"},
      {"train mlp512 --seed 1e23", "'1e23' is not a whole number"},
      {"train \"mlp1(-5,relu,0)\"", "units '-5' must be a whole number from 1 to 65536"},
      {"suite --only \"\"", "--only needs at least one experiment id"},
  };
  for (const auto& [args, message] : cases) {
    INFO(args);
    const auto out = run_dagger(args + " --data " + data.path.string());
    CHECK(out.status == 2);
    CHECK_THAT(out.output, Catch::Contains(message));
  }
  // The largest seed is a seed.
  CHECK(run_dagger("train mlp512 --seed 18446744073709551615 --data " + data.path.string()).status == 1);
  // A folder given as the model must hold a model text.
  const dagger::testing::TempDir empty("no-model");
  const auto no_model = run_dagger("train " + empty.path.string() + " --data " + data.path.string());
  CHECK(no_model.status == 2);
  CHECK_THAT(no_model.output, Catch::Contains("is a folder without a model.dagger"));
}
