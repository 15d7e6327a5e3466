#pragma once
/// Data sets: loading a folder of IDX, NumPy .npy or CSV files (Fashion-MNIST by default) into
/// images and labels, the seeded class-stratified train/validation split, class-balanced
/// subsets, and the per-epoch shuffling and batch gathering the trainer uses. docs/data.md
/// describes the formats, the file names and the errors.
///
/// Every random choice here runs on std::mt19937_64 with our own bounded draws and
/// Fisher-Yates shuffle, so a seed gives the same split and order with any standard library.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dagger/runtime/tensor.h"

namespace dagger {

/// Width and height of a Fashion-MNIST image.
constexpr size_t kImageSide = 28;

/// Share of the training images moved to validation when neither a size nor a fraction is
/// given and the data is not Fashion-MNIST (which keeps the study's 12,000).
constexpr double kDefaultValFraction = 0.2;

/// Images with their class ids, example i being images[i] and labels[i].
struct Dataset {
  Tensor images;                         ///< [n, channels, height, width] f32
  std::vector<int> labels;               ///< n class ids in 0..class_count()-1
  size_t classes = 0;                    ///< number of classes; 0 when unknown (then max label + 1)
  std::vector<std::string> class_names;  ///< one per class, or empty when the data names none

  /// Number of examples.
  size_t size() const { return labels.size(); }
  /// `classes` when set, else one more than the largest label (0 for no labels).
  size_t class_count() const;
  /// The name of each class: `class_names`, or "0", "1", ... when there are none.
  std::vector<std::string> class_labels() const;
  /// The shape of one image: [channels, height, width] ([1, 28, 28] for an empty Dataset).
  std::vector<size_t> example_shape() const;
  /// Examples begin..end-1, in order. Throws Error when the range runs past the end.
  Dataset slice(size_t begin, size_t end) const;
  /// The examples at `indices`, in that order (repeats allowed). Throws Error on an index past the end.
  Dataset subset(const std::vector<size_t>& indices) const;
};

/// Reads an IDX image file and its IDX label file, gzip-compressed or plain. Pixels become
/// floats in 0..1 when `scale`, else stay 0..255. Throws Error naming the file for a missing
/// file, a bad magic number, a truncated file, or image and label files that disagree on the count.
Dataset load_idx(const std::string& images_file, const std::string& labels_file, bool scale = true);

/// The images of one file, [N, C, H, W], for inference: a .npy array (by its magic bytes or its
/// name) or else an IDX image file, gzip-compressed or plain. 8-bit pixels become 0..1 when `scale`,
/// float pixels stay as stored. Throws Error naming the file for anything malformed.
Tensor load_images(const std::string& file, bool scale = true);

/// $DAGGER_DATA when set, else where Debian's dataset-fashion-mnist package puts the files.
std::string default_data_dir();

/// The English names of Fashion-MNIST's ten classes, indexed by class id.
const std::array<const char*, 10>& fashion_mnist_class_names();

struct Splits {
  Dataset train, val, test;
};

struct SplitOptions {
  std::string dir;  ///< the data folder (see load_data)
  uint64_t seed = 42;
  /// Examples moved from the training images to validation; 0: `val_fraction` of them, or
  /// when that is 0 too, 12,000 for Fashion-MNIST and kDefaultValFraction for other data.
  size_t val_size = 0;
  double val_fraction = 0;
  std::string classes_file;         ///< class names, one per line; "" = none (Fashion-MNIST's own)
  std::vector<size_t> input_shape;  ///< C, H, W of CSV rows; empty = 1 x s x s for s*s pixels
  size_t train_limit = 0, val_limit = 0, test_limit = 0;  ///< class-balanced subset sizes; 0 = all
  bool scale = true;  ///< pixels in 0..1 rather than 0..255
};

/// Loads the data set in `options.dir` (IDX, .npy or CSV files found by name; docs/data.md)
/// and splits it as `split_fashion_mnist` does. Every split carries the class count (the
/// largest label + 1, or the classes file's line count when larger) and the class names.
/// Throws Error naming the file and the problem for any bad input.
Splits load_data(const SplitOptions& options);

/// load_data, under the name it had when Fashion-MNIST was the only data.
Splits load_fashion_mnist(const SplitOptions& options);

/// Splits loaded data: `full_train` into stratified train and validation sets, `test` kept
/// as the test set; then applies the limits and gives each split a seeded order.
/// `options.dir` and `options.scale` are not used here; a val_size of 0 means 12,000 unless
/// `options.val_fraction` is set.
Splits split_fashion_mnist(const Dataset& full_train, const Dataset& test, const SplitOptions& options);

/// The validation size `options` asks for out of `train_size` training images (at least 1):
/// val_size, else val_fraction of them, else 12,000 when `fashion_mnist`, else kDefaultValFraction.
size_t validation_size(const SplitOptions& options, size_t train_size, bool fashion_mnist);

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

/// Copies examples order[begin], ..., order[begin+count-1] into `images_out` ([count, C, H, W])
/// and their class ids, as floats, into `labels_out` ([count]). The outputs are reshaped only
/// when their shapes change, so a loop can reuse them without reallocating.
void gather_batch(const Dataset& data, const std::vector<size_t>& order, size_t begin, size_t count,
                  Tensor& images_out, Tensor& labels_out);

}  // namespace dagger
