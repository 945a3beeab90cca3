// The low-latency operations of semantics.md sections 4-5 on a Buffer. Each validates every
// argument (shared core validation) and checks the buffer size before anything is launched.
// Their GPU kernels arrive with the low-latency issue; until then each reports "not implemented
// yet" after validation, and the CPU reference (src/core/reference) implements the contract.
#include <string>

#include "core/low_latency_layout.h"
#include "core/validate.h"
#include "epcomm/size_hints.h"
#include "runtime/buffer_impl.h"

namespace epcomm {
namespace {

Error not_implemented(const char* op) {
  return Error(ErrorCode::kNotImplemented,
               std::string(op) +
                   " is not implemented yet on the GPU (arguments were valid); the CPU "
                   "reference implements its contract");
}

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

}  // namespace

Error Buffer::low_latency_dispatch(const LowLatencyDispatchArgs& args, StreamHandle,
                                   LowLatencyHook* hook) {
  if (auto e = impl_->usable("low_latency_dispatch"); !e.ok()) return e;
  if (args.return_recv_hook && hook == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 "low_latency_dispatch: hook: expected a pointer with return_recv_hook, got null");
  if (auto e = core::validate_low_latency_dispatch_args(args, impl_->topo, DeviceKind::kCuda);
      !e.ok())
    return e;
  if (auto e = check_low_latency_size(*impl_, "low_latency_dispatch",
                                      args.num_max_dispatch_tokens_per_rank,
                                      static_cast<int32_t>(args.x.shape[1]), args.num_experts);
      !e.ok())
    return e;
  return not_implemented("low_latency_dispatch");
}

Error Buffer::low_latency_combine(const LowLatencyCombineArgs& args, StreamHandle,
                                  LowLatencyHook* hook) {
  if (auto e = impl_->usable("low_latency_combine"); !e.ok()) return e;
  if (args.return_recv_hook && hook == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 "low_latency_combine: hook: expected a pointer with return_recv_hook, got null");
  if (auto e = core::validate_low_latency_combine_args(args, impl_->topo, DeviceKind::kCuda);
      !e.ok())
    return e;
  const auto& h = args.handle;
  if (auto e = check_low_latency_size(*impl_, "low_latency_combine",
                                      h.num_max_dispatch_tokens_per_rank, h.hidden, h.num_experts);
      !e.ok())
    return e;
  return not_implemented("low_latency_combine");
}

Error Buffer::run_low_latency_hook(const LowLatencyHook& hook, StreamHandle) {
  if (auto e = impl_->usable("run_low_latency_hook"); !e.ok()) return e;
  return Error(
      ErrorCode::kInvalidArgument,
      "run_low_latency_hook: hook: expected a pending receive, got id " + std::to_string(hook.id));
}

Error Buffer::get_next_low_latency_combine_buffer(const LowLatencyHandle& handle,
                                                  TensorView* view) {
  if (auto e = impl_->usable("get_next_low_latency_combine_buffer"); !e.ok()) return e;
  if (view == nullptr)
    return Error(ErrorCode::kInvalidArgument,
                 "get_next_low_latency_combine_buffer: view: expected a pointer, got null");
  (void)handle;
  return not_implemented("get_next_low_latency_combine_buffer");
}

Error Buffer::clean_low_latency_buffer(int32_t n_max, int32_t hidden, int32_t num_experts,
                                       StreamHandle) {
  if (auto e = impl_->usable("clean_low_latency_buffer"); !e.ok()) return e;
  if (auto e =
          check_low_latency_size(*impl_, "clean_low_latency_buffer", n_max, hidden, num_experts);
      !e.ok())
    return e;
  return not_implemented("clean_low_latency_buffer");
}

}  // namespace epcomm
