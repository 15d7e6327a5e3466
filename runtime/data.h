#pragma once
/// Fashion-MNIST: reading the IDX files, the seeded class-stratified train/validation split,
/// class-balanced subsets, and the per-epoch shuffling and batch gathering the trainer uses.
///
/// Every random choice here runs on std::mt19937_64 with our own bounded draws and
/// Fisher-Yates shuffle, so a seed gives the same split and order with any standard library.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace dagger {

/// Width and height of a Fashion-MNIST image.
constexpr size_t kImageSide = 28;

/// Images with their class ids, example i being images[i] and labels[i].
struct Dataset {
  Tensor images;            ///< [n, 1, 28, 28] f32
  std::vector<int> labels;  ///< n class ids in 0..9

  /// Number of examples.
  size_t size() const { return labels.size(); }
  /// Examples begin..end-1, in order. Throws Error when the range runs past the end.
  Dataset slice(size_t begin, size_t end) const;
  /// The examples at `indices`, in that order (repeats allowed). Throws Error on an index past the end.
  Dataset subset(const std::vector<size_t>& indices) const;
};

/// Reads an IDX image file and its IDX label file, gzip-compressed or plain. Pixels become
/// floats in 0..1 when `scale`, else stay 0..255. Throws Error naming the file for a missing
/// file, a bad magic number, a truncated file, images that are not 28x28, labels outside
/// 0..9, or image and label files that disagree on the count.
Dataset load_idx(const std::string& images_gz, const std::string& labels_gz, bool scale = true);

/// $DAGGER_DATA when set, else where Debian's dataset-fashion-mnist package puts the files.
std::string default_data_dir();

/// The English names of the ten classes, indexed by class id.
const std::array<const char*, 10>& class_names();

struct Splits {
  Dataset train, val, test;
};

struct SplitOptions {
  std::string dir;  ///< folder holding the four Fashion-MNIST .gz files
  uint64_t seed = 42;
  size_t val_size = 12000;  ///< examples moved from the 60,000 training images to validation
  size_t train_limit = 0, val_limit = 0, test_limit = 0;  ///< class-balanced subset sizes; 0 = all
  bool scale = true;  ///< pixels in 0..1 rather than 0..255
};

/// Loads Fashion-MNIST from `options.dir` and splits it as `split_fashion_mnist` does.
Splits load_fashion_mnist(const SplitOptions& options);

/// Splits loaded data: `full_train` into stratified train and validation sets, `test` kept
/// as the test set; then applies the limits and gives each split a seeded order.
/// `options.dir` and `options.scale` are not used here.
Splits split_fashion_mnist(const Dataset& full_train, const Dataset& test, const SplitOptions& options);

/// Indices of a stratified two-way split: each class sends its share of `val_size` to `val`.
struct StratifiedSplit {
  std::vector<size_t> train, val;  ///< ascending, disjoint, together every index once
};

/// Splits 0..labels.size()-1 so that `val` holds `val_size` indices with the class proportions
/// of the whole, picked at random per class. Throws Error when val_size is not below the size.
StratifiedSplit stratified_split(const std::vector<int>& labels, size_t val_size, uint64_t seed);

/// `count` indices (ascending) with the class proportions of `labels`, picked at random per
/// class: a class-balanced subset when the classes are balanced. All indices when count >= size.
std::vector<size_t> stratified_sample(const std::vector<int>& labels, size_t count, uint64_t seed);

/// A permutation of 0..n-1 that depends only on (n, seed, epoch).
std::vector<size_t> shuffled_order(size_t n, uint64_t seed, uint64_t epoch);

/// Copies examples order[begin], ..., order[begin+count-1] into `images_out` ([count, 1, 28, 28])
/// and their class ids, as floats, into `labels_out` ([count]). The outputs are reshaped only
/// when their shapes change, so a loop can reuse them without reallocating.
void gather_batch(const Dataset& data, const std::vector<size_t>& order, size_t begin, size_t count,
                  Tensor& images_out, Tensor& labels_out);

}  // namespace dagger
