#!/usr/bin/env bash
# Installs Debian's chromium, which the report check (tests/tools/check_report_html.py, the
# ctest "report.html opens in a headless browser with every image loaded") drives headless.
# Heavy (about 80 MB to download, 290 MB installed), so not part of install-deps.sh: scripts/test.sh
# runs it; without chromium that ctest reports itself skipped. Safe to run repeatedly; skips apt when chromium is present.
set -euo pipefail

"$(dirname "$0")/apt-ensure.sh" install-browser-deps chromium
