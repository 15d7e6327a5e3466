#include "dagger/codegen/jit_executable.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "dagger/codegen/fusion.h"
#include "dagger/codegen/lower.h"
#include "dagger/runtime/arena.h"
#include "dagger/runtime/page_buffer.h"
#include "dagger/runtime/thread_pool.h"

namespace dagger {

namespace {

/// What the plan does when it reaches a node, in node order. An alias (a reshape) is the
/// same buffer as its operand under another shape; an assign holds its operand's value
/// until the step ends.
enum class StepKind { kernel, alias, assign };

struct Step {
  StepKind kind;
  NodeId node;
  int index;  // into the plan's kernels; -1 for other steps
};

/// A dropout inside a kernel whose key the plan checks before launching it (the kernel cannot
/// report errors).
struct KeyCheck {
  NodeId dropout, key;
};

Shape shape_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end()); }

/// A contiguous copy of the numel(shape) floats at `data`.
Tensor tensor_from(const float* data, const Shape& shape) {
  Tensor t = Tensor::from_shape(std::vector<size_t>(shape.begin(), shape.end()));
  std::copy(data, data + t.size(), t.data());
  return t;
}

/// A constant's value, as the interpreter computes it: its attribute rounded to float.
Tensor constant_value(const Node& n) {
  Tensor t = Tensor::from_shape(std::vector<size_t>(n.shape.begin(), n.shape.end()));
  std::fill(t.data(), t.data() + t.size(), static_cast<float>(n.attrs.f("value")));
  return t;
}

std::string node_label(const Node& n) {
  return fmt::format("{}: %{} = {}", describe(n.where), n.id, op_info(n.op).name);
}

/// A source's tensor from `map`, with the interpreter's checks and messages.
const float* source_data(const StateMap& map, const Node& n, const char* what) {
  const std::string& name = n.attrs.s("name");
  auto it = map.find(name);
  if (it == map.end())
    throw Error(fmt::format("{}: missing {} '{}' (expected shape {})", node_label(n), what, name, to_string(n.shape)));
  if (shape_of(it->second) != n.shape)
    throw Error(fmt::format("{}: {} '{}' has shape {} but the graph expects {}", node_label(n), what, name,
                            to_string(shape_of(it->second)), to_string(n.shape)));
  return it->second.data();
}

/// For each node, the parameter or state source whose tensor the kernel computing it writes
/// directly, or -1. An assigned value V replacing source S is written in place when
///  - V is the root or a side output of a kernel with no anchor (an elementwise loop: element
///    i of V is computed from element i of its same-shape operands, so it is stored after S's
///    element i was read and no other item reads that element), or of a matmul's kernel, whose
///    epilogue is such a loop over C's elements (the GEMM then keeps no partial sums in C,
///    GemmSizes::whole_k, so each element is stored once, after its epilogue read S's);
///  - S has V's shape, and every node reading S (directly or through reshapes) either runs in an
///    earlier step or is an elementwise node of that kernel with S's shape reading S itself;
///  - neither S nor anything aliasing it is a graph output or read by an assign.
/// Such values need no arena space and no copy back when the step ends (an optimizer's
/// parameters and moments).
std::vector<NodeId> plan_in_place(const Graph& g, const std::vector<Step>& steps,
                                  const std::vector<FusionGroup>& groups) {
  std::vector<NodeId> in_place_source(g.size(), -1);
  std::vector<int> step_of(g.size(), -1), group_of(g.size(), -1);
  for (int s = 0; s < static_cast<int>(steps.size()); ++s) {
    const Step& step = steps[static_cast<size_t>(s)];
    if (step.kind != StepKind::kernel) {
      step_of[step.node] = s;
      continue;
    }
    for (NodeId id : groups[static_cast<size_t>(step.index)].nodes) {
      step_of[id] = s;
      group_of[id] = step.index;
    }
    // A recomputed node reads its operands in every kernel that recomputes it: the last counts.
    for (NodeId id : groups[static_cast<size_t>(step.index)].prologue) step_of[id] = s;
  }
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::vector<bool> output(g.size(), false);
  for (const auto& [name, id] : g.outputs()) output[id] = true;
  std::map<std::string, NodeId> sources;
  for (const Node& n : g.nodes())
    if (n.op == Op::parameter || n.op == Op::state) sources[n.attrs.s("name")] = n.id;

  for (NodeId a : g.nodes_of(Op::assign)) {
    const NodeId value = g.node(a).operands[0];
    const int k = group_of[value];
    auto source = sources.find(g.node(a).attrs.s("target"));
    if (k < 0 || source == sources.end()) continue;
    const FusionGroup& group = groups[static_cast<size_t>(k)];
    const NodeId s = source->second;
    const bool stored = value == group.root || std::ranges::count(group.side_outputs, value) > 0;
    const bool element_by_element = group.anchor < 0 || g.node(group.anchor).op == Op::matmul;
    if (!stored || !element_by_element || g.shape(s) != g.shape(value) || in_place_source[value] >= 0) continue;
    bool safe = true;
    std::vector<NodeId> aliases{s};
    while (safe && !aliases.empty()) {
      const NodeId x = aliases.back();
      aliases.pop_back();
      safe = !output[x];
      for (NodeId r : readers[x]) {
        const Node& reader = g.node(r);
        if (reader.op == Op::reshape)
          aliases.push_back(r);
        else if (reader.op == Op::assign)
          safe = false;
        else if (group_of[r] == k)
          safe = safe && x == s && op_info(reader.op).category == OpCategory::Elementwise && reader.shape == g.shape(s);
        else
          safe = safe && step_of[r] >= 0 && step_of[r] < step_of[group.root];
      }
    }
    if (safe) in_place_source[value] = s;
  }
  return in_place_source;
}

