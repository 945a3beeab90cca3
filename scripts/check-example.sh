#!/usr/bin/env bash
# Installs the release build into install/release and builds examples/minimal against it with
# find_package(epcomm), then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --install build/release --prefix install/release >/dev/null
rm -rf build/example
cmake -S examples/minimal -B build/example -G Ninja -DCMAKE_PREFIX_PATH="$PWD/install/release" >/dev/null
cmake --build build/example >/dev/null
./build/example/epcomm_minimal
