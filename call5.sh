#!/usr/bin/env bash
# ad-hoc device call 5 (untracked): SM sweep of the v16 defaults + dynamic/join checks at other SM counts
set -u
d=$OUT/c5; mkdir -p $d
finish() { tar -C $OUT -czf $OUT/c5.tgz c5; rm -rf $d; }
trap finish EXIT
export NCCL_NVLS_ENABLE=0 PATH=/usr/local/cuda/bin:$PATH EPCOMM_COMMIT=bcf456f
s=$(date +%s)
B=build/release/apps/epcomm_bench
timeout 60 $B --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sweep sms --iters 20 --json $d/sweep_sms_r4.json > $d/sweep_sms_r4.txt 2>&1
echo "sweep r4 rc $? at $(( $(date +%s) - s ))s" >> $d/summary.txt
ab() { # ranks sms op name envs...
  local r=$1 sm=$2 op=$3 name=$4; shift 4
  echo "=== r$r sms$sm $op $name" >> $d/ab.txt
  env "$@" EPCOMM_BENCH_ONLY=$op timeout 30 $B --ranks $r --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sms $sm --warmup 2 --iters 20 2>&1 | grep -E "^  (dispatch|combine) " >> $d/ab.txt
}
for i in 1 2; do
  ab 4 32 dispatch def X=1; ab 4 32 dispatch static EPCOMM_DISPATCH_DYNAMIC=0
  ab 4 16 dispatch def X=1; ab 4 16 dispatch static EPCOMM_DISPATCH_DYNAMIC=0
  ab 4 16 combine def X=1; ab 4 16 combine old EPCOMM_COMBINE_JOIN=0 EPCOMM_COMBINE_SEND_WARPS=10 EPCOMM_COMBINE_ROW_BATCH=1
  ab 4 8 dispatch def X=1; ab 4 8 dispatch static EPCOMM_DISPATCH_DYNAMIC=0
  ab 4 8 combine def X=1; ab 4 8 combine old EPCOMM_COMBINE_JOIN=0 EPCOMM_COMBINE_SEND_WARPS=10 EPCOMM_COMBINE_ROW_BATCH=1
  ab 2 12 dispatch def X=1; ab 2 12 dispatch static EPCOMM_DISPATCH_DYNAMIC=0
done
echo "ab at $(( $(date +%s) - s ))s" >> $d/summary.txt
ab 4 32 dispatch d64 EPCOMM_DISPATCH_SEND_WARPS=6 EPCOMM_DISPATCH_TOKEN_BATCH=4
ab 4 32 dispatch d54 EPCOMM_DISPATCH_SEND_WARPS=5 EPCOMM_DISPATCH_TOKEN_BATCH=4
ab 4 16 dispatch d64 EPCOMM_DISPATCH_SEND_WARPS=6 EPCOMM_DISPATCH_TOKEN_BATCH=4
ab 4 24 combine s7 EPCOMM_COMBINE_SEND_WARPS=7
ab 4 24 combine def X=1
ab 4 24 dispatch f5b8 EPCOMM_DISPATCH_SEND_WARPS=5 EPCOMM_DISPATCH_TOKEN_BATCH=8
ab 4 24 dispatch def X=1
echo "extra at $(( $(date +%s) - s ))s" >> $d/summary.txt
timeout 40 $B --ranks 2 --tokens 4096 --hidden 7168 --topk 8 --experts 256 --sweep sms --iters 20 --json $d/sweep_sms_r2.json > $d/sweep_sms_r2.txt 2>&1
echo "sweep r2 rc $? at $(( $(date +%s) - s ))s" >> $d/summary.txt
cat $d/summary.txt; cat $d/ab.txt; grep -E "^  (dispatch|nccl_dispatch|combine|ceiling) " $d/sweep_sms_r4.txt