/// plan_fusion's in-place writes per node: the source its kernel stores it into, or -1.
std::vector<NodeId> in_place_sources(const Graph& g, const FusionPlan& fusion) {
  std::vector<NodeId> in_place_source(g.size(), -1);
  for (const FusionGroup& group : fusion.groups)
    for (const auto& [output, source] : group.in_place) in_place_source[output] = source;
  return in_place_source;
}

/// Where each kernel's output lives: the nodes placed in the arena and their offsets.
struct MemoryLayout {
  std::vector<NodeId> nodes;
  ArenaPlan arena;
};

/// Which buffer each node's data is in: a reshape's is its operand's, a value written over
/// another (`in_place_source`) is that one's; every other node is its own.
std::vector<NodeId> buffer_owners(const Graph& g, const std::vector<NodeId>& in_place_source) {
  std::vector<NodeId> owner(g.size());
  for (const Node& n : g.nodes())
    owner[n.id] = n.op == Op::reshape          ? owner[n.operands[0]]
                  : in_place_source[n.id] >= 0 ? owner[in_place_source[n.id]]
                                               : n.id;
  return owner;
}

/// The step that writes each node (-1 for none) and the last step that reads each buffer
/// (indexed by `owner`; -1 for none): a kernel reads its inputs, an alias its operand;
/// outputs and assigned values are read after the last step (steps.size()).
struct Lifetimes {
  std::vector<int> first, last;
};

Lifetimes lifetimes(const Graph& g, const std::vector<Step>& steps, const std::vector<FusionGroup>& groups,
                    const std::vector<NodeId>& owner) {
  const int end = static_cast<int>(steps.size());
  Lifetimes t{std::vector<int>(g.size(), -1), std::vector<int>(g.size(), -1)};
  auto read = [&](NodeId id, int step) { t.last[owner[id]] = std::max(t.last[owner[id]], step); };
  for (int s = 0; s < end; ++s) {
    const Step& step = steps[static_cast<size_t>(s)];
    const Node& n = g.node(step.node);
    if (step.kind == StepKind::kernel) {
      t.first[n.id] = s;
      for (NodeId id : groups[static_cast<size_t>(step.index)].side_outputs) t.first[id] = s;
      for (NodeId id : groups[static_cast<size_t>(step.index)].inputs) read(id, s);
    } else if (step.kind == StepKind::assign) {
      read(n.operands[0], end);
    } else {
      for (NodeId id : n.operands) read(id, s);
    }
  }
  for (const auto& [name, id] : g.outputs()) read(id, end);
  return t;
}

