// Size hints: the communication-buffer bytes an operation needs.
#pragma once

#include <cstdint>

#include "epcomm/export.h"

namespace epcomm {

// Bytes of low-latency buffer (BufferOptions::num_rdma_bytes) for the given shapes; 0 when an
// argument is out of range (each must be positive and num_experts % num_ranks == 0).
EPCOMM_EXPORT int64_t get_low_latency_buffer_size_hint(int32_t num_max_dispatch_tokens_per_rank,
                                                       int32_t hidden, int32_t num_ranks,
                                                       int32_t num_experts);

// Bytes of normal-kernel buffer (BufferOptions::num_nvl_bytes) that dispatch and combine need
// when every rank has at most max_tokens_per_rank tokens of hidden_bytes per row (BF16 rows are
// the larger case; FP8 rows and scales fit in the same space) and top-k of `topk`: the
// dispatch and combine areas each hold the worst case of num_ranks * max_tokens_per_rank rows.
// 0 when an argument is out of range.
EPCOMM_EXPORT int64_t get_normal_buffer_size_hint(int64_t max_tokens_per_rank, int64_t hidden_bytes,
                                                  int32_t num_ranks, int32_t topk);

}  // namespace epcomm
