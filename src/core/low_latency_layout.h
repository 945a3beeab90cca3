// Layout of the low-latency region (num_rdma_bytes), shared by the size hint and the kernels.
//
//   [ control | combine_send | half 0 | half 1 ]
//   control      : [2 halves][R] x 64-byte signal slots per peer: started epoch, token count,
//                  signature (written by the peer as sender), released epoch (written by the peer
//                  as receiver). Its place depends on R alone, so a call with another N_max,
//                  hidden or E finds the flags where the previous call left them.
//   combine_send : [E_local][R*N_max][H] bf16, what get_next_low_latency_combine_buffer views
//                  (written by the caller, read by the next zero-copy combine)
// LL call e (dispatch or combine) uses half e % 2, so the results of the two most recent calls
// stay valid (semantics.md section 4). One half (docs/design.md, "Low-latency kernels"):
//   dispatch_recv : [R][N_max] messages, one per (source rank, source token): header (source
//                   token, number of local experts, the local experts) + payload (a BF16 row, or
//                   an FP8 row followed by its H/128 float32 scales)
//   dispatch_tags : [R][N_max] uint32 arrival tags (the call's epoch)
//   counts        : [R][E_local] int32, rows each source sends to each local expert
//   place         : [E_local][R] int32 placement counters (receiver-local, zero between calls)
//   combine_recv  : [E][N_max][H] bf16, one row per (global expert, token of this rank), so the
//                   source finds the row of (t, topk_idx[t, k]) without any per-row state
//   combine_tags  : [E][N_max] uint32 arrival tags
// The pre-reduced combine (docs/perf.md, LL v14, v17; it lists its rows in shared memory) uses,
// in the same half:
//   combine_weights : [R][N_max] messages, one per (source rank, source token): the token's local
//                     experts here (first top-k slot order) and their summed weights
//   combine_partial : [R][N_max][H] float32, expert rank d's weighted sum for token t at [d][t]
//   combine_partial_tags : [R][N_max][ceil(H / kLlCombineSlice)] uint32 arrival tags
// A call whose (N_max, hidden, E) differs from the previous call's moves the halves' contents;
// the runtime then clears the halves between two barriers (ops_low_latency.cpp), so no stale
// tag of the old shape can look like an arrival.
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
constexpr int64_t kLowLatencySignalBytes = 64;
// Channels per pre-reduced combine work item and partial arrival tag (8 per lane of a warp).
constexpr int64_t kLlCombineSlice = 256;

// A pre-reduced combine's weights message: what the expert rank needs to sum one source token.
struct LowLatencyWeightsMessage {
  uint32_t tag;   // the call's epoch, released last
  int32_t count;  // local experts of the token on the receiving rank (0..K)
  int32_t spare[2];
  int32_t expert[kMaxLowLatencyTopk];  // local expert ids, in the order of first top-k slot
  float weight[kMaxLowLatencyTopk];    // summed top-k weights of each
};
static_assert(sizeof(LowLatencyWeightsMessage) % 16 == 0, "messages stay 16-byte aligned");

// Fields of one peer's 64-byte signal slot in a half.
enum LowLatencySignal : int32_t {
  kLlStarted = 0,     // uint64 epoch: the sender's call started, the fields below are valid
  kLlTokens = 8,      // int64: the sender's token count
  kLlSignature = 16,  // uint64: the sender's call signature
  kLlReleased = 24,   // uint64 epoch: the peer finished reading what we wrote into this half
};

struct LowLatencyLayout {
  int32_t num_max_tokens = 0;  // N_max
  int32_t hidden = 0;
  int32_t num_ranks = 0;
  int32_t num_experts = 0;

  int64_t message_bytes = 0;
  int64_t control_bytes = 0;
  int64_t combine_send_offset = 0;
  int64_t halves_offset = 0;
  // Offsets inside a half.
  int64_t dispatch_recv_offset = 0;
  int64_t dispatch_tags_offset = 0;
  int64_t counts_offset = 0;
  int64_t place_offset = 0;
  int64_t combine_recv_offset = 0;
  int64_t combine_tags_offset = 0;
  int64_t combine_weights_offset = 0;
  int64_t combine_partial_offset = 0;
  int64_t combine_slices = 0;  // partial tags per (expert rank, token)
  int64_t combine_partial_tags_offset = 0;
  int64_t half_bytes = 0;

  static LowLatencyLayout make(int32_t num_max_tokens, int32_t hidden, int32_t num_ranks,
                               int32_t num_experts) {
    LowLatencyLayout l;
    l.num_max_tokens = num_max_tokens;
    l.hidden = hidden;
    l.num_ranks = num_ranks;
    l.num_experts = num_experts;
    const int64_t n = num_max_tokens, h = hidden, r = num_ranks, e = num_experts;
    const int64_t local_experts = r > 0 ? e / r : 0;
    // A BF16 row is the larger payload (FP8 needs hidden + hidden/128*4 bytes).
    l.message_bytes = align_up(kLowLatencyHeaderBytes + h * 2, 16);
    l.control_bytes = align_up(2 * r * kLowLatencySignalBytes, kRegionAlignment);
    l.combine_send_offset = l.control_bytes;
    l.halves_offset =
        align_up(l.combine_send_offset + local_experts * r * n * h * 2, kRegionAlignment);
    l.dispatch_recv_offset = 0;
    l.dispatch_tags_offset = align_up(r * n * l.message_bytes, kRegionAlignment);
    l.counts_offset = align_up(l.dispatch_tags_offset + r * n * 4, kRegionAlignment);
    l.place_offset = align_up(l.counts_offset + r * local_experts * 4, kRegionAlignment);
    l.combine_recv_offset = align_up(l.place_offset + local_experts * r * 4, kRegionAlignment);
    l.combine_tags_offset = align_up(l.combine_recv_offset + e * n * h * 2, kRegionAlignment);
    l.combine_weights_offset = align_up(l.combine_tags_offset + e * n * 4, kRegionAlignment);
    l.combine_partial_offset =
        align_up(l.combine_weights_offset + r * n * int64_t{sizeof(LowLatencyWeightsMessage)},
                 kRegionAlignment);
    l.combine_slices = (h + kLlCombineSlice - 1) / kLlCombineSlice;
    l.combine_partial_tags_offset =
        align_up(l.combine_partial_offset + r * n * h * 4, kRegionAlignment);
    l.half_bytes =
        align_up(l.combine_partial_tags_offset + r * n * l.combine_slices * 4, kRegionAlignment);
    return l;
  }
  EPCOMM_HOST_DEVICE int64_t total_bytes() const { return halves_offset + 2 * half_bytes; }
  // Offset of half (epoch % 2) from the start of the region.
  EPCOMM_HOST_DEVICE int64_t half_offset(uint64_t epoch) const {
    return halves_offset + static_cast<int64_t>(epoch & 1) * half_bytes;
  }
  // Offset from the start of the region of `peer`'s signal slot for the half of `epoch`.
  EPCOMM_HOST_DEVICE int64_t signal(uint64_t epoch, int32_t peer, int32_t field) const {
    return (static_cast<int64_t>(epoch & 1) * num_ranks + peer) * kLowLatencySignalBytes + field;
  }
};

}  // namespace epcomm::core
