// Low-latency combine pre-reduced on the expert rank (docs/perf.md, LL v14, v17). Each source
// first tells every rank, per token, which of that rank's experts the token uses and with what
// summed weight. Each block of the expert rank lists its received rows by (source, token) in
// shared memory, sums each token's rows there with those weights in float32, and sends one
// float32 partial per (token, expert rank) instead of one BF16 row per (token, expert): at top-8
// over 2 ranks half the bytes. The source adds the partials in rank order and rounds once to
// BF16 (semantics.md section 5).
#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/device/bf16x8.cuh"
#include "kernels/device/bounded_wait.cuh"
#include "kernels/device/copy.cuh"
#include "kernels/device/expert_rows.cuh"
#include "kernels/device/grid_sync.cuh"
#include "kernels/device/indices.cuh"
#include "kernels/device/report.cuh"
#include "kernels/device/started_check.cuh"
#include "kernels/low_latency.h"

namespace epcomm::kernels {
namespace {

constexpr int kThreads = kLowLatencyThreads;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kSlice = core::kLlCombineSlice;
constexpr int kMaxRanks = 8;  // low-latency world sizes
constexpr int kGroup = 8;     // items a warp resolves in one prologue (shared tables per warp)
#ifdef EPCOMM_DIAGNOSTICS
constexpr bool kDiagnostics = true;  // p.diag's bits are read (docs/perf.md, LL v14)
#else
constexpr bool kDiagnostics = false;
#endif
using WeightsMessage = core::LowLatencyWeightsMessage;

__device__ __forceinline__ WeightsMessage* weights_message(const LowLatencyCommon& c, uint8_t* half,
                                                           int32_t source, int64_t t) {
  return reinterpret_cast<WeightsMessage*>(half + c.layout.combine_weights_offset) +
         int64_t{source} * c.layout.num_max_tokens + t;
}
// Expert rank d's partial for token t, in the token's rank's half.
__device__ __forceinline__ float* partial_slot(const LowLatencyCommon& c, uint8_t* half,
                                               int32_t expert_rank, int64_t t) {
  return reinterpret_cast<float*>(half + c.layout.combine_partial_offset) +
         (int64_t{expert_rank} * c.layout.num_max_tokens + t) * c.layout.hidden;
}
__device__ __forceinline__ uint32_t* partial_tag(const LowLatencyCommon& c, uint8_t* half,
                                                 int32_t expert_rank, int64_t t, int64_t slice) {
  return reinterpret_cast<uint32_t*>(half + c.layout.combine_partial_tags_offset) +
         (int64_t{expert_rank} * c.layout.num_max_tokens + t) * c.layout.combine_slices + slice;
}

// Where lane l's two float32 halves (channels 8l..8l+3, 8l+4..8l+7 of a slice) lie in the
// slice's partial, in 16-byte units: l and 32 + l in a full slice, so that each store instruction
// of a warp writes 512 contiguous bytes (16-byte pieces 32 bytes apart were slow over NVLink:
// docs/perf.md, LL v14); 2l and 2l + 1 in a last slice of 128 channels, which holds no more.
__device__ __forceinline__ int2 half_positions(int64_t slice, int64_t hidden, int lane) {
  return (slice + 1) * kSlice <= hidden ? make_int2(lane, 32 + lane)
                                        : make_int2(2 * lane, 2 * lane + 1);
}

// Token t's top-k on lanes k < K: the expert of slot k where it first appears (-1 on repeats and
// masked slots) and, there, the sum of the weights of every slot naming it (slots ascending).
struct TokenExpert {
  int32_t expert;
  float weight;
};
__device__ __forceinline__ TokenExpert token_expert(const LowLatencyCombineParams& p, int64_t t,
                                                    int lane) {
  int32_t e = -1;
  float w = 0.0f;
  if (lane < p.topk) {
    const int64_t id =
        load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + lane * p.topk_stride_k);
    if (id >= 0 && id < p.c.num_experts) {  // host-validated
      e = static_cast<int32_t>(id);
      w = p.topk_weights[t * p.weights_stride + lane * p.weights_stride_k];
    }
  }
  float sum = 0.0f;
  bool first = e >= 0;
  for (int k = 0; k < p.topk; ++k) {
    const int32_t other = __shfl_sync(0xffffffffu, e, k);
    const float ow = __shfl_sync(0xffffffffu, w, k);
    if (other == e) sum += ow;
    first = first && !(k < lane && other == e);
  }
  return first ? TokenExpert{e, sum} : TokenExpert{-1, 0.0f};
}

// Preconditions: blockDim = kThreads; K <= 16; R <= kMaxRanks; ll_reduced_index_bytes(R, N_max,
// K) bytes of dynamic shared memory.
// (0) ask L2 for the handle's src_info and layout_range; wait until every peer released this
//     half from call epoch - 2; block 0 publishes the token count and the signature ("started")
//     to every peer.
// (1) the block's first warps over this rank's tokens: one weights message to every rank (count
//     0 where the token has no expert), then the tags; then warp 0 reads every source's "started"
//     and token count (3).
// (2) meanwhile the block's other warps list every received row under its (source, token).
// (4) warps over (source, token, slice) items, 8 at a time: wait for the items' weights messages
//     (their rows from the block's listing), then the weighted float32 sums of the token's rows
//     here, two items at a time where top-k <= 8, go to the sources' partial slots; one fence
//     and the block's tags at the end.
// Returns false when a wait failed (recorded; the block skips the call).
__device__ __forceinline__ bool ll_reduced_send(const LowLatencyCombineParams& p, uint64_t epoch,
                                                LlKernel kernel) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, me = c.rank, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __shared__ int64_t range[core::kMaxExperts];  // [E_local][R], E_local * R <= kMaxExperts
  __shared__ int32_t first_row[core::kMaxExperts + 1];
  __shared__ int64_t tokens[kMaxRanks];
  __shared__ bool failed;
  // The items' tags, released by one thread of the block after one system-scope fence at the
  // end, instead of one fence per item or per warp (every fence waits for NVLink stores; a few
  // thousand of them per call cost more than the bytes: docs/perf.md, LL v14).
  constexpr int kBlockTags = 512;
  __shared__ uint32_t* block_tags[kBlockTags];
  __shared__ int block_tag_count;
  if (threadIdx.x == 0)
    failed = false, block_tag_count = 0;  // before wait_half_released's bar.sync
  // Warps [0, msg_warps) send the weights messages, then warp 0 reads every source's token
  // count; the other warps list the received rows meanwhile (one after the other, the two phases
  // took ~3.5 us before the first item: docs/perf.md, LL v18). As many message warps as this
  // rank's tokens need at one token per warp per block (the same in every block), at most half.
  const int64_t per_block = (p.num_tokens + gridDim.x - 1) / gridDim.x;
  const int msg_warps = static_cast<int>(per_block <= 1           ? 1
                                         : per_block < kWarps / 2 ? per_block
                                                                  : kWarps / 2);
  // The listing's inputs, asked of L2 before the half's wait, which they do not need
  // (docs/perf.md, LL v21).
  ExpertRows::prefetch_l2_handle(p.src_info, p.layout_range, E_local, R, l.num_max_tokens);
  if (!wait_half_released(c, epoch)) return false;
  if (blockIdx.x == 0) publish_started(c, epoch, p.num_tokens);
  const int64_t H = l.hidden, rows = int64_t{R} * l.num_max_tokens;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  const int64_t first_item = int64_t{warp} * gridDim.x + blockIdx.x;
  extern __shared__ int32_t index_smem[];
  const int32_t n_max = l.num_max_tokens, list_k = p.topk;
  int32_t* const listed = index_smem;               // [R][N_max] rows listed per (s, t)
  int32_t* const entries = index_smem + R * n_max;  // [R][N_max][topk] rows of x
  uint8_t* const my_half = half_base(c, me, epoch);
  if (warp < msg_warps) {
    // (1) The weights messages never wait, so no rank's pre-reduction waits behind another's
    // send. A token's messages to every rank are written first, then lane d releases rank d's
    // tag: the ranks' system-scope releases run side by side, not one after the other.
    for (int64_t t = first_item; t < p.num_tokens; t += int64_t{msg_warps} * gridDim.x) {
      const TokenExpert te = token_expert(p, t, lane);
      const int32_t d_of = te.expert >= 0 ? te.expert / E_local : -1;
      for (int32_t d = 0; d < R; ++d) {
        const uint32_t mask = __ballot_sync(0xffffffffu, d_of == d);
        WeightsMessage* msg = weights_message(c, half_base(c, d, epoch), me, t);
        if (d_of == d) {
          const int pos = __popc(mask & lanemask_lt());
          msg->expert[pos] = te.expert - d * E_local;
          msg->weight[pos] = te.weight;
        }
        if (lane == 0) msg->count = __popc(mask);
      }
      // __syncwarp orders every lane's message stores before the tag releases, which
      // (cumulative) carry them to their ranks.
      __syncwarp();
      // Release: token t's message precedes its tag on rank `lane`.
      if (lane < R)
        st_release_sys_u32(&weights_message(c, half_base(c, lane, epoch), me, t)->tag, tag);
    }
    trace_mark(c, 8);
    // (3) Every source's token count, published before its "started".
    if (warp == 0 && lane < R) {
      if (source_started(c.wait, signal_at<const uint64_t>(c, me, epoch, lane, core::kLlStarted),
                         signal_at<const volatile uint64_t>(c, me, epoch, lane, core::kLlSignature),
                         c.signature, epoch, lane))
        tokens[lane] = *signal_at<const volatile int64_t>(c, me, epoch, lane, core::kLlTokens);
      else
        failed = true;
    }
    trace_mark(c, 9);
    // As many barriers as the listing warps pass in ExpertRows::index, among the message warps
    // only (no wait on the listing). Not for ordering: compute-sanitizer racecheck appears to
    // order a block's accesses by how many barriers each warp has passed, and without these it
    // reports the listing's writes, read by these warps after the bar.sync below, as hazards
    // (docs/perf.md, Sanitizers).
    for (int i = 0; i < ExpertRows::kIndexBarriers; ++i) named_barrier_sync(2, msg_warps * 32);
  } else {
    // (2) Every block lists, in its own shared memory, the rows of x of every (source, token):
    // no global atomics, no reset, and no item waits for another block's listing (the global
    // index of LL v14 cost ~6-10 us before the first item; docs/perf.md, LL v17).
    const int first_thread = msg_warps * 32, num_threads = kThreads - first_thread;
    const int me_t = static_cast<int>(threadIdx.x) - first_thread;
    for (int32_t i = me_t; i < R * n_max; i += num_threads) listed[i] = 0;
    // ExpertRows::index starts and ends with a barrier of these threads: the zeroed counts precede
    // the claims below.
    const int32_t total = ExpertRows::index(p.layout_range, E_local, R, range, first_row,
                                            first_thread, num_threads, /*barrier_id=*/1);
    constexpr int kListBatch = 4;  // src_info loads per thread in flight together
    for (int32_t q0 = me_t; q0 < total; q0 += kListBatch * num_threads) {
      // A listed row is (local expert << 16) | row within the expert (R * N_max <= 8192), so
      // the items need no division to tell its expert (one per pair of entries and experts cost
      // ~40 us of integer division in every block at the standard setting: docs/perf.md, LL v17).
      int32_t packed[kListBatch], t[kListBatch], s_of[kListBatch];
#pragma unroll
      for (int u = 0; u < kListBatch; ++u) {
        const int32_t q = q0 + u * num_threads;
        packed[u] = -1;
        if (q < total) {
          int32_t j;
          int64_t i;
          ExpertRows::locate(q, first_row, range, E_local, R, j, i, s_of[u]);
          packed[u] = j << 16 | static_cast<int32_t>(i);
          t[u] = p.src_info[int64_t{j} * rows + i];
        }
      }
#pragma unroll
      for (int u = 0; u < kListBatch; ++u) {
        // A token index out of range is no row of this call's sources: the items' count check
        // below reports the mismatch.
        if (packed[u] < 0 || t[u] < 0 || t[u] >= n_max) continue;
        const int32_t key = s_of[u] * n_max + t[u];
        const int32_t pos = atomicAdd(&listed[key], 1);
        if (pos < list_k) entries[key * list_k + pos] = packed[u];
      }
    }
    trace_mark(c, 10, first_thread);
  }
  __syncthreads();  // orders the listing and the token counts before the items read them
  if (failed) return false;
  const int64_t slices = l.combine_slices;
  int64_t all_tokens = 0;
  for (int32_t s = 0; s < R; ++s) all_tokens += tokens[s];
  // (4) The warp's items go in groups of kGroup: lane k first waits for item k's weights message
  // and row entries, then the warp sums and stores the items (sum_items), then their tags are
  // listed for the block's release at the end. The waits' acquires (system scope) come before the
  // group's NVLink stores, so none of them waits for stores in flight (docs/perf.md, LL v14).
  // 32-bit item arithmetic: R * N_max * slices < 2^31, and 64-bit divisions cost ~70
  // instructions each.
  const int32_t num_items = static_cast<int32_t>(all_tokens * slices);
  const int32_t slices32 = static_cast<int32_t>(slices), rows32 = static_cast<int32_t>(rows);
  const auto decode = [&](int32_t item, int32_t& s, int32_t& t, int32_t& slice) {
    int32_t st = item / slices32;
    slice = item - st * slices32;
    s = 0;
    while (st >= tokens[s]) st -= static_cast<int32_t>(tokens[s++]);
    t = st;
  };
  const int32_t warps32 = static_cast<int32_t>(total_warps);
  // Per warp, the rows and weights of its current group's items, resolved once in the group's
  // prologue so that an item's loop has no dependent global load before its loads of x.
  __shared__ int32_t item_rows[kWarps][kGroup][core::kMaxLowLatencyTopk];
  __shared__ float item_weights[kWarps][kGroup][core::kMaxLowLatencyTopk];
  bool warp_ok = true;
  for (int32_t group = static_cast<int32_t>(first_item); group < num_items && warp_ok;
       group += kGroup * warps32) {
    int32_t my_n = 0;  // lane k < kGroup: rows of item k here
    bool ok = true;
    const int32_t my_item = group + lane * warps32;
    if (lane < kGroup && my_item < num_items) {
      int32_t s, t, slice;
      decode(my_item, s, t, slice);
      const WeightsMessage* msg = weights_message(c, my_half, s, t);
      if (ld_acquire_sys_u32(&msg->tag) != tag)
        // Acquire: source s's weights message for token t is visible once its tag shows this
        // epoch.
        ok = bounded_wait(c.wait, s, core::WaitStage::kDataArrival,
                          [&] { return ld_acquire_sys_u32(&msg->tag) == tag; });
      if (ok) {
        // The whole message in one round of 16-byte loads from L2 (after the acquire; its
        // experts and weights were a second round after the count: docs/perf.md, LL v19).
        constexpr int K = core::kMaxLowLatencyTopk;
        static_assert(sizeof(WeightsMessage) == 16 + 8 * K, "header, experts, weights");
        const int4* const m4 = reinterpret_cast<const int4*>(msg);
        int4 words[1 + K / 2];
#pragma unroll
        for (int u = 0; u < 1 + K / 2; ++u) words[u] = __ldcg(m4 + u);
        int32_t ex[K];
        float wt[K];
#pragma unroll
        for (int u = 0; u < K / 4; ++u) {
          const int4 e = words[1 + u], w = words[1 + K / 4 + u];
          ex[4 * u] = e.x, ex[4 * u + 1] = e.y, ex[4 * u + 2] = e.z, ex[4 * u + 3] = e.w;
          wt[4 * u] = __int_as_float(w.x), wt[4 * u + 1] = __int_as_float(w.y);
          wt[4 * u + 2] = __int_as_float(w.z), wt[4 * u + 3] = __int_as_float(w.w);
        }
        my_n = words[0].y;  // the count
        // The block's listing of the token's rows here; the message must name as many experts
        // as the dispatch (the handle) delivered rows, else topk_idx is not the dispatch's.
        const int32_t key = s * n_max + t, found = listed[key];
        if (found != my_n) {
          record_input_error(c.wait, core::WaitStage::kRoutingMismatch, s, found, my_n);
          ok = false;
          my_n = 0;
        }
        const int32_t* const list = entries + key * list_k;
        int32_t ent[K];
#pragma unroll
        for (int u = 0; u < K; ++u) ent[u] = u < my_n ? list[u] : -1;
        // The message's experts in its order, each with its row of x (the listing's order
        // depends on the claims; the message's is the source's top-k order, which fixes the
        // summation order).
        // The loops stop at the item's n (n^2 steps, not K^2: 16 warps per SM run this at
        // once, and the K^2 form cost ~2 us before the first item; docs/perf.md, LL v17).
        int32_t missing = 0;
#pragma unroll
        for (int u = 0; u < K; ++u) {
          if (u >= my_n) break;
          int32_t m = -1;
#pragma unroll
          for (int v = 0; v < K; ++v) {
            if (v >= my_n) break;
            if ((ent[v] >> 16) == ex[u]) m = (ent[v] >> 16) * rows32 + (ent[v] & 0xffff);
          }
          if (m < 0) ++missing;
          item_rows[warp][lane][u] = m;
          item_weights[warp][lane][u] = wt[u];
        }
        if (missing > 0) {  // as many rows as experts, but not the experts the message names
          record_input_error(c.wait, core::WaitStage::kRoutingMismatch, s, my_n - missing, my_n);
          ok = false;
        }
      }
    }
    if (!(warp_ok = __all_sync(0xffffffffu, ok))) break;
    // Lane k acquired item k's message tag and wrote its table; __syncwarp orders every lane's
    // later reads after both.
    __syncwarp();
    if (warp == 0 && group == first_item) trace_mark(c, 11);
    // Items k0 .. k0 + kItems - 1 of the group, each with at most kRows rows here: every row
    // load of the kItems items is issued before the first sum, so a warp's items wait for one
    // memory latency together instead of one each (docs/perf.md, LL v18).
    const auto sum_items = [&](auto rows_c, auto items_c, int k0) {
      constexpr int kRows = decltype(rows_c)::value, kItems = decltype(items_c)::value;
      int32_t n[kItems], s[kItems], t[kItems], slice[kItems];
      int4 v[kItems][kRows];
      float wk[kItems][kRows];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int32_t item = group + (k0 + i) * warps32;
        n[i] = __shfl_sync(0xffffffffu, my_n, (k0 + i) % kGroup);
        if (k0 + i >= kGroup || item >= num_items) n[i] = 0;
        s[i] = t[i] = slice[i] = 0;
        if (n[i] > 0) decode(item, s[i], t[i], slice[i]);
        // Lane l's 8 channels of the slice (stored where half_positions says).
        const int64_t ch = int64_t{slice[i]} * kSlice + lane * 8;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const int32_t mr = r < n[i] ? item_rows[warp][k0 + i][r] : -1;
          wk[i][r] = r < n[i] ? item_weights[warp][k0 + i][r] : 0.0f;
          if (mr >= 0 && ch < H && !(kDiagnostics && (p.diag & 1)))
            v[i][r] = ld_nc_v4(reinterpret_cast<const int4*>(p.x + int64_t{mr} * H + ch));
          else
            wk[i][r] = 0.0f, v[i][r] = make_int4(0, 0, 0, 0);
        }
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if (n[i] == 0) continue;  // no expert of the token here: its source waits for no partial
        const int64_t ch = int64_t{slice[i]} * kSlice + lane * 8;
        if (ch < H) {
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
          for (int r = 0; r < kRows; ++r)  // the source's order: fixed
            add_weighted_bf16x8(acc, wk[i][r], v[i][r]);
          // Diagnostic bit 1: every partial into our own half (no NVLink; results wrong).
          const int32_t to = kDiagnostics && (p.diag & 2) ? me : s[i];
          float* slot =
              partial_slot(c, half_base(c, to, epoch), me, t[i]) + int64_t{slice[i]} * kSlice;
          const int2 at = half_positions(slice[i], H, lane);
          st_na_v4(reinterpret_cast<int4*>(slot) + at.x,
                   make_int4(__float_as_int(acc[0]), __float_as_int(acc[1]), __float_as_int(acc[2]),
                             __float_as_int(acc[3])));
          st_na_v4(reinterpret_cast<int4*>(slot) + at.y,
                   make_int4(__float_as_int(acc[4]), __float_as_int(acc[5]), __float_as_int(acc[6]),
                             __float_as_int(acc[7])));
        }
        uint32_t* tag_ptr = partial_tag(c, half_base(c, s[i], epoch), me, t[i], slice[i]);
        const int at_tag = lane == 0 ? atomicAdd(&block_tag_count, 1) : 0;
        if (__shfl_sync(0xffffffffu, at_tag, 0) < kBlockTags) {
          if (lane == 0) block_tags[at_tag] = tag_ptr;
        } else {  // the block's list is full: this item's own release
          // __syncwarp orders every lane's stores of the item before lane 0's release.
          __syncwarp();
          // Release: the item's partial precedes its tag on the source.
          if (lane == 0) st_release_sys_u32(tag_ptr, tag);
        }
      }
    };
    // Two items at a time where no item has more than 8 rows (top-k <= 8), else one at a time:
    // the registers of 16 row loads either way.
    if (p.topk <= 8) {
      for (int k = 0; k < kGroup && group + k * warps32 < num_items; k += 2)
        sum_items(std::integral_constant<int, 8>{}, std::integral_constant<int, 2>{}, k);
    } else {
      for (int k = 0; k < kGroup && group + k * warps32 < num_items; ++k)
        sum_items(std::integral_constant<int, core::kMaxLowLatencyTopk>{},
                  std::integral_constant<int, 1>{}, k);
    }
    // The next group's prologue rewrites the tables: every lane is done reading them.
    __syncwarp();
  }
  trace_mark(c, 12);
  // A failed wait (recorded) leaves the block's tags unreleased: the sources time out naming us.
  if (!warp_ok && lane == 0) failed = true;
  // bar.sync orders every thread's partial stores before thread 0's fence, which (cumulative)
  // orders them before its tag stores: a release of every listed tag.
  __syncthreads();
  trace_mark(c, 13);
  if (failed) return false;
  if (threadIdx.x == 0) {
    __threadfence_system();
    const int listed = block_tag_count < kBlockTags ? block_tag_count : kBlockTags;
    for (int i = 0; i < listed; ++i) st_relaxed_sys_u32(block_tags[i], tag);
  }
  finish_send(c, epoch, kernel);
  return true;
}

