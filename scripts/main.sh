#!/usr/bin/env bash
# The main job: install, configure, build, then run the study's experiment suite (quick profile)
# on the real Fashion-MNIST; the report lands in runs/suite-quick. A rerun resumes.
# Extra arguments go to `dagger suite` (e.g. --threads 2, --only E14).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" "$root/build"
cd "$root"
build/dagger suite --profile quick --out runs/suite-quick "$@"
