#!/usr/bin/env bash
# A/B of low-latency variants in one call: each variant's environment in turn, ROUNDS times
# (alternating, so drift shows as drift and not as a difference), printing the event and kernel
# times of the LL ops and the same-run NCCL baseline (docs/perf.md, LL v9-v14 were measured so).
#   scripts/ab-ll.sh [LOGFILE]
#   env VARIANTS="name:ENV=.. ENV=..;name2:ENV=.." (default: the current defaults against the
#       pre-reduced combine), RANKS (default: every GPU), TOKENS=128, HIDDEN=7168, ITERS=300,
#       ROUNDS=3, TRACE=1 (one traced run per variant), BENCH=binary, RUN_TIMEOUT=40 (seconds per
#       benchmark run; one run takes ~6-10 s, and a variant that hangs should cost little device
#       time: 120 s per run once spent ~560 s of a session's 1800 on one broken variant).
#       A variant's BIN=path runs that benchmark binary instead of BENCH (an older build, say).
set -u
cd "$(dirname "$0")/.."
log=${1:-/dev/stdout}
bench=${BENCH:-build/release/apps/epcomm_bench}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
variants=("default:EPCOMM_LL_PREREDUCE=0" "prereduce:EPCOMM_LL_PREREDUCE=1")
if [ -n "${VARIANTS:-}" ]; then IFS=';' read -r -a variants <<<"$VARIANTS"; fi
ranks=()
[ -n "${RANKS:-}" ] && ranks=(--ranks "$RANKS")
for round in $(seq "${ROUNDS:-3}"); do
  for v in "${variants[@]}"; do
    name=${v%%:*} envs=${v#*:} bin=$bench
    for kv in $envs; do [ "${kv%%=*}" = BIN ] && bin=${kv#BIN=}; done
    echo "=== round $round variant $name ($envs)" >>"$log"
    env $envs timeout "${RUN_TIMEOUT:-40}" "$bin" --mode ll "${ranks[@]}" --tokens "${TOKENS:-128}" \
      --hidden "${HIDDEN:-7168}" --iters "${ITERS:-300}" 2>&1 |
      grep -E "^#|^  (nccl_|ceiling_)?ll_(dispatch|combine)(_kernel)? " >>"$log"
  done
done
if [ "${TRACE:-0}" = 1 ]; then
  for v in "${variants[@]}"; do
    name=${v%%:*} envs=${v#*:} bin=$bench
    for kv in $envs; do [ "${kv%%=*}" = BIN ] && bin=${kv#BIN=}; done
    echo "=== trace variant $name ($envs)" >>"$log"
    env $envs EPCOMM_TRACE=1 timeout "${RUN_TIMEOUT:-40}" "$bin" --mode ll "${ranks[@]}" --tokens "${TOKENS:-128}" \
      --hidden "${HIDDEN:-7168}" --iters 100 2>&1 | grep "trace\]" | tail -4 >>"$log"
  done
fi
