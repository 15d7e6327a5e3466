#include "runtime/executor.h"

#include <fmt/format.h>

#include "runtime/interpreter.h"

namespace dagger {

ExecutorKind executor_kind(const std::string& name) {
  if (name == "reference") return ExecutorKind::reference;
  throw Error(fmt::format("unknown executor '{}' (valid: reference)", name));
}

std::string executor_name(ExecutorKind kind) {
  switch (kind) {
    case ExecutorKind::reference: return "reference";
  }
  return "?";
}

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

std::unique_ptr<Executable> make_executable(const Graph& g, ExecutorKind kind) {
  switch (kind) {
    case ExecutorKind::reference: return std::make_unique<ReferenceExecutable>(g);
  }
  throw Error("unknown executor");
}

}  // namespace dagger
