// Operation-level validation (semantics.md sections 1-5 and 7).
#include <string>

#include "core/low_latency_layout.h"
#include "core/numeric.h"
#include "core/validate.h"

namespace epcomm::core {
namespace {

Error invalid(const char* op, const char* arg, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, std::string(op) + ": " + arg + ": " + what);
}

const std::initializer_list<DType> kIndexTypes = {DType::kInt64, DType::kInt32};

// The handle tensors every normal op reads: rank_prefix_matrix [R, R], is_token_in_rank [T, R],
// send_slot [T, R].
Error check_handle_routing(const char* op, const DispatchHandle& h, int64_t num_tokens, int32_t R,
                           DeviceKind dev) {
  if (auto e = check_tensor(op, "handle.rank_prefix_matrix", h.rank_prefix_matrix, {DType::kInt32},
                            {{"R", R}, {"R", R}}, dev);
      !e.ok())
    return e;
  if (auto e = check_tensor(op, "handle.is_token_in_rank", h.is_token_in_rank, {DType::kBool},
                            {{"T", num_tokens}, {"R", R}}, dev);
      !e.ok())
    return e;
  if (auto e = check_tensor(op, "handle.send_slot", h.send_slot, {DType::kInt32},
                            {{"T", num_tokens}, {"R", R}}, dev);
      !e.ok())
    return e;
  if (h.num_recv_tokens < 0)
    return invalid(op, "handle.num_recv_tokens",
                   "expected >= 0, got " + std::to_string(h.num_recv_tokens));
  if (auto e = check_tensor(op, "handle.rank_prefix_matrix_host", h.rank_prefix_matrix_host,
                            {DType::kInt32}, {{"R", R}, {"R", R}}, DeviceKind::kCpu,
                            /*optional=*/true);
      !e.ok())
    return e;
  if (h.rank_prefix_matrix_host.defined())
    return check_contiguous(op, "handle.rank_prefix_matrix_host", h.rank_prefix_matrix_host);
  return Error::success();
}

// The layout's outputs, which dispatch and dispatch_notify read back: num_tokens_per_rank [R],
// num_tokens_per_expert [E] (E: kAnySize where the caller derives it from this tensor) and
// is_token_in_rank [T, R] (T: kAnySize likewise).
Error check_routing_counts(const char* op, const TensorView& per_rank, const TensorView& per_expert,
                           const TensorView& in_rank, int32_t R, int64_t E, int64_t T,
                           DeviceKind dev) {
  if (auto e = check_tensor(op, "num_tokens_per_rank", per_rank, {DType::kInt32}, {{"R", R}}, dev);
      !e.ok())
    return e;
  if (auto e =
          check_tensor(op, "num_tokens_per_expert", per_expert, {DType::kInt32}, {{"E", E}}, dev);
      !e.ok())
    return e;
  return check_tensor(op, "is_token_in_rank", in_rank, {DType::kBool}, {{"T", T}, {"R", R}}, dev);
}

// topk_idx [T, K] (T: kAnySize for any) of an index type with 1 <= K <= kMaxNormalTopk; K out.
Error check_normal_topk(const char* op, const TensorView& topk_idx, int64_t T, DeviceKind dev,
                        int64_t& K) {
  if (auto e =
          check_tensor(op, "topk_idx", topk_idx, kIndexTypes, {{"T", T}, {"K", kAnySize}}, dev);
      !e.ok())
    return e;
  K = topk_idx.shape[1];
  if (K < 1 || K > kMaxNormalTopk)
    return invalid(op, "topk_idx",
                   "expected K in [1, " + std::to_string(kMaxNormalTopk) + "], got shape " +
                       shape_string(topk_idx));
  return Error::success();
}

}  // namespace

