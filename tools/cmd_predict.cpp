// `dagger predict`: classifies image files with the model a checkpoint carries.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "dagger/runtime/data.h"
#include "dagger/runtime/image.h"
#include "dagger/runtime/trainer.h"
#include "tools/cli.h"

namespace dagger::cli {

namespace {

/// The images of the files, in order, shaped for the model: [n, C, H, W], with one label per
/// image ("FILE" for a PNG, "FILE[i]" for the i-th image of a .npy or IDX batch).
struct Inputs {
  Tensor images;
  std::vector<std::string> names;
};

bool is_png(const std::string& file) {
  char magic[8] = {};
  std::ifstream(file, std::ios::binary).read(magic, sizeof magic);
  return std::string_view(magic, sizeof magic) == "\x89PNG\r\n\x1a\n";
}

/// One image or a batch from `file`, as [n, C, H, W] in the model's pixel scale.
Tensor read_file(const std::string& file, bool png, const Shape& shape, bool scale, bool resize) {
  if (!png) return load_images(file, scale);
  Tensor image = read_png(file, shape[0], scale);
  if (image.shape(1) != static_cast<size_t>(shape[1]) || image.shape(2) != static_cast<size_t>(shape[2])) {
    if (!resize)
      throw Error(fmt::format("'{}' is {}x{} pixels but the model takes {}x{}; pass --resize to scale it", file,
                              image.shape(2), image.shape(1), shape[2], shape[1]));
    image = resize_bilinear(image, shape[1], shape[2]);
  }
  image.reshape({1, image.shape(0), image.shape(1), image.shape(2)});
  return image;
}

Inputs read_inputs(const std::vector<std::string>& files, const Shape& shape, bool scale, bool resize) {
  std::vector<Tensor> parts;
  Inputs in;
  for (const std::string& file : files) {
    const bool png = is_png(file);
    Tensor part = read_file(file, png, shape, scale, resize);
    const Shape got(part.shape().begin() + 1, part.shape().end());
    if (got != shape)
      throw Error(fmt::format("'{}' holds images of shape {} but the model takes {}", file, to_string(got),
                              to_string(shape)));
    const size_t n = part.shape(0);
    for (size_t i = 0; i < n; ++i) in.names.push_back(png ? file : fmt::format("{}[{}]", file, i));
    parts.push_back(std::move(part));
  }
  const size_t per_image = static_cast<size_t>(numel(shape));
  std::vector<size_t> all = {in.names.size()};
  all.insert(all.end(), shape.begin(), shape.end());
  in.images = Tensor::from_shape(all);
  auto out = in.images.begin();
  for (const Tensor& part : parts) out = std::copy_n(part.begin(), part.shape(0) * per_image, out);
  return in;
}

/// The `k` most probable classes of row `row`, most probable first (ties: lower class id).
std::vector<int> top_classes(const Tensor& probs, size_t row, int k) {
  std::vector<int> order(probs.shape(1));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs(row, a) > probs(row, b); });
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(k)));
  return order;
}

}  // namespace

Run add_predict(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict",
                                 "classify PNG images, .npy batches or IDX image files with a checkpoint's model");
  struct Flags {
    std::string checkpoint, executor = "jit", precision = "f32";
    std::vector<std::string> files;
    int top = 3, threads = 1;
    int64_t batch = 256;
    bool json = false, resize = false, allow_nonfinite = false;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--checkpoint", f->checkpoint, "checkpoint folder (e.g. OUT/checkpoint or OUT/best)")
      ->required()
      ->check(kExistingFolder);
  cmd->add_option("files", f->files, "PNG images (8-bit or 16-bit, gray or colour), .npy arrays, IDX image files")
      ->required()
      ->check(kExistingFile);
  cmd->add_option("--top", f->top, "how many classes to print per image")->check(at_least(1))->capture_default_str();
  cmd->add_flag("--resize", f->resize, "resize PNG images of another size to the model's (bilinear)");
  cmd->add_option("--batch", f->batch, "images per inference step")->check(at_least(1))->capture_default_str();
  cmd->add_option("--threads", f->threads, "worker threads of the JIT")->check(kThreads)->capture_default_str();
  cmd->add_option("--executor", f->executor, "reference | jit")->check(kExecutor)->capture_default_str();
  add_precision(*cmd, f->precision);
  cmd->add_flag("--json", f->json, "print one JSON object instead of the table");
  add_allow_nonfinite(*cmd, f->allow_nonfinite);
  return [f] {
    TrainConfig options;
    options.executor = executor_kind(f->executor);
    options.threads = f->threads;
    options.precision = read_precision(f->precision, options.executor);
    options.eval_batch = f->batch;
    options.progress = false;
    options.allow_nonfinite = f->allow_nonfinite;
    Trainer model = Trainer::load(f->checkpoint, options);
    const TrainConfig& cfg = model.config();
    const Inputs in = read_inputs(f->files, cfg.input_shape, !cfg.raw_pixels, f->resize);
    const Tensor probs = model.predict(in.images);
    const auto name = [&](int c) {
      return static_cast<size_t>(c) < cfg.class_names.size() ? cfg.class_names[c] : std::to_string(c);
    };
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < in.names.size(); ++i) {
      nlohmann::json top = nlohmann::json::array();
      std::string line = in.names[i] + ":";
      for (int c : top_classes(probs, i, f->top)) {
        top.push_back({{"class", name(c)}, {"index", c}, {"probability", probs(i, c)}});
        line += fmt::format("  {} {:.4f}", name(c), probs(i, c));
      }
      out.push_back({{"input", in.names[i]}, {"top", top}});
      if (!f->json) fmt::print("{}\n", line);
    }
    if (f->json) fmt::print("{}\n", nlohmann::json{{"checkpoint", f->checkpoint}, {"predictions", out}}.dump());
    return 0;
  };
}

}  // namespace dagger::cli
