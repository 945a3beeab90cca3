#!/usr/bin/env bash
# The README's main command: installs dependencies, builds, and runs the main job.
# - With 2 or more GPUs: the benchmark (epcomm_bench) in DeepEP's standard settings on every
#   local GPU: normal kernels at 4096 tokens, hidden 7168, top-8 of 256, 24 SMs, and the
#   low-latency kernels at 128 tokens, each next to the same-run NCCL baseline (and the NVLink
#   ceiling), then the target table (scripts/targets.py). JSON goes to $EPCOMM_RUN_DIR
#   (default build/run).
# - Otherwise: epcomm_demo, the CPU reference simulation of every operation on simulated
#   EP2/EP4/EP8 worlds (and, with one GPU, the connectivity check it can do).
# It says which of the two it ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if [ "$gpus" -ge 2 ]; then
  echo "== main job: the benchmark on $gpus local GPUs (epcomm_bench, same-run NCCL baseline) =="
  dir=${EPCOMM_RUN_DIR:-build/run}
  mkdir -p "$dir"
  bench=build/release/apps/epcomm_bench
  "$bench" --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sms 24 --json "$dir/normal.json"
  "$bench" --mode ll --json "$dir/ll.json"
  python3 - "$dir" <<'PY'
import json, sys, os
d = sys.argv[1]
records = json.load(open(os.path.join(d, "normal.json"))) + json.load(open(os.path.join(d, "ll.json")))
json.dump(records, open(os.path.join(d, "bench.json"), "w"), indent=1)
PY
  python3 scripts/targets.py "$dir/bench.json"
else
  echo "== main job: $gpus GPU(s) here, so no benchmark; the CPU reference simulation (epcomm_demo) =="
  ./build/release/apps/epcomm_demo
fi
