#!/usr/bin/env bash
# Builds (unless --no-build) and runs every GPU test on this machine's GPUs in one go, writes
# full logs to LOGDIR (argument, else $OUT, else /tmp/epcomm-gpu-check) and prints a short
# summary last.
#   scripts/gpu-check.sh [--no-build] [--sanitize] [--no-bench] [--quick-bench] [--no-tests] [LOGDIR]
# --sanitize additionally runs the GPU tests on 2 ranks under compute-sanitizer memcheck and
# the normal-kernel tests under racecheck, and the paths of two or more peers at 3 ranks. --no-tests skips every test (GPU, sanitizers, Python
# suite, example), keeping the benchmark and the Python overhead measurement. The benchmark (epcomm_bench: its --check, the
# standard setting at 24 and 12 SMs, and the SM and token sweeps) writes LOGDIR/bench.json.
# World sizes 2..N run on N GPUs; with fewer than 4 GPUs, 3 and 4 ranks also run with ranks
# sharing GPUs (EPCOMM_TEST_OVERSUBSCRIBE=1; functional coverage only, reported as such;
# EPCOMM_CHECK_SHARED="3" narrows that list). EPCOMM_CHECK_MEMCHECK_FILTER narrows memcheck to a
# GoogleTest filter. Where python3 has torch, the Python package's GPU tests, the MoE example and
# the Python overhead measurement run too (against this build, without installing).
# EPCOMM_CHECK_VARIANT="ENV=value ..." adds a run of the GPU tests at N ranks with those settings.
set -u
cd "$(dirname "$0")/.."
build=1 sanitize=0 bench=1 quick=0 tests_on=1 logdir=""
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    --sanitize) sanitize=1 ;;
    --no-bench) bench=0 ;;
    --quick-bench) quick=1 ;;
    --no-tests) tests_on=0 ;;
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

if [ "$tests_on" = 0 ]; then
  add "gpu tests" "not run (--no-tests)"
