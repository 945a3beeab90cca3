// The C ABI over the C++ API: struct conversion, status codes, thread-local error message.
// No exception crosses this file's functions.
#include <cstring>
#include <exception>
#include <string>

#include "epcomm/epcomm.h"
#include "epcomm/epcomm.hpp"

using epcomm::Error;
using epcomm::ErrorCode;

struct epcomm_buffer {
  std::unique_ptr<epcomm::Buffer> buffer;
};

namespace {

thread_local std::string g_last_error;

epcomm_status_t fail(const Error& e) {
  g_last_error = e.message();
  return static_cast<epcomm_status_t>(e.code());
}

epcomm_status_t report(const Error& e) {
  return e.ok() ? EPCOMM_SUCCESS : fail(e);
}

epcomm_status_t invalid(const std::string& message) {
  return fail(Error(ErrorCode::kInvalidArgument, message));
}

// Runs body, turning any exception into EPCOMM_ERROR_INTERNAL.
template <class Body>
epcomm_status_t guarded(const char* fn, Body body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(Error(ErrorCode::kInternal, std::string(fn) + ": " + e.what()));
  } catch (...) {
    return fail(Error(ErrorCode::kInternal, std::string(fn) + ": unknown exception"));
  }
}

// Runs `op` on `stream` between the args' stream handoffs (epcomm_layout_args_t::handoffs):
// `stream` waits for upstream's work before the op, downstream waits for the op after it.
template <class Args, class Op>
epcomm_status_t with_handoffs(const char* fn, epcomm_buffer_t buffer, const Args* args,
                              void* stream, Op op) {
  constexpr int32_t kAll = EPCOMM_HANDOFF_UPSTREAM | EPCOMM_HANDOFF_DOWNSTREAM;
  if ((args->handoffs & ~kAll) != 0)
    return invalid(std::string(fn) +
                   ": args->handoffs: expected a mask of EPCOMM_HANDOFF_* (0..3), got " +
                   std::to_string(args->handoffs));
  if (args->handoffs & EPCOMM_HANDOFF_UPSTREAM) {
    if (auto e = buffer->buffer->stream_wait(stream, args->upstream); !e.ok()) return fail(e);
  }
  if (auto e = op(); !e.ok()) return fail(e);
  if (!(args->handoffs & EPCOMM_HANDOFF_DOWNSTREAM)) return EPCOMM_SUCCESS;
  return report(buffer->buffer->stream_wait(args->downstream, stream));
}

// Checks the leading struct_size of a versioned struct.
template <class T>
bool size_ok(const T* s, const char* fn, const char* arg, epcomm_status_t* status) {
  if (s == nullptr) {
    *status = invalid(std::string(fn) + ": " + arg + ": expected a pointer, got null");
    return false;
  }
  if (s->struct_size < sizeof(T)) {
    *status = invalid(std::string(fn) + ": " + arg + "->struct_size: expected at least " +
                      std::to_string(sizeof(T)) + " (use the *_init function), got " +
                      std::to_string(s->struct_size));
    return false;
  }
  return true;
}

bool buffer_ok(epcomm_buffer_t b, const char* fn, epcomm_status_t* status) {
  if (b == nullptr || !b->buffer) {
    *status = invalid(std::string(fn) +
                      ": buffer: expected a buffer from epcomm_buffer_create, got null");
    return false;
  }
  return true;
}

// A call on a buffer that returns an Error: checks the handle, then reports body()'s result.
template <class Body>
epcomm_status_t buffer_call(const char* fn, epcomm_buffer_t buffer, Body body) {
  return guarded(fn, [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, fn, &st)) return st;
    return report(body());
  });
}

epcomm::TensorView to_view(const epcomm_tensor_t& t) {
  epcomm::TensorView v;
  if (t.ndim < 0 || (t.ndim == 0 && t.data == nullptr)) return v;  // absent
  v.data = t.data;
  v.dtype = static_cast<epcomm::DType>(t.dtype);
  v.ndim = t.ndim > epcomm::TensorView::kMaxDims ? -2 : t.ndim;
  for (int d = 0; d < epcomm::TensorView::kMaxDims; ++d) {
    v.shape[d] = t.shape[d];
    v.strides[d] = t.strides[d];
  }
  v.device = t.device_kind == 0 ? epcomm::DeviceKind::kCpu : epcomm::DeviceKind::kCuda;
  v.device_index = t.device_index;
  return v;
}

