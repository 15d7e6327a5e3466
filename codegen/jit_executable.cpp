#include "codegen/jit_executable.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "codegen/fallback.h"
#include "codegen/fusion.h"
#include "codegen/lower.h"
#include "runtime/thread_pool.h"

namespace dagger {

namespace {

/// What the plan does when it reaches a node, in node order.
enum class StepKind { kernel, interpreted, assign };

struct Step {
  StepKind kind;
  NodeId node;
  int index;  // into the plan's kernels or fallbacks
};

/// A dropout inside a kernel whose key the plan checks before launching it (the kernel cannot
/// report errors).
struct KeyCheck {
  NodeId dropout, key;
};

Shape shape_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end()); }

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

Tensor empty_tensor(const Shape& shape) { return Tensor::from_shape(std::vector<size_t>(shape.begin(), shape.end())); }

}  // namespace

/// Below this much work (CompiledKernel::work times items) a kernel runs on the calling
/// thread alone: waking the others would cost more than it saves.
constexpr double kMinParallelWork = 1 << 15;

struct JitExecutable::Plan {
  explicit Plan(const Graph& g, const JitOptions& options)
      : graph(g), jit(options.keep_dumps), pool(std::max(1, options.threads)) {}

  Graph graph;
  Jit jit;
  ThreadPool pool;
  std::vector<CompiledKernel> compiled;
  std::vector<KernelInfo> infos;
  std::vector<std::vector<KeyCheck>> key_checks;   // per kernel
  std::vector<std::vector<std::vector<float>>> scratch;  // per kernel, per thread
  std::vector<FallbackNode> fallbacks;
  std::vector<NodeId> interpreted;
  std::vector<Step> steps;
  std::vector<Tensor> storage;  // per node: the plan's buffer for values it computes

  void bind_sources(const StateMap& feeds, const StateMap& state, std::vector<const float*>& at) const;
  void launch(int k, std::vector<const float*>& at);
};

void JitExecutable::Plan::bind_sources(const StateMap& feeds, const StateMap& state,
                                       std::vector<const float*>& at) const {
  for (const Node& n : graph.nodes()) {
    switch (n.op) {
      case Op::input:
        at[n.id] = source_data(feeds, n, "feed");
        break;
      case Op::parameter:
        at[n.id] = source_data(state, n, "parameter");
        break;
      case Op::state:
        at[n.id] = source_data(state, n, "state");
        break;
      case Op::constant:
        at[n.id] = storage[n.id].data();
        break;
      default:
        break;
    }
  }
}

void JitExecutable::Plan::launch(int k, std::vector<const float*>& at) {
  for (const KeyCheck& check : key_checks[k]) {
    const float key = *at[check.key];
    if (!(key >= 0 && key < float(1 << 24) && key == std::floor(key)))
      throw Error(
          fmt::format("{}: dropout key {} is not an integer in [0, 2^24)", node_label(graph.node(check.dropout)), key));
  }
  const CompiledKernel& kernel = compiled[k];
  const NodeId root = kernel.group.root;
  // Kernels take float* for every buffer but write only the first (and the scratch).
  std::vector<float*> args{storage[root].data()};
  for (NodeId id : kernel.group.inputs) args.push_back(const_cast<float*>(at[id]));
  const bool split = pool.size() > 1 && kernel.items > 1 && kernel.work * double(kernel.items) >= kMinParallelWork;
  if (!split) {
    if (kernel.scratch_floats > 0) args.push_back(scratch[k][0].data());
    kernel.entry(args.data(), 0, kernel.items);
  } else {
    pool.run([&](int t) {
      std::vector<float*> mine = args;
      if (kernel.scratch_floats > 0) mine.push_back(scratch[k][static_cast<size_t>(t)].data());
      const int64_t threads = pool.size();
      kernel.entry(mine.data(), kernel.items * t / threads, kernel.items * (t + 1) / threads);
    });
  }
  at[root] = storage[root].data();
}