/// Where an elementwise kernel can store an output over one of its inputs, so the output takes
/// no arena space and its stores meet lines the kernel has just read: an output O of a kernel
/// with no anchor and no prologue (or the value a reduce_sum kernel computes, stores and sums,
/// value_summed_beside) goes into the buffer of an input I of O's shape when
///  - the kernel is I's last reader, and I is no output, is read by no assign and through no
///    reshape (nothing reads I after this kernel, or under another shape);
///  - every node of the kernel reading I is elementwise of I's shape: element i of I is read
///    only for element i of the outputs, all of which are computed before any is stored;
///  - I is computed by a kernel (the arena holds it) and no other output of the kernel took it.
/// I's buffer then lives until O's last reader (buffer_owners). The assign rule above
/// (plan_in_place) comes first. cnn3's batch-norm dx, for one, overwrites the dy it reads.
void plan_overwrites(const Graph& g, const std::vector<Step>& steps, const std::vector<FusionGroup>& groups,
                     std::vector<NodeId>& in_place_source) {
  const Lifetimes t = lifetimes(g, steps, groups, buffer_owners(g, std::vector<NodeId>(g.size(), -1)));
  const std::vector<std::vector<NodeId>> readers = readers_of(g);
  std::vector<bool> taken(g.size(), false);
  for (int s = 0; s < static_cast<int>(steps.size()); ++s) {
    const Step& step = steps[static_cast<size_t>(s)];
    if (step.kind != StepKind::kernel) continue;
    const FusionGroup& group = groups[static_cast<size_t>(step.index)];
    const NodeId summed = value_summed_beside(g, group);
    if ((group.anchor >= 0 && summed < 0) || !group.prologue.empty()) continue;
    std::vector<NodeId> outputs{summed};  // what a reduce_sum kernel stores beside its sum; else all
    if (summed < 0) {
      outputs = {group.root};
      outputs.insert(outputs.end(), group.side_outputs.begin(), group.side_outputs.end());
    }
    for (NodeId o : outputs) {
      if (in_place_source[o] >= 0) continue;
      for (NodeId i : group.inputs) {
        if (taken[i] || g.shape(i) != g.shape(o) || t.first[i] < 0 || t.last[i] != s) continue;
        // Readers in other kernels ran before this one (it is I's last reader).
        const bool element_by_element = std::ranges::all_of(readers[i], [&](NodeId r) {
          const Node& reader = g.node(r);
          if (reader.op == Op::reshape) return false;
          return !std::ranges::binary_search(group.nodes, r) ||
                 (op_info(reader.op).category == OpCategory::Elementwise && reader.shape == g.shape(i));
        });
        if (!element_by_element) continue;
        in_place_source[o] = i;
        taken[i] = true;
        break;
      }
    }
  }
}

/// Lifetimes in steps: a kernel's output is born at its step and dies after its last reader
/// (reads of a reshape are reads of what it aliases, reads of a value written over another are
/// reads of that one); outputs and assigned values are read after the last step. Values written
/// in place (`in_place_source`) take no arena space.
MemoryLayout lay_out_memory(const Graph& g, const std::vector<Step>& steps, const std::vector<FusionGroup>& groups,
                            const std::vector<NodeId>& in_place_source) {
  const Lifetimes t = lifetimes(g, steps, groups, buffer_owners(g, in_place_source));
  MemoryLayout layout;
  std::vector<BufferUse> uses;
  for (const Node& n : g.nodes())
    if (t.first[n.id] >= 0 && in_place_source[n.id] < 0) {
      layout.nodes.push_back(n.id);
      uses.push_back({numel(n.shape), t.first[n.id], std::max(t.first[n.id], t.last[n.id])});
    }
  layout.arena = plan_arena(uses);
  return layout;
}

