// load_data on folders of IDX, .npy and CSV files written here: exact values, shapes, class
// counts and names, the validation size, and one test per kind of bad data.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "dagger/graph/error.h"
#include "dagger/runtime/data.h"
#include "data_files.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;
using Catch::Matchers::Contains;

namespace {

/// 40 training and 12 test images of 3x8x8 in four classes.
const QuadrantSet kTrain = quadrant_set(40, 3, 8, 4, 1);
const QuadrantSet kTest = quadrant_set(12, 3, 8, 4, 2);

SplitOptions options_for(const TempDir& dir) {
  SplitOptions o;
  o.dir = dir.path.string();
  return o;
}

std::vector<size_t> shape_of(const Tensor& t) { return {t.shape().begin(), t.shape().end()}; }

/// The pixels of every test image, in the test set's order of `test_ids`, matched back to kTest.
void check_test_pixels(const Dataset& test, float scale) {
  // The test split is shuffled: find each example by its label and pixels.
  size_t matched = 0;
  for (size_t i = 0; i < test.size(); ++i) {
    for (size_t k = 0; k < kTest.count; ++k) {
      bool same = kTest.labels[k] == test.labels[i];
      for (size_t p = 0; same && p < kTest.example_size(); ++p)
        same = test.images.data()[i * kTest.example_size() + p] ==
               static_cast<float>(kTest.pixels[k * kTest.example_size() + p]) / scale;
      if (same) {
        ++matched;
        break;
      }
    }
  }
  CHECK(matched == kTest.count);
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("load_data reads .npy folders of any shape and class count", "[data][sources]") {
  TempDir tmp("npy");
  write_npy_set(tmp.path.string(), "train", kTrain);
  write_npy_set(tmp.path.string(), "test", kTest);
  const Splits s = load_data(options_for(tmp));
  CHECK(s.train.size() + s.val.size() == 40);
  CHECK(s.val.size() == 8);  // the default 20% of 40
  CHECK(shape_of(s.test.images) == std::vector<size_t>{12, 3, 8, 8});
  CHECK(s.train.class_count() == 4);
  CHECK(s.test.class_labels() == std::vector<std::string>{"0", "1", "2", "3"});
  check_test_pixels(s.test, 255.0f);

  SplitOptions raw = options_for(tmp);
  raw.scale = false;
  check_test_pixels(load_data(raw).test, 1.0f);

  SECTION("float32 pixels stay as stored, whatever --raw-pixels says") {
    write_npy_set(tmp.path.string(), "train", kTrain, true);
    write_npy_set(tmp.path.string(), "test", kTest, true);
    check_test_pixels(load_data(raw).test, 255.0f);
  }
  SECTION("float64 pixels and int32 / uint8 labels") {
    std::vector<double> values;
    for (uint8_t p : kTest.pixels) values.push_back(p);
    write_bytes(tmp.file("test_x.npy"), npy_file("<f8", {12, 3, 8, 8}, raw_bytes(values)));
    write_bytes(tmp.file("test_y.npy"),
                npy_file("<i4", {12}, raw_bytes(std::vector<int32_t>(kTest.labels.begin(), kTest.labels.end()))));
    write_bytes(tmp.file("train_y.npy"), npy_file("|u1", {40}, Bytes(kTrain.labels.begin(), kTrain.labels.end())));
    std::vector<double> train_values(kTrain.pixels.begin(), kTrain.pixels.end());
    write_bytes(tmp.file("train_x.npy"), npy_file("<f8", {40, 3, 8, 8}, raw_bytes(train_values)));
    check_test_pixels(load_data(options_for(tmp)).test, 1.0f);
  }
  SECTION("[N, H, W] images get one channel") {
    write_bytes(tmp.file("train_x.npy"), npy_file("|u1", {40, 24, 8}, kTrain.pixels));
    write_bytes(tmp.file("test_x.npy"), npy_file("|u1", {12, 24, 8}, kTest.pixels));
    CHECK(load_data(options_for(tmp)).test.example_shape() == std::vector<size_t>{1, 24, 8});
  }
}

TEST_CASE("load_data reads CSV folders, with or without a header, shaped by --input-shape", "[data][sources]") {
  TempDir tmp("csv");
  write_csv_set(tmp.path.string(), "train", kTrain);
  write_csv_set(tmp.path.string(), "test", kTest);
  SplitOptions o = options_for(tmp);
  CHECK_THAT(error_of([&] { load_data(o); }),
             Contains("train.csv") && Contains("192 pixels per row") && Contains("--input-shape"));
  o.input_shape = {3, 8, 8};
  const Splits s = load_data(o);
  CHECK(shape_of(s.test.images) == std::vector<size_t>{12, 3, 8, 8});
  CHECK(s.train.class_count() == 4);
  check_test_pixels(s.test, 255.0f);
  o.input_shape = {3, 4, 4};
  CHECK_THAT(error_of([&] { load_data(o); }), Contains("192 pixels per row") && Contains("3,4,4"));
  // (2^62 + 1) * 192 wraps around to 192 in 64 bits: the product is checked, not taken modulo 2^64.
  o.input_shape = {(size_t{1} << 62) + 1, 192, 1};
  CHECK_THAT(error_of([&] { load_data(o); }), Contains("train.csv") && Contains("overflows"));
  o.input_shape = {3, 64};  // the C++ API takes any vector: two sizes are not read as three
  CHECK_THAT(error_of([&] { load_data(o); }), Contains("train.csv") && Contains("three sizes C,H,W, got 3,64"));

  SECTION("no header, a square row is 1 x s x s, fractional pixels stay as written") {
    write_text(tmp.file("train.csv"), "0,0.5,0.25,1,0\n1,0,0,0,0.75\n1,0,0,0,1\n0,1,1,1,1\n2,0,0,0,0\n");
    write_text(tmp.file("test.csv"), "1,0,0,0,0.5\r\n2,9,0,0,0\r\n");
    SplitOptions square = options_for(tmp);
    square.scale = true;
    const Splits t = load_data(square);
    REQUIRE(shape_of(t.test.images) == std::vector<size_t>{2, 1, 2, 2});
    CHECK(t.test.class_count() == 3);
    const Dataset& test = t.test;
    const size_t nine = test.labels[0] == 2 ? 0 : 1;
    CHECK(test.images(nine, 0, 0, 0) == 9.0f);  // one fractional value keeps all values unscaled
    CHECK(test.images(1 - nine, 0, 1, 1) == 0.5f);
  }
  SECTION("rows of different lengths, cells that are not numbers, labels that are not class ids") {
    write_text(tmp.file("train.csv"), "0,0,0,0,0\n1,0,0,0,0\n1,0,0,0,0\n0,0,0,0,0\n0,0,0,0,0\n");
    const auto error = [&](const char* test_csv) {
      write_text(tmp.file("test.csv"), test_csv);
      return error_of([&] { load_data(options_for(tmp)); });
    };
    CHECK_THAT(error("1,0,0,0,0\n2,0,0\n"), Contains("test.csv") && Contains("line 2 has 3 columns, expected 5"));
    CHECK_THAT(error("label,a,b,c,d\n1,0,x,0,0\n"),
               Contains("test.csv") && Contains("line 2 column 3") && Contains("'x'"));
    CHECK_THAT(error("1,0,0,0,0\n1,0,0,nan,0\n"), Contains("line 2 column 4: 'nan' is not a number"));
    CHECK_THAT(error("1,0,0,0,0\n-2,0,0,0,0\n"), Contains("test.csv") && Contains("line 2: label -2"));
    CHECK_THAT(error("1,0,0,0,0\n0.5,0,0,0,0\n"), Contains("test.csv") && Contains("line 2: label 0.5"));
    CHECK_THAT(error("label,a,b,c,d\n"), Contains("test.csv") && Contains("no examples"));
  }
}

TEST_CASE("load_data reads IDX of any shape, compressed or not, whatever the file name says", "[data][sources]") {
  TempDir tmp("idx");
  write_idx_set(tmp.path.string(), "train", kTrain, true);
  write_idx_set(tmp.path.string(), "test", kTest, false);
  Splits s = load_data(options_for(tmp));
  CHECK(shape_of(s.test.images) == std::vector<size_t>{12, 3, 8, 8});
  check_test_pixels(s.test, 255.0f);
  CHECK(s.train.class_names.empty());

  // A gzip stream under a plain name and a plain file under a .gz name.
  std::filesystem::rename(tmp.file("train-images-idx.gz"), tmp.file("train-images-idx"));
  std::filesystem::rename(tmp.file("test-images-idx"), tmp.file("test-images-idx.gz"));
  s = load_data(options_for(tmp));
  check_test_pixels(s.test, 255.0f);

  SECTION("one channel as [N, H, W]") {
    write_idx_set(tmp.path.string(), "t10k", quadrant_set(12, 1, 20, 3, 5), false);
    write_idx_set(tmp.path.string(), "train", quadrant_set(30, 1, 20, 3, 6), true);
    std::filesystem::remove(tmp.file("test-images-idx.gz"));
    std::filesystem::remove(tmp.file("test-labels-idx"));
    std::filesystem::remove(tmp.file("train-images-idx"));
    const Splits one = load_data(options_for(tmp));
    CHECK(one.test.example_shape() == std::vector<size_t>{1, 20, 20});
    CHECK(one.test.class_count() == 3);
  }
  SECTION("two files for one name") {
    write_idx_set(tmp.path.string(), "train", kTrain, false);  // train-labels-idx beside train-labels-idx.gz
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }),
               Contains("several files starting with 'train-labels'") && Contains("train-labels-idx.gz"));
  }
  SECTION("a missing labels file") {
    std::filesystem::remove(tmp.file("test-labels-idx"));
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }), Contains("t10k-labels* or test-labels*"));
  }
  SECTION("bytes after the declared labels or pixels") {
    Bytes labels(kTest.labels.begin(), kTest.labels.end());
    labels.push_back(0);
    write_bytes(tmp.file("test-labels-idx"), idx_file({12}, labels));
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }),
               Contains("test-labels-idx") && Contains("1 bytes after the 12 labels"));
    Bytes pixels(kTest.pixels.begin(), kTest.pixels.end());
    pixels.resize(pixels.size() + 5);
    write_bytes(tmp.file("test-labels-idx"), idx_file({12}, Bytes(kTest.labels.begin(), kTest.labels.end())));
    write_bytes(tmp.file("test-images-idx.gz"), idx_file({12, 3, 8, 8}, pixels));
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }),
               Contains("test-images-idx.gz") && Contains("5 bytes after the 2304 pixels") && Contains("12x3x8x8"));
  }
  SECTION("no images, but of a shape whose size overflows") {
    // (2^32 - 1)^3 values per image wraps around in 64 bits; with N = 0 there is no data to check it against.
    write_bytes(tmp.file("test-images-idx.gz"), idx_file({0, 0xffffffff, 0xffffffff, 0xffffffff}, {}));
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }), Contains("test-images-idx.gz") && Contains("overflows"));
    write_bytes(tmp.file("test-images-idx.gz"), idx_file({0, 1, 65536, 65536}, {}));
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }),
               Contains("test-images-idx.gz") && Contains("1x65536x65536") && Contains("at most 2^31"));
  }
  SECTION("IDX elements that are not 8-bit") {
    write_bytes(tmp.file("test-images-idx.gz"), idx_file({12, 3, 8, 8}, Bytes(12 * 192 * 4, 0), 0x0d));
    CHECK_THAT(error_of([&] { load_data(options_for(tmp)); }),
               Contains("test-images-idx.gz") && Contains("element type 0x0d") && Contains("8-bit"));
  }
}

