// A device copy of a HostTensor (same shape, dtype and strides) for GPU tests.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "core/reference/host_tensor.h"

namespace epcomm::testing {

class DeviceTensor {
 public:
  DeviceTensor() = default;
  explicit DeviceTensor(const reference::HostTensor& h, int device) : host_(h), device_(device) {
    bytes_ = h.bytes().size();
    EXPECT_EQ(cudaMalloc(&data_, bytes_ ? bytes_ : 16), cudaSuccess);
    if (bytes_)
      EXPECT_EQ(cudaMemcpy(data_, h.bytes().data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
    // The legacy default stream does not order with the tests' non-blocking streams: finish now.
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  // Poisoned buffer shaped like h (every byte 0xA5), so unwritten outputs show.
  static DeviceTensor poisoned(const reference::HostTensor& h, int device) {
    DeviceTensor t(h, device);
    if (t.bytes_) EXPECT_EQ(cudaMemset(t.data_, 0xA5, t.bytes_), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // see the constructor
    return t;
  }
  DeviceTensor(DeviceTensor&& o) noexcept { *this = std::move(o); }
  DeviceTensor& operator=(DeviceTensor&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    host_ = o.host_;
    device_ = o.device_;
    return *this;
  }
  ~DeviceTensor() {
    if (data_) cudaFree(data_);
  }
  TensorView view() const {
    if (!host_.defined()) return TensorView{};
    TensorView v = host_.view();
    v.data = data_;
    v.device = DeviceKind::kCuda;
    v.device_index = device_;
    return v;
  }
  // Device contents as a HostTensor of the same shape.
  reference::HostTensor download() const {
    reference::HostTensor h = host_;
    if (bytes_)
      EXPECT_EQ(
          cudaMemcpy(const_cast<uint8_t*>(h.bytes().data()), data_, bytes_, cudaMemcpyDeviceToHost),
          cudaSuccess);
    return h;
  }
  void upload(const reference::HostTensor& h) {
    ASSERT_EQ(h.bytes().size(), bytes_);
    if (bytes_)
      ASSERT_EQ(cudaMemcpy(data_, h.bytes().data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  void* data() const { return data_; }

 private:
  reference::HostTensor host_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

}  // namespace epcomm::testing
