#pragma once
/// The JIT engine: compiles LLVM modules for the host CPU at O3 and hands back function
/// pointers. LLVM stays behind a pimpl so that only codegen/ sources see its headers; the
/// emitters build a KernelModule (codegen/kernel_module.h, internal to codegen/) and add it here.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dagger {

/// LLVM's name for the host CPU, e.g. "znver3".
std::string host_cpu();
/// The host's enabled target features in LLVM spelling ("avx2", "fma", ...), sorted.
std::vector<std::string> host_features();

/// The machine the JIT compiles kernels for, chosen by $DAGGER_TARGET: "host" (the default)
/// compiles for this CPU and all its features; "x86-64-v3" (AVX2, 8-float vectors) and
/// "x86-64-v4" (AVX-512, 16-float vectors) for the x86-64 microarchitecture levels, so that a
/// host with AVX-512 can run the code an AVX2 machine runs.
struct JitTarget {
  std::string name;                   // "host", "x86-64-v3" or "x86-64-v4"
  std::string cpu;                    // the CPU LLVM compiles for: the host's name, or the level
  std::vector<std::string> features;  // the instruction-set features the code may use, sorted
  int vector_width = 4;               // floats per vector: 16 with avx512f, 8 with avx2 (or avx), else 4
};
/// The target $DAGGER_TARGET names (host when unset or empty). Throws dagger::Error, naming
/// DAGGER_TARGET, for an unknown value or a level whose instructions this CPU lacks.
JitTarget jit_target();
/// Why code for `target` cannot take its products in bfloat16 (Precision::bf16), as the end of
/// a sentence ("needs a CPU with AVX512_BF16, which ... lacks"), or "" when it can.
std::string bf16_refusal(const JitTarget& target);
/// The target called `name` ("host", "x86-64-v3", "x86-64-v4"), checked as jit_target() does.
JitTarget jit_target_named(const std::string& name);
/// jit_target_named on a host whose CPU is `cpu` with `features` (so tests can ask what
/// another machine would get).
JitTarget jit_target_for(const std::string& name, const std::string& cpu, const std::vector<std::string>& features);

/// Which text of a compiled kernel a dump shows.
enum class DumpStage { ir_before_opt, ir_after_opt, assembly };

/// An LLVM module under construction, opaque outside codegen/.
struct KernelModule;

/// The text of one compiled module, kept when the engine was asked to keep dumps.
struct ModuleText {
  std::string name;
  std::string ir_before_opt;
  std::string ir_after_opt;
  std::string assembly;
  const std::string& at(DumpStage stage) const;
};

/// Where compiled kernels are kept between runs: $DAGGER_CACHE_DIR if set ("off" disables
/// the cache), else $XDG_CACHE_HOME/dagger/kernels, else ~/.cache/dagger/kernels. See
/// codegen/kernel_cache.h for what makes a folder usable and how its size is capped.
std::string kernel_cache_dir();

/// The cap on the cache folder's size in bytes: $DAGGER_CACHE_MAX_MB MiB, 512 MiB when unset.
/// Throws dagger::Error naming DAGGER_CACHE_MAX_MB unless it is a whole number from 1 on.
uint64_t kernel_cache_max_bytes();

/// What the JIT tells perf about its kernels, from the environment variable DAGGER_PERF: none
/// (unset or "off"); "map", each kernel's address, size and names appended to /tmp/perf-PID.map
/// as it is linked, so that `perf report` / `perf top` attribute samples to kernels; "jitdump",
/// the map and also /tmp/jit-PID.dump, the kernels' code in perf's jitdump format, so that
/// `perf inject --jit` makes their instructions annotatable (docs/performance.md, "Profiling
/// kernels with perf"). The first Jit that asks opens the files for the whole process. Throws
/// on another value.
enum class PerfOutput { none, map, jitdump };
PerfOutput perf_output();

/// What compiling a plan's modules cost.
struct CompileStats {
  int modules = 0;         // modules added
  int unique = 0;          // distinct kernels among them (identical code is compiled once)
  int cache_hits = 0;      // distinct kernels loaded from the disk cache
  double seconds = 0;      // wall time of optimization, code generation and loading
};

/// One ORC LLJIT instance for a JitTarget. Not copyable; not safe to use from two threads at once.
///
/// Modules are queued by add() and compiled together by the first lookup(): optimized at O3
/// and turned into object code on up to `compile_threads` threads, each module in its own
/// context. A kernel's symbol is named by a hash of its IR (its bitcode, name aside) and of
/// everything else that shapes its code (code_settings()), so identical kernels in one plan
/// share one compiled function, and the object code is kept on disk under that hash (see
/// kernel_cache_dir) so that a later run loads it instead of invoking LLVM.
class Jit {
 public:
  /// keep_dumps: also record each module's IR before and after optimization and its assembly
  /// (the assembly costs a second code generation pass); such a Jit always compiles, so its
  /// dumps are complete. The target is jit_target()'s.
  explicit Jit(bool keep_dumps = false, int compile_threads = 0);
  /// The same for an explicit target.
  Jit(const JitTarget& target, bool keep_dumps, int compile_threads);
  ~Jit();
  Jit(const Jit&) = delete;
  Jit& operator=(const Jit&) = delete;

  /// A fresh, empty module whose triple and data layout are the host's.
  std::unique_ptr<KernelModule> new_module(const std::string& name) const;
  /// Verifies and queues the module, whose one external function must be named like the
  /// module. A module that fails verification is an internal error and throws dagger::Error
  /// with LLVM's diagnostic.
  void add(std::unique_ptr<KernelModule> module);
  /// The address of a compiled kernel, by its module's name (compiling what is queued first);
  /// throws dagger::Error when there is none.
  void* lookup(const std::string& name);
  template <class Fn>
  Fn* function(const std::string& name) {
    return reinterpret_cast<Fn*>(lookup(name));
  }

  bool keeps_dumps() const;
  /// The machine this Jit compiles for.
  const JitTarget& target() const;
  /// Everything besides a module's IR that shapes its object code, as text: the cache format,
  /// LLVM's version, the target machine (triple, CPU, features, code-generation level, code
  /// and relocation models, floating-point options) and the optimization pipeline LLVM runs.
  /// Part of every kernel's cache key.
  const std::string& code_settings() const;
  /// The recorded text of every added module, in the order they were added (after lookup).
  const std::vector<ModuleText>& texts() const;
  const CompileStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dagger
