// Arguments of the low-latency dispatch and combine for decoding (semantics.md sections 4-5).
// Buffers have a fixed worst-case size derived from N_max; nothing waits on the host, so every
// call can be captured in a CUDA graph.
#pragma once

#include <cstdint>

#include "epcomm/tensor.h"

namespace epcomm {

// Routing of one low-latency dispatch, consumed by the matching combine.
struct LowLatencyHandle {
  TensorView src_info;      // [E_local, R*N_max] int32: source token of each valid row
  TensorView layout_range;  // [E_local, R] int64: (begin << 32) | count per source rank
  int32_t num_max_dispatch_tokens_per_rank = 0;
  int32_t hidden = 0;
  int32_t num_experts = 0;
};

// A pending receive (return_recv_hook=true): pass it to Buffer::run_low_latency_hook.
struct LowLatencyHook {
  int64_t id = -1;  // -1: no hook
};

struct LowLatencyDispatchArgs {
  TensorView x;                                  // [in] [T, H] bf16, T <= N_max
  TensorView topk_idx;                           // [in] [T, K] int64/int32; -1 = masked
  int32_t num_max_dispatch_tokens_per_rank = 0;  // N_max, equal on every rank
  int32_t num_experts = 0;
  bool use_fp8 = true;
  bool round_scale = false;  // scales rounded up to powers of two
  bool use_ue8m0 = false;    // needs round_scale; scales packed as exponent bytes
  TensorView cumulative_local_expert_recv_stats;  // [in/out] optional [E_local] int32
  TensorView dispatch_wait_recv_cost_stats;       // [in/out] optional [R] int64, nanoseconds
  bool return_recv_hook = false;
  // Outputs (device, caller-allocated):
  TensorView packed_recv_x;         // [E_local, R*N_max, H] fp8 or bf16
  TensorView packed_recv_x_scales;  // [E_local, R*N_max, H/128] float32 (or H/512 int32 with
                                    // UE8M0), column-major in the last two dimensions
  TensorView packed_recv_count;     // [E_local] int32
  LowLatencyHandle handle;          // src_info and layout_range are outputs
};

struct LowLatencyCombineArgs {
  TensorView x;             // [in] [E_local, R*N_max, H] bf16 (ignored with zero_copy)
  TensorView topk_idx;      // [in] [T, K] of this rank's dispatch
  TensorView topk_weights;  // [in] [T, K] float32
  LowLatencyHandle handle;  // [in] from the matching dispatch
  bool use_logfmt = false;  // not supported yet
  bool zero_copy = false;   // x was written into get_next_low_latency_combine_buffer()
  bool return_recv_hook = false;
  TensorView out;                           // [out] [T, H] bf16
  TensorView combine_wait_recv_cost_stats;  // [in/out] optional [R] int64, nanoseconds
};

}  // namespace epcomm
