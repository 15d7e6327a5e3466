#include "dagger/runtime/checkpoint.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <set>
#include <sstream>

#include "dagger/graph/error.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/runtime/data_source.h"

namespace dagger {

namespace fs = std::filesystem;

namespace {

// The .npy files store little-endian floats and are written straight from memory.
static_assert(std::endian::native == std::endian::little, "checkpoint files assume a little-endian host");

constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "dagger-checkpoint";
// Version 2 records each file's XXH3-64 checksum; version 1 manifests (sizes only) still load.
constexpr int kVersion = 2;
constexpr int kFirstVersionWithChecksums = 2;
constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;

using Shape = std::vector<size_t>;

Shape shape_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end()); }

std::string shape_text(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---- .npy files --------------------------------------------------------------------------

/// The header dictionary numpy writes, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
std::string npy_header(const Shape& shape) {
  std::string dims;
  for (size_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // "(2, 3)" but "(5,)" and "()"
  else if (shape.size() == 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // numpy pads the header with spaces so the data starts on a 64-byte boundary.
  const size_t prefix = kNpyMagicSize + 2 + 2;
  header.append(63 - (prefix + header.size()) % 64, ' ');
  return header + '\n';
}

/// XXH3-64 of the concatenated parts, as 16 hex digits.
std::string checksum(std::initializer_list<std::string_view> parts) {
  const std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), XXH3_freeState);
  if (!state) throw std::bad_alloc();
  XXH3_64bits_reset(state.get());
  for (std::string_view part : parts) XXH3_64bits_update(state.get(), part.data(), part.size());
  return fmt::format("{:016x}", XXH3_64bits_digest(state.get()));
}

/// Writes a file of the checkpoint and returns what the manifest records of it: its size and checksum.
nlohmann::json write_listed_file(const fs::path& path, std::initializer_list<std::string_view> parts) {
  write_file_synced(path.string(), parts);
  size_t bytes = 0;
  for (std::string_view part : parts) bytes += part.size();
  return {{"bytes", bytes}, {"xxh3", checksum(parts)}};
}

nlohmann::json write_npy(const fs::path& path, const Tensor& t) {
  const std::string header = npy_header(shape_of(t));
  const char version_and_length[4] = {1, 0, static_cast<char>(header.size() & 0xff),
                                      static_cast<char>(header.size() >> 8)};
  return write_listed_file(path,
                           {std::string_view(kNpyMagic, kNpyMagicSize), std::string_view(version_and_length, 4), header,
                            std::string_view(reinterpret_cast<const char*>(t.data()), t.size() * sizeof(float))});
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw Error(fmt::format("cannot read checkpoint file '{}'", path.string()));
  return bytes.str();
}

/// The text after `'key':` in an npy header dictionary, or throws naming the file.
std::string_view header_value(std::string_view header, std::string_view key, const fs::path& path) {
  const std::string quoted = "'" + std::string(key) + "':";
  const size_t at = header.find(quoted);
  if (at == std::string_view::npos) {
    throw Error(fmt::format("'{}' is not a valid .npy file: its header has no '{}'", path.string(), key));
  }
  std::string_view rest = header.substr(at + quoted.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return rest;
}

Shape parse_npy_shape(std::string_view value, const fs::path& path) {
  const size_t close = value.find(')');
  if (value.empty() || value.front() != '(' || close == std::string_view::npos) {
    throw Error(fmt::format("'{}' is not a valid .npy file: unreadable shape", path.string()));
  }
  Shape shape;
  std::istringstream dims(std::string(value.substr(1, close - 1)));
  std::string item;
  while (std::getline(dims, item, ',')) {
    item.erase(std::remove(item.begin(), item.end(), ' '), item.end());
    if (item.empty()) continue;  // the trailing comma of "(5,)"
    // 19 digits always fit in 64 bits; longer ones are not a size stoull could read.
    if (item.size() > 19 || !std::all_of(item.begin(), item.end(), [](unsigned char c) { return std::isdigit(c); })) {
      throw Error(fmt::format("'{}' is not a valid .npy file: bad dimension '{}'", path.string(), item));
    }
    shape.push_back(std::stoull(item));
  }
  return shape;
}

/// Parses the bytes of a little-endian f32 C-order .npy file read from `path`, checking every byte is accounted for.
Tensor parse_npy(const std::string& bytes, const fs::path& path) {
  const auto fail = [&](const std::string& why) {
    return Error(fmt::format("'{}' is not a valid .npy file: {}", path.string(), why));
  };
  if (bytes.size() < kNpyMagicSize + 4 || bytes.compare(0, kNpyMagicSize, kNpyMagic) != 0) throw fail("bad magic");
  const auto byte = [&](size_t i) { return static_cast<size_t>(static_cast<unsigned char>(bytes[i])); };
  // Version 1 stores the header length in two bytes; versions 2 and 3 in four.
  const size_t major = byte(kNpyMagicSize);
  if (major < 1 || major > 3) throw fail(fmt::format("unsupported version {}", major));
  const size_t length_size = major == 1 ? 2 : 4;
  if (bytes.size() < kNpyMagicSize + 2 + length_size) throw fail("truncated header");
  size_t header_size = 0;
  for (size_t i = 0; i < length_size; ++i) header_size |= byte(kNpyMagicSize + 2 + i) << (8 * i);
  const size_t data_start = kNpyMagicSize + 2 + length_size + header_size;
  if (bytes.size() < data_start) throw fail("truncated header");
  const std::string_view header(bytes.data() + data_start - header_size, header_size);

  if (!header_value(header, "descr", path).starts_with("'<f4'")) throw fail("only little-endian float32 ('<f4') is supported");
  if (!header_value(header, "fortran_order", path).starts_with("False")) throw fail("Fortran order is not supported");
  const Shape shape = parse_npy_shape(header_value(header, "shape", path), path);
  // The shape is checked against the file's size before anything of its size is allocated.
  size_t count = 1;
  for (size_t d : shape) count = data_source::checked_mul(count, d, path.string());
  const size_t expected = data_source::checked_mul(count, sizeof(float), path.string()) + data_start;
  if (bytes.size() != expected || expected < data_start) {
    throw Error(fmt::format("'{}' is truncated or padded: expected {} bytes for shape {}, got {}", path.string(),
                            expected, shape_text(shape), bytes.size()));
  }
  Tensor t = Tensor::from_shape(shape);
  std::copy_n(bytes.data() + data_start, t.size() * sizeof(float), reinterpret_cast<char*>(t.data()));
  return t;
}

// ---- File names --------------------------------------------------------------------------

/// A readable file name for a tensor name: letters, digits, '.', '-' and '_' are kept, '/'
/// becomes "__" and anything else %XX, so names never leave the folder.
std::string file_stem(const std::string& name) {
  std::string stem;
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_') stem += static_cast<char>(c);
    else if (c == '/') stem += "__";
    else stem += fmt::format("%{:02X}", c);
  }
  return stem.empty() ? "_" : stem;
}

/// Gives every tensor its own file, numbering the rare names whose stems collide ("a/b" and "a__b").
std::map<std::string, std::string> assign_files(const std::map<std::string, Tensor>& tensors) {
  std::map<std::string, std::string> files;
  std::set<std::string> taken;
  for (const auto& [name, tensor] : tensors) {
    const std::string stem = file_stem(name);
    std::string file = stem + ".npy";
    for (int k = 2; taken.count(file); ++k) file = fmt::format("{}~{}.npy", stem, k);
    taken.insert(file);
    files[name] = file;
  }
  return files;
}

/// The folder path without a trailing separator, so "ck/" gets its sibling "ck.tmp".
fs::path folder_path(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

/// Throws unless `file` names a file inside the folder (no separators, not "." or "..").
void require_plain_name(const fs::path& folder, const std::string& what, const std::string& file) {
  if (file.empty() || file == "." || file == ".." || file.find_first_of("/\\") != std::string::npos) {
    throw Error(fmt::format("checkpoint '{}' gives {} the file name '{}', which is not a plain file name",
                            folder.string(), what, file));
  }
}

/// Writes the text files and lists them for the manifest.
nlohmann::json write_texts(const fs::path& folder, const std::map<std::string, std::string>& texts) {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& [file, contents] : texts) {
    require_plain_name(folder, "a text", file);
    if (file == kManifest || file.ends_with(".npy"))
      throw Error(fmt::format("checkpoint text '{}' would clash with the manifest or a tensor file", file));
    nlohmann::json entry = {{"file", file}};
    entry.update(write_listed_file(folder / file, {contents}));
    entries.push_back(std::move(entry));
  }
  return entries;
}

/// Writes the whole checkpoint into `folder`, the manifest last, and syncs the folder.
void write_folder(const fs::path& folder, const std::map<std::string, Tensor>& tensors, const nlohmann::json& meta,
                  const std::map<std::string, std::string>& texts) {
  fs::create_directories(folder);
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& [name, file] : assign_files(tensors)) {
    const Tensor& t = tensors.at(name);
    nlohmann::json entry = {{"name", name}, {"file", file}, {"dtype", "<f4"}, {"shape", shape_of(t)}};
    entry.update(write_npy(folder / file, t));
    entries.push_back(std::move(entry));
  }
  nlohmann::json manifest = {{"format", kFormat}, {"version", kVersion}, {"meta", meta}, {"tensors", entries}};
  if (!texts.empty()) manifest["texts"] = write_texts(folder, texts);
  write_file_synced((folder / kManifest).string(), {manifest.dump(2), "\n"});
  sync_folder(folder.string());
}

