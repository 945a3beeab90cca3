// Arrival tags a sender warp owes its receivers, released together: one system-scope release
// for a batch of rows instead of one per row (the release waits for the warp's earlier NVLink
// stores, so a per-row release puts a link round trip into every row: docs/perf.md, v10).
#pragma once

#include <cstdint>

#include "kernels/device/ptx.cuh"

namespace epcomm::kernels {

// Lane i holds the i-th pending tag. Every lane calls add() and flush() with the same
// arguments (warp-uniform control flow).
struct PendingTags {
  uint32_t* mine = nullptr;
  int count = 0;

  __device__ __forceinline__ void flush(uint32_t tag) {
    if (count == 0) return;
    // __syncwarp orders every lane's row stores before the tag stores below; each lane's
    // release (cumulative) then carries them to the receiver of its tag.
    __syncwarp();
    // Release: the rows and metadata written before this point precede the tag the receiver
    // acquires.
    if (mine != nullptr) st_release_sys_u32(mine, tag);
    mine = nullptr;
    count = 0;
  }
  __device__ __forceinline__ void add(uint32_t* tag_ptr, uint32_t tag, int lane) {
    if (count == 32) flush(tag);
    if (lane == count) mine = tag_ptr;
    ++count;
  }
};

}  // namespace epcomm::kernels