Error validate_layout_args(const LayoutArgs& a, const Topology& topo, DeviceKind dev) {
  const char* op = "get_dispatch_layout";
  const int32_t R = topo.num_ranks;
  if (auto e = check_num_experts(op, a.num_experts, R); !e.ok()) return e;
  int64_t K = 0;
  if (auto e = check_normal_topk(op, a.topk_idx, kAnySize, dev, K); !e.ok()) return e;
  const int64_t T = a.topk_idx.shape[0];
  if (auto e = check_topk_values(op, "topk_idx", a.topk_idx, a.num_experts); !e.ok()) return e;
  if (auto e = check_routing_counts(op, a.num_tokens_per_rank, a.num_tokens_per_expert,
                                    a.is_token_in_rank, R, a.num_experts, T, dev);
      !e.ok())
    return e;
  if (topo.single_node() && a.num_tokens_per_rdma_rank.defined())
    return invalid(
        op, "num_tokens_per_rdma_rank",
        "expected none on a single node, got shape " + shape_string(a.num_tokens_per_rdma_rank));
  for (const TensorView* t :
       {&a.num_tokens_per_rank, &a.num_tokens_per_expert, &a.is_token_in_rank})
    if (auto e = check_contiguous(op, "output", *t); !e.ok()) return e;
  return Error::success();
}

Error validate_dispatch_notify_args(const DispatchNotifyArgs& a, const Topology& topo,
                                    DeviceKind dev) {
  const char* op = "dispatch_notify";
  const int32_t R = topo.num_ranks;
  if (auto e = validate_config(op, a.config); !e.ok()) return e;
  if (a.expert_alignment < 1)
    return invalid(op, "expert_alignment",
                   "expected >= 1, got " + std::to_string(a.expert_alignment));
  if (auto e = check_routing_counts(op, a.num_tokens_per_rank, a.num_tokens_per_expert,
                                    a.is_token_in_rank, R, kAnySize, kAnySize, dev);
      !e.ok())
    return e;
  if (auto e = check_num_experts(op, static_cast<int32_t>(a.num_tokens_per_expert.shape[0]), R);
      !e.ok())
    return e;
  return check_handle_routing(op, a.handle, a.is_token_in_rank.shape[0], R, dev);
}

