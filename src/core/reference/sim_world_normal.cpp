// CPU reference of layout, normal dispatch and normal combine (semantics.md sections 1-3).
#include <algorithm>
#include <cstring>
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

// Routing derived from every rank's is_token_in_rank [T_s, R]:
// send_count[s][d] tokens go from s to d; prefix[i][d] = sum over s <= i of send_count[s][d].
struct Routing {
  std::vector<std::vector<int64_t>> prefix;  // [R][R]
  std::vector<int64_t> num_recv;             // [R]
};

Routing make_routing(const std::vector<TensorView>& is_token_in_rank, int32_t R) {
  Routing r;
  r.prefix.assign(R, std::vector<int64_t>(R, 0));
  r.num_recv.assign(R, 0);
  for (int32_t s = 0; s < R; ++s) {
    const TensorView& in = is_token_in_rank[s];
    for (int32_t d = 0; d < R; ++d) {
      int64_t count = 0;
      for (int64_t t = 0; t < in.shape[0]; ++t) count += elem<uint8_t>(in, t, d) ? 1 : 0;
      r.prefix[s][d] = (s > 0 ? r.prefix[s - 1][d] : 0) + count;
    }
  }
  for (int32_t d = 0; d < R; ++d) r.num_recv[d] = r.prefix[R - 1][d];
  return r;
}

// Writes rank s's handle routing: rank_prefix_matrix, is_token_in_rank copy, send_slot.
void write_handle_routing(const Routing& routing, int32_t s, const TensorView& in,
                          const DispatchHandle& h, int32_t R) {
  for (int32_t i = 0; i < R; ++i)
    for (int32_t j = 0; j < R; ++j)
      elem<int32_t>(h.rank_prefix_matrix, i, j) = static_cast<int32_t>(routing.prefix[i][j]);
  for (int32_t d = 0; d < R; ++d) {
    int64_t slot = s > 0 ? routing.prefix[s - 1][d] : 0;
    for (int64_t t = 0; t < in.shape[0]; ++t) {
      const bool sent = elem<uint8_t>(in, t, d) != 0;
      if (h.is_token_in_rank.data != in.data) elem<uint8_t>(h.is_token_in_rank, t, d) = sent;
      elem<int32_t>(h.send_slot, t, d) = sent ? static_cast<int32_t>(slot++) : -1;
    }
  }
}

int64_t round_up(int64_t v, int64_t a) {
  return (v + a - 1) / a * a;
}

}  // namespace

Error SimWorld::check_rank_count(const char* op, size_t given) const {
  if (given != static_cast<size_t>(num_ranks_))
    return Error(ErrorCode::kInvalidArgument, std::string(op) + ": expected arguments for " +
                                                  std::to_string(num_ranks_) + " ranks, got " +
                                                  std::to_string(given));
  return Error::success();
}

Error SimWorld::get_dispatch_layout(int32_t rank, const LayoutArgs& a) const {
  const Topology topo = topology(rank);
  if (auto e = core::validate_layout_args(a, topo, DeviceKind::kCpu); !e.ok()) return e;
  const int32_t R = num_ranks_;
  const int64_t T = a.topk_idx.shape[0];
  const int64_t K = a.topk_idx.shape[1];
  const int32_t E_local = a.num_experts / R;
  for (int32_t r = 0; r < R; ++r) elem<int32_t>(a.num_tokens_per_rank, r) = 0;
  for (int32_t e = 0; e < a.num_experts; ++e) elem<int32_t>(a.num_tokens_per_expert, e) = 0;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<uint8_t> in_rank(R, 0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = index_at(a.topk_idx, t, k);
      if (e < 0) continue;
      ++elem<int32_t>(a.num_tokens_per_expert, e);
      in_rank[e / E_local] = 1;
    }
    for (int32_t r = 0; r < R; ++r) {
      elem<uint8_t>(a.is_token_in_rank, t, r) = in_rank[r];
      elem<int32_t>(a.num_tokens_per_rank, r) += in_rank[r];
    }
  }
  return Error::success();
}

