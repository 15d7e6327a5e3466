// Checkpoint folders: bitwise round trips, atomic replacement, and a clear error for each
// way a folder can be damaged.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "dagger/graph/error.h"
#include "dagger/runtime/checkpoint.h"
#include "support.h"

using namespace dagger;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

using testing::error_of;
using testing::TempDir;

namespace {


/// 0.5, 1.5, 2.5, ... shifted by `offset`, in the given shape.
Tensor counting(std::vector<size_t> shape, float offset = 0) {
  Tensor t = Tensor::from_shape(shape);
  for (size_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(i) + 0.5f + offset;
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  // An empty tensor's data() may be null, which memcmp must not be given even for 0 bytes.
  return std::equal(a.shape().begin(), a.shape().end(), b.shape().begin(), b.shape().end()) &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}


nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

void write_json(const fs::path& p, const nlohmann::json& j) { std::ofstream(p) << j.dump(2); }

/// Rewrites the manifest as dagger wrote it before checksums: version 1, sizes only.
void make_version_1(const fs::path& dir) {
  nlohmann::json m = read_json(dir / "manifest.json");
  m["version"] = 1;
  for (auto& e : m["tensors"]) e.erase("xxh3");
  write_json(dir / "manifest.json", m);
}

/// Inverts the bits of the byte at `offset` of a file.
void flip_byte(const fs::path& path, std::streamoff offset) {
  std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
  file.seekg(offset);
  const char c = static_cast<char>(file.get());
  file.seekp(offset);
  file.put(static_cast<char>(~c));
}

std::map<std::string, Tensor> sample_tensors() {
  Tensor odd = Tensor::from_shape({6});
  // Values whose bits a text or lossy format would not keep.
  odd.data()[0] = -0.0f;
  odd.data()[1] = std::numeric_limits<float>::denorm_min();
  odd.data()[2] = std::numeric_limits<float>::infinity();
  odd.data()[3] = std::nanf("0x2a");
  odd.data()[4] = 1.0f / 3.0f;
  odd.data()[5] = -std::numeric_limits<float>::max();
  Tensor scalar = Tensor::from_shape({});
  scalar() = 17.0f;
  return {{"dense1.w", counting({3, 4})},
          {"adam.m.dense1.w", counting({3, 4}, -100)},
          {"conv/b", counting({2, 1, 3, 3})},
          {"odd values", odd},
          {"step", scalar},
          {"empty", Tensor::from_shape({0, 5})}};
}

}  // namespace

TEST_CASE("a checkpoint round-trips tensors bitwise with its metadata", "[checkpoint]") {
  TempDir tmp;
  const std::string dir = (tmp.path / "ck").string();
  const auto tensors = sample_tensors();
  const nlohmann::json meta = {{"model", "mlp"}, {"epoch", 3}, {"optimizer", "adam"}, {"seed", 42}};
  save_checkpoint(dir, tensors, meta);

  const Checkpoint ck = load_checkpoint(dir, {.allow_nonfinite = true});  // "odd values" holds NaN and infinity
  CHECK(ck.meta == meta);
  REQUIRE(ck.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(ck.tensors.count(name) == 1);
    CHECK(same_bits(ck.tensors.at(name), t));
  }
  CHECK(ck.tensors.at("step").dimension() == 0);

  const nlohmann::json manifest = read_json(tmp.path / "ck" / "manifest.json");
  bool found = false;
  for (const auto& e : manifest.at("tensors")) {
    CHECK(e.at("bytes") == fs::file_size(tmp.path / "ck" / e.at("file").get<std::string>()));
    CHECK(e.at("xxh3").get<std::string>().size() == 16);
    if (e.at("name") == "conv/b") {
      found = true;
      CHECK(e.at("file") == "conv__b.npy");
      CHECK(e.at("shape") == nlohmann::json{2, 1, 3, 3});
    }
  }
  CHECK(found);
  CHECK(manifest.at("version") == 2);
  CHECK_FALSE(fs::exists(tmp.path / "ck.tmp"));
}

TEST_CASE("npy files follow numpy's layout", "[checkpoint]") {
  TempDir tmp;
  save_checkpoint((tmp.path / "ck").string(), {{"w", counting({2, 3})}}, {});
  std::ifstream in(tmp.path / "ck" / "w.npy", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  REQUIRE(bytes.size() == 128 + 6 * 4);  // the header pads the data to a 64-byte boundary
  CHECK(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
  CHECK(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") == 10);
  CHECK(bytes[127] == '\n');
  float first = 0;
  std::memcpy(&first, bytes.data() + 128, 4);
  CHECK(first == 0.5f);
}

TEST_CASE("names whose file names would collide get distinct files", "[checkpoint]") {
  TempDir tmp;
  const std::string dir = (tmp.path / "ck").string();
  save_checkpoint(dir, {{"a/b", counting({2})}, {"a__b", counting({3})}, {"", counting({1})}}, {});
  const Checkpoint ck = load_checkpoint(dir);
  CHECK(ck.tensors.at("a/b").size() == 2);
  CHECK(ck.tensors.at("a__b").size() == 3);
  CHECK(ck.tensors.at("").size() == 1);
}

TEST_CASE("saving again replaces the whole checkpoint", "[checkpoint]") {
  TempDir tmp;
  const std::string dir = (tmp.path / "ck").string();
  save_checkpoint(dir, {{"old", counting({2})}, {"w", counting({2})}}, {{"epoch", 1}});
  fs::create_directories(tmp.path / "ck.tmp");  // debris of an interrupted save
  std::ofstream(tmp.path / "ck.tmp" / "junk.npy") << "junk";
  save_checkpoint(dir + "/", {{"w", counting({2}, 10)}}, {{"epoch", 2}});

  const Checkpoint ck = load_checkpoint(dir);
  CHECK(ck.meta.at("epoch") == 2);
  CHECK(ck.tensors.size() == 1);
  CHECK(ck.tensors.at("w")(0) == 10.5f);
  CHECK_FALSE(fs::exists(tmp.path / "ck" / "old.npy"));
  CHECK_FALSE(fs::exists(tmp.path / "ck.tmp"));
  CHECK_FALSE(fs::exists(tmp.path / "ck.old"));
}

TEST_CASE("damaged checkpoints give errors naming the problem", "[checkpoint]") {
  TempDir tmp;
  const fs::path dir = tmp.path / "ck";
  save_checkpoint(dir.string(), {{"dense1.w", counting({3, 4})}, {"dense1.b", counting({4})}}, {{"epoch", 1}});
  REQUIRE(load_checkpoint(dir.string()).tensors.size() == 2);
  const fs::path w = dir / "dense1.w.npy";
  const auto load = [&] { load_checkpoint(dir.string()); };

  SECTION("missing folder") {
    CHECK_THAT(error_of([&] { load_checkpoint((tmp.path / "nope").string()); }),
               Contains("no checkpoint folder") && Contains("nope"));
  }
  SECTION("missing manifest") {
    fs::remove(dir / "manifest.json");
    CHECK_THAT(error_of(load), Contains("manifest.json"));
  }
  SECTION("garbled manifest") {
    std::ofstream(dir / "manifest.json") << "{\"format\": \"dagger-checkpoint\", \"tensors\": [";
    CHECK_THAT(error_of(load), Contains("not valid JSON") && Contains("manifest.json"));
  }
  SECTION("manifest without its fields") {
    nlohmann::json m = read_json(dir / "manifest.json");
    m["tensors"][0].erase("shape");
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("malformed") && Contains("shape"));
  }
  SECTION("listed file missing") {
    fs::remove(w);
    CHECK_THAT(error_of(load), Contains("missing") && Contains("dense1.w.npy"));
  }
  SECTION("truncated file") {
    fs::resize_file(w, fs::file_size(w) - 8);
    CHECK_THAT(error_of(load), Contains("truncated") && Contains("manifest says 176 bytes") && Contains("dense1.w.npy"));
  }
  SECTION("truncated file whose manifest entry was updated to match") {
    make_version_1(dir);  // no checksum: the .npy reader itself finds the damage
    fs::resize_file(w, fs::file_size(w) - 8);
    nlohmann::json m = read_json(dir / "manifest.json");
    for (auto& e : m["tensors"])
      if (e["file"] == "dense1.w.npy") e["bytes"] = fs::file_size(w);
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("truncated") && Contains("expected 176 bytes") && Contains("dense1.w.npy"));
  }
  SECTION("file cut inside its header") {
    make_version_1(dir);  // no checksum: the .npy reader itself finds the damage
    fs::resize_file(w, 20);
    nlohmann::json m = read_json(dir / "manifest.json");
    for (auto& e : m["tensors"])
      if (e["file"] == "dense1.w.npy") e["bytes"] = 20;
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("dense1.w.npy") && Contains("header"));
  }
  SECTION("file that is not npy") {
    make_version_1(dir);  // no checksum: the .npy reader itself finds the damage
    const auto size = fs::file_size(w);
    std::ofstream(w, std::ios::binary) << std::string(size, 'x');
    CHECK_THAT(error_of(load), Contains("not a valid .npy") && Contains("dense1.w.npy"));
  }
  SECTION("a header shape larger than the file, or than 64 bits can count") {
    // The header's shape is replaced in place, its padding shortened to keep the file's size.
    make_version_1(dir);  // no checksum: the .npy reader itself finds the damage
    std::ifstream in(w, std::ios::binary);
    const std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto with_shape = [&](const std::string& shape) {
      std::string bytes = saved;
      const size_t at = bytes.find("(3, 4)"), pad = bytes.find(" \n");
      REQUIRE((at != std::string::npos && pad != std::string::npos));
      bytes.erase(pad - (shape.size() - 6), shape.size() - 6);
      bytes.replace(at, 6, shape);
      std::ofstream(w, std::ios::binary) << bytes;
      REQUIRE(fs::file_size(w) == 176);
      return error_of(load);
    };
    CHECK_THAT(with_shape("(1000000000000,)"), Contains("dense1.w.npy") && Contains("[1000000000000]"));
    CHECK_THAT(with_shape("(99999999999999999999,)"), Contains("dense1.w.npy") && Contains("bad dimension"));
    CHECK_THAT(with_shape("(4294967296, 4294967296)"), Contains("dense1.w.npy") && Contains("overflows"));
  }
  SECTION("shape differs from the manifest") {
    nlohmann::json m = read_json(dir / "manifest.json");
    for (auto& e : m["tensors"])
      if (e["name"] == "dense1.w") e["shape"] = {4, 3};
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("[3, 4]") && Contains("[4, 3]") && Contains("dense1.w.npy"));
  }
  SECTION("a flipped byte in a tensor's data") {
    flip_byte(w, 128 + 5);
    CHECK_THAT(error_of(load), Contains("checkpoint '" + dir.string() +
                                        "': file 'dense1.w.npy': checksum mismatch (corrupt or edited)"));
  }
  SECTION("a flipped byte in a header") {
    flip_byte(w, 20);
    CHECK_THAT(error_of(load), Contains("file 'dense1.w.npy': checksum mismatch"));
  }
  SECTION("an edited checksum") {
    nlohmann::json m = read_json(dir / "manifest.json");
    m["tensors"][1]["xxh3"] = "0123456789abcdef";
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("checksum mismatch") && Contains("0123456789abcdef"));
  }
  SECTION("a manifest of a later version") {
    nlohmann::json m = read_json(dir / "manifest.json");
    m["version"] = 3;
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("manifest version 3; this build reads versions 1 to 2"));
  }
  SECTION("file name that leaves the folder") {
    nlohmann::json m = read_json(dir / "manifest.json");
    m["tensors"][0]["file"] = "../escape.npy";
    write_json(dir / "manifest.json", m);
    CHECK_THAT(error_of(load), Contains("not a plain file name"));
  }
}

