#pragma once
/// Which ops the JIT-vs-interpreter tests (tests/codegen) cover. Each test file registers the
/// ops its cases loop over when the test binary starts (namespace-scope constants), so the
/// list exists whichever test case runs; the op table test (tests/runtime/test_op_table.cpp)
/// fails for any op of graph/ops.def that no JIT test registered.
#include <set>
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger::testing {

/// Every op some JIT test registered so far.
inline std::set<Op>& jit_tested_ops() {
  static std::set<Op> ops;
  return ops;
}

/// Registers `ops` as compared against the interpreter by a JIT test and returns them, so the
/// test can loop over exactly what it registered: `const auto kOps = jit_tests({...});`.
inline std::vector<Op> jit_tests(std::vector<Op> ops) {
  jit_tested_ops().insert(ops.begin(), ops.end());
  return ops;
}

}  // namespace dagger::testing
