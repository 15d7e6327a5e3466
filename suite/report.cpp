#include "dagger/suite/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "dagger/graph/error.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/suite/bundle.h"
#include "dagger/suite/headline.h"
#include "dagger/suite/plot.h"

namespace dagger::suite {

namespace {

constexpr size_t kMisclassifiedShown = 30;
constexpr size_t kCurvesWithTrainLoss = 6;  ///< above this many runs a loss plot shows validation only

/// Short class names for captions under small images.
constexpr const char* kShortNames[] = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal",  "Shirt",   "Sneaker",  "Bag",   "Boot"};

/// The names of a report's classes for captions and axes: Fashion-MNIST's short ones for
/// Fashion-MNIST, the report's own for other data.
std::vector<std::string> short_names(const std::vector<std::string>& names) {
  const auto& fashion = fashion_mnist_class_names();
  if (std::equal(names.begin(), names.end(), fashion.begin(), fashion.end())) {
    return std::vector<std::string>(std::begin(kShortNames), std::end(kShortNames));
  }
  return names;
}

/// The names of all classes of a slice's data, numbered where the data names none.
std::vector<std::string> class_labels_of(const Splits& d) {
  std::vector<std::string> names = d.train.class_labels();
  for (const Dataset* s : {&d.val, &d.test})
    for (size_t c = names.size(); c < s->class_count(); ++c) names.push_back(std::to_string(c));
  return names;
}

/// Whether a data set's images are the 28x28 greyscale ones the image grids draw.
bool drawable(const Dataset& d) { return d.example_shape() == std::vector<size_t>{1, 28, 28}; }

std::string num(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "—"; }

/// Integers without decimals, everything else with four.
std::string value_text(double v) {
  return std::isfinite(v) && v == std::round(v) && std::abs(v) < 1e9 ? fmt::format("{}", v) : num(v);
}

std::string signed_diff(double ours, double study) {
  const double d = ours - study;
  return d == std::round(d) && std::abs(d) < 1e9 ? fmt::format("{:+}", d) : fmt::format("{:+.4f}", d);
}

std::string table_row(const std::vector<std::string>& cells) {
  return fmt::format("| {} |\n", fmt::join(cells, " | "));
}

std::string table_head(const std::vector<std::string>& cells) {
  return table_row(cells) + "|" + std::string() + [&] {
    std::string s;
    for (size_t i = 0; i < cells.size(); ++i) s += "---|";
    return s;
  }() + "\n";
}

/// A run as a report row: its grid values, or the model for a single run; members say whose.
struct Row {
  std::string label;
  const RunRecord* run;
  bool chosen = false;
};

std::string grid_label(const GridRun& g) {
  // A run repeated under another seed keeps the profile's data split and says its seed.
  const RunConfig& c = g.record.config;
  const std::string seed = c.split_seed ? fmt::format(" seed={}", c.seed) : "";
  if (g.labels.empty()) return c.model + seed;
  std::vector<std::string> parts;
  for (const auto& [k, v] : g.labels) parts.push_back(k == "pixels" ? v + " pixels" : k + "=" + v);
  return fmt::format("{}{}", fmt::join(parts, " "), seed);
}

class ReportWriter {
 public:
  ReportWriter(const SuiteResult& result, const SuiteOptions& options, const SuiteStatistics& statistics)
      : result_(result), options_(options), statistics_(statistics), plot_(options.out_dir) {}

  std::string markdown() {
    header();
    for (const ExperimentResult& e : result_.experiments) section(e);
    md_ += statistics_markdown(statistics_);
    summary();
    provenance();
    return md_;
  }

 private:
  bool plots() const { return options_.plots && plot_.available(); }

  void image(const std::string& path, const std::string& alt) {
    if (!path.empty())
      md_ += fmt::format("![{}]({})\n\n", alt, path);
    else
      md_ += fmt::format("*Plot \"{}\" not drawn: {}.*\n\n", alt,
                         options_.plots ? "gnuplot with a PNG terminal was not found" : "plots are off");
  }

