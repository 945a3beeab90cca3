#!/usr/bin/env bash
# Builds (unless --no-build) and runs every GPU test on this machine's GPUs in one go, writes
# full logs to LOGDIR (argument, else $OUT, else /tmp/epcomm-gpu-check) and prints a short
# summary last.
#   scripts/gpu-check.sh [--no-build] [--sanitize] [LOGDIR]
# --sanitize additionally runs the GPU tests on 2 ranks under compute-sanitizer memcheck.
# World sizes 2..N run on N GPUs; with fewer than 4 GPUs, 3 and 4 ranks also run with ranks
# sharing GPUs (EPCOMM_TEST_OVERSUBSCRIBE=1; functional coverage only, reported as such).
set -u
cd "$(dirname "$0")/.."
build=1 sanitize=0 logdir=""
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    --sanitize) sanitize=1 ;;
    *) logdir="$a" ;;
  esac
done
logdir=${logdir:-${OUT:-/tmp/epcomm-gpu-check}}
mkdir -p "$logdir"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH="/usr/local/cuda/bin:$PATH"
summary=()
add() { summary+=("$(printf '%-44s %s' "$1" "$2")"); }

card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
commit=${EPCOMM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
{ nvidia-smi; nvidia-smi topo -m; } >"$logdir/nvidia-smi.log" 2>&1

if [ "$build" = 1 ]; then
  if bash scripts/build.sh release >"$logdir/build.log" 2>&1; then add "build (release)" "ok"; else
    add "build (release)" "FAILED (see build.log)"; tail -30 "$logdir/build.log"; fi
fi
tests=build/release/tests/gpu/epcomm_gpu_tests
demo=build/release/apps/epcomm_demo

run_tests() {  # name logname ranks oversubscribe [wrapper...]
  local name=$1 logname=$2 ranks=$3 over=$4; shift 4
  local log="$logdir/$logname.log" start end rc
  start=$(date +%s)
  EPCOMM_TEST_RANKS=$ranks EPCOMM_TEST_OVERSUBSCRIBE=$over timeout 900 "$@" "$tests" >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  local passed failed skipped
  passed=$(grep -c '^\[       OK \]' "$log")
  failed=$(grep -c '^\[  FAILED  \] GpuRuntime' "$log")
  skipped=$(grep -c '^\[  SKIPPED \] GpuRuntime' "$log")
  if [ $rc = 0 ] && [ "$failed" = 0 ]; then
    add "$name" "ok: $passed passed, $skipped skipped ($((end - start)) s)"
  else
    add "$name" "FAILED (rc $rc): $passed passed, $failed failed ($((end - start)) s)"
    grep -E "Failure|error|FAILED|timed out" "$log" | head -20
  fi
}

if [ -x "$tests" ] && [ "$ngpu" -ge 1 ]; then
  for r in $(seq 2 "$ngpu"); do run_tests "gpu tests, $r ranks on $r GPUs" "gpu_r$r" "$r" 0; done
  if [ "$ngpu" -lt 4 ] && [ "$ngpu" -ge 1 ]; then
    for r in 3 4; do
      [ "$r" -le "$ngpu" ] && continue
      run_tests "gpu tests, $r ranks sharing $ngpu GPUs" "gpu_r${r}_shared" "$r" 1
    done
  fi
  grep -h "timeout error after" "$logdir"/*.log | head -4 >"$logdir/timeouts.txt"
  if [ "$sanitize" = 1 ]; then
    if command -v compute-sanitizer >/dev/null; then
      GTEST_FILTER='-*TwoHundred*' run_tests "memcheck, 2 ranks" "memcheck_r2" 2 1 \
        compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9
      GTEST_FILTER='GpuNormal.Bf16*:GpuNormal.WorstCase*' run_tests "racecheck (shared memory), 2 ranks" "racecheck_r2" 2 1 \
        compute-sanitizer --tool racecheck --target-processes all --error-exitcode 9
    else
      add "memcheck" "compute-sanitizer not found"
    fi
  fi
else
  add "gpu tests" "not run (no GPU or no test binary)"
fi
if [ -x "$demo" ]; then
  if timeout 300 "$demo" >"$logdir/demo.log" 2>&1; then add "demo (reference + connectivity)" "ok"; else
    add "demo (reference + connectivity)" "FAILED"; tail -5 "$logdir/demo.log"; fi
fi

echo
echo "== epcomm gpu-check: ${card:-no GPU} x ${ngpu}, commit $commit, logs in $logdir =="
printf '%s\n' "${summary[@]}"
cat "$logdir/timeouts.txt" 2>/dev/null
grep -q "FAILED" <<<"${summary[*]}" && exit 1
exit 0
