// Benchmark of the low-latency kernels on one rank: dispatch (FP8 or BF16) and combine latency,
// the send and receive phases of hook mode, and the NCCL baseline (grouped send/recv of the
// same rows: each token once to every rank holding one of its experts, and back).
#pragma once

#include <cstdint>

#include "bench_normal.h"

namespace epcomm::bench {

struct LowLatencyConfig {
  int64_t tokens = 128;  // per rank; also N_max
  int64_t hidden = 7168;
  int64_t topk = 8;
  int32_t experts = 288;
  bool fp8 = true;
  int32_t warmup = 50;
  int32_t iters = 500;
};

// Collective over all ranks of ctx. `nccl`/`comm` may be null (no baseline).
RankBench bench_low_latency(harness::RankContext& ctx, Buffer& buffer, Nccl* nccl, NcclComm comm,
                            const LowLatencyConfig& cfg, uint64_t seed);

}  // namespace epcomm::bench
