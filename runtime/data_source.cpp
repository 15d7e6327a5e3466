// Reading files whole (gzip detected by its magic bytes), the checks every reader shares,
// and finding a data folder's files by name.
#include "dagger/runtime/data_source.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "dagger/graph/error.h"

namespace dagger::data_source {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDebianDataDir = "/usr/share/datasets/fashion-mnist";

bool starts_with_gzip_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[2] = {0, 0};
  in.read(reinterpret_cast<char*>(magic), 2);
  return in.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

std::vector<uint8_t> read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  // Grow chunk by chunk with what the stream really holds: no size claimed by a header is
  // trusted for an allocation.
  constexpr size_t kChunk = size_t{1} << 22;
  std::vector<uint8_t> bytes;
  for (;;) {
    const size_t old = bytes.size();
    bytes.resize(old + kChunk);
    const int got = gzread(file, bytes.data() + old, static_cast<unsigned>(kChunk));
    if (got < 0) {
      int code = 0;
      const std::string why = gzerror(file, &code);
      gzclose(file);
      throw Error(fmt::format("'{}' is not a readable gzip file: {}", path, why));
    }
    bytes.resize(old + static_cast<size_t>(got));
    if (got == 0) break;
  }
  gzclose(file);
  return bytes;
}

std::vector<uint8_t> read_plain(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::vector<uint8_t> bytes(fs::file_size(path));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<size_t>(in.gcount()) != bytes.size()) throw Error(fmt::format("cannot read all of '{}'", path));
  return bytes;
}

/// The one file in `dir` whose name starts with one of `prefixes` (in order of preference);
/// "" when there is none. Throws when one prefix matches several files.
std::string find_by_prefix(const fs::path& dir, std::initializer_list<const char*> prefixes) {
  for (const char* prefix : prefixes) {
    std::vector<std::string> hits;
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file() && e.path().filename().string().starts_with(prefix)) hits.push_back(e.path().string());
    }
    std::sort(hits.begin(), hits.end());
    if (hits.size() > 1) {
      throw Error(fmt::format("'{}' holds several files starting with '{}' ({}); keep one", dir.string(), prefix,
                              fmt::join(hits, ", ")));
    }
    if (!hits.empty()) return hits.front();
  }
  return "";
}

/// `name` in `dir` when it exists, else "".
std::string existing(const fs::path& dir, const char* name) {
  return fs::is_regular_file(dir / name) ? (dir / name).string() : "";
}

/// Throws naming the missing member of a format that was recognized by another file.
std::string require(const std::string& found, const fs::path& dir, const std::string& what) {
  if (found.empty()) throw Error(fmt::format("'{}' has no {}", dir.string(), what));
  return found;
}

[[noreturn]] void no_data(const fs::path& dir, const char* why) {
  throw Error(fmt::format(
      "no data in '{}': {}. Expected IDX files (train-images*, train-labels*, t10k-images* or test-images*, "
      "t10k-labels* or test-labels*; Fashion-MNIST's are train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
      "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), or train_x.npy, train_y.npy, test_x.npy, test_y.npy, "
      "or train.csv and test.csv. The Debian package dataset-fashion-mnist installs Fashion-MNIST under {}; "
      "elsewhere, point --data or DAGGER_DATA at the folder holding the data",
      dir.string(), why, kDebianDataDir));
}

}  // namespace

size_t RawImages::example_size() const {
  size_t n = 1;
  for (size_t d : example_shape) n *= d;
  return n;
}

void RawImages::make_float() {
  if (is_float) return;
  floats.assign(bytes.begin() + static_cast<ptrdiff_t>(offset),
                bytes.begin() + static_cast<ptrdiff_t>(offset + count * example_size()));
  bytes.clear();
  bytes.shrink_to_fit();
  offset = 0;
  is_float = true;
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  if (!fs::is_regular_file(path)) throw Error(fmt::format("cannot open '{}': no such file", path));
  return starts_with_gzip_magic(path) ? read_gzip(path) : read_plain(path);
}

