#include <cub/block/block_scan.cuh>

#include "core/normal_layout.h"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/notify.h"

namespace epcomm::kernels {
namespace {

constexpr int kNotifyThreads = 512;
constexpr int kSlotThreads = 1024;

// Preconditions: one block; R <= 64; E <= 1024.
__global__ void __launch_bounds__(kNotifyThreads) notify_kernel(NotifyParams p) {
  const core::NormalSignalLayout sig{p.num_ranks};
  const int32_t R = p.num_ranks, me = p.rank;
  const int32_t E_local = p.num_experts / R;
  // Device-resident epoch: CUDA-graph replays advance it too.
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.epoch_counter) + 1;
  const int32_t parity = static_cast<int32_t>(epoch & 1);
  // 1. Publish: my send counts [R] and, for each peer, my counts for its local experts.
  for (int32_t d = 0; d < R; ++d) {
    uint8_t* slot = p.peer_bases[d] + p.signal_offset + sig.notify_slot(parity, me);
    auto* counts = reinterpret_cast<int32_t*>(slot + 16);
    for (int32_t i = threadIdx.x; i < R + E_local; i += blockDim.x)
      counts[i] = i < R ? p.num_tokens_per_rank[i] : p.num_tokens_per_expert[d * E_local + (i - R)];
  }
  // Each thread's slot writes are made visible system-wide before the flags below.
  __threadfence_system();
  __syncthreads();
  if (threadIdx.x < R) {
    const int32_t d = threadIdx.x;
    auto* flag = reinterpret_cast<uint64_t*>(p.peer_bases[d] + p.signal_offset +
                                             sig.notify_slot(parity, me));
    // Release: orders the counts above before the peer's acquire of this epoch.
    st_release_sys(flag, epoch);
    const auto* mine = reinterpret_cast<const uint64_t*>(p.peer_bases[me] + p.signal_offset +
                                                         sig.notify_slot(parity, d));
    // Acquire: the peer's counts become visible to this block after the barrier below.
    bounded_wait(p.wait, d, core::WaitStage::kCountExchange,
                 [&] { return ld_acquire_sys(mine) >= epoch; });
  }
  __syncthreads();
  if (*reinterpret_cast<volatile const int32_t*>(p.wait.failed) != 0) return;
  // 2. rank_prefix_matrix[i][j] = sum over s <= i of count(s -> j); thread j owns column j.
  const uint8_t* base = p.peer_bases[me] + p.signal_offset;
  for (int32_t j = threadIdx.x; j < R; j += blockDim.x) {
    int32_t sum = 0;
    for (int32_t i = 0; i < R; ++i) {
      sum += reinterpret_cast<const volatile int32_t*>(base + sig.notify_slot(parity, i) + 16)[j];
      p.rank_prefix_matrix[i * R + j] = sum;
      if (p.host) p.host->matrix[i * R + j] = sum;
    }
    if (j == me && p.host) p.host->num_recv_tokens = sum;
  }
  if (p.host) {
    for (int32_t e = threadIdx.x; e < E_local; e += blockDim.x) {
      int32_t n = 0;
      for (int32_t s = 0; s < R; ++s)
        n += reinterpret_cast<const volatile int32_t*>(base + sig.notify_slot(parity, s) +
                                                       16)[R + e];
      p.host->per_expert[e] =
          (n + p.expert_alignment - 1) / p.expert_alignment * p.expert_alignment;
    }
  }
  // Orders the host-visible counts before the epoch the host polls.
  __threadfence_system();
  __syncthreads();
  if (threadIdx.x == 0) {
    *p.epoch_counter = epoch;
    if (p.host) *reinterpret_cast<volatile uint64_t*>(&p.host->epoch) = p.host_ticket;
  }
}

// Preconditions: one block per destination rank d; send_slot[t, d] = base(d) + exclusive scan
// of is_token_in_rank[:, d], base(d) = rank_prefix_matrix[rank - 1][d].
__global__ void __launch_bounds__(kSlotThreads) send_slot_kernel(SlotParams p) {
  using Scan = cub::BlockScan<int32_t, kSlotThreads>;
  __shared__ typename Scan::TempStorage temp;
  __shared__ int32_t carry;
  const int32_t d = blockIdx.x, R = p.num_ranks;
  if (threadIdx.x == 0) carry = p.rank > 0 ? p.rank_prefix_matrix[(p.rank - 1) * R + d] : 0;
  __syncthreads();
  for (int64_t start = 0; start < p.num_tokens; start += kSlotThreads) {
    const int64_t t = start + threadIdx.x;
    const int32_t in = t < p.num_tokens ? p.is_token_in_rank[t * R + d] : 0;
    int32_t offset, total;
    Scan(temp).ExclusiveSum(in, offset, total);
    if (t < p.num_tokens) {
      p.send_slot[t * R + d] = in ? carry + offset : -1;
      if (p.is_token_in_rank_copy) p.is_token_in_rank_copy[t * R + d] = static_cast<uint8_t>(in);
    }
    __syncthreads();
    if (threadIdx.x == 0) carry += total;
    __syncthreads();
  }
}

}  // namespace

cudaError_t launch_notify(const NotifyParams& p, cudaStream_t stream) {
  notify_kernel<<<1, kNotifyThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_send_slots(const SlotParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  send_slot_kernel<<<p.num_ranks, kSlotThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
