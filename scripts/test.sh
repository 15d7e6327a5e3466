#!/usr/bin/env bash
# The test command: install, configure and build with warnings as errors, run every test with
# CTest (Debian's chromium installed for the report check); then build again with assert()s
# kept (DAGGER_ASSERTIONS) and run the fast tests there.
# Arguments go to both ctest runs (e.g. -R gradcheck).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" "$root/build" -DDAGGER_WERROR=ON
"$root/scripts/install-browser-deps.sh"  # the report.html check runs in CI rather than skipping
ctest --test-dir "$root/build" --output-on-failure --parallel "$(nproc)" --timeout 600 "$@"
"$root/scripts/build.sh" "$root/build-assertions" -DDAGGER_WERROR=ON -DDAGGER_ASSERTIONS=ON
ctest --test-dir "$root/build-assertions" --output-on-failure --parallel "$(nproc)" --timeout 600 -L fast "$@"