epcomm::Config to_config(const epcomm_config_t& c) {
  epcomm::Config out;
  out.num_sms = c.num_sms;
  out.num_max_nvl_chunked_send_tokens = c.num_max_nvl_chunked_send_tokens;
  out.num_max_nvl_chunked_recv_tokens = c.num_max_nvl_chunked_recv_tokens;
  out.num_max_rdma_chunked_send_tokens = c.num_max_rdma_chunked_send_tokens;
  out.num_max_rdma_chunked_recv_tokens = c.num_max_rdma_chunked_recv_tokens;
  return out;
}

epcomm::DispatchHandle to_handle(const epcomm_dispatch_handle_t& h) {
  return epcomm::DispatchHandle{
      to_view(h.rank_prefix_matrix), to_view(h.recv_src_idx), to_view(h.is_token_in_rank),
      to_view(h.send_slot),          h.num_recv_tokens,       to_view(h.rank_prefix_matrix_host)};
}

epcomm::LowLatencyHandle to_handle(const epcomm_low_latency_handle_t& h) {
  return epcomm::LowLatencyHandle{to_view(h.src_info), to_view(h.layout_range),
                                  h.num_max_dispatch_tokens_per_rank, h.hidden, h.num_experts};
}

template <class T>
void zero_init(T* s) {
  if (s == nullptr) return;
  std::memset(s, 0, sizeof(T));
  s->struct_size = sizeof(T);
}

}  // namespace

