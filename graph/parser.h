#pragma once
/// Reads the text print_text writes back into a Graph: the inverse of the printer, for model
/// files and checkpoints. Every line is checked as Graph::add checks a node, and a mistake is a
/// dagger::Error naming the source, the line and what is wrong; no input makes it crash.
///
/// Grammar, one item per line (blank lines and lines starting with '#' are skipped):
///   %ID = OP(%A, %B, ...) {KEY=VALUE, ...} : [D0,D1,...]  # SCOPE [@ FILE:LINE]
///   OP(%A) {KEY=VALUE, ...} : [D0,...]                     (an assign, which has no result)
///   output NAME = %ID
/// IDs count up from 0 in order; operands must be defined above their user. VALUE is an
/// integer, a number with '.', 'e', "inf" or "nan", an integer list [1,-1,3] or a "string"
/// (with \" \\ and \n escapes). A dimension written N stands for ParseOptions::batch. The
/// comment's scope is kept; the source location after '@' is dropped (parsed nodes point at
/// the parser).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dagger/graph/graph.h"

namespace dagger {

struct ParseOptions {
  std::string source = "<text>";  ///< file name the messages start with
  int first_line = 1;             ///< line number of the text's first line within `source`
  std::optional<int64_t> batch;   ///< what the dimension N stands for; without it N is an error
};

/// The largest element count a parsed shape may have (2^31): larger numbers are rejected as
/// bad shapes rather than left to overflow later.
inline constexpr int64_t kMaxParsedElements = int64_t{1} << 31;

/// Parses a graph printed by print_text. Throws dagger::Error "SOURCE:LINE: what is wrong" for
/// an unknown op, a wrong operand count, a malformed or mismatching shape, an operand that is
/// not defined above, a node ID out of sequence, two sources with one name, or bad syntax.
Graph parse_text(std::string_view text, const ParseOptions& options = {});

}  // namespace dagger
