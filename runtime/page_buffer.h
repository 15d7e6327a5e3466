#pragma once
/// Float memory mapped from the kernel for a plan's large buffers (the arena, the threads'
/// scratch, kept packed weights), its pages touched once when it is made. A buffer of 2 MiB or
/// more is aligned to 2 MiB and asks for transparent huge pages (`madvise(MADV_HUGEPAGE)`,
/// granted where `/sys/kernel/mm/transparent_hugepage/enabled` says `always` or `madvise`),
/// so touching it takes one page fault per 2 MiB instead of one per 4 KiB: on a virtual
/// machine whose faults are slow that was half the time of building a plan from cached kernels.
/// Where the kernel refuses, the buffer is the same memory in small pages.
#include <cstddef>
#include <cstdint>

namespace dagger {

class PageBuffer {
 public:
  PageBuffer() = default;
  /// `floats` floats, each set to `fill` (zero costs no pass over the memory: fresh pages are
  /// zero). Throws dagger::Error naming `what` when the memory cannot be mapped.
  PageBuffer(int64_t floats, float fill, const char* what);
  ~PageBuffer();
  PageBuffer(PageBuffer&& other) noexcept;
  PageBuffer& operator=(PageBuffer&& other) noexcept;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  /// The first float, at a page boundary (so at a 64-byte one); nullptr when empty.
  float* data() const { return data_; }
  int64_t floats() const { return floats_; }
  /// Whether the buffer was aligned and advised for huge pages (not whether the kernel granted them).
  bool advised_huge() const { return huge_; }

 private:
  float* data_ = nullptr;
  int64_t floats_ = 0;
  size_t mapped_ = 0;  // bytes mapped at data_
  bool huge_ = false;
};

}  // namespace dagger
