// Normal combine inside a node (semantics.md section 3): every rank sends each received row
// back into the source rank's combine area (rows grouped by sender, in the source's send order);
// each rank then sums, per token, the rows from its destinations in ascending rank order in
// float32, adds the biases and rounds once to BF16.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/normal_layout.h"
#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

struct CombineParams {
  // Send side: rows of this rank's dispatch receive order.
  const uint8_t* x;  // [N, H] bf16, row stride x_stride bytes
  int64_t x_stride;
  const float* topk_weights;  // [N, K] or null
  int64_t weights_stride, weights_stride_k;
  const int32_t* rank_prefix_matrix;  // [R, R] (this rank's handle)
  // Reduce side: this rank's tokens.
  const uint8_t* is_token_in_rank;  // [T, R]
  const int32_t* send_slot;         // [T, R]
  int64_t num_tokens;
  const uint16_t* bias0;  // [T, H] bf16 or null
  int64_t bias0_stride;   // elements
  const uint16_t* bias1;
  int64_t bias1_stride;
  uint16_t* combined_x;          // [T, H]
  int64_t combined_stride;       // elements
  float* combined_topk_weights;  // [T, K] contiguous or null
  int32_t hidden;
  // Buffer.
  uint8_t* const* peer_bases;
  int64_t area_offset;
  core::NormalArea area;  // x rows of hidden*2 bytes, K weights
  int64_t signal_offset;
  uint32_t* counters;       // [2] local uint32 (device): blocks done, sender chunks taken (reset by
                            // the last block)
  uint64_t* epoch_counter;  // device: last completed call (advanced by the last block)
  uint64_t signature;
  int32_t num_ranks, rank;
  int32_t send_warps;  // warps per block that send (set by the launcher); the rest reduce
  int32_t row_batch;   // rows a sender warp sends before releasing their tags (launcher)
  bool prefetch_next;  // reducers prefetch the next token's rows to L2 (launcher; v13)
  bool join_reduce;    // sender warps reduce too once their rows are sent (launcher; v16)
  // > 0: the rows came by the copy engines (v23), each source's rows in this many chunks with
  // one arrival tag on each chunk's first row; the kernel then only reduces (no sender warps) and
  // the call's start (wait for "consumed", "started") was launch_combine_copy_start's.
  int32_t copy_chunks;
  WaitContext wait;
  uint64_t* trace;  // null, or [gridDim.x][kNormalTraceSlots] (kernels/normal_trace.h)
  // Diagnostic builds only (EPCOMM_DIAGNOSTICS, EPCOMM_DIAG_COMBINE): bit 0 sends no rows (only
  // their weights and tags), bit 1 reduces nothing (the reducers still wait for every row), bit 2
  // sends zeros without loading the rows (register-path senders only). Zero otherwise; any bit
  // makes the results wrong.
  uint32_t diag;
};

// The rows a rank returns to one source go by the copy engines in chunks of copy_chunk_rows()
// (the runtime and the kernel split alike).
__host__ __device__ inline int64_t copy_chunk_rows(int64_t copied, int32_t chunks) {
  return copied > 0 && chunks > 0 ? (copied + chunks - 1) / chunks : 1;
}

cudaError_t launch_intranode_combine(const CombineParams& params, int num_sms, cudaStream_t stream);

}  // namespace epcomm::kernels
