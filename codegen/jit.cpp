#include "dagger/codegen/jit.h"

#include <fmt/format.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MD5.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SmallVectorMemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/Transforms/Utils/Cloning.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "dagger/codegen/kernel_cache.h"
#include "dagger/codegen/kernel_module.h"
#include "dagger/graph/error.h"

namespace dagger {

namespace {

void init_llvm_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

std::string message(llvm::Error err) { return llvm::toString(std::move(err)); }

template <class T>
T take(llvm::Expected<T> value, const char* what) {
  if (!value) throw Error(fmt::format("JIT: {}: {}", what, message(value.takeError())));
  return std::move(*value);
}

/// A builder of target machines for `target`, generating code at the highest level.
llvm::orc::JITTargetMachineBuilder machine_for(const JitTarget& target) {
  init_llvm_once();
  llvm::orc::JITTargetMachineBuilder jtmb =
      take(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host");
  if (target.name != "host") {  // a level: its CPU implies its features, and only those
    jtmb.setCPU(target.cpu);
    jtmb.getFeatures() = llvm::SubtargetFeatures();
  }
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return jtmb;
}

std::string print(const llvm::Module& m) {
  std::string text;
  llvm::raw_string_ostream os(text);
  m.print(os, nullptr);
  return text;
}

/// The new pass manager's standard O3 pipeline for a target machine, LLVM's default tuning.
/// Kernels are optimized by it and its printed form is part of the cache key, so the key
/// follows whatever the pipeline is.
struct Pipeline {
  llvm::PassInstrumentationCallbacks names;  // pass class names -> pipeline names, for text()
  llvm::PassBuilder builder;
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::ModulePassManager passes;

  explicit Pipeline(llvm::TargetMachine& tm) : builder(&tm, llvm::PipelineTuningOptions(), std::nullopt, &names) {
    builder.registerModuleAnalyses(mam);
    builder.registerCGSCCAnalyses(cgam);
    builder.registerFunctionAnalyses(fam);
    builder.registerLoopAnalyses(lam);
    builder.crossRegisterProxies(lam, fam, cgam, mam);
    passes = builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  }
  void run(llvm::Module& m) { passes.run(m, mam); }
  std::string text() {
    std::string out;
    llvm::raw_string_ostream os(out);
    passes.printPipeline(os, [&](llvm::StringRef cls) {
      const llvm::StringRef name = names.getPassNameForClassName(cls);
      return name.empty() ? cls : name;
    });
    return out;
  }
};

/// Runs the kernels' optimization pipeline on `m`.
void optimize(llvm::Module& m, llvm::TargetMachine& tm) { Pipeline(tm).run(m); }

/// The target machine's settings that shape code, one per line. TargetOptions has no printer:
/// the fields listed are those that change floating-point results or generated code; a new
/// option the JIT sets must be added here.
std::string machine_settings(const llvm::TargetMachine& tm) {
  const llvm::TargetOptions& o = tm.Options;
  std::string features;
  const llvm::MCSubtargetInfo& sti = *tm.getMCSubtargetInfo();
  for (const llvm::SubtargetFeatureKV& kv : sti.getAllProcessorFeatures())
    if (sti.getFeatureBits().test(kv.Value)) features += std::string(kv.Key) + ",";
  return fmt::format(
      "triple {}\ndata layout {}\ncpu {}\nrequested features {}\nsubtarget features {}\n"
      "codegen opt level {}\nrelocation model {}\ncode model {}\n"
      "fp: unsafe {} no-infs {} no-nans {} no-trapping {} no-signed-zeros {} approx-func {} "
      "sign-dependent-rounding {} fp-contract {} float-abi {} denormal {} denormal-f32 {}\n"
      "isel: fast {} global {}; tail-call-opt {} trap-unreachable {} ipra {} outliner {} "
      "function-sections {} data-sections {} emulated-tls {} thread-model {}\n",
      tm.getTargetTriple().str(), tm.createDataLayout().getStringRepresentation(), tm.getTargetCPU().str(),
      tm.getTargetFeatureString().str(), features, static_cast<int>(tm.getOptLevel()),
      static_cast<int>(tm.getRelocationModel()), static_cast<int>(tm.getCodeModel()), unsigned(o.UnsafeFPMath),
      unsigned(o.NoInfsFPMath), unsigned(o.NoNaNsFPMath), unsigned(o.NoTrappingFPMath), unsigned(o.NoSignedZerosFPMath),
      unsigned(o.ApproxFuncFPMath), unsigned(o.HonorSignDependentRoundingFPMathOption),
      static_cast<int>(o.AllowFPOpFusion), static_cast<int>(o.FloatABIType), o.getRawFPDenormalMode().str(),
      o.getRawFP32DenormalMode().str(), unsigned(o.EnableFastISel), unsigned(o.EnableGlobalISel),
      unsigned(o.GuaranteedTailCallOpt), unsigned(o.TrapUnreachable), unsigned(o.EnableIPRA),
      unsigned(o.EnableMachineOutliner), unsigned(o.FunctionSections), unsigned(o.DataSections),
      unsigned(o.EmulatedTLS), static_cast<int>(o.ThreadModel));
}

/// Assembly of a copy of `m` (code generation rewrites the IR it runs on).
std::string assembly(const llvm::Module& m, llvm::TargetMachine& tm) {
  std::unique_ptr<llvm::Module> copy = llvm::CloneModule(m);
  llvm::SmallString<4096> text;
  llvm::raw_svector_ostream os(text);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::AssemblyFile))
    throw Error("JIT: the host target cannot emit assembly");
  pm.run(*copy);
  return std::string(text.str());
}

}  // namespace

