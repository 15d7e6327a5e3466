#pragma once
/// Shared pieces of the `dagger` command line: each subcommand registers itself on the
/// CLI11 app and returns the function that runs it.
#include <CLI/CLI.hpp>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "dagger/autodiff/optimizer.h"
#include "dagger/runtime/executor.h"

namespace dagger::cli {

using Run = std::function<int()>;

/// Exit code for a usage error (unknown model, flag, stage...).
constexpr int kUsageError = 2;

Run add_models(CLI::App& app);
Run add_train(CLI::App& app);
Run add_eval(CLI::App& app);
Run add_ir(CLI::App& app);
Run add_summary(CLI::App& app);
Run add_predict(CLI::App& app);
Run add_gradcheck(CLI::App& app);
Run add_bench(CLI::App& app);
Run add_suite(CLI::App& app);

/// Thrown for a bad value of a valid flag; main prints it and exits with kUsageError.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A seed on the command line: decimal digits only, at most 2^64 - 1 (no sign, no exponent).
inline const CLI::Validator kSeed(
    [](std::string& text) -> std::string {
      const bool digits = !text.empty() && text.size() <= 20 && text.find_first_not_of("0123456789") == std::string::npos;
      if (digits && (text.size() < 20 || text <= "18446744073709551615")) return "";
      return "'" + text + "' is not a whole number from 0 to 18446744073709551615";
    },
    "SEED");

// Option checks run while CLI11 parses, so a bad value is a usage error naming its option
// (CLI11 puts the option's name in front of the message) before anything is read or built.

/// A whole number from `least` to `most` (a batch, a count of epochs, threads, steps).
CLI::Validator whole_in(long long least, long long most = std::numeric_limits<long long>::max());

/// A count that must be at least `least`.
inline CLI::Validator at_least(long long least) { return whole_in(least); }

/// The range of a real-valued option; an open end excludes its bound, an infinite `high` means none.
struct Interval {
  double low, high = std::numeric_limits<double>::infinity();
  bool low_open = false, high_open = false;
};

/// A finite number in `range` (NaN and infinities are refused).
CLI::Validator number_in(Interval range);

/// One of `valid`; the message reads "unknown WHAT 'value' (valid: ...)".
CLI::Validator one_of(const std::string& what, std::vector<std::string> valid);

/// The most worker threads a command accepts.
constexpr long long kMaxThreads = 1024;

extern const CLI::Validator kThreads;         ///< 1 to kMaxThreads
extern const CLI::Validator kExistingFolder;  ///< an input folder (data, checkpoint)
extern const CLI::Validator kExistingFile;    ///< an input file
/// An output folder: it may not exist yet, but neither it nor a part of its path is a file.
extern const CLI::Validator kOutputFolder;
/// An output file: not a folder, in a folder that exists.
extern const CLI::Validator kOutputFile;
extern const CLI::Validator kInputShape;  ///< "C,H,W", see parse_input_shape
extern const CLI::Validator kExecutor;    ///< jit | reference
extern const CLI::Validator kOptimizer;   ///< sgd | momentum | adam | adamw

/// --conv-algo (train, bench, ir, suite): how the JIT computes 3x3 stride-1 same convolutions,
/// "direct" | "winograd" | "auto" (codegen/conv_algo.h), read with dagger::conv_algo. The
/// commands default to "auto", measured faster on cnn3 and rescnn (docs/performance.md), as do
/// the library's options (JitOptions, ExecutorOptions, TrainConfig, SuiteOptions).
void add_conv_algo(CLI::App& cmd, std::string& algo);

/// --precision (train, eval, predict, bench, ir, suite): "f32" | "bf16" (runtime/precision.h), read with
/// dagger::precision. bf16 needs the JIT and a CPU with AVX512_BF16; the plan refuses it
/// otherwise (dagger::Error, exit 1).
void add_precision(CLI::App& cmd, std::string& precision);
/// The --precision flag's value for `executor`, checked before any work: bf16 with the
/// reference interpreter is a UsageError, bf16 on a JIT target without AVX512_BF16 an Error.
Precision read_precision(const std::string& name, ExecutorKind executor);

/// --momentum and --nesterov (train, ir) belong to the momentum optimizer: throws UsageError
/// when either was given with another, which would otherwise ignore it.
void require_momentum_flags(const CLI::App& cmd, const OptimizerConfig& optimizer);

/// --allow-nonfinite (train, eval, predict): load checkpoints whose tensors hold NaN or
/// infinite values, which are refused otherwise.
inline void add_allow_nonfinite(CLI::App& cmd, bool& allow) {
  cmd.add_flag("--allow-nonfinite", allow, "load checkpoints even when their tensors hold NaN or infinite values");
}

/// "C,H,W" as three positive sizes (each at most 2^20); throws UsageError saying what is wrong
/// otherwise (kInputShape puts the option's name in front).
std::vector<size_t> parse_input_shape(const std::string& text);

/// "" when `value` is one of `valid`, else the message one_of and require_choice give.
std::string choice_error(const std::string& what, const std::string& value, const std::vector<std::string>& valid);

/// Throws UsageError listing `valid` unless `value` is one of them (for choices known only
/// after parsing, such as a kernel's name).
void require_choice(const std::string& what, const std::string& value, const std::vector<std::string>& valid);

}  // namespace dagger::cli

#include "dagger/models/zoo.h"

namespace dagger::cli {

/// Writes every stage of the training plan of `model` into `dir`: graph.txt/.dot (forward),
/// grad.txt/.dot (training step), fused.txt, and kernels/NAME.ll, .opt.ll and .s per kernel,
/// for images of `input_shape` in `classes` classes.
/// Splits a kernel dump into (kernel name, text) at its "==== kernel NAME ====" headers.
std::vector<std::pair<std::string, std::string>> per_kernel(const std::string& dump);

/// `label_smoothing` as the run trains with it (the loss op's "smoothing" attribute), its
/// kernels compiled with the run's `conv_algo` and `precision`.
void write_dump_dir(const std::string& dir, const ModelFn& model, int64_t batch, const OptimizerConfig& opt,
                    const std::string& title, const Shape& input_shape = {1, 28, 28}, int64_t classes = 10,
                    double label_smoothing = 0, ConvAlgo conv_algo = ConvAlgo::automatic,
                    Precision precision = Precision::f32);

/// A model named on the command line: a zoo name or call, or a model text (a `.dagger` file,
/// or a checkpoint folder holding model.dagger) with the input shape and class count it has.
struct ModelArg : zoo::Entry {
  std::optional<Shape> input_shape;  ///< a model text's; a zoo model takes the data's
  std::optional<int64_t> classes;    ///< likewise
};

/// The model `spec` names: a file or folder as above, else zoo::find with an unknown model
/// reported as a usage error. A model text that does not parse is an Error naming its line.
ModelArg resolve_model(const std::string& spec);

}  // namespace dagger::cli
