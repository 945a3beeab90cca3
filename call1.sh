#!/usr/bin/env bash
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export EPCOMM_LIBRARY=$PWD/build/release/src/libepcomm.so PYTHONPATH=$PWD/python
for v in "X=0" "EPCOMM_DIAG_SEPARATE=1" "EPCOMM_DIAG_NEW_EMPTY=1" "EPCOMM_DIAG_SEPARATE=1 EPCOMM_DIAG_NEW_EMPTY=1" "X=1"; do
  start=$(date +%s)
  env $v timeout 45 python3 diag_gpu.py > $OUT/diag.log 2>&1; rc=$?
  echo "=== $v: rc=$rc in $(( $(date +%s) - start )) s; ok $(grep -c '\] ok' $OUT/diag.log)"
  grep -E "FAIL|Error" $OUT/diag.log | cut -c1-250 | head -4
  grep "start" $OUT/diag.log | tail -2
done
