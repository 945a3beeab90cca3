// Phase trace of the normal dispatch and combine (EPCOMM_TRACE=1, runtime/trace.h): per block,
// slot 0 the start, 1 the last sender warp done, 2 the last receiver warp done (dispatch copy-out,
// combine reduce), 3 the end, 4 and 5 the receivers' summed wait ns and number of waits, 6 the
// rows the block's receivers had done when its last sender warp finished, 7 the rows they did
// in all. Global-timer ns; zeroed by the launcher's caller.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

constexpr int kNormalTraceSlots = 8;

#if defined(__CUDACC__)
}  // namespace epcomm::kernels
#include "kernels/device/ptx.cuh"
namespace epcomm::kernels {

// This block's slots of a trace array, or none when tracing is off (every method then does
// nothing). `done` is the block's shared count of rows its receivers finished.
struct NormalTrace {
  uint64_t* slots;

  static __device__ __forceinline__ NormalTrace of(uint64_t* all) {
    return {all != nullptr ? all + blockIdx.x * kNormalTraceSlots : nullptr};
  }
  __device__ __forceinline__ void start() const {
    if (slots && threadIdx.x == 0) slots[0] = global_timer_ns();
  }
  // A sender warp finished (lane 0 records).
  __device__ __forceinline__ void sends_done(const uint32_t& done, int lane) const {
    if (!slots || lane != 0) return;
    atomicMax(reinterpret_cast<unsigned long long*>(slots + 1), global_timer_ns());
    // The count only grows, so the largest snapshot is the last sender warp's.
    atomicMax(reinterpret_cast<unsigned long long*>(slots + 6),
              static_cast<unsigned long long>(*static_cast<const volatile uint32_t*>(&done)));
  }
  // A receiver warp finished a row (lane 0 counts it).
  __device__ __forceinline__ void row_done(uint32_t& done, int lane) const {
    if (slots && lane == 0) atomicAdd(&done, 1u);
  }
  // A receiver warp finished its rows (lane 0 records).
  __device__ __forceinline__ void receivers_done(int lane) const {
    if (slots && lane == 0)
      atomicMax(reinterpret_cast<unsigned long long*>(slots + 2), global_timer_ns());
  }
  // A wait for a row: wait_begin before it, wait_end(its result) after.
  __device__ __forceinline__ uint64_t wait_begin() const { return slots ? global_timer_ns() : 0; }
  __device__ __forceinline__ void wait_end(uint64_t begin) const {
    if (!slots) return;
    atomicAdd(reinterpret_cast<unsigned long long*>(slots + 4), global_timer_ns() - begin);
    atomicAdd(reinterpret_cast<unsigned long long*>(slots + 5), 1ull);
  }
  // After a block-wide barrier that every warp passed (so `done` is final).
  __device__ __forceinline__ void end(uint32_t done) const {
    if (!slots || threadIdx.x != 0) return;
    slots[3] = global_timer_ns();
    slots[7] = done;
  }
};
#endif

}  // namespace epcomm::kernels