Error validate_dispatch_args(const DispatchArgs& a, const Topology& topo, DeviceKind dev,
                             int64_t num_recv_rows) {
  const char* op = "dispatch";
  const int32_t R = topo.num_ranks;
  if (auto e = validate_config(op, a.config); !e.ok()) return e;
  if (auto e = check_tensor(op, "x", a.x, {DType::kBFloat16, DType::kFloat8E4M3},
                            {{"T", kAnySize}, {"H", kAnySize}}, dev);
      !e.ok())
    return e;
  if (auto e = check_rows_aligned(op, "x", a.x); !e.ok()) return e;
  const int64_t T = a.x.shape[0];
  const int64_t H = a.x.shape[1];
  if (H < 1) return invalid(op, "x", "expected a hidden size >= 1, got shape " + shape_string(a.x));
  const bool fp8 = a.x.dtype == DType::kFloat8E4M3;
  if (fp8) {
    if (H % kFp8GroupSize != 0)
      return invalid(
          op, "x",
          "expected an FP8 hidden size that is a multiple of 128, got " + std::to_string(H));
    if (auto e = check_tensor(op, "x_scales", a.x_scales, {DType::kFloat32},
                              {{"T", T}, {"H/128", H / kFp8GroupSize}}, dev);
        !e.ok())
      return e;
    if (auto e = check_unit_stride_2d(op, "x_scales", a.x_scales); !e.ok()) return e;
  } else if (a.x_scales.defined()) {
    return invalid(op, "x_scales",
                   "expected none for bfloat16 x, got shape " + shape_string(a.x_scales));
  }
  if (a.num_worst_tokens < 0)
    return invalid(op, "num_worst_tokens",
                   "expected >= 0, got " + std::to_string(a.num_worst_tokens));
  const bool has_topk = a.topk_idx.defined();
  if (has_topk != a.topk_weights.defined())
    return invalid(op, has_topk ? "topk_weights" : "topk_idx",
                   "expected topk_idx and topk_weights to be given together, got only " +
                       std::string(has_topk ? "topk_idx" : "topk_weights"));
  int64_t K = 0;
  if (has_topk) {
    if (a.cached)
      return invalid(op, "topk_idx", "expected none in cached mode (handle given), got a tensor");
    if (auto e = check_normal_topk(op, a.topk_idx, T, dev, K); !e.ok()) return e;
    if (auto e = check_tensor(op, "topk_weights", a.topk_weights, {DType::kFloat32},
                              {{"T", T}, {"K", K}}, dev);
        !e.ok())
      return e;
  }
  if (a.cached) {
    if (a.num_worst_tokens > 0)
      return invalid(op, "num_worst_tokens",
                     "expected 0 in cached mode, got " + std::to_string(a.num_worst_tokens));
    if (auto e = check_handle_routing(op, a.handle, T, R, dev); !e.ok()) return e;
  } else {
    if (auto e = check_num_experts(op, a.num_experts, R); !e.ok()) return e;
    if (has_topk)
      if (auto e = check_topk_values(op, "topk_idx", a.topk_idx, a.num_experts); !e.ok()) return e;
    if (a.expert_alignment < 1)
      return invalid(op, "expert_alignment",
                     "expected >= 1, got " + std::to_string(a.expert_alignment));
    if (auto e = check_routing_counts(op, a.num_tokens_per_rank, a.num_tokens_per_expert,
                                      a.is_token_in_rank, R, a.num_experts, T, dev);
        !e.ok())
      return e;
    if (auto e = check_handle_routing(op, a.handle, T, R, dev); !e.ok()) return e;
  }
  const int64_t N = a.num_worst_tokens > 0 ? a.num_worst_tokens : num_recv_rows;
  if (auto e = check_tensor(op, "recv_x", a.recv_x, {a.x.dtype}, {{"N", N}, {"H", H}}, dev);
      !e.ok())
    return e;
  if (auto e = check_rows_aligned(op, "recv_x", a.recv_x); !e.ok()) return e;
  if (fp8) {
    if (auto e = check_tensor(op, "recv_x_scales", a.recv_x_scales, {DType::kFloat32},
                              {{"N", N}, {"H/128", H / kFp8GroupSize}}, dev);
        !e.ok())
      return e;
    if (auto e = check_contiguous(op, "recv_x_scales", a.recv_x_scales); !e.ok()) return e;
  }
  if (auto e = check_tensor(op, "handle.recv_src_idx", a.handle.recv_src_idx, {DType::kInt32},
                            {{"N", N}}, dev);
      !e.ok())
    return e;
  if (has_topk) {
    if (auto e = check_tensor(op, "recv_topk_idx", a.recv_topk_idx, {a.topk_idx.dtype},
                              {{"N", N}, {"K", K}}, dev);
        !e.ok())
      return e;
    if (auto e = check_tensor(op, "recv_topk_weights", a.recv_topk_weights, {DType::kFloat32},
                              {{"N", N}, {"K", K}}, dev);
        !e.ok())
      return e;
  }
  return Error::success();
}

