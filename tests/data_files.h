#pragma once
/// Writers of small data sets in the formats `load_data` reads (IDX, .npy, CSV), and a
/// learnable synthetic image task, for the loader and CLI tests.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace dagger::testing {

using Bytes = std::vector<uint8_t>;

inline void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

/// An IDX file of 8-bit elements with the given dimensions (magic 0x08 type, rank = dims).
inline Bytes idx_file(const std::vector<uint32_t>& dims, const Bytes& elements, uint8_t type = 0x08) {
  Bytes out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  out.insert(out.end(), elements.begin(), elements.end());
  return out;
}

/// A version-1 .npy file of `descr` elements (given as their raw little-endian bytes).
inline Bytes npy_file(const std::string& descr, const std::vector<size_t>& shape, const Bytes& data,
                      bool fortran = false) {
  std::string dims;
  for (size_t d : shape) dims += fmt::format("{}, ", d);
  if (shape.size() > 1) dims.erase(dims.size() - 2);
  if (shape.size() == 1) dims.erase(dims.size() - 1);
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': ({}), }}", descr, fortran ? "True" : "False", dims);
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  const std::string magic = "\x93NUMPY\x01";
  Bytes out(magic.begin(), magic.end());
  for (uint8_t b : {uint8_t{0}, static_cast<uint8_t>(header.size() & 0xff), static_cast<uint8_t>(header.size() >> 8)})
    out.push_back(b);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// The raw bytes of a vector of trivially copyable values.
template <class T>
Bytes raw_bytes(const std::vector<T>& values) {
  Bytes out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

/// A learnable task: `classes` (at most 4) quadrants, the bright one giving the class, over
/// uniform noise. Pixels are 8-bit, `channels` x `side` x `side` per image.
struct QuadrantSet {
  size_t count = 0, channels = 0, side = 0;
  Bytes pixels;
  std::vector<int> labels;

  size_t example_size() const { return channels * side * side; }
};

inline QuadrantSet quadrant_set(size_t count, size_t channels, size_t side, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  QuadrantSet s{count, channels, side, {}, {}};
  for (size_t i = 0; i < count; ++i) {
    const int label = static_cast<int>(i % static_cast<size_t>(classes));
    s.labels.push_back(label);
    for (size_t c = 0; c < channels; ++c)
      for (size_t y = 0; y < side; ++y)
        for (size_t x = 0; x < side; ++x) {
          const int quadrant = (y >= side / 2 ? 2 : 0) + (x >= side / 2 ? 1 : 0);
          const int noise = static_cast<int>(rng() % 100);
          s.pixels.push_back(static_cast<uint8_t>(noise + (quadrant == label ? 120 : 0)));
        }
  }
  return s;
}

/// The set as train_x/train_y (or test_x/test_y) .npy files in `dir`; `float_pixels` stores
/// the pixels as float32 in 0..1 instead of uint8.
inline void write_npy_set(const std::string& dir, const std::string& split, const QuadrantSet& s,
                          bool float_pixels = false) {
  const std::vector<size_t> shape = {s.count, s.channels, s.side, s.side};
  if (float_pixels) {
    std::vector<float> values;
    for (uint8_t p : s.pixels) values.push_back(static_cast<float>(p) / 255.0f);
    write_bytes(dir + "/" + split + "_x.npy", npy_file("<f4", shape, raw_bytes(values)));
  } else {
    write_bytes(dir + "/" + split + "_x.npy", npy_file("|u1", shape, s.pixels));
  }
  const std::vector<int64_t> labels(s.labels.begin(), s.labels.end());
  write_bytes(dir + "/" + split + "_y.npy", npy_file("<i8", {s.count}, raw_bytes(labels)));
}

/// The set as `split`.csv in `dir`: a header row, then label and pixels per row.
inline void write_csv_set(const std::string& dir, const std::string& split, const QuadrantSet& s) {
  std::string text = "label";
  for (size_t p = 0; p < s.example_size(); ++p) text += fmt::format(",p{}", p);
  text += "\n";
  for (size_t i = 0; i < s.count; ++i) {
    text += std::to_string(s.labels[i]);
    for (size_t p = 0; p < s.example_size(); ++p) text += fmt::format(",{}", s.pixels[i * s.example_size() + p]);
    text += "\n";
  }
  std::ofstream(dir + "/" + split + ".csv") << text;
}

/// The set as IDX files `prefix`-images-idx and `prefix`-labels-idx (".gz" and compressed
/// when `gzip`); [N, H, W] images when there is one channel, else [N, C, H, W].
inline void write_idx_set(const std::string& dir, const std::string& prefix, const QuadrantSet& s, bool gzip) {
  std::vector<uint32_t> dims = {static_cast<uint32_t>(s.count)};
  if (s.channels != 1) dims.push_back(static_cast<uint32_t>(s.channels));
  dims.push_back(static_cast<uint32_t>(s.side));
  dims.push_back(static_cast<uint32_t>(s.side));
  const Bytes labels(s.labels.begin(), s.labels.end());
  const std::string ext = gzip ? ".gz" : "";
  auto write = gzip ? write_gzip : write_bytes;
  write(dir + "/" + prefix + "-images-idx" + ext, idx_file(dims, s.pixels));
  write(dir + "/" + prefix + "-labels-idx" + ext, idx_file({static_cast<uint32_t>(s.count)}, labels));
}

}  // namespace dagger::testing
