#!/usr/bin/env bash
# The README's main command: installs dependencies, builds, and runs the main job. Until the
# benchmark exists that is epcomm_demo: the reference simulation of every operation and, where
# GPUs exist, the multi-GPU connectivity check. It says which of the two it ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
./build/release/apps/epcomm_demo
