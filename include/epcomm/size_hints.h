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

}  // namespace epcomm