Error validate_combine_args(const CombineArgs& a, const Topology& topo, DeviceKind dev) {
  const char* op = "combine";
  const int32_t R = topo.num_ranks;
  if (auto e = validate_config(op, a.config); !e.ok()) return e;
  if (auto e = check_tensor(op, "handle.recv_src_idx", a.handle.recv_src_idx, {DType::kInt32},
                            {{"N", kAnySize}}, dev);
      !e.ok())
    return e;
  const int64_t N = a.handle.recv_src_idx.shape[0];
  if (auto e = check_tensor(op, "x", a.x, {DType::kBFloat16}, {{"N", N}, {"H", kAnySize}}, dev);
      !e.ok())
    return e;
  if (auto e = check_rows_aligned(op, "x", a.x); !e.ok()) return e;
  const int64_t H = a.x.shape[1];
  if (auto e = check_tensor(op, "combined_x", a.combined_x, {DType::kBFloat16},
                            {{"T", kAnySize}, {"H", H}}, dev);
      !e.ok())
    return e;
  if (auto e = check_rows_aligned(op, "combined_x", a.combined_x); !e.ok()) return e;
  const int64_t T = a.combined_x.shape[0];
  if (auto e = check_handle_routing(op, a.handle, T, R, dev); !e.ok()) return e;
  if (a.handle.num_recv_tokens > N)
    return invalid(op, "handle.num_recv_tokens",
                   "expected at most the " + std::to_string(N) + " rows of recv_src_idx, got " +
                       std::to_string(a.handle.num_recv_tokens));
  if (auto e = check_tensor(op, "topk_weights", a.topk_weights, {DType::kFloat32},
                            {{"N", N}, {"K", kAnySize}}, dev, /*optional=*/true);
      !e.ok())
    return e;
  if (a.topk_weights.defined()) {
    const int64_t K = a.topk_weights.shape[1];
    if (K < 1 || K > kMaxNormalTopk)
      return invalid(op, "topk_weights",
                     "expected K in [1, " + std::to_string(kMaxNormalTopk) + "], got shape " +
                         shape_string(a.topk_weights));
    if (auto e = check_tensor(op, "combined_topk_weights", a.combined_topk_weights,
                              {DType::kFloat32}, {{"T", T}, {"K", K}}, dev);
        !e.ok())
      return e;
  }
  if (a.bias1.defined() && !a.bias0.defined())
    return invalid(op, "bias0", "expected bias0 when bias1 is given, got none");
  for (auto [name, bias] : {std::pair{"bias0", &a.bias0}, std::pair{"bias1", &a.bias1}}) {
    if (auto e = check_tensor(op, name, *bias, {DType::kBFloat16}, {{"T", T}, {"H", H}}, dev, true);
        !e.ok())
      return e;
    if (auto e = check_rows_aligned(op, name, *bias); !e.ok()) return e;
  }
  return Error::success();
}

namespace {

Error check_low_latency_shape(const char* op, int32_t n_max, int32_t hidden, int32_t num_experts,
                              int32_t R) {
  if (n_max < 1 || n_max > kMaxLowLatencyTokens)
    return invalid(op, "num_max_dispatch_tokens_per_rank",
                   "expected a value in [1, " + std::to_string(kMaxLowLatencyTokens) + "], got " +
                       std::to_string(n_max));
  if (hidden < kFp8GroupSize || hidden % kFp8GroupSize != 0)
    return invalid(op, "hidden",
                   "expected a positive multiple of 128, got " + std::to_string(hidden));
  return check_num_experts(op, num_experts, R);
}

Error check_low_latency_handle(const char* op, const LowLatencyHandle& h, int32_t R,
                               DeviceKind dev) {
  if (auto e = check_low_latency_shape(op, h.num_max_dispatch_tokens_per_rank, h.hidden,
                                       h.num_experts, R);
      !e.ok())
    return e;
  const int64_t E_local = h.num_experts / R;
  const int64_t rows = int64_t{R} * h.num_max_dispatch_tokens_per_rank;
  if (auto e = check_tensor(op, "handle.src_info", h.src_info, {DType::kInt32},
                            {{"E_local", E_local}, {"R*N_max", rows}}, dev);
      !e.ok())
    return e;
  if (auto e = check_contiguous(op, "handle.src_info", h.src_info); !e.ok()) return e;
  if (auto e = check_tensor(op, "handle.layout_range", h.layout_range, {DType::kInt64},
                            {{"E_local", E_local}, {"R", R}}, dev);
      !e.ok())
    return e;
  return check_contiguous(op, "handle.layout_range", h.layout_range);
}

}  // namespace

