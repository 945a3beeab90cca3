// Low-latency dispatch: one message per (token, destination rank) into the destination's
// [R][N_max] message area, then per-(source, local expert) placement on the receiver.
#include "core/numeric.h"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/indices.cuh"
#include "kernels/device/report.cuh"
#include "kernels/device/started_check.cuh"
#include "kernels/low_latency.h"

namespace epcomm::kernels {
namespace {

constexpr int kThreads = kLowLatencyThreads;
constexpr int kWarps = kThreads / 32;

// Expert of lane `lane` (< K) for token t, or -1 when masked or a repeat of a lower lane's.
__device__ __forceinline__ int64_t unique_expert(const LowLatencyDispatchParams& p, int64_t t,
                                                 int lane) {
  int64_t e = lane < p.topk ? load_index(p.topk_idx, p.topk_is_int64,
                                         t * p.topk_stride + lane * p.topk_stride_k)
                            : -1;
  if (e < -1 || e >= p.c.num_experts) {  // a caller error only the GPU can see: reported, skipped
    record_input_error(p.c.wait, core::WaitStage::kInvalidExpertId,
                       static_cast<int32_t>(t * p.topk + lane), e, p.c.num_experts);
    e = -1;
  }
  bool repeat = false;
  for (int i = 0; i < p.topk; ++i) {
    const int64_t other = __shfl_sync(0xffffffffu, e, i);
    repeat = repeat || (i < lane && other == e);
  }
  return (e >= 0 && !repeat) ? e : -1;
}

constexpr int kMaxCopyDst = 8;
constexpr int kCastBatch = 2;  // 256-channel passes per warp whose loads are in flight together
// Message vectors per lane a receiving warp holds at once: a whole FP8 row at hidden 7168 (more
// spill at the 128 registers that 512 threads per block leave).
constexpr int kRecvVecs = 14;

// Vectors [base + lane + 32u] of a message (u < kRecvVecs, those below num_vec), coherent loads
// (written by a peer during this kernel, read after the tag's acquire).
__device__ __forceinline__ void load_vecs(const int4* src, int64_t base, int64_t num_vec, int lane,
                                          int4 (&v)[kRecvVecs]) {
#pragma unroll
  for (int u = 0; u < kRecvVecs; ++u) {
    const int64_t i = base + lane + u * 32;
    if (i < num_vec) v[u] = ld_na_v4(src + i);
  }
}

__device__ __forceinline__ void store_vecs(int4* dst, int64_t base, int64_t num_vec, int lane,
                                           const int4 (&v)[kRecvVecs]) {
#pragma unroll
  for (int u = 0; u < kRecvVecs; ++u) {
    const int64_t i = base + lane + u * 32;
    if (i < num_vec) st_na_v4(dst + i, v[u]);
  }
}

// float8_e4m3fn bits of one value by the hardware conversion (round to nearest even, finite
// values saturate at +-448), with NaN as core::float_to_fp8_e4m3 writes it (sign | 0x7f).
__device__ __forceinline__ uint32_t fp8_hw(float y) {
  uint16_t pair;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(pair) : "f"(0.0f), "f"(y));
  const uint32_t sign = (__float_as_uint(y) >> 24) & 0x80u;
  return isnan(y) ? (sign | 0x7fu) : (pair & 0xffu);
}

// Four values packed low byte first, as core::fp8_quantize's callers pack them.
__device__ __forceinline__ uint32_t fp8x4_hw(float a, float b, float c, float d) {
  return fp8_hw(a) | fp8_hw(b) << 8 | fp8_hw(c) << 16 | fp8_hw(d) << 24;
}

// Loads of one batch of cast passes (from pass p0, pass_step apart) of a BF16 row.
__device__ __forceinline__ void load_cast_batch(const LowLatencyDispatchParams& p,
                                                const uint16_t* row, int lane, int64_t p0,
                                                int64_t pass_step, int4 (&raw)[kCastBatch]) {
  const int64_t H = p.c.layout.hidden;
#pragma unroll
  for (int u = 0; u < kCastBatch; ++u) {
    const int64_t ch = (p0 + u * pass_step) * 256 + lane * 8;
    raw[u] = ch < H ? ld_nc_v4(reinterpret_cast<const int4*>(row + ch)) : make_int4(0, 0, 0, 0);
  }
}

// FP8 cast of one BF16 row and its stores to every peer in dest_mask. Lane l holds channels
// [8l, 8l + 8) of each 256-channel pass: lanes 0-15 form one 128-channel group, lanes 16-31 the
// next. The loads of kCastBatch passes are issued before any math, so a row costs a few memory
// latencies rather than one per group (docs/perf.md, v8). With `preloaded`, the first batch's
// loads were issued by the caller into `first` (LL v11).
template <class PayloadOf>
__device__ __forceinline__ void cast_and_send_fp8(const LowLatencyDispatchParams& p,
                                                  const uint16_t* row, uint64_t dest_mask,
                                                  PayloadOf payload_of, int lane,
                                                  int64_t first_pass, int64_t pass_step,
                                                  bool preloaded, const int4 (&first)[kCastBatch]) {
  const int64_t H = p.c.layout.hidden, passes = (H + 255) / 256;
  for (int64_t p0 = first_pass; p0 < passes; p0 += kCastBatch * pass_step) {
    int4 raw[kCastBatch];
    if (preloaded && p0 == first_pass) {
#pragma unroll
      for (int u = 0; u < kCastBatch; ++u) raw[u] = first[u];
    } else {
      load_cast_batch(p, row, lane, p0, pass_step, raw);
    }
#pragma unroll
    for (int u = 0; u < kCastBatch; ++u) {
      const int64_t ch = (p0 + u * pass_step) * 256 + lane * 8;
      const auto* h = reinterpret_cast<const uint16_t*>(&raw[u]);
      float v[8], amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        v[i] = core::bf16_to_float(h[i]);
        amax = fmaxf(amax, fabsf(v[i]));
      }
      // Max over the 16 lanes of this group (xor offsets below 16 stay inside the half-warp).
      for (int o = 8; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      if (ch >= H) continue;
      const float scale = core::fp8_scale_from_amax(amax, p.round_scale);
      uint2 q{0, 0};
      if (p.hw_fp8_cvt) {
        q.x = fp8x4_hw(v[0] / scale, v[1] / scale, v[2] / scale, v[3] / scale);
        q.y = fp8x4_hw(v[4] / scale, v[5] / scale, v[6] / scale, v[7] / scale);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          q.x |= static_cast<uint32_t>(core::fp8_quantize(v[i], scale)) << (8 * i);
          q.y |= static_cast<uint32_t>(core::fp8_quantize(v[i + 4], scale)) << (8 * i);
        }
      }
      for (int32_t d = 0; d < p.c.num_ranks; ++d) {
        if (!((dest_mask >> d) & 1)) continue;
        uint8_t* payload = payload_of(d);
        *reinterpret_cast<uint2*>(payload + ch) = q;
        if (lane % 16 == 0) reinterpret_cast<float*>(payload + H)[ch / 128] = scale;
      }
    }
  }
}