extern "C" {

const char* epcomm_version(void) {
  return epcomm::version();
}
const char* epcomm_last_error_message(void) {
  return g_last_error.c_str();
}
const char* epcomm_status_name(epcomm_status_t status) {
  return epcomm::error_code_name(static_cast<ErrorCode>(status));
}

size_t epcomm_struct_size(const char* name) {
  if (name == nullptr) return 0;
  const std::string n(name);
  if (n == "epcomm_tensor_t") return sizeof(epcomm_tensor_t);
  if (n == "epcomm_buffer_options_t") return sizeof(epcomm_buffer_options_t);
  if (n == "epcomm_config_t") return sizeof(epcomm_config_t);
  if (n == "epcomm_layout_args_t") return sizeof(epcomm_layout_args_t);
  if (n == "epcomm_dispatch_handle_t") return sizeof(epcomm_dispatch_handle_t);
  if (n == "epcomm_dispatch_notify_args_t") return sizeof(epcomm_dispatch_notify_args_t);
  if (n == "epcomm_dispatch_args_t") return sizeof(epcomm_dispatch_args_t);
  if (n == "epcomm_combine_args_t") return sizeof(epcomm_combine_args_t);
  if (n == "epcomm_low_latency_handle_t") return sizeof(epcomm_low_latency_handle_t);
  if (n == "epcomm_low_latency_dispatch_args_t") return sizeof(epcomm_low_latency_dispatch_args_t);
  if (n == "epcomm_low_latency_combine_args_t") return sizeof(epcomm_low_latency_combine_args_t);
  return 0;
}

void epcomm_tensor_init(epcomm_tensor_t* t) {
  if (t == nullptr) return;
  std::memset(t, 0, sizeof(*t));
  t->ndim = -1;
  t->device_kind = 1;
}

static void fill_config(const epcomm::Config& d, epcomm_config_t* c);

void epcomm_config_init(epcomm_config_t* c) {
  fill_config(epcomm::Config{}, c);
}

void epcomm_buffer_options_init(epcomm_buffer_options_t* o) {
  if (o == nullptr) return;
  const epcomm::BufferOptions d;
  zero_init(o);
  o->rank = d.rank;
  o->num_ranks = d.num_ranks;
  o->gpus_per_node = d.gpus_per_node;
  o->device = d.device;
  o->timeout_seconds = d.timeout_seconds;
}

void epcomm_layout_args_init(epcomm_layout_args_t* a) {
  zero_init(a);
  if (!a) return;
  for (auto* t : {&a->topk_idx, &a->num_tokens_per_rank, &a->num_tokens_per_rdma_rank,
                  &a->num_tokens_per_expert, &a->is_token_in_rank})
    epcomm_tensor_init(t);
}

static void handle_init(epcomm_dispatch_handle_t* h) {
  for (auto* t : {&h->rank_prefix_matrix, &h->recv_src_idx, &h->is_token_in_rank, &h->send_slot,
                  &h->rank_prefix_matrix_host})
    epcomm_tensor_init(t);
}

void epcomm_dispatch_notify_args_init(epcomm_dispatch_notify_args_t* a) {
  zero_init(a);
  if (!a) return;
  for (auto* t : {&a->num_tokens_per_rank, &a->num_tokens_per_expert, &a->is_token_in_rank})
    epcomm_tensor_init(t);
  a->expert_alignment = 1;
  epcomm_config_init(&a->config);
  handle_init(&a->handle);
}

void epcomm_dispatch_args_init(epcomm_dispatch_args_t* a) {
  zero_init(a);
  if (!a) return;
  for (auto* t : {&a->x, &a->x_scales, &a->topk_idx, &a->topk_weights, &a->num_tokens_per_rank,
                  &a->num_tokens_per_expert, &a->is_token_in_rank, &a->recv_x, &a->recv_x_scales,
                  &a->recv_topk_idx, &a->recv_topk_weights})
    epcomm_tensor_init(t);
  a->expert_alignment = 1;
  epcomm_config_init(&a->config);
  handle_init(&a->handle);
}

void epcomm_combine_args_init(epcomm_combine_args_t* a) {
  zero_init(a);
  if (!a) return;
  for (auto* t :
       {&a->x, &a->topk_weights, &a->bias0, &a->bias1, &a->combined_x, &a->combined_topk_weights})
    epcomm_tensor_init(t);
  epcomm_config_init(&a->config);
  handle_init(&a->handle);
}

void epcomm_low_latency_dispatch_args_init(epcomm_low_latency_dispatch_args_t* a) {
  zero_init(a);
  if (!a) return;
  for (auto* t : {&a->x, &a->topk_idx, &a->cumulative_local_expert_recv_stats,
                  &a->dispatch_wait_recv_cost_stats, &a->packed_recv_x, &a->packed_recv_x_scales,
                  &a->packed_recv_count, &a->handle.src_info, &a->handle.layout_range})
    epcomm_tensor_init(t);
  a->use_fp8 = 1;
  a->hook = -1;
}

void epcomm_low_latency_combine_args_init(epcomm_low_latency_combine_args_t* a) {
  zero_init(a);
  if (!a) return;
  for (auto* t : {&a->x, &a->topk_idx, &a->topk_weights, &a->out, &a->combine_wait_recv_cost_stats,
                  &a->handle.src_info, &a->handle.layout_range})
    epcomm_tensor_init(t);
  a->hook = -1;
}

int64_t epcomm_get_low_latency_buffer_size_hint(int32_t n_max, int32_t hidden, int32_t num_ranks,
                                                int32_t num_experts) {
  return epcomm::get_low_latency_buffer_size_hint(n_max, hidden, num_ranks, num_experts);
}

static void fill_config(const epcomm::Config& d, epcomm_config_t* c) {
  if (c == nullptr) return;
  c->struct_size = sizeof(*c);
  c->num_sms = d.num_sms;
  c->num_max_nvl_chunked_send_tokens = d.num_max_nvl_chunked_send_tokens;
  c->num_max_nvl_chunked_recv_tokens = d.num_max_nvl_chunked_recv_tokens;
  c->num_max_rdma_chunked_send_tokens = d.num_max_rdma_chunked_send_tokens;
  c->num_max_rdma_chunked_recv_tokens = d.num_max_rdma_chunked_recv_tokens;
}

void epcomm_default_dispatch_config(int32_t num_ranks, epcomm_config_t* config) {
  fill_config(epcomm::default_dispatch_config(num_ranks), config);
}

void epcomm_default_combine_config(int32_t num_ranks, epcomm_config_t* config) {
  fill_config(epcomm::default_combine_config(num_ranks), config);
}

int64_t epcomm_get_normal_buffer_size_hint(int64_t max_tokens_per_rank, int64_t hidden_bytes,
                                           int32_t num_ranks, int32_t topk) {
  return epcomm::get_normal_buffer_size_hint(max_tokens_per_rank, hidden_bytes, num_ranks, topk);
}

int64_t epcomm_config_get_nvl_buffer_size_hint(const epcomm_config_t* config, int64_t hidden_bytes,
                                               int32_t num_ranks) {
  if (config == nullptr || config->struct_size < sizeof(epcomm_config_t)) return 0;
  return to_config(*config).get_nvl_buffer_size_hint(hidden_bytes, num_ranks);
}

epcomm_status_t epcomm_buffer_create(const epcomm_buffer_options_t* options,
                                     epcomm_allgather_fn all_gather, void* user_data,
                                     epcomm_buffer_t* out) {
  return guarded("epcomm_buffer_create", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!size_ok(options, "epcomm_buffer_create", "options", &st)) return st;
    if (out == nullptr) return invalid("epcomm_buffer_create: out: expected a pointer, got null");
    *out = nullptr;
    if (all_gather == nullptr)
      return invalid("epcomm_buffer_create: all_gather: expected a function, got null");
    epcomm::BufferOptions o;
    o.rank = options->rank;
    o.num_ranks = options->num_ranks;
    o.gpus_per_node = options->gpus_per_node;
    o.device = options->device;
    o.num_nvl_bytes = options->num_nvl_bytes;
    o.num_rdma_bytes = options->num_rdma_bytes;
    o.low_latency_mode = options->low_latency_mode != 0;
    o.timeout_seconds = options->timeout_seconds;
    auto fn = [all_gather, user_data](const void* mine, void* all, size_t bytes) {
      const int rc = all_gather(mine, all, bytes, user_data);
      if (rc != 0)
        throw std::runtime_error("the all-gather callback returned " + std::to_string(rc));
    };
    auto handle = std::make_unique<epcomm_buffer>();
    if (auto e = epcomm::Buffer::create(o, fn, &handle->buffer); !e.ok()) return fail(e);
    *out = handle.release();
    return EPCOMM_SUCCESS;
  });
}

