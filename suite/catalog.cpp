// The study's slides as experiment declarations (see ../shared/EXPERIMENTS.md for the
// protocol). Adding an experiment is adding one entry here.
#include <array>

#include "dagger/suite/experiment.h"

// Each declaration names only the fields it sets; the rest keep their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace dagger::suite {

namespace {

using enum Show;

/// The study's train/val/test table of one model, as numbers keyed like our measures.
std::vector<StudyNumber> split_table(std::vector<std::array<double, 4>> rows) {
  const char* sets[] = {"train", "val", "test"};
  const char* metrics[] = {"accuracy", "precision", "recall", "f1"};
  std::vector<StudyNumber> out;
  for (size_t s = 0; s < 3; ++s)
    for (size_t m = 0; m < 4; ++m)
      out.push_back(
          {std::string(sets[s]) + " " + metrics[m], std::string("best.") + sets[s] + "." + metrics[m], rows[s][m]});
  return out;
}

/// The study's running-min table rows (loss, and epochs where they survived), then the summary.
std::vector<StudyNumber> running_min_table(const std::vector<double>& losses, const std::vector<double>& epochs,
                                           double minimum, double wait, double patience) {
  std::vector<StudyNumber> out = {{"minimum validation loss", "running_min.minimum", minimum},
                                  {"longest wait", "running_min.wait", wait},
                                  {"patience", "running_min.patience", patience}};
  for (size_t i = 0; i < losses.size(); ++i) {
    const std::string row = std::to_string(i + 1);
    out.push_back({"row " + row + " running_min_loss", "running_min." + row + ".loss", losses[i]});
    if (i < epochs.size())
      out.push_back({"row " + row + " minimum_loss_for_epochs", "running_min." + row + ".epochs", epochs[i]});
  }
  return out;
}

/// E24's model and training recipe: ours, past the study's plain Adam on unaugmented images.
const RunTemplate kE24Recipe = {.model = "resnet(2,32)",
                                .optimizer = "adamw",
                                .lr = "0.002",
                                .patience = "10",
                                .epochs = 50,
                                .weight_decay = "0.05",
                                .schedule = "cosine",
                                .warmup = 2,
                                .augment = "crop=2,flip,erase=0.5",
                                .label_smoothing = "0.1",
                                .restore_best = true};

/// `recipe` on a schedule of `epochs` (the ablation's shorter one).
RunTemplate ablated(RunTemplate recipe, int epochs) {
  recipe.epochs = epochs;
  return recipe;
}

}  // namespace

