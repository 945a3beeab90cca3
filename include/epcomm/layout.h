// Arguments of get_dispatch_layout (semantics.md section 1).
#pragma once

#include <cstdint>

#include "epcomm/tensor.h"

namespace epcomm {

struct LayoutArgs {
  TensorView topk_idx;                  // [in]  [T, K] int64 or int32, device; -1 = masked
  int32_t num_experts = 0;              // [in]  E, a multiple of the number of ranks
  TensorView num_tokens_per_rank;       // [out] [R] int32, device
  TensorView num_tokens_per_rdma_rank;  // [out] [R / gpus_per_node] int32; multi-node only
  TensorView num_tokens_per_expert;     // [out] [E] int32, device
  TensorView is_token_in_rank;          // [out] [T, R] bool, device
};

}  // namespace epcomm
