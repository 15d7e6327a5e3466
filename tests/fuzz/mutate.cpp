// The mutations: bit flips, byte edits, inserted and deleted runs, interesting integers at header
// positions, truncation and splicing for every target; for text formats also numbers replaced by
// boundary values, lines repeated, dropped or swapped, and dictionary tokens inserted.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>

#include "fuzz.h"

namespace dagger::fuzz {

namespace {

/// Values at the edges of the integer types a header stores sizes in.
constexpr std::array<uint64_t, 16> kInterestingIntegers = {0,
                                                           1,
                                                           2,
                                                           0x7f,
                                                           0x80,
                                                           0xff,
                                                           0x100,
                                                           0x7fff,
                                                           0x8000,
                                                           0xffff,
                                                           0x10000,
                                                           0x7fffffff,
                                                           0x80000000,
                                                           0xffffffff,
                                                           0x7fffffffffffffffull,
                                                           0xffffffffffffffffull};

/// The same edges written as decimal numbers, plus the ones that overflow when multiplied.
constexpr std::array<const char*, 20> kInterestingNumbers = {"0",
                                                             "1",
                                                             "-1",
                                                             "2",
                                                             "3",
                                                             "255",
                                                             "256",
                                                             "65536",
                                                             "2147483647",
                                                             "2147483648",
                                                             "-2147483648",
                                                             "4294967295",
                                                             "4294967296",
                                                             "1000000000000",
                                                             "9223372036854775807",
                                                             "9223372036854775808",
                                                             "18446744073709551615",
                                                             "99999999999999999999",
                                                             "1e309",
                                                             "nan"};

/// Edits within this many bytes of the start hit a binary header most of the time.
constexpr size_t kHeaderBytes = 64;

size_t below(std::mt19937_64& rng, size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); }

/// A position in `b` (0..size), near the start three times out of four.
size_t position(const Bytes& b, std::mt19937_64& rng, bool header_bias) {
  const size_t limit = header_bias && below(rng, 4) != 0 ? std::min(b.size(), kHeaderBytes) : b.size();
  return below(rng, limit + 1);
}

void put_integer(Bytes& b, size_t at, uint64_t value, size_t width, bool big_endian) {
  if (at + width > b.size()) b.resize(at + width);
  for (size_t i = 0; i < width; ++i) {
    const size_t shift = 8 * (big_endian ? width - 1 - i : i);
    b[at + i] = static_cast<uint8_t>(value >> shift);
  }
}

/// Lines of `b` as [begin, end) offsets, each end including its '\n' when it has one.
std::vector<std::pair<size_t, size_t>> lines_of(const Bytes& b) {
  std::vector<std::pair<size_t, size_t>> lines;
  for (size_t start = 0; start < b.size();) {
    const auto nl = std::find(b.begin() + static_cast<std::ptrdiff_t>(start), b.end(), uint8_t{'\n'});
    const size_t end = nl == b.end() ? b.size() : static_cast<size_t>(nl - b.begin()) + 1;
    lines.emplace_back(start, end);
    start = end;
  }
  return lines;
}

void insert_text(Bytes& b, size_t at, const std::string& text) {
  b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), text.begin(), text.end());
}

/// Replaces the run of digits around a random position (or the next one after it) by `text`.
void replace_number(Bytes& b, const std::string& text, std::mt19937_64& rng) {
  size_t at = below(rng, b.size());
  while (at < b.size() && !std::isdigit(b[at])) ++at;
  if (at == b.size()) return;
  size_t begin = at, end = at;
  while (begin > 0 && std::isdigit(b[begin - 1])) --begin;
  while (end < b.size() && std::isdigit(b[end])) ++end;
  b.erase(b.begin() + static_cast<std::ptrdiff_t>(begin), b.begin() + static_cast<std::ptrdiff_t>(end));
  insert_text(b, begin, text);
}

}  // namespace

Bytes Mutator::mutate(const Bytes& input, const std::vector<Bytes>& pool, std::mt19937_64& rng) const {
  Bytes b = input;
  // Mostly one edit, sometimes a few stacked: single edits keep an input close to a valid one.
  const size_t edits = 1 + (below(rng, 3) == 0 ? below(rng, 4) : 0);
  for (size_t i = 0; i < edits; ++i) edit(b, pool, rng);
  if (b.size() > max_size_) b.resize(max_size_);
  return b;
}