// Preconditions: blockDim = kThreads; K <= 16; hidden % 128 == 0 (FP8: one group per warp pass).
// (0) wait until every peer released this half from call epoch - 2; block 0 publishes the
//     per-local-expert counts, the token count and the signature ("started") to every peer.
// (1) blocks round-robin over tokens (from block 1): warp 0 writes the header to every peer
//     (0 experts where none lives); all warps share the payload (BF16 row, or the FP8 cast done
//     once for all peers) to peers with experts; then the tags.
// (2) last block: leave the epoch in the hook slot and advance the epoch counter.
// Returns false when the wait for the half failed (recorded; the block skips the call).
__device__ __forceinline__ bool ll_dispatch_send(const LowLatencyDispatchParams& p, uint64_t epoch,
                                                 LlKernel kernel) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __shared__ int32_t hist[core::kMaxExperts];
  if (!wait_half_released(c, epoch)) return false;
  if (blockIdx.x == 0) {
    for (int32_t e = threadIdx.x; e < c.num_experts; e += blockDim.x) hist[e] = 0;
    __syncthreads();
    // One thread per token, all of its top-k loads in flight; repeats count once.
    for (int64_t t = threadIdx.x; t < p.num_tokens; t += blockDim.x) {
      int64_t ek[core::kMaxLowLatencyTopk];
#pragma unroll
      for (int k = 0; k < core::kMaxLowLatencyTopk; ++k)
        ek[k] = k < p.topk ? load_index(p.topk_idx, p.topk_is_int64,
                                        t * p.topk_stride + k * p.topk_stride_k)
                           : -1;
#pragma unroll
      for (int k = 0; k < core::kMaxLowLatencyTopk; ++k) {
        bool counted = ek[k] >= 0 && ek[k] < c.num_experts;
#pragma unroll
        for (int k2 = 0; k2 < k; ++k2) counted = counted && ek[k2] != ek[k];
        if (counted) atomicAdd(&hist[ek[k]], 1);
      }
    }
    __syncthreads();
    for (int32_t i = threadIdx.x; i < R * E_local; i += blockDim.x) {
      const int32_t d = i / E_local, j = i % E_local;
      reinterpret_cast<int32_t*>(half_base(c, d, epoch) + l.counts_offset)[me * E_local + j] =
          hist[d * E_local + j];
    }
    // bar.sync orders the count stores before the releases below (cumulative).
    __syncthreads();
    publish_started(c, epoch, p.num_tokens);  // the counts (ordered above) precede "started"
  }
  const int64_t H = l.hidden;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  // One block per token: warp 0 writes the headers, all warps share the payload, so a token's
  // cast and stores are spread over 16 warps (docs/perf.md, v8).
  __shared__ uint64_t token_dest_mask;
  // Token t goes to block (t + 1) % gridDim.x: block 0 publishes the counts first, and the
  // first token should not wait behind that (docs/perf.md, LL prediction).
  for (int64_t t = (blockIdx.x + gridDim.x - 1) % gridDim.x; t < p.num_tokens; t += gridDim.x) {
    // The row's first cast loads go out before warp 0's top-k loads and the barrier, so the two
    // cold loads of a token overlap instead of running one after the other (LL v11).
    const bool preload = p.use_fp8 && p.preload_x;
    int4 first[kCastBatch];
    if (preload) load_cast_batch(p, p.x + t * p.x_stride, lane, warp, kWarps, first);
    if (warp == 0) {
      const int64_t e = unique_expert(p, t, lane);
      uint64_t dest_mask = 0;
      for (int32_t d = 0; d < R; ++d) {
        const bool on_d = e >= 0 && e / E_local == d;
        const uint32_t mask = __ballot_sync(0xffffffffu, on_d);
        auto* msg =
            reinterpret_cast<int32_t*>(half_base(c, d, epoch) + l.dispatch_recv_offset +
                                       (int64_t{me} * l.num_max_tokens + t) * l.message_bytes);
        if (lane == 0) {
          msg[0] = static_cast<int32_t>(t);
          msg[1] = __popc(mask);
        }
        if (on_d)
          msg[4 + __popc(mask & lanemask_lt())] = static_cast<int32_t>(e - int64_t{d} * E_local);
        if (mask) dest_mask |= 1ull << d;
      }
      if (lane == 0) token_dest_mask = dest_mask;
    }
    __syncthreads();
    const uint64_t dest_mask = token_dest_mask;
    const uint16_t* row = p.x + t * p.x_stride;
    auto payload_of = [&](int32_t d) {
      return half_base(c, d, epoch) + l.dispatch_recv_offset +
             (int64_t{me} * l.num_max_tokens + t) * l.message_bytes + core::kLowLatencyHeaderBytes;
    };
    if (!p.use_fp8) {
      // Warp w copies its share of the row, read once, to up to kMaxCopyDst peers per pass.
      const int64_t vecs = H * 2 / 16, share = (vecs + kWarps - 1) / kWarps;
      const int64_t begin = warp * share, count = begin < vecs ? min(share, vecs - begin) : 0;
      for (int32_t d0 = 0; d0 < R && count > 0; d0 += kMaxCopyDst) {
        int4* dst[kMaxCopyDst];
        int n = 0;
        for (int32_t d = d0; d < R && d < d0 + kMaxCopyDst; ++d)
          if ((dest_mask >> d) & 1) dst[n++] = reinterpret_cast<int4*>(payload_of(d)) + begin;
        if (n > 0)
          warp_multicast_copy<false>(dst, n, reinterpret_cast<const int4*>(row) + begin, count,
                                     lane);
      }
    } else {
      cast_and_send_fp8(p, row, dest_mask, payload_of, lane, warp, kWarps, preload, first);
    }
    // bar.sync orders every thread's header and payload stores before the tag stores below;
    // each tag's release (cumulative) carries them to its peer.
    __syncthreads();
    if (kernel == LlKernel::kSingle) trace_mark(c, 3);  // diagnostic: the token's cast done
    for (int32_t d = threadIdx.x; d < R; d += blockDim.x) {
      auto* tags = reinterpret_cast<uint32_t*>(half_base(c, d, epoch) + l.dispatch_tags_offset);
      // Release: this token's header and payload precede its tag on peer d.
      st_release_sys_u32(tags + int64_t{me} * l.num_max_tokens + t, tag);
    }
  }
  finish_send(c, epoch, kernel);
  return true;
}

