// Cross-rank barrier kernel: every rank raises its slot in every peer's signal area to the new
// epoch, then waits (bounded) until every peer has raised its slot in ours.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

struct BarrierParams {
  uint8_t* const* peer_bases;  // [R] device array of every rank's mapped buffer base
  int64_t signal_offset;       // offset of the signal area in every buffer
  int32_t num_ranks;
  uint64_t* epoch_counter;  // device: last completed barrier epoch (advanced by the kernel)
  WaitContext wait;
};

cudaError_t launch_barrier(const BarrierParams& params, cudaStream_t stream);

}  // namespace epcomm::kernels
