#!/usr/bin/env bash
# What bounds the normal dispatch (docs/perf.md, v12 and v15): times the cached dispatch alone
# with a diagnostic build (cmake -DEPCOMM_DIAGNOSTICS=ON, in build/diag) whose kernel skips the
# remote metadata stores (EPCOMM_DIAG_DISPATCH=1), the receivers' copy-out (2) or both (3), next
# to the same build doing everything (0) and the release binary. The skipped variants' results
# are wrong by design; only their times mean anything.
#   scripts/diagnose-dispatch-bound.sh --build     configure and build build/diag (no GPU needed)
#   scripts/diagnose-dispatch-bound.sh [LOGFILE]   (env RANKS="4 2", SMS="24 12", ITERS=20)
set -u
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
if [ "${1:-}" = --build ]; then
  cmake -S . -B build/diag -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DEPCOMM_DIAGNOSTICS=ON -DEPCOMM_BUILD_TESTS=OFF -DEPCOMM_BUILD_APPS=ON >/dev/null &&
    cmake --build build/diag --target epcomm_bench
  exit $?
fi
log=${1:-/dev/stdout}
export NCCL_NVLS_ENABLE=0
for ranks in ${RANKS:-4 2}; do
  for sms in ${SMS:-24 12}; do
    for v in release diag0 diag1 diag2 diag3 release; do
      bench=build/release/apps/epcomm_bench diag=0
      case "$v" in diag*) bench=build/diag/apps/epcomm_bench diag=${v#diag} ;; esac
      echo "=== ranks $ranks sms $sms $v" >>"$log"
      EPCOMM_DIAG_DISPATCH=$diag EPCOMM_BENCH_ONLY=dispatch timeout 120 "$bench" --ranks "$ranks" \
        --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sms "$sms" --warmup 2 \
        --iters "${ITERS:-20}" >>"$log" 2>&1
      echo "rc $?" >>"$log"
    done
  done
done
