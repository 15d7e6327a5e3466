#include "tools/out_folder.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "dagger/graph/error.h"

namespace dagger::cli {

namespace fs = std::filesystem;

namespace {

/// The pid the lock file records, or "" when it holds none (the holder may be writing it).
std::string recorded_pid(int fd) {
  char text[32] = {};
  const ssize_t n = pread(fd, text, sizeof text - 1, 0);
  std::string pid(text, n > 0 ? static_cast<size_t>(n) : 0);
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.find_first_not_of("0123456789") == std::string::npos ? pid : "";
}

}  // namespace

FolderLock::FolderLock(const std::string& folder, const std::string& option) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw Error(fmt::format("{} '{}': cannot create the folder: {}", option, folder, ec.message()));
  const std::string path = (fs::path(folder) / kLockFile).string();
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(fmt::format("{} '{}': cannot open '{}': {}", option, folder, path, std::strerror(errno)));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const std::string pid = recorded_pid(fd_);
    close(fd_);
    fd_ = -1;
    if (error != EWOULDBLOCK)
      throw Error(fmt::format("{} '{}': cannot lock '{}': {}", option, folder, path, std::strerror(error)));
    throw Error(fmt::format("{} is in use by another dagger process{}; wait for it to end or choose another {}", folder,
                            pid.empty() ? "" : fmt::format(" (pid {})", pid), option));
  }
  const std::string pid = fmt::format("{}\n", getpid());
  const bool recorded = ftruncate(fd_, 0) == 0 && pwrite(fd_, pid.data(), pid.size(), 0) == ssize_t(pid.size());
  (void)recorded;  // a failure costs only the pid in a second writer's message
}

std::string set_aside_run(const std::string& folder) {
  const auto is_run_file = [](const std::string& name, const std::string& stem) {
    return name == stem || name.starts_with(stem + ".tmp") || name.starts_with(stem + ".old");
  };
  std::vector<fs::path> moving, last;
  int highest = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("previous-")) highest = std::max(highest, std::atoi(name.c_str() + 9));
    for (const char* stem : {"best", "checkpoint", "history.csv", "metrics.json"})
      if (is_run_file(name, stem)) moving.push_back(entry.path());
    if (is_run_file(name, "last")) last.push_back(entry.path());
  }
  if (moving.empty() && last.empty()) return "";
  const fs::path previous = fs::path(folder) / fmt::format("previous-{}", highest + 1);
  fs::create_directory(previous);
  moving.insert(moving.end(), last.begin(), last.end());
  for (const fs::path& from : moving) fs::rename(from, previous / from.filename());
  return previous.string();
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) close(fd_);  // closing the last descriptor of the open file releases the lock
}

}  // namespace dagger::cli
