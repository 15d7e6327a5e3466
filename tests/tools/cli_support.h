#pragma once
/// Helpers for the tests that run the built `dagger` binary.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace dagger::testing {

struct Outcome {
  int status;
  std::string output;
};

/// Runs a shell command, capturing stdout and stderr together.
inline Outcome run_command(const std::string& shell_command) {
  const std::string command = shell_command + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

/// Runs the built `dagger` with `args`, capturing stdout and stderr together; `prefix` goes
/// before the binary (e.g. "env VAR=value ").
inline Outcome run_dagger(const std::string& args, const std::string& prefix = "") {
  return run_command(prefix + std::string(DAGGER_BINARY) + " " + args);
}

/// The JSON object on the last line of `output` (progress lines come before it).
inline nlohmann::json last_json_line(const std::string& output) {
  const size_t end = output.find_last_not_of('\n');
  const size_t start = output.rfind('\n', end);
  return nlohmann::json::parse(output.substr(start == std::string::npos ? 0 : start + 1));
}

}  // namespace dagger::testing
