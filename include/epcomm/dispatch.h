// Arguments of the normal (high-throughput) dispatch and combine (semantics.md sections 2-3).
// Every tensor is allocated by the caller (device memory unless stated); epcomm writes only the
// tensors marked [out] and keeps no pointer to any of them after the call.
#pragma once

#include <cstdint>
#include <vector>

#include "epcomm/config.h"
#include "epcomm/tensor.h"

namespace epcomm {

// What combine and cached dispatch need from a dispatch. Tensors, so that callers can keep a
// handle across calls; none of them lives in the communication buffer.
struct DispatchHandle {
  TensorView rank_prefix_matrix;  // [R, R] int32: tokens ranks 0..i send to rank j
  TensorView recv_src_idx;        // [N_recv] int32: source token index of each received row
  TensorView is_token_in_rank;    // [T, R] bool: copy of the layout this dispatch used
  TensorView send_slot;           // [T, R] int32: row of token t on rank r, -1 if not sent
  int64_t num_recv_tokens = 0;    // N_recv (rows with data; outputs may be longer)
  // Optional [R, R] int32 in host memory: the same matrix, filled by dispatch_notify when given
  // (the host learns it there). With it, combine moves the rows with the copy engines instead of
  // SM stores (docs/perf.md, v23); without it (num_worst_tokens, nobody waited on the host)
  // combine uses SM stores.
  TensorView rank_prefix_matrix_host;
};

// Counts learned by the count exchange (the only host wait of normal dispatch).
struct DispatchCounts {
  int64_t num_recv_tokens = 0;
  std::vector<int32_t> num_recv_tokens_per_expert;  // [E_local], rounded to expert_alignment
};

struct DispatchNotifyArgs {
  TensorView num_tokens_per_rank;    // [in]  [R] int32 from get_dispatch_layout
  TensorView num_tokens_per_expert;  // [in]  [E] int32 from get_dispatch_layout
  TensorView is_token_in_rank;       // [in]  [T, R] bool from get_dispatch_layout
  int32_t expert_alignment = 1;      // [in]  >= 1
  Config config;
  DispatchHandle handle;  // [out] rank_prefix_matrix, send_slot, is_token_in_rank
};

struct DispatchArgs {
  // Rows to send: BF16 [T, H], or FP8 [T, H] with float32 scales [T, H/128] of any stride that
  // is unit along one dimension.
  TensorView x;                      // [in]
  TensorView x_scales;               // [in]  FP8 only
  TensorView topk_idx;               // [in]  optional [T, K] int64/int32
  TensorView topk_weights;           // [in]  optional [T, K] float32
  TensorView num_tokens_per_rank;    // [in] [R] int32 (not needed when cached)
  TensorView num_tokens_per_expert;  // [in] [E] int32 (not needed when cached)
  TensorView is_token_in_rank;       // [in] [T, R] bool (not needed when cached)
  int32_t num_experts = 0;
  int32_t expert_alignment = 1;
  int64_t num_worst_tokens = 0;  // > 0: outputs have this many rows and nothing waits on the host
  bool cached = false;           // true: route along `handle` from an earlier dispatch
  Config config;
  DispatchHandle handle;         // [in] when cached or after dispatch_notify; [out] otherwise
  TensorView recv_x;             // [out] [N, H] same dtype as x
  TensorView recv_x_scales;      // [out] [N, H/128] float32, FP8 only
  TensorView recv_topk_idx;      // [out] [N, K] same dtype as topk_idx (when topk given)
  TensorView recv_topk_weights;  // [out] [N, K] float32 (when topk given)
};

struct CombineArgs {
  TensorView x;             // [in]  [N_recv, H] bf16, rows in the receive order of the dispatch
  DispatchHandle handle;    // [in]  the handle of that dispatch
  TensorView topk_weights;  // [in]  optional [N_recv, K] float32
  TensorView bias0;         // [in]  optional [T, H] bf16
  TensorView bias1;         // [in]  optional [T, H] bf16
  Config config;
  TensorView combined_x;             // [out] [T, H] bf16
  TensorView combined_topk_weights;  // [out] [T, K] float32, when topk_weights given
};

}  // namespace epcomm
