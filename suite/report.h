#pragma once
/// The suite's report folder: report.md, its HTML rendering report.html (tables inline, the
/// PNG plots beside it under plots/), and results.json with every run's configuration,
/// metrics, history and provenance.
#include <string>

#include "dagger/suite/suite.h"

namespace dagger::suite {

/// Writes report.md, report.html, results.json and the plots into options.out_dir.
void write_report(const SuiteResult& result, const SuiteOptions& options);

/// Every run (configuration, grid values, history, train/val/test metrics, provenance) and every
/// experiment (runs, chosen run, published values, measures beside the study's numbers).
nlohmann::json results_json(const SuiteResult& result, const SuiteOptions& options);

/// The report's Markdown as a self-contained HTML page: headings, paragraphs, lists, pipe
/// tables, fenced code, images, links, `code` and **bold**; everything else is escaped text.
std::string markdown_to_html(const std::string& markdown, const std::string& title);

}  // namespace dagger::suite
