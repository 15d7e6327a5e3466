#include "dagger/runtime/page_buffer.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "dagger/graph/error.h"

namespace dagger {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

size_t round_up(size_t bytes, size_t unit) { return (bytes + unit - 1) / unit * unit; }

}  // namespace

PageBuffer::PageBuffer(int64_t floats, float fill, const char* what) {
  if (floats <= 0) return;
  if (static_cast<uint64_t>(floats) > (std::numeric_limits<size_t>::max() - 2 * kHugePage) / sizeof(float))
    throw Error(fmt::format("cannot map {} floats for {}: more than the address space", floats, what));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  huge_ = bytes >= kHugePage;
  const size_t unit = huge_ ? kHugePage : page;
  mapped_ = round_up(bytes, unit);
  // A huge buffer is mapped one huge page longer, and what lies outside its aligned part is
  // given back, so that every 2 MiB of it can be one huge page.
  const size_t asked = huge_ ? mapped_ + kHugePage : mapped_;
  void* raw = mmap(nullptr, asked, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    throw Error(fmt::format("cannot map {:.1f} MiB for {}: {}", static_cast<double>(asked) / (1 << 20), what,
                            std::strerror(errno)));
  char* start = static_cast<char*>(raw);
  if (huge_) {
    const auto address = reinterpret_cast<uintptr_t>(start);
    char* aligned = start + (kHugePage - address % kHugePage) % kHugePage;
    if (aligned > start) munmap(start, static_cast<size_t>(aligned - start));
    if (const size_t tail = static_cast<size_t>(start + asked - (aligned + mapped_)); tail > 0)
      munmap(aligned + mapped_, tail);
    start = aligned;
    madvise(start, mapped_, MADV_HUGEPAGE);  // a refusal (EINVAL without THP) leaves small pages
  }
  data_ = reinterpret_cast<float*>(start);
  floats_ = floats;
  if (fill != 0.0f || std::signbit(fill)) {
    std::fill(data_, data_ + floats, fill);
  } else {
    // Fresh anonymous pages read as zero; one write per page makes them the process's now.
    for (size_t offset = 0; offset < mapped_; offset += page) start[offset] = 0;
  }
}

PageBuffer::~PageBuffer() {
  if (data_) munmap(data_, mapped_);
}

PageBuffer::PageBuffer(PageBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      floats_(std::exchange(other.floats_, 0)),
      mapped_(std::exchange(other.mapped_, 0)),
      huge_(std::exchange(other.huge_, false)) {}

PageBuffer& PageBuffer::operator=(PageBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) munmap(data_, mapped_);
    data_ = std::exchange(other.data_, nullptr);
    floats_ = std::exchange(other.floats_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
    huge_ = std::exchange(other.huge_, false);
  }
  return *this;
}

}  // namespace dagger
