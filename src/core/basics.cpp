// Small public value types: Error, DType, TensorView, version.
#include <sstream>

#include "epcomm/dtype.h"
#include "epcomm/epcomm.hpp"
#include "epcomm/error.h"
#include "epcomm/tensor.h"

namespace epcomm {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kSuccess:
      return "success";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotImplemented:
      return "not_implemented";
    case ErrorCode::kNotSupported:
      return "not_supported";
    case ErrorCode::kCudaError:
      return "cuda_error";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kBootstrap:
      return "bootstrap";
    case ErrorCode::kBufferTooSmall:
      return "buffer_too_small";
    case ErrorCode::kFailedState:
      return "failed_state";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Error::to_string() const {
  if (ok()) return "success";
  return std::string(error_code_name(code_)) + ": " + message_;
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kBFloat16:
      return 2;
    case DType::kFloat8E4M3:
      return 1;
    case DType::kFloat32:
      return 4;
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kBool:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat8E4M3:
      return "float8_e4m3fn";
    case DType::kFloat32:
      return "float32";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
  }
  return "unknown";
}

bool dtype_is_valid(DType dtype) {
  return dtype_size(dtype) != 0;
}

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                  DeviceKind device, int32_t device_index) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  t.device = device;
  t.device_index = device_index;
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.strides[d] = stride;
    stride *= t.shape[d];
  }
  return t;
}

TensorView TensorView::strided(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               std::initializer_list<int64_t> strides, DeviceKind device,
                               int32_t device_index) {
  TensorView t = contiguous(data, dtype, shape, device, device_index);
  int i = 0;
  for (int64_t s : strides) {
    if (i < kMaxDims) t.strides[i] = s;
    ++i;
  }
  if (i != t.ndim) t.ndim = -2;  // rejected by validation: shape/stride count mismatch
  return t;
}

int64_t TensorView::numel() const {
  if (ndim < 0) return 0;
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

const char* version() {
  return EPCOMM_VERSION_STRING;
}

}  // namespace epcomm
