#!/usr/bin/env bash
# The README's test command: installs dependencies, builds everything (CUDA included), runs the
# CPU tests, builds the C++ example against the installed package, and, where GPUs are present,
# runs the GPU tests too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
# The diagnostic kernel variants (EPCOMM_DIAGNOSTICS) must keep compiling too.
bash scripts/diagnose-bound.sh --build
(cd build/release && ctest -L cpu --output-on-failure -j "$(nproc)")
bash scripts/check-example.sh
# Python layer over the C ABI (torch-free parts; GPU tests of the package need GPUs).
python3 -c "import pytest" 2>/dev/null || python3 -m pip install -q pytest
EPCOMM_LIBRARY="$PWD/build/release/src/libepcomm.so" PYTHONPATH="$PWD/python" python3 -m pytest -q python/tests
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "GPUs found: running the GPU tests"
  (cd build/release && ctest -L gpu --output-on-failure)
else
  echo "No GPU on this machine: GPU tests not run (scripts/gpu-check.sh runs them on a GPU machine)"
fi
