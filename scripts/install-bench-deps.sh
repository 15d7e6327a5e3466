#!/usr/bin/env bash
# Installs what the PyTorch side of the benchmark needs (bench/torch_bench.py, bench/compare.py),
# from Debian 12 packages only. Safe to run repeatedly; skips apt when everything is present.
set -euo pipefail

packages=(
  python3 python3-torch python3-numpy
  libopenblas0-pthread
)

"$(dirname "$0")/apt-ensure.sh" install-bench-deps "${packages[@]}"
