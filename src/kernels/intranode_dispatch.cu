#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/report.cuh"
#include "kernels/intranode_dispatch.h"

namespace epcomm::kernels {
namespace {

constexpr int kDispatchThreads = 512;
constexpr int kWarps = kDispatchThreads / 32;
constexpr int kDstBatch = 8;

__device__ __forceinline__ int64_t load_index(const void* base, bool is64, int64_t off) {
  return is64 ? static_cast<const int64_t*>(base)[off] : static_cast<const int32_t*>(base)[off];
}

// Counts finished blocks in a local counter; true in the last block (all threads).
// Each thread's writes are fenced system-wide before the count, so the last block's later
// release covers every block's writes.
__device__ __forceinline__ bool last_block_done(uint32_t* counter) {
  __shared__ bool last;
  __threadfence_system();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (last) __threadfence_system();
  return last;
}

// Rows a rank sends to itself skip the receive area: the row goes straight into recv_x (see
// the send loop) and the metadata straight into the outputs here.
__device__ __forceinline__ void write_self_metadata(const DispatchParams& p, int64_t t, int64_t slot, int lane) {
  const core::NormalArea& a = p.area;
  for (int32_t g = lane; g < a.num_scales; g += 32)
    p.recv_scales[slot * a.num_scales + g] = p.x_scales[t * p.scale_stride_token + g * p.scale_stride_group];
  if (a.topk > 0 && lane < a.topk) {
    const int64_t e = load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + lane * p.topk_stride_k);
    const int64_t first = int64_t{p.rank} * p.experts_per_rank;
    const bool local = e >= first && e < first + p.experts_per_rank;
    const int64_t out = local ? e - first : -1;
    if (p.topk_is_int64) {
      static_cast<int64_t*>(p.recv_topk_idx)[slot * a.topk + lane] = out;
    } else {
      static_cast<int32_t*>(p.recv_topk_idx)[slot * a.topk + lane] = static_cast<int32_t>(out);
    }
    p.recv_topk_weights[slot * a.topk + lane] = local ? p.topk_weights[t * p.weights_stride + lane * p.weights_stride_k] : 0.0f;
  }
  if (lane == 0 && p.recv_src_idx) p.recv_src_idx[slot] = static_cast<int32_t>(t);
}

// One warp sends token t to num_dst destinations: the row (read once), scales, remapped top-k
// and weights, and the source index.
__device__ __forceinline__ void send_token(const DispatchParams& p, int64_t t, int4* const* dst,
                                          const int32_t* dst_rank, const int32_t* dst_slot, int num_dst,
                                          int64_t row_vec, int lane) {
  const core::NormalArea& a = p.area;
  warp_multicast_copy<kDstBatch>(dst, num_dst, reinterpret_cast<const int4*>(p.x + t * p.x_stride), row_vec, lane);
  for (int i = 0; i < num_dst; ++i) {
    if (dst_rank[i] == p.rank) {
      write_self_metadata(p, t, dst_slot[i], lane);
      continue;
    }
    uint8_t* area = p.peer_bases[dst_rank[i]] + p.area_offset;
    const int64_t slot = dst_slot[i];
    for (int32_t g = lane; g < a.num_scales; g += 32)
      reinterpret_cast<float*>(area + a.scales_offset)[slot * a.num_scales + g] =
          p.x_scales[t * p.scale_stride_token + g * p.scale_stride_group];
    if (a.topk > 0 && lane < a.topk) {
      const int64_t e = load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + lane * p.topk_stride_k);
      const int64_t first = int64_t{dst_rank[i]} * p.experts_per_rank;
      const bool local = e >= first && e < first + p.experts_per_rank;
      reinterpret_cast<int32_t*>(area + a.topk_idx_offset)[slot * a.topk + lane] =
          local ? static_cast<int32_t>(e - first) : -1;
      reinterpret_cast<float*>(area + a.topk_weights_offset)[slot * a.topk + lane] =
          local ? p.topk_weights[t * p.weights_stride + lane * p.weights_stride_k] : 0.0f;
    }
    if (lane == 0) reinterpret_cast<int32_t*>(area + a.src_offset)[slot] = static_cast<int32_t>(t);
  }
}

