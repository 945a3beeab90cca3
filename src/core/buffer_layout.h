// Byte layout of one rank's communication buffer, shared by the runtime and the kernels.
// Every rank's buffer has the same layout, so an offset computed locally addresses the same
// field in any peer's mapped buffer.
//
//   [ signal area | normal (nvl) region | low-latency (rdma) region ]
//   signal area: barrier slots uint64[num_ranks] (slot s is written by rank s), then per-op
//                signal words that later kernels claim through SignalLayout.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace epcomm::core {

constexpr int64_t kRegionAlignment = 4096;
constexpr int64_t kAllocationAlignment = int64_t{2} << 20;  // IPC mappings use 2 MB granules
constexpr int64_t kSignalAreaBytes = int64_t{1} << 20;

EPCOMM_HOST_DEVICE int64_t align_up(int64_t value, int64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

struct SignalLayout {
  int32_t num_ranks = 0;

  // Barrier slot written by `writer_rank` (uint64 epoch).
  EPCOMM_HOST_DEVICE int64_t barrier_slot(int32_t writer_rank) const {
    return static_cast<int64_t>(writer_rank) * 8;
  }
  EPCOMM_HOST_DEVICE int64_t barrier_bytes() const { return align_up(int64_t{num_ranks} * 8, 128); }
};

struct BufferLayout {
  int64_t signal_offset = 0;
  int64_t signal_bytes = 0;
  int64_t nvl_offset = 0;
  int64_t nvl_bytes = 0;
  int64_t rdma_offset = 0;
  int64_t rdma_bytes = 0;
  int64_t total_bytes = 0;  // rounded up to kAllocationAlignment

  static BufferLayout make(int64_t num_nvl_bytes, int64_t num_rdma_bytes) {
    BufferLayout l;
    l.signal_offset = 0;
    l.signal_bytes = kSignalAreaBytes;
    l.nvl_offset = align_up(l.signal_offset + l.signal_bytes, kRegionAlignment);
    l.nvl_bytes = num_nvl_bytes;
    l.rdma_offset = align_up(l.nvl_offset + l.nvl_bytes, kRegionAlignment);
    l.rdma_bytes = num_rdma_bytes;
    l.total_bytes = align_up(l.rdma_offset + l.rdma_bytes, kAllocationAlignment);
    return l;
  }
};

}  // namespace epcomm::core