  std::vector<Row> rows(const ExperimentResult& e) const {
    std::vector<Row> own, members;
    for (size_t i = 0; i < e.runs.size(); ++i)
      own.push_back({grid_label(e.runs[i]), &e.runs[i].record, static_cast<int>(i) == e.chosen && e.runs.size() > 1});
    for (const std::string& id : e.experiment->members) {
      const ExperimentResult* m = result_.by_id.at(id);
      members.push_back(
          {fmt::format("{} chosen: {}", id, m->chosen_run()->record.config.model), &m->chosen_run()->record});
    }
    if (e.experiment->members_first) std::swap(own, members);
    own.insert(own.end(), members.begin(), members.end());
    return own;
  }

  void header() {
    const Profile& p = options_.profile;
    md_ += "# Fashion-MNIST study, reproduced by dagger\n\n";
    md_ += fmt::format(
        "Profile **{}**, executor **{}** with {} thread(s), seed {}. {} experiments, {} runs trained in this "
        "invocation and {} reused from earlier ones, in {:.0f} s.\n\n",
        p.name, executor_name(options_.executor), options_.threads, p.seed, result_.experiments.size(), result_.trained,
        result_.reused, result_.wall_seconds);
    auto budget = [](const Budget& b) {
      auto n = [](size_t v) { return v ? std::to_string(v) : std::string("all"); };
      return fmt::format(
          "{} train / {} val / {} test images, at most {} epochs{}", n(b.train), n(b.val), n(b.test), b.max_epochs,
          b.fixed_epoch_cap ? fmt::format(", fixed-length runs cut to {} epochs", b.fixed_epoch_cap) : "");
    };
    md_ += fmt::format("- Shallow networks and MLPs: {}.\n- CNNs: {}.\n", budget(p.dense), budget(p.conv));
    if (p.scope != Profile::Scope::study) md_ += fmt::format("- E24's residual networks: {}.\n", budget(p.deep));
    md_ += fmt::format("- Batch {}, default patience {}; Adam 1e-3 unless a section says otherwise.\n", p.batch,
                       p.default_patience);
    md_ +=
        p.keep_last
            ? "- An early-stopped run is scored with its last epoch's weights, as the study's framework does by "
              "default (its train accuracies imply it); `--restore-best` scores the lowest validation loss's.\n\n"
            : "- An early-stopped run is scored with the weights of its lowest validation loss (`--restore-best`).\n\n";
    md_ +=
        "Numbers marked *study's* are copied from the study's slides for comparison; every other number was "
        "measured by this run. Per-run histories, metrics, checkpoints and provenance are under `runs/<key>/`; "
        "every number is also in `results.json`.\n\n";
  }

  void section(const ExperimentResult& e) {
    const Experiment& x = *e.experiment;
    md_ += fmt::format("## {} · {}\n\n", x.id, x.title);
    md_ += fmt::format("**What ran.** {}", x.what);
    if (!e.runs.empty()) {
      const RunConfig& c = e.runs.front().record.config;
      std::vector<std::string> slices;
      for (const GridRun& g : e.runs)
        if (std::find(slices.begin(), slices.end(), slice_key(g.record.config)) == slices.end())
          slices.push_back(slice_key(g.record.config));
      md_ += fmt::format(" {} run(s): {} trained now, {} reused. Data slice {}; {} epochs{}.", e.runs.size(), e.trained,
                         e.reused, fmt::join(slices, " and "), c.epochs,
                         c.patience ? fmt::format(" at most, early stopping with patience {}, scored at the {} epoch",
                                                  c.patience, c.keep_last ? "last" : "best")
                                    : " without early stopping");
    }
    md_ += "\n\n";
    if (!x.study_note.empty()) md_ += fmt::format("*The study's slide:* {}\n\n", x.study_note);
    for (Show s : x.shows) show(s, e);
    study_comparison(e);
  }

  void show(Show s, const ExperimentResult& e) {
    switch (s) {
      case Show::data_overview:
        return data_overview(e);
      case Show::loss_curves:
        return loss_curves(e);
      case Show::run_table:
        return run_table(e, false);
      case Show::leaderboard:
        return run_table(e, true);
      case Show::best_splits:
        return best_splits(e);
      case Show::running_min:
        return running_min(e);
      case Show::metric_vs_axis:
        return metric_vs_axis(e);
      case Show::class_f1:
        return class_f1(e);
      case Show::confusion:
        return confusion(e);
      case Show::misclassified:
        return misclassified(e);
      case Show::ablation:
        return ablation_table(e);
      case Show::ensemble:
        return ensemble_table(e);
    }
  }

