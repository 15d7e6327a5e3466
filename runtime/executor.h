#pragma once
/// An executor turns a graph into something that runs a step: the reference interpreter
/// today, the JIT-compiled plan when codegen is built. Both read and write the same state map.
#include <map>
#include <memory>
#include <string>

#include "dagger/graph/graph.h"
#include "dagger/runtime/conv_algo.h"
#include "dagger/runtime/precision.h"
#include "dagger/runtime/tensor.h"

namespace dagger {

using StateMap = std::map<std::string, Tensor>;

enum class ExecutorKind { reference, jit };

/// "reference" -> ExecutorKind::reference; throws dagger::Error listing the valid names.
ExecutorKind executor_kind(const std::string& name);
std::string executor_name(ExecutorKind kind);

class Executable {
 public:
  virtual ~Executable() = default;
  /// Runs one step: reads feeds and state, applies the graph's assigns to state, returns its outputs.
  virtual StateMap run(const StateMap& feeds, StateMap& state) = 0;
  /// Tells a plan built with ExecutorOptions::keep_packed_parameters that the parameters'
  /// values may have changed since its last run, so the next run packs them again. Others
  /// ignore it.
  virtual void parameters_changed() {}
};

/// How an executable runs. The reference interpreter ignores threads; the JIT splits each
/// kernel's parallel items statically over `threads` workers, and every output element is
/// computed by one item in a fixed order, so results do not depend on the thread count.
struct ExecutorOptions {
  int threads = 1;
  ConvAlgo conv_algo = ConvAlgo::automatic;  ///< the JIT's; the interpreter ignores it
  /// The JIT's, for plans that only read their parameters (inference): a dense layer's weight
  /// matrix is packed into the microkernel's panels at the first run and kept, not packed again
  /// by every run. The plan packs again after parameters_changed(), or when a parameter's data
  /// is at another address than when it packed; a value changed at the same address without
  /// parameters_changed() is not seen, and runs go on computing with the kept copy. The results
  /// are the same bits as without it. Parameters the graph assigns are never kept.
  bool keep_packed_parameters = false;
  /// The JIT's (runtime/precision.h); bf16 throws dagger::Error on a CPU without AVX512_BF16.
  /// The interpreter computes in float32 whatever this says.
  Precision precision = Precision::f32;
};

std::unique_ptr<Executable> make_executable(const Graph& g, ExecutorKind kind, const ExecutorOptions& options = {});

/// Builds an executable of one kind. The runtime knows only the reference interpreter; the
/// JIT lives in codegen/, which depends on the runtime, so codegen registers its factory when
/// libdagger is loaded (codegen/register.cpp) instead of the runtime reaching up a layer.
using ExecutorFactory = std::unique_ptr<Executable> (*)(const Graph&, const ExecutorOptions&);
void register_executor(ExecutorKind kind, ExecutorFactory factory);

}  // namespace dagger
