#!/usr/bin/env bash
# Installs what building and testing epcomm needs on a fresh Debian machine (CPU-only is fine:
# the CUDA toolkit must already provide nvcc). Skips packages that are already there.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-deps: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "install-deps: missing ${need[*]} and cannot apt-get install them" >&2
    exit 1
  fi
fi
if ! command -v nvcc >/dev/null; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    echo "install-deps: nvcc found in /usr/local/cuda/bin (add it to PATH)"
  else
    echo "install-deps: nvcc (CUDA 13 toolkit) not found: epcomm's CUDA code cannot be built" >&2
    exit 1
  fi
fi
