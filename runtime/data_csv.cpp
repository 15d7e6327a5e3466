// CSV files: one example per row, its label first and then its pixels, comma-separated;
// the first row is a header when its first field is not a number.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string_view>

#include "dagger/graph/error.h"
#include "dagger/runtime/data_source.h"

namespace dagger::data_source {

namespace {

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

/// The value of a field, or false when it is not entirely a finite number.
bool parse_number(std::string_view field, double& out) {
  field = trimmed(field);
  if (!field.empty() && field.front() == '+') field.remove_prefix(1);
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), out);
  return ec == std::errc() && end == field.data() + field.size() && !field.empty() && std::isfinite(out);
}

/// The comma-separated fields of one line.
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  for (size_t pos = 0;;) {
    const size_t comma = line.find(',', pos);
    out.push_back(line.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    if (comma == std::string_view::npos) return out;
    pos = comma + 1;
  }
}

/// C, H, W for rows of `pixels` values: `requested` when given (its product must match),
/// else 1 x s x s when `pixels` is a square s*s.
std::vector<size_t> example_shape(const std::string& path, size_t pixels, const std::vector<size_t>& requested) {
  if (!requested.empty()) {
    if (requested.size() != 3)
      throw Error(
          fmt::format("'{}' needs an input shape of three sizes C,H,W, got {}", path, fmt::join(requested, ",")));
    const size_t product = checked_mul(checked_mul(requested[0], requested[1], path), requested[2], path);
    if (product != pixels) {
      throw Error(fmt::format("'{}' has {} pixels per row but --input-shape {} holds {}", path, pixels,
                              fmt::join(requested, ","), product));
    }
    return requested;
  }
  const auto side = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(pixels))));
  if (pixels == 0 || side * side != pixels) {
    throw Error(fmt::format("'{}' has {} pixels per row, not a square image; give its shape with --input-shape C,H,W",
                            path, pixels));
  }
  return {1, side, side};
}

}  // namespace

RawSet read_csv(const std::string& path, const std::vector<size_t>& csv_shape) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  RawSet set;
  set.images_file = set.labels_file = path;
  std::vector<float> values;
  size_t columns = 0, line_number = 0;
  bool all_bytes = true;  // every pixel an integer in 0..255
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = trimmed(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_number;
    if (line.empty()) continue;
    const std::vector<std::string_view> fields = fields_of(line);
    double label = 0;
    if (!parse_number(fields[0], label)) {
      if (line_number == 1) continue;  // a header row
      throw Error(fmt::format("'{}' line {}: label '{}' is not a number", path, line_number, trimmed(fields[0])));
    }
    if (columns == 0) columns = fields.size();
    if (fields.size() != columns || columns < 2) {
      throw Error(fmt::format("'{}' line {} has {} columns, expected {} (the label, then the pixels)", path,
                              line_number, fields.size(), std::max<size_t>(columns, 2)));
    }
    if (label != std::floor(label) || label < 0 || label >= kMaxClasses) {
      throw Error(fmt::format("'{}' line {}: label {} is not an integer in 0..{}", path, line_number,
                              trimmed(fields[0]), kMaxClasses - 1));
    }
    set.labels.push_back(static_cast<int>(label));
    for (size_t k = 1; k < fields.size(); ++k) {
      double v = 0;
      if (!parse_number(fields[k], v)) {
        throw Error(
            fmt::format("'{}' line {} column {}: '{}' is not a number", path, line_number, k + 1, trimmed(fields[k])));
      }
      all_bytes &= v == std::floor(v) && v >= 0 && v <= 255;
      values.push_back(static_cast<float>(v));
    }
  }
  if (set.labels.empty()) throw Error(fmt::format("'{}' holds no examples", path));
  RawImages& images = set.images;
  images.example_shape = example_shape(path, columns - 1, csv_shape);
  images.count = set.labels.size();
  if (all_bytes) {
    images.bytes.assign(values.begin(), values.end());
  } else {
    images.is_float = true;
    images.floats = std::move(values);
  }
  check_set(set);
  return set;
}

}  // namespace dagger::data_source
