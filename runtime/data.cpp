#include "runtime/data.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <random>

#include "graph/error.h"

namespace dagger {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDebianDataDir = "/usr/share/datasets/fashion-mnist";
constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, three dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, one dimension
constexpr int kNumLabels = 10;

// ---- Reading IDX files -------------------------------------------------------------------

/// An open gzip (or plain: zlib passes those through) file, closed on scope exit.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    if (!fs::exists(path)) {
      throw Error(fmt::format(
          "cannot open '{}': no such file. The Debian package dataset-fashion-mnist installs "
          "Fashion-MNIST under {}; elsewhere, point --data or DAGGER_DATA at the folder holding it",
          path, kDebianDataDir));
    }
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  }
  ~GzReader() { gzclose(file_); }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  /// Reads up to `n` bytes, fewer only at the end of the file.
  std::vector<uint8_t> read(size_t n) {
    // Grow the buffer chunk by chunk rather than trusting the header's count, so a corrupt
    // header claiming billions of images fails as a truncated file instead of a huge allocation.
    constexpr size_t kChunk = size_t{1} << 22;
    std::vector<uint8_t> bytes;
    while (bytes.size() < n) {
      const size_t want = std::min(kChunk, n - bytes.size());
      const size_t old = bytes.size();
      bytes.resize(old + want);
      const int got = gzread(file_, bytes.data() + old, static_cast<unsigned>(want));
      if (got < 0) {
        int code = 0;
        throw Error(fmt::format("'{}' is not a readable gzip file: {}", path_, gzerror(file_, &code)));
      }
      bytes.resize(old + static_cast<size_t>(got));
      if (static_cast<size_t>(got) < want) break;
    }
    return bytes;
  }

  /// Reads exactly `n` bytes of `what`, or throws naming the file as truncated.
  std::vector<uint8_t> read_exact(size_t n, const char* what) {
    std::vector<uint8_t> bytes = read(n);
    if (bytes.size() != n) {
      throw Error(fmt::format("'{}' is truncated: expected {} bytes of {}, got {}", path_, n, what, bytes.size()));
    }
    return bytes;
  }

  /// Reads the big-endian 32-bit integers that IDX headers are made of.
  std::vector<uint32_t> read_header(size_t words) {
    const std::vector<uint8_t> bytes = read_exact(4 * words, "header");
    std::vector<uint32_t> out(words);
    for (size_t i = 0; i < words; ++i) {
      const uint8_t* b = &bytes[4 * i];
      out[i] = uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
    }
    return out;
  }

  void expect_magic(uint32_t got, uint32_t expected, const char* kind) const {
    if (got != expected) {
      throw Error(fmt::format("'{}' has magic number 0x{:08x}, expected 0x{:08x} for an IDX {} file", path_, got,
                              expected, kind));
    }
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

std::vector<int> read_labels(const std::string& path) {
  GzReader in(path);
  const std::vector<uint32_t> header = in.read_header(2);
  in.expect_magic(header[0], kLabelsMagic, "label");
  const std::vector<uint8_t> bytes = in.read_exact(header[1], "labels");
  std::vector<int> labels(bytes.begin(), bytes.end());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= kNumLabels) {
      throw Error(fmt::format("'{}' has label {} at index {}; labels must be in 0..{}", path, labels[i], i,
                              kNumLabels - 1));
    }
  }
  return labels;
}

/// An image file as stored: 8-bit pixels, 28x28 per image, one image after another.
struct RawImages {
  std::vector<uint8_t> pixels;
  size_t count = 0;
};

RawImages read_raw_images(const std::string& path) {
  GzReader in(path);
  const std::vector<uint32_t> header = in.read_header(4);
  in.expect_magic(header[0], kImagesMagic, "image");
  const size_t count = header[1], rows = header[2], cols = header[3];
  if (rows != kImageSide || cols != kImageSide) {
    throw Error(fmt::format("'{}' holds {}x{} images; Fashion-MNIST images are {}x{}", path, rows, cols,
                            kImageSide, kImageSide));
  }
  return RawImages{in.read_exact(count * rows * cols, "pixels"), count};
}

