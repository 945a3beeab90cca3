// Helpers shared by the multi-block kernels.
#pragma once

#include <cstdint>

#include "kernels/device/ptx.cuh"

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

// The same count for blocks whose writes since their last system fence are local and read by
// nothing outside this GPU before the kernel ends (a receive's outputs): a GPU-scope
// acquire-release add instead of a system fence per block, which waits for the block's stores
// to be performed (docs/perf.md, LL v19). What the last block then releases at system scope
// (cumulatively, through its acquire) still follows every block's reads and writes.
__device__ __forceinline__ bool last_block_done_local(uint32_t* counter) {
  __shared__ bool last;
  __syncthreads();  // orders the block's accesses before thread 0's release
  if (threadIdx.x == 0) {
    last = atom_add_acq_rel_gpu_u32(counter, 1u) == gridDim.x - 1;
    if (last) *counter = 0;  // the next launch starts after this kernel ends
  }
  __syncthreads();  // orders thread 0's acquire before the block's later accesses
  return last;
}

__device__ __forceinline__ uint32_t lanemask_lt() {
  uint32_t mask;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(mask));
  return mask;
}

}  // namespace epcomm::kernels