std::string host_cpu() { return llvm::sys::getHostCPUName().str(); }

std::vector<std::string> host_features() {
  std::vector<std::string> out;
  for (const auto& entry : llvm::sys::getHostCPUFeatures())
    if (entry.getValue()) out.push_back(entry.getKey().str());
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

/// An x86-64 microarchitecture level DAGGER_TARGET may name, and the host features its code
/// needs (the vector ones; the older ones come with them on every such CPU).
struct Level {
  const char* name;
  std::vector<std::string> needs;
};

const std::vector<Level>& levels() {
  static const std::vector<Level> all = {
      {"x86-64-v3", {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe"}},
      {"x86-64-v4",
       {"avx", "avx2", "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "bmi", "bmi2", "f16c", "fma", "lzcnt",
        "movbe"}},
  };
  return all;
}

bool has(const std::vector<std::string>& features, const char* f) {
  return std::find(features.begin(), features.end(), f) != features.end();
}

}  // namespace

std::string bf16_refusal(const JitTarget& target) {
  if (has(target.features, "avx512bf16")) return "";
  return target.name == "host" ? fmt::format("needs a CPU with AVX512_BF16, which this CPU ({}) lacks", target.cpu)
                               : fmt::format("needs AVX512_BF16, which DAGGER_TARGET={} excludes", target.name);
}

JitTarget jit_target_named(const std::string& name) { return jit_target_for(name, host_cpu(), host_features()); }

JitTarget jit_target_for(const std::string& name, const std::string& cpu, const std::vector<std::string>& features) {
  JitTarget t{name, cpu, features};
  if (name != "host") {
    auto level = std::find_if(levels().begin(), levels().end(), [&](const Level& l) { return name == l.name; });
    if (level == levels().end())
      throw Error(fmt::format("DAGGER_TARGET={}: unknown target (valid: host, x86-64-v3, x86-64-v4)", name));
    std::vector<std::string> missing;
    for (const std::string& f : level->needs)
      if (!has(t.features, f.c_str())) missing.push_back(f);
    if (!missing.empty())
      throw Error(fmt::format("DAGGER_TARGET={}: this CPU ({}) lacks {}, which that level needs", name, t.cpu,
                              fmt::join(missing, ", ")));
    t.cpu = name;
    t.features = level->needs;
  }
  t.vector_width = has(t.features, "avx512f") ? 16 : has(t.features, "avx2") || has(t.features, "avx") ? 8 : 4;
  return t;
}

JitTarget jit_target() {
  const char* name = std::getenv("DAGGER_TARGET");
  return jit_target_named(name && *name ? name : "host");
}

const std::string& ModuleText::at(DumpStage stage) const {
  switch (stage) {
    case DumpStage::ir_before_opt:
      return ir_before_opt;
    case DumpStage::ir_after_opt:
      return ir_after_opt;
    case DumpStage::assembly:
      return assembly;
  }
  return assembly;
}

PerfOutput perf_output() {
  const char* value = std::getenv("DAGGER_PERF");
  const std::string name = value ? value : "";
  if (name.empty() || name == "off") return PerfOutput::none;
  if (name == "map") return PerfOutput::map;
  if (name == "jitdump") return PerfOutput::jitdump;
  throw Error(fmt::format("DAGGER_PERF={}: unknown output (valid: off, map, jitdump)", name));
}

std::string kernel_cache_dir() {
  if (const char* dir = std::getenv("DAGGER_CACHE_DIR")) return std::string(dir) == "off" ? "" : dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/dagger/kernels";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/dagger/kernels";
  return "";
}

namespace {

/// Bumped whenever the way kernels are compiled or cached changes in a way code_settings()
/// does not show.
constexpr const char* kCacheFormat = "dagger-kernel-v3";

/// One queued module and what compiling it produced.
struct Pending {
  std::unique_ptr<KernelModule> km;
  std::string name;    // the module's (and its entry's) readable name
  std::string symbol;  // "dk_" + kernel_digest(code settings, its IR)
  size_t text = 0;     // index into texts, when dumps are kept
  std::unique_ptr<llvm::MemoryBuffer> object;
  std::string error;
};

/// `text` with every occurrence of `name` replaced by "kernel".
std::string with_name_replaced(std::string text, const std::string& name) {
  const std::string neutral = "kernel";
  for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + neutral.size()))
    text.replace(at, name.size(), neutral);
  return text;
}

/// The MD5 of `settings` and of the module's bitcode, its own name replaced by "kernel" (in
/// its global names and its source file name) so that identical kernels hash alike.
/// Bitcode serializes the whole module (the reader rebuilds it from nothing else), so a digest
/// of it holds everything its text would, and writing it costs a fraction of printing that
/// text, which formats every constant in decimal and tracks columns.
std::string kernel_digest(const std::string& settings, llvm::Module& m, const std::string& name) {
  std::vector<std::pair<llvm::GlobalValue*, std::string>> renamed;  // restored below
  for (llvm::GlobalValue& value : m.global_values()) {
    const std::string old_name = value.getName().str();
    if (old_name.find(name) == std::string::npos) continue;
    value.setName(with_name_replaced(old_name, name));
    renamed.emplace_back(&value, old_name);
  }
  const std::string source = m.getSourceFileName();
  m.setSourceFileName(with_name_replaced(source, name));
  llvm::SmallVector<char, 0> bitcode;
  llvm::BitcodeWriter writer(bitcode);
  writer.writeModule(m);
  writer.writeStrtab();
  for (auto& [value, old_name] : renamed) value->setName(old_name);
  m.setSourceFileName(source);

  llvm::MD5 md5;
  md5.update(settings);
  md5.update(llvm::StringRef("\n"));
  md5.update(llvm::StringRef(bitcode.data(), bitcode.size()));
  llvm::MD5::MD5Result result;
  md5.final(result);
  return result.digest().str().str();
}

/// Object code the host's linker will accept: anything else in the cache is ignored.
bool valid_object(const llvm::MemoryBuffer& buffer) {
  auto object = llvm::object::ObjectFile::createObjectFile(buffer.getMemBufferRef());
  if (!object) {
    llvm::consumeError(object.takeError());
    return false;
  }
  return true;
}

}  // namespace

