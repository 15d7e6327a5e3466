// IDX files (the MNIST family's format): a big-endian header of a magic number (two zero
// bytes, the element type, the number of dimensions) and one 32-bit size per dimension,
// followed by the elements in row-major order.
#include <fmt/format.h>

#include <algorithm>

#include "dagger/graph/error.h"
#include "dagger/runtime/data_source.h"

namespace dagger::data_source {

namespace {

constexpr uint8_t kUnsignedByte = 0x08;

uint32_t big_endian32(const uint8_t* b) {
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
}

/// The dimensions of an IDX file of 8-bit elements whose dimension count is one of `ranks`.
/// Checks the header is complete and the elements it claims are all there and nothing more: bytes
/// after them mean the header's sizes are not the file's (a wrong file or a damaged header).
std::vector<size_t> read_header(const std::string& path, const std::vector<uint8_t>& bytes,
                                std::initializer_list<size_t> ranks, const char* kind) {
  require_bytes(path, 4, bytes.size(), "header");
  const uint32_t magic = big_endian32(bytes.data());
  const size_t rank = bytes[3];
  const bool rank_ok = std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
  if (bytes[0] != 0 || bytes[1] != 0 || !rank_ok) {
    std::vector<std::string> expected;
    for (size_t r : ranks) expected.push_back(fmt::format("0x{:08x}", 0x800u | r));
    throw Error(fmt::format("'{}' has magic number 0x{:08x}, expected {} for an IDX {} file", path, magic,
                            fmt::join(expected, " or "), kind));
  }
  if (bytes[2] != kUnsignedByte) {
    throw Error(fmt::format("'{}' stores IDX element type 0x{:02x}; only 8-bit unsigned (0x08) {} are supported", path,
                            bytes[2], kind == std::string("label") ? "labels" : "pixels"));
  }
  require_bytes(path, 4 + 4 * rank, bytes.size(), "header");
  std::vector<size_t> dims;
  size_t elements = 1;
  for (size_t d = 0; d < rank; ++d) {
    dims.push_back(big_endian32(bytes.data() + 4 + 4 * d));
    elements = checked_mul(elements, dims.back(), path);
  }
  const size_t header = 4 + 4 * rank;
  const char* what = kind == std::string("label") ? "labels" : "pixels";
  require_bytes(path, elements, bytes.size() - header, what);
  if (const size_t extra = bytes.size() - header - elements; extra != 0) {
    throw Error(
        fmt::format("'{}' has {} bytes after the {} {} its header declares ({}); the file or its header is damaged",
                    path, extra, elements, what, fmt::join(dims, "x")));
  }
  return dims;
}

std::vector<int> read_labels(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const std::vector<size_t> dims = read_header(path, bytes, {1}, "label");
  return std::vector<int>(bytes.begin() + 8, bytes.begin() + 8 + static_cast<ptrdiff_t>(dims[0]));
}


}  // namespace

RawImages read_idx_images(const std::string& path) {
  RawImages images;
  images.bytes = read_file_bytes(path);
  const std::vector<size_t> dims = read_header(path, images.bytes, {3, 4}, "image");
  images.count = dims[0];
  images.offset = 4 + 4 * dims.size();
  if (dims.size() == 3) images.example_shape = {1, dims[1], dims[2]};
  if (dims.size() == 4) images.example_shape = {dims[1], dims[2], dims[3]};
  check_example_shape(path, images.example_shape);
  return images;
}

RawSet read_idx(const std::string& images_file, const std::string& labels_file) {
  RawSet set;
  set.images_file = images_file;
  set.labels_file = labels_file;
  set.labels = read_labels(labels_file);
  set.images = read_idx_images(images_file);
  check_set(set);
  return set;
}

}  // namespace dagger::data_source
