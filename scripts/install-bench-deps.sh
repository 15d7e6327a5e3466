#!/usr/bin/env bash
# Installs what the PyTorch side of the benchmark needs (bench/torch_bench.py, bench/compare.py),
# from Debian 12 packages only. Safe to run repeatedly; skips apt when everything is present.
set -euo pipefail

packages=(
  python3 python3-torch python3-numpy
  libopenblas0-pthread
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-bench-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