/// The plan's steps in node order: a kernel where its group's root is, then each reshape and
/// assign as itself; a reshape of a value its kernel computes later (a sibling statistic, run
/// where its anchor is) right after that kernel. Fusion gives every other node that is not a
/// source a group, or has its readers' kernels recompute it; one with neither is an internal
/// error, thrown here rather than left unexecuted.
std::vector<Step> plan_steps(const Graph& g, const FusionPlan& fusion) {
  std::vector<Step> steps;
  std::vector<NodeId> computed_at(g.size(), -1);  // the node whose step gives a value its data
  std::map<NodeId, std::vector<NodeId>> aliases_after;
  for (const Node& n : g.nodes()) {
    const int group = fusion.group_of[n.id];
    if (fusion.recomputed[n.id]) continue;
    if (group >= 0) {
      const NodeId root = fusion.groups[static_cast<size_t>(group)].root;
      computed_at[n.id] = root;
      if (root != n.id) continue;
      steps.push_back({StepKind::kernel, n.id, group});
      for (NodeId alias : aliases_after[n.id]) steps.push_back({StepKind::alias, alias, -1});
    } else if (n.op == Op::assign) {
      steps.push_back({StepKind::assign, n.id, -1});
    } else if (n.op == Op::reshape) {
      const NodeId at = computed_at[n.id] = computed_at[n.operands[0]];
      if (at > n.id)
        aliases_after[at].push_back(n.id);
      else
        steps.push_back({StepKind::alias, n.id, -1});
    } else if (op_info(n.op).category != OpCategory::Source) {
      throw Error(fmt::format("{}: internal error: no kernel computes this node", node_label(n)));
    }
  }
  return steps;
}

}  // namespace

/// Below this much work (CompiledKernel::work times items) a kernel runs on the calling
/// thread alone: waking the others would cost more than it saves.
constexpr double kMinParallelWork = 1 << 15;

struct JitExecutable::Plan {
  explicit Plan(const Graph& g, const JitOptions& options)
      : graph(g), jit(options.keep_dumps), pool(std::max(1, options.threads)), poison_arena(options.poison_arena) {}

  Graph graph;
  Jit jit;
  int width = 0;  // floats per vector in the kernels
  ThreadPool pool;
  std::vector<CompiledKernel> compiled;
  std::vector<KernelInfo> infos;
  std::vector<std::vector<KeyCheck>> key_checks;  // per kernel
  /// Per kernel: the cross-entropy nodes whose labels (operand 1) the plan checks before the
  /// launch, with the interpreter's message, since a kernel cannot report a bad label.
  std::vector<std::vector<NodeId>> label_checks;
  /// Per thread: the largest kernel scratch (packed panels), from a page boundary so that the
  /// microkernel's vector loads of a panel never straddle two cache lines.
  std::vector<PageBuffer> scratch_storage;
  std::vector<float*> scratch;
  /// Per kernel that keeps its packed B between runs (CompiledKernel::kept_b_floats): the
  /// packed copy, the B tensor it was packed from, and whether it still holds that tensor's values.
  struct KeptB {
    PageBuffer storage;
    const float* source = nullptr;
    bool current = false;
  };
  std::vector<KeptB> kept_b;
  std::vector<Step> steps;
  std::vector<FusionGroup> groups;  // per kernel
  std::vector<Tensor> storage;      // per node: the constants' values
  /// Every kernel's output lives in one arena, placed by liveness (runtime/arena.h).
  bool poison_arena;  // JitOptions::poison_arena
  PageBuffer arena_storage;
  float* arena = nullptr;  // arena_storage.data()
  int64_t arena_floats = 0;
  std::vector<int64_t> arena_offset;  // per node, -1 when not in the arena
  std::vector<NodeId> in_place_source;  // per node: the source it is written into, or -1 (plan_in_place)