JitExecutable::JitExecutable(const Graph& g, const JitOptions& options) : plan_(std::make_unique<Plan>(g, options)) {
  Plan& p = *plan_;
  verify(g);
  const FusionPlan fusion = fuse(g);
  const int width = options.vector_width > 0 ? options.vector_width : vector_width_floats();
  if (width & (width - 1)) throw Error(fmt::format("vector width {} is not a power of two", width));
  p.compiled = compile_groups(p.jit, g, fusion, static_cast<unsigned>(width));
  p.storage.resize(g.size());
  for (size_t k = 0; k < p.compiled.size(); ++k) {
    const FusionGroup& group = p.compiled[k].group;
    p.infos.push_back(KernelInfo{p.compiled[k].name, group.nodes, group.root});
    p.scratch.emplace_back(static_cast<size_t>(p.pool.size()),
                           std::vector<float>(static_cast<size_t>(p.compiled[k].scratch_floats)));
    p.storage[group.root] = empty_tensor(g.shape(group.root));
    std::vector<KeyCheck> checks;
    for (NodeId id : group.nodes)
      if (g.node(id).op == Op::dropout && fusion.group_of[g.node(id).operands[1]] != static_cast<int>(k))
        checks.push_back({id, g.node(id).operands[1]});
    p.key_checks.push_back(std::move(checks));
  }
  for (const Node& n : g.nodes()) {
    const int group = fusion.group_of[n.id];
    if (group >= 0) {
      if (p.compiled[group].group.root == n.id) p.steps.push_back({StepKind::kernel, n.id, group});
    } else if (n.op == Op::constant) {
      p.storage[n.id] = FallbackNode(g, n.id).run({});
    } else if (n.op == Op::assign || n.op == Op::reshape) {  // a reshape aliases its operand's buffer
      p.steps.push_back({StepKind::assign, n.id, -1});
    } else if (op_info(n.op).category != OpCategory::Source) {
      p.steps.push_back({StepKind::interpreted, n.id, static_cast<int>(p.fallbacks.size())});
      p.fallbacks.emplace_back(g, n.id);
      p.interpreted.push_back(n.id);
    }
  }
}

JitExecutable::~JitExecutable() = default;

StateMap JitExecutable::run(const StateMap& feeds, StateMap& state) {
  Plan& p = *plan_;
  const Graph& g = p.graph;
  std::vector<const float*> at(g.size(), nullptr);
  p.bind_sources(feeds, state, at);
  for (const Step& step : p.steps) {
    const Node& n = g.node(step.node);
    switch (step.kind) {
      case StepKind::kernel:
        p.launch(step.index, at);
        break;
      case StepKind::assign:
        at[n.id] = at[n.operands[0]];
        break;
      case StepKind::interpreted: {
        std::vector<const float*> operands;
        for (NodeId o : n.operands) operands.push_back(at[o]);
        p.storage[n.id] = p.fallbacks[step.index].run(operands);
        at[n.id] = p.storage[n.id].data();
        break;
      }
    }
  }

  StateMap outputs;
  for (const auto& [name, id] : g.outputs()) outputs[name] = tensor_from(at[id], g.shape(id));
  // Every assign reads the step's values before any of them is written back.
  std::vector<std::pair<std::string, Tensor>> writes;
  for (NodeId id : g.nodes_of(Op::assign))
    writes.emplace_back(g.node(id).attrs.s("target"), tensor_from(at[id], g.shape(id)));
  for (auto& [target, value] : writes) state[target] = std::move(value);
  return outputs;
}

const std::vector<KernelInfo>& JitExecutable::kernels() const { return plan_->infos; }

const std::vector<NodeId>& JitExecutable::interpreted_nodes() const { return plan_->interpreted; }

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

std::string dump_kernels(const Graph& g, DumpStage stage) {
  JitOptions options;
  options.keep_dumps = true;
  return compile_jit(g, options)->dump(stage);
}

}  // namespace dagger