  void ablation_table(const ExperimentResult& e) {
    const auto full = std::find_if(e.runs.begin(), e.runs.end(), [](const GridRun& g) {
      return g.labels.count("without") && g.labels.at("without") == "nothing";
    });
    if (full == e.runs.end()) return;
    const RunRecord& base = full->record;
    const std::vector<int>& labels = result_.data.at(slice_key(base.config))->test.labels;
    md_ += table_head({"removed", "epochs (best)", "lowest val loss", "test acc", "change, points", "test F1",
                       "only this run right", "only the full recipe right", "McNemar p"});
    for (const GridRun& g : e.runs) {
      const RunRecord& r = g.record;
      const std::string removed = g.labels.count("without") ? g.labels.at("without") : grid_label(g);
      if (&g == &*full) {
        md_ += table_row({"nothing (the full recipe)", fmt::format("{} ({})", r.history.size(), r.best_epoch),
                          num(r.lowest_val_loss()), num(r.test.accuracy), "", num(r.test.f1), "", "", ""});
        continue;
      }
      const McNemar m = mcnemar(r.test_predictions, base.test_predictions, labels);
      md_ += table_row({removed, fmt::format("{} ({})", r.history.size(), r.best_epoch), num(r.lowest_val_loss()),
                        num(r.test.accuracy), fmt::format("{:+.2f}", 100 * (r.test.accuracy - base.test.accuracy)),
                        num(r.test.f1), std::to_string(m.only_a), std::to_string(m.only_b),
                        m.p_value < 1e-4 ? std::string("< 0.0001") : fmt::format("{:.4f}", m.p_value)});
    }
    md_ +=
        "\nEach run removes one ingredient of the full recipe, the same seed and schedule otherwise; a negative "
        "change means the ingredient helped on this test set. McNemar's test compares the two runs' answers on the "
        "same test images (exact binomial under 25 discordant images, else chi-square with continuity "
        "correction). One seed: a change within a few tenths of a point is within what seeds move.\n\n";
  }

  void data_overview(const ExperimentResult& e) {
    const Splits& d = *result_.data.at(slice_key(0, 0, 0, false, options_.profile.seed));
    const std::vector<std::string> names = class_labels_of(d);
    std::vector<std::vector<double>> counts(3, std::vector<double>(names.size(), 0));
    const Dataset* sets[] = {&d.train, &d.val, &d.test};
    for (size_t s = 0; s < 3; ++s)
      for (int label : sets[s]->labels) counts[s][static_cast<size_t>(label)] += 1;
    md_ += table_head({"class", "train", "val", "test", "total"});
    std::array<double, 3> totals{};
    for (size_t c = 0; c < names.size(); ++c) {
      md_ += table_row({names[c], value_text(counts[0][c]), value_text(counts[1][c]), value_text(counts[2][c]),
                        value_text(counts[0][c] + counts[1][c] + counts[2][c])});
      for (size_t s = 0; s < 3; ++s) totals[s] += counts[s][c];
    }
    md_ += table_row({"**all**", value_text(totals[0]), value_text(totals[1]), value_text(totals[2]),
                      value_text(totals[0] + totals[1] + totals[2])});
    md_ += "\n";
    image(plots() ? plot_.bars(e.experiment->id + "-class-counts", "Images per class and split", "images", names,
                               {"train", "val", "test"}, counts)
                  : "",
          "class distribution");
    std::vector<const float*> samples;
    for (size_t c = 0; c < names.size() && drawable(d.train); ++c) {
      size_t taken = 0;
      for (size_t i = 0; i < d.train.size() && taken < 10; ++i)
        if (d.train.labels[i] == static_cast<int>(c)) {
          samples.push_back(d.train.images.data() + i * 28 * 28);
          ++taken;
        }
    }
    image(plots() && drawable(d.train)
              ? plot_.image_grid(e.experiment->id + "-samples", "Ten training images per class", samples, 10, {}, names)
              : "",
          "sample images per class");
    md_ += "The data slices the runs of this invocation used:\n\n" + table_head({"slice", "train", "val", "test"});
    for (const auto& [key, splits] : result_.data)
      md_ += table_row({key, std::to_string(splits->train.size()), std::to_string(splits->val.size()),
                        std::to_string(splits->test.size())});
    md_ += "\n";
  }

