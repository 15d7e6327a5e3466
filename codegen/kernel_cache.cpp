#include "dagger/codegen/kernel_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <llvm/ADT/SmallString.h>
#include <llvm/Support/MD5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <vector>

#include "dagger/graph/error.h"
#include "dagger/runtime/atomic_file.h"

namespace dagger {

namespace {

constexpr uint64_t kDefaultMaxMiB = 512;
/// A temporary file this old belongs to a writer that died: eviction removes it.
constexpr auto kStaleTemp = std::chrono::hours(1);
/// Every entry's first bytes; the payload's size and MD5 follow on the same line.
constexpr std::string_view kMagic = "dagger-kernel-cache-v1";

std::string md5_hex(std::string_view bytes) {
  llvm::MD5 md5;
  md5.update(llvm::StringRef(bytes.data(), bytes.size()));
  llvm::MD5::MD5Result result;
  md5.final(result);
  return result.digest().str().str();
}

std::string header_of(std::string_view payload) {
  return fmt::format("{} {} {}\n", kMagic, payload.size(), md5_hex(payload));
}

/// One warning line per folder and process: a plan compiles many kernels, a suite many plans.
void warn_once(const std::string& dir, const std::string& what) {
  static std::mutex mutex;
  static std::set<std::string> warned;
  std::lock_guard<std::mutex> lock(mutex);
  if (warned.insert(dir).second) fmt::print(stderr, "warning: kernel cache {}: {}\n", dir, what);
}

/// Why the folder must not be used, or "" when it may.
std::string distrust(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return fmt::format("cannot be opened ({})", std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return "is not a folder";
  if (st.st_uid != ::geteuid()) return fmt::format("is owned by another user (uid {})", st.st_uid);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return fmt::format("is writable by group or others (mode {:o}; chmod 700 it)", st.st_mode & 07777);
  return "";
}

/// The whole file at `path`, its times refreshed; nullopt when it cannot be read.
std::optional<std::string> read_and_touch(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string bytes;
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0;
  if (ok) {
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (ok && done < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) done += static_cast<size_t>(n);
    }
  }
  if (ok) ::futimens(fd, nullptr);  // now: the entry was just used (failing costs only its place in line)
  ::close(fd);
  if (!ok) return std::nullopt;
  return bytes;
}

}  // namespace

uint64_t kernel_cache_max_bytes() {
  const char* text = std::getenv("DAGGER_CACHE_MAX_MB");
  if (!text || !*text) return kDefaultMaxMiB << 20;
  char* end = nullptr;
  errno = 0;
  const unsigned long long mib = std::strtoull(text, &end, 10);
  if (*text == '-' || *end != '\0' || errno != 0 || mib == 0 || mib > (uint64_t(1) << 40))
    throw Error(fmt::format("DAGGER_CACHE_MAX_MB={}: not a size in MiB (a whole number from 1, e.g. 512)", text));
  return static_cast<uint64_t>(mib) << 20;
}

KernelCache::KernelCache(std::string dir, uint64_t max_bytes) : max_bytes_(max_bytes) {
  if (dir.empty()) return;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      warn_once(dir, fmt::format("cannot be created ({}); compiling without it", std::strerror(errno)));
      return;
    }
  }
  if (const std::string why = distrust(dir); !why.empty()) {
    warn_once(dir, why + "; compiling without it");
    return;
  }
  dir_ = std::move(dir);
}

std::optional<std::string> KernelCache::load(const std::string& key) const {
  if (!enabled()) return std::nullopt;
  std::optional<std::string> bytes = read_and_touch(path_of(key));
  if (!bytes) return std::nullopt;
  const size_t eol = bytes->find('\n');
  if (eol == std::string::npos) return std::nullopt;
  std::string payload = bytes->substr(eol + 1);
  if (bytes->compare(0, eol + 1, header_of(payload)) != 0) return std::nullopt;
  return payload;
}

void KernelCache::store(const std::string& key, std::string_view payload) {
  if (!enabled()) return;
  static std::atomic<unsigned> serial{0};
  const std::string path = path_of(key);
  const std::string tmp = fmt::format("{}.{}.{}.tmp", path, static_cast<long>(::getpid()), serial++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  int error = fd < 0 ? errno : write_all(fd, header_of(payload));
  if (!error) error = write_all(fd, payload);
  if (fd >= 0 && ::close(fd) != 0 && !error) error = errno;
  if (!error && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (!error) return;
  if (fd >= 0) ::unlink(tmp.c_str());
  warn_once(dir_,
            fmt::format("cannot save compiled kernels ({}); later runs will compile them again", std::strerror(error)));
}

void KernelCache::evict() const {
  if (!enabled()) return;
  struct Entry {
    std::filesystem::file_time_type used;
    std::string path;
    uint64_t bytes;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  std::error_code ec;
  const auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& item : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string path = item.path().string();
    const auto used = item.last_write_time(ec);
    if (ec) continue;
    if (path.ends_with(".tmp")) {
      if (now - used > kStaleTemp) std::filesystem::remove(item.path(), ec);
      continue;
    }
    const uint64_t bytes = item.is_regular_file(ec) && path.ends_with(".o") ? item.file_size(ec) : 0;
    if (ec || bytes == 0) continue;
    entries.push_back({used, path, bytes});
    total += bytes;
  }
  if (total <= max_bytes_) return;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.used != b.used ? a.used < b.used : a.path < b.path; });
  for (const Entry& entry : entries) {
    if (total <= max_bytes_) break;
    if (std::filesystem::remove(entry.path, ec)) total -= entry.bytes;
  }
}

}  // namespace dagger