epcomm_status_t epcomm_buffer_destroy(epcomm_buffer_t buffer) {
  return guarded("epcomm_buffer_destroy", [&]() -> epcomm_status_t {
    if (buffer == nullptr) return EPCOMM_SUCCESS;
    const Error e = buffer->buffer ? buffer->buffer->destroy() : Error();
    delete buffer;
    return report(e);
  });
}

epcomm_status_t epcomm_buffer_barrier(epcomm_buffer_t buffer, void* stream) {
  return buffer_call("epcomm_buffer_barrier", buffer,
                     [&] { return buffer->buffer->barrier(stream); });
}

epcomm_status_t epcomm_buffer_synchronize(epcomm_buffer_t buffer, void* stream) {
  return buffer_call("epcomm_buffer_synchronize", buffer,
                     [&] { return buffer->buffer->synchronize(stream); });
}

epcomm_status_t epcomm_buffer_stream_wait(epcomm_buffer_t buffer, void* waiter, void* waited) {
  return buffer_call("epcomm_buffer_stream_wait", buffer,
                     [&] { return buffer->buffer->stream_wait(waiter, waited); });
}

epcomm_status_t epcomm_buffer_abort(epcomm_buffer_t buffer) {
  return buffer_call("epcomm_buffer_abort", buffer, [&] {
    buffer->buffer->abort();
    return Error();
  });
}

epcomm_status_t epcomm_buffer_local_region(epcomm_buffer_t buffer, int32_t low_latency,
                                           void** ptr) {
  return guarded("epcomm_buffer_local_region", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_buffer_local_region", &st)) return st;
    if (ptr == nullptr)
      return invalid("epcomm_buffer_local_region: ptr: expected a pointer, got null");
    *ptr = buffer->buffer->local_region(low_latency != 0);
    return EPCOMM_SUCCESS;
  });
}

