#!/usr/bin/env bash
# Times the normal combine alone under its run-time variants, with the phase trace on, for
# finding where its time goes (docs/perf.md, 4-GPU section). Needs a release build.
#   scripts/diagnose-combine.sh [LOGFILE]    (env RANKS="4 2", TOKENS="4096", SMS=24)
set -u
cd "$(dirname "$0")/.."
log=${1:-/dev/stdout}
bench=build/release/apps/epcomm_bench
export NCCL_NVLS_ENABLE=0
variants=(
  "fused:"
  "split:EPCOMM_COMBINE_SPLIT=1"
  "interleave:EPCOMM_COMBINE_ORDER=interleave"
  "interleave+send8:EPCOMM_COMBINE_ORDER=interleave EPCOMM_COMBINE_SEND_WARPS=8"
  "interleave+send10:EPCOMM_COMBINE_ORDER=interleave EPCOMM_COMBINE_SEND_WARPS=10"
  "interleave+wide:EPCOMM_COMBINE_ORDER=interleave EPCOMM_COMBINE_WIDE_COPY=1"
  "interleave+send8+wide:EPCOMM_COMBINE_ORDER=interleave EPCOMM_COMBINE_SEND_WARPS=8 EPCOMM_COMBINE_WIDE_COPY=1"
  "send8:EPCOMM_COMBINE_SEND_WARPS=8"
)
for ranks in ${RANKS:-4 2}; do
  for tokens in ${TOKENS:-4096}; do
    for v in "${variants[@]}"; do
      name=${v%%:*} envs=${v#*:}
      echo "=== ranks $ranks tokens $tokens variant $name ($envs)" >>"$log"
      only=combine
      [[ $envs == *SPLIT* ]] && only=combine_split
      env $envs EPCOMM_TRACE=1 EPCOMM_BENCH_ONLY=$only timeout 120 "$bench" --ranks "$ranks" \
        --tokens "$tokens" --hidden 7168 --topk 8 --experts 256 --sms "${SMS:-24}" --warmup 1 \
        --iters 3 >>"$log" 2>&1
      echo "rc $?" >>"$log"
    done
  done
done
