// Deterministic benchmark inputs: values from a hash of (seed, rank, token, channel), computable
// on the host and the device alike, and top-k routing drawn on the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/host_device.h"
#include "core/numeric.h"

namespace epcomm::bench {

EPCOMM_HOST_DEVICE uint32_t mix32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Value of channel h of token t on `rank`: uniform in [-2, 2) as bf16 bits.
EPCOMM_HOST_DEVICE uint16_t bench_value(uint64_t seed, int32_t rank, int64_t t, int64_t h) {
  const uint32_t r = mix32(seed * 0x9E3779B97F4A7C15ull ^ (uint64_t(rank) << 48) ^
                           (uint64_t(t) << 20) ^ uint64_t(h));
  return core::float_to_bf16(static_cast<float>(r >> 8) * (4.0f / 16777216.0f) - 2.0f);
}

// Fills x [T, H] bf16 on the device.
cudaError_t fill_bench_x(uint16_t* x, int64_t num_tokens, int64_t hidden, uint64_t seed,
                         int32_t rank, cudaStream_t stream);
// FP8 cast of x with per-128-channel float32 scales (row-major [T, H/128]).
cudaError_t cast_bench_fp8(const uint16_t* x, uint8_t* x_fp8, float* scales, int64_t num_tokens,
                           int64_t hidden, cudaStream_t stream);

// A computation kernel on every SM (about 0.2 ms with iters = 20000 on an H100/H200), for the
// hook-mode overlap measurement.
cudaError_t launch_busy(float* sink, int iters, int num_sms, cudaStream_t stream);

// Top-k routing [T, K] int64: K distinct experts per token; "skewed" sends half the tokens'
// first choice to expert 0.
std::vector<int64_t> bench_topk(int64_t num_tokens, int64_t topk, int32_t num_experts, bool skewed,
                                uint64_t seed, int32_t rank);

}  // namespace epcomm::bench
