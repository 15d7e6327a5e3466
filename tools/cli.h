#pragma once
/// Shared pieces of the `dagger` command line: each subcommand registers itself on the
/// CLI11 app and returns the function that runs it.
#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

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

/// A count on the command line that must be at least `least` (a batch, threads, patience).
inline CLI::Validator at_least(long long least) {
  return CLI::Validator(
      [least](std::string& text) -> std::string {
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != 0 && used == text.size() && v >= least) return "";
        return "'" + text + "' is not a whole number of at least " + std::to_string(least);
      },
      ">=" + std::to_string(least));
}

/// --allow-nonfinite (train, eval, predict): load checkpoints whose tensors hold NaN or
/// infinite values, which are refused otherwise.
inline void add_allow_nonfinite(CLI::App& cmd, bool& allow) {
  cmd.add_flag("--allow-nonfinite", allow, "load checkpoints even when their tensors hold NaN or infinite values");
}

/// "C,H,W" as three positive sizes (each at most 2^20); throws UsageError naming --input-shape otherwise.
std::vector<size_t> parse_input_shape(const std::string& text);

/// Throws UsageError listing `valid` unless `value` is one of them.
void require_choice(const std::string& what, const std::string& value, const std::vector<std::string>& valid);

}  // namespace dagger::cli

#include "dagger/models/zoo.h"

namespace dagger::cli {

/// Writes every stage of the training plan of `model` into `dir`: graph.txt/.dot (forward),
/// grad.txt/.dot (training step), fused.txt, and kernels/NAME.ll, .opt.ll and .s per kernel,
/// for images of `input_shape` in `classes` classes.
/// Splits a kernel dump into (kernel name, text) at its "==== kernel NAME ====" headers.
std::vector<std::pair<std::string, std::string>> per_kernel(const std::string& dump);

/// `label_smoothing` as the run trains with it (the loss op's "smoothing" attribute).
void write_dump_dir(const std::string& dir, const ModelFn& model, int64_t batch, const OptimizerConfig& opt,
                    const std::string& title, const Shape& input_shape = {1, 28, 28}, int64_t classes = 10,
                    double label_smoothing = 0);

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
