/* epcomm C ABI: opaque handles, versioned structs, status codes. No exception crosses it.
 * Every struct passed in begins with `struct_size`; set it with the matching *_init function
 * (or to sizeof the struct) so that later versions can grow the structs compatibly.
 * After a call that does not return EPCOMM_SUCCESS, epcomm_last_error_message() gives the
 * message (thread-local, valid until the next failing call on this thread). */
#ifndef EPCOMM_EPCOMM_H_
#define EPCOMM_EPCOMM_H_

#include <stddef.h>
#include <stdint.h>

#define EPCOMM_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

typedef enum epcomm_status {
  EPCOMM_SUCCESS = 0,
  EPCOMM_ERROR_INVALID_ARGUMENT = 1,
  EPCOMM_ERROR_NOT_IMPLEMENTED = 2,
  EPCOMM_ERROR_NOT_SUPPORTED = 3,
  EPCOMM_ERROR_CUDA = 4,
  EPCOMM_ERROR_TIMEOUT = 5,
  EPCOMM_ERROR_BOOTSTRAP = 6,
  EPCOMM_ERROR_BUFFER_TOO_SMALL = 7,
  EPCOMM_ERROR_FAILED_STATE = 8,
  EPCOMM_ERROR_INTERNAL = 9
} epcomm_status_t;

typedef enum epcomm_dtype {
  EPCOMM_DTYPE_BFLOAT16 = 0,
  EPCOMM_DTYPE_FLOAT8_E4M3 = 1,
  EPCOMM_DTYPE_FLOAT32 = 2,
  EPCOMM_DTYPE_INT32 = 3,
  EPCOMM_DTYPE_INT64 = 4,
  EPCOMM_DTYPE_BOOL = 5
} epcomm_dtype_t;

/* A non-owning tensor description. ndim = -1 (or data = NULL with ndim = 0) means "absent".
 * strides are in elements. device_kind: 0 = CPU, 1 = CUDA. */
typedef struct epcomm_tensor {
  void* data;
  int32_t dtype;
  int32_t ndim;
  int64_t shape[4];
  int64_t strides[4];
  int32_t device_kind;
  int32_t device_index;
} epcomm_tensor_t;

typedef struct epcomm_buffer* epcomm_buffer_t;

/* All-gather callback: write num_ranks * bytes into `all`; return 0 on success. */
typedef int (*epcomm_allgather_fn)(const void* mine, void* all, size_t bytes, void* user_data);

typedef struct epcomm_buffer_options {
  uint32_t struct_size;
  int32_t rank;
  int32_t num_ranks;
  int32_t gpus_per_node; /* 0: all ranks on one node */
  int32_t device;        /* -1: local rank modulo visible devices */
  int64_t num_nvl_bytes;
  int64_t num_rdma_bytes;
  int32_t low_latency_mode;
  double timeout_seconds;
} epcomm_buffer_options_t;

typedef struct epcomm_config {
  uint32_t struct_size;
  int32_t num_sms;
  int32_t num_max_nvl_chunked_send_tokens;
  int32_t num_max_nvl_chunked_recv_tokens;
  int32_t num_max_rdma_chunked_send_tokens;
  int32_t num_max_rdma_chunked_recv_tokens;
} epcomm_config_t;

typedef enum epcomm_handoff {
  EPCOMM_HANDOFF_UPSTREAM = 1,  /* the op's stream waits for `upstream` first */
  EPCOMM_HANDOFF_DOWNSTREAM = 2 /* `downstream` waits for the op */
} epcomm_handoff_t;

typedef struct epcomm_layout_args {
  uint32_t struct_size;
  epcomm_tensor_t topk_idx;
  int32_t num_experts;
  epcomm_tensor_t num_tokens_per_rank;
  epcomm_tensor_t num_tokens_per_rdma_rank;
  epcomm_tensor_t num_tokens_per_expert;
  epcomm_tensor_t is_token_in_rank;
  /* Stream handoffs done by this call, so that a caller following DeepEP's stream rules makes
     one C call per op. handoffs is a mask of epcomm_handoff_t (0: none): with
     EPCOMM_HANDOFF_UPSTREAM, `stream` first waits for the work enqueued on `upstream` so far; with
     EPCOMM_HANDOFF_DOWNSTREAM, `downstream` waits for the op once it is enqueued. NULL is the
     legacy default stream there, as everywhere in this API. */
  void* upstream;
  void* downstream;
  int32_t handoffs;
} epcomm_layout_args_t;

