// Buffer::Impl: the state behind the public Buffer (runtime-internal; tests may include it).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/buffer_layout.h"
#include "core/error_record.h"
#include "epcomm/buffer.h"
#include "kernels/device/wait_context.h"

namespace epcomm {

struct Buffer::Impl {
  BufferOptions options;
  Topology topo;
  int32_t device = -1;
  core::BufferLayout layout;

  uint8_t* local_base = nullptr;          // this rank's cudaMalloc allocation
  std::vector<uint8_t*> peer_bases;       // [R] mapped bases (own entry = local_base)
  std::vector<bool> peer_opened;          // [R] whether peer_bases[r] came from an IPC open
  uint8_t** peer_bases_device = nullptr;  // [R] device copy of peer_bases

  core::DeviceErrorRecord* error_host = nullptr;  // mapped pinned memory, host address
  core::DeviceErrorRecord* error_device = nullptr;
  core::HostControl* control_host = nullptr;
  core::HostControl* control_device = nullptr;

  uint64_t barrier_epoch = 0;
  Error failure;  // set once the Buffer failed; every later op returns it
  bool destroyed = false;

  kernels::WaitContext wait_context(core::OpId op) const {
    return kernels::WaitContext{error_device, control_device,
                                static_cast<uint64_t>(options.timeout_seconds * 1e9),
                                static_cast<int32_t>(op), topo.rank};
  }
  // Error for ops on a destroyed or failed Buffer; success otherwise.
  Error usable(const char* op) const;
  // Reads the device error record; on a valid record marks the Buffer failed.
  Error read_error_record();
  Error release();
};

}  // namespace epcomm
