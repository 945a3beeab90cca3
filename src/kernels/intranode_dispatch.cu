#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/indices.cuh"
#include "kernels/device/pending_tags.cuh"
#include "kernels/device/report.cuh"
#include "kernels/device/started_check.cuh"
#include "kernels/device/work_queue.cuh"
#include "kernels/intranode_dispatch.h"
#include "kernels/launch_knobs.h"
#include "kernels/normal_launch_policy.h"
#include "kernels/normal_trace.h"

namespace epcomm::kernels {
namespace {

constexpr int kDispatchThreads = 512;
constexpr int kWarps = kDispatchThreads / 32;
constexpr int kDstBatch = 8;

// A token's metadata, loaded before its row so that every load is in flight together (one
// memory latency per token rather than one per field; docs/perf.md, v10). Lane l holds scales l
// and l + 32 (more scales are loaded when stored) and top-k entry l.
struct TokenMeta {
  float scale[2];
  int64_t expert;  // -1 past top-k
  float weight;
};

__device__ __forceinline__ TokenMeta load_token_meta(const DispatchParams& p, int64_t t, int lane) {
  const core::NormalArea& a = p.area;
  TokenMeta m{{0.0f, 0.0f}, -1, 0.0f};
#pragma unroll
  for (int u = 0; u < 2; ++u)
    if (lane + 32 * u < a.num_scales)
      m.scale[u] = p.x_scales[t * p.scale_stride_token + (lane + 32 * u) * p.scale_stride_group];
  if (lane < a.topk) {
    m.expert = load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + lane * p.topk_stride_k);
    m.weight = p.topk_weights[t * p.weights_stride + lane * p.weights_stride_k];
  }
  return m;
}

// Token t's scales into a row of `num_scales` floats.
__device__ __forceinline__ void store_scales(const DispatchParams& p, const TokenMeta& m, int64_t t,
                                             float* dst, int lane) {
  const int32_t ns = p.area.num_scales;
  if (lane < ns) dst[lane] = m.scale[0];
  if (lane + 32 < ns) dst[lane + 32] = m.scale[1];
  for (int32_t g = lane + 64; g < ns; g += 32)
    dst[g] = p.x_scales[t * p.scale_stride_token + g * p.scale_stride_group];
}

// Rows a rank sends to itself skip the receive area: the row goes straight into recv_x (see
// the send loop) and the metadata straight into the outputs here.
__device__ __forceinline__ void write_self_metadata(const DispatchParams& p, const TokenMeta& m,
                                                    int64_t t, int64_t slot, int lane) {
  const core::NormalArea& a = p.area;
  store_scales(p, m, t, p.recv_scales + slot * a.num_scales, lane);
  if (lane < a.topk) {
    const int64_t first = int64_t{p.rank} * p.experts_per_rank;
    const bool local = m.expert >= first && m.expert < first + p.experts_per_rank;
    const int64_t out = local ? m.expert - first : -1;
    if (p.topk_is_int64) {
      static_cast<int64_t*>(p.recv_topk_idx)[slot * a.topk + lane] = out;
    } else {
      static_cast<int32_t*>(p.recv_topk_idx)[slot * a.topk + lane] = static_cast<int32_t>(out);
    }
    p.recv_topk_weights[slot * a.topk + lane] = local ? m.weight : 0.0f;
  }
  if (lane == 0 && p.recv_src_idx) p.recv_src_idx[slot] = static_cast<int32_t>(t);
}

// One warp sends token t to num_dst destinations: the row (read once), scales, remapped top-k,
// weights and source index; the row's arrival tag per remote destination joins `pending`.
__device__ __forceinline__ void send_token(const DispatchParams& p, int64_t t, int4* const* dst,
                                           const int32_t* dst_rank, const int32_t* dst_slot,
                                           int num_dst, int64_t row_vec, uint32_t tag,
                                           PendingTags& pending, int lane) {
  const core::NormalArea& a = p.area;
  const TokenMeta m = load_token_meta(p, t, lane);
  warp_multicast_copy<false>(dst, num_dst, reinterpret_cast<const int4*>(p.x + t * p.x_stride),
                             row_vec, lane);
  bool remote = false;
  for (int i = 0; i < num_dst; ++i) {
    if (dst_rank[i] == p.rank) {
      write_self_metadata(p, m, t, dst_slot[i], lane);
      continue;
    }
    remote = true;
#ifdef EPCOMM_DIAGNOSTICS
    if (p.diag & 1u) continue;
#endif
    uint8_t* area = p.peer_bases[dst_rank[i]] + p.area_offset;
    const int64_t slot = dst_slot[i];
    store_scales(p, m, t, reinterpret_cast<float*>(area + a.scales_offset) + slot * a.num_scales,
                 lane);
    if (lane < a.topk) {
      const int64_t first = int64_t{dst_rank[i]} * p.experts_per_rank;
      const bool local = m.expert >= first && m.expert < first + p.experts_per_rank;
      reinterpret_cast<int32_t*>(area + a.topk_idx_offset)[slot * a.topk + lane] =
          local ? static_cast<int32_t>(m.expert - first) : -1;
      reinterpret_cast<float*>(area + a.topk_weights_offset)[slot * a.topk + lane] =
          local ? m.weight : 0.0f;
    }
    if (lane == 0) reinterpret_cast<int32_t*>(area + a.src_offset)[slot] = static_cast<int32_t>(t);
  }
  if (!remote) return;
  // The tags go out with the warp's next flush (no per-row fence: docs/perf.md, v8 and v10).
  for (int i = 0; i < num_dst; ++i)
    if (dst_rank[i] != p.rank)
      pending.add(
          reinterpret_cast<uint32_t*>(p.peer_bases[dst_rank[i]] + p.area_offset + a.tag_offset) +
              dst_slot[i],
          tag, lane);
}

// Receiver warp: waits for row i of the receive area (its tag shows `tag`), then copies it and
// its metadata to the outputs. False when the wait failed (recorded; the warp stops).
__device__ __forceinline__ bool receive_row(const DispatchParams& p, const uint8_t* area,
                                            const uint32_t* tags, int64_t i, uint32_t tag,
                                            int64_t row_vec, int lane) {
  const int32_t R = p.num_ranks, me = p.rank;
  const core::NormalArea& a = p.area;
  // Lane 0 acquires the tag; __syncwarp orders the other lanes' reads of the row after it.
  bool arrived = true;
  if (lane == 0 && ld_acquire_sys_u32(tags + i) != tag) {
    int32_t src = 0;  // the rank this row comes from, for the error message
    while (src < R - 1 && p.rank_prefix_matrix[src * R + me] <= i) ++src;
    const NormalTrace trace = NormalTrace::of(p.trace);
    const uint64_t t0 = trace.wait_begin();
    arrived = bounded_wait(p.wait, src, core::WaitStage::kDataArrival,
                           [&] { return ld_acquire_sys_u32(tags + i) == tag; });
    trace.wait_end(t0);
  }
  if (!__shfl_sync(0xffffffffu, arrived, 0)) return false;
#ifdef EPCOMM_DIAGNOSTICS
  if (p.diag & 2u) return true;
#endif
  __syncwarp();
  // The plain loads below must not move above the acquire (compiler barrier).
  asm volatile("" ::: "memory");
  // The metadata loads first, in flight with the row's (as in the sender).
  const auto* scales = reinterpret_cast<const float*>(area + a.scales_offset) + i * a.num_scales;
  float scale[2] = {0.0f, 0.0f};
#pragma unroll
  for (int u = 0; u < 2; ++u)
    if (lane + 32 * u < a.num_scales) scale[u] = scales[lane + 32 * u];
  int32_t e = -1;
  float w = 0.0f;
  if (lane < a.topk) {
    e = reinterpret_cast<const int32_t*>(area + a.topk_idx_offset)[i * a.topk + lane];
    w = reinterpret_cast<const float*>(area + a.topk_weights_offset)[i * a.topk + lane];
  }
  const int32_t src =
      lane == 0 && p.recv_src_idx ? reinterpret_cast<const int32_t*>(area + a.src_offset)[i] : 0;
  warp_copy<true>(reinterpret_cast<int4*>(p.recv_x + i * p.recv_x_stride),
                  reinterpret_cast<const int4*>(area + a.x_offset + i * a.row_bytes), row_vec,
                  lane);
  float* out_scales = p.recv_scales + i * a.num_scales;
  if (lane < a.num_scales) out_scales[lane] = scale[0];
  if (lane + 32 < a.num_scales) out_scales[lane + 32] = scale[1];
  for (int32_t g = lane + 64; g < a.num_scales; g += 32) out_scales[g] = scales[g];
  if (lane < a.topk) {
    if (p.topk_is_int64) {
      static_cast<int64_t*>(p.recv_topk_idx)[i * a.topk + lane] = e;
    } else {
      static_cast<int32_t*>(p.recv_topk_idx)[i * a.topk + lane] = e;
    }
    p.recv_topk_weights[i * a.topk + lane] = w;
  }
  if (lane == 0 && p.recv_src_idx) p.recv_src_idx[i] = src;
  return true;
}

// Preconditions: blockDim = kDispatchThreads; grid co-resident (num_sms <= SMs); R <= 64.
// (0) every block: capacity check (same verdict everywhere) and wait until every destination
//     consumed our previous dispatch; block 0 publishes the call signature ("started").
// (1) sender warps: tokens round-robin over all sender warps of the grid, rows straight to their
//     final slot on each destination; the arrival tags of every p.token_batch tokens together.
// (2) receiver warps, concurrently: check every source's signature, then copy each row from the
//     receive area to the outputs once its tag shows this epoch.
// (3) last block: advance the epoch, tell every source its rows were consumed.
// kDynamic: sender warps take chunks of tokens from a counter instead of every n-th token (v16).
template <bool kDynamic>
__global__ void __launch_bounds__(kDispatchThreads) intranode_dispatch_kernel(DispatchParams p) {
  const core::NormalSignalLayout sig{p.num_ranks};
  const int32_t R = p.num_ranks, me = p.rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Warps [0, send_warps) send, the rest copy arrived rows out (the split is chosen per world
  // size by the launcher).
  const int send_warps = p.send_warps, recv_warps = kWarps - p.send_warps;
  // Device-resident epoch (CUDA-graph replays advance it); every block reads it before the last
  // block can advance it, since that needs every block to have finished.
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.epoch_counter) + 1;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  uint8_t* const my_signals = p.peer_bases[me] + p.signal_offset;
  const core::NormalArea& a = p.area;
  __shared__ bool skip, mismatch;
  __shared__ int64_t prefix_me[64];  // rank_prefix_matrix[s][me]: rows up to source s (R <= 64)
  __shared__ uint32_t copied;        // rows this block copied out (counted only when tracing)
  const NormalTrace trace = NormalTrace::of(p.trace);
  trace.start();

  // ---- phase 0 ----
  if (threadIdx.x == 0) {
    skip = false;
    mismatch = false;
    copied = 0;
    for (int32_t d = 0; d < R; ++d) {
      const int64_t need = p.rank_prefix_matrix[(R - 1) * R + d];
      if (need > a.capacity) {
        if (blockIdx.x == 0)
          record_input_error(p.wait, core::WaitStage::kBufferTooSmall, d, need, a.capacity);
        skip = true;
      }
    }
    const int64_t mine = p.rank_prefix_matrix[(R - 1) * R + me];
    if (mine > p.num_out_rows && blockIdx.x == 0)
      record_input_error(p.wait, core::WaitStage::kTooManyTokens, me, mine, p.num_out_rows);
    // The rows still arrive (they fit the area); only the copy-out is cut short.
  }
  if (threadIdx.x < R) prefix_me[threadIdx.x] = p.rank_prefix_matrix[threadIdx.x * R + me];
  __syncthreads();
  if (threadIdx.x < R && !consumed_by(p, my_signals, core::kDispatchConsumed, threadIdx.x, epoch))
    skip = true;
  __syncthreads();
  if (skip) return;
  publish_start(p, core::kDispatchSignature, core::kDispatchStarted, epoch);
  const int64_t row_vec = a.row_bytes / 16;

  if (warp < send_warps) {
    // ---- phase 1: send ----
    // At any moment the sender warps write a window of consecutive tokens, whose destination
    // rows are consecutive too (slots grow with t). A warp releases the tags of p.token_batch
    // tokens together.
    PendingTags pending;
    // Token t to every destination; `slots`: lane d's slot of t on rank d (d < 32).
    const auto send = [&](int64_t t, int32_t slots) {
      int4* dst[kDstBatch];
      int32_t dst_rank[kDstBatch];
      int32_t dst_slot[kDstBatch];
      int num_dst = 0;
      int32_t lane_slots = slots;
      for (int32_t d = 0; d < R; ++d) {
        if (d % 32 == 0 && d > 0) lane_slots = token_slot(p, t, d + lane);
        const int32_t slot = __shfl_sync(0xffffffffu, lane_slots, d % 32);
        if (slot >= 0 && (d != me || slot < p.num_out_rows)) {
          dst[num_dst] = d == me ? reinterpret_cast<int4*>(p.recv_x + slot * p.recv_x_stride)
                                 : reinterpret_cast<int4*>(p.peer_bases[d] + p.area_offset +
                                                           a.x_offset + slot * a.row_bytes);
          dst_rank[num_dst] = d;
          dst_slot[num_dst++] = slot;
        }
        if (num_dst == kDstBatch || (d == R - 1 && num_dst > 0)) {
          send_token(p, t, dst, dst_rank, dst_slot, num_dst, row_vec, tag, pending, lane);
          num_dst = 0;
        }
      }
    };
    if constexpr (kDynamic) {
      // Chunks of p.token_batch consecutive tokens from the grid's counter (v16): a warp whose
      // stores drain fast takes more, so the senders end together.
      const int64_t batch = p.token_batch;
      int64_t begin = take_chunk(p.counters + 1, lane) * batch;
      int32_t next_slots = token_slot(p, begin, lane);
      while (begin < p.num_tokens) {
        // The next chunk is taken now, so the atomic's latency hides under this chunk's sends.
        const int64_t after = take_chunk(p.counters + 1, lane) * batch;
        const int64_t end = begin + batch < p.num_tokens ? begin + batch : p.num_tokens;
        for (int64_t t = begin; t < end; ++t) {
          const int32_t slots = next_slots;
          next_slots = token_slot(p, t + 1 < end ? t + 1 : after, lane);
          send(t, slots);
        }
        pending.flush(tag);
        begin = after;
      }
    } else {
      // Round-robin tokens over all sender warps of the grid; a warp sends p.token_batch
      // tokens (a window apart), then releases their tags together.
      const int64_t senders = int64_t{gridDim.x} * send_warps;
      int batched = 0;
      // The first 32 destinations' slots of the warp's next token load while this one is sent.
      int32_t next_slots = token_slot(p, int64_t{warp} * gridDim.x + blockIdx.x, lane);
      for (int64_t t = int64_t{warp} * gridDim.x + blockIdx.x; t < p.num_tokens; t += senders) {
        const int32_t slots = next_slots;
        next_slots = token_slot(p, t + senders, lane);
        send(t, slots);
        if (++batched == p.token_batch) {
          pending.flush(tag);
          batched = 0;
        }
      }
    }
    pending.flush(tag);
    trace.sends_done(copied, lane);
  } else {
    // ---- phase 2: receive, concurrently with the sends ----
    const int rwarp = warp - send_warps;
    // Every source's signature first, so a mismatch never leaves us waiting on tags.
    if (rwarp == 0 && start_mismatch(p, my_signals, core::kDispatchStarted,
                                     core::kDispatchSignature, epoch, lane))
      mismatch = true;
    // Receiver warps only (named barrier 1): the sender warps never wait for this.
    asm volatile("bar.sync 1, %0;" ::"r"(recv_warps * 32));
    if (!mismatch) {
      const uint8_t* area = p.peer_bases[me] + p.area_offset;
      const auto* tags = reinterpret_cast<const uint32_t*>(area + a.tag_offset);
      const int64_t received = p.rank_prefix_matrix[(R - 1) * R + me];
      const int64_t rows = received < p.num_out_rows ? received : p.num_out_rows;
      const int64_t self_begin = me > 0 ? p.rank_prefix_matrix[(me - 1) * R + me] : 0;
      const int64_t self_end = p.rank_prefix_matrix[me * R + me];
      const int64_t receivers = int64_t{gridDim.x} * recv_warps;
      const int64_t first = int64_t{rwarp} * gridDim.x + blockIdx.x;
      if (!p.recv_interleaved) {
        for (int64_t i = first; i < rows; i += receivers) {
          if (i >= self_begin && i < self_end) continue;  // written directly by our sender warps
          if (!receive_row(p, area, tags, i, tag, row_vec, lane)) break;
          trace.row_done(copied, lane);
        }
      } else {
        // Interleaved over the other sources, as the combine's senders (v9): the k-th row of
        // every source, then the (k+1)-th. Each source sends its rows in slot order, so the
        // receivers follow every source's arrival front at once; in slot order they follow one
        // source's front and copy the later sources' rows only after the sends (v11).
        const int32_t others = R > 1 ? R - 1 : 1;
        int64_t most = 0;
        for (int32_t s = 0; s < R; ++s) {
          const int64_t count = prefix_me[s] - (s > 0 ? prefix_me[s - 1] : 0);
          most = count > most ? count : most;
        }
        for (int64_t n = first; n < most * others; n += receivers) {
          const auto s = static_cast<int32_t>((me + 1 + n % others) % R);
          const int64_t i = (s > 0 ? prefix_me[s - 1] : 0) + n / others;
          if (s == me || i >= prefix_me[s] || i >= rows) continue;  // ours, or past s's rows
          if (!receive_row(p, area, tags, i, tag, row_vec, lane)) break;
          trace.row_done(copied, lane);
        }
      }
      // Padding rows of worst-case outputs: no expert, zero weight, no source.
      for (int64_t i = rows + first; i < p.num_out_rows; i += receivers) {
        if (lane < a.topk) {
          if (p.topk_is_int64) {
            static_cast<int64_t*>(p.recv_topk_idx)[i * a.topk + lane] = -1;
          } else {
            static_cast<int32_t*>(p.recv_topk_idx)[i * a.topk + lane] = -1;
          }
          p.recv_topk_weights[i * a.topk + lane] = 0.0f;
        }
        if (lane == 0 && p.recv_src_idx) p.recv_src_idx[i] = -1;
      }
    }
    trace.receivers_done(lane);
  }
  // ---- phase 3 ----
  const bool last = last_block_done(p.counters);
  trace.end(copied);  // every warp passed the barrier in last_block_done
  if (last && threadIdx.x == 0) {
    *p.epoch_counter = epoch;
    if (kDynamic)
      p.counters[1] = 0;  // every block is done taking chunks; the next launch starts at zero
  }
  if (last && threadIdx.x < R) {
    // Release: our reads of the area are done; source threadIdx.x may overwrite it.
    st_release_sys(reinterpret_cast<uint64_t*>(p.peer_bases[threadIdx.x] + p.signal_offset +
                                               sig.flag(core::kDispatchConsumed, me)),
                   epoch);
  }
}

}  // namespace

cudaError_t launch_intranode_dispatch(const DispatchParams& p, int num_sms, cudaStream_t stream) {
  // The measured choices and their measurements: kernels/normal_launch_policy.h.
  static const DispatchKnobs knobs = dispatch_knobs_from_env();
  const DispatchPolicy policy =
      dispatch_policy(p.num_ranks, num_sms, p.area.row_bytes, p.num_tokens, knobs, kWarps);
  DispatchParams q = p;
  q.send_warps = policy.split.send_warps;
  q.token_batch = policy.split.batch;
  q.recv_interleaved = policy.recv_interleaved;
#ifdef EPCOMM_DIAGNOSTICS
  static const int diag = env_override("EPCOMM_DIAG_DISPATCH");
  q.diag = static_cast<uint32_t>(diag);
#endif
  if (policy.dynamic_senders) {
    intranode_dispatch_kernel<true><<<num_sms, kDispatchThreads, 0, stream>>>(q);
  } else {
    intranode_dispatch_kernel<false><<<num_sms, kDispatchThreads, 0, stream>>>(q);
  }
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
