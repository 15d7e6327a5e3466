#include "dagger/codegen/host_tuning.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace dagger {

namespace {

constexpr int64_t kKiB = 1024;
constexpr int64_t kFallbackL1dBytes = 32 * kKiB;
constexpr int64_t kFallbackL2Bytes = 1024 * kKiB;
constexpr int64_t kMinSliceBytes = 4 * kKiB, kMaxSliceBytes = 64 * kKiB;
constexpr int64_t kMinABlockBytes = 128 * kKiB, kMaxABlockBytes = 4 * kKiB * kKiB;

/// The first line of `path`, without surrounding blanks; nullopt when it cannot be read.
std::optional<std::string> read_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  const auto blank = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!line.empty() && blank(line.back())) line.pop_back();
  line.erase(line.begin(), std::find_if_not(line.begin(), line.end(), blank));
  return line;
}

/// "48K" -> 49152; "1M", "2048K", "65536"; 0 for anything else (empty, negative, junk, absurd).
int64_t parse_size(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 12) return 0;
  const int64_t number = std::stoll(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  int64_t scale = 0;
  if (unit.empty())
    scale = 1;
  else if (unit == "K" || unit == "KiB")
    scale = kKiB;
  else if (unit == "M" || unit == "MiB")
    scale = kKiB * kKiB;
  return number * scale;
}

}  // namespace

CacheSizes read_cache_sizes(const std::string& sysfs_cache_dir) {
  CacheSizes sizes;
  std::error_code error;
  for (std::filesystem::directory_iterator it(sysfs_cache_dir, error), end; !error && it != end; it.increment(error)) {
    if (!it->path().filename().string().starts_with("index")) continue;
    const std::optional<std::string> level = read_line(it->path() / "level");
    const std::optional<std::string> type = read_line(it->path() / "type");
    const std::optional<std::string> size = read_line(it->path() / "size");
    if (!level || !type || !size || (*type != "Data" && *type != "Unified")) continue;
    if (*level == "1") sizes.l1d_bytes = parse_size(*size);
    if (*level == "2") sizes.l2_bytes = parse_size(*size);
  }
  return sizes;
}

HostTuning tuning_for(const CacheSizes& measured) {
  HostTuning t;
  t.measured = measured;
  t.used = measured;
  std::vector<std::string> fallbacks;
  if (t.used.l1d_bytes <= 0) t.used.l1d_bytes = kFallbackL1dBytes, fallbacks.push_back("L1d");
  if (t.used.l2_bytes <= 0) t.used.l2_bytes = kFallbackL2Bytes, fallbacks.push_back("L2");
  if (fallbacks.size() == 2)
    t.source = "fallback (no sysfs cache description)";
  else if (fallbacks.size() == 1)
    t.source = "sysfs, " + fallbacks[0] + " fallback";
  else
    t.source = "sysfs";
  const auto half_l1d = static_cast<uint64_t>(t.used.l1d_bytes / 2);
  const int64_t slice_bytes =
      std::clamp(static_cast<int64_t>(std::bit_floor(half_l1d)), kMinSliceBytes, kMaxSliceBytes);
  t.slice_floats = slice_bytes / static_cast<int64_t>(sizeof(float));
  const auto half_l2 = static_cast<uint64_t>(t.used.l2_bytes / 2);
  const int64_t a_block_bytes =
      std::clamp(static_cast<int64_t>(std::bit_floor(half_l2)), kMinABlockBytes, kMaxABlockBytes);
  t.a_block_floats = a_block_bytes / static_cast<int64_t>(sizeof(float));
  return t;
}

const HostTuning& host_tuning() {
  static const HostTuning tuning = tuning_for(read_cache_sizes("/sys/devices/system/cpu/cpu0/cache"));
  return tuning;
}

}  // namespace dagger
