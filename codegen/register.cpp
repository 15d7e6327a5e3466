// Makes the JIT the executor behind ExecutorKind::jit in every program that links libdagger.
// The runtime cannot call up into codegen/, so codegen registers its factory when the library
// is loaded; libdagger is one shared library, so this object is always part of it.
#include "dagger/codegen/jit_executable.h"

namespace dagger {
namespace {

std::unique_ptr<Executable> make_jit(const Graph& g, const ExecutorOptions& options) {
  JitOptions jit;
  jit.threads = options.threads;
  jit.conv_algo = options.conv_algo;
  jit.precision = options.precision;
  jit.keep_packed_parameters = options.keep_packed_parameters;
  return compile_jit(g, jit);
}

const bool jit_registered = (register_executor(ExecutorKind::jit, make_jit), true);

}  // namespace
}  // namespace dagger