TEST_CASE("load_data names the file and the problem for bad .npy data", "[data][sources]") {
  TempDir tmp("npy-errors");
  write_npy_set(tmp.path.string(), "train", kTrain);
  write_npy_set(tmp.path.string(), "test", kTest);
  const auto error = [&] { return error_of([&] { load_data(options_for(tmp)); }); };
  const std::string test_x = tmp.file("test_x.npy"), test_y = tmp.file("test_y.npy");

  SECTION("truncated elements") {
    Bytes pixels = kTest.pixels;
    pixels.resize(pixels.size() - 1);
    write_bytes(test_x, npy_file("|u1", {12, 3, 8, 8}, pixels));
    CHECK_THAT(error(),
               Contains(test_x) && Contains("truncated") && Contains("expected 2304 bytes") && Contains("got 2303"));
  }
  SECTION("a truncated header") {
    write_bytes(test_x, Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 200, 0, '{'});
    CHECK_THAT(error(), Contains(test_x) && Contains("truncated") && Contains("header"));
  }
  SECTION("not a .npy file") {
    write_bytes(test_x, Bytes(64, 'x'));
    CHECK_THAT(error(), Contains(test_x) && Contains("\\x93NUMPY"));
  }
  SECTION("a shape whose size overflows") {
    write_bytes(test_x, npy_file("|u1", {size_t{1} << 40, size_t{1} << 40, 1, 1}, Bytes(16, 0)));
    CHECK_THAT(error(), Contains(test_x) && Contains("overflows"));
  }
  SECTION("a shape bigger than the file") {
    write_bytes(test_x, npy_file("|u1", {size_t{1} << 30, 3, 8, 8}, Bytes(16, 0)));
    CHECK_THAT(error(), Contains(test_x) && Contains("truncated"));
  }
  SECTION("wrong dtypes") {
    write_bytes(test_x, npy_file("<i2", {12, 3, 8, 8}, Bytes(12 * 192 * 2, 0)));
    CHECK_THAT(error(), Contains(test_x) && Contains("dtype '<i2'") && Contains("<f4"));
    write_npy_set(tmp.path.string(), "test", kTest);
    write_bytes(test_y, npy_file("<f4", {12}, Bytes(48, 0)));
    CHECK_THAT(error(), Contains(test_y) && Contains("dtype '<f4'") && Contains("<i8"));
    write_bytes(test_y, npy_file(">i8", {12}, Bytes(96, 0)));
    CHECK_THAT(error(), Contains(test_y) && Contains("dtype '>i8'"));
  }
  SECTION("Fortran order") {
    write_bytes(test_x, npy_file("|u1", {12, 3, 8, 8}, kTest.pixels, true));
    CHECK_THAT(error(), Contains(test_x) && Contains("Fortran order"));
  }
  SECTION("images of the wrong rank") {
    write_bytes(test_x, npy_file("|u1", {12, 192}, kTest.pixels));
    CHECK_THAT(error(), Contains(test_x) && Contains("2 dimensions") && Contains("[N,C,H,W]"));
  }
  SECTION("a label out of range") {
    std::vector<int64_t> labels(12, 1);
    labels[5] = -1;
    write_bytes(test_y, npy_file("<i8", {12}, raw_bytes(labels)));
    CHECK_THAT(error(), Contains(test_y) && Contains("label -1 at index 5"));
    labels[5] = int64_t{1} << 40;
    write_bytes(test_y, npy_file("<i8", {12}, raw_bytes(labels)));
    CHECK_THAT(error(), Contains(test_y) && Contains("label 1099511627776 at index 5") && Contains("0..4095"));
  }
  SECTION("image and label counts differ") {
    write_bytes(test_y, npy_file("<i8", {11}, raw_bytes(std::vector<int64_t>(11, 0))));
    CHECK_THAT(error(), Contains(test_x) && Contains("12 images") && Contains(test_y) && Contains("11 labels"));
  }
  SECTION("train and test shapes differ") {
    write_bytes(test_x, npy_file("|u1", {12, 3, 16, 4}, kTest.pixels));
    CHECK_THAT(error(), Contains("3x8x8") && Contains("3x16x4") && Contains("shapes must match"));
  }
  SECTION("a missing member") {
    std::filesystem::remove(test_y);
    CHECK_THAT(error(), Contains("has no test_y.npy"));
  }
}

