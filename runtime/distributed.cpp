#include "dagger/runtime/distributed.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <limits>

#include "dagger/graph/graph.h"

#if DAGGER_HAVE_MPI
#include <mpi.h>
#endif

namespace dagger {

#if DAGGER_HAVE_MPI

namespace {

/// MPI_COMM_WORLD. Float sums are a reduce-scatter and an allgather written with MPI's exchanges
/// rather than MPI_Allreduce: MPI does not promise the order (or the tree) in which an allreduce
/// adds, and a different order changes bits.
class WorldCommunicator final : public Communicator {
 public:
  WorldCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // Only the main thread calls MPI; the JIT's workers never do.
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      std::atexit(finalize);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  /// Rank r owns chunk r of the buffer (contiguous, sizes differing by at most one, empty when
  /// the buffer is shorter than the rank count). Every rank sends chunk r of its buffer to rank
  /// r (MPI_Alltoallv), which adds the copies in rank order 0, 1, ..., N-1; MPI_Allgatherv then
  /// hands every rank the summed chunks. Each element is added in the order a gather of whole
  /// buffers would add it, while each rank receives about 2 buffers' worth instead of N.
  void sum_in_rank_order(std::vector<float>& buffer) const override {
    if (size_ == 1) return;
    assert(buffer.size() <= static_cast<size_t>(std::numeric_limits<int>::max()));
    const int n = static_cast<int>(buffer.size()), ranks = size_;
    std::vector<int> chunk_start(static_cast<size_t>(ranks)), chunk_size(static_cast<size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
      chunk_start[r] = static_cast<int>(int64_t(n) * r / ranks);
      chunk_size[r] = static_cast<int>(int64_t(n) * (r + 1) / ranks) - chunk_start[r];
    }
    // Received from rank s: its copy of my chunk, at s * my chunk's size.
    const int mine = chunk_size[rank_];
    const std::vector<int> receive_size(static_cast<size_t>(ranks), mine);
    std::vector<int> receive_start(static_cast<size_t>(ranks));
    for (int s = 0; s < ranks; ++s) receive_start[s] = s * mine;
    copies_.resize(static_cast<size_t>(ranks) * static_cast<size_t>(mine));
    MPI_Alltoallv(buffer.data(), chunk_size.data(), chunk_start.data(), MPI_FLOAT, copies_.data(), receive_size.data(),
                  receive_start.data(), MPI_FLOAT, MPI_COMM_WORLD);
    float* sum = buffer.data() + chunk_start[rank_];
    std::copy_n(copies_.data(), mine, sum);
    for (int s = 1; s < ranks; ++s) {
      const float* part = copies_.data() + static_cast<size_t>(s) * static_cast<size_t>(mine);
      for (int i = 0; i < mine; ++i) sum[i] += part[i];
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer.data(), chunk_size.data(), chunk_start.data(), MPI_FLOAT,
                   MPI_COMM_WORLD);
  }

  std::vector<float> gather_all(const std::vector<float>& local) const override {
    const int count = static_cast<int>(local.size());
    std::vector<int> counts(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
    MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = total;
      total += counts[r];
    }
    std::vector<float> all(static_cast<size_t>(total));
    MPI_Allgatherv(local.data(), count, MPI_FLOAT, all.data(), counts.data(), offsets.data(), MPI_FLOAT,
                   MPI_COMM_WORLD);
    return all;
  }

  int64_t sum(int64_t value) const override {
    int64_t total = 0;
    MPI_Allreduce(&value, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return total;
  }

  void broadcast(std::string& text, int root) const override {
    uint64_t length = text.size();
    MPI_Bcast(&length, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    text.resize(length);
    MPI_Bcast(text.data(), static_cast<int>(length), MPI_CHAR, root, MPI_COMM_WORLD);
  }

  void barrier() const override { MPI_Barrier(MPI_COMM_WORLD); }

  void send(const std::string& text, int to) const override {
    MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, to, kMessageTag, MPI_COMM_WORLD);
  }

  std::optional<std::pair<int, std::string>> try_receive() const override {
    int arrived = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kMessageTag, MPI_COMM_WORLD, &arrived, &status);
    if (!arrived) return std::nullopt;
    const int from = status.MPI_SOURCE;
    return std::make_pair(from, receive_probed(status));
  }

 private:
  static constexpr int kMessageTag = 16;  // point-to-point messages (collectives match apart)

  /// The message `status` (from MPI_Iprobe) describes.
  static std::string receive_probed(MPI_Status& status) {
    int length = 0;
    MPI_Get_count(&status, MPI_CHAR, &length);
    std::string text(static_cast<size_t>(length), '\0');
    MPI_Recv(text.data(), length, MPI_CHAR, status.MPI_SOURCE, kMessageTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return text;
  }

  static void finalize() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

  int rank_ = 0, size_ = 1;
  mutable std::vector<float> copies_;  ///< every rank's copy of this rank's chunk, reused from step to step
};

}  // namespace

bool mpi_built() { return true; }

const Communicator& mpi_world() {
  static const WorldCommunicator world;
  return world;
}

void abort_world(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

#else

bool mpi_built() { return false; }

const Communicator& mpi_world() {
  throw Error("this dagger was built without MPI (install libopenmpi-dev and rebuild with -DDAGGER_MPI=ON)");
}

void abort_world(int) {}

#endif

}  // namespace dagger
