#!/usr/bin/env bash
# Times the normal combine and the cached dispatch alone under their sender/receiver warp
# splits, the combine with its phase trace on, for finding where their time goes (docs/perf.md,
# v9). Needs a release build.
#   scripts/diagnose-warp-splits.sh [LOGFILE]    (env RANKS="4 2", TOKENS="4096", SMS=24)
set -u
cd "$(dirname "$0")/.."
log=${1:-/dev/stdout}
bench=build/release/apps/epcomm_bench
export NCCL_NVLS_ENABLE=0
variants=(
  "combine:default:"
  "combine:send6:EPCOMM_COMBINE_SEND_WARPS=6"
  "combine:send8:EPCOMM_COMBINE_SEND_WARPS=8"
  "combine:send10:EPCOMM_COMBINE_SEND_WARPS=10"
  "combine:send12:EPCOMM_COMBINE_SEND_WARPS=12"
  "dispatch:default:"
  "dispatch:send6:EPCOMM_DISPATCH_SEND_WARPS=6"
  "dispatch:send8:EPCOMM_DISPATCH_SEND_WARPS=8"
  "dispatch:send10:EPCOMM_DISPATCH_SEND_WARPS=10"
  "dispatch:send12:EPCOMM_DISPATCH_SEND_WARPS=12"
)
for ranks in ${RANKS:-4 2}; do
  for tokens in ${TOKENS:-4096}; do
    for v in "${variants[@]}"; do
      op=${v%%:*} rest=${v#*:}
      name=${rest%%:*} envs=${rest#*:}
      echo "=== ranks $ranks tokens $tokens $op variant $name ($envs)" >>"$log"
      trace=0
      [ "$op" = combine ] && trace=1
      env $envs EPCOMM_TRACE=$trace EPCOMM_BENCH_ONLY=$op timeout 120 "$bench" --ranks "$ranks" \
        --tokens "$tokens" --hidden 7168 --topk 8 --experts 256 --sms "${SMS:-24}" --warmup 2 \
        --iters 10 >>"$log" 2>&1
      echo "rc $?" >>"$log"
    done
  done
done
