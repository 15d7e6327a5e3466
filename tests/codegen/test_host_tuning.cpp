// Sizes from the host's caches (codegen/host_tuning.h): the sysfs reader on fake cache folders,
// the CPUID decoder on register values, their fallbacks, and the slice formula.
#include <catch2/catch.hpp>
#include <fstream>

#include "dagger/codegen/host_tuning.h"
#include "support.h"

using namespace dagger;
using namespace dagger::testing;

namespace {

/// One cache/indexN folder; an empty value leaves that file out.
void write_index(const TempDir& dir, int n, const std::string& level, const std::string& type,
                 const std::string& size) {
  const std::filesystem::path index = dir.path / ("index" + std::to_string(n));
  std::filesystem::create_directories(index);
  for (const auto& [name, value] : {std::pair{"level", level}, {"type", type}, {"size", size}})
    if (!value.empty()) std::ofstream(index / name) << value << "\n";
}

}  // namespace

TEST_CASE("read_cache_sizes reads L1d and L2 from a sysfs cache folder") {
  TempDir dir("sysfs");
  write_index(dir, 0, "1", "Data", "48K");
  write_index(dir, 1, "1", "Instruction", "64K");
  write_index(dir, 2, "2", "Unified", "2048K");
  write_index(dir, 3, "3", "Unified", "491520K");
  const CacheSizes sizes = read_cache_sizes(dir.path.string());
  CHECK(sizes.l1d_bytes == 48 * 1024);
  CHECK(sizes.l2_bytes == 2048 * 1024);

  const HostTuning t = tuning_for(sizes);
  CHECK(t.source == "sysfs");
  CHECK(t.used.l1d_bytes == 48 * 1024);
  CHECK(t.slice_floats == 4096);      // half of 48 KiB rounded down to a power of two: 16 KiB
  CHECK(t.a_block_floats == 262144);  // half of 2 MiB: 1 MiB
}

TEST_CASE("read_cache_sizes takes M suffixes and plain byte counts, and ignores the instruction cache") {
  TempDir dir("sysfs");
  write_index(dir, 0, "1", "Instruction", "32K");  // listed first: must not be taken for L1d
  write_index(dir, 1, "1", "Unified", "65536");
  write_index(dir, 2, "2", "Unified", "1M");
  const CacheSizes sizes = read_cache_sizes(dir.path.string());
  CHECK(sizes.l1d_bytes == 65536);
  CHECK(sizes.l2_bytes == 1024 * 1024);
  CHECK(tuning_for(sizes).slice_floats == 8192);
  CHECK(tuning_for(sizes).a_block_floats == 131072);
}

TEST_CASE("read_cache_sizes leaves a level unknown for odd or missing values, and the tuning falls back") {
  TempDir dir("sysfs");
  SECTION("junk, zero and negative sizes") {
    const std::string odd = GENERATE("", "0K", "-48K", "48Q", "K", "lots", "99999999999999K");
    write_index(dir, 0, "1", "Data", odd);
    write_index(dir, 1, "2", "Unified", "1280K");
    const CacheSizes sizes = read_cache_sizes(dir.path.string());
    CHECK(sizes.l1d_bytes == 0);
    CHECK(sizes.l2_bytes == 1280 * 1024);
    const HostTuning t = tuning_for(sizes);
    CHECK(t.source == "sysfs, L1d fallback");
    CHECK(t.used.l1d_bytes == 32 * 1024);
    CHECK(t.slice_floats == 4096);
  }
  SECTION("a folder without level or type files") {
    write_index(dir, 0, "", "Data", "48K");
    write_index(dir, 1, "2", "", "2048K");
    const CacheSizes sizes = read_cache_sizes(dir.path.string());
    CHECK(sizes.l1d_bytes == 0);
    CHECK(sizes.l2_bytes == 0);
  }
  SECTION("no folder at all") {
    const HostTuning t = tuning_for(read_cache_sizes((dir.path / "absent").string()));
    CHECK(t.measured.l1d_bytes == 0);
    CHECK(t.measured.l2_bytes == 0);
    CHECK(t.source == "fallback (no sysfs or cpuid cache description)");
    CHECK(t.used.l1d_bytes == 32 * 1024);
    CHECK(t.used.l2_bytes == 1024 * 1024);
    CHECK(t.slice_floats == 4096);
    CHECK(t.a_block_floats == 131072);
  }
}

