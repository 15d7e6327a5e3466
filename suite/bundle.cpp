// The results bundle (see bundle.h): written after the report, imported by `--resume-from`; and
// the partial bundle, kept up to date as runs finish.
#include "dagger/suite/bundle.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "dagger/graph/error.h"
#include "dagger/runtime/atomic_file.h"
#include "dagger/suite/run.h"

namespace dagger::suite {

namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read '{}'", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string base64(const std::string& bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k) v = v << 8 | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? kDigits[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

/// The keys of the runs whose test probabilities ensembles and error analysis use: the chosen
/// runs of every experiment named as a member, and of an experiment that ensembles its own
/// seeds' runs (E24).
std::set<std::string> member_keys(const SuiteResult& result) {
  std::set<std::string> keys;
  for (const ExperimentResult& e : result.experiments) {
    if (e.ensemble && e.experiment->members.empty())
      for (const GridRun* g : e.chosen_runs()) keys.insert(g->record.key);
    for (const std::string& id : e.experiment->members) {
      auto it = result.by_id.find(id);
      if (it == result.by_id.end()) continue;
      for (const GridRun* g : it->second->chosen_runs()) keys.insert(g->record.key);
    }
  }
  return keys;
}

/// Removes `folder` by renaming it to `aside` first, so that an import never finds half of it.
void discard(const fs::path& folder, const fs::path& aside) {
  fs::create_directories(aside.parent_path());
  fs::remove_all(aside);
  fs::rename(folder, aside);
  fs::remove_all(aside);
}

void copy_run(const RunRecord& r, const fs::path& to, bool with_probs) {
  fs::create_directories(to);
  for (const char* file : {"config.json", "history.csv", "metrics.json", "provenance.json"})
    if (fs::exists(fs::path(r.dir) / file)) fs::copy_file(fs::path(r.dir) / file, to / file);
  std::string predictions;
  for (int p : r.test_predictions) predictions += std::to_string(p) + "\n";
  write_file_atomically((to / "test_predictions.txt").string(), predictions);
  if (!with_probs) return;
  fs::copy(fs::path(r.dir) / "test_probs", to / "test_probs", fs::copy_options::recursive);
  // The best epoch's too, where the run stored them: ensembles' best-epoch figures combine them.
  const fs::path best = fs::path(r.dir) / kBestTestProbsFolder;
  if (fs::exists(best)) fs::copy(best, to / kBestTestProbsFolder, fs::copy_options::recursive);
}

}  // namespace

std::string embed_images(const std::string& html, const std::string& base_dir) {
  static const std::string kOpen = "<img src=\"";
  std::string out;
  size_t at = 0;
  for (size_t found; (found = html.find(kOpen, at)) != std::string::npos;) {
    const size_t start = found + kOpen.size(), end = html.find('"', start);
    if (end == std::string::npos) break;
    const std::string src = html.substr(start, end - start);
    out += html.substr(at, start - at);
    const fs::path file = fs::path(base_dir) / src;
    if (src.ends_with(".png") && !src.starts_with("data:") && fs::is_regular_file(file))
      out += "data:image/png;base64," + base64(read_bytes(file));
    else
      out += src;
    at = end;
  }
  return out + html.substr(at);
}

void write_bundle(const SuiteResult& result, const SuiteOptions& options) {
  const fs::path out(options.out_dir), staging = out / "bundle.tmp", bundle = out / "bundle";
  fs::remove_all(staging);
  fs::create_directories(staging / "runs");
  for (const char* file : {"report.md", "results.json", "suite.json"})
    if (fs::exists(out / file)) fs::copy_file(out / file, staging / file);
  write_file_atomically((staging / "report.html").string(),
                        embed_images(read_bytes(out / "report.html"), options.out_dir));
  if (fs::is_directory(out / "plots")) {
    fs::create_directories(staging / "plots");
    for (const auto& entry : fs::directory_iterator(out / "plots"))
      if (entry.path().extension() == ".png") fs::copy_file(entry.path(), staging / "plots" / entry.path().filename());
  }
  const std::set<std::string> members = member_keys(result);
  for (const ExperimentResult& e : result.experiments)
    for (const GridRun& g : e.runs)
      if (!fs::exists(staging / "runs" / g.record.key))
        copy_run(g.record, staging / "runs" / g.record.key, members.contains(g.record.key));
  // The old bundle goes only once the new one is complete.
  fs::remove_all(bundle);
  fs::rename(staging, bundle);
}