  /// Where the kernel computing `id` stores it: the arena, or, when it is written in place, the
  /// tensor bound to the source it replaces (`data_of` holds each node's data this step; a
  /// source's points into the caller's feeds or state).
  float* buffer_of(NodeId id, const std::vector<const float*>& data_of) {
    return in_place_source[id] >= 0 ? const_cast<float*>(data_of[in_place_source[id]]) : arena + arena_offset[id];
  }
  /// Whether [data, data + floats) is memory of the plan's own (its arena or a constant).
  bool owns(const float* data, int64_t floats) const {
    if (data >= arena && data + floats <= arena + arena_floats) return true;
    for (const Tensor& t : storage)
      if (t.size() > 0 && data >= t.data() && data + floats <= t.data() + t.size()) return true;
    return false;
  }
  void place_buffers();
  bool profiling = false;
  std::vector<int64_t> step_calls;   // per step, while profiling
  std::vector<double> step_seconds;  // per step, while profiling

  void bind_sources(const StateMap& feeds, const StateMap& state, std::vector<const float*>& data_of) const;
  void launch(int k, std::vector<const float*>& data_of);
};

void JitExecutable::Plan::bind_sources(const StateMap& feeds, const StateMap& state,
                                       std::vector<const float*>& data_of) const {
  for (const Node& n : graph.nodes()) {
    switch (n.op) {
      case Op::input:
        data_of[n.id] = source_data(feeds, n, "feed");
        break;
      case Op::parameter:
        data_of[n.id] = source_data(state, n, "parameter");
        break;
      case Op::state:
        data_of[n.id] = source_data(state, n, "state");
        break;
      case Op::constant:
        data_of[n.id] = storage[n.id].data();
        break;
      case Op::neg:
      case Op::exp:
      case Op::log:
      case Op::sqrt:
      case Op::relu:
      case Op::tanh:
      case Op::sigmoid:
      case Op::elu:
      case Op::selu:
      case Op::leaky_relu:
      case Op::add:
      case Op::sub:
      case Op::mul:
      case Op::div:
      case Op::pow:
      case Op::relu_grad:
      case Op::elu_grad:
      case Op::selu_grad:
      case Op::leaky_relu_grad:
      case Op::dropout:
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
        break;  // computed by the plan, not bound
    }
  }
}

void JitExecutable::Plan::launch(int k, std::vector<const float*>& data_of) {
  for (const KeyCheck& check : key_checks[k]) {
    const float key = *data_of[check.key];
    if (!(key >= 0 && key < float(1 << 24) && key == std::floor(key)))
      throw Error(
          fmt::format("{}: dropout key {} is not an integer in [0, 2^24)", node_label(graph.node(check.dropout)), key));
  }
  for (NodeId id : label_checks[k]) {
    const Node& n = graph.node(id);
    const int64_t rows = graph.shape(n.operands[1])[0], classes = graph.shape(n.operands[0]).back();
    const float* labels = data_of[n.operands[1]];
    for (int64_t r = 0; r < rows; ++r)
      if (!(labels[r] >= 0 && labels[r] < float(classes) && labels[r] == std::floor(labels[r])))
        throw Error(fmt::format("{}: label {} of row {} is not a class id in [0, {})", node_label(n), labels[r], r,
                                classes));
  }
  const CompiledKernel& kernel = compiled[k];
  const NodeId root = kernel.group.root;
  // Every buffer is passed as float*: a kernel writes its root's and side outputs' buffers (and
  // its scratch) and only reads its inputs. An output written in place is the very tensor of
  // the source it replaces (plan_in_place) or the buffer of an input it overwrites
  // (plan_overwrites), which the kernel also reads.
  std::vector<float*> args{buffer_of(root, data_of)};
  for (NodeId id : kernel.group.side_outputs) args.push_back(buffer_of(id, data_of));
  for (NodeId id : kernel.group.inputs) args.push_back(const_cast<float*>(data_of[id]));
  // After the scratch: a kept packed B and, not null when it must be packed again, B itself.
  std::vector<float*> after_scratch;
  KeptB& kept = kept_b[static_cast<size_t>(k)];
  if (kernel.kept_b_floats > 0) {
    const float* b = data_of[kernel.group.inputs[1]];
    const bool repack = !kept.current || kept.source != b;
    after_scratch = {kept.storage.data(), repack ? const_cast<float*>(b) : nullptr};
  }
  const bool split = pool.size() > 1 && kernel.items > 1 && kernel.work * double(kernel.items) >= kMinParallelWork;
  if (!split) {
    if (kernel.scratch_floats > 0) args.push_back(scratch[0]);
    args.insert(args.end(), after_scratch.begin(), after_scratch.end());
    kernel.entry(args.data(), 0, kernel.items);
  } else {
    pool.run([&](int t) {
      std::vector<float*> mine = args;
      if (kernel.scratch_floats > 0) mine.push_back(scratch[static_cast<size_t>(t)]);
      mine.insert(mine.end(), after_scratch.begin(), after_scratch.end());
      const int64_t threads = pool.size();
      kernel.entry(mine.data(), kernel.items * t / threads, kernel.items * (t + 1) / threads);
    });
  }
  if (kernel.kept_b_floats > 0) {
    kept.source = data_of[kernel.group.inputs[1]];
    kept.current = true;
  }
  data_of[root] = args[0];
  for (size_t i = 0; i < kernel.group.side_outputs.size(); ++i) data_of[kernel.group.side_outputs[i]] = args[1 + i];
}

