// Durable writes: a file is replaced whole or not at all, a failed write is an Error naming the
// file (a full disk must not pass silently), and no temporary file outlives its writer.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dagger/runtime/atomic_file.h"
#include "support.h"

using namespace dagger;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using testing::error_of;
using testing::file_bytes;
using testing::TempDir;

namespace {

/// The names of the files in `dir`, sorted.
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// Limits the size of files this process writes (RLIMIT_FSIZE), as a full disk would: a write
/// past it fails with EFBIG. SIGXFSZ, which the kernel sends with it, is ignored meanwhile.
struct FileSizeLimit {
  rlimit saved{};
  void (*saved_handler)(int);
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved);
    saved_handler = std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{bytes, saved.rlim_max};
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, saved_handler);
  }
};

}  // namespace

TEST_CASE("write_file_atomically replaces a file and leaves nothing else", "[atomic]") {
  TempDir tmp;
  const std::string path = tmp.file("metrics.json");
  write_file_atomically(path, "first");
  write_file_atomically(path, {"sec", "", "ond"});
  CHECK(file_bytes(path) == "second");
  CHECK(listing(tmp.path) == std::vector<std::string>{"metrics.json"});
}

TEST_CASE("a failed write throws naming the file and keeps the old one", "[atomic]") {
  TempDir tmp;
  const std::string path = tmp.file("history.csv");
  write_file_atomically(path, "old contents");
  SECTION("the disk fills up") {
    const std::string big(1 << 16, 'x');
    {
      FileSizeLimit limit(4096);
      CHECK_THAT(error_of([&] { write_file_atomically(path, big); }),
                 Contains("cannot write '" + path + "'") && Contains("too large"));
      CHECK_THAT(error_of([&] { write_file_synced(tmp.file("part.npy"), {big}); }), Contains("part.npy"));
    }
    CHECK(file_bytes(path) == "old contents");
    CHECK(listing(tmp.path) == std::vector<std::string>{"history.csv"});  // no temporary, no partial file
  }
  SECTION("the folder is gone") {
    CHECK_THAT(error_of([&] { write_file_atomically(tmp.file("nope/metrics.json"), "x"); }),
               Contains("nope/metrics.json") && Contains("No such file"));
  }
}

TEST_CASE("a temporary file of a killed writer is removed by the next write of its file", "[atomic]") {
  TempDir tmp;
  const std::string path = tmp.file("report.md");
  // A process that no longer exists (pids stay below 2^22 on Linux) and one that does (init).
  std::ofstream(path + ".tmp-99999999") << "half a report";
  std::ofstream(path + ".tmp-1") << "being written";
  std::ofstream(tmp.file("other.md.tmp-99999999")) << "another file's";
  write_file_atomically(path, "report");
  CHECK(listing(tmp.path) == std::vector<std::string>{"other.md.tmp-99999999", "report.md", "report.md.tmp-1"});
}

TEST_CASE("commit_file puts a file written by another program in place", "[atomic]") {
  TempDir tmp;
  const std::string path = tmp.file("plot.png");
  std::ofstream(temporary_path(path)) << "drawn";
  commit_file(path);
  CHECK(file_bytes(path) == "drawn");
  CHECK(listing(tmp.path) == std::vector<std::string>{"plot.png"});
  CHECK_THAT(error_of([&] { commit_file(tmp.file("never-drawn.png")); }), Contains("never-drawn.png"));
}