/// Where perf finds the kernels (PerfOutput), one per process: /tmp/perf-PID.map, and with
/// jitdump also /tmp/jit-PID.dump (the format of perf's tools/perf/Documentation/
/// jitdump-specification.txt: a header, then a JIT_CODE_LOAD record with the code of each
/// kernel; the file stays mapped, which is how `perf inject --jit` finds it).
class PerfFiles {
 public:
  static PerfFiles& get(PerfOutput output) {
    static PerfFiles files(output);
    return files;
  }

  /// Appends one kernel: its address, code and name.
  void add(uint64_t address, llvm::ArrayRef<char> code, const std::string& name) {
    std::lock_guard lock(mutex_);
    const std::string line = fmt::format("{:x} {:x} {}\n", address, code.size(), name);
    write(map_, line.data(), line.size(), "/tmp/perf-PID.map");
    if (!dump_) return;
    struct {
      uint32_t id = 0;  // JIT_CODE_LOAD
      uint32_t total_size;
      uint64_t timestamp;
      uint32_t pid, tid;
      uint64_t vma, code_addr, code_size, code_index;
    } record;
    record.total_size = static_cast<uint32_t>(sizeof(record) + name.size() + 1 + code.size());
    record.timestamp = now();
    record.pid = static_cast<uint32_t>(::getpid());
    record.tid = static_cast<uint32_t>(::gettid());
    record.vma = record.code_addr = address;
    record.code_size = code.size();
    record.code_index = index_++;
    write(dump_, &record, sizeof(record), "/tmp/jit-PID.dump");
    write(dump_, name.c_str(), name.size() + 1, "/tmp/jit-PID.dump");
    write(dump_, code.data(), code.size(), "/tmp/jit-PID.dump");
  }