void JitExecutable::Plan::place_buffers() {
  const MemoryLayout layout = lay_out_memory(graph, steps, groups, in_place_source);
  arena_floats = layout.arena.floats;
  arena_storage = PageBuffer(layout.arena.floats, poison_arena ? std::numeric_limits<float>::quiet_NaN() : 0.0f,
                             "the plan's arena");
  arena = arena_storage.data();
  arena_offset.assign(graph.size(), -1);
  for (size_t k = 0; k < layout.nodes.size(); ++k) arena_offset[layout.nodes[k]] = layout.arena.offsets[k];
}

JitExecutable::JitExecutable(const Graph& g, const JitOptions& options) : plan_(std::make_unique<Plan>(g, options)) {
  Plan& p = *plan_;
  verify(g);
  const FusionPlan fusion = plan_fusion(g);
  p.steps = plan_steps(g, fusion);
  p.in_place_source = in_place_sources(g, fusion);
  const int width = options.vector_width > 0 ? options.vector_width : p.jit.target().vector_width;
  if (width & (width - 1)) throw Error(fmt::format("vector width {} is not a power of two", width));
  p.width = width;
  if (options.precision == Precision::bf16) {
    if (const std::string refusal = bf16_refusal(p.jit.target()); !refusal.empty())
      throw Error("precision bf16 " + refusal);
    if (width != 16) throw Error(fmt::format("precision bf16 needs vectors of 16 floats, not {}", width));
  }
  p.compiled = compile_groups(p.jit, g, fusion, static_cast<unsigned>(width), p.pool.size(), options.conv_algo,
                              options.keep_packed_parameters, options.precision);
  p.kept_b.resize(p.compiled.size());
  for (size_t k = 0; k < p.compiled.size(); ++k)
    if (const int64_t floats = p.compiled[k].kept_b_floats; floats > 0)
      p.kept_b[k].storage = PageBuffer(floats, 0.0f, "a kernel's packed weights");
  p.storage.resize(g.size());
  for (size_t k = 0; k < p.compiled.size(); ++k) {
    const FusionGroup& group = p.compiled[k].group;
    std::vector<NodeId> computed;  // a prologue's nodes too: the kernel computes them
    std::ranges::merge(group.prologue, group.nodes, std::back_inserter(computed));
    p.infos.push_back(KernelInfo{p.compiled[k].name, std::move(computed), group.root});
    std::vector<KeyCheck> checks;
    for (NodeId id : group.nodes)
      if (g.node(id).op == Op::dropout && fusion.group_of[g.node(id).operands[1]] != static_cast<int>(k))
        checks.push_back({id, g.node(id).operands[1]});
    p.key_checks.push_back(std::move(checks));
    std::vector<NodeId> labels;
    for (NodeId id : group.nodes)
      if (g.node(id).op == Op::softmax_xent || g.node(id).op == Op::softmax_xent_grad) labels.push_back(id);
    p.label_checks.push_back(std::move(labels));
  }
  for (NodeId id : g.nodes_of(Op::constant)) p.storage[id] = constant_value(g.node(id));
  p.groups = fusion.groups;
  int64_t scratch_floats = 0;
  for (const CompiledKernel& k : p.compiled) scratch_floats = std::max(scratch_floats, k.scratch_floats);
  for (int t = 0; t < p.pool.size(); ++t) {
    p.scratch_storage.emplace_back(scratch_floats, 0.0f, "a thread's kernel scratch");
    p.scratch.push_back(p.scratch_storage.back().data());
  }
  p.place_buffers();
}

