#!/usr/bin/env bash
# Installs dependencies (Debian packages), configures with CMake and builds with Ninja.
# Usage: scripts/build.sh [build-dir [cmake options...]]   (default: build)
#   e.g. scripts/build.sh build-assertions -DDAGGER_ASSERTIONS=ON -DDAGGER_WERROR=ON
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" --parallel "$(nproc)"