/// The folder holding `folder`, "." for a relative name without one.
fs::path parent_of(const fs::path& folder) { return folder.has_parent_path() ? folder.parent_path() : fs::path("."); }

/// `folder` with `suffix` appended to its name: the staging (".tmp") and previous (".old") folders.
fs::path sibling(const fs::path& folder, const char* suffix) {
  fs::path p = folder;
  p += suffix;
  return p;
}

// ---- Loading -----------------------------------------------------------------------------

/// The manifest of `folder`, checked to be a dagger checkpoint's of a version this build reads.
nlohmann::json read_manifest(const fs::path& folder) {
  if (!fs::is_directory(folder)) throw Error(fmt::format("no checkpoint folder '{}'", folder.string()));
  const fs::path path = folder / kManifest;
  if (!fs::exists(path)) throw Error(fmt::format("checkpoint '{}' has no {}", folder.string(), kManifest));
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is not valid JSON: {}", path.string(), e.what()));
  }
  const auto field = [&](const char* key) {
    return manifest.is_object() ? manifest.value(key, nlohmann::json()) : nlohmann::json();
  };
  if (field("format") != kFormat) throw Error(fmt::format("'{}' is not a dagger checkpoint manifest", path.string()));
  const nlohmann::json version = field("version");
  if (!version.is_number_integer() || version.get<int64_t>() < 1 || version.get<int64_t>() > kVersion)
    throw Error(fmt::format("'{}' has manifest version {}; this build reads versions 1 to {}", path.string(),
                            version.dump(), kVersion));
  return manifest;
}

