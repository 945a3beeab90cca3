#!/usr/bin/env bash
# What bounds the normal dispatch or combine (docs/perf.md, v15 and v17): times the op alone with a
# diagnostic build (cmake -DEPCOMM_DIAGNOSTICS=ON, in build/diag) whose kernel skips parts of its
# work, next to the same build doing everything (0) and the release binary (first and last).
#   OP=dispatch (EPCOMM_DIAG_DISPATCH): 1 skips the remote metadata stores, 2 the receivers'
#     copy-out, 3 both.
#   OP=combine (EPCOMM_DIAG_COMBINE): 1 sends no rows (weights and tags only, so the reduce reads
#     stale rows), 2 reduces nothing (the reducers still wait for every row), 3 both; 4 (not in
#     the default list, DIAGS="0 4 6") sends zeros without loading the rows, 6 that without reduce;
#     4 and 6 act on the register-path senders only, so from 3 ranks (staged sends by default,
#     docs/perf.md v21) run them with EPCOMM_COMBINE_STAGED=0.
# The skipping variants' results are wrong by design; only their times mean anything.
#   scripts/diagnose-bound.sh --build     configure and build build/diag (no GPU needed)
#   scripts/diagnose-bound.sh [LOGFILE]   (env OP=dispatch|combine, RANKS="4 2", SMS="24 12", ITERS=20)
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
op=${OP:-dispatch}
case "$op" in
  dispatch) knob=EPCOMM_DIAG_DISPATCH ;;
  combine) knob=EPCOMM_DIAG_COMBINE ;;
  *) echo "OP: expected dispatch or combine, got $op" >&2; exit 2 ;;
esac
export NCCL_NVLS_ENABLE=0
for ranks in ${RANKS:-4 2}; do
  for sms in ${SMS:-24 12}; do
    for v in release $(for d in ${DIAGS:-0 1 2 3}; do echo diag$d; done) release; do
      bench=build/release/apps/epcomm_bench diag=0
      case "$v" in diag*) bench=build/diag/apps/epcomm_bench diag=${v#diag} ;; esac
      echo "=== $op ranks $ranks sms $sms $v" >>"$log"
      env "$knob=$diag" EPCOMM_BENCH_ONLY="$op" timeout 120 "$bench" --ranks "$ranks" \
        --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sms "$sms" --warmup 2 \
        --iters "${ITERS:-20}" >>"$log" 2>&1
      echo "rc $?" >>"$log"
    done
  done
done
