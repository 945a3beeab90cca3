// Count exchange of normal dispatch (semantics.md section 2): every rank publishes its row of
// the send-count matrix and its per-expert counts to every peer, waits for theirs, and writes
// rank_prefix_matrix, the receive counts (mapped host memory, for the single host wait) and the
// send-side slot map.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

// What the host reads after the exchange (mapped pinned memory). Sized for the maxima.
struct NotifyHostCounts {
  uint64_t epoch;            // written last: the call's host ticket once the rest is valid
  int64_t num_recv_tokens;   // this rank's
  int32_t matrix[64 * 64];   // rank_prefix_matrix [R][R]
  int32_t per_expert[1024];  // per local expert, rounded up to expert_alignment
};

struct NotifyParams {
  const int32_t* num_tokens_per_rank;    // [R]
  const int32_t* num_tokens_per_expert;  // [E]
  int32_t num_ranks, rank, num_experts, expert_alignment;
  uint8_t* const* peer_bases;  // [R] mapped buffers
  int64_t signal_offset;
  uint64_t* epoch_counter;      // device: last completed exchange (advanced by the kernel)
  uint64_t host_ticket;         // written to host->epoch when the counts are valid
  int32_t* rank_prefix_matrix;  // [R, R] out (device)
  NotifyHostCounts* host;       // out (mapped), may be null (worst-case sizing: nobody waits)
  WaitContext wait;
};

struct SlotParams {
  const uint8_t* is_token_in_rank;  // [T, R] contiguous
  uint8_t* is_token_in_rank_copy;   // [T, R] handle copy, or null when it aliases the input
  const int32_t* rank_prefix_matrix;
  int32_t* send_slot;  // [T, R] out
  int64_t num_tokens;
  int32_t num_ranks, rank;
};

cudaError_t launch_notify(const NotifyParams& params, cudaStream_t stream);
cudaError_t launch_send_slots(const SlotParams& params, cudaStream_t stream);

}  // namespace epcomm::kernels
