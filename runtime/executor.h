#pragma once
/// An executor turns a graph into something that runs a step: the reference interpreter
/// today, the JIT-compiled plan when codegen is built. Both read and write the same state map.
#include <map>
#include <memory>
#include <string>

#include "graph/graph.h"
#include "runtime/tensor.h"

namespace dagger {

using StateMap = std::map<std::string, Tensor>;

enum class ExecutorKind { reference };

/// "reference" -> ExecutorKind::reference; throws dagger::Error listing the valid names.
ExecutorKind executor_kind(const std::string& name);
std::string executor_name(ExecutorKind kind);

class Executable {
 public:
  virtual ~Executable() = default;
  /// Runs one step: reads feeds and state, applies the graph's assigns to state, returns its outputs.
  virtual StateMap run(const StateMap& feeds, StateMap& state) = 0;
};

std::unique_ptr<Executable> make_executable(const Graph& g, ExecutorKind kind);

}  // namespace dagger