JitExecutable::~JitExecutable() = default;

void JitExecutable::parameters_changed() {
  for (Plan::KeptB& kept : plan_->kept_b) kept.current = false;
}

int64_t JitExecutable::kept_packed_bytes() const {
  int64_t floats = 0;
  for (const CompiledKernel& k : plan_->compiled) floats += k.kept_b_floats;
  return floats * static_cast<int64_t>(sizeof(float));
}

int64_t JitExecutable::scratch_bytes() const {
  int64_t floats = 0;
  for (const CompiledKernel& k : plan_->compiled) floats = std::max(floats, k.scratch_floats);
  return floats * static_cast<int64_t>(sizeof(float));
}

StateMap JitExecutable::run(const StateMap& feeds, StateMap& state) {
  Plan& p = *plan_;
  const Graph& g = p.graph;
  std::vector<const float*> data_of(g.size(), nullptr);  // per node: its value this step
  p.bind_sources(feeds, state, data_of);
  using Clock = std::chrono::steady_clock;
  for (size_t s = 0; s < p.steps.size(); ++s) {
    const Step& step = p.steps[s];
    const Node& n = g.node(step.node);
    const Clock::time_point start = p.profiling ? Clock::now() : Clock::time_point{};
    switch (step.kind) {
      case StepKind::kernel:
        p.launch(step.index, data_of);
        break;
      case StepKind::assign:  // read after the last step: its value may be a side output of a later kernel
        break;
      case StepKind::alias:
        data_of[n.id] = data_of[n.operands[0]];
        break;
    }
    if (p.profiling) {
      p.step_calls[s] += 1;
      p.step_seconds[s] += std::chrono::duration<double>(Clock::now() - start).count();
    }
  }

  StateMap outputs;
  for (const auto& [name, id] : g.outputs()) outputs[name] = tensor_from(data_of[id], g.shape(id));
  // Values written in place by their kernels are in their state tensors already. Every other
  // assign reads the step's values before any of them is written back: a value the plan
  // computed (in its arena or storage) is copied straight into the state tensor it replaces;
  // one that is itself a state or feed tensor is copied aside first, since writing back
  // another assign could overwrite it.
  std::vector<std::pair<Tensor*, const float*>> write_back;
  std::vector<std::pair<std::string, Tensor>> copies;
  for (NodeId id : g.nodes_of(Op::assign)) {
    data_of[id] = data_of[g.node(id).operands[0]];
    const NodeId source = p.in_place_source[g.node(id).operands[0]];
    if (source >= 0 && op_info(g.node(source).op).category == OpCategory::Source) continue;  // in its state tensor
    const std::string& target = g.node(id).attrs.s("target");
    const Shape& shape = g.shape(id);
    auto it = state.find(target);
    const bool planned = p.owns(data_of[id], numel(shape));
    if (planned && it != state.end() && shape_of(it->second) == shape)
      write_back.emplace_back(&it->second, data_of[id]);
    else
      copies.emplace_back(target, tensor_from(data_of[id], shape));
  }
  for (auto& [tensor, from] : write_back) std::copy(from, from + tensor->size(), tensor->data());
  for (auto& [target, value] : copies) state[target] = std::move(value);
  return outputs;
}

int JitExecutable::vector_width() const { return plan_->width; }

const std::vector<KernelInfo>& JitExecutable::kernels() const { return plan_->infos; }

