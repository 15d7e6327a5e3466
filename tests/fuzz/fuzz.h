#pragma once
/// dagger-fuzz: a deterministic mutation fuzzer for the parsers of files a user hands dagger
/// (IDX, .npy, CSV, checkpoint manifests and their .npy files, model texts, the textual IR).
/// Each input must end in success or in a dagger::Error; any other exception, a crash, a hang
/// or an allocation beyond a bound fails the run. See docs/testing.md.
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace dagger::fuzz {

using Bytes = std::vector<uint8_t>;

/// One parser under test.
struct Target {
  std::string name;
  std::string summary;
  bool text = false;                    ///< also mutate numbers, lines and tokens as text
  std::vector<std::string> dictionary;  ///< tokens worth inserting (keywords, punctuation)
  /// Parses one input; returns whether some parser accepted it. A user error is caught inside
  /// and counts as a rejection; anything else escapes to the harness, which reports it.
  std::function<bool(const Bytes&)> run;
};

/// Every target. Targets that read files write them under `scratch` (an existing, empty
/// folder); `fixtures` holds files they need besides the input (tests/fuzz/fixtures).
std::vector<Target> make_targets(const std::string& scratch, const std::string& fixtures);

/// Random edits of an input, drawn from one generator so that a seed fixes the whole run.
class Mutator {
 public:
  Mutator(const Target& target, size_t max_size) : target_(target), max_size_(max_size) {}

  /// `input` after one to a few edits; `pool` supplies the other half of a splice.
  Bytes mutate(const Bytes& input, const std::vector<Bytes>& pool, std::mt19937_64& rng) const;

 private:
  void edit(Bytes& b, const std::vector<Bytes>& pool, std::mt19937_64& rng) const;
  void edit_binary(Bytes& b, const std::vector<Bytes>& pool, std::mt19937_64& rng) const;
  void edit_text(Bytes& b, std::mt19937_64& rng) const;

  const Target& target_;
  size_t max_size_;
};

}  // namespace dagger::fuzz
