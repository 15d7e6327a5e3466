// The external yardstick: OpenBLAS's SGEMM (whatever BLAS PyTorch was built with), timed by
// bench/torch_bench.py --sgemm in a child process, so dagger itself links no BLAS.
#include <fmt/format.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "tools/bench.h"

extern char** environ;

namespace dagger::bench {

namespace {

/// Importing torch on a loaded machine took 11 s; a child still running after this is stuck.
constexpr std::chrono::seconds kChildTimeout{120};

struct ChildOutput {
  int start_error = 0;     // errno of a child that could not be started, else 0
  bool timed_out = false;  // killed after kChildTimeout
  int exit_status = -1;    // -1: killed by a signal
  std::string output;      // stdout and stderr together
};

/// This process's environment without OPENBLAS_CORETYPE: the environment may force OpenBLAS's
/// AVX2 kernel with it, and a peak figure lets OpenBLAS pick its best one for the CPU.
std::vector<char*> environment_for_blas() {
  std::vector<char*> env;
  for (char** v = environ; *v; ++v)
    if (!std::string_view(*v).starts_with("OPENBLAS_CORETYPE=")) env.push_back(*v);
  env.push_back(nullptr);
  return env;
}

/// Runs `argv` (argv[0] looked up in PATH) and collects what it writes; kills it after kChildTimeout.
ChildOutput run_child(const std::vector<std::string>& argv) {
  ChildOutput out;
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    out.start_error = errno;
    return out;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env = environment_for_blas();
  pid_t pid = 0;
  out.start_error = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (out.start_error == 0) {
    const auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
    std::array<char, 4096> buffer{};
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd readable{.fd = pipe_fds[0], .events = POLLIN, .revents = 0};
      const int ready = left.count() <= 0 ? 0 : poll(&readable, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        out.timed_out = true;
        kill(pid, SIGKILL);
        break;
      }
      const ssize_t n = read(pipe_fds[0], buffer.data(), buffer.size());
      if (n <= 0) break;
      out.output.append(buffer.data(), static_cast<size_t>(n));
    }
    int status = 0;
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status)) out.exit_status = WEXITSTATUS(status);
  }
  close(pipe_fds[0]);
  return out;
}

/// $DAGGER_PYTHON, or python3 from PATH.
std::string torch_bench_python() {
  const char* python = std::getenv("DAGGER_PYTHON");
  return python && *python ? python : "python3";
}

/// The last non-empty line of `text`.
std::string last_line(const std::string& text) {
  const size_t end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  const size_t newline = text.rfind('\n', end);
  const size_t start = newline == std::string::npos ? 0 : newline + 1;
  return text.substr(start, end + 1 - start);
}

}  // namespace

BlasSgemm measure_blas_sgemm(int64_t n, int threads) {
  BlasSgemm r;
  const std::string script = std::string(DAGGER_SOURCE_DIR) + "bench/torch_bench.py";
  if (!std::filesystem::exists(script)) {
    r.not_measured = fmt::format("{} is not there (a dagger built from its source tree runs it)", script);
    return r;
  }
  const std::string python = torch_bench_python();
  const ChildOutput child =
      run_child({python, script, "--sgemm", std::to_string(n), "--threads", std::to_string(threads)});
  if (child.start_error != 0) {
    r.not_measured = fmt::format("cannot run {} ({}); set DAGGER_PYTHON to a Python with PyTorch", python,
                                 std::strerror(child.start_error));
    return r;
  }
  if (child.timed_out) {
    r.not_measured = fmt::format("{} {} did not finish within {} s", python, script, kChildTimeout.count());
    return r;
  }
  const std::string last = last_line(child.output);
  if (child.exit_status != 0) {
    // torch_bench's own messages name themselves; anything else (a traceback's last line) is
    // named after the command.
    if (last.starts_with("torch_bench: "))
      r.not_measured = last;
    else
      r.not_measured = fmt::format("{} {} failed (exit status {}){}{}", python, script, child.exit_status,
                                   last.empty() ? "" : ": ", last);
    return r;
  }
  double gflops = 0;
  try {
    const nlohmann::json j = nlohmann::json::parse(last);
    gflops = j.at("sgemm").at("gflops").get<double>();
    r.library = fmt::format("torch {}, BLAS {}", j.at("torch").get<std::string>(), j.at("blas").get<std::string>());
  } catch (const nlohmann::json::exception&) {
    gflops = 0;
  }
  if (!(gflops > 0 && std::isfinite(gflops))) {
    r = BlasSgemm{};
    r.not_measured = fmt::format("{} {} printed no SGEMM figure: '{}'", python, script, last);
    return r;
  }
  r.gflops = gflops;
  return r;
}

}  // namespace dagger::bench
