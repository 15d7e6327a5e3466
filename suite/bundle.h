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
#include <string>

#include "dagger/suite/suite.h"

namespace dagger::suite {

/// Writes options.out_dir/bundle (replacing an older one) from the report already written there.
void write_bundle(const SuiteResult& result, const SuiteOptions& options);

/// Copies every finished run of `bundle_dir` into runs_dir where runs_dir has no finished run of
/// that key (a partly trained one there is replaced: the imported result is the same). Returns
/// how many runs were imported. Throws Error naming the folder when it is not a bundle.
size_t import_bundle(const std::string& bundle_dir, const std::string& runs_dir);

/// `html` with every <img src="REL"> whose file base_dir/REL exists replaced by a data: URI.
std::string embed_images(const std::string& html, const std::string& base_dir);

}  // namespace dagger::suite