  void loss_curves(const ExperimentResult& e) {
    std::vector<Row> rs = rows(e);
    std::vector<Series> series;
    const bool with_train = rs.size() <= kCurvesWithTrainLoss;
    bool diverged = false;
    for (size_t i = 0; i < rs.size(); ++i) {
      Series val{rs[i].label + " val", {}, {}, static_cast<int>(i + 1), false};
      Series train{rs[i].label + " train", {}, {}, static_cast<int>(i + 1), true};
      for (const EpochStats& s : rs[i].run->history) {
        val.x.push_back(s.epoch);
        val.y.push_back(s.val_loss);
        train.x.push_back(s.epoch);
        train.y.push_back(s.train_loss);
        diverged |= s.val_loss > 10;
      }
      series.push_back(std::move(val));
      if (with_train) series.push_back(std::move(train));
    }
    const std::string title =
        with_train ? "Loss per epoch (solid: validation, dashed: training)" : "Validation loss per epoch";
    image(
        plots() ? plot_.lines(e.experiment->id + "-loss", title, "epoch", "cross-entropy loss", series, diverged) : "",
        "loss curves");
    md_ += "Histories: ";
    std::vector<std::string> links;
    for (const Row& r : rs) links.push_back(fmt::format("[{}](runs/{}/history.csv)", r.label, r.run->key));
    md_ += fmt::format("{}\n\n", fmt::join(links, ", "));
  }

  void run_table(const ExperimentResult& e, bool sorted) {
    std::vector<Row> rs = rows(e);
    if (sorted)
      std::stable_sort(rs.begin(), rs.end(),
                       [](const Row& a, const Row& b) { return a.run->lowest_val_loss() < b.run->lowest_val_loss(); });
    std::vector<std::string> head = {"run",      "epochs (best)", "lowest val loss", "train acc",
                                     "val loss", "val acc",       "val precision",   "val recall",
                                     "val F1",   "test acc",      "test F1"};
    if (sorted) head.insert(head.begin(), "rank");
    md_ += table_head(head);
    for (size_t i = 0; i < rs.size(); ++i) {
      const RunRecord& r = *rs[i].run;
      std::string label = rs[i].chosen ? "**" + rs[i].label + "** (chosen)" : rs[i].label;
      if (!r.diverged.empty()) label += " (diverged: " + r.diverged + ")";
      std::vector<std::string> cells = {label,
                                        fmt::format("{} ({})", r.history.size(), r.best_epoch),
                                        num(r.lowest_val_loss()),
                                        num(r.train.accuracy),
                                        num(r.val.loss),
                                        num(r.val.accuracy),
                                        num(r.val.precision),
                                        num(r.val.recall),
                                        num(r.val.f1),
                                        num(r.test.accuracy),
                                        num(r.test.f1)};
      if (sorted) cells.insert(cells.begin(), std::to_string(i + 1));
      md_ += table_row(cells);
    }
    md_ +=
        "\nThe chosen run reached the lowest validation loss (at its best epoch); the other columns score the "
        "weights the run ended with.\n\n";
  }

  void best_splits(const ExperimentResult& e) {
    const GridRun* best = e.chosen_run();
    if (!best) return;
    md_ += fmt::format("The chosen run: `{}`, {} {}, {} epochs (best {}).\n\n", best->record.config.model,
                       best->record.config.optimizer, fmt::format("lr {}", best->record.config.lr),
                       best->record.history.size(), best->record.best_epoch);
    md_ += table_head({"set", "loss", "accuracy", "precision", "recall", "f1"});
    const std::pair<const char*, const ClassificationReport*> sets[] = {
        {"train", &best->record.train}, {"val", &best->record.val}, {"test", &best->record.test}};
    for (const auto& [name, r] : sets)
      md_ += table_row({name, num(r->loss), num(r->accuracy), num(r->precision), num(r->recall), num(r->f1)});
    if (const auto& r = best->record.best_epoch_test)
      md_ += table_row({fmt::format("test, best epoch ({})", best->record.best_epoch), num(r->loss), num(r->accuracy),
                        num(r->precision), num(r->recall), num(r->f1)});
    md_ += "\n";
  }

