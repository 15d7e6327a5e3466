// Which build of libdagger is running (runtime/build_info.h).
#include <catch2/catch.hpp>
#include <filesystem>
#include <regex>
#include <string>

#include "dagger/runtime/build_info.h"

TEST_CASE("the library names the commit it was built from and the file it was loaded from", "[runtime]") {
  const std::string commit(dagger::build_commit());
  INFO(commit);
  CHECK(std::regex_match(commit, std::regex("[0-9a-f]{40}( \\(with uncommitted changes\\))?|unknown \\(not a git checkout\\)")));
  const std::filesystem::path library = dagger::library_path();
  INFO(library);
  CHECK(library.is_absolute());
  CHECK(library.filename().string().starts_with("libdagger.so"));
  CHECK(std::filesystem::is_regular_file(library));
  CHECK(library == std::filesystem::canonical(library));
}
