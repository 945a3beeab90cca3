// Work taken in order from a counter instead of a fixed share per warp: a warp that runs ahead
// takes more, so the last warp ends near the average rather than at the slowest share
// (docs/perf.md, v16).
#pragma once

#include <cstdint>

namespace epcomm::kernels {

// The index of the next chunk of a counter (global or shared memory) shared by several warps;
// lane 0 takes it, every lane gets it. Relaxed: the chunk index orders no other memory.
__device__ __forceinline__ int64_t take_chunk(uint32_t* counter, int lane) {
  uint32_t chunk = 0;
  if (lane == 0) chunk = atomicAdd(counter, 1u);
  return __shfl_sync(0xffffffffu, chunk, 0);
}

}  // namespace epcomm::kernels
