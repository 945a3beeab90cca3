#include "core/buffer_layout.h"
#include "kernels/barrier.h"
#include "kernels/device/bounded_wait.cuh"

namespace epcomm::kernels {
namespace {

// Preconditions: one block of >= num_ranks threads; thread p talks to peer p.
__global__ void barrier_kernel(BarrierParams p) {
  const core::SignalLayout signals{p.num_ranks};
  const int32_t peer =
      static_cast<int32_t>(threadIdx.x) < p.num_ranks ? static_cast<int32_t>(threadIdx.x) : -1;
  const int32_t me = p.wait.rank;
  // The epoch lives in device memory so that a captured CUDA graph advances it on every replay.
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.epoch_counter) + 1;
  // Make this rank's earlier writes (previous kernels on this stream) visible system-wide
  // before any peer can observe the new epoch.
  __threadfence_system();
  if (peer >= 0) {
    auto* remote_slot = reinterpret_cast<uint64_t*>(p.peer_bases[peer] + p.signal_offset +
                                                    signals.barrier_slot(me));
    // Release: orders the fence above (and this thread's writes) before the peer's acquire.
    st_release_sys(remote_slot, epoch);
    const auto* local_slot = reinterpret_cast<const uint64_t*>(p.peer_bases[me] + p.signal_offset +
                                                               signals.barrier_slot(peer));
    // Acquire: the peer's writes before its release become visible to this rank's later reads.
    bounded_wait(p.wait, peer, core::WaitStage::kBarrierFlag,
                 [&] { return ld_acquire_sys(local_slot) >= epoch; });
  }
  __syncthreads();
  if (threadIdx.x == 0) *p.epoch_counter = epoch;
}

}  // namespace

cudaError_t launch_barrier(const BarrierParams& params, cudaStream_t stream) {
  const int threads = (params.num_ranks + 31) / 32 * 32;
  barrier_kernel<<<1, threads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
