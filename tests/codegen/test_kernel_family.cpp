// kernel_family, the codegen column of the op table: every op is computed by the emitter its
// category calls for, and only sources, reshape and assign are left without a kernel.
#include <catch2/catch.hpp>

#include "dagger/codegen/fusion.h"

using namespace dagger;

TEST_CASE("every op has the kernel family its category calls for", "[codegen][fusion]") {
  for (Op op : all_ops()) {
    const OpInfo& info = op_info(op);
    INFO(info.name);
    const KernelFamily family = kernel_family(op);
    switch (info.category) {
      case OpCategory::Source:
      case OpCategory::Sink:
        CHECK(family == KernelFamily::none);
        break;
      case OpCategory::Elementwise:
        CHECK(family == KernelFamily::elementwise);
        break;
      case OpCategory::Contraction:
        CHECK((family == KernelFamily::matmul || family == KernelFamily::conv));
        break;
      case OpCategory::Layout:
        CHECK(family == (op == Op::reshape ? KernelFamily::none : KernelFamily::layout));
        break;
      case OpCategory::Reduction:
      case OpCategory::Composite:
        CHECK((family == KernelFamily::pool || family == KernelFamily::norm || family == KernelFamily::softmax ||
               family == KernelFamily::reduce));
        break;
    }
  }
  CHECK(kernel_family(Op::conv2d_backward_filter) == KernelFamily::conv);
  CHECK(kernel_family(Op::channel_var) == KernelFamily::norm);
  CHECK(kernel_family(Op::reduce_max) == KernelFamily::reduce);
  CHECK(kernel_family(Op::softmax_xent_grad) == KernelFamily::softmax);
  CHECK(kernel_family(Op::maxpool2d_backward) == KernelFamily::pool);
}