Error SimWorld::dispatch_notify(std::span<const DispatchNotifyArgs> args,
                                std::vector<DispatchCounts>* counts) const {
  if (auto e = check_rank_count("dispatch_notify", args.size()); !e.ok()) return e;
  const int32_t R = num_ranks_;
  std::vector<TensorView> in(R);
  for (int32_t r = 0; r < R; ++r) {
    if (auto e = core::validate_dispatch_notify_args(args[r], topology(r), DeviceKind::kCpu);
        !e.ok())
      return with_rank(r, e);
    if (args[r].num_tokens_per_expert.shape[0] != args[0].num_tokens_per_expert.shape[0])
      return with_rank(r, Error(ErrorCode::kInvalidArgument,
                                "dispatch_notify: num_tokens_per_expert: expected " +
                                    std::to_string(args[0].num_tokens_per_expert.shape[0]) +
                                    " experts as on rank 0, got " +
                                    std::to_string(args[r].num_tokens_per_expert.shape[0])));
    in[r] = args[r].is_token_in_rank;
  }
  const Routing routing = make_routing(in, R);
  const int64_t E = args[0].num_tokens_per_expert.shape[0];
  const int64_t E_local = E / R;
  counts->assign(R, DispatchCounts{});
  for (int32_t d = 0; d < R; ++d) {
    write_handle_routing(routing, d, in[d], args[d].handle, R);
    DispatchCounts& c = (*counts)[d];
    c.num_recv_tokens = routing.num_recv[d];
    c.num_recv_tokens_per_expert.assign(E_local, 0);
    for (int64_t j = 0; j < E_local; ++j) {
      int64_t n = 0;
      for (int32_t s = 0; s < R; ++s)
        n += elem<int32_t>(args[s].num_tokens_per_expert, d * E_local + j);
      c.num_recv_tokens_per_expert[j] = static_cast<int32_t>(round_up(n, args[d].expert_alignment));
    }
  }
  return Error::success();
}

Error SimWorld::dispatch(std::span<const DispatchArgs> args) const {
  if (auto e = check_rank_count("dispatch", args.size()); !e.ok()) return e;
  const int32_t R = num_ranks_;
  std::vector<TensorView> in(R);
  for (int32_t r = 0; r < R; ++r)
    in[r] = args[r].cached ? args[r].handle.is_token_in_rank : args[r].is_token_in_rank;
  // Structure first (so that routing below only reads valid tensors), then row counts.
  for (int32_t r = 0; r < R; ++r) {
    if (auto e =
            core::validate_dispatch_args(args[r], topology(r), DeviceKind::kCpu, core::kAnySize);
        !e.ok())
      return with_rank(r, e);
    const DispatchArgs& a0 = args[0];
    const DispatchArgs& a = args[r];
    if (a.x.shape[1] != a0.x.shape[1] || a.x.dtype != a0.x.dtype)
      return with_rank(
          r, Error(ErrorCode::kInvalidArgument,
                   "dispatch: x: expected hidden " + std::to_string(a0.x.shape[1]) + " and dtype " +
                       dtype_name(a0.x.dtype) + " as on rank 0, got " +
                       std::to_string(a.x.shape[1]) + " and " + dtype_name(a.x.dtype)));
    if (a.cached != a0.cached || a.topk_idx.defined() != a0.topk_idx.defined() ||
        (!a.cached && a.num_experts != a0.num_experts))
      return with_rank(r,
                       Error(ErrorCode::kInvalidArgument,
                             "dispatch: expected the same mode (cached, topk, num_experts) as on "
                             "rank 0, got a different one"));
  }
  const Routing routing = make_routing(in, R);
  for (int32_t r = 0; r < R; ++r) {
    const DispatchArgs& a = args[r];
    const int64_t rows = a.recv_x.shape[0];
    if (a.num_worst_tokens > 0 && routing.num_recv[r] > a.num_worst_tokens)
      return with_rank(
          r, Error(ErrorCode::kInvalidArgument,
                   "dispatch: num_worst_tokens: expected at least the " +
                       std::to_string(routing.num_recv[r]) + " rows this rank receives, got " +
                       std::to_string(a.num_worst_tokens)));
    if (a.num_worst_tokens == 0 && rows != routing.num_recv[r])
      return with_rank(r,
                       Error(ErrorCode::kInvalidArgument,
                             "dispatch: recv_x: expected " + std::to_string(routing.num_recv[r]) +
                                 " rows (the received count), got " + std::to_string(rows)));
  }
  const int64_t H = args[0].x.shape[1];
  const int64_t row_bytes = H * static_cast<int64_t>(args[0].x.element_size());
  const bool fp8 = args[0].x.dtype == DType::kFloat8E4M3;
  const int64_t groups = H / core::kFp8GroupSize;
  for (int32_t s = 0; s < R; ++s)
    if (!args[s].cached) write_handle_routing(routing, s, in[s], args[s].handle, R);
  for (int32_t d = 0; d < R; ++d) {
    const DispatchArgs& out = args[d];
    const int64_t E_local = out.cached ? 0 : out.num_experts / R;
    int64_t row = 0;
    for (int32_t s = 0; s < R; ++s) {
      const DispatchArgs& src = args[s];
      for (int64_t t = 0; t < in[s].shape[0]; ++t, (void)0) {
        if (!elem<uint8_t>(in[s], t, d)) continue;
        std::memcpy(row_ptr(out.recv_x, row), row_ptr(src.x, t), row_bytes);
        if (fp8)
          for (int64_t g = 0; g < groups; ++g)
            elem<float>(out.recv_x_scales, row, g) = elem<float>(src.x_scales, t, g);
        if (!out.cached) elem<int32_t>(out.handle.recv_src_idx, row) = static_cast<int32_t>(t);
        if (src.topk_idx.defined()) {
          for (int64_t k = 0; k < src.topk_idx.shape[1]; ++k) {
            const int64_t e = index_at(src.topk_idx, t, k);
            const bool local = e >= 0 && e / E_local == d;
            set_index(out.recv_topk_idx, row, k, local ? e - d * E_local : -1);
            elem<float>(out.recv_topk_weights, row, k) =
                local ? elem<float>(src.topk_weights, t, k) : 0.0f;
          }
        }
        ++row;
      }
    }
    // Padding rows of worst-case outputs: no expert, zero weight, no source.
    for (int64_t pad = row; pad < out.recv_x.shape[0]; ++pad) {
      if (!out.cached) elem<int32_t>(out.handle.recv_src_idx, pad) = -1;
      if (out.recv_topk_idx.defined()) {
        for (int64_t k = 0; k < out.recv_topk_idx.shape[1]; ++k) {
          set_index(out.recv_topk_idx, pad, k, -1);
          elem<float>(out.recv_topk_weights, pad, k) = 0.0f;
        }
      }
    }
  }
  return Error::success();
}

