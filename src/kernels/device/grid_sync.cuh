// Helpers shared by the multi-block kernels.
#pragma once

#include <cstdint>

namespace epcomm::kernels {

// Counts finished blocks in a local counter; true in the last block (all threads). Each thread's
// writes are fenced system-wide before the count, so the last block's later release covers
// every block's writes.
__device__ __forceinline__ bool last_block_done(uint32_t* counter) {
  __shared__ bool last;
  __threadfence_system();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (last) __threadfence_system();
  return last;
}

__device__ __forceinline__ uint32_t lanemask_lt() {
  uint32_t mask;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(mask));
  return mask;
}

}  // namespace epcomm::kernels
