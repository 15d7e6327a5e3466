#pragma once
/// Code-generation sizes derived from the host's caches rather than tuned on one machine.
///
/// The GEMM every contraction lowers to walks the reduction's outer axis a slice at a time, so
/// that the packed panel's slice (plus the register tile's A values) stays in L1 while every
/// row tile of the item runs over it. The slice's length in floats is
///
///     slice_floats = clamp(largest power of two <= L1d / 2, 4 KiB, 64 KiB) / 4
///
/// half the L1 data cache for the panel, the other half for A's values and C's tile; a power of
/// two so that hosts whose L1d differs by a little (32 KiB, 48 KiB) get the same code. 32 and
/// 48 KiB both give 4096 floats, the constant this replaced. The slice length changes code, not
/// results: partial sums go through C in float between slices, in the same order of k.
///
/// Where A is larger than L2 can hold beside the panels, the GEMM runs its rows in blocks of A
/// whose floats number at most
///
///     a_block_floats = clamp(largest power of two <= L2 / 2, 128 KiB, 4 MiB) / 4
///
/// and, for each block, every panel of its item range; so each block of A is read from L2 by
/// all those panels instead of from L3 by each (emit_gemm.h). 2 MiB of L2 gives 262144 floats
/// (256 rows of a 1024-long reduction). Like the slice, the block changes code, not results.
/// The same budget bounds a group of B's panels packed in one pass (GemmLayout::group): the
/// block of A and the group then share L2 half and half.
///
/// The cache sizes come from cpu0's sysfs description (cache/index*/level, type, size); a level
/// sysfs does not describe (some virtual machines have no cache folder at all) comes from CPUID's
/// cache leaves; a level neither gives falls back to 32 KiB L1d and 1 MiB L2 (the smallest of
/// the x86-64 machines dagger is tuned for). The source says which was used.
#include <cstdint>
#include <string>

namespace dagger {

/// The host's data caches as far as they are known.
struct CacheSizes {
  int64_t l1d_bytes = 0;  // 0: unknown
  int64_t l2_bytes = 0;   // 0: unknown
};

/// Reads the level-1 data (or unified) cache and the level-2 cache from a sysfs folder laid out
/// like /sys/devices/system/cpu/cpu0/cache: index*/level ("1"), type ("Data", "Unified",
/// "Instruction") and size ("48K", "2048K", "1M" or a plain byte count). A level whose files are
/// missing or whose size does not parse as a positive size stays 0; never throws.
CacheSizes read_cache_sizes(const std::string& sysfs_cache_dir);

/// One subleaf of CPUID's deterministic cache parameters (leaf 4 on Intel, 0x8000001D on AMD),
/// decoded from its EAX, EBX and ECX: type 0 none (the end of the list), 1 data, 2 instruction,
/// 3 unified; level 1, 2, 3; size = ways x partitions x line size x sets.
struct CacheLeaf {
  int type = 0, level = 0;
  int64_t bytes = 0;
};
CacheLeaf decode_cache_leaf(uint32_t eax, uint32_t ebx, uint32_t ecx);

/// The L1d and L2 as this CPU's CPUID describes them: the deterministic cache leaves, else AMD's
/// 0x80000005/0x80000006; zeros where it says nothing (and on other architectures).
CacheSizes read_cpuid_cache_sizes();

/// Sizes the emitters use, and where they came from.
struct HostTuning {
  CacheSizes measured;         // as read (sysfs, else CPUID); zeros where unknown
  CacheSizes used;             // with the fallbacks filled in
  std::string source;          // "sysfs", "cpuid", "sysfs, L2 from cpuid", "sysfs, L1d fallback", "fallback (...)"
  int64_t slice_floats = 0;    // the GEMM's panel slice, see the formula above
  int64_t a_block_floats = 0;  // the GEMM's largest block of A, likewise
};

/// The tuning for caches described by sysfs and by CPUID (zeros: unknown), each level from
/// sysfs where it has it, following the formula above.
HostTuning tuning_for(const CacheSizes& sysfs, const CacheSizes& cpuid = {});

/// The tuning for this host, read from sysfs and CPUID once per process.
const HostTuning& host_tuning();

}  // namespace dagger
