#!/usr/bin/env bash
# Installs everything dagger needs to build, test and run, from Debian 12 packages only.
# Safe to run repeatedly; skips apt when every package is already present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  llvm-19-dev
  libxtensor-dev libboost-graph-dev catch2
  libcli11-dev libfmt-dev nlohmann-json3-dev zlib1g-dev libpng-dev
  libxxhash-dev  # checkpoint checksums (XXH3-64), a private dependency of libdagger
  gnuplot-nox
  libopenmpi-dev openmpi-bin  # data-parallel training (dagger train --distributed under mpirun)
  python3 python3-numpy  # tests/package/test_examples.py writes .npy and PNG inputs with them
  dataset-fashion-mnist
)

"$(dirname "$0")/apt-ensure.sh" install-deps "${packages[@]}"
