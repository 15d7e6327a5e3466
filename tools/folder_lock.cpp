#include "tools/folder_lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

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

FolderLock::~FolderLock() {
  if (fd_ >= 0) close(fd_);  // closing the last descriptor of the open file releases the lock
}

}  // namespace dagger::cli
