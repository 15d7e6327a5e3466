#include "dagger/codegen/host_tuning.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <array>
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

CacheLeaf decode_cache_leaf(uint32_t eax, uint32_t ebx, uint32_t ecx) {
  CacheLeaf leaf;
  leaf.type = static_cast<int>(eax & 0x1f);
  leaf.level = static_cast<int>((eax >> 5) & 0x7);
  const int64_t ways = ((ebx >> 22) & 0x3ff) + 1, partitions = ((ebx >> 12) & 0x3ff) + 1;
  const int64_t line = (ebx & 0xfff) + 1, sets = int64_t{ecx} + 1;
  leaf.bytes = leaf.type == 0 ? 0 : ways * partitions * line * sets;
  return leaf;
}

CacheSizes read_cpuid_cache_sizes() {
  CacheSizes sizes;
#if defined(__x86_64__) || defined(__i386__)
  const unsigned max_basic = __get_cpuid_max(0, nullptr), max_extended = __get_cpuid_max(0x80000000u, nullptr);
  // The deterministic cache parameters: leaf 4 on Intel, 0x8000001D on AMD (zeros where a
  // vendor does not define the leaf, which ends the walk at once).
  for (const unsigned leaf : {4u, 0x8000001du}) {
    if (leaf > (leaf >= 0x80000000u ? max_extended : max_basic)) continue;
    for (unsigned subleaf = 0; subleaf < 16; ++subleaf) {
      unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
      __cpuid_count(leaf, subleaf, eax, ebx, ecx, edx);
      const CacheLeaf c = decode_cache_leaf(eax, ebx, ecx);
      if (c.type == 0) break;
      if (c.type == 2) continue;  // instructions
      if (c.level == 1 && sizes.l1d_bytes == 0) sizes.l1d_bytes = c.bytes;
      if (c.level == 2 && sizes.l2_bytes == 0) sizes.l2_bytes = c.bytes;
    }
  }
  // AMD's older leaves: the L1d in KiB in ECX[31:24] of 0x80000005, the L2 in ECX[31:16] of
  // 0x80000006 (Intel defines only the latter).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (sizes.l1d_bytes == 0 && max_extended >= 0x80000005u) {
    __cpuid(0x80000005u, eax, ebx, ecx, edx);
    sizes.l1d_bytes = int64_t{ecx >> 24} * kKiB;
  }
  if (sizes.l2_bytes == 0 && max_extended >= 0x80000006u) {
    __cpuid(0x80000006u, eax, ebx, ecx, edx);
    sizes.l2_bytes = int64_t{ecx >> 16} * kKiB;
  }
#endif
  return sizes;
}

HostTuning tuning_for(const CacheSizes& sysfs, const CacheSizes& cpuid) {
  HostTuning t;
  // Each level from sysfs, else from CPUID, else the fallback; the source names where from.
  std::array<const char*, 2> origin{};
  const auto pick = [](int64_t from_sysfs, int64_t from_cpuid, const char*& where) -> int64_t {
    where = from_sysfs > 0 ? "sysfs" : from_cpuid > 0 ? "cpuid" : "fallback";
    return from_sysfs > 0 ? from_sysfs : std::max<int64_t>(from_cpuid, 0);
  };
  t.measured.l1d_bytes = pick(sysfs.l1d_bytes, cpuid.l1d_bytes, origin[0]);
  t.measured.l2_bytes = pick(sysfs.l2_bytes, cpuid.l2_bytes, origin[1]);
  t.used = t.measured;
  if (t.used.l1d_bytes <= 0) t.used.l1d_bytes = kFallbackL1dBytes;
  if (t.used.l2_bytes <= 0) t.used.l2_bytes = kFallbackL2Bytes;
  const std::string l1 = origin[0], l2 = origin[1];
  if (l1 == l2) {
    t.source = l1 == "fallback" ? "fallback (no sysfs or cpuid cache description)" : l1;
  } else {
    // Named by the better of the two sources (sysfs, then cpuid), then where the other level came from.
    const bool l1_base = l1 == "sysfs" || (l1 == "cpuid" && l2 == "fallback");
    const std::string& base = l1_base ? l1 : l2;
    const std::string& other = l1_base ? l2 : l1;
    t.source = base + ", " + (l1_base ? "L2" : "L1d") + (other == "fallback" ? " fallback" : " from " + other);
  }
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
  static const HostTuning tuning =
      tuning_for(read_cache_sizes("/sys/devices/system/cpu/cpu0/cache"), read_cpuid_cache_sizes());
  return tuning;
}

}  // namespace dagger
