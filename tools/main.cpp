// dagger: the command-line door to the compiler, the trainer and every dump.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "dagger/autodiff/model_text.h"
#include "dagger/codegen/jit.h"
#include "dagger/graph/error.h"
#include "dagger/runtime/distributed.h"
#include "dagger/runtime/trainer.h"
#include "tools/cli.h"

int main(int argc, char** argv) {
  using namespace dagger::cli;
  CLI::App app{"dagger: a deep-learning compiler for CPU training, declared in C++"};
  app.require_subcommand(1);
  std::map<std::string, Run> runs = {
      {"models", add_models(app)}, {"train", add_train(app)},         {"eval", add_eval(app)},
      {"ir", add_ir(app)},         {"gradcheck", add_gradcheck(app)}, {"bench", add_bench(app)},
      {"suite", add_suite(app)},   {"summary", add_summary(app)}, {"predict", add_predict(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, as every other error: the flag or command and what is wrong with it.
    std::vector<std::string> names;
    for (const auto& [name, run] : runs) names.push_back(name);
    if (argc > 1 && argv[1][0] != '-' && !runs.count(argv[1]))
      fmt::print(stderr, "error: {}\n", choice_error("command", argv[1], names));
    else if (argc == 1)
      fmt::print(stderr, "error: give a command: {}\n", fmt::join(names, ", "));
    else
      fmt::print(stderr, "error: {}\n", e.what());
    return kUsageError;
  }
  // Under mpirun, a rank that fails ends every rank: the others would wait for it forever.
  const auto stop_all = [](int code) {
    dagger::abort_world(code);
    return code;
  };
  try {
    // The JIT's environment is checked before any work, whichever command runs.
    dagger::jit_target();
    dagger::kernel_cache_max_bytes();
    dagger::perf_output();
    for (const auto& [name, run] : runs)
      if (app.got_subcommand(name)) return run();
  } catch (const UsageError& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return kUsageError;  // every rank reads the same flags: all stop here, and MPI ends normally
  } catch (const dagger::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return stop_all(1);
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "error: out of memory\n");
    return stop_all(1);
  } catch (const std::filesystem::filesystem_error& e) {
    // A file the commands do not name themselves (inside a checkpoint, say): the path and why.
    fmt::print(stderr, "error: '{}': {}\n", e.path1().string(), e.code().message());
    return stop_all(1);
  } catch (const std::exception& e) {
    // The last resort: a library's exception (a JSON field of the wrong type, a filesystem
    // error) still ends in one line and exit 1, never an abort.
    fmt::print(stderr, "error: {}\n", e.what());
    return stop_all(1);
  }
  return 1;
}

namespace dagger::cli {

ModelArg resolve_model(const std::string& spec) {
  std::filesystem::path file(spec);
  if (std::filesystem::is_directory(file)) {
    file /= kModelFile;
    if (!std::filesystem::is_regular_file(file))
      throw UsageError(fmt::format("'{}' is a folder without a {}: give a checkpoint folder, a model text or a "
                                   "zoo model",
                                   spec, kModelFile));
  }
  if (std::filesystem::is_regular_file(file)) {
    std::ifstream in(file, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw Error(fmt::format("cannot read '{}'", file.string()));
    ParsedModel parsed = parse_model(text, file.string());
    ModelArg arg;
    arg.name = spec;
    arg.description = "model text " + file.string();
    arg.build = std::move(parsed.build);
    arg.input_shape = parsed.input_shape;
    arg.classes = parsed.classes;
    return arg;
  }
  try {
    ModelArg arg;
    static_cast<zoo::Entry&>(arg) = zoo::find(spec);
    return arg;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

}  // namespace dagger::cli
