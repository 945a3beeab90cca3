// Layout kernel (semantics.md section 1): per-rank and per-expert counts and is_token_in_rank.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

struct LayoutParams {
  const void* topk_idx;  // [T, K] int64 or int32
  bool topk_is_int64;
  int64_t num_tokens, topk, stride_token, stride_k;  // strides in elements
  int32_t num_experts, num_ranks;
  int32_t* num_tokens_per_rank;    // [R], zeroed by the launcher
  int32_t* num_tokens_per_expert;  // [E], zeroed by the launcher
  uint8_t* is_token_in_rank;       // [T, R] contiguous
  WaitContext report;              // for invalid expert ids
};

cudaError_t launch_layout(const LayoutParams& params, cudaStream_t stream);

}  // namespace epcomm::kernels
