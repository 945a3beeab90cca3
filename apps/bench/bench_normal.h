// Benchmark of the normal kernels on one rank: layout, full dispatch (count exchange + host
// wait), cached dispatch (BF16, FP8), combine; the NCCL baseline (grouped send/recv of the same
// routed rows, already packed) and the NVLink ceiling (SM push of the same remote bytes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "epcomm/epcomm.hpp"
#include "harness/launcher.h"
#include "nccl_loader.h"

namespace epcomm::bench {

struct NormalConfig {
  int64_t tokens = 4096;
  int64_t hidden = 7168;
  int64_t topk = 8;
  int32_t experts = 256;
  int32_t sms = 24;
  bool skewed = false;
  int32_t warmup = 10;
  int32_t iters = 50;
  bool check = false;  // compare dispatch and combine against the CPU reference
};

// One measured op on one rank.
struct Sample {
  std::string op, dtype;
  double mean_us = 0, median_us = 0;
  double bytes = 0;         // DeepEP's accounting for this rank
  double nvlink_bytes = 0;  // bytes that left this GPU over NVLink
};

struct RankBench {
  std::vector<Sample> samples;
  std::string check_result;  // "" when not checked
};

// Collective over all ranks of ctx. `nccl`/`comm` may be null (no baseline).
RankBench bench_normal(harness::RankContext& ctx, Buffer& buffer, Nccl* nccl, NcclComm comm,
                       const NormalConfig& cfg, uint64_t seed);

}  // namespace epcomm::bench
