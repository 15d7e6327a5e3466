// The fuzz targets: each hands one input to the parsers of one format, the way dagger reads it.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dagger/autodiff/model_text.h"
#include "dagger/graph/error.h"
#include "dagger/graph/parser.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/data_source.h"
#include "dagger/runtime/trainer.h"
#include "fuzz.h"

namespace dagger::fuzz {

namespace fs = std::filesystem;

namespace {

void write_file(const std::string& path, const Bytes& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("dagger-fuzz cannot write " + path);
  const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  if (std::fclose(f) != 0 || written != bytes.size()) throw std::runtime_error("dagger-fuzz cannot write " + path);
}

std::string_view as_text(const Bytes& bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

/// Runs one parse: true when it succeeds, false when it ends in a user error. Anything else
/// escapes to the harness.
template <class F>
bool attempt(F&& parse) {
  try {
    parse();
    return true;
  } catch (const Error&) {
    return false;
  }
}

/// The IDX readers: the input as an image file and as a label file.
Target idx_target(const std::string& scratch) {
  const std::string file = scratch + "/train-images-idx3-ubyte";
  return {"idx",
          "IDX images and labels, gzip-compressed or plain (runtime/data_idx.cpp)",
          false,
          {},
          [file](const Bytes& input) {
            write_file(file, input);
            const bool images = attempt([&] { data_source::read_idx_images(file); });
            const bool labels = attempt([&] { data_source::read_idx(file, file); });
            return images || labels;
          }};
}

/// A .npy header is a Python dict in text: its numbers and tokens are mutated as text too.
const std::vector<std::string> kNpyTokens = {
    "'shape': (", "'descr': '<f4'", "'fortran_order': True", "(", ")", ",", " ", "'", "{", "}", "\n", "0, ", "<i8",
    "|u1"};

/// The .npy data readers: the input as an image array and as a label array.
Target npy_target(const std::string& scratch) {
  const std::string file = scratch + "/train_x.npy";
  return {"npy", ".npy image and label arrays (runtime/data_npy.cpp)", true, kNpyTokens, [file](const Bytes& input) {
            write_file(file, input);
            const bool images = attempt([&] { data_source::read_npy_images(file); });
            const bool labels = attempt([&] { data_source::read_npy(file, file); });
            return images || labels;
          }};
}

/// The CSV reader, with the pixel count's own square shape and with an explicit one.
Target csv_target(const std::string& scratch) {
  const std::string file = scratch + "/train.csv";
  return {"csv",
          "CSV rows of a label and pixels (runtime/data_csv.cpp)",
          true,
          {",", "\n", "-", ".", "e", "label,"},
          [file](const Bytes& input) {
            write_file(file, input);
            const bool square = attempt([&] { data_source::read_csv(file, {}); });
            const bool shaped = attempt([&] { data_source::read_csv(file, {1, 2, 2}); });
            return square || shaped;
          }};
}

/// What a checkpoint's metadata drives besides the tensors: its model text, parsed.
bool read_metadata(const Checkpoint& checkpoint) {
  return attempt([&] {
    const std::string text = checkpoint_model_text(checkpoint);
    if (!text.empty()) parse_model(text, checkpoint.dir + "/model.dagger");
  });
}

/// A checkpoint folder whose manifest.json is the input; its tensor and text files are the
/// fixtures (a trained `shallow`), so manifests that name them reach the .npy reader and the
/// model text.
Target manifest_target(const std::string& scratch, const std::string& fixtures) {
  const std::string dir = scratch + "/checkpoint";
  fs::create_directories(dir);
  for (const fs::directory_entry& e : fs::directory_iterator(fixtures + "/checkpoint"))
    fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  return {"manifest",
          "a checkpoint's manifest.json and the metadata read from it (runtime/checkpoint.cpp, runtime/trainer.cpp)",
          true,
          {"\"", "{", "}", "[", "]", ",", ":", "null", "true", "-1", "1e999", "\"bytes\": ", "\"shape\": [", "\\u0000"},
          [dir](const Bytes& input) {
            write_file(dir + "/manifest.json", input);
            Checkpoint checkpoint;
            if (!attempt([&] { checkpoint = load_checkpoint(dir); })) return false;
            return read_metadata(checkpoint);
          }};
}

/// A checkpoint whose one tensor file is the input, listed in the manifest with its true size
/// so that the input reaches the checkpoint's own .npy reader. The manifest is made a version 1
/// one, which records no checksums (and still loads), so that a changed file is not refused by
/// its checksum before it is parsed.
Target checkpoint_npy_target(const std::string& scratch) {
  const std::string dir = scratch + "/npy-checkpoint";
  save_checkpoint(dir, {{"w", Tensor::from_shape({2, 3})}}, nlohmann::json::object());
  std::ifstream in(dir + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  manifest["version"] = 1;
  return {"checkpoint-npy", "a checkpoint's tensor file (.npy, runtime/checkpoint.cpp)", true, kNpyTokens,
          [dir, manifest](const Bytes& input) mutable {
            const std::string file = manifest["tensors"][0]["file"].get<std::string>();
            write_file(dir + "/" + file, input);
            manifest["tensors"][0]["bytes"] = input.size();
            std::ofstream(dir + "/manifest.json") << manifest.dump();
            return attempt([&] { load_checkpoint(dir); });
          }};
}

Target model_text_target() {
  return {"model-text",
          "model texts, the dagger-model format (autodiff/model_text.cpp)",
          true,
          {"N",
           "%",
           "[",
           "]",
           "(",
           ")",
           "{",
           "}",
           ",",
           "=",
           "\"",
           "#",
           "mode train\n",
           "mode eval\n",
           "-1",
           "output logits = %1\n",
           "reshape",
           "matmul",
           "conv2d",
           "parameter",
           "assign",
           "shape=[",
           ":"},
          [](const Bytes& input) { return attempt([&] { parse_model(as_text(input), "fuzz.dagger"); }); }};
}

Target ir_target() {
  return {"ir",
          "the textual IR of dagger ir --stage graph/grad (graph/parser.cpp), N = 2",
          true,
          {"N",       "%",      "[",      "]",         "(",          ")",         "{",
           "}",       ",",      "=",      "\"",        "#",          "-1",        "output loss = %1\n",
           "reshape", "matmul", "conv2d", "transpose", "reduce_sum", "broadcast", "assign",
           "shape=[", "perm=[", ":"},
          [](const Bytes& input) {
            return attempt([&] { parse_text(as_text(input), {.source = "fuzz.ir", .batch = 2}); });
          }};
}

}  // namespace

std::vector<Target> make_targets(const std::string& scratch, const std::string& fixtures) {
  return {idx_target(scratch),
          npy_target(scratch),
          csv_target(scratch),
          manifest_target(scratch, fixtures),
          checkpoint_npy_target(scratch),
          model_text_target(),
          ir_target()};
}

}  // namespace dagger::fuzz
