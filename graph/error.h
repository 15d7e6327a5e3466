#pragma once
/// User-facing errors. Anything a user can cause (a bad shape, a bad file, a bad flag)
/// is reported by throwing dagger::Error with a message naming the culprit; internal
/// invariants are asserts.
#include <source_location>
#include <stdexcept>
#include <string>

namespace dagger {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Formats "file:line" for a declaration site, trimmed to the path below the project root.
std::string describe(const std::source_location& where);

}  // namespace dagger
