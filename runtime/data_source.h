#pragma once
/// The readers behind `load_data`: IDX (gzip-compressed or plain), NumPy .npy and CSV files,
/// each read into the same stored form (8-bit or float pixels, int labels) that data.cpp turns
/// into Datasets. Every size a header claims is checked against the bytes actually present,
/// with overflow-checked products, before anything of that size is allocated.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dagger::data_source {

/// Labels at or above this are rejected: the metrics keep a classes x classes confusion matrix.
constexpr int kMaxClasses = 4096;

/// Images as stored: `count` examples of `example_shape` (C, H, W), as 8-bit values at
/// `bytes[offset...]` or as floats, one example after another.
struct RawImages {
  std::vector<size_t> example_shape;
  size_t count = 0;
  bool is_float = false;
  std::vector<uint8_t> bytes;  ///< when !is_float: the file's bytes, pixels starting at `offset`
  size_t offset = 0;
  std::vector<float> floats;  ///< when is_float

  /// Number of values per example.
  size_t example_size() const;
  /// Turns 8-bit pixels into floats of the same values (0..255), e.g. to match a float file.
  void make_float();
};

/// Images and their labels, with the files they came from for error messages.
struct RawSet {
  RawImages images;
  std::vector<int> labels;
  std::string images_file, labels_file;
};

/// A data folder's training and test sets and the format they were read from.
struct RawSource {
  std::string format;  ///< "idx", "npy" or "csv"
  RawSet train, test;
};

/// Reads the data set in `dir`, finding its files by name (see docs/data.md). `csv_shape`
/// (C, H, W) shapes CSV rows; empty: 1 x s x s when the pixel count is a square s*s.
/// Throws Error naming the folder when it holds no recognized files.
RawSource read_source(const std::string& dir, const std::vector<size_t>& csv_shape);

/// An IDX image file and its IDX label file (8-bit, [N,H,W] or [N,C,H,W] images, [N] labels).
RawSet read_idx(const std::string& images_file, const std::string& labels_file);
/// A .npy image array ([N,H,W] or [N,C,H,W], uint8 / float32 / float64) and its labels
/// ([N], int64 / int32 / uint8).
RawSet read_npy(const std::string& images_file, const std::string& labels_file);
/// An IDX image file alone ([N,H,W] or [N,C,H,W], 8-bit), gzip-compressed or plain.
RawImages read_idx_images(const std::string& images_file);
/// A .npy image array alone ([N,H,W] or [N,C,H,W], uint8 / float32 / float64).
RawImages read_npy_images(const std::string& images_file);
/// A CSV file: one example per row, the label first, then the pixels; an optional header row.
RawSet read_csv(const std::string& file, const std::vector<size_t>& csv_shape);

// ---- Shared by the readers ---------------------------------------------------------------

/// The whole content of a file, decompressed when it starts with the gzip magic bytes.
/// Throws Error naming the file when it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);

/// a * b, throwing Error (naming `file`) when it overflows size_t.
size_t checked_mul(size_t a, size_t b, const std::string& file);

/// Throws Error naming `file` as truncated when `available` < `needed` bytes of `what`.
void require_bytes(const std::string& file, size_t needed, size_t available, const char* what);

/// The most values one example may hold (2^31, what a model text's shapes allow).
constexpr size_t kMaxExampleSize = size_t{1} << 31;

/// Checks an example shape (C, H, W) read from `file`: no dimension 0, at most kMaxExampleSize
/// values (with an overflow-checked product, so a file of 0 images cannot claim any shape).
void check_example_shape(const std::string& file, const std::vector<size_t>& example_shape);

/// Checks the labels are in 0..kMaxClasses-1 and match the image count.
void check_set(const RawSet& set);

}  // namespace dagger::data_source