  void running_min(const ExperimentResult& e) {
    if (!e.running_min) return;
    const RunningMinTable& t = *e.running_min;
    md_ += "```\nrunning_min_loss\tminimum_loss_for_epochs\n";
    for (const MinimumStand& s : t.rows) md_ += fmt::format("{:.6f}\t{}\n", s.loss, s.epochs);
    md_ += "```\n\n";
    md_ += fmt::format(
        "- The minimum loss achieved was **{:.6f}**.\n- To reach it we had to be patient for at most **{}** epochs "
        "(the longest stand of any minimum but the last).\n- Early-stopping patience: {} + 4 = **{}**.\n\n",
        t.minimum, t.wait, t.wait, t.patience);
    std::string study;
    for (int i = 1; i <= 10; ++i)
      for (const StudyNumber& n : e.experiment->study)
        if (n.key == fmt::format("running_min.{}.loss", i)) {
          study += fmt::format("{:.6f}", n.value);
          for (const StudyNumber& m : e.experiment->study)
            if (m.key == fmt::format("running_min.{}.epochs", i)) study += fmt::format("\t{}", m.value);
          study += "\n";
        }
    if (!study.empty())
      md_ +=
          "The study's table (copied from the slide, not "
          "measured):\n\n```\nrunning_min_loss\tminimum_loss_for_epochs\n" +
          study + "```\n\n";
  }

  void metric_vs_axis(const ExperimentResult& e) {
    if (e.runs.empty() || e.experiment->grid.empty()) return;
    const std::string axis = e.experiment->grid.front().name;
    Series acc{"val accuracy", {}, {}, 1, false}, f1{"val F1", {}, {}, 2, false},
        test{"test accuracy", {}, {}, 3, true};
    for (const GridRun& g : e.runs) {
      const double x = std::stod(g.labels.at(axis));
      acc.x.push_back(x);
      acc.y.push_back(g.record.val.accuracy);
      f1.x.push_back(x);
      f1.y.push_back(g.record.val.f1);
      test.x.push_back(x);
      test.y.push_back(g.record.test.accuracy);
    }
    const std::string name = e.experiment->id + "-vs-" + axis;
    std::string path;
    if (plots()) path = plot_.lines(name, "Metrics against " + axis, axis, "score", {acc, f1, test}, false, true);
    image(path, "metrics against " + axis);
  }

  void class_f1(const ExperimentResult& e) {
    std::vector<Row> rs = rows(e);
    std::vector<std::string> labels, names = rs.empty() ? std::vector<std::string>{} : rs.front().run->test.class_names;
    std::vector<std::vector<double>> values;
    std::vector<std::string> head = {"class"};
    for (const Row& r : rs) {
      labels.push_back(r.label);
      head.push_back(r.label + " F1");
      values.emplace_back(r.run->test.class_f1.begin(), r.run->test.class_f1.end());
    }
    image(plots()
              ? plot_.bars(e.experiment->id + "-class-f1", "Per-class F1 on the test set", "F1", names, labels, values)
              : "",
          "per-class F1");
    md_ += table_head(head);
    for (size_t c = 0; c < names.size(); ++c) {
      std::vector<std::string> cells = {names[c]};
      for (const auto& v : values) cells.push_back(num(v[c]));
      md_ += table_row(cells);
    }
    md_ += "\n";
  }

  void confusion(const ExperimentResult& e) {
    const std::vector<Row> rs = rows(e);
    for (size_t i = 0; i < rs.size(); ++i) {
      const std::vector<std::string> names = short_names(rs[i].run->test.class_names);
      std::vector<std::vector<double>> m;
      for (const auto& row : rs[i].run->test.confusion) m.emplace_back(row.begin(), row.end());
      image(plots() ? plot_.heatmap(fmt::format("{}-confusion-{}", e.experiment->id, i + 1),
                                    "Test confusion matrix: " + rs[i].label, m, names, "predicted", "true")
                    : "",
            "confusion matrix " + rs[i].label);
    }
  }

