#include "kernels/device/report.cuh"
#include "kernels/layout.h"

namespace epcomm::kernels {
namespace {

constexpr int kLayoutThreads = 256;

// Preconditions: one thread per token; E <= 1024 and R <= 64 (validated on the host).
// Shared: per-expert [E] and per-rank [R] histograms, flushed with one global atomic each.
__global__ void __launch_bounds__(kLayoutThreads) layout_kernel(LayoutParams p) {
  extern __shared__ int32_t hist[];  // [E + R]
  int32_t* rank_hist = hist + p.num_experts;
  for (int i = threadIdx.x; i < p.num_experts + p.num_ranks; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int32_t experts_per_rank = p.num_experts / p.num_ranks;
  if (t < p.num_tokens) {
    uint64_t mask = 0;
    for (int64_t k = 0; k < p.topk; ++k) {
      const int64_t off = t * p.stride_token + k * p.stride_k;
      const int64_t e = p.topk_is_int64 ? static_cast<const int64_t*>(p.topk_idx)[off]
                                        : static_cast<const int32_t*>(p.topk_idx)[off];
      if (e == -1) continue;
      if (e < 0 || e >= p.num_experts) {
        record_input_error(p.report, core::WaitStage::kInvalidExpertId,
                           static_cast<int32_t>(t * p.topk + k), e, p.num_experts);
        continue;
      }
      atomicAdd(&hist[e], 1);
      mask |= 1ull << (e / experts_per_rank);
    }
    for (int r = 0; r < p.num_ranks; ++r) {
      const bool in = (mask >> r) & 1;
      p.is_token_in_rank[t * p.num_ranks + r] = in;
      if (in) atomicAdd(&rank_hist[r], 1);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < p.num_experts; i += blockDim.x)
    if (hist[i]) atomicAdd(&p.num_tokens_per_expert[i], hist[i]);
  for (int i = threadIdx.x; i < p.num_ranks; i += blockDim.x)
    if (rank_hist[i]) atomicAdd(&p.num_tokens_per_rank[i], rank_hist[i]);
}

}  // namespace

cudaError_t launch_layout(const LayoutParams& p, cudaStream_t stream) {
  if (cudaError_t e =
          cudaMemsetAsync(p.num_tokens_per_rank, 0, sizeof(int32_t) * p.num_ranks, stream))
    return e;
  if (cudaError_t e =
          cudaMemsetAsync(p.num_tokens_per_expert, 0, sizeof(int32_t) * p.num_experts, stream))
    return e;
  if (p.num_tokens == 0) return cudaSuccess;
  const int blocks = static_cast<int>((p.num_tokens + kLayoutThreads - 1) / kLayoutThreads);
  const size_t shared = sizeof(int32_t) * (p.num_experts + p.num_ranks);
  layout_kernel<<<blocks, kLayoutThreads, shared, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