 private:
  explicit PerfFiles(PerfOutput output) {
    const int pid = ::getpid();
    map_ = open_file(fmt::format("/tmp/perf-{}.map", pid), "a");
    if (output != PerfOutput::jitdump) return;
    const std::string path = fmt::format("/tmp/jit-{}.dump", pid);
    dump_ = open_file(path, "w+");
    struct {
      uint32_t magic = 0x4A695444;  // "JiTD"
      uint32_t version = 1;
      uint32_t total_size = 40;
      uint32_t elf_mach = 62;  // EM_X86_64
      uint32_t pad = 0;
      uint32_t pid;
      uint64_t timestamp;
      uint64_t flags = 0;  // timestamps are CLOCK_MONOTONIC (perf record -k mono)
    } header;
    header.pid = static_cast<uint32_t>(pid);
    header.timestamp = now();
    write(dump_, &header, sizeof(header), path.c_str());
    std::fflush(dump_);
    // perf inject learns of the file from this mapping's event in perf.data.
    const long page = ::sysconf(_SC_PAGESIZE);
    if (::mmap(nullptr, static_cast<size_t>(page), PROT_READ | PROT_EXEC, MAP_PRIVATE, ::fileno(dump_), 0) ==
        MAP_FAILED)
      throw Error(fmt::format("DAGGER_PERF=jitdump: cannot map {} for perf to see", path));
  }

  static std::FILE* open_file(const std::string& path, const char* mode) {
    std::FILE* f = std::fopen(path.c_str(), mode);
    if (!f) throw Error(fmt::format("DAGGER_PERF: cannot open {}", path));
    return f;
  }
  static void write(std::FILE* f, const void* data, size_t size, const char* what) {
    if (std::fwrite(data, 1, size, f) != size || std::fflush(f) != 0)
      throw Error(fmt::format("DAGGER_PERF: cannot write {}", what));
  }
  static uint64_t now() {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_nsec);
  }

  std::mutex mutex_;
  std::FILE* map_ = nullptr;
  std::FILE* dump_ = nullptr;
  uint64_t index_ = 0;
};

/// Gives PerfFiles each kernel the JIT links, with its code as linked, once its address is
/// final. A kernel's symbol is a digest of its code (Jit::add), so perf names it by the kernels
/// it serves, "k12_matmul_add_relu/k40_matmul_add_relu", as `dagger ir --stage fused` prints them.
class PerfPlugin : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  PerfPlugin(PerfFiles& files, const std::map<std::string, std::string>& symbol_of)
      : files_(files), symbol_of_(symbol_of) {}

  void modifyPassConfig(llvm::orc::MaterializationResponsibility&, llvm::jitlink::LinkGraph&,
                        llvm::jitlink::PassConfiguration& config) override {
    config.PostFixupPasses.push_back([this](llvm::jitlink::LinkGraph& graph) { return record(graph); });
  }
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility&) override { return llvm::Error::success(); }
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey) override {
    return llvm::Error::success();
  }
  void notifyTransferringResources(llvm::orc::JITDylib&, llvm::orc::ResourceKey, llvm::orc::ResourceKey) override {}

 private:
  llvm::Error record(llvm::jitlink::LinkGraph& graph) {
    try {
      for (const llvm::jitlink::Symbol* symbol : graph.defined_symbols()) {
        if (!symbol->hasName() || !symbol->isCallable() || symbol->getSize() == 0) continue;
        const std::string name = symbol->getName().str();
        std::string readable;
        for (const auto& [kernel, compiled] : symbol_of_)
          if (compiled == name) readable += (readable.empty() ? "" : "/") + kernel;
        const llvm::ArrayRef<char> content = symbol->getBlock().getContent();
        files_.add(symbol->getAddress().getValue(), content.slice(symbol->getOffset(), symbol->getSize()),
                   readable.empty() ? name : readable);
      }
    } catch (const std::exception& err) {
      return llvm::createStringError(llvm::inconvertibleErrorCode(), err.what());
    }
    return llvm::Error::success();
  }

  PerfFiles& files_;
  const std::map<std::string, std::string>& symbol_of_;
};