Error SimWorld::combine(std::span<const CombineArgs> args) const {
  if (auto e = check_rank_count("combine", args.size()); !e.ok()) return e;
  const int32_t R = num_ranks_;
  for (int32_t r = 0; r < R; ++r) {
    if (auto e = core::validate_combine_args(args[r], topology(r), DeviceKind::kCpu); !e.ok())
      return with_rank(r, e);
    if (args[r].x.shape[1] != args[0].x.shape[1] ||
        args[r].topk_weights.defined() != args[0].topk_weights.defined())
      return with_rank(r,
                       Error(ErrorCode::kInvalidArgument,
                             "combine: x: expected hidden " + std::to_string(args[0].x.shape[1]) +
                                 " and the same topk_weights presence as on rank 0, got hidden " +
                                 std::to_string(args[r].x.shape[1])));
  }
  const int64_t H = args[0].x.shape[1];
  std::vector<float> acc(H);
  for (int32_t s = 0; s < R; ++s) {
    const CombineArgs& a = args[s];
    const int64_t T = a.combined_x.shape[0];
    const int64_t K = a.topk_weights.defined() ? a.topk_weights.shape[1] : 0;
    for (int64_t t = 0; t < T; ++t) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::vector<float> w(K, 0.0f);
      // Fixed order: ranks ascending, then bias0, then bias1 (semantics.md section 3).
      for (int32_t d = 0; d < R; ++d) {
        const int32_t slot = elem<int32_t>(a.handle.send_slot, t, d);
        if (!elem<uint8_t>(a.handle.is_token_in_rank, t, d) || slot < 0) continue;
        const CombineArgs& peer = args[d];
        if (slot >= peer.x.shape[0])
          return with_rank(s, Error(ErrorCode::kInvalidArgument,
                                    "combine: handle.send_slot: expected a row below " +
                                        std::to_string(peer.x.shape[0]) + " on rank " +
                                        std::to_string(d) + ", got " + std::to_string(slot)));
        for (int64_t h = 0; h < H; ++h)
          acc[h] += core::bf16_to_float(elem<uint16_t>(peer.x, slot, h));
        for (int64_t k = 0; k < K; ++k) w[k] += elem<float>(peer.topk_weights, slot, k);
      }
      for (const TensorView* bias : {&a.bias0, &a.bias1})
        if (bias->defined())
          for (int64_t h = 0; h < H; ++h)
            acc[h] += core::bf16_to_float(elem<uint16_t>(*bias, t, h));
      for (int64_t h = 0; h < H; ++h)
        elem<uint16_t>(a.combined_x, t, h) = core::float_to_bf16(acc[h]);
      for (int64_t k = 0; k < K; ++k) elem<float>(a.combined_topk_weights, t, k) = w[k];
    }
  }
  return Error::success();
}

}  // namespace epcomm::reference