typedef struct epcomm_dispatch_handle {
  epcomm_tensor_t rank_prefix_matrix;
  epcomm_tensor_t recv_src_idx;
  epcomm_tensor_t is_token_in_rank;
  epcomm_tensor_t send_slot;
  int64_t num_recv_tokens;
  /* optional [R, R] int32 in host memory, filled by dispatch_notify when given: lets combine
     send its rows with the copy engines (see DispatchHandle::rank_prefix_matrix_host) */
  epcomm_tensor_t rank_prefix_matrix_host;
} epcomm_dispatch_handle_t;

typedef struct epcomm_dispatch_notify_args {
  uint32_t struct_size;
  epcomm_tensor_t num_tokens_per_rank;
  epcomm_tensor_t num_tokens_per_expert;
  epcomm_tensor_t is_token_in_rank;
  int32_t expert_alignment;
  epcomm_config_t config;
  epcomm_dispatch_handle_t handle;
  /* outputs (host): */
  int64_t num_recv_tokens;
  int32_t* num_recv_tokens_per_expert; /* caller array of num_local_experts entries, or NULL */
  int32_t num_local_experts;
} epcomm_dispatch_notify_args_t;

typedef struct epcomm_dispatch_args {
  uint32_t struct_size;
  epcomm_tensor_t x, x_scales, topk_idx, topk_weights;
  epcomm_tensor_t num_tokens_per_rank, num_tokens_per_expert, is_token_in_rank;
  int32_t num_experts;
  int32_t expert_alignment;
  int64_t num_worst_tokens;
  int32_t cached;
  epcomm_config_t config;
  epcomm_dispatch_handle_t handle;
  epcomm_tensor_t recv_x, recv_x_scales, recv_topk_idx, recv_topk_weights;
  void* upstream; /* see epcomm_layout_args_t */
  void* downstream;
  int32_t handoffs;
} epcomm_dispatch_args_t;

typedef struct epcomm_combine_args {
  uint32_t struct_size;
  epcomm_tensor_t x;
  epcomm_dispatch_handle_t handle;
  epcomm_tensor_t topk_weights, bias0, bias1;
  epcomm_config_t config;
  epcomm_tensor_t combined_x, combined_topk_weights;
  void* upstream; /* see epcomm_layout_args_t */
  void* downstream;
  int32_t handoffs;
} epcomm_combine_args_t;

typedef struct epcomm_low_latency_handle {
  epcomm_tensor_t src_info;
  epcomm_tensor_t layout_range;
  int32_t num_max_dispatch_tokens_per_rank;
  int32_t hidden;
  int32_t num_experts;
} epcomm_low_latency_handle_t;

typedef struct epcomm_low_latency_dispatch_args {
  uint32_t struct_size;
  epcomm_tensor_t x, topk_idx;
  int32_t num_max_dispatch_tokens_per_rank;
  int32_t num_experts;
  int32_t use_fp8, round_scale, use_ue8m0;
  epcomm_tensor_t cumulative_local_expert_recv_stats, dispatch_wait_recv_cost_stats;
  int32_t return_recv_hook;
  epcomm_tensor_t packed_recv_x, packed_recv_x_scales, packed_recv_count;
  epcomm_low_latency_handle_t handle;
  int64_t hook; /* out: pending receive id, or -1 */
} epcomm_low_latency_dispatch_args_t;

typedef struct epcomm_low_latency_combine_args {
  uint32_t struct_size;
  epcomm_tensor_t x, topk_idx, topk_weights;
  epcomm_low_latency_handle_t handle;
  int32_t use_logfmt, zero_copy, return_recv_hook;
  epcomm_tensor_t out, combine_wait_recv_cost_stats;
  int64_t hook; /* out */
} epcomm_low_latency_combine_args_t;

EPCOMM_API const char* epcomm_version(void);
EPCOMM_API const char* epcomm_last_error_message(void);
EPCOMM_API const char* epcomm_status_name(epcomm_status_t status);
/* sizeof the named ABI struct ("epcomm_tensor_t", "epcomm_dispatch_args_t", ...), 0 if unknown:
 * lets language bindings check their mirrors of these structs. */
EPCOMM_API size_t epcomm_struct_size(const char* name);

EPCOMM_API void epcomm_buffer_options_init(epcomm_buffer_options_t* options);
EPCOMM_API void epcomm_config_init(epcomm_config_t* config);
EPCOMM_API void epcomm_tensor_init(epcomm_tensor_t* tensor); /* absent tensor */
EPCOMM_API void epcomm_layout_args_init(epcomm_layout_args_t* args);
EPCOMM_API void epcomm_dispatch_notify_args_init(epcomm_dispatch_notify_args_t* args);
EPCOMM_API void epcomm_dispatch_args_init(epcomm_dispatch_args_t* args);
EPCOMM_API void epcomm_combine_args_init(epcomm_combine_args_t* args);
EPCOMM_API void epcomm_low_latency_dispatch_args_init(epcomm_low_latency_dispatch_args_t* args);
EPCOMM_API void epcomm_low_latency_combine_args_init(epcomm_low_latency_combine_args_t* args);

