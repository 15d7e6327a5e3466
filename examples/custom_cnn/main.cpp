// A convolutional network that is not in dagger's zoo, declared in plain C++, trained on
// Fashion-MNIST with early stopping and a per-epoch callback, scored on the test set, and saved
// as a checkpoint that `dagger eval` and `dagger predict` use without this program.
//
//   custom_cnn DATA_DIR OUT_DIR [EPOCHS [TRAIN_LIMIT]]
#include <dagger/dagger.h>

#include <cstdio>
#include <string>

using namespace dagger;

// A 5x5 convolution with batch norm, leaky ReLU and max pooling, then a 3x3 convolution with
// stride 2 and no padding, and a dense head as wide as the data has classes.
Value small_cnn(Model& m, Value x) {
  x = leaky_relu(m.batchnorm(m.conv2d(x, 16, 5)), 0.1f);               // [N, 16, 28, 28]
  x = maxpool(x, 2);                                                   // [N, 16, 14, 14]
  x = leaky_relu(m.batchnorm(m.conv2d(x, 32, 3, Pad::valid, 2)), 0.1f);  // [N, 32, 6, 6]
  x = m.dropout(flatten(x), 0.2f);
  return m.dense(x, m.classes());
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s DATA_DIR OUT_DIR [EPOCHS [TRAIN_LIMIT]]\n", argv[0]);
    return 2;
  }
  try {
    SplitOptions data_options;
    data_options.dir = argv[1];
    data_options.train_limit = argc > 4 ? std::stoul(argv[4]) : 0;
    data_options.val_limit = data_options.test_limit = data_options.train_limit / 4;
    const Splits data = load_data(data_options);

    TrainConfig config;
    config.epochs = argc > 3 ? std::stoi(argv[3]) : 10;
    config.patience = 3;  // stop after 3 epochs without a lower validation loss; keep the best weights
    config.threads = 2;
    config.out_dir = argv[2];
    config.progress = false;
    config.input_shape = {1, 28, 28};
    config.on_epoch = [](const EpochStats& s) {
      std::printf("epoch %d: loss %.4f, validation accuracy %.4f\n", s.epoch, s.train_loss, s.val_accuracy);
    };

    Trainer trainer(small_cnn, config);
    const TrainResult result = trainer.fit(data.train, data.val);
    const Evaluation test = trainer.evaluate(data.test);
    trainer.save_state(config.out_dir + "/checkpoint");
    std::printf("best epoch %d; test accuracy %.4f\n", result.best_epoch, test.report.accuracy);
    std::printf("checkpoint: %s/checkpoint\n", config.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