  void misclassified(const ExperimentResult& e) {
    const std::vector<Row> rs = rows(e);
    for (size_t i = 0; i < rs.size(); ++i) {
      const RunRecord& r = *rs[i].run;
      const Dataset& test = result_.data.at(slice_key(r.config))->test;
      const std::vector<std::string> names = short_names(r.test.class_names);
      const size_t pixels = test.images.size() / std::max<size_t>(test.size(), 1);
      std::vector<const float*> images;
      std::vector<std::string> captions;
      size_t wrong = 0;
      for (size_t k = 0; k < test.size(); ++k) {
        if (r.test_predictions[k] == test.labels[k]) continue;
        ++wrong;
        if (images.size() == kMisclassifiedShown) continue;
        images.push_back(test.images.data() + k * pixels);
        captions.push_back(fmt::format("{}→{}", names[test.labels[k]], names[r.test_predictions[k]]));
      }
      md_ += fmt::format("{}: {} of {} test images misclassified; the first {} (true→predicted):\n\n", rs[i].label,
                         wrong, test.size(), images.size());
      image(plots() && drawable(test) ? plot_.image_grid(fmt::format("{}-misclassified-{}", e.experiment->id, i + 1),
                                                         "Misclassified: " + rs[i].label, images, 10, captions)
                                      : "",
            "misclassified images " + rs[i].label);
    }
  }

  void ensemble_table(const ExperimentResult& e) {
    if (!e.ensemble) return;
    auto study = [&](const std::string& key) {
      for (const StudyNumber& n : e.experiment->study)
        if (n.key == key) return fmt::format("{:.4f}", n.value);
      return std::string("—");
    };
    // Beside the last epoch's figures, those of the weights of each member's lowest validation
    // loss and of their ensemble, when the members' runs stored them.
    const std::optional<EnsembleResult>& best = e.best_epoch_ensemble;
    std::vector<std::string> head = {"model", "test accuracy", "test F1", "test loss", "study's accuracy"};
    if (best) head.insert(head.begin() + 4, {"best epoch: accuracy", "best epoch: F1"});
    md_ += table_head(head);
    auto row = [&](const std::string& label, const ClassificationReport& t,
                   const std::optional<ClassificationReport>& at_best, const std::string& study_key) {
      std::vector<std::string> cells = {label, num(t.accuracy), num(t.f1), num(t.loss), study(study_key)};
      if (best)
        cells.insert(cells.begin() + 4, {at_best ? num(at_best->accuracy) : "—", at_best ? num(at_best->f1) : "—"});
      md_ += table_row(cells);
    };
    const std::vector<Row> rs = rows(e);
    bool beats_all = true;
    for (size_t i = 0; i < rs.size(); ++i) {
      row(rs[i].label, rs[i].run->test, rs[i].run->best_epoch_report(), fmt::format("member{}.test.accuracy", i + 1));
      beats_all &= e.ensemble->report.accuracy > rs[i].run->test.accuracy;
    }
    row("**ensemble**", e.ensemble->report, best ? std::optional(best->report) : std::nullopt, "ensemble.accuracy");
    md_ += fmt::format(
        "\nargmax of the sum of the members' softmax outputs. The ensemble {} every member on test accuracy.{}\n\n",
        beats_all ? "beats" : "does **not** beat",
        best ? " The best-epoch columns score each member's weights of its lowest validation loss, and the ensemble "
               "of those weights' softmax outputs."
             : "");

    // Where the accuracies come from: the examples on which the ensemble and a member differ.
    const EnsembleResult& en = *e.ensemble;
    const int64_t n = static_cast<int64_t>(en.predictions.size());
    md_ += fmt::format(
        "The members disagree on {} of the {} test images, and at least one member is right on {} images in all "
        "(an oracle picking the right member would score {}). Against each member:\n\n",
        en.disagreements, n, en.any_right, num(n > 0 ? double(en.any_right) / double(n) : 0.0));
    md_ += table_head({"member", "its errors the ensemble corrects", "its right answers the ensemble loses",
                       "ensemble's margin, images"});
    for (size_t i = 0; i < rs.size() && i < en.changes.size(); ++i) {
      const MemberChange& c = en.changes[i];
      md_ += table_row({rs[i].label, std::to_string(c.corrected), std::to_string(c.lost),
                        fmt::format("{:+d}", c.corrected - c.lost)});
    }
    md_ += "\n";
  }