epcomm_status_t epcomm_get_dispatch_layout(epcomm_buffer_t buffer, const epcomm_layout_args_t* args,
                                           void* stream) {
  return guarded("epcomm_get_dispatch_layout", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_get_dispatch_layout", &st)) return st;
    if (!size_ok(args, "epcomm_get_dispatch_layout", "args", &st)) return st;
    epcomm::LayoutArgs a{to_view(args->topk_idx),
                         args->num_experts,
                         to_view(args->num_tokens_per_rank),
                         to_view(args->num_tokens_per_rdma_rank),
                         to_view(args->num_tokens_per_expert),
                         to_view(args->is_token_in_rank)};
    return with_handoffs("epcomm_get_dispatch_layout", buffer, args, stream,
                         [&] { return buffer->buffer->get_dispatch_layout(a, stream); });
  });
}

epcomm_status_t epcomm_dispatch_notify(epcomm_buffer_t buffer, epcomm_dispatch_notify_args_t* args,
                                       void* stream) {
  return guarded("epcomm_dispatch_notify", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_dispatch_notify", &st)) return st;
    if (!size_ok(args, "epcomm_dispatch_notify", "args", &st)) return st;
    epcomm::DispatchNotifyArgs a{to_view(args->num_tokens_per_rank),
                                 to_view(args->num_tokens_per_expert),
                                 to_view(args->is_token_in_rank),
                                 args->expert_alignment,
                                 to_config(args->config),
                                 to_handle(args->handle)};
    epcomm::DispatchCounts counts;
    if (auto e = buffer->buffer->dispatch_notify(a, &counts, stream); !e.ok()) return fail(e);
    args->num_recv_tokens = counts.num_recv_tokens;
    args->handle.num_recv_tokens = counts.num_recv_tokens;
    if (args->num_recv_tokens_per_expert != nullptr) {
      const size_t n = std::min<size_t>(counts.num_recv_tokens_per_expert.size(),
                                        static_cast<size_t>(std::max(args->num_local_experts, 0)));
      std::memcpy(args->num_recv_tokens_per_expert, counts.num_recv_tokens_per_expert.data(),
                  n * sizeof(int32_t));
    }
    return EPCOMM_SUCCESS;
  });
}

epcomm_status_t epcomm_dispatch(epcomm_buffer_t buffer, const epcomm_dispatch_args_t* args,
                                void* stream) {
  return guarded("epcomm_dispatch", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_dispatch", &st)) return st;
    if (!size_ok(args, "epcomm_dispatch", "args", &st)) return st;
    epcomm::DispatchArgs a;
    a.x = to_view(args->x);
    a.x_scales = to_view(args->x_scales);
    a.topk_idx = to_view(args->topk_idx);
    a.topk_weights = to_view(args->topk_weights);
    a.num_tokens_per_rank = to_view(args->num_tokens_per_rank);
    a.num_tokens_per_expert = to_view(args->num_tokens_per_expert);
    a.is_token_in_rank = to_view(args->is_token_in_rank);
    a.num_experts = args->num_experts;
    a.expert_alignment = args->expert_alignment;
    a.num_worst_tokens = args->num_worst_tokens;
    a.cached = args->cached != 0;
    a.config = to_config(args->config);
    a.handle = to_handle(args->handle);
    a.recv_x = to_view(args->recv_x);
    a.recv_x_scales = to_view(args->recv_x_scales);
    a.recv_topk_idx = to_view(args->recv_topk_idx);
    a.recv_topk_weights = to_view(args->recv_topk_weights);
    return with_handoffs("epcomm_dispatch", buffer, args, stream,
                         [&] { return buffer->buffer->dispatch(a, stream); });
  });
}

epcomm_status_t epcomm_combine(epcomm_buffer_t buffer, const epcomm_combine_args_t* args,
                               void* stream) {
  return guarded("epcomm_combine", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_combine", &st)) return st;
    if (!size_ok(args, "epcomm_combine", "args", &st)) return st;
    epcomm::CombineArgs a{to_view(args->x),
                          to_handle(args->handle),
                          to_view(args->topk_weights),
                          to_view(args->bias0),
                          to_view(args->bias1),
                          to_config(args->config),
                          to_view(args->combined_x),
                          to_view(args->combined_topk_weights)};
    return with_handoffs("epcomm_combine", buffer, args, stream,
                         [&] { return buffer->buffer->combine(a, stream); });
  });
}