struct Jit::Impl {
  bool keep_dumps = false;
  int compile_threads = 1;
  JitTarget target;
  llvm::orc::JITTargetMachineBuilder machine_builder{llvm::Triple()};
  std::unique_ptr<llvm::TargetMachine> machine;  // for the data layout and the dumps
  std::unique_ptr<llvm::orc::LLJIT> jit;
  std::string code_settings;  // part of every cache key
  std::optional<KernelCache> cache;
  std::vector<ModuleText> texts;
  std::vector<Pending> pending;
  std::map<std::string, std::string> symbol_of;  // readable name -> compiled symbol
  std::set<std::string> loaded;                  // symbols already in the JIT
  CompileStats stats;

  void compile_one(Pending& p);
  void compile_pending();
};

/// Optimizes and generates object code for one module on the calling thread, with a target
/// machine of its own (they are not shareable across threads).
void Jit::Impl::compile_one(Pending& p) {
  try {
    std::unique_ptr<llvm::TargetMachine> tm = take(machine_builder.createTargetMachine(), "creating a target machine");
    llvm::Module& m = *p.km->module;
    optimize(m, *tm);
    if (keep_dumps) {
      texts[p.text].ir_after_opt = print(m);
      texts[p.text].assembly = assembly(m, *tm);
    }
    // The entry is renamed to its content symbol only now, so dumps keep the readable name.
    m.getFunction(p.name)->setName(p.symbol);
    llvm::SmallVector<char, 0> bytes;
    llvm::raw_svector_ostream os(bytes);
    llvm::legacy::PassManager pm;
    if (tm->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile))
      throw Error("JIT: the host target cannot emit object code");
    pm.run(m);
    p.object = std::make_unique<llvm::SmallVectorMemoryBuffer>(std::move(bytes), p.symbol, false);
  } catch (const std::exception& err) {
    p.error = err.what();
  }
}

