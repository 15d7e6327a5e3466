#include "dagger/runtime/data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <random>

#include "dagger/graph/error.h"
#include "dagger/runtime/data_source.h"

namespace dagger {

namespace {

constexpr const char* kDebianDataDir = "/usr/share/datasets/fashion-mnist";
constexpr size_t kFashionValSize = 12000;

using data_source::RawImages;
using data_source::RawSet;
using data_source::RawSource;

/// The images at `indices` (each below raw.count) as floats, [n, C, H, W]. 8-bit pixels
/// become 0..1 when `scale`; float pixels stay as stored.
Tensor float_images(const RawImages& raw, const std::vector<size_t>& indices, bool scale) {
  const size_t pixels = raw.example_size();
  std::vector<size_t> shape{indices.size()};
  shape.insert(shape.end(), raw.example_shape.begin(), raw.example_shape.end());
  Tensor images = Tensor::from_shape(shape);
  float* out = images.data();
  for (size_t i : indices) {
    if (raw.is_float) {
      out = std::copy_n(raw.floats.data() + i * pixels, pixels, out);
      continue;
    }
    const uint8_t* in = raw.bytes.data() + raw.offset + i * pixels;
    // Divide rather than multiply by 1/255 so every pixel is the correctly rounded quotient.
    for (size_t p = 0; p < pixels; ++p) *out++ = scale ? static_cast<float>(in[p]) / 255.0f : static_cast<float>(in[p]);
  }
  return images;
}

/// Dataset of the examples at `indices` of a set, in that order.
Dataset take(const RawSet& set, const std::vector<size_t>& indices, bool scale) {
  Dataset out;
  out.images = float_images(set.images, indices, scale);
  for (size_t i : indices) out.labels.push_back(set.labels[i]);
  return out;
}

/// Fashion-MNIST as Zalando released it: 60,000 + 10,000 IDX images of 1x28x28 in ten
/// classes, the training labels starting 9 0 0 3 0 2 7 2 5 5 (MNIST's digits start 5 0 4 1).
bool is_fashion_mnist(const RawSource& s) {
  const std::vector<int> first = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  const auto max_label = [](const RawSet& set) { return *std::max_element(set.labels.begin(), set.labels.end()); };
  return s.format == "idx" && s.train.labels.size() == 60000 && s.test.labels.size() == 10000 &&
         s.train.images.example_shape == std::vector<size_t>{1, kImageSide, kImageSide} && max_label(s.train) == 9 &&
         max_label(s.test) <= 9 && std::equal(first.begin(), first.end(), s.train.labels.begin());
}

/// The lines of a classes file, one name each; throws for a missing file or an empty name.
std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("cannot open classes file '{}': no such file", path));
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    names.push_back(line);
  }
  while (!names.empty() && names.back().empty()) names.pop_back();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty())
      throw Error(fmt::format("classes file '{}' line {} is empty; give one name per line", path, i + 1));
  }
  if (names.empty()) throw Error(fmt::format("classes file '{}' names no classes", path));
  return names;
}

