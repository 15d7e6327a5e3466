#include "dagger/runtime/executor.h"

#include <fmt/format.h>

#include "dagger/runtime/interpreter.h"

namespace dagger {

ExecutorKind executor_kind(const std::string& name) {
  if (name == "reference") return ExecutorKind::reference;
  if (name == "jit") return ExecutorKind::jit;
  throw Error(fmt::format("unknown executor '{}' (valid: reference, jit)", name));
}

std::string executor_name(ExecutorKind kind) {
  switch (kind) {
    case ExecutorKind::reference: return "reference";
    case ExecutorKind::jit: return "jit";
  }
  return "?";
}

ConvAlgo conv_algo(const std::string& name) {
  if (name == "direct") return ConvAlgo::direct;
  if (name == "winograd") return ConvAlgo::winograd;
  if (name == "winograd4") return ConvAlgo::winograd4;
  if (name == "auto") return ConvAlgo::automatic;
  throw Error(fmt::format("unknown convolution algorithm '{}' (valid: direct, winograd, winograd4, auto)", name));
}

std::string conv_algo_name(ConvAlgo algo) {
  switch (algo) {
    case ConvAlgo::direct: return "direct";
    case ConvAlgo::winograd: return "winograd";
    case ConvAlgo::winograd4: return "winograd4";
    case ConvAlgo::automatic: return "auto";
  }
  return "?";
}

Precision precision(const std::string& name) {
  if (name == "f32") return Precision::f32;
  if (name == "bf16") return Precision::bf16;
  throw Error(fmt::format("unknown precision '{}' (valid: f32, bf16)", name));
}

std::string precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "f32"; }

namespace {

/// Runs the graph node by node with the interpreter.
class ReferenceExecutable final : public Executable {
 public:
  explicit ReferenceExecutable(const Graph& g) : graph_(g) {}
  StateMap run(const StateMap& feeds, StateMap& state) override { return interpret<float>(graph_, feeds, state); }

 private:
  Graph graph_;
};

}  // namespace

namespace {
std::map<ExecutorKind, ExecutorFactory>& factories() {
  static std::map<ExecutorKind, ExecutorFactory> registered;
  return registered;
}
}  // namespace

void register_executor(ExecutorKind kind, ExecutorFactory factory) { factories()[kind] = factory; }

std::unique_ptr<Executable> make_executable(const Graph& g, ExecutorKind kind, const ExecutorOptions& options) {
  if (kind == ExecutorKind::reference) return std::make_unique<ReferenceExecutable>(g);
  auto it = factories().find(kind);
  if (it == factories().end())
    throw Error(fmt::format("the {} executor is not linked into this program", executor_name(kind)));
  if (options.threads < 1) throw Error(fmt::format("thread count {} is not positive", options.threads));
  return it->second(g, options);
}

}  // namespace dagger
