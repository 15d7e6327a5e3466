#pragma once
/// Which build of libdagger is running: what a result's provenance records and what a benchmark
/// comparing two builds checks it is really running two.
#include <string>
#include <string_view>

namespace dagger {

/// The git commit libdagger was built from, fixed when it was built: "<40 hex digits>", the same
/// followed by " (with uncommitted changes)" when tracked files differed from it, or
/// "unknown (not a git checkout)".
std::string_view build_commit();

/// The file the running libdagger was loaded from, as an absolute path with links resolved ("" if
/// the loader does not say).
std::string library_path();

}  // namespace dagger
