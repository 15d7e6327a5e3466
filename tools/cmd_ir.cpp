// `dagger models`, `dagger ir` and `dagger gradcheck`: looking at what the compiler made.
#include <fmt/format.h>

#include <map>

#include "dagger/autodiff/model_text.h"
#include "dagger/autodiff/optimizer.h"
#include "dagger/codegen/fusion.h"
#include "dagger/codegen/jit_executable.h"
#include "dagger/graph/printer.h"
#include "dagger/runtime/gradcheck.h"
#include "dagger/runtime/summary.h"
#include "dagger/runtime/trainer.h"
#include "tools/cli.h"

namespace dagger::cli {

Run add_models(CLI::App& app) {
  app.add_subcommand("models", "list the model zoo with parameter counts");
  return [] {
    fmt::print("{:<10} {:>12}  {}\n", "model", "parameters", "description");
    for (const zoo::Entry& e : zoo::entries())
      fmt::print("{:<10} {:>12}  {}\n", e.name, zoo::parameter_count(e.build), e.description);
    fmt::print("\nAlso by call: mlp1(u,act,p), mlp2(h1,h2,p1,p2,bn|nobn), cnn(k,bn|nobn,p[,q[,h]]), rescnn(residual|plain[,q[,h]]), resnet(n,w[,p])\n");
    return 0;
  };
}

Run add_summary(CLI::App& app) {
  auto* cmd = app.add_subcommand("summary", "print a model's layers: output shape, parameters and FLOPs per example");
  struct Flags {
    std::string model, checkpoint, input_shape = "1,28,28";
    int64_t classes = 10;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("model", f->model, "model name or call (or --checkpoint)");
  cmd->add_option("--checkpoint", f->checkpoint, "summarize the model a checkpoint carries instead")
      ->check(kExistingFolder);
  cmd->add_option("--input-shape", f->input_shape, "C,H,W of one image, for a model name or call")
      ->check(kInputShape)
      ->capture_default_str();
  cmd->add_option("--classes", f->classes, "number of classes, for a model name or call")
      ->check(whole_in(1, 4096))
      ->capture_default_str();
  return [f] {
    if (f->model.empty() == f->checkpoint.empty())
      throw UsageError("give a model name or call, or --checkpoint DIR (one of them)");
    if (!f->checkpoint.empty()) {
      TrainConfig options;
      options.progress = false;
      const Trainer trainer = Trainer::load(f->checkpoint, options);
      const TrainConfig& cfg = trainer.config();
      fmt::print("{}", format_summary(summarize(trainer.model(), cfg.input_shape, cfg.classes)));
      return 0;
    }
    const std::vector<size_t> shape = parse_input_shape(f->input_shape);
    const ModelArg model = resolve_model(f->model);
    fmt::print("{}", format_summary(summarize(model.build, model.input_shape.value_or(Shape(shape.begin(), shape.end())),
                                              model.classes.value_or(f->classes))));
    return 0;
  };
}

Run add_ir(CLI::App& app) {
  auto* cmd = app.add_subcommand("ir", "print a stage of the compiler for a model");
  struct Flags {
    std::string model, stage = "graph", format = "text", optimizer = "adam", kernel, conv_algo = "auto",
                       precision = "f32", plan = "train";
    bool why = false, nesterov = false;
    int64_t batch = 64;
    double weight_decay = 0;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("model", f->model, "model name or call, or a model text (FILE.dagger, or a checkpoint folder)")
      ->required();
  cmd->add_option("--stage", f->stage,
                  "graph (forward, training mode) | eval (forward, inference mode) | grad (training step) | "
                  "fused (the plan's fusion groups and why each ends) | model (the model text checkpoints "
                  "carry) | llvm | opt | asm (the plan's JIT kernels: IR before and after O3, assembly)")
      ->check(one_of("stage", {"graph", "eval", "grad", "fused", "model", "llvm", "opt", "asm"}))
      ->capture_default_str();
  cmd->add_option("--format", f->format, "text | dot (dot with graph | eval | grad)")
      ->check(one_of("format", {"text", "dot"}))
      ->capture_default_str();
  cmd->add_option("--plan", f->plan,
                  "with fused | llvm | opt | asm: train (the training step's plan) | eval (the inference plan that "
                  "evaluation and prediction run)")
      ->check(one_of("plan", {"train", "eval"}))
      ->capture_default_str();
  cmd->add_option("--kernel", f->kernel, "with llvm | opt | asm: only this kernel (a name from --stage fused)");
  cmd->add_flag("--why", f->why, "with fused: every fusion decision and its reason, and each convolution's algorithm");
  add_conv_algo(*cmd, f->conv_algo);
  add_precision(*cmd, f->precision);
  cmd->add_option("--batch", f->batch, "batch size the graph is specialized to")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--optimizer", f->optimizer, "optimizer of the training step: sgd | momentum | adam | adamw")
      ->check(kOptimizer)
      ->capture_default_str();
  cmd->add_flag("--nesterov", f->nesterov, "with --optimizer momentum: Nesterov momentum, as dagger train takes it");
  cmd->add_option("--weight-decay", f->weight_decay,
                  "weight decay of the training step (adamw: decoupled), as dagger train takes it")
      ->check(number_in({.low = 0}))
      ->capture_default_str();
  return [f, cmd] {
    // A flag that does not apply to the stage asked for would be ignored in silence: refuse it.
    const bool kernel_stage = f->stage == "llvm" || f->stage == "opt" || f->stage == "asm";
    if (!f->kernel.empty() && !kernel_stage)
      throw UsageError(fmt::format("--kernel applies to --stage llvm, opt or asm, not {}", f->stage));
    const bool plan_stage = kernel_stage || f->stage == "fused";
    if (cmd->count("--plan") > 0 && !plan_stage)
      throw UsageError(
          fmt::format("--plan applies to --stage fused, llvm, opt or asm (a compiled plan), not {}", f->stage));
    const bool eval_plan = f->plan == "eval";
    const bool step_stage = (plan_stage && !eval_plan) || f->stage == "grad";
    for (const char* flag : {"--optimizer", "--nesterov", "--weight-decay"})
      if (cmd->count(flag) > 0 && !step_stage)
        throw UsageError(fmt::format("{} applies to the training step's stages (grad, fused, llvm, opt, asm), not {}",
                                     flag, eval_plan ? "--plan eval" : f->stage));
    if (cmd->count("--conv-algo") > 0 && !kernel_stage && f->stage != "fused")
      throw UsageError(
          fmt::format("--conv-algo applies to --stage fused, llvm, opt or asm (the kernels), not {}", f->stage));
    if (cmd->count("--precision") > 0 && !kernel_stage)
      throw UsageError(
          fmt::format("--precision applies to --stage llvm, opt or asm (the kernels' code), not {}", f->stage));
    if (f->why && f->stage != "fused")
      throw UsageError(fmt::format("--why applies to --stage fused, not {}", f->stage));
    if (f->format == "dot" && f->stage != "graph" && f->stage != "eval" && f->stage != "grad")
      throw UsageError(fmt::format("--format dot applies to --stage graph, eval or grad, not {}", f->stage));
    const ModelArg model = resolve_model(f->model);
    const Shape input_shape = model.input_shape.value_or(Shape{1, 28, 28});
    const int64_t classes = model.classes.value_or(10);
    OptimizerConfig opt;
    opt.kind = optimizer_kind(f->optimizer);
    opt.nesterov = f->nesterov;
    opt.weight_decay = f->weight_decay;
    require_momentum_flags(*cmd, opt);
    const std::map<std::string, DumpStage> kernel_stages = {
        {"llvm", DumpStage::ir_before_opt}, {"opt", DumpStage::ir_after_opt}, {"asm", DumpStage::assembly}};
    // The graph a plan stage compiles: the training step, or the forward pass in inference mode
    // as evaluation, prediction and the trainer's validation compile it (their dense layers
    // keeping their packed weights between runs).
    auto plan_graph = [&] {
      return eval_plan ? build_inference(model.build, f->batch, input_shape, classes)
                       : build_training_step(model.build, f->batch, opt, input_shape, classes);
    };
    if (auto it = kernel_stages.find(f->stage); it != kernel_stages.end()) {
      const std::string dump = dump_kernels(plan_graph(), it->second, conv_algo(f->conv_algo),
                                            read_precision(f->precision, ExecutorKind::jit), eval_plan);
      if (f->kernel.empty()) {
        fmt::print("{}", dump);
        return 0;
      }
      std::vector<std::string> names;
      for (const auto& [name, text] : per_kernel(dump)) {
        if (name == f->kernel) {
          fmt::print("{}", text);
          return 0;
        }
        names.push_back(name);
      }
      require_choice("kernel", f->kernel, names);
    }
    if (f->stage == "model") {
      fmt::print("{}", print_model(model.build, input_shape, classes));
      return 0;
    }
    if (f->stage == "fused") {
      Graph step = plan_graph();
      const FusionPlan plan = plan_fusion(step);
      fmt::print("{}", describe_fusion(step, plan, f->why, conv_algo(f->conv_algo)));
      int computed = 0;
      for (const Node& n : step.nodes()) {
        const OpCategory category = op_info(n.op).category;
        if (category != OpCategory::Source && n.op != Op::assign && n.op != Op::reshape) ++computed;
      }
      fmt::print("\n{} kernels for {} computing nodes\n", plan.groups.size(), computed);
      fmt::print("arena: {:.2f} MiB planned for every kernel output, placed by liveness\n",
                 double(planned_arena_bytes(step)) / (1 << 20));
      return 0;
    }
    Graph g = f->stage == "grad"   ? build_training_step(model.build, f->batch, opt, input_shape, classes)
              : f->stage == "eval" ? build_inference(model.build, f->batch, input_shape, classes)
                                   : build_forward(model.build, f->batch, Mode::train, input_shape, classes);
    std::string title = fmt::format("{} {}", f->model, f->stage);
    fmt::print("{}", f->format == "dot" ? print_dot(g, title) : print_text(g));
    return 0;
  };
}

Run add_gradcheck(CLI::App& app) {
  auto* cmd = app.add_subcommand("gradcheck", "check gradients against central finite differences in double precision");
  struct Flags {
    std::string model, op;
    int64_t batch = 2, size = 12;
    GradcheckOptions options;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("model", f->model, "model name or call");
  cmd->add_option("--op", f->op, "check one op instead of a model");
  cmd->add_option("--batch", f->batch, "batch size of the model check")->check(at_least(1))->capture_default_str();
  cmd->add_option("--input-size", f->size, "height and width of the model check's input images")
      ->check(whole_in(1, 1024))
      ->capture_default_str();
  cmd->add_option("--samples", f->options.max_elements, "elements checked per tensor")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--tolerance", f->options.tolerance, "largest relative error accepted")
      ->check(number_in({.low = 0, .low_open = true}))
      ->capture_default_str();
  cmd->add_option("--seed", f->options.seed, "seed of the inputs, parameters and upstream gradients")
      ->check(kSeed)
      ->capture_default_str();
  return [f] {
    if (f->model.empty() == f->op.empty()) throw UsageError("gradcheck takes a model or --op NAME (exactly one)");
    std::vector<GradcheckResult> results;
    if (!f->op.empty()) {
      std::vector<std::string> valid;
      for (Op op : gradcheckable_ops()) valid.emplace_back(op_info(op).name);
      require_choice("op", f->op, valid);
      for (const Shape& shape : {Shape{3, 5}, Shape{2, 3, 5, 5}}) {
        auto r = gradcheck_op(*op_from_name(f->op), shape, f->options);
        results.insert(results.end(), r.begin(), r.end());
      }
    } else {
      results = gradcheck_model(resolve_model(f->model).build, f->batch, f->options, {1, f->size, f->size});
    }
    bool ok = true;
    fmt::print("{:<28} {:<16} {:>8} {:>12} {:>12}\n", "tensor", "shape", "checked", "max rel err", "max abs err");
    for (const GradcheckResult& r : results) {
      bool pass = r.max_rel_error <= f->options.tolerance;
      ok = ok && pass;
      fmt::print("{:<28} {:<16} {:>8} {:>12.3e} {:>12.3e}{}\n", r.name, to_string(r.shape), r.checked, r.max_rel_error,
                 r.max_abs_error, pass ? "" : "  FAIL");
    }
    fmt::print("{}\n", ok ? "all gradients within tolerance" : "some gradients are out of tolerance");
    return ok ? 0 : 1;
  };
}

}  // namespace dagger::cli