/// The images at `indices` (each below raw.count) as floats, [n, 1, 28, 28].
Tensor float_images(const RawImages& raw, const std::vector<size_t>& indices, bool scale) {
  const size_t pixels = kImageSide * kImageSide;
  Tensor images = Tensor::from_shape({indices.size(), 1, kImageSide, kImageSide});
  float* out = images.data();
  for (size_t i : indices) {
    const uint8_t* in = raw.pixels.data() + i * pixels;
    // Divide rather than multiply by 1/255 so every pixel is the correctly rounded quotient.
    for (size_t p = 0; p < pixels; ++p) *out++ = scale ? static_cast<float>(in[p]) / 255.0f : static_cast<float>(in[p]);
  }
  return images;
}

/// An image file and its label file, checked against each other.
struct RawSet {
  RawImages images;
  std::vector<int> labels;
};

RawSet read_idx(const std::string& images_gz, const std::string& labels_gz) {
  RawSet set{{}, read_labels(labels_gz)};
  set.images = read_raw_images(images_gz);
  if (set.images.count != set.labels.size()) {
    throw Error(fmt::format("'{}' holds {} images but '{}' holds {} labels; the counts must match", images_gz,
                            set.images.count, labels_gz, set.labels.size()));
  }
  return set;
}

/// Dataset of the examples at `indices` of a set, in that order.
Dataset take(const RawSet& set, const std::vector<size_t>& indices, bool scale) {
  Dataset out;
  out.images = float_images(set.images, indices, scale);
  for (size_t i : indices) out.labels.push_back(set.labels[i]);
  return out;
}


// ---- Seeded randomness -------------------------------------------------------------------

/// SplitMix64's finalizer: spreads nearby seeds (42, 43, ...) into unrelated generator states.
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// The random choices a seed drives; each gets its own stream so that, say, changing the
/// training limit leaves the validation subset alone.
enum class Stream : uint64_t { split = 1, sample, train, val, test, epoch };

std::mt19937_64 make_rng(uint64_t seed, Stream stream, uint64_t index = 0) {
  return std::mt19937_64(splitmix64(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(stream))) ^ index));
}

/// A uniform draw from 0..n-1 (n > 0). Rejecting the few raw values above the largest
/// multiple of n removes the modulo bias.
uint64_t draw_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t reject_below = (0 - n) % n;  // 2^64 mod n
  uint64_t r = rng();
  while (r < reject_below) r = rng();
  return r % n;
}

/// Fisher-Yates: every permutation equally likely.
void shuffle(std::vector<size_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[draw_below(rng, i)]);
}

std::vector<size_t> iota(size_t n) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

// ---- Stratification ----------------------------------------------------------------------

/// Indices of each class, ascending, keyed by class id.
std::map<int, std::vector<size_t>> group_by_class(const std::vector<int>& labels) {
  std::map<int, std::vector<size_t>> groups;
  for (size_t i = 0; i < labels.size(); ++i) groups[labels[i]].push_back(i);
  return groups;
}

/// How many of `total` picks each class gets: its proportional share rounded down, the
/// leftover going one each to the largest remainders (ties to the lower class id). The
/// shares add up to `total` exactly and none exceeds its class's size.
std::vector<size_t> proportional_shares(const std::map<int, std::vector<size_t>>& groups, size_t total) {
  size_t n = 0;
  for (const auto& [label, members] : groups) n += members.size();
  std::vector<size_t> shares, remainders;
  size_t assigned = 0;
  for (const auto& [label, members] : groups) {
    shares.push_back(total * members.size() / n);
    remainders.push_back(total * members.size() % n);
    assigned += shares.back();
  }
  std::vector<size_t> by_remainder = iota(shares.size());
  std::stable_sort(by_remainder.begin(), by_remainder.end(),
                   [&](size_t a, size_t b) { return remainders[a] > remainders[b]; });
  for (size_t k = 0; assigned < total; ++k, ++assigned) ++shares[by_remainder[k]];
  return shares;
}

