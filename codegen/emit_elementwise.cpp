#include "dagger/codegen/emit_elementwise.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

#include "dagger/codegen/iteration.h"
#include "dagger/codegen/vector_math.h"
#include "dagger/graph/random.h"

namespace dagger {

namespace {

// The interpreter's SELU constants, rounded to float as it rounds them.
constexpr float kSeluScale = static_cast<float>(1.0507009873554805);
constexpr float kSeluAlpha = static_cast<float>(1.6732632423543772);

float alpha_of(const Node& n) { return static_cast<float>(n.attrs.f("alpha")); }

/// x > 0 ? x : y, with NaN taking the y branch as the interpreter's comparison does.
llvm::Value* positive_or(Emit& e, llvm::Value* x, llvm::Value* if_positive, llvm::Value* otherwise) {
  return e.select(e.b.CreateFCmpOGT(x, e.splat(0.0f)), if_positive, otherwise);
}

/// dy * (x > 0 ? 1 : slope), the shape every activation gradient here takes.
llvm::Value* gated_grad(Emit& e, llvm::Value* x, llvm::Value* dy, llvm::Value* slope) {
  return e.b.CreateFMul(dy, positive_or(e, x, e.splat(1.0f), slope));
}

/// Dropout of `x` at `pos`: the key lanes hold the scalar key as a float; the element index
/// is the node's offset plus the flat position (fusion keeps every dropout at its group's full
/// shape), in i32 arithmetic that wraps at 2^32 as the interpreter's does.
llvm::Value* dropout_value(Emit& e, const Node& n, llvm::Value* x, llvm::Value* key, const ElementPos& pos) {
  const float p = static_cast<float>(n.attrs.f("p"));
  const float keep = 1.0f - p;  // the interpreter divides by exactly this float
  llvm::Value* first =
      e.b.CreateAdd(e.b.CreateTrunc(pos.flat, e.i32), e.b.getInt32(static_cast<uint32_t>(dropout_offset(n.attrs))));
  llvm::Value* index = e.b.CreateAdd(e.b.CreateVectorSplat(e.width, first), e.lane_ids());
  llvm::Value* keeps =
      emit_dropout_keeps(e, e.b.CreateFPToUI(key, e.vi), static_cast<uint32_t>(n.attrs.i("salt")), index, p);
  return e.select(keeps, e.b.CreateFDiv(x, e.splat(keep)), e.splat(0.0f));
}

/// The value of elementwise node `n` from its operands' values `v` (one per operand) at `pos`.
llvm::Value* elementwise_value(Emit& e, const Node& n, const std::vector<llvm::Value*>& v, const ElementPos& pos) {
  switch (n.op) {
    case Op::neg:
      return e.b.CreateFNeg(v[0]);
    case Op::exp:
      return emit_exp(e, v[0]);
    case Op::log:
      return emit_log(e, v[0]);
    case Op::sqrt:
      return e.intrinsic(llvm::Intrinsic::sqrt, {v[0]});
    case Op::relu:
      return positive_or(e, v[0], v[0], e.splat(0.0f));
    case Op::tanh:
      return emit_tanh(e, v[0]);
    case Op::sigmoid:
      return emit_sigmoid(e, v[0]);
    case Op::elu:
      return positive_or(e, v[0], v[0], e.b.CreateFMul(e.splat(alpha_of(n)), emit_expm1(e, v[0])));
    case Op::selu: {
      llvm::Value* negative = e.b.CreateFMul(e.splat(kSeluAlpha), emit_expm1(e, v[0]));
      return e.b.CreateFMul(e.splat(kSeluScale), positive_or(e, v[0], v[0], negative));
    }
    case Op::leaky_relu:
      return positive_or(e, v[0], v[0], e.b.CreateFMul(e.splat(alpha_of(n)), v[0]));
    case Op::add:
      return e.b.CreateFAdd(v[0], v[1]);
    case Op::sub:
      return e.b.CreateFSub(v[0], v[1]);
    case Op::mul:
      return e.b.CreateFMul(v[0], v[1]);
    case Op::div:
      return e.b.CreateFDiv(v[0], v[1]);
    // libm's powf lane by lane: exact agreement, and pow is rare enough not to matter.
    case Op::pow:
      return e.intrinsic(llvm::Intrinsic::pow, {v[0], v[1]});
    case Op::relu_grad:  // (x, dy)
      return positive_or(e, v[0], v[1], e.splat(0.0f));
    case Op::elu_grad:
      return gated_grad(e, v[0], v[1], e.b.CreateFMul(e.splat(alpha_of(n)), emit_exp(e, v[0])));
    case Op::selu_grad: {
      llvm::Value* slope = e.b.CreateFMul(e.splat(kSeluAlpha), emit_exp(e, v[0]));
      return e.b.CreateFMul(e.b.CreateFMul(v[1], e.splat(kSeluScale)), positive_or(e, v[0], e.splat(1.0f), slope));
    }
    case Op::leaky_relu_grad:
      return gated_grad(e, v[0], v[1], e.splat(alpha_of(n)));
    case Op::dropout:  // (x, key)
      return dropout_value(e, n, v[0], v[1], pos);
    case Op::input:
    case Op::parameter:
    case Op::state:
    case Op::constant:
    case Op::reshape:
    case Op::transpose:
    case Op::broadcast:
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
    case Op::matmul:
    case Op::conv2d:
    case Op::conv2d_backward_data:
    case Op::conv2d_backward_filter:
    case Op::maxpool2d:
    case Op::maxpool2d_backward:
    case Op::batchnorm_train:
    case Op::batchnorm_infer:
    case Op::batchnorm_backward:
    case Op::batchnorm_grad_gamma:
    case Op::channel_mean:
    case Op::channel_var:
    case Op::softmax:
    case Op::softmax_xent:
    case Op::softmax_xent_grad:
    case Op::assign:
      break;
  }
  throw Error(fmt::format("internal error: codegen: {} is not an elementwise op", op_info(n.op).name));
}

}  // namespace

ElementGen elementwise_gen(Emit& e, const Node& n, std::vector<ElementGen> in) {
  if (kernel_family(n.op) != KernelFamily::elementwise || in.size() != static_cast<size_t>(op_info(n.op).arity))
    throw Error(fmt::format("internal error: codegen: %{} ({}) with {} operands is not an elementwise node", n.id,
                            op_info(n.op).name, in.size()));
  return [&e, &n, in = std::move(in)](const ElementPos& pos) {
    std::vector<llvm::Value*> values;
    for (const ElementGen& operand : in) values.push_back(operand(pos));  // operand 0 first
    return elementwise_value(e, n, values, pos);
  };
}

std::vector<ElementGen> compose_group(Emit& e, const Graph& g, const FusionGroup& group,
                                      const std::function<ElementGen(NodeId)>& input) {
  std::function<ElementGen(NodeId)> gen = [&](NodeId id) -> ElementGen {
    const bool computed_here = id != group.anchor && std::binary_search(group.nodes.begin(), group.nodes.end(), id);
    if (!computed_here) return input(id);
    std::vector<ElementGen> operands;
    for (NodeId o : g.node(id).operands) operands.push_back(gen(o));
    return elementwise_gen(e, g.node(id), std::move(operands));
  };
  std::vector<ElementGen> outputs{gen(group.root)};
  for (NodeId id : group.side_outputs) outputs.push_back(gen(id));
  return outputs;
}

namespace {

IterationSpace space_of(const Graph& g, const FusionGroup& group) {
  std::vector<Shape> shapes;
  for (NodeId id : group.inputs) shapes.push_back(g.shape(id));
  return collapse(g.shape(group.root), shapes);
}

}  // namespace

int64_t elementwise_items(const Graph& g, const FusionGroup& group) { return nest_items(space_of(g, group).dims); }

void share_in_place_buffers(const KernelFunction& kf, const FusionGroup& group) {
  for (const auto& [output, source] : group.in_place) {
    const size_t o =
        output == group.root
            ? 0
            : 1 + static_cast<size_t>(std::ranges::find(group.side_outputs, output) - group.side_outputs.begin());
    kf.body->getArg(static_cast<unsigned>(o))->removeAttr(llvm::Attribute::NoAlias);
    auto in = std::ranges::find(group.inputs, source);
    if (in != group.inputs.end())
      kf.body->getArg(static_cast<unsigned>(first_input_arg(group) + static_cast<size_t>(in - group.inputs.begin())))
          ->removeAttr(llvm::Attribute::NoAlias);
  }
}

void emit_elementwise_kernel(Emit& e, const std::string& name, const Graph& g, const FusionGroup& group) {
  const IterationSpace space = space_of(g, group);

  const size_t first_input = first_input_arg(group);
  KernelFunction kf = begin_kernel(e, name, static_cast<int>(first_input + group.inputs.size()));
  share_in_place_buffers(kf, group);
  auto input = [&](NodeId id) -> ElementGen {
    const size_t k =
        static_cast<size_t>(std::find(group.inputs.begin(), group.inputs.end(), id) - group.inputs.begin());
    assert(k < group.inputs.size());
    StridedBuffer buf{kf.args[first_input + k], space.strides[k]};
    return [&e, buf](const ElementPos& pos) { return load_at(e, buf, pos); };
  };
  const std::vector<ElementGen> outputs = compose_group(e, g, group, input);
  emit_vector_nest_items(e, space.dims, kf.begin, kf.end, [&](const ElementPos& pos) {
    std::vector<llvm::Value*> values;
    for (const ElementGen& output : outputs) values.push_back(output(pos));
    for (size_t o = 0; o < outputs.size(); ++o)
      store_at(e, StridedBuffer{kf.args[o], contiguous_strides(space.dims)}, pos, values[o]);
  });
  end_kernel(e);
}

}  // namespace dagger