// Preconditions: blockDim = kThreads; R <= kMaxRanks.
// (1) warps over (token t, slice): lane d waits for expert rank d's partial of the slice where
//     t has an expert on d; each lane sums its 8 channels over d ascending and rounds once.
// (2) last block: release the half to every peer.
__device__ __forceinline__ void ll_reduced_recv(const LowLatencyCombineParams& p, uint64_t epoch,
                                                LlKernel kernel) {
  const LowLatencyCommon& c = p.c;
  const core::LowLatencyLayout& l = c.layout;
  const int32_t R = c.num_ranks, E_local = c.experts_per_rank;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t tag = static_cast<uint32_t>(epoch);
  uint8_t* const half = half_base(c, c.rank, epoch);
  trace_mark(c, 4);
  const int64_t H = l.hidden, slices = l.combine_slices;
  const int64_t total_warps = int64_t{gridDim.x} * kWarps;
  for (int64_t item = int64_t{warp} * gridDim.x + blockIdx.x; item < p.num_tokens * slices;
       item += total_warps) {
    const int64_t t = item / slices, slice = item % slices;
    uint32_t bits = 0;  // ranks holding one of t's experts
    if (lane < p.topk) {
      const int64_t id =
          load_index(p.topk_idx, p.topk_is_int64, t * p.topk_stride + lane * p.topk_stride_k);
      if (id >= 0 && id < c.num_experts) bits = 1u << (id / E_local);  // host-validated
    }
    const uint32_t hit = __reduce_or_sync(0xffffffffu, bits);
    bool arrived = true;
    if (lane < R && ((hit >> lane) & 1)) {
      const uint32_t* tag_ptr = partial_tag(c, half, lane, t, slice);
      if (ld_acquire_sys_u32(tag_ptr) != tag) {
        const uint64_t t0 = global_timer_ns();
        // Acquire: rank `lane`'s partial of this slice is visible once its tag shows this epoch.
        arrived = bounded_wait(c.wait, lane, core::WaitStage::kDataArrival,
                               [&] { return ld_acquire_sys_u32(tag_ptr) == tag; });
        if (p.wait_stats && slice == 0)  // once per token
          atomicAdd(reinterpret_cast<unsigned long long*>(p.wait_stats + lane),
                    global_timer_ns() - t0);
      }
    }
    if (!__all_sync(0xffffffffu, arrived)) break;
    if (warp == 0 && item == blockIdx.x) trace_mark(c, 14);
    // Lane d acquired rank d's tag; __syncwarp orders every lane's loads after those acquires.
    __syncwarp();
    const int64_t ch = slice * kSlice + lane * 8;
    if (ch >= H) continue;
    int4 v[2 * kMaxRanks];
#pragma unroll
    for (int d = 0; d < kMaxRanks; ++d) {
      if (d < R && ((hit >> d) & 1)) {
        // Lane l's channels where the sender stored them (half_positions).
        const auto* src =
            reinterpret_cast<const int4*>(partial_slot(c, half, d, t) + slice * kSlice);
        const int2 at = half_positions(slice, H, lane);
        v[2 * d] = ld_na_v4(src + at.x);
        v[2 * d + 1] = ld_na_v4(src + at.y);
      } else {
        v[2 * d] = v[2 * d + 1] = make_int4(0, 0, 0, 0);
      }
    }
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int d = 0; d < kMaxRanks; ++d) {  // ranks ascending: a fixed order
      if (!(d < R && ((hit >> d) & 1))) continue;
      const int4 a = v[2 * d], b = v[2 * d + 1];
      acc[0] += __int_as_float(a.x), acc[1] += __int_as_float(a.y);
      acc[2] += __int_as_float(a.z), acc[3] += __int_as_float(a.w);
      acc[4] += __int_as_float(b.x), acc[5] += __int_as_float(b.y);
      acc[6] += __int_as_float(b.z), acc[7] += __int_as_float(b.w);
    }
    *reinterpret_cast<int4*>(p.out + t * p.out_stride + ch) = round_bf16x8(acc);
  }
  finish_recv(c, epoch, kernel, [] {});  // nothing of the half's to reset: the listing is per block
}

size_t reduced_send_smem(const LowLatencyCombineParams& p) {
  return ll_reduced_index_bytes(p.c.num_ranks, p.c.layout.num_max_tokens, p.topk);
}

using ReducedOp =
    LlOp<LowLatencyCombineParams, ll_reduced_send, ll_reduced_recv, reduced_send_smem>;

}  // namespace

LlLaunchers<LowLatencyCombineParams> ll_combine_reduced_launchers() {
  return make_ll_launchers<ReducedOp>();
}

}  // namespace epcomm::kernels