/// Reads the file a manifest entry lists and checks it against the size, and when the
/// manifest has them the checksum, the entry records. `what` names the file's role in messages.
std::string read_listed_file(const fs::path& folder, const nlohmann::json& entry, bool has_checksums,
                             const std::string& what) {
  const std::string file = entry.at("file").get<std::string>();
  require_plain_name(folder, what, file);
  const fs::path path = folder / file;
  if (!fs::is_regular_file(path)) throw Error(fmt::format("checkpoint file '{}' ({}) is missing", path.string(), what));
  const std::string bytes = read_file(path);
  const uintmax_t expected = entry.at("bytes").get<uintmax_t>();
  if (bytes.size() != expected) {
    throw Error(fmt::format("checkpoint file '{}' is truncated or altered: the manifest says {} bytes, the file has {}",
                            path.string(), expected, bytes.size()));
  }
  if (has_checksums) {
    const std::string recorded = entry.at("xxh3").get<std::string>(), actual = checksum({bytes});
    if (actual != recorded)
      throw Error(
          fmt::format("checkpoint '{}': file '{}': checksum mismatch (corrupt or edited): the manifest "
                      "records XXH3 {}, the file has {}",
                      folder.string(), file, recorded, actual));
  }
  return bytes;
}

/// Loads one manifest entry's tensor, checking the file against what the manifest recorded.
Tensor load_entry(const fs::path& folder, const std::string& name, const nlohmann::json& entry, bool has_checksums) {
  const std::string what = fmt::format("tensor '{}'", name);
  const fs::path path = folder / entry.at("file").get<std::string>();
  Tensor t = parse_npy(read_listed_file(folder, entry, has_checksums, what), path);
  const Shape shape = entry.at("shape").get<Shape>();
  if (shape_of(t) != shape) {
    throw Error(fmt::format("checkpoint file '{}' holds shape {} but the manifest says {}", path.string(),
                            shape_text(shape_of(t)), shape_text(shape)));
  }
  return t;
}

