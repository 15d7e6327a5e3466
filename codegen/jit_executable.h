#pragma once
/// The JIT-compiled plan: every node but the sources, reshapes (aliases of their operand) and
/// assigns is computed by the compiled kernel of its fusion group (codegen/fusion.h). Runs a
/// step with exactly the semantics of Executable::run.
#include <memory>
#include <string>
#include <vector>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit.h"
#include "dagger/graph/graph.h"
#include "dagger/runtime/executor.h"

namespace dagger {

struct JitOptions {
  /// Keep every kernel's IR before and after optimization and its assembly, for dump().
  bool keep_dumps = false;
  /// Floats per vector in the kernels; 0 (what every command uses) means the JIT target's
  /// (jit_target(), set by DAGGER_TARGET). Tests set it to exercise other widths' code shapes
  /// on any host: any power of two runs correctly anywhere (LLVM splits wide vectors), and
  /// gives the same bits as the target's width (codegen/partials.h).
  int vector_width = 0;
  /// Worker threads; each kernel's outer loop is split statically among them.
  int threads = 1;
  /// How 3x3 stride-1 same convolutions are computed: direct, Winograd, or the compiler's
  /// per-layer choice (codegen/conv_algo.h). Winograd rounds differently, so it changes bits.
  ConvAlgo conv_algo = ConvAlgo::automatic;
  /// Keep dense layers' packed weight matrices between runs (ExecutorOptions::keep_packed_parameters).
  bool keep_packed_parameters = false;
  /// The dense layers' products in float32 or bfloat16 (runtime/precision.h). bf16 needs a JIT
  /// target with AVX512_BF16 and vectors of 16 floats; the plan throws dagger::Error otherwise.
  Precision precision = Precision::f32;
  /// Fill the arena with NaN when the plan is made rather than zeros (for tests: a kernel that
  /// leaves part of its output unwritten then shows NaN there on the first run).
  bool poison_arena = false;
};

/// One compiled kernel of a plan.
struct KernelInfo {
  std::string name;
  std::vector<NodeId> nodes;  // the graph nodes it computes, ascending (a recomputed prologue's too)
  NodeId root = -1;           // the node whose value it stores
};

/// Where one kernel of a plan spent its time while profiling was on.
struct KernelProfile {
  std::string name;           // the kernel's name
  std::vector<NodeId> nodes;  // the graph nodes it computes, ascending (a recomputed prologue's too)
  NodeId root = -1;           // the node whose value it stores
  int64_t calls = 0;
  double seconds = 0;  // summed over the calls
};

class JitExecutable final : public Executable {
 public:
  JitExecutable(const Graph& g, const JitOptions& options);
  ~JitExecutable() override;

  StateMap run(const StateMap& feeds, StateMap& state) override;
  void parameters_changed() override;

  /// Floats per vector in the compiled kernels.
  int vector_width() const;
  /// The compiled kernels, in the order they run.
  const std::vector<KernelInfo>& kernels() const;
  /// The bytes of the arena that holds every kernel's output, placed by liveness.
  int64_t arena_bytes() const;
  /// The bytes of the packed weight matrices kept between runs (keep_packed_parameters).
  int64_t kept_packed_bytes() const;
  /// The bytes of each thread's scratch, where kernels pack their operands: the most any
  /// kernel of the plan needs.
  int64_t scratch_bytes() const;
  /// What compiling the plan cost: kernels, distinct kernels, disk-cache hits, seconds.
  const CompileStats& compile_stats() const;
  /// Every kernel's text at `stage`, each under a comment naming its nodes and their source
  /// lines. Throws dagger::Error unless compiled with keep_dumps.
  std::string dump(DumpStage stage) const;

  /// Times every kernel launch of run() from now on (off by default; the cost is two clock
  /// reads per step).
  void set_profiling(bool on);
  /// One entry per kernel, in the order they run.
  std::vector<KernelProfile> profile() const;
  /// Zeroes the calls and times profile() reports.
  void reset_profile();

 private:
  struct Plan;
  std::unique_ptr<Plan> plan_;
};

/// Compiles `g` (a verified graph) for the host CPU.
std::unique_ptr<JitExecutable> compile_jit(const Graph& g, const JitOptions& options = {});

/// The arena bytes compile_jit would plan for `g`, without compiling anything.
int64_t planned_arena_bytes(const Graph& g);

/// fuse(g) as compile_jit uses it: each group's `in_place` lists the assigned values its kernel
/// stores straight into the parameter or state tensor they replace (no arena space, no copy
/// when the step ends), where no later step reads the old value.
FusionPlan plan_fusion(const Graph& g);

/// The IR before or after optimization, or the assembly, of every kernel compile_jit makes for
/// `g` with convolutions computed as `conv_algo` says, dense layers' products in `precision`
/// and, with `keep_packed_parameters`, their packed weights kept between runs (as inference
/// plans keep them).
std::string dump_kernels(const Graph& g, DumpStage stage, ConvAlgo conv_algo = ConvAlgo::automatic,
                         Precision precision = Precision::f32, bool keep_packed_parameters = false);
/// The same for several stages from one compilation, in the order of `stages`.
std::vector<std::string> dump_kernels(const Graph& g, const std::vector<DumpStage>& stages, ConvAlgo conv_algo,
                                      Precision precision, bool keep_packed_parameters);

}  // namespace dagger
