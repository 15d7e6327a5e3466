// dagger-mpi-sum-check, run under mpirun by ctest (tests/CMakeLists.txt): the fixed-order sum
// (Communicator::sum_in_rank_order, a reduce-scatter and an allgather) against the sum it
// replaced, every rank's whole buffer gathered and added in rank order 0, 1, ..., N-1. Buffers
// of mixed signs and magnitudes, so that another order of addition changes bits; sizes that do
// and do not divide by the rank count, and smaller than it. Exits 0 when every rank got the
// reference's bits for every size, 1 otherwise (each rank prints what differed).
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dagger/runtime/distributed.h"

namespace {

/// This rank's buffer of `n` floats: signs and magnitudes from 1e-4 to 1e4, seeded by (rank, n).
std::vector<float> random_buffer(int rank, size_t n) {
  std::mt19937 rng(static_cast<uint32_t>(rank * 7919 + n));
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f), exponent(-4.0f, 4.0f);
  std::vector<float> buffer(n);
  for (float& v : buffer) v = mantissa(rng) * std::pow(10.0f, exponent(rng));
  return buffer;
}

/// The reference: every rank's buffer gathered, then added in the order `ranks` lists them.
std::vector<float> gathered_sum(const dagger::Communicator& comm, const std::vector<float>& local,
                                const std::vector<int>& ranks) {
  const std::vector<float> all = comm.gather_all(local);
  const size_t n = local.size();
  std::vector<float> sum(all.begin() + ranks[0] * n, all.begin() + (ranks[0] + 1) * n);
  for (size_t k = 1; k < ranks.size(); ++k)
    for (size_t i = 0; i < n; ++i) sum[i] += all[ranks[k] * n + i];
  return sum;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

int main() {
  const dagger::Communicator& comm = dagger::mpi_world();
  const int ranks = comm.size();
  std::vector<int> in_order(static_cast<size_t>(ranks)), reversed(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) in_order[r] = r, reversed[r] = ranks - 1 - r;
  int64_t failures = 0;
  std::string report;
  for (size_t n : {0, 1, 2, 3, 4, 5, 7, 1000, 1001, 65537, 391308}) {
    std::vector<float> buffer = random_buffer(comm.rank(), n);
    const std::vector<float> want = gathered_sum(comm, buffer, in_order);
    comm.sum_in_rank_order(buffer);
    if (!same_bits(buffer, want)) {
      ++failures;
      report += fmt::format("rank {}: {} floats: not the gathered sum's bits\n", comm.rank(), n);
    }
  }
  // The check can fail: with three ranks or more, adding in another order changes some bits
  // (with two, a + b is b + a).
  const std::vector<float> big = random_buffer(comm.rank(), 65537);
  const bool order_shows = !same_bits(gathered_sum(comm, big, in_order), gathered_sum(comm, big, reversed));
  if (ranks >= 3 && !order_shows) {
    ++failures;
    report += fmt::format("rank {}: the reversed order gave the same bits: the buffers cannot tell orders apart\n",
                          comm.rank());
  }
  fmt::print(stderr, "{}", report);
  const int64_t total = comm.sum(failures);
  if (comm.rank() == 0)
    fmt::print("{} ranks: {}\n", ranks, total == 0 ? "the fixed-order sum has the gathered sum's bits" : "FAILED");
  return total == 0 ? 0 : 1;
}
