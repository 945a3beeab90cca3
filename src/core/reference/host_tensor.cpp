#include "core/reference/host_tensor.h"

namespace epcomm::reference {

HostTensor::HostTensor(DType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)), strides_(shape_.size()) {
  int64_t stride = 1;
  for (int d = static_cast<int>(shape_.size()) - 1; d >= 0; --d) {
    strides_[d] = stride;
    stride *= shape_[d];
  }
  bytes_.assign(static_cast<size_t>(numel()) * dtype_size(dtype_), 0);
}

HostTensor HostTensor::column_major_last2(DType dtype, std::vector<int64_t> shape) {
  HostTensor t(dtype, shape);
  const int n = static_cast<int>(shape.size());
  if (n >= 2) {
    t.strides_[n - 2] = 1;
    t.strides_[n - 1] = shape[n - 2];
  }
  return t;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape_) n *= s;
  return n;
}

int64_t HostTensor::offset(std::initializer_list<int64_t> index) const {
  int64_t off = 0;
  int d = 0;
  for (int64_t i : index) off += i * strides_[d++];
  return off;
}

TensorView HostTensor::view() const {
  TensorView v;
  v.data = const_cast<uint8_t*>(bytes_.data());
  v.dtype = dtype_;
  v.ndim = static_cast<int32_t>(shape_.size());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = shape_[d];
    v.strides[d] = strides_[d];
  }
  v.device = DeviceKind::kCpu;
  v.device_index = 0;
  return v;
}

}  // namespace epcomm::reference