  void study_comparison(const ExperimentResult& e) {
    const auto& study = e.experiment->study;
    if (study.empty()) return;
    md_ += "The study's numbers beside ours:\n\n";
    md_ += table_head({"quantity", "study's (reported)", "ours (measured)", "ours − study's"});
    for (const StudyNumber& n : study) {
      auto it = e.measures.find(n.key);
      md_ += it == e.measures.end()
                 ? table_row({n.label, value_text(n.value), "—", "—"})
                 : table_row({n.label, value_text(n.value), value_text(it->second), signed_diff(it->second, n.value)});
    }
    md_ += "\n";
  }

  void summary() {
    md_ += "## Summary\n\n### Every number the study reports, beside ours\n\n";
    md_ += table_head({"experiment", "quantity", "study's (reported)", "ours (measured)", "ours − study's"});
    for (const ExperimentResult& e : result_.experiments)
      for (const StudyNumber& n : e.experiment->study) {
        auto it = e.measures.find(n.key);
        md_ += table_row({e.experiment->id, n.label, value_text(n.value),
                          it == e.measures.end() ? "—" : value_text(it->second),
                          it == e.measures.end() ? "—" : signed_diff(it->second, n.value)});
      }
    md_ += "\n### Time and throughput\n\n";
    md_ += table_head({"experiment", "runs", "trained now", "reused", "wall time now (s)",
                       "training time, all sessions (s)", "images trained", "training images/s"});
    double wall = 0, seconds_all = 0, images_all = 0;
    for (const ExperimentResult& e : result_.experiments) {
      double seconds = 0, images = 0;
      for (const GridRun& g : e.runs) {
        seconds += g.record.train_seconds;
        images += g.record.images_per_sec * g.record.train_seconds;
      }
      wall += e.wall_seconds;
      seconds_all += seconds;
      images_all += images;
      md_ += table_row({e.experiment->id, std::to_string(e.runs.size()), std::to_string(e.trained),
                        std::to_string(e.reused), fmt::format("{:.1f}", e.wall_seconds), fmt::format("{:.1f}", seconds),
                        fmt::format("{:.0f}", images), seconds > 0 ? fmt::format("{:.0f}", images / seconds) : "—"});
    }
    md_ += table_row({"**all**", "", std::to_string(result_.trained), std::to_string(result_.reused),
                      fmt::format("{:.1f}", result_.wall_seconds), fmt::format("{:.1f}", seconds_all),
                      fmt::format("{:.0f}", images_all),
                      seconds_all > 0 ? fmt::format("{:.0f}", images_all / seconds_all) : "—"});
    md_ +=
        "\nWall time covers this invocation only (a reused run costs its loading); training time sums the "
        "epochs of every session that trained the runs, validation excluded.\n\n";
  }

  void provenance() {
    md_ += "## Provenance\n\n";
    for (const auto& [key, value] : options_.provenance.items()) {
      std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      if (text.size() > 300) text = text.substr(0, 300) + " ...";
      md_ += fmt::format("- {}: `{}`\n", key, text);
    }
    md_ += fmt::format("- executor: `{}`, threads: {}, seed: {}, profile: `{}`\n\n", executor_name(options_.executor),
                       options_.threads, options_.profile.seed, options_.profile.name);
    md_ +=
        "Each run's own record (the same fields, plus when it finished and whether it resumed) is in "
        "`runs/<key>/provenance.json` and in `results.json`.\n";
  }

  const SuiteResult& result_;
  const SuiteOptions& options_;
  const SuiteStatistics& statistics_;
  Plotter plot_;
  std::string md_;
};

}  // namespace

void write_report(const SuiteResult& result, const SuiteOptions& options) {
  std::filesystem::create_directories(options.out_dir);
  const SuiteStatistics statistics = suite_statistics(result);
  const std::string md = ReportWriter(result, options, statistics).markdown();
  write_file_atomically(options.out_dir + "/report.md", md);
  write_file_atomically(options.out_dir + "/report.html",
                        markdown_to_html(md, "Fashion-MNIST study, reproduced by dagger"));
  nlohmann::json results = results_json(result, options);
  results["statistics"] = to_json(statistics);
  write_file_atomically(options.out_dir + "/results.json", results.dump(1) + "\n");
  write_bundle(result, options);
}

}  // namespace dagger::suite
