// Low-latency combine: every received row goes back to its source, into the source's combine
// area at (global expert, token); the source sums its top-k rows with their weights.
#include <cuda_bf16.h>

#include "kernels/device/bf16x8.cuh"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/expert_rows.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/indices.cuh"
#include "kernels/device/report.cuh"
#include "kernels/device/started_check.cuh"
#include "kernels/low_latency.h"

namespace epcomm::kernels {
namespace {

constexpr int kThreads = kLowLatencyThreads;
constexpr int kWarps = kThreads / 32;

// Preconditions: blockDim = kThreads.
// (0) wait until every peer released this half from call epoch - 2; block 0 publishes the
//     signature ("started") to every peer.
// (1) warps round-robin over (local expert, row): the row goes to its source s at
//     (expert, source token) in s's combine area, then its tag.
// (2) last block: leave the epoch in the hook slot and advance the epoch counter.
// Returns false when the wait for the half failed (recorded; the block skips the call).
__device__ __forceinline__ bool ll_combine_send(const LowLatencyCombineParams& p, uint64_t epoch,
                                                LlKernel kernel) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // The index's and the rows' inputs, asked of L2 during the half's wait (LL v24).
  ExpertRows::prefetch_l2_handle(p.src_info, p.layout_range, E_local, R, l.num_max_tokens);
  if (!wait_half_released(c, epoch)) return false;
  if (blockIdx.x == 0) publish_started(c, epoch, -1);
  const int64_t H = l.hidden, rows = int64_t{R} * l.num_max_tokens;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  // Every block indexes the valid rows in shared memory, so the warps visit valid rows only
  // instead of scanning every (expert, row) slot (docs/perf.md, v8).
  __shared__ int64_t range[core::kMaxExperts];  // [E_local][R], E_local * R <= kMaxExperts
  __shared__ int32_t first_row[core::kMaxExperts + 1];
  const int32_t total = ExpertRows::index(p.layout_range, E_local, R, range, first_row,
                                          /*first_thread=*/0, kThreads, /*barrier_id=*/0);
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  for (int64_t q = int64_t{warp} * gridDim.x + blockIdx.x; q < total; q += total_warps) {
    int32_t j, s;
    int64_t i;
    ExpertRows::locate(q, first_row, range, E_local, R, j, i, s);
    const int64_t m = int64_t{j} * rows + i;
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
  finish_send(c, epoch, kernel);
  return true;
}

// Preconditions: blockDim = kThreads; K <= 16; hidden % 8 == 0.
// (0) every expert rank's started flag and signature.
// (1) warps round-robin over (token, 256-channel slice): lane k waits for the row of
//     (t, topk_idx[t, k]), then each lane sums w[t, k] * row over its 8 channels in float32
//     (k ascending) and rounds once to bf16.
// (2) last block: release the half to every peer.
__device__ __forceinline__ void ll_combine_recv(const LowLatencyCombineParams& p, uint64_t epoch,
                                                LlKernel kernel) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  uint8_t* const half = half_base(c, me, epoch);
  __shared__ bool failed;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  for (int32_t d = threadIdx.x; d < R; d += blockDim.x)
    if (!source_started(c.wait, signal_at<const uint64_t>(c, me, epoch, d, core::kLlStarted),
                        signal_at<const volatile uint64_t>(c, me, epoch, d, core::kLlSignature),
                        c.signature, epoch, d))
      failed = true;
  __syncthreads();
  if (failed) return;
  trace_mark(c, 4);
  const int64_t H = l.hidden;
  const auto* tags = reinterpret_cast<const uint32_t*>(half + l.combine_tags_offset);
  const uint8_t* rows = half + l.combine_recv_offset;
  // Work item (token t, slice): 256 channels of t, 8 per lane, so that a token's reduction is
  // spread over several warps and each lane has one 16-byte load per top-k row in flight at
  // once (the loop over rows is unrolled; docs/perf.md, v8). With top-k <= 8 a warp takes two
  // items per pass (groups of 16 lanes wait for the tags of one item each), so that both items'
  // rows are in flight together: the receive is one pass per warp, not two (LL v10).
  constexpr int kRows = core::kMaxLowLatencyTopk;
  const int groups = p.pair_items && 2 * p.topk <= kRows ? 2 : 1;
  const int lanes_per_group = 32 / groups;
  const int group = lane / lanes_per_group, k_lane = lane % lanes_per_group;
  const int64_t slices = (H + 255) / 256, num_items = p.num_tokens * slices;
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  for (int64_t first = int64_t{warp} * gridDim.x + blockIdx.x; first < num_items;
       first += groups * total_warps) {
    const int64_t my_item = first + group * total_warps;  // the item whose tag lane waits for
    int32_t e = -1;
    float w = 0.0f;
    bool arrived = true;
    if (k_lane < p.topk && my_item < num_items) {
      const int64_t t = my_item / slices;
      const int64_t id =
          load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + k_lane * p.topk_stride_k);
      e = id >= 0 && id < c.num_experts ? static_cast<int32_t>(id) : -1;  // host-validated
      if (e >= 0) {
        w = p.topk_weights[t * p.weights_stride + k_lane * p.weights_stride_k];
        const uint32_t* tag_ptr = tags + int64_t{e} * l.num_max_tokens + t;
        if (ld_acquire_sys_u32(tag_ptr) != tag) {
          const uint64_t t0 = global_timer_ns();
          const int32_t d = e / E_local;
          // Acquire: the row of (t, e) is visible once its tag shows this epoch.
          arrived = bounded_wait(c.wait, d, core::WaitStage::kDataArrival,
                                 [&] { return ld_acquire_sys_u32(tag_ptr) == tag; });
          if (p.wait_stats && my_item % slices == 0)  // once per token
            atomicAdd(reinterpret_cast<unsigned long long*>(p.wait_stats + d),
                      global_timer_ns() - t0);
        }
      }
    }
    if (!__all_sync(0xffffffffu, arrived)) break;
    // Each tag lane acquired its row's tag; __syncwarp (a vote orders no memory) orders every
    // lane's loads of the rows after those acquires. Without it a lane could read a row of the
    // call two epochs back from its L1 (found with ranks sharing GPUs, where rows arrive late).
    __syncwarp();
    // v[r]: top-k row k of item group g (g = r / 8, k = r % 8 with two groups; else g = 0,
    // k = r), this lane's 8 channels; every index is a compile-time constant (registers).
    int4 v[kRows];
    float wk[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int g = groups == 2 ? r / (kRows / 2) : 0, k = groups == 2 ? r % (kRows / 2) : r;
      const int64_t item = first + g * total_warps;
      const int32_t ek = __shfl_sync(0xffffffffu, e, g * lanes_per_group + k);
      wk[r] = __shfl_sync(0xffffffffu, w, g * lanes_per_group + k);
      const int64_t t = item / slices, ch = (item % slices) * 256 + lane * 8;
      if (k < p.topk && ek >= 0 && item < num_items && ch < H)
        v[r] = ld_na_v4(reinterpret_cast<const int4*>(
            rows + (int64_t{ek} * l.num_max_tokens + t) * H * 2 + ch * 2));
      else
        wk[r] = 0.0f, v[r] = make_int4(0, 0, 0, 0);
    }
#pragma unroll
    for (int g = 0; g < 2; ++g) {
      const int64_t item = first + g * total_warps;
      if (g >= groups) break;
      const int64_t t = item / slices, ch = (item % slices) * 256 + lane * 8;
      if (item >= num_items || ch >= H) continue;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
      for (int r = 0; r < kRows; ++r) {  // k ascending within the item: a fixed order
        if ((groups == 2 ? r / (kRows / 2) : 0) != g) continue;
        add_weighted_bf16x8(acc, wk[r], v[r]);
      }
      *reinterpret_cast<int4*>(p.out + t * p.out_stride + ch) = round_bf16x8(acc);
    }
  }
  finish_recv(c, epoch, kernel, [] {});
}

using CombineOp = LlOp<LowLatencyCombineParams, ll_combine_send, ll_combine_recv>;

}  // namespace

LlLaunchers<LowLatencyCombineParams> ll_combine_launchers() {
  return make_ll_launchers<CombineOp>();
}

}  // namespace epcomm::kernels