TEST_CASE("check_compatible lists every mismatch at once", "[checkpoint]") {
  Checkpoint ck;
  ck.dir = "runs/last";
  ck.tensors = {{"dense1.w", counting({3, 4})}, {"dense1.b", counting({4})}, {"extra", counting({1})}};

  CHECK_NOTHROW(check_compatible(ck, {{"dense1.w", {3, 4}}, {"dense1.b", {4}}, {"extra", {1}}}));
  const std::string msg = error_of([&] {
    check_compatible(ck, {{"dense1.w", {4, 3}}, {"dense1.b", {4}}, {"dense2.w", {4, 10}}});
  });
  CHECK_THAT(msg, Contains("runs/last"));
  CHECK_THAT(msg, Contains("missing tensors: dense2.w"));
  CHECK_THAT(msg, Contains("unexpected tensors: extra"));
  CHECK_THAT(msg, Contains("dense1.w is [3, 4] in the checkpoint but [4, 3] in the model"));
  CHECK_THAT(msg, !Contains("dense1.b"));

  // Each kind of mismatch is enough on its own.
  CHECK_THROWS_AS(check_compatible(ck, {{"dense1.w", {3, 4}}, {"dense1.b", {5}}, {"extra", {1}}}), Error);
  CHECK_THROWS_AS(check_compatible(ck, {{"dense1.w", {3, 4}}, {"dense1.b", {4}}}), Error);
}

