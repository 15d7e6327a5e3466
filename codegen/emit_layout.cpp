// transpose and broadcast: a copy in output order from the input read through per-axis
// strides (a permutation of its strides, or 0 along broadcast axes). Vectors run along the
// output's last axis; an item is one index of its first axis.
#include <llvm/IR/Constants.h>

#include "dagger/codegen/emit_ops.h"
#include "dagger/codegen/iteration.h"

namespace dagger {

namespace {

/// The input's element stride along each output axis.
std::vector<int64_t> source_strides(const Graph& g, const Node& n) {
  const Shape& in = g.shape(n.operands[0]);
  if (n.op == Op::broadcast) return broadcast_strides(in, n.shape);
  const std::vector<int64_t> strides = contiguous_strides(in);
  std::vector<int64_t> out;
  for (int64_t p : n.attrs.ints("perm")) out.push_back(strides[static_cast<size_t>(p)]);
  return out;
}

}  // namespace

OpKernelLayout layout_copy_layout(const Graph& g, NodeId anchor) {
  const Shape& out = g.shape(anchor);
  const int64_t items = out.size() >= 2 ? out[0] : 1;
  return {items, double(numel(out)) / double(std::max<int64_t>(items, 1))};
}

void emit_layout_kernel(Emit& e, const KernelFunction& kf, const Graph& g, const FusionGroup& group) {
  const Node& n = g.node(group.anchor);
  const Shape& out = n.shape;
  const std::vector<int64_t> src = source_strides(g, n);
  llvm::Value* x = operand_arg(kf, g, group, 0);
  const size_t rank = out.size();
  Epilogue ep(e, g, group, kf, rank == 0 ? 0 : rank - 1);

  // The value at a vector along the last axis: contiguous, repeated, or gathered.
  auto value = [&](const ElementPos& pos) -> llvm::Value* {
    if (rank == 0) return e.b.CreateVectorSplat(e.width, load_scalar(e, x, e.i64c(0)));
    llvm::Value* offset = e.i64c(0);
    for (size_t d = 0; d < rank; ++d)
      if (src[d] != 0) offset = e.b.CreateAdd(offset, e.b.CreateMul(pos.coords[d], e.i64c(src[d])));
    const int64_t inner = src.back();
    if (inner == 1) return load_vector(e, x, offset, pos.mask, llvm::Constant::getNullValue(e.vf));
    if (inner == 0) return e.b.CreateVectorSplat(e.width, load_scalar(e, x, offset));
    llvm::Value* lanes = e.b.CreateMul(e.lane_ids(), e.splat_i32(static_cast<uint32_t>(inner)));
    return gather_at(e, x, offset, lanes, pos.mask);
  };

  emit_range(e, kf.begin, kf.end, [&](llvm::Value* item) {
    if (rank < 2) return ep.for_each({}, value);
    // Loops over the axes between the first and the last.
    std::vector<llvm::Value*> coords{item};
    std::function<void(size_t)> axis = [&](size_t d) {
      if (d + 1 == rank) return ep.for_each(coords, value);
      emit_for(e, out[d], 1, [&](llvm::Value* i) {
        coords.push_back(i);
        axis(d + 1);
        coords.pop_back();
      });
    };
    axis(1);
  });
}

}  // namespace dagger
