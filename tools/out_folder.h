#pragma once
/// Output folders of `dagger train` and `dagger suite`: the advisory lock that keeps two
/// processes from writing one, and --restart's setting aside of an earlier run.
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

/// Moves the files of a `dagger train` run in `folder` (last/, best/, checkpoint/, history.csv,
/// metrics.json and their .tmp/.old companions) into `folder`/previous-N, N one more than the
/// highest there, and returns that folder; "" when there is no such file. Anything else in
/// `folder` stays. last/ moves last, so a run killed in between still finds it and refuses to
/// resume without its best weights rather than overwriting them. Call it holding the lock.
std::string set_aside_run(const std::string& folder);

}  // namespace dagger::cli
