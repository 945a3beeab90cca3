// Tensor-level checks used by every operation's validation.
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include "core/low_latency_layout.h"
#include "core/validate.h"

namespace epcomm::core {
namespace {

std::string dtype_list(std::initializer_list<DType> dtypes) {
  std::string s;
  int i = 0;
  for (DType d : dtypes) {
    if (i > 0) s += (i + 1 == static_cast<int>(dtypes.size())) ? " or " : ", ";
    s += dtype_name(d);
    ++i;
  }
  return s;
}

std::string expected_shape(std::initializer_list<Dim> dims) {
  std::ostringstream os;
  os << "[";
  int i = 0;
  for (const Dim& d : dims) {
    if (i++ > 0) os << ", ";
    os << d.name << "=";
    if (d.size == kAnySize) {
      os << "*";
    } else {
      os << d.size;
    }
  }
  os << "]";
  return os.str();
}

const char* device_name(DeviceKind device) {
  return device == DeviceKind::kCpu ? "cpu" : "cuda";
}

Error invalid(const char* op, const char* arg, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, std::string(op) + ": " + arg + ": " + what);
}

}  // namespace

std::string shape_string(const TensorView& t) {
  std::ostringstream os;
  os << "[";
  for (int d = 0; d < t.ndim; ++d) os << (d ? ", " : "") << t.shape[d];
  os << "]";
  return os.str();
}

Error check_tensor(const char* op, const char* arg, const TensorView& t,
                   std::initializer_list<DType> dtypes, std::initializer_list<Dim> dims,
                   DeviceKind device, bool optional) {
  if (t.ndim == -1) {
    if (optional) return Error::success();
    return invalid(op, arg, "expected a tensor of shape " + expected_shape(dims) + ", got none");
  }
  if (t.ndim < 0 || t.ndim > TensorView::kMaxDims)
    return invalid(
        op, arg,
        "expected 0-4 dimensions with one stride each, got ndim " + std::to_string(t.ndim));
  bool dtype_ok = false;
  for (DType d : dtypes) dtype_ok = dtype_ok || d == t.dtype;
  if (!dtype_ok)
    return invalid(
        op, arg,
        "expected dtype " + dtype_list(dtypes) + ", got " +
            (dtype_is_valid(t.dtype) ? dtype_name(t.dtype)
                                     : "an unknown dtype (" + std::to_string(int(t.dtype)) + ")"));
  if (t.ndim != static_cast<int32_t>(dims.size()))
    return invalid(op, arg,
                   "expected " + std::to_string(dims.size()) + " dimensions " +
                       expected_shape(dims) + ", got shape " + shape_string(t));
  int i = 0;
  for (const Dim& d : dims) {
    if (t.shape[i] < 0 || (d.size != kAnySize && t.shape[i] != d.size))
      return invalid(op, arg,
                     "expected shape " + expected_shape(dims) + ", got " + shape_string(t));
    ++i;
  }
  if (t.device != device)
    return invalid(op, arg,
                   std::string("expected a ") + device_name(device) + " tensor, got a " +
                       device_name(t.device) + " tensor");
  if (t.data == nullptr && t.numel() > 0)
    return invalid(
        op, arg,
        "expected a data pointer for " + std::to_string(t.numel()) + " elements, got null");
  for (int d = 0; d < t.ndim; ++d)
    if (t.strides[d] < 0)
      return invalid(op, arg,
                     "expected non-negative strides, got stride " + std::to_string(t.strides[d]) +
                         " in dimension " + std::to_string(d));
  return Error::success();
}

Error check_rows_aligned(const char* op, const char* arg, const TensorView& t) {
  if (!t.defined() || t.numel() == 0) return Error::success();
  const int last = t.ndim - 1;
  if (t.strides[last] != 1 && t.shape[last] > 1)
    return invalid(op, arg,
                   "expected rows contiguous (stride 1 in the last dimension), got stride " +
                       std::to_string(t.strides[last]));
  const int64_t row_bytes = t.shape[last] * static_cast<int64_t>(t.element_size());
  if (row_bytes % 16 != 0)
    return invalid(op, arg,
                   "expected a row size that is a multiple of 16 bytes, got " +
                       std::to_string(row_bytes) + " bytes");
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
    return invalid(op, arg,
                   "expected a 16-byte aligned data pointer, got an address ending in 0x" +
                       std::to_string(reinterpret_cast<uintptr_t>(t.data) % 16));
  for (int d = 0; d < last; ++d)
    if ((t.strides[d] * static_cast<int64_t>(t.element_size())) % 16 != 0 && t.shape[d] > 1)
      return invalid(op, arg,
                     "expected strides that keep rows 16-byte aligned, got stride " +
                         std::to_string(t.strides[d]) + " in dimension " + std::to_string(d));
  return Error::success();
}

Error check_unit_stride_2d(const char* op, const char* arg, const TensorView& t) {
  if (!t.defined() || t.ndim != 2) return Error::success();
  const bool row_major = t.strides[1] == 1 || t.shape[1] <= 1;
  const bool col_major = t.strides[0] == 1 || t.shape[0] <= 1;
  if (!row_major && !col_major)
    return invalid(op, arg,
                   "expected unit stride along one dimension, got strides [" +
                       std::to_string(t.strides[0]) + ", " + std::to_string(t.strides[1]) + "]");
  return Error::success();
}

