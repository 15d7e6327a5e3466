#pragma once
/// The processes of a data-parallel run, behind an interface that never names MPI: libdagger
/// links Open MPI privately (when the build found it), so a program using the installed
/// package needs no mpi.h. Every collective here gives bitwise the same result on every rank
/// and from run to run: sums are taken in rank order, never in the order MPI picks.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dagger {

/// A group of processes that run the same training in lock step. Every rank must make the same
/// calls in the same order (they are collectives).
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// This process's rank, 0 .. size() - 1.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Replaces `buffer` (the same length on every rank) by the element-wise sum of every rank's
  /// buffer, added in rank order 0, 1, ..., size() - 1 on every rank.
  virtual void sum_in_rank_order(std::vector<float>& buffer) const = 0;
  /// Every rank's `local` (lengths may differ) concatenated in rank order, on every rank.
  virtual std::vector<float> gather_all(const std::vector<float>& local) const = 0;
  /// The sum of every rank's `value` (integers: exact in any order).
  virtual int64_t sum(int64_t value) const = 0;
  /// Rank `root`'s `text`, on every rank.
  virtual void broadcast(std::string& text, int root) const = 0;
  /// Returns when every rank has called it.
  virtual void barrier() const = 0;

  // Point to point, for work handed out one piece at a time (the sharded suite's runs): only
  // the two ranks named take part, and messages from one rank to another arrive in order.

  /// Sends `text` to rank `to`.
  virtual void send(const std::string& text, int to) const = 0;
  /// The next message from any rank, with its sender, when one has arrived; none otherwise.
  virtual std::optional<std::pair<int, std::string>> try_receive() const = 0;
};

/// Whether this libdagger was built with MPI (CMake option DAGGER_MPI).
bool mpi_built();

/// The processes mpirun started (MPI_COMM_WORLD), MPI initialized on first use and finalized
/// when the process exits normally. Run without mpirun it is one rank of one. Throws Error when
/// libdagger was built without MPI.
const Communicator& mpi_world();

/// Ends every rank of the run with `code` (MPI_Abort) after this rank met an error the others
/// cannot know of, so they do not wait forever in their next collective. Without MPI running,
/// or with one rank, returns without doing anything.
void abort_world(int code);

}  // namespace dagger
