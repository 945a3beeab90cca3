// Buffer: the communication buffers of one rank of an EP group, and the operations over them.
//
// Memory: the Buffer owns one device allocation (signal area + normal region of num_nvl_bytes +
// low-latency region of num_rdma_bytes) and maps every peer's allocation through CUDA IPC.
// Streams: every operation runs on the stream the caller passes (a cudaStream_t given as
// StreamHandle; nullptr is the legacy default stream) and never synchronises the device.
// Threads: a Buffer is used by one host thread at a time.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "epcomm/config.h"
#include "epcomm/dispatch.h"
#include "epcomm/error.h"
#include "epcomm/layout.h"
#include "epcomm/low_latency.h"
#include "epcomm/tensor.h"
#include "epcomm/topology.h"

namespace epcomm {

using StreamHandle = void*;  // a cudaStream_t

// Collective all-gather of `bytes` bytes: every rank passes its own bytes in `mine`; on return
// `all` holds num_ranks * bytes bytes, rank r's at offset r * bytes. It may throw to report a
// failure; Buffer::create turns that into an Error.
using AllGatherFn = std::function<void(const void* mine, void* all, size_t bytes)>;

struct BufferOptions {
  int32_t rank = 0;
  int32_t num_ranks = 1;
  int32_t gpus_per_node = 0;   // 0: all ranks on one node
  int32_t device = -1;         // CUDA device ordinal; -1: local rank modulo visible devices
  int64_t num_nvl_bytes = 0;   // normal kernels' region
  int64_t num_rdma_bytes = 0;  // low-latency kernels' region
  bool low_latency_mode = false;
  double timeout_seconds = 100.0;  // bound of every cross-rank wait (GPU and host)
};

class EPCOMM_EXPORT Buffer {
 public:
  // Collective. Selects the device, allocates and exports the buffer, all-gathers every rank's
  // handle and configuration, checks that they agree (naming the rank that differs), checks P2P
  // access for every pair and maps every peer's buffer. Waits on the host (bounded by the
  // all-gather). On failure *out is left empty and nothing stays allocated.
  static Error create(const BufferOptions& options, const AllGatherFn& all_gather,
                      std::unique_ptr<Buffer>* out);
  // Releases everything (same as destroy(), errors ignored).
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Local: unmaps the peers and frees the buffer. The caller makes sure no peer still uses it
  // (for example with a final barrier). Idempotent.
  Error destroy();

  const Topology& topology() const;
  const BufferOptions& options() const;
  int32_t device() const;
  // Device address of this rank's normal (nvl) or low-latency (rdma) region.
  void* local_region(bool low_latency) const;
  // Device address, valid in this process, of rank `rank`'s region (its IPC mapping; this rank's
  // own region for rank == topology().rank); nullptr for a rank out of range. Writes there
  // become visible to that rank after a barrier() that follows them on the same stream.
  void* peer_region(int32_t rank, bool low_latency) const;

  // Collective, asynchronous on `stream`: returns when every rank has reached the barrier on
  // the GPU. Capturable. A missing rank makes the kernel give up after the timeout and record
  // the error; synchronize() reports it.
  Error barrier(StreamHandle stream);
  // Host wait for `stream`, bounded by the timeout; returns the first error a kernel of this
  // Buffer recorded (op, rank, peer, stage). After such an error the Buffer is failed.
  Error synchronize(StreamHandle stream);
  // Reads the error record without waiting.
  Error check_async_error();
  // Makes every bounded wait of this Buffer give up now (from any thread).
  void abort();
  // Asynchronous: work enqueued on `waiter` after this call runs after the work enqueued on
  // `waited` before it (an event of the Buffer's, recorded and waited on; capturable). One host
  // call for the stream handoffs of callers like the Python layer (docs/perf.md).
  Error stream_wait(StreamHandle waiter, StreamHandle waited);

  // ---- operations (semantics.md sections 1-5); each validates every argument first ----
  Error get_dispatch_layout(const LayoutArgs& args, StreamHandle stream);
  // Count exchange: collective, waits on the host for the receive counts (bounded).
  Error dispatch_notify(const DispatchNotifyArgs& args, DispatchCounts* counts,
                        StreamHandle stream);
  Error dispatch(const DispatchArgs& args, StreamHandle stream);
  Error combine(const CombineArgs& args, StreamHandle stream);
  // With return_recv_hook, *hook receives the pending receive; run it with run_low_latency_hook.
  // A low-latency call whose (N_max, hidden, num_experts) differs from the previous one's is
  // collective like every call, and first clears the low-latency buffers between two barriers;
  // receives still pending from the old shape and its zero-copy view are invalid after it.
  Error low_latency_dispatch(const LowLatencyDispatchArgs& args, StreamHandle stream,
                             LowLatencyHook* hook);
  Error low_latency_combine(const LowLatencyCombineArgs& args, StreamHandle stream,
                            LowLatencyHook* hook);
  Error run_low_latency_hook(const LowLatencyHook& hook, StreamHandle stream);
  // View (into the communication buffer) that the next zero-copy combine reads. Valid until the
  // low-latency call after next reuses the buffer (double buffering, semantics.md section 4).
  // Write it on the stream the combine runs on (or finish the writes before the call): the
  // combine's kernel reads it as soon as it starts.
  Error get_next_low_latency_combine_buffer(const LowLatencyHandle& handle, TensorView* view);
  Error clean_low_latency_buffer(int32_t num_max_dispatch_tokens_per_rank, int32_t hidden,
                                 int32_t num_experts, StreamHandle stream);

  struct Impl;  // defined in src/runtime

 private:
  explicit Buffer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace epcomm
