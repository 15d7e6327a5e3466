#!/usr/bin/env bash
# The main job: install, configure, build, then train mlp512 on the real Fashion-MNIST.
# Extra arguments go to `dagger train` (e.g. --epochs 20 --patience 15).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" "$root/build"
"$root/build/dagger" train mlp512 --epochs 5 --out "$root/runs/mlp512" --json "$@"
