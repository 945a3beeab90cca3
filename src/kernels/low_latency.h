// Low-latency dispatch and combine for decoding (semantics.md sections 4-5), over NVLink.
// Without a hook each op is one kernel that sends, then receives; with return_recv_hook it is a
// send kernel now and a receive kernel launched by the hook, so nothing holds SMs in between.
// A send kernel advances the LL epoch (device memory) and leaves it in a hook slot that the
// receive kernel reads, so CUDA-graph replays and two outstanding calls both work; in the one
// kernel the receive's last block advances it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/low_latency_layout.h"
#include "kernels/device/wait_context.h"

namespace epcomm::kernels {

struct LowLatencyCommon {
  uint8_t* const* peer_bases;  // [R] mapped buffers
  int64_t region_offset;       // offset of the low-latency region in every buffer
  core::LowLatencyLayout layout;
  int32_t num_ranks, rank, num_experts, experts_per_rank;
  uint64_t* epoch_counter;  // device: epoch of the last LL call (dispatch or combine)
  uint64_t* hook_epoch;     // device slot: the epoch the send kernel used, for the receive kernel
  // device: the epoch whose half the next LL kernel's last block releases to the peers after
  // its send (0: none); a single kernel leaves its release there instead of sending it at its
  // end (flush_pending_release, LL v25).
  uint64_t* pending_release;
  uint32_t* counters;  // [2] device block counters: send, receive (reset by their last blocks)
  uint64_t signature;  // N_max, hidden, experts, options: checked by every receiver
  WaitContext wait;
  // Null, or [gridDim.x][kLlTraceSlots] global-timer ns per block, one per phase end
  // (EPCOMM_TRACE=1, calls without a hook; runtime/trace.h). Zeroed by the launcher's caller.
  uint64_t* trace;
};

constexpr int kLlTraceSlots = 15;
// What each slot marks the end of (slot 0: the block's start). Slots 8-14: phases of the
// pre-reduced combine only (docs/perf.md, LL v18).
inline constexpr const char* kLlTraceSlotNames[kLlTraceSlots] = {
    "start",       "half released",   "sent",         "send counted",  "sources started",
    "rows done",   "receive counted", "end",          "messages sent", "counts read",
    "rows listed", "first items",     "warp 0 items", "block items",   "first partials in"};

struct LowLatencyDispatchParams {
  LowLatencyCommon c;
  const uint16_t* x;  // [T, H] bf16, row stride x_stride elements
  int64_t x_stride;
  int64_t num_tokens;
  const void* topk_idx;  // [T, K]
  bool topk_is_int64;
  int64_t topk_stride, topk_stride_k;
  int32_t topk;
  bool use_fp8, round_scale, use_ue8m0;
  // Outputs (this rank as receiver).
  uint8_t* packed_recv_x;      // [E_local, R*N_max, H] fp8 or bf16
  void* packed_recv_scales;    // float32 [E_local, G, R*N_max] or int32 [E_local, G/4, R*N_max]
  int32_t* packed_recv_count;  // [E_local]
  int32_t* src_info;           // [E_local, R*N_max]
  int64_t* layout_range;       // [E_local, R]
  int32_t* cumulative_stats;   // [E_local] or null
  int64_t* wait_stats;         // [R] ns, or null
  bool preload_x;              // FP8: a token's first cast loads go out before its header work
  bool hw_fp8_cvt;             // FP8: the hardware conversion (default) or the software one
};

struct LowLatencyCombineParams {
  LowLatencyCommon c;
  const uint16_t* x;  // [E_local, R*N_max, H] bf16 (the caller's, or the zero-copy area)
  const int32_t* src_info;
  const int64_t* layout_range;
  const void* topk_idx;  // [T, K] of this rank's dispatch
  bool topk_is_int64;
  int64_t topk_stride, topk_stride_k;
  int32_t topk;
  int64_t num_tokens;
  const float* topk_weights;
  int64_t weights_stride, weights_stride_k;
  uint16_t* out;  // [T, H] bf16
  int64_t out_stride;
  int64_t* wait_stats;  // [R] ns, or null
  bool pair_items;      // the receive takes two items per warp pass where top-k <= 8
  uint32_t diag;  // pre-reduced combine diagnostics (diagnostic builds, EPCOMM_LL_DIAG); else 0
};

#if defined(__CUDACC__)
}  // namespace epcomm::kernels
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/ptx.cuh"
namespace epcomm::kernels {

// Base of rank `rank`'s half for the LL call of `epoch`, as mapped in this process.
__device__ __forceinline__ uint8_t* half_base(const LowLatencyCommon& c, int32_t rank,
                                              uint64_t epoch) {
  return c.peer_bases[rank] + c.region_offset + c.layout.half_offset(epoch);
}
constexpr int kLowLatencyThreads = 512;

// Block's global-timer ns at the end of phase `slot` (kLlTraceSlotNames), when tracing, as
// thread `thread` sees it.
__device__ __forceinline__ void trace_mark(const LowLatencyCommon& c, int slot,
                                           unsigned thread = 0) {
  if (c.trace != nullptr && threadIdx.x == thread)
    c.trace[blockIdx.x * kLlTraceSlots + slot] = global_timer_ns();
}

// Launches a low-latency kernel on every block (its block counter resets itself:
// last_block_done; a memset per launch cost a kernel's worth of latency), with `smem` bytes of
// dynamic shared memory.
template <class Params, void (*kKernel)(Params)>
cudaError_t launch_ll(const Params& p, int num_blocks, cudaStream_t stream, size_t smem = 0) {
  // Past 48 KB of static and dynamic shared memory together a kernel needs its dynamic limit
  // raised (the pre-reduced combine has ~30 KB static, so 4 ranks at N_max 128 already pass
  // it). Only then, and once per larger size: a cudaFuncSetAttribute before every launch
  // delayed each rank's kernel start by tens of us (the ranks' kernels then started apart:
  // docs/perf.md, LL v17). One limit per kernel, read from the kernel once.
  static size_t raised = [] {
    cudaFuncAttributes attr{};
    return cudaFuncGetAttributes(&attr, kKernel) == cudaSuccess
               ? static_cast<size_t>(attr.maxDynamicSharedSizeBytes)
               : size_t{0};
  }();
  if (smem > raised) {
    if (auto e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem));
        e != cudaSuccess)
      return e;
    raised = smem;
  }
  kKernel<<<num_blocks, kLowLatencyThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

