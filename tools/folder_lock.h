#pragma once
/// The advisory lock that keeps two `dagger` processes from writing one output folder.
#include <string>

namespace dagger::cli {

/// An exclusive flock on FOLDER/.lock, held from construction until destruction (or the
/// process's end, even by kill -9: the kernel drops it). The file is created 0644 and kept;
/// it holds the pid of the process that last took the lock, for the second writer's message.
/// flock locks belong to an open file, so folders nested in a locked one (the suite's run
/// folders) are free to be locked on their own, and a process never waits on itself.
class FolderLock {
 public:
  /// Creates `folder` when missing and locks it. Throws Error "FOLDER is in use by another
  /// dagger process (pid N)" when another process holds the lock (without waiting, and without
  /// changing anything in the folder), or naming `option` and the folder when it cannot be
  /// created or locked.
  FolderLock(const std::string& folder, const std::string& option);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

/// The name of the lock file inside a locked folder.
inline constexpr const char* kLockFile = ".lock";

}  // namespace dagger::cli
