#pragma once
/// A persistent pool of worker threads for the compiled plan. Every kernel launch runs one
/// function on every thread, each with its own index, and returns when all are done; which
/// work a thread does depends only on its index, so results never depend on timing.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dagger {

class ThreadPool {
 public:
  /// `threads` >= 1 in all: the caller of run() counts as thread 0.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /// Calls fn(t) for every t in [0, size()), t = 0 on the calling thread, and returns when
  /// every call has returned. `fn` must not throw. Not reentrant.
  void run(const std::function<void(int)>& fn);

 private:
  void work(int index);

  std::vector<std::thread> workers_;
  const std::function<void(int)>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_, done_;
};

}  // namespace dagger
