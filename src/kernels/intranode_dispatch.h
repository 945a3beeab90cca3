// Normal dispatch inside a node (semantics.md section 2): every rank writes each token's row
// straight into its final row of every destination's receive area, then each rank copies the
// rows it received into the caller's outputs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/normal_layout.h"
#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

struct DispatchParams {
  // Send side (this rank's tokens).
  const uint8_t* x;  // [T, H] rows of row_bytes, row stride x_stride bytes
  int64_t x_stride;
  const float* x_scales;  // [T, G] any strides (FP8), or null
  int64_t scale_stride_token, scale_stride_group;
  const void* topk_idx;  // [T, K] or null (cached dispatch)
  bool topk_is_int64;
  int64_t topk_stride;  // elements per token (last dim contiguous... any stride for k)
  int64_t topk_stride_k;
  const float* topk_weights;  // [T, K]
  int64_t weights_stride, weights_stride_k;
  const uint8_t* is_token_in_rank;    // [T, R] contiguous
  const int32_t* send_slot;           // [T, R]
  const int32_t* rank_prefix_matrix;  // [R, R]
  int64_t num_tokens;
  int32_t experts_per_rank;
  // Receive side (outputs, this rank).
  uint8_t* recv_x;  // [N_out, H]
  int64_t recv_x_stride;
  float* recv_scales;        // [N_out, G] contiguous, or null
  void* recv_topk_idx;       // [N_out, K] contiguous, same dtype as topk_idx, or null
  float* recv_topk_weights;  // [N_out, K] contiguous
  int32_t* recv_src_idx;     // [N_out] or null (cached)
  int64_t num_out_rows;      // N_out (num_worst_tokens or the exact count)
  // Buffer.
  uint8_t* const* peer_bases;
  int64_t area_offset;  // offset of the dispatch area in every buffer
  core::NormalArea area;
  int64_t signal_offset;
  uint32_t* counters;       // [2] local uint32 (device): blocks done, sender chunks taken (reset by
                            // the last block)
  uint64_t* epoch_counter;  // device: last completed call (advanced by the last block)
  uint64_t signature;
  int32_t num_ranks, rank;
  int32_t send_warps;     // warps per block that send (set by the launcher); the rest copy out
  int32_t token_batch;    // tokens a sender warp sends before releasing their tags (launcher)
  bool recv_interleaved;  // receivers take the sources' rows interleaved (launcher; v11)
  WaitContext wait;
  uint64_t* trace;  // null, or [gridDim.x][kNormalTraceSlots] (kernels/normal_trace.h)
  // Diagnostic builds only (EPCOMM_DIAGNOSTICS, EPCOMM_DIAG_DISPATCH): bit 0 skips the remote
  // metadata stores (scales, top-k, weights, source index), bit 1 the receivers' copy-out. Zero
  // otherwise; either bit makes the results wrong.
  uint32_t diag;
};

// grid = num_sms blocks (each must be co-resident: num_sms <= multiprocessor count).
cudaError_t launch_intranode_dispatch(const DispatchParams& params, int num_sms,
                                      cudaStream_t stream);

}  // namespace epcomm::kernels
