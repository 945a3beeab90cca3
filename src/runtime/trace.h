// Optional phase traces (EPCOMM_TRACE=1), for finding where time goes: the normal dispatch's and
// combine's (per block, when the senders and the receivers finished, how long the receivers
// waited for rows, how many rows they had done when the sends ended;
// kernels/intranode_{dispatch,combine}.h) and the low-latency kernels' (per block, when each
// phase of the call ended; kernels/low_latency.h). Off by default; costs nothing when off.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "epcomm/error.h"

namespace epcomm {
struct BufferTraceState {
  uint64_t* device = nullptr;  // [blocks][slots]
  int blocks = 0;
  int slots = 0;
  bool pending = false;  // a traced kernel was launched and not reported yet
};
}  // namespace epcomm

namespace epcomm::runtime {

bool trace_enabled();
// Nanoseconds between two checks of the abort flag (host-mapped) and the timeout by one waiting
// GPU thread: EPCOMM_FLAG_CHECK_NS, else 1 ms (docs/perf.md, v4 and v9).
uint64_t flag_check_ns();
// Allocates (once) and zeroes the trace for a normal dispatch or combine of `blocks` blocks on
// `stream`; *out is the device array to pass to the kernel, or null when tracing is off.
Error arm_dispatch_trace(BufferTraceState& state, int blocks, cudaStream_t stream, uint64_t** out);
Error arm_combine_trace(BufferTraceState& state, int blocks, cudaStream_t stream, uint64_t** out);
// The same for a low-latency op without a hook (kernels::kLlTraceSlots per block).
Error arm_low_latency_trace(BufferTraceState& state, int blocks, cudaStream_t stream,
                            uint64_t** out);
// After the stream finished: print one summary line for `rank` to stderr and clear pending.
void report_dispatch_trace(BufferTraceState& state, int32_t rank);
void report_combine_trace(BufferTraceState& state, int32_t rank);
void report_low_latency_trace(BufferTraceState& state, int32_t rank, const char* op);
void free_trace(BufferTraceState& state);

}  // namespace epcomm::runtime