Error check_contiguous(const char* op, const char* arg, const TensorView& t) {
  if (!t.defined() || t.is_contiguous()) return Error::success();
  std::string strides = "[";
  for (int d = 0; d < t.ndim; ++d) strides += (d ? ", " : "") + std::to_string(t.strides[d]);
  return invalid(op, arg, "expected a contiguous (row-major) tensor, got strides " + strides + "]");
}

Error check_topk_values(const char* op, const char* arg, const TensorView& t, int32_t num_experts) {
  if (!t.defined() || t.device != DeviceKind::kCpu) return Error::success();
  for (int64_t i = 0; i < t.shape[0]; ++i) {
    for (int64_t k = 0; k < t.shape[1]; ++k) {
      const int64_t off = i * t.strides[0] + k * t.strides[1];
      const int64_t v = t.dtype == DType::kInt64 ? static_cast<const int64_t*>(t.data)[off]
                                                 : static_cast<const int32_t*>(t.data)[off];
      if (v != -1 && (v < 0 || v >= num_experts))
        return invalid(op, arg,
                       "expected -1 or an expert id in [0, " + std::to_string(num_experts) +
                           "), got " + std::to_string(v) + " at [" + std::to_string(i) + ", " +
                           std::to_string(k) + "]");
    }
  }
  return Error::success();
}

Error check_num_experts(const char* op, int32_t num_experts, int32_t num_ranks) {
  if (num_experts <= 0 || num_experts > kMaxExperts)
    return invalid(op, "num_experts",
                   "expected a value in [1, " + std::to_string(kMaxExperts) + "], got " +
                       std::to_string(num_experts));
  if (num_experts % num_ranks != 0)
    return invalid(op, "num_experts",
                   "expected a multiple of the number of ranks (" + std::to_string(num_ranks) +
                       "), got " + std::to_string(num_experts));
  return Error::success();
}

Error validate_buffer_options(const BufferOptions& o) {
  const char* op = "Buffer::create";
  if (o.num_ranks < 1 || o.num_ranks > kMaxRanks)
    return invalid(op, "num_ranks",
                   "expected a value in [1, " + std::to_string(kMaxRanks) + "], got " +
                       std::to_string(o.num_ranks));
  if (o.rank < 0 || o.rank >= o.num_ranks)
    return invalid(op, "rank",
                   "expected a value in [0, " + std::to_string(o.num_ranks) + "), got " +
                       std::to_string(o.rank));
  if (o.gpus_per_node < 0)
    return invalid(
        op, "gpus_per_node",
        "expected 0 (one node) or a positive count, got " + std::to_string(o.gpus_per_node));
  if (o.gpus_per_node > 0 && o.gpus_per_node < o.num_ranks)
    return Error(ErrorCode::kNotSupported,
                 std::string(op) + ": multi-node is not supported yet: gpus_per_node=" +
                     std::to_string(o.gpus_per_node) +
                     " is smaller than num_ranks=" + std::to_string(o.num_ranks));
  if (o.num_ranks > kMaxNodeRanks)
    return Error(ErrorCode::kNotSupported,
                 std::string(op) + ": num_ranks: expected at most " +
                     std::to_string(kMaxNodeRanks) +
                     " ranks in one node (the kernels' per-peer tables), got " +
                     std::to_string(o.num_ranks));
  if (o.device < -1)
    return invalid(op, "device",
                   "expected -1 (automatic) or a device ordinal, got " + std::to_string(o.device));
  if (o.num_nvl_bytes < 0)
    return invalid(op, "num_nvl_bytes", "expected >= 0, got " + std::to_string(o.num_nvl_bytes));
  if (o.num_rdma_bytes < 0)
    return invalid(op, "num_rdma_bytes", "expected >= 0, got " + std::to_string(o.num_rdma_bytes));
  if (!(o.timeout_seconds > 0) || !std::isfinite(o.timeout_seconds))
    return invalid(
        op, "timeout_seconds",
        "expected a positive finite number of seconds, got " + std::to_string(o.timeout_seconds));
  return Error::success();
}

Error validate_config(const char* op, const Config& c) {
  if (c.num_sms < 1 || c.num_sms > 1024)
    return invalid(op, "config.num_sms",
                   "expected a value in [1, 1024], got " + std::to_string(c.num_sms));
  if (c.num_max_nvl_chunked_send_tokens < 1)
    return invalid(op, "config.num_max_nvl_chunked_send_tokens",
                   "expected >= 1, got " + std::to_string(c.num_max_nvl_chunked_send_tokens));
  if (c.num_max_nvl_chunked_recv_tokens < c.num_max_nvl_chunked_send_tokens)
    return invalid(op, "config.num_max_nvl_chunked_recv_tokens",
                   "expected >= num_max_nvl_chunked_send_tokens (" +
                       std::to_string(c.num_max_nvl_chunked_send_tokens) + "), got " +
                       std::to_string(c.num_max_nvl_chunked_recv_tokens));
  if (c.num_max_rdma_chunked_send_tokens < 1 ||
      c.num_max_rdma_chunked_recv_tokens < c.num_max_rdma_chunked_send_tokens)
    return invalid(op, "config.num_max_rdma_chunked_*_tokens",
                   "expected send >= 1 and recv >= send, got send " +
                       std::to_string(c.num_max_rdma_chunked_send_tokens) + ", recv " +
                       std::to_string(c.num_max_rdma_chunked_recv_tokens));
  return Error::success();
}

}  // namespace epcomm::core
