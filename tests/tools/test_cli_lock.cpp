// Two `dagger` processes never write one output folder: the second is refused while the first
// holds the folder's lock, and changes nothing there.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "dagger/runtime/data.h"
#include "data_files.h"
#include "support.h"
#include "tools/cli_support.h"

using namespace dagger;
using dagger::testing::run_dagger;

namespace {

/// Every file under `dir` (the lock file included) with its contents.
std::map<std::string, std::string> snapshot(const std::filesystem::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) {
      std::ifstream in(entry.path(), std::ios::binary);
      files[entry.path().string()] = std::string((std::istreambuf_iterator<char>(in)), {});
    }
  return files;
}

/// Starts `dagger args` in the background, its output discarded; returns its pid.
pid_t start_dagger(const std::string& args) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string command = "exec " + std::string(DAGGER_BINARY) + " " + args + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

/// Runs `args` while another process holds the lock of `folder`, its pid `pid`: the run must be
/// refused in one line naming the folder and pid, and leave every file of the folder as it was.
void check_refused(const std::string& args, const std::string& folder, const std::string& pid) {
  const auto before = snapshot(folder);
  const auto second = run_dagger(args);
  CHECK(second.status == 1);
  CHECK(second.output == "error: " + folder + " is in use by another dagger process (pid " + pid +
                             "); wait for it to end or choose another --out\n");
  CHECK(snapshot(folder) == before);
}

}  // namespace

TEST_CASE("a second dagger train into a folder in use is refused and changes nothing", "[cli][lock]") {
  dagger::testing::TempDir dir("lock");
  testing::write_npy_set(dir.path.string(), "train", testing::quadrant_set(2000, 1, 8, 4, 1));
  testing::write_npy_set(dir.path.string(), "test", testing::quadrant_set(16, 1, 8, 4, 2));
  const std::string run = dir.file("run");
  const std::string args =
      "train \"mlp1(64,relu,0.2)\" --data " + dir.path.string() + " --quiet --epochs 40 --out " + run;
  const pid_t first = start_dagger(args);
  // The lock file names its holder once the lock is taken, before any data is read.
  const std::string pid = std::to_string(first);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (read_text(run + "/.lock") != pid + "\n" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  REQUIRE(read_text(run + "/.lock") == pid + "\n");
  REQUIRE(kill(first, SIGSTOP) == 0);  // paused, it holds the lock and writes nothing
  int status = 0;
  REQUIRE(waitpid(first, &status, WNOHANG) == 0);  // still running

  check_refused(args, run, pid);

  REQUIRE(kill(first, SIGCONT) == 0);
  REQUIRE(waitpid(first, &status, 0) == first);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The first has ended: its lock went with it, and the same command finds its run finished.
  const auto again = run_dagger(args + " --json");
  INFO(again.output);
  CHECK(again.status == 0);
  CHECK(dagger::testing::last_json_line(again.output)["resumed"] == true);
  CHECK(std::filesystem::is_regular_file(run + "/.lock"));  // kept, so no process ever locks a file just removed
}

TEST_CASE("dagger suite takes its folder's lock and refuses a folder another process holds", "[cli][lock][suite]") {
  dagger::testing::require_fashion_mnist(dagger::default_data_dir());
  dagger::testing::TempDir dir("suite-lock");
  const std::string out = dir.file("suite");
  const std::string args = "suite --only E06 --no-plots --quiet --out " + out;
  const auto first = run_dagger(args);  // E06's run trains in the locked folder, without a lock of its own
  INFO(first.output);
  REQUIRE(first.status == 0);
  CHECK_THAT(first.output, Catch::Contains("1 runs trained"));
  REQUIRE(std::filesystem::is_regular_file(out + "/.lock"));

  // This test process holds the lock as another dagger would, its pid in the file.
  const int fd = open((out + "/.lock").c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(flock(fd, LOCK_EX | LOCK_NB) == 0);
  const std::string pid = std::to_string(getpid());
  REQUIRE(ftruncate(fd, 0) == 0);
  REQUIRE(pwrite(fd, (pid + "\n").data(), pid.size() + 1, 0) == static_cast<ssize_t>(pid.size() + 1));
  check_refused(args, out, pid);
  close(fd);
  CHECK(run_dagger(args).status == 0);
}
