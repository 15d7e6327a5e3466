// The small Markdown subset the report uses, rendered as HTML.
#include <fmt/format.h>

#include <sstream>
#include <vector>

#include "dagger/suite/report.h"

namespace dagger::suite {

namespace {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

/// Inline markup: `code`, **bold**, ![alt](src) and [text](href).
std::string inline_html(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '`') {
      const size_t end = text.find('`', i + 1);
      if (end != std::string::npos) {
        out += "<code>" + escape(text.substr(i + 1, end - i - 1)) + "</code>";
        i = end + 1;
        continue;
      }
    }
    if (text.compare(i, 2, "**") == 0) {
      const size_t end = text.find("**", i + 2);
      if (end != std::string::npos) {
        out += "<strong>" + inline_html(text.substr(i + 2, end - i - 2)) + "</strong>";
        i = end + 2;
        continue;
      }
    }
    const bool image = text.compare(i, 2, "![") == 0;
    if (image || text[i] == '[') {
      const size_t open = i + (image ? 2 : 1);
      const size_t close = text.find("](", open);
      const size_t end = close == std::string::npos ? close : text.find(')', close);
      if (end != std::string::npos) {
        const std::string label = text.substr(open, close - open), target = text.substr(close + 2, end - close - 2);
        out += image ? fmt::format("<img src=\"{}\" alt=\"{}\">", escape(target), escape(label))
                     : fmt::format("<a href=\"{}\">{}</a>", escape(target), inline_html(label));
        i = end + 1;
        continue;
      }
    }
    out += escape(std::string(1, text[i]));
    ++i;
  }
  return out;
}

std::vector<std::string> table_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string inner = line.substr(1, line.size() - (line.back() == '|' ? 2 : 1));
  std::stringstream ss(inner);
  for (std::string cell; std::getline(ss, cell, '|');) {
    cell.erase(0, cell.find_first_not_of(' '));
    cell.erase(cell.find_last_not_of(' ') + 1);
    cells.push_back(cell);
  }
  return cells;
}

constexpr const char* kStyle = R"(body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:0.5em 0}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}code{background:#f6f6f6}h2{border-bottom:1px solid #ccc;margin-top:2em})";

}  // namespace

std::string markdown_to_html(const std::string& markdown, const std::string& title) {
  std::vector<std::string> lines;
  std::stringstream ss(markdown);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  std::string html = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n",
      escape(title), kStyle);
  std::string paragraph;
  auto flush = [&] {
    if (!paragraph.empty()) html += "<p>" + inline_html(paragraph) + "</p>\n";
    paragraph.clear();
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.starts_with("```")) {
      flush();
      html += "<pre>";
      for (++i; i < lines.size() && !lines[i].starts_with("```"); ++i) html += escape(lines[i]) + "\n";
      html += "</pre>\n";
    } else if (line.starts_with('#')) {
      flush();
      const size_t level = line.find_first_not_of('#');
      html += fmt::format("<h{0}>{1}</h{0}>\n", level, inline_html(line.substr(level + 1)));
    } else if (line.starts_with('|')) {
      flush();
      html += "<table>\n";
      bool header = i + 1 < lines.size() && lines[i + 1].starts_with("|-");
      for (; i < lines.size() && lines[i].starts_with('|'); ++i) {
        if (lines[i].starts_with("|-")) continue;
        html += "<tr>";
        for (const std::string& cell : table_cells(lines[i]))
          html += fmt::format("<{0}>{1}</{0}>", header ? "th" : "td", inline_html(cell));
        html += "</tr>\n";
        header = false;
      }
      --i;
      html += "</table>\n";
    } else if (line.starts_with("- ")) {
      flush();
      html += "<ul>\n";
      for (; i < lines.size() && lines[i].starts_with("- "); ++i)
        html += "<li>" + inline_html(lines[i].substr(2)) + "</li>\n";
      --i;
      html += "</ul>\n";
    } else if (line.empty()) {
      flush();
    } else {
      paragraph += (paragraph.empty() ? "" : " ") + line;
    }
  }
  flush();
  return html + "</body></html>\n";
}

}  // namespace dagger::suite
