// The valid received rows of every local expert as one index space, for kernels that visit each
// received row once (the low-latency combine sends). The valid rows of local expert j are
// [0, count_j), the source ranges of layout_range tiling them from 0 (semantics.md section 4).
#pragma once

#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "kernels/device/ptx.cuh"

namespace epcomm::kernels {

template <int kThreads>
struct ExpertRows {
  using Scan = cub::BlockScan<int32_t, kThreads>;
  using TempStorage = typename Scan::TempStorage;

  // Block-collective: range[j * R + s] = layout_range[j * R + s] (begin << 32 | count) of local
  // expert j and source s; first_row[j] = the index of expert j's first valid row, and
  // first_row[E_local] = every expert's valid rows together, which it returns.
  // Preconditions: blockDim.x = kThreads; E_local <= 2 * kThreads.
  static __device__ __forceinline__ int32_t index(const int64_t* layout_range, int32_t E_local,
                                                  int32_t R, int64_t* range, int32_t* first_row,
                                                  TempStorage& storage) {
    for (int32_t i = threadIdx.x; i < E_local * R; i += blockDim.x) range[i] = layout_range[i];
    __syncthreads();
    int32_t mine[2] = {0, 0};  // counts of experts 2 * threadIdx.x and 2 * threadIdx.x + 1
    for (int u = 0; u < 2; ++u) {
      const int32_t j = 2 * static_cast<int32_t>(threadIdx.x) + u;
      for (int32_t r = 0; j < E_local && r < R; ++r)
        mine[u] += static_cast<int32_t>(range[j * R + r] & 0xffffffff);
    }
    int32_t before = 0, total = 0;
    Scan(storage).ExclusiveSum(mine[0] + mine[1], before, total);
    for (int u = 0; u < 2; ++u)
      if (2 * threadIdx.x + u < static_cast<unsigned>(E_local)) {
        first_row[2 * threadIdx.x + u] = before;
        before += mine[u];
      }
    if (threadIdx.x == 0) first_row[E_local] = total;
    __syncthreads();
    return total;
  }

  // The same index built by the `num_threads` threads from `first_thread` on (whole warps) while
  // the block's other warps do other work: named barrier `barrier_id` instead of bar.sync 0, and
  // the scan by their first warp. Preconditions: E_local <= 1024 (32 experts per lane).
  static __device__ __forceinline__ int32_t index_by_warps(const int64_t* layout_range,
                                                           int32_t E_local, int32_t R,
                                                           int64_t* range, int32_t* first_row,
                                                           int first_thread, int num_threads,
                                                           int barrier_id) {
    const int me = static_cast<int>(threadIdx.x) - first_thread;
    for (int32_t i = me; i < E_local * R; i += num_threads) range[i] = layout_range[i];
    named_barrier_sync(barrier_id, num_threads);  // the ranges, before the scan reads them
    if (me < 32) {
      const int32_t per = (E_local + 31) / 32, j0 = me * per;
      int32_t mine = 0;
      for (int32_t j = j0; j < j0 + per && j < E_local; ++j)
        for (int32_t r = 0; r < R; ++r) mine += static_cast<int32_t>(range[j * R + r] & 0xffffffff);
      int32_t inclusive = mine;
      for (int d = 1; d < 32; d *= 2) {
        const int32_t other = __shfl_up_sync(0xffffffffu, inclusive, d);
        if (me >= d) inclusive += other;
      }
      int32_t before = inclusive - mine;
      for (int32_t j = j0; j < j0 + per && j < E_local; ++j) {
        first_row[j] = before;
        for (int32_t r = 0; r < R; ++r)
          before += static_cast<int32_t>(range[j * R + r] & 0xffffffff);
      }
      if (me == 31) first_row[E_local] = inclusive;
    }
    named_barrier_sync(barrier_id, num_threads);  // first_row, before every reader
    return first_row[E_local];
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
