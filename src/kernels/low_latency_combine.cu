// Low-latency combine: every received row goes back to its source, into the source's combine
// area at (global expert, token); the source sums its top-k rows with their weights.
#include <cuda_bf16.h>

#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/indices.cuh"
#include "kernels/device/report.cuh"
#include "kernels/low_latency.h"

namespace epcomm::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

// Preconditions: blockDim = kThreads.
// (0) wait until every peer released this half from call epoch - 2; block 0 publishes the
//     signature ("started") to every peer.
// (1) warps round-robin over (local expert, row): the row goes to its source s at
//     (expert, source token) in s's combine area, then its tag.
// (2) last block: leave the epoch in the hook slot and advance the epoch counter.
__global__ void __launch_bounds__(kThreads) ll_combine_send_kernel(LowLatencyCombineParams p) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(c.epoch_counter) + 1;
  __shared__ bool skip;
  if (threadIdx.x == 0) skip = false;
  __syncthreads();
  for (int32_t d = threadIdx.x; d < R; d += blockDim.x) {
    const auto* released = signal_at<const uint64_t>(c, me, epoch, d, core::kLlReleased);
    // Acquire: peer d finished reading this half (call epoch - 2) before we overwrite it.
    if (!bounded_wait(c.wait, d, core::WaitStage::kCompletion,
                      [&] { return ld_acquire_sys(released) + 2 >= epoch; }))
      skip = true;
  }
  __syncthreads();
  if (skip) return;
  if (blockIdx.x == 0) {
    for (int32_t d = threadIdx.x; d < R; d += blockDim.x) {
      *signal_at<volatile uint64_t>(c, d, epoch, me, core::kLlSignature) = c.signature;
      // Release: the signature precedes "started".
      st_release_sys(signal_at<uint64_t>(c, d, epoch, me, core::kLlStarted), epoch);
    }
  }
  const int64_t H = l.hidden, rows = int64_t{R} * l.num_max_tokens;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  for (int64_t m = int64_t{warp} * gridDim.x + blockIdx.x; m < int64_t{E_local} * rows;
       m += total_warps) {
    const int32_t j = static_cast<int32_t>(m / rows);
    const int64_t i = m % rows;
    int32_t s = -1;  // the source whose range holds row i
    for (int32_t r = 0; r < R && s < 0; ++r) {
      const int64_t range = p.layout_range[j * R + r];
      const int64_t b = range >> 32, n = range & 0xffffffff;
      if (i >= b && i < b + n) s = r;
    }
    if (s < 0) continue;  // past the expert's count
    const int64_t t = p.src_info[m];
    const int64_t e = int64_t{me} * E_local + j;
    uint8_t* dst_half = half_base(c, s, epoch);
    warp_copy<false>(reinterpret_cast<int4*>(dst_half + l.combine_recv_offset +
                                             (e * l.num_max_tokens + t) * H * 2),
                     reinterpret_cast<const int4*>(p.x + m * H), H * 2 / 16, lane);
    // __syncwarp orders every lane's stores of this row before lane 0's tag release, which
    // (cumulative) carries them to the source.
    __syncwarp();
    // Release: the row precedes its tag on the source.
    if (lane == 0)
      st_release_sys_u32(
          reinterpret_cast<uint32_t*>(dst_half + l.combine_tags_offset) + e * l.num_max_tokens + t,
          tag);
  }
  if (last_block_done(c.counters) && threadIdx.x == 0) {
    *c.hook_epoch = epoch;
    *c.epoch_counter = epoch;
  }
}