/// Keeps a class-proportional random `limit` of `indices` (all when limit is 0) and puts
/// them in a random order. `labels` are the labels of the data set the indices point into.
std::vector<size_t> limit_and_shuffle(const std::vector<int>& labels, const std::vector<size_t>& indices, size_t limit,
                                      uint64_t seed, Stream stream) {
  std::vector<size_t> kept = indices;
  if (limit != 0 && limit < indices.size()) {
    std::vector<int> kept_labels(indices.size());
    for (size_t i = 0; i < indices.size(); ++i) kept_labels[i] = labels[indices[i]];
    // The sample's own seed is the first draw of this split's stream.
    const uint64_t sample_seed = make_rng(seed, stream, 0)();
    kept.clear();
    for (size_t pick : stratified_sample(kept_labels, limit, sample_seed)) kept.push_back(indices[pick]);
  }
  std::mt19937_64 rng = make_rng(seed, stream, 1);
  shuffle(kept, rng);
  return kept;
}

// ---- Copying examples --------------------------------------------------------------------

/// The shape of one example: the images' shape without its leading count.
std::vector<size_t> example_shape(const Tensor& images) {
  if (images.dimension() == 0) return {1, kImageSide, kImageSide};  // a default-constructed Dataset
  return std::vector<size_t>(images.shape().begin() + 1, images.shape().end());
}

size_t product(const std::vector<size_t>& dims) {
  return std::accumulate(dims.begin(), dims.end(), size_t{1}, std::multiplies<>());
}

/// Makes `t` a [count, example...] tensor, keeping its storage when the shape already fits.
void reshape_for(Tensor& t, size_t count, const std::vector<size_t>& example) {
  std::vector<size_t> shape{count};
  shape.insert(shape.end(), example.begin(), example.end());
  if (!std::equal(shape.begin(), shape.end(), t.shape().begin(), t.shape().end())) t.resize(shape);
}

}  // namespace

// ---- Dataset -----------------------------------------------------------------------------

Dataset Dataset::slice(size_t begin, size_t end) const {
  if (begin > end || end > size()) {
    throw Error(fmt::format("slice [{}, {}) does not fit a data set of {} examples", begin, end, size()));
  }
  std::vector<size_t> indices(end - begin);
  std::iota(indices.begin(), indices.end(), begin);
  return subset(indices);
}

Dataset Dataset::subset(const std::vector<size_t>& indices) const {
  const std::vector<size_t> example = example_shape(images);
  const size_t stride = product(example);
  Dataset out;
  reshape_for(out.images, indices.size(), example);
  out.labels.reserve(indices.size());
  float* dst = out.images.data();
  for (size_t i : indices) {
    if (i >= size()) throw Error(fmt::format("example index {} is out of range for a data set of {}", i, size()));
    std::copy_n(images.data() + i * stride, stride, dst);
    dst += stride;
    out.labels.push_back(labels[i]);
  }
  return out;
}

// ---- Loading -----------------------------------------------------------------------------

Dataset load_idx(const std::string& images_gz, const std::string& labels_gz, bool scale) {
  const RawSet set = read_idx(images_gz, labels_gz);
  return take(set, iota(set.labels.size()), scale);
}

std::string default_data_dir() {
  const char* env = std::getenv("DAGGER_DATA");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kDebianDataDir);
}