/// The largest label of a set, checked against the classes file's names when there are any.
int checked_max_label(const RawSet& set, const std::vector<std::string>& names, const std::string& classes_file) {
  int max_label = -1;
  for (size_t i = 0; i < set.labels.size(); ++i) {
    max_label = std::max(max_label, set.labels[i]);
    if (!names.empty() && static_cast<size_t>(set.labels[i]) >= names.size()) {
      throw Error(fmt::format("'{}' has label {} at index {}, but '{}' names only {} classes", set.labels_file,
                              set.labels[i], i, classes_file, names.size()));
    }
  }
  return max_label;
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

size_t Dataset::class_count() const {
  if (classes != 0 || labels.empty()) return classes;
  return static_cast<size_t>(*std::max_element(labels.begin(), labels.end())) + 1;
}

std::vector<std::string> Dataset::class_labels() const {
  std::vector<std::string> out = class_names;
  for (size_t c = out.size(); c < class_count(); ++c) out.push_back(std::to_string(c));
  return out;
}

std::vector<size_t> Dataset::example_shape() const {
  if (images.dimension() == 0) return {1, kImageSide, kImageSide};  // a default-constructed Dataset
  return std::vector<size_t>(images.shape().begin() + 1, images.shape().end());
}

Dataset Dataset::slice(size_t begin, size_t end) const {
  if (begin > end || end > size()) {
    throw Error(fmt::format("slice [{}, {}) does not fit a data set of {} examples", begin, end, size()));
  }
  std::vector<size_t> indices(end - begin);
  std::iota(indices.begin(), indices.end(), begin);
  return subset(indices);
}

Dataset Dataset::subset(const std::vector<size_t>& indices) const {
  const std::vector<size_t> example = example_shape();
  const size_t stride = product(example);
  Dataset out;
  out.classes = classes;
  out.class_names = class_names;
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

Dataset load_idx(const std::string& images_file, const std::string& labels_file, bool scale) {
  const RawSet set = data_source::read_idx(images_file, labels_file);
  return take(set, iota(set.labels.size()), scale);
}

Tensor load_images(const std::string& file, bool scale) {
  char magic[6] = {};
  std::ifstream(file, std::ios::binary).read(magic, sizeof magic);
  // A file named .npy is read as one whatever it holds, so that a damaged one is reported as such.
  const bool npy = std::string_view(magic, sizeof magic) == "\x93NUMPY" || file.ends_with(".npy");
  const RawImages raw = npy ? data_source::read_npy_images(file) : data_source::read_idx_images(file);
  std::vector<size_t> all(raw.count);
  std::iota(all.begin(), all.end(), size_t{0});
  return float_images(raw, all, scale);
}

std::string default_data_dir() {
  const char* env = std::getenv("DAGGER_DATA");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kDebianDataDir);
}

const std::array<const char*, 10>& fashion_mnist_class_names() {
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

Splits load_data(const SplitOptions& options) {
  const std::string dir = options.dir.empty() ? default_data_dir() : options.dir;
  // The files stay as stored (8-bit for IDX) until each split takes its examples as floats: the
  // process never holds the training images as floats beside the splits made of them.
  const RawSource source = data_source::read_source(dir, options.input_shape);
  const bool fashion = is_fashion_mnist(source);
  std::vector<std::string> names;
  if (!options.classes_file.empty()) names = read_class_names(options.classes_file);
  const int max_label = std::max(checked_max_label(source.train, names, options.classes_file),
                                 checked_max_label(source.test, names, options.classes_file));
  if (names.empty() && fashion) names.assign(fashion_mnist_class_names().begin(), fashion_mnist_class_names().end());
  SplitOptions resolved = options;
  resolved.val_size = validation_size(options, source.train.labels.size(), fashion);
  Splits splits = split_by_indices(source.train.labels, source.test.labels, resolved,
                                   [&](bool from_test, const std::vector<size_t>& indices) {
                                     return take(from_test ? source.test : source.train, indices, options.scale);
                                   });
  for (Dataset* d : {&splits.train, &splits.val, &splits.test}) {
    d->classes = std::max(static_cast<size_t>(max_label + 1), names.size());
    d->class_names = names;
  }
  return splits;
}

Splits load_fashion_mnist(const SplitOptions& options) { return load_data(options); }

Splits split_fashion_mnist(const Dataset& full_train, const Dataset& test, const SplitOptions& options) {
  SplitOptions resolved = options;
  resolved.val_size = validation_size(options, full_train.size(), true);
  return split_by_indices(full_train.labels, test.labels, resolved,
                          [&](bool from_test, const std::vector<size_t>& indices) {
                            return (from_test ? test : full_train).subset(indices);
                          });
}

size_t validation_size(const SplitOptions& options, size_t train_size, bool fashion_mnist) {
  if (options.val_size != 0) return options.val_size;
  if (options.val_fraction == 0 && fashion_mnist) return kFashionValSize;
  const double fraction = options.val_fraction != 0 ? options.val_fraction : kDefaultValFraction;
  return std::max<size_t>(1, static_cast<size_t>(fraction * static_cast<double>(train_size)));
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
  const std::vector<size_t> example = data.example_shape();
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