TEST_CASE("the slice formula rounds half the L1d down to a power of two, within 4 to 64 KiB") {
  const auto slice = [](int64_t l1d) { return tuning_for({.l1d_bytes = l1d, .l2_bytes = 1 << 20}).slice_floats; };
  CHECK(slice(32 * 1024) == 4096);
  CHECK(slice(48 * 1024) == 4096);
  CHECK(slice(80 * 1024) == 8192);
  CHECK(slice(4 * 1024) == 1024);               // 2 KiB, raised to the 4 KiB floor
  CHECK(slice(int64_t{1} << 30) == 16 * 1024);  // 512 MiB, capped at 64 KiB
}

TEST_CASE("the block of A is half the L2 rounded down to a power of two, within 128 KiB to 4 MiB") {
  const auto block = [](int64_t l2) { return tuning_for({.l1d_bytes = 48 * 1024, .l2_bytes = l2}).a_block_floats; };
  CHECK(block(2048 * 1024) == 262144);
  CHECK(block(1280 * 1024) == 131072);            // 640 KiB, rounded down to 512 KiB
  CHECK(block(128 * 1024) == 32768);              // 64 KiB, raised to the 128 KiB floor
  CHECK(block(int64_t{1} << 30) == 1024 * 1024);  // 512 MiB, capped at 4 MiB
}

TEST_CASE("CPUID's cache leaves decode to sizes, and fill in what sysfs does not describe") {
  // Register values as a Zen 5 and an Ice Lake server give them (leaf 0x8000001D / leaf 4).
  const CacheLeaf l1d = decode_cache_leaf(0x121, (11u << 22) | (0u << 12) | 63u, 63);  // 12 ways, 64 sets
  CHECK(l1d.type == 1);
  CHECK(l1d.level == 1);
  CHECK(l1d.bytes == 48 * 1024);
  const CacheLeaf l1i = decode_cache_leaf(0x122, (7u << 22) | 63u, 63);
  CHECK(l1i.type == 2);
  CHECK(l1i.bytes == 32 * 1024);
  const CacheLeaf l2 = decode_cache_leaf(0x143, (15u << 22) | 63u, 1023);  // 16 ways, 1024 sets
  CHECK(l2.level == 2);
  CHECK(l2.bytes == 1024 * 1024);
  const CacheLeaf icx_l2 = decode_cache_leaf(0x143, (19u << 22) | 63u, 1023);  // 20 ways: 1.25 MiB
  CHECK(icx_l2.bytes == 1280 * 1024);
  CHECK(decode_cache_leaf(0, 0, 0).type == 0);  // the end of the list
  CHECK(decode_cache_leaf(0, 0, 0).bytes == 0);

  // Each level from sysfs where it has it, else from CPUID; the source says which.
  const CacheSizes none{}, cpuid{.l1d_bytes = 48 * 1024, .l2_bytes = 1024 * 1024};
  HostTuning t = tuning_for(none, cpuid);
  CHECK(t.source == "cpuid");
  CHECK(t.used.l1d_bytes == 48 * 1024);
  CHECK(t.a_block_floats == 131072);
  t = tuning_for({.l1d_bytes = 32 * 1024, .l2_bytes = 2048 * 1024}, cpuid);
  CHECK(t.source == "sysfs");
  CHECK(t.used.l2_bytes == 2048 * 1024);
  t = tuning_for({.l1d_bytes = 0, .l2_bytes = 2048 * 1024}, cpuid);
  CHECK(t.source == "sysfs, L1d from cpuid");
  CHECK(t.used.l1d_bytes == 48 * 1024);
  t = tuning_for({.l1d_bytes = 0, .l2_bytes = 2048 * 1024}, {.l1d_bytes = 0, .l2_bytes = 0});
  CHECK(t.source == "sysfs, L1d fallback");
  t = tuning_for(none, {.l1d_bytes = 0, .l2_bytes = 512 * 1024});
  CHECK(t.source == "cpuid, L1d fallback");
  CHECK(t.used.l1d_bytes == 32 * 1024);
  CHECK(t.a_block_floats == 65536);  // half of 512 KiB
}

TEST_CASE("this host's CPUID, where it describes its caches, gives sizes a cache can have") {
  const CacheSizes sizes = read_cpuid_cache_sizes();
  INFO("L1d " << sizes.l1d_bytes << " B, L2 " << sizes.l2_bytes << " B");
  if (sizes.l1d_bytes != 0) CHECK((sizes.l1d_bytes >= 8 * 1024 && sizes.l1d_bytes <= 1024 * 1024));
  if (sizes.l2_bytes != 0) CHECK((sizes.l2_bytes >= 64 * 1024 && sizes.l2_bytes <= 256 * 1024 * 1024));
  // And the tuning in use names a source and sizes within the formula's bounds.
  CHECK_FALSE(host_tuning().source.empty());
  CHECK(host_tuning().slice_floats >= 1024);
  CHECK(host_tuning().slice_floats <= 16384);
}
