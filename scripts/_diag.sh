b=build/release/apps/epcomm_bench
export EPCOMM_EXPERIMENTAL_LOW_LATENCY=1 NCCL_NVLS_ENABLE=0
nvidia-smi -L
EPCOMM_TEST_RANKS=2 timeout 200 build/release/tests/gpu/epcomm_gpu_tests > $OUT/tests_r2.log 2>&1; echo "tests rc $?"; grep -E "^\[  (PASSED|FAILED)" $OUT/tests_r2.log
timeout 200 $b --check --tokens 1024 --iters 3 --warmup 1 | grep -E "check|combine"
echo "== normal std (diag 3 = current)"; timeout 200 $b --tokens 4096 --sms 24 --iters 30 --warmup 5
echo "== ll std"; timeout 200 $b --mode ll --iters 200
export EPCOMM_BENCH_ONLY=combine
for v in 0 1 2; do echo "== diag $v, 2 ranks"; EPCOMM_DIAG_COMBINE=$v timeout 120 $b --tokens 4096 --sms 24 --iters 10 --warmup 3 | grep combine; done
for v in 0 1 2 3; do echo "== diag $v, 4 ranks shared"; EPCOMM_BENCH_OVERSUBSCRIBE=1 EPCOMM_DIAG_COMBINE=$v timeout 120 $b --ranks 4 --tokens 4096 --sms 24 --iters 5 --warmup 2 | grep combine; done
