// Reading top-k index tensors that may be int32 or int64, and a token's destination slots.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

__device__ __forceinline__ int64_t load_index(const void* base, bool is64, int64_t off) {
  return is64 ? static_cast<const int64_t*>(base)[off] : static_cast<const int32_t*>(base)[off];
}

// Token t's slot (its receive row) on rank d, or -1 where the token does not go there or t is past
// the token count. is_token_in_rank and send_slot load together, not one after the other. P:
// DispatchParams or CombineParams.
template <class P>
__device__ __forceinline__ int32_t token_slot(const P& p, int64_t t, int32_t d) {
  if (t >= p.num_tokens || d >= p.num_ranks) return -1;
  const bool in_rank = p.is_token_in_rank[t * p.num_ranks + d];
  const int32_t slot = p.send_slot[t * p.num_ranks + d];
  return in_rank ? slot : -1;
}

}  // namespace epcomm::kernels
