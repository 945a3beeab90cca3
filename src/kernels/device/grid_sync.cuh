// Helpers shared by the multi-block kernels.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

// Counts finished blocks in a local counter; true in the last block (all threads). One thread per
// block fences: bar.sync orders the block's writes before its fence, and the fence (cumulative)
// orders them before the count; the last block's fence after the count orders every block's
// writes before its later releases. One fence per block, not per warp: system-scope fences cost
// microseconds each (docs/perf.md, v8). The last block resets the counter for the next launch
// (every block has counted by then; the next kernel on the stream starts after this one), so
// launches need no memset. A block that returns before counting does so only after an error
// was recorded, which fails the Buffer.
__device__ __forceinline__ bool last_block_done(uint32_t* counter) {
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence_system();
    last = atomicAdd(counter, 1u) == gridDim.x - 1;
    if (last) {
      *counter = 0;
      __threadfence_system();
    }
  }
  __syncthreads();
  return last;
}

__device__ __forceinline__ uint32_t lanemask_lt() {
  uint32_t mask;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(mask));
  return mask;
}

}  // namespace epcomm::kernels
