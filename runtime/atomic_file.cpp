#include "dagger/runtime/atomic_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "dagger/graph/error.h"

namespace dagger {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTemporaryMarker = ".tmp-";

/// The Error for a failed system call on `path`; `error` is the errno it left.
Error io_error(const char* doing, const std::string& path, int error) {
  return Error(fmt::format("cannot {} '{}': {}", doing, path, std::generic_category().message(error)));
}

/// The folder a path's file is in, "." for a bare file name.
std::string folder_of(const std::string& path) {
  const fs::path folder = fs::path(path).parent_path();
  return folder.empty() ? "." : folder.string();
}

/// write_file_synced into `file`, with errors naming `shown` (the path the caller asked for).
void write_synced(const std::string& file, std::initializer_list<std::string_view> parts, const std::string& shown) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw io_error("write", shown, errno);
  int error = 0;
  for (std::string_view part : parts)
    if (!error) error = write_all(fd, part);
  if (!error && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && !error) error = errno;
  if (error) {
    ::unlink(file.c_str());
    throw io_error("write", shown, error);
  }
}

/// Renames the synced temporary file over `path` and makes the rename durable.
void publish(const std::string& temporary, const std::string& path) {
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    throw io_error("write", path, error);
  }
  sync_folder(folder_of(path));
}

/// Removes the `path`.tmp-<pid> files of processes that no longer run: a writer killed
/// between writing and renaming leaves one, and nothing else would ever remove it.
void remove_stale_temporaries(const std::string& path) {
  const std::string prefix = fs::path(path).filename().string() + kTemporaryMarker;
  std::error_code ec;
  for (auto it = fs::directory_iterator(folder_of(path), ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(prefix) || name.size() == prefix.size() || name.size() - prefix.size() > 9) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t writer = static_cast<pid_t>(std::stol(digits));
    // kill(pid, 0) checks that the process exists (EPERM: it does, under another user).
    if (writer == ::getpid() || ::kill(writer, 0) == 0 || errno == EPERM) continue;
    std::error_code ignored;
    fs::remove(it->path(), ignored);
  }
}

}  // namespace

int write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return written < 0 ? errno : EIO;
    bytes.remove_prefix(static_cast<size_t>(written));
  }
  return 0;
}

void write_file_synced(const std::string& path, std::initializer_list<std::string_view> parts) {
  write_synced(path, parts, path);
}

std::string temporary_path(const std::string& path) {
  return fmt::format("{}{}{}", path, kTemporaryMarker, ::getpid());
}

void write_file_atomically(const std::string& path, std::initializer_list<std::string_view> parts) {
  remove_stale_temporaries(path);
  const std::string temporary = temporary_path(path);
  write_synced(temporary, parts, path);
  publish(temporary, path);
}

void commit_file(const std::string& path) {
  remove_stale_temporaries(path);
  const std::string temporary = temporary_path(path);
  const int fd = ::open(temporary.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error("write", path, errno);
  int error = ::fsync(fd) != 0 ? errno : 0;
  if (::close(fd) != 0 && !error) error = errno;
  if (error) {
    ::unlink(temporary.c_str());
    throw io_error("write", path, error);
  }
  publish(temporary, path);
}

void sync_folder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw io_error("open the folder", dir, errno);
  // EINVAL: the file system does not sync folders (its renames are durable some other way).
  const int error = ::fsync(fd) != 0 && errno != EINVAL ? errno : 0;
  ::close(fd);
  if (error) throw io_error("sync the folder", dir, error);
}

}  // namespace dagger