const std::array<const char*, 10>& class_names() {
  static const std::array<const char*, 10> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

namespace {

/// The splits split_fashion_mnist defines, each made by `make(from_test, indices)` from the
/// examples at those indices of the full training set or of the test set.
Splits split_by_indices(const std::vector<int>& train_labels, const std::vector<int>& test_labels,
                        const SplitOptions& options,
                        const std::function<Dataset(bool, const std::vector<size_t>&)>& make) {
  const uint64_t seed = options.seed;
  const StratifiedSplit split = stratified_split(train_labels, options.val_size, seed);
  Splits out;
  out.train = make(false, limit_and_shuffle(train_labels, split.train, options.train_limit, seed, Stream::train));
  out.val = make(false, limit_and_shuffle(train_labels, split.val, options.val_limit, seed, Stream::val));
  out.test = make(true, limit_and_shuffle(test_labels, iota(test_labels.size()), options.test_limit, seed, Stream::test));
  return out;
}

}  // namespace

Splits load_fashion_mnist(const SplitOptions& options) {
  const fs::path dir = options.dir.empty() ? default_data_dir() : options.dir;
  const auto load = [&](const char* prefix) {
    return read_idx((dir / fmt::format("{}-images-idx3-ubyte.gz", prefix)).string(),
                    (dir / fmt::format("{}-labels-idx1-ubyte.gz", prefix)).string());
  };
  // The files stay 8-bit until each split takes its examples as floats: the process never holds
  // the 60,000 training images as floats beside the splits made of them.
  const RawSet full_train = load("train");
  const RawSet test = load("t10k");
  return split_by_indices(full_train.labels, test.labels, options, [&](bool from_test, const std::vector<size_t>& indices) {
    return take(from_test ? test : full_train, indices, options.scale);
  });
}

Splits split_fashion_mnist(const Dataset& full_train, const Dataset& test, const SplitOptions& options) {
  return split_by_indices(full_train.labels, test.labels, options,
                          [&](bool from_test, const std::vector<size_t>& indices) {
                            return (from_test ? test : full_train).subset(indices);
                          });
}

// ---- Index-level helpers -----------------------------------------------------------------

StratifiedSplit stratified_split(const std::vector<int>& labels, size_t val_size, uint64_t seed) {
  if (val_size >= labels.size()) {
    throw Error(fmt::format("a validation set of {} leaves no training data out of {} examples", val_size,
                            labels.size()));
  }
  std::mt19937_64 rng = make_rng(seed, Stream::split);
  auto groups = group_by_class(labels);
  const std::vector<size_t> shares = proportional_shares(groups, val_size);
  StratifiedSplit out;
  size_t k = 0;
  for (auto& [label, members] : groups) {
    shuffle(members, rng);
    out.val.insert(out.val.end(), members.begin(), members.begin() + static_cast<ptrdiff_t>(shares[k]));
    out.train.insert(out.train.end(), members.begin() + static_cast<ptrdiff_t>(shares[k]), members.end());
    ++k;
  }
  std::sort(out.train.begin(), out.train.end());
  std::sort(out.val.begin(), out.val.end());
  return out;
}

std::vector<size_t> stratified_sample(const std::vector<int>& labels, size_t count, uint64_t seed) {
  if (count >= labels.size()) return iota(labels.size());
  std::mt19937_64 rng = make_rng(seed, Stream::sample);
  auto groups = group_by_class(labels);
  const std::vector<size_t> shares = proportional_shares(groups, count);
  std::vector<size_t> out;
  size_t k = 0;
  for (auto& [label, members] : groups) {
    shuffle(members, rng);
    out.insert(out.end(), members.begin(), members.begin() + static_cast<ptrdiff_t>(shares[k++]));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<size_t> shuffled_order(size_t n, uint64_t seed, uint64_t epoch) {
  std::vector<size_t> order = iota(n);
  std::mt19937_64 rng = make_rng(seed, Stream::epoch, epoch);
  shuffle(order, rng);
  return order;
}

void gather_batch(const Dataset& data, const std::vector<size_t>& order, size_t begin, size_t count,
                  Tensor& images_out, Tensor& labels_out) {
  if (begin > order.size() || count > order.size() - begin) {
    throw Error(fmt::format("batch [{}, {}) runs past the {} entries of the order", begin, begin + count,
                            order.size()));
  }
  const std::vector<size_t> example = example_shape(data.images);
  const size_t stride = product(example);
  reshape_for(images_out, count, example);
  reshape_for(labels_out, count, {});
  for (size_t b = 0; b < count; ++b) {
    const size_t i = order[begin + b];
    if (i >= data.size()) throw Error(fmt::format("example index {} is out of range for a data set of {}", i, data.size()));
    std::copy_n(data.images.data() + i * stride, stride, images_out.data() + b * stride);
    labels_out(b) = static_cast<float>(data.labels[i]);
  }
}

}  // namespace dagger
