#include "kernels/device/bf16x8.cuh"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/bulk_copy.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/indices.cuh"
#include "kernels/device/pending_tags.cuh"
#include "kernels/device/report.cuh"
#include "kernels/device/started_check.cuh"
#include "kernels/device/work_queue.cuh"
#include "kernels/intranode_combine.h"
#include "kernels/launch_knobs.h"
#include "kernels/normal_launch_policy.h"
#include "kernels/normal_trace.h"

#include <cuda_bf16.h>

#include <atomic>

namespace epcomm::kernels {
namespace {

constexpr int kCombineThreads = 512;
constexpr int kWarps = kCombineThreads / 32;
constexpr int kMaxCombineRanks = 64;

// A stage holds one row, 128-byte aligned.
__host__ __device__ constexpr int64_t staged_row_bytes(int64_t row_bytes) {
  return (row_bytes + 127) / 128 * 128;
}

// Preconditions: blockDim = kCombineThreads; grid co-resident; R <= 64; hidden % 8 == 0.
// (0) capacity check, wait until every rank consumed our previous combine rows; block 0
//     publishes the call signature ("started").
// (1) sender warps: each received row (except our own) goes back into its source's combine
//     area (rows grouped by sender, in the source's send order); the arrival tags of every
//     p.row_batch rows together.
// (2) reducer warps, concurrently: per token, wait for the tags of its rows, sum them in
//     ascending rank order in float32 (our own rows straight from x), add the biases, round once.
// (3) last block: advance the epoch, tell every rank its rows were consumed.
// The reduce is latency-bound (docs/perf.md, v9): each lane loads kChunks 16-byte chunks of
// kRankBatch ranks, all in flight together, before adding any (as many as fit in registers).
// kStagedSends: the senders' rows pass through shared memory by bulk copies (v21; the launcher
// gives 2 * send_warps * staged_row_bytes(row_bytes) bytes of dynamic shared memory).
template <int kRankBatch, int kChunks, bool kStagedSends>
__global__ void __launch_bounds__(kCombineThreads) intranode_combine_kernel(CombineParams p) {
  // Warps [0, send_warps) send, the rest reduce (the split is chosen per world size).
  const int send_warps = p.send_warps;
  const int reduce_warps = kWarps - send_warps;
  const core::NormalSignalLayout sig{p.num_ranks};
  const int32_t R = p.num_ranks, me = p.rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Device-resident epoch (CUDA-graph replays advance it); see the dispatch kernel.
  const uint64_t epoch = *reinterpret_cast<volatile uint64_t*>(p.epoch_counter) + 1;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  uint8_t* const my_signals = p.peer_bases[me] + p.signal_offset;
  const core::NormalArea& a = p.area;
  const NormalTrace trace = NormalTrace::of(p.trace);
  trace.start();
  __shared__ int32_t prefix_me[kMaxCombineRanks];      // rank_prefix_matrix[s][me]
  __shared__ int32_t my_base[kMaxCombineRanks];        // where rows from rank d start in my area
  __shared__ int32_t my_first_slot[kMaxCombineRanks];  // rank_prefix_matrix[me - 1][d]
  __shared__ int32_t send_base[kMaxCombineRanks];      // rows source s sent to ranks below me
  __shared__ int32_t copied[kMaxCombineRanks];         // copy_chunks: rows from d (all by copies)
  __shared__ int32_t chunk_rows[kMaxCombineRanks];     // copy_chunks: rows per chunk of those
  __shared__ bool skip, mismatch;
  __shared__ uint32_t reduced;      // tokens this block has reduced (counted only when tracing)
  __shared__ uint32_t reduce_next;  // the block's next token to reduce, when taken (join_reduce)
  // The reducers checked every signature: senders may join. Written and read by warps that share
  // no barrier there, so through atomics (a volatile flag is a data race, which racecheck reports);
  // it orders nothing: a sender that sees it takes tokens from reduce_next, by atomics too.
  __shared__ uint32_t reduce_open;
  __shared__ __align__(8) uint64_t stage_bars[kStagedSends ? kWarps : 1][2];  // v21's stages

  // ---- phase 0 ----
  if (threadIdx.x == 0) {
    skip = false;
    mismatch = false;
    reduced = 0;
    reduce_next = 0;
    reduce_open = 0;
    int32_t base = 0;
    for (int32_t d = 0; d < R; ++d) {
      const int32_t above = me > 0 ? p.rank_prefix_matrix[(me - 1) * R + d] : 0;
      my_first_slot[d] = above;
      my_base[d] = base;
      const int32_t rows = p.rank_prefix_matrix[me * R + d] - above;  // rows d returns to me
      // The copy engines' chunks of those rows (runtime/combine_copy.cpp alike).
      copied[d] = p.copy_chunks > 0 ? rows : 0;
      chunk_rows[d] = static_cast<int32_t>(copy_chunk_rows(copied[d], p.copy_chunks));
      base += rows;
    }
    for (int32_t s = 0; s < R; ++s) {
      prefix_me[s] = p.rank_prefix_matrix[s * R + me];
      int32_t below = 0;
      for (int32_t d = 0; d < me; ++d) below += core::sent_rows(p.rank_prefix_matrix, R, s, d);
      send_base[s] = below;
    }
    // Every rank checks every rank's need, so all agree on skipping.
    for (int32_t s = 0; s < R; ++s) {
      int32_t need = 0;
      for (int32_t d = 0; d < R; ++d) need += core::sent_rows(p.rank_prefix_matrix, R, s, d);
      if (need > a.capacity) {
        if (blockIdx.x == 0 && s == me)
          record_input_error(p.wait, core::WaitStage::kBufferTooSmall, me, need, a.capacity);
        skip = true;
      }
    }
  }
  __syncthreads();
  // With copy_chunks the copy-start kernel waited for "consumed" and published "started".
  if (p.copy_chunks == 0 && threadIdx.x < R &&
      !consumed_by(p, my_signals, core::kCombineConsumed, threadIdx.x, epoch))
    skip = true;
  __syncthreads();
  if (skip) return;
  if (p.copy_chunks == 0) publish_start(p, core::kCombineSignature, core::kCombineStarted, epoch);
  const int64_t row_vec = a.row_bytes / 16;

  bool reduce_too;  // this warp reduces (phase 2)
  if (warp < send_warps) {
    // ---- phase 1: send row i back to its source s, at s's base for me + (i - first row of s) ----
    // Interleaved order over the R - 1 other sources, starting after our own rank: the k-th row
    // for every source, then the (k+1)-th, so every source's reducers see their tokens arrive
    // from the start (grouped by source, a source waited for the end of the pass: v9).
    const int32_t others = R > 1 ? R - 1 : 1;
    int64_t most = 0;
    for (int32_t s = 0; s < R; ++s) {
      const int64_t count = prefix_me[s] - (s > 0 ? prefix_me[s - 1] : 0);
      most = count > most ? count : most;
    }
    // A warp sends p.row_batch rows, then releases their tags together (docs/perf.md, v10).
    // (Positions taken from a counter instead measured slower: v16.)
    const int64_t senders = int64_t{gridDim.x} * send_warps;
    const int64_t positions = most * others;
    PendingTags pending;
    int batched = 0;
    // The warp's next row at or after position n (n moves past it); false at the end.
    struct SendRow {
      int64_t i;    // our receive row
      int32_t s;    // its source
      int64_t row;  // its row in s's combine area
    };
    int64_t n = int64_t{warp} * gridDim.x + blockIdx.x;
    const auto next_row = [&](SendRow& r) {
      for (; n < positions; n += senders) {
        const auto s = static_cast<int32_t>((me + 1 + n % others) % R);
        const int64_t first = s > 0 ? prefix_me[s - 1] : 0;
        const int64_t i = first + n / others;
        if (i >= prefix_me[s]) continue;  // source s sent us fewer rows
        if (s == me) continue;            // our own rows: the reducers read them from x directly
        r = SendRow{i, s, send_base[s] + (i - first)};
        n += senders;
        return true;
      }
      return false;
    };
    // The row's top-k weights load with its first pass, not one latency after its last (v20).
    const auto load_weight = [&](const SendRow& r) {
      return lane < a.topk
                 ? ld_nc_f32(p.topk_weights + r.i * p.weights_stride + lane * p.weights_stride_k)
                 : 0.0f;
    };
    // After the row's data: its weights, and its tag with the warp's next flush (no per-row
    // fence: docs/perf.md, v8).
    const auto finish_row = [&](const SendRow& r, float weight) {
      uint8_t* area = p.peer_bases[r.s] + p.area_offset;
      if (lane < a.topk)
        reinterpret_cast<float*>(area + a.topk_weights_offset)[r.row * a.topk + lane] = weight;
      pending.add(reinterpret_cast<uint32_t*>(area + a.tag_offset) + r.row, tag, lane);
      if (++batched == p.row_batch) {
        pending.flush(tag);
        batched = 0;
      }
    };
    const auto row_dst = [&](const SendRow& r) {
      return reinterpret_cast<int4*>(p.peer_bases[r.s] + p.area_offset + a.x_offset +
                                     r.row * a.row_bytes);
    };
    SendRow cur;
    if constexpr (kStagedSends) {
      // v21: each row comes into one of the warp's two shared-memory stages by a bulk copy,
      // issued one row ahead, and goes out from there with the warp's stores.
      extern __shared__ __align__(128) uint8_t stages_smem[];
      const int64_t stage_bytes = staged_row_bytes(a.row_bytes);
      // Stage k of this warp (k = 0, 1).
      const auto stage = [&](int k) { return stages_smem + (2 * warp + k) * stage_bytes; };
      uint64_t* const bar = stage_bars[warp];
      if (lane == 0) {
        mbarrier_init(&bar[0], 1);
        mbarrier_init(&bar[1], 1);
        fence_mbarrier_init();
      }
      __syncwarp();
      const auto load_row = [&](const SendRow& r, int k) {
        if (lane == 0)
          bulk_load_to_shared(stage(k), p.x + r.i * p.x_stride, static_cast<uint32_t>(a.row_bytes),
                              &bar[k]);
      };
      uint32_t parity = 0;  // bit k: the parity of stage k's next completion
      int k = 0;
      bool have = next_row(cur);
      if (have) load_row(cur, 0);
      while (have) {
        SendRow nxt;
        const bool more = next_row(nxt);
        // Stage k ^ 1 was last read in the previous row, which every lane finished (__syncwarp).
        if (more) load_row(nxt, k ^ 1);
        const float weight = load_weight(cur);
        // Acquire (every lane): the row's bytes in stage k are visible once its phase completed.
        if (!bounded_wait(p.wait, me, core::WaitStage::kDataArrival,
                          [&] { return mbarrier_try_wait(&bar[k], (parity >> k) & 1u); }))
          break;
        parity ^= 1u << k;
        const auto* src = reinterpret_cast<const int4*>(stage(k));
        int4* dst = row_dst(cur);
#pragma unroll 4
        for (int64_t v = lane; v < row_vec; v += 32) st_na_v4(dst + v, src[v]);
        finish_row(cur, weight);
        __syncwarp();  // every lane's reads of stage k are done before it is loaded again
        cur = nxt;
        k ^= 1;
        have = more;
      }
    } else {
      while (next_row(cur)) {
        const float weight = load_weight(cur);
        int4* dst = row_dst(cur);
        const auto* src = reinterpret_cast<const int4*>(p.x + cur.i * p.x_stride);
#ifdef EPCOMM_DIAGNOSTICS
        if (p.diag & 4u) {  // bit 2: stores of zeros, no loads (the send path's store side)
          for (int64_t v = lane; v < row_vec; v += 32) st_na_v4(dst + v, make_int4(0, 0, 0, 0));
        } else if ((p.diag & 1u) == 0)  // bit 0: the row stays behind (weights and tag still go)
#endif
          warp_copy<false>(dst, src, row_vec, lane);
        finish_row(cur, weight);
      }
    }
    pending.flush(tag);
    trace.sends_done(reduced, lane);
    // Then reduce with the reducers when they take tokens from the block's counter (v16).
    // Lane 0's read for the whole warp: every lane reading it could see it change in between,
    // and the reduce below is warp-collective.
    const uint32_t open = p.join_reduce && lane == 0 ? atomicOr(&reduce_open, 0u) : 0u;
    reduce_too = __shfl_sync(0xffffffffu, open, 0) != 0;
  } else {
    const int rwarp = warp - send_warps;
    if (rwarp == 0 &&
        start_mismatch(p, my_signals, core::kCombineStarted, core::kCombineSignature, epoch, lane))
      mismatch = true;
    // Reducer warps only (named barrier 1): the sender warps never wait for this.
    asm volatile("bar.sync 1, %0;" ::"r"(reduce_warps * 32));
    if (rwarp == 0 && lane == 0 && !mismatch) atomicExch(&reduce_open, 1u);
    reduce_too = !mismatch;
  }
  if (reduce_too) {
    // ---- phase 2: reduce, concurrently with the sends ----
    const uint8_t* area = p.peer_bases[me] + p.area_offset;
    const auto* tags = reinterpret_cast<const uint32_t*>(area + a.tag_offset);
    const int32_t chunks = p.hidden / 8;  // 16-byte chunks of a bf16 row
    // Row (and weights) of the warp's token from each rank, or null: rows from other ranks are
    // in our combine area, our own rows are still in x (row = our receive slot of the token).
    __shared__ const int4* warp_rows[kWarps][kMaxCombineRanks];
    __shared__ const float* warp_weights[kWarps][kMaxCombineRanks];
    __shared__ const uint32_t* warp_tags[kWarps][kMaxCombineRanks];
    __shared__ bool warp_failed[kWarps];
    // Our combine area's row for the token whose receive slot on rank d (not us) is `slot`.
    const auto area_row = [&](int32_t d, int32_t slot) {
      return int64_t{my_base[d]} + (slot - my_first_slot[d]);
    };
    // The block's tokens are blockIdx.x + k * gridDim.x. With join_reduce the warps take k in
    // order from the block's counter; otherwise reducer warp r takes every reduce_warps-th k.
    const int64_t reducers = int64_t{gridDim.x} * reduce_warps;
    const auto next_token = [&](int64_t t) {
      return p.join_reduce ? blockIdx.x + int64_t{gridDim.x} * take_chunk(&reduce_next, lane)
                           : t + reducers;
    };
    int64_t t = p.join_reduce ? next_token(0) : int64_t{warp - send_warps} * gridDim.x + blockIdx.x;
    // Lane d's slot (d < 32) of the warp's next token loads while this one is reduced.
    int32_t next_slot = token_slot(p, t, lane);
    for (; t < p.num_tokens;) {
      const int64_t t_next = next_token(t);
      const int32_t first_slot = next_slot;
      next_slot = token_slot(p, t_next, lane);
      for (int32_t d = lane; d < R; d += 32) {
        const int32_t slot = d < 32 ? first_slot : token_slot(p, t, d);
        const int4* row = nullptr;
        const float* w = nullptr;
        const uint32_t* row_tag = nullptr;
        if (slot >= 0 && d == me) {
          row = reinterpret_cast<const int4*>(p.x + slot * p.x_stride);
          if (a.topk > 0) w = p.topk_weights + slot * p.weights_stride;
        } else if (slot >= 0) {
          const int64_t r = area_row(d, slot);
          // Rows the copy engines sent: the tag of the row's chunk (on its first row).
          const int64_t k = r - my_base[d];
          row_tag = tags + (k < copied[d] ? my_base[d] + k / chunk_rows[d] * chunk_rows[d] : r);
          row = reinterpret_cast<const int4*>(area + a.x_offset + r * a.row_bytes);
          if (a.topk > 0)
            w = reinterpret_cast<const float*>(area + a.topk_weights_offset) + r * a.topk;
        }
        warp_rows[warp][d] = row;
        warp_weights[warp][d] = w;
        warp_tags[warp][d] = row_tag;
      }
      __syncwarp();
      // Lane d waits for rank d's row. (One lane waiting for every rank in turn measured 1.7x
      // slower on 2 x H200: docs/perf.md, v8.)
      if (lane == 0) warp_failed[warp] = false;
      __syncwarp();
      for (int32_t d = lane; d < R; d += 32) {
        if (warp_tags[warp][d] == nullptr) continue;
        const uint32_t* row_tag = warp_tags[warp][d];
        if (ld_acquire_sys_u32(row_tag) == tag) continue;
        const uint64_t t0 = trace.wait_begin();
        // Acquire: rank d's row is visible once its tag shows this epoch.
        if (!bounded_wait(p.wait, d, core::WaitStage::kDataArrival,
                          [&] { return ld_acquire_sys_u32(row_tag) == tag; }))
          warp_failed[warp] = true;
        trace.wait_end(t0);
      }
      __syncwarp();
      if (warp_failed[warp]) break;
#ifdef EPCOMM_DIAGNOSTICS
      if (p.diag & 2u) {  // the rows arrived; no loads, sums or stores
        trace.row_done(reduced, lane);
        __syncwarp();
        t = t_next;
        continue;
      }
#endif
      if (p.prefetch_next) {
        // The next token's rows on their way to L2 while this one is reduced (v13): rows that
        // arrived long before their reduce have left L2, our own rows in x never were in it.
        // Only a hint: the rows are read after their tags' acquire, as for this token.
        for (int32_t d = 0; d < R && d < 32; ++d) {
          const int32_t slot = __shfl_sync(0xffffffffu, next_slot, d);
          if (slot < 0) continue;
          const uint8_t* row = d == me ? reinterpret_cast<const uint8_t*>(p.x + slot * p.x_stride)
                                       : area + a.x_offset + area_row(d, slot) * a.row_bytes;
          for (int64_t off = int64_t{lane} * 128; off < a.row_bytes; off += 32 * 128)
            prefetch_l2(row + off);
        }
      }
      // The first two ranks' top-k weights load before the reduce, so their latency hides
      // under it (summed after it, in the same order as the rest).
      const bool sum_weights = p.combined_topk_weights != nullptr && lane < a.topk;
      float early_w[2] = {0.0f, 0.0f};
#pragma unroll
      for (int32_t d = 0; d < 2; ++d)
        if (sum_weights && d < R && warp_weights[warp][d] != nullptr)
          early_w[d] = warp_weights[warp][d][d == me ? lane * p.weights_stride_k : lane];
      // kChunks chunks of kRankBatch ranks per lane at once: their loads are in flight
      // together, then they are added in ascending rank order (bitwise reproducible).
      for (int32_t c0 = lane; c0 < chunks; c0 += 32 * kChunks) {
        float acc[kChunks][8];
#pragma unroll
        for (int u = 0; u < kChunks; ++u)
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[u][i] = 0.0f;
        for (int32_t d0 = 0; d0 < R; d0 += kRankBatch) {
          int4 v[kRankBatch][kChunks];
#pragma unroll
          for (int b = 0; b < kRankBatch; ++b) {
            const int4* row = d0 + b < R ? warp_rows[warp][d0 + b] : nullptr;
#pragma unroll
            for (int u = 0; u < kChunks; ++u)
              if (row != nullptr && c0 + 32 * u < chunks) v[b][u] = ld_na_v4(row + c0 + 32 * u);
          }
#pragma unroll
          for (int b = 0; b < kRankBatch; ++b) {
            const int4* row = d0 + b < R ? warp_rows[warp][d0 + b] : nullptr;
#pragma unroll
            for (int u = 0; u < kChunks; ++u)
              if (row != nullptr && c0 + 32 * u < chunks) add_bf16x8(acc[u], v[b][u]);
          }
        }
#pragma unroll
        for (int u = 0; u < kChunks; ++u) {
          const int32_t c = c0 + 32 * u;
          if (c >= chunks) continue;
          if (p.bias0)
            add_bf16x8(acc[u],
                       ld_nc_v4(reinterpret_cast<const int4*>(p.bias0 + t * p.bias0_stride) + c));
          if (p.bias1)
            add_bf16x8(acc[u],
                       ld_nc_v4(reinterpret_cast<const int4*>(p.bias1 + t * p.bias1_stride) + c));
          reinterpret_cast<int4*>(p.combined_x + t * p.combined_stride)[c] = round_bf16x8(acc[u]);
        }
      }
      if (sum_weights) {
        float w = 0.0f;
        for (int32_t d = 0; d < R; ++d)
          if (warp_weights[warp][d] != nullptr)
            w += d < 2 ? early_w[d]
                       : warp_weights[warp][d][d == me ? lane * p.weights_stride_k : lane];
        p.combined_topk_weights[t * a.topk + lane] = w;
      }
      trace.row_done(reduced, lane);
      __syncwarp();
      t = t_next;
    }
  }
  if (reduce_too || warp >= send_warps) trace.receivers_done(lane);
  // ---- phase 3 ----
  const bool last = last_block_done(p.counters);
  trace.end(reduced);  // every warp passed the barrier in last_block_done
  if (last && threadIdx.x == 0) *p.epoch_counter = epoch;
  if (last && threadIdx.x < R) {
    // Release: our reads of the combine area are done; rank threadIdx.x may overwrite it.
    st_release_sys(reinterpret_cast<uint64_t*>(p.peer_bases[threadIdx.x] + p.signal_offset +
                                               sig.flag(core::kCombineConsumed, me)),
                   epoch);
  }
}

}  // namespace

namespace {

// Whether the staged instantiation's shared memory (static, plus two row stages per sender warp)
// fits the current device's opt-in limit per block. The first call on a device allows the kernel
// all the dynamic shared memory the limit leaves it there, so later launches need no setting.
// Per device: a process may drive several GPUs, each with its own limit and its own copy of the
// kernel's attributes; concurrent first calls set the same value.
template <int kRankBatch, int kChunks>
bool prepare_staged(size_t dynamic_bytes) {
  constexpr int kMaxDevices = 64;
  const auto kernel = intranode_combine_kernel<kRankBatch, kChunks, true>;
  // The kernel's static shared memory, read once (the same compiled size on every device).
  static const size_t static_bytes = [kernel] {
    cudaFuncAttributes attr{};
    return cudaFuncGetAttributes(&attr, kernel) == cudaSuccess ? attr.sharedSizeBytes : SIZE_MAX;
  }();
  int device = 0;
  if (static_bytes == SIZE_MAX || cudaGetDevice(&device) != cudaSuccess || device < 0 ||
      device >= kMaxDevices)
    return false;
  static std::atomic<size_t> allowed[kMaxDevices];  // dynamic bytes allowed there; 0: not yet
  size_t room = allowed[device].load(std::memory_order_relaxed);
  if (room == 0) {
    int limit = 0;
    if (cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
            cudaSuccess ||
        static_cast<size_t>(limit) <= static_bytes)
      return false;
    room = static_cast<size_t>(limit) - static_bytes;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(room)) != cudaSuccess)
      return false;
    allowed[device].store(room, std::memory_order_relaxed);
  }
  return dynamic_bytes <= room;
}

