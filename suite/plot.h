#pragma once
/// The report's plots, drawn by gnuplot: each plot writes its data (NAME.dat) and script
/// (NAME.gp) under DIR/plots and renders DIR/plots/NAME.png. Without gnuplot nothing is drawn
/// and every call returns "", which the report states instead of showing the image.
#include <string>
#include <vector>

namespace dagger::suite {

struct Series {
  std::string label;
  std::vector<double> x, y;
  int color = 1;        ///< gnuplot line colour index; series sharing a colour belong together
  bool dashed = false;  ///< e.g. training loss beside the solid validation loss
};

class Plotter {
 public:
  /// Plots go to `report_dir`/plots; image paths returned are relative to `report_dir`.
  explicit Plotter(std::string report_dir);

  /// True when a gnuplot that writes PNG is on the PATH.
  bool available() const { return !terminal_.empty(); }

  std::string lines(const std::string& name, const std::string& title, const std::string& xlabel,
                    const std::string& ylabel, const std::vector<Series>& series, bool log_y = false,
                    bool log_x = false) const;
  /// Clustered bars: one group per category, one bar per series (series[i] has a value per category).
  std::string bars(const std::string& name, const std::string& title, const std::string& ylabel,
                   const std::vector<std::string>& categories, const std::vector<std::string>& series_labels,
                   const std::vector<std::vector<double>>& values) const;
  /// A matrix of counts as a heat map with the counts written in the cells (rows: true class).
  std::string heatmap(const std::string& name, const std::string& title, const std::vector<std::vector<double>>& m,
                      const std::vector<std::string>& labels, const std::string& xlabel,
                      const std::string& ylabel) const;
  /// 28x28 greyscale images (values 0..1, row-major) in a grid of `columns`, each optionally
  /// captioned, with `row_labels` on the left when given.
  std::string image_grid(const std::string& name, const std::string& title, const std::vector<const float*>& images,
                         size_t columns, const std::vector<std::string>& captions = {},
                         const std::vector<std::string>& row_labels = {}) const;

 private:
  std::string render(const std::string& name, const std::string& script) const;
  std::string report_dir_, plots_dir_, terminal_;
};

}  // namespace dagger::suite