void add_to_partial_bundle(const RunRecord& r, const std::string& out_dir, bool with_probs) {
  const fs::path partial = fs::path(out_dir) / kPartialBundleFolder, to = partial / "runs" / r.key;
  if (r.dir.empty() || !fs::exists(fs::path(r.dir) / "metrics.json")) return;
  if (const fs::path imported = fs::path(r.dir) / kImportedFile; fs::exists(imported)) {
    std::ifstream in(imported);
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object() || !j.value("partial", false)) return;  // from a complete bundle
  }
  with_probs = with_probs && fs::exists(fs::path(r.dir) / "test_probs");
  const bool filed = fs::exists(to / "metrics.json");
  if (!filed || (with_probs && !fs::exists(to / "test_probs"))) {
    // Staged beside runs/, not in it: a kill mid-copy leaves nothing an import would take for a run.
    const fs::path staging = partial / "staging" / r.key;
    fs::remove_all(staging);
    fs::create_directories(to.parent_path());
    copy_run(r, staging, with_probs);
    if (filed) {
      // Filed before without its probabilities, now by an experiment that may combine it: the
      // folder is replaced whole. A kill between the renames leaves the run out, to be filed again.
      const fs::path old = partial / "staging" / (r.key + ".old");
      fs::remove_all(old);
      fs::rename(to, old);
      fs::rename(staging, to);
      fs::remove_all(old);
    } else {
      fs::rename(staging, to);
    }
    std::error_code not_empty;  // another run's staging, had two suites shared the folder: it stays
    fs::remove(staging.parent_path(), not_empty);
  }
  // The index is written again even when the run was already in: a suite killed after the rename
  // and before the index, and resumed, files the run again (reused) and lists it here. The
  // temporaries of writes a kill cut short go first: this folder is the suite's alone.
  remove_stale_temporaries_in(partial.string());
  // What the runs were trained on and with, which --resume-from compares with the new suite's.
  if (const fs::path identity = fs::path(out_dir) / "suite.json"; fs::exists(identity))
    write_file_atomically((partial / "suite.json").string(), read_bytes(identity));
  nlohmann::json index = {{"partial", true}, {"runs", nlohmann::json::array()}};
  std::vector<std::string> keys;
  for (const auto& entry : fs::directory_iterator(partial / "runs"))
    if (fs::exists(entry.path() / "metrics.json")) keys.push_back(entry.path().filename().string());
  std::ranges::sort(keys);
  for (const std::string& key : keys) index["runs"].push_back(key);
  write_file_atomically((partial / kPartialIndexFile).string(), index.dump(1) + "\n");
}

void prune_partial_bundle(const std::string& out_dir, const std::set<std::string>& keep) {
  const fs::path partial = fs::path(out_dir) / kPartialBundleFolder;
  if (!fs::is_directory(partial / "runs")) return;
  for (const auto& entry : fs::directory_iterator(partial / "runs")) {
    const std::string key = entry.path().filename().string();
    if (keep.contains(key)) continue;
    for (const std::string folder : {"test_probs", kBestTestProbsFolder})
      if (fs::exists(entry.path() / folder)) discard(entry.path() / folder, partial / "staging" / (key + "." + folder));
  }
  std::error_code not_empty;
  fs::remove(partial / "staging", not_empty);
}

size_t import_bundle(const std::string& bundle_dir, const std::string& runs_dir) {
  const fs::path runs = fs::path(bundle_dir) / "runs";
  const bool complete = fs::exists(fs::path(bundle_dir) / "results.json");
  if (!fs::is_directory(runs) || (!complete && !fs::exists(fs::path(bundle_dir) / kPartialIndexFile)))
    throw Error(fmt::format("--resume-from: '{}' is not a results bundle (no results.json or {}, and runs/)",
                            bundle_dir, kPartialIndexFile));
  if (const fs::path index = fs::path(bundle_dir) / kPartialIndexFile; !complete) {
    const nlohmann::json j = nlohmann::json::parse(read_bytes(index), nullptr, false);
    if (!j.is_object() || !j.value("partial", false) || !j.contains("runs"))
      throw Error(fmt::format("--resume-from: '{}' is not a partial bundle's index (not JSON with \"partial\": true "
                              "and \"runs\")",
                              index.string()));
  }
  size_t imported = 0;
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(runs))
    if (fs::exists(entry.path() / "metrics.json")) dirs.push_back(entry.path());
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& from : dirs) {
    const fs::path to = fs::path(runs_dir) / from.filename();
    if (fs::exists(to / "metrics.json")) continue;
    fs::remove_all(to);
    fs::create_directories(to);
    for (const auto& entry : fs::directory_iterator(from))
      if (entry.path().filename() != "metrics.json")
        fs::copy(entry.path(), to / entry.path().filename(), fs::copy_options::recursive);
    write_file_atomically((to / kImportedFile).string(),
                          nlohmann::json{{"from", bundle_dir}, {"partial", !complete}}.dump() + "\n");
    // Last and atomically: its presence marks the run finished.
    write_file_atomically((to / "metrics.json").string(), read_bytes(from / "metrics.json"));
    ++imported;
  }
  return imported;
}

}  // namespace dagger::suite
