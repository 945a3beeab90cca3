#!/usr/bin/env bash
# Times the cached dispatch and the combine alone with the senders' tag releases batched over
# 1, 2 or 4 rows (EPCOMM_DISPATCH_TOKEN_BATCH, EPCOMM_COMBINE_ROW_BATCH; docs/perf.md, v10) and
# a few sender/receiver splits, at 24 and 12 SMs. Needs a release build.
#   scripts/diagnose-tag-batches.sh [LOGFILE]    (env RANKS="2", SMS="24 12", TOKENS=4096, ITERS=10,
#                                                 BENCH=binary)
set -u
cd "$(dirname "$0")/.."
log=${1:-/dev/stdout}
bench=${BENCH:-build/release/apps/epcomm_bench}
export NCCL_NVLS_ENABLE=0
# VARIANTS="op:name:ENV=.. ENV=..;..." replaces the list below.
variants=(
  "dispatch:b1:EPCOMM_DISPATCH_TOKEN_BATCH=1"
  "dispatch:b2:EPCOMM_DISPATCH_TOKEN_BATCH=2"
  "dispatch:b4:EPCOMM_DISPATCH_TOKEN_BATCH=4"
  "dispatch:b4s10:EPCOMM_DISPATCH_TOKEN_BATCH=4 EPCOMM_DISPATCH_SEND_WARPS=10"
  "dispatch:b4s14:EPCOMM_DISPATCH_TOKEN_BATCH=4 EPCOMM_DISPATCH_SEND_WARPS=14"
  "combine:b1:EPCOMM_COMBINE_ROW_BATCH=1"
  "combine:b2:EPCOMM_COMBINE_ROW_BATCH=2"
  "combine:b4:EPCOMM_COMBINE_ROW_BATCH=4"
  "combine:b4s4:EPCOMM_COMBINE_ROW_BATCH=4 EPCOMM_COMBINE_SEND_WARPS=4"
  "combine:b4s8:EPCOMM_COMBINE_ROW_BATCH=4 EPCOMM_COMBINE_SEND_WARPS=8"
)
if [ -n "${VARIANTS:-}" ]; then IFS=';' read -r -a variants <<<"$VARIANTS"; fi
for ranks in ${RANKS:-2}; do
  for sms in ${SMS:-24 12}; do
    for v in "${variants[@]}"; do
      op=${v%%:*} rest=${v#*:}
      name=${rest%%:*} envs=${rest#*:}
      echo "=== ranks $ranks sms $sms tokens ${TOKENS:-4096} $op variant $name ($envs)" >>"$log"
      env $envs EPCOMM_BENCH_ONLY=$op timeout 120 "$bench" --ranks "$ranks" --tokens "${TOKENS:-4096}" \
        --hidden 7168 --topk 8 --experts 256 --sms "$sms" --warmup 2 --iters "${ITERS:-10}" >>"$log" 2>&1
      echo "rc $?" >>"$log"
    done
  done
done
