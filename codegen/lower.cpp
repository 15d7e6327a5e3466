#include "dagger/codegen/lower.h"

#include <fmt/format.h>

#include <algorithm>

#include "dagger/codegen/emit_conv.h"
#include "dagger/codegen/emit_elementwise.h"
#include "dagger/codegen/emit_matmul.h"
#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/kernel_module.h"

namespace dagger {

namespace {

/// Emits `k`'s kernel with the emitter of its anchor's kernel family (a group without an
/// anchor is an elementwise loop) and records its parallel items and work.
void emit_group(Emit& e, const Graph& g, const FusionGroup& group, CompiledKernel& k) {
  const KernelFamily family = group.anchor >= 0 ? kernel_family(g.node(group.anchor).op) : KernelFamily::elementwise;
  switch (family) {
    case KernelFamily::matmul:
    case KernelFamily::conv: {
      const GemmLayout layout = family == KernelFamily::matmul ? matmul_layout(g, group, e)
                                                               : conv_layout(g, group, e.width, e.threads, e.conv_algo);
      k.items = layout.items;
      k.scratch_floats = layout.scratch_floats;
      k.work = 2.0 * double(numel(g.shape(group.anchor))) * double(layout.k_total) /
               double(std::max<int64_t>(1, layout.items));
      if (family == KernelFamily::matmul) {
        if (e.keep_packed_parameters) k.kept_b_floats = matmul_kept_b_floats(g, group, e);
        emit_matmul_kernel(e, k.name, g, group);
      } else {
        // A convolution's emitter unrolls its register tiles and transforms itself; LLVM's
        // unroller only added compile time there (10-13% of rescnn's training plan cold) for
        // the same speed (docs/performance.md, session 27).
        e.llvm_unrolls = false;
        emit_conv_kernel(e, k.name, g, group);
      }
      return;
    }
    case KernelFamily::pool:
    case KernelFamily::norm:
    case KernelFamily::softmax:
    case KernelFamily::reduce:
    case KernelFamily::layout: {
      const OpKernelLayout layout = op_kernel_layout(g, group, e.width);
      k.items = layout.items;
      k.work = layout.work;
      emit_op_kernel(e, k.name, g, group);
      return;
    }
    case KernelFamily::elementwise:
      k.items = elementwise_items(g, group);
      k.work = double(numel(g.shape(group.root))) * double(group.nodes.size()) / double(std::max<int64_t>(1, k.items));
      emit_elementwise_kernel(e, k.name, g, group);
      return;
    case KernelFamily::none:
      break;
  }
  throw Error(
      fmt::format("internal error: group %{} is anchored on %{}, which no kernel computes", group.root, group.anchor));
}

}  // namespace

std::vector<CompiledKernel> compile_groups(Jit& jit, const Graph& g, const FusionPlan& plan, unsigned width,
                                           int threads, ConvAlgo conv_algo, bool keep_packed_parameters,
                                           Precision precision) {
  std::vector<CompiledKernel> kernels;
  for (const FusionGroup& group : plan.groups) {
    CompiledKernel k{kernel_name(g, group), group};
    std::unique_ptr<KernelModule> km = jit.new_module(k.name);
    {  // the builder must be gone before the module moves into the Jit
      Emit e(*km->module, width);
      e.threads = threads;
      e.conv_algo = conv_algo;
      e.keep_packed_parameters = keep_packed_parameters;
      e.bf16 = precision == Precision::bf16;
      emit_group(e, g, group, k);
    }
    jit.add(std::move(km));
    kernels.push_back(std::move(k));
  }
  // Looking a symbol up compiles its module; do it once here rather than on the first run.
  for (CompiledKernel& k : kernels) k.entry = jit.function<void(float* const*, int64_t, int64_t)>(k.name);
  return kernels;
}

}  // namespace dagger