TEST_CASE("a checkpoint of version 1, without checksums, loads with its sizes checked", "[checkpoint]") {
  TempDir tmp;
  const fs::path dir = tmp.path / "ck";
  save_checkpoint(dir.string(), {{"w", counting({3, 4})}}, {{"epoch", 1}});
  make_version_1(dir);
  CHECK(same_bits(load_checkpoint(dir.string()).tensors.at("w"), counting({3, 4})));
  fs::resize_file(dir / "w.npy", fs::file_size(dir / "w.npy") - 4);
  CHECK_THAT(error_of([&] { load_checkpoint(dir.string()); }), Contains("truncated or altered"));
}

TEST_CASE("tensors holding NaN or infinity are refused unless allowed", "[checkpoint]") {
  TempDir tmp;
  const std::string dir = (tmp.path / "ck").string();
  Tensor w = counting({3, 4});
  w(0, 1) = std::nanf("");
  w(1, 2) = -std::numeric_limits<float>::infinity();
  w(2, 3) = std::nanf("");
  save_checkpoint(dir, {{"dense1.b", counting({4})}, {"dense1.w", w}}, {});
  CHECK_THAT(
      error_of([&] { load_checkpoint(dir); }),
      Contains("checkpoint '" + dir + "': tensor 'dense1.w' holds 3 non-finite values (2 NaN, 1 infinite) of 12") &&
          Contains("--allow-nonfinite"));
  const Checkpoint ck = load_checkpoint(dir, {.allow_nonfinite = true});
  CHECK(same_bits(ck.tensors.at("dense1.w"), w));
}

TEST_CASE("recover_checkpoint finishes a swap a kill interrupted and removes its debris", "[checkpoint]") {
  TempDir tmp;
  const fs::path dir = tmp.path / "ck", staging = tmp.path / "ck.tmp", previous = tmp.path / "ck.old";
  save_checkpoint(previous.string(), {{"w", counting({2})}}, {{"epoch", 1}});
  save_checkpoint(staging.string(), {{"w", counting({2}, 1)}}, {{"epoch", 2}});
  SECTION("killed between the two renames: the previous checkpoint comes back") {
    REQUIRE(recover_checkpoint(dir.string()));
    CHECK(load_checkpoint(dir.string()).meta.at("epoch") == 1);
  }
  SECTION("killed after the renames: the previous checkpoint is removed") {
    save_checkpoint(dir.string(), {{"w", counting({2}, 2)}}, {{"epoch", 3}});
    save_checkpoint(previous.string(), {{"w", counting({2})}}, {{"epoch", 1}});
    REQUIRE(recover_checkpoint(dir.string()));
    CHECK(load_checkpoint(dir.string()).meta.at("epoch") == 3);
  }
  CHECK_FALSE(fs::exists(staging));
  CHECK_FALSE(fs::exists(previous));
}
