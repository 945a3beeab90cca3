// The low-latency operations of semantics.md sections 4-5 on a Buffer. Each validates every
// argument (shared core validation) and checks the buffer size before anything is launched.

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "core/low_latency_layout.h"
#include "core/validate.h"
#include "epcomm/size_hints.h"
#include "kernels/launch_knobs.h"
#include "runtime/buffer_impl.h"
#include "runtime/cuda_check.h"

namespace epcomm {
namespace {

using runtime::cuda_error;

Error check_low_latency_size(const Buffer::Impl& impl, const char* op, int32_t n_max,
                             int32_t hidden, int32_t num_experts) {
  const int64_t need =
      get_low_latency_buffer_size_hint(n_max, hidden, impl.topo.num_ranks, num_experts);
  if (need == 0)
    return Error(
        ErrorCode::kInvalidArgument,
        std::string(op) + ": expected positive N_max and hidden and num_experts a multiple of " +
            std::to_string(impl.topo.num_ranks) + " ranks, got N_max=" + std::to_string(n_max) +
            ", hidden=" + std::to_string(hidden) + ", num_experts=" + std::to_string(num_experts));
  if (impl.options.num_rdma_bytes < need)
    return Error(ErrorCode::kBufferTooSmall,
                 std::string(op) + ": num_rdma_bytes: expected at least " + std::to_string(need) +
                     " bytes for N_max=" + std::to_string(n_max) + ", hidden=" +
                     std::to_string(hidden) + ", num_experts=" + std::to_string(num_experts) +
                     ", got " + std::to_string(impl.options.num_rdma_bytes));
  return Error::success();
}

uint64_t low_latency_signature(int kind, int32_t n_max, int32_t hidden, int32_t experts,
                               int options) {
  return (uint64_t{0x11u} << 56) ^ (uint64_t(kind) << 52) ^ (uint64_t(options) << 48) ^
         (uint64_t(n_max) << 32) ^ (uint64_t(hidden) << 12) ^ uint64_t(experts);
}

kernels::LowLatencyCommon common(Buffer::Impl& impl, int32_t n_max, int32_t hidden, int32_t experts,
                                 core::OpId op, uint32_t* counters) {
  kernels::LowLatencyCommon c{};
  c.peer_bases = impl.peer_bases_device;
  c.region_offset = impl.layout.rdma_offset;
  c.layout = core::LowLatencyLayout::make(n_max, hidden, impl.topo.num_ranks, experts);
  c.num_ranks = impl.topo.num_ranks;
  c.rank = impl.topo.rank;
  c.num_experts = experts;
  c.experts_per_rank = experts / impl.topo.num_ranks;
  c.epoch_counter = impl.epochs + 4;
  c.pending_release = impl.epochs + 5;
  c.counters = counters;
  c.wait = impl.wait_context(op);
  return c;
}

// A call whose (N_max, hidden, E) differs from the previous LL call's moves every field of the
// halves. Stale tags of the old shape could then look like arrivals, so the halves are cleared
// between two barriers: after the first, no rank still uses the old shape; before the second
// returns, no rank starts writing the new one. The control area (flags, epochs) stays.
Error adopt_low_latency_shape(Buffer& buffer, Buffer::Impl& impl, int32_t n_max, int32_t hidden,
                              int32_t experts, cudaStream_t stream) {
  const uint64_t key = (uint64_t(uint32_t(n_max)) << 42) ^ (uint64_t(uint32_t(hidden)) << 16) ^
                       uint64_t(uint32_t(experts));
  if (impl.ll_shape_key == key) return Error::success();
  if (impl.ll_shape_key != 0) {
    if (auto e = buffer.barrier(stream); !e.ok()) return e;
    const auto l = core::LowLatencyLayout::make(n_max, hidden, impl.topo.num_ranks, experts);
    if (auto e =
            cuda_error(cudaMemsetAsync(impl.local_base + impl.layout.rdma_offset + l.halves_offset,
                                       0, 2 * l.half_bytes, stream),
                       "cudaMemsetAsync of the low-latency halves");
        !e.ok())
      return e;
    if (auto e = buffer.barrier(stream); !e.ok()) return e;
  }
  impl.ll_shape_key = key;
  return Error::success();
}

// Reserves the hook slot of the next LL call: its receive reads the epoch from there.
Buffer::Impl::PendingHook& next_slot(Buffer::Impl& impl, uint64_t** hook_epoch) {
  const int64_t id = impl.next_hook_id++;
  auto& slot = impl.pending[id % Buffer::Impl::kHookSlots];
  slot = Buffer::Impl::PendingHook{};
  slot.id = id;
  *hook_epoch = impl.hook_epochs + id % Buffer::Impl::kHookSlots;
  return slot;
}

// Without a hook: one kernel sends and receives. With a hook: the send kernel now, and the
// receive parked in its slot until the hook runs.
template <class Params>
Error launch_or_park(Buffer::Impl& impl, Buffer::Impl::PendingHook& slot, bool return_hook,
                     LowLatencyHook* hook, const Params& p, cudaStream_t stream,
                     const kernels::LlLaunchers<Params>& launch, const char* what) {
  // EPCOMM_LL_TWO_KERNELS=1: the send and receive kernels back to back instead, for measuring
  // what the single kernel saves (docs/perf.md, low-latency v4).
  static const bool two_kernels = kernels::env_is("EPCOMM_LL_TWO_KERNELS", "1");
  if (!return_hook) {
    slot.id = -1;
    // EPCOMM_TRACE=1: the phase trace of this call, printed at the next synchronize.
    Params q = p;
    constexpr bool is_dispatch = std::is_same_v<Params, kernels::LowLatencyDispatchParams>;
    if (auto e = runtime::arm_low_latency_trace(
            is_dispatch ? impl.ll_dispatch_trace : impl.ll_combine_trace, impl.num_device_sms,
            stream, &q.c.trace);
        !e.ok())
      return e;
    if (!two_kernels) return cuda_error(launch.both(q, impl.num_device_sms, stream), what);
    if (auto e = cuda_error(launch.send(q, impl.num_device_sms, stream), what); !e.ok()) return e;
    return cuda_error(launch.recv(q, impl.num_device_sms, stream), what);
  }
  if (auto e = cuda_error(launch.send(p, impl.num_device_sms, stream), what); !e.ok()) {
    slot.id = -1;
    return e;
  }
  if constexpr (std::is_same_v<Params, kernels::LowLatencyDispatchParams>) {
    slot.dispatch = true;
    slot.dispatch_params = p;
  } else {
    slot.dispatch = false;
    slot.combine_params = p;
  }
  hook->id = slot.id;
  return Error::success();
}

}  // namespace

Error Buffer::low_latency_dispatch(const LowLatencyDispatchArgs& args, StreamHandle stream,
                                   LowLatencyHook* hook) {
  const char* op = "low_latency_dispatch";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (args.return_recv_hook && hook == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 "low_latency_dispatch: hook: expected a pointer with return_recv_hook, got null");
  if (auto e = core::validate_low_latency_dispatch_args(args, impl_->topo, DeviceKind::kCuda);
      !e.ok())
    return e;
  const int32_t H = static_cast<int32_t>(args.x.shape[1]);
  if (auto e = check_low_latency_size(*impl_, op, args.num_max_dispatch_tokens_per_rank, H,
                                      args.num_experts);
      !e.ok())
    return e;
  runtime::DeviceGuard guard(impl_->device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (auto e = adopt_low_latency_shape(*this, *impl_, args.num_max_dispatch_tokens_per_rank, H,
                                       args.num_experts, s);
      !e.ok())
    return e;
  uint64_t* hook_epoch = nullptr;
  auto& slot = next_slot(*impl_, &hook_epoch);
  kernels::LowLatencyDispatchParams p{};
  p.c = common(*impl_, args.num_max_dispatch_tokens_per_rank, H, args.num_experts,
               core::OpId::kLowLatencyDispatch, impl_->block_counters + 4);
  p.c.hook_epoch = hook_epoch;
  p.c.signature =
      low_latency_signature(1, args.num_max_dispatch_tokens_per_rank, H, args.num_experts,
                            args.use_fp8 | (args.round_scale << 1) | (args.use_ue8m0 << 2));
  p.x = static_cast<const uint16_t*>(args.x.data);
  p.x_stride = args.x.strides[0];
  p.num_tokens = args.x.shape[0];
  p.topk_idx = args.topk_idx.data;
  p.topk_is_int64 = args.topk_idx.dtype == DType::kInt64;
  p.topk_stride = args.topk_idx.strides[0];
  p.topk_stride_k = args.topk_idx.strides[1];
  p.topk = static_cast<int32_t>(args.topk_idx.shape[1]);
  p.use_fp8 = args.use_fp8;
  p.round_scale = args.round_scale;
  p.use_ue8m0 = args.use_ue8m0;
  p.packed_recv_x = static_cast<uint8_t*>(args.packed_recv_x.data);
  p.packed_recv_scales = args.packed_recv_x_scales.data;
  p.packed_recv_count = static_cast<int32_t*>(args.packed_recv_count.data);
  p.src_info = static_cast<int32_t*>(args.handle.src_info.data);
  p.layout_range = static_cast<int64_t*>(args.handle.layout_range.data);
  p.cumulative_stats = static_cast<int32_t*>(args.cumulative_local_expert_recv_stats.data);
  p.wait_stats = static_cast<int64_t*>(args.dispatch_wait_recv_cost_stats.data);
  // EPCOMM_LL_PRELOAD=0: a token's cast loads after its header work, for A/B (docs/perf.md,
  // LL v11).
  static const bool preload = !kernels::env_is("EPCOMM_LL_PRELOAD", "0");
  p.preload_x = preload;
  // The FP8 cast by the hardware conversion (cvt.rn.satfinite; bit-identical to the software
  // one); EPCOMM_LL_HW_CVT=0: the software conversion, for A/B (docs/perf.md, LL v12).
  static const bool hw_cvt = !kernels::env_is("EPCOMM_LL_HW_CVT", "0");
  p.hw_fp8_cvt = hw_cvt;
  return launch_or_park(*impl_, slot, args.return_recv_hook, hook, p, s,
                        kernels::ll_dispatch_launchers(), "LL dispatch launch");
}

Error Buffer::low_latency_combine(const LowLatencyCombineArgs& args, StreamHandle stream,
                                  LowLatencyHook* hook) {
  const char* op = "low_latency_combine";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (args.return_recv_hook && hook == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 "low_latency_combine: hook: expected a pointer with return_recv_hook, got null");
  if (auto e = core::validate_low_latency_combine_args(args, impl_->topo, DeviceKind::kCuda);
      !e.ok())
    return e;
  const auto& h = args.handle;
  if (auto e = check_low_latency_size(*impl_, op, h.num_max_dispatch_tokens_per_rank, h.hidden,
                                      h.num_experts);
      !e.ok())
    return e;
  runtime::DeviceGuard guard(impl_->device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (auto e = adopt_low_latency_shape(*this, *impl_, h.num_max_dispatch_tokens_per_rank, h.hidden,
                                       h.num_experts, s);
      !e.ok())
    return e;
  uint64_t* hook_epoch = nullptr;
  auto& slot = next_slot(*impl_, &hook_epoch);
  kernels::LowLatencyCombineParams p{};
  p.c = common(*impl_, h.num_max_dispatch_tokens_per_rank, h.hidden, h.num_experts,
               core::OpId::kLowLatencyCombine, impl_->block_counters + 6);
  p.c.hook_epoch = hook_epoch;
  // Pre-reduced on the expert rank (docs/perf.md, LL v14, v17) without a hook: its send waits for
  // every rank's weights messages, which a hook's send kernel should not. Its send lists the
  // received rows in each block's shared memory: only where that fits. The default at 2 ranks,
  // where it sends half the bytes and measured 30.1-30.3 against 36.3 us (LL v24); at 3+ ranks its
  // float32 partials save ~10 % of the bytes or less and it measured slower (LL v23: 48.8 against
  // 43.4 us at 3 ranks, 67.6 against 47.2 at 4). EPCOMM_LL_PREREDUCE=1 / 0 forces it on (up to 8
  // ranks) / off. Part of the signature, so ranks that differ are reported.
  static const bool prereduce_on = kernels::env_is("EPCOMM_LL_PREREDUCE", "1");
  static const bool prereduce_off = kernels::env_is("EPCOMM_LL_PREREDUCE", "0");
  const int32_t R = impl_->topo.num_ranks;
  const bool prereduce =
      !prereduce_off && (prereduce_on ? R <= 8 : R == 2) && !args.return_recv_hook &&
      kernels::ll_reduced_index_bytes(R, h.num_max_dispatch_tokens_per_rank,
                                      static_cast<int32_t>(args.topk_idx.shape[1])) <=
          kernels::kLlReducedIndexMaxBytes;
  p.c.signature = low_latency_signature(2, h.num_max_dispatch_tokens_per_rank, h.hidden,
                                        h.num_experts, prereduce ? 1 : 0);
  p.x = args.zero_copy
            ? reinterpret_cast<const uint16_t*>(impl_->local_base + impl_->layout.rdma_offset +
                                                p.c.layout.combine_send_offset)
            : static_cast<const uint16_t*>(args.x.data);
  p.src_info = static_cast<const int32_t*>(h.src_info.data);
  p.layout_range = static_cast<const int64_t*>(h.layout_range.data);
  p.topk_idx = args.topk_idx.data;
  p.topk_is_int64 = args.topk_idx.dtype == DType::kInt64;
  p.topk_stride = args.topk_idx.strides[0];
  p.topk_stride_k = args.topk_idx.strides[1];
  p.topk = static_cast<int32_t>(args.topk_idx.shape[1]);
  p.num_tokens = args.topk_idx.shape[0];
  p.topk_weights = static_cast<const float*>(args.topk_weights.data);
  p.weights_stride = args.topk_weights.strides[0];
  p.weights_stride_k = args.topk_weights.strides[1];
  p.out = static_cast<uint16_t*>(args.out.data);
  p.out_stride = args.out.strides[0];
  p.wait_stats = static_cast<int64_t*>(args.combine_wait_recv_cost_stats.data);
  // EPCOMM_LL_COMBINE_PAIRS=0: one item per warp pass in the receive, for A/B (docs/perf.md,
  // LL v10).
  static const bool pairs = !kernels::env_is("EPCOMM_LL_COMBINE_PAIRS", "0");
  p.pair_items = pairs;
  p.diag = 0;
#ifdef EPCOMM_DIAGNOSTICS
  // Diagnostic builds only, EPCOMM_LL_DIAG (pre-reduced combine; results are wrong): bit 0 skips
  // the loads of x, bit 1 writes every partial into this rank's own half (docs/perf.md, LL v14).
  static const uint32_t diag = static_cast<uint32_t>(kernels::env_override("EPCOMM_LL_DIAG"));
  p.diag = diag;
#endif
  if (prereduce)
    return launch_or_park(*impl_, slot, false, hook, p, s, kernels::ll_combine_reduced_launchers(),
                          "LL combine launch");
  return launch_or_park(*impl_, slot, args.return_recv_hook, hook, p, s,
                        kernels::ll_combine_launchers(), "LL combine launch");
}

Error Buffer::run_low_latency_hook(const LowLatencyHook& hook, StreamHandle stream) {
  if (auto e = impl_->usable("run_low_latency_hook"); !e.ok()) return e;
  auto& slot = impl_->pending[(hook.id >= 0 ? hook.id : 0) % Impl::kHookSlots];
  if (hook.id < 0 || slot.id != hook.id)
    return Error(ErrorCode::kInvalidArgument,
                 "run_low_latency_hook: hook: expected a pending receive, got id " +
                     std::to_string(hook.id) + " (already run, or more than " +
                     std::to_string(Impl::kHookSlots) + " calls ago)");
  runtime::DeviceGuard guard(impl_->device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  slot.id = -1;
  if (slot.dispatch)
    return cuda_error(
        kernels::ll_dispatch_launchers().recv(slot.dispatch_params, impl_->num_device_sms, s),
        "LL dispatch receive launch");
  return cuda_error(
      kernels::ll_combine_launchers().recv(slot.combine_params, impl_->num_device_sms, s),
      "LL combine receive launch");
}

Error Buffer::get_next_low_latency_combine_buffer(const LowLatencyHandle& handle,
                                                  TensorView* view) {
  const char* op = "get_next_low_latency_combine_buffer";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (view == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 std::string(op) + ": view: expected a pointer, got null");
  if (auto e = check_low_latency_size(*impl_, op, handle.num_max_dispatch_tokens_per_rank,
                                      handle.hidden, handle.num_experts);
      !e.ok())
    return e;
  const int32_t R = impl_->topo.num_ranks;
  const auto l = core::LowLatencyLayout::make(handle.num_max_dispatch_tokens_per_rank,
                                              handle.hidden, R, handle.num_experts);
  *view = TensorView::contiguous(
      impl_->local_base + impl_->layout.rdma_offset + l.combine_send_offset, DType::kBFloat16,
      {handle.num_experts / R, int64_t{R} * handle.num_max_dispatch_tokens_per_rank, handle.hidden},
      DeviceKind::kCuda, impl_->device);
  return Error::success();
}

Error Buffer::clean_low_latency_buffer(int32_t n_max, int32_t hidden, int32_t num_experts,
                                       StreamHandle stream) {
  const char* op = "clean_low_latency_buffer";
  if (auto e = impl_->usable(op); !e.ok()) return e;
  if (auto e = check_low_latency_size(*impl_, op, n_max, hidden, num_experts); !e.ok()) return e;
  // Collective (every rank calls it): flags, tags and the LL epoch restart from zero on every
  // rank, between two barriers so that no rank writes into a peer's region while it is cleared.
  runtime::DeviceGuard guard(impl_->device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (auto e = barrier(stream); !e.ok()) return e;
  if (auto e = cuda_error(cudaMemsetAsync(impl_->local_base + impl_->layout.rdma_offset, 0,
                                          impl_->layout.rdma_bytes, s),
                          "cudaMemsetAsync of the low-latency region");
      !e.ok())
    return e;
  // The LL epoch and the release a single kernel left pending (the flags it would set are
  // cleared above).
  if (auto e = cuda_error(cudaMemsetAsync(impl_->epochs + 4, 0, 2 * sizeof(uint64_t), s),
                          "cudaMemsetAsync of the LL epoch");
      !e.ok())
    return e;
  impl_->ll_shape_key = 0;
  return barrier(stream);
}

}  // namespace epcomm
