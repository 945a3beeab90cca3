// Layout of the low-latency region (num_rdma_bytes), shared by the size hint and the kernels.
// Two identical halves give double buffering: call i uses half i % 2, so the results of the two
// most recent calls stay valid (semantics.md section 4).
//
// One half:
//   dispatch_recv : [R][N_max] messages of message_bytes (one per (source token, this rank))
//   combine_recv  : [N_max][min(E, kMaxTopk)] rows of H bf16 (one per (token, expert))
//   signals       : per-source counters and flags
#pragma once

#include <cstdint>

#include "core/buffer_layout.h"
#include "core/host_device.h"

namespace epcomm::core {

constexpr int32_t kMaxLowLatencyTopk = 16;
constexpr int32_t kMaxLowLatencyTokens = 1024;
constexpr int32_t kMaxExperts = 1024;
// Message header: source token (int32), number of local experts (int32), 8 bytes spare, then
// up to kMaxLowLatencyTopk local expert ids (int32).
constexpr int64_t kLowLatencyHeaderBytes = 16 + 4 * kMaxLowLatencyTopk;

struct LowLatencyLayout {
  int32_t num_max_tokens = 0;  // N_max
  int32_t hidden = 0;
  int32_t num_ranks = 0;
  int32_t num_experts = 0;

  int64_t message_bytes = 0;
  int64_t dispatch_recv_offset = 0;
  int64_t combine_recv_offset = 0;
  int64_t signal_offset = 0;
  int64_t half_bytes = 0;

  static LowLatencyLayout make(int32_t num_max_tokens, int32_t hidden, int32_t num_ranks,
                               int32_t num_experts) {
    LowLatencyLayout l;
    l.num_max_tokens = num_max_tokens;
    l.hidden = hidden;
    l.num_ranks = num_ranks;
    l.num_experts = num_experts;
    // A BF16 row is the larger payload (FP8 needs hidden + hidden/128*4 bytes).
    l.message_bytes = align_up(kLowLatencyHeaderBytes + int64_t{hidden} * 2, 16);
    const int64_t max_topk = num_experts < kMaxLowLatencyTopk ? num_experts : kMaxLowLatencyTopk;
    l.dispatch_recv_offset = 0;
    l.combine_recv_offset =
        align_up(l.dispatch_recv_offset + int64_t{num_ranks} * num_max_tokens * l.message_bytes,
                 kRegionAlignment);
    l.signal_offset = align_up(
        l.combine_recv_offset + int64_t{num_max_tokens} * max_topk * hidden * 2, kRegionAlignment);
    l.half_bytes = align_up(l.signal_offset + int64_t{num_ranks} * 64, kRegionAlignment);
    return l;
  }
  EPCOMM_HOST_DEVICE int64_t total_bytes() const { return 2 * half_bytes; }
  EPCOMM_HOST_DEVICE int64_t half_offset(int32_t buffer_index) const {
    return int64_t{buffer_index & 1} * half_bytes;
  }
};

}  // namespace epcomm::core
