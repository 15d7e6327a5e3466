// The checks every command's options share, run by CLI11 while it parses: a bad value is a
// usage error naming its option before any data, checkpoint or model is read.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>

#include "dagger/codegen/jit.h"
#include "tools/cli.h"

namespace dagger::cli {

namespace fs = std::filesystem;

namespace {

/// Why `path` could not be found: it is not there, or a part of its path cannot be searched.
std::string missing(const std::string& path, const std::error_code& ec, const char* kind) {
  if (!ec || ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory)
    return fmt::format("'{}': no such {}", path, kind);
  return fmt::format("'{}': {}", path, ec.message());
}

/// `text` read whole by `convert` (std::stoll, std::stod); nothing for text it cannot read or
/// reads only in part ("3x", "1.5" as a whole number).
template <class Convert>
auto read_whole(const std::string& text, Convert convert) -> std::optional<decltype(convert(text, nullptr))> {
  size_t used = 0;
  try {
    const auto v = convert(text, &used);
    if (used != 0 && used == text.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

CLI::Validator whole_in(long long least, long long most) {
  const std::string range = most == std::numeric_limits<long long>::max() ? fmt::format("of at least {}", least)
                                                                          : fmt::format("from {} to {}", least, most);
  return CLI::Validator(
      [least, most, range](std::string& text) -> std::string {
        const auto v = read_whole(text, [](const std::string& t, size_t* used) { return std::stoll(t, used); });
        if (v && *v >= least && *v <= most) return "";
        return fmt::format("'{}' is not a whole number {}", text, range);
      },
      fmt::format("INT {}", range));
}

CLI::Validator number_in(Interval range) {
  std::string description;
  if (std::isinf(range.high))
    description = fmt::format("{} {}", range.low_open ? "greater than" : "of at least", range.low);
  else
    description =
        fmt::format("in {}{}, {}{}", range.low_open ? '(' : '[', range.low, range.high, range.high_open ? ')' : ']');
  return CLI::Validator(
      [range, description](std::string& text) -> std::string {
        const auto v = read_whole(text, [](const std::string& t, size_t* used) { return std::stod(t, used); });
        const bool above = v && (range.low_open ? *v > range.low : *v >= range.low);
        const bool below = v && (range.high_open ? *v < range.high : *v <= range.high);
        if (v && std::isfinite(*v) && above && below) return "";
        return fmt::format("'{}' is not a number {}", text, description);
      },
      "NUMBER " + description);
}

std::string choice_error(const std::string& what, const std::string& value, const std::vector<std::string>& valid) {
  for (const std::string& v : valid)
    if (v == value) return "";
  return fmt::format("unknown {} '{}' (valid: {})", what, value, fmt::join(valid, ", "));
}

void require_choice(const std::string& what, const std::string& value, const std::vector<std::string>& valid) {
  if (std::string error = choice_error(what, value, valid); !error.empty()) throw UsageError(error);
}

CLI::Validator one_of(const std::string& what, std::vector<std::string> valid) {
  return CLI::Validator([what, valid](std::string& text) { return choice_error(what, text, valid); },
                        fmt::format("{}", fmt::join(valid, "|")));
}

const CLI::Validator kExistingFolder(
    [](std::string& text) -> std::string {
      std::error_code ec;
      const fs::file_status status = fs::status(text, ec);
      if (fs::is_directory(status)) return "";
      if (fs::exists(status)) return fmt::format("'{}' is not a folder", text);
      return missing(text, ec, "folder");
    },
    "FOLDER");

const CLI::Validator kExistingFile(
    [](std::string& text) -> std::string {
      std::error_code ec;
      const fs::file_status status = fs::status(text, ec);
      if (fs::is_directory(status)) return fmt::format("'{}' is a folder, not a file", text);
      if (fs::exists(status)) return "";
      return missing(text, ec, "file");
    },
    "FILE");

const CLI::Validator kOutputFolder(
    [](std::string& text) -> std::string {
      if (text.empty()) return "an output folder needs a name";
      // The folder, or the nearest part of its path that exists, must be a folder.
      std::error_code ec;
      for (fs::path p = fs::absolute(text, ec); !p.empty(); p = p.parent_path()) {
        const fs::file_status status = fs::status(p, ec);
        if (fs::is_directory(status)) return "";
        if (fs::exists(status))
          return p == fs::absolute(text, ec) ? fmt::format("'{}' is a file, not a folder", text)
                                             : fmt::format("'{}': '{}' is a file, not a folder", text, p.string());
        if (p == p.parent_path()) break;
      }
      return "";
    },
    "FOLDER");

const CLI::Validator kOutputFile(
    [](std::string& text) -> std::string {
      std::error_code ec;
      if (fs::is_directory(text, ec)) return fmt::format("'{}' is a folder, not a file", text);
      const fs::path parent = fs::absolute(text, ec).parent_path();
      if (!fs::is_directory(parent, ec)) return fmt::format("'{}': no such folder '{}'", text, parent.string());
      return "";
    },
    "FILE");

const CLI::Validator kThreads = whole_in(1, kMaxThreads);
const CLI::Validator kExecutor = one_of("executor", {"jit", "reference"});
const CLI::Validator kOptimizer = one_of("optimizer", {"sgd", "momentum", "adam", "adamw"});

void add_conv_algo(CLI::App& cmd, std::string& algo) {
  cmd.add_option("--conv-algo", algo,
                 "3x3 stride-1 convolutions: direct | winograd (F(2x2,3x3); filter gradients F(3x3,2x2)) | "
                 "winograd4 (F(4x4,3x3); filter gradients F(3x3,4x4)) | auto (the compiler picks per layer)")
      ->check(one_of("convolution algorithm", {"direct", "winograd", "winograd4", "auto"}))
      ->capture_default_str();
}

void add_precision(CLI::App& cmd, std::string& precision) {
  cmd.add_option("--precision", precision,
                 "f32 | bf16 (dense layers' products on bfloat16 operands with float32 sums; needs AVX512_BF16)")
      ->check(one_of("precision", {"f32", "bf16"}))
      ->capture_default_str();
}

Precision read_precision(const std::string& name, ExecutorKind executor) {
  const Precision p = precision(name);
  if (p == Precision::f32) return p;
  if (executor != ExecutorKind::jit)
    throw UsageError("--precision bf16 applies to --executor jit; the reference interpreter computes in float32");
  if (const std::string refusal = bf16_refusal(jit_target()); !refusal.empty())
    throw Error("--precision bf16 " + refusal);
  return p;
}

void require_momentum_flags(const CLI::App& cmd, const OptimizerConfig& optimizer) {
  if (optimizer.kind == OptimizerConfig::Kind::momentum) return;
  for (const char* flag : {"--momentum", "--nesterov"})
    if (cmd.get_option_no_throw(flag) && cmd.count(flag) > 0)
      throw UsageError(fmt::format("{} applies to --optimizer momentum, not {}", flag, optimizer_name(optimizer.kind)));
}

const CLI::Validator kInputShape(
    [](std::string& text) -> std::string {
      try {
        parse_input_shape(text);
        return "";
      } catch (const UsageError& e) {
        return e.what();
      }
    },
    "C,H,W");

}  // namespace dagger::cli