// Field `field` of `peer`'s signal slot in rank `rank`'s control area, for the half of `epoch`.
template <class T>
__device__ __forceinline__ T* signal_at(const LowLatencyCommon& c, int32_t rank, uint64_t epoch,
                                        int32_t peer, int32_t field) {
  return reinterpret_cast<T*>(c.peer_bases[rank] + c.region_offset +
                              c.layout.signal(epoch, peer, field));
}
// A receive's last block tells every rank that this rank finished reading what it wrote into
// the half of `epoch` (the caller's bar.sync, or the kernel boundary, orders the reads before
// this). Threads d < R.
__device__ __forceinline__ void release_half(const LowLatencyCommon& c, uint64_t epoch) {
  for (int32_t d = threadIdx.x; d < c.num_ranks; d += blockDim.x)
    // Release: our reads of what rank d wrote precede its next write into this half.
    st_release_sys(signal_at<uint64_t>(c, d, epoch, c.rank, core::kLlReleased), epoch);
}

// Warp 0 of the last block, at the end of its send: the release a previous single kernel left
// pending (finish_recv), then none pending. A peer needs our release of the half of call e only
// for its call e + 2, which cannot start before our call e + 1 sent to it, so releasing after
// the next kernel's send delays no peer, and the release's system fence leaves the end of the
// single kernel. Not at the next kernel's start: block 0 publishes "started" there, and the
// fence delayed it ~1.5 us (LL v25).
__device__ __forceinline__ void flush_pending_release(const LowLatencyCommon& c) {
  if (blockIdx.x != gridDim.x - 1 || threadIdx.x >= 32) return;
  // Written by an earlier kernel on this stream: the kernel boundary orders it before this load.
  const uint64_t pending = *reinterpret_cast<volatile uint64_t*>(c.pending_release);
  if (pending == 0) return;
  release_half(c, pending);
  // __syncwarp: every lane read `pending` before lane 0 clears it (a release sent twice could
  // later overwrite a newer one of the same half with this older epoch).
  __syncwarp();
  if (threadIdx.x == 0) *reinterpret_cast<volatile uint64_t*>(c.pending_release) = 0;
}

