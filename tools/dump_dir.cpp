// `--dump-dir`: every stage of a run's training and inference plans written to files with
// stable names.
#include <fmt/format.h>

#include <filesystem>
#include <tuple>
#include <vector>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/graph/printer.h"
#include "dagger/runtime/atomic_file.h"
#include "tools/cli.h"

namespace dagger::cli {

namespace {

void write(const std::filesystem::path& path, const std::string& text) { write_file_atomically(path.string(), text); }

}  // namespace

/// Splits a kernel dump into (kernel name, text) at its "==== kernel NAME ====" headers, which
/// start with the stage's comment character (";" in IR, "#" in assembly).
std::vector<std::pair<std::string, std::string>> per_kernel(const std::string& dump) {
  if (dump.empty()) return {};
  const std::string marker = dump.substr(0, 1) + " ==== kernel ";
  std::vector<std::pair<std::string, std::string>> kernels;
  for (size_t at = dump.find(marker); at != std::string::npos;) {
    size_t next = dump.find(marker, at + marker.size());
    size_t name_end = dump.find(' ', at + marker.size());
    kernels.emplace_back(dump.substr(at + marker.size(), name_end - at - marker.size()), dump.substr(at, next - at));
    at = next;
  }
  return kernels;
}

void write_dump_dir(const std::string& dir, const ModelFn& model, int64_t batch, const OptimizerConfig& opt,
                    const std::string& title, const Shape& input_shape, int64_t classes, double label_smoothing,
                    ConvAlgo conv_algo, Precision precision) {
  namespace fs = std::filesystem;
  fs::create_directories(fs::path(dir) / "kernels");
  fs::create_directories(fs::path(dir) / "kernels-eval");
  Graph forward = build_forward(model, batch, Mode::train, input_shape, classes, label_smoothing);
  Graph step = build_training_step(model, batch, opt, input_shape, classes, label_smoothing);
  // The inference plan validation and evaluation run (Trainer::eval_plan): the eval graph, its
  // dense layers keeping their packed weights between runs.
  Graph eval = build_inference(model, batch, input_shape, classes);
  write(fs::path(dir) / "graph.txt", print_text(forward));
  write(fs::path(dir) / "graph.dot", print_dot(forward, title + " graph"));
  write(fs::path(dir) / "grad.txt", print_text(step));
  write(fs::path(dir) / "grad.dot", print_dot(step, title + " grad"));
  write(fs::path(dir) / "eval.txt", print_text(eval));
  write(fs::path(dir) / "eval.dot", print_dot(eval, title + " eval"));
  write(fs::path(dir) / "fused.txt", describe_fusion(step, plan_fusion(step), false, conv_algo));
  write(fs::path(dir) / "fused-eval.txt", describe_fusion(eval, plan_fusion(eval), false, conv_algo));
  // Each plan compiled once, its three stages written from that compilation.
  const std::vector<DumpStage> stages = {DumpStage::ir_before_opt, DumpStage::ir_after_opt, DumpStage::assembly};
  const std::vector<std::string> suffixes = {".ll", ".opt.ll", ".s"};
  for (const auto& [graph, folder, keep_packed] :
       {std::tuple<const Graph&, const char*, bool>{step, "kernels", false}, {eval, "kernels-eval", true}}) {
    const std::vector<std::string> dumps = dump_kernels(graph, stages, conv_algo, precision, keep_packed);
    for (size_t s = 0; s < stages.size(); ++s)
      for (const auto& [name, text] : per_kernel(dumps[s])) write(fs::path(dir) / folder / (name + suffixes[s]), text);
  }
}

}  // namespace dagger::cli
