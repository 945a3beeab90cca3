#!/usr/bin/env bash
# Configures and builds a preset (default: release) with every target.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
export PATH="/usr/local/cuda/bin:$PATH"
if [ ! -f "build/$preset/build.ninja" ]; then
  cmake --preset "$preset" -DEPCOMM_BUILD_TESTS=ON -DEPCOMM_BUILD_APPS=ON >"build-$preset-configure.log" 2>&1 || {
    cat "build-$preset-configure.log"; exit 1; }
  rm -f "build-$preset-configure.log"
fi
cmake --build --preset "$preset" -j "$(nproc)"
