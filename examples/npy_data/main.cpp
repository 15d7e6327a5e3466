// A model for data that is not Fashion-MNIST: images of any size and channel count and any
// number of classes, read from NumPy files (train_x.npy, train_y.npy, test_x.npy, test_y.npy).
// The layers take their sizes from the data; a fifth of the training images validate.
//
//   npy_data DATA_DIR [EPOCHS]
#include <dagger/dagger.h>

#include <cstdio>
#include <string>

using namespace dagger;

// Two blocks of a 3x3 convolution, ReLU and 2x2 max pooling, then a hidden dense layer and the
// head: the flattened width follows the images' size, the head's the class count.
Value any_shape_cnn(Model& m, Value x) {
  x = maxpool(relu(m.conv2d(x, 16, 3)), 2);
  x = maxpool(relu(m.conv2d(x, 32, 3)), 2);
  x = relu(m.dense(flatten(x), 64));
  return m.dense(x, m.classes());
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATA_DIR [EPOCHS]\n", argv[0]);
    return 2;
  }
  try {
    SplitOptions data_options;
    data_options.dir = argv[1];
    data_options.val_fraction = 0.2;
    const Splits data = load_data(data_options);
    const std::vector<size_t> shape = data.train.example_shape();

    TrainConfig config;
    config.input_shape = Shape(shape.begin(), shape.end());
    config.classes = static_cast<int64_t>(data.train.class_count());
    config.class_names = data.train.class_labels();
    config.epochs = argc > 2 ? std::stoi(argv[2]) : 5;
    config.threads = 2;
    config.progress = false;
    std::printf("%zu training images of %zux%zux%zu in %lld classes\n", data.train.size(), shape[0], shape[1],
                shape[2], static_cast<long long>(config.classes));

    Trainer trainer(any_shape_cnn, config);
    trainer.fit(data.train, data.val);
    const ClassificationReport test = trainer.evaluate(data.test).report;
    std::printf("test accuracy %.4f, weighted F1 %.4f\n", test.accuracy, test.f1);
    for (size_t k = 0; k < test.classes(); ++k)
      std::printf("  %-12s precision %.3f  recall %.3f  (%zu images)\n", test.class_names[k].c_str(),
                  test.class_precision[k], test.class_recall[k], test.support[k]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
