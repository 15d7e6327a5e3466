// Loads a checkpoint (of any model: the checkpoint carries the model's text) and classifies
// PNG images with it, printing each image's most likely class and its probability. Images of
// another size are resized to the model's input; colour becomes gray for a one-channel model.
//
//   classify CHECKPOINT_DIR IMAGE.png...
#include <dagger/dagger.h>

#include <algorithm>
#include <cstdio>

using namespace dagger;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR IMAGE.png...\n", argv[0]);
    return 2;
  }
  try {
    Trainer model = Trainer::load(argv[1]);
    const Shape& shape = model.config().input_shape;  // [channels, height, width]
    const size_t n = static_cast<size_t>(argc - 2), per_image = static_cast<size_t>(numel(shape));
    Tensor batch = Tensor::from_shape({n, static_cast<size_t>(shape[0]), static_cast<size_t>(shape[1]),
                                       static_cast<size_t>(shape[2])});
    for (size_t i = 0; i < n; ++i) {
      Tensor image = read_png(argv[i + 2], shape[0]);
      if (image.shape(1) != static_cast<size_t>(shape[1]) || image.shape(2) != static_cast<size_t>(shape[2]))
        image = resize_bilinear(image, shape[1], shape[2]);
      std::copy(image.begin(), image.end(), batch.begin() + i * per_image);
    }
    const Tensor probs = model.predict(batch);
    const std::vector<int> best_classes = argmax_rows(probs);
    const std::vector<std::string>& names = model.config().class_names;
    for (size_t i = 0; i < n; ++i) {
      const int best = best_classes[i];
      const std::string name = best < static_cast<int>(names.size()) ? names[best] : std::to_string(best);
      std::printf("%s: %s (%.3f)\n", argv[i + 2], name.c_str(), probs(i, best));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