// Preconditions: blockDim = kDispatchThreads; R <= 64; area rows 16-byte multiples.
// Phases: (0) wait until every destination consumed our previous dispatch; (1) write rows to
// destinations; last block signals done; (2) wait for every source, check its signature, copy
// received rows to the outputs; last block signals consumed.
__global__ void __launch_bounds__(kDispatchThreads) intranode_dispatch_kernel(DispatchParams p) {
  const core::NormalSignalLayout sig{p.num_ranks};
  const int32_t R = p.num_ranks, me = p.rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Device-resident epoch (CUDA-graph replays advance it); every block reads it before the last
  // block of phase 2 can advance it, since that needs every block to have finished.
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.epoch_counter) + 1;
  uint8_t* const my_signals = p.peer_bases[me] + p.signal_offset;
  uint32_t* counters = p.counters;
  const core::NormalArea& a = p.area;
  __shared__ bool skip;

  // ---- phase 0: capacity check (same verdict on every rank) and consumed flags ----
  if (threadIdx.x == 0) {
    skip = false;
    for (int32_t d = 0; d < R; ++d) {
      const int64_t need = p.rank_prefix_matrix[(R - 1) * R + d];
      if (need > a.capacity) {
        if (blockIdx.x == 0) record_input_error(p.wait, core::WaitStage::kBufferTooSmall, d, need, a.capacity);
        skip = true;
      }
    }
    const int64_t mine = p.rank_prefix_matrix[(R - 1) * R + me];
    if (mine > p.num_out_rows) {
      if (blockIdx.x == 0) record_input_error(p.wait, core::WaitStage::kTooManyTokens, me, mine, p.num_out_rows);
      // The rows still arrive (they fit the area); only the copy-out is cut short.
    }
  }
  __syncthreads();
  if (threadIdx.x < R) {
    const auto* consumed = reinterpret_cast<const uint64_t*>(my_signals + sig.flag(core::kDispatchConsumed, threadIdx.x));
    // Acquire: destination threadIdx.x finished reading its area before we overwrite it.
    if (!bounded_wait(p.wait, threadIdx.x, core::WaitStage::kCompletion,
                      [&] { return ld_acquire_sys(consumed) + 1 >= epoch; }))
      skip = true;
  }
  __syncthreads();
  if (skip) return;

  // ---- phase 1: send ----
  // Tokens round-robin over every warp of the grid: at any moment the warps write a window of
  // consecutive tokens, whose destination rows are consecutive too (slots grow with t). Giving
  // each block a contiguous token range instead spread the writes over the whole destination
  // area and got slower with more SMs (docs/perf.md, v2).
  const int64_t row_vec = a.row_bytes / 16;
  const int64_t num_warps_total = int64_t{gridDim.x} * kWarps;
  for (int64_t t = int64_t{warp} * gridDim.x + blockIdx.x; t < p.num_tokens; t += num_warps_total) {
    // Destinations in batches of kDstBatch: the row is read once per batch.
    int4* dst[kDstBatch];
    int32_t dst_rank[kDstBatch];
    int32_t dst_slot[kDstBatch];
    int num_dst = 0;
    for (int32_t d = 0; d < R; ++d) {
      const int32_t slot = p.is_token_in_rank[t * R + d] ? p.send_slot[t * R + d] : -1;
      if (slot >= 0 && (d != me || slot < p.num_out_rows)) {
        dst[num_dst] = d == me ? reinterpret_cast<int4*>(p.recv_x + slot * p.recv_x_stride)
                               : reinterpret_cast<int4*>(p.peer_bases[d] + p.area_offset + a.x_offset + slot * a.row_bytes);
        dst_rank[num_dst] = d;
        dst_slot[num_dst++] = slot;
      }
      if (num_dst == kDstBatch || (d == R - 1 && num_dst > 0)) {
        send_token(p, t, dst, dst_rank, dst_slot, num_dst, row_vec, lane);
        num_dst = 0;
      }
    }
  }
  if (last_block_done(&counters[0]) && threadIdx.x < R) {
    const int32_t d = threadIdx.x;
    uint8_t* peer_signals = p.peer_bases[d] + p.signal_offset;
    *reinterpret_cast<volatile uint64_t*>(peer_signals + sig.flag(core::kDispatchSignature, me)) = p.signature;
    // Release: every block's rows (fenced before the block count) and the signature above
    // become visible to destination d before it sees this epoch.
    st_release_sys(reinterpret_cast<uint64_t*>(peer_signals + sig.flag(core::kDispatchDone, me)), epoch);
  }

  // ---- phase 2: receive ----
  __shared__ bool mismatch;
  if (threadIdx.x == 0) mismatch = false;
  __syncthreads();
  if (threadIdx.x < R) {
    const int32_t s = threadIdx.x;
    const auto* done = reinterpret_cast<const uint64_t*>(my_signals + sig.flag(core::kDispatchDone, s));
    // Acquire: source s's rows in our area are visible after this.
    if (bounded_wait(p.wait, s, core::WaitStage::kDataArrival, [&] { return ld_acquire_sys(done) >= epoch; })) {
      const uint64_t theirs = *reinterpret_cast<const volatile uint64_t*>(my_signals + sig.flag(core::kDispatchSignature, s));
      if (theirs != p.signature) {
        record_input_error(p.wait, core::WaitStage::kArgumentMismatch, s, static_cast<int64_t>(theirs),
                           static_cast<int64_t>(p.signature));
        mismatch = true;
      }
    } else {
      mismatch = true;
    }
  }
  __syncthreads();
  if (mismatch) return;
  const uint8_t* area = p.peer_bases[me] + p.area_offset;
  const int64_t received = p.rank_prefix_matrix[(R - 1) * R + me];
  const int64_t rows = received < p.num_out_rows ? received : p.num_out_rows;
  const int64_t global_warp = blockIdx.x * int64_t{kWarps} + warp;
  const int64_t num_warps = int64_t{gridDim.x} * kWarps;
  // Rows from this rank itself were written to the outputs directly in phase 1.
  const int64_t self_begin = me > 0 ? p.rank_prefix_matrix[(me - 1) * R + me] : 0;
  const int64_t self_end = p.rank_prefix_matrix[me * R + me];
  for (int64_t i = global_warp; i < rows; i += num_warps) {
    if (i >= self_begin && i < self_end) continue;
    warp_copy<true>(reinterpret_cast<int4*>(p.recv_x + i * p.recv_x_stride),
                    reinterpret_cast<const int4*>(area + a.x_offset + i * a.row_bytes), row_vec, lane);
    for (int32_t g = lane; g < a.num_scales; g += 32)
      p.recv_scales[i * a.num_scales + g] = reinterpret_cast<const float*>(area + a.scales_offset)[i * a.num_scales + g];
    if (lane < a.topk) {
      const int32_t e = reinterpret_cast<const int32_t*>(area + a.topk_idx_offset)[i * a.topk + lane];
      if (p.topk_is_int64) {
        static_cast<int64_t*>(p.recv_topk_idx)[i * a.topk + lane] = e;
      } else {
        static_cast<int32_t*>(p.recv_topk_idx)[i * a.topk + lane] = e;
      }
      p.recv_topk_weights[i * a.topk + lane] = reinterpret_cast<const float*>(area + a.topk_weights_offset)[i * a.topk + lane];
    }
    if (lane == 0 && p.recv_src_idx) p.recv_src_idx[i] = reinterpret_cast<const int32_t*>(area + a.src_offset)[i];
  }
  // Padding rows of worst-case outputs: no expert, zero weight, no source.
  for (int64_t i = rows + global_warp; i < p.num_out_rows; i += num_warps) {
    if (lane < a.topk) {
      if (p.topk_is_int64) {
        static_cast<int64_t*>(p.recv_topk_idx)[i * a.topk + lane] = -1;
      } else {
        static_cast<int32_t*>(p.recv_topk_idx)[i * a.topk + lane] = -1;
      }
      p.recv_topk_weights[i * a.topk + lane] = 0.0f;
    }
    if (lane == 0 && p.recv_src_idx) p.recv_src_idx[i] = -1;
  }
  const bool last = last_block_done(&counters[1]);
  if (last && threadIdx.x == 0) *p.epoch_counter = epoch;
  if (last && threadIdx.x < R) {
    // Release: our reads of the area are done; source threadIdx.x may overwrite it.
    st_release_sys(reinterpret_cast<uint64_t*>(p.peer_bases[threadIdx.x] + p.signal_offset +
                                               sig.flag(core::kDispatchConsumed, me)),
                   epoch);
  }
}

}  // namespace

cudaError_t launch_intranode_dispatch(const DispatchParams& p, int num_sms, cudaStream_t stream) {
  if (cudaError_t e = cudaMemsetAsync(p.counters, 0, 2 * sizeof(uint32_t), stream)) return e;
  intranode_dispatch_kernel<<<num_sms, kDispatchThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
