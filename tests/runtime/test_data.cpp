// Fashion-MNIST loading on small IDX files written here (exact pixels and labels, every kind
// of corrupt file), the seeded stratified splits and batching, and the real 48,000/12,000/10,000
// split of the installed data set (Debian's dataset-fashion-mnist, or $DAGGER_DATA), which
// fails, naming the package, when it is missing.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <xtensor/xmath.hpp>

#include "dagger/graph/error.h"
#include "support.h"
#include "dagger/runtime/data.h"

using namespace dagger;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

using testing::error_of;
using testing::TempDir;

namespace {


using Bytes = std::vector<uint8_t>;

void append_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes idx_images(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels, uint32_t magic = 0x803) {
  Bytes out;
  for (uint32_t v : {magic, count, rows, cols}) append_be32(out, v);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

Bytes idx_labels(const Bytes& labels, uint32_t magic = 0x801) {
  Bytes out;
  append_be32(out, magic);
  append_be32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

void write_plain(const std::string& path, const Bytes& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// A recognizable pixel for image i at (r, c), covering the whole 0..255 range.
uint8_t pixel(size_t i, size_t r, size_t c) { return static_cast<uint8_t>((i * 101 + r * 28 + c) % 256); }

Bytes pixels_for(size_t count) {
  Bytes out;
  for (size_t i = 0; i < count; ++i)
    for (size_t r = 0; r < 28; ++r)
      for (size_t c = 0; c < 28; ++c) out.push_back(pixel(i, r, c));
  return out;
}


std::map<int, size_t> class_counts(const std::vector<int>& labels) {
  std::map<int, size_t> counts;
  for (int l : labels) ++counts[l];
  return counts;
}

/// Labels 0..classes-1 with `per_class[c]` of class c, interleaved.
std::vector<int> labels_with(const std::vector<size_t>& per_class) {
  std::vector<int> labels;
  std::vector<size_t> left = per_class;
  for (bool any = true; any;) {
    any = false;
    for (size_t c = 0; c < left.size(); ++c) {
      if (left[c] == 0) continue;
      labels.push_back(static_cast<int>(c));
      --left[c];
      any = true;
    }
  }
  return labels;
}

/// A data set whose image i is filled with the value i, for tracking examples through copies.
Dataset numbered(const std::vector<int>& labels) {
  Dataset d;
  d.labels = labels;
  d.images = Tensor::from_shape({labels.size(), 1, 28, 28});
  for (size_t i = 0; i < labels.size(); ++i) std::fill_n(d.images.data() + i * 784, 784, static_cast<float>(i));
  return d;
}

float id_of(const Dataset& d, size_t i) { return d.images(i, 0, 0, 0); }

/// Same shape and values (kept out of CHECK, whose decomposition xtensor's operators confuse).
bool same_values(const Tensor& a, const Tensor& b) { return a == b; }

}  // namespace

TEST_CASE("load_idx reads gzip and plain IDX files exactly", "[data]") {
  TempDir tmp;
  const Bytes labels = {3, 0, 9};
  write_gz(tmp.file("img.gz"), idx_images(3, 28, 28, pixels_for(3)));
  write_gz(tmp.file("lab.gz"), idx_labels(labels));

  const Dataset scaled = load_idx(tmp.file("img.gz"), tmp.file("lab.gz"));
  REQUIRE(scaled.size() == 3);
  REQUIRE(std::vector<size_t>(scaled.images.shape().begin(), scaled.images.shape().end()) ==
          std::vector<size_t>{3, 1, 28, 28});
  CHECK(scaled.labels == std::vector<int>{3, 0, 9});
  size_t mismatches = 0;
  for (size_t i = 0; i < 3; ++i)
    for (size_t r = 0; r < 28; ++r)
      for (size_t c = 0; c < 28; ++c) mismatches += scaled.images(i, 0, r, c) != static_cast<float>(pixel(i, r, c)) / 255.0f;
  CHECK(mismatches == 0);
  CHECK(scaled.images(0, 0, 9, 3) == 255.0f / 255.0f);  // (9*28+3) % 256 == 255

  const Dataset raw = load_idx(tmp.file("img.gz"), tmp.file("lab.gz"), false);
  CHECK(raw.images(2, 0, 27, 27) == static_cast<float>(pixel(2, 27, 27)));
  CHECK(raw.images(1, 0, 0, 0) == 101.0f);

  write_plain(tmp.file("img.raw"), idx_images(3, 28, 28, pixels_for(3)));
  write_plain(tmp.file("lab.raw"), idx_labels(labels));
  const Dataset plain = load_idx(tmp.file("img.raw"), tmp.file("lab.raw"));
  CHECK(plain.labels == scaled.labels);
  CHECK(same_values(plain.images, scaled.images));
}

TEST_CASE("load_idx names the file and the problem for broken inputs", "[data]") {
  TempDir tmp;
  const std::string img = tmp.file("img.gz"), lab = tmp.file("lab.gz");
  write_gz(img, idx_images(2, 28, 28, pixels_for(2)));
  write_gz(lab, idx_labels({1, 2}));
  REQUIRE(load_idx(img, lab).size() == 2);

  SECTION("missing file") {
    const std::string msg = error_of([&] { load_idx(tmp.file("nope.gz"), lab); });
    CHECK_THAT(msg, Contains(tmp.file("nope.gz")) && Contains("no such file"));
  }
  SECTION("bad magic number") {
    write_gz(img, idx_images(2, 28, 28, pixels_for(2), 0x801));
    const std::string msg = error_of([&] { load_idx(img, lab); });
    CHECK_THAT(msg, Contains("magic") && Contains("0x00000801") && Contains("0x00000803") && Contains(img));
    write_gz(lab, idx_labels({1, 2}, 0x803));
    CHECK_THAT(error_of([&] { load_idx(img, lab); }), Contains("magic") && Contains(lab));
  }
  SECTION("truncated pixels") {
    Bytes short_pixels = pixels_for(2);
    short_pixels.resize(short_pixels.size() - 10);
    write_gz(img, idx_images(2, 28, 28, short_pixels));
    const std::string msg = error_of([&] { load_idx(img, lab); });
    CHECK_THAT(msg, Contains("truncated") && Contains("expected 1568 bytes") && Contains("got 1558") && Contains(img));
  }
  SECTION("truncated labels and headers") {
    Bytes bytes = idx_labels({1, 2});
    bytes.pop_back();
    write_gz(lab, bytes);
    CHECK_THAT(error_of([&] { load_idx(img, lab); }), Contains("truncated") && Contains(lab));
    write_gz(lab, Bytes{0, 0, 8});
    CHECK_THAT(error_of([&] { load_idx(img, lab); }), Contains("truncated") && Contains("header"));
  }
  SECTION("cut-off gzip stream") {
    write_gz(img, idx_images(2, 28, 28, pixels_for(2)));
    std::ifstream in(img, std::ios::binary);
    std::string gz((std::istreambuf_iterator<char>(in)), {});
    in.close();
    std::ofstream(img, std::ios::binary).write(gz.data(), static_cast<std::streamsize>(gz.size() / 2));
    CHECK_THAT(error_of([&] { load_idx(img, lab); }), Contains(img));
  }
  SECTION("image and label counts differ") {
    write_gz(lab, idx_labels({1, 2, 3}));
    const std::string msg = error_of([&] { load_idx(img, lab); });
    CHECK_THAT(msg, Contains("2 images") && Contains("3 labels"));
  }
  SECTION("any class count and image size are data, not errors") {
    write_gz(lab, idx_labels({1, 200}));
    write_gz(img, idx_images(2, 27, 5, Bytes(2 * 27 * 5, 7)));
    const Dataset d = load_idx(img, lab, false);
    CHECK(d.labels == std::vector<int>{1, 200});
    CHECK(d.class_count() == 201);
    CHECK(d.example_shape() == std::vector<size_t>{1, 27, 5});
    CHECK(d.images(1, 0, 26, 4) == 7.0f);
  }
  SECTION("a header whose sizes overflow") {
    write_gz(img, idx_images(0xffffffff, 0xffffffff, 0xffffffff, Bytes(16, 0)));
    CHECK_THAT(error_of([&] { load_idx(img, lab); }), Contains("overflows") && Contains(img));
  }
}

TEST_CASE("load_fashion_mnist reports a missing data folder helpfully", "[data]") {
  TempDir tmp;
  SplitOptions o;
  o.dir = (tmp.path / "absent").string();
  const std::string msg = error_of([&] { load_data(o); });
  CHECK_THAT(msg, Contains("absent") && Contains("-labels-idx1-ubyte.gz") &&
                      Contains("/usr/share/datasets/fashion-mnist") && Contains("train_x.npy") &&
                      Contains("train.csv") && Contains("DAGGER_DATA"));
}

TEST_CASE("default_data_dir follows DAGGER_DATA", "[data]") {
  const char* before = std::getenv("DAGGER_DATA");
  const std::string saved = before ? before : "";
  ::setenv("DAGGER_DATA", "/somewhere/else", 1);
  CHECK(default_data_dir() == "/somewhere/else");
  ::unsetenv("DAGGER_DATA");
  CHECK(default_data_dir() == "/usr/share/datasets/fashion-mnist");
  if (before) ::setenv("DAGGER_DATA", saved.c_str(), 1);
}

TEST_CASE("class names follow the Fashion-MNIST ids", "[data]") {
  CHECK(std::string(fashion_mnist_class_names()[0]) == "T-shirt/top");
  CHECK(std::string(fashion_mnist_class_names()[5]) == "Sandal");
  CHECK(std::string(fashion_mnist_class_names()[9]) == "Ankle boot");
}

TEST_CASE("slice and subset copy the chosen examples", "[data]") {
  const Dataset d = numbered({4, 5, 6, 7, 8});
  const Dataset s = d.slice(1, 4);
  REQUIRE(s.size() == 3);
  CHECK(s.labels == std::vector<int>{5, 6, 7});
  CHECK(id_of(s, 0) == 1.0f);
  CHECK(s.images(2, 0, 27, 27) == 3.0f);
  CHECK(d.slice(2, 2).size() == 0);

  const Dataset u = d.subset({4, 0, 4});
  CHECK(u.labels == std::vector<int>{8, 4, 8});
  CHECK(id_of(u, 0) == 4.0f);
  CHECK(id_of(u, 1) == 0.0f);
  CHECK(u.images.shape()[0] == 3);

  CHECK_THAT(error_of([&] { d.slice(3, 6); }), Contains("slice"));
  CHECK_THAT(error_of([&] { d.subset({5}); }), Contains("index 5"));
}

TEST_CASE("stratified_split keeps class proportions and is seeded", "[data]") {
  const std::vector<int> labels = labels_with({100, 50, 30});
  const StratifiedSplit s = stratified_split(labels, 36, 42);
  REQUIRE(s.val.size() == 36);
  REQUIRE(s.train.size() == 144);

  std::vector<int> val_labels, train_labels;
  for (size_t i : s.val) val_labels.push_back(labels[i]);
  for (size_t i : s.train) train_labels.push_back(labels[i]);
  CHECK(class_counts(val_labels) == std::map<int, size_t>{{0, 20}, {1, 10}, {2, 6}});
  CHECK(class_counts(train_labels) == std::map<int, size_t>{{0, 80}, {1, 40}, {2, 24}});

  std::set<size_t> all(s.train.begin(), s.train.end());
  all.insert(s.val.begin(), s.val.end());
  CHECK(all.size() == labels.size());  // disjoint, and every index used
  CHECK(std::is_sorted(s.val.begin(), s.val.end()));

  CHECK(stratified_split(labels, 36, 42).val == s.val);
  CHECK(stratified_split(labels, 36, 43).val != s.val);
  CHECK_THAT(error_of([&] { stratified_split(labels, 180, 42); }), Contains("180"));
}

TEST_CASE("stratified_sample splits remainders by largest share", "[data]") {
  const std::vector<int> labels = labels_with({10, 10, 10});
  std::vector<int> picked;
  for (size_t i : stratified_sample(labels, 10, 5)) picked.push_back(labels[i]);
  CHECK(class_counts(picked) == std::map<int, size_t>{{0, 4}, {1, 3}, {2, 3}});
  CHECK(stratified_sample(labels, 10, 5) == stratified_sample(labels, 10, 5));

  // Shares 1.5, 1.2 and 0.3: the one pick left after rounding down goes to the 0.5 remainder.
  const std::vector<int> uneven = labels_with({5, 4, 1});
  std::vector<int> uneven_picked;
  for (size_t i : stratified_sample(uneven, 3, 5)) uneven_picked.push_back(uneven[i]);
  CHECK(class_counts(uneven_picked) == std::map<int, size_t>{{0, 2}, {1, 1}});
  CHECK(stratified_sample(labels, 99, 5).size() == 30);
}

TEST_CASE("shuffled_order is a seeded permutation", "[data]") {
  const std::vector<size_t> order = shuffled_order(1000, 42, 1);
  std::vector<size_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) REQUIRE(sorted[i] == i);
  CHECK(shuffled_order(1000, 42, 1) == order);
  CHECK(shuffled_order(1000, 42, 2) != order);
  CHECK(shuffled_order(1000, 7, 1) != order);
  // Pinned so the order never silently changes between builds, platforms or refactors.
  CHECK(shuffled_order(8, 42, 1) == std::vector<size_t>{5, 6, 3, 2, 1, 4, 0, 7});
  CHECK(shuffled_order(0, 42, 1).empty());
}

TEST_CASE("gather_batch copies examples in order and reuses its outputs", "[data]") {
  const Dataset d = numbered({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  const std::vector<size_t> order = {9, 2, 5, 0, 7};
  Tensor images, labels;
  gather_batch(d, order, 1, 3, images, labels);
  REQUIRE(images.shape()[0] == 3);
  REQUIRE(images.dimension() == 4);
  CHECK(same_values(labels, Tensor{2.0f, 5.0f, 0.0f}));
  CHECK(id_of(d, 2) == images(0, 0, 5, 5));
  CHECK(images(1, 0, 27, 0) == 5.0f);
  CHECK(images(2, 0, 0, 27) == 0.0f);

  const float* storage = images.data();
  gather_batch(d, order, 2, 3, images, labels);
  CHECK(images.data() == storage);
  CHECK(same_values(labels, Tensor{5.0f, 0.0f, 7.0f}));
  gather_batch(d, order, 4, 1, images, labels);
  CHECK(images.shape()[0] == 1);
  CHECK(labels(0) == 7.0f);
  CHECK_THAT(error_of([&] { gather_batch(d, order, 4, 2, images, labels); }), Contains("batch"));
}

TEST_CASE("split_fashion_mnist stratifies, limits and shuffles every split", "[data]") {
  const Dataset train = numbered(labels_with(std::vector<size_t>(10, 50)));  // 500 examples
  const Dataset test = numbered(labels_with(std::vector<size_t>(10, 20)));   // 200 examples
  SplitOptions o;
  o.val_size = 100;
  o.train_limit = 200;
  o.test_limit = 50;
  const Splits s = split_fashion_mnist(train, test, o);
  REQUIRE(s.train.size() == 200);
  REQUIRE(s.val.size() == 100);
  REQUIRE(s.test.size() == 50);
  for (const auto& [label, n] : class_counts(s.train.labels)) CHECK(n == 20);
  for (const auto& [label, n] : class_counts(s.val.labels)) CHECK(n == 10);
  CHECK(class_counts(s.test.labels).size() == 10);

  // Each example keeps its label, train and val never share one, and order is shuffled.
  std::set<float> train_ids, val_ids;
  for (size_t i = 0; i < s.train.size(); ++i) {
    train_ids.insert(id_of(s.train, i));
    CHECK(train.labels[static_cast<size_t>(id_of(s.train, i))] == s.train.labels[i]);
  }
  for (size_t i = 0; i < s.val.size(); ++i) val_ids.insert(id_of(s.val, i));
  CHECK(train_ids.size() == 200);
  for (float id : val_ids) CHECK(train_ids.count(id) == 0);
  std::vector<float> val_order;
  for (size_t i = 0; i < s.val.size(); ++i) val_order.push_back(id_of(s.val, i));
  CHECK_FALSE(std::is_sorted(val_order.begin(), val_order.end()));

  // A tighter training limit leaves the validation set alone.
  o.train_limit = 100;
  CHECK(same_values(split_fashion_mnist(train, test, o).val.images, s.val.images));
}

// ---- The real data set (required) -------------------------------------------------------

namespace {

const fs::path kRealData = default_data_dir();

/// FNV-1a over an example's pixel bytes: equal images, equal hashes.
uint64_t image_hash(const Dataset& d, size_t i) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(d.images.data() + i * 784);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t k = 0; k < 784 * sizeof(float); ++k) h = (h ^ bytes[k]) * 0x100000001b3ULL;
  return h;
}

std::vector<uint64_t> sorted_hashes(std::initializer_list<const Dataset*> sets) {
  std::vector<uint64_t> out;
  for (const Dataset* d : sets)
    for (size_t i = 0; i < d->size(); ++i) out.push_back(image_hash(*d, i));
  std::sort(out.begin(), out.end());
  return out;
}

void check_per_class(const Dataset& d, size_t expected) {
  const auto counts = class_counts(d.labels);
  CHECK(counts.size() == 10);
  for (const auto& [label, n] : counts) CHECK(n == expected);
}

}  // namespace

TEST_CASE("the installed Fashion-MNIST splits 48,000 / 12,000 / 10,000 by class", "[data][real][slow]") {
  testing::require_fashion_mnist(kRealData);
  SplitOptions o;
  o.dir = kRealData.string();
  const Splits s = load_fashion_mnist(o);
  REQUIRE(s.train.size() == 48000);
  REQUIRE(s.val.size() == 12000);
  REQUIRE(s.test.size() == 10000);
  check_per_class(s.train, 4800);
  check_per_class(s.val, 1200);
  check_per_class(s.test, 1000);
  CHECK(s.train.images.shape()[1] == 1);
  CHECK(s.train.images(0, 0, 0, 0) >= 0.0f);
  const float brightest = xt::amax(s.train.images)();
  CHECK(brightest <= 1.0f);

  // Train and val together are exactly the 60,000 training images, each used once.
  const Dataset full = load_idx((kRealData / "train-images-idx3-ubyte.gz").string(),
                                (kRealData / "train-labels-idx1-ubyte.gz").string());
  CHECK(sorted_hashes({&s.train, &s.val}) == sorted_hashes({&full}));
  const StratifiedSplit indices = stratified_split(full.labels, 12000, o.seed);
  const Dataset expected_val = full.subset(indices.val);
  CHECK(sorted_hashes({&s.val}) == sorted_hashes({&expected_val}));

  // The same seed gives the same split, another seed another.
  CHECK(stratified_split(full.labels, 12000, o.seed).val == indices.val);
  const StratifiedSplit other = stratified_split(full.labels, 12000, o.seed + 1);
  CHECK(other.val != indices.val);

  // Limits take class-balanced, seeded slices.
  SplitOptions limited = o;
  limited.train_limit = 6000;
  limited.val_limit = 1000;
  limited.test_limit = 2000;
  const Dataset test = s.test;
  const Splits small = split_fashion_mnist(full, test, limited);
  REQUIRE(small.train.size() == 6000);
  check_per_class(small.train, 600);
  check_per_class(small.val, 100);
  check_per_class(small.test, 200);
  CHECK(same_values(split_fashion_mnist(full, test, limited).train.images, small.train.images));
  limited.seed = 7;
  CHECK_FALSE(same_values(split_fashion_mnist(full, test, limited).train.images, small.train.images));
}