const std::vector<Experiment>& catalog() {
  static const std::vector<Experiment> experiments = {
      {.id = "E01",
       .title = "Fashion MNIST, Class Distribution",
       .what = "Loads all 70,000 images and counts each class in the train, validation and test splits.",
       .shows = {data_overview},
       .study_note = "70K greyscale images, 10 labels; the class distribution is absolutely balanced."},
      {.id = "E02",
       .title = "Shallow networks & input standardization",
       .what = "shallow with SGD at lr 0.01, on raw pixels (0-255) and on pixels scaled to 0-1.",
       .run = {.model = "shallow", .optimizer = "sgd", .lr = "0.01"},
       .grid = {{"pixels", {"raw", "scaled"}}},
       .shows = {loss_curves, run_table},
       .study_note = "Raw pixels: big fluctuations of the validation loss (exploding gradients); scaled: smoother "
                     "convergence."},
      {.id = "E03",
       .title = "Shallow networks - A good learning rate",
       .what = "shallow with SGD over five learning rates; the chosen lr has the lowest validation loss.",
       .run = {.model = "shallow", .optimizer = "sgd"},
       .grid = {{"lr", {"0.001", "0.01", "0.1", "0.5", "1.0"}}},
       .shows = {loss_curves, leaderboard}},
      {.id = "E04",
       .title = "Shallow networks - SGD with Momentum",
       .what = "shallow with SGD momentum at E03's chosen learning rate, momentum 0 (plain SGD) to 0.99.",
       .run = {.model = "shallow", .optimizer = "momentum", .lr = "@E03.lr"},
       .grid = {{"momentum", {"0", "0.5", "0.9", "0.99"}}},
       .shows = {loss_curves, leaderboard}},
      // Not a slide: E04 with the step size held fixed, so that momentum is not confounded with it.
      {.id = "E04b",
       .title = "Shallow networks - SGD with Momentum, lr scaled by (1 - momentum)",
       .what = "E04 with the learning rate multiplied by (1 - momentum): each momentum value takes the same "
               "steady-state step, E03's lr, as plain SGD.",
       .run = {.model = "shallow", .optimizer = "momentum", .lr = "@E03.lr", .lr_times_dampening = true},
       .grid = {{"momentum", {"0", "0.5", "0.9", "0.99"}}},
       .shows = {loss_curves, leaderboard},
       .study_note = "Not in the study: E04's momentum runs also take larger steps (lr / (1 - momentum)); here "
                     "they do not."},
      {.id = "E05",
       .title = "Shallow networks - Enter Adam",
       .what = "shallow with Adam at three learning rates, against E04's chosen momentum run.",
       .run = {.model = "shallow", .optimizer = "adam"},
       .grid = {{"lr", {"0.0001", "0.001", "0.01"}}},
       .members = {"E04"},
       .shows = {loss_curves, leaderboard}},
      {.id = "E06",
       .title = "Shallow networks & Early Stop Patience",
       .what = "shallow with Adam 1e-3 for 150 epochs without early stopping; the running-min table of its "
               "validation loss gives the patience of the MLP experiments.",
       .run = {.model = "shallow", .epochs = 150},
       .shows = {loss_curves, running_min},
       .study = running_min_table(
           {0.421137, 0.422151, 0.421286, 0.421489, 0.429673, 0.422324, 0.439099, 0.424267, 0.433573, 0.459857},
           {42, 11, 9, 6, 3, 3, 2, 2, 2, 1}, 0.421137, 11, 15)},
      {.id = "E07",
       .title = "1 Hidden Layer - Activations",
       .what = "mlp1(128, act, 0) for six activations, Adam 1e-3, patience from E06.",
       .run = {.model = "mlp1(128,{act},0)", .patience = "@E06.patience"},
       .grid = {{"act", {"relu", "tanh", "sigmoid", "elu", "selu", "leaky_relu"}}},
       .shows = {loss_curves, run_table}},
      {.id = "E08",
       .title = "1 Hidden Layer - Dropout and lower LR",
       .what = "mlp1(128, relu, p) for dropout p in {0, 0.2, 0.5} and Adam lr in {1e-3, 1e-4}.",
       .run = {.model = "mlp1(128,relu,{p})", .patience = "@E06.patience"},
       .grid = {{"p", {"0", "0.2", "0.5"}}, {"lr", {"0.001", "0.0001"}}},
       .shows = {loss_curves, run_table}},
      {.id = "E09",
       .title = "1 Hidden Layer - Units",
       .what = "mlp1(units, relu, 0.2) for 32 to 1024 units.",
       .run = {.model = "mlp1({units},relu,0.2)", .patience = "@E06.patience"},
       .grid = {{"units", {"32", "64", "128", "256", "512", "1024"}}},
       .shows = {metric_vs_axis, loss_curves, run_table}},
      {.id = "E10",
       .title = "1 Hidden Layer - Best Model",
       .what = "mlp512 = mlp1(512, relu, 0.2), Adam 1e-3.",
       .run = {.model = "mlp512", .patience = "@E06.patience"},
       .shows = {loss_curves, best_splits},
       .study = split_table({{{0.93475, 0.936310, 0.93475, 0.934946}},
                             {{0.89925, 0.900827, 0.89925, 0.899495}},
                             {{0.89230, 0.894759, 0.89230, 0.892482}}})},
      {.id = "E11",
       .title = "2 Hidden Layers - Batch norm",
       .what = "mlp2(1024, 512, 0.2, 0.4) with and without batch normalization.",
       .run = {.model = "mlp2(1024,512,0.2,0.4,{bn})", .patience = "@E06.patience"},
       .grid = {{"bn", {"bn", "nobn"}}},
       .shows = {loss_curves, run_table}},
      {.id = "E12",
       .title = "Hypertuning an MLP",
       .what = "mlp2 over three layer widths x two dropout pairs x two Adam learning rates (12 runs); the chosen "
               "run has the lowest validation loss.",
       .run = {.model = "mlp2({h1,h2},{p1,p2},nobn)", .patience = "@E06.patience"},
       .grid = {{"h1,h2", {"1024,512", "2048,512", "2048,1024"}},
                {"p1,p2", {"0.2,0.4", "0.3,0.3"}},
                {"lr", {"0.001", "0.0001"}}},
       .shows = {leaderboard, best_splits, loss_curves},
       .study = split_table({{{0.940625, 0.941899, 0.940625, 0.940899}},
                             {{0.901500, 0.902927, 0.901500, 0.901947}},
                             {{0.894400, 0.896246, 0.894400, 0.894873}}}),
       .study_note = "The study's winner: hidden 2048 and 512, dropouts 0.2 and 0.4, Adam at lr 1e-4."},
      {.id = "E13",
       .title = "Per class performance (MLPs)",
       .what = "Per-class test F1 of E10's model and E12's chosen model.",
       .members = {"E10", "E12"},
       .shows = {class_f1},
       .study_note = "In some classes the tuned MLP is better, in others the one-hidden-layer model: combine them."},
      {.id = "E14",
       .title = "MLP Ensemble",
       .what = "argmax(softmax(E10) + softmax(E12's chosen run)) on the test set.",
       .members = {"E10", "E12"},
       .shows = {ensemble},
       .study = {{"Hidden [512] + dropout, test accuracy", "member1.test.accuracy", 0.8923},
                 {"Hidden [2048, 512] + dropout, test accuracy", "member2.test.accuracy", 0.8944},
                 {"Ensemble test accuracy", "ensemble.accuracy", 0.8960}}},
      {.id = "E15",
       .title = "CNNs - Convolution Layers; CNNs vs Tuned MLP",
       .what = "cnn(k, no bn, 0) for 1 to 3 convolution blocks, against E12's chosen MLP.",
       .run = {.model = "cnn({k},nobn,0)", .patience = "@E06.patience"},
       .grid = {{"k", {"1", "2", "3"}}},
       .members = {"E12"},
       .shows = {loss_curves, run_table}},
      {.id = "E16",
       .title = "CNNs - Dropout",
       .what = "cnn(3, no bn, p) for head dropout p in {0, 0.25, 0.5}.",
       .run = {.model = "cnn(3,nobn,{p})", .patience = "@E06.patience"},
       .grid = {{"p", {"0", "0.25", "0.5"}}},
       .shows = {loss_curves, run_table}},
      {.id = "E17",
       .title = "CNNs - Batch Normalization",
       .what = "cnn(3, bn, 0.5) against cnn(3, no bn, 0.5).",
       .run = {.model = "cnn(3,{bn},0.5)", .patience = "@E06.patience"},
       .grid = {{"bn", {"bn", "nobn"}}},
       .shows = {loss_curves, run_table}},
      {.id = "E18",
       .title = "CNNs - Stacked Convolutions with Residuals",
       .what = "rescnn with and without its skip connections.",
       .run = {.model = "rescnn({skip})", .patience = "@E06.patience"},
       .grid = {{"skip", {"residual", "plain"}}},
       .shows = {loss_curves, run_table}},
      {.id = "E19",
       .title = "Hypertuning CNNs - Early Stop Patience",
       .what = "cnn3 = cnn(3, bn, 0.5, 0.25, 256) for 50 epochs without early stopping; its running-min table "
               "gives the patience of E20 and E21.",
       .run = {.model = "cnn3", .epochs = 50},
       .shows = {loss_curves, running_min},
       // The counts column of this slide did not survive in the study's text; only the losses did.
       .study = running_min_table(
           {0.203920, 0.204610, 0.208205, 0.215054, 0.233148, 0.209780, 0.216725, 0.314627, 0.260298, 0.258610}, {},
           0.2039, 6, 10)},
      {.id = "E20",
       .title = "Hypertuning a CNN",
       .what = "cnn(3, bn, 0.5, q, h) for block dropout q in {0, 0.25} and head width h in {128, 256}, patience "
               "from E19; the chosen run has the lowest validation loss.",
       .run = {.model = "cnn(3,bn,0.5,{q},{h})", .patience = "@E19.patience"},
       .grid = {{"q", {"0", "0.25"}}, {"h", {"128", "256"}}},
       .shows = {leaderboard, best_splits, loss_curves},
       .study = split_table({{{0.969708, 0.970038, 0.969708, 0.969801}},
                             {{0.933167, 0.933886, 0.933167, 0.933414}},
                             {{0.926800, 0.927751, 0.926800, 0.927089}}})},
      {.id = "E21",
       .title = "Hypertuning a Stacked CNN",
       .what = "rescnn(residual) with E20's chosen block dropout and head width, patience from E19.",
       .run = {.model = "rescnn(residual,{q},{h})", .patience = "@E19.patience"},
       .grid = {{"q", {"@E20.q"}}, {"h", {"@E20.h"}}},
       .shows = {best_splits, loss_curves},
       .study = split_table({{{0.972604, 0.972719, 0.972604, 0.972609}},
                             {{0.935167, 0.935272, 0.935167, 0.935147}},
                             {{0.931000, 0.931140, 0.931000, 0.930924}}})},
      {.id = "E22",
       .title = "Tuned Models, Error Analysis",
       .what = "E21's, E20's and E12's chosen models on the test set: per-class F1, confusion matrices and "
               "misclassified images.",
       .members = {"E21", "E20", "E12"},
       .shows = {class_f1, confusion, misclassified},
       .study_note = "In some classes the stacked CNN is better, in others the 3-layer CNN: combine them."},
      {.id = "E23",
       .title = "CNN Ensemble",
       .what = "argmax(softmax(E20's chosen run) + softmax(E21)) on the test set.",
       .members = {"E20", "E21"},
       .shows = {ensemble},
       .study = {{"3 Conv Layers, test accuracy", "member1.test.accuracy", 0.9268},
                 {"3 stacked(x2) Conv layers + Residual Connections, test accuracy", "member2.test.accuracy", 0.9310},
                 {"Ensemble test accuracy", "ensemble.accuracy", 0.9344}}},
      // Past the study: ours, with nothing of the study's to compare against.
      {.id = "E24",
       .title = "Beyond the study: a residual network x3",
       .what = "resnet(2, 32) (pre-activation residual blocks at widths 32/64/128, global average pooling) with "
               "random crop, flips and random erasing, AdamW 2e-3 with decay 0.05 on a 50-epoch cosine schedule "
               "after 2 warmup epochs, label smoothing 0.1; early-stopped on validation loss (patience 10, best "
               "weights restored), under seeds 42, 1 and 2; argmax(sum of the three softmax outputs) on test.",
       .run = kE24Recipe,
       .seeds = {42, 1, 2},
       .beyond_study = true,
       .shows = {loss_curves, run_table, best_splits, ensemble},
       .study_note = "Not in the study. Its best is E23's ensemble at 0.9344; published Fashion-MNIST results "
                     "reach 0.949 (ResNet-18 with augmentation) and 0.967 (WRN-40-4 with augmentation)."},
      {.id = "E24b",
       .title = "Beyond the study: what each ingredient bought",
       .what = "E24's network and recipe on a 15-epoch schedule, seed 42, with each ingredient removed in turn: "
               "augmentation, the cosine schedule (constant rate), AdamW (plain Adam, no decay), label smoothing.",
       .run = ablated(kE24Recipe, 15),
       .grid = {{"without", {"nothing", "augment", "cosine", "adamw", "label_smoothing"}}},
       .beyond_study = true,
       .shows = {loss_curves, ablation}},
  };
  return experiments;
}

}  // namespace dagger::suite