// Launches the policy's instantiation. A staged policy whose stages do not fit (rows too long
// for two per sender warp) is replaced by the register path's policy.
template <int kRankBatch, int kChunks>
void launch_combine(CombineParams q, CombinePolicy policy, const CombineKnobs& knobs, int num_sms,
                    cudaStream_t stream) {
  if (policy.staged_sends) {
    const auto kernel = intranode_combine_kernel<kRankBatch, kChunks, true>;
    const size_t bytes = size_t{2} * policy.split.send_warps * staged_row_bytes(q.area.row_bytes);
    if (prepare_staged<kRankBatch, kChunks>(bytes)) {
      kernel<<<num_sms, kCombineThreads, bytes, stream>>>(q);
      return;
    }
    policy = combine_policy(q.num_ranks, num_sms, knobs, kWarps, /*staged_possible=*/false);
    q.send_warps = policy.split.send_warps;
    q.row_batch = policy.split.batch;
    q.join_reduce = policy.join_reduce;
  }
  intranode_combine_kernel<kRankBatch, kChunks, false><<<num_sms, kCombineThreads, 0, stream>>>(q);
}

}  // namespace

cudaError_t launch_intranode_combine(const CombineParams& p, int num_sms, cudaStream_t stream) {
  // The measured choices and their measurements: kernels/normal_launch_policy.h.
  static const CombineKnobs knobs = combine_knobs_from_env();
  CombinePolicy policy = combine_policy(p.num_ranks, num_sms, knobs, kWarps);
  CombineParams q = p;
  q.send_warps = policy.split.send_warps;
  q.row_batch = policy.split.batch;
  q.join_reduce = policy.join_reduce;
  q.prefetch_next = policy.prefetch_next;
  if (p.copy_chunks > 0) {  // the copies sent every row: all warps reduce
    q.send_warps = 0;
    q.join_reduce = false;
    policy.staged_sends = false;
  }
#ifdef EPCOMM_DIAGNOSTICS
  static const int diag = env_override("EPCOMM_DIAG_COMBINE");
  q.diag = static_cast<uint32_t>(diag);
#endif
  // Loads in flight per lane are split over the ranks a token can have rows from.
  if (p.num_ranks <= 2) {
    launch_combine<2, 6>(q, policy, knobs, num_sms, stream);
  } else {
    launch_combine<4, 4>(q, policy, knobs, num_sms, stream);
  }
  return cudaGetLastError();
}

}  // namespace epcomm::kernels
