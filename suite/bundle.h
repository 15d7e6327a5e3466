#pragma once
/// The results bundle: what of a suite's output folder is worth keeping in a repository. It
/// holds no checkpoints, so it stays small enough to commit, and a suite can import its
/// finished runs to carry on on a machine where the runs/ folder is gone.
///
///   BUNDLE/report.md, results.json, suite.json    as in the output folder
///   BUNDLE/report.html                             with every plot embedded (data: URIs): one file
///   BUNDLE/plots/NAME.png                          the plots, for report.md
///   BUNDLE/runs/KEY/config.json, history.csv, metrics.json, provenance.json
///   BUNDLE/runs/KEY/test_predictions.txt           the test predictions (class ids, one per line)
///   BUNDLE/runs/KEY/test_probs/                    the test softmax outputs, only for the runs
///                                                  other experiments combine or analyse (members)
///   BUNDLE/runs/KEY/best_test_probs/               those of their best epoch's weights, where the
///                                                  run was scored at its last epoch and stored them
///
/// The partial bundle, OUT/bundle-partial, grows as the suite runs: every run finished in OUT
/// (trained, reused, or imported from another partial bundle) goes in as soon as it is filed,
/// laid out as in a bundle's runs/, with partial.json listing them in place of results.json. It
/// is what a suite stopped mid-way, on a machine whose runs/ folder will not survive, commits so
/// that the next machine can carry on with `--resume-from`; runs imported from a complete bundle
/// are left out, as they travel in it. Test probabilities go in only for runs of experiments
/// whose chosen runs others combine, and leave again when the experiment has chosen others: the
/// partial bundle of a long suite stays small enough to commit. A suite that chooses a run
/// imported without them trains it again (suite.cpp, retrain_chosen_without_probabilities).
#include <set>
#include <string>

#include "dagger/suite/suite.h"

namespace dagger::suite {

/// Writes options.out_dir/bundle (replacing an older one) from the report already written there.
void write_bundle(const SuiteResult& result, const SuiteOptions& options);

inline constexpr const char* kPartialBundleFolder = "bundle-partial";
inline constexpr const char* kPartialIndexFile = "partial.json";

/// Written into every run folder import_bundle fills: where the run came from, and whether that
/// was a complete bundle (whose runs a partial bundle leaves out: they travel with it already).
inline constexpr const char* kImportedFile = "imported.json";

/// Adds finished run `r` to out_dir's partial bundle (above), once, with its test probabilities
/// when `with_probs` (a run already in without them gets them); each run folder appears there
/// whole or not at all. partial.json is rewritten on every call, so a run filed again after a
/// kill cut the first filing short is listed. Not thread-safe: call it with the suite's lock held.
void add_to_partial_bundle(const RunRecord& r, const std::string& out_dir, bool with_probs);

/// Removes the test probabilities (both epochs') of every run in out_dir's partial bundle whose
/// key `keep` lacks. Not thread-safe, as add_to_partial_bundle.
void prune_partial_bundle(const std::string& out_dir, const std::set<std::string>& keep);

/// Copies every finished run of `bundle_dir` (a bundle or a partial one) into runs_dir where
/// runs_dir has no finished run of that key (a partly trained one there is replaced: the imported
/// result is the same), marking each with where it came from. Returns how many runs were
/// imported. Throws Error naming the folder when it is not a bundle.
size_t import_bundle(const std::string& bundle_dir, const std::string& runs_dir);

/// `html` with every <img src="REL"> whose file base_dir/REL exists replaced by a data: URI.
std::string embed_images(const std::string& html, const std::string& base_dir);

}  // namespace dagger::suite
