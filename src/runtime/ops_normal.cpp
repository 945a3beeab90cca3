// Normal (high-throughput) operations: layout, count exchange, dispatch, combine
// (semantics.md sections 1-3). Every argument is validated before anything is launched.
#include <cstring>
#include <string>

#include "core/normal_layout.h"
#include "core/numeric.h"
#include "core/validate.h"
#include "kernels/intranode_combine.h"
#include "kernels/intranode_dispatch.h"
#include "kernels/layout.h"
#include "kernels/normal_launch_policy.h"
#include "kernels/notify.h"
#include "runtime/buffer_impl.h"
#include "runtime/combine_copy.h"
#include "runtime/cuda_check.h"

namespace epcomm {
namespace {

using runtime::cuda_error;

cudaStream_t as_stream(StreamHandle s) {
  return static_cast<cudaStream_t>(s);
}

Error check_num_sms(const Buffer::Impl& impl, const char* op, const Config& c) {
  if (c.num_sms > impl.num_device_sms)
    return Error(ErrorCode::kInvalidArgument,
                 std::string(op) + ": config.num_sms: expected at most the " +
                     std::to_string(impl.num_device_sms) + " multiprocessors of the device, got " +
                     std::to_string(c.num_sms));
  return Error::success();
}

Error single_node_only(const Buffer::Impl& impl, const char* op) {
  if (!impl.topo.single_node())
    return Error(ErrorCode::kNotSupported, std::string(op) + ": multi-node is not supported yet");
  return Error::success();
}

// Launches the count exchange and the send-slot scan; `host` null means nobody waits.
Error launch_count_exchange(Buffer::Impl& impl, const TensorView& per_rank,
                            const TensorView& per_expert, const TensorView& in_rank,
                            int32_t alignment, const DispatchHandle& h, bool host,
                            cudaStream_t stream) {
  kernels::NotifyParams n{};
  n.num_tokens_per_rank = static_cast<const int32_t*>(per_rank.data);
  n.num_tokens_per_expert = static_cast<const int32_t*>(per_expert.data);
  n.num_ranks = impl.topo.num_ranks;
  n.rank = impl.topo.rank;
  n.num_experts = static_cast<int32_t>(per_expert.shape[0]);
  n.expert_alignment = alignment;
  n.peer_bases = impl.peer_bases_device;
  n.signal_offset = impl.layout.signal_offset;
  n.epoch_counter = impl.epochs + 1;
  n.host_ticket = host ? ++impl.notify_ticket : 0;
  n.rank_prefix_matrix = static_cast<int32_t*>(h.rank_prefix_matrix.data);
  n.host = host ? impl.notify_device : nullptr;
  n.wait = impl.wait_context(core::OpId::kDispatchNotify);
  if (auto e = cuda_error(kernels::launch_notify(n, stream), "notify kernel launch"); !e.ok())
    return e;
  kernels::SlotParams sp{};
  sp.is_token_in_rank = static_cast<const uint8_t*>(in_rank.data);
  sp.is_token_in_rank_copy = h.is_token_in_rank.data != in_rank.data
                                 ? static_cast<uint8_t*>(h.is_token_in_rank.data)
                                 : nullptr;
  sp.rank_prefix_matrix = static_cast<const int32_t*>(h.rank_prefix_matrix.data);
  sp.send_slot = static_cast<int32_t*>(h.send_slot.data);
  sp.num_tokens = in_rank.shape[0];
  sp.num_ranks = impl.topo.num_ranks;
  sp.rank = impl.topo.rank;
  return cuda_error(kernels::launch_send_slots(sp, stream), "send-slot kernel launch");
}

}  // namespace

Error Buffer::get_dispatch_layout(const LayoutArgs& args, StreamHandle stream) {
  const char* op = "get_dispatch_layout";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (auto e = core::validate_layout_args(args, impl_->topo, DeviceKind::kCuda); !e.ok()) return e;
  if (auto e = single_node_only(*impl_, op); !e.ok()) return e;
  runtime::DeviceGuard guard(impl_->device);
  kernels::LayoutParams p{};
  p.topk_idx = args.topk_idx.data;
  p.topk_is_int64 = args.topk_idx.dtype == DType::kInt64;
  p.num_tokens = args.topk_idx.shape[0];
  p.topk = args.topk_idx.shape[1];
  p.stride_token = args.topk_idx.strides[0];
  p.stride_k = args.topk_idx.strides[1];
  p.num_experts = args.num_experts;
  p.num_ranks = impl_->topo.num_ranks;
  p.num_tokens_per_rank = static_cast<int32_t*>(args.num_tokens_per_rank.data);
  p.num_tokens_per_expert = static_cast<int32_t*>(args.num_tokens_per_expert.data);
  p.is_token_in_rank = static_cast<uint8_t*>(args.is_token_in_rank.data);
  p.report = impl_->wait_context(core::OpId::kLayout);
  return cuda_error(kernels::launch_layout(p, as_stream(stream)), "layout kernel launch");
}

Error Buffer::dispatch_notify(const DispatchNotifyArgs& args, DispatchCounts* counts,
                              StreamHandle stream) {
  const char* op = "dispatch_notify";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (counts == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 "dispatch_notify: counts: expected a pointer, got null");
  if (auto e = core::validate_dispatch_notify_args(args, impl_->topo, DeviceKind::kCuda); !e.ok())
    return e;
  if (auto e = single_node_only(*impl_, op); !e.ok()) return e;
  runtime::DeviceGuard guard(impl_->device);
  if (auto e = launch_count_exchange(*impl_, args.num_tokens_per_rank, args.num_tokens_per_expert,
                                     args.is_token_in_rank, args.expert_alignment, args.handle,
                                     true, as_stream(stream));
      !e.ok())
    return e;
  // The single host wait of normal dispatch: the receive counts, through mapped memory.
  const uint64_t epoch = impl_->notify_ticket;
  auto* host = impl_->notify_host;
  if (auto e = impl_->host_wait(
          op, [&] { return reinterpret_cast<volatile uint64_t*>(&host->epoch)[0] >= epoch; });
      !e.ok())
    return e;
  const int32_t E_local =
      static_cast<int32_t>(args.num_tokens_per_expert.shape[0]) / impl_->topo.num_ranks;
  counts->num_recv_tokens = reinterpret_cast<volatile int64_t*>(&host->num_recv_tokens)[0];
  counts->num_recv_tokens_per_expert.assign(host->per_expert, host->per_expert + E_local);
  const int32_t R = impl_->topo.num_ranks;
  if (args.handle.rank_prefix_matrix_host.defined())
    std::memcpy(args.handle.rank_prefix_matrix_host.data, host->matrix, sizeof(int32_t) * R * R);
  return Error::success();
}

Error Buffer::dispatch(const DispatchArgs& args, StreamHandle stream) {
  const char* op = "dispatch";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  const int64_t rows =
      args.num_worst_tokens > 0 ? args.num_worst_tokens : args.handle.num_recv_tokens;
  if (auto e = core::validate_dispatch_args(args, impl_->topo, DeviceKind::kCuda, rows); !e.ok())
    return e;
  if (auto e = single_node_only(*impl_, op); !e.ok()) return e;
  if (auto e = check_num_sms(*impl_, op, args.config); !e.ok()) return e;
  const int32_t R = impl_->topo.num_ranks;
  const int64_t H = args.x.shape[1];
  const int64_t row_bytes = H * static_cast<int64_t>(args.x.element_size());
  const bool fp8 = args.x.dtype == DType::kFloat8E4M3;
  const int32_t G = fp8 ? static_cast<int32_t>(H / core::kFp8GroupSize) : 0;
  const int32_t K = args.topk_idx.defined() ? static_cast<int32_t>(args.topk_idx.shape[1]) : 0;
  const auto region = core::NormalRegionLayout::make(impl_->options.num_nvl_bytes);
  const auto area = core::NormalArea::make(region.dispatch_bytes, row_bytes, G, K, true);
  if (args.num_worst_tokens > area.capacity || rows > area.capacity)
    return Error(ErrorCode::kBufferTooSmall,
                 std::string(op) + ": num_nvl_bytes: the dispatch area (half of " +
                     std::to_string(impl_->options.num_nvl_bytes) + " bytes) holds " +
                     std::to_string(area.capacity) + " rows of " +
                     std::to_string(core::NormalArea::bytes_per_row(row_bytes, G, K, true)) +
                     " bytes, this call needs " + std::to_string(rows) + " rows");
  if (!args.cached && args.num_worst_tokens == 0) {
    // After dispatch_notify the host knows every rank's count, so every rank reaches the same
    // verdict and nobody is left waiting for a rank that refused.
    const auto* m = impl_->notify_host->matrix;
    for (int32_t d = 0; d < R; ++d) {
      const int64_t need = m[(R - 1) * R + d];
      if (need > area.capacity)
        return Error(ErrorCode::kBufferTooSmall,
                     std::string(op) + ": num_nvl_bytes: rank " + std::to_string(d) + " receives " +
                         std::to_string(need) + " rows but the dispatch area (half of " +
                         std::to_string(impl_->options.num_nvl_bytes) + " bytes) holds " +
                         std::to_string(area.capacity) + " rows of " +
                         std::to_string(core::NormalArea::bytes_per_row(row_bytes, G, K, true)) +
                         " bytes");
    }
  }
  runtime::DeviceGuard guard(impl_->device);
  const cudaStream_t s = as_stream(stream);
  if (!args.cached && args.num_worst_tokens > 0) {
    // Worst-case sizing: the count exchange runs on the GPU and nobody waits on the host.
    if (auto e = launch_count_exchange(*impl_, args.num_tokens_per_rank, args.num_tokens_per_expert,
                                       args.is_token_in_rank, args.expert_alignment, args.handle,
                                       false, s);
        !e.ok())
      return e;
  }
  kernels::DispatchParams p{};
  p.x = static_cast<const uint8_t*>(args.x.data);
  p.x_stride = args.x.strides[0] * static_cast<int64_t>(args.x.element_size());
  if (fp8) {
    p.x_scales = static_cast<const float*>(args.x_scales.data);
    p.scale_stride_token = args.x_scales.strides[0];
    p.scale_stride_group = args.x_scales.strides[1];
  }
  if (K > 0) {
    p.topk_idx = args.topk_idx.data;
    p.topk_is_int64 = args.topk_idx.dtype == DType::kInt64;
    p.topk_stride = args.topk_idx.strides[0];
    p.topk_stride_k = args.topk_idx.strides[1];
    p.topk_weights = static_cast<const float*>(args.topk_weights.data);
    p.weights_stride = args.topk_weights.strides[0];
    p.weights_stride_k = args.topk_weights.strides[1];
    p.experts_per_rank = args.num_experts / R;
  }
  p.is_token_in_rank = static_cast<const uint8_t*>(args.handle.is_token_in_rank.data);
  p.send_slot = static_cast<const int32_t*>(args.handle.send_slot.data);
  p.rank_prefix_matrix = static_cast<const int32_t*>(args.handle.rank_prefix_matrix.data);
  p.num_tokens = args.x.shape[0];
  p.recv_x = static_cast<uint8_t*>(args.recv_x.data);
  p.recv_x_stride = args.recv_x.strides[0] * static_cast<int64_t>(args.recv_x.element_size());
  p.recv_scales = fp8 ? static_cast<float*>(args.recv_x_scales.data) : nullptr;
  p.recv_topk_idx = K > 0 ? args.recv_topk_idx.data : nullptr;
  p.recv_topk_weights = K > 0 ? static_cast<float*>(args.recv_topk_weights.data) : nullptr;
  p.recv_src_idx = args.cached ? nullptr : static_cast<int32_t*>(args.handle.recv_src_idx.data);
  p.num_out_rows = args.recv_x.shape[0];
  p.peer_bases = impl_->peer_bases_device;
  p.area_offset = impl_->layout.nvl_offset + region.dispatch_offset;
  p.area = area;
  p.signal_offset = impl_->layout.signal_offset;
  p.counters = impl_->block_counters;
  p.epoch_counter = impl_->epochs + 2;
  p.signature = core::normal_signature(row_bytes, G, K, 0);
  p.num_ranks = R;
  p.rank = impl_->topo.rank;
  p.wait = impl_->wait_context(core::OpId::kDispatch);
  if (auto e = runtime::arm_dispatch_trace(impl_->dispatch_trace, args.config.num_sms, s, &p.trace);
      !e.ok())
    return e;
  return cuda_error(kernels::launch_intranode_dispatch(p, args.config.num_sms, s),
                    "dispatch kernel launch");
}

Error Buffer::combine(const CombineArgs& args, StreamHandle stream) {
  const char* op = "combine";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (auto e = core::validate_combine_args(args, impl_->topo, DeviceKind::kCuda); !e.ok()) return e;
  if (auto e = single_node_only(*impl_, op); !e.ok()) return e;
  if (auto e = check_num_sms(*impl_, op, args.config); !e.ok()) return e;
  const int32_t R = impl_->topo.num_ranks;
  const int64_t H = args.x.shape[1];
  const int32_t K =
      args.topk_weights.defined() ? static_cast<int32_t>(args.topk_weights.shape[1]) : 0;
  const auto region = core::NormalRegionLayout::make(impl_->options.num_nvl_bytes);
  const auto area = core::NormalArea::make(region.combine_bytes, H * 2, 0, K, false);
  const int64_t T = args.combined_x.shape[0];
  if (T > area.capacity)
    return Error(ErrorCode::kBufferTooSmall,
                 std::string(op) + ": num_nvl_bytes: the combine area (half of " +
                     std::to_string(impl_->options.num_nvl_bytes) + " bytes) holds " +
                     std::to_string(area.capacity) + " rows, fewer than this rank's " +
                     std::to_string(T) + " tokens");
  runtime::DeviceGuard guard(impl_->device);
  kernels::CombineParams p{};
  p.x = static_cast<const uint8_t*>(args.x.data);
  p.x_stride = args.x.strides[0] * 2;
  if (K > 0) {
    p.topk_weights = static_cast<const float*>(args.topk_weights.data);
    p.weights_stride = args.topk_weights.strides[0];
    p.weights_stride_k = args.topk_weights.strides[1];
    p.combined_topk_weights = static_cast<float*>(args.combined_topk_weights.data);
  }
  p.rank_prefix_matrix = static_cast<const int32_t*>(args.handle.rank_prefix_matrix.data);
  p.is_token_in_rank = static_cast<const uint8_t*>(args.handle.is_token_in_rank.data);
  p.send_slot = static_cast<const int32_t*>(args.handle.send_slot.data);
  p.num_tokens = T;
  if (args.bias0.defined()) {
    p.bias0 = static_cast<const uint16_t*>(args.bias0.data);
    p.bias0_stride = args.bias0.strides[0];
  }
  if (args.bias1.defined()) {
    p.bias1 = static_cast<const uint16_t*>(args.bias1.data);
    p.bias1_stride = args.bias1.strides[0];
  }
  p.combined_x = static_cast<uint16_t*>(args.combined_x.data);
  p.combined_stride = args.combined_x.strides[0];
  p.hidden = static_cast<int32_t>(H);
  p.peer_bases = impl_->peer_bases_device;
  p.area_offset = impl_->layout.nvl_offset + region.combine_offset;
  p.area = area;
  p.signal_offset = impl_->layout.signal_offset;
  p.counters = impl_->block_counters + 2;
  p.epoch_counter = impl_->epochs + 3;
  p.signature = core::normal_signature(H * 2, 0, K, 1);
  p.num_ranks = R;
  p.rank = impl_->topo.rank;
  p.wait = impl_->wait_context(core::OpId::kCombine);
  if (auto e = runtime::arm_combine_trace(impl_->combine_trace, args.config.num_sms,
                                          as_stream(stream), &p.trace);
      !e.ok())
    return e;
  // The copy engines send the rows where the handle says how many go where (v23).
  static const kernels::CombineKnobs knobs = kernels::combine_knobs_from_env();
  const kernels::CombineCopyPolicy copy = kernels::combine_copy_policy(
      R, args.config.num_sms, args.handle.rank_prefix_matrix_host.defined(),
      K == 0 || args.topk_weights.strides[1] == 1, knobs);
  if (copy.chunks > 0)
    return runtime::combine_by_copy_engines(*impl_, args, p, copy.chunks, args.config.num_sms,
                                            as_stream(stream));
  return cuda_error(kernels::launch_intranode_combine(p, args.config.num_sms, as_stream(stream)),
                    "combine kernel launch");
}

}  // namespace epcomm