size_t checked_mul(size_t a, size_t b, const std::string& file) {
  size_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) {
    throw Error(fmt::format("'{}' claims a size of {} x {} elements, which overflows", file, a, b));
  }
  return out;
}

void require_bytes(const std::string& file, size_t needed, size_t available, const char* what) {
  if (available < needed) {
    throw Error(fmt::format("'{}' is truncated: expected {} bytes of {}, got {}", file, needed, what, available));
  }
}

void check_example_shape(const std::string& file, const std::vector<size_t>& example_shape) {
  size_t values = 1;
  for (size_t d : example_shape) {
    if (d == 0) throw Error(fmt::format("'{}' holds images with a dimension of size 0", file));
    values = checked_mul(values, d, file);
  }
  if (values > kMaxExampleSize) {
    throw Error(fmt::format("'{}' holds images of {} ({} values each); at most 2^31 values per image are supported",
                            file, fmt::join(example_shape, "x"), values));
  }
}

void check_set(const RawSet& set) {
  for (size_t i = 0; i < set.labels.size(); ++i) {
    const int label = set.labels[i];
    if (label < 0 || label >= kMaxClasses) {
      throw Error(fmt::format("'{}' has label {} at index {}; labels must be in 0..{}", set.labels_file, label, i,
                              kMaxClasses - 1));
    }
  }
  if (set.images.count != set.labels.size()) {
    throw Error(fmt::format("'{}' holds {} images but '{}' holds {} labels; the counts must match", set.images_file,
                            set.images.count, set.labels_file, set.labels.size()));
  }
}

RawSource read_source(const std::string& dir_name, const std::vector<size_t>& csv_shape) {
  const fs::path dir = dir_name;
  if (!fs::is_directory(dir)) no_data(dir, "no such folder");
  RawSource source;
  if (const std::string images = find_by_prefix(dir, {"train-images"}); !images.empty()) {
    source.format = "idx";
    const auto idx_file = [&](std::initializer_list<const char*> prefixes, const char* what) {
      return require(find_by_prefix(dir, prefixes), dir, what);
    };
    source.train = read_idx(images, idx_file({"train-labels"}, "train-labels* file"));
    source.test = read_idx(idx_file({"t10k-images", "test-images"}, "t10k-images* or test-images* file"),
                           idx_file({"t10k-labels", "test-labels"}, "t10k-labels* or test-labels* file"));
  } else if (const std::string x = existing(dir, "train_x.npy"); !x.empty()) {
    source.format = "npy";
    source.train = read_npy(x, require(existing(dir, "train_y.npy"), dir, "train_y.npy"));
    source.test = read_npy(require(existing(dir, "test_x.npy"), dir, "test_x.npy"),
                           require(existing(dir, "test_y.npy"), dir, "test_y.npy"));
  } else if (const std::string csv = existing(dir, "train.csv"); !csv.empty()) {
    source.format = "csv";
    source.train = read_csv(csv, csv_shape);
    source.test = read_csv(require(existing(dir, "test.csv"), dir, "test.csv"), csv_shape);
    // One data set, one pixel type: 8-bit pixels are scaled only when both files are 8-bit.
    if (source.train.images.is_float != source.test.images.is_float) {
      source.train.images.make_float();
      source.test.images.make_float();
    }
  } else {
    no_data(dir, "none of the expected files is there");
  }
  if (source.train.images.example_shape != source.test.images.example_shape) {
    const auto text = [](const std::vector<size_t>& s) { return fmt::format("{}", fmt::join(s, "x")); };
    throw Error(fmt::format("'{}' holds {} images but '{}' holds {} images; train and test shapes must match",
                            source.train.images_file, text(source.train.images.example_shape), source.test.images_file,
                            text(source.test.images.example_shape)));
  }
  if (source.train.images.is_float != source.test.images.is_float) {
    throw Error(fmt::format("'{}' and '{}' store pixels as different types (8-bit and float); use one",
                            source.train.images_file, source.test.images_file));
  }
  return source;
}

}  // namespace dagger::data_source