const CompileStats& JitExecutable::compile_stats() const { return plan_->jit.stats(); }

int64_t JitExecutable::arena_bytes() const { return plan_->arena_floats * static_cast<int64_t>(sizeof(float)); }

FusionPlan plan_fusion(const Graph& g) {
  FusionPlan fusion = fuse(g);
  const std::vector<Step> steps = plan_steps(g, fusion);
  std::vector<NodeId> in_place_source = plan_in_place(g, steps, fusion.groups);
  plan_overwrites(g, steps, fusion.groups, in_place_source);
  for (const Node& n : g.nodes())
    if (in_place_source[n.id] >= 0)
      fusion.groups[static_cast<size_t>(fusion.group_of[n.id])].in_place.push_back({n.id, in_place_source[n.id]});
  return fusion;
}

int64_t planned_arena_bytes(const Graph& g) {
  const FusionPlan fusion = plan_fusion(g);
  return lay_out_memory(g, plan_steps(g, fusion), fusion.groups, in_place_sources(g, fusion)).arena.floats * static_cast<int64_t>(sizeof(float));
}

void JitExecutable::set_profiling(bool on) {
  plan_->profiling = on;
  if (plan_->step_calls.size() != plan_->steps.size()) reset_profile();
}

void JitExecutable::reset_profile() {
  plan_->step_calls.assign(plan_->steps.size(), 0);
  plan_->step_seconds.assign(plan_->steps.size(), 0.0);
}

std::vector<KernelProfile> JitExecutable::profile() const {
  const Plan& p = *plan_;
  std::vector<KernelProfile> out;
  for (size_t s = 0; s < p.steps.size(); ++s) {
    const Step& step = p.steps[s];
    if (step.kind != StepKind::kernel) continue;
    const KernelInfo& info = p.infos[static_cast<size_t>(step.index)];
    KernelProfile k{info.name, info.nodes, info.root};
    if (s < p.step_calls.size()) {
      k.calls = p.step_calls[s];
      k.seconds = p.step_seconds[s];
    }
    out.push_back(std::move(k));
  }
  return out;
}

std::string JitExecutable::dump(DumpStage stage) const {
  const Plan& p = *plan_;
  if (!p.jit.keeps_dumps()) throw Error("this plan was compiled without keep_dumps: nothing to dump");
  const char* comment = stage == DumpStage::assembly ? "#" : ";";
  std::string out;
  for (size_t k = 0; k < p.infos.size(); ++k) {
    out += fmt::format("{} ==== kernel {} ====\n", comment, p.infos[k].name);
    for (NodeId id : p.infos[k].nodes) {
      const Node& n = p.graph.node(id);
      out += fmt::format("{}   %{} = {} {}  [{}]{}\n", comment, id, op_info(n.op).name, to_string(n.shape),
                         describe(n.where), n.scope.empty() ? "" : " in " + n.scope);
    }
    out += p.jit.texts()[k].at(stage);
    out += "\n";
  }
  return out;
}

std::unique_ptr<JitExecutable> compile_jit(const Graph& g, const JitOptions& options) {
  return std::make_unique<JitExecutable>(g, options);
}

std::string dump_kernels(const Graph& g, DumpStage stage, ConvAlgo conv_algo, Precision precision,
                         bool keep_packed_parameters) {
  return dump_kernels(g, std::vector<DumpStage>{stage}, conv_algo, precision, keep_packed_parameters)[0];
}

std::vector<std::string> dump_kernels(const Graph& g, const std::vector<DumpStage>& stages, ConvAlgo conv_algo,
                                      Precision precision, bool keep_packed_parameters) {
  JitOptions options;
  options.keep_dumps = true;
  options.conv_algo = conv_algo;
  options.precision = precision;
  options.keep_packed_parameters = keep_packed_parameters;
  const std::unique_ptr<JitExecutable> plan = compile_jit(g, options);
  std::vector<std::string> dumps;
  for (DumpStage stage : stages) dumps.push_back(plan->dump(stage));
  return dumps;
}

}  // namespace dagger
