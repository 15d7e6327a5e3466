#pragma once
/// Test helper: a fresh folder under the system temp directory, removed with everything in it
/// when the object goes out of scope.
#include <fmt/format.h>

#include <filesystem>
#include <random>
#include <string>

namespace dagger::testing {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& purpose) {
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

}  // namespace dagger::testing