elif [ -x "$tests" ] && [ "$ngpu" -ge 1 ]; then
  for r in $(seq 2 "$ngpu"); do run_tests "gpu tests, $r ranks on $r GPUs" "gpu_r$r" "$r" 0; done
  if [ "$ngpu" -lt 4 ] && [ "$ngpu" -ge 1 ]; then
    for r in ${EPCOMM_CHECK_SHARED:-3 4}; do
      [ "$r" -le "$ngpu" ] && continue
      run_tests "gpu tests, $r ranks sharing $ngpu GPUs" "gpu_r${r}_shared" "$r" 1
    done
  fi
  # EPCOMM_CHECK_VARIANT="ENV=value ..." also runs the tests at N ranks with those settings
  # (a kernel variant that is not the default, e.g. EPCOMM_DISPATCH_RECV_ORDER=slot).
  if [ -n "${EPCOMM_CHECK_VARIANT:-}" ] && [ "$ngpu" -ge 2 ]; then
    run_tests "gpu tests, $ngpu ranks, $EPCOMM_CHECK_VARIANT" "gpu_r${ngpu}_variant" "$ngpu" 0 \
      env $EPCOMM_CHECK_VARIANT
  fi
  grep -h "timeout error after" "$logdir"/*.log | head -4 >"$logdir/timeouts.txt"
  if [ "$sanitize" = 1 ]; then
    if command -v compute-sanitizer >/dev/null; then
      GTEST_FILTER=${EPCOMM_CHECK_MEMCHECK_FILTER:-'-*TwoHundred*'} run_tests "memcheck, 2 ranks" "memcheck_r2" 2 1 \
        compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9
      GTEST_FILTER='GpuNormal.Bf16*:GpuNormal.WorstCase*:GpuLowLatency.DispatchAndCombine*' run_tests "racecheck (shared memory), 2 ranks" "racecheck_r2" 2 1 \
        compute-sanitizer --tool racecheck --target-processes all --error-exitcode 9
      # Paths that only run with two or more peers (the combine's staged sends, v21): 3 ranks,
      # sharing the GPUs where there are fewer. Racecheck missed their race at 2 ranks.
      GTEST_FILTER='GpuNormal.Bf16*:GpuNormal.Fp8*:GpuLowLatency.DispatchAndCombine*' run_tests "memcheck, 3 ranks (two peers)" "memcheck_r3" 3 1 \
        compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9
      GTEST_FILTER='GpuNormal.Bf16*:GpuLowLatency.DispatchAndCombine*' run_tests "racecheck (shared memory), 3 ranks" "racecheck_r3" 3 1 \
        compute-sanitizer --tool racecheck --target-processes all --error-exitcode 9
    else
      add "memcheck" "compute-sanitizer not found"
    fi
  fi
else
  add "gpu tests" "not run (no GPU or no test binary)"
fi
benchbin=build/release/apps/epcomm_bench
if [ "$bench" = 1 ] && [ -x "$benchbin" ] && [ "$ngpu" -ge 2 ]; then
  export EPCOMM_COMMIT="$commit"
  if timeout 300 "$benchbin" --check --tokens 1024 --iters 3 --warmup 1 >"$logdir/bench_check.txt" 2>&1 &&
     ! grep -q MISMATCH "$logdir/bench_check.txt"; then
    add "bench --check (vs reference)" "ok"
  else
    add "bench --check (vs reference)" "FAILED"; tail -5 "$logdir/bench_check.txt"
  fi
  standard="--tokens 4096 --hidden 7168 --topk 8 --experts 256"
  timeout 600 "$benchbin" $standard --sms 24 --json "$logdir/bench_std24.json" >"$logdir/bench_std.txt" 2>&1
  timeout 600 "$benchbin" $standard --sms 12 --json "$logdir/bench_std12.json" >>"$logdir/bench_std.txt" 2>&1
  # The combine's phase trace (EPCOMM_TRACE=1) and its sender/reducer splits.
  # EPCOMM_CHECK_DIAGNOSE=0 skips it (it is for finding where time goes, not a result).
  if [ "${EPCOMM_CHECK_DIAGNOSE:-1}" = 1 ]; then
    RANKS=$ngpu timeout 300 bash scripts/diagnose-warp-splits.sh "$logdir/combine_trace.txt"
  fi
  # Low-latency standard setting (128 tokens, hidden 7168, top-8 of 288, FP8).
  timeout 600 "$benchbin" --mode ll --json "$logdir/bench_ll.json" >>"$logdir/bench_std.txt" 2>&1
  if [ "$ngpu" -gt 2 ]; then  # the 2-GPU targets too
    timeout 600 "$benchbin" $standard --ranks 2 --sms 24 --json "$logdir/bench_std24_r2.json" >>"$logdir/bench_std.txt" 2>&1
    timeout 600 "$benchbin" --mode ll --ranks 2 --json "$logdir/bench_ll_r2.json" >>"$logdir/bench_std.txt" 2>&1
  fi
  if [ "$quick" = 0 ]; then
    timeout 900 "$benchbin" $standard --sweep all --iters 20 --json "$logdir/bench_sweep.json" >"$logdir/bench_sweep.txt" 2>&1
    timeout 600 "$benchbin" --mode ll --sweep tokens --iters 200 --json "$logdir/bench_ll_sweep.json" >>"$logdir/bench_sweep.txt" 2>&1
  fi
  python3 - "$logdir" <<'PY' && add "benchmark" "ok (bench.json)" || add "benchmark" "FAILED"
import json, sys, os, glob
d = sys.argv[1]
records = []
for name in ["bench_std24.json", "bench_std12.json", "bench_ll.json", "bench_std24_r2.json",
             "bench_ll_r2.json", "bench_sweep.json", "bench_ll_sweep.json"]:
    p = os.path.join(d, name)
    if os.path.exists(p):
        records += json.load(open(p))
json.dump(records, open(os.path.join(d, "bench.json"), "w"), indent=1)
assert records, "no benchmark records"
PY
  grep -v '^#' "$logdir/bench_std.txt" | head -60 >"$logdir/bench_table.txt"
  python3 scripts/targets.py "$logdir/bench.json" >"$logdir/targets.txt" 2>&1
  python3 scripts/plot_bench.py "$logdir/bench.json" "$logdir/bench.png" 2>"$logdir/plot.log" || add "chart" "FAILED (plot.log)"
fi
lib="$PWD/build/release/src/libepcomm.so"
if [ "$ngpu" -ge 2 ] && [ -f "$lib" ] && python3 -c "import torch" 2>/dev/null; then
  export EPCOMM_LIBRARY="$lib" PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
  if [ "$tests_on" = 0 ]; then
    add "python tests, example" "not run (--no-tests)"
  elif timeout 240 python3 -m pytest -q python/tests >"$logdir/python_tests.log" 2>&1; then
    add "python tests (GPU suite included)" "ok: $(tail -1 "$logdir/python_tests.log")"
  else
    add "python tests (GPU suite included)" "FAILED: $(tail -1 "$logdir/python_tests.log")"
    grep -E "^FAILED|Error" "$logdir/python_tests.log" | head -10
  fi
  if [ "$tests_on" = 0 ]; then
    :
  elif timeout 120 python3 examples/moe_layer.py >"$logdir/moe_layer.log" 2>&1; then
    add "examples/moe_layer.py vs dense" "ok"
  else
    add "examples/moe_layer.py vs dense" "FAILED (moe_layer.log)"; tail -5 "$logdir/moe_layer.log"
  fi
  if [ "$bench" = 1 ]; then
    timeout 150 python3 python/benchmarks/overhead.py --json "$logdir/python_overhead.json" \
      --profile "$logdir/python_profile.txt" >"$logdir/python_overhead.txt" 2>&1 ||
      add "python overhead" "FAILED (python_overhead.txt)"
  fi
fi
if [ "$tests_on" = 1 ] && [ -x "$demo" ]; then
  if timeout 300 "$demo" >"$logdir/demo.log" 2>&1; then add "demo (reference + connectivity)" "ok"; else
    add "demo (reference + connectivity)" "FAILED"; tail -5 "$logdir/demo.log"; fi
fi

echo
echo "== epcomm gpu-check: ${card:-no GPU} x ${ngpu}, commit $commit, logs in $logdir =="
printf '%s\n' "${summary[@]}"
cat "$logdir/timeouts.txt" 2>/dev/null
[ -f "$logdir/targets.txt" ] && cat "$logdir/targets.txt"
[ -f "$logdir/combine_trace.txt" ] && grep -hE "^===|^  (combine|dispatch) " "$logdir/combine_trace.txt"
[ -f "$logdir/moe_layer.log" ] && grep -h "MoE layer" "$logdir/moe_layer.log"
[ -f "$logdir/python_overhead.txt" ] && cat "$logdir/python_overhead.txt"
[ -f "$logdir/bench_table.txt" ] && { echo "-- benchmark (standard setting; see bench_std.txt) --"; grep -h '^#' "$logdir/bench_std.txt" | head -2; cat "$logdir/bench_table.txt"; }
grep -q "FAILED" <<<"${summary[*]}" && exit 1
exit 0
