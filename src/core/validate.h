// Argument validation shared by every entry point (semantics.md section 7): the GPU operations,
// the CPU reference and the C ABI. Every message names the argument, the expected and the
// actual value. Nothing here touches device memory.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "epcomm/buffer.h"
#include "epcomm/config.h"
#include "epcomm/dispatch.h"
#include "epcomm/error.h"
#include "epcomm/layout.h"
#include "epcomm/low_latency.h"
#include "epcomm/tensor.h"
#include "epcomm/topology.h"

namespace epcomm::core {

constexpr int64_t kAnySize = -1;
constexpr int32_t kMaxNormalTopk = 32;
constexpr int32_t kMaxRanks = 1024;
// Ranks in one node: the kernels keep per-peer tables of this size (signal slots, prefixes).
constexpr int32_t kMaxNodeRanks = 64;

struct Dim {
  const char* name;  // "T", "H", ... (shown in messages)
  int64_t size;      // kAnySize: any
};

// "[128, 7168]"
std::string shape_string(const TensorView& t);

// Checks presence, dtype, rank, shape and device. An absent optional tensor passes.
Error check_tensor(const char* op, const char* arg, const TensorView& t,
                   std::initializer_list<DType> dtypes, std::initializer_list<Dim> dims,
                   DeviceKind device, bool optional = false);
// Rows (last dimension) contiguous and every row start 16-byte aligned.
Error check_rows_aligned(const char* op, const char* arg, const TensorView& t);
// A 2-D tensor with unit stride along one dimension (row- or column-major scales).
Error check_unit_stride_2d(const char* op, const char* arg, const TensorView& t);
// Fully contiguous (row-major).
Error check_contiguous(const char* op, const char* arg, const TensorView& t);
// Host values of a top-k index tensor: -1 or in [0, num_experts); names the first bad position.
Error check_topk_values(const char* op, const char* arg, const TensorView& topk_idx,
                        int32_t num_experts);
// Number of experts: positive, at most kMaxExperts, a multiple of num_ranks.
Error check_num_experts(const char* op, int32_t num_experts, int32_t num_ranks);

Error validate_buffer_options(const BufferOptions& options);
Error validate_config(const char* op, const Config& config);

Error validate_layout_args(const LayoutArgs& args, const Topology& topo, DeviceKind device);
Error validate_dispatch_notify_args(const DispatchNotifyArgs& args, const Topology& topo,
                                    DeviceKind device);
// num_recv_rows: rows the outputs must have (num_worst_tokens, or the count from notify);
// kAnySize skips that check.
Error validate_dispatch_args(const DispatchArgs& args, const Topology& topo, DeviceKind device,
                             int64_t num_recv_rows);
Error validate_combine_args(const CombineArgs& args, const Topology& topo, DeviceKind device);
Error validate_low_latency_dispatch_args(const LowLatencyDispatchArgs& args, const Topology& topo,
                                         DeviceKind device);
Error validate_low_latency_combine_args(const LowLatencyCombineArgs& args, const Topology& topo,
                                        DeviceKind device);

}  // namespace epcomm::core
