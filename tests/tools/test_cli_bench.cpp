// `dagger bench`'s external yardstick: OpenBLAS's SGEMM through PyTorch, run as a child by
// $DAGGER_PYTHON. Fake Pythons stand in for PyTorch, so the tests need none and cannot flake
// on timings: a figure is parsed and every contraction is measured against it, and every way of
// not having one says why.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "support.h"
#include "tools/cli_support.h"

using dagger::testing::last_json_line;
using dagger::testing::Outcome;
using dagger::testing::run_dagger;

namespace {

const std::string kQuick = "bench shallow --steps 1 --repeats 1 --warmup 0 --threads 2 ";

/// An executable shell script at `path` with `body`.
std::string write_script(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  chmod(path.c_str(), 0755);
  return path;
}

}  // namespace

TEST_CASE("dagger bench measures its contractions against the BLAS SGEMM the child reports", "[cli][bench][slow]") {
  dagger::testing::TempDir dir("bench-blas");
  // Answers as bench/torch_bench.py --sgemm does, with a round figure, after checking its arguments.
  const std::string python = write_script(
      dir.file("python"),
      "case \"$*\" in *torch_bench.py\\ --sgemm\\ 1024\\ --threads\\ 2) ;; *) echo \"bad args: $*\"; exit 3;; esac\n"
      "[ -z \"$OPENBLAS_CORETYPE\" ] || { echo 'OPENBLAS_CORETYPE leaked'; exit 4; }\n"
      "echo 'some warning on stderr' >&2\n"
      "echo '{\"torch\": \"9.9\", \"blas\": \"open\", \"sgemm\": {\"n\": 1024, \"gflops\": 100.0}}'");
  Outcome out = run_dagger(kQuick + "--json", "env OPENBLAS_CORETYPE=Haswell DAGGER_PYTHON=" + python + " ");
  INFO(out.output);
  REQUIRE(out.status == 0);
  const nlohmann::json j = last_json_line(out.output);
  const nlohmann::json& blas = j["machine"]["blas_sgemm"];
  CHECK(blas["gflops"].get<double>() == 100.0);
  CHECK(blas["library"] == "torch 9.9, BLAS open");
  CHECK(j["machine"]["sgemm"]["rounds"] == 3);
  for (const char* plan : {"kernels", "inference_kernels"}) {
    INFO(plan);
    int contractions = 0;
    for (const nlohmann::json& k : j["models"][0][plan]) {
      if (!k["contraction"].get<bool>()) {
        CHECK(k["ratio_of_blas_sgemm"].is_null());
        continue;
      }
      ++contractions;
      CHECK(k["ratio_of_blas_sgemm"].get<double>() == Approx(k["gflops"].get<double>() / 100.0));
    }
    CHECK(contractions > 0);
  }
  // shallow's one layer has 10 columns: one panel, split by rows over the 2 threads, so its
  // inference plan keeps no packed weights (emit_matmul.h), and says so.
  CHECK(j["models"][0]["memory"]["inference_kept_packed_bytes"] == 0);

  Outcome text = run_dagger(kQuick, "env DAGGER_PYTHON=" + python + " ");
  CHECK_THAT(text.output, Catch::Contains("SGEMM 1024^3 through PyTorch's BLAS (torch 9.9, BLAS open):") &&
                              Catch::Contains("100.0 GFLOP/s") && Catch::Contains("of BLAS") &&
                              Catch::Contains("kernel (inference)"));
}

TEST_CASE("dagger bench says why the BLAS SGEMM was not measured", "[cli][bench][slow]") {
  dagger::testing::TempDir dir("bench-blas");
  struct Case {
    std::string env, why;
  };
  const std::string no_torch = write_script(dir.file("python-without-torch"), "exec /usr/bin/python3 -S \"$@\"");
  const std::string junk = write_script(dir.file("python-junk"), "echo 'hello'");
  const std::string fails = write_script(dir.file("python-fails"), "exit 7");
  const std::vector<Case> cases = {
      {"env DAGGER_PYTHON=" + dir.file("absent") + " ",
       "cannot run " + dir.file("absent") + " (No such file or directory); set DAGGER_PYTHON"},
      {"env -u DAGGER_PYTHON PATH=" + dir.file("empty") + " ", "cannot run python3 (No such file or directory)"},
      {"env DAGGER_PYTHON=" + no_torch + " ", "torch_bench: PyTorch is not installed for"},
      {"env DAGGER_PYTHON=" + junk + " ", "printed no SGEMM figure: 'hello'"},
      {"env DAGGER_PYTHON=" + fails + " ", "failed (exit status 7)"}};
  // An index, not the cases: each run of the test case has a TempDir of its own.
  const Case& c = cases[static_cast<size_t>(GENERATE(range(0, 5)))];
  Outcome text = run_dagger(kQuick, c.env);
  INFO(text.output);
  CHECK(text.status == 0);
  CHECK_THAT(text.output,
             Catch::Contains("SGEMM through PyTorch's BLAS (OpenBLAS): not measured: ") && Catch::Contains(c.why));
  Outcome json = run_dagger(kQuick + "--json", c.env);
  REQUIRE(json.status == 0);
  const nlohmann::json blas = last_json_line(json.output)["machine"]["blas_sgemm"];
  CHECK(blas["gflops"].is_null());
  CHECK_THAT(blas["not_measured"].get<std::string>(), Catch::Contains(c.why));
  for (const nlohmann::json& k : last_json_line(json.output)["models"][0]["kernels"])
    CHECK(k["ratio_of_blas_sgemm"].is_null());
}
