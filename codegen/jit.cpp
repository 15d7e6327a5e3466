#include "codegen/jit.h"

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

#include <algorithm>
#include <mutex>

#include "codegen/kernel_module.h"
#include "graph/error.h"

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

DumpStage dump_stage(const std::string& name) {
  if (name == "ir" || name == "ir_before_opt") return DumpStage::ir_before_opt;
  if (name == "opt-ir" || name == "ir_after_opt") return DumpStage::ir_after_opt;
  if (name == "asm" || name == "assembly") return DumpStage::assembly;
  throw Error(fmt::format("unknown dump stage '{}' (valid: ir, opt-ir, asm)", name));
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

struct Jit::Impl {
  bool keep_dumps = false;
  std::unique_ptr<llvm::TargetMachine> machine;  // for optimization and assembly dumps
  std::unique_ptr<llvm::orc::LLJIT> jit;
  std::vector<ModuleText> texts;
};

Jit::Jit(bool keep_dumps) : impl_(std::make_unique<Impl>()) {
  impl_->keep_dumps = keep_dumps;
  llvm::orc::JITTargetMachineBuilder jtmb = host_machine();
  impl_->machine = take(jtmb.createTargetMachine(), "creating the host target machine");
  impl_->jit = take(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(jtmb).create(), "creating LLJIT");
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
  ModuleText text{name, {}, {}, {}};
  if (impl_->keep_dumps) text.ir_before_opt = print(m);
  optimize(m, *impl_->machine);
  if (impl_->keep_dumps) {
    text.ir_after_opt = print(m);
    text.assembly = assembly(m, *impl_->machine);
    impl_->texts.push_back(std::move(text));
  }
  llvm::orc::ThreadSafeModule tsm(std::move(km->module), std::move(km->context));
  if (auto err = impl_->jit->addIRModule(std::move(tsm)))
    throw Error(fmt::format("JIT: adding module {}: {}", name, message(std::move(err))));
}

void* Jit::lookup(const std::string& symbol) const {
  auto addr = impl_->jit->lookup(symbol);
  if (!addr) throw Error(fmt::format("JIT: no compiled function '{}': {}", symbol, message(addr.takeError())));
  return addr->toPtr<void*>();
}

}  // namespace dagger
