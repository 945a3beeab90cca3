// Buffer::Impl: the state behind the public Buffer (runtime-internal; tests may include it).
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/buffer_layout.h"
#include "core/error_record.h"
#include "epcomm/buffer.h"
#include "epcomm/dispatch.h"
#include "kernels/device/wait_context.h"
#include "kernels/low_latency.h"
#include "kernels/notify.h"
#include "runtime/trace.h"

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

  // Normal kernels: one epoch per kind of call, equal on every rank (same call sequence).
  uint64_t notify_ticket = 0;  // host-side count of eager count exchanges
  // [8] device: barrier, notify, dispatch, combine, LL, the LL release left pending.
  uint64_t* epochs = nullptr;
  kernels::NotifyHostCounts* notify_host = nullptr;  // mapped pinned (host address)
  kernels::NotifyHostCounts* notify_device = nullptr;
  uint32_t* block_counters = nullptr;   // [16] device: dispatch 0-1, combine 2-3, LL 4-7
  uint64_t* hook_epochs = nullptr;      // [kHookSlots] device: epoch of each pending LL receive
  int32_t* wait_failed = nullptr;       // device: non-zero once any wait or input check failed
  cudaEvent_t handoff_event = nullptr;  // stream_wait (created on first use)
  // Combine by the copy engines (runtime/combine_copy.cpp), created on first use: one stream and
  // one join event per peer, the fork event, and the device word the copies write as tags.
  std::vector<cudaStream_t> copy_streams;  // [R], own entry unused
  std::vector<cudaEvent_t> copy_joins;     // [R], own entry unused
  cudaEvent_t copy_fork = nullptr;
  uint32_t* copy_tag = nullptr;  // device, in the scratch allocation
  int32_t num_device_sms = 0;

  // Low-latency receives waiting for their hook (return_recv_hook), by hook id % kHookSlots.
  static constexpr int kHookSlots = 8;
  struct PendingHook {
    int64_t id = -1;
    bool dispatch = true;
    kernels::LowLatencyDispatchParams dispatch_params{};
    kernels::LowLatencyCombineParams combine_params{};
  };
  PendingHook pending[kHookSlots];
  int64_t next_hook_id = 0;
  uint64_t ll_shape_key = 0;  // (N_max, hidden, E) of the last LL call; 0 before the first
  BufferTraceState dispatch_trace, combine_trace;        // EPCOMM_TRACE=1 only
  BufferTraceState ll_dispatch_trace, ll_combine_trace;  // EPCOMM_TRACE=1 only
  Error failure;  // set once the Buffer failed; every later op returns it
  bool destroyed = false;

  kernels::WaitContext wait_context(core::OpId op) const {
    return kernels::WaitContext{error_device,
                                control_device,
                                wait_failed,
                                static_cast<uint64_t>(options.timeout_seconds * 1e9),
                                runtime::flag_check_ns(),
                                static_cast<int32_t>(op),
                                topo.rank};
  }
  // Error for ops on a destroyed or failed Buffer; success otherwise.
  Error usable(const char* op) const;
  // Reads the device error record; on a valid record marks the Buffer failed.
  Error read_error_record();
  Error release();
  // Bounded host wait until `ready()` or an error record appears (the single host wait).
  template <class Ready>
  Error host_wait(const char* op, Ready ready);
};

template <class Ready>
Error Buffer::Impl::host_wait(const char* op, Ready ready) {
  const auto start = std::chrono::steady_clock::now();
  const double limit = options.timeout_seconds * 1.5 + 1.0;
  while (!ready()) {
    if (Error e = read_error_record(); !e.ok()) return e;
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > limit) {
      reinterpret_cast<volatile int32_t*>(&control_host->abort_flag)[0] = 1;
      failure =
          Error(ErrorCode::kTimeout, std::string(op) + " on rank " + std::to_string(topo.rank) +
                                         ": the host waited " + std::to_string(waited) +
                                         " s for the GPU without an answer (aborted)");
      return failure;
    }
    if (waited > 1e-3) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return read_error_record();
}

}  // namespace epcomm
