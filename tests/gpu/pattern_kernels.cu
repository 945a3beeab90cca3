#include "pattern_kernels.h"

namespace epcomm::testing {
namespace {

__device__ __forceinline__ uint32_t pattern(uint32_t seed, int64_t i) {
  uint32_t x = seed ^ static_cast<uint32_t>(i * 0x9E3779B9ull) ^ static_cast<uint32_t>(i >> 32);
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

__global__ void write_pattern_kernel(uint32_t* dst, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = pattern(seed, i);
}

__global__ void count_mismatch_kernel(const uint32_t* src, int64_t n, uint32_t seed,
                                      unsigned long long* bad) {
  unsigned long long local = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    local += src[i] != pattern(seed, i);
  if (local) atomicAdd(bad, local);
}

}  // namespace

cudaError_t write_pattern(uint32_t* dst, int64_t num_words, uint32_t seed, cudaStream_t stream) {
  write_pattern_kernel<<<64, 256, 0, stream>>>(dst, num_words, seed);
  return cudaGetLastError();
}

cudaError_t count_mismatches(const uint32_t* src, int64_t num_words, uint32_t seed,
                             unsigned long long* mismatches, cudaStream_t stream) {
  count_mismatch_kernel<<<64, 256, 0, stream>>>(src, num_words, seed, mismatches);
  return cudaGetLastError();
}

}  // namespace epcomm::testing
