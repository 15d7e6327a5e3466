#pragma once
/// Internal to codegen/: the disk cache of compiled kernels (object code), one file per key in
/// a folder of the user's (see kernel_cache_dir in codegen/jit.h).
///
/// The cache only ever saves time: a folder it cannot trust or write, an entry it cannot read
/// or that fails its checksum, cost a compilation and at most one warning line per folder and
/// process, never the run.
///   - The folder is created with mode 0700. A folder not owned by the user, or writable by
///     group or others, is not used (anyone who can write there could have the JIT run their
///     code): a warning names it and why, and kernels are compiled without the cache.
///   - An entry is written to a temporary file with checked POSIX calls and renamed into place;
///     any failure (a full disk, a read-only folder) removes the temporary file.
///   - Every entry starts with a header holding its payload's size and MD5; a load checks both.
///   - The folder is capped (default 512 MiB, $DAGGER_CACHE_MAX_MB): after writing, the least
///     recently used entries are removed until it fits. A load refreshes its entry's
///     modification time, which is what "recently used" means here (atime is often off).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dagger/codegen/jit.h"

namespace dagger {

class KernelCache {
 public:
  /// The cache in `dir` ("" disables it), capped at `max_bytes`. Creates the folder if it is
  /// missing; disables the cache, with a warning, if the folder cannot be made or trusted.
  KernelCache(std::string dir, uint64_t max_bytes);

  bool enabled() const { return !dir_.empty(); }
  /// The payload stored under `key` (a file name without a slash), and marks it used; nullopt
  /// when there is none or it is damaged.
  std::optional<std::string> load(const std::string& key) const;
  /// Stores `payload` under `key`. Failing only warns (once per folder and process).
  void store(const std::string& key, std::string_view payload);
  /// Removes the least recently used entries until the folder holds at most the cap, and
  /// leftover temporary files of writers that died an hour or more ago. Failing is silent.
  void evict() const;

 private:
  std::string path_of(const std::string& key) const { return dir_ + "/" + key + ".o"; }

  std::string dir_;  // "" when disabled
  uint64_t max_bytes_;
};

}  // namespace dagger