// Preconditions: blockDim = kThreads; K <= 16; hidden % 8 == 0.
// (0) every expert rank's started flag and signature.
// (1) warps round-robin over this rank's tokens: lane k waits for the row of (t, topk_idx[t, k]),
//     then the warp sums w[t, k] * row in float32 (k ascending) and rounds once to bf16.
// (2) last block: release the half to every peer.
__global__ void __launch_bounds__(kThreads) ll_combine_recv_kernel(LowLatencyCombineParams p) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(c.hook_epoch);
  const uint32_t tag = static_cast<uint32_t>(epoch);
  uint8_t* const half = half_base(c, me, epoch);
  __shared__ bool failed;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  for (int32_t d = threadIdx.x; d < R; d += blockDim.x) {
    const auto* started = signal_at<const uint64_t>(c, me, epoch, d, core::kLlStarted);
    // Acquire: rank d's signature for this call is visible after this.
    if (!bounded_wait(c.wait, d, core::WaitStage::kDataArrival,
                      [&] { return ld_acquire_sys(started) >= epoch; })) {
      failed = true;
      continue;
    }
    const uint64_t theirs =
        *signal_at<const volatile uint64_t>(c, me, epoch, d, core::kLlSignature);
    if (theirs != c.signature) {
      record_input_error(c.wait, core::WaitStage::kArgumentMismatch, d,
                         static_cast<int64_t>(theirs), static_cast<int64_t>(c.signature));
      failed = true;
    }
  }
  __syncthreads();
  if (failed) return;
  const int64_t H = l.hidden;
  const auto* tags = reinterpret_cast<const uint32_t*>(half + l.combine_tags_offset);
  const uint8_t* rows = half + l.combine_recv_offset;
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  for (int64_t t = int64_t{warp} * gridDim.x + blockIdx.x; t < p.num_tokens; t += total_warps) {
    int64_t e = -1;
    float w = 0.0f;
    bool arrived = true;
    if (lane < p.topk) {
      e = load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + lane * p.topk_stride_k);
      if (e >= c.num_experts)
        e = -1;  // validated on the host for host tensors; never read out of range
      if (e >= 0) {
        w = p.topk_weights[t * p.weights_stride + lane * p.weights_stride_k];
        const uint32_t* tag_ptr = tags + e * l.num_max_tokens + t;
        if (ld_acquire_sys_u32(tag_ptr) != tag) {
          const uint64_t t0 = global_timer_ns();
          const int32_t d = static_cast<int32_t>(e / E_local);
          // Acquire: the row of (t, e) is visible once its tag shows this epoch.
          arrived = bounded_wait(c.wait, d, core::WaitStage::kDataArrival,
                                 [&] { return ld_acquire_sys_u32(tag_ptr) == tag; });
          if (p.wait_stats)
            atomicAdd(reinterpret_cast<unsigned long long*>(p.wait_stats + d),
                      global_timer_ns() - t0);
        }
      }
    }
    if (!__all_sync(0xffffffffu, arrived)) break;
    __syncwarp();
    int64_t ek[16];
    float wk[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      ek[k] = __shfl_sync(0xffffffffu, e, k);
      wk[k] = __shfl_sync(0xffffffffu, w, k);
    }
    for (int64_t ch = lane; ch < H / 8; ch += 32) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
      for (int k = 0; k < 16; ++k) {
        if (k >= p.topk || ek[k] < 0) continue;
        const int4 v = ld_na_v4(
            reinterpret_cast<const int4*>(rows + (ek[k] * l.num_max_tokens + t) * H * 2) + ch);
        const auto* h2 = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(h2[i]);
          acc[2 * i] += wk[k] * f.x;
          acc[2 * i + 1] += wk[k] * f.y;
        }
      }
      int4 out;
      auto* o2 = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
      for (int i = 0; i < 4; ++i) o2[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
      reinterpret_cast<int4*>(p.out + t * p.out_stride)[ch] = out;
    }
  }
  if (!last_block_done(c.counters + 1)) return;
  for (int32_t d = threadIdx.x; d < R; d += blockDim.x) {
    // Release: we finished reading what rank d wrote into this half.
    st_release_sys(signal_at<uint64_t>(c, d, epoch, me, core::kLlReleased), epoch);
  }
}

}  // namespace

cudaError_t launch_ll_combine_send(const LowLatencyCombineParams& p, int num_blocks,
                                   cudaStream_t stream) {
  if (cudaError_t e = cudaMemsetAsync(p.c.counters, 0, sizeof(uint32_t), stream)) return e;
  ll_combine_send_kernel<<<num_blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_ll_combine_recv(const LowLatencyCombineParams& p, int num_blocks,
                                   cudaStream_t stream) {
  if (cudaError_t e = cudaMemsetAsync(p.c.counters + 1, 0, sizeof(uint32_t), stream)) return e;
  ll_combine_recv_kernel<<<num_blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
