#include "dagger/codegen/jit.h"

#include <fmt/format.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/Transforms/Utils/Cloning.h>

#include <llvm/Config/llvm-config.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/MD5.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SmallVectorMemoryBuffer.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

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

llvm::orc::JITTargetMachineBuilder host_machine() {
  init_llvm_once();
  auto jtmb = take(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host");
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return jtmb;
}

std::string print(const llvm::Module& m) {
  std::string text;
  llvm::raw_string_ostream os(text);
  m.print(os, nullptr);
  return text;
}

/// Runs the new pass manager's standard O3 pipeline for the host machine.
void optimize(llvm::Module& m, llvm::TargetMachine& tm) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(m, mam);
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

int vector_width_floats() {
  static const int width = [] {
    auto features = llvm::sys::getHostCPUFeatures();
    auto has = [&](const char* f) { return features.lookup(f); };
    if (has("avx512f")) return 16;
    if (has("avx2") || has("avx")) return 8;
    return 4;
  }();
  return width;
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

std::string kernel_cache_dir() {
  if (const char* dir = std::getenv("DAGGER_CACHE_DIR")) return std::string(dir) == "off" ? "" : dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/dagger/kernels";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/dagger/kernels";
  return "";
}

namespace {

/// Bumped whenever the way kernels are compiled changes what the same IR turns into.
constexpr const char* kCacheFormat = "dagger-kernel-v1";

/// One queued module and what compiling it produced.
struct Pending {
  std::unique_ptr<KernelModule> km;
  std::string name;    // the module's (and its entry's) readable name
  std::string symbol;  // "dk_" + the hash of its IR and the host
  size_t text = 0;     // index into texts, when dumps are kept
  std::unique_ptr<llvm::MemoryBuffer> object;
  std::string error;
};

std::string hex_digest(const std::string& text) {
  llvm::MD5 md5;
  md5.update(text);
  llvm::MD5::MD5Result result;
  md5.final(result);
  return result.digest().str().str();
}

/// The module's text with its own name replaced, so that identical kernels hash alike.
std::string normalized_ir(const llvm::Module& m, const std::string& name) {
  std::string text = print(m);
  for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + 1))
    text.replace(at, name.size(), "kernel");
  return text;
}

std::unique_ptr<llvm::MemoryBuffer> read_file(const std::string& path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!buffer) return nullptr;
  return std::move(*buffer);
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

/// Writes `bytes` to `path` atomically (a reader sees all of it or nothing); failures only
/// cost a later recompilation.
void write_file_atomically(const std::string& path, llvm::StringRef bytes) {
  const std::string tmp = fmt::format("{}.{}.tmp", path, static_cast<long>(::getpid()));
  std::error_code ec;
  {
    llvm::raw_fd_ostream os(tmp, ec);
    if (ec) return;
    os << bytes;
  }
  if (llvm::sys::fs::rename(tmp, path)) llvm::sys::fs::remove(tmp);
}

}  // namespace

struct Jit::Impl {
  bool keep_dumps = false;
  int compile_threads = 1;
  llvm::orc::JITTargetMachineBuilder machine_builder{llvm::Triple()};
  std::unique_ptr<llvm::TargetMachine> machine;  // for the data layout and the dumps
  std::unique_ptr<llvm::orc::LLJIT> jit;
  std::string host;       // cpu and features, part of every cache key
  std::string cache_dir;  // "" = no disk cache
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
    if (!keep_dumps && !cache_dir.empty()) {
      std::unique_ptr<llvm::MemoryBuffer> cached = read_file(cache_dir + "/" + p.symbol + ".o");
      if (cached && valid_object(*cached)) {
        p.object = std::move(cached);
        ++stats.cache_hits;
        continue;
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

  if (!cache_dir.empty() && !work.empty()) llvm::sys::fs::create_directories(cache_dir);
  for (Pending& p : pending) {
    if (!p.error.empty()) throw Error(fmt::format("JIT: compiling {}: {}", p.name, p.error));
    if (!p.object) continue;  // a duplicate of another module, or already loaded
    const bool compiled = std::find(work.begin(), work.end(), &p) != work.end();
    if (compiled && !cache_dir.empty())
      write_file_atomically(cache_dir + "/" + p.symbol + ".o", p.object->getBuffer());
    if (auto err = jit->addObjectFile(std::move(p.object)))
      throw Error(fmt::format("JIT: loading {}: {}", p.name, message(std::move(err))));
    loaded.insert(p.symbol);
  }
  pending.clear();
  stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Jit::Jit(bool keep_dumps, int compile_threads) : impl_(std::make_unique<Impl>()) {
  impl_->keep_dumps = keep_dumps;
  impl_->compile_threads =
      compile_threads > 0 ? compile_threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  impl_->machine_builder = host_machine();
  impl_->machine = take(impl_->machine_builder.createTargetMachine(), "creating the host target machine");
  impl_->jit = take(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(impl_->machine_builder).create(), "creating LLJIT");
  impl_->host = host_cpu() + ";" + fmt::format("{}", fmt::join(host_features(), ",")) + ";" + LLVM_VERSION_STRING;
  impl_->cache_dir = kernel_cache_dir();
  // Kernels may call libm (powf) and the optimizer may introduce memset/memcpy: resolve
  // those from this process.
  auto& dylib = impl_->jit->getMainJITDylib();
  dylib.addGenerator(take(
      llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(impl_->jit->getDataLayout().getGlobalPrefix()),
      "opening the process's symbols"));
}

Jit::~Jit() = default;

bool Jit::keeps_dumps() const { return impl_->keep_dumps; }

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
  p.symbol = "dk_" + hex_digest(std::string(kCacheFormat) + "\n" + impl_->host + "\n" + normalized_ir(m, name));
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
