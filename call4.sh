#!/usr/bin/env bash
set -u
export PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
T=build/release/tests/gpu/epcomm_gpu_tests
for r in 2 3 4; do EPCOMM_TEST_RANKS=$r EPCOMM_TEST_OVERSUBSCRIBE=0 GTEST_FILTER='GpuLowLatency.*' timeout 120 $T > $OUT/ll$r.log 2>&1; echo "ll tests $r ranks rc $? $(grep -c '^\[       OK' $OUT/ll$r.log) ok"; done
EPCOMM_LL_PREREDUCE=1 EPCOMM_TEST_RANKS=4 EPCOMM_TEST_OVERSUBSCRIBE=0 GTEST_FILTER='GpuLowLatency.*' timeout 120 $T > $OUT/ll4pre.log 2>&1; echo "ll tests 4 pre rc $? $(grep -c '^\[       OK' $OUT/ll4pre.log) ok"
V="base:BIN=build/base-bench/epcomm_bench_8c238a1;new:EPCOMM_X=1"
VARIANTS="$V" RANKS=4 ROUNDS=2 bash scripts/ab-ll.sh $OUT/ab4.log
VARIANTS="$V" RANKS=2 ROUNDS=2 bash scripts/ab-ll.sh $OUT/ab2.log
grep -E "===|ll_combine_kernel|ll_dispatch_kernel" $OUT/ab4.log $OUT/ab2.log | grep -v nccl
vs=("def:" "s10:EPCOMM_DISPATCH_SEND_WARPS=10" "s12:EPCOMM_DISPATCH_SEND_WARPS=12" "s13:EPCOMM_DISPATCH_SEND_WARPS=13" "b2:EPCOMM_DISPATCH_TOKEN_BATCH=2" "b8:EPCOMM_DISPATCH_TOKEN_BATCH=8" "s12b2:EPCOMM_DISPATCH_SEND_WARPS=12 EPCOMM_DISPATCH_TOKEN_BATCH=2" "dyn:EPCOMM_DISPATCH_DYNAMIC=1" "s12dyn:EPCOMM_DISPATCH_SEND_WARPS=12 EPCOMM_DISPATCH_DYNAMIC=1")
for round in 1 2; do for v in "${vs[@]}"; do
  name=${v%%:*} envs=${v#*:}
  res=$(env $envs EPCOMM_BENCH_ONLY=dispatch timeout 60 build/release/apps/epcomm_bench --ranks 2 --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sms 12 --dtype bf16 --warmup 3 --iters 30 2>&1 | grep -E "^  dispatch +bf16")
  echo "r$round $name: $res"
done; done | tee $OUT/sweep12.log
