// The NVLink ceiling baseline: an SM-driven push of given byte counts from this rank into every
// peer's buffer (16-byte stores, several in flight per thread), on a given number of SMs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace epcomm::bench {

struct PushParams {
  const uint8_t* src;       // local source, at least max(bytes_to) bytes
  uint8_t* const* dst;      // [R] device array: destination base per peer (own rank skipped)
  const int64_t* bytes_to;  // [R] device array: bytes for each peer (multiple of 16)
  int32_t num_ranks, rank;
};

cudaError_t launch_push(const PushParams& params, int num_sms, cudaStream_t stream);

}  // namespace epcomm::bench