Error validate_low_latency_dispatch_args(const LowLatencyDispatchArgs& a, const Topology& topo,
                                         DeviceKind dev) {
  const char* op = "low_latency_dispatch";
  const int32_t R = topo.num_ranks;
  if (auto e =
          check_tensor(op, "x", a.x, {DType::kBFloat16}, {{"T", kAnySize}, {"H", kAnySize}}, dev);
      !e.ok())
    return e;
  if (auto e = check_rows_aligned(op, "x", a.x); !e.ok()) return e;
  const int64_t T = a.x.shape[0];
  const int32_t H = static_cast<int32_t>(a.x.shape[1]);
  if (auto e = check_low_latency_shape(op, a.num_max_dispatch_tokens_per_rank, H, a.num_experts, R);
      !e.ok())
    return e;
  if (T > a.num_max_dispatch_tokens_per_rank)
    return invalid(op, "x",
                   "expected at most num_max_dispatch_tokens_per_rank=" +
                       std::to_string(a.num_max_dispatch_tokens_per_rank) + " rows, got " +
                       std::to_string(T));
  if (a.use_ue8m0 && !(a.round_scale && a.use_fp8))
    return invalid(op, "use_ue8m0",
                   "expected use_fp8=true and round_scale=true with use_ue8m0, got use_fp8=" +
                       std::to_string(a.use_fp8) + " round_scale=" + std::to_string(a.round_scale));
  if (a.use_ue8m0 && H % (4 * kFp8GroupSize) != 0)
    return invalid(op, "x",
                   "expected a hidden size that is a multiple of 512 with use_ue8m0, got " +
                       std::to_string(H));
  if (auto e =
          check_tensor(op, "topk_idx", a.topk_idx, kIndexTypes, {{"T", T}, {"K", kAnySize}}, dev);
      !e.ok())
    return e;
  const int64_t K = a.topk_idx.shape[1];
  if (K < 1 || K > kMaxLowLatencyTopk)
    return invalid(op, "topk_idx",
                   "expected K in [1, " + std::to_string(kMaxLowLatencyTopk) + "], got shape " +
                       shape_string(a.topk_idx));
  if (auto e = check_topk_values(op, "topk_idx", a.topk_idx, a.num_experts); !e.ok()) return e;
  const int64_t E_local = a.num_experts / R;
  const int64_t rows = int64_t{R} * a.num_max_dispatch_tokens_per_rank;
  if (auto e = check_tensor(op, "cumulative_local_expert_recv_stats",
                            a.cumulative_local_expert_recv_stats, {DType::kInt32},
                            {{"E_local", E_local}}, dev, true);
      !e.ok())
    return e;
  if (auto e = check_tensor(op, "dispatch_wait_recv_cost_stats", a.dispatch_wait_recv_cost_stats,
                            {DType::kInt64}, {{"R", R}}, dev, true);
      !e.ok())
    return e;
  const DType out_dtype = a.use_fp8 ? DType::kFloat8E4M3 : DType::kBFloat16;
  if (auto e = check_tensor(op, "packed_recv_x", a.packed_recv_x, {out_dtype},
                            {{"E_local", E_local}, {"R*N_max", rows}, {"H", H}}, dev);
      !e.ok())
    return e;
  if (auto e = check_contiguous(op, "packed_recv_x", a.packed_recv_x); !e.ok()) return e;
  if (a.use_fp8) {
    const bool ue8m0 = a.use_ue8m0;
    const int64_t groups = ue8m0 ? H / (4 * kFp8GroupSize) : H / kFp8GroupSize;
    const TensorView& s = a.packed_recv_x_scales;
    if (auto e = check_tensor(
            op, "packed_recv_x_scales", s, {ue8m0 ? DType::kInt32 : DType::kFloat32},
            {{"E_local", E_local}, {"R*N_max", rows}, {ue8m0 ? "H/512" : "H/128", groups}}, dev);
        !e.ok())
      return e;
    if (s.strides[0] != rows * groups || s.strides[1] != 1 || s.strides[2] != rows)
      return invalid(op, "packed_recv_x_scales",
                     "expected column-major storage in the last two dimensions, strides [" +
                         std::to_string(rows * groups) + ", 1, " + std::to_string(rows) +
                         "], got [" + std::to_string(s.strides[0]) + ", " +
                         std::to_string(s.strides[1]) + ", " + std::to_string(s.strides[2]) + "]");
  } else if (a.packed_recv_x_scales.defined()) {
    return invalid(
        op, "packed_recv_x_scales",
        "expected none with use_fp8=false, got shape " + shape_string(a.packed_recv_x_scales));
  }
  if (auto e = check_tensor(op, "packed_recv_count", a.packed_recv_count, {DType::kInt32},
                            {{"E_local", E_local}}, dev);
      !e.ok())
    return e;
  LowLatencyHandle h = a.handle;
  h.num_max_dispatch_tokens_per_rank = a.num_max_dispatch_tokens_per_rank;
  h.hidden = H;
  h.num_experts = a.num_experts;
  return check_low_latency_handle(op, h, R, dev);
}