EPCOMM_API int64_t epcomm_get_low_latency_buffer_size_hint(int32_t num_max_dispatch_tokens_per_rank,
                                                           int32_t hidden, int32_t num_ranks,
                                                           int32_t num_experts);
/* The recommended Configs for a world size (measured; see docs/perf.md). */
EPCOMM_API void epcomm_default_dispatch_config(int32_t num_ranks, epcomm_config_t* config);
EPCOMM_API void epcomm_default_combine_config(int32_t num_ranks, epcomm_config_t* config);
EPCOMM_API int64_t epcomm_get_normal_buffer_size_hint(int64_t max_tokens_per_rank,
                                                      int64_t hidden_bytes, int32_t num_ranks,
                                                      int32_t topk);
EPCOMM_API int64_t epcomm_config_get_nvl_buffer_size_hint(const epcomm_config_t* config,
                                                          int64_t hidden_bytes, int32_t num_ranks);

EPCOMM_API epcomm_status_t epcomm_buffer_create(const epcomm_buffer_options_t* options,
                                                epcomm_allgather_fn all_gather, void* user_data,
                                                epcomm_buffer_t* out);
EPCOMM_API epcomm_status_t epcomm_buffer_destroy(epcomm_buffer_t buffer); /* NULL is a no-op */
EPCOMM_API epcomm_status_t epcomm_buffer_barrier(epcomm_buffer_t buffer, void* stream);
EPCOMM_API epcomm_status_t epcomm_buffer_synchronize(epcomm_buffer_t buffer, void* stream);
EPCOMM_API epcomm_status_t epcomm_buffer_abort(epcomm_buffer_t buffer);
/* Work enqueued on `waiter` after this call runs after the work enqueued on `waited` before it. */
EPCOMM_API epcomm_status_t epcomm_buffer_stream_wait(epcomm_buffer_t buffer, void* waiter,
                                                     void* waited);
EPCOMM_API epcomm_status_t epcomm_buffer_local_region(epcomm_buffer_t buffer, int32_t low_latency,
                                                      void** ptr);

EPCOMM_API epcomm_status_t epcomm_get_dispatch_layout(epcomm_buffer_t buffer,
                                                      const epcomm_layout_args_t* args,
                                                      void* stream);
EPCOMM_API epcomm_status_t epcomm_dispatch_notify(epcomm_buffer_t buffer,
                                                  epcomm_dispatch_notify_args_t* args,
                                                  void* stream);
EPCOMM_API epcomm_status_t epcomm_dispatch(epcomm_buffer_t buffer,
                                           const epcomm_dispatch_args_t* args, void* stream);
EPCOMM_API epcomm_status_t epcomm_combine(epcomm_buffer_t buffer, const epcomm_combine_args_t* args,
                                          void* stream);
EPCOMM_API epcomm_status_t epcomm_low_latency_dispatch(epcomm_buffer_t buffer,
                                                       epcomm_low_latency_dispatch_args_t* args,
                                                       void* stream);
EPCOMM_API epcomm_status_t epcomm_low_latency_combine(epcomm_buffer_t buffer,
                                                      epcomm_low_latency_combine_args_t* args,
                                                      void* stream);
/* Device address of the zero-copy combine area for `handle`'s shape: BF16 [E_local, R*N_max, H],
 * contiguous. Write the expert outputs there, then call epcomm_low_latency_combine with
 * zero_copy = 1. */
EPCOMM_API epcomm_status_t epcomm_get_next_low_latency_combine_buffer(
    epcomm_buffer_t buffer, const epcomm_low_latency_handle_t* handle, void** ptr);
EPCOMM_API epcomm_status_t epcomm_run_low_latency_hook(epcomm_buffer_t buffer, int64_t hook,
                                                       void* stream);
EPCOMM_API epcomm_status_t epcomm_clean_low_latency_buffer(epcomm_buffer_t buffer,
                                                           int32_t num_max_dispatch_tokens_per_rank,
                                                           int32_t hidden, int32_t num_experts,
                                                           void* stream);

#ifdef __cplusplus
}
#endif

#endif /* EPCOMM_EPCOMM_H_ */