epcomm_status_t epcomm_low_latency_dispatch(epcomm_buffer_t buffer,
                                            epcomm_low_latency_dispatch_args_t* args,
                                            void* stream) {
  return guarded("epcomm_low_latency_dispatch", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_low_latency_dispatch", &st)) return st;
    if (!size_ok(args, "epcomm_low_latency_dispatch", "args", &st)) return st;
    epcomm::LowLatencyDispatchArgs a;
    a.x = to_view(args->x);
    a.topk_idx = to_view(args->topk_idx);
    a.num_max_dispatch_tokens_per_rank = args->num_max_dispatch_tokens_per_rank;
    a.num_experts = args->num_experts;
    a.use_fp8 = args->use_fp8 != 0;
    a.round_scale = args->round_scale != 0;
    a.use_ue8m0 = args->use_ue8m0 != 0;
    a.cumulative_local_expert_recv_stats = to_view(args->cumulative_local_expert_recv_stats);
    a.dispatch_wait_recv_cost_stats = to_view(args->dispatch_wait_recv_cost_stats);
    a.return_recv_hook = args->return_recv_hook != 0;
    a.packed_recv_x = to_view(args->packed_recv_x);
    a.packed_recv_x_scales = to_view(args->packed_recv_x_scales);
    a.packed_recv_count = to_view(args->packed_recv_count);
    a.handle = to_handle(args->handle);
    epcomm::LowLatencyHook hook;
    if (auto e = buffer->buffer->low_latency_dispatch(a, stream, &hook); !e.ok()) return fail(e);
    args->hook = hook.id;
    return EPCOMM_SUCCESS;
  });
}

epcomm_status_t epcomm_low_latency_combine(epcomm_buffer_t buffer,
                                           epcomm_low_latency_combine_args_t* args, void* stream) {
  return guarded("epcomm_low_latency_combine", [&]() -> epcomm_status_t {
    epcomm_status_t st = EPCOMM_SUCCESS;
    if (!buffer_ok(buffer, "epcomm_low_latency_combine", &st)) return st;
    if (!size_ok(args, "epcomm_low_latency_combine", "args", &st)) return st;
    epcomm::LowLatencyCombineArgs a;
    a.x = to_view(args->x);
    a.topk_idx = to_view(args->topk_idx);
    a.topk_weights = to_view(args->topk_weights);
    a.handle = to_handle(args->handle);
    a.use_logfmt = args->use_logfmt != 0;
    a.zero_copy = args->zero_copy != 0;
    a.return_recv_hook = args->return_recv_hook != 0;
    a.out = to_view(args->out);
    a.combine_wait_recv_cost_stats = to_view(args->combine_wait_recv_cost_stats);
    epcomm::LowLatencyHook hook;
    if (auto e = buffer->buffer->low_latency_combine(a, stream, &hook); !e.ok()) return fail(e);
    args->hook = hook.id;
    return EPCOMM_SUCCESS;
  });
}

epcomm_status_t epcomm_get_next_low_latency_combine_buffer(
    epcomm_buffer_t buffer, const epcomm_low_latency_handle_t* handle, void** ptr) {
  return buffer_call("epcomm_get_next_low_latency_combine_buffer", buffer, [&] {
    if (handle == nullptr || ptr == nullptr)
      return epcomm::Error(epcomm::ErrorCode::kInvalidArgument,
                           "epcomm_get_next_low_latency_combine_buffer: handle and ptr: expected "
                           "pointers, got null");
    epcomm::TensorView view;
    epcomm::Error e =
        buffer->buffer->get_next_low_latency_combine_buffer(to_handle(*handle), &view);
    *ptr = e.ok() ? view.data : nullptr;
    return e;
  });
}

epcomm_status_t epcomm_run_low_latency_hook(epcomm_buffer_t buffer, int64_t hook, void* stream) {
  return buffer_call("epcomm_run_low_latency_hook", buffer, [&] {
    return buffer->buffer->run_low_latency_hook(epcomm::LowLatencyHook{hook}, stream);
  });
}

epcomm_status_t epcomm_clean_low_latency_buffer(epcomm_buffer_t buffer, int32_t n_max,
                                                int32_t hidden, int32_t num_experts, void* stream) {
  return buffer_call("epcomm_clean_low_latency_buffer", buffer, [&] {
    return buffer->buffer->clean_low_latency_buffer(n_max, hidden, num_experts, stream);
  });
}

}  // extern "C"