Error validate_low_latency_combine_args(const LowLatencyCombineArgs& a, const Topology& topo,
                                        DeviceKind dev) {
  const char* op = "low_latency_combine";
  const int32_t R = topo.num_ranks;
  if (a.use_logfmt)
    return Error(
        ErrorCode::kNotSupported,
        std::string(op) + ": use_logfmt: LogFMT combine is not supported yet (expected false)");
  if (auto e = check_low_latency_handle(op, a.handle, R, dev); !e.ok()) return e;
  const int32_t H = a.handle.hidden;
  const int64_t E_local = a.handle.num_experts / R;
  const int64_t rows = int64_t{R} * a.handle.num_max_dispatch_tokens_per_rank;
  if (!a.zero_copy) {
    if (auto e = check_tensor(op, "x", a.x, {DType::kBFloat16},
                              {{"E_local", E_local}, {"R*N_max", rows}, {"H", H}}, dev);
        !e.ok())
      return e;
    if (auto e = check_contiguous(op, "x", a.x); !e.ok()) return e;
    if (auto e = check_rows_aligned(op, "x", a.x); !e.ok()) return e;
  }
  if (auto e = check_tensor(op, "topk_idx", a.topk_idx, kIndexTypes,
                            {{"T", kAnySize}, {"K", kAnySize}}, dev);
      !e.ok())
    return e;
  const int64_t T = a.topk_idx.shape[0];
  const int64_t K = a.topk_idx.shape[1];
  if (T > a.handle.num_max_dispatch_tokens_per_rank)
    return invalid(op, "topk_idx",
                   "expected at most num_max_dispatch_tokens_per_rank=" +
                       std::to_string(a.handle.num_max_dispatch_tokens_per_rank) + " rows, got " +
                       std::to_string(T));
  if (K < 1 || K > kMaxLowLatencyTopk)
    return invalid(op, "topk_idx",
                   "expected K in [1, " + std::to_string(kMaxLowLatencyTopk) + "], got shape " +
                       shape_string(a.topk_idx));
  if (auto e = check_topk_values(op, "topk_idx", a.topk_idx, a.handle.num_experts); !e.ok())
    return e;
  if (auto e = check_tensor(op, "topk_weights", a.topk_weights, {DType::kFloat32},
                            {{"T", T}, {"K", K}}, dev);
      !e.ok())
    return e;
  if (auto e = check_tensor(op, "out", a.out, {DType::kBFloat16}, {{"T", T}, {"H", H}}, dev);
      !e.ok())
    return e;
  if (auto e = check_rows_aligned(op, "out", a.out); !e.ok()) return e;
  return check_tensor(op, "combine_wait_recv_cost_stats", a.combine_wait_recv_cost_stats,
                      {DType::kInt64}, {{"R", R}}, dev, true);
}

}  // namespace epcomm::core
