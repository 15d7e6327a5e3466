#include "dagger/suite/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "dagger/runtime/atomic_file.h"

namespace dagger::suite {

namespace fs = std::filesystem;

namespace {

constexpr size_t kSide = 28;

/// Quotes text for a gnuplot string literal.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

/// The best PNG terminal this gnuplot has, or "" when there is no gnuplot.
std::string find_terminal() {
  if (std::system("gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1") == 0) return "pngcairo";
  if (std::system("gnuplot -e 'set terminal png' >/dev/null 2>&1") == 0) return "png";
  return "";
}

/// Runs gnuplot on the script file `gp`, its messages going to `log`; true when it succeeded.
bool run_gnuplot(const std::string& gp, const std::string& log) {
  return std::system(fmt::format("gnuplot {} >{} 2>&1", quoted(gp), quoted(log)).c_str()) == 0;
}

}  // namespace

Plotter::Plotter(std::string report_dir)
    : report_dir_(std::move(report_dir)), plots_dir_(report_dir_ + "/plots"), terminal_(find_terminal()) {}

std::string Plotter::render(const std::string& name, const std::string& body) const {
  if (!available()) return "";
  fs::create_directories(plots_dir_);
  const std::string png = plots_dir_ + "/" + name + ".png", gp = plots_dir_ + "/" + name + ".gp",
                    log = plots_dir_ + "/" + name + ".log";
  const auto script = [&](const std::string& output) {
    return fmt::format("set terminal {} size 900,520 font \",10\"\nset output {}\nset datafile missing \"?\"\n",
                       terminal_, quoted(output)) +
           body;
  };
  // The script run draws into a temporary file that commit_file then renames over the plot,
  // as every file of a report is written; the script kept beside the plot draws it in place.
  const std::string run = temporary_path(gp), drawn = temporary_path(png);
  write_file_synced(run, {script(drawn)});
  const bool drew = run_gnuplot(run, temporary_path(log)) && fs::exists(drawn);
  std::error_code ignored;
  fs::remove(run, ignored);
  if (fs::exists(temporary_path(log))) commit_file(log);  // no log when no shell could start
  write_file_atomically(gp, script(png));
  if (!drew) {
    fs::remove(drawn, ignored);
    return "";
  }
  commit_file(png);
  return "plots/" + name + ".png";
}

std::string Plotter::lines(const std::string& name, const std::string& title, const std::string& xlabel,
                           const std::string& ylabel, const std::vector<Series>& series, bool log_y, bool log_x) const {
  if (!available() || series.empty()) return "";
  fs::create_directories(plots_dir_);
  const std::string dat = plots_dir_ + "/" + name + ".dat";
  std::string data;
  std::vector<std::string> plots;
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    data += fmt::format("# {}\n", s.label);
    for (size_t k = 0; k < s.x.size(); ++k) data += fmt::format("{} {}\n", s.x[k], s.y[k]);
    data += "\n\n";
    plots.push_back(fmt::format("{} index {} using 1:2 with linespoints pt 7 ps 0.4 lw 1.5 lc {} dt {} title {}",
                                quoted(dat), i, s.color, s.dashed ? 2 : 1, quoted(s.label)));
  }
  write_file_atomically(dat, data);
  std::string body = fmt::format("set title {}\nset xlabel {}\nset ylabel {}\nset grid\nset key outside right\n",
                                 quoted(title), quoted(xlabel), quoted(ylabel));
  if (log_y) body += "set logscale y\n";
  if (log_x) body += "set logscale x 2\n";
  double x_max = 0;
  for (const Series& s : series)
    for (double x : s.x) x_max = std::max(x_max, x);
  if (!log_x && x_max <= 20) body += "set xtics 1\n";  // epochs: whole numbers
  body += "plot " + fmt::format("{}", fmt::join(plots, ", \\\n     ")) + "\n";
  return render(name, body);
}

std::string Plotter::bars(const std::string& name, const std::string& title, const std::string& ylabel,
                          const std::vector<std::string>& categories, const std::vector<std::string>& series_labels,
                          const std::vector<std::vector<double>>& values) const {
  if (!available() || categories.empty() || values.empty()) return "";
  fs::create_directories(plots_dir_);
  const std::string dat = plots_dir_ + "/" + name + ".dat";
  std::string data;
  for (size_t c = 0; c < categories.size(); ++c) {
    data += quoted(categories[c]);
    for (const auto& v : values) data += fmt::format(" {}", c < v.size() ? v[c] : 0.0);
    data += "\n";
  }
  write_file_atomically(dat, data);
  std::vector<std::string> plots;
  for (size_t s = 0; s < values.size(); ++s)
    plots.push_back(fmt::format("{} using {}{} title {}", s == 0 ? quoted(dat) : "''", s + 2, s == 0 ? ":xtic(1)" : "",
                                quoted(series_labels[s])));
  std::string body = fmt::format(
      "set title {}\nset ylabel {}\nset style data histogram\nset style histogram cluster gap 1\n"
      "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset xtics rotate by -30\nset grid ytics\n"
      "set key below\nset yrange [0:*]\n",
      quoted(title), quoted(ylabel));
  body += "plot " + fmt::format("{}", fmt::join(plots, ", ")) + "\n";
  return render(name, body);
}