// Block-collective start of a send kernel: true once every peer released this half from call
// epoch - 2 (false after a failed wait, which recorded the error).
__device__ __forceinline__ bool wait_half_released(const LowLatencyCommon& c, uint64_t epoch) {
  trace_mark(c, 0);
  __shared__ bool released_all;
  if (threadIdx.x == 0) released_all = true;
  __syncthreads();
  for (int32_t d = threadIdx.x; d < c.num_ranks; d += blockDim.x) {
    const auto* released = signal_at<const uint64_t>(c, c.rank, epoch, d, core::kLlReleased);
    // Acquire: peer d finished reading this half (call epoch - 2) before we overwrite it.
    if (!bounded_wait(c.wait, d, core::WaitStage::kCompletion,
                      [&] { return ld_acquire_sys(released) + 2 >= epoch; }))
      released_all = false;
  }
  __syncthreads();
  trace_mark(c, 1);
  return released_all;
}

// Which kernel a send or receive runs in: its own (hook mode, or EPCOMM_LL_TWO_KERNELS), or the
// one kernel that sends then receives.
enum class LlKernel { kOwn, kSingle };

// The call's epoch in the hook slot (for the receive kernel) and in the epoch counter.
__device__ __forceinline__ void advance_epoch(const LowLatencyCommon& c, uint64_t epoch) {
  if (threadIdx.x == 0) {
    *c.hook_epoch = epoch;
    *c.epoch_counter = epoch;
  }
}

// End of a send (every block; the last block's warp 0 sends the release left pending, if any).
// In its own kernel the last block advances the epoch. In the single kernel the receive's last
// block does it instead, since every block has read the epoch by then: that saves a grid-wide
// count, whose system fence waits for the block's sends to land, before each block can start
// receiving (docs/perf.md, LL v7).
__device__ __forceinline__ void finish_send(const LowLatencyCommon& c, uint64_t epoch,
                                            LlKernel kernel) {
  trace_mark(c, 2);
  flush_pending_release(c);
  if (kernel == LlKernel::kSingle) return;
  const bool last = last_block_done(c.counters);
  trace_mark(c, 3);
  if (last) advance_epoch(c, epoch);
}

template <class P>
size_t no_dynamic_smem(const P&) {
  return 0;
}

// An LL op as the kernels below take it: its Params, its send and receive device functions, and
// the dynamic shared memory its send needs.
template <class P, bool (*kSend)(const P&, uint64_t, LlKernel),
          void (*kRecv)(const P&, uint64_t, LlKernel),
          size_t (*kSendSmem)(const P&) = no_dynamic_smem<P>>
struct LlOp {
  using Params = P;
  static size_t send_smem(const P& p) { return kSendSmem(p); }
  static __device__ __forceinline__ bool send(const P& p, uint64_t epoch, LlKernel kernel) {
    return kSend(p, epoch, kernel);
  }
  static __device__ __forceinline__ void recv(const P& p, uint64_t epoch, LlKernel kernel) {
    kRecv(p, epoch, kernel);
  }
};

// The kernels of an LL op from its send and receive (Op: an LlOp).
// The send kernel, for a hook: the call's epoch is the counter's next value.
template <class Op>
__global__ void __launch_bounds__(kLowLatencyThreads) ll_send_kernel(typename Op::Params p) {
  Op::send(p, *reinterpret_cast<volatile uint64_t*>(p.c.epoch_counter) + 1, LlKernel::kOwn);
}

// The receive kernel (the hook): the epoch the send kernel left in the hook slot.
template <class Op>
__global__ void __launch_bounds__(kLowLatencyThreads) ll_recv_kernel(typename Op::Params p) {
  Op::recv(p, *reinterpret_cast<volatile uint64_t*>(p.c.hook_epoch), LlKernel::kOwn);
}

// Without a hook, one kernel sends then receives: no second launch (docs/perf.md, LL v4). Every
// block reads the epoch before it arrives at the receive's block counter, so the last block's
// advance of the counter cannot change it. Blocks are co-resident (one per SM), so a block
// waiting in the receive never holds back a send of its own rank.
template <class Op>
__global__ void __launch_bounds__(kLowLatencyThreads) ll_single_kernel(typename Op::Params p) {
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.c.epoch_counter) + 1;
  if (!Op::send(p, epoch, LlKernel::kSingle)) return;
  __syncthreads();  // the receive reuses nothing of the send, but starts block-uniformly
  Op::recv(p, epoch, LlKernel::kSingle);
}

