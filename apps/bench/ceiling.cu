#include "ceiling.h"

namespace epcomm::bench {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 4;

// Preconditions: bytes multiples of 16. Blocks split each peer's bytes evenly; each thread keeps
// kUnroll 16-byte loads in flight before storing them.
__global__ void __launch_bounds__(kThreads) push_kernel(PushParams p) {
  for (int32_t i = 1; i < p.num_ranks; ++i) {
    const int32_t d = (p.rank + i) % p.num_ranks;  // stagger peers across ranks
    const int64_t n = p.bytes_to[d] / 16;
    const auto* src = reinterpret_cast<const int4*>(p.src);
    auto* dst = reinterpret_cast<int4*>(p.dst[d]);
    const int64_t stride = int64_t{gridDim.x} * kThreads;
    int64_t j = blockIdx.x * int64_t{kThreads} + threadIdx.x;
    for (; j + (kUnroll - 1) * stride < n; j += kUnroll * stride) {
      int4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) v[u] = src[j + u * stride];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) dst[j + u * stride] = v[u];
    }
    for (; j < n; j += stride) dst[j] = src[j];
  }
}

}  // namespace

cudaError_t launch_push(const PushParams& p, int num_sms, cudaStream_t stream) {
  push_kernel<<<num_sms, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace epcomm::bench