void Mutator::edit(Bytes& b, const std::vector<Bytes>& pool, std::mt19937_64& rng) const {
  if (target_.text && below(rng, 2) == 0) return edit_text(b, rng);
  edit_binary(b, pool, rng);
}

void Mutator::edit_binary(Bytes& b, const std::vector<Bytes>& pool, std::mt19937_64& rng) const {
  const bool header = !target_.text;
  switch (below(rng, 8)) {
    case 0:  // flip one bit
      if (!b.empty()) b[below(rng, b.size())] ^= static_cast<uint8_t>(1u << below(rng, 8));
      break;
    case 1:  // overwrite one byte
      if (!b.empty()) b[std::min(position(b, rng, header), b.size() - 1)] = static_cast<uint8_t>(rng());
      break;
    case 2: {  // insert a few random bytes or a copy of a run of the input
      const size_t at = position(b, rng, header), n = 1 + below(rng, 8);
      Bytes run(n);
      for (uint8_t& x : run) x = static_cast<uint8_t>(rng());
      if (!b.empty() && below(rng, 2) == 0) {
        const size_t from = below(rng, b.size());
        run.assign(b.begin() + static_cast<std::ptrdiff_t>(from),
                   b.begin() + static_cast<std::ptrdiff_t>(std::min(b.size(), from + 1 + below(rng, 64))));
      }
      b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), run.begin(), run.end());
      break;
    }
    case 3: {  // delete a run
      if (b.empty()) break;
      const size_t at = below(rng, b.size()), n = std::min(b.size() - at, 1 + below(rng, 16));
      b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
      break;
    }
    case 4:
    case 5: {  // an interesting integer, 1 to 8 bytes wide, either byte order, near the header
      const size_t width = size_t{1} << below(rng, 4);
      put_integer(b, position(b, rng, true), kInterestingIntegers[below(rng, kInterestingIntegers.size())], width,
                  below(rng, 2) == 0);
      break;
    }
    case 6:  // truncate
      b.resize(below(rng, b.size() + 1));
      break;
    case 7: {  // splice: this input's start with another's end
      const Bytes& other = pool[below(rng, pool.size())];
      const size_t cut = below(rng, b.size() + 1), from = below(rng, other.size() + 1);
      b.resize(cut);
      b.insert(b.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
      break;
    }
  }
}

void Mutator::edit_text(Bytes& b, std::mt19937_64& rng) const {
  const auto lines = lines_of(b);
  switch (below(rng, 5)) {
    case 0:
    case 1:  // a number at its type's edge, or one that overflows in a product
      replace_number(b, kInterestingNumbers[below(rng, kInterestingNumbers.size())], rng);
      break;
    case 2:  // a dictionary token anywhere
      if (!target_.dictionary.empty())
        insert_text(b, below(rng, b.size() + 1), target_.dictionary[below(rng, target_.dictionary.size())]);
      break;
    case 3: {  // repeat or drop a line
      if (lines.empty()) break;
      const auto [begin, end] = lines[below(rng, lines.size())];
      if (below(rng, 2) == 0) {
        const Bytes line(b.begin() + static_cast<std::ptrdiff_t>(begin), b.begin() + static_cast<std::ptrdiff_t>(end));
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(lines[below(rng, lines.size())].first), line.begin(),
                 line.end());
      } else {
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(begin), b.begin() + static_cast<std::ptrdiff_t>(end));
      }
      break;
    }
    case 4: {  // swap two lines
      if (lines.size() < 2) break;
      size_t i = below(rng, lines.size()), j = below(rng, lines.size());
      if (i == j) break;
      if (i > j) std::swap(i, j);
      const auto [bi, ei] = lines[i];
      const auto [bj, ej] = lines[j];
      Bytes out(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(bi));
      out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(bj), b.begin() + static_cast<std::ptrdiff_t>(ej));
      out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(ei), b.begin() + static_cast<std::ptrdiff_t>(bj));
      out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(bi), b.begin() + static_cast<std::ptrdiff_t>(ei));
      out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(ej), b.end());
      b = std::move(out);
      break;
    }
  }
}

}  // namespace dagger::fuzz