// Threads d < R of block 0: this call's token count (when >= 0) and signature into rank d's
// slot for us, then "started" (release: they, and what the block ordered before this by a
// bar.sync, precede it on rank d).
__device__ __forceinline__ void publish_started(const LowLatencyCommon& c, uint64_t epoch,
                                                int64_t num_tokens) {
  for (int32_t d = threadIdx.x; d < c.num_ranks; d += blockDim.x) {
    if (num_tokens >= 0)
      *signal_at<volatile int64_t>(c, d, epoch, c.rank, core::kLlTokens) = num_tokens;
    *signal_at<volatile uint64_t>(c, d, epoch, c.rank, core::kLlSignature) = c.signature;
    st_release_sys(signal_at<uint64_t>(c, d, epoch, c.rank, core::kLlStarted), epoch);
  }
}

// End of a receive (every block): the grid-wide count; the last block advances the epoch (one
// kernel: the send left it to the receive, finish_send), runs `reset` (the half's per-call
// state cleared for the call that uses it next; may do nothing), then releases the half to
// every peer: in a receive kernel of its own now, in the single kernel through the next LL
// kernel (flush_pending_release), so that the release's system fence (~0.8 us) is not this
// kernel's last step.
template <class Reset>
__device__ __forceinline__ void finish_recv(const LowLatencyCommon& c, uint64_t epoch,
                                            LlKernel kernel, Reset reset) {
  trace_mark(c, 5);
  // The receive's writes are its outputs, local and read only after the kernel: a GPU-scope count.
  const bool last = last_block_done_local(c.counters + 1);
  trace_mark(c, 6);
  if (!last) return;
  if (kernel == LlKernel::kSingle) advance_epoch(c, epoch);
  reset();
  // bar.sync orders the block's reads of the half, and the reset's stores, before the releases
  // (and, in the single kernel, before the kernel's end, which orders them before the next LL
  // kernel's release).
  __syncthreads();
  if (kernel == LlKernel::kSingle) {
    if (threadIdx.x == 0) *c.pending_release = epoch;
  } else {
    release_half(c, epoch);
  }
  trace_mark(c, 7);
}
#endif

// The launches of an LL op: `both` sends and receives in one kernel (no hook); with a hook,
// `send` now and `recv` when the hook runs.
template <class Params>
struct LlLaunchers {
  cudaError_t (*both)(const Params&, int num_blocks, cudaStream_t);
  cudaError_t (*send)(const Params&, int num_blocks, cudaStream_t);
  cudaError_t (*recv)(const Params&, int num_blocks, cudaStream_t);
};

LlLaunchers<LowLatencyDispatchParams> ll_dispatch_launchers();
LlLaunchers<LowLatencyCombineParams> ll_combine_launchers();
// The pre-reduced combine (low_latency_combine_reduced.cu), and the shared memory its per-block
// row listing takes: [R][N_max] counts and [R][N_max][topk] rows (docs/perf.md, LL v17). The
// runtime uses it only where that fits kLlReducedIndexMaxBytes.
LlLaunchers<LowLatencyCombineParams> ll_combine_reduced_launchers();
inline size_t ll_reduced_index_bytes(int32_t num_ranks, int64_t num_max_tokens, int32_t topk) {
  return sizeof(int32_t) * static_cast<size_t>(num_ranks) * static_cast<size_t>(num_max_tokens) *
         static_cast<size_t>(topk + 1);
}
constexpr size_t kLlReducedIndexMaxBytes = 128 * 1024;

#if defined(__CUDACC__)
// The launchers of an LlOp's three kernels (each kernel file instantiates its op's).
template <class Op>
LlLaunchers<typename Op::Params> make_ll_launchers() {
  using P = typename Op::Params;
  return {
      [](const P& p, int n, cudaStream_t s) {
        return launch_ll<P, ll_single_kernel<Op>>(p, n, s, Op::send_smem(p));
      },
      [](const P& p, int n, cudaStream_t s) {
        return launch_ll<P, ll_send_kernel<Op>>(p, n, s, Op::send_smem(p));
      },
      [](const P& p, int n, cudaStream_t s) { return launch_ll<P, ll_recv_kernel<Op>>(p, n, s); }};
}
#endif

}  // namespace epcomm::kernels