void Jit::Impl::compile_pending() {
  if (pending.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  // One compilation per distinct symbol: from the cache if it holds it, else by LLVM.
  std::vector<Pending*> work;
  std::set<std::string> queued;
  for (Pending& p : pending) {
    if (loaded.count(p.symbol) || !queued.insert(p.symbol).second) continue;
    ++stats.unique;
    if (!keep_dumps) {
      if (std::optional<std::string> cached = cache->load(p.symbol)) {
        auto buffer = llvm::MemoryBuffer::getMemBufferCopy(*cached, p.symbol);
        if (valid_object(*buffer)) {
          p.object = std::move(buffer);
          ++stats.cache_hits;
          continue;
        }
      }
    }
    work.push_back(&p);
  }
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t k = next++; k < work.size(); k = next++) compile_one(*work[k]);
  };
  std::vector<std::thread> threads;
  const size_t helpers = std::min<size_t>(static_cast<size_t>(std::max(1, compile_threads)), work.size());
  for (size_t t = 1; t < helpers; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();

  for (Pending& p : pending) {
    if (!p.error.empty()) throw Error(fmt::format("JIT: compiling {}: {}", p.name, p.error));
    if (!p.object) continue;  // a duplicate of another module, or already loaded
    const bool compiled = std::find(work.begin(), work.end(), &p) != work.end();
    if (compiled) cache->store(p.symbol, std::string_view(p.object->getBufferStart(), p.object->getBufferSize()));
    if (auto err = jit->addObjectFile(std::move(p.object)))
      throw Error(fmt::format("JIT: loading {}: {}", p.name, message(std::move(err))));
    loaded.insert(p.symbol);
  }
  pending.clear();
  if (!work.empty()) cache->evict();
  stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Jit::Jit(bool keep_dumps, int compile_threads) : Jit(jit_target(), keep_dumps, compile_threads) {}

Jit::Jit(const JitTarget& target, bool keep_dumps, int compile_threads) : impl_(std::make_unique<Impl>()) {
  impl_->keep_dumps = keep_dumps;
  impl_->compile_threads =
      compile_threads > 0 ? compile_threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  impl_->target = target;
  impl_->machine_builder = machine_for(target);
  impl_->machine = take(impl_->machine_builder.createTargetMachine(), "creating the target machine");
  impl_->jit =
      take(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(impl_->machine_builder).create(), "creating LLJIT");
  impl_->code_settings = fmt::format("{}\nLLVM {}\n{}pipeline {}\n", kCacheFormat, LLVM_VERSION_STRING,
                                     machine_settings(*impl_->machine), Pipeline(*impl_->machine).text());
  impl_->cache.emplace(kernel_cache_dir(), kernel_cache_max_bytes());
  // Kernels may call libm (powf) and the optimizer may introduce memset/memcpy: resolve
  // those from this process.
  auto& dylib = impl_->jit->getMainJITDylib();
  dylib.addGenerator(take(
      llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(impl_->jit->getDataLayout().getGlobalPrefix()),
      "opening the process's symbols"));
  const PerfOutput perf = perf_output();
  if (perf != PerfOutput::none) {
    auto* layer = llvm::dyn_cast<llvm::orc::ObjectLinkingLayer>(&impl_->jit->getObjLinkingLayer());
    if (!layer) throw Error("DAGGER_PERF: this LLVM links JIT code without JITLink, which perf's outputs need");
    layer->addPlugin(std::make_unique<PerfPlugin>(PerfFiles::get(perf), impl_->symbol_of));
  }
}

Jit::~Jit() = default;

bool Jit::keeps_dumps() const { return impl_->keep_dumps; }

const JitTarget& Jit::target() const { return impl_->target; }

const std::string& Jit::code_settings() const { return impl_->code_settings; }

const std::vector<ModuleText>& Jit::texts() const { return impl_->texts; }

const CompileStats& Jit::stats() const { return impl_->stats; }

std::unique_ptr<KernelModule> Jit::new_module(const std::string& name) const {
  auto km = std::make_unique<KernelModule>();
  km->context = std::make_unique<llvm::LLVMContext>();
  km->module = std::make_unique<llvm::Module>(name, *km->context);
  km->module->setDataLayout(impl_->jit->getDataLayout());
  km->module->setTargetTriple(impl_->jit->getTargetTriple().str());
  return km;
}

void Jit::add(std::unique_ptr<KernelModule> km) {
  llvm::Module& m = *km->module;
  const std::string name = m.getName().str();
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(m, &os)) throw Error(fmt::format("JIT: module {} is invalid: {}", name, problems));
  if (!m.getFunction(name)) throw Error(fmt::format("JIT: module {} has no function of its name", name));
  Pending p;
  p.name = name;
  p.symbol = "dk_" + kernel_digest(impl_->code_settings, m, name);
  if (impl_->keep_dumps) {
    p.text = impl_->texts.size();
    impl_->texts.push_back(ModuleText{name, print(m), {}, {}});
  }
  p.km = std::move(km);
  impl_->symbol_of[name] = p.symbol;
  impl_->pending.push_back(std::move(p));
  ++impl_->stats.modules;
}

void* Jit::lookup(const std::string& name) {
  impl_->compile_pending();
  auto known = impl_->symbol_of.find(name);
  const std::string symbol = known == impl_->symbol_of.end() ? name : known->second;
  auto addr = impl_->jit->lookup(symbol);
  if (!addr) throw Error(fmt::format("JIT: no compiled function '{}': {}", name, message(addr.takeError())));
  return addr->toPtr<void*>();
}

}  // namespace dagger
