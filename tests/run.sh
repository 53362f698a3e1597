#!/usr/bin/env bash
# The test command: installs dependencies, builds with warnings as errors, runs the suite.
#   bash tests/run.sh [BUILD_DIR] [extra cmake arguments...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
bash "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DGEMMA4_WERROR=ON "$@" > /dev/null
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
