// CPU reference of the low-latency dispatch and combine (semantics.md sections 4-5).
#include <cmath>
#include <string>
#include <vector>

#include "core/numeric.h"
#include "core/reference/sim_world.h"
#include "core/reference/view_access.h"
#include "core/validate.h"

namespace epcomm::reference {
namespace {

Error with_rank(int32_t rank, Error e) {
  if (e.ok()) return e;
  return Error(e.code(), "rank " + std::to_string(rank) + ": " + e.message());
}

// Whether token t of `topk_idx` selected expert e (any k).
bool selects(const TensorView& topk_idx, int64_t t, int64_t e) {
  for (int64_t k = 0; k < topk_idx.shape[1]; ++k)
    if (index_at(topk_idx, t, k) == e) return true;
  return false;
}

// Writes one received row of local expert j: FP8 cast with per-128-channel scales, or a copy.
void write_row(const LowLatencyDispatchArgs& out, int64_t j, int64_t row, const TensorView& x,
               int64_t t) {
  const int64_t H = x.shape[1];
  const uint16_t* src = &elem<uint16_t>(x, t, 0);
  if (!out.use_fp8) {
    for (int64_t h = 0; h < H; ++h) elem<uint16_t>(out.packed_recv_x, j, row, h) = src[h];
    return;
  }
  const int64_t groups = H / core::kFp8GroupSize;
  for (int64_t g = 0; g < groups; ++g) {
    float amax = 0.0f;
    for (int64_t c = 0; c < core::kFp8GroupSize; ++c)
      amax = std::fmax(amax, std::fabs(core::bf16_to_float(src[g * core::kFp8GroupSize + c])));
    const float scale = core::fp8_scale_from_amax(amax, out.round_scale);
    for (int64_t c = 0; c < core::kFp8GroupSize; ++c) {
      const int64_t h = g * core::kFp8GroupSize + c;
      elem<uint8_t>(out.packed_recv_x, j, row, h) =
          core::fp8_quantize(core::bf16_to_float(src[h]), scale);
    }
    if (out.use_ue8m0) {
      // Four consecutive groups share one int32, lowest byte first.
      auto& word = elem<int32_t>(out.packed_recv_x_scales, j, row, g / 4);
      uint32_t w = g % 4 == 0 ? 0u : static_cast<uint32_t>(word);
      w |= static_cast<uint32_t>(core::ue8m0_from_scale(scale)) << (8 * (g % 4));
      word = static_cast<int32_t>(w);
    } else {
      elem<float>(out.packed_recv_x_scales, j, row, g) = scale;
    }
  }
}

}  // namespace

Error SimWorld::low_latency_dispatch(std::span<const LowLatencyDispatchArgs> args) const {
  if (auto e = check_rank_count("low_latency_dispatch", args.size()); !e.ok()) return e;
  const int32_t R = num_ranks_;
  for (int32_t r = 0; r < R; ++r) {
    if (auto e = core::validate_low_latency_dispatch_args(args[r], topology(r), DeviceKind::kCpu);
        !e.ok())
      return with_rank(r, e);
    const auto& a = args[r];
    const auto& a0 = args[0];
    if (a.num_max_dispatch_tokens_per_rank != a0.num_max_dispatch_tokens_per_rank ||
        a.x.shape[1] != a0.x.shape[1] || a.num_experts != a0.num_experts ||
        a.use_fp8 != a0.use_fp8 || a.round_scale != a0.round_scale || a.use_ue8m0 != a0.use_ue8m0)
      return with_rank(
          r, Error(ErrorCode::kInvalidArgument,
                   "low_latency_dispatch: expected num_max_dispatch_tokens_per_rank=" +
                       std::to_string(a0.num_max_dispatch_tokens_per_rank) +
                       ", hidden=" + std::to_string(a0.x.shape[1]) + ", num_experts=" +
                       std::to_string(a0.num_experts) + " and FP8 options as on rank 0, got " +
                       std::to_string(a.num_max_dispatch_tokens_per_rank) + ", " +
                       std::to_string(a.x.shape[1]) + ", " + std::to_string(a.num_experts)));
  }
  const int64_t E_local = args[0].num_experts / R;
  for (int32_t d = 0; d < R; ++d) {
    const auto& out = args[d];
    for (int64_t j = 0; j < E_local; ++j) {
      const int64_t e = d * E_local + j;
      int64_t row = 0;
      for (int32_t s = 0; s < R; ++s) {
        const int64_t begin = row;
        for (int64_t t = 0; t < args[s].x.shape[0]; ++t) {
          if (!selects(args[s].topk_idx, t, e)) continue;
          write_row(out, j, row, args[s].x, t);
          elem<int32_t>(out.handle.src_info, j, row) = static_cast<int32_t>(t);
          ++row;
        }
        elem<int64_t>(out.handle.layout_range, j, s) = (begin << 32) | (row - begin);
      }
      elem<int32_t>(out.packed_recv_count, j) = static_cast<int32_t>(row);
      if (out.cumulative_local_expert_recv_stats.defined())
        elem<int32_t>(out.cumulative_local_expert_recv_stats, j) += static_cast<int32_t>(row);
    }
  }
  return Error::success();
}

Error SimWorld::low_latency_combine(std::span<const LowLatencyCombineArgs> args) const {
  if (auto e = check_rank_count("low_latency_combine", args.size()); !e.ok()) return e;
  const int32_t R = num_ranks_;
  for (int32_t r = 0; r < R; ++r) {
    if (auto e = core::validate_low_latency_combine_args(args[r], topology(r), DeviceKind::kCpu);
        !e.ok())
      return with_rank(r, e);
    if (!args[r].x.defined())
      return with_rank(r, Error(ErrorCode::kInvalidArgument,
                                "low_latency_combine: x: expected the expert outputs (the CPU "
                                "reference has no buffer to read with zero_copy), got none"));
    const auto& h = args[r].handle;
    const auto& h0 = args[0].handle;
    if (h.num_max_dispatch_tokens_per_rank != h0.num_max_dispatch_tokens_per_rank ||
        h.hidden != h0.hidden || h.num_experts != h0.num_experts)
      return with_rank(r, Error(ErrorCode::kInvalidArgument,
                                "low_latency_combine: handle: expected the N_max, hidden and "
                                "num_experts of rank 0, got different ones"));
  }
  const int64_t E_local = args[0].handle.num_experts / R;
  const int64_t H = args[0].handle.hidden;
  std::vector<float> acc(H);
  for (int32_t s = 0; s < R; ++s) {
    const auto& a = args[s];
    for (int64_t t = 0; t < a.topk_idx.shape[0]; ++t) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t k = 0; k < a.topk_idx.shape[1]; ++k) {
        const int64_t e = index_at(a.topk_idx, t, k);
        if (e < 0) continue;
        const int32_t d = static_cast<int32_t>(e / E_local);
        const int64_t j = e % E_local;
        const auto& expert_side = args[d];
        const int64_t range = elem<int64_t>(expert_side.handle.layout_range, j, s);
        const int64_t begin = range >> 32;
        const int64_t count = range & 0xffffffff;
        int64_t row = -1;
        for (int64_t i = begin; i < begin + count; ++i)
          if (elem<int32_t>(expert_side.handle.src_info, j, i) == t) row = i;
        if (row < 0)
          return with_rank(s,
                           Error(ErrorCode::kInvalidArgument,
                                 "low_latency_combine: handle: token " + std::to_string(t) +
                                     " has no row for expert " + std::to_string(e) + " on rank " +
                                     std::to_string(d) + " (handle from another dispatch?)"));
        const float w = elem<float>(a.topk_weights, t, k);
        for (int64_t h = 0; h < H; ++h)
          acc[h] += w * core::bf16_to_float(elem<uint16_t>(expert_side.x, j, row, h));
      }
      for (int64_t h = 0; h < H; ++h) elem<uint16_t>(a.out, t, h) = core::float_to_bf16(acc[h]);
    }
  }
  return Error::success();
}

}  // namespace epcomm::reference
