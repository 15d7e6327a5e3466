// NumPy .npy files: the magic "\x93NUMPY", a version, a header length and a header that is a
// Python dict literal ({'descr': '<f4', 'fortran_order': False, 'shape': (N, H, W), }),
// followed by the array's elements.
#include <fmt/format.h>

#include <cstring>

#include "dagger/graph/error.h"
#include "dagger/runtime/data_source.h"

namespace dagger::data_source {

namespace {

/// What a .npy header says about its array, and where the elements start.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<size_t> shape;
  size_t data_offset = 0;
};

[[noreturn]] void bad_header(const std::string& path, const std::string& why) {
  throw Error(fmt::format("'{}' is not a valid .npy file: {}", path, why));
}

/// The text after `'key':` in a header dict, spaces skipped; throws when the key is missing.
size_t value_start(const std::string& path, const std::string& header, const char* key) {
  const size_t at = header.find(fmt::format("'{}'", key));
  if (at == std::string::npos) bad_header(path, fmt::format("its header has no '{}'", key));
  size_t pos = header.find(':', at);
  if (pos == std::string::npos) bad_header(path, fmt::format("its header's '{}' has no value", key));
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  return pos;
}

std::vector<size_t> parse_shape(const std::string& path, const std::string& header) {
  const size_t open = value_start(path, header, "shape");
  const size_t close = header.find(')', open);
  if (open >= header.size() || header[open] != '(' || close == std::string::npos)
    bad_header(path, "its 'shape' is not a tuple");
  std::vector<size_t> shape;
  const std::string inside = header.substr(open + 1, close - open - 1);
  size_t pos = 0;
  while (pos < inside.size()) {
    size_t end = inside.find(',', pos);
    if (end == std::string::npos) end = inside.size();
    std::string item = inside.substr(pos, end - pos);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) {
      if (item.find_first_not_of("0123456789") != std::string::npos || item.size() > 19)
        bad_header(path, fmt::format("shape entry '{}' is not a size", item));
      shape.push_back(std::stoull(item));
    }
    pos = end + 1;
  }
  return shape;
}

NpyHeader read_header(const std::string& path, const std::vector<uint8_t>& bytes) {
  require_bytes(path, 10, bytes.size(), "header");
  if (std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) bad_header(path, "it does not start with \\x93NUMPY");
  const uint8_t major = bytes[6];
  if (major < 1 || major > 3) bad_header(path, fmt::format("format version {} is not 1, 2 or 3", major));
  size_t length = bytes[8] | size_t{bytes[9]} << 8, start = 10;
  if (major >= 2) {
    require_bytes(path, 12, bytes.size(), "header");
    length |= size_t{bytes[10]} << 16 | size_t{bytes[11]} << 24;
    start = 12;
  }
  require_bytes(path, start + length, bytes.size(), "header");
  const std::string header(bytes.begin() + static_cast<ptrdiff_t>(start),
                           bytes.begin() + static_cast<ptrdiff_t>(start + length));
  NpyHeader out;
  const size_t d = value_start(path, header, "descr");
  const size_t d_end = header.find('\'', d + 1);
  if (header[d] != '\'' || d_end == std::string::npos) bad_header(path, "its 'descr' is not a string");
  out.descr = header.substr(d + 1, d_end - d - 1);
  out.fortran_order = header.compare(value_start(path, header, "fortran_order"), 4, "True") == 0;
  out.shape = parse_shape(path, header);
  out.data_offset = start + length;
  if (out.fortran_order) throw Error(fmt::format("'{}' is stored in Fortran order; save it in C order", path));
  return out;
}

/// Bytes per element of the dtypes we read; 0 for any other.
size_t element_size(const std::string& descr) {
  if (descr == "|u1" || descr == "<u1") return 1;
  if (descr == "<i4" || descr == "<f4") return 4;
  if (descr == "<i8" || descr == "<f8") return 8;
  return 0;
}

/// Checks `descr` is one of `allowed` and that the elements the shape claims are present.
size_t check_elements(const std::string& path, const std::vector<uint8_t>& bytes, const NpyHeader& h,
                      std::initializer_list<const char*> allowed, const char* what) {
  bool ok = false;
  for (const char* a : allowed) ok |= h.descr == a;
  if (!ok) {
    throw Error(fmt::format("'{}' has dtype '{}'; {} must be one of {}", path, h.descr, what,
                            fmt::join(allowed.begin(), allowed.end(), ", ")));
  }
  size_t count = 1;
  for (size_t d : h.shape) count = checked_mul(count, d, path);
  require_bytes(path, checked_mul(count, element_size(h.descr), path), bytes.size() - h.data_offset, what);
  return count;
}

template <class T>
T element(const std::vector<uint8_t>& bytes, size_t offset, size_t i) {
  T v;
  std::memcpy(&v, bytes.data() + offset + i * sizeof(T), sizeof(T));
  return v;
}


std::vector<int> read_labels(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const NpyHeader h = read_header(path, bytes);
  if (h.shape.size() != 1) {
    throw Error(fmt::format("'{}' has {} dimensions; labels must be one-dimensional [N]", path, h.shape.size()));
  }
  const size_t count = check_elements(path, bytes, h, {"<i8", "<i4", "|u1", "<u1"}, "labels");
  std::vector<int> labels(count);
  for (size_t i = 0; i < count; ++i) {
    int64_t v = 0;
    if (h.descr == "<i8") v = element<int64_t>(bytes, h.data_offset, i);
    if (h.descr == "<i4") v = element<int32_t>(bytes, h.data_offset, i);
    if (element_size(h.descr) == 1) v = bytes[h.data_offset + i];
    if (v < 0 || v >= kMaxClasses) {
      throw Error(fmt::format("'{}' has label {} at index {}; labels must be in 0..{}", path, v, i, kMaxClasses - 1));
    }
    labels[i] = static_cast<int>(v);
  }
  return labels;
}

}  // namespace

RawImages read_npy_images(const std::string& path) {
  RawImages images;
  images.bytes = read_file_bytes(path);
  const NpyHeader h = read_header(path, images.bytes);
  if (h.shape.size() != 3 && h.shape.size() != 4) {
    throw Error(fmt::format("'{}' has {} dimensions; images must be [N,H,W] or [N,C,H,W]", path, h.shape.size()));
  }
  const size_t count = check_elements(path, images.bytes, h, {"|u1", "<u1", "<f4", "<f8"}, "images");
  images.count = h.shape[0];
  images.example_shape.assign(h.shape.begin() + 1, h.shape.end());
  if (images.example_shape.size() == 2) images.example_shape.insert(images.example_shape.begin(), 1);
  check_example_shape(path, images.example_shape);
  if (element_size(h.descr) == 1) {
    images.offset = h.data_offset;
    return images;
  }
  images.is_float = true;
  images.floats.resize(count);
  for (size_t i = 0; i < count; ++i) {
    images.floats[i] = h.descr == "<f4" ? element<float>(images.bytes, h.data_offset, i)
                                        : static_cast<float>(element<double>(images.bytes, h.data_offset, i));
  }
  images.bytes = {};
  return images;
}

RawSet read_npy(const std::string& images_file, const std::string& labels_file) {
  RawSet set;
  set.images_file = images_file;
  set.labels_file = labels_file;
  set.labels = read_labels(labels_file);
  set.images = read_npy_images(images_file);
  check_set(set);
  return set;
}

}  // namespace dagger::data_source