std::string Plotter::heatmap(const std::string& name, const std::string& title,
                             const std::vector<std::vector<double>>& m, const std::vector<std::string>& labels,
                             const std::string& xlabel, const std::string& ylabel) const {
  if (!available() || m.empty()) return "";
  fs::create_directories(plots_dir_);
  const std::string dat = plots_dir_ + "/" + name + ".dat";
  std::string data;
  for (const auto& row : m) data += fmt::format("{}\n", fmt::join(row, " "));
  write_file_atomically(dat, data);
  std::vector<std::string> tics;
  for (size_t i = 0; i < labels.size(); ++i) tics.push_back(fmt::format("{} {}", quoted(labels[i]), i));
  const double n = static_cast<double>(m.size());
  std::string body = fmt::format(
      "set title {}\nset xlabel {}\nset ylabel {}\nset size ratio -1\nset xrange [-0.5:{}]\nset yrange [{}:-0.5]\n"
      "set xtics ({}) rotate by -40\nset ytics ({})\nset palette defined (0 'white', 1 '#08519c')\n"
      "set cbrange [0:*]\nunset key\n",
      quoted(title), quoted(xlabel), quoted(ylabel), n - 0.5, n - 0.5, fmt::join(tics, ", "), fmt::join(tics, ", "));
  body += fmt::format("plot {0} matrix with image, {0} matrix using 1:2:(sprintf('%d', $3)) with labels font \",8\"\n",
                      quoted(dat));
  return render(name, body);
}

std::string Plotter::image_grid(const std::string& name, const std::string& title,
                                const std::vector<const float*>& images, size_t columns,
                                const std::vector<std::string>& captions,
                                const std::vector<std::string>& row_labels) const {
  if (!available() || images.empty() || columns == 0) return "";
  fs::create_directories(plots_dir_);
  const size_t rows = (images.size() + columns - 1) / columns;
  const size_t cell = kSide + 2;                               // a two-pixel gutter between images
  const size_t cell_h = captions.empty() ? cell : kSide + 12;  // room for a caption under each image
  const size_t height = rows * cell_h, width = columns * cell;
  std::vector<float> canvas(height * width, 0.5f);
  for (size_t k = 0; k < images.size(); ++k) {
    const size_t top = (k / columns) * cell_h, left = (k % columns) * cell;
    for (size_t r = 0; r < kSide; ++r)
      for (size_t c = 0; c < kSide; ++c) canvas[(top + r) * width + left + c] = images[k][r * kSide + c];
  }
  const std::string dat = plots_dir_ + "/" + name + ".dat";
  std::string data;
  for (size_t r = 0; r < height; ++r) {
    for (size_t c = 0; c < width; ++c) data += fmt::format("{:.3g} ", canvas[r * width + c]);
    data += "\n";
  }
  write_file_atomically(dat, data);
  std::string body = fmt::format(
      "set title {}\nset size ratio -1\nset palette gray\nunset colorbox\nunset key\nset xrange [-0.5:{}]\n"
      "set yrange [{}:-0.5]\nunset xtics\nset border 0\nset lmargin 12\n",
      quoted(title), width - 0.5, height - 0.5);
  if (row_labels.empty()) {
    body += "unset ytics\n";
  } else {
    std::vector<std::string> tics;
    for (size_t r = 0; r < row_labels.size() && r < rows; ++r)
      tics.push_back(fmt::format("{} {}", quoted(row_labels[r]), r * cell_h + kSide / 2));
    body += fmt::format("set ytics scale 0 ({})\n", fmt::join(tics, ", "));
  }
  for (size_t k = 0; k < captions.size() && k < images.size(); ++k)
    body += fmt::format("set label {} {} at {},{} center font \",7\" front\n", k + 1, quoted(captions[k]),
                        (k % columns) * cell + kSide / 2, (k / columns) * cell_h + kSide + 5);
  body += fmt::format("plot {} matrix with image\n", quoted(dat));
  return render(name, body);
}

}  // namespace dagger::suite
