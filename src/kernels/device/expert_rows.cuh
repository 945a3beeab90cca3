// The valid received rows of every local expert as one index space, for kernels that visit each
// received row once (the low-latency combine sends). The valid rows of local expert j are
// [0, count_j), the source ranges of layout_range tiling them from 0 (semantics.md section 4).
#pragma once

#include <cstdint>

#include "kernels/device/ptx.cuh"

namespace epcomm::kernels {

struct ExpertRows {
  // How many times index() passes its named barrier.
  static constexpr int kIndexBarriers = 3;
  // Collective of the `num_threads` threads from `first_thread` on (whole warps, at most 32; the
  // whole block with first_thread 0, num_threads = blockDim.x and barrier 0), while the block's
  // other warps may do other work: range[j * R + s] = layout_range[j * R + s] (begin << 32 |
  // count) of local expert j and source s; first_row[j] = the index of expert j's first valid
  // row, and first_row[E_local] = every expert's valid rows together, which it returns. Named
  // barrier `barrier_id` of these threads. Every thread scans a few experts: the scan by one warp
  // alone cost the block-wide combine ~1 us (docs/perf.md, LL v24).
  static __device__ __forceinline__ int32_t index(const int64_t* layout_range, int32_t E_local,
                                                  int32_t R, int64_t* range, int32_t* first_row,
                                                  int first_thread, int num_threads,
                                                  int barrier_id) {
    __shared__ int32_t warp_rows[32];  // valid rows of each warp's experts
    const int me = static_cast<int>(threadIdx.x) - first_thread, lane = me % 32, w = me / 32;
    for (int32_t i = me; i < E_local * R; i += num_threads) range[i] = layout_range[i];
    named_barrier_sync(barrier_id, num_threads);  // the ranges, before the sums read them
    // Thread me: experts [j0, j0 + per), contiguous, so that the scan keeps the experts' order.
    const int32_t per = (E_local + num_threads - 1) / num_threads, j0 = me * per;
    int32_t mine = 0;
    for (int32_t j = j0; j < j0 + per && j < E_local; ++j)
      for (int32_t r = 0; r < R; ++r) mine += static_cast<int32_t>(range[j * R + r] & 0xffffffff);
    int32_t inclusive = mine;
    for (int d = 1; d < 32; d *= 2) {
      const int32_t other = __shfl_up_sync(0xffffffffu, inclusive, d);
      if (lane >= d) inclusive += other;
    }
    if (lane == 31) warp_rows[w] = inclusive;
    named_barrier_sync(barrier_id, num_threads);  // the warps' totals, before every thread adds
    // The earlier warps' totals and every warp's, summed across the lanes (a serial loop over
    // the warps cost the last warp ~15 dependent loads).
    int32_t earlier = lane < w ? warp_rows[lane] : 0;
    int32_t all = lane < num_threads / 32 ? warp_rows[lane] : 0;
    for (int d = 16; d > 0; d /= 2) {
      earlier += __shfl_xor_sync(0xffffffffu, earlier, d);
      all += __shfl_xor_sync(0xffffffffu, all, d);
    }
    int32_t before = earlier + inclusive - mine;
    if (me == 0) first_row[E_local] = all;
    for (int32_t j = j0; j < j0 + per && j < E_local; ++j) {
      first_row[j] = before;
      for (int32_t r = 0; r < R; ++r) before += static_cast<int32_t>(range[j * R + r] & 0xffffffff);
    }
    named_barrier_sync(barrier_id, num_threads);  // first_row, before every reader
    return first_row[E_local];
  }

  // Grid-collective hint: the handle's src_info ([E_local][R * N_max] int32, split over the
  // grid so that every line is asked once) and layout_range (by every block, which indexes it),
  // asked of L2 before a kernel's first wait, which they do not need: the index and the source
  // tokens are then read from L2 (docs/perf.md, LL v21, v24).
  static __device__ __forceinline__ void prefetch_l2_handle(const int32_t* src_info,
                                                            const int64_t* layout_range,
                                                            int32_t E_local, int32_t R,
                                                            int64_t num_max_tokens) {
    const char* info = reinterpret_cast<const char*>(src_info);
    const int64_t info_bytes = int64_t{E_local} * R * num_max_tokens * 4;
    const int64_t step = int64_t{gridDim.x} * blockDim.x * 128;
    for (int64_t at = (int64_t{threadIdx.x} * gridDim.x + blockIdx.x) * 128; at < info_bytes;
         at += step)
      prefetch_l2(info + at);
    const int64_t range_bytes = int64_t{E_local} * R * 8;
    if (int64_t{threadIdx.x} * 128 < range_bytes)
      prefetch_l2(reinterpret_cast<const char*>(layout_range) + threadIdx.x * 128);
  }

  // Row q of the index: its local expert j, its row i among j's rows, and the source s whose
  // range holds it.
  static __device__ __forceinline__ void locate(int64_t q, const int32_t* first_row,
                                                const int64_t* range, int32_t E_local, int32_t R,
                                                int32_t& j, int64_t& i, int32_t& s) {
    int32_t lo = 0, hi = E_local;  // the expert with first_row[lo] <= q < first_row[lo + 1]
    while (hi - lo > 1) {
      const int32_t mid = (lo + hi) / 2;
      if (first_row[mid] <= q)
        lo = mid;
      else
        hi = mid;
    }
    j = lo;
    i = q - first_row[j];
    s = 0;
    while (s < R - 1 && i >= (range[j * R + s] >> 32) + (range[j * R + s] & 0xffffffff)) ++s;
  }
};

}  // namespace epcomm::kernels