// Preconditions: blockDim = kThreads; runs after this rank's send of the same call started
// (the same kernel, or the send kernel before the hook).
// (0) every source's started flag, signature and token count; begin(j, s) from the counts;
//     block 0 writes recv_count, layout_range and the statistics from them.
// (1) warps round-robin over (source, token) messages: wait for the tag, place one row per local
//     expert inside the source's range (atomic counter; order inside a range is unspecified).
// (2) last block: reset the placement counters; release the half to every source.
__device__ __forceinline__ void ll_dispatch_recv(const LowLatencyDispatchParams& p, uint64_t epoch,
                                                 LlKernel kernel) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  uint8_t* const half = half_base(c, me, epoch);
  __shared__ bool failed;
  __shared__ int64_t tokens[64];                   // R <= 64
  __shared__ int32_t begin[core::kMaxExperts];     // [E_local][R]
  __shared__ int32_t count_of[core::kMaxExperts];  // [R][E_local]: rows source s sends expert j
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  for (int32_t s = threadIdx.x; s < R; s += blockDim.x) {
    const uint64_t t0 = global_timer_ns();
    // Source s's counts and token count were published before "started", as its signature.
    if (!source_started(c.wait, signal_at<const uint64_t>(c, me, epoch, s, core::kLlStarted),
                        signal_at<const volatile uint64_t>(c, me, epoch, s, core::kLlSignature),
                        c.signature, epoch, s)) {
      failed = true;
      continue;
    }
    if (blockIdx.x == 0 && p.wait_stats)
      atomicAdd(reinterpret_cast<unsigned long long*>(p.wait_stats + s), global_timer_ns() - t0);
    tokens[s] = *signal_at<const volatile int64_t>(c, me, epoch, s, core::kLlTokens);
  }
  __syncthreads();
  if (failed) return;
  // All counts in one parallel pass (bar.sync above orders these loads after the acquires of
  // "started"), then the per-expert prefix over sources from shared memory.
  const auto* counts = reinterpret_cast<const int32_t*>(half + l.counts_offset);  // [R][E_local]
  for (int32_t i = threadIdx.x; i < R * E_local; i += blockDim.x) count_of[i] = counts[i];
  __syncthreads();
  for (int32_t j = threadIdx.x; j < E_local; j += blockDim.x) {
    int32_t acc = 0;
    for (int32_t s = 0; s < R; ++s) {
      begin[j * R + s] = acc;
      acc += count_of[s * E_local + j];
    }
  }
  __syncthreads();
  trace_mark(c, 4);
  // recv_count, layout_range and the statistics follow from the counts alone: block 0 writes
  // them now rather than the last block after every row (docs/perf.md, LL prediction).
  for (int32_t j = threadIdx.x; blockIdx.x == 0 && j < E_local; j += blockDim.x) {
    int32_t total = 0;
    for (int32_t s = 0; s < R; ++s) {
      const int32_t n = count_of[s * E_local + j];
      p.layout_range[j * R + s] =
          (static_cast<int64_t>(begin[j * R + s]) << 32) | static_cast<int64_t>(n);
      total += n;
    }
    p.packed_recv_count[j] = total;
    if (p.cumulative_stats) p.cumulative_stats[j] += total;
  }
  const int64_t H = l.hidden, G = H / core::kFp8GroupSize, rows = int64_t{R} * l.num_max_tokens;
  const auto* tags = reinterpret_cast<const uint32_t*>(half + l.dispatch_tags_offset);
  auto* place = reinterpret_cast<int32_t*>(half + l.place_offset);  // [E_local][R]
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  for (int64_t m = int64_t{warp} * gridDim.x + blockIdx.x; m < rows; m += total_warps) {
    const int32_t s = static_cast<int32_t>(m / l.num_max_tokens);
    const int64_t t = m % l.num_max_tokens;
    if (t >= tokens[s]) continue;
    bool arrived = true;
    if (lane == 0 && ld_acquire_sys_u32(tags + m) != tag) {
      const uint64_t t0 = global_timer_ns();
      // Acquire: the message of (s, t) is visible once its tag shows this epoch.
      arrived = bounded_wait(c.wait, s, core::WaitStage::kDataArrival,
                             [&] { return ld_acquire_sys_u32(tags + m) == tag; });
      if (p.wait_stats)
        atomicAdd(reinterpret_cast<unsigned long long*>(p.wait_stats + s), global_timer_ns() - t0);
    }
    if (!__shfl_sync(0xffffffffu, arrived, 0)) break;
    __syncwarp();
    const uint8_t* msg = half + l.dispatch_recv_offset + m * l.message_bytes;
    const uint8_t* payload = msg + core::kLowLatencyHeaderBytes;
    const int64_t row_bytes = p.use_fp8 ? H : H * 2, vecs = row_bytes / 16;
    const auto* src = reinterpret_cast<const int4*>(payload);
    // The header, the payload's first kRecvVecs vectors per lane and the first scale chunk
    // load together, so a message costs one memory latency before its stores instead of one
    // for the header, one per copy pass and one for the scales (LL v15).
    const auto* header = reinterpret_cast<const volatile int32_t*>(msg);
    const int32_t word = lane < 4 + core::kMaxLowLatencyTopk ? header[lane] : 0;
    int4 v[kRecvVecs];
    load_vecs(src, 0, vecs, lane, v);
    // Scales in 16-byte chunks of 4 groups: lane c holds groups [4c, 4c + 4) (the last chunk
    // may run past the G scales into the message's padding; those words are not stored).
    const int64_t chunks = p.use_fp8 ? (G + 3) / 4 : 0;
    const auto* scale_chunks = reinterpret_cast<const int4*>(payload + H);
    int4 sc = lane < chunks ? ld_na_v4(scale_chunks + lane) : make_int4(0, 0, 0, 0);
    // Word 1 is the expert count, words 4.. the experts.
    const int32_t n = __shfl_sync(0xffffffffu, word, 1);
    const int32_t expert_word = __shfl_sync(0xffffffffu, word, (lane + 4) % 32);
    // Lane i < n claims the row of local expert header[4 + i] (all claims at once).
    int32_t my_j = -1, my_row = 0;
    if (lane < n) {
      my_j = expert_word;
      my_row = begin[my_j * R + s] + atomicAdd(&place[my_j * R + s], 1);
      p.src_info[int64_t{my_j} * rows + my_row] = static_cast<int32_t>(t);
    }
    for (int64_t base = 0; base < vecs; base += kRecvVecs * 32) {
      if (base > 0) load_vecs(src, base, vecs, lane, v);
      for (int32_t i = 0; i < n; ++i) {
        const int32_t j = __shfl_sync(0xffffffffu, my_j, i);
        const int32_t row = __shfl_sync(0xffffffffu, my_row, i);
        store_vecs(reinterpret_cast<int4*>(p.packed_recv_x + (int64_t{j} * rows + row) * row_bytes),
                   base, vecs, lane, v);
      }
    }
    // Scales, column-major in the last two dimensions: [j][g][row] (or [j][g/4][row] packed).
    for (int64_t c0 = 0; c0 < chunks; c0 += 32) {
      const int64_t chunk = c0 + lane;
      if (c0 > 0 && chunk < chunks) sc = ld_na_v4(scale_chunks + chunk);
      for (int32_t i = 0; i < n; ++i) {
        const int32_t j = __shfl_sync(0xffffffffu, my_j, i);
        const int32_t row = __shfl_sync(0xffffffffu, my_row, i);
        if (chunk >= chunks) continue;
        auto* out = static_cast<uint32_t*>(p.packed_recv_scales);
        const uint32_t w4[4] = {static_cast<uint32_t>(sc.x), static_cast<uint32_t>(sc.y),
                                static_cast<uint32_t>(sc.z), static_cast<uint32_t>(sc.w)};
        if (p.use_ue8m0) {
          uint32_t packed = 0;
#pragma unroll
          for (int b = 0; b < 4; ++b)
            packed |= static_cast<uint32_t>(core::ue8m0_from_scale(__uint_as_float(w4[b])))
                      << (8 * b);
          out[(int64_t{j} * (G / 4) + chunk) * rows + row] = packed;  // G % 4 == 0 with UE8M0
        } else {
#pragma unroll
          for (int b = 0; b < 4; ++b)
            if (4 * chunk + b < G) out[(int64_t{j} * G + 4 * chunk + b) * rows + row] = w4[b];
        }
      }
    }
  }
  finish_recv(c, epoch, kernel, [&] {
    for (int32_t i = threadIdx.x; i < E_local * R; i += blockDim.x) place[i] = 0;
  });
}

using DispatchOp = LlOp<LowLatencyDispatchParams, ll_dispatch_send, ll_dispatch_recv>;

}  // namespace

LlLaunchers<LowLatencyDispatchParams> ll_dispatch_launchers() {
  return make_ll_launchers<DispatchOp>();
}

}  // namespace epcomm::kernels
