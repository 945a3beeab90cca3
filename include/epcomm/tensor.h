// TensorView: a non-owning description of a strided tensor in host or device memory.
// epcomm never allocates, frees or retains the memory a TensorView points to.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>

#include "epcomm/dtype.h"

namespace epcomm {

enum class DeviceKind : int32_t { kCpu = 0, kCuda = 1 };

struct EPCOMM_EXPORT TensorView {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int32_t ndim = -1;  // -1: no tensor (an optional argument left out)
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> strides{};  // in elements, not bytes
  DeviceKind device = DeviceKind::kCuda;
  int32_t device_index = 0;

  // A row-major (contiguous) view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               DeviceKind device = DeviceKind::kCuda, int32_t device_index = 0);
  // A view with explicit strides (in elements); strides.size() must equal shape.size().
  static TensorView strided(void* data, DType dtype, std::initializer_list<int64_t> shape,
                            std::initializer_list<int64_t> strides,
                            DeviceKind device = DeviceKind::kCuda, int32_t device_index = 0);

  bool defined() const { return ndim >= 0; }
  int64_t size(int dim) const { return shape[dim]; }
  int64_t stride(int dim) const { return strides[dim]; }
  int64_t numel() const;
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype); }
};

}  // namespace epcomm
