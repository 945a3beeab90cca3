#include <algorithm>
#include <random>

#include "bench_data.h"

namespace epcomm::bench {
namespace {

__global__ void fill_kernel(uint16_t* x, int64_t T, int64_t H, uint64_t seed, int32_t rank) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < T * H;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] = bench_value(seed, rank, i / H, i % H);
}

// Stand-in computation that occupies every SM (8 blocks of 256 threads per SM, dependent FMAs).
__global__ void busy_kernel(float* sink, int iters) {
  float x = static_cast<float>(threadIdx.x);
  for (int i = 0; i < iters; ++i) x = fmaf(x, 1.0001f, 0.5f);
  if (x == 12345.0f) sink[0] = x;  // keeps the loop
}

// One warp per (token, 128-channel group).
__global__ void cast_kernel(const uint16_t* x, uint8_t* q, float* scales, int64_t T, int64_t H) {
  const int64_t groups = H / core::kFp8GroupSize;
  const int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= T * groups) return;
  const int64_t t = warp / groups, g = warp % groups;
  const uint16_t* src = x + t * H + g * core::kFp8GroupSize;
  float v[4], amax = 0.0f;
  for (int i = 0; i < 4; ++i) {
    v[i] = core::bf16_to_float(src[lane + 32 * i]);
    amax = fmaxf(amax, fabsf(v[i]));
  }
  for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float scale = core::fp8_scale_from_amax(amax, false);
  for (int i = 0; i < 4; ++i)
    q[t * H + g * core::kFp8GroupSize + lane + 32 * i] = core::fp8_quantize(v[i], scale);
  if (lane == 0) scales[t * groups + g] = scale;
}

}  // namespace

cudaError_t fill_bench_x(uint16_t* x, int64_t T, int64_t H, uint64_t seed, int32_t rank,
                         cudaStream_t stream) {
  if (T * H == 0) return cudaSuccess;
  fill_kernel<<<1024, 256, 0, stream>>>(x, T, H, seed, rank);
  return cudaGetLastError();
}

cudaError_t cast_bench_fp8(const uint16_t* x, uint8_t* q, float* scales, int64_t T, int64_t H,
                           cudaStream_t stream) {
  const int64_t warps = T * (H / core::kFp8GroupSize);
  if (warps == 0) return cudaSuccess;
  cast_kernel<<<static_cast<unsigned>((warps * 32 + 255) / 256), 256, 0, stream>>>(x, q, scales, T,
                                                                                   H);
  return cudaGetLastError();
}

std::vector<int64_t> bench_topk(int64_t T, int64_t K, int32_t E, bool skewed, uint64_t seed,
                                int32_t rank) {
  std::mt19937_64 rng(seed * 1315423911ull + static_cast<uint64_t>(rank));
  std::vector<int64_t> idx(T * K);
  std::vector<int32_t> experts(E);
  for (int32_t e = 0; e < E; ++e) experts[e] = e;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < K; ++k) {  // partial Fisher-Yates: K distinct experts
      std::uniform_int_distribution<int32_t> pick(static_cast<int32_t>(k), E - 1);
      std::swap(experts[k], experts[pick(rng)]);
    }
    if (skewed && (rng() & 1)) {  // expert 0 first (a swap keeps the pool a permutation)
      std::swap(experts[0], *std::find(experts.begin(), experts.end(), 0));
    }
    for (int64_t k = 0; k < K; ++k) idx[t * K + k] = experts[k];
  }
  return idx;
}

cudaError_t launch_busy(float* sink, int iters, int num_sms, cudaStream_t stream) {
  busy_kernel<<<num_sms * 8, 256, 0, stream>>>(sink, iters);
  return cudaGetLastError();
}

}  // namespace epcomm::bench