TEST_CASE("load_data takes class names and counts from a classes file", "[data][sources]") {
  TempDir tmp("classes");
  write_npy_set(tmp.path.string(), "train", kTrain);
  write_npy_set(tmp.path.string(), "test", kTest);
  SplitOptions o = options_for(tmp);
  o.classes_file = tmp.file("classes.txt");
  write_text(o.classes_file, "up left\nup right\ndown left\ndown right\nnowhere\n");
  Splits s = load_data(o);
  CHECK(s.test.class_count() == 5);  // the file names more classes than the labels use
  CHECK(s.val.class_labels() == std::vector<std::string>{"up left", "up right", "down left", "down right", "nowhere"});

  write_text(o.classes_file, "a\nb\nc\n");
  CHECK_THAT(error_of([&] { load_data(o); }),
             Contains("label 3") && Contains("names only 3 classes") && Contains("classes.txt"));
  write_text(o.classes_file, "a\n\nc\nd\n");
  CHECK_THAT(error_of([&] { load_data(o); }), Contains("line 2 is empty"));
  o.classes_file = tmp.file("absent.txt");
  CHECK_THAT(error_of([&] { load_data(o); }), Contains("absent.txt"));
}

TEST_CASE("validation_size: an explicit size, a fraction, or the default per data", "[data][sources]") {
  SplitOptions o;
  CHECK(validation_size(o, 60000, true) == 12000);
  CHECK(validation_size(o, 1000, false) == 200);
  CHECK(validation_size(o, 3, false) == 1);
  o.val_fraction = 0.1;
  CHECK(validation_size(o, 60000, true) == 6000);
  o.val_size = 17;
  CHECK(validation_size(o, 1000, false) == 17);

  TempDir tmp("val");
  write_npy_set(tmp.path.string(), "train", kTrain);
  write_npy_set(tmp.path.string(), "test", kTest);
  SplitOptions sized = options_for(tmp);
  sized.val_size = 12;
  CHECK(load_data(sized).val.size() == 12);
  sized.val_size = 40;
  CHECK_THAT(error_of([&] { load_data(sized); }), Contains("validation set of 40"));
}
