#pragma once
/// Checkpoints: a folder with one .npy file (little-endian f32, C order, readable by numpy)
/// per named tensor and a manifest.json recording each tensor's name, file, shape, file size
/// and XXH3-64 checksum together with free-form metadata (model, epoch, optimizer, seed, ...).
/// See docs/checkpoints.md.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dagger/runtime/tensor.h"

namespace dagger {

/// Writes `tensors` and `meta` as a checkpoint folder `dir`, replacing any previous one.
/// Everything is first written to `dir`.tmp and fsynced, then renamed into place (the old
/// checkpoint moved to `dir`.old meanwhile), so an interrupted save leaves the old checkpoint
/// (or none) rather than a half-written one. Tensor names may
/// hold any characters; file names are derived from them ('/' becomes "__") and recorded in
/// the manifest. `texts` are further files (plain name -> contents, e.g. "model.dagger"),
/// listed in the manifest's "texts" with their sizes. Throws Error when the folder cannot be
/// written or a text's name is not a plain file name.
void save_checkpoint(const std::string& dir, const std::map<std::string, Tensor>& tensors, const nlohmann::json& meta,
                     const std::map<std::string, std::string>& texts = {});

/// Finishes what an interrupted save_checkpoint left: when `dir` is missing but `dir`.old holds
/// a complete checkpoint (the save stopped between its two renames), moves `dir`.old back into
/// place; removes a staging `dir`.tmp, and `dir`.old once `dir` is complete. Returns whether
/// `dir` now holds a checkpoint (a manifest). load_checkpoint calls it.
bool recover_checkpoint(const std::string& dir);

/// A loaded checkpoint.
struct Checkpoint {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> texts;  ///< the text files the manifest lists, by file name
  nlohmann::json meta;  ///< the object handed to save_checkpoint
  std::string dir;      ///< where it was loaded from, for messages
};

/// What load_checkpoint accepts beyond a verified checkpoint.
struct CheckpointLoadOptions {
  bool allow_nonfinite = false;  ///< accept tensors holding NaN or infinite values
};

/// Reads a checkpoint folder written by save_checkpoint. Throws Error naming the folder or
/// file for: a missing folder or manifest, a manifest that is not valid JSON, lacks fields or
/// has a version this build does not know, a listed file that is missing, of another size or
/// checksum than the manifest records (manifests of version 1 have no checksums: only sizes
/// are checked), not a little-endian f32 .npy, or of another shape than the manifest's; and,
/// unless `options` allow them, a tensor holding NaN or infinite values.
Checkpoint load_checkpoint(const std::string& dir, const CheckpointLoadOptions& options = {});

/// Checks that the checkpoint holds exactly the tensors in `expected_shapes`, each with that
/// shape. Throws one Error listing every missing, unexpected and mis-shaped tensor.
void check_compatible(const Checkpoint& checkpoint, const std::map<std::string, std::vector<size_t>>& expected_shapes);

}  // namespace dagger