/// Throws unless every value of the tensor is finite, counting the NaN and infinite ones.
void require_finite(const fs::path& folder, const std::string& name, const Tensor& t) {
  size_t nans = 0, infinities = 0;
  for (const float v : t) {
    nans += std::isnan(v);
    infinities += std::isinf(v);
  }
  if (nans + infinities == 0) return;
  throw Error(fmt::format(
      "checkpoint '{}': tensor '{}' holds {} non-finite value{} ({} NaN, {} infinite) of {}; "
      "load it with allow_nonfinite (dagger: --allow-nonfinite) to accept them",
      folder.string(), name, nans + infinities, nans + infinities == 1 ? "" : "s", nans, infinities, t.size()));
}

}  // namespace

void save_checkpoint(const std::string& dir, const std::map<std::string, Tensor>& tensors, const nlohmann::json& meta,
                     const std::map<std::string, std::string>& texts) {
  const fs::path target = folder_path(dir), staging = sibling(target, ".tmp"), previous = sibling(target, ".old");
  try {
    fs::remove_all(staging);
    write_folder(staging, tensors, meta, texts);
    // Swap by renames: at every moment either the old or the new checkpoint is complete, and
    // recover_checkpoint finishes a swap a kill interrupted.
    fs::remove_all(previous);
    if (fs::exists(target)) fs::rename(target, previous);
    fs::rename(staging, target);
    sync_folder(parent_of(target).string());
    fs::remove_all(previous);
  } catch (const std::exception& e) {  // a file that cannot be written (Error) or a folder (filesystem_error)
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw Error(fmt::format("cannot save checkpoint '{}': {}", target.string(), e.what()));
  }
}

bool recover_checkpoint(const std::string& dir) {
  const fs::path folder = folder_path(dir), staging = sibling(folder, ".tmp"), previous = sibling(folder, ".old");
  std::error_code ec;
  // A staging folder is never read: a save that was interrupted before its renames writes it again.
  fs::remove_all(staging, ec);
  if (!fs::exists(folder / kManifest) && !fs::exists(folder) && fs::exists(previous / kManifest))
    fs::rename(previous, folder, ec);
  // The swap finished but the previous checkpoint was not yet removed.
  if (fs::exists(folder / kManifest)) fs::remove_all(previous, ec);
  return fs::exists(folder / kManifest);
}

Checkpoint load_checkpoint(const std::string& dir, const CheckpointLoadOptions& options) {
  recover_checkpoint(dir);
  const fs::path folder = folder_path(dir);
  const nlohmann::json manifest = read_manifest(folder);
  const bool has_checksums = manifest.at("version").get<int64_t>() >= kFirstVersionWithChecksums;
  Checkpoint ck;
  ck.dir = folder.string();
  try {
    ck.meta = manifest.value("meta", nlohmann::json::object());
    const nlohmann::json& entries = manifest.at("tensors");
    if (!entries.is_array()) throw Error(fmt::format("'{}' has no list of tensors", (folder / kManifest).string()));
    for (const nlohmann::json& entry : entries) {
      const std::string name = entry.at("name").get<std::string>();
      if (ck.tensors.count(name)) throw Error(fmt::format("checkpoint '{}' lists tensor '{}' twice", ck.dir, name));
      Tensor t = load_entry(folder, name, entry, has_checksums);
      if (!options.allow_nonfinite) require_finite(folder, name, t);
      ck.tensors[name] = std::move(t);
    }
    for (const nlohmann::json& entry : manifest.value("texts", nlohmann::json::array())) {
      const std::string file = entry.at("file").get<std::string>();
      ck.texts[file] = read_listed_file(folder, entry, has_checksums, "a text");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is malformed: {}", (folder / kManifest).string(), e.what()));
  }
  return ck;
}

void check_compatible(const Checkpoint& checkpoint, const std::map<std::string, std::vector<size_t>>& expected_shapes) {
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, shape] : expected_shapes) {
    const auto it = checkpoint.tensors.find(name);
    if (it == checkpoint.tensors.end()) missing.push_back(name);
    else if (shape_of(it->second) != shape) {
      misshaped.push_back(fmt::format("{} is {} in the checkpoint but {} in the model", name,
                                      shape_text(shape_of(it->second)), shape_text(shape)));
    }
  }
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (!expected_shapes.count(name)) unexpected.push_back(name);
  }
  if (missing.empty() && unexpected.empty() && misshaped.empty()) return;

  std::string message = fmt::format("checkpoint '{}' does not fit the model", checkpoint.dir);
  const auto list = [&](const char* what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    message += fmt::format("; {}: ", what);
    for (size_t i = 0; i < items.size(); ++i) message += (i ? ", " : "") + items[i];
  };
  list("missing tensors", missing);
  list("unexpected tensors", unexpected);
  list("shape mismatches", misshaped);
  throw Error(message);
}

}  // namespace dagger
