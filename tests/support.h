#pragma once
/// Helpers shared by the tests.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>

#include "dagger/graph/error.h"
#include "dagger/runtime/data.h"

namespace dagger::testing {

/// A fresh folder under the system temp directory, removed with everything in it when the
/// object goes out of scope.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& purpose = "scratch") {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / fmt::format("dagger-{}-test-{:08x}{:08x}", purpose, rd(), rd());
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

/// The bytes of the file at `path` (empty when it cannot be read).
inline std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

/// Sets an environment variable (for this process and the commands it starts) until the end
/// of the scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// Fails the test unless Fashion-MNIST is in `dir` (default_data_dir(): the Debian package's
/// folder, or $DAGGER_DATA): the tests that read the real data set require it, and a missing
/// data set fails them with this message rather than passing them unrun.
inline void require_fashion_mnist(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "train-images-idx3-ubyte.gz")) return;
  FAIL("Fashion-MNIST is required but not in " << dir.string()
                                               << ": install the Debian package dataset-fashion-mnist "
                                                  "(scripts/install-deps.sh) or point DAGGER_DATA at a copy");
}

/// The message of the dagger::Error that `f` throws; fails the test when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a dagger::Error");
  return "";
}

/// `n` random 1x28x28 images with labels cycling through 0..9, the same for a given seed:
/// nothing to learn, so a validation loss soon stalls.
inline Dataset random_images(size_t n, uint32_t seed) {
  Dataset d;
  d.images = Tensor::from_shape({n, 1, 28, 28});
  std::mt19937 rng(seed);
  for (float& v : d.images) v = static_cast<float>(rng() % 256) / 255.0f;
  for (size_t i = 0; i < n; ++i) d.labels.push_back(static_cast<int>(i % 10));
  return d;
}

}  // namespace dagger::testing
